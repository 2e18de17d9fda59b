//! The one fold: every ledger event of a run, whoever emitted it (a worker
//! process, the SMTP sender, the inbox, the effect store), goes through
//! [`Fold::apply`], which updates the ledger, the live tally and the
//! throughput series together. Beside them the fold keeps what the run
//! observed: its history file, timeline, crashes, notes and latencies.
//!
//! Architecture invariant: no other place updates the ledger, the tally or
//! the series during a run.

use crate::effects::{EffectStore, EffectStoreError, Row};
use crate::ledger::{Event, Ledger};
use crate::message_id;
use crate::metrics;
use crate::report::{CrashRecord, Series, Tally, TimelineEntry, TimelineKind};
use hdrhistogram::Histogram;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How many worker notes a result keeps.
const MAX_NOTES: usize = 50;

/// What a run has observed so far.
pub struct Fold {
    /// The run's time zero (just before its first worker or sender starts).
    start: Instant,
    /// The wall clock at `start`, µs since the Unix epoch, to place
    /// effect-store rows on the same axis.
    pub start_wall_us: i64,
    /// Per message, what happened.
    pub ledger: Ledger,
    /// Running totals (live progress, fault windows).
    pub tally: Tally,
    /// Sent, confirmed and effects over time.
    pub series: Series,
    /// Publish (or submission) to confirm (or 250).
    pub publish_to_confirm: Histogram<u64>,
    /// Due time to effect committed.
    pub end_to_end: Histogram<u64>,
    timeline: Vec<TimelineEntry>,
    notes: Vec<String>,
    crashes: Vec<CrashRecord>,
    history: Option<std::io::BufWriter<std::fs::File>>,
    history_path: PathBuf,
    last_event: Instant,
    /// The last sign of life of the consuming side: a ledger event, or a
    /// worker that connected, reconnected or ended.
    last_activity: Instant,
}

impl Fold {
    /// A fold for `messages` intended messages, its history written to `history`.
    pub fn new(messages: u64, history: &Path) -> std::io::Result<Fold> {
        let mut file = std::fs::File::create(history).map(std::io::BufWriter::new)?;
        writeln!(file, "# at_us\tworker\tpid\tevent (the worker protocol)")?;
        let start = Instant::now();
        Ok(Fold {
            start,
            start_wall_us: crate::effects::now_us(),
            ledger: Ledger::new(messages),
            tally: Tally::default(),
            series: Series::new(),
            publish_to_confirm: metrics::new_histogram(),
            end_to_end: metrics::new_histogram(),
            timeline: Vec::new(),
            notes: Vec::new(),
            crashes: Vec::new(),
            history: Some(file),
            history_path: history.to_path_buf(),
            last_event: start,
            last_activity: start,
        })
    }

