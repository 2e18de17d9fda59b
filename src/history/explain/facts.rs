//! What a saved run knows about one message: its history lines, the
//! abnormal endings of the processes that held it, its effect-store rows
//! (each matched to the delivery it belongs to) and the fault windows. The
//! story and the verdict are both told from these facts, nothing else.

use super::super::read::{self, Line, What};
use super::super::store::{Row, Store};
use super::super::{HistoryError, RunFiles};
use crate::ledger::Event;
use crate::policy::ConsumerPolicy;
use crate::report::FaultRecord;
use crate::scenario::Transport;
use crate::worker::wire::WireEvent;
use std::collections::HashMap;

/// Everything known about one message of a saved run.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The message number.
    pub seq: u64,
    /// The run's transport.
    pub transport: Transport,
    /// The consumer policy the run used.
    pub consumer: ConsumerPolicy,
    /// The history lines about the message, and the abnormal endings (an
    /// abort, a non-zero exit, a signal) of processes that held it
    /// unsettled, in file order.
    pub lines: Vec<Line>,
    /// Its effect-store rows: effects first, then suppressed rows, each in
    /// the order they were written.
    pub rows: Vec<Placed>,
    /// The fault occurrences of the run, when known.
    pub faults: Option<Vec<FaultRecord>>,
    /// Whether rows are on the run's exact time axis (else on an estimate).
    pub exact_time: bool,
    /// Per line number, [`Facts::key`].
    keys: HashMap<usize, i64>,
    /// The first abnormal ending of each consumer process (or the inbox) in
    /// the run, in file order: where an auto-acked message may have been
    /// in flight.
    pub receivers_ended: Vec<Line>,
    /// SMTP: the relay log's line (number, words) that says the relay
    /// bounced the message, when it did (a private relay's log).
    pub relay_bounce: Option<(usize, String)>,
}

/// An effect-store row on the run's time axis, with its delivery.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The row.
    pub row: Row,
    /// µs since the run started.
    pub at_us: i64,
    /// The line number of the delivery it belongs to: the k-th row a
    /// process wrote for the message belongs to the k-th delivery of the
    /// message to that process.
    pub delivery: Option<usize>,
    /// The worker that wrote it, by the history's name for its process.
    pub worker: String,
    /// Push: a row beyond the first for the same delivery (the consumer
    /// called again for it).
    pub again: bool,
}

impl Facts {
    /// Gathers the facts about message `seq` (ID `message_id`) of `files`;
    /// effect rows are placed on the time axis with `start_us` (the wall
    /// clock at the run's time zero), exact or estimated.
    pub fn gather(
        files: &RunFiles,
        seq: u64,
        message_id: &str,
        (start_us, exact_time): (i64, bool),
    ) -> Result<Facts, HistoryError> {
        let (mut lines, mut endings) = (Vec::new(), Vec::new());
        let mut receivers: HashMap<u32, String> = HashMap::new();
        read::for_each(&files.history, |line| {
            if let What::Event(WireEvent::Ledger(Event::Delivered { .. })) = line.what {
                receivers
                    .entry(line.pid)
                    .or_insert_with(|| line.worker.clone());
            }
            if line.seq() == Some(seq) {
                lines.push(line);
            } else if line.ends_abnormally() {
                endings.push(line);
            }
        })?;
        let mut rows = Vec::new();
        Store::open(&files.effects)?.for_each(Some(message_id), |row| rows.push(row))?;

        let push = files.plan.amqp().is_some_and(|a| a.push.is_some());
        let mut rows = place(rows, &lines, &receivers, start_us, push);
        // The endings that matter: a process's first abnormal ending after
        // it took the message, unless it was done with it by then: an
        // attempt whose outcome it learned; a delivery it applied (or
        // suppressed) and acked (with auto-ack, applied).
        let auto_ack = files.plan.consumer == ConsumerPolicy::AutoAck;
        let mut relevant: Vec<Line> = Vec::new();
        for took in &lines {
            let later = |l: &&Line| l.pid == took.pid && l.number > took.number;
            let done = match took.ledger_event() {
                Some(Event::Delivered { .. }) => {
                    let applied = rows.iter().any(|p| p.delivery == Some(took.number));
                    let acked = lines
                        .iter()
                        .filter(later)
                        .any(|l| matches!(l.ledger_event(), Some(Event::Acked(_))));
                    applied && (acked || auto_ack)
                }
                Some(Event::Attempt(_)) => lines.iter().filter(later).any(|l| {
                    matches!(
                        l.ledger_event(),
                        Some(Event::Confirmed(_) | Event::Nacked(_) | Event::InDoubt(_))
                    )
                }),
                _ => continue,
            };
            let own = lines.iter().filter(later).find(|l| l.ends_abnormally());
            if done || own.is_some() {
                continue;
            }
            if let Some(end) = endings.iter().find(later) {
                if !relevant.contains(end) {
                    relevant.push(end.clone());
                }
            }
        }
        lines.extend(relevant);
        lines.sort_by_key(|l| l.number);
        if !exact_time {
            tighten(&mut rows, &lines);
        }

        let keys = keys(&lines, &rows, exact_time);
        let mut receivers_ended: Vec<Line> = Vec::new();
        for l in endings
            .into_iter()
            .filter(|l| receivers.contains_key(&l.pid))
        {
            if !receivers_ended.iter().any(|e| e.pid == l.pid) {
                receivers_ended.push(l);
            }
        }
        Ok(Facts {
            seq,
            transport: files.plan.transport.kind(),
            consumer: files.plan.consumer,
            lines,
            rows,
            faults: known_faults(files),
            keys,
            receivers_ended,
            exact_time,
            relay_bounce: std::fs::read_to_string(files.dir.join("relay/log/postfix.log"))
                .ok()
                .and_then(|log| {
                    let id = crate::message_id::format(&files.run_id, seq);
                    crate::relay::log::bounce_of(&log, &id)
                }),
        })
    }

