//! Promises the README makes that no other test ran end to end: the slow
//! and the tempfailing inbox, a graceful broker restart, the bandwidth,
//! slicer, limit-data and down faults of the proxy, and a producer crash
//! under fire-and-forget. Each asserts the outcome with exact or bounded
//! counts, and the fault's own record.

use crate::support::{plan, plan_from, run};
use dlab::report::FaultRecord;
use dlab::report::RunResult;

/// The one record of the fault whose description starts with `kind`,
/// required to have fired, ended and gone without a problem.
fn record<'a>(r: &'a RunResult, kind: &str) -> &'a FaultRecord {
    let found: Vec<&FaultRecord> = r
        .fault_timeline
        .iter()
        .filter(|f| f.description.starts_with(kind))
        .collect();
    assert_eq!(found.len(), 1, "one {kind}: {:#?}", r.fault_timeline);
    let f = found[0];
    assert!(
        f.fired && f.started_ms.is_some() && f.ended_ms >= f.started_ms && f.note.is_none(),
        "{f:#?}"
    );
    f
}

fn window_ms(f: &FaultRecord) -> u64 {
    f.ended_ms.unwrap() - f.started_ms.unwrap()
}

#[test]
fn an_inbox_slower_than_the_relay_waits_gets_messages_again_as_postfix_logs() {
    let r = run(&plan("smtp-inbox-slow.toml", &[]));
    let c = &r.counts;
    let f = record(&r, "inbox-slow");
    assert!(window_ms(f) >= 2000, "{f:?}");
    assert_eq!((c.lost, c.unique), (0, 600), "{c:?}");
    // The relay gave up waiting for the late 250 of messages the phone had
    // shown, and sent them again: at-least-once's duplicates.
    assert!(c.duplicates >= 1, "{c:?}");
    let s = r.smtp.as_ref().unwrap();
    assert!(s.inbox_misbehaved >= 1, "{s:?}");
    // Postfix's own log counts the same duplicates, each a timeout after the
    // final "." that it marks "message may be sent more than once".
    let log = s.relay_log.as_ref().unwrap();
    assert_eq!(log.duplicates, c.duplicates, "{log:?} vs {c:?}");
    assert_eq!(log.maybe_twice, log.duplicates, "{log:?}");
    assert_eq!(log.messages, c.unique, "{log:?}");
    // The sender saw nothing of it: every message accepted once.
    assert_eq!(
        (s.sender.accepted, s.sender.in_doubt),
        (600, 0),
        "{:?}",
        s.sender
    );
    assert!(r.expectations_held);
}

#[test]
fn an_inbox_answering_451_has_no_effect_and_the_relay_retries_once_each() {
    let r = run(&plan("smtp-inbox-tempfail.toml", &[]));
    let c = &r.counts;
    let f = record(&r, "inbox-tempfail");
    assert_eq!((c.lost, c.duplicates, c.unique), (0, 0, 1000), "{c:?}");
    let s = r.smtp.as_ref().unwrap();
    // The inbox refused messages during the fault: a 451 records no effect.
    assert!(s.inbox_misbehaved >= 1, "{s:?}");
    assert!(
        f.during.unwrap().delivered <= crate::support::COMMITTED_AS_FAULT_BEGAN,
        "{f:?}"
    );
    // Refused messages stayed on the relay's disk queue during the fault.
    let (from, to) = (f.started_ms.unwrap(), f.ended_ms.unwrap());
    let held = s
        .relay_queue
        .iter()
        .filter(|q| q.at_ms >= from && q.at_ms <= to)
        .map(|q| q.depth)
        .max()
        .unwrap_or(0);
    assert!(held >= 1, "no queue during the fault: {:?}", s.relay_queue);
    assert_eq!(s.relay_queue.last().map(|q| q.depth), Some(0));
    // Postfix delivered each message once: a 451 is a deferral, not a
    // "may be sent more than once".
    let log = s.relay_log.as_ref().unwrap();
    assert_eq!(
        (log.messages, log.deliveries, log.maybe_twice),
        (1000, 1000, 0),
        "{log:?}"
    );
    assert!(r.expectations_held);
}

