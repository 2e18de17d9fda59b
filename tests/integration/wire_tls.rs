//! TLS on the SMTP hops and the wire's faults, with the repository's own
//! scenarios against the real relay (Postfix with the lab CA's
//! certificates), dlab's inbox (STARTTLS through rustls) and the real
//! broker's TLS listener: STARTTLS on and mutual hides every message from
//! the eavesdropper while each side's own account (Postfix's log, its
//! `Received:` lines, the inbox's handshakes) says TLS; a stripped offer
//! delays a client that requires TLS and exposes one that does not; a man
//! in the middle is refused by clients that verify and reads everything
//! from those that do not; an expired certificate is refused and nothing
//! is lost. A fault that reads the protocol in clear is refused on a TLS
//! link, at its line and column. The wire matrix (`dlab matrix --wire`)
//! runs every transport with TLS off, on and mutual and judges what the
//! eavesdropper read, with each handshake timed from the tap.

use crate::support::{dlab, run, scenarios, show, temp_dir, text};
use dlab::report::eavesdrop::EavesdropLink;
use dlab::report::{RunResult, SmtpTlsReport};
use dlab::scenario;

fn shipped(name: &str) -> RunResult {
    let plan = scenario::load(&scenarios().join(format!("{name}.toml")), &[]).unwrap();
    run(&plan)
}

fn link<'a>(r: &'a RunResult, name: &str) -> &'a EavesdropLink {
    let e = r.eavesdropper.as_ref().expect("an eavesdropper section");
    e.links.iter().find(|l| l.link == name).expect("the link")
}

fn tls(r: &RunResult) -> &SmtpTlsReport {
    let smtp = r.smtp.as_ref().expect("an SMTP section");
    smtp.tls.as_ref().expect("a TLS part")
}

fn count(r: &[dlab::report::ReasonCount], starts: &str) -> u64 {
    r.iter()
        .filter(|c| c.reason.starts_with(starts))
        .map(|c| c.count)
        .sum()
}

#[test]
fn starttls_on_and_mutual_hide_every_message_and_each_side_says_tls() {
    for (name, n) in [
        ("eavesdrop-smtp-starttls", 200),
        ("eavesdrop-smtp-mutual", 200),
    ] {
        let r = shipped(name);
        assert_eq!((r.counts.lost, r.counts.unique), (0, n), "{name}");
        for l in ["producers", "consumers"] {
            let l = link(&r, l);
            assert_eq!((l.message_ids_read, l.bodies_read), (0, 0), "{name}: {l:?}");
            assert!(
                l.tls_connections >= 1 && l.tls_bytes > n * 128,
                "{name}: {l:?}"
            );
        }
        let t = tls(&r);
        // Postfix's own log: TLS from the sender and to the inbox.
        let trust_in = if name.ends_with("mutual") {
            "Trusted TLSv1."
        } else {
            "Anonymous TLSv1."
        };
        assert!(count(&t.relay_in, trust_in) >= 1, "{name}: {t:?}");
        assert!(count(&t.relay_out, "Verified TLSv1.") >= n, "{name}: {t:?}");
        // Handshakes, each side's own count (the relay reuses connections).
        assert!(t.relay_out_handshakes >= 1, "{name}: {t:?}");
        assert_eq!(t.relay_out_handshakes, t.inbox_handshakes, "{name}");
        // The relay's Received: lines and the inbox's own count.
        assert_eq!(t.received_using_tls, n, "{name}: {t:?}");
        assert_eq!(
            (t.inbox_over_tls, t.inbox_in_clear),
            (n, 0),
            "{name}: {t:?}"
        );
        let client = if name.ends_with("mutual") {
            "CN=relay"
        } else {
            "no client certificate"
        };
        assert_eq!(
            count(&t.inbox_clients, client),
            t.inbox_handshakes,
            "{name}"
        );
    }
}

