//! The proxy's SMTP protocol point against Postfix's own test tools:
//! `smtp-source` sends through the proxy to `smtp-sink`, and the reply to the
//! final "." is lost (RFC 1047): the sink has the message, the sender does not
//! know it.

use crate::support::{dumps, smtp_sink, temp_dir, wait_for};
use dlab::proxy::{Protocol, Proxy};
use std::process::Command;

#[test]
fn reply_lost_after_dot_leaves_the_message_with_the_server_and_the_client_in_doubt() {
    let sink_dir = temp_dir("sink");
    let port = dlab::broker::free_port();
    let _sink = smtp_sink(&sink_dir, port);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = format!("127.0.0.1:{port}").parse().unwrap();
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
    wait_for("two messages at the sink", 10, || dumps(&sink_dir) == 2);

    proxy.arm_reply_lost(true);
    let out = source("1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() || stderr.contains("lost"),
        "the sender saw its connection end without a reply: {stderr}"
    );
    wait_for("the server to have the message", 10, || {
        dumps(&sink_dir) == 3
    });
    assert_eq!(
        proxy.stats().frames_dropped,
        1,
        "one reply never reached the client"
    );
    assert!(!proxy.reply_lost_armed(), "one lost reply per arming");
}
