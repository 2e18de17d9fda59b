//! What a transport supplies to the run skeleton (`src/runner/mod.rs`).
//!
//! The skeleton owns the run directory, the effect store, the fault driver,
//! the one event fold, the one drain loop and the report build. A transport
//! (an [`Engine`]) owns what differs: the servers and workers it starts, the
//! events it streams into the fold, whether what it has in flight has
//! settled, how it stops, and its own section of the report.
//!
//! AMQP (`src/amqp/engine.rs`) and SMTP (`src/smtp/engine.rs`) are the two
//! implementations; `src/runner/mod.rs::run` picks one by the plan's
//! transport.

use super::faults::Links;
use super::fold::Fold;
use super::servers::Servers;
use super::{RunContext, RunError};
use crate::report::RunResult;
use crate::scenario::Plan;
use std::path::Path;
use std::time::Instant;

/// Everything a transport may need to set a run up.
pub struct Setup<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// Where and how to run.
    pub ctx: &'a RunContext,
    /// The run's ID (message IDs are `<run_id>-<seq>`).
    pub run_id: &'a str,
    /// The run's directory.
    pub run_dir: &'a Path,
    /// The plan as JSON (what worker processes read).
    pub plan_file: &'a Path,
    /// The effect store file.
    pub store: &'a Path,
}

/// What a transport set up before anything runs.
pub struct Prepared<E> {
    /// The engine.
    pub engine: E,
    /// The servers faults can aim at.
    pub servers: Servers,
    /// The proxied producer and consumer links (and the push link, with a
    /// push effect), when faults need them.
    pub links: Option<Links>,
    /// The queue whose backlog broker process faults record.
    pub backlog_queue: Option<String>,
}

/// How the transport describes where the run went, after it stopped.
pub struct Finished {
    /// The server the producers talked to, password masked.
    pub broker: String,
    /// The queue (or the relay's queue, in words).
    pub queue: String,
    /// Messages left in it after the drain.
    pub remaining: u64,
}

/// One transport's part of a run. The skeleton calls, in order: `prepare`,
/// `start`, then `next` and `tick` until drained or cancelled (asking
/// `producing` and `settled`), `stop`, `finish`, and after the effect store
/// was read, `complete`.
#[allow(async_fn_in_trait)]
pub trait Engine: Sized {
    /// Starts or attaches to the servers, creates the queue or inbox and the
    /// proxies; nothing is sent yet.
    async fn prepare(s: &Setup<'_>) -> Result<Prepared<Self>, RunError>;

    /// Starts the consuming side, waits until it is ready, then starts the
    /// producing side. Events seen meanwhile go into `fold`.
    async fn start(&mut self, s: &Setup<'_>, fold: &mut Fold) -> Result<(), RunError>;

    /// Waits for the next events and folds them. Must be cancel-safe: the
    /// skeleton drops it when a tick or a cancellation comes first.
    async fn next(&mut self, fold: &mut Fold) -> Result<(), RunError>;

    /// Every 100 ms, before the fault driver ticks: restarts, samples and
    /// the like, and last folds every event already waiting (the driver
    /// reads the fold's tally at once after).
    async fn tick(&mut self, fold: &mut Fold) -> Result<(), RunError>;

    /// Whether the producing side is still at work.
    fn producing(&self) -> bool;

    /// Asks the producing side to stop now (a cancellation or the watchdog).
    fn stop_producing(&mut self);

    /// Whether what this transport has in flight has settled: no consumer
    /// down or owing an ack, no message waiting in a queue. The skeleton
    /// adds "no fault active" and "quiet" (see [`Fold::quiet_for`]).
    async fn settled(&mut self, fold: &Fold, drain_started: Instant) -> bool;

    /// Stops every worker, collecting their last events.
    async fn stop(&mut self, fold: &mut Fold) -> Result<(), RunError>;

    /// After the fault driver finished: reads what the servers say, removes
    /// the queue, stops what this run started.
    async fn finish(&mut self, fold: &mut Fold) -> Result<Finished, RunError>;

    /// The end-to-end latency of a message whose first effect came at
    /// `since_start_us`, when the transport measures it from the effect
    /// store (workers that measure it themselves send histograms instead).
    fn effect_latency(&self, _seq: u64, _since_start_us: i64) -> Option<u64> {
        None
    }

    /// Adds the transport's own section to the result.
    async fn complete(self, s: &Setup<'_>, result: &mut RunResult) -> Result<(), RunError>;
}
