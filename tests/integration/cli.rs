//! The `dlab` binary as a user meets it: exit codes, one-line errors, JSON.

use crate::support::{
    broker_url, dlab, exclusive, scenarios, show, succeeds_with_json, temp_dir, text,
};
use std::path::Path;

#[test]
fn a_broken_scenario_gives_one_line_with_line_and_column_and_starts_nothing() {
    let dir = temp_dir("broken");
    let file = dir.join("broken.toml");
    std::fs::write(
        &file,
        "guarantee = \"at-least-once\"\nmessages = 100\nprefetch = \"lots\"\n",
    )
    .unwrap();
    let home = dir.join("home");
    let out = dlab(&home).arg("run").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&format!("{}:3:12", file.display())), "{err}");
    assert!(err.contains("`prefetch`"), "{err}");
    assert!(!home.exists(), "nothing was started or recorded");

    std::fs::write(&file, "guarantee = \"at-least-once\"\nconsumers = 2\n\n[[faults]]\nkind = \"consumer-crash\"\npoint = \"before-effect\"\nafter = 5\nworker = 2\n").unwrap();
    let out = dlab(&home).arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr).contains(&format!("{}:8:1", file.display())),
        "{}",
        show(&out)
    );
    assert!(
        text(&out.stderr).contains("faults[0].worker"),
        "{}",
        show(&out)
    );
}

#[test]
fn a_bad_override_is_named() {
    let home = temp_dir("override");
    let out = dlab(&home)
        .args([
            "validate",
            "scenarios/at-least-once.toml",
            "--set",
            "consumers=0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("--set consumers=0"),
        "{}",
        show(&out)
    );
}

#[test]
fn every_shipped_scenario_is_valid() {
    let home = temp_dir("list");
    let out = dlab(&home).arg("list").arg(scenarios()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(!text(&out.stdout).contains("INVALID"));
    assert!(text(&out.stdout).lines().count() >= 13);
}

#[test]
fn another_transport_s_key_is_an_error_with_its_line_column_and_key() {
    let dir = temp_dir("other-transport");
    let file = dir.join("smtp-prefetch.toml");
    std::fs::write(
        &file,
        "name = \"x\"\ntransport = \"smtp\"\nguarantee = \"at-least-once\"\nmessages = 100\n\nproducers = 2\nprefetch = 3\n",
    )
    .unwrap();
    let home = dir.join("home");
    let out = dlab(&home).arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&format!(
            "{}:7:1: `prefetch`: a setting of the amqp transport; this scenario's transport is smtp",
            file.display()
        )),
        "{err}"
    );
    // Without the key the same file is valid: the key alone was the error.
    std::fs::write(
        &file,
        "name = \"x\"\ntransport = \"smtp\"\nguarantee = \"at-least-once\"\nmessages = 100\n\nproducers = 2\n",
    )
    .unwrap();
    let out = dlab(&home).arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // An override goes through the same rule and is named.
    let out = dlab(&home)
        .args([
            "validate",
            "scenarios/smtp-store-and-forward.toml",
            "--set",
            "consumers=4",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr)
            .contains("--set consumers=4: `consumers`: a setting of the amqp transport"),
        "{}",
        show(&out)
    );
    assert!(!home.exists(), "nothing was started or recorded");
}

#[test]
fn every_shipped_scenario_validates() {
    let home = temp_dir("validate-all");
    let mut files: Vec<_> = std::fs::read_dir(scenarios())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 13, "{files:?}");
    assert!(
        files.iter().any(|f| std::fs::read_to_string(f)
            .unwrap()
            .contains("transport = \"smtp\"")),
        "the SMTP scenarios are among them"
    );
    for file in &files {
        let out = dlab(&home).arg("validate").arg(file).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        assert!(text(&out.stdout).contains(": ok: "), "{}", show(&out));
    }
}