    /// The run's time zero.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Milliseconds from time zero to `t`.
    pub fn ms_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_millis() as u64
    }

    /// Microseconds from time zero to `t`.
    pub fn us_at(&self, t: Instant) -> i64 {
        t.saturating_duration_since(self.start).as_micros() as i64
    }

    /// Milliseconds from time zero to now.
    pub fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// Folds one ledger event that happened at `at`.
    pub fn apply(&mut self, e: Event, at: Instant) {
        self.last_event = self.last_event.max(at);
        self.touch();
        let at_ms = self.ms_at(at);
        match e {
            Event::Attempt(_) => {
                self.tally.published += 1;
                self.series.sent(at_ms);
            }
            Event::Confirmed(_) => {
                self.tally.confirmed += 1;
                self.series.confirmed(at_ms);
            }
            Event::Nacked(_) => self.tally.nacked += 1,
            Event::InDoubt(_) => self.tally.in_doubt += 1,
            Event::Delivered { redelivered, .. } => {
                self.tally.delivered += 1;
                self.tally.redelivered += u64::from(redelivered);
            }
            Event::Acked(_) => self.tally.acked += 1,
            Event::Effect(_) | Event::Suppressed(_) | Event::Unexpected => {}
        }
        self.ledger.record(e);
    }

    /// Appends one line to the history: time, who, pid, what happened.
    pub fn record(&mut self, who: &dyn std::fmt::Display, pid: u32, what: &dyn std::fmt::Display) {
        self.record_at(Instant::now(), who, pid, what);
    }

    /// Appends one line to the history for something that happened at `at`.
    pub fn record_at(
        &mut self,
        at: Instant,
        who: &dyn std::fmt::Display,
        pid: u32,
        what: &dyn std::fmt::Display,
    ) {
        let at_us = at.saturating_duration_since(self.start).as_micros();
        let Some(w) = self.history.as_mut() else {
            return;
        };
        if writeln!(w, "{at_us}\t{who}\t{pid}\t{what}").is_err() {
            self.history = None;
        }
    }

    /// Adds a timeline entry at the present moment.
    pub fn mark(&mut self, kind: TimelineKind, event: impl Into<String>) {
        self.timeline.push(TimelineEntry {
            at_ms: self.now_ms(),
            kind,
            event: event.into(),
        });
    }

    /// Keeps a note of `who` (the first [`MAX_NOTES`]).
    pub fn note(&mut self, who: &dyn std::fmt::Display, text: &str) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(format!("{who}: {text}"));
        }
    }

    /// Adds a note of the run itself.
    pub fn run_note(&mut self, text: String) {
        self.notes.push(text);
    }

    /// Records a worker abort as the worker reported it.
    pub fn crash(&mut self, c: CrashRecord) {
        self.crashes.push(c);
    }

    /// Merges a latency histogram a worker sent.
    pub fn histogram(&mut self, name: &str, data: &str) {
        let target = match name {
            metrics::PUBLISH_TO_CONFIRM => &mut self.publish_to_confirm,
            metrics::END_TO_END => &mut self.end_to_end,
            _ => return,
        };
        if let Some(h) = metrics::decode(data) {
            let _ = target.add(h);
        }
    }

    /// Notes a sign of life that is not a ledger event (a consumer that
    /// connected again may have deliveries on their way to it).
    pub fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// How long nothing has happened (no ledger event, no sign of life): the
    /// one definition of quiet.
    pub fn quiet_for(&self) -> Duration {
        self.last_activity.elapsed()
    }

    /// When the last ledger event arrived.
    pub fn last_event(&self) -> Instant {
        self.last_event
    }

    /// Feeds every effect-store row into the ledger and the effects into
    /// the series (a message's second effect is a duplicate); `latency`
    /// turns a message's first effect (µs since time zero) into its
    /// end-to-end latency when the transport measures it that way.
    pub fn read_effects(
        &mut self,
        store: &EffectStore,
        run_id: &str,
        latency: &mut dyn FnMut(u64, i64) -> Option<u64>,
    ) -> Result<(), EffectStoreError> {
        let start_wall_us = self.start_wall_us;
        store.scan(|id, row, at_us| {
            let Some(seq) = message_id::parse(run_id, id) else {
                return self.ledger.record(Event::Unexpected);
            };
            let since_start_us = at_us - start_wall_us;
            match row {
                Row::Effect => {
                    let duplicate = self.ledger.get(seq).is_some_and(|r| r.effects > 0);
                    if !duplicate {
                        if let Some(us) = latency(seq, since_start_us) {
                            let _ = self.end_to_end.record(us.max(1));
                        }
                    }
                    self.series
                        .effect((since_start_us.max(0) / 1000) as u64, duplicate);
                    self.ledger.record(Event::Effect(seq));
                }
                Row::Suppressed => self.ledger.record(Event::Suppressed(seq)),
            }
        })?;
        self.series.finish();
        Ok(())
    }

    /// Closes the history; a failed write becomes a timeline entry.
    pub fn close_history(&mut self) -> PathBuf {
        let ok = self.history.take().is_some_and(|mut h| h.flush().is_ok());
        if !ok {
            let what = format!(
                "the history could not be written completely: {}",
                self.history_path.display()
            );
            self.mark(TimelineKind::Note, what);
        }
        self.history_path.clone()
    }

    /// The timeline, notes and crashes, for the report.
    pub fn take_observed(&mut self) -> (Vec<TimelineEntry>, Vec<String>, Vec<CrashRecord>) {
        (
            std::mem::take(&mut self.timeline),
            std::mem::take(&mut self.notes),
            std::mem::take(&mut self.crashes),
        )
    }
}
