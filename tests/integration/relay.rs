//! The private Postfix relay stores and forwards: with Postfix's own
//! `smtp-source` as the sender and `smtp-sink` as the next hop, messages sent
//! while the next hop is down wait in the relay's queue and are all delivered
//! once it is back.

use crate::support::{files, smtp_sink, temp_dir, wait_for};
use dlab::relay::Relay;
use std::process::Command;

fn send(relay: &Relay, messages: u32) {
    let out = Command::new("/usr/sbin/smtp-source")
        .args([
            "-m",
            &messages.to_string(),
            "-t",
            "phone@dlab.invalid",
            "-c",
        ])
        .arg(relay.addr().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_relay_keeps_what_it_accepted_while_the_next_hop_is_down_and_delivers_it_after() {
    let dumps = temp_dir("relay-sink");
    let port = dlab::broker::free_port();
    let mut next_hop = smtp_sink(&dumps, port);
    let relay = Relay::start(&temp_dir("relay"), ([127, 0, 0, 1], port).into())
        .expect("the private Postfix relay starts");

    send(&relay, 20);
    wait_for("20 deliveries", 30, || files(&dumps) == 20);

    next_hop.kill().unwrap();
    next_hop.wait().unwrap();
    send(&relay, 10);
    // The relay answered 250 for all ten: they wait in its queue on disk.
    wait_for("a queue", 10, || relay.queue_depth() >= 1);
    assert_eq!(
        files(&dumps),
        20,
        "nothing reached the next hop while it was down"
    );

    let mut next_hop = smtp_sink(&dumps, port);
    wait_for("all 30 delivered and the queue empty", 60, || {
        files(&dumps) == 30 && relay.queue_depth() == 0
    });
    let log = std::fs::read_to_string(relay.log()).unwrap();
    assert_eq!(
        log.matches("status=sent").count(),
        30,
        "Postfix's own log counts 30 deliveries"
    );
    assert!(
        log.contains("status=deferred"),
        "and shows the deferrals while the next hop was down"
    );
    relay.remove();
    let _ = next_hop.kill();
    let _ = next_hop.wait();
}