#[test]
fn a_stripped_starttls_delays_a_client_that_requires_tls_and_exposes_one_that_does_not() {
    let r = shipped("starttls-strip-required");
    assert_eq!((r.counts.lost, r.counts.unique), (0, 300));
    for l in ["producers", "consumers"] {
        let l = link(&r, l);
        assert_eq!(l.message_ids_read, 0, "nothing in clear: {l:?}");
    }
    let stripped: u64 = r
        .fault_timeline
        .iter()
        .filter_map(|f| f.effect.map(|e| e.starttls_stripped))
        .sum();
    assert!(stripped >= 2, "{:?}", r.fault_timeline);
    let t = tls(&r);
    assert!(count(&t.relay_refused, "TLS is required") >= 1, "{t:?}");
    assert_eq!(t.inbox_in_clear, 0, "{t:?}");

    let r = shipped("starttls-strip-opportunistic");
    assert_eq!((r.counts.lost, r.counts.unique), (0, 300));
    for l in ["producers", "consumers"] {
        let l = link(&r, l);
        assert!(l.message_ids_read > 0, "read in clear: {l:?}");
    }
    assert!(tls(&r).inbox_in_clear > 0, "{:?}", tls(&r));
}

#[test]
fn a_man_in_the_middle_is_refused_by_verifying_clients_and_reads_everything_otherwise() {
    let r = shipped("mitm-smtp-verified");
    assert_eq!((r.counts.lost, r.counts.unique), (0, 300));
    for l in ["producers", "consumers"] {
        assert_eq!(link(&r, l).message_ids_read, 0, "{:?}", link(&r, l));
    }
    let refused: u64 = r
        .fault_timeline
        .iter()
        .filter_map(|f| f.effect.map(|e| e.impostor_refused))
        .sum();
    assert!(
        refused >= 1,
        "the sender refused it: {:?}",
        r.fault_timeline
    );

    let r = shipped("mitm-smtp-unverified");
    assert_eq!((r.counts.lost, r.counts.unique), (0, 300));
    let read = link(&r, "producers").message_ids_read + link(&r, "consumers").message_ids_read;
    assert!(read > 0, "the man in the middle read the messages");
    let t = tls(&r);
    assert!(count(&t.relay_out, "Untrusted TLSv1.") >= 1, "{t:?}");
}

#[test]
fn an_expired_broker_certificate_is_refused_and_nothing_is_lost() {
    let r = shipped("certificate-expired-amqps");
    assert_eq!(r.counts.lost, 0, "{:?}", r.counts);
    let e = r.fault_timeline[0].effect.expect("the proxy's account");
    assert!(e.impostor_refused >= 1 && e.intercepted == 0, "{e:?}");
    assert_eq!(link(&r, "producers").message_ids_read, 0);
}

