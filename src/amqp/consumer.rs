//! The consumer worker: receives deliveries and applies effects under a
//! consumer policy, with crash points where a fault asks for one.
//!
//! Deliveries are handled in batches of what has already arrived (at most the
//! prefetch count). Per policy, a batch goes:
//! - `auto-ack`: effects, commit (the broker forgot the messages on sending);
//! - `ack-before-effect`: ack, effects, commit;
//! - `ack-after-effect`: effects, commit, ack;
//! - `idempotent`: seen-check + effect + seen-insert for each, commit, ack.
//!
//! With `effect = "push"` the effect is a call to the push gateway instead
//! (`crate::push::client`), one delivery at a time: `auto-ack` and
//! `ack-before-effect` call once; `ack-after-effect` calls until a 2xx, then
//! acks; `seen-table` skips IDs in its local table, calls until a 2xx, marks,
//! acks; `idempotency-key` sends the message ID as the key, calls until a
//! 2xx, acks. `after-effect-before-ack` then means after the call's 2xx.
//!
//! Architecture invariant: every ack follows the commit that covers it, except
//! under `ack-before-effect` and `auto-ack` where acking first is the point.
//!
//! Crash points for delivery N (counted by this process, 1-based):
//! `before-effect` aborts just before N's effect (uncommitted effects of the
//! batch die with the process); `after-effect-before-ack` commits through N
//! and aborts before any ack of N; `after-ack` aborts once N's batch is
//! committed and its ack has reached the broker (a round trip proves it). Where
//! the policy acks before the effect, that ack is also made to reach the
//! broker before a crash in the same batch, so the fault hits the point named.

use super::endpoints::Endpoints;
use super::publisher::{DUE_HEADER, ROUND_TRIP_LIMIT};
use super::seen_table::{self, SeenTable};
use super::worker::WorkerArgs;
use crate::effects::EffectStore;
use crate::ledger::Event;
use crate::message_id;
use crate::metrics;
use crate::policy::ConsumerPolicy;
use crate::push::client::{Calling, PushClient, Settings};
use crate::scenario::{CrashPoint, Plan};
use crate::worker::wire::WireEvent;
use crate::worker::{abort_now, Emitter, EXIT_CONNECTION_LOST, EXIT_SETUP};
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A delivery reduced to what the consumer needs.
struct Item {
    tag: u64,
    /// The message ID as received.
    id: String,
    /// The message number, if the ID is one of this run's.
    seq: Option<u64>,
    due_us: Option<i64>,
}

fn item(d: &Delivery, run_id: &str) -> Item {
    let id = d
        .properties
        .message_id()
        .as_ref()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    let due_us = d
        .properties
        .headers()
        .as_ref()
        .and_then(|h| match h.inner().get(DUE_HEADER) {
            Some(AMQPValue::LongLongInt(v)) => Some(*v),
            _ => None,
        });
    Item {
        tag: d.delivery_tag,
        seq: message_id::parse(run_id, &id),
        id,
        due_us,
    }
}

/// The crash this process must perform, if any.
#[derive(Debug, Clone, Copy)]
struct Crash {
    point: CrashPoint,
    at: u64,
}

struct State<'a> {
    run_id: &'a str,
    policy: ConsumerPolicy,
    channel: &'a Channel,
    store: EffectStore,
    index: u32,
    prefetch: u16,
    effect_time: Duration,
    crash: Option<Crash>,
    handled: u64,
    end_to_end: hdrhistogram::Histogram<u64>,
    emit: Emitter,
    /// `effect = "push"`: the gateway client; the effect is its call.
    push: Option<PushClient>,
    /// The `seen-table` policy's local table.
    seen: Option<SeenTable>,
}

/// What the effect phase of a batch leaves for the ack phase.
#[derive(Default)]
struct Applied {
    /// End-to-end latencies of first effects, µs.
    latencies: Vec<u64>,
    /// Deliveries whose call never got a 2xx: requeued, not acked.
    failed: Vec<u64>,
}

