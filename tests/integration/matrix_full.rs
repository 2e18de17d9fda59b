//! The whole matrix, every row of both transports, run once for the whole
//! test binary (it takes minutes): the tests here and the HTML and
//! `dlab report` tests in report.rs read the same run.

use crate::support::{dlab, exclusive, show, temp_dir, text};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

/// What one `dlab matrix --rows all` printed and wrote.
pub struct FullMatrix {
    /// Its exit code.
    pub code: Option<i32>,
    /// Its stdout and stderr, for messages.
    pub shown: String,
    /// Its stdout.
    pub stdout: String,
    /// The `--json` list of results, one per cell.
    pub json: Value,
    /// The `--json` file.
    pub json_path: PathBuf,
    /// The `--html` page.
    pub html: PathBuf,
    /// Its DLAB_HOME, for any further files.
    pub home: PathBuf,
}

/// Messages per cell: enough for every fault row to bite, few enough for CI.
pub const MESSAGES: u64 = 500;

/// The one full matrix run of this test binary. It starts its own broker
/// node (rows that kill, pause or alarm the broker need one dlab starts) and
/// a private Postfix relay per SMTP cell.
pub fn full_matrix() -> &'static FullMatrix {
    static FULL: OnceLock<FullMatrix> = OnceLock::new();
    FULL.get_or_init(|| {
        let home = temp_dir("full-matrix");
        let (json_path, html) = (home.join("matrix.json"), home.join("matrix.html"));
        let _guard = exclusive();
        let out = dlab(&home)
            .args(["matrix", "--rows", "all", "--transport", "both", "-q"])
            .args(["--messages", &MESSAGES.to_string()])
            .arg("--json")
            .arg(&json_path)
            .arg("--html")
            .arg(&html)
            .output()
            .unwrap();
        let json = serde_json::from_slice(&std::fs::read(&json_path).unwrap_or_default())
            .unwrap_or(Value::Null);
        FullMatrix {
            code: out.status.code(),
            shown: show(&out),
            stdout: text(&out.stdout),
            json,
            json_path,
            html,
            home,
        }
    })
}

/// Every row's scenario key, in the grid's order.
const KEYS: [&str; 16] = [
    "no-fault",
    "crash-before-effect",
    "crash-after-effect",
    "confirm-lost",
    "connection-cut",
    "producer-crash",
    "partition",
    "broker-pause",
    "broker-kill",
    "memory-alarm",
    "smtp-no-fault",
    "smtp-inbox-hangup",
    "smtp-reply-lost",
    "smtp-inbox-down",
    "smtp-no-8bitmime",
    "smtp-no-smtputf8",
];

fn cell<'a>(cells: &'a [Value], guarantee: &str, key: &str) -> &'a Value {
    let name = format!("matrix-{guarantee}-{key}");
    cells
        .iter()
        .find(|c| c["scenario"] == name.as_str())
        .unwrap_or_else(|| panic!("no cell {name}"))
}

fn count(c: &Value, key: &str) -> u64 {
    c["counts"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("counts.{key}: {c}"))
}

