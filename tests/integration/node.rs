//! `dlab up`, `dlab status`, `dlab down`: a private node's whole life, and a
//! run that finds the node by itself.

use crate::support::{self, succeeds_with_json, temp_dir};

/// Stops the node of a DLAB_HOME when the test ends, passed or not.
struct Down(std::path::PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        if let Some(state) = dlab::broker::NodeState::load(&self.0.join("broker")) {
            dlab::broker::node::stop(&state, std::time::Duration::from_secs(30));
        }
        if let Some(relay) = dlab::relay::Relay::attach(&self.0.join("relay")) {
            relay.remove();
        }
    }
}

#[test]
fn up_status_run_down() {
    let home = temp_dir("up");
    let _down = Down(home.clone());
    let dlab = || support::dlab(&home);
    let out = dlab().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "nothing running yet");

    let out = dlab().arg("up").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    let url = lines.next().unwrap_or_default().trim().to_string();
    assert!(url.starts_with("amqp://guest:guest@127.0.0.1:"), "{url}");
    // And the Postfix relay SMTP runs use (as root, with Postfix installed).
    let smtp = lines.next().unwrap_or_default().trim().to_string();
    assert!(smtp.starts_with("smtp://127.0.0.1:"), "{stdout}");
    let relay = dlab::relay::Relay::attach(&home.join("relay")).expect("the relay runs");
    let state = dlab::broker::NodeState::load(&home.join("broker")).expect("state saved");
    assert!(state.alive());
    assert!(
        state.dir.join("mnesia").exists(),
        "data under the node's own directory"
    );

    let out = dlab().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&url));

    // With no URL named, a run uses the node that `dlab up` started.
    let json = home.join("r.json");
    let mut cmd = dlab();
    cmd.args([
        "run",
        "scenarios/exactly-once.toml",
        "--set",
        "messages=200",
    ]);
    let (_, v) = succeeds_with_json(cmd, &json);
    assert!(
        v["broker"]
            .as_str()
            .unwrap()
            .contains(&format!(":{}/", state.amqp_port)),
        "{v}"
    );

    // An SMTP run goes through the relay `dlab up` started, and leaves it running.
    let mut cmd = dlab();
    cmd.args([
        "run",
        "scenarios/smtp-rfc1047-retry.toml",
        "--set",
        "messages=200",
    ]);
    let (_, v) = succeeds_with_json(cmd, &json);
    assert!(
        v["broker"].as_str().unwrap().starts_with(&smtp),
        "{}",
        v["broker"]
    );
    assert!(
        v["broker"].as_str().unwrap().contains("dlab up"),
        "{}",
        v["broker"]
    );
    assert_eq!(v["counts"]["lost"].as_u64(), Some(0));
    assert!(
        relay.master_pid().is_some(),
        "the relay of `dlab up` still runs"
    );

    let out = dlab().arg("down").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while state.alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!state.alive(), "the node's process is gone");
    assert!(relay.master_pid().is_none(), "the relay is gone");
    let out = dlab().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}