impl State<'_> {
    fn crash_in(&self, first: u64, last: u64) -> bool {
        self.crash.is_some_and(|c| (first..=last).contains(&c.at))
    }

    /// Acks everything up to `last_tag` and, when `prove`, waits for a reply
    /// on the same channel so the ack has certainly been processed.
    async fn ack(&mut self, items: &[Item], prove: bool) -> Result<(), String> {
        let Some(last) = items.last() else {
            return Ok(());
        };
        bounded(
            self.channel
                .basic_ack(last.tag, BasicAckOptions { multiple: true }),
        )
        .await?;
        for it in items {
            if let Some(seq) = it.seq {
                self.emit.push(WireEvent::Ledger(Event::Acked(seq)));
            }
        }
        if prove {
            bounded(
                self.channel
                    .basic_qos(self.prefetch, BasicQosOptions::default()),
            )
            .await?;
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        items: Vec<Item>,
        deliveries: &mut lapin::Consumer,
    ) -> Result<(), String> {
        let first = self.handled + 1;
        let last = self.handled + items.len() as u64;
        let crash = self.crash;
        for _ in items.iter().filter(|it| it.seq.is_none()) {
            self.emit.push(WireEvent::Ledger(Event::Unexpected));
        }
        if self.policy == ConsumerPolicy::AckBeforeEffect {
            let prove = self.crash_in(first, last);
            self.ack(&items, prove).await?;
        }
        let applied = match self.push.is_some() {
            true => self.effects_push(&items, first, deliveries).await,
            false => self.effects_local(&items, first, deliveries).await,
        };
        for l in applied.latencies {
            let _ = self.end_to_end.record(l.max(1));
        }
        if self.policy.acks_after_effect() {
            let prove = self.crash_in(first, last);
            if applied.failed.is_empty() {
                self.ack(&items, prove).await?;
            } else {
                self.ack_all_but(&items, &applied.failed).await?;
            }
        }
        self.handled = last;
        if let Some(c) =
            crash.filter(|c| c.point == CrashPoint::AfterAck && (first..=last).contains(&c.at))
        {
            let seq = items[(c.at - first) as usize].seq;
            die(&mut self.emit, deliveries, self.run_id, c.point, c.at, seq);
        }
        self.emit.maybe_flush();
        Ok(())
    }

    /// The local effect: rows in the effect store, one transaction per
    /// batch (the idempotent policy's seen-check inside it).
    async fn effects_local(
        &mut self,
        items: &[Item],
        first: u64,
        deliveries: &mut lapin::Consumer,
    ) -> Applied {
        let crash = self.crash;
        if !self.effect_time.is_zero() {
            // Showing the notifications takes time (outside the transaction,
            // so other consumers are not held up).
            tokio::time::sleep(self.effect_time * items.len() as u32).await;
        }
        let mut batch = match self.store.batch(self.index) {
            Ok(b) => b,
            Err(e) => fatal(&mut self.emit, &e.to_string()),
        };
        let mut latencies = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            let n = first + i as u64;
            if crash_at(crash, CrashPoint::BeforeEffect, n) {
                die(
                    &mut self.emit,
                    deliveries,
                    self.run_id,
                    CrashPoint::BeforeEffect,
                    n,
                    it.seq,
                );
            }
            if it.seq.is_none() {
                continue;
            }
            let now = crate::effects::now_us();
            let applied = match self.policy {
                ConsumerPolicy::Idempotent => batch.apply_once(&it.id, now),
                _ => batch.apply(&it.id, now).map(|_| true),
            };
            match applied {
                Ok(true) => latencies.extend(it.due_us.map(|d| (now - d).max(0) as u64)),
                Ok(false) => {}
                Err(e) => fatal(&mut self.emit, &e.to_string()),
            }
            if crash_at(crash, CrashPoint::AfterEffectBeforeAck, n) {
                if let Err(e) = batch.commit() {
                    fatal(&mut self.emit, &e.to_string());
                }
                let point = CrashPoint::AfterEffectBeforeAck;
                die(&mut self.emit, deliveries, self.run_id, point, n, it.seq);
            }
        }
        if let Err(e) = batch.commit() {
            fatal(&mut self.emit, &e.to_string());
        }
        Applied {
            latencies,
            failed: Vec::new(),
        }
    }

    /// The push effect: one call to the gateway per delivery, as the policy
    /// calls (once, until a 2xx, with a key, around a local seen-table).
    async fn effects_push(
        &mut self,
        items: &[Item],
        first: u64,
        deliveries: &mut lapin::Consumer,
    ) -> Applied {
        let crash = self.crash;
        let calling = Calling {
            retry: self.policy.acks_after_effect(),
            key: self.policy == ConsumerPolicy::IdempotencyKey,
        };
        let mut applied = Applied::default();
        for (i, it) in items.iter().enumerate() {
            let n = first + i as u64;
            if crash_at(crash, CrashPoint::BeforeEffect, n) {
                let point = CrashPoint::BeforeEffect;
                die(&mut self.emit, deliveries, self.run_id, point, n, it.seq);
            }
            let Some(seq) = it.seq else { continue };
            if let Some(seen) = &self.seen {
                match seen.has(&it.id) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => fatal(&mut self.emit, &format!("the seen-table: {e}")),
                }
            }
            let (client, emit) = (self.push.as_ref().expect("a push consumer"), &mut self.emit);
            let shown = client
                .show(&it.id, calling, |call| {
                    emit.push(WireEvent::Push {
                        call,
                        seq: Some(seq),
                    })
                })
                .await;
            match shown {
                Some(true) => {
                    let now = crate::effects::now_us();
                    applied
                        .latencies
                        .extend(it.due_us.map(|d| (now - d).max(0) as u64));
                }
                Some(false) => {}
                None if calling.retry => applied.failed.push(it.tag),
                None => {}
            }
            if crash_at(crash, CrashPoint::AfterEffectBeforeAck, n) {
                let point = CrashPoint::AfterEffectBeforeAck;
                die(&mut self.emit, deliveries, self.run_id, point, n, it.seq);
            }
            if let (Some(seen), Some(_)) = (&self.seen, shown) {
                if let Err(e) = seen.mark(&it.id) {
                    fatal(&mut self.emit, &format!("the seen-table: {e}"));
                }
            }
            self.emit.maybe_flush();
        }
        applied
    }

    /// Acks every delivery of `items` but those in `failed`, which go back
    /// to the queue (a call that never got a 2xx is not acked).
    async fn ack_all_but(&mut self, items: &[Item], failed: &[u64]) -> Result<(), String> {
        for it in items {
            if failed.contains(&it.tag) {
                let requeue = BasicNackOptions {
                    multiple: false,
                    requeue: true,
                };
                bounded(self.channel.basic_nack(it.tag, requeue)).await?;
            } else {
                bounded(
                    self.channel
                        .basic_ack(it.tag, BasicAckOptions { multiple: false }),
                )
                .await?;
                if let Some(seq) = it.seq {
                    self.emit.push(WireEvent::Ledger(Event::Acked(seq)));
                }
            }
        }
        Ok(())
    }

    fn ship_histogram(&mut self) {
        if !self.end_to_end.is_empty() {
            self.emit.push(WireEvent::Histogram {
                name: metrics::END_TO_END.into(),
                data: metrics::encode(&self.end_to_end),
            });
            self.end_to_end.reset();
        }
    }
}

