//! ESMTP hop by hop through the real private Postfix relay: an inbox
//! without 8BITMIME gets quoted-printable (and the relay's log shows each
//! downgrade), an internationalised address through a hop without SMTPUTF8
//! bounces and comes back to the sender's mailbox with Postfix's reason, an
//! inbox that speaks only HELO gets no extensions and, as a 7-bit hop,
//! clears the eighth bit of text Postfix could not convert. Each count is
//! set beside a second reading of Postfix's own log.

use crate::support::{dlab, plan, run, show, temp_dir, text};
use dlab::report::{RunResult, SmtpReport};

fn smtp(r: &RunResult) -> &SmtpReport {
    r.smtp.as_ref().expect("an SMTP section")
}

/// Lines of the relay's log that contain every one of `words`.
fn log_lines(r: &RunResult, words: &[&str]) -> u64 {
    let log = &smtp(r).relay_log.as_ref().expect("a private relay").log;
    let text = std::fs::read_to_string(log).unwrap();
    text.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .count() as u64
}

#[test]
fn an_inbox_without_8bitmime_gets_quoted_printable_text_intact_and_postfix_logs_each_downgrade() {
    let r = run(&plan("esmtp-8bitmime-downgrade.toml", &["messages=200"]));
    let (c, s) = (&r.counts, smtp(&r));
    assert!(r.expectations_held, "{:?}", r.expectations);
    assert_eq!((c.lost, c.duplicates, c.effects), (0, 0, 200), "{c:?}");
    assert!(!s.inbox_advertised.iter().any(|x| x == "8BITMIME"));
    assert!(s.relay_advertised.iter().any(|x| x == "8BITMIME"));
    let e = &s.esmtp;
    assert_eq!(e.body, "8bitmime");
    // The relay could not pass BODY=8BITMIME on, so it converted.
    assert_eq!(e.declared_8bitmime, 0);
    assert_eq!(e.downgraded, 200, "{e:?}");
    assert_eq!((s.text.intact, s.text.mangled), (200, 0));
    let log = s.relay_log.as_ref().unwrap();
    assert_eq!(log.downgraded, 200, "{log:?}");
    // A second reading of the log: the smtp client's header check saw
    // quoted-printable go out 200 times, the cleanup 8bit come in as often
    // (and a bounce or two of its own would show here too).
    assert_eq!(
        log_lines(
            &r,
            &["/smtp[", "Content-Transfer-Encoding: quoted-printable"]
        ),
        200
    );
    assert_eq!(
        log_lines(&r, &["/cleanup[", "Content-Transfer-Encoding: 8bit"]),
        200
    );
    assert_eq!(log.bounced, 0);

    // The same text to an inbox that announces 8BITMIME: passed on as it
    // is, declared, nothing converted.
    let r = run(&plan(
        "esmtp-8bitmime-downgrade.toml",
        &[
            "messages=100",
            r#"esmtp.inbox=["PIPELINING","8BITMIME","SMTPUTF8","SIZE"]"#,
        ],
    ));
    let (e, log) = (&smtp(&r).esmtp, smtp(&r).relay_log.as_ref().unwrap());
    assert_eq!(
        (e.declared_8bitmime, e.downgraded, log.downgraded),
        (100, 0, 0)
    );
    assert_eq!(smtp(&r).text.intact, 100);
}

