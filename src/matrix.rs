//! The guarantee matrix: every preset against every fault row, one grid.
//!
//! Each cell is an ordinary run of a generated plan whose expectations are
//! the preset's own promise, so the matrix checks itself: a preset that
//! breaks its promise makes `dlab matrix` exit 1.

use crate::policy::Guarantee;
use crate::scenario::{CrashPoint, ExpectSpec, FaultKind, FaultSpec, Plan, Spec};

/// One row of the grid: a fault (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Label shown in the grid.
    pub label: &'static str,
    /// Short name used in scenario names.
    pub key: &'static str,
    /// The consumer crash this row injects, if any.
    pub crash: Option<CrashPoint>,
}

/// The rows of the core matrix.
pub const ROWS: [Row; 3] = [
    Row {
        label: "no fault",
        key: "no-fault",
        crash: None,
    },
    Row {
        label: "consumer crash before effect",
        key: "crash-before-effect",
        crash: Some(CrashPoint::BeforeEffect),
    },
    Row {
        label: "consumer crash after effect, before ack",
        key: "crash-after-effect",
        crash: Some(CrashPoint::AfterEffectBeforeAck),
    },
];

/// One cell to run.
#[derive(Debug, Clone)]
pub struct CellPlan {
    /// The row.
    pub row: Row,
    /// The column.
    pub guarantee: Guarantee,
    /// What to run.
    pub plan: Plan,
}

/// The plans of every cell, row by row.
pub fn plans(messages: u64, seed: u64) -> Vec<CellPlan> {
    let consumers = 2u64;
    let mut cells = Vec::new();
    for row in ROWS {
        for guarantee in Guarantee::ALL {
            let faults = row
                .crash
                .map(|point| FaultSpec {
                    kind: Some(FaultKind::ConsumerCrash),
                    point: Some(point),
                    after: Some((messages / (consumers * 4)).max(1)),
                    worker: Some(0),
                    restart_after: Some("500ms".into()),
                    ..FaultSpec::default()
                })
                .into_iter()
                .collect();
            let expect = match guarantee {
                Guarantee::AtMostOnce => ExpectSpec {
                    max_duplicates: Some(0),
                    ..ExpectSpec::default()
                },
                Guarantee::AtLeastOnce => ExpectSpec {
                    max_lost: Some(0),
                    ..ExpectSpec::default()
                },
                Guarantee::ExactlyOnce => ExpectSpec {
                    max_lost: Some(0),
                    max_duplicates: Some(0),
                    ..ExpectSpec::default()
                },
            };
            let spec = Spec {
                name: Some(format!("matrix-{}-{}", guarantee.name(), row.key)),
                description: Some(format!("{guarantee} under {}", row.label)),
                guarantee: Some(guarantee),
                messages: Some(messages),
                consumers: Some(consumers),
                prefetch: Some(50),
                seed: Some(seed),
                faults,
                expect: Some(expect),
                ..Spec::default()
            };
            let plan =
                Plan::from_spec(&spec, "matrix").expect("matrix plans are valid by construction");
            cells.push(CellPlan {
                row,
                guarantee,
                plan,
            });
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_meets_every_row_once() {
        let cells = plans(1000, 7);
        assert_eq!(cells.len(), ROWS.len() * Guarantee::ALL.len());
        for row in ROWS {
            for g in Guarantee::ALL {
                assert_eq!(
                    cells
                        .iter()
                        .filter(|c| c.row == row && c.guarantee == g)
                        .count(),
                    1
                );
            }
        }
        let crash = cells.iter().find(|c| c.row.crash.is_some()).unwrap();
        assert_eq!(crash.plan.crash_for_consumer(0).unwrap().1, 125);
    }
}