    /// The deliveries of the message (and whether each was flagged as a
    /// redelivery), in the order they happened as far as the run can tell:
    /// by [`Facts::key`].
    pub fn deliveries(&self) -> Vec<(&Line, bool)> {
        let mut all: Vec<(&Line, bool)> = self
            .lines
            .iter()
            .filter_map(|l| match l.ledger_event() {
                Some(Event::Delivered { redelivered, .. }) => Some((l, redelivered)),
                _ => None,
            })
            .collect();
        all.sort_by_key(|(l, _)| (self.key(l), l.number));
        all
    }

    /// When line `l` happened, as far as the run can tell (µs since the
    /// start): no later than its stamp, than the commit of the row it led
    /// to (a delivery, on the exact time axis), or than the next line of the
    /// same process (a process reports in order). Stamps are when the runner
    /// read a worker's report, which can be tens of ms late, and later for
    /// one worker than for another; a commit time is exact.
    pub fn key(&self, l: &Line) -> i64 {
        self.keys.get(&l.number).copied().unwrap_or(l.at_us as i64)
    }

    /// The attempts to send the message, in file order.
    pub fn attempts(&self) -> impl Iterator<Item = &Line> {
        self.lines
            .iter()
            .filter(|l| matches!(l.ledger_event(), Some(Event::Attempt(_))))
    }

    /// The line `number`.
    pub fn line(&self, number: usize) -> Option<&Line> {
        self.lines.iter().find(|l| l.number == number)
    }

    /// The effects (not suppressed rows), in the order they were written.
    pub fn effects(&self) -> impl Iterator<Item = &Placed> {
        self.rows
            .iter()
            .filter(|p| p.row.kind == super::super::store::Kind::Effect)
    }

    /// The fault occurrences active at `at_us` (µs since the run started):
    /// `#N name` each; None when the faults are unknown.
    pub fn faults_at(&self, at_us: i64) -> Option<Vec<String>> {
        self.faults_between(at_us, at_us)
    }

    /// The fault occurrences active at some moment from `from_us` to
    /// `to_us`; None when the faults are unknown.
    pub fn faults_between(&self, from_us: i64, to_us: i64) -> Option<Vec<String>> {
        let ms = |us: i64| (us.max(0) / 1000) as u64;
        let (from, to) = (ms(from_us.min(to_us)), ms(from_us.max(to_us)));
        let faults = self.faults.as_ref()?;
        let mut labels: Vec<String> = faults
            .iter()
            .filter(|f| f.fired)
            .filter(|f| {
                f.started_ms
                    .is_some_and(|s| s <= to && f.ended_ms.is_none_or(|e| from <= e))
            })
            .map(fault_label)
            .collect();
        labels.dedup();
        Some(labels)
    }
}

