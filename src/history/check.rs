//! `dlab check HISTORY`: a saved run judged as its own checker judged it.
//!
//! The history's ledger events and the effect store's rows are folded into
//! a fresh [`Ledger`] (the same [`Event`]s the run's fold recorded, effects
//! after events, as the runner does) and reconciled; the promise and the
//! plan's expectations are judged on that reconciliation. Beside it, the
//! history must account for the store ([`super::accounts`]): a row follows
//! a delivery of its message to its process, or, when the effect is a push,
//! a call for it that may have been applied.
//!
//! The verdict follows `dlab run`'s exit code: broken when an expectation of
//! the plan is broken (or, for a plan with none, when its promise is), and
//! broken when the history does not account for every row.

use super::accounts::Deliveries;
use super::read::What;
use super::store::{Kind, Store};
use super::{read, HistoryError, RunFiles};
use crate::ledger::{Counts, Event, Ledger, Verdicts};
use crate::message_id;
use crate::report::{self, table, ExpectationResult, Promise};
use crate::scenario::Transport;
use crate::worker::wire::WireEvent;
use serde::Serialize;
use std::io::{self, Write};

/// How many unaccounted rows a check names (it counts them all).
const NAMED: usize = 5;

/// A saved run, re-folded and judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checked {
    /// The run's ID.
    pub run_id: String,
    /// The scenario it ran.
    pub scenario: String,
    /// Its transport.
    pub transport: Transport,
    /// Event lines read from the history.
    pub history_lines: u64,
    /// Rows read from the effect store (effects and suppressed).
    pub store_rows: u64,
    /// The fresh ledger's counts.
    pub counts: Counts,
    /// Its verdicts.
    pub verdicts: Verdicts,
    /// The plan's promise, judged.
    pub promise: Option<Promise>,
    /// The plan's expectations, judged.
    pub expectations: Vec<ExpectationResult>,
    /// Every lost message, by ID.
    pub lost_ids: Vec<String>,
    /// Every duplicated message, by ID.
    pub duplicated_ids: Vec<String>,
    /// Store rows with no delivery of their message to their process in the history.
    pub unaccounted: u64,
    /// The first of them, in words.
    pub unaccounted_rows: Vec<String>,
    /// The verdict: held (exit 0) or broken (exit 1).
    pub held: bool,
}

/// Re-folds and judges the run in `files`.
pub fn check(files: &RunFiles) -> Result<Checked, HistoryError> {
    let plan = &files.plan;
    let mut ledger = Ledger::new(plan.messages);
    let mut deliveries = Deliveries::new(plan.messages);
    // A local effect follows a delivery; a push effect follows a call (one
    // delivery may be called for several times: that is the lesson).
    let push = plan.amqp().is_some_and(|a| a.push.is_some());
    let history_lines = read::for_each(&files.history, |line| {
        if let Some(e) = line.ledger_event() {
            if let (Event::Delivered { seq, .. }, false) = (e, push) {
                deliveries.delivered(seq, line.pid);
            }
            ledger.record(e);
        }
        if let What::Event(WireEvent::Push {
            call,
            seq: Some(seq),
        }) = line.what
        {
            if push && call.may_apply() {
                deliveries.delivered(seq, line.pid);
            }
        }
    })?;
    let store = Store::open(&files.effects)?;
    let (mut store_rows, mut unaccounted, mut unaccounted_rows) = (0, 0, Vec::new());
    store.for_each(None, |row| {
        store_rows += 1;
        let Some(seq) = message_id::parse(&files.run_id, &row.message_id) else {
            return ledger.record(Event::Unexpected);
        };
        let (event, table) = match row.kind {
            Kind::Effect => (Event::Effect(seq), "effects"),
            Kind::Suppressed => (Event::Suppressed(seq), "suppressed"),
        };
        ledger.record(event);
        if !deliveries.take(seq, row.pid) {
            unaccounted += 1;
            if unaccounted_rows.len() < NAMED {
                unaccounted_rows.push(format!(
                    "{table} row {}: {} by pid {}",
                    row.id, row.message_id, row.pid
                ));
            }
        }
    })?;
    let r = ledger.reconcile();
    let ids = |seqs: &[u64]| -> Vec<String> {
        seqs.iter()
            .map(|s| message_id::format(&files.run_id, *s))
            .collect()
    };
    let promise = plan.guarantee.map(|g| Promise::of(g, &r.verdicts));
    let expectations = report::judge(&plan.expect, &r.counts);
    let judged = if expectations.is_empty() {
        promise.as_ref().is_none_or(|p| p.held)
    } else {
        expectations.iter().all(|x| x.held)
    };
    Ok(Checked {
        run_id: files.run_id.clone(),
        scenario: plan.name.clone(),
        transport: plan.transport.kind(),
        history_lines,
        store_rows,
        lost_ids: ids(&r.lost),
        duplicated_ids: ids(&r.duplicated),
        counts: r.counts,
        verdicts: r.verdicts,
        promise,
        expectations,
        held: judged && unaccounted == 0,
        unaccounted,
        unaccounted_rows,
    })
}

/// Writes a check for the terminal.
pub fn write(out: &mut dyn Write, files: &RunFiles, c: &Checked) -> io::Result<()> {
    writeln!(out, "dlab check: {}", files.history.display())?;
    writeln!(
        out,
        "  run {} of {} over {}: {} history event lines and {} effect-store rows re-folded into a fresh ledger",
        c.run_id,
        c.scenario,
        c.transport.name(),
        c.history_lines,
        c.store_rows
    )?;
    writeln!(out)?;
    table::write_counts(out, &c.counts)?;
    table::write_ids(out, &c.run_id, &c.lost_ids, &c.duplicated_ids)?;
    writeln!(out)?;
    table::write_judgement(out, c.promise.as_ref(), &c.verdicts, &c.expectations)?;
    let e = &files.plan.expect;
    if e.max_ids_read.is_some() || e.min_ids_read.is_some() {
        writeln!(
            out,
            "  not re-checked: max_ids_read / min_ids_read (what the eavesdropper read is not in the history; the run's own report judged it)"
        )?;
    }
    if c.unaccounted == 0 {
        writeln!(
            out,
            "  history   accounts for every effect-store row: each follows a delivery of its message to the process that wrote it (with a push effect: a call for it)"
        )?;
    } else {
        writeln!(
            out,
            "  history   BROKEN: {} effect-store row(s) with no delivery of their message to the process that wrote them: {}",
            c.unaccounted,
            c.unaccounted_rows.join("; ")
        )?;
    }
    writeln!(out, "verdict: {}", if c.held { "held" } else { "BROKEN" })
}
