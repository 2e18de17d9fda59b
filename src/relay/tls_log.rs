//! What the relay's own log says about TLS (`smtpd_tls_loglevel` and
//! `smtp_tls_loglevel` 1): one line per TLS connection its server side took
//! from the sender ("Anonymous TLS connection established from ...",
//! "Trusted ..." when the client's certificate verified) and per connection
//! its delivery agent made to the inbox ("Verified TLS connection
//! established to ..." when the certificate verified and named the host,
//! "Trusted" verified without the name, "Untrusted" not verified,
//! "Anonymous" no certificate); and the connections TLS stopped: no
//! STARTTLS where it was required, a certificate that did not verify, a
//! handshake that failed.
//!
//! With `smtp_tls_connection_reuse` the delivery agent hands TLS to
//! `tlsproxy`, which makes the handshake and logs it ("established"), while
//! the delivery agent logs each use of the connection: "established" for the
//! first message, "reused" for the next. So a delivery attempt is an `smtp`
//! line and a handshake a `tlsproxy` line (or an `smtp` "established" one
//! where no `tlsproxy` took part).

/// The relay log's account of TLS, each line reduced to its kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsLines {
    /// Connections from the sender: trust and version, e.g. "Anonymous TLSv1.3".
    pub inbound: Vec<String>,
    /// The delivery agent's TLS sessions to the next hop, one per delivery
    /// attempt (a new connection or one reused), likewise, e.g. "Verified
    /// TLSv1.3".
    pub outbound: Vec<String>,
    /// TLS handshakes made to the next hop.
    pub outbound_handshakes: u64,
    /// What stopped a connection or a delivery, in Postfix's words.
    pub refused: Vec<String>,
}

/// The TLS lines of a Postfix log.
pub fn read(log: &str) -> TlsLines {
    let mut out = TlsLines::default();
    let (mut by_proxy, mut by_agent) = (0, 0);
    for line in log.lines() {
        let tls = line
            .split_once(" TLS connection established ")
            .map(|(t, r)| (t, r, true))
            .or_else(|| {
                line.split_once(" TLS connection reused ")
                    .map(|(t, r)| (t, r, false))
            });
        if let Some((trust, rest, established)) = tls {
            let proxy = trust.contains("/tlsproxy[");
            let trust = trust.rsplit(' ').next().unwrap_or("?");
            let version = rest
                .split(": ")
                .nth(1)
                .and_then(|v| v.split_whitespace().next())
                .unwrap_or("?");
            let kind = format!("{trust} {version}");
            if rest.starts_with("from ") {
                out.inbound.push(kind);
            } else if rest.starts_with("to ") && proxy {
                by_proxy += u64::from(established);
            } else if rest.starts_with("to ") {
                by_agent += u64::from(established);
                out.outbound.push(kind);
            }
        } else if let Some(why) = refusal(line) {
            out.refused.push(why);
        }
    }
    out.outbound_handshakes = if by_proxy > 0 { by_proxy } else { by_agent };
    out
}

fn refusal(line: &str) -> Option<String> {
    if line.contains("TLS is required, but was not offered") {
        return Some("TLS is required, but was not offered by the next hop".into());
    }
    if let Some((_, rest)) = line.split_once("certificate verification failed for ") {
        // "...:PORT: num=20:unable to get local issuer certificate"
        let reason = rest.rsplit_once(':').map_or(rest, |(_, r)| r).trim();
        return Some(format!("certificate verification failed: {reason}"));
    }
    if line.contains("SSL_accept error from") {
        return Some("TLS handshake with a client failed (SSL_accept error)".into());
    }
    if line.contains("SSL_connect error to") {
        return Some("TLS handshake with the next hop failed (SSL_connect error)".into());
    }
    if line.contains("Must issue a STARTTLS command first") && line.contains("smtpd") {
        return Some("a client sent mail without STARTTLS (refused)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tls_line_is_reduced_to_its_trust_and_version() {
        let log = "\
Nov 28 10:00:00 relay postfix/smtpd[10]: Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
Nov 28 10:00:00 relay postfix/smtpd[10]: Trusted TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
Nov 28 10:00:01 relay postfix/smtp[11]: Verified TLS connection established to 127.0.0.1[127.0.0.1]:2525: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
Nov 28 10:00:02 relay postfix/smtp[11]: server certificate verification failed for 127.0.0.1[127.0.0.1]:2525: num=20:unable to get local issuer certificate
Nov 28 10:00:02 relay postfix/smtp[11]: 3D5A: to=<phone@dlab.invalid>, relay=none, delay=1, status=deferred (TLS is required, but was not offered by host 127.0.0.1[127.0.0.1])
Nov 28 10:00:03 relay postfix/smtpd[10]: connect from localhost[127.0.0.1]
";
        let t = read(log);
        assert_eq!(t.inbound, ["Anonymous TLSv1.3", "Trusted TLSv1.3"]);
        assert_eq!(t.outbound, ["Verified TLSv1.3"]);
        assert_eq!(t.outbound_handshakes, 1, "the delivery agent made it");
        assert_eq!(
            t.refused,
            [
                "certificate verification failed: unable to get local issuer certificate",
                "TLS is required, but was not offered by the next hop"
            ]
        );
        assert_eq!(read("no tls here\n"), TlsLines::default());
    }

    #[test]
    fn a_reused_connection_is_a_delivery_and_tlsproxy_s_line_the_handshake() {
        let log = "\
Dec 08 01:10:31 relay postfix/tlsproxy[20]: Verified TLS connection established to 127.0.0.1[127.0.0.1]:2525: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
Dec 08 01:10:31 relay postfix/smtp[11]: Verified TLS connection established to 127.0.0.1[127.0.0.1]:2525: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
Dec 08 01:10:31 relay postfix/smtp[11]: Verified TLS connection reused to 127.0.0.1[127.0.0.1]:2525: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
Dec 08 01:10:31 relay postfix/smtp[11]: Verified TLS connection reused to 127.0.0.1[127.0.0.1]:2525: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
";
        let t = read(log);
        assert_eq!(t.outbound, ["Verified TLSv1.3"; 3], "three deliveries");
        assert_eq!(t.outbound_handshakes, 1, "over one handshake");
    }
}