const BROKER_RESTART: &str = r#"
description = "A graceful stop and start of the broker mid-run, with a backlog in the queue."
guarantee = "at-least-once"
messages = 2000
rate = 1000
consumers = 1
prefetch = 1
effect_time = "2ms"
durable = true
persistent = true
confirm_timeout = "2s"
seed = 1

[[faults]]
kind = "broker-restart"
at = "1s"

[expect]
max_lost = 0
"#;

#[test]
fn a_graceful_broker_restart_loses_nothing_durable_and_persistent() {
    let r = run(&plan_from("broker-restart", BROKER_RESTART, &[]));
    let c = &r.counts;
    let f = record(&r, "broker-restart");
    // The restart took time (a stop and a start of the VM) and every worker
    // lost its connection to it: the timeline shows them reconnecting.
    assert!(window_ms(f) >= 500, "{f:?}");
    let at = f.started_ms.unwrap();
    for event in [
        "consumer 0 lost its broker connection",
        "consumer 0 connected again",
    ] {
        assert!(
            r.timeline.iter().any(|t| t.event == event && t.at_ms >= at),
            "{event}: {:#?}",
            r.timeline
        );
    }
    // The slow consumer left a backlog of confirmed messages in the queue
    // when the broker stopped (confirms minus effects before the restart,
    // per 100 ms bucket); the durable queue kept every one of them.
    let k = (at / r.series.bucket_ms) as usize;
    let sum = |v: &[u64]| v.iter().take(k).sum::<u64>();
    let backlog = sum(&r.series.confirmed).saturating_sub(sum(&r.series.effects));
    assert!(backlog >= 100, "backlog at the restart: {backlog}");
    assert_eq!((c.lost, c.lost_after_confirm), (0, 0), "{c:?}");
    assert_eq!(c.unique, 2000, "{c:?}");
}

const PROXY_FAULTS: &str = r#"
description = "Bandwidth, slicer and limit-data, one after another."
guarantee = "at-least-once"
messages = 7000
rate = 1000
consumers = 2
seed = 1

[[faults]]
kind = "bandwidth"
bytes_per_second = 20000
link = "producers"
direction = "to-server"
at = "1s"
duration = "1s"

[[faults]]
kind = "slicer"
bytes = 7
at = "3s"
duration = "1s"

[[faults]]
kind = "limit-data"
bytes = 5000
link = "consumers"
direction = "to-client"
at = "5s"
duration = "1s"

[expect]
max_lost = 0
"#;

#[test]
fn bandwidth_slicer_and_limit_data_do_what_their_records_say_and_lose_nothing() {
    let r = run(&plan_from("proxy-faults", PROXY_FAULTS, &[]));
    let c = &r.counts;
    assert_eq!((c.lost, c.unique), (0, 7000), "{c:?}");

    // Bandwidth: the producer's bytes to the broker were held to 20,000 B/s.
    // Each limited write carries at most a tenth of a second of the budget
    // and is followed by a pause of its length at that rate, so the window
    // passes at most rate x (window + a tick) plus one such write. At 1000
    // messages/s the producer offers several times that.
    let bw = record(&r, "bandwidth");
    let e = bw.effect.unwrap();
    let bound = 20_000 * (window_ms(bw) + 200) / 1000 + 2_000;
    assert!(
        e.bytes_delayed > 0 && e.bytes_delayed <= bound,
        "bandwidth delayed {} bytes, bound {bound}: {bw:?}",
        e.bytes_delayed
    );
    assert_eq!(e.cut, 0, "{bw:?}");

    // Slicer: bytes keep moving (in 7-byte writes: the record has no piece
    // count), nothing is cut and the run loses nothing.
    let sl = record(&r, "slicer");
    let e = sl.effect.unwrap();
    assert!(e.bytes_forwarded > 0, "{sl:?}");
    assert_eq!((e.cut, e.refused), (0, 0), "{sl:?}");
    assert!(sl.during.unwrap().delivered > 0, "{sl:?}");

    // Limit-data: each consumer connection is closed after 5000 more bytes;
    // the restarted consumers' new connections meet the same limit. No
    // more connections are closed than were open or opened meanwhile.
    let ld = record(&r, "limit-data");
    let e = ld.effect.unwrap();
    assert!(
        e.cut >= 1 && e.cut <= e.accepted + u64::from(r.settings.consumers),
        "{ld:?}"
    );
    assert!(
        r.timeline
            .iter()
            .any(|t| t.event.contains("consumer") && t.event.contains("restarted")),
        "{:#?}",
        r.timeline
    );
}

