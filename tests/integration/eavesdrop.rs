//! The lab CA and the eavesdropper: certificates dlab makes verify the way
//! a handshake verifies them (and one it did not sign, or an expired one,
//! does not); a passive tap in the fault proxy reads every message ID,
//! body and credential of a plain run against the real broker and the real
//! relay, and nothing inside a real TLS session.

use crate::support::{dlab, plan_from, run, show, temp_dir, text};
use dlab::eavesdrop::{self, Clues};
use dlab::proxy::{Protocol, Proxy};
use dlab::report::eavesdrop::EavesdropLink;
use dlab::report::RunResult;
use dlab::tls::{self, LabCa, Usage, Validity};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[test]
fn dlab_certs_shows_the_lab_ca_and_what_it_signed_and_refuses_what_it_did_not() {
    let dir = temp_dir("certs");
    let out = dlab(&temp_dir("home"))
        .args(["certs", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let listing = text(&out.stdout);
    for (file, says) in [
        ("ca.pem", "the lab's root"),
        ("server.pem", "verifies against the lab CA as localhost"),
        ("producer.pem", "verifies against the lab CA as a client"),
        ("consumer.pem", "verifies against the lab CA as a client"),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.contains(file) && l.contains(says)),
            "{file}: {listing}"
        );
    }
    assert!(listing.contains("names localhost, 127.0.0.1"), "{listing}");
    // An expired certificate of the same CA, and one another CA signed.
    let ca = LabCa::open(&dir).unwrap();
    ca.issue(
        "expired",
        "dlab server",
        Usage::Server,
        &[],
        Validity::Expired,
    )
    .unwrap();
    let other = tls::standard(&temp_dir("other-ca")).unwrap();
    std::fs::copy(other.dir().join("server.pem"), dir.join("foreign.pem")).unwrap();
    let out = dlab(&temp_dir("home"))
        .args(["certs", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let listing = text(&out.stdout);
    let line = |f: &str| {
        listing
            .lines()
            .find(|l| l.contains(f))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("expired.pem").contains("does NOT verify")
            && line("expired.pem").contains("(NOT now)"),
        "{listing}"
    );
    assert!(line("foreign.pem").contains("does NOT verify"), "{listing}");
    assert!(!line("server.pem").contains("NOT"), "{listing}");
}

/// An echo server, plain or TLS (with `mutual`, it requires a client
/// certificate of the lab CA).
async fn echo(dir: &std::path::Path, tls_on: bool, mutual: bool) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = tls_on.then(|| {
        let server = tls::Issued {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        let ca = dir.join("ca.pem");
        let config = tls::server_config(&server, mutual.then_some(ca.as_path())).unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(a) => {
                        if let Ok(t) = a.accept(s).await {
                            let (mut r, mut w) = tokio::io::split(t);
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                        }
                    }
                    None => {
                        let (mut r, mut w) = tokio::io::split(s);
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    }
                }
            });
        }
    });
    addr
}

const REQUEST: &[u8] = b"POST /notify HTTP/1.1\r\nAuthorization: Basic ZGxhYjpodW50ZXIy\r\n\r\n{\"message_id\":\"0badcafe-1\",\"text\":\"You have a new notification\"}\r\n{\"message_id\":\"0badcafe-2\",\"text\":\"You have a new notification\"}";

fn clues() -> Clues<'static> {
    Clues {
        run_id: "0badcafe",
        bodies: vec![b"You have a new notification".to_vec()],
    }
}

async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    s.write_all(REQUEST).await.unwrap();
    let mut back = vec![0u8; REQUEST.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, REQUEST, "the echo came back whole");
    s.shutdown().await.unwrap();
}

async fn settled(proxy: &Proxy) -> EavesdropLink {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let c = proxy.captured().expect("the tap is on");
        if c.bytes_seen >= 2 * REQUEST.len() as u64 || std::time::Instant::now() > deadline {
            return eavesdrop::read("push", Protocol::Http, &c, &clues());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_tap_reads_a_plain_stream_whole_and_nothing_inside_a_real_tls_session() {
    let dir = temp_dir("tap-tls");
    tls::standard(&dir).unwrap();

    // Plain: the request, its IDs, its body and its password in clear.
    let proxy = Proxy::start(echo(&dir, false, false).await, Protocol::Http, 1)
        .await
        .unwrap();
    proxy.tap(1 << 20);
    exchange(TcpStream::connect(proxy.addr()).await.unwrap()).await;
    let plain = settled(&proxy).await;
    assert_eq!(plain.message_ids_read, 2, "{plain:?}");
    assert_eq!(plain.bodies_read, 4, "two each way: {plain:?}");
    assert_eq!(plain.credentials.len(), 1, "{plain:?}");
    assert_eq!(plain.credentials[0].user, "dlab");
    assert!(plain.credentials[0].secret_read);
    assert_eq!((plain.tls_connections, plain.tls_bytes), (0, 0));

    // TLS (mutual): the same bytes inside a real handshake read nothing.
    let proxy = Proxy::start(echo(&dir, true, true).await, Protocol::Http, 1)
        .await
        .unwrap();
    proxy.tap(1 << 20);
    let id = tls::Issued {
        cert: dir.join("producer.pem"),
        key: dir.join("producer.key"),
    };
    let client = tls::client_config(&dir.join("ca.pem"), Some(&id)).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    exchange(connector.connect(name.clone(), tcp).await.unwrap()).await;
    let sealed = settled(&proxy).await;
    assert_eq!(sealed.tls_connections, 1, "{sealed:?}");
    assert_eq!(sealed.clear_bytes, 0, "{sealed:?}");
    assert!(sealed.tls_bytes > 2 * REQUEST.len() as u64, "{sealed:?}");
    assert_eq!(
        (sealed.message_ids_read, sealed.bodies_read),
        (0, 0),
        "{sealed:?}"
    );
    assert!(sealed.credentials.is_empty(), "{sealed:?}");

    // Mutual TLS without a client certificate: the server refuses it.
    let anonymous = tls::client_config(&dir.join("ca.pem"), None).unwrap();
    let tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    let refused = async {
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(anonymous))
            .connect(name, tcp)
            .await?;
        s.write_all(b"x").await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await
    };
    assert!(refused.await.is_err(), "no client certificate, no session");
}

fn link<'a>(r: &'a RunResult, name: &str) -> &'a EavesdropLink {
    let e = r.eavesdropper.as_ref().expect("an eavesdropper section");
    e.links
        .iter()
        .find(|l| l.link == name)
        .unwrap_or_else(|| panic!("no {name} link: {e:?}"))
}

