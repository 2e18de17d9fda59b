//! The private Postfix relay stores and forwards: with Postfix's own
//! `smtp-source` as the sender and `smtp-sink` as the next hop, messages sent
//! while the next hop is down wait in the relay's queue and are all delivered
//! once it is back; killed with SIGKILL mid-message, it starts again and
//! counts only what it accepted.

use crate::support::{dumps, smtp_sink, temp_dir, wait_for, TestRelay};
use dlab::relay::Relay;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
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
    let sink_dir = temp_dir("relay-sink");
    let port = dlab::broker::free_port();
    let next_hop = smtp_sink(&sink_dir, port);
    let relay = TestRelay::start(&temp_dir("relay"), ([127, 0, 0, 1], port).into());

    send(&relay, 20);
    // The relay has its 250 for all 20: none is in flight when the sink dies.
    wait_for("20 deliveries", 30, || {
        dumps(&sink_dir) == 20 && relay.queue_depth() == 0
    });

    drop(next_hop);
    send(&relay, 10);
    // The relay answered 250 for all ten: they wait in its queue on disk.
    wait_for("a queue", 10, || relay.queue_depth() >= 1);
    assert_eq!(
        dumps(&sink_dir),
        20,
        "nothing reached the next hop while it was down"
    );

    let _next_hop = smtp_sink(&sink_dir, port);
    wait_for("all 30 delivered and the queue empty", 60, || {
        dumps(&sink_dir) == 30 && relay.queue_depth() == 0
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
}

/// Reads one SMTP reply (the last line of a multi-line one) and checks its code.
fn expect_reply(from: &mut BufReader<TcpStream>, code: &str) {
    loop {
        let mut line = String::new();
        from.read_line(&mut line).unwrap();
        assert!(line.starts_with(code), "expected {code}, got {line:?}");
        if line.as_bytes().get(3) == Some(&b' ') {
            return;
        }
    }
}

/// Queue files that `cleanup` has not marked complete (no owner-execute bit).
fn unfinished(relay: &Relay) -> usize {
    std::fs::read_dir(relay.dir().join("spool").join("incoming"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.metadata().unwrap().permissions().mode() & 0o100 == 0)
        .count()
}

#[test]
fn a_relay_killed_mid_message_starts_again_and_counts_only_what_it_accepted() {
    let sink_dir = temp_dir("kill-sink");
    let port = dlab::broker::free_port();
    let _next_hop = smtp_sink(&sink_dir, port);
    let relay = TestRelay::start(&temp_dir("kill-relay"), ([127, 0, 0, 1], port).into());

    // A message cut off in the middle of DATA: `cleanup` has its queue file open.
    let stream = TcpStream::connect(relay.addr()).unwrap();
    let mut to = stream.try_clone().unwrap();
    let mut from = BufReader::new(stream);
    expect_reply(&mut from, "220");
    for (command, code) in [
        ("EHLO dlab.invalid", "250"),
        ("MAIL FROM:<dlab@dlab.invalid>", "250"),
        ("RCPT TO:<phone@dlab.invalid>", "250"),
        ("DATA", "354"),
    ] {
        write!(to, "{command}\r\n").unwrap();
        expect_reply(&mut from, code);
    }
    write!(to, "Subject: half\r\n\r\nhalf a message\r\n").unwrap();
    to.flush().unwrap();
    wait_for("cleanup's unfinished queue file", 10, || {
        unfinished(&relay) >= 1
    });
    assert_eq!(relay.queue_depth(), 0, "half a message is not in the queue");

    relay.kill();
    assert!(relay.master_pid().is_none(), "the master died");
    // What a `cleanup` killed between creating its file and naming it after
    // the queue ID leaves behind (seen after a real kill: `292749.14018`).
    // On start, `postsuper` warns about it, as `postfix`, into the log.
    let stray = relay.dir().join("spool/incoming/292749.14018");
    std::fs::write(&stray, "").unwrap();
    let incoming = std::fs::metadata(relay.dir().join("spool/incoming")).unwrap();
    std::os::unix::fs::chown(
        &stray,
        Some(std::os::unix::fs::MetadataExt::uid(&incoming)),
        None,
    )
    .unwrap();
    std::fs::set_permissions(&stray, std::fs::Permissions::from_mode(0o600)).unwrap();

    relay
        .launch()
        .expect("postfix start after SIGKILL, with the half-written files on disk");
    let log = std::fs::read_to_string(relay.log()).unwrap();
    assert!(
        log.contains("bogus file name"),
        "postsuper saw the stray file"
    );
    assert_eq!(relay.queue_depth(), 0, "nothing was accepted");

    send(&relay, 5);
    wait_for("5 delivered and the queue empty", 30, || {
        dumps(&sink_dir) == 5 && relay.queue_depth() == 0
    });
}
