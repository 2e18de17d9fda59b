//! Every preset against every crash point on a real broker, counted.

use crate::support::{crashed, plan, run};

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
    assert!(crashed(&r), "{:?}", r.timeline);
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
    assert!(crashed(&r));
    assert_eq!(r.counts.duplicates, 0);
    assert_eq!(
        r.counts.redelivered, 0,
        "auto-ack: the broker never redelivers"
    );
}

#[test]
fn at_least_once_loses_nothing_when_a_consumer_crashes_before_the_effect() {
    let r = run(&plan("at-least-once-crash-before-effect.toml", &[]));
    assert!(crashed(&r));
    assert_eq!(r.counts.lost, 0);
    assert!(r.counts.redelivered >= 1, "the unacked delivery came back");
}

#[test]
fn at_least_once_duplicates_when_a_consumer_crashes_between_effect_and_ack() {
    let r = run(&plan("at-least-once-crash-after-effect.toml", &[]));
    assert!(crashed(&r));
    assert_eq!(r.counts.lost, 0);
    assert!(
        r.counts.duplicates >= 1,
        "duplicates {}",
        r.counts.duplicates
    );
    assert!(r.counts.redelivered >= r.counts.duplicates);
    assert!(r.verdicts.at_least_once && !r.verdicts.at_most_once && !r.verdicts.exactly_once);
    assert!(r.expectations_held);
}

#[test]
fn at_least_once_is_unharmed_by_a_crash_after_the_ack() {
    let r = run(&plan("at-least-once-crash-after-ack.toml", &[]));
    assert!(crashed(&r));
    assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0));
}

#[test]
fn exactly_once_holds_at_every_crash_point() {
    for name in [
        "exactly-once-crash-before-effect.toml",
        "exactly-once-crash-after-effect.toml",
        "exactly-once-crash-after-ack.toml",
    ] {
        let r = run(&plan(name, &[]));
        assert!(crashed(&r), "{name}: {:?}", r.timeline);
        assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0), "{name}");
        assert!(r.verdicts.exactly_once, "{name}");
    }
}

#[test]
fn exactly_once_suppresses_the_redelivery_of_a_message_already_shown() {
    let r = run(&plan("exactly-once-crash-after-effect.toml", &[]));
    assert!(
        r.counts.suppressed >= 1,
        "suppressed {}",
        r.counts.suppressed
    );
    assert_eq!(r.counts.duplicates, 0);
}

#[test]
fn exactly_once_holds_on_a_quorum_queue() {
    let r = run(&plan("exactly-once-quorum.toml", &["messages=1000"]));
    assert!(crashed(&r));
    assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0));
    assert_eq!(r.settings.queue_type, "quorum");
}

#[test]
fn acking_before_the_effect_loses_what_the_broker_had_confirmed() {
    let r = run(&plan("ack-before-effect-crash.toml", &[]));
    assert!(crashed(&r));
    assert!(r.counts.lost >= 1);
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
