//! The verdict on one message, from its facts: lost, shown once, or
//! duplicated; for a loss, where the trail ends; for a duplicate, what made
//! each effect beyond the first: a redelivery after the process that held
//! the message let it go (an abort at a crash point, a lost connection), a
//! second attempt after the first was in doubt or nacked, or, over SMTP,
//! the relay delivering again what the inbox had already committed, or, with
//! a push effect, the consumer calling the gateway again for the same
//! delivery; with the faults active at that moment.

use super::facts::{Facts, Placed};
use crate::history::read::{Line, What};
use crate::ledger::Event;
use crate::policy::ConsumerPolicy;
use crate::push::client::CallEvent;
use crate::scenario::Transport;
use crate::worker::wire::WireEvent;

/// One sentence: the verdict and its cause.
pub fn verdict(f: &Facts) -> String {
    let effects: Vec<&Placed> = f.effects().collect();
    match effects.len() {
        0 => format!("lost: {}", lost(f)),
        1 => {
            let deliveries = f.deliveries().len();
            let suppressed = f.rows.len() - 1;
            match (deliveries, suppressed) {
                (0 | 1, 0) => "shown once".to_string(),
                (n, 0) => format!("shown once (delivered {n} times)"),
                (n, s) => format!(
                    "shown once (delivered {n} times; the idempotent layer suppressed {s} duplicate(s))"
                ),
            }
        }
        n => {
            let causes: Vec<String> = effects[1..]
                .iter()
                .enumerate()
                .map(|(i, e)| format!("the {} effect followed {}", ordinal(i + 2), cause(f, e)))
                .collect();
            format!("duplicated: shown {n} times; {}", causes.join("; "))
        }
    }
}

/// `consumer 0 (pid 1234)`.
pub fn who(l: &Line) -> String {
    format!("{} (pid {})", l.worker, l.pid)
}

/// " during fault #0 confirm-lost" for the faults active at some moment
/// from `from_us` to `to_us`, or nothing (or a word that faults are unknown).
fn during(f: &Facts, from_us: u64, to_us: u64) -> String {
    match f.faults_between(from_us as i64, to_us as i64) {
        None => " (faults unknown)".to_string(),
        Some(active) if active.is_empty() => String::new(),
        Some(active) => format!(" during fault {}", active.join(" and fault ")),
    }
}

/// How the process of `took` let the message go: the first line after
/// `took` of that process that settled it (`settles`) or ended the process.
fn release<'a>(f: &'a Facts, took: &Line, settles: fn(&Event) -> bool) -> Option<&'a Line> {
    f.lines
        .iter()
        .filter(|l| l.pid == took.pid && l.number > took.number)
        .find(|l| l.ledger_event().as_ref().is_some_and(settles) || l.ends_abnormally())
}

/// The end of a process, in words: "aborted at after-effect-before-ack".
fn ending(l: &Line) -> String {
    match &l.what {
        What::Event(WireEvent::Aborted { point, .. }) => format!("aborted at {point}"),
        What::Exit(75) => "lost its broker connection (exit 75)".to_string(),
        What::Exit(code) => format!("exited with code {code}"),
        What::Signal(Some(n)) => format!("was killed by signal {n}"),
        What::Signal(None) => "was killed by a signal".to_string(),
        What::Event(_) => "went on".to_string(),
    }
}

/// What made push effect `e`, a second one for the same delivery: the
/// consumer called again because an earlier call's answer never came.
fn called_again(f: &Facts, e: &Placed) -> String {
    let calls: Vec<&Line> = f
        .lines
        .iter()
        .filter(|l| l.pid == e.row.pid)
        .filter(|l| matches!(l.what, What::Event(WireEvent::Push { .. })))
        .collect();
    let unanswered = calls
        .iter()
        .filter(|l| {
            matches!(
                l.what,
                What::Event(WireEvent::Push {
                    call: CallEvent::Timeout | CallEvent::Failed,
                    ..
                })
            )
        })
        .count();
    let from = calls.first().map_or(0, |l| l.at_us);
    let to = calls.last().map_or(from, |l| l.at_us);
    let why = if f.consumer == ConsumerPolicy::IdempotencyKey {
        "with the same key, which the gateway no longer knew (a restart, or a key older than key_ttl)"
    } else {
        "without a key the gateway could recognise (the gateway had applied the earlier call)"
    };
    format!(
        "a call again by {} (pid {}) for the same delivery after {unanswered} call(s) got no answer, {why}{}",
        e.worker,
        e.row.pid,
        during(f, from, to)
    )
}

