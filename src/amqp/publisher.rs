//! The producer worker: publishes its share of the intended messages under a
//! producer policy and reports every attempt and outcome.
//!
//! - `fire-and-forget`: no confirms; a failed publish is reported in doubt and
//!   never retried.
//! - `confirm-retry`: publisher confirms with at most `confirm_window` awaiting
//!   their confirm; a nack, a confirm timeout or a lost connection puts the
//!   message back in line to be republished (after reconnecting).
//!
//! On a cluster a producer has every member's URL ([`Endpoints`]): after a
//! lost connection it reconnects to the next member first, and under
//! `confirm-retry` it also leaves a member that confirmed nothing for a whole
//! `confirm_timeout` while the connection stays open.
//!
//! Producer `i` of `P` owns messages `i, i+P, i+2P, …`. With a rate, message k
//! of a producer is due at `start + k·P/rate` (unthrottled: when it is first
//! taken); the due time travels in a header so consumers can measure
//! end-to-end latency from when it was due, not from when it was sent.

use super::endpoints::Endpoints;
use super::send_log::SendLog;
use super::worker::WorkerArgs;
use crate::ledger::Event;
use crate::message_id;
use crate::metrics;
use crate::policy::ProducerPolicy;
use crate::scenario::{AmqpPlan, Plan};
use crate::worker::abort_now;
use crate::worker::wire::WireEvent;
use crate::worker::Emitter;
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection};
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The header carrying the time (µs since the Unix epoch) a message was due.
pub const DUE_HEADER: &str = "dlab-due-us";

/// How long a producer keeps trying to reconnect before it gives up on the rest.
const RECONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// One message waiting to be (re)published.
#[derive(Debug, Clone, Copy)]
struct Pending {
    seq: u64,
    due_us: i64,
}

type ConfirmFuture = Pin<Box<dyn Future<Output = (Pending, Instant, ConfirmOutcome)>>>;

enum ConfirmOutcome {
    Ack,
    Nack,
    Lost(String),
    TimedOut,
}

struct Link {
    conn: Connection,
    channel: Channel,
}

impl Link {
    /// Publishes message `p` to the run's queue through the default exchange;
    /// a publish that cannot be handed over within the confirm timeout (a
    /// blocked or dead connection) is an error.
    async fn publish(
        &self,
        args: &WorkerArgs,
        plan: &AmqpPlan,
        payload: &[u8],
        p: Pending,
    ) -> Result<lapin::PublisherConfirm, String> {
        let publish = self.channel.basic_publish(
            "".into(),
            args.queue.as_str().into(),
            BasicPublishOptions::default(),
            payload,
            properties(args, plan, p),
        );
        match tokio::time::timeout(plan.confirm_timeout.max(ROUND_TRIP_LIMIT), publish).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("the publish could not be handed to the broker in time".into()),
        }
    }

    /// Closes the connection gracefully (the broker then has every publish
    /// sent before), giving up after a while.
    async fn close(self) {
        let _ = tokio::time::timeout(ROUND_TRIP_LIMIT, self.conn.close(200, "done".into())).await;
    }
}

/// The producer's schedule: which messages it owns and when each is due.
struct Schedule {
    done: HashSet<u64>,
    next: u64,
    step: u64,
    end: u64,
    start: Instant,
    start_wall_us: i64,
    interval: Option<Duration>,
}

impl Schedule {
    /// The schedule of producer `index`, leaving out the messages in `done`
    /// (what an earlier process of this producer already settled). The first
    /// message left is due now.
    fn new(plan: &Plan, index: u32, done: HashSet<u64>) -> Schedule {
        let step = u64::from(plan.producers);
        let mut s = Schedule {
            done,
            next: u64::from(index),
            step,
            end: plan.messages,
            start: Instant::now(),
            start_wall_us: crate::effects::now_us(),
            interval: (plan.rate > 0)
                .then(|| Duration::from_secs_f64(step as f64 / plan.rate as f64)),
        };
        s.skip_done();
        if let Some(i) = s.interval {
            let ahead = i * (s.next / step) as u32;
            s.start = s.start.checked_sub(ahead).unwrap_or(s.start);
            s.start_wall_us -= ahead.as_micros() as i64;
        }
        s
    }

    fn skip_done(&mut self) {
        while self.next < self.end && self.done.contains(&self.next) {
            self.next += self.step;
        }
    }

    /// When the next message is due, or None when all are issued.
    fn next_due(&self) -> Option<Instant> {
        if self.next >= self.end {
            return None;
        }
        let k = (self.next / self.step) as u32;
        Some(self.interval.map_or(self.start, |i| self.start + i * k))
    }

