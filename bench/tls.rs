//! Benchmark: what TLS costs per hop, in one invocation.
//!
//! Throughput, TLS against plain, on long-lived connections: AMQP
//! at-least-once (amqps to the private node's TLS listener against its plain
//! one), SMTP end to end through the private relay (STARTTLS on both hops;
//! the relay reuses its TLS connections to the inbox, but its delivery
//! agents open new ones when several deliver at once) and the push
//! gateway's hop alone (dlab's consumer-side client, keep-alive, HTTPS
//! against HTTP); the whole push run is shown too, but `tls` puts both of
//! its hops (broker and gateway) under TLS, so its ratio is their product.
//! Rounds alternate; the best of each is kept. Targets: each TLS / plain >= 0.8.
//!
//! Handshake latency p50/p99 against the real servers: a full handshake (a
//! fresh client configuration each time) and a resumed one (one client
//! configuration, so rustls resumes the server's TLS 1.3 session): TCP
//! connect and TLS to the broker's TLS port and to the push gateway, and
//! connect, greeting, EHLO, STARTTLS and TLS to dlab's inbox. Nothing is
//! asserted; `cargo bench --bench tls` runs it (as root, with Postfix and
//! RabbitMQ installed).

#[path = "common.rs"]
mod common;

use common::Bench;
use dlab::broker::Node;
use dlab::metrics::{new_histogram, LatencySummary};
use dlab::scenario::{self, Override, Plan};
use dlab::smtp::inbox::Inbox;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const ROUNDS: usize = 2;
const HANDSHAKES: usize = 300;

/// A shipped scenario with `set` applied and without its eavesdropper (and
/// so without the expectations on what it reads): the bench measures the
/// hops, not the tap's copy.
fn load(root: &Path, name: &str, set: &[String]) -> Plan {
    let o: Vec<Override> = set.iter().map(|s| Override::parse(s).unwrap()).collect();
    let mut plan = scenario::load(&root.join("scenarios").join(name), &o).unwrap();
    plan.eavesdropper = false;
    plan.expect.max_ids_read = None;
    plan.expect.min_ids_read = None;
    plan
}

/// Best throughput of `plain` and `tls` over `ROUNDS` alternated rounds.
fn compare(
    rt: &tokio::runtime::Runtime,
    ctx: &dlab::runner::RunContext,
    plain: &Plan,
    tls: &Plan,
) -> (f64, f64) {
    let mut best = (0f64, 0f64);
    for _ in 0..ROUNDS {
        for (k, plan) in [plain, tls].into_iter().enumerate() {
            let r = rt
                .block_on(dlab::runner::run(plan, ctx))
                .expect("the run completes");
            assert_eq!(r.counts.lost, 0, "a benchmark run lost messages");
            let slot = if k == 0 { &mut best.0 } else { &mut best.1 };
            *slot = slot.max(r.throughput_per_s);
        }
    }
    best
}

/// One handshake to `addr` (after SMTP's dialogue up to STARTTLS when
/// `starttls`), in microseconds.
async fn handshake(addr: SocketAddr, starttls: bool, config: Arc<rustls::ClientConfig>) -> u64 {
    let start = Instant::now();
    let mut stream = BufReader::new(TcpStream::connect(addr).await.unwrap());
    if starttls {
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap(); // greeting
        stream.get_mut().write_all(b"EHLO bench\r\n").await.unwrap();
        loop {
            line.clear();
            stream.read_line(&mut line).await.unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        stream.get_mut().write_all(b"STARTTLS\r\n").await.unwrap();
        line.clear();
        stream.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("220"), "{line}");
    }
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream.into_inner())
        .await
        .expect("the handshake completes");
    let us = start.elapsed().as_micros() as u64;
    // TLS 1.3 sends its session tickets after the handshake: read them (the
    // server says nothing more first) so the next handshake can resume.
    let mut tls = tls;
    let mut buf = [0u8; 64];
    let _ = tokio::time::timeout(
        std::time::Duration::from_millis(20),
        tokio::io::AsyncReadExt::read(&mut tls, &mut buf),
    )
    .await;
    us.max(1)
}

/// p50/p99 of `HANDSHAKES` full handshakes and as many resumed ones.
async fn handshakes(
    addr: SocketAddr,
    starttls: bool,
    ca: &Path,
) -> (LatencySummary, LatencySummary) {
    let config = || Arc::new(dlab::tls::client_config(ca, None).unwrap());
    let (mut full, mut resumed) = (new_histogram(), new_histogram());
    let shared = config();
    let _ = handshake(addr, starttls, shared.clone()).await; // the session to resume
    for _ in 0..HANDSHAKES {
        let _ = full.record(handshake(addr, starttls, config()).await);
        let _ = resumed.record(handshake(addr, starttls, shared.clone()).await);
    }
    (LatencySummary::of(&full), LatencySummary::of(&resumed))
}

