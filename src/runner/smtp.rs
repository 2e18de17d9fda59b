//! One SMTP run: dlab's sender → (proxy) → a Postfix relay → (proxy) →
//! dlab's inbox, which records each message as an effect in the effect store.
//!
//! Phases: start the inbox and the relay (a private Postfix under the run
//! directory, unless an external one is named); ask both what they advertise
//! after EHLO; send while the fault driver acts and the relay's queue depth
//! is sampled; drain (sender finished, no fault active, the relay's queue
//! empty and the inbox quiet, or the drain timeout); read the effect store
//! into the ledger; count the deliveries the relay's own log records.
//!
//! The ledger sees the same events as on AMQP: an attempt is a DATA
//! transaction, a 2xx reply is a confirm (the relay owns the message), 4xx or
//! 5xx a nack, a lost reply in doubt.

use super::faults::{Driver, Links, SmtpTargets, Tally};
use super::{read_effects, RunContext, RunError};
use crate::effects::EffectStore;
use crate::ledger::{Event, Ledger};
use crate::policy::{ConsumerPolicy, ProducerPolicy};
use crate::proxy::{Protocol, Proxy};
use crate::relay::{self, Relay};
use crate::report::{self, QueueSample, RunResult, Series, SmtpReport, TimelineEntry};
use crate::scenario::Plan;
use crate::smtp::inbox::Inbox;
use crate::smtp::sender::{self, SendOptions, SendPolicy, Sent};
use crate::{metrics, smtp};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which relay an SMTP run goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayTarget {
    /// A private Postfix started for the run under its directory.
    Private,
    /// The private Postfix `dlab up` started in this directory: it forwards
    /// to a fixed inbox address, where the run's inbox listens.
    Up(std::path::PathBuf),
    /// A relay someone else runs, already configured to forward to `inbox`.
    External {
        /// Where the relay accepts SMTP.
        relay: SocketAddr,
        /// Where dlab's inbox listens (the relay's next hop).
        inbox: SocketAddr,
    },
}

/// The relay of a run and how to reach it.
struct RelayUse {
    addr: SocketAddr,
    private: Option<Arc<Relay>>,
    /// Started for this run (and stopped after it).
    owned: bool,
}

impl RelayUse {
    fn describe(&self) -> String {
        match &self.private {
            Some(r) => format!(
                "smtp://{} ({}, log {})",
                self.addr,
                if self.owned {
                    "private Postfix"
                } else {
                    "the Postfix of `dlab up`"
                },
                r.log().display()
            ),
            None => format!("smtp://{} (external relay)", self.addr),
        }
    }
}

/// A relay's queue depth and where it was read.
fn depth(r: &Relay) -> (u64, &'static str) {
    match r.postqueue_depth() {
        Some(n) => (n, "postqueue -j"),
        None => (r.queue_depth(), "spool directories"),
    }
}

/// What the sender's events add up to while the run goes on.
struct Books {
    start: Instant,
    rate: u64,
    ledger: Ledger,
    series: Series,
    tally: Tally,
    /// Attempt to 2xx reply, per accepted attempt.
    submit: hdrhistogram::Histogram<u64>,
    /// µs after the start, per message: when it was due (at a fixed rate, so
    /// a sender falling behind cannot hide a stall) or first attempted.
    first_attempt: Vec<Option<i64>>,
    /// The latest attempt of each message awaiting its reply.
    attempt_at: std::collections::HashMap<u64, Instant>,
    last_event: Instant,
}

impl Books {
    fn new(plan: &Plan, start: Instant) -> Books {
        Books {
            start,
            rate: plan.rate,
            ledger: Ledger::new(plan.messages),
            series: Series::new(),
            tally: Tally::default(),
            submit: metrics::new_histogram(),
            first_attempt: vec![None; plan.messages as usize],
            attempt_at: Default::default(),
            last_event: start,
        }
    }