/// What made effect `e` (not the first): its delivery, and what came before.
fn cause(f: &Facts, e: &Placed) -> String {
    if e.again {
        return called_again(f, e);
    }
    let Some(d) = e.delivery.and_then(|n| f.line(n)) else {
        return format!(
            "no delivery in the history to pid {} (the history and the effect store disagree)",
            e.row.pid
        );
    };
    let redelivered = matches!(
        d.ledger_event(),
        Some(Event::Delivered {
            redelivered: true,
            ..
        })
    );
    // A copy of its own: a delivery the broker did not flag as a redelivery
    // (over SMTP, any delivery: the inbox flags what it saw before). The
    // m-th copy is taken to be the m-th attempt's: the two hops' stamps
    // cannot be compared, their orders can.
    let all = f.deliveries();
    let copies: Vec<&Line> = all
        .iter()
        .filter(|(_, again)| f.transport == Transport::Smtp || !again)
        .map(|(l, _)| *l)
        .collect();
    let attempts: Vec<&Line> = f.attempts().collect();
    if let Some(m) = copies
        .iter()
        .position(|l| l.number == d.number)
        .map(|i| i + 1)
    {
        if m >= 2 && attempts.len() >= m {
            return second_attempt(f, &attempts[..m]);
        }
    }
    let at = all.iter().position(|(l, _)| l.number == d.number);
    let before = at.and_then(|i| i.checked_sub(1)).map(|i| all[i].0);
    match (f.transport, before) {
        (Transport::Amqp, Some(prev)) if redelivered => {
            match release(f, prev, |e| matches!(e, Event::Acked(_))) {
                Some(l) if l.ends_abnormally() => format!(
                    "a redelivery after {} {}{}",
                    who(prev),
                    ending(l),
                    during(f, prev.at_us, l.at_us)
                ),
                Some(l) => format!(
                    "a redelivery although {} had acked it (the ack never reached the broker){}",
                    who(prev),
                    during(f, l.at_us, d.at_us)
                ),
                None => format!(
                    "a redelivery after {} let it go unacked{}",
                    who(prev),
                    during(f, prev.at_us, d.at_us)
                ),
            }
        }
        (Transport::Smtp, Some(prev)) => {
            // The inbox commits, then reports the delivery: its commit
            // time is the row's.
            let committed = f
                .rows
                .iter()
                .find(|p| p.delivery == Some(prev.number))
                .map_or(prev.at_us as i64, |p| p.at_us);
            format!(
                "the relay delivering it again: it never learned that the inbox had committed it at {} ms{}",
                super::ms(committed),
                during(f, committed.max(0) as u64, d.at_us)
            )
        }
        (_, _) if redelivered => format!(
            "a redelivery to {} with no earlier delivery in the history{}",
            who(d),
            during(f, d.at_us, d.at_us)
        ),
        _ => format!(
            "a second delivery to {}, not flagged as a redelivery, from a single attempt{}",
            who(d),
            during(f, d.at_us, d.at_us)
        ),
    }
}

/// "a second attempt after the first was in doubt during fault #0 confirm-lost".
fn second_attempt(f: &Facts, attempts: &[&Line]) -> String {
    let (k, last) = (attempts.len(), attempts[attempts.len() - 1]);
    let prev = attempts[k - 2];
    let why = f
        .lines
        .iter()
        .filter(|l| l.number > prev.number && l.number < last.number)
        .find(|l| {
            matches!(l.ledger_event(), Some(Event::InDoubt(_) | Event::Nacked(_)))
                || (l.pid == prev.pid && l.ends_abnormally())
        });
    let (what, at) = match why {
        Some(l) => match l.ledger_event() {
            Some(Event::InDoubt(_)) => ("was in doubt".to_string(), l.at_us),
            Some(Event::Nacked(_)) => ("was nacked".to_string(), l.at_us),
            _ => (format!("was cut short: {} {}", who(l), ending(l)), l.at_us),
        },
        None => ("had no outcome yet".to_string(), last.at_us),
    };
    format!(
        "{} {} attempt after the {} {what}{}",
        if k == 2 { "a" } else { "the" },
        ordinal(k),
        ordinal(k - 1),
        during(f, prev.at_us, at)
    )
}