#[test]
fn an_unreachable_broker_is_named_with_its_password_masked() {
    let home = temp_dir("unreachable");
    let port = dlab::broker::free_port();
    let url = format!("amqp://guest:s3cret@127.0.0.1:{port}/%2f");
    let out = dlab(&home)
        .args(["run", "scenarios/at-least-once.toml", "--amqp-url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("amqp://guest:****@127.0.0.1:{port}/%2f")),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    assert!(err.contains("Try"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn run_writes_json_with_the_promised_fields_and_exits_by_expectation() {
    let url = &broker_url();
    let home = temp_dir("run");
    let json = home.join("out.json");
    let _guard = exclusive();
    let mut cmd = dlab(&home);
    cmd.args([
        "run",
        "scenarios/at-least-once-crash-after-effect.toml",
        "--set",
        "messages=1000",
        "--amqp-url",
        url,
    ]);
    let (stdout, v) = succeeds_with_json(cmd, &json);
    assert!(stdout.contains("duplicates"));
    for key in [
        "intended",
        "published",
        "confirmed",
        "in_doubt",
        "effects",
        "unique",
        "duplicates",
        "lost",
    ] {
        assert!(v["counts"][key].is_u64(), "counts.{key} in {v}");
    }
    for key in ["at_most_once", "at_least_once", "exactly_once"] {
        assert!(v["verdicts"][key].is_boolean(), "verdicts.{key}");
    }
    assert_eq!(v["counts"]["intended"], 1000);
    assert_eq!(v["counts"]["lost"], 0);
    assert!(v["counts"]["duplicates"].as_u64().unwrap() >= 1);
    assert!(Path::new(v["effect_store"].as_str().unwrap()).exists());
    assert!(
        !v["broker"].as_str().unwrap().contains(":guest@"),
        "password masked in JSON"
    );

    // The same run with a bound it cannot meet exits 1.
    let out = dlab(&home)
        .args([
            "run",
            "scenarios/at-least-once.toml",
            "--set",
            "messages=300",
            "--set",
            "expect.max_duplicates=10",
            "--set",
            "expect.min_duplicates=1",
            "--amqp-url",
            url,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stdout).contains("min_duplicates >= 1: counted 0: BROKEN"),
        "{}",
        show(&out)
    );
}

#[test]
fn matrix_prints_the_grid_and_writes_every_cell() {
    let url = &broker_url();
    let home = temp_dir("matrix");
    let json = home.join("matrix.json");
    let _guard = exclusive();
    let mut cmd = dlab(&home);
    cmd.args([
        "matrix",
        "--rows",
        "core",
        "--transport",
        "amqp",
        "--messages",
        "400",
        "--amqp-url",
        url,
    ]);
    let (stdout, v) = succeeds_with_json(cmd, &json);
    for label in [
        "no fault",
        "consumer crash before effect",
        "consumer crash after effect, before ack",
        "exactly-once",
    ] {
        assert!(stdout.contains(label), "{label} in {stdout}");
    }
    let cells = v.as_array().unwrap();
    assert_eq!(cells.len(), 9);
    let cell = |name: &str| cells.iter().find(|c| c["scenario"] == name).unwrap();
    let amo = cell("matrix-at-most-once-crash-before-effect");
    assert!(amo["counts"]["lost"].as_u64().unwrap() >= 1, "{amo}");
    let alo = cell("matrix-at-least-once-crash-after-effect");
    assert!(alo["counts"]["duplicates"].as_u64().unwrap() >= 1, "{alo}");
    for c in cells.iter().filter(|c| c["guarantee"] == "exactly-once") {
        assert_eq!(
            (
                c["counts"]["lost"].as_u64(),
                c["counts"]["duplicates"].as_u64()
            ),
            (Some(0), Some(0)),
            "{c}"
        );
    }
}

#[test]
fn broker_faults_refuse_an_external_broker_before_starting_anything() {
    let home = temp_dir("external");
    let out = dlab(&home)
        .args([
            "run",
            "scenarios/broker-kill-durable.toml",
            "--amqp-url",
            "amqp://guest:guest@127.0.0.1:1/%2f",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("broker process faults and `tls` need a broker dlab starts"),
        "{}",
        show(&out)
    );
    assert!(!home.join("runs").exists(), "nothing was started");
}

#[test]
fn compare_prints_amqp_push_and_smtp_side_by_side_with_and_without_the_outage() {
    let url = &broker_url();
    let home = temp_dir("compare");
    let json = home.join("compare.json");
    let _guard = exclusive();
    let mut cmd = dlab(&home);
    cmd.args([
        "compare",
        "--messages",
        "600",
        "--rate",
        "300",
        "--outage",
        "1500ms",
        "-q",
        "--amqp-url",
        url,
    ]);
    let (stdout, v) = succeeds_with_json(cmd, &json);
    for label in [
        "compare-amqp",
        "compare-smtp-outage",
        "relay queue peak",
        "end-to-end p99",
    ] {
        assert!(stdout.contains(label), "{label} in {stdout}");
    }
    let runs = v.as_array().unwrap();
    let transports: Vec<&str> = runs
        .iter()
        .map(|r| r["transport"].as_str().unwrap())
        .collect();
    assert_eq!(transports, ["amqp", "amqp", "smtp", "amqp", "amqp", "smtp"]);
    let push: Vec<bool> = runs.iter().map(|r| r["push"].is_object()).collect();
    assert_eq!(push, [false, true, false, false, true, false]);
    for r in runs {
        assert_eq!(r["counts"]["lost"].as_u64(), Some(0), "{r}");
        assert_eq!(r["counts"]["unique"].as_u64(), Some(600), "{r}");
    }
    // Under the outage the relay held the backlog on its disk queue.
    assert!(runs[5]["smtp"]["relay_queue_peak"].as_u64().unwrap() > 0);
    // The outage fired on both transports and lasted its 1.5 s: the AMQP
    // consumers' link refused their reconnects, the inbox took nothing.
    let outage = |r: &serde_json::Value, kind: &str| -> serde_json::Value {
        let f = r["fault_timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["description"].as_str().unwrap().starts_with(kind))
            .unwrap_or_else(|| panic!("a {kind} record: {}", r["fault_timeline"]))
            .clone();
        assert!(f["fired"] == true && f["note"].is_null(), "{f}");
        let window = f["ended_ms"].as_u64().unwrap() - f["started_ms"].as_u64().unwrap();
        assert!(window >= 1500, "{f}");
        f
    };
    let down = outage(&runs[3], "down");
    assert!(down["effect"]["refused"].as_u64().unwrap() >= 1, "{down}");
    assert_eq!(down["effect"]["accepted"], 0, "{down}");
    // The push gateway refused the consumers' calls, which waited and
    // called again: failed calls, backoff, and nothing lost.
    outage(&runs[4], "gateway-down");
    let calls = &runs[4]["push"]["calls"];
    assert!(calls["failed"].as_u64().unwrap() >= 1, "{calls}");
    assert!(calls["backoff_waits"].as_u64().unwrap() >= 1, "{calls}");
    let inbox = outage(&runs[5], "inbox-down");
    assert!(
        inbox["during"]["delivered"].as_u64().unwrap() <= crate::support::COMMITTED_AS_FAULT_BEGAN,
        "{inbox}"
    );
    for r in &runs[..3] {
        assert!(r["fault_timeline"].as_array().unwrap().is_empty(), "{r}");
    }
    // And it shows in end-to-end latency, measured from when each message
    // was due: a message due as the outage began waited all of it. The
    // undisturbed runs stay well below it.
    let max = |r: &serde_json::Value| r["latency"]["end_to_end"]["max_us"].as_u64().unwrap();
    for (i, r) in runs.iter().enumerate() {
        if i < 3 {
            assert!(
                max(r) < 1_500_000,
                "undisturbed {}: {}",
                r["scenario"],
                r["latency"]
            );
        } else {
            assert!(max(r) >= 1_500_000, "{}: {}", r["scenario"], r["latency"]);
        }
    }
}

#[test]
fn an_unreachable_relay_is_named_with_what_to_try() {
    let home = temp_dir("no-relay");
    let out = dlab(&home)
        .args([
            "run",
            "scenarios/smtp-rfc1047-retry.toml",
            "--smtp-url",
            "smtp://127.0.0.1:1",
            "--inbox-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("127.0.0.1:1") && err.contains("--smtp-url"),
        "{err}"
    );
    let out = dlab(&home)
        .args([
            "run",
            "scenarios/smtp-rfc1047-retry.toml",
            "--smtp-url",
            "http://x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("expected smtp://HOST:PORT"));
}
