//! `dlab explain RUN MESSAGE`: one message's story across the hops, in time
//! order, every step taken from one history line or one effect-store row
//! (and naming it), with the faults active at each step, then a verdict
//! line: lost, shown once, or duplicated, and what made a duplicate.
//!
//! The story is told hop by hop: sending (attempts and their outcomes, and
//! the producers or the sender that made them), then receiving (deliveries,
//! effects, acks, and the consumers or the inbox), each in time order.
//! Times are µs since the run started, printed as ms. A worker's events are
//! stamped when the runner read them, and workers report in batches (a
//! producer's attempts can be read after a consumer's delivery of the same
//! message, one consumer's delivery after another's that came later), so
//! one merged list of stamps would show effects before causes. Within a hop
//! a step is placed at the latest moment it can have happened (its stamp,
//! the exact commit of the row a delivery led to, the next step of the
//! same process: see [`Facts::key`]), and an effect right after its
//! delivery; every step still shows its own stamp.

mod facts;
mod verdict;

pub use facts::{Facts, Placed};

use super::read::{Line, What};
use super::store::Kind;
use super::{HistoryError, RunFiles};
use crate::ledger::Event;
use crate::message_id;
use crate::worker::wire::WireEvent;
use std::io::{self, Write};

/// One message's story.
#[derive(Debug, Clone)]
pub struct Story {
    /// The message's ID.
    pub message_id: String,
    /// Its steps, in the order told.
    pub steps: Vec<Step>,
    /// The verdict, one sentence.
    pub verdict: String,
    /// Where the fault windows came from, or why they are unknown.
    pub faults: String,
    /// Whether effects are placed on the run's exact time axis (from its
    /// result) or on an estimate of its time zero.
    pub exact_time: bool,
}

/// The hop a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hop {
    /// Attempts and their outcomes: producers, the SMTP sender.
    Sending,
    /// Deliveries, effects and acks: consumers, the inbox.
    Receiving,
}

/// One step of a story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Its hop.
    pub hop: Hop,
    /// µs since the run started.
    pub at_us: i64,
    /// Who: `consumer 0 (pid 1234)`.
    pub who: String,
    /// What happened, in words.
    pub what: String,
    /// Where it is written: `history.tsv:LINE` or `effects row ID`.
    pub source: String,
    /// The fault occurrences active then (None: unknown).
    pub faults: Option<Vec<String>>,
    /// Whether `at_us` is an estimate (an effect's, on an estimated time zero).
    pub estimated: bool,
}

/// Parses MESSAGE: a full ID (`RUN-SEQ`) or a bare message number; returns
/// the run ID it names, if any, and the number.
pub fn parse_message(text: &str) -> Result<(Option<String>, u64), HistoryError> {
    let bad = || {
        HistoryError::Input(format!(
            "{text}: not a message ID: expected RUN-SEQ (e.g. 3f2a1b7c-512) or a message number"
        ))
    };
    match text.rsplit_once('-') {
        Some((run, _)) if !run.is_empty() => {
            let seq = message_id::parse(run, text).ok_or_else(bad)?;
            Ok((Some(run.to_string()), seq))
        }
        Some(_) => Err(bad()),
        None => text
            .parse()
            .ok()
            .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
            .map(|s| (None, s))
            .ok_or_else(bad),
    }
}

