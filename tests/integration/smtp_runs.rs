//! Whole SMTP runs through a real private Postfix relay: store-and-forward
//! across an inbox outage, RFC 1047 duplicates counted by the ledger and by
//! Postfix's own log, the idempotent inbox, the sender that never retries,
//! and a relay killed with SIGKILL mid-run.

use crate::support::{plan, run};
use dlab::report::RunResult;

/// Replies the proxy dropped after a final "." (each firing drops exactly one).
fn replies_dropped(r: &RunResult) -> u64 {
    r.fault_timeline
        .iter()
        .filter_map(|f| f.effect.map(|e| e.frames_dropped))
        .sum()
}

#[test]
fn store_and_forward_loses_nothing_and_the_relay_queue_grows_then_drains() {
    let r = run(&plan("smtp-store-and-forward.toml", &[]));
    let c = &r.counts;
    assert_eq!(r.transport, dlab::scenario::Transport::Smtp);
    assert_eq!((c.lost, c.unique), (0, c.intended), "{c:?}");
    assert!(r.drain.completed, "{:?}", r.drain);
    let s = r.smtp.as_ref().expect("an SMTP section");
    let fault = &r.fault_timeline[0];
    let (from, to) = (fault.started_ms.unwrap(), fault.ended_ms.unwrap());
    // While the inbox is down the relay holds what it accepted: its queue
    // grows; the last reading, after the drain, is empty.
    let during: Vec<u64> = s
        .relay_queue
        .iter()
        .filter(|q| q.at_ms >= from && q.at_ms <= to)
        .map(|q| q.depth)
        .collect();
    assert!(
        during.windows(2).any(|w| w[1] > w[0]) && s.relay_queue_peak >= 100,
        "the queue did not grow during the outage: {during:?}"
    );
    assert_eq!(s.relay_queue.last().map(|q| q.depth), Some(0));
    // Nothing arrived while the phone was off (but what was committing as
    // it went down); everything did afterwards.
    assert!(
        fault.during.unwrap().delivered <= crate::support::COMMITTED_AS_FAULT_BEGAN,
        "{fault:?}"
    );
    assert!(
        r.latency.end_to_end.max_us >= 3_000_000,
        "{:?}",
        r.latency.end_to_end
    );
    assert_eq!(s.text.intact, c.effects);
    assert_eq!(s.text.mangled, 0);
    for x in ["PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE"] {
        assert!(
            s.relay_advertised.iter().any(|a| a == x),
            "relay: {:?}",
            s.relay_advertised
        );
        assert!(
            s.inbox_advertised.iter().any(|a| a == x),
            "inbox: {:?}",
            s.inbox_advertised
        );
    }
    // A session closed in the instant its message committed would make the
    // relay send it again: what the ledger counts, Postfix's log counts too.
    let log = s.relay_log.as_ref().unwrap();
    assert_eq!((log.messages, log.duplicates), (c.intended, c.duplicates));
}

#[test]
fn a_lost_reply_after_the_dot_with_retry_duplicates_and_postfix_log_agrees() {
    let r = run(&plan("smtp-rfc1047-retry.toml", &[]));
    let c = &r.counts;
    assert_eq!(c.lost, 0, "{c:?}");
    // RFC 1047: each dropped reply leaves its message in doubt; the sender
    // sends it again and the relay, which already owns it, delivers it once
    // more: one retry and one duplicate per dropped reply (a message whose
    // reply is lost twice is in doubt once and shown three times).
    let dropped = replies_dropped(&r);
    assert!(dropped >= 1, "{:?}", r.fault_timeline);
    assert_eq!(
        (c.attempts - c.intended, c.duplicates),
        (dropped, dropped),
        "{c:?}"
    );
    assert!((1..=dropped).contains(&c.in_doubt), "{c:?}");
    // The independent count: deliveries in Postfix's own log, per Message-ID.
    let log = r.smtp.as_ref().unwrap().relay_log.as_ref().unwrap();
    assert_eq!(log.duplicates, c.duplicates, "{log:?} vs {c:?}");
    assert_eq!(log.messages, c.unique);
    assert!(r.expectations_held);
}

