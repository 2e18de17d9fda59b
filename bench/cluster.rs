//! Benchmark: dlab against a plain lapin loop on a three-node cluster.
//!
//! In one invocation, on one cluster dlab starts: a plain lapin
//! publish-and-consume loop (see `common::lapin_loop`) against member 0 with
//! a classic queue and with a quorum queue (three replicas), and dlab
//! at-least-once with `nodes = 3` for each queue type (clients spread over
//! the members as dlab places them). Rounds alternate; the best of each is
//! kept. Prints throughput, dlab's ratio to the loop for each queue type
//! (target >= 0.95) and the quorum/classic ratio of each. Nothing is
//! asserted; `cargo bench --bench cluster` runs it.

#[path = "common.rs"]
mod common;

use common::{lapin_loop, Bench};
use dlab::cluster::Cluster;
use dlab::runner::{self, RunContext};
use dlab::scenario::{self, Override, PartitionHandling, Plan};
use std::path::Path;
use std::sync::Arc;

const ROUNDS: usize = 2;

fn plan(root: &Path, messages: u64, queue_type: &str) -> Plan {
    let overrides: Vec<Override> = [
        format!("messages={messages}"),
        "nodes=3".into(),
        format!("queue_type={queue_type}"),
    ]
    .iter()
    .map(|o| Override::parse(o).unwrap())
    .collect();
    scenario::load(
        &root.join("scenarios").join("at-least-once.toml"),
        &overrides,
    )
    .unwrap()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let home = std::env::temp_dir().join(format!("dlab-bench-cluster-{}", std::process::id()));
    let cluster = Arc::new(
        rt.block_on(Cluster::start(
            &home.join("cluster"),
            3,
            PartitionHandling::PauseMinority,
            |m| eprintln!("{m}"),
        ))
        .expect("a three-node cluster forms (scripts/install-deps installs rabbitmq-server)"),
    );
    let url = cluster.urls()[0].clone();
    let messages = Bench::messages();
    let plans = [
        plan(root, messages, "classic"),
        plan(root, messages, "quorum"),
    ];
    let payload = plans[0].amqp().expect("AMQP").payload_bytes;
    let ctx = RunContext {
        cluster: Some(cluster.clone()),
        // Workers are the dlab binary, never this benchmark's.
        worker_exe: std::path::PathBuf::from(env!("CARGO_BIN_EXE_dlab")),
        ..RunContext::new(&home).unwrap()
    };
    println!("dlab bench cluster: three nodes, {messages} messages of {payload} B, {ROUNDS} rounds, best of each");
    let mut lapin = [0f64; 2];
    let mut dlab_rate = [0f64; 2];
    for _ in 0..ROUNDS {
        for (k, p) in plans.iter().enumerate() {
            lapin[k] = lapin[k].max(rt.block_on(lapin_loop(&url, messages, payload, k == 1)));
            let r = rt
                .block_on(runner::run(p, &ctx))
                .expect("the run completes");
            assert_eq!(
                (r.counts.lost, r.counts.duplicates),
                (0, 0),
                "a benchmark run lost or duplicated"
            );
            dlab_rate[k] = dlab_rate[k].max(r.throughput_per_s);
        }
    }
    for (k, name) in ["classic", "quorum"].into_iter().enumerate() {
        println!("  {name:<8} plain lapin loop {:>8.0} msg/s   dlab at-least-once {:>8.0} msg/s   ratio {:.3} (target >= 0.95)", lapin[k], dlab_rate[k], dlab_rate[k] / lapin[k]);
    }
    println!(
        "  quorum / classic: plain loop {:.3}, dlab {:.3}",
        lapin[1] / lapin[0],
        dlab_rate[1] / dlab_rate[0]
    );
    drop(ctx);
    cluster.retire();
    let _ = std::fs::remove_dir_all(&home);
}