/// Tells the story of message `seq` of the run in `files`.
pub fn explain(files: &RunFiles, run: Option<&str>, seq: u64) -> Result<Story, HistoryError> {
    if let Some(run) = run.filter(|r| *r != files.run_id) {
        return Err(HistoryError::Input(format!(
            "{run}-{seq}: not a message of run {} ({})",
            files.run_id,
            files.dir.display()
        )));
    }
    let intended = files.plan.messages;
    if seq >= intended {
        return Err(HistoryError::Input(format!(
            "{}: no such message: run {} intended {intended} messages, numbered 0 to {}",
            message_id::format(&files.run_id, seq),
            files.run_id,
            intended.saturating_sub(1)
        )));
    }
    let message_id = message_id::format(&files.run_id, seq);
    let (start_us, exact_time) = files.started_unix_us();
    let facts = Facts::gather(files, seq, &message_id, (start_us, exact_time))?;
    let history_name = files
        .history
        .file_name()
        .map_or("history".into(), |n| n.to_string_lossy().into_owned());

    // (hop, sort key µs, line number, tie) for each step.
    let mut keyed: Vec<((Hop, i64, usize, usize), Step)> = Vec::new();
    let mut attempts = 0;
    let senders: Vec<u32> = facts.attempts().map(|l| l.pid).collect();
    for l in &facts.lines {
        let hop = match l.ledger_event() {
            Some(Event::Attempt(_)) => {
                attempts += 1;
                Hop::Sending
            }
            Some(Event::Confirmed(_) | Event::Nacked(_) | Event::InDoubt(_)) => Hop::Sending,
            Some(_) => Hop::Receiving,
            // The end of a process: the hop of what it held.
            None if senders.contains(&l.pid) && l.worker != "inbox" => Hop::Sending,
            None => Hop::Receiving,
        };
        keyed.push((
            (hop, facts.key(l), l.number, 0),
            Step {
                hop,
                at_us: l.at_us as i64,
                who: verdict::who(l),
                what: words(l, seq, attempts, &files.run_id),
                source: format!("{history_name}:{}", l.number),
                faults: facts.faults_at(l.at_us as i64),
                estimated: false,
            },
        ));
    }
    let mut effect = 0;
    for (i, p) in facts.rows.iter().enumerate() {
        let (what, table) = match p.row.kind {
            Kind::Effect => {
                effect += 1;
                (format!("effect {effect}: shown"), "effects")
            }
            Kind::Suppressed => (
                "suppressed: the idempotent layer had seen it, no effect".to_string(),
                "suppressed",
            ),
        };
        let delivered = p.delivery.and_then(|n| facts.line(n));
        // On the exact time axis an effect's stamp is bounded by the stamps
        // of what its process reported after the commit (an ack, an abort);
        // on an estimated one it is not, so the effect goes right after its
        // delivery.
        let key = match delivered {
            Some(d) if exact_time => {
                let k = p.at_us.max(facts.key(d));
                (Hop::Receiving, k, d.number, 1 + i)
            }
            Some(d) => (Hop::Receiving, d.at_us as i64, d.number, 1 + i),
            None => (Hop::Receiving, p.at_us, 0, 1 + i),
        };
        keyed.push((
            key,
            Step {
                hop: Hop::Receiving,
                at_us: p.at_us,
                who: format!("{} (pid {})", p.worker, p.row.pid),
                what,
                source: format!("{table} row {}", p.row.id),
                faults: facts.faults_at(p.at_us),
                estimated: !exact_time,
            },
        ));
    }
    keyed.sort_by_key(|(k, _)| *k);
    let faults = match (&files.result, &facts.faults) {
        (_, None) => "unknown: the run directory holds no result.json; give the run's --json result file, it holds the fault timeline".to_string(),
        (Some(_), Some(f)) => match f.iter().filter(|r| r.fired).count() {
            0 => "none fired (from the run's result); a worker's crash is in the history".to_string(),
            n => format!("{n} occurrence(s) fired, from the run's result"),
        },
        (None, Some(_)) => "none: the plan has no fault but the workers' own crashes (in the history)".to_string(),
    };
    Ok(Story {
        message_id,
        steps: keyed.into_iter().map(|(_, s)| s).collect(),
        verdict: verdict::verdict(&facts),
        faults,
        exact_time,
    })
}

/// A step of the history in words.
fn words(l: &Line, seq: u64, attempt: usize, run_id: &str) -> String {
    match &l.what {
        What::Event(WireEvent::Ledger(e)) => match e {
            Event::Attempt(_) => format!("attempt {attempt}: sent"),
            Event::Confirmed(_) => "confirmed".to_string(),
            Event::Nacked(_) => "nacked: refused".to_string(),
            Event::InDoubt(_) => "in doubt: no confirm (connection lost or timed out)".to_string(),
            Event::Delivered {
                redelivered: false, ..
            } => "delivered".to_string(),
            Event::Delivered {
                redelivered: true, ..
            } => "redelivered (flagged as delivered before)".to_string(),
            Event::Acked(_) => "acked".to_string(),
            Event::Effect(_) => "reported an effect".to_string(),
            Event::Suppressed(_) => "reported a suppressed duplicate".to_string(),
            Event::Unexpected => "a message of another run".to_string(),
        },
        What::Event(WireEvent::Aborted {
            point,
            count,
            seq: on,
        }) => {
            let what = if point == "after-publish" {
                "publish"
            } else {
                "delivery"
            };
            let on = match on {
                Some(s) if *s == seq => "this message".to_string(),
                Some(s) => message_id::format(run_id, *s),
                None => "another run's message".to_string(),
            };
            format!("aborted at {point} (its {what} {count}, {on})")
        }
        What::Event(WireEvent::Push { call, .. }) => call.describe(),
        What::Event(other) => other.to_string(),
        What::Exit(code) => format!("ended: exit {code}"),
        What::Signal(Some(n)) => format!("ended: signal {n}"),
        What::Signal(None) => "ended: by a signal".to_string(),
    }
}