/// A broker round trip that gives up after [`ROUND_TRIP_LIMIT`].
async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(ROUND_TRIP_LIMIT, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "no answer from the broker within {}s",
            ROUND_TRIP_LIMIT.as_secs()
        )),
    }
}

fn crash_at(crash: Option<Crash>, point: CrashPoint, n: u64) -> bool {
    crash.is_some_and(|c| c.point == point && c.at == n)
}

/// Tells the runner, then aborts: the instrument is flushed, nothing else.
/// Deliveries that have already arrived are received: they are reported
/// first, so the ledger counts what the broker sent this process (only what
/// is still in the socket dies unreported).
fn die(
    emit: &mut Emitter,
    deliveries: &mut lapin::Consumer,
    run_id: &str,
    point: CrashPoint,
    count: u64,
    seq: Option<u64>,
) -> ! {
    while let Some(Some(Ok(d))) = deliveries.next().now_or_never() {
        match item(&d, run_id).seq {
            Some(seq) => emit.push(WireEvent::Ledger(Event::Delivered {
                seq,
                redelivered: d.redelivered,
            })),
            None => emit.push(WireEvent::Ledger(Event::Unexpected)),
        }
    }
    emit.push(WireEvent::Aborted {
        point: point.name().into(),
        count,
        seq,
    });
    emit.flush();
    abort_now()
}