#[test]
fn the_full_matrix_runs_every_row_of_both_transports_and_holds_but_the_promises_it_expects_broken()
{
    let m = full_matrix();
    // One promise is broken on purpose and expected to be: the command exits 0.
    assert_eq!(m.code, Some(0), "{}", m.shown);
    let cells = m.json.as_array().expect("a list of results");
    assert_eq!(cells.len(), KEYS.len() * 3, "{}", m.shown);
    for label in [
        "no fault",
        "broker kill -9 (durable, persistent)",
        "memory alarm blocks publishers",
        "smtp: inbox down 3s (store-and-forward)",
    ] {
        assert!(m.stdout.contains(label), "{label} in {}", m.stdout);
    }
    let mut broken = Vec::new();
    for key in KEYS {
        for g in ["at-most-once", "at-least-once", "exactly-once"] {
            let c = cell(cells, g, key);
            let smtp = key.starts_with("smtp-");
            assert_eq!(c["transport"], if smtp { "smtp" } else { "amqp" }, "{c}");
            assert_eq!(count(c, "intended"), MESSAGES, "{c}");
            assert_eq!(c["expectations_held"], true, "{key} {g}: {c}");
            // Faults were injected where a row has one, and each fired.
            let faults = c["fault_timeline"].as_array().unwrap();
            // The ESMTP rows have no fault: a hop lacks an extension.
            if key.ends_with("no-fault") || key.starts_with("smtp-no-") {
                assert!(faults.is_empty(), "{c}");
            } else if key.contains("crash") {
                let aborted = c["timeline"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["event"].as_str().unwrap().contains("aborted"));
                assert!(aborted, "{key} {g}: {}", c["timeline"]);
            } else {
                assert!(
                    faults
                        .iter()
                        .any(|f| f["fired"] == true && f["note"].is_null()),
                    "{key} {g}: {faults:?}"
                );
            }
            if c["promise"]["held"] != true {
                broken.push(c["scenario"].as_str().unwrap().to_string());
            }
            match g {
                // Every message bounced for a missing SMTPUTF8, whatever the
                // policies: lost after the relay's 2xx, as the row expects.
                _ if key == "smtp-no-smtputf8" => {
                    assert_eq!(count(c, "lost"), MESSAGES, "{c}");
                    assert_eq!(count(c, "lost_after_confirm"), MESSAGES, "{c}");
                }
                "at-least-once" => assert_eq!(count(c, "lost"), 0, "{c}"),
                "exactly-once" => {
                    assert_eq!((count(c, "lost"), count(c, "duplicates")), (0, 0), "{c}")
                }
                _ => {}
            }
        }
    }
    // Across a store-and-forward relay there is no at-most-once; no policy
    // delivers to an address that needs SMTPUTF8 through a hop without it:
    // the deliberately broken cells, and only they.
    assert_eq!(
        broken,
        [
            "matrix-at-most-once-smtp-inbox-hangup",
            "matrix-at-least-once-smtp-no-smtputf8",
            "matrix-exactly-once-smtp-no-smtputf8"
        ]
    );
    let downgraded = cell(cells, "exactly-once", "smtp-no-8bitmime");
    assert_eq!(
        downgraded["smtp"]["esmtp"]["downgraded"].as_u64(),
        Some(MESSAGES),
        "{downgraded}"
    );
    let amo = cell(cells, "at-most-once", "smtp-inbox-hangup");
    assert_eq!(amo["promise"]["held"], false);
    assert!(count(amo, "duplicates") >= 1, "{amo}");
    assert_eq!(count(amo, "lost"), 0, "{amo}");
    let x = &amo["expectations"];
    assert!(
        x.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "min_duplicates" && e["bound"] == 1 && e["held"] == true),
        "{x}"
    );
    assert!(
        m.stdout.contains("BROKEN"),
        "the grid shows the broken promise: {}",
        m.stdout
    );
}

#[test]
fn the_full_matrix_shows_what_each_preset_is_for() {
    let m = full_matrix();
    assert_eq!(m.code, Some(0), "{}", m.shown);
    let cells = m.json.as_array().unwrap();
    // At-most-once loses the batch a consumer aborts with (auto-ack);
    // at-least-once shows the effect-but-no-ack batch twice; exactly-once
    // recognises it.
    let amo = cell(cells, "at-most-once", "crash-before-effect");
    assert!(count(amo, "lost") >= 1, "{amo}");
    assert_eq!(count(amo, "duplicates"), 0, "{amo}");
    let alo = cell(cells, "at-least-once", "crash-after-effect");
    assert!(count(alo, "duplicates") >= 1, "{alo}");
    let eo = cell(cells, "exactly-once", "crash-after-effect");
    assert!(count(eo, "suppressed") >= 1, "{eo}");
    // Lost confirms leave publishes in doubt wherever there are confirms.
    for g in ["at-least-once", "exactly-once"] {
        let c = cell(cells, g, "confirm-lost");
        assert!(count(c, "in_doubt") >= 1, "{c}");
    }
    // A broker kill of a durable queue of persistent messages loses nothing
    // the broker confirmed.
    for g in ["at-least-once", "exactly-once"] {
        let c = cell(cells, g, "broker-kill");
        assert_eq!(count(c, "lost_after_confirm"), 0, "{c}");
    }
    // Over SMTP the relay log's own count agrees with the ledger wherever the
    // inbox hung up, and the store-and-forward outage queued on the relay.
    for g in ["at-most-once", "at-least-once"] {
        let c = cell(cells, g, "smtp-inbox-hangup");
        assert_eq!(
            c["smtp"]["relay_log"]["duplicates"].as_u64(),
            Some(count(c, "duplicates")),
            "{c}"
        );
    }
    for g in ["at-most-once", "at-least-once", "exactly-once"] {
        let c = cell(cells, g, "smtp-inbox-down");
        assert!(c["smtp"]["relay_queue_peak"].as_u64().unwrap() >= 1, "{c}");
        assert_eq!(count(c, "lost"), 0, "{c}");
    }
}