/// `1234.567`: µs as ms with three decimals, exactly.
pub fn ms(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let us = us.unsigned_abs();
    format!("{sign}{}.{:03}", us / 1000, us % 1000)
}

/// Writes a story for the terminal.
pub fn write(out: &mut dyn Write, files: &RunFiles, s: &Story) -> io::Result<()> {
    let plan = &files.plan;
    writeln!(
        out,
        "dlab explain: message {} of run {} ({} over {}, {} + {})",
        s.message_id,
        files.run_id,
        plan.name,
        plan.transport.name(),
        plan.producer.name(),
        plan.consumer.name()
    )?;
    writeln!(out, "  run directory {}", files.dir.display())?;
    writeln!(out, "  faults: {}", s.faults)?;
    let events = if plan.transport.kind() == crate::scenario::Transport::Smtp {
        "the sender's and the inbox's events when they happened"
    } else {
        "events when the runner read them (workers report in batches, so one\n         \
         hop's stamps may trail the other's)"
    };
    writeln!(
        out,
        "  times: ms since the run started; {events}, effects when committed{}; an effect follows its delivery",
        if s.exact_time {
            ""
        } else {
            " (~: on a time zero estimated from the\n         \
             history file's creation, to a few ms; the --json result gives exact times)"
        }
    )?;
    let who_width = s.steps.iter().map(|x| x.who.len()).max().unwrap_or(0);
    let what_width = s.steps.iter().map(|x| x.what.len()).max().unwrap_or(0);
    let mut hop = None;
    for step in &s.steps {
        if hop != Some(step.hop) {
            hop = Some(step.hop);
            let name = match (step.hop, files.plan.transport.kind()) {
                (Hop::Sending, crate::scenario::Transport::Smtp) => {
                    "sending: the sender to the relay"
                }
                (Hop::Sending, _) => "sending: producers to the broker",
                (Hop::Receiving, crate::scenario::Transport::Smtp) => {
                    "receiving: the relay to the inbox"
                }
                (Hop::Receiving, _) => "receiving: the broker to consumers",
            };
            writeln!(out, "  {name}")?;
        }
        let faults = match &step.faults {
            Some(f) if !f.is_empty() => format!("  [fault {}]", f.join(", ")),
            _ => String::new(),
        };
        writeln!(
            out,
            "    {:>11} ms  {:<who_width$}  {:<what_width$}  {}{faults}",
            format!(
                "{}{}",
                if step.estimated { "~" } else { "" },
                ms(step.at_us)
            ),
            step.who,
            step.what,
            step.source
        )?;
    }
    if s.steps.is_empty() {
        writeln!(out, "  (nothing in the history or the effect store)")?;
    }
    writeln!(out, "verdict: {}", s.verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_full_ids_or_numbers() {
        assert_eq!(
            parse_message("3f2a1b7c-512").unwrap(),
            (Some("3f2a1b7c".to_string()), 512)
        );
        assert_eq!(parse_message("17").unwrap(), (None, 17));
        for bad in [
            "",
            "-3",
            "x",
            "3f2a1b7c-",
            "3f2a1b7c-x",
            "+1",
            "3f2a1b7c-+1",
        ] {
            assert!(parse_message(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_print_exactly() {
        assert_eq!(ms(0), "0.000");
        assert_eq!(ms(1_234_567), "1234.567");
        assert_eq!(ms(5), "0.005");
        assert_eq!(ms(-1500), "-1.500");
    }
}