fn fatal(emit: &mut Emitter, what: &str) -> ! {
    emit.push(WireEvent::Note(format!("fatal: {what}")));
    emit.flush();
    eprintln!("dlab consumer: {what}");
    std::process::exit(EXIT_SETUP)
}

/// Runs the consumer worker; returns its exit code.
pub async fn run(args: &WorkerArgs, plan: &Plan, mut stop: watch::Receiver<bool>) -> i32 {
    let mut emit = Emitter::new();
    let Some(amqp) = plan.amqp() else {
        fatal(
            &mut emit,
            &format!(
                "the plan's transport is {}, not amqp",
                plan.transport.name()
            ),
        )
    };
    let Some(store_path) = &args.effect_store else {
        fatal(&mut emit, "no --effect-store given")
    };
    let store = match EffectStore::open(store_path) {
        Ok(s) => s,
        Err(e) => fatal(&mut emit, &e.to_string()),
    };
    let name = format!("dlab consumer {} run {}", args.index, args.run_id);
    let mut ends = Endpoints::new(args.amqp_url.clone(), args.first_member as usize);
    let conn = match ends.connect(&name, Duration::from_secs(10)).await {
        Ok(c) => {
            if let Some(i) = ends.current().filter(|_| ends.several()) {
                emit.push(WireEvent::Endpoint(i as u32));
            }
            c
        }
        Err(e) => {
            emit.push(WireEvent::Note(e.to_string()));
            emit.flush();
            return EXIT_CONNECTION_LOST;
        }
    };
    let channel = match bounded(conn.create_channel()).await {
        Ok(c) => c,
        Err(e) => {
            emit.push(WireEvent::Note(format!("cannot open a channel: {e}")));
            emit.flush();
            return EXIT_CONNECTION_LOST;
        }
    };
    if let Err(e) = bounded(super::topology::declare_queue(&channel, &args.queue, amqp)).await {
        emit.push(WireEvent::Note(format!("declaring the queue failed: {e}")));
        emit.flush();
        return EXIT_CONNECTION_LOST;
    }
    let manual = plan.consumer.manual_ack();
    if manual {
        if let Err(e) = bounded(channel.basic_qos(amqp.prefetch, BasicQosOptions::default())).await
        {
            emit.push(WireEvent::Note(format!("basic.qos failed: {e}")));
            emit.flush();
            return EXIT_CONNECTION_LOST;
        }
    }
    let options = BasicConsumeOptions {
        no_ack: !manual,
        ..BasicConsumeOptions::default()
    };
    let mut consumer = match bounded(channel.basic_consume(
        args.queue.as_str().into(),
        format!("dlab-{}", args.index).as_str().into(),
        options,
        FieldTable::default(),
    ))
    .await
    {
        Ok(c) => c,
        Err(e) => {
            emit.push(WireEvent::Note(format!("basic.consume failed: {e}")));
            emit.flush();
            return EXIT_CONNECTION_LOST;
        }
    };
    emit.push(WireEvent::Ready);
    emit.flush();
    let crash = match (args.crash_point, args.crash_after) {
        (Some(p), Some(at)) => Some(Crash {
            point: p.into(),
            at,
        }),
        _ => None,
    };
    let max_batch = if manual && amqp.prefetch > 0 {
        usize::from(amqp.prefetch)
    } else {
        256
    };
    let push = match (&amqp.push, &args.push_url) {
        (Some(p), Some(url)) => {
            let settings = Settings {
                timeout: p.timeout,
                backoff: p.backoff,
                max_backoff: p.max_backoff,
                attempts: p.attempts,
            };
            let tls = match &args.tls_dir {
                Some(dir) if url.starts_with("https:") => {
                    let identity = args
                        .tls_identity
                        .as_deref()
                        .map(|n| crate::tls::named(dir, n));
                    match crate::tls::client_config(&dir.join("ca.pem"), identity.as_ref()) {
                        Ok(c) => Some(c),
                        Err(e) => fatal(&mut emit, &format!("the push gateway's TLS: {e}")),
                    }
                }
                _ => None,
            };
            match PushClient::new(url, settings, args.index, tls) {
                Ok(c) => Some(c),
                Err(e) => fatal(&mut emit, &e),
            }
        }
        (Some(_), None) => fatal(&mut emit, "the push effect needs --push-url"),
        _ => None,
    };
    let seen = match plan.consumer {
        ConsumerPolicy::SeenTable => match SeenTable::open(&seen_table::path_beside(store_path)) {
            Ok(t) => Some(t),
            Err(e) => fatal(&mut emit, &format!("the seen-table: {e}")),
        },
        _ => None,
    };
    let mut state = State {
        run_id: &args.run_id,
        policy: plan.consumer,
        channel: &channel,
        store,
        index: args.index,
        prefetch: amqp.prefetch,
        effect_time: amqp.effect_time,
        crash,
        handled: 0,
        end_to_end: metrics::new_histogram(),
        emit,
        push,
        seen,
    };
    let mut last_ship = Instant::now();
    let code = loop {
        let first = tokio::select! {
            d = consumer.next() => d,
            _ = stop.wait_for(|s| *s) => break 0,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                state.emit.flush();
                continue;
            }
        };
        let mut items = Vec::with_capacity(max_batch);
        let mut lost = None;
        let mut take = |d: Option<Result<Delivery, lapin::Error>>,
                        items: &mut Vec<Item>,
                        state: &mut State<'_>| match d {
            Some(Ok(d)) => {
                let it = item(&d, &args.run_id);
                if let Some(seq) = it.seq {
                    state.emit.push(WireEvent::Ledger(Event::Delivered {
                        seq,
                        redelivered: d.redelivered,
                    }));
                }
                items.push(it);
                true
            }
            Some(Err(e)) => {
                lost = Some(e.to_string());
                false
            }
            None => {
                lost = Some("the broker cancelled the consumer".into());
                false
            }
        };
        if take(first, &mut items, &mut state) {
            while items.len() < max_batch {
                match consumer.next().now_or_never() {
                    Some(d) => {
                        if !take(d, &mut items, &mut state) {
                            break;
                        }
                    }
                    None => break,
                }
            }
        }
        if let Err(e) = state.handle(items, &mut consumer).await {
            lost.get_or_insert(e.to_string());
        }
        if last_ship.elapsed() >= Duration::from_secs(1) {
            state.ship_histogram();
            last_ship = Instant::now();
        }
        if let Some(e) = lost {
            state
                .emit
                .push(WireEvent::Note(format!("connection lost: {e}")));
            break EXIT_CONNECTION_LOST;
        }
    };
    state.ship_histogram();
    if code == 0 {
        state.emit.push(WireEvent::Done);
    }
    state.emit.flush();
    if code == 0 {
        let _ = tokio::time::timeout(ROUND_TRIP_LIMIT, conn.close(200, "done".into())).await;
    }
    code
}
