//! Worker processes: producers and consumers run as their own OS processes
//! (`dlab worker`, spawned by the runner) so that a crash is a real abort.
//!
//! Architecture invariant: nothing a guarantee depends on lives only in a
//! worker's memory. It is in the broker or in the effect store; the worker's
//! stdout is the runner's instrument ([`wire`]), not state.

mod emit;
pub mod wire;

pub use emit::Emitter;

use crate::amqp;
use crate::scenario::{CrashPoint, Plan};
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

/// Everything a worker process needs, passed on its command line.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Producer or consumer.
    #[arg(long, value_enum)]
    pub role: Role,
    /// 0-based index among workers of the same role.
    #[arg(long)]
    pub index: u32,
    /// The plan as JSON, written by the runner.
    #[arg(long)]
    pub plan: PathBuf,
    /// The broker.
    #[arg(long)]
    pub amqp_url: String,
    /// The queue the run uses.
    #[arg(long)]
    pub queue: String,
    /// The run ID that prefixes message IDs.
    #[arg(long)]
    pub run_id: String,
    /// The effect store file (consumers).
    #[arg(long)]
    pub effect_store: Option<PathBuf>,
    /// The producer's append-only send log (what it sent and saw confirmed).
    #[arg(long)]
    pub send_log: Option<PathBuf>,
    /// Consumers: abort at this point of the delivery `crash_after`.
    #[arg(long, value_enum)]
    pub crash_point: Option<CrashPointArg>,
    /// Consumers: the delivery (1-based, counted by this process) at which to
    /// abort; producers: abort right after this publish.
    #[arg(long)]
    pub crash_after: Option<u64>,
}

/// [`CrashPoint`] as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CrashPointArg {
    /// See [`CrashPoint::BeforeEffect`].
    BeforeEffect,
    /// See [`CrashPoint::AfterEffectBeforeAck`].
    AfterEffectBeforeAck,
    /// See [`CrashPoint::AfterAck`].
    AfterAck,
}

impl From<CrashPoint> for CrashPointArg {
    fn from(p: CrashPoint) -> Self {
        match p {
            CrashPoint::BeforeEffect => CrashPointArg::BeforeEffect,
            CrashPoint::AfterEffectBeforeAck => CrashPointArg::AfterEffectBeforeAck,
            CrashPoint::AfterAck => CrashPointArg::AfterAck,
        }
    }
}

impl From<CrashPointArg> for CrashPoint {
    fn from(p: CrashPointArg) -> Self {
        match p {
            CrashPointArg::BeforeEffect => CrashPoint::BeforeEffect,
            CrashPointArg::AfterEffectBeforeAck => CrashPoint::AfterEffectBeforeAck,
            CrashPointArg::AfterAck => CrashPoint::AfterAck,
        }
    }
}

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

/// Runs a worker to completion and returns its exit code.
pub fn main(args: WorkerArgs) -> i32 {
    disable_core_dumps();
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
        let stop = stop_signal();
        match args.role {
            Role::Producer => amqp::publisher::run(&args, &plan, stop).await,
            Role::Consumer => amqp::consumer::run(&args, &plan, stop).await,
        }
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
