//! A `dlab run` killed by SIGKILL mid-run leaves what it started running:
//! its private RabbitMQ node, or its Postfix relay and that relay's entry in
//! the system `main.cf` (its workers end by themselves). The next `dlab down`
//! in that home removes them and says so, and a run afterwards works.

use crate::support::{dlab, exclusive, show, temp_dir, text, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

/// A `dlab run` in the background, killed and reaped when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whatever happens, `dlab down` for this home at the end.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = dlab(&self.0).arg("down").output();
    }
}

/// `/proc/PID/stat` after the command's name: state, ppid, pgrp, ...
fn stat(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = s.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether `pid` runs (a zombie does not).
fn runs(pid: u32) -> bool {
    stat(pid).is_some_and(|f| f[0] != "Z")
}

/// The name the kernel gives `pid`'s program.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Processes (not zombies) in process group `pgid`.
fn group(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|f| f[0] != "Z" && f[2] == pgid.to_string()))
        .collect()
}

/// The one directory matching `home/a/*/b` (e.g. a run's relay), if any.
fn one_under(home: &Path, a: &str, b: &str) -> Option<PathBuf> {
    std::fs::read_dir(home.join(a))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join(b))
        .find(|p| p.exists())
}

/// A JSON state file.
fn json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Starts `dlab run ARGS` in `home` in the background (its stderr in
/// `home/run.err`).
fn start_run(home: &Path, args: &[&str]) -> Background {
    let err = std::fs::File::create(home.join("run.err")).unwrap();
    Background(
        dlab(home)
            .arg("run")
            .args(args)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap(),
    )
}

/// SIGKILLs the run (and reaps it); returns its pid.
fn kill(run: &mut Background) -> u32 {
    let pid = run.0.id();
    run.0.kill().unwrap();
    run.0.wait().unwrap();
    pid
}

/// `dlab down` in `home`: exit 0; returns its stderr.
fn down(home: &Path) -> String {
    let out = dlab(home).arg("down").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    text(&out.stderr)
}

/// A small run in `home` works afterwards, with nothing left to remove.
fn a_run_works(home: &Path, scenario: &str) {
    let out = dlab(home)
        .args(["run", scenario, "--set", "messages=100"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(!text(&out.stderr).contains("killed dlab"), "{}", show(&out));
}

#[test]
fn a_killed_amqp_run_leaves_its_node_and_down_removes_it() {
    let _guard = exclusive();
    let home = temp_dir("killed-amqp");
    let _down = Down(home.clone());
    let mut run = start_run(
        &home,
        &[
            "scenarios/at-least-once.toml",
            "--set",
            "messages=1000000",
            "--set",
            "rate=2000",
        ],
    );
    // Under way: a private node booted, and workers report events.
    let mut history = PathBuf::new();
    wait_for("the run's workers to report events", 240, || {
        history = one_under(&home, "runs", "history.tsv").unwrap_or_default();
        std::fs::read_to_string(&history).is_ok_and(|h| h.lines().count() > 10)
    });
    let node_dir = one_under(&home, "nodes", "state.json")
        .expect("the node's state file")
        .parent()
        .unwrap()
        .to_path_buf();
    let vm = json(&node_dir.join("state.json")).unwrap()["pid"]
        .as_u64()
        .unwrap() as u32;
    let workers: Vec<u32> = std::fs::read_to_string(&history)
        .unwrap()
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.parse().ok())
        .collect();
    assert!(!workers.is_empty());

    let dlab_pid = kill(&mut run);
    assert!(
        runs(vm) && comm(vm).starts_with("beam"),
        "the node's Erlang VM outlives the killed dlab ({vm}: {})",
        comm(vm)
    );
    // Workers end by themselves: their stdin closed with the runner.
    wait_for("the workers to end once their runner is gone", 30, || {
        !workers.iter().any(|p| runs(*p))
    });

    let err = down(&home);
    assert!(
        err.contains(&format!(
            "removed what a killed dlab (pid {dlab_pid}) left: private RabbitMQ node {} (pid {vm})",
            node_dir.display()
        )),
        "{err}"
    );
    assert!(!runs(vm), "the VM is gone");
    assert!(group(vm).is_empty(), "and its process group");
    assert!(!node_dir.exists(), "the node's directory is removed");
    let again = down(&home);
    assert!(!again.contains("killed dlab"), "removed once: {again}");

    a_run_works(&home, "scenarios/at-least-once.toml");
}

#[test]
fn a_killed_smtp_run_leaves_its_relay_and_down_removes_it() {
    let _guard = exclusive();
    let home = temp_dir("killed-smtp");
    let _down = Down(home.clone());
    let mut run = start_run(
        &home,
        &[
            "scenarios/smtp-rfc1047-idempotent.toml",
            "--set",
            "messages=100000",
            "--set",
            "rate=200",
        ],
    );
    // Under way: the relay's record names its master, once it listens.
    let mut master = 0;
    wait_for("the run's relay to start", 60, || {
        master = one_under(&home, "runs", "relay/relay.json")
            .and_then(|p| json(&p)?["master_pid"].as_u64())
            .unwrap_or(0) as u32;
        master != 0
    });
    let relay_dir = one_under(&home, "runs", "relay").unwrap();
    let etc = relay_dir.join("etc").display().to_string();
    let listed = || {
        std::fs::read_to_string("/etc/postfix/main.cf")
            .unwrap()
            .contains(&etc)
    };

    let dlab_pid = kill(&mut run);
    assert!(
        runs(master) && comm(master) == "master",
        "the Postfix master outlives the killed dlab ({master}: {})",
        comm(master)
    );
    assert!(listed(), "and its directory stays in main.cf");

    let err = down(&home);
    assert!(
        err.contains(&format!(
            "removed what a killed dlab (pid {dlab_pid}) left: Postfix relay {} (master pid {master}) and its main.cf entry",
            relay_dir.display()
        )),
        "{err}"
    );
    assert!(!runs(master), "the master is gone");
    assert!(group(master).is_empty(), "and every process of its group");
    assert!(!listed(), "main.cf no longer lists {etc}");
    assert!(relay_dir.join("log").exists(), "its files are kept");

    a_run_works(&home, "scenarios/smtp-rfc1047-idempotent.toml");
}

#[test]
fn a_relay_dlab_started_retires_when_dropped_and_one_attached_to_does_not() {
    let dir = temp_dir("dropped-relay");
    let nowhere = std::net::SocketAddr::from(([127, 0, 0, 1], dlab::broker::free_port()));
    let relay = dlab::relay::Relay::start(&dir, nowhere).expect("the relay starts");
    let master = relay.master_pid().expect("its master runs");
    let etc = dir.join("etc").display().to_string();
    let listed = || {
        std::fs::read_to_string("/etc/postfix/main.cf")
            .unwrap()
            .contains(&etc)
    };
    assert!(listed() && dir.join("relay.json").exists());

    // Found again and dropped: still running, still listed.
    drop(dlab::relay::Relay::attach(&dir).expect("attached"));
    assert!(runs(master) && listed());

    drop(relay);
    assert!(!runs(master) && group(master).is_empty(), "stopped");
    assert!(!listed(), "unlisted from main.cf");
    assert!(!dir.join("relay.json").exists(), "its record removed");
    assert!(dir.join("log").exists(), "its files kept");
}
