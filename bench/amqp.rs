//! Benchmark: dlab against a plain lapin loop on the same broker.
//!
//! In one invocation: a plain lapin publish-and-consume loop (publisher
//! confirms with 256 in flight, durable queue, persistent messages of the
//! same size, manual acks) as the baseline; dlab at-least-once and dlab
//! exactly-once with no fault. Rounds alternate; the best of each is kept.
//! Prints throughput, ratios (targets: at-least-once >= 0.95 of the loop,
//! exactly-once >= 0.8 of at-least-once) and latency percentiles. Nothing is
//! asserted; `cargo bench --bench amqp` runs it.

#[path = "common.rs"]
mod common;

use common::{lapin_loop, Bench};
use dlab::report::RunResult;
use dlab::runner;
use dlab::scenario::{self, Override, Plan};
use std::path::Path;

const ROUNDS: usize = 3;

fn load(root: &Path, name: &str, messages: u64) -> Plan {
    let overrides = [Override::parse(&format!("messages={messages}")).unwrap()];
    scenario::load(&root.join("scenarios").join(name), &overrides).unwrap()
}

fn latency(r: &RunResult) -> String {
    let l = &r.latency.end_to_end;
    format!(
        "end-to-end p50 {:.1} ms p99 {:.1} ms p99.9 {:.1} ms ({} samples)",
        l.p50_us as f64 / 1000.0,
        l.p99_us as f64 / 1000.0,
        l.p999_us as f64 / 1000.0,
        l.samples
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bench = Bench::start(&rt, "amqp");
    let messages = Bench::messages();
    let alo = load(root, "at-least-once.toml", messages);
    let eo = load(root, "exactly-once.toml", messages);
    let payload_bytes = alo.amqp().expect("an AMQP scenario").payload_bytes;
    println!(
        "dlab bench amqp: {messages} messages of {} B, {ROUNDS} rounds, best of each",
        payload_bytes
    );
    let mut baseline = 0f64;
    let mut best: [(f64, Option<RunResult>); 2] = [(0.0, None), (0.0, None)];
    for _ in 0..ROUNDS {
        baseline =
            baseline.max(rt.block_on(lapin_loop(&bench.url, messages, payload_bytes, false)));
        for (k, plan) in [&alo, &eo].into_iter().enumerate() {
            let r = rt
                .block_on(runner::run(plan, &bench.context(false)))
                .expect("the run completes");
            assert_eq!(
                (r.counts.lost, r.counts.duplicates),
                (0, 0),
                "a benchmark run lost or duplicated"
            );
            if r.throughput_per_s > best[k].0 {
                best[k] = (r.throughput_per_s, Some(r));
            }
        }
    }
    let (alo_rate, alo_run) = (best[0].0, best[0].1.take().unwrap());
    let (eo_rate, eo_run) = (best[1].0, best[1].1.take().unwrap());
    println!("  plain lapin loop (baseline)    {baseline:>10.0} msg/s");
    println!("  dlab at-least-once             {alo_rate:>10.0} msg/s   ratio to baseline {:.3} (target >= 0.95)   {}", alo_rate / baseline, latency(&alo_run));
    println!("  dlab exactly-once              {eo_rate:>10.0} msg/s   ratio to at-least-once {:.3} (target >= 0.8)   {}", eo_rate / alo_rate, latency(&eo_run));
}
