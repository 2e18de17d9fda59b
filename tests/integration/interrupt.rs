//! One way to stop: SIGINT to `dlab run` in the middle of an AMQP run (on a
//! private node dlab starts) and of an SMTP run (through a private Postfix
//! relay) ends with exit 130, a partial JSON result marked `interrupted`,
//! and nothing of the run left: no worker, no Erlang VM, no Postfix master,
//! no entry in the system `main.cf`.

use crate::support::{dlab, show, temp_dir, text, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

/// Processes whose command line or environment names `home`: everything a
/// dlab with that home started (workers get plan files under it, the node
/// and the relay their directories).
fn processes_of(home: &Path) -> Vec<(u32, String)> {
    let needle = home.to_string_lossy().into_owned();
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let read = |f: &str| {
            std::fs::read(entry.path().join(f))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default()
        };
        let cmdline = read("cmdline");
        if cmdline.contains(&needle) || read("environ").contains(&needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// The run directory's history file, once the run has one.
fn history_of(home: &Path) -> Option<PathBuf> {
    std::fs::read_dir(home.join("runs"))
        .ok()?
        .flatten()
        .map(|e| e.path().join("history.tsv"))
        .find(|p| p.exists())
}

/// Whether the run's history shows `n` attempts (the run is under way).
fn attempts_at_least(home: &Path, n: usize) -> bool {
    let is_attempt = |l: &&str| l.rsplit('\t').next().is_some_and(|e| e.starts_with("A "));
    history_of(home)
        .and_then(|h| std::fs::read_to_string(h).ok())
        .is_some_and(|t| t.lines().filter(is_attempt).count() >= n)
}

/// Starts `dlab run FILE --set ... --json JSON` with its own home.
fn start(home: &Path, file: &str, set: &[&str], json: &Path) -> Child {
    let mut cmd = dlab(home);
    cmd.arg("run").arg(file).arg("--quiet");
    for s in set {
        cmd.arg("--set").arg(s);
    }
    cmd.arg("--json")
        .arg(json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends SIGINT mid-run and checks the partial result and that nothing is left.
fn interrupt_mid_run(home: &Path, mut child: Child, json: &Path, transport: &str) {
    wait_for("the run to be under way", 180, || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dlab ended before it was interrupted: {status}");
        }
        attempts_at_least(home, 50)
    });
    let before = processes_of(home);
    assert!(
        !before.is_empty(),
        "the run's processes are visible before the interrupt (else this test sees nothing)"
    );
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", show(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json).expect("a partial JSON result")).unwrap();
    assert_eq!(v["interrupted"], true, "{v:#}");
    assert_eq!(v["transport"], transport);
    let intended = v["counts"]["intended"].as_u64().unwrap();
    let attempts = v["counts"]["attempts"].as_u64().unwrap();
    assert!(
        attempts >= 50 && attempts < intended,
        "the result holds what the run saw until the signal: {attempts} attempts of {intended}"
    );
    assert!(
        v["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == "interrupted"),
        "the timeline marks the interruption: {:#}",
        v["timeline"]
    );
    assert!(
        text(&out.stderr).contains("SIGINT"),
        "dlab says it was interrupted: {}",
        show(&out)
    );
    // What the run started is gone once dlab has exited.
    let left = processes_of(home);
    assert!(left.is_empty(), "left running after exit 130: {left:?}");
    let main_cf = std::fs::read_to_string("/etc/postfix/main.cf").unwrap_or_default();
    assert!(
        !main_cf.contains(&*home.to_string_lossy()),
        "the system main.cf still lists a relay of this run"
    );
}

#[test]
fn sigint_stops_an_amqp_run_on_a_private_node_and_leaves_nothing() {
    let home = temp_dir("sigint-amqp");
    let json = home.join("partial.json");
    // No --amqp-url: dlab starts (and must stop) a node of its own.
    let child = start(
        &home,
        "scenarios/at-least-once.toml",
        &["messages=200000", "rate=500"],
        &json,
    );
    interrupt_mid_run(&home, child, &json, "amqp");
}

#[test]
fn sigint_stops_an_smtp_run_through_a_private_relay_and_leaves_nothing() {
    let home = temp_dir("sigint-smtp");
    let json = home.join("partial.json");
    let child = start(
        &home,
        "scenarios/smtp-store-and-forward.toml",
        &["messages=20000", "rate=100"],
        &json,
    );
    interrupt_mid_run(&home, child, &json, "smtp");
}