/// `#N name`: the fault's index in the scenario and its kind, the first
/// word of its description (`confirm-lost`, `inbox-hangup`, `broker-kill`).
pub fn fault_label(f: &FaultRecord) -> String {
    let kind = f
        .description
        .split_whitespace()
        .next()
        .unwrap_or("fault")
        .trim_end_matches(':');
    format!("#{} {kind}", f.fault)
}

/// The run's fault occurrences: from its result, or none at all when its
/// plan has no fault the driver runs (crashes are the workers' own, in the
/// history); unknown otherwise.
fn known_faults(files: &RunFiles) -> Option<Vec<FaultRecord>> {
    if let Some(r) = &files.result {
        return Some(r.fault_timeline.clone());
    }
    let driven = files.plan.faults.iter().any(|f| {
        !matches!(
            f.action,
            crate::scenario::Action::ConsumerCrash { .. }
                | crate::scenario::Action::ProducerCrash { .. }
        )
    });
    (!driven).then(Vec::new)
}

/// Per line, the latest moment it can have happened: its stamp, the commit
/// of the row it led to (on the exact time axis), and the key of the next
/// line of the same worker process, whichever is earliest.
fn keys(lines: &[Line], rows: &[Placed], exact_time: bool) -> HashMap<usize, i64> {
    let mut next: HashMap<(&str, u32), i64> = HashMap::new();
    let mut keys = HashMap::new();
    for l in lines.iter().rev() {
        let committed = rows
            .iter()
            .filter(|p| exact_time && p.delivery == Some(l.number))
            .map(|p| p.at_us)
            .min()
            .unwrap_or(i64::MAX);
        let later = next.entry((l.worker.as_str(), l.pid)).or_insert(i64::MAX);
        let key = (l.at_us as i64).min(committed).min(*later);
        *later = key;
        keys.insert(l.number, key);
    }
    keys
}

/// On an estimated time zero (a file's creation time, which the kernel
/// keeps to a clock tick), moves the rows earlier where the history proves
/// the estimate too early: a process commits a row before anything it
/// reports after the delivery the row belongs to (its ack, its abort), so
/// the row's time cannot be later than that report's stamp.
fn tighten(rows: &mut [Placed], lines: &[Line]) {
    let late_by = rows
        .iter()
        .filter_map(|p| {
            let d = lines.iter().find(|l| Some(l.number) == p.delivery)?;
            let next = lines
                .iter()
                .filter(|l| l.pid == d.pid && l.worker == d.worker && l.number > d.number)
                .map(|l| l.at_us as i64)
                .min()?;
            Some(p.at_us - next)
        })
        .max()
        .unwrap_or(0);
    if late_by > 0 {
        for p in rows.iter_mut() {
            p.at_us -= late_by;
        }
    }
}

/// Puts each row on the time axis and matches it with its delivery.
fn place(
    rows: Vec<Row>,
    lines: &[Line],
    receivers: &HashMap<u32, String>,
    start_us: i64,
    push: bool,
) -> Vec<Placed> {
    // Per process, its rows in time order take its deliveries in file order.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (rows[i].at_us, i));
    // With a push effect a process may write more rows than it had
    // deliveries (it called again for one): those belong to its last one.
    let mut taken: HashMap<u32, usize> = HashMap::new();
    let mut delivery = vec![None; rows.len()];
    let mut again = vec![false; rows.len()];
    for i in order {
        let pid = rows[i].pid;
        let k = taken.entry(pid).or_default();
        let own: Vec<usize> = lines
            .iter()
            .filter(|l| l.pid == pid)
            .filter(|l| matches!(l.ledger_event(), Some(Event::Delivered { .. })))
            .map(|l| l.number)
            .collect();
        delivery[i] = own.get(*k).copied();
        if delivery[i].is_none() && push {
            delivery[i] = own.last().copied();
            again[i] = delivery[i].is_some();
        }
        *k += 1;
    }
    rows.into_iter()
        .zip(delivery)
        .zip(again)
        .map(|((row, delivery), again)| {
            let worker = delivery
                .and_then(|n| lines.iter().find(|l| l.number == n))
                .map(|l| l.worker.clone())
                .or_else(|| receivers.get(&row.pid).cloned())
                .unwrap_or_else(|| "a process".to_string());
            Placed {
                at_us: row.at_us - start_us,
                row,
                delivery,
                worker,
                again,
            }
        })
        .collect()
}