#[test]
fn what_the_wire_cannot_have_is_refused_at_its_line_and_column() {
    let home = temp_dir("wire-refused");
    for (toml, says) in [
        (
            "guarantee = \"at-least-once\"\ntls = \"on\"\n[[faults]]\n  kind = \"confirm-lost\"\nat = \"1s\"\n",
            "s.toml:4:3: `faults[0].kind`: reads a protocol point in clear",
        ),
        (
            "transport = \"smtp\"\nguarantee = \"at-least-once\"\n[[faults]]\nkind = \"starttls-strip\"\nat = \"1s\"\nduration = \"1s\"\n",
            "s.toml:4:1: `faults[0].kind`: acts on TLS, and this scenario has none",
        ),
        (
            "transport = \"smtp\"\nguarantee = \"at-least-once\"\nstarttls = \"opportunistic\"\n",
            "s.toml:3:1: `starttls`: says what the SMTP clients do about TLS",
        ),
        (
            "guarantee = \"at-least-once\"\n[expect]\nmax_lost = 0\nmax_ids_read = 0\n",
            "s.toml:4:1: `expect.max_ids_read`: counts what the eavesdropper read",
        ),
    ] {
        let file = home.join("s.toml");
        std::fs::write(&file, toml).unwrap();
        let out = dlab(&home).arg("validate").arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        let err = text(&out.stderr);
        assert!(err.contains(says), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    // The wire matrix's clear cells must read every message: no more than
    // the tap keeps whole.
    let out = dlab(&home)
        .args(["matrix", "--wire", "--messages", "30000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("expected at most 20000 with --wire"));
    assert!(!home.join("nodes").exists(), "nothing was started");
}

#[test]
fn push_over_https_hides_every_call_and_the_gateway_names_its_clients() {
    let file = scenarios().join("eavesdrop-push-https.toml");
    for mode in ["on", "mutual"] {
        let set = [scenario::Override::parse(&format!("tls={mode}")).unwrap()];
        let r = run(&scenario::load(&file, &set).unwrap());
        assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0), "{mode}");
        for name in ["producers", "consumers", "push"] {
            let l = link(&r, name);
            assert_eq!((l.message_ids_read, l.bodies_read), (0, 0), "{mode}: {l:?}");
            assert!(
                l.tls_connections >= 1 && l.clear_bytes == 0,
                "{mode}: {l:?}"
            );
        }
        let g = &r.push.as_ref().expect("a push section").gateway;
        assert!(
            g.tls.versions.get("TLSv1.3").is_some_and(|n| *n >= 1),
            "{mode}: {g:?}"
        );
        let client = if mode == "mutual" {
            "CN=consumer"
        } else {
            "no client certificate"
        };
        assert!(g.tls.clients.contains_key(client), "{mode}: {g:?}");
        assert_eq!(g.requests, 300, "{mode}: every call over HTTPS: {g:?}");
    }
}

#[test]
fn the_wire_matrix_reads_every_id_in_clear_and_none_under_tls_on_every_transport() {
    let home = temp_dir("wire-matrix");
    let json = home.join("wire.json");
    let _guard = crate::support::exclusive();
    let mut cmd = dlab(&home);
    cmd.args(["matrix", "--wire", "--messages", "100", "-q"]);
    let (stdout, v) = crate::support::succeeds_with_json(cmd, &json);
    assert!(stdout.contains("transport \\ tls"), "{stdout}");
    let cells = v.as_array().unwrap();
    assert_eq!(cells.len(), 9, "three transports by off, on, mutual");
    for c in cells {
        let name = c["scenario"].as_str().unwrap();
        let r: RunResult = serde_json::from_value(c.clone()).unwrap();
        assert_eq!(r.counts.lost, 0, "{name}");
        assert!(r.expectations_held, "{name}: {:?}", r.expectations);
        let links = &r.eavesdropper.as_ref().expect("tapped").links;
        let most = links.iter().map(|l| l.message_ids_read).max().unwrap();
        let timed = links.iter().map(|l| l.handshakes_timed).sum::<u64>();
        if name.ends_with("-off") {
            assert_eq!(most, 100, "{name}: every ID in clear on some link");
            assert_eq!(timed, 0, "{name}");
        } else {
            assert_eq!(most, 0, "{name}: {links:?}");
            assert!(links.iter().all(|l| l.credentials.is_empty()), "{name}");
            assert!(timed >= 1, "{name}: {links:?}");
            let l = links.iter().find(|l| l.handshakes_timed > 0).unwrap();
            assert!(l.handshake_p50_us > 0 && l.handshake_p50_us <= l.handshake_max_us);
        }
    }
    let amqp_off = cells.iter().find(|c| c["scenario"] == "wire-amqp-tls-off");
    let links = &amqp_off.unwrap()["eavesdropper"]["links"];
    let read_secret = links.as_array().unwrap().iter().any(|l| {
        l["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["secret_read"] == true)
    });
    assert!(read_secret, "AMQP PLAIN's password in clear: {links}");
}
