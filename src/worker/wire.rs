//! The line protocol worker processes use to tell the runner what happened.
//!
//! One event per line on the worker's stdout. It is dlab's instrument, like
//! Jepsen's history: it records what the worker did, it holds no state the
//! guarantee depends on (that lives in the broker and the effect store).

use crate::ledger::Event;
use crate::push::client::CallEvent;
use std::fmt;

/// One thing a worker reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireEvent {
    /// Connected and ready (a consumer: its consumer is registered).
    Ready,
    /// What happened to a message: an attempt, confirm, nack, attempt in
    /// doubt, delivery, ack, or a delivery of another run's message. The
    /// same events the SMTP sender and the inbox emit: one event type.
    Ledger(Event),
    /// A latency histogram (HdrHistogram V2 serialization, base64).
    Histogram {
        /// Which latency it measures.
        name: String,
        /// The serialized histogram.
        data: String,
    },
    /// The worker is aborting at a scheduled crash point: where (a consumer's
    /// crash point, or `after-publish`), at its own delivery or publish
    /// number `count`, and the message that delivery or publish carried.
    Aborted {
        /// The crash point's name.
        point: String,
        /// The worker's own count of deliveries (or publishes) at the abort.
        count: u64,
        /// The message number of that delivery or publish, if it was one of this run's.
        seq: Option<u64>,
    },
    /// Connected to member `n` (from 0) of a cluster's endpoints.
    Endpoint(u32),
    /// An attempt or a wait of a call to the push gateway, for message `seq`
    /// (if one of this run's).
    Push {
        /// What the attempt came to.
        call: CallEvent,
        /// The message.
        seq: Option<u64>,
    },
    /// Something the worker noticed (a lost connection, a retry), for the log.
    Note(String),
    /// The worker finished its work and is exiting normally.
    Done,
}

impl fmt::Display for WireEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireEvent::Ready => f.write_str("ready"),
            WireEvent::Ledger(e) => match e {
                Event::Attempt(s) => write!(f, "A {s}"),
                Event::Confirmed(s) => write!(f, "C {s}"),
                Event::Nacked(s) => write!(f, "N {s}"),
                Event::InDoubt(s) => write!(f, "D {s}"),
                Event::Delivered { seq, redelivered } => {
                    write!(f, "R {seq} {}", u8::from(*redelivered))
                }
                Event::Acked(s) => write!(f, "K {s}"),
                Event::Effect(s) => write!(f, "E {s}"),
                Event::Suppressed(s) => write!(f, "S {s}"),
                Event::Unexpected => f.write_str("X"),
            },
            WireEvent::Histogram { name, data } => write!(f, "H {name} {data}"),
            WireEvent::Aborted { point, count, seq } => match seq {
                Some(seq) => write!(f, "abort {point} {count} {seq}"),
                None => write!(f, "abort {point} {count} -"),
            },
            WireEvent::Endpoint(n) => write!(f, "at {n}"),
            WireEvent::Push { call, seq } => match seq {
                Some(seq) => write!(f, "P {call} {seq}"),
                None => write!(f, "P {call} -"),
            },
            WireEvent::Note(text) => write!(f, "note {}", text.replace('\n', " ")),
            WireEvent::Done => f.write_str("done"),
        }
    }
}

impl WireEvent {
    /// Parses one line (without its newline).
    pub fn parse(line: &str) -> Option<WireEvent> {
        if let Some(rest) = line.strip_prefix("abort ") {
            let mut p = rest.split(' ');
            let point = p.next().filter(|s| !s.is_empty())?.to_string();
            let count = p.next()?.parse().ok()?;
            let seq = match p.next()? {
                "-" => None,
                n => Some(n.parse().ok()?),
            };
            return p
                .next()
                .is_none()
                .then_some(WireEvent::Aborted { point, count, seq });
        }
        let mut parts = line.splitn(3, ' ');
        let tag = parts.next()?;
        let mut num = || parts.next()?.parse::<u64>().ok();
        Some(match tag {
            "ready" => WireEvent::Ready,
            "at" => WireEvent::Endpoint(num()? as u32),
            "P" => {
                let call = CallEvent::parse(parts.next()?)?;
                let seq = match parts.next()? {
                    "-" => None,
                    n => Some(n.parse().ok()?),
                };
                WireEvent::Push { call, seq }
            }
            "done" => WireEvent::Done,
            "X" => WireEvent::Ledger(Event::Unexpected),
            "A" => WireEvent::Ledger(Event::Attempt(num()?)),
            "C" => WireEvent::Ledger(Event::Confirmed(num()?)),
            "N" => WireEvent::Ledger(Event::Nacked(num()?)),
            "D" => WireEvent::Ledger(Event::InDoubt(num()?)),
            "K" => WireEvent::Ledger(Event::Acked(num()?)),
            "E" => WireEvent::Ledger(Event::Effect(num()?)),
            "S" => WireEvent::Ledger(Event::Suppressed(num()?)),
            "R" => {
                let seq = num()?;
                let redelivered = match parts.next()? {
                    "0" => false,
                    "1" => true,
                    _ => return None,
                };
                WireEvent::Ledger(Event::Delivered { seq, redelivered })
            }
            "H" => WireEvent::Histogram {
                name: parts.next()?.to_string(),
                data: parts.next()?.to_string(),
            },
            "note" => WireEvent::Note(line.strip_prefix("note ").unwrap_or("").to_string()),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips() {
        let events = [
            WireEvent::Ready,
            WireEvent::Ledger(Event::Attempt(1)),
            WireEvent::Ledger(Event::Confirmed(2)),
            WireEvent::Ledger(Event::Nacked(3)),
            WireEvent::Ledger(Event::InDoubt(4)),
            WireEvent::Ledger(Event::Delivered {
                seq: 5,
                redelivered: true,
            }),
            WireEvent::Ledger(Event::Delivered {
                seq: 6,
                redelivered: false,
            }),
            WireEvent::Ledger(Event::Acked(7)),
            WireEvent::Endpoint(2),
            WireEvent::Push {
                call: CallEvent::Status(503),
                seq: Some(4),
            },
            WireEvent::Push {
                call: CallEvent::RetryAfter(1000),
                seq: None,
            },
            WireEvent::Ledger(Event::Effect(8)),
            WireEvent::Ledger(Event::Suppressed(9)),
            WireEvent::Ledger(Event::Unexpected),
            WireEvent::Histogram {
                name: "e2e".into(),
                data: "SGVsbG8=".into(),
            },
            WireEvent::Note("connection lost: reset".into()),
            WireEvent::Aborted {
                point: "after-effect-before-ack".into(),
                count: 7,
                seq: Some(123),
            },
            WireEvent::Aborted {
                point: "after-publish".into(),
                count: 3,
                seq: None,
            },
            WireEvent::Done,
        ];
        for e in events {
            assert_eq!(WireEvent::parse(&e.to_string()), Some(e.clone()), "{e}");
        }
    }

    #[test]
    fn garbage_is_not_an_event() {
        for line in [
            "",
            "A",
            "A x",
            "R 1 2",
            "Z 1",
            "H e2e",
            "abort",
            "abort x 1",
            "abort x y 1",
            "abort x 1 2 3",
            "P",
            "P shown",
            "P what 1",
        ] {
            assert_eq!(WireEvent::parse(line), None, "{line:?}");
        }
    }
}