#[test]
fn the_idempotent_inbox_shows_each_notification_once_though_the_relay_delivers_twice() {
    let r = run(&plan("smtp-rfc1047-idempotent.toml", &[]));
    let c = &r.counts;
    assert_eq!((c.lost, c.duplicates), (0, 0), "{c:?}");
    let log = r.smtp.as_ref().unwrap().relay_log.as_ref().unwrap();
    let dropped = replies_dropped(&r);
    assert!(dropped >= 1, "{:?}", r.fault_timeline);
    assert_eq!(log.duplicates, dropped, "{log:?}");
    assert_eq!(c.suppressed, log.duplicates, "{c:?} vs {log:?}");
    assert!(r.verdicts.exactly_once);
}

#[test]
fn send_once_loses_nothing_the_relay_accepted_but_reports_it_in_doubt() {
    let r = run(&plan("smtp-rfc1047-send-once.toml", &[]));
    let c = &r.counts;
    let s = r.smtp.as_ref().unwrap();
    let dropped = replies_dropped(&r);
    assert!(dropped >= 1, "{:?}", r.fault_timeline);
    assert!(
        s.sender.in_doubt == dropped && s.sender.given_up == s.sender.in_doubt,
        "{:?}",
        s.sender
    );
    assert_eq!((c.lost, c.duplicates), (0, 0), "{c:?}");
    assert!(c.confirmed < c.intended, "{c:?}");
}

#[test]
fn an_inbox_that_hangs_up_after_the_dot_gets_the_message_again() {
    let r = run(&plan("smtp-inbox-hangup.toml", &[]));
    let c = &r.counts;
    assert_eq!(c.lost, 0, "{c:?}");
    assert!(c.duplicates >= 1, "{c:?}");
    let log = r.smtp.as_ref().unwrap().relay_log.as_ref().unwrap();
    assert_eq!(log.maybe_twice, log.duplicates, "{log:?}");
    assert_eq!(log.duplicates, c.duplicates, "{log:?} vs {c:?}");
}

#[test]
fn a_relay_killed_mid_run_loses_nothing_it_acknowledged() {
    let r = run(&plan("smtp-relay-kill.toml", &[]));
    let c = &r.counts;
    let fault = r
        .fault_timeline
        .iter()
        .find(|f| f.description.starts_with("relay-kill"))
        .unwrap();
    assert!(fault.fired && fault.note.is_none(), "{fault:?}");
    let s = r.smtp.as_ref().unwrap();
    // With the inbox down, the relay held acknowledged messages when it died.
    let killed_at = fault.started_ms.unwrap();
    let held = s
        .relay_queue
        .iter()
        .filter(|q| q.at_ms <= killed_at)
        .map(|q| q.depth)
        .max()
        .unwrap_or(0);
    assert!(held > 0, "no backlog at the kill: {:?}", s.relay_queue);
    // Postfix's own log: killed (no orderly stop), then started again.
    let log = std::fs::read_to_string(&s.relay_log.as_ref().unwrap().log).unwrap();
    let events: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("daemon started") || l.contains("stopping the Postfix"))
        .collect();
    assert!(
        events.len() >= 2
            && events[0].contains("daemon started")
            && events[1].contains("daemon started"),
        "{events:?}"
    );
    assert_eq!(c.lost_after_confirm, 0, "{c:?}");
    assert_eq!(c.lost, 0, "{c:?}");
    assert!(r.drain.completed);
}

#[test]
fn the_html_report_of_an_smtp_run_charts_the_relay_queue() {
    let r = run(&plan(
        "smtp-store-and-forward.toml",
        &["messages=400", "rate=200"],
    ));
    let page = dlab::report::html::render("smtp", std::slice::from_ref(&r), None);
    let chart = page
        .split("id=\"relay-queue-0\"")
        .nth(1)
        .expect("a relay queue chart")
        .split("</svg>")
        .next()
        .unwrap();
    // The depth line: a polyline in its own colour (RGB 120, 60, 180 in
    // src/report/html_smtp.rs; the axes' ticks are black polylines).
    assert!(
        chart
            .split("<polyline")
            .skip(1)
            .any(|p| p.contains("stroke=\"#783CB4\"")),
        "{chart}"
    );
    assert!(page.contains("SMTPUTF8"));
    assert!(page.contains("may be sent more than once"));
}
