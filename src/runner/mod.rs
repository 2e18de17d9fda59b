//! The run skeleton: runs one [`Plan`] through its transport and reconciles
//! the outcome.
//!
//! What every run does is here, once: the run directory and the effect
//! store, the fault driver, the one event fold ([`fold`]), the one drain
//! loop (one definition of "quiet"), one way to stop ([`cancel`]) and the
//! one report build. What differs between transports is behind
//! [`engine::Engine`]: AMQP in `src/amqp/engine.rs`, SMTP in
//! `src/smtp/engine.rs`.
//!
//! Architecture invariant: counts come from the ledger, and the ledger only
//! from the events a transport streams into the fold and from effect-store
//! rows. A failure during the run (a crash, a lost connection) is an event,
//! never an early return.

pub mod cancel;
pub mod engine;
pub mod faults;
pub mod fold;
mod node_faults;
pub mod servers;
pub mod workers;

pub use cancel::{Cancel, EXIT_INTERRUPTED};

use crate::amqp::BrokerError;
use crate::effects::{EffectStore, EffectStoreError};
use crate::message_id;
use crate::report::{self, progress::Progress, RunResult, TimelineKind};
use crate::scenario::{Plan, Transport};
use engine::{Engine, Prepared, Setup};
use fold::Fold;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the in-flight work must have been quiet (no ledger event, no consumer
/// connecting or ending: see [`Fold::quiet_for`]) for
/// the run to count as drained; checked twice, 100 ms apart.
const QUIET: Duration = Duration::from_millis(400);
/// How long producers may run past their schedule before they are stopped.
const PRODUCE_GRACE: Duration = Duration::from_secs(300);

/// Why a run could not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The broker could not be used.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The effect store failed.
    #[error(transparent)]
    EffectStore(#[from] EffectStoreError),
    /// A file or process could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What dlab was doing.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A worker failed in a way that is not a fault of the scenario.
    #[error("{0}")]
    Worker(String),
    /// The scenario needs something this broker cannot give.
    #[error("{0}")]
    Unsupported(String),
    /// The SMTP relay could not be started.
    #[error(transparent)]
    Relay(#[from] crate::relay::RelayError),
}

impl RunError {
    /// Maps an OS error to a [`RunError::Io`] saying what dlab was doing.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
        let what = what.into();
        move |source| RunError::Io { what, source }
    }
}

/// The broker an AMQP run uses.
#[derive(Debug, Clone)]
pub struct AmqpTarget {
    /// Its AMQP URL.
    pub url: String,
    /// Its process, when dlab started it (needed by broker faults).
    pub node: Option<Arc<crate::broker::Node>>,
    /// Its management API, for its own count of the run (a private node's,
    /// or the one beside an external broker).
    pub management: Option<crate::broker::Management>,
}

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// dlab's home (`.dlab`): run directories go under `runs/`.
    pub home: PathBuf,
    /// The `dlab` executable that workers run as.
    pub worker_exe: PathBuf,
    /// Keep the queue after the run (for inspection) instead of deleting it.
    pub keep_queue: bool,
    /// Put the fault proxies in place even when no network fault is scheduled
    /// (to measure what the proxy costs).
    pub always_proxy: bool,
    /// Show live progress on the terminal (stderr).
    pub progress: bool,
    /// AMQP runs on one node: the broker.
    pub amqp: Option<AmqpTarget>,
    /// AMQP runs on a cluster (`nodes` above 1): the one `dlab up --nodes N`
    /// keeps, if any; otherwise each run starts its own.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// SMTP runs: a private Postfix relay, or an external one.
    pub relay: crate::smtp::RelayTarget,
    /// Stops the run early (signals, at the command line).
    pub cancel: Cancel,
}

impl RunContext {
    /// A context whose workers run the current executable, with no broker.
    pub fn new(home: impl Into<PathBuf>) -> Result<RunContext, RunError> {
        Ok(RunContext {
            home: home.into(),
            worker_exe: std::env::current_exe()
                .map_err(RunError::io("cannot locate the dlab executable"))?,
            keep_queue: false,
            always_proxy: false,
            progress: false,
            amqp: None,
            cluster: None,
            relay: crate::smtp::RelayTarget::Private,
            cancel: Cancel::never(),
        })
    }

