//! The wire matrix (`dlab matrix --wire`): each transport (AMQP, SMTP
//! through the relay, AMQP with the push gateway as the effect) with `tls`
//! off, on and mutual, the eavesdropper on every proxied link, every cell
//! at-least-once.
//!
//! A cell judges what its column promises about the wire as well as the
//! guarantee: in clear the eavesdropper reads every message ID on some link
//! (`min_ids_read`); under TLS, none on any link (`max_ids_read = 0`). The
//! grid's detail lines set beside them what each cell cost: throughput,
//! connections that made a handshake, and the handshake time the tap saw.

use crate::policy::Guarantee;
use crate::scenario::{EffectKind, ExpectSpec, Plan, Spec, TlsMode, Transport};

/// One row: a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Label shown in the grid.
    pub label: &'static str,
    /// Short name used in scenario names.
    pub key: &'static str,
    /// The transport.
    pub transport: Transport,
    /// AMQP with the push gateway as the consumers' effect.
    pub push: bool,
}

/// Every row, in the order of the grid.
pub const ROWS: [Row; 3] = [
    Row {
        label: "amqp (producers, consumers)",
        key: "amqp",
        transport: Transport::Amqp,
        push: false,
    },
    Row {
        label: "smtp (sender, relay, inbox)",
        key: "smtp",
        transport: Transport::Smtp,
        push: false,
    },
    Row {
        label: "push (amqp, then HTTP to the gateway)",
        key: "push",
        transport: Transport::Amqp,
        push: true,
    },
];

/// The grid's columns.
pub const MODES: [TlsMode; 3] = [TlsMode::Off, TlsMode::On, TlsMode::Mutual];

/// The name of a column.
pub fn mode_name(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::Off => "off",
        TlsMode::On => "on",
        TlsMode::Mutual => "mutual",
    }
}

/// One cell to run.
#[derive(Debug, Clone)]
pub struct CellPlan {
    /// The row.
    pub row: Row,
    /// The column.
    pub mode: TlsMode,
    /// What to run.
    pub plan: Plan,
}

/// The plans of every cell of `rows`, row by row.
pub fn plans(rows: &[Row], messages: u64, seed: u64) -> Vec<CellPlan> {
    let mut cells = Vec::new();
    for &row in rows {
        for mode in MODES {
            let expect = ExpectSpec {
                max_lost: Some(0),
                min_ids_read: (mode == TlsMode::Off).then_some(messages),
                max_ids_read: (mode != TlsMode::Off).then_some(0),
                ..ExpectSpec::default()
            };
            let smtp = row.transport == Transport::Smtp;
            let spec = Spec {
                name: Some(format!("wire-{}-tls-{}", row.key, mode_name(mode))),
                description: Some(format!(
                    "at-least-once over {} with tls = \"{}\", the eavesdropper on every link",
                    row.key,
                    mode_name(mode)
                )),
                transport: smtp.then_some(Transport::Smtp),
                guarantee: Some(Guarantee::AtLeastOnce),
                messages: Some(messages),
                producers: smtp.then_some(4),
                consumers: (!smtp).then_some(2),
                prefetch: (!smtp).then_some(50),
                effect: row.push.then_some(EffectKind::Push),
                tls: Some(mode),
                eavesdropper: Some(true),
                seed: Some(seed),
                expect: Some(expect),
                ..Spec::default()
            };
            let plan = Plan::from_spec(&spec, "wire-matrix").expect("wire matrix plans are valid");
            cells.push(CellPlan { row, mode, plan });
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transport_meets_every_mode_and_each_judges_the_wire() {
        let cells = plans(&ROWS, 300, 1);
        assert_eq!(cells.len(), ROWS.len() * MODES.len());
        for c in &cells {
            assert_eq!(c.plan.tls, c.mode);
            assert!(c.plan.eavesdropper);
            assert_eq!(c.plan.expect.max_lost, Some(0));
            let clear = c.mode == TlsMode::Off;
            assert_eq!(c.plan.expect.min_ids_read, clear.then_some(300));
            assert_eq!(c.plan.expect.max_ids_read, (!clear).then_some(0));
            assert_eq!(c.plan.transport, c.row.transport);
        }
    }
}
