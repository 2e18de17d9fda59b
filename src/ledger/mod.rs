//! The ledger: per message ID, what happened to it, from real events.
//!
//! Architecture invariant: the ledger is pure. It does no IO and reads no
//! clock; the runner feeds it events (from worker processes and from the
//! effect store) and asks for a [`Reconciliation`] after the drain phase.
//! Messages are numbered `0..intended`; anything else is "unexpected".

mod reconcile;

pub use reconcile::{Counts, Reconciliation, Verdicts};

/// Something that happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A producer sent the message (one attempt).
    Attempt(u64),
    /// The broker confirmed one attempt (basic.ack).
    Confirmed(u64),
    /// The broker refused one attempt (basic.nack).
    Nacked(u64),
    /// The producer lost track of one attempt: connection lost or confirm timed out.
    InDoubt(u64),
    /// A consumer received the message; `redelivered` is the broker's flag.
    Delivered {
        /// The message number.
        seq: u64,
        /// Whether the broker marked the delivery as a redelivery.
        redelivered: bool,
    },
    /// A consumer's ack for the message was sent.
    Acked(u64),
    /// An effect of the message is in the effect store.
    Effect(u64),
    /// The idempotent layer recognised the message and applied no effect.
    Suppressed(u64),
    /// A delivery or effect whose message ID is not one of this run's.
    Unexpected,
}

impl Event {
    /// The message the event is about (none for [`Event::Unexpected`]).
    pub fn seq(self) -> Option<u64> {
        match self {
            Event::Attempt(s)
            | Event::Confirmed(s)
            | Event::Nacked(s)
            | Event::InDoubt(s)
            | Event::Delivered { seq: s, .. }
            | Event::Acked(s)
            | Event::Effect(s)
            | Event::Suppressed(s) => Some(s),
            Event::Unexpected => None,
        }
    }
}

/// Per-message counters. Sixteen bytes, so that 10^7 messages fit in 160 MB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    /// Publish attempts.
    pub attempts: u16,
    /// Attempts the broker confirmed.
    pub confirms: u16,
    /// Attempts the broker nacked.
    pub nacks: u16,
    /// Attempts whose outcome the producer never learned.
    pub in_doubt: u16,
    /// Deliveries to consumers.
    pub deliveries: u16,
    /// Deliveries flagged as redelivered.
    pub redeliveries: u16,
    /// Effects in the effect store.
    pub effects: u16,
    /// Duplicates the idempotent layer suppressed.
    pub suppressed: u16,
}

/// What is known about every intended message.
#[derive(Debug, Clone)]
pub struct Ledger {
    records: Vec<Record>,
    unexpected: u64,
    acks: u64,
}

impl Ledger {
    /// A ledger for messages `0..intended`.
    pub fn new(intended: u64) -> Ledger {
        Ledger {
            records: vec![Record::default(); intended as usize],
            unexpected: 0,
            acks: 0,
        }
    }

    /// Records one event.
    pub fn record(&mut self, event: Event) {
        let Some(seq) = event.seq() else {
            self.unexpected += 1;
            return;
        };
        let Some(r) = self.records.get_mut(seq as usize) else {
            self.unexpected += 1;
            return;
        };
        let counter = match event {
            Event::Attempt(_) => &mut r.attempts,
            Event::Confirmed(_) => &mut r.confirms,
            Event::Nacked(_) => &mut r.nacks,
            Event::InDoubt(_) => &mut r.in_doubt,
            Event::Delivered { redelivered, .. } => {
                if redelivered {
                    r.redeliveries = r.redeliveries.saturating_add(1);
                }
                &mut r.deliveries
            }
            Event::Acked(_) => {
                self.acks += 1;
                return;
            }
            Event::Effect(_) => &mut r.effects,
            Event::Suppressed(_) => &mut r.suppressed,
            Event::Unexpected => unreachable!("counted above"),
        };
        *counter = counter.saturating_add(1);
    }

    /// The record of message `seq`.
    pub fn get(&self, seq: u64) -> Option<&Record> {
        self.records.get(seq as usize)
    }

    /// Reconciles everything recorded into counts and verdicts.
    pub fn reconcile(&self) -> Reconciliation {
        reconcile::reconcile(&self.records, self.unexpected, self.acks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_land_on_their_message() {
        let mut l = Ledger::new(2);
        l.record(Event::Attempt(1));
        l.record(Event::Delivered {
            seq: 1,
            redelivered: true,
        });
        l.record(Event::Effect(1));
        let r = l.get(1).unwrap();
        assert_eq!(
            (r.attempts, r.deliveries, r.redeliveries, r.effects),
            (1, 1, 1, 1)
        );
        assert_eq!(l.get(0), Some(&Record::default()));
    }

    #[test]
    fn foreign_ids_are_unexpected_not_panics() {
        let mut l = Ledger::new(1);
        l.record(Event::Effect(7));
        l.record(Event::Unexpected);
        assert_eq!(l.reconcile().counts.unexpected, 2);
    }

    #[test]
    fn acks_are_counted_run_wide_not_per_message() {
        let mut l = Ledger::new(2);
        l.record(Event::Acked(0));
        l.record(Event::Acked(0));
        l.record(Event::Acked(1));
        assert_eq!(l.reconcile().counts.acks, 3);
        assert_eq!(l.get(0), Some(&Record::default()));
    }

    #[test]
    fn records_stay_small() {
        assert_eq!(std::mem::size_of::<Record>(), 16);
    }
}
