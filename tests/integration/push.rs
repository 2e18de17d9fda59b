//! The push hop against the real gateway over real HTTP connections through
//! dlab's proxy: every shipped push scenario (every gateway and HTTP fault),
//! each run's effects recounted from the gateway's own access log and the
//! effect store with SQL; the proxy's response-lost point on its own; the
//! push rows of the matrix; scenarios that mix a push policy or fault with a
//! local effect, refused with their line and column.

use crate::support::{dlab, plan, run, show, temp_dir, text};
use dlab::push::access_log::{self, Outcome};
use dlab::report::RunResult;
use std::collections::HashMap;
use std::path::Path;

/// Recounts a push run from the gateway's access log and checks it against
/// the ledger, the gateway's own counters and the effect store (per message,
/// with SQL); returns the log's count.
fn recount(r: &RunResult) -> access_log::Recount {
    let p = r.push.as_ref().expect("a push run has a push section");
    let log = access_log::recount(Path::new(&p.access_log_path)).unwrap();
    assert_eq!(log.malformed, 0, "every access-log line reads");
    assert_eq!(
        log.count(Outcome::Applied),
        r.counts.effects,
        "applied lines vs the ledger's effects"
    );
    assert_eq!(
        log.distinct_applied(),
        r.counts.unique,
        "distinct applied IDs"
    );
    assert_eq!(log.duplicates(), r.counts.duplicates, "duplicates");
    assert_eq!(p.log_agrees(), Some(true));
    // The gateway's counters are its log's.
    let g = &p.gateway;
    assert_eq!(g.requests, log.requests);
    assert_eq!(g.applied, log.count(Outcome::Applied));
    assert_eq!(g.replayed, log.count(Outcome::Replayed));
    assert_eq!(g.unavailable, log.count(Outcome::Unavailable));
    assert_eq!(g.throttled, log.count(Outcome::Throttled));
    // Per message, the log and the effect store agree.
    let conn = rusqlite::Connection::open(&r.effect_store).unwrap();
    let mut stmt = conn
        .prepare("SELECT message_id, count(*) FROM effects GROUP BY message_id")
        .unwrap();
    let rows: HashMap<String, u64> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows, log.applied_ids,
        "the log's applied IDs are the store's"
    );
    // A consumer's request is logged once it reached the gateway; one
    // refused at the door (gateway down) never did.
    assert!(
        p.calls.attempts >= log.requests,
        "{:?} vs {}",
        p.calls,
        log.requests
    );
    // Every answer the consumers read, the gateway logged.
    assert!(p.calls.shown + p.calls.replayed <= g.status_2xx);
    assert_eq!(log.count(Outcome::BadRequest), 0);
    log
}

fn push(r: &RunResult) -> &dlab::report::PushReport {
    r.push.as_ref().unwrap()
}

fn held(r: &RunResult) {
    assert!(
        r.expectations_held,
        "{}: {:?}\n{:?}",
        r.scenario, r.expectations, r.counts
    );
}