    /// The same context with a broker at `url` (no node, no management API).
    pub fn with_broker(mut self, url: impl Into<String>) -> RunContext {
        self.amqp = Some(AmqpTarget {
            url: url.into(),
            node: None,
            management: None,
        });
        self
    }
}

/// Runs `plan` through its transport and reconciles its outcome.
pub async fn run(plan: &Plan, ctx: &RunContext) -> Result<RunResult, RunError> {
    // The one registration line per transport.
    match plan.transport.kind() {
        Transport::Amqp => run_with::<crate::amqp::Engine>(plan, ctx).await,
        Transport::Smtp => run_with::<crate::smtp::Engine>(plan, ctx).await,
    }
}

/// The worker entry of each transport whose workers are processes of their
/// own (`dlab worker --transport NAME`).
pub fn worker_entry(transport: &str) -> Option<crate::worker::Entry> {
    // The one registration line per transport with worker processes.
    match transport {
        "amqp" => Some(crate::amqp::worker::run),
        _ => None,
    }
}

/// How the driving phase ended.
struct Ending {
    drained: bool,
    drain_time: Duration,
    interrupted: bool,
    publish_start: Instant,
}

async fn run_with<E: Engine>(plan: &Plan, ctx: &RunContext) -> Result<RunResult, RunError> {
    let run_id = message_id::new_run_id();
    let run_dir = std::path::absolute(ctx.home.join("runs").join(&run_id))
        .map_err(RunError::io("cannot resolve the run directory"))?;
    std::fs::create_dir_all(&run_dir)
        .map_err(RunError::io(format!("cannot create {}", run_dir.display())))?;
    let plan_file = run_dir.join("plan.json");
    std::fs::write(
        &plan_file,
        serde_json::to_vec_pretty(plan).expect("a plan serializes"),
    )
    .map_err(RunError::io(format!(
        "cannot write {}",
        plan_file.display()
    )))?;
    let store_path = run_dir.join("effects.sqlite");
    EffectStore::create(&store_path)?;
    let setup = Setup {
        plan,
        ctx,
        run_id: &run_id,
        run_dir: &run_dir,
        plan_file: &plan_file,
        store: &store_path,
    };

    let Prepared {
        mut engine,
        servers,
        links,
        backlog_queue,
    } = E::prepare(&setup).await?;
    let history = run_dir.join("history.tsv");
    let mut fold = Fold::new(plan.messages, &history)
        .map_err(RunError::io(format!("cannot write {}", history.display())))?;
    if plan.eavesdropper {
        for (_, proxy) in links.iter().flat_map(faults::Links::named) {
            proxy.tap(crate::eavesdrop::TAP_BUDGET);
        }
    }
    let mut driver = faults::Driver::new(&plan.faults, plan.seed, links, servers, fold.start())
        .with_queue(backlog_queue);

    // Whatever happened while driving, the workers and servers are stopped
    // before the error (or the result) goes up.
    let drove = drive(&mut engine, &setup, &mut fold, &mut driver).await;
    let stopped = engine.stop(&mut fold).await;
    driver.finish(fold.tally).await;
    let finished = engine.finish(&mut fold).await;
    let drove = drove?;
    stopped?;
    let finished = finished?;
    let history = fold.close_history();

    let store = EffectStore::open(&store_path)?;
    fold.read_effects(&store, &run_id, &mut |seq, us| {
        engine.effect_latency(seq, us)
    })?;
    let (effect_rows, distinct_message_ids) = store.recount()?;
    let (timeline, notes, crashes) = fold.take_observed();
    let active = fold
        .last_event()
        .saturating_duration_since(drove.publish_start);
    let mut result = report::build(report::Inputs {
        plan,
        run_id: &run_id,
        broker: &finished.broker,
        queue: &finished.queue,
        reconciliation: fold.ledger.reconcile(),
        recount: report::Recount {
            effect_rows,
            distinct_message_ids,
        },
        drain: report::Drain {
            completed: drove.drained,
            seconds: drove.drain_time.as_secs_f64(),
            remaining_in_queue: finished.remaining,
        },
        timeline,
        active,
        publish_to_confirm: &fold.publish_to_confirm,
        end_to_end: &fold.end_to_end,
        effect_store: &store_path,
        notes,
        faults: std::mem::take(&mut driver.records),
        series: std::mem::take(&mut fold.series),
        crashes,
        history: Some(&history),
        started_unix_us: fold.start_wall_us,
    });
    result.interrupted = drove.interrupted;
    if plan.eavesdropper {
        let clues = crate::eavesdrop::clues(plan, &run_id);
        result.eavesdropper = driver.links().map(|l| crate::eavesdrop::report(l, &clues));
        let read = result.eavesdropper.clone().unwrap_or_default();
        let judged = report::judge_eavesdrop(&plan.expect, &read);
        result.expectations_held &= judged.iter().all(|x| x.held);
        result.expectations.extend(judged);
    }
    engine.complete(&setup, &mut result).await?;
    Ok(result)
}

