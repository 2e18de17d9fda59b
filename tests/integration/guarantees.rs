//! Every preset against every crash point on a real broker, counted; and
//! each crash checked as a mechanism: the worker says where it aborted and
//! on which message, and that message's effect rows, acks and redeliveries
//! must be what that point means.

use crate::support::{consumer_crashes, effect_rows, history, plan, run};
use dlab::ledger::Event;
use dlab::report::{CrashRecord, RunResult};
use dlab::worker::wire::WireEvent;

/// The run's one consumer crash: reported by the worker itself at `point`,
/// at its delivery 250 (what the shipped crash scenarios schedule).
fn the_crash<'a>(r: &'a RunResult, point: &str) -> &'a CrashRecord {
    let c = consumer_crashes(r);
    assert_eq!(c.len(), 1, "one consumer crash: {:?}", r.crashes);
    assert_eq!(c[0].point, point, "{:?}", c[0]);
    assert_eq!(c[0].count, 250, "at its 250th delivery: {:?}", c[0]);
    assert!(c[0].seq.is_some(), "the message it aborted on: {:?}", c[0]);
    c[0]
}

/// What happened to the message a consumer aborted on: effect rows by the
/// aborted process and by others, its acks by the aborted process, and its
/// deliveries to others.
struct Fate {
    shown_by_crashed: usize,
    shown_by_others: usize,
    acked_by_crashed: bool,
    delivered_to_others: usize,
}

fn fate(r: &RunResult, c: &CrashRecord) -> Fate {
    let seq = c.seq.unwrap();
    let rows = effect_rows(r);
    let h = history(r);
    Fate {
        shown_by_crashed: rows
            .iter()
            .filter(|&&(s, p)| s == seq && p == c.pid)
            .count(),
        shown_by_others: rows
            .iter()
            .filter(|&&(s, p)| s == seq && p != c.pid)
            .count(),
        acked_by_crashed: h
            .iter()
            .any(|e| e.pid == c.pid && e.event == Some(WireEvent::Ledger(Event::Acked(seq)))),
        delivered_to_others: h
            .iter()
            .filter(|e| {
                e.pid != c.pid
                    && matches!(e.event, Some(WireEvent::Ledger(Event::Delivered { seq: s, .. })) if s == seq)
            })
            .count(),
    }
}

#[test]
fn every_preset_delivers_everything_exactly_once_without_faults() {
    for name in [
        "at-most-once.toml",
        "at-least-once.toml",
        "exactly-once.toml",
    ] {
        let r = run(&plan(name, &["messages=1000"]));
        assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0), "{name}");
        assert_eq!(r.counts.effects, 1000, "{name}");
        assert!(r.verdicts.exactly_once, "{name}");
        assert!(
            r.latency.end_to_end.samples > 0,
            "{name}: end-to-end latency was measured"
        );
    }
}

#[test]
fn at_least_once_confirms_every_message() {
    let r = run(&plan("at-least-once.toml", &["messages=1000"]));
    assert_eq!(r.counts.confirmed, 1000);
    assert_eq!(r.latency.publish_to_confirm.samples, r.counts.confirmed);
}

#[test]
fn at_most_once_loses_messages_when_a_consumer_crashes_before_the_effect() {
    let r = run(&plan("at-most-once-crash-before-effect.toml", &[]));
    let c = the_crash(&r, "before-effect");
    let f = fate(&r, c);
    assert_eq!(
        (f.shown_by_crashed, f.shown_by_others, f.delivered_to_others),
        (0, 0, 0),
        "auto-ack: the message it died on was never shown, and never came back"
    );
    assert!(r.counts.lost >= 1, "lost {}", r.counts.lost);
    assert_eq!(r.counts.duplicates, 0);
    assert!(r.verdicts.at_most_once && !r.verdicts.at_least_once);
    assert_eq!(
        r.counts.lost_after_confirm, 0,
        "fire-and-forget never has a confirm"
    );
    assert!(r.expectations_held);
}

#[test]
fn at_most_once_never_duplicates_when_a_consumer_crashes_after_the_effect() {
    let r = run(&plan("at-most-once-crash-after-effect.toml", &[]));
    let c = the_crash(&r, "after-effect-before-ack");
    let f = fate(&r, c);
    assert_eq!(
        (f.shown_by_crashed, f.shown_by_others),
        (1, 0),
        "shown once, by the process that died"
    );
    assert_eq!(r.counts.duplicates, 0);
    assert_eq!(
        r.counts.redelivered, 0,
        "auto-ack: the broker never redelivers"
    );
}

#[test]
fn at_least_once_loses_nothing_when_a_consumer_crashes_before_the_effect() {
    let r = run(&plan("at-least-once-crash-before-effect.toml", &[]));
    let c = the_crash(&r, "before-effect");
    let f = fate(&r, c);
    assert_eq!(f.shown_by_crashed, 0, "it died before the effect");
    assert!(!f.acked_by_crashed, "nor was it acked");
    assert_eq!(f.shown_by_others, 1, "another consumer showed it once");
    assert!(f.delivered_to_others >= 1, "the broker redelivered it");
    assert_eq!(r.counts.lost, 0);
    assert_eq!(
        r.counts.duplicates, 0,
        "nothing of the dead batch was committed"
    );
    assert!(r.counts.redelivered >= 1, "the unacked delivery came back");
}