#[test]
fn a_lost_response_rings_twice_without_a_key_and_once_with_one() {
    // Ack after the call: the retry has no key.
    let r = run(&plan("push-response-lost-ack-after-call.toml", &[]));
    held(&r);
    let log = recount(&r);
    assert!(r.counts.duplicates >= 1, "{:?}", r.counts);
    assert_eq!(r.counts.lost, 0);
    assert!(push(&r).calls.failed >= 1, "{:?}", push(&r).calls);
    assert_eq!(log.count(Outcome::Replayed), 0);
    let cut: u64 = r
        .fault_timeline
        .iter()
        .filter_map(|f| f.effect.as_ref())
        .map(|e| e.frames_dropped)
        .sum();
    assert!(
        cut >= 1,
        "the proxy dropped responses: {:?}",
        r.fault_timeline
    );
    // Every duplicate is a lost response: no more than the proxy dropped.
    assert!(
        r.counts.duplicates <= cut,
        "{} > {cut}",
        r.counts.duplicates
    );
    // `dlab check` re-folds the saved run: every row follows a call.
    let out = dlab(&temp_dir("push-check"))
        .arg("check")
        .arg(r.history.as_ref().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        text(&out.stdout).contains("accounts for every effect-store row"),
        "{}",
        show(&out)
    );

    // `dlab explain` tells a duplicate's story: a call again for the same
    // delivery after the first call's answer never came.
    let dir = Path::new(r.history.as_ref().unwrap()).parent().unwrap();
    let out = dlab(&temp_dir("push-explain"))
        .arg("explain")
        .arg(dir)
        .arg(&r.duplicated_ids[0])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let story = text(&out.stdout);
    assert!(
        story.contains("call to the gateway: the connection failed or closed before an answer")
            && story.contains("the second effect followed a call again by consumer"),
        "{story}"
    );

    // The local seen-table: the promise it claims is broken, on purpose.
    let r = run(&plan("push-response-lost-seen-table.toml", &[]));
    held(&r);
    recount(&r);
    assert!(r.counts.duplicates >= 1, "{:?}", r.counts);
    assert!(r.promise.is_none(), "the seen-table is no preset");
    assert!(!r.verdicts.exactly_once);

    // The idempotency key: the retry is replayed, no second effect.
    let r = run(&plan("push-response-lost-idempotency-key.toml", &[]));
    held(&r);
    let log = recount(&r);
    assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0));
    assert!(r.promise.as_ref().unwrap().held);
    assert!(log.count(Outcome::Replayed) >= 1);
    assert_eq!(push(&r).calls.replayed, log.count(Outcome::Replayed));

    // The push section in the JSON validates against the committed schema
    // (and a broken one does not), and the HTML sets the three accounts side
    // by side.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/run-result.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut json = serde_json::to_value(&r).unwrap();
    assert!(json["push"]["access_log"]["replayed"].as_u64().unwrap() >= 1);
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    json["push"]["calls"]["attempts"] = serde_json::json!("many");
    assert!(!validator.is_valid(&json));
    let html = dlab::report::html::render("push", std::slice::from_ref(&r), None);
    let p = push(&r);
    for needle in [
        "<th>consumers saw</th><th>gateway counted</th><th>access log says</th>".to_string(),
        format!(
            "<tr><td>replayed (key seen)</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            p.calls.replayed,
            p.gateway.replayed,
            log.count(Outcome::Replayed)
        ),
        format!(
            "the effect store holds {} rows (the same count)",
            r.counts.effects
        ),
    ] {
        assert!(html.contains(&needle), "{needle} in the HTML");
    }
}

#[test]
fn a_503_or_429_with_retry_after_is_waited_out() {
    let r = run(&plan("push-gateway-unavailable.toml", &[]));
    held(&r);
    let log = recount(&r);
    let c = &push(&r).calls;
    assert!(c.status_503 >= 1, "{c:?}");
    assert_eq!(c.status_503, log.count(Outcome::Unavailable));
    assert!(
        c.retry_after_waits >= 1 && c.retry_after_ms >= 1000,
        "{c:?}"
    );
    assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0));

    let r = run(&plan("push-gateway-throttled.toml", &[]));
    held(&r);
    let log = recount(&r);
    let c = &push(&r).calls;
    assert!(c.status_429 >= 1, "{c:?}");
    assert_eq!(c.status_429, log.count(Outcome::Throttled));
    assert!(c.retry_after_waits >= 1, "{c:?}");
    assert_eq!(r.counts.lost, 0);
}

#[test]
fn a_slow_gateway_times_the_client_out_after_the_phone_rang() {
    let r = run(&plan("push-gateway-slow-ack-after-call.toml", &[]));
    held(&r);
    recount(&r);
    assert!(push(&r).calls.timeouts >= 1, "{:?}", push(&r).calls);
    assert!(r.counts.duplicates >= 1);

    let r = run(&plan("push-gateway-slow-idempotency-key.toml", &[]));
    held(&r);
    let log = recount(&r);
    assert!(push(&r).calls.timeouts >= 1, "{:?}", push(&r).calls);
    assert!(log.count(Outcome::Replayed) >= 1);
    assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0));
}

