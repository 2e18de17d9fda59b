//! The terminal renderer: a run as a readable block, the matrix as a grid.

use super::{ExpectationResult, Promise, RunResult, TimelineKind};
use crate::ledger::{Counts, Verdicts};
use crate::metrics::LatencySummary;
use std::io::{self, Write};

fn held(b: bool) -> &'static str {
    if b {
        "held"
    } else {
        "BROKEN"
    }
}

fn us_as_ms(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.0}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}ms", us as f64 / 1000.0)
    }
}

fn latency(name: &str, l: &LatencySummary) -> String {
    if l.samples == 0 {
        format!("{name}: no samples")
    } else {
        format!(
            "{name}: p50 {} p90 {} p99 {} p99.9 {} max {} ({} samples)",
            us_as_ms(l.p50_us),
            us_as_ms(l.p90_us),
            us_as_ms(l.p99_us),
            us_as_ms(l.p999_us),
            us_as_ms(l.max_us),
            l.samples
        )
    }
}

/// How many message IDs a report shows before "and N more" (the JSON has all).
pub const FIRST_IDS: usize = 5;

/// The first [`FIRST_IDS`] of `ids`, and how many more there are.
pub fn first_ids(ids: &[String]) -> String {
    let shown = ids[..ids.len().min(FIRST_IDS)].join(", ");
    match ids.len().saturating_sub(FIRST_IDS) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Writes one run as a block of text.
pub fn write_run(out: &mut dyn Write, r: &RunResult) -> io::Result<()> {
    let s = &r.settings;
    let c = &r.counts;
    writeln!(
        out,
        "dlab run: {} (run {}, seed {})",
        r.scenario, r.run_id, r.seed
    )?;
    if !r.description.is_empty() {
        writeln!(out, "  {}", r.description)?;
    }
    let preset = r
        .guarantee
        .as_deref()
        .map(|g| format!(" ({g})"))
        .unwrap_or_default();
    writeln!(
        out,
        "  {} + {}{preset} over {}, broker {}",
        r.producer,
        r.consumer,
        r.transport.name(),
        r.broker
    )?;
    if r.smtp.is_some() {
        writeln!(
            out,
            "  {} messages of {} B, {} sender session(s), one inbox",
            s.messages, s.payload_bytes, s.producers
        )?;
    } else {
        writeln!(
        out,
        "  {} messages of {} B, {} producer(s), {} consumer(s), prefetch {}, {} {} queue, {} messages",
        s.messages,
        s.payload_bytes,
        s.producers,
        s.consumers,
        s.prefetch,
        if s.durable { "durable" } else { "transient" },
        s.queue_type,
        if s.persistent { "persistent" } else { "transient" },
    )?;
    }
    for f in &r.faults {
        writeln!(out, "  fault: {f}")?;
    }
    writeln!(out)?;
    write_counts(out, c)?;
    write_ids(out, &r.run_id, &r.lost_ids, &r.duplicated_ids)?;
    writeln!(out)?;
    write_judgement(out, r.promise.as_ref(), &r.verdicts, &r.expectations)?;
    writeln!(
        out,
        "  drain     {} in {:.1}s, {} left in queue; SQL recount of the effect store: {} rows, {} distinct IDs",
        if r.drain.completed { "completed" } else { "TIMED OUT" },
        r.drain.seconds,
        r.drain.remaining_in_queue,
        r.recount.effect_rows,
        r.recount.distinct_message_ids
    )?;
    write_broker_count(out, r)?;
    writeln!(
        out,
        "  speed     {:.0} effects/s over {:.2}s, {:.0} effects/s in the steady part",
        r.throughput_per_s, r.duration_s, r.steady_throughput_per_s
    )?;
    writeln!(
        out,
        "  latency   {}",
        latency("end-to-end", &r.latency.end_to_end)
    )?;
    writeln!(
        out,
        "            {}",
        latency("publish-to-confirm", &r.latency.publish_to_confirm)
    )?;
    if let Some(smtp) = &r.smtp {
        super::smtp_text::write(out, smtp, r.counts.duplicates)?;
    }
    if let Some(cluster) = &r.cluster {
        super::cluster_text::write(out, cluster)?;
    }
    if let Some(push) = &r.push {
        super::push_text::write(out, push)?;
    }
    super::eavesdrop_text::write_broker_tls(out, &r.broker_tls)?;
    if let Some(e) = &r.eavesdropper {
        super::eavesdrop_text::write(out, e, r.counts.intended)?;
    }
    // Fault windows are told in detail below, from the fault timeline.
    for t in r
        .timeline
        .iter()
        .filter(|t| !matches!(t.kind, TimelineKind::FaultStart | TimelineKind::FaultEnd))
    {
        writeln!(out, "  {:>7}ms  {}", t.at_ms, t.event)?;
    }
    for f in &r.fault_timeline {
        let when = match (f.started_ms, f.ended_ms) {
            (Some(s), Some(e)) => format!("{s}ms to {e}ms"),
            (Some(s), None) => format!("from {s}ms"),
            _ => "skipped by the seed".to_string(),
        };
        writeln!(
            out,
            "  fault #{} occurrence {} ({}): {when}: {}",
            f.fault, f.occurrence, f.trigger, f.description
        )?;
        if let Some(e) = &f.effect {
            writeln!(
                out,
                "      proxy: {} connections cut, {} refused, {} bytes delayed, {} frames dropped",
                e.cut, e.refused, e.bytes_delayed, e.frames_dropped
            )?;
            if e.starttls_stripped + e.intercepted + e.impostor_refused > 0 {
                writeln!(
                    out,
                    "      wire: {} STARTTLS offer(s) stripped, {} handshake(s) completed with the impostor, {} refused its certificate",
                    e.starttls_stripped, e.intercepted, e.impostor_refused
                )?;
            }
        }
        if let (Some(d), Some(a)) = (&f.during, &f.after) {
            writeln!(
                out,
                "      during: {} published, {} confirmed, {} in doubt, {} delivered, {} redelivered; after: {} published, {} confirmed, {} in doubt, {} delivered",
                d.published, d.confirmed, d.in_doubt, d.delivered, d.redelivered, a.published, a.confirmed, a.in_doubt, a.delivered
            )?;
        }
        if let Some(a) = &f.aimed_at {
            writeln!(out, "      aimed at: {a}")?;
        }
        if let Some(b) = f.backlog {
            writeln!(
                out,
                "      backlog: {b} message(s) ready in the queue when it fired"
            )?;
        }
        if let Some(n) = &f.note {
            writeln!(out, "      note: {n}")?;
        }
    }
    writeln!(out, "  effect store: {}", r.effect_store)?;
    if let Some(h) = &r.history {
        writeln!(out, "  history: {h}")?;
    }
    Ok(())
}

/// The ledger's counts, four lines.
pub fn write_counts(out: &mut dyn Write, c: &Counts) -> io::Result<()> {
    writeln!(
        out,
        "  intended   {:>8}   published {:>8}   confirmed   {:>8}   in doubt    {:>8}",
        c.intended, c.published, c.confirmed, c.in_doubt
    )?;
    writeln!(
        out,
        "  attempts   {:>8}   nacked    {:>8}   deliveries  {:>8}   redelivered {:>8}",
        c.attempts, c.nacked, c.deliveries, c.redelivered
    )?;
    writeln!(
        out,
        "  effects    {:>8}   unique    {:>8}   duplicates  {:>8}   suppressed  {:>8}",
        c.effects, c.unique, c.duplicates, c.suppressed
    )?;
    writeln!(
        out,
        "  lost       {:>8}   after confirm {:>4}   unconfirmed {:>8}   unexpected  {:>8}",
        c.lost, c.lost_after_confirm, c.lost_unconfirmed, c.unexpected
    )
}

/// The first lost and duplicated message IDs, and how to ask about one.
pub fn write_ids(
    out: &mut dyn Write,
    run_id: &str,
    lost: &[String],
    duplicated: &[String],
) -> io::Result<()> {
    for (what, ids) in [("lost", lost), ("duplicated", duplicated)] {
        if !ids.is_empty() {
            writeln!(out, "  {what:<10} {}", first_ids(ids))?;
        }
    }
    if let Some(id) = duplicated.first().or(lost.first()) {
        writeln!(
            out,
            "             `dlab explain {run_id} {id}` tells one message's story"
        )?;
    }
    Ok(())
}

/// The promise, the verdicts and each expectation, judged.
pub fn write_judgement(
    out: &mut dyn Write,
    promise: Option<&Promise>,
    verdicts: &Verdicts,
    expectations: &[ExpectationResult],
) -> io::Result<()> {
    if let Some(p) = promise {
        writeln!(
            out,
            "  promise   {}: {}: {}",
            p.guarantee,
            p.promise,
            held(p.held)
        )?;
    }
    writeln!(
        out,
        "  verdicts  at-most-once {} · at-least-once {} · exactly-once {}",
        held(verdicts.at_most_once),
        held(verdicts.at_least_once),
        held(verdicts.exactly_once)
    )?;
    for x in expectations {
        let op = if x.name.starts_with("max") {
            "<="
        } else {
            ">="
        };
        writeln!(
            out,
            "  expect    {} {op} {}: counted {}: {}",
            x.name,
            x.bound,
            x.actual,
            held(x.held)
        )?;
    }
    Ok(())
}

/// The broker's own count beside the ledger's, one line per count.
fn write_broker_count(out: &mut dyn Write, r: &RunResult) -> io::Result<()> {
    if let Some(why) = &r.broker_count_missing {
        return writeln!(out, "  broker    not counted: {why}");
    }
    let Some(b) = &r.broker_count else {
        return Ok(());
    };
    writeln!(
        out,
        "  broker    {} queue; its own count ({}){}:",
        b.queue_type,
        b.source,
        if b.whole_run {
            ""
        } else {
            ", since its last restart"
        }
    )?;
    for p in &b.pairs {
        writeln!(
            out,
            "            {:<12} {:>8}  ledger {:<11} {:>8}  {}",
            p.name,
            p.broker,
            p.ledger_field,
            p.ledger,
            p.why.as_deref().unwrap_or("agree")
        )?;
    }
    Ok(())
}

/// One cell of the matrix grid.
pub struct Cell<'a> {
    /// The row's fault label.
    pub row: &'a str,
    /// The column's preset.
    pub column: &'a str,
    /// The run.
    pub result: &'a RunResult,
}

