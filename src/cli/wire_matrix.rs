//! `dlab matrix --wire`: runs the wire matrix's cells on one broker (a node
//! dlab starts, since amqps needs its TLS listener) and private relays, and
//! prints the grid with what the eavesdropper read and what TLS cost.

use super::args::{BrokerArgs, OutputArgs, Transports};
use super::commands::{run_each, with_broker, write_outputs};
use crate::report::{self, table, RunResult};
use crate::scenario::Plan;
use crate::wire_matrix::{mode_name, plans, CellPlan, Row, MODES, ROWS};
use anyhow::{anyhow, Result};
use std::io::Write;

/// The most messages per cell: what the tap's budget keeps whole on the
/// busiest link (about 500 bytes a message each way on AMQP).
const MAX_MESSAGES: u64 = 20_000;

/// Runs the cells of the rows `transport` picks; exit 0 when every cell's
/// expectations held.
pub fn run(
    messages: u64,
    seed: u64,
    transport: Transports,
    output: &OutputArgs,
    broker: &BrokerArgs,
) -> Result<i32> {
    if broker.amqp_url.is_some() || broker.smtp_url.is_some() {
        return Err(anyhow!(
            "--wire runs TLS on servers dlab starts itself (their certificates come from the lab CA); leave out --amqp-url / --smtp-url"
        ));
    }
    if messages > MAX_MESSAGES {
        return Err(anyhow!(
            "--messages {messages}: expected at most {MAX_MESSAGES} with --wire (the eavesdropper keeps {} MiB per link, and a clear cell must read every message)",
            crate::eavesdrop::TAP_BUDGET >> 20
        ));
    }
    let chosen: Vec<Row> = ROWS
        .iter()
        .copied()
        .filter(|r| transport.picks(r.transport, r.push))
        .collect();
    let cells = plans(&chosen, messages, seed);
    let runs: Vec<Plan> = cells.iter().map(|c| c.plan.clone()).collect();
    let amqp = runs.iter().any(Plan::needs_one_broker);
    let results = with_broker(broker, output.quiet, amqp, |ctx| async move {
        run_each(&runs, &ctx, "matrix").await
    })?;
    print(&chosen, &cells, &results, messages)?;
    let columns: Vec<&str> = MODES.iter().map(|m| mode_name(*m)).collect();
    let grid = report::html::Grid {
        rows: chosen.iter().map(|r| r.label).collect(),
        columns,
        cells: cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.row.label, mode_name(c.mode), i))
            .collect(),
    };
    write_outputs(&results, "dlab matrix --wire", Some(&grid), output)
}

/// What the eavesdropper got from one run, over all its links: the most
/// message IDs on one link, the credentials whose secret it read, the
/// connections that made a handshake, and the median handshake time of the
/// link that timed the most.
fn read(r: &RunResult) -> (u64, u64, u64, Option<f64>) {
    let Some(e) = &r.eavesdropper else {
        return (0, 0, 0, None);
    };
    let ids = e.most_ids_read();
    let secrets = e
        .links
        .iter()
        .flat_map(|l| &l.credentials)
        .filter(|c| c.secret_read)
        .map(|c| c.times)
        .sum();
    let handshakes = e.links.iter().map(|l| l.tls_connections).sum();
    let timed = e
        .links
        .iter()
        .filter(|l| l.handshakes_timed > 0)
        .max_by_key(|l| l.handshakes_timed)
        .map(|l| l.handshake_p50_us as f64 / 1000.0);
    (ids, secrets, handshakes, timed)
}

fn print(rows: &[Row], cells: &[CellPlan], results: &[RunResult], messages: u64) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    writeln!(
        out,
        "\ndlab matrix --wire: {messages} messages per cell, at-least-once, the eavesdropper on every proxied link\n\
         promise: no message lost; in clear the eavesdropper reads every message ID, under TLS none\n"
    )?;
    let grid: Vec<table::Cell<'_>> = cells
        .iter()
        .zip(results)
        .map(|(c, r)| table::Cell {
            row: c.row.label,
            column: mode_name(c.mode),
            result: r,
        })
        .collect();
    let labels: Vec<&str> = rows.iter().map(|r| r.label).collect();
    let columns: Vec<&str> = MODES.iter().map(|m| mode_name(*m)).collect();
    table::write_matrix(out, "transport \\ tls", &labels, &columns, &grid)?;
    writeln!(out)?;
    for r in results {
        let (ids, secrets, handshakes, timed) = read(r);
        let timed = timed.map_or("-".to_string(), |ms| format!("{ms:.2} ms"));
        let wire = r
            .expectations
            .iter()
            .filter(|x| x.name.ends_with("ids_read"))
            .map(|x| if x.held { "held" } else { "BROKEN" })
            .next()
            .unwrap_or("-");
        writeln!(
            out,
            "  {:<24} {:>7.0} msg/s   IDs read {ids:>5} of {messages} ({wire})   secrets read {secrets:>3}   TLS connections {handshakes:>4}   handshake median {timed}",
            r.scenario, r.throughput_per_s
        )?;
    }
    Ok(())
}