#[test]
fn a_gateway_down_loses_calls_made_once_and_delays_calls_retried() {
    let r = run(&plan("push-gateway-down-at-most-once.toml", &[]));
    held(&r);
    recount(&r);
    let c = &push(&r).calls;
    assert!(r.counts.lost >= 1 && c.failed >= 1, "{:?} {c:?}", r.counts);
    assert_eq!(r.counts.duplicates, 0);
    // At most once: no retries, every failed call given up.
    assert_eq!(c.retries(), 0);
    assert!(c.gave_up >= r.counts.lost, "{c:?}");

    let r = run(&plan("push-gateway-down-at-least-once.toml", &[]));
    held(&r);
    recount(&r);
    assert!(push(&r).calls.failed >= 1);
    assert!(push(&r).calls.backoff_waits >= 1);
    assert_eq!(r.counts.lost, 0);
}

#[test]
fn a_gateway_restart_forgets_keys_kept_in_memory_and_not_on_disk() {
    let r = run(&plan("push-gateway-restart-keys-memory.toml", &[]));
    held(&r);
    recount(&r);
    assert_eq!(push(&r).gateway.restarts, 1);
    assert!(r.counts.duplicates >= 1, "{:?}", r.counts);

    let r = run(&plan("push-gateway-restart-keys-disk.toml", &[]));
    held(&r);
    let log = recount(&r);
    assert_eq!(push(&r).gateway.restarts, 1);
    assert_eq!(push(&r).key_store, "disk");
    assert!(log.count(Outcome::Replayed) >= 1);
    assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0));
    let conn = rusqlite::Connection::open(&r.effect_store).unwrap();
    let keys: u64 = conn
        .query_row("SELECT count(*) FROM push_keys", [], |row| row.get(0))
        .unwrap();
    assert_eq!(keys, r.counts.unique, "one key on disk per message shown");
}

#[test]
fn a_key_forgotten_too_early_is_applied_again() {
    let r = run(&plan("push-key-ttl-too-short.toml", &[]));
    held(&r);
    recount(&r);
    assert!(push(&r).gateway.keys_expired >= 1, "{:?}", push(&r).gateway);
    assert!(r.counts.duplicates >= 1);
}

#[test]
fn a_consumer_crash_between_the_call_and_the_ack() {
    let r = run(&plan("push-consumer-crash-after-call-seen-table.toml", &[]));
    held(&r);
    recount(&r);
    assert_eq!(r.crashes.len(), 1);
    assert!(r.counts.duplicates >= 1);

    let r = run(&plan(
        "push-consumer-crash-after-call-idempotency-key.toml",
        &[],
    ));
    held(&r);
    let log = recount(&r);
    assert_eq!(r.crashes.len(), 1);
    assert!(log.count(Outcome::Replayed) >= 1);
    assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0));
}

