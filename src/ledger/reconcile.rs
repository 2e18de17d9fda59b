//! Reconciliation: the ledger's records folded into counts and verdicts.
//!
//! The verdicts follow PRODUCT.md: at-most-once holds when no message has two
//! effects, at-least-once when no intended message has none, exactly-once
//! when both do. Losses split by whether the broker had confirmed the message.
//! Beside the counts, the reconciliation names the messages: which were lost
//! and which were duplicated, so a report can list them and `dlab explain`
//! can tell their stories. The lists are made here, from the records, and
//! never kept in the ledger (which stays 16 bytes per message).

use super::Record;
use serde::{Deserialize, Serialize};

/// The counted outcome of a run. Field names are part of the JSON contract.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Counts {
    /// Messages the run meant to deliver.
    pub intended: u64,
    /// Intended messages published at least once.
    pub published: u64,
    /// Publish attempts, retries included.
    pub attempts: u64,
    /// Messages with at least one confirmed attempt.
    pub confirmed: u64,
    /// Messages with at least one nacked attempt.
    pub nacked: u64,
    /// Messages with at least one attempt whose outcome the producer never learned.
    pub in_doubt: u64,
    /// Deliveries to consumers.
    pub deliveries: u64,
    /// Deliveries the broker flagged as redelivered.
    pub redelivered: u64,
    /// Acks consumers sent.
    pub acks: u64,
    /// Effects (rows in the effect store).
    pub effects: u64,
    /// Messages with at least one effect.
    pub unique: u64,
    /// Effects beyond the first, summed over messages.
    pub duplicates: u64,
    /// Messages with more than one effect.
    pub duplicated_messages: u64,
    /// Duplicates the idempotent layer recognised and did not apply.
    pub suppressed: u64,
    /// Intended messages with no effect.
    pub lost: u64,
    /// Lost although the broker had confirmed them: a broken broker promise.
    pub lost_after_confirm: u64,
    /// Lost and never confirmed: the producer gave up or never knew.
    pub lost_unconfirmed: u64,
    /// Deliveries or effects whose ID was not one of this run's.
    pub unexpected: u64,
}

/// Whether each guarantee's promise held in this run.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Verdicts {
    /// No message had two effects.
    pub at_most_once: bool,
    /// No intended message had zero effects.
    pub at_least_once: bool,
    /// Both.
    pub exactly_once: bool,
}

/// Counts and verdicts together, and which messages broke a promise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// The counts.
    pub counts: Counts,
    /// The verdicts.
    pub verdicts: Verdicts,
    /// The numbers of the intended messages with no effect, ascending
    /// (`counts.lost` of them).
    pub lost: Vec<u64>,
    /// The numbers of the messages with more than one effect, ascending
    /// (`counts.duplicated_messages` of them).
    pub duplicated: Vec<u64>,
}

pub(super) fn reconcile(records: &[Record], unexpected: u64, acks: u64) -> Reconciliation {
    let mut c = Counts {
        intended: records.len() as u64,
        unexpected,
        acks,
        ..Counts::default()
    };
    let (mut lost, mut duplicated) = (Vec::new(), Vec::new());
    for (seq, r) in (0u64..).zip(records) {
        let effects = u64::from(r.effects);
        c.published += u64::from(r.attempts > 0);
        c.attempts += u64::from(r.attempts);
        c.confirmed += u64::from(r.confirms > 0);
        c.nacked += u64::from(r.nacks > 0);
        c.in_doubt += u64::from(r.in_doubt > 0);
        c.deliveries += u64::from(r.deliveries);
        c.redelivered += u64::from(r.redeliveries);
        c.effects += effects;
        c.suppressed += u64::from(r.suppressed);
        if effects == 0 {
            lost.push(seq);
            c.lost += 1;
            if r.confirms > 0 {
                c.lost_after_confirm += 1;
            } else {
                c.lost_unconfirmed += 1;
            }
        } else {
            c.unique += 1;
            c.duplicates += effects - 1;
            c.duplicated_messages += u64::from(effects > 1);
            if effects > 1 {
                duplicated.push(seq);
            }
        }
    }
    let verdicts = Verdicts {
        at_most_once: c.duplicates == 0,
        at_least_once: c.lost == 0,
        exactly_once: c.duplicates == 0 && c.lost == 0,
    };
    Reconciliation {
        counts: c,
        verdicts,
        lost,
        duplicated,
    }
}

#[cfg(test)]
mod tests {
    use crate::ledger::{Event, Ledger};

    fn delivered(l: &mut Ledger, seq: u64, effects: u16) {
        l.record(Event::Attempt(seq));
        l.record(Event::Confirmed(seq));
        l.record(Event::Delivered {
            seq,
            redelivered: false,
        });
        for _ in 0..effects {
            l.record(Event::Effect(seq));
        }
    }

