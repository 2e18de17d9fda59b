//! The AMQP run's worker processes: start them, fold their events, restart
//! crashed consumers, say whether they have settled, stop them.
//!
//! Every ledger event a worker reports goes straight into the run's fold;
//! this module keeps only what the supervision itself needs per slot
//! (running, ready, deliveries awaiting their ack, a pending restart).

use super::worker::WorkerArgs;
use crate::ledger::Event;
use crate::report::{ClientConnection, CrashRecord, PushCalls, TimelineKind};
use crate::runner::fold::Fold;
use crate::runner::workers::{self, Launch, Origin, Report, Running, Slot};
use crate::runner::RunError;
use crate::scenario::Plan;
use crate::worker::wire::WireEvent;
use crate::worker::{Role, EXIT_CONNECTION_LOST};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long consumers get to connect and register.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long stopping workers may take before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Delay before restarting a worker that lost its connection.
const RECONNECT_RESTART: Duration = Duration::from_millis(500);

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
    /// The latest note of the slot's processes (why it could not start).
    last_note: Option<String>,
}

/// The worker processes of one AMQP run.
pub struct Supervisor {
    plan: Plan,
    launch: Launch,
    /// The arguments every producer gets (before its own send log and crash).
    producer: WorkerArgs,
    /// The arguments every consumer gets (before its own crash).
    consumer: WorkerArgs,
    tx: mpsc::UnboundedSender<Report>,
    rx: mpsc::UnboundedReceiver<Report>,
    producers: Vec<SlotState>,
    consumers: Vec<SlotState>,
    stopping: bool,
    /// Which cluster member each client connected to, and when.
    clients: Vec<ClientConnection>,
    /// What the consumers' calls to the push gateway came to.
    calls: PushCalls,
}

impl Supervisor {
    /// Supervision of `plan`'s workers, launched as `launch` says, producers
    /// and consumers with their own arguments.
    pub fn new(
        plan: &Plan,
        launch: Launch,
        producer: WorkerArgs,
        consumer: WorkerArgs,
    ) -> Supervisor {
        let (tx, rx) = mpsc::unbounded_channel();
        Supervisor {
            plan: plan.clone(),
            launch,
            producer,
            consumer,
            tx,
            rx,
            producers: (0..plan.producers).map(|_| SlotState::default()).collect(),
            consumers: (0..plan.consumer_workers())
                .map(|_| SlotState::default())
                .collect(),
            stopping: false,
            clients: Vec::new(),
            calls: PushCalls::default(),
        }
    }

    /// Which cluster member each client connected to, and when.
    pub fn clients(&self) -> &[ClientConnection] {
        &self.clients
    }

    /// What the consumers' calls to the push gateway came to.
    pub fn calls(&self) -> &PushCalls {
        &self.calls
    }

    fn state(&mut self, slot: Slot) -> &mut SlotState {
        match slot.role {
            Role::Producer => &mut self.producers[slot.index as usize],
            Role::Consumer => &mut self.consumers[slot.index as usize],
        }
    }

