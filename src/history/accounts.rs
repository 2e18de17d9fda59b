//! Whether a history accounts for its effect store: a process writes a row
//! for a message (an effect, or a suppressed duplicate) only while handling
//! a delivery of that message, so every row must be matched by a delivery
//! of its message to the process that wrote it, one delivery per row. A row
//! with no such delivery means the history and the store do not belong
//! together (a line lost, a row added).
//!
//! Kept small for runs of 10^7 messages: eight bytes per message for the
//! first process a message was delivered to, and a map only for messages
//! delivered to more than one.

use std::collections::HashMap;

/// Deliveries per message and process, used up by rows.
pub struct Deliveries {
    /// Per message: the first process it was delivered to, and how many
    /// deliveries to it are not yet matched by a row.
    first: Vec<(u32, u16)>,
    /// Unmatched deliveries to other processes.
    more: HashMap<(u64, u32), u32>,
}

impl Deliveries {
    /// No deliveries yet, for messages `0..messages`.
    pub fn new(messages: u64) -> Deliveries {
        Deliveries {
            first: vec![(0, 0); messages as usize],
            more: HashMap::new(),
        }
    }

    /// Message `seq` was delivered to process `pid`.
    pub fn delivered(&mut self, seq: u64, pid: u32) {
        let Some(slot) = self.first.get_mut(seq as usize) else {
            return;
        };
        if slot.0 == 0 || slot.0 == pid {
            *slot = (pid, slot.1.saturating_add(1));
        } else {
            *self.more.entry((seq, pid)).or_default() += 1;
        }
    }

    /// Matches a row `pid` wrote for message `seq` with one of its
    /// deliveries; false when there is none left (the row is unaccounted).
    pub fn take(&mut self, seq: u64, pid: u32) -> bool {
        let Some(slot) = self.first.get_mut(seq as usize) else {
            return true; // not an intended message: counted as unexpected
        };
        if slot.0 == pid && slot.1 > 0 {
            slot.1 -= 1;
            return true;
        }
        match self.more.get_mut(&(seq, pid)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_uses_up_one_delivery_to_its_own_process() {
        let mut d = Deliveries::new(3);
        d.delivered(0, 10);
        d.delivered(0, 11);
        d.delivered(1, 10);
        d.delivered(1, 10);
        assert!(d.take(0, 10));
        assert!(!d.take(0, 10), "one delivery, one row");
        assert!(d.take(0, 11));
        assert!(!d.take(0, 12), "never delivered to 12");
        assert!(d.take(1, 10) && d.take(1, 10));
        assert!(!d.take(1, 10));
        assert!(!d.take(2, 10), "never delivered");
        assert!(
            d.take(9, 10),
            "not an intended message: not this check's business"
        );
    }
}
