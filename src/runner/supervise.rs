//! Supervision of one run's worker processes: start, feed the ledger from
//! their events, restart crashed consumers, decide when the run has drained.
//!
//! The drain phase is the final read: it ends when every producer has
//! finished, no consumer is down, no delivery is awaiting its ack, the queue
//! has no ready message and the consumers have been quiet for a moment, on
//! two checks in a row; or when the plan's drain timeout passes.

use super::faults::{Driver, FaultRecord, Tally};
use super::inspect::Inspector;
use super::workers::{self, Launch, Origin, Report, Running, Slot};
use super::RunError;
use crate::ledger::{Event, Ledger};
use crate::metrics;
use crate::report::progress::Progress;
use crate::report::{CrashRecord, Series, TimelineEntry};
use crate::scenario::Plan;
use crate::worker::wire::WireEvent;
use crate::worker::{Role, EXIT_CONNECTION_LOST};
use hdrhistogram::Histogram;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long consumers get to connect and register.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long consumers must have been quiet for the run to count as drained.
const QUIET: Duration = Duration::from_millis(400);
/// How long stopping consumers may take before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Delay before restarting a worker that lost its connection.
const RECONNECT_RESTART: Duration = Duration::from_millis(500);
/// How long producers may run past their schedule before they are stopped.
const PRODUCE_GRACE: Duration = Duration::from_secs(300);
/// How many worker notes a result keeps.
const MAX_NOTES: usize = 50;

/// What supervision produced.
pub struct Outcome {
    /// Everything the workers reported (effects are added from the store later).
    pub ledger: Ledger,
    /// Whether the drain phase completed before its timeout.
    pub drained: bool,
    /// How long the drain phase took.
    pub drain_time: Duration,
    /// What happened when.
    pub timeline: Vec<TimelineEntry>,
    /// From the first publish to the last delivery handled.
    pub active: Duration,
    /// Merged publish-to-confirm latencies.
    pub publish_to_confirm: Histogram<u64>,
    /// Merged end-to-end latencies.
    pub end_to_end: Histogram<u64>,
    /// Notes from the workers.
    pub notes: Vec<String>,
    /// Every occurrence of a runner-side fault.
    pub faults: Vec<FaultRecord>,
    /// Sent and confirmed over time (effects are added from the store).
    pub series: Series,
    /// The wall clock at the start of the run (µs since the Unix epoch), to
    /// place effect-store rows on the same time axis.
    pub start_wall_us: i64,
    /// Worker aborts as the workers reported them.
    pub crashes: Vec<CrashRecord>,
    /// The history file: every event the workers reported.
    pub history: std::path::PathBuf,
}

#[derive(Default)]
struct SlotState {
    running: Option<Running>,
    incarnation: u32,
    ready: bool,
    finished: bool,
    outstanding: u64,
    restart_at: Option<Instant>,
    /// The pending restart follows a failed reconnect: keep it out of the timeline.
    quiet: bool,
    /// The crash the current process reported before it aborted.
    abort: Option<CrashRecord>,
}

struct Supervisor<'a> {
    plan: &'a Plan,
    launch: &'a Launch,
    tx: mpsc::UnboundedSender<Report>,
    producers: Vec<SlotState>,
    consumers: Vec<SlotState>,
    ledger: Ledger,
    start: Instant,
    timeline: Vec<TimelineEntry>,
    notes: Vec<String>,
    publish_to_confirm: Histogram<u64>,
    end_to_end: Histogram<u64>,
    last_consumer_event: Instant,
    last_handled: Option<Instant>,
    stopping: bool,
    tally: Tally,
    series: Series,
    crashes: Vec<CrashRecord>,
    /// Every event as it arrived (the run's history), or None once writing failed.
    history: Option<std::io::BufWriter<std::fs::File>>,
}