/// Notifications per second that `CALLERS` keep-alive clients of dlab's
/// push client get shown by the gateway at `url` (`tls`: HTTPS).
async fn push_hop(url: String, tls: Option<rustls::ClientConfig>, n: usize) -> f64 {
    const CALLERS: usize = 4;
    let settings = dlab::push::client::Settings {
        timeout: std::time::Duration::from_secs(10),
        backoff: std::time::Duration::from_millis(10),
        max_backoff: std::time::Duration::from_millis(100),
        attempts: 3,
    };
    let calling = dlab::push::client::Calling {
        retry: true,
        key: true,
    };
    // Each call's IDs are new to the gateway, which keeps every key it saw.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|c| {
            let client =
                dlab::push::client::PushClient::new(&url, settings, c as u32, tls.clone()).unwrap();
            tokio::spawn(async move {
                for i in (c..n).step_by(CALLERS) {
                    let id = format!("bench-{call}-{i}");
                    let shown = client.show(&id, calling, |_| {}).await;
                    assert_eq!(shown, Some(true), "the gateway shows each once");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::remove_var("DLAB_AMQP_URL"); // TLS needs the node this benchmark starts
    let bench = Bench::start(&rt, "tls");
    let state = bench.node().expect("a private node").clone();
    let mut ctx = bench.context(false);
    if let Some(a) = ctx.amqp.as_mut() {
        a.node = Some(Node::new(state.clone()));
    }
    let messages = Bench::messages();
    let n = format!("messages={messages}");
    let small = format!("messages={}", (messages / 10).max(500));
    println!("dlab bench tls: {ROUNDS} rounds, best of each; {HANDSHAKES} handshakes of each kind");
    let rows = [
        ("AMQP at-least-once", "at-least-once.toml", n.clone()),
        (
            "SMTP end to end",
            "eavesdrop-smtp-starttls.toml",
            small.clone(),
        ),
        (
            "push run, both hops",
            "eavesdrop-push-https.toml",
            n.clone(),
        ),
    ];
    for (what, file, count) in rows {
        let set = |tls: &str| vec![count.clone(), format!("tls={tls}")];
        let (plain, tls) = (load(root, file, &set("off")), load(root, file, &set("on")));
        let (p, t) = compare(&rt, &ctx, &plain, &tls);
        println!(
            "  {what:<20} plain {p:>8.0} msg/s   TLS {t:>8.0} msg/s   TLS / plain {:.3} (target >= 0.8)",
            t / p
        );
    }
    let dir = state.tls_dir();
    let ca = dir.join("ca.pem");
    let amqps: SocketAddr = state
        .tls_url()
        .and_then(|u| u.split('@').nth(1)?.split('/').next()?.parse().ok())
        .expect("the node's TLS listener");
    let inbox = rt.block_on(async {
        let store = bench.home.join("inbox.sqlite");
        let inbox = Inbox::start(SocketAddr::from(([127, 0, 0, 1], 0)), &store, false, 0)
            .await
            .unwrap();
        let config = dlab::tls::server_config(&dlab::tls::server_identity(&dir), None).unwrap();
        inbox.offer_starttls(Arc::new(config), false);
        inbox
    });
    let gateway = |tls: Option<rustls::ServerConfig>| {
        rt.block_on(dlab::push::gateway::Gateway::start(
            dlab::push::gateway::GatewayConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                store: None,
                key_ttl: std::time::Duration::from_secs(60),
                key_store: dlab::push::keys::KeyStore::Memory,
                access_log: None,
                tls: tls.map(Arc::new),
            },
        ))
        .unwrap()
    };
    let plain_gateway = gateway(None);
    let gateway = gateway(Some(
        dlab::tls::server_config(&dlab::tls::server_identity(&dir), None).unwrap(),
    ));
    let client_tls = dlab::tls::client_config(&ca, None).unwrap();
    let (mut p, mut t) = (0f64, 0f64);
    for _ in 0..ROUNDS {
        let url = format!("http://{}/v1/push", plain_gateway.addr());
        p = p.max(rt.block_on(push_hop(url, None, messages as usize)));
        let url = format!("https://localhost:{}/v1/push", gateway.addr().port());
        t = t.max(rt.block_on(push_hop(url, Some(client_tls.clone()), messages as usize)));
    }
    println!(
        "  {:<20} plain {p:>8.0} msg/s   TLS {t:>8.0} msg/s   TLS / plain {:.3} (target >= 0.8; 4 keep-alive clients, the gateway's hop alone)",
        "push gateway hop",
        t / p
    );
    for (what, addr, starttls) in [
        ("broker (amqps)", amqps, false),
        ("inbox (STARTTLS)", inbox.addr(), true),
        ("push gateway (HTTPS)", gateway.addr(), false),
    ] {
        let (full, resumed) = rt.block_on(handshakes(addr, starttls, &ca));
        println!(
            "  handshake {what:<22} full p50 {:.2} ms p99 {:.2} ms   resumed p50 {:.2} ms p99 {:.2} ms",
            ms(full.p50_us),
            ms(full.p99_us),
            ms(resumed.p50_us),
            ms(resumed.p99_us)
        );
    }
}