/// Where a lost message's trail ends.
fn lost(f: &Facts) -> String {
    let attempts: Vec<&Line> = f.attempts().collect();
    let Some(last_attempt) = attempts.last() else {
        return "never sent (no attempt in the history: the producers stopped first)".to_string();
    };
    let deliveries = f.deliveries();
    let Some(&(d, _)) = deliveries.last() else {
        let confirmed = f
            .lines
            .iter()
            .find(|l| matches!(l.ledger_event(), Some(Event::Confirmed(_))));
        if let (Some(c), Some((line, why))) = (confirmed, &f.relay_bounce) {
            return format!(
                "confirmed to {} but never delivered: the relay bounced it after its 250 (\"{why}\", relay/log/postfix.log:{line}) and returned it to the sender",
                who(c)
            );
        }
        if let Some(c) = confirmed {
            return format!(
                "confirmed to {} but never delivered: the broker lost it after its confirm{}",
                who(c),
                after(f, c.at_us)
            );
        }
        let n = attempts.len();
        let outcome = f.lines.iter().rev().find_map(|l| match l.ledger_event() {
            Some(Event::InDoubt(_)) => Some(("in doubt", l.at_us)),
            Some(Event::Nacked(_)) => Some(("nacked", l.at_us)),
            _ => None,
        });
        return match outcome {
            Some((what, at)) => format!(
                "its last of {n} attempt(s) was {what}{} and it never arrived",
                during(f, last_attempt.at_us.min(at), at)
            ),
            None if f.consumer == ConsumerPolicy::AutoAck && !f.receivers_ended.is_empty() => {
                let ended: Vec<String> = f
                    .receivers_ended
                    .iter()
                    .map(|l| format!("{} {}", who(l), ending(l)))
                    .collect();
                format!(
                    "sent with no confirm to wait for and never reported delivered: with auto-ack the broker forgets what it sends, and it may have been in flight to a consumer that ended before reading it ({})",
                    ended.join("; ")
                )
            }
            None => format!(
                "{n} attempt(s) with no outcome and no delivery{}",
                during(f, last_attempt.at_us, last_attempt.at_us)
            ),
        };
    };
    match release(f, d, |e| matches!(e, Event::Acked(_))) {
        Some(l) if l.ends_abnormally() => format!(
            "delivered last to {}, which {} before its effect{}, {}",
            who(d),
            ending(l),
            during(f, d.at_us, l.at_us),
            if f.consumer == ConsumerPolicy::AutoAck {
                "and auto-ack had settled it with the broker already"
            } else {
                "unacked, yet it was not delivered again"
            }
        ),
        Some(k) => {
            let crash = f
                .lines
                .iter()
                .find(|l| l.pid == d.pid && l.number > k.number && l.ends_abnormally());
            match crash {
                Some(c) => format!(
                    "delivered last to {}, which acked it before its effect and then {}{}",
                    who(d),
                    ending(c),
                    during(f, d.at_us, c.at_us)
                ),
                None => format!(
                    "delivered last to {}, which acked it but never applied its effect",
                    who(d)
                ),
            }
        }
        None => format!(
            "delivered last to {}, which never applied its effect{}",
            who(d),
            during(f, d.at_us, d.at_us)
        ),
    }
}

/// " (faults from then on: #0 broker-kill)" for the fault occurrences that
/// started at or after `at_us`.
fn after(f: &Facts, at_us: u64) -> String {
    let Some(faults) = &f.faults else {
        return " (faults unknown)".to_string();
    };
    let ms = at_us / 1000;
    let later: Vec<String> = faults
        .iter()
        .filter(|r| r.fired && r.ended_ms.is_none_or(|e| e >= ms))
        .map(super::facts::fault_label)
        .collect();
    if later.is_empty() {
        String::new()
    } else {
        format!(" (faults from then on: {})", later.join(", "))
    }
}

fn ordinal(n: usize) -> String {
    const WORDS: [&str; 10] = [
        "zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
        "ninth",
    ];
    WORDS
        .get(n)
        .map_or_else(|| format!("{n}th"), |w| w.to_string())
}