    fn record(&mut self, e: Sent, at: Instant) {
        self.last_event = self.last_event.max(at);
        let at_ms = at.saturating_duration_since(self.start).as_millis() as u64;
        match e {
            Sent::Attempt(seq) => {
                self.tally.published += 1;
                self.series.sent(at_ms);
                self.ledger.record(Event::Attempt(seq));
                self.attempt_at.insert(seq, at);
                if let Some(slot @ None) = self.first_attempt.get_mut(seq as usize) {
                    *slot = Some(if self.rate > 0 {
                        (seq as f64 * 1e6 / self.rate as f64) as i64
                    } else {
                        at.duration_since(self.start).as_micros() as i64
                    });
                }
            }
            Sent::Accepted(seq) => {
                self.tally.confirmed += 1;
                self.series.confirmed(at_ms);
                self.ledger.record(Event::Confirmed(seq));
                if let Some(t) = self.attempt_at.remove(&seq) {
                    let _ = self
                        .submit
                        .record(at.duration_since(t).as_micros().max(1) as u64);
                }
            }
            Sent::Refused(seq) => {
                self.tally.nacked += 1;
                self.ledger.record(Event::Nacked(seq));
            }
            Sent::InDoubt(seq) => {
                self.tally.in_doubt += 1;
                self.ledger.record(Event::InDoubt(seq));
            }
        }
    }
}