    #[test]
    fn clean_run_holds_every_guarantee() {
        let mut l = Ledger::new(3);
        for s in 0..3 {
            delivered(&mut l, s, 1);
        }
        let r = l.reconcile();
        assert_eq!(
            (
                r.counts.effects,
                r.counts.unique,
                r.counts.lost,
                r.counts.duplicates
            ),
            (3, 3, 0, 0)
        );
        assert!(r.verdicts.at_most_once && r.verdicts.at_least_once && r.verdicts.exactly_once);
    }

    #[test]
    fn a_second_effect_breaks_at_most_once_and_exactly_once_only() {
        let mut l = Ledger::new(2);
        delivered(&mut l, 0, 3);
        delivered(&mut l, 1, 1);
        let r = l.reconcile();
        assert_eq!(r.counts.duplicates, 2);
        assert_eq!(r.counts.duplicated_messages, 1);
        assert_eq!(r.counts.unique, 2);
        assert!(!r.verdicts.at_most_once);
        assert!(r.verdicts.at_least_once);
        assert!(!r.verdicts.exactly_once);
        assert_eq!((r.lost, r.duplicated), (vec![], vec![0]));
    }

    #[test]
    fn losses_split_by_whether_the_broker_confirmed() {
        let mut l = Ledger::new(3);
        delivered(&mut l, 0, 0); // confirmed, never took effect
        l.record(Event::Attempt(1));
        l.record(Event::InDoubt(1)); // never confirmed
        delivered(&mut l, 2, 1);
        let r = l.reconcile();
        assert_eq!(r.counts.lost, 2);
        assert_eq!(r.counts.lost_after_confirm, 1);
        assert_eq!(r.counts.lost_unconfirmed, 1);
        assert_eq!(r.counts.in_doubt, 1);
        assert_eq!((r.lost, r.duplicated), (vec![0, 1], vec![]));
        assert!(r.verdicts.at_most_once);
        assert!(!r.verdicts.at_least_once);
        assert!(!r.verdicts.exactly_once);
    }

    #[test]
    fn every_count_of_a_mixed_run() {
        // Per-message counters that are "messages with at least one": a
        // message with none must not count, one with two must count once.
        let mut l = Ledger::new(4);
        delivered(&mut l, 0, 1);
        l.record(Event::Attempt(1));
        l.record(Event::Nacked(1));
        l.record(Event::Attempt(1));
        l.record(Event::Nacked(1));
        l.record(Event::Attempt(2));
        l.record(Event::InDoubt(2));
        l.record(Event::Attempt(2));
        l.record(Event::InDoubt(2));
        l.record(Event::Acked(0));
        l.record(Event::Effect(9));
        let c = l.reconcile().counts;
        assert_eq!(
            c,
            super::Counts {
                intended: 4,
                published: 3,
                attempts: 5,
                confirmed: 1,
                nacked: 1,
                in_doubt: 1,
                deliveries: 1,
                redelivered: 0,
                acks: 1,
                effects: 1,
                unique: 1,
                duplicates: 0,
                duplicated_messages: 0,
                suppressed: 0,
                lost: 3,
                lost_after_confirm: 0,
                lost_unconfirmed: 3,
                unexpected: 1,
            }
        );
    }

    #[test]
    fn the_lists_name_exactly_the_messages_the_counts_count() {
        // One effect is neither lost nor duplicated; none is lost; two or
        // three are duplicated, once each; a foreign ID is in no list.
        let mut l = Ledger::new(6);
        delivered(&mut l, 0, 1);
        delivered(&mut l, 1, 2);
        delivered(&mut l, 3, 3);
        delivered(&mut l, 5, 0);
        l.record(Event::Effect(6));
        let r = l.reconcile();
        assert_eq!(r.lost, vec![2, 4, 5]);
        assert_eq!(r.duplicated, vec![1, 3]);
        assert_eq!(r.lost.len() as u64, r.counts.lost);
        assert_eq!(r.duplicated.len() as u64, r.counts.duplicated_messages);
    }

    #[test]
    fn never_published_messages_are_lost_unconfirmed() {
        let l = Ledger::new(4);
        let r = l.reconcile();
        assert_eq!(
            (r.counts.published, r.counts.lost, r.counts.lost_unconfirmed),
            (0, 4, 4)
        );
    }

    #[test]
    fn retries_and_redeliveries_are_counted_per_attempt() {
        let mut l = Ledger::new(1);
        l.record(Event::Attempt(0));
        l.record(Event::Nacked(0));
        l.record(Event::Attempt(0));
        l.record(Event::Confirmed(0));
        l.record(Event::Delivered {
            seq: 0,
            redelivered: false,
        });
        l.record(Event::Delivered {
            seq: 0,
            redelivered: true,
        });
        l.record(Event::Effect(0));
        l.record(Event::Suppressed(0));
        let c = l.reconcile().counts;
        assert_eq!(
            (c.published, c.attempts, c.nacked, c.confirmed),
            (1, 2, 1, 1)
        );
        assert_eq!(
            (c.deliveries, c.redelivered, c.suppressed, c.duplicates),
            (2, 1, 1, 0)
        );
    }
}