#[test]
fn at_least_once_duplicates_when_a_consumer_crashes_between_effect_and_ack() {
    let r = run(&plan("at-least-once-crash-after-effect.toml", &[]));
    let c = the_crash(&r, "after-effect-before-ack");
    let f = fate(&r, c);
    assert_eq!(f.shown_by_crashed, 1, "committed before the abort");
    assert!(!f.acked_by_crashed, "and never acked");
    assert_eq!(
        f.shown_by_others, 1,
        "so it was redelivered and shown again"
    );
    assert_eq!(r.counts.lost, 0);
    // The batch committed through the crash's delivery, none of it acked:
    // between one and a prefetch's worth of messages are shown twice.
    assert!(
        (1..=u64::from(r.settings.prefetch)).contains(&r.counts.duplicates),
        "duplicates {} within 1..={}",
        r.counts.duplicates,
        r.settings.prefetch
    );
    assert!(r.counts.redelivered >= r.counts.duplicates);
    assert!(r.verdicts.at_least_once && !r.verdicts.at_most_once && !r.verdicts.exactly_once);
    assert!(r.expectations_held);
}

#[test]
fn at_least_once_is_unharmed_by_a_crash_after_the_ack() {
    let r = run(&plan("at-least-once-crash-after-ack.toml", &[]));
    let c = the_crash(&r, "after-ack");
    let f = fate(&r, c);
    assert_eq!(f.shown_by_crashed, 1, "shown by the process that died");
    assert!(f.acked_by_crashed, "and acked before it died");
    assert_eq!(
        (f.shown_by_others, f.delivered_to_others),
        (0, 0),
        "an acked message never comes back"
    );
    assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0));
}

#[test]
fn exactly_once_holds_at_every_crash_point() {
    for (name, point, by_crashed, by_others) in [
        (
            "exactly-once-crash-before-effect.toml",
            "before-effect",
            0,
            1,
        ),
        (
            "exactly-once-crash-after-effect.toml",
            "after-effect-before-ack",
            1,
            0,
        ),
        ("exactly-once-crash-after-ack.toml", "after-ack", 1, 0),
    ] {
        let r = run(&plan(name, &[]));
        let c = the_crash(&r, point);
        let f = fate(&r, c);
        assert_eq!(
            (f.shown_by_crashed, f.shown_by_others),
            (by_crashed, by_others),
            "{name}: who showed the message it died on"
        );
        assert_eq!(f.acked_by_crashed, point == "after-ack", "{name}");
        assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0), "{name}");
        assert!(r.verdicts.exactly_once, "{name}");
    }
}

#[test]
fn exactly_once_suppresses_the_redelivery_of_a_message_already_shown() {
    let r = run(&plan("exactly-once-crash-after-effect.toml", &[]));
    let c = the_crash(&r, "after-effect-before-ack");
    assert!(fate(&r, c).delivered_to_others >= 1, "it was redelivered");
    // Every message of the dead batch was committed and not acked: each
    // comes back and is recognised, between one and a prefetch of them.
    assert!(
        (1..=u64::from(r.settings.prefetch)).contains(&r.counts.suppressed),
        "suppressed {}",
        r.counts.suppressed
    );
    assert_eq!(r.counts.duplicates, 0);
}

#[test]
fn exactly_once_holds_on_a_quorum_queue() {
    let r = run(&plan("exactly-once-quorum.toml", &["messages=1000"]));
    the_crash(&r, "after-effect-before-ack");
    assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0));
    let b = r.broker_count.as_ref().expect("the broker's own count");
    assert_eq!(
        b.queue_type, "quorum",
        "the broker itself says the queue is a quorum queue"
    );
}

#[test]
fn acking_before_the_effect_loses_what_the_broker_had_confirmed() {
    let r = run(&plan("ack-before-effect-crash.toml", &[]));
    let c = the_crash(&r, "before-effect");
    let f = fate(&r, c);
    assert!(f.acked_by_crashed, "acked first");
    assert_eq!(
        (f.shown_by_crashed, f.shown_by_others, f.delivered_to_others),
        (0, 0, 0),
        "then died before the effect: nobody ever shows it"
    );
    assert!(r.counts.lost >= 1);
    assert!(
        r.counts.lost <= u64::from(r.settings.prefetch),
        "only the acked batch is lost: {}",
        r.counts.lost
    );
    assert_eq!(
        r.counts.lost, r.counts.lost_after_confirm,
        "every lost message had been confirmed"
    );
    assert_eq!(r.counts.duplicates, 0);
}

#[test]
fn several_producers_share_the_work_without_gaps_or_overlap() {
    let r = run(&plan(
        "exactly-once.toml",
        &["messages=999", "producers=3", "consumers=3"],
    ));
    assert_eq!(r.counts.published, 999);
    assert_eq!(r.counts.attempts, 999, "no fault, no retry");
    assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0));
}

#[test]
fn a_fixed_rate_is_kept() {
    let r = run(&plan("at-least-once.toml", &["messages=200", "rate=400"]));
    assert_eq!(r.counts.effects, 200);
    // 200 messages at 400/s cannot be done in much under half a second.
    assert!(r.duration_s >= 0.45, "took {}s", r.duration_s);
}
