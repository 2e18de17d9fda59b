//! Benchmark: dlab's inbox against Postfix's `smtp-sink`, and the private
//! Postfix relay end to end, measured with Postfix's `smtp-source`.
//!
//! In one invocation: `smtp-source` (4 sessions) into `smtp-sink` and into
//! dlab's inbox (which commits an effect per message before its 250),
//! alternated, best of each (target: inbox >= 1.0 of smtp-sink); then
//! `smtp-source` into the private relay with dlab's inbox as the next hop,
//! timed until every message is an effect; and dlab's sender (mail-send, the
//! same 4 sessions, connections kept) into `smtp-sink` against `smtp-source -d`
//! (connections kept too; target >= 0.8). Nothing is asserted;
//! `cargo bench --bench smtp` runs it (as root, with Postfix installed).

use dlab::effects::EffectStore;
use dlab::relay::Relay;
use dlab::smtp::inbox::Inbox;
use dlab::smtp::sender::{send_all, SendPolicy};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const SESSIONS: &str = "4";

/// `smtp-source` with `SESSIONS` sessions; `reuse` (`-d`) keeps each
/// connection for many messages, as dlab's sender does.
fn source(to: SocketAddr, messages: u64, reuse: bool) -> f64 {
    let start = Instant::now();
    let out = Command::new("/usr/sbin/smtp-source")
        .args(if reuse { &["-d"][..] } else { &[][..] })
        .args([
            "-s",
            SESSIONS,
            "-m",
            &messages.to_string(),
            "-t",
            "phone@dlab.invalid",
            "-c",
        ])
        .arg(to.to_string())
        .output()
        .expect("smtp-source runs (scripts/install-deps installs postfix)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    messages as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let messages: u64 = std::env::var("DLAB_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("dlab-bench-smtp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sink_port = dlab::broker::free_port();
    let mut sink = Command::new("/usr/sbin/smtp-sink")
        .args(["-u", "nobody"])
        .arg(format!("127.0.0.1:{sink_port}"))
        .arg("256")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink runs");
    let sink_addr: SocketAddr = ([127, 0, 0, 1], sink_port).into();
    while std::net::TcpStream::connect(sink_addr).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let store = dir.join("effects.sqlite");
    EffectStore::create(&store).unwrap();
    let inbox = rt
        .block_on(Inbox::start(
            "127.0.0.1:0".parse().unwrap(),
            &store,
            false,
            0,
        ))
        .unwrap();
    println!("dlab bench smtp: {messages} messages, smtp-source with {SESSIONS} sessions, {ROUNDS} rounds, best of each");
    let (mut to_sink, mut to_inbox) = (0f64, 0f64);
    for _ in 0..ROUNDS {
        to_sink = to_sink.max(source(sink_addr, messages, false));
        to_inbox = to_inbox.max(source(inbox.addr(), messages, false));
    }
    let sessions: usize = SESSIONS.parse().unwrap();
    let (mut sender, mut reusing) = (0f64, 0f64);
    for round in 0..ROUNDS {
        reusing = reusing.max(source(sink_addr, messages, true));
        let run = format!("bench{round}");
        let start = Instant::now();
        let r = rt.block_on(send_all(
            sink_addr,
            &run,
            (0..messages).collect(),
            sessions,
            SendPolicy::SendOnce,
        ));
        assert_eq!(r.accepted, messages, "{r:?}");
        sender = sender.max(messages as f64 / start.elapsed().as_secs_f64());
    }
    println!("  smtp-source -> smtp-sink       {to_sink:>10.0} msg/s   (a connection per message)");
    println!("  smtp-source -d -> smtp-sink    {reusing:>10.0} msg/s   (connections kept, as the sender does)");
    println!("  dlab sender -> smtp-sink       {sender:>10.0} msg/s   ratio to smtp-source -d {:.3} (target >= 0.8)", sender / reusing);
    println!(
        "  smtp-source -> dlab inbox      {to_inbox:>10.0} msg/s   ratio {:.3} (target >= 1.0)",
        to_inbox / to_sink
    );

    let relayed = (messages / 10).max(100);
    let store2 = dir.join("relay-effects.sqlite");
    EffectStore::create(&store2).unwrap();
    let inbox2 = rt
        .block_on(Inbox::start(
            "127.0.0.1:0".parse().unwrap(),
            &store2,
            false,
            0,
        ))
        .unwrap();
    let relay = Relay::start(&dir.join("relay"), inbox2.addr())
        .expect("the private relay starts (root and postfix needed)");
    let start = Instant::now();
    source(relay.addr(), relayed, false);
    let accepted = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    while EffectStore::open(&store2).unwrap().recount().unwrap().0 < relayed
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let end_to_end = start.elapsed().as_secs_f64();
    println!(
        "  smtp-source -> Postfix relay   {:>10.0} msg/s accepted by the relay; {:>8.0} msg/s end to end into dlab inbox ({relayed} messages)",
        relayed as f64 / accepted,
        relayed as f64 / end_to_end
    );
    relay.remove();
    drop(inbox);
    drop(inbox2);
    let _ = sink.kill();
    let _ = sink.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
