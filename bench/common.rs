//! What every benchmark shares: the broker (`DLAB_AMQP_URL`, or a private
//! node started for the benchmark and stopped after it) and a run context.

use dlab::broker::NodeState;
use dlab::runner::RunContext;
use std::path::PathBuf;
use std::time::Duration;

/// The broker a benchmark uses.
pub struct Bench {
    /// Its AMQP URL.
    pub url: String,
    /// Scratch space, removed at the end.
    pub home: PathBuf,
    node: Option<NodeState>,
}

impl Bench {
    /// Uses `DLAB_AMQP_URL`, or starts a private node.
    pub fn start(rt: &tokio::runtime::Runtime, name: &str) -> Bench {
        let home = std::env::temp_dir().join(format!("dlab-bench-{name}-{}", std::process::id()));
        let (url, node) = match std::env::var("DLAB_AMQP_URL") {
            Ok(u) => (u, None),
            Err(_) => {
                let state = rt
                    .block_on(dlab::broker::node::start(&home.join("node")))
                    .expect(
                        "a private node starts (scripts/install-deps installs rabbitmq-server)",
                    );
                (state.url(), Some(state))
            }
        };
        Bench { url, home, node }
    }

    /// A run context on this broker, workers from the dlab binary.
    pub fn context(&self, always_proxy: bool) -> RunContext {
        RunContext {
            home: self.home.clone(),
            worker_exe: PathBuf::from(env!("CARGO_BIN_EXE_dlab")),
            keep_queue: false,
            always_proxy,
            progress: false,
            // The benchmarks measure speed; the broker's own count is the tests'.
            amqp: Some(dlab::runner::AmqpTarget {
                url: self.url.clone(),
                node: None,
                management: None,
            }),
            relay: dlab::smtp::RelayTarget::Private,
            cancel: dlab::runner::Cancel::never(),
        }
    }

    /// Messages per measured run (`DLAB_BENCH_MESSAGES`, default 20,000).
    pub fn messages() -> u64 {
        std::env::var("DLAB_BENCH_MESSAGES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(state) = &self.node {
            dlab::broker::node::stop(state, Duration::from_secs(30));
        }
        let _ = std::fs::remove_dir_all(&self.home);
    }
}