#[test]
fn on_a_plain_amqp_run_the_eavesdropper_reads_every_message_and_the_password() {
    let r = run(&plan_from(
        "eavesdrop-amqp",
        "guarantee = \"at-least-once\"\nmessages = 300\nrate = 0\neavesdropper = true\n",
        &[],
    ));
    assert_eq!(r.counts.lost, 0);
    for name in ["producers", "consumers"] {
        let l = link(&r, name);
        assert_eq!(l.message_ids_read, 300, "{l:?}");
        assert!(l.bodies_read >= 300, "{l:?}");
        assert_eq!((l.tls_connections, l.tls_bytes), (0, 0), "{l:?}");
        let c = l
            .credentials
            .iter()
            .find(|c| c.how == "AMQP PLAIN")
            .unwrap_or_else(|| panic!("{l:?}"));
        assert!(c.secret_read && !c.user.is_empty(), "{c:?}");
        assert_eq!(l.bytes_read, l.bytes_seen, "nothing past the budget: {l:?}");
    }
    let json = serde_json::to_string(&r).unwrap();
    assert!(
        !json.contains("\\u0000guest\\u0000"),
        "no password in the report"
    );
}

#[test]
fn on_a_plain_push_run_the_eavesdropper_reads_every_call_to_the_gateway() {
    let r = run(&plan_from(
        "eavesdrop-push",
        "guarantee = \"exactly-once\"\neffect = \"push\"\nmessages = 200\nrate = 0\neavesdropper = true\n",
        &[],
    ));
    assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0));
    let l = link(&r, "push");
    assert_eq!(l.message_ids_read, 200, "{l:?}");
    // Each call's JSON carries the notification's text.
    let calls = r.push.as_ref().expect("a push section").calls.attempts;
    assert!(
        l.bodies_read >= calls && calls >= 200,
        "{l:?} vs {calls} calls"
    );
    assert!(l.credentials.is_empty(), "the gateway asks for none: {l:?}");
    assert_eq!(l.tls_connections, 0, "{l:?}");
}

#[test]
fn on_a_plain_smtp_run_the_eavesdropper_reads_every_message_on_both_hops() {
    let r = run(&plan_from(
        "eavesdrop-smtp",
        "transport = \"smtp\"\nguarantee = \"at-least-once\"\nmessages = 100\neavesdropper = true\n",
        &[],
    ));
    assert_eq!(r.counts.lost, 0);
    for name in ["producers", "consumers"] {
        let l = link(&r, name);
        assert_eq!(l.message_ids_read, 100, "{l:?}");
        assert!(l.bodies_read >= 100, "{l:?}");
        assert_eq!(l.tls_connections, 0, "{l:?}");
    }
}

#[test]
fn over_amqps_the_eavesdropper_reads_nothing_and_mutual_tls_still_delivers_everything() {
    for mode in ["on", "mutual"] {
        let r = run(&plan_from(
            &format!("eavesdrop-amqps-{mode}"),
            &format!(
                "guarantee = \"at-least-once\"\nmessages = 300\nrate = 100\neavesdropper = true\ntls = \"{mode}\"\n"
            ),
            &[],
        ));
        assert_eq!(
            (r.counts.lost, r.counts.unique),
            (0, 300),
            "{mode}: {:?}",
            r.counts
        );
        for name in ["producers", "consumers"] {
            let l = link(&r, name);
            assert!(
                l.tls_connections >= 1 && l.tls_connections == l.connections,
                "{mode}: {l:?}"
            );
            assert_eq!(l.clear_bytes, 0, "{mode}: every byte in TLS records: {l:?}");
            assert!(
                l.tls_bytes > 300 * 128,
                "{mode}: the messages crossed: {l:?}"
            );
            assert_eq!((l.message_ids_read, l.bodies_read), (0, 0), "{mode}: {l:?}");
            assert!(l.credentials.is_empty(), "{mode}: {l:?}");
        }
        // The broker's own account, read while the workers were connected.
        for role in ["producer", "consumer"] {
            let c = r
                .broker_tls
                .iter()
                .find(|c| c.client.starts_with(&format!("dlab {role}")))
                .unwrap_or_else(|| panic!("{mode}: no {role} in {:?}", r.broker_tls));
            assert!(c.tls && c.protocol.starts_with("tlsv1."), "{mode}: {c:?}");
            assert_eq!(c.auth_mechanism, "PLAIN", "{c:?}");
            match mode {
                "mutual" => assert!(c.peer_cert_subject.contains(&format!("CN={role}")), "{c:?}"),
                _ => assert_eq!(c.peer_cert_subject, "", "{c:?}"),
            }
        }
    }
}