const DOWN: &str = r#"
description = "The consumers' link refuses new connections for 1.5 s; their open connections are cut as it starts."
guarantee = "at-least-once"
messages = 2500
rate = 1000
consumers = 2
seed = 1

[[faults]]
kind = "down"
link = "consumers"
at = "1s"
duration = "1500ms"

[[faults]]
kind = "cut"
link = "consumers"
at = "1s"

[expect]
max_lost = 0
"#;

#[test]
fn a_down_link_refuses_every_new_connection_during_it() {
    let r = run(&plan_from("down", DOWN, &[]));
    let c = &r.counts;
    let down = record(&r, "down");
    assert!(window_ms(down) >= 1500, "{down:?}");
    let e = down.effect.unwrap();
    // The cut consumers came back during the outage and were refused; not
    // one connection got through.
    assert!(e.refused >= 1, "{down:?}");
    assert_eq!(e.accepted, 0, "{down:?}");
    assert_eq!((c.lost, c.unique), (0, 2500), "{c:?}");
    // Messages due during the outage waited for it.
    assert!(
        r.latency.end_to_end.max_us >= 1_000_000,
        "{:?}",
        r.latency.end_to_end
    );
}

#[test]
fn a_producer_crash_under_fire_and_forget_skips_what_it_sent_and_never_duplicates() {
    let r = run(&plan(
        "producer-crash-at-least-once.toml",
        &[
            "guarantee=at-most-once",
            "rate=2000",
            "expect.min_duplicates=0",
            "expect.max_lost=2000",
        ],
    ));
    let c = &r.counts;
    assert_eq!(r.producer, "fire-and-forget");
    assert!(
        r.timeline
            .iter()
            .any(|t| t.event.contains("producer 0 aborted")),
        "{:#?}",
        r.timeline
    );
    // Restarted, it read its send log: the 700 it had sent are settled and
    // are not sent again; every message was attempted exactly once.
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("restarted: 700 message(s) settled by the send log")),
        "{:?}",
        r.notes
    );
    assert_eq!((c.attempts, c.published), (2000, 2000), "{c:?}");
    assert_eq!(c.duplicates, 0, "{c:?}");
    // What it lost was still in its own buffers when it aborted: only
    // messages it had sent before the crash, never one after the restart.
    let conn = rusqlite::Connection::open(&r.effect_store).unwrap();
    let mut shown = std::collections::HashSet::new();
    let mut stmt = conn.prepare("SELECT message_id FROM effects").unwrap();
    for id in stmt.query_map([], |row| row.get::<_, String>(0)).unwrap() {
        shown.insert(dlab::message_id::parse(&r.run_id, &id.unwrap()).unwrap());
    }
    let missing: Vec<u64> = (0..2000).filter(|s| !shown.contains(s)).collect();
    assert_eq!(missing.len() as u64, c.lost);
    // Sequence numbers start at 0: the 700th publish is message 699.
    assert!(missing.iter().all(|&s| s < 700), "lost {missing:?}");
}
