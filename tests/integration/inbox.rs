//! dlab's inbox as a real SMTP peer: Postfix's `smtp-source` sends to it
//! directly and through the private Postfix relay, and every accepted message
//! is one effect in the effect store; the idempotent inbox suppresses a
//! Message-ID it has seen.

use crate::support::{temp_dir, wait_for, TestRelay};
use dlab::effects::EffectStore;
use dlab::smtp::inbox::Inbox;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn source(to: SocketAddr, messages: u32) {
    let out = Command::new("/usr/sbin/smtp-source")
        .args([
            "-m",
            &messages.to_string(),
            "-s",
            "2",
            "-t",
            "phone@dlab.invalid",
            "-c",
        ])
        .arg(to.to_string())
        .output()
        .expect("Postfix's smtp-source runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rows(store: &Path) -> (u64, u64) {
    EffectStore::open(store).unwrap().recount().unwrap()
}

fn new_store(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("effects.sqlite");
    EffectStore::create(&path).unwrap();
    path
}

#[test]
fn every_message_smtp_source_sends_is_one_effect() {
    let dir = temp_dir("inbox");
    let store = new_store(&dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let inbox = rt
        .block_on(Inbox::start(
            "127.0.0.1:0".parse().unwrap(),
            &store,
            false,
            0,
        ))
        .unwrap();
    source(inbox.addr(), 50);
    assert_eq!(inbox.stats().accepted.load(Ordering::Relaxed), 50);
    assert_eq!(
        inbox.stats().without_id.load(Ordering::Relaxed),
        0,
        "smtp-source sends a Message-Id"
    );
    assert_eq!(rows(&store), (50, 50));
}

#[test]
fn through_the_relay_a_downed_inbox_misses_nothing() {
    let dir = temp_dir("inbox-relay");
    let store = new_store(&dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = dlab::broker::free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let inbox = rt.block_on(Inbox::start(addr, &store, true, 0)).unwrap();
    let relay = TestRelay::start(&dir.join("relay"), addr);
    source(relay.addr(), 20);
    wait_for("20 effects", 30, || rows(&store).0 == 20);

    drop(inbox);
    source(relay.addr(), 10);
    wait_for("the relay to hold them", 15, || relay.queue_depth() >= 1);
    assert_eq!(
        rows(&store).0,
        20,
        "nothing is shown while the phone is off"
    );

    let _inbox = rt.block_on(Inbox::start(addr, &store, true, 0)).unwrap();
    wait_for("all 30 shown and the relay's queue empty", 60, || {
        rows(&store) == (30, 30) && relay.queue_depth() == 0
    });
    let log = std::fs::read_to_string(relay.log()).unwrap();
    assert_eq!(
        log.matches("status=sent").count(),
        30,
        "Postfix's log agrees"
    );
}

async fn send_raw(addr: SocketAddr, message_id: &str) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r).lines();
    let mut last = String::new();
    r.next_line().await.unwrap();
    for cmd in [
        "EHLO t\r\n",
        "MAIL FROM:<a@t>\r\n",
        "RCPT TO:<b@t>\r\n",
        "DATA\r\n",
    ] {
        w.write_all(cmd.as_bytes()).await.unwrap();
        loop {
            last = r.next_line().await.unwrap().unwrap();
            if last.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    }
    assert!(last.starts_with("354"), "{last}");
    let body = format!("Message-ID: <{message_id}>\r\nSubject: café\r\n\r\nBonjour, ça va ?\r\n..\r\n.\r\nQUIT\r\n");
    w.write_all(body.as_bytes()).await.unwrap();
    r.next_line().await.unwrap().unwrap()
}

#[test]
fn the_idempotent_inbox_shows_a_message_id_once_and_takes_utf8() {
    let dir = temp_dir("inbox-once");
    let store = new_store(&dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let inbox = rt
        .block_on(Inbox::start(
            "127.0.0.1:0".parse().unwrap(),
            &store,
            true,
            0,
        ))
        .unwrap();
    for _ in 0..2 {
        let reply = rt.block_on(send_raw(inbox.addr(), "run-7@dlab"));
        assert!(reply.starts_with("250"), "{reply}");
    }
    assert_eq!(rows(&store), (1, 1));
    assert_eq!(inbox.stats().suppressed.load(Ordering::Relaxed), 1);
    assert_eq!(inbox.stats().eight_bit.load(Ordering::Relaxed), 2);
    assert_eq!(
        inbox.stats().not_utf8.load(Ordering::Relaxed),
        0,
        "the text arrived intact"
    );
}

#[test]
fn the_sender_delivers_each_notification_once_with_its_message_id_through_the_relay() {
    use dlab::smtp::sender::{send_all, SendPolicy};
    let dir = temp_dir("sender");
    let store = new_store(&dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let inbox = rt
        .block_on(Inbox::start(
            "127.0.0.1:0".parse().unwrap(),
            &store,
            false,
            0,
        ))
        .unwrap();
    let run = dlab::message_id::new_run_id();

    // Straight into the inbox.
    let report = rt.block_on(send_all(
        inbox.addr(),
        &run,
        (0..300).collect(),
        2,
        SendPolicy::Retry,
    ));
    assert_eq!(
        (report.attempts, report.accepted, report.in_doubt),
        (300, 300, 0)
    );
    assert_eq!(rows(&store), (300, 300));
    assert_eq!(
        inbox.stats().not_utf8.load(Ordering::Relaxed),
        0,
        "non-ASCII text arrived intact"
    );
    assert_eq!(
        inbox.stats().eight_bit.load(Ordering::Relaxed),
        0,
        "mail-send encodes it as 7-bit MIME"
    );

    // Through the private Postfix relay.
    let relay = TestRelay::start(&dir.join("relay"), inbox.addr());
    let report = rt.block_on(send_all(
        relay.addr(),
        &run,
        (300..400).collect(),
        2,
        SendPolicy::SendOnce,
    ));
    assert_eq!(report.accepted, 100);
    wait_for("100 more effects", 60, || rows(&store) == (400, 400));
    let mut ids = Vec::new();
    EffectStore::open(&store)
        .unwrap()
        .scan(|id, _, _| ids.push(id.to_string()))
        .unwrap();
    let mut seqs: Vec<u64> = ids
        .iter()
        .map(|id| dlab::message_id::parse(&run, id).expect("our Message-ID"))
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..400).collect::<Vec<_>>());
}

/// A raw SMTP client over TCP for the size and line-length tests; every read
/// has a deadline, so an inbox that keeps waiting fails the test.
struct Raw {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let (r, w) = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap()
            .into_split();
        let mut raw = Raw {
            r: BufReader::new(r),
            w,
        };
        assert!(raw.reply().await.starts_with("220"));
        raw
    }

    /// The last line of the next reply ("" when the inbox closed).
    async fn reply(&mut self) -> String {
        let read = async {
            loop {
                let mut line = String::new();
                if self.r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return String::new();
                }
                let last = line.trim_end().to_string();
                if last.as_bytes().get(3) != Some(&b'-') {
                    return last;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), read)
            .await
            .expect("the inbox replies within 30 s")
    }

    async fn send(&mut self, bytes: &[u8]) -> String {
        self.w.write_all(bytes).await.unwrap();
        self.reply().await
    }

    /// Whether the inbox closed the connection (EOF within the deadline).
    async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        let read = tokio::io::AsyncReadExt::read_to_end(&mut self.r, &mut rest);
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(30), read).await,
            Ok(Ok(_)) | Ok(Err(_))
        )
    }
}