/// Runs an SMTP plan.
pub async fn run(
    plan: &Plan,
    ctx: &RunContext,
    run_id: &str,
    run_dir: &Path,
    store_path: &Path,
) -> Result<RunResult, RunError> {
    let up = match &ctx.relay {
        RelayTarget::Up(dir) => Some(Relay::attach(dir).ok_or_else(|| {
            RunError::Unsupported(format!(
                "the relay of `dlab up` in {} is not running; run `dlab up` again or `dlab down`",
                dir.display()
            ))
        })?),
        _ => None,
    };
    let private = ctx.relay == RelayTarget::Private;
    if plan.needs_relay() && matches!(ctx.relay, RelayTarget::External { .. }) {
        return Err(RunError::Unsupported(format!(
            "scenario {} kills the relay, which needs a relay dlab starts itself; run it without --smtp-url / DLAB_SMTP_URL",
            plan.name
        )));
    }
    let inbox_listen = match (&ctx.relay, &up) {
        (RelayTarget::External { inbox, .. }, _) => *inbox,
        (_, Some(r)) => r.next_hop(),
        _ => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let inbox = Arc::new(
        Inbox::start_checking(
            inbox_listen,
            store_path,
            plan.consumer == ConsumerPolicy::Idempotent,
            0,
            Some(smtp::sender::BODY.to_string()),
        )
        .await
        .map_err(RunError::io(format!(
            "cannot start the inbox on {inbox_listen}"
        )))?,
    );
    let proxied = plan.needs_proxy() || ctx.always_proxy;
    let inbound = if proxied && private {
        Some(
            Proxy::start(inbox.addr(), Protocol::Smtp, plan.seed ^ 1)
                .await
                .map_err(RunError::io("cannot start the fault proxy"))?,
        )
    } else {
        None
    };
    let relay = match &ctx.relay {
        RelayTarget::Private => {
            let next_hop = inbound.as_ref().map_or(inbox.addr(), Proxy::addr);
            let dir = run_dir.join("relay");
            let r = tokio::task::spawn_blocking(move || Relay::start(&dir, next_hop))
                .await
                .map_err(|e| RunError::Worker(e.to_string()))??;
            let addr = r.addr();
            RelayUse {
                addr,
                private: Some(Arc::new(r)),
                owned: true,
            }
        }
        RelayTarget::Up(_) => {
            let r = up.expect("attached above");
            RelayUse {
                addr: r.addr(),
                private: Some(Arc::new(r)),
                owned: false,
            }
        }
        RelayTarget::External { relay, .. } => RelayUse {
            addr: *relay,
            private: None,
            owned: false,
        },
    };
    let outcome = drive(plan, run_id, &inbox, &relay, inbound, proxied).await;
    if let Some(r) = relay.private.clone().filter(|_| relay.owned) {
        let _ = tokio::task::spawn_blocking(move || r.retire()).await;
    }
    let (mut books, mut report, start_wall_us) = outcome?;

    let store = EffectStore::open(store_path)?;
    let mut end_to_end = metrics::new_histogram();
    let first_attempt = &books.first_attempt;
    read_effects(
        &store,
        run_id,
        &mut books.ledger,
        &mut books.series,
        start_wall_us,
        true,
        &mut |seq, since_start_us| {
            if let Some(sent) = first_attempt.get(seq as usize).copied().flatten() {
                let _ = end_to_end.record((since_start_us - sent).max(1) as u64);
            }
        },
    )?;
    books.series.finish();
    let (effect_rows, distinct_message_ids) = store.recount()?;
    // Read after the relay stopped, so its log is complete.
    if let Some(r) = &relay.private {
        let text = std::fs::read_to_string(r.log()).unwrap_or_default();
        let c = relay::log::count(&text, &format!("{run_id}-"));
        report.smtp.relay_log = Some(report::RelayLogCount {
            messages: c.messages,
            deliveries: c.deliveries,
            duplicates: c.duplicates(),
            maybe_twice: c.maybe_twice,
            log: r.log().display().to_string(),
        });
    }
    let queue = match &relay.private {
        Some(r) => format!("Postfix queue in {}", r.dir().display()),
        None => "the external relay's queue".to_string(),
    };
    let mut result = report::build(report::Inputs {
        plan,
        run_id,
        broker: &relay.describe(),
        queue: &queue,
        reconciliation: books.ledger.reconcile(),
        recount: report::Recount {
            effect_rows,
            distinct_message_ids,
        },
        drain: report.drain,
        timeline: report.timeline,
        active: report.active,
        publish_to_confirm: &books.submit,
        end_to_end: &end_to_end,
        effect_store: store_path,
        notes: report.notes,
        faults: report.faults,
        series: books.series,
        crashes: Vec::new(),
        history: None,
        started_unix_us: start_wall_us,
    });
    result.smtp = Some(report.smtp);
    Ok(result)
}

/// What the sending and draining phase found.
struct Phase {
    drain: report::Drain,
    timeline: Vec<TimelineEntry>,
    active: Duration,
    notes: Vec<String>,
    faults: Vec<super::faults::FaultRecord>,
    smtp: SmtpReport,
}

type Drove = (Books, Phase, i64);

async fn drive(
    plan: &Plan,
    run_id: &str,
    inbox: &Arc<Inbox>,
    relay: &RelayUse,
    inbound: Option<Proxy>,
    proxied: bool,
) -> Result<Drove, RunError> {
    let (relay_advertised, inbox_advertised) = (
        smtp::ehlo::advertised(relay.addr).await,
        smtp::ehlo::advertised(inbox.addr()).await,
    );
    let relay_advertised = relay_advertised.map_err(|e| {
        RunError::Unsupported(format!(
            "the SMTP relay at {} does not answer: {e}. Try: `dlab status`, or check --smtp-url",
            relay.addr
        ))
    })?;
    let outbound = if proxied {
        Some(
            Proxy::start(relay.addr, Protocol::Smtp, plan.seed)
                .await
                .map_err(RunError::io("cannot start the fault proxy"))?,
        )
    } else {
        None
    };
    let target = outbound.as_ref().map_or(relay.addr, Proxy::addr);
    let links = match (outbound, inbound) {
        (Some(producers), Some(consumers)) => Some(Links {
            producers,
            consumers,
        }),
        (Some(producers), None) => {
            // An external or `dlab up` relay: its next hop is fixed, not
            // dlab's to proxy; the consumer link is a proxy nobody uses.
            let consumers = Proxy::start(inbox.addr(), Protocol::Smtp, plan.seed ^ 1)
                .await
                .map_err(RunError::io("cannot start the fault proxy"))?;
            Some(Links {
                producers,
                consumers,
            })
        }
        _ => None,
    };
    let start = Instant::now();
    let start_wall_us = crate::effects::now_us();
    let mut driver =
        Driver::new(&plan.faults, plan.seed, links, None, start).with_smtp(SmtpTargets {
            inbox: inbox.clone(),
            relay: relay.private.clone(),
        });
    let policy = match plan.producer {
        ProducerPolicy::SendOnce | ProducerPolicy::FireAndForget => SendPolicy::SendOnce,
        ProducerPolicy::Retry | ProducerPolicy::ConfirmRetry => SendPolicy::Retry,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let options = SendOptions {
        sessions: plan.producers as usize,
        policy,
        rate: plan.rate,
    };
    let mut sending = tokio::spawn({
        let run_id = run_id.to_string();
        let seqs: Vec<u64> = (0..plan.messages).collect();
        async move { sender::send(target, &run_id, seqs, options, Some(tx)).await }
    });

    let mut books = Books::new(plan, start);
    let mut timeline = vec![TimelineEntry {
        at_ms: 0,
        event: format!(
            "sender started: {} session(s) to {}",
            plan.producers, relay.addr
        ),
    }];
    let mut samples: Vec<QueueSample> = Vec::new();
    let mut depth_source = "not available (external relay)";
    let mut next_sample = start;
    let mut sent_report = None;
    let mut drain_started: Option<Instant> = None;
    let mut quiet_since = (Instant::now(), 0u64);
    let mut drained = false;
    let ms = |t: Instant| t.saturating_duration_since(start).as_millis() as u64;
    loop {
        match tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            Ok(Some((e, at))) => {
                books.record(e, at);
                while let Ok((e, at)) = rx.try_recv() {
                    books.record(e, at);
                }
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => {}
        }
        let now = Instant::now();
        let delivered = inbox.stats().accepted.load(Ordering::Relaxed);
        books.tally.delivered = delivered;
        if sent_report.is_none() && sending.is_finished() {
            sent_report = Some(
                (&mut sending)
                    .await
                    .map_err(|e| RunError::Worker(e.to_string()))?,
            );
            drain_started = Some(now);
            timeline.push(TimelineEntry {
                at_ms: ms(now),
                event: "sender finished; draining the relay".into(),
            });
            // Every event was sent before the task ended; take the rest now.
            continue;
        }
        driver
            .tick(
                now.duration_since(start),
                books.tally,
                sent_report.is_none(),
            )
            .await;
        if let Some(r) = relay.private.clone().filter(|_| now >= next_sample) {
            next_sample = now + Duration::from_millis(200);
            if let Ok((d, source)) = tokio::task::spawn_blocking(move || depth(&r)).await {
                depth_source = source;
                samples.push(QueueSample {
                    at_ms: ms(now),
                    depth: d,
                });
            }
        }
        let Some(drain_start) = drain_started else {
            continue;
        };
        if delivered != quiet_since.1 {
            quiet_since = (now, delivered);
        }
        let quiet = now.duration_since(quiet_since.0);
        let queue_empty = match &relay.private {
            // The latest reading, at most 200 ms old, taken after the drain began.
            Some(_) => samples
                .last()
                .is_some_and(|q| q.depth == 0 && q.at_ms >= ms(drain_start)),
            // An external relay's queue cannot be read: the inbox quiet
            // for longer than its retry interval stands in.
            None => quiet > Duration::from_secs(10),
        };
        if queue_empty && !driver.busy() && quiet > Duration::from_millis(500) {
            drained = true;
            break;
        }
        if now.duration_since(drain_start) > plan.drain_timeout {
            break;
        }
    }
    let drain_time = drain_started.map_or(Duration::ZERO, |d| d.elapsed());
    driver.finish(books.tally).await;
    let sent = sent_report.unwrap_or_default();
    let stats = inbox.stats();
    let mut notes = Vec::new();
    if sent.given_up > 0 {
        notes.push(format!(
            "the sender gave up on {} message(s) ({} refused, {} in doubt over {} attempts)",
            sent.given_up, sent.refused, sent.in_doubt, sent.attempts
        ));
    }
    let peak = samples.iter().map(|s| s.depth).max().unwrap_or(0);
    let remaining = samples.last().map_or(0, |s| s.depth);
    let smtp = SmtpReport {
        relay: relay.describe(),
        relay_advertised,
        inbox_advertised: inbox_advertised.unwrap_or_default(),
        sender: sent,
        // The drain is over: the inbox's counts are final.
        text: report::TextCheck {
            expected: smtp::sender::BODY.to_string(),
            intact: stats.text_intact.load(Ordering::Relaxed),
            mangled: stats.text_mangled.load(Ordering::Relaxed),
            eight_bit: stats.eight_bit.load(Ordering::Relaxed),
        },
        relay_queue: samples,
        relay_queue_source: depth_source.to_string(),
        relay_queue_peak: peak,
        relay_log: None,
        inbox_sessions: stats.sessions.load(Ordering::Relaxed),
        inbox_misbehaved: stats.misbehaved.load(Ordering::Relaxed),
    };
    let end = books.last_event.max(quiet_since.0);
    let phase = Phase {
        drain: report::Drain {
            completed: drained,
            seconds: drain_time.as_secs_f64(),
            remaining_in_queue: remaining,
        },
        timeline,
        active: end.saturating_duration_since(start),
        notes,
        faults: std::mem::take(&mut driver.records),
        smtp,
    };
    Ok((books, phase, start_wall_us))
}