impl Supervisor<'_> {
    /// Appends one line to the history: time, worker, pid, what happened.
    fn record(&mut self, o: Origin, what: &dyn std::fmt::Display) {
        let at_us = self.start.elapsed().as_micros();
        let Some(w) = self.history.as_mut() else {
            return;
        };
        if writeln!(w, "{at_us}\t{}\t{}\t{what}", o.slot, o.pid).is_err() {
            self.history = None;
        }
    }

    fn mark(&mut self, event: impl Into<String>) {
        self.timeline.push(TimelineEntry {
            at_ms: self.start.elapsed().as_millis() as u64,
            event: event.into(),
        });
    }

    fn state(&mut self, slot: Slot) -> &mut SlotState {
        match slot.role {
            Role::Producer => &mut self.producers[slot.index as usize],
            Role::Consumer => &mut self.consumers[slot.index as usize],
        }
    }

    fn spawn(&mut self, slot: Slot) -> Result<(), RunError> {
        let incarnation = self.state(slot).incarnation;
        let crash = match (slot.role, incarnation) {
            (Role::Consumer, 0) => self
                .plan
                .crash_for_consumer(slot.index)
                .map(|(p, n, _)| (Some(p), n)),
            (Role::Producer, 0) => self
                .plan
                .crash_for_producer(slot.index)
                .map(|(n, _)| (None, n)),
            _ => None,
        };
        let running = workers::spawn(self.launch, slot, incarnation, crash, self.tx.clone())
            .map_err(RunError::io(format!(
                "cannot start {slot} ({})",
                self.launch.exe.display()
            )))?;
        let s = self.state(slot);
        s.running = Some(running);
        s.ready = false;
        s.outstanding = 0;
        s.restart_at = None;
        Ok(())
    }

    fn handle(&mut self, report: Report) -> Result<(), RunError> {
        match report {
            Report::Event(origin, event) => self.event(origin, event),
            Report::Exited(origin, status) => {
                // `exit CODE` or `signal N`: how the process ended.
                match (status.code(), status.signal()) {
                    (Some(code), _) => self.record(origin, &format_args!("exit {code}")),
                    (None, Some(sig)) => self.record(origin, &format_args!("signal {sig}")),
                    (None, None) => self.record(origin, &"signal ?"),
                }
                self.exited(origin, status)?
            }
        }
        Ok(())
    }

    fn event(&mut self, origin: Origin, event: WireEvent) {
        let (slot, incarnation) = (origin.slot, origin.incarnation);
        if !matches!(event, WireEvent::Histogram { .. } | WireEvent::Note(_)) {
            self.record(origin, &event);
        }
        let current = self.state(slot).incarnation == incarnation;
        if slot.role == Role::Consumer {
            self.last_consumer_event = Instant::now();
        }
        match event {
            WireEvent::Ready => {
                if current {
                    let s = self.state(slot);
                    s.ready = true;
                    if std::mem::take(&mut s.quiet) {
                        self.mark(format!("{slot} connected again"));
                    }
                }
            }
            WireEvent::Attempt(s) => {
                self.tally.published += 1;
                self.series.sent(self.start.elapsed().as_millis() as u64);
                self.ledger.record(Event::Attempt(s))
            }
            WireEvent::Confirmed(s) => {
                self.tally.confirmed += 1;
                self.series
                    .confirmed(self.start.elapsed().as_millis() as u64);
                self.ledger.record(Event::Confirmed(s))
            }
            WireEvent::Nacked(s) => {
                self.tally.nacked += 1;
                self.ledger.record(Event::Nacked(s))
            }
            WireEvent::InDoubt(s) => {
                self.tally.in_doubt += 1;
                self.ledger.record(Event::InDoubt(s))
            }
            WireEvent::Delivered { seq, redelivered } => {
                self.tally.delivered += 1;
                self.tally.redelivered += u64::from(redelivered);
                self.ledger.record(Event::Delivered { seq, redelivered });
                self.last_handled = Some(Instant::now());
                if current && self.plan.consumer.manual_ack() {
                    self.state(slot).outstanding += 1;
                }
            }
            WireEvent::Acked(s) => {
                self.tally.acked += 1;
                self.ledger.record(Event::Acked(s));
                self.last_handled = Some(Instant::now());
                if current {
                    let st = self.state(slot);
                    st.outstanding = st.outstanding.saturating_sub(1);
                }
            }
            WireEvent::Unexpected => self.ledger.record_unexpected(),
            WireEvent::Histogram { name, data } => {
                let target = match name.as_str() {
                    metrics::PUBLISH_TO_CONFIRM => &mut self.publish_to_confirm,
                    metrics::END_TO_END => &mut self.end_to_end,
                    _ => return,
                };
                if let Some(h) = metrics::decode(&data) {
                    let _ = target.add(h);
                }
            }
            WireEvent::Note(text) => {
                if self.notes.len() < MAX_NOTES {
                    self.notes.push(format!("{slot}: {text}"));
                }
            }
            WireEvent::Aborted { point, count, seq } => {
                let crash = CrashRecord {
                    at_ms: self.start.elapsed().as_millis() as u64,
                    worker: slot.to_string(),
                    pid: origin.pid,
                    point,
                    count,
                    seq,
                };
                self.crashes.push(crash.clone());
                if current {
                    self.state(slot).abort = Some(crash);
                }
            }
            WireEvent::Done => {}
        }
    }

    fn exited(&mut self, origin: Origin, status: ExitStatus) -> Result<(), RunError> {
        let (slot, incarnation) = (origin.slot, origin.incarnation);
        if self.state(slot).incarnation != incarnation {
            return Ok(());
        }
        let stopping = self.stopping;
        let s = self.state(slot);
        s.running = None;
        match slot.role {
            Role::Producer if status.signal() == Some(libc::SIGABRT) && !stopping => {
                let delay = self
                    .plan
                    .crash_for_producer(slot.index)
                    .map_or(RECONNECT_RESTART, |(_, d)| d);
                let s = self.state(slot);
                s.incarnation += 1;
                s.restart_at = Some(Instant::now() + delay);
                let what = describe_abort(s.abort.take());
                self.mark(format!("{slot} aborted ({what})"));
            }
            Role::Producer => {
                s.finished = true;
                if !status.success() {
                    self.mark(format!("{slot} exited with {status}"));
                }
            }
            Role::Consumer if stopping => s.finished = true,
            Role::Consumer => {
                let was_ready = s.ready;
                let reported = s.abort.take();
                let crash = self.plan.crash_for_consumer(slot.index);
                let (what, delay) = if status.signal() == Some(libc::SIGABRT) {
                    let delay = crash.map_or(RECONNECT_RESTART, |(_, _, d)| d);
                    (
                        format!("{slot} aborted ({})", describe_abort(reported)),
                        delay,
                    )
                } else if status.code() == Some(EXIT_CONNECTION_LOST) {
                    (
                        format!("{slot} lost its broker connection"),
                        RECONNECT_RESTART,
                    )
                } else {
                    let log = self
                        .launch
                        .log_dir
                        .join(format!("consumer-{}.{incarnation}.log", slot.index));
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    return Err(RunError::Worker(format!(
                        "{slot} exited with {status}: {} (log: {})",
                        tail.lines().last().unwrap_or("no message"),
                        log.display()
                    )));
                };
                if !was_ready && status.code() == Some(EXIT_CONNECTION_LOST) && incarnation == 0 {
                    let note = self
                        .notes
                        .iter()
                        .rev()
                        .find(|n| n.starts_with(&slot.to_string()))
                        .cloned();
                    return Err(RunError::Worker(format!(
                        "{slot} could not start consuming: {}",
                        note.unwrap_or_else(|| "no reason given".into())
                    )));
                }
                // A consumer that keeps failing to reconnect (the broker is
                // down) is restarted quietly: one timeline line per outage.
                let quiet = !was_ready && status.code() == Some(EXIT_CONNECTION_LOST);
                let s = self.state(slot);
                s.incarnation += 1;
                s.restart_at = Some(Instant::now() + delay);
                s.quiet = quiet;
                if !quiet {
                    self.mark(what);
                }
            }
        }
        Ok(())
    }

    fn restart_due(&mut self) -> Result<(), RunError> {
        let now = Instant::now();
        let due: Vec<Slot> = [
            (Role::Consumer, &self.consumers),
            (Role::Producer, &self.producers),
        ]
        .into_iter()
        .flat_map(|(role, slots)| {
            slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.restart_at.is_some_and(|t| t <= now))
                .map(move |(index, _)| Slot {
                    role,
                    index: index as u32,
                })
        })
        .collect();
        for slot in due {
            let quiet = self.state(slot).quiet;
            self.spawn(slot)?;
            if !quiet {
                self.mark(format!("{slot} restarted"));
            }
        }
        Ok(())
    }

    fn producers_finished(&self) -> bool {
        self.producers.iter().all(|p| p.finished)
    }

    fn consumers_settled(&self) -> bool {
        self.consumers
            .iter()
            .all(|c| c.running.is_some() && c.ready && c.outstanding == 0)
            && self.last_consumer_event.elapsed() >= QUIET
    }
}

