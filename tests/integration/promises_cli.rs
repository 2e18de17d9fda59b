//! Promises of the `dlab` command that no other test ran end to end: the
//! live progress line on a terminal, `--keep-queue` and a drain that times
//! out, `dlab matrix` exiting 1 when a cell breaks its expectation, and an
//! external relay named with `--smtp-url`.

use crate::support::{
    broker_url, delete_queue, dlab, exclusive, output_with_json, queue_depth, show, temp_dir, text,
    TestRelay,
};
use std::net::SocketAddr;

/// Every `sent A confirmed B delivered C in doubt D` the live line drew.
fn progress_lines(s: &str) -> Vec<[u64; 4]> {
    let mut found = Vec::new();
    for piece in s.split("sent ").skip(1) {
        let words: Vec<&str> = piece.split_whitespace().take(8).collect();
        if words.len() < 8
            || (words[1], words[3], words[5], words[6]) != ("confirmed", "delivered", "in", "doubt")
        {
            continue;
        }
        let n = |w: &str| w.parse::<u64>().ok();
        if let (Some(a), Some(b), Some(c), Some(d)) =
            (n(words[0]), n(words[2]), n(words[4]), n(words[7]))
        {
            found.push([a, b, c, d]);
        }
    }
    found
}

/// `dlab ARGS` under a pseudo-terminal (util-linux `script`): stderr is a
/// terminal, as for a user at a shell. Returns everything the terminal got.
fn on_a_terminal(home: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let command = std::iter::once(env!("CARGO_BIN_EXE_dlab"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let out = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("DLAB_HOME", home)
        .env_remove("DLAB_AMQP_URL")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("util-linux `script` runs");
    (out.status.code(), text(&out.stdout))
}

#[test]
fn on_a_terminal_a_live_line_shows_the_counts_and_quiet_hides_it() {
    let url = broker_url();
    let home = temp_dir("progress");
    let _guard = exclusive();
    let run = [
        "run",
        "scenarios/at-least-once.toml",
        "--set",
        "messages=2000",
        "--set",
        "rate=1000",
        "--amqp-url",
        &url,
    ];
    let (code, tty) = on_a_terminal(&home, &run);
    assert_eq!(code, Some(0), "{tty}");
    let lines = progress_lines(&tty);
    // Drawn several times over the two seconds of the run, with counts that
    // grow and never exceed the run's.
    assert!(lines.len() >= 3, "{lines:?}\n{tty}");
    let last = lines.last().unwrap();
    assert!(last[0] > 0 && last[2] > 0, "{lines:?}");
    for w in lines.windows(2) {
        assert!(
            (0..4).all(|k| w[1][k] >= w[0][k]),
            "counts never go back: {w:?}"
        );
    }
    for l in &lines {
        assert!(l[0] <= 2000 && l[1] <= l[0] && l[2] <= 2000, "{l:?}");
    }

    let mut quiet = run.to_vec();
    quiet.push("-q");
    let (code, tty) = on_a_terminal(&home, &quiet);
    assert_eq!(code, Some(0), "{tty}");
    assert!(tty.contains("drain"), "the report is still printed: {tty}");
    assert_eq!(progress_lines(&tty), Vec::<[u64; 4]>::new(), "{tty}");
}

#[test]
fn a_drain_that_times_out_says_so_and_keep_queue_leaves_what_the_report_counts() {
    let url = broker_url();
    let home = temp_dir("drain-timeout");
    let _guard = exclusive();
    // One slow consumer (20 ms per notification, 10 at a time) and a drain of
    // one second: most of 300 messages are still queued when it ends.
    let mut cmd = dlab(&home);
    cmd.args(["run", "scenarios/at-least-once.toml", "--keep-queue"])
        .args(["--set", "messages=300", "--set", "consumers=1"])
        .args(["--set", "prefetch=10", "--set", "effect_time=20ms"])
        .args(["--set", "drain_timeout=1s", "--set", "expect.max_lost=0"])
        .args(["--amqp-url", &url]);
    let (out, v) = output_with_json(cmd, &home.join("out.json"));
    // Exit 1: an expectation broke (messages still queued have no effect).
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let remaining = v["drain"]["remaining_in_queue"].as_u64().unwrap();
    let c = &v["counts"];
    let (lost, unique) = (c["lost"].as_u64().unwrap(), c["unique"].as_u64().unwrap());
    assert_eq!(v["drain"]["completed"], false, "{}", v["drain"]);
    assert!(remaining > 0 && lost > 0, "{}", show(&out));
    // Every message is shown or still queued (a queued one may have been
    // shown by a consumer stopped before its ack).
    assert!(lost <= remaining && unique + remaining >= 300, "{v}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("TIMED OUT") && stdout.contains(&format!("{remaining} left in queue")),
        "{stdout}"
    );
    assert!(stdout.contains("max_lost <= 0"), "{stdout}");
    // --keep-queue: the queue is still there, holding what the report says.
    let queue = v["queue"].as_str().unwrap();
    assert_eq!(queue_depth(&url, queue), Some(remaining as u32));
    delete_queue(&url, queue);
    assert_eq!(queue_depth(&url, queue), None);

    // Without --keep-queue the run deletes its queue.
    let mut cmd = dlab(&home);
    cmd.args([
        "run",
        "scenarios/at-least-once.toml",
        "--set",
        "messages=50",
    ])
    .args(["--amqp-url", &url]);
    let (out, v) = output_with_json(cmd, &home.join("plain.json"));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(queue_depth(&url, v["queue"].as_str().unwrap()), None);
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], dlab::broker::free_port()))
}