fn new_inbox(rt: &tokio::runtime::Runtime, store: &Path) -> Inbox {
    rt.block_on(Inbox::start(
        "127.0.0.1:0".parse().unwrap(),
        store,
        false,
        0,
    ))
    .unwrap()
}

#[test]
fn a_message_over_the_advertised_size_gets_552_and_no_effect() {
    use dlab::smtp::inbox::MAX_SIZE;
    let dir = temp_dir("inbox-size");
    let store = new_store(&dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let inbox = new_inbox(&rt, &store);
    rt.block_on(async {
        let mut c = Raw::connect(inbox.addr()).await;
        assert!(c.send(b"EHLO t\r\n").await.contains("SIZE 10485760"));
        // Declared too big: refused at once.
        let over = format!("MAIL FROM:<a@t> SIZE={}\r\n", MAX_SIZE + 1);
        let reply = c.send(over.as_bytes()).await;
        assert!(reply.starts_with("552"), "{reply}");
        let reply = c.send(b"RCPT TO:<b@t>\r\n").await;
        assert!(
            reply.starts_with("503"),
            "no transaction after a 552: {reply}"
        );

        // Declared within the limit, but larger on the wire: read to the
        // final dot, refused with 552, nothing recorded.
        let within = format!("MAIL FROM:<a@t> SIZE={MAX_SIZE}\r\n");
        assert!(c.send(within.as_bytes()).await.starts_with("250"));
        assert!(c.send(b"RCPT TO:<b@t>\r\n").await.starts_with("250"));
        assert!(c.send(b"DATA\r\n").await.starts_with("354"));
        let line = format!("{}\r\n", "x".repeat(998));
        let mut big = b"Message-ID: <too-big@t>\r\n\r\n".to_vec();
        while big.len() <= MAX_SIZE + 1000 {
            big.extend_from_slice(line.as_bytes());
        }
        big.extend_from_slice(b".\r\n");
        let reply = c.send(&big).await;
        assert!(reply.starts_with("552"), "{reply}");

        // The session is still in step: a small message is taken.
        for cmd in ["MAIL FROM:<a@t>\r\n", "RCPT TO:<b@t>\r\n"] {
            assert!(c.send(cmd.as_bytes()).await.starts_with("250"));
        }
        assert!(c.send(b"DATA\r\n").await.starts_with("354"));
        let reply = c.send(b"Message-ID: <small@t>\r\n\r\nhello\r\n.\r\n").await;
        assert!(reply.starts_with("250"), "{reply}");
    });
    assert_eq!(rows(&store), (1, 1), "only the small message is an effect");
    assert_eq!(inbox.stats().accepted.load(Ordering::Relaxed), 1);
}

#[test]
fn a_line_without_an_end_closes_the_session_with_an_error_and_no_effect() {
    use dlab::smtp::inbox::MAX_LINE;
    let dir = temp_dir("inbox-line");
    let store = new_store(&dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let inbox = new_inbox(&rt, &store);
    let endless = vec![b'a'; 16 * MAX_LINE];
    rt.block_on(async {
        // A command line.
        let mut c = Raw::connect(inbox.addr()).await;
        let reply = c.send(&endless).await;
        assert!(reply.starts_with("500"), "{reply}");
        assert!(c.closed().await, "the inbox closed the session");

        // A line of message text.
        let mut c = Raw::connect(inbox.addr()).await;
        for cmd in ["EHLO t\r\n", "MAIL FROM:<a@t>\r\n", "RCPT TO:<b@t>\r\n"] {
            assert!(c.send(cmd.as_bytes()).await.starts_with("250"));
        }
        assert!(c.send(b"DATA\r\n").await.starts_with("354"));
        let mut text = b"Message-ID: <endless@t>\r\n\r\n".to_vec();
        text.extend_from_slice(&endless);
        let reply = c.send(&text).await;
        assert!(reply.starts_with("500"), "{reply}");
        assert!(c.closed().await, "the inbox closed the session");
    });
    assert_eq!(rows(&store), (0, 0));
    assert_eq!(inbox.stats().accepted.load(Ordering::Relaxed), 0);
}
