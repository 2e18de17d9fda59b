//! The worker host: producers and consumers run as their own OS processes
//! (`dlab worker`, spawned by the runner) so that a crash is a real abort.
//! The host knows no transport: it reads the plan, sets the process up and
//! calls the [`Entry`] of the transport named on its command line
//! (registered in `src/runner/mod.rs`), which parses its own arguments.
//!
//! Architecture invariant: nothing a guarantee depends on lives only in a
//! worker's memory. It is in the broker or in the effect store; the worker's
//! stdout is the runner's instrument ([`wire`]), not state.

mod emit;
pub mod wire;

pub use emit::Emitter;

use crate::scenario::Plan;
use std::path::PathBuf;

/// Exit code of a worker whose connection to the broker was lost; the runner restarts it.
pub const EXIT_CONNECTION_LOST: i32 = 75;
/// Exit code of a worker whose runner went away.
pub const EXIT_RUNNER_GONE: i32 = 76;
/// Exit code of a worker that could not start (bad arguments, unreadable plan).
pub const EXIT_SETUP: i32 = 77;

/// Which side a worker plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Publishes messages.
    Producer,
    /// Receives deliveries and applies effects.
    Consumer,
}

/// What every worker process gets on its command line; what follows `--`
/// belongs to its transport, which parses it itself.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// The transport whose worker this is (`amqp`).
    #[arg(long)]
    pub transport: String,
    /// Producer or consumer.
    #[arg(long, value_enum)]
    pub role: Role,
    /// 0-based index among workers of the same role.
    #[arg(long)]
    pub index: u32,
    /// The plan as JSON, written by the runner.
    #[arg(long)]
    pub plan: PathBuf,
    /// The run ID that prefixes message IDs.
    #[arg(long)]
    pub run_id: String,
    /// The transport's own arguments.
    #[arg(last = true)]
    pub transport_args: Vec<String>,
}

/// What the host hands a transport's worker.
pub struct Host {
    /// Producer or consumer.
    pub role: Role,
    /// 0-based index among workers of the same role.
    pub index: u32,
    /// The plan.
    pub plan: Plan,
    /// The run ID that prefixes message IDs.
    pub run_id: String,
    /// The transport's own arguments (after `--`).
    pub args: Vec<String>,
    /// Turns true when the runner closes the worker's stdin: finish and exit.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

/// A transport's worker: runs to completion and returns the exit code.
pub type Entry = fn(Host) -> std::pin::Pin<Box<dyn std::future::Future<Output = i32>>>;

/// Aborts the process on the spot: no unwinding, no destructors, no flushing
/// of anything but what was already written. Core dumps are disabled at
/// worker start so that a deliberate abort leaves no core file behind.
pub fn abort_now() -> ! {
    std::process::abort()
}

fn disable_core_dumps() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit with a valid, initialised struct has no memory-safety preconditions.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
    }
}

/// Runs a worker of the transport `entry` finds for `args.transport` to
/// completion and returns its exit code.
pub fn main(args: WorkerArgs, entry: fn(&str) -> Option<Entry>) -> i32 {
    disable_core_dumps();
    let Some(worker) = entry(&args.transport) else {
        eprintln!("dlab worker: no worker for transport {:?}", args.transport);
        return EXIT_SETUP;
    };
    let plan: Plan = match std::fs::read(&args.plan)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "dlab worker: cannot read the plan {}: {e}",
                args.plan.display()
            );
            return EXIT_SETUP;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dlab worker: cannot start the async runtime: {e}");
            return EXIT_SETUP;
        }
    };
    let code = runtime.block_on(async move {
        worker(Host {
            role: args.role,
            index: args.index,
            plan,
            run_id: args.run_id,
            args: args.transport_args,
            stop: stop_signal(),
        })
        .await
    });
    // The stdin reader sits in a blocking read; do not wait for it.
    runtime.shutdown_background();
    code
}

/// A receiver that turns true when the runner closes the worker's stdin.
fn stop_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        let _ = tx.send(true);
    });
    rx
}
