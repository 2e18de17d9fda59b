//! The runner: runs one [`Plan`] against a broker and reconciles the outcome.
//!
//! Phases: declare the queue; start consumers and wait until they are ready;
//! start producers; supervise (restart crashed consumers); drain (producers
//! finished, queue empty, consumers idle, or the drain timeout); stop the
//! consumers; read the effect store into the ledger; reconcile.
//!
//! Architecture invariant: counts come from the ledger, and the ledger only
//! from worker events and effect-store rows. A failure during the run (a
//! crash, a lost connection) is an event, never an early return.

pub mod faults;
mod inspect;
pub mod smtp;
mod supervise;
pub mod workers;

use crate::amqp::{self, topology, BrokerError};
use crate::broker::{Counters, Node, QueueInfo};
use crate::effects::{EffectStore, EffectStoreError, Row};
use crate::ledger::{Event, Ledger};
use crate::message_id;
use crate::proxy::{Protocol, Proxy};
use crate::report::{self, RunResult, Series};
use crate::scenario::{Plan, TransportPlan};
use std::path::PathBuf;
use std::sync::Arc;

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
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
        let what = what.into();
        move |source| RunError::Io { what, source }
    }
}

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The broker's AMQP URL.
    pub amqp_url: String,
    /// dlab's home (`.dlab`): run directories go under `runs/`.
    pub home: PathBuf,
    /// The `dlab` executable that workers run as.
    pub worker_exe: PathBuf,
    /// Keep the queue after the run (for inspection) instead of deleting it.
    pub keep_queue: bool,
    /// The broker's process, when dlab started it (needed by broker faults).
    pub node: Option<Arc<Node>>,
    /// Put the fault proxies in place even when no network fault is scheduled
    /// (to measure what the proxy costs).
    pub always_proxy: bool,
    /// Show live progress on the terminal (stderr).
    pub progress: bool,
    /// SMTP runs: a private Postfix relay, or an external one.
    pub relay: smtp::RelayTarget,
    /// AMQP runs: the broker's management API, for its own count of the
    /// run's queue (a private node's, or the one beside an external broker).
    pub management: Option<crate::broker::Management>,
}

impl RunContext {
    /// A context whose workers run the current executable.
    pub fn new(
        amqp_url: impl Into<String>,
        home: impl Into<PathBuf>,
    ) -> Result<RunContext, RunError> {
        Ok(RunContext {
            amqp_url: amqp_url.into(),
            home: home.into(),
            worker_exe: std::env::current_exe()
                .map_err(RunError::io("cannot locate the dlab executable"))?,
            keep_queue: false,
            node: None,
            always_proxy: false,
            progress: false,
            relay: smtp::RelayTarget::Private,
            management: None,
        })
    }
}