    /// Takes the next message. Unthrottled, a message is due when it is taken;
    /// at a rate, when the schedule says, however late it is taken.
    fn take(&mut self) -> Pending {
        let due_us = match (self.interval, self.next_due()) {
            (Some(_), Some(due)) => {
                self.start_wall_us + due.duration_since(self.start).as_micros() as i64
            }
            _ => crate::effects::now_us(),
        };
        let p = Pending {
            seq: self.next,
            due_us,
        };
        self.next += self.step;
        self.skip_done();
        p
    }
}

/// Bounds every broker round trip a worker makes: a connection reset at the
/// wrong moment must become an error, never a wait without end.
pub const ROUND_TRIP_LIMIT: Duration = Duration::from_secs(10);

async fn open(
    ends: &mut Endpoints,
    args: &WorkerArgs,
    plan: &AmqpPlan,
    confirms: bool,
) -> Result<Link, String> {
    // Each member gets its own connect timeout; the rest of the opening is
    // one round trip.
    let limit = ROUND_TRIP_LIMIT * ends.members() as u32;
    tokio::time::timeout(limit, open_unbounded(ends, args, plan, confirms))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer from the broker within {}s",
                ROUND_TRIP_LIMIT.as_secs()
            ))
        })
}

async fn open_unbounded(
    ends: &mut Endpoints,
    args: &WorkerArgs,
    plan: &AmqpPlan,
    confirms: bool,
) -> Result<Link, String> {
    let name = format!("dlab producer {} run {}", args.index, args.run_id);
    let conn = ends
        .connect(&name, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    let channel = conn.create_channel().await.map_err(|e| e.to_string())?;
    // Declared on every connect, as applications do: after a broker restart a
    // transient queue is gone and would swallow every publish.
    super::topology::declare_queue(&channel, &args.queue, plan)
        .await
        .map_err(|e| format!("declaring the queue: {e}"))?;
    if confirms {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(Link { conn, channel })
}

/// Reconnects with backoff; None once `RECONNECT_PATIENCE` has passed without success.
async fn reconnect(
    ends: &mut Endpoints,
    args: &WorkerArgs,
    plan: &AmqpPlan,
    confirms: bool,
    emit: &mut Emitter,
) -> Option<Link> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    // After a loss, the next member first.
    ends.lost();
    loop {
        match open(ends, args, plan, confirms).await {
            Ok(link) => {
                if let Some(i) = ends.current().filter(|_| ends.several()) {
                    emit.push(WireEvent::Endpoint(i as u32));
                }
                return Some(link);
            }
            Err(e) if started.elapsed() >= RECONNECT_PATIENCE => {
                emit.push(WireEvent::Note(format!(
                    "giving up after reconnecting failed for {}s: {e}",
                    RECONNECT_PATIENCE.as_secs()
                )));
                return None;
            }
            Err(e) => {
                emit.push(WireEvent::Note(format!("reconnect failed, retrying: {e}")));
                emit.flush();
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn properties(args: &WorkerArgs, plan: &AmqpPlan, p: Pending) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(DUE_HEADER.into(), AMQPValue::LongLongInt(p.due_us));
    BasicProperties::default()
        .with_message_id(message_id::format(&args.run_id, p.seq).as_str().into())
        .with_delivery_mode(if plan.persistent { 2 } else { 1 })
        .with_headers(headers)
}

/// Runs the producer worker; returns its exit code.
pub async fn run(args: &WorkerArgs, plan: &Plan, stop: watch::Receiver<bool>) -> i32 {
    let Some(amqp) = plan.amqp() else {
        eprintln!(
            "dlab producer: the plan's transport is {}, not amqp",
            plan.transport.name()
        );
        return crate::worker::EXIT_SETUP;
    };
    let mut emit = Emitter::new();
    let (log, recovered) = match SendLog::open(args.send_log.as_deref()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("dlab producer: cannot open the send log: {e}");
            return crate::worker::EXIT_SETUP;
        }
    };
    // What an earlier process of this producer settled is not published again:
    // confirmed messages under confirm-retry, sent ones under fire-and-forget.
    let done = match plan.producer {
        // (The SMTP policies never reach an AMQP producer: the plan rejects
        // them; they are matched by what they share with the AMQP ones.)
        ProducerPolicy::FireAndForget | ProducerPolicy::SendOnce => recovered.sent,
        ProducerPolicy::ConfirmRetry | ProducerPolicy::Retry => recovered.confirmed,
    };
    if !done.is_empty() {
        emit.push(WireEvent::Note(format!(
            "restarted: {} message(s) settled by the send log",
            done.len()
        )));
    }
    let mut out = Records {
        emit,
        log,
        published: 0,
        crash_after: args.crash_after,
    };
    let payload = payload(plan.seed, amqp);
    let schedule = Schedule::new(plan, args.index, done);
    let code = match plan.producer {
        ProducerPolicy::FireAndForget | ProducerPolicy::SendOnce => {
            fire_and_forget(args, amqp, &payload, &mut out, schedule, stop).await
        }
        ProducerPolicy::ConfirmRetry | ProducerPolicy::Retry => {
            confirm_retry(args, amqp, &payload, &mut out, schedule, stop).await
        }
    };
    let _ = out.log.flush();
    out.emit.push(WireEvent::Done);
    out.emit.flush();
    code
}

/// Where a producer records what it does: the runner's instrument and its own send log.
struct Records {
    emit: Emitter,
    log: SendLog,
    published: u64,
    crash_after: Option<u64>,
}

impl Records {
    /// Before a publish: the send log first (write-ahead), then the instrument.
    fn attempt(&mut self, seq: u64) {
        if let Err(e) = self.log.sending(seq) {
            self.emit
                .push(WireEvent::Note(format!("send log write failed: {e}")));
        }
        self.emit.push(WireEvent::Ledger(Event::Attempt(seq)));
    }

    /// After the publish of `seq` left: the scheduled producer crash, if this
    /// was its publish.
    fn published(&mut self, seq: u64) {
        self.published += 1;
        if self.crash_after == Some(self.published) {
            self.emit.push(WireEvent::Aborted {
                point: "after-publish".into(),
                count: self.published,
                seq: Some(seq),
            });
            self.emit.flush();
            abort_now();
        }
    }

    fn confirmed(&mut self, seq: u64) {
        self.log.confirmed(seq);
        self.emit.push(WireEvent::Ledger(Event::Confirmed(seq)));
    }

    fn maybe_flush(&mut self) {
        let _ = self.log.flush();
        self.emit.maybe_flush();
    }
}

/// A body of `payload_bytes` bytes, the same for every message of a seed.
pub fn payload(seed: u64, plan: &AmqpPlan) -> Vec<u8> {
    let mut x = seed | 1;
    (0..plan.payload_bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

async fn wait_until(due: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(due.into()) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

async fn fire_and_forget(
    args: &WorkerArgs,
    plan: &AmqpPlan,
    payload: &[u8],
    out: &mut Records,
    mut schedule: Schedule,
    mut stop: watch::Receiver<bool>,
) -> i32 {
    let mut link: Option<Link> = None;
    let mut ends = Endpoints::new(args.amqp_url.clone(), args.first_member as usize);
    while let Some(due) = schedule.next_due() {
        if !wait_until(due, &mut stop).await {
            break;
        }
        if link.is_none() {
            link = reconnect(&mut ends, args, plan, false, &mut out.emit).await;
            if link.is_none() {
                break;
            }
        }
        let l = link.as_ref().expect("connected above");
        let p = schedule.take();
        let seq = p.seq;
        out.attempt(seq);
        let sent = l.publish(args, plan, payload, p).await;
        if sent.is_ok() {
            out.published(seq);
        }
        if let Err(e) = sent {
            out.emit.push(WireEvent::Ledger(Event::InDoubt(p.seq)));
            out.emit.push(WireEvent::Note(format!(
                "publish failed, not retried (fire-and-forget): {e}"
            )));
            link = None;
        }
        out.maybe_flush();
    }
    // A graceful close makes the broker process every publish sent before it.
    if let Some(l) = link {
        l.close().await;
    }
    0
}

async fn confirm_retry(
    args: &WorkerArgs,
    plan: &AmqpPlan,
    payload: &[u8],
    out: &mut Records,
    mut schedule: Schedule,
    mut stop: watch::Receiver<bool>,
) -> i32 {
    let mut retry: VecDeque<Pending> = VecDeque::new();
    let mut in_flight: FuturesUnordered<ConfirmFuture> = Default::default();
    let mut link: Option<Link> = None;
    let mut ends = Endpoints::new(args.amqp_url.clone(), args.first_member as usize);
    let mut last_ack = Instant::now();
    let mut confirm_latency = metrics::new_histogram();
    let window = plan.confirm_window as usize;
    let timeout = plan.confirm_timeout;
    loop {
        if *stop.borrow() {
            break;
        }
        if schedule.next_due().is_none() && retry.is_empty() && in_flight.is_empty() {
            break;
        }
        if link.is_none() && in_flight.is_empty() {
            link = reconnect(&mut ends, args, plan, true, &mut out.emit).await;
            if link.is_none() {
                break;
            }
            last_ack = Instant::now();
        }
        // Fill the window: retries first, then new messages that are due.
        while let Some(l) = link.as_ref() {
            if in_flight.len() >= window {
                break;
            }
            let p = if let Some(p) = retry.pop_front() {
                p
            } else if schedule.next_due().is_some_and(|d| d <= Instant::now()) {
                schedule.take()
            } else {
                break;
            };
            let seq = p.seq;
            out.attempt(seq);
            let sent_at = Instant::now();
            match l.publish(args, plan, payload, p).await {
                Ok(confirm) => {
                    in_flight.push(Box::pin(async move {
                        let outcome = match tokio::time::timeout(timeout, confirm).await {
                            Ok(Ok(Confirmation::Nack(_))) => ConfirmOutcome::Nack,
                            Ok(Ok(_)) => ConfirmOutcome::Ack,
                            Ok(Err(e)) => ConfirmOutcome::Lost(e.to_string()),
                            Err(_) => ConfirmOutcome::TimedOut,
                        };
                        (p, sent_at, outcome)
                    }));
                    out.published(seq);
                }
                Err(e) => {
                    out.emit.push(WireEvent::Ledger(Event::InDoubt(p.seq)));
                    out.emit.push(WireEvent::Note(format!(
                        "publish failed, will republish: {e}"
                    )));
                    retry.push_back(p);
                    link = None;
                }
            }
        }
        out.maybe_flush();
        let next_due = schedule
            .next_due()
            .filter(|_| link.is_some() && in_flight.len() < window);
        if in_flight.is_empty() && next_due.is_none() {
            // Nothing to wait for here: the connection broke while filling
            // the window (reconnect above) or everything is settled (done).
            continue;
        }
        tokio::select! {
            Some((p, sent_at, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                match outcome {
                    ConfirmOutcome::Ack => {
                        let _ = confirm_latency.record(sent_at.elapsed().as_micros() as u64);
                        out.confirmed(p.seq);
                        last_ack = Instant::now();
                    }
                    ConfirmOutcome::Nack => {
                        out.emit.push(WireEvent::Ledger(Event::Nacked(p.seq)));
                        retry.push_back(p);
                    }
                    ConfirmOutcome::TimedOut => {
                        out.emit.push(WireEvent::Ledger(Event::InDoubt(p.seq)));
                        retry.push_back(p);
                        // On a cluster, a member that has confirmed nothing
                        // for a whole confirm timeout (cut off from the
                        // queue's majority, its connection still open) is
                        // left for the next one.
                        if ends.several() && last_ack.elapsed() >= timeout {
                            if let Some(l) = link.take() {
                                out.emit.push(WireEvent::Note(format!(
                                    "no confirm for {}ms from this member: failing over",
                                    last_ack.elapsed().as_millis()
                                )));
                                // Its pending confirms end with the connection.
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(1),
                                    l.conn.close(200, "failing over".into()),
                                )
                                .await;
                            }
                        }
                    }
                    ConfirmOutcome::Lost(e) => {
                        out.emit.push(WireEvent::Ledger(Event::InDoubt(p.seq)));
                        if link.take().is_some() {
                            out.emit.push(WireEvent::Note(format!("connection lost with confirms pending, will republish: {e}")));
                        }
                        retry.push_back(p);
                    }
                }
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now).into()), if next_due.is_some() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    out.emit.push(WireEvent::Histogram {
        name: metrics::PUBLISH_TO_CONFIRM.into(),
        data: metrics::encode(&confirm_latency),
    });
    if let Some(l) = link {
        l.close().await;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(messages: u64, producers: u32, rate: u64) -> Plan {
        let spec = crate::scenario::Spec {
            guarantee: Some(crate::policy::Guarantee::AtLeastOnce),
            messages: Some(messages),
            producers: Some(u64::from(producers)),
            rate: Some(rate),
            ..Default::default()
        };
        Plan::from_spec(&spec, "t").unwrap()
    }

    #[test]
    fn producers_share_the_messages_without_overlap() {
        let p = plan(10, 3, 0);
        let mut all = Vec::new();
        for i in 0..3 {
            let mut s = Schedule::new(&p, i, HashSet::new());
            while s.next_due().is_some() {
                all.push(s.take().seq);
            }
        }
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_restarted_producer_skips_what_it_settled_and_starts_now() {
        let p = plan(10, 1, 100);
        let mut s = Schedule::new(&p, 0, HashSet::from([0, 1, 2, 5]));
        assert!(
            s.next_due().unwrap() <= Instant::now(),
            "the first unsettled message is due at once"
        );
        let mut seqs = Vec::new();
        while s.next_due().is_some() {
            seqs.push(s.take().seq);
        }
        assert_eq!(seqs, vec![3, 4, 6, 7, 8, 9]);
    }

    #[test]
    fn a_rate_spaces_due_times_evenly() {
        let p = plan(10, 2, 100); // 50 msg/s per producer: 20 ms apart
        let mut s = Schedule::new(&p, 0, HashSet::new());
        let first = s.next_due().unwrap();
        let a = s.take();
        let second = s.next_due().unwrap();
        let b = s.take();
        assert_eq!(second - first, Duration::from_millis(20));
        assert_eq!(b.due_us - a.due_us, 20_000);
    }
}