#[test]
fn the_proxy_loses_one_response_per_arming_after_the_gateway_applied_it() {
    use dlab::proxy::{Protocol, Proxy};
    use dlab::push::gateway::{Gateway, GatewayConfig};
    let dir = temp_dir("gateway");
    let store = dir.join("effects.sqlite");
    dlab::effects::EffectStore::create(&store).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let gateway = Gateway::start(GatewayConfig {
            addr: ([127, 0, 0, 1], 0).into(),
            store: Some(store.clone()),
            key_ttl: std::time::Duration::from_secs(60),
            key_store: Default::default(),
            access_log: Some(dir.join("access.log")),
            tls: None,
        })
        .await
        .unwrap();
        let proxy = Proxy::start(gateway.addr(), Protocol::Http, 1)
            .await
            .unwrap();
        // curl, a client of its own, through the proxy.
        let url = format!("http://{}/v1/push", proxy.addr());
        let call = |id: &str| {
            std::process::Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
                .args(["-H", "content-type: application/json"])
                .args(["-H", &format!("idempotency-key: {id}")])
                .args([
                    "--data",
                    &format!("{{\"message_id\":\"{id}\",\"text\":\"hi\"}}"),
                ])
                .arg(&url)
                .output()
                .expect("curl runs")
        };
        let out = tokio::task::block_in_place(|| call("m1"));
        assert_eq!(text(&out.stdout), "200", "{}", show(&out));
        proxy.arm_reply_lost(true);
        let out = tokio::task::block_in_place(|| call("m2"));
        assert_ne!(
            text(&out.stdout),
            "200",
            "the response never came: {}",
            show(&out)
        );
        assert!(!proxy.reply_lost_armed(), "one response per arming");
        assert_eq!(proxy.stats().frames_dropped, 1);
        // The gateway applied it; the same key again is a replay.
        let out = tokio::task::block_in_place(|| call("m2"));
        assert_eq!(text(&out.stdout), "200", "{}", show(&out));
        let stats = gateway.stats();
        assert_eq!((stats.applied, stats.replayed), (2, 1));
        gateway.flush_log();
    });
    let log = access_log::recount(&dir.join("access.log")).unwrap();
    assert_eq!(log.count(Outcome::Applied), 2);
    assert_eq!(log.count(Outcome::Replayed), 1);
}

#[test]
fn a_push_policy_or_fault_with_a_local_effect_is_refused_with_its_place() {
    let home = temp_dir("push-bad");
    let cases = [
        (
            "guarantee = \"exactly-once\"\nconsumer = \"idempotency-key\"\n",
            "s.toml:2:1",
            "expected `effect = \"push\"`",
        ),
        (
            "guarantee = \"exactly-once\"\neffect = \"push\"\nconsumer = \"idempotent\"\n",
            "s.toml:3:1",
            "expected idempotency-key",
        ),
        (
            "guarantee = \"at-least-once\"\n\n[[faults]]\nkind = \"gateway-down\"\nat = \"1s\"\nduration = \"1s\"\n",
            "s.toml:4:1",
            "needs the push gateway",
        ),
        (
            "transport = \"smtp\"\nguarantee = \"at-least-once\"\neffect = \"push\"\n",
            "s.toml:3:1",
            "a setting of the amqp transport",
        ),
    ];
    for (toml, place, what) in cases {
        let file = home.join("s.toml");
        std::fs::write(&file, toml).unwrap();
        let out = dlab(&home).arg("validate").arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{toml}: {}", show(&out));
        let err = text(&out.stderr);
        assert!(err.contains(place) && err.contains(what), "{toml}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn the_push_rows_of_the_matrix_hold_every_expectation() {
    let home = temp_dir("push-matrix");
    let json = home.join("m.json");
    let _guard = crate::support::exclusive();
    let out = dlab(&home)
        .args(["matrix", "--transport", "push", "--messages", "400", "-q"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let cells: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(cells.len(), 8 * 3 - 2, "{}", show(&out));
    for c in &cells {
        assert_eq!(c["expectations_held"], true, "{c}");
        let p = &c["push"];
        assert!(p.is_object(), "every push cell has its push section: {c}");
        assert_eq!(
            p["access_log"]["applied"], p["effect_rows"],
            "the access log agrees with the store: {c}"
        );
    }
    let cell = |name: &str| {
        cells
            .iter()
            .find(|c| c["scenario"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let seen = cell("matrix-exactly-once-push-seen-table");
    assert!(
        seen["counts"]["duplicates"].as_u64().unwrap() >= 1,
        "{seen}"
    );
    assert_eq!(seen["consumer"], "seen-table");
    let key = cell("matrix-exactly-once-push-response-lost");
    assert_eq!(key["counts"]["duplicates"], 0, "{key}");
    assert!(
        key["push"]["gateway"]["replayed"].as_u64().unwrap() >= 1,
        "{key}"
    );
    let text = text(&out.stdout);
    assert!(
        text.contains("push: response lost, local seen-table"),
        "{text}"
    );
}
