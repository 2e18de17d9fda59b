//! The proxy's SMTP protocol point against Postfix's own test tools:
//! `smtp-source` sends through the proxy to `smtp-sink`, and the reply to the
//! final "." is lost (RFC 1047): the sink has the message, the sender does not
//! know it.

use crate::support::temp_dir;
use dlab::proxy::{Protocol, Proxy};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn reply_lost_after_dot_leaves_the_message_with_the_server_and_the_client_in_doubt() {
    let dumps = temp_dir("sink");
    std::fs::set_permissions(&dumps, std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = dlab::broker::free_port();
    let mut sink = Command::new("/usr/sbin/smtp-sink")
        .args(["-u", "nobody", "-d"])
        .arg(format!("{}/", dumps.display()))
        .arg(format!("127.0.0.1:{port}"))
        .arg("10")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Postfix's smtp-sink runs (scripts/install-deps installs postfix)");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(upstream).is_err() {
        assert!(Instant::now() < deadline, "smtp-sink listens");
        std::thread::sleep(Duration::from_millis(20));
    }
    let proxy = rt
        .block_on(Proxy::start(upstream, Protocol::Smtp, 1))
        .unwrap();
    let _guard = rt.enter();
    let source = |messages: &str| {
        Command::new("/usr/sbin/smtp-source")
            .args(["-m", messages, "-c"])
            .arg(proxy.addr().to_string())
            .output()
            .expect("Postfix's smtp-source runs")
    };

    // Without the fault the proxy is transparent.
    let out = source("2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while files(&dumps) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(files(&dumps), 2);

    proxy.arm_reply_lost(true);
    let out = source("1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() || stderr.contains("lost"),
        "the sender saw its connection end without a reply: {stderr}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while files(&dumps) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(files(&dumps), 3, "the server has the message");
    assert_eq!(
        proxy.stats().frames_dropped,
        1,
        "one reply never reached the client"
    );
    assert!(!proxy.reply_lost_armed(), "one lost reply per arming");
    let _ = sink.kill();
    let _ = sink.wait();
}