/// Starts the transport, then folds its events, ticks the fault driver and
/// watches for the drain until it completes, times out or is cancelled.
async fn drive<E: Engine>(
    engine: &mut E,
    s: &Setup<'_>,
    fold: &mut Fold,
    driver: &mut faults::Driver,
) -> Result<Ending, RunError> {
    let plan = s.plan;
    let cancel = s.ctx.cancel.clone();
    let interrupted = |fold: &mut Fold| {
        let why = cancel.reason().unwrap_or_default();
        fold.mark(
            TimelineKind::Interrupted,
            format!("interrupted ({why}): the run stops without draining"),
        );
    };
    tokio::select! {
        started = engine.start(s, fold) => started?,
        _ = cancel.cancelled() => {
            interrupted(fold);
            return Ok(Ending { drained: false, drain_time: Duration::ZERO, interrupted: true, publish_start: Instant::now() });
        }
    }
    let publish_start = Instant::now();
    let bar = s.ctx.progress.then(|| Progress::new(&plan.name));
    // A watchdog, not a measurement: producers that have not finished long
    // after their schedule are asked to stop, so a run always ends.
    let schedule = if plan.rate > 0 {
        Duration::from_secs_f64(plan.messages as f64 / plan.rate as f64)
    } else {
        Duration::ZERO
    };
    let produce_deadline = publish_start + schedule + PRODUCE_GRACE;
    let mut watchdog_fired = false;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut drain_start: Option<Instant> = None;
    let mut settled_checks = 0;
    let mut drained = false;
    let mut was_interrupted = false;
    loop {
        tokio::select! {
            next = engine.next(fold) => {
                next?;
                // Count triggers fire as soon as the runner learns the count.
                if driver.next_count_trigger().is_some_and(|n| fold.tally.published >= n) {
                    driver.tick(publish_start.elapsed(), fold.tally, engine.producing()).await;
                }
            }
            _ = tick.tick() => {
                engine.tick(fold).await?;
                if let Some(b) = &bar {
                    b.update(&fold.tally, publish_start.elapsed(), driver.active_names());
                }
                let producing = engine.producing();
                if producing && !watchdog_fired && Instant::now() >= produce_deadline {
                    watchdog_fired = true;
                    fold.mark(TimelineKind::Note, format!("producers still running {}s after their schedule: stopping them", PRODUCE_GRACE.as_secs()));
                    engine.stop_producing();
                }
                driver.tick(publish_start.elapsed(), fold.tally, producing).await;
                if drain_start.is_none() && !producing {
                    drain_start = Some(Instant::now());
                    fold.mark(TimelineKind::Phase, "producers finished; draining");
                }
                if let Some(since) = drain_start {
                    let settled = !driver.busy()
                        && fold.quiet_for() >= QUIET
                        && engine.settled(fold, since).await;
                    settled_checks = if settled { settled_checks + 1 } else { 0 };
                    if settled_checks >= 2 {
                        drained = true;
                        fold.mark(TimelineKind::Phase, "drained");
                        break;
                    }
                    if since.elapsed() >= plan.drain_timeout {
                        fold.mark(TimelineKind::DrainTimeout, format!("drain timed out after {}s", plan.drain_timeout.as_secs()));
                        break;
                    }
                }
            }
            _ = cancel.cancelled() => {
                interrupted(fold);
                engine.stop_producing();
                was_interrupted = true;
                break;
            }
        }
    }
    if let Some(b) = bar {
        b.finish();
    }
    Ok(Ending {
        drained,
        drain_time: drain_start.map_or(Duration::ZERO, |d| d.elapsed()),
        interrupted: was_interrupted,
        publish_start,
    })
}