    fn spawn(&mut self, slot: Slot) -> Result<(), RunError> {
        let incarnation = self.state(slot).incarnation;
        // Only a slot's first process crashes; its restarts run clean.
        let args = match slot.role {
            Role::Consumer => {
                let crash = self
                    .plan
                    .crash_for_consumer(slot.index)
                    .filter(|_| incarnation == 0);
                WorkerArgs {
                    crash_point: crash.map(|(p, _, _)| p.into()),
                    crash_after: crash.map(|(_, n, _)| n),
                    // Clients spread over a cluster's members; a restart
                    // starts at the next one.
                    first_member: slot.index + incarnation,
                    ..self.consumer.clone()
                }
            }
            Role::Producer => WorkerArgs {
                send_log: Some(
                    self.launch
                        .log_dir
                        .join(format!("producer-{}.sendlog", slot.index)),
                ),
                crash_after: self
                    .plan
                    .crash_for_producer(slot.index)
                    .filter(|_| incarnation == 0)
                    .map(|(n, _)| n),
                first_member: slot.index + incarnation,
                ..self.producer.clone()
            },
        };
        let running = workers::spawn(
            &self.launch,
            slot,
            incarnation,
            &args.to_args(),
            self.tx.clone(),
        )
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

    /// Starts the consumers, waits until every one is ready, then starts the producers.
    pub async fn start(&mut self, fold: &mut Fold) -> Result<(), RunError> {
        for index in 0..self.plan.consumer_workers() {
            self.spawn(Slot {
                role: Role::Consumer,
                index,
            })?;
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.consumers.iter().all(|c| c.ready) {
            match tokio::time::timeout_at(deadline.into(), self.rx.recv()).await {
                Ok(Some(report)) => self.handle(report, fold)?,
                Ok(None) => unreachable!("the supervisor holds a sender"),
                Err(_) => {
                    return Err(RunError::Worker(format!(
                        "consumers did not become ready within {}s (logs in {})",
                        READY_TIMEOUT.as_secs(),
                        self.launch.log_dir.display()
                    )))
                }
            }
            self.restart_due(fold)?;
        }
        fold.mark(TimelineKind::Phase, "consumers ready");
        for index in 0..self.plan.producers {
            self.spawn(Slot {
                role: Role::Producer,
                index,
            })?;
        }
        fold.mark(TimelineKind::Phase, "producers started");
        Ok(())
    }

    /// Waits for the next report of a worker and folds it (cancel-safe).
    pub async fn next(&mut self, fold: &mut Fold) -> Result<(), RunError> {
        let report = self.rx.recv().await.expect("the supervisor holds a sender");
        self.handle(report, fold)
    }

    fn handle(&mut self, report: Report, fold: &mut Fold) -> Result<(), RunError> {
        match report {
            Report::Event(origin, event) => self.event(origin, event, fold),
            Report::Exited(origin, status) => {
                // `exit CODE` or `signal N`: how the process ended.
                let (slot, pid) = (origin.slot, origin.pid);
                match (status.code(), status.signal()) {
                    (Some(code), _) => fold.record(&slot, pid, &format_args!("exit {code}")),
                    (None, Some(sig)) => fold.record(&slot, pid, &format_args!("signal {sig}")),
                    (None, None) => fold.record(&slot, pid, &"signal ?"),
                }
                fold.touch();
                self.exited(origin, status, fold)?
            }
        }
        Ok(())
    }

    fn event(&mut self, origin: Origin, event: WireEvent, fold: &mut Fold) {
        let (slot, incarnation) = (origin.slot, origin.incarnation);
        if !matches!(event, WireEvent::Histogram { .. } | WireEvent::Note(_)) {
            fold.record(&slot, origin.pid, &event);
        }
        let current = self.state(slot).incarnation == incarnation;
        if slot.role == Role::Consumer {
            // Any consumer event: a consumer that just connected may be
            // receiving deliveries it has not reported yet.
            fold.touch();
        }
        match event {
            WireEvent::Ready => {
                if current {
                    let s = self.state(slot);
                    s.ready = true;
                    if std::mem::take(&mut s.quiet) {
                        fold.mark(TimelineKind::Connection, format!("{slot} connected again"));
                    }
                }
            }
            WireEvent::Ledger(e) => {
                fold.apply(e, Instant::now());
                match e {
                    Event::Delivered { .. } if current && self.plan.consumer.manual_ack() => {
                        self.state(slot).outstanding += 1;
                    }
                    Event::Acked(_) if current => {
                        let st = self.state(slot);
                        st.outstanding = st.outstanding.saturating_sub(1);
                    }
                    _ => {}
                }
            }
            WireEvent::Histogram { name, data } => fold.histogram(&name, &data),
            WireEvent::Endpoint(member) => {
                fold.mark(
                    TimelineKind::Connection,
                    format!("{slot} connected to node {member}"),
                );
                self.clients.push(ClientConnection {
                    at_ms: fold.now_ms(),
                    client: slot.to_string(),
                    member,
                });
            }
            WireEvent::Note(text) => {
                fold.note(&slot, &text);
                self.state(slot).last_note = Some(text);
            }
            WireEvent::Aborted { point, count, seq } => {
                let crash = CrashRecord {
                    at_ms: fold.now_ms(),
                    worker: slot.to_string(),
                    pid: origin.pid,
                    point,
                    count,
                    seq,
                };
                fold.crash(crash.clone());
                if current {
                    self.state(slot).abort = Some(crash);
                }
            }
            WireEvent::Push { call, .. } => self.calls.count(call),
            WireEvent::Done => {}
        }
    }

    fn exited(
        &mut self,
        origin: Origin,
        status: ExitStatus,
        fold: &mut Fold,
    ) -> Result<(), RunError> {
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
                fold.mark(TimelineKind::Crash, format!("{slot} aborted ({what})"));
            }
            Role::Producer => {
                s.finished = true;
                if !status.success() {
                    fold.mark(TimelineKind::Exit, format!("{slot} exited with {status}"));
                }
            }
            Role::Consumer if stopping => s.finished = true,
            Role::Consumer => {
                let was_ready = s.ready;
                let reported = s.abort.take();
                let crash = self.plan.crash_for_consumer(slot.index);
                let (kind, what, delay) = if status.signal() == Some(libc::SIGABRT) {
                    let delay = crash.map_or(RECONNECT_RESTART, |(_, _, d)| d);
                    (
                        TimelineKind::Crash,
                        format!("{slot} aborted ({})", describe_abort(reported)),
                        delay,
                    )
                } else if status.code() == Some(EXIT_CONNECTION_LOST) {
                    (
                        TimelineKind::Connection,
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
                    let note = self.state(slot).last_note.take();
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
                    fold.mark(kind, what);
                }
            }
        }
        Ok(())
    }

    /// Folds every report already waiting, so that the fold is current
    /// before the fault driver reads its tally.
    pub fn catch_up(&mut self, fold: &mut Fold) -> Result<(), RunError> {
        while let Ok(report) = self.rx.try_recv() {
            self.handle(report, fold)?;
        }
        Ok(())
    }

    /// Restarts the workers whose restart is due.
    pub fn restart_due(&mut self, fold: &mut Fold) -> Result<(), RunError> {
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
                fold.mark(TimelineKind::Restart, format!("{slot} restarted"));
            }
        }
        Ok(())
    }

    /// Producer and consumer processes the plan runs at once.
    pub fn worker_count(&self) -> usize {
        self.producers.len() + self.consumers.len()
    }

    /// Whether every producer has finished.
    pub fn producers_finished(&self) -> bool {
        self.producers.iter().all(|p| p.finished)
    }

    /// Asks the running producers to stop.
    pub fn stop_producers(&mut self) {
        for p in self.producers.iter_mut() {
            p.restart_at = None;
            match p.running.as_mut() {
                Some(r) => r.stop(),
                None => p.finished = true,
            }
        }
    }

    /// Whether every consumer runs, is ready and owes no ack.
    pub fn consumers_settled(&self) -> bool {
        self.consumers
            .iter()
            .all(|c| c.running.is_some() && c.ready && c.outstanding == 0)
    }

    /// Stops every worker and collects its last events; kills what does not
    /// stop within [`STOP_TIMEOUT`].
    pub async fn stop(&mut self, fold: &mut Fold) -> Result<(), RunError> {
        self.stopping = true;
        for w in self.consumers.iter_mut().chain(self.producers.iter_mut()) {
            w.restart_at = None;
            match w.running.as_mut() {
                Some(r) => r.stop(),
                None => w.finished = true,
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !self
            .consumers
            .iter()
            .chain(self.producers.iter())
            .all(|w| w.finished)
        {
            match tokio::time::timeout_at(deadline.into(), self.rx.recv()).await {
                Ok(Some(report)) => self.handle(report, fold)?,
                _ => {
                    for w in self.consumers.iter().chain(self.producers.iter()) {
                        if let Some(r) = w.running.as_ref() {
                            r.kill();
                        }
                    }
                    fold.mark(
                        TimelineKind::Note,
                        "workers killed after not stopping in time",
                    );
                    break;
                }
            }
        }
        Ok(())
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