/// A reported abort in words: the point, the worker's own count and the message.
fn describe_abort(reported: Option<CrashRecord>) -> String {
    match reported {
        Some(c) => {
            let unit = if c.point == "after-publish" {
                "publish"
            } else {
                "delivery"
            };
            let message = c.seq.map_or(String::new(), |s| format!(", message {s}"));
            format!("{} at its {unit} {}{message}", c.point, c.count)
        }
        None => "no crash point reported".into(),
    }
}

/// Starts the workers of `plan` and supervises them until the run has drained.
pub async fn supervise(
    plan: &Plan,
    launch: &Launch,
    inspector: &mut Inspector,
    driver: &mut Driver,
    progress: bool,
) -> Result<Outcome, RunError> {
    let bar = progress.then(|| Progress::new(&plan.name));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut sv = Supervisor {
        plan,
        launch,
        tx,
        producers: (0..plan.producers).map(|_| SlotState::default()).collect(),
        consumers: (0..plan.consumer_workers())
            .map(|_| SlotState::default())
            .collect(),
        ledger: Ledger::new(plan.messages),
        start: Instant::now(),
        timeline: Vec::new(),
        notes: Vec::new(),
        publish_to_confirm: metrics::new_histogram(),
        end_to_end: metrics::new_histogram(),
        last_consumer_event: Instant::now(),
        last_handled: None,
        stopping: false,
        tally: Tally::default(),
        series: Series::new(),
        crashes: Vec::new(),
        history: None,
    };
    let history_path = launch.log_dir.join("history.tsv");
    let mut history = std::fs::File::create(&history_path)
        .map(std::io::BufWriter::new)
        .map_err(RunError::io(format!(
            "cannot create {}",
            history_path.display()
        )))?;
    writeln!(history, "# at_us\tworker\tpid\tevent (the worker protocol)").map_err(
        RunError::io(format!("cannot write {}", history_path.display())),
    )?;
    sv.history = Some(history);
    let start_wall_us = crate::effects::now_us();
    for index in 0..plan.consumer_workers() {
        sv.spawn(Slot {
            role: Role::Consumer,
            index,
        })?;
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    while !sv.consumers.iter().all(|c| c.ready) {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some(report)) => sv.handle(report)?,
            Ok(None) => unreachable!("the supervisor holds a sender"),
            Err(_) => {
                return Err(RunError::Worker(format!(
                    "consumers did not become ready within {}s (logs in {})",
                    READY_TIMEOUT.as_secs(),
                    launch.log_dir.display()
                )))
            }
        }
        sv.restart_due()?;
    }
    sv.mark("consumers ready");
    for index in 0..plan.producers {
        sv.spawn(Slot {
            role: Role::Producer,
            index,
        })?;
    }
    let publish_start = Instant::now();
    sv.mark("producers started");
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
    let mut interrupted = false;
    loop {
        tokio::select! {
            report = rx.recv() => {
                sv.handle(report.expect("the supervisor holds a sender"))?;
                // Count triggers fire as soon as the runner learns the count.
                if driver.next_count_trigger().is_some_and(|n| sv.tally.published >= n) {
                    let producing = !sv.producers_finished();
                    driver.tick(publish_start.elapsed(), sv.tally, producing).await;
                }
            }
            _ = tick.tick() => {
                sv.restart_due()?;
                if let Some(b) = &bar {
                    b.update(&sv.tally, publish_start.elapsed(), driver.active_names());
                }
                let producing = !sv.producers_finished();
                if producing && !watchdog_fired && Instant::now() >= produce_deadline {
                    watchdog_fired = true;
                    sv.mark(format!("producers still running {}s after their schedule: stopping them", PRODUCE_GRACE.as_secs()));
                    for p in sv.producers.iter_mut() {
                        if let Some(r) = p.running.as_mut() {
                            r.stop();
                        }
                    }
                }
                driver.tick(publish_start.elapsed(), sv.tally, producing).await;
                if drain_start.is_none() && sv.producers_finished() {
                    drain_start = Some(Instant::now());
                    sv.mark("producers finished; draining");
                }
                if let Some(since) = drain_start {
                    if !driver.busy() && sv.consumers_settled() && inspector.ready().await == Some(0) {
                        settled_checks += 1;
                    } else {
                        settled_checks = 0;
                    }
                    if settled_checks >= 2 {
                        drained = true;
                        sv.mark("drained");
                        break;
                    }
                    if since.elapsed() >= plan.drain_timeout {
                        sv.mark(format!("drain timed out after {}s", plan.drain_timeout.as_secs()));
                        break;
                    }
                }
            }
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                sv.mark("interrupted: producers stop, the run drains");
                for p in sv.producers.iter_mut() {
                    if let Some(r) = p.running.as_mut() {
                        r.stop();
                    }
                }
            }
        }
    }
    let drain_time = drain_start.map_or(Duration::ZERO, |s| s.elapsed());

    // Stop the consumers and collect their last events.
    sv.stopping = true;
    for w in sv.consumers.iter_mut().chain(sv.producers.iter_mut()) {
        w.restart_at = None;
        match w.running.as_mut() {
            Some(r) => r.stop(),
            None => w.finished = true,
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !sv
        .consumers
        .iter()
        .chain(sv.producers.iter())
        .all(|w| w.finished)
    {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some(report)) => sv.handle(report)?,
            _ => {
                for w in sv.consumers.iter().chain(sv.producers.iter()) {
                    if let Some(r) = w.running.as_ref() {
                        r.kill();
                    }
                }
                sv.mark("workers killed after not stopping in time");
                break;
            }
        }
    }
    let active = sv.last_handled.map_or(Duration::ZERO, |t| {
        t.saturating_duration_since(publish_start)
    });
    driver.finish(sv.tally).await;
    if let Some(b) = bar {
        b.finish();
    }
    let history_ok = sv.history.take().is_some_and(|mut h| h.flush().is_ok());
    if !history_ok {
        sv.mark(format!(
            "the history could not be written completely: {}",
            history_path.display()
        ));
    }
    Ok(Outcome {
        ledger: sv.ledger,
        drained,
        drain_time,
        timeline: sv.timeline,
        active,
        publish_to_confirm: sv.publish_to_confirm,
        end_to_end: sv.end_to_end,
        notes: sv.notes,
        faults: driver.records.clone(),
        series: sv.series,
        start_wall_us,
        crashes: sv.crashes,
        history: history_path,
    })
}