/// Writes the matrix grid: lost and duplicates per cell, and whether the
/// preset's promise held.
pub fn write_matrix(
    out: &mut dyn Write,
    corner: &str,
    rows: &[&str],
    columns: &[&str],
    cells: &[Cell<'_>],
) -> io::Result<()> {
    const ROW: usize = 42;
    const COL: usize = 30;
    write!(out, "{corner:<ROW$}")?;
    for c in columns {
        write!(out, "{c:<COL$}")?;
    }
    writeln!(out)?;
    write!(out, "{:<ROW$}", "")?;
    for _ in columns {
        write!(out, "{:<COL$}", "lost  dup   promise")?;
    }
    writeln!(out)?;
    for row in rows {
        write!(out, "{row:<ROW$}")?;
        for col in columns {
            match cells.iter().find(|c| c.row == *row && c.column == *col) {
                Some(cell) => {
                    let r = cell.result;
                    let promise = r.promise.as_ref().map_or("-", |p| held(p.held));
                    let text = format!("{:<5} {:<5} {promise}", r.counts.lost, r.counts.duplicates);
                    write!(out, "{text:<COL$}")?;
                }
                None => write!(out, "{:<COL$}", "(not run)")?,
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Writes several runs side by side, one column each, each column as wide
/// as its longest value: nothing is cut (run names that differ only at
/// their end, e.g. `...-crash-after-effect` and `...-crash-before-effect`,
/// must stay apart).
pub fn write_side_by_side(out: &mut dyn Write, results: &[RunResult]) -> io::Result<()> {
    const KEY: usize = 26;
    const MIN_COL: usize = 22;
    type Field<'a> = (&'a str, Box<dyn Fn(&RunResult) -> String>);
    let mut fields: Vec<Field<'_>> = vec![
        ("scenario", Box::new(|r| r.scenario.clone())),
        (
            "transport",
            Box::new(|r| match r.push {
                Some(_) => format!("{} + push", r.transport.name()),
                None => r.transport.name().to_string(),
            }),
        ),
        ("producer", Box::new(|r| r.producer.clone())),
        ("consumer", Box::new(|r| r.consumer.clone())),
        ("intended", Box::new(|r| r.counts.intended.to_string())),
        ("published", Box::new(|r| r.counts.published.to_string())),
        ("confirmed", Box::new(|r| r.counts.confirmed.to_string())),
        ("in doubt", Box::new(|r| r.counts.in_doubt.to_string())),
        ("effects", Box::new(|r| r.counts.effects.to_string())),
        ("lost", Box::new(|r| r.counts.lost.to_string())),
        ("duplicates", Box::new(|r| r.counts.duplicates.to_string())),
        (
            "promise",
            Box::new(|r| {
                r.promise
                    .as_ref()
                    .map_or("-".into(), |p| format!("{} {}", p.guarantee, held(p.held)))
            }),
        ),
        (
            "steady effects/s",
            Box::new(|r| format!("{:.0}", r.steady_throughput_per_s)),
        ),
        (
            "end-to-end p50",
            Box::new(|r| us_as_ms(r.latency.end_to_end.p50_us)),
        ),
        (
            "end-to-end p99",
            Box::new(|r| us_as_ms(r.latency.end_to_end.p99_us)),
        ),
        (
            "end-to-end max",
            Box::new(|r| us_as_ms(r.latency.end_to_end.max_us)),
        ),
        (
            "end-to-end samples",
            Box::new(|r| r.latency.end_to_end.samples.to_string()),
        ),
        (
            "confirm p99",
            Box::new(|r| us_as_ms(r.latency.publish_to_confirm.p99_us)),
        ),
        ("faults", Box::new(|r| r.faults.len().to_string())),
    ];
    if results.iter().any(|r| r.smtp.is_some()) {
        fields.push((
            "relay queue peak",
            Box::new(|r| {
                r.smtp
                    .as_ref()
                    .map_or("-".into(), |s| s.relay_queue_peak.to_string())
            }),
        ));
    }
    let cells: Vec<Vec<String>> = fields
        .iter()
        .map(|(_, f)| results.iter().map(f).collect())
        .collect();
    let widths: Vec<usize> = (0..results.len())
        .map(|i| {
            cells
                .iter()
                .map(|row| row[i].chars().count() + 2)
                .fold(MIN_COL, usize::max)
        })
        .collect();
    for ((name, _), row) in fields.iter().zip(&cells) {
        write!(out, "{name:<KEY$}")?;
        let last = row.len().saturating_sub(1);
        for (i, (value, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                write!(out, "{value}")?;
            } else {
                write!(out, "{value:<width$}")?;
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

/// For each run with a timed fault: what arrived while it lasted, how long
/// after its end the downstream had caught up, and the worst latency.
pub fn write_outage_summary(out: &mut dyn Write, results: &[RunResult]) -> io::Result<()> {
    for r in results {
        let Some(f) = r.fault_timeline.iter().find(|f| f.ended_ms > f.started_ms) else {
            continue;
        };
        let (Some(start), Some(end)) = (f.started_ms, f.ended_ms) else {
            continue;
        };
        let during = f.during.map_or(0, |t| t.delivered);
        let caught_up = r
            .series
            .effects
            .iter()
            .rposition(|n| *n > 0)
            .map(|last| (last as u64 + 1) * r.series.bucket_ms);
        writeln!(
            out,
            "  {:<22} outage {}ms to {}ms: {} delivered during it; last effect at {}; end-to-end max {}",
            r.scenario,
            start,
            end,
            during,
            caught_up.map_or("-".into(), |t| format!("{t}ms")),
            us_as_ms(r.latency.end_to_end.max_us)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_ids_and_how_many_more() {
        let ids: Vec<String> = (0..7).map(|i| format!("r-{i}")).collect();
        assert_eq!(first_ids(&ids[..0]), "");
        assert_eq!(first_ids(&ids[..1]), "r-0");
        assert_eq!(first_ids(&ids[..5]), "r-0, r-1, r-2, r-3, r-4");
        assert_eq!(first_ids(&ids[..6]), "r-0, r-1, r-2, r-3, r-4 and 1 more");
        assert_eq!(first_ids(&ids), "r-0, r-1, r-2, r-3, r-4 and 2 more");
    }
}