#[test]
fn matrix_exits_1_when_a_cell_breaks_its_expectation() {
    // An honest way to break cells through the CLI: a relay that cannot
    // reach the phone. It answers 250 and keeps every message deferred on its
    // queue; the inbox gets nothing, so every cell that promises no loss
    // breaks, and `dlab matrix` says so with exit 1. `--transport smtp`
    // runs only the SMTP rows.
    let dir = temp_dir("dead-relay");
    let nowhere = free_addr();
    let relay = TestRelay::start(&dir.join("relay"), nowhere);
    let home = dir.join("home");
    let mut cmd = dlab(&home);
    cmd.args(["matrix", "--rows", "core", "--transport", "smtp", "-q"])
        .args(["--messages", "20"])
        .arg("--smtp-url")
        .arg(format!("smtp://{}", relay.addr()))
        .arg("--inbox-addr")
        .arg(free_addr().to_string());
    let (out, v) = output_with_json(cmd, &dir.join("matrix.json"));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let cells = v.as_array().unwrap();
    let names: Vec<&str> = cells
        .iter()
        .map(|c| c["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "matrix-at-most-once-smtp-no-fault",
            "matrix-at-least-once-smtp-no-fault",
            "matrix-exactly-once-smtp-no-fault",
            "matrix-at-most-once-smtp-inbox-hangup",
            "matrix-at-least-once-smtp-inbox-hangup",
            "matrix-exactly-once-smtp-inbox-hangup",
        ]
    );
    for c in cells {
        assert_eq!(c["transport"], "smtp");
        assert_eq!(c["counts"]["lost"], 20, "{c}");
        // Every message was accepted by the relay, none reached the phone.
        assert_eq!(c["smtp"]["sender"]["accepted"], 20, "{c}");
        let breaks =
            c["guarantee"] != "at-most-once" || c["scenario"].as_str().unwrap().ends_with("hangup");
        assert_eq!(c["expectations_held"], !breaks, "{c}");
    }
    assert!(text(&out.stdout).contains("BROKEN"), "{}", show(&out));
}

#[test]
fn an_external_relay_named_with_smtp_url_carries_a_run_and_relay_kill_is_refused() {
    let dir = temp_dir("external-relay");
    let inbox = free_addr();
    let relay = TestRelay::start(&dir.join("relay"), inbox);
    let home = dir.join("home");
    let smtp_url = format!("smtp://{}", relay.addr());

    // A scenario that kills the relay needs one dlab started: refused, exit 2,
    // before anything runs.
    let out = dlab(&home)
        .args([
            "run",
            "scenarios/smtp-relay-kill.toml",
            "--smtp-url",
            &smtp_url,
        ])
        .args(["--inbox-addr", &inbox.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("kills the relay") && err.contains("--smtp-url"),
        "{err}"
    );

    // The inbox goes down for 4 s: the external relay holds and retries.
    let mut cmd = dlab(&home);
    cmd.args(["run", "scenarios/smtp-store-and-forward.toml", "-q"])
        .args(["--set", "messages=300", "--set", "rate=150"])
        .args(["--smtp-url", &smtp_url, "--inbox-addr", &inbox.to_string()]);
    let (out, v) = output_with_json(cmd, &dir.join("out.json"));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let c = &v["counts"];
    assert_eq!(
        (c["lost"].as_u64(), c["unique"].as_u64()),
        (Some(0), Some(300)),
        "{c}"
    );
    assert_eq!(v["drain"]["completed"], true, "{}", v["drain"]);
    let s = &v["smtp"];
    assert_eq!(s["sender"]["accepted"], 300, "{s}");
    // An external relay's queue and log are not read...
    assert!(s["relay_log"].is_null(), "{s}");
    assert_eq!(s["relay_queue"].as_array().map(Vec::len), Some(0), "{s}");
    // ...but this one's own log, read here, counts what the ledger counts.
    let run_id = v["run_id"].as_str().unwrap();
    let log = std::fs::read_to_string(relay.log()).unwrap();
    let n = dlab::relay::log::count(&log, &format!("{run_id}-"));
    assert_eq!(
        (n.messages, n.duplicates()),
        (300, c["duplicates"].as_u64().unwrap()),
        "{n:?}"
    );
    // The outage happened at the inbox, downstream of the external relay.
    let f = &v["fault_timeline"][0];
    assert!(f["fired"] == true && f["note"].is_null(), "{f}");
    assert!(
        f["during"]["delivered"].as_u64().unwrap() <= crate::support::COMMITTED_AS_FAULT_BEGAN,
        "{f}"
    );
}