/// Runs `plan` and reconciles its outcome.
pub async fn run(plan: &Plan, ctx: &RunContext) -> Result<RunResult, RunError> {
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
    let TransportPlan::Amqp(amqp) = &plan.transport else {
        return smtp::run(plan, ctx, &run_id, &run_dir, &store_path).await;
    };

    let queue = format!("dlab.{}.{run_id}", plan.name);
    let mut inspector =
        inspect::Inspector::connect(&ctx.amqp_url, &queue, &format!("dlab runner {run_id}"))
            .await?;
    let channel = inspector
        .channel()
        .await
        .ok_or_else(|| BrokerError::refused(&ctx.amqp_url, "a channel", "the connection closed"))?;
    topology::declare_queue(channel, &queue, amqp)
        .await
        .map_err(|e| BrokerError::refused(&ctx.amqp_url, &format!("declaring queue {queue}"), e))?;

    if plan.needs_node() && ctx.node.is_none() {
        return Err(RunError::Unsupported(format!(
            "scenario {} injects broker process faults, which need a broker dlab starts itself; run it without --amqp-url / DLAB_AMQP_URL",
            plan.name
        )));
    }
    let (producer_url, consumer_url, links) = if plan.needs_proxy() || ctx.always_proxy {
        let upstream = broker_addr(&ctx.amqp_url).await?;
        let producers = Proxy::start(upstream, Protocol::Amqp, plan.seed)
            .await
            .map_err(RunError::io("cannot start the fault proxy"))?;
        let consumers = Proxy::start(upstream, Protocol::Amqp, plan.seed ^ 1)
            .await
            .map_err(RunError::io("cannot start the fault proxy"))?;
        (
            amqp::url::with_host_port(&ctx.amqp_url, producers.addr()),
            amqp::url::with_host_port(&ctx.amqp_url, consumers.addr()),
            Some(faults::Links {
                producers,
                consumers,
            }),
        )
    } else {
        (ctx.amqp_url.clone(), ctx.amqp_url.clone(), None)
    };
    let launch = workers::Launch {
        exe: ctx.worker_exe.clone(),
        plan: plan_file,
        producer_url,
        consumer_url,
        queue: queue.clone(),
        run_id: run_id.clone(),
        effect_store: store_path.clone(),
        log_dir: run_dir.clone(),
    };
    // The broker's counters before the run: its own count is their growth.
    let counters_before = match &ctx.management {
        Some(m) => m.counters().await.map(|before| (m, before)),
        None => Err("no management API is known for this broker".to_string()),
    };
    let mut driver = faults::Driver::new(
        &plan.faults,
        plan.seed,
        links,
        ctx.node.clone(),
        std::time::Instant::now(),
    )
    .with_queue(&queue);
    let outcome =
        supervise::supervise(plan, &launch, &mut inspector, &mut driver, ctx.progress).await?;
    drop(driver);

    // The broker's own count, read before the queue is deleted.
    let broker_read = match counters_before {
        Ok((m, before)) => broker_count_read(m, &queue, before).await,
        Err(e) => Err(e),
    };
    let remaining = inspector.finish(ctx.keep_queue).await?;

    let mut ledger = outcome.ledger;
    let mut series = outcome.series;
    let store = EffectStore::open(&store_path)?;
    read_effects(
        &store,
        &run_id,
        &mut ledger,
        &mut series,
        outcome.start_wall_us,
        false,
        &mut |_, _| {},
    )?;
    series.finish();
    let (effect_rows, distinct_message_ids) = store.recount()?;
    let reconciliation = ledger.reconcile();
    let restarted = outcome
        .faults
        .iter()
        .any(|r| r.fired && plan.faults[r.fault].action.restarts_broker());
    let (broker_count, broker_count_missing) = match broker_read {
        Ok(read) => (
            Some(report::BrokerCount::compare(
                read.source,
                &read.queue,
                &read.counted,
                &reconciliation.counts,
                read.since_start && !restarted,
            )),
            None,
        ),
        Err(why) => (None, Some(why)),
    };
    let mut result = report::build(report::Inputs {
        plan,
        run_id: &run_id,
        broker: &amqp::mask_password(&ctx.amqp_url),
        queue: &queue,
        reconciliation,
        recount: report::Recount {
            effect_rows,
            distinct_message_ids,
        },
        drain: report::Drain {
            completed: outcome.drained,
            seconds: outcome.drain_time.as_secs_f64(),
            remaining_in_queue: u64::from(remaining),
        },
        timeline: outcome.timeline,
        active: outcome.active,
        publish_to_confirm: &outcome.publish_to_confirm,
        end_to_end: &outcome.end_to_end,
        effect_store: &store_path,
        notes: outcome.notes,
        faults: outcome.faults,
        series,
        crashes: outcome.crashes,
        history: Some(&outcome.history),
        started_unix_us: outcome.start_wall_us,
    });
    result.broker_count = broker_count;
    result.broker_count_missing = broker_count_missing;
    Ok(result)
}

/// What the broker said after the drain.
struct BrokerRead {
    source: String,
    queue: QueueInfo,
    /// Its counters' growth since the run started or, when a counter went
    /// down (the node restarted and began again at zero), since that restart.
    counted: Counters,
    /// Whether `counted` covers the whole run.
    since_start: bool,
}

async fn broker_count_read(
    m: &crate::broker::Management,
    queue: &str,
    before: Counters,
) -> Result<BrokerRead, String> {
    let queue = m.queue(queue).await?;
    let now = m.counters().await?;
    let grown = now.since(&before);
    Ok(BrokerRead {
        source: m.describe(),
        queue,
        since_start: grown.is_some(),
        counted: grown.unwrap_or(now),
    })
}

/// The socket address of the broker a URL names.
async fn broker_addr(url: &str) -> Result<std::net::SocketAddr, RunError> {
    let (host, port) = amqp::url::host_port(url).ok_or_else(|| {
        RunError::Unsupported(format!(
            "cannot read host and port from {}",
            amqp::mask_password(url)
        ))
    })?;
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| RunError::Unsupported(format!("cannot resolve the broker host {host}")))
}

/// Feeds every effect-store row into the ledger, and the effects into the
/// throughput series (a message's second effect is a duplicate);
/// `first_effect` hears of each message's first effect and its time (µs
/// since the run's start). With `rows_are_deliveries` (SMTP: the inbox
/// writes a row for every message it accepts), each row is also a delivery,
/// and a message's later rows are redeliveries.
fn read_effects(
    store: &EffectStore,
    run_id: &str,
    ledger: &mut Ledger,
    series: &mut Series,
    start_wall_us: i64,
    rows_are_deliveries: bool,
    first_effect: &mut dyn FnMut(u64, i64),
) -> Result<(), EffectStoreError> {
    store.scan(|id, row, at_us| {
        let Some(seq) = message_id::parse(run_id, id) else {
            return ledger.record_unexpected();
        };
        if rows_are_deliveries {
            let redelivered = ledger.get(seq).is_some_and(|r| r.deliveries > 0);
            ledger.record(Event::Delivered { seq, redelivered });
        }
        let since_start_us = at_us - start_wall_us;
        match row {
            Row::Effect => {
                let duplicate = ledger.get(seq).is_some_and(|r| r.effects > 0);
                if !duplicate {
                    first_effect(seq, since_start_us);
                }
                series.effect((since_start_us.max(0) / 1000) as u64, duplicate);
                ledger.record(Event::Effect(seq));
            }
            Row::Suppressed => ledger.record(Event::Suppressed(seq)),
        }
    })
}
