//! Benchmark: what the fault proxy costs with no fault active.
//!
//! In one invocation, against one broker: a dlab at-least-once run connected
//! directly and the same run through the proxies, alternated, best of each;
//! and raw TCP bulk transfer to a local sink, direct and through the proxy
//! (the idle proxy moves it socket to socket with splice(2); the share that
//! went that way is printed). Prints throughputs and the ratios (targets:
//! the AMQP workload at least 0.95, bulk at least 0.8). Nothing here is
//! asserted; `cargo bench --bench proxy` runs it.

#[path = "common.rs"]
mod common;

use common::Bench;
use dlab::proxy::{Protocol, Proxy};
use dlab::runner;
use dlab::scenario::{self, Override};
use std::path::Path;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ROUNDS: usize = 3;

async fn tcp_throughput(addr: std::net::SocketAddr, bytes: usize) -> f64 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let start = Instant::now();
    let mut sent = 0;
    while sent < bytes {
        s.write_all(&chunk).await.unwrap();
        sent += chunk.len();
    }
    s.shutdown().await.unwrap();
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack).await.unwrap();
    sent as f64 / start.elapsed().as_secs_f64() / 1e6
}

async fn sink() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut n = 0u64;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k as u64,
                    }
                }
                let _ = s.write_all(&n.to_be_bytes()).await;
            });
        }
    });
    addr
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bench = Bench::start(&rt, "proxy");
    let overrides = [Override::parse(&format!("messages={}", Bench::messages())).unwrap()];
    let plan = scenario::load(&root.join("scenarios/at-least-once.toml"), &overrides).unwrap();
    println!(
        "dlab bench proxy: {} messages of {} B, at-least-once, {ROUNDS} rounds each, best of each",
        plan.messages,
        plan.amqp().expect("an AMQP scenario").payload_bytes
    );
    let (mut direct, mut proxied) = (0f64, 0f64);
    for _ in 0..ROUNDS {
        for (always, best) in [(false, &mut direct), (true, &mut proxied)] {
            let r = rt
                .block_on(runner::run(&plan, &bench.context(always)))
                .expect("the run completes");
            assert_eq!(r.counts.lost, 0, "a benchmark run lost messages");
            *best = best.max(r.steady_throughput_per_s);
        }
    }
    println!("  AMQP end to end, direct        {direct:>10.0} msg/s (steady)");
    println!(
        "  AMQP end to end, via proxy     {proxied:>10.0} msg/s   ratio {:.3} (target >= 0.95)",
        proxied / direct
    );
    let (tcp_direct, tcp_proxied, zero_copy) = rt.block_on(async {
        let target = sink().await;
        let proxy = Proxy::start(target, Protocol::Amqp, 1).await.unwrap();
        let bytes = 512 * 1024 * 1024;
        let (mut d, mut p) = (0f64, 0f64);
        for _ in 0..ROUNDS {
            d = d.max(tcp_throughput(target, bytes).await);
            p = p.max(tcp_throughput(proxy.addr(), bytes).await);
        }
        let s = proxy.stats();
        (
            d,
            p,
            s.bytes_zero_copy as f64 / s.bytes_forwarded.max(1) as f64,
        )
    });
    println!("  TCP bulk, direct               {tcp_direct:>10.0} MB/s");
    println!(
        "  TCP bulk, via proxy            {tcp_proxied:>10.0} MB/s   ratio {:.3} (target >= 0.8; {:.1}% of the bytes spliced)",
        tcp_proxied / tcp_direct,
        zero_copy * 100.0
    );
}