#[test]
fn a_utf8_address_through_a_hop_without_smtputf8_bounces_and_returns_to_the_sender() {
    let r = run(&plan("esmtp-no-smtputf8-bounce.toml", &[]));
    let (c, s) = (&r.counts, smtp(&r));
    // Every message was accepted by the relay, then lost: on purpose, as
    // the scenario's expectations say.
    assert_eq!(s.sender.accepted, 100);
    assert_eq!(
        (c.lost, c.lost_after_confirm, c.effects),
        (100, 100, 0),
        "{c:?}"
    );
    assert!(r.expectations_held, "{:?}", r.expectations);
    let log = s.relay_log.as_ref().unwrap();
    assert_eq!(log.bounced, 100, "{log:?}");
    assert_eq!(log.bounce_reasons.len(), 1, "{log:?}");
    assert!(
        log.bounce_reasons[0]
            .reason
            .starts_with("SMTPUTF8 is required, but was not offered by host"),
        "{log:?}"
    );
    // A second reading: the run's bounces, not those of its returns.
    assert_eq!(
        log_lines(
            &r,
            &[
                "to=<téléphone@",
                "dsn=5.6.7, status=bounced (SMTPUTF8 is required"
            ]
        ),
        100
    );
    // The relay returned each one, and the sender's side received each.
    assert_eq!(log.returns_sent, 100);
    let e = &s.esmtp;
    assert_eq!(e.returns_received, 100, "{e:?}");
    assert_eq!(e.return_reasons.len(), 1, "{e:?}");
    assert!(
        e.return_reasons[0]
            .reason
            .starts_with("5.6.7 X-Postfix; SMTPUTF8 is required"),
        "{e:?}"
    );
    assert_eq!(c.unexpected, 0, "a return is no notification");
    // `dlab explain` tells a bounced message's end from Postfix's log.
    let dir = std::path::Path::new(&r.effect_store).parent().unwrap();
    let out = dlab(dir)
        .args(["explain", dir.to_str().unwrap(), &format!("{}-3", r.run_id)])
        .output()
        .unwrap();
    let story = text(&out.stdout);
    assert!(
        story.contains("the relay bounced it after its 250 (\"SMTPUTF8 is required")
            && story.contains("relay/log/postfix.log:"),
        "{}",
        show(&out)
    );

    // With SMTPUTF8 at the inbox the same messages arrive, and say so.
    let r = run(&plan(
        "esmtp-no-smtputf8-bounce.toml",
        &[
            "messages=60",
            r#"esmtp.inbox=["PIPELINING","8BITMIME","SMTPUTF8","SIZE"]"#,
            "expect.min_lost=0",
            "expect.min_lost_after_confirm=0",
        ],
    ));
    let e = &smtp(&r).esmtp;
    assert_eq!((r.counts.lost, r.counts.effects), (0, 60));
    assert_eq!((e.smtputf8, e.returns_received), (60, 0));
    assert_eq!(smtp(&r).relay_log.as_ref().unwrap().bounced, 0);
}

#[test]
fn an_inbox_that_speaks_only_helo_gets_no_extensions_and_clears_the_eighth_bit() {
    let r = run(&plan("esmtp-helo-only.toml", &["messages=150"]));
    let (c, s) = (&r.counts, smtp(&r));
    assert!(r.expectations_held, "{:?}", r.expectations);
    assert_eq!((c.lost, c.effects), (0, 150), "{c:?}");
    assert!(s.inbox_advertised.is_empty(), "{:?}", s.inbox_advertised);
    assert_eq!(s.esmtp.inbox, "HELO only (no extensions)");
    // Not MIME: Postfix had nothing to convert and sent 8-bit text to a
    // hop that never offered 8BITMIME; the hop cleared the eighth bit.
    assert_eq!(s.esmtp.eight_bit_on_7bit_hop, 150);
    assert_eq!((s.text.intact, s.text.mangled), (0, 150));
    assert_eq!(s.relay_log.as_ref().unwrap().downgraded, 0);
    // Postfix fell back to HELO and delivered every message.
    let log = std::fs::read_to_string(&s.relay_log.as_ref().unwrap().log).unwrap();
    assert!(!log.contains("status=bounced"), "{log}");

    // The same hop with MIME 8-bit text: Postfix converts it, and it survives.
    let r = run(&plan(
        "esmtp-helo-only.toml",
        &["messages=100", r#"esmtp.body="8bitmime""#],
    ));
    let s = smtp(&r);
    assert_eq!(
        (s.esmtp.downgraded, s.esmtp.eight_bit_on_7bit_hop),
        (100, 0)
    );
    assert_eq!(s.relay_log.as_ref().unwrap().downgraded, 100);
    assert_eq!((s.text.intact, s.text.mangled), (100, 0));
}

#[test]
fn esmtp_settings_that_cannot_be_are_refused_with_their_place() {
    let home = temp_dir("esmtp-bad");
    let head = "transport = \"smtp\"\nguarantee = \"at-least-once\"\n[esmtp]\n";
    let cases = [
        (
            format!("{head}helo_only = true\ninbox = [\"SIZE\"]\n"),
            "s.toml:5:1",
            "announces no extensions",
        ),
        (
            format!("{head}inbox = [\"SMTPUTF8\"]\n"),
            "s.toml:4:1",
            "must announce 8BITMIME too",
        ),
        (
            format!("{head}inbox = [\"CHUNKING\"]\n"),
            "s.toml:4:10",
            "expected one of `PIPELINING`, `8BITMIME`, `SMTPUTF8`, `SIZE`",
        ),
        (
            format!("{head}body = \"7bit\"\n"),
            "s.toml:4:8",
            "`8bitmime`",
        ),
        (
            "guarantee = \"at-least-once\"\n[esmtp]\nbody = \"8bitmime\"\n".to_string(),
            "s.toml:2:",
            "a setting of the smtp transport",
        ),
    ];
    for (toml, place, what) in cases {
        let file = home.join("s.toml");
        std::fs::write(&file, &toml).unwrap();
        let out = dlab(&home).arg("validate").arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{toml}: {}", show(&out));
        let err = text(&out.stderr);
        assert!(err.contains(place) && err.contains(what), "{toml}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}
