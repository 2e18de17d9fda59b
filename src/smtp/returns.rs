//! Returned mail: a message with the null reverse-path (`MAIL FROM:<>`) is a
//! relay's delivery status notification (RFC 3464), never a notification
//! for the phone. From its text dlab reads which message came back (the
//! original's Message-ID, in the returned headers), its status code and the
//! relay's diagnostic, so a report can set what the sender's side received
//! beside what the relay's log says it bounced.

/// One returned message, as read from the notification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Return {
    /// The Message-ID of the message that came back, without brackets.
    pub original: Option<String>,
    /// Its status, e.g. `5.6.7`.
    pub status: Option<String>,
    /// The relay's words, e.g. `X-Postfix; SMTPUTF8 is required, ...`.
    pub diagnostic: Option<String>,
}

/// Reads a notification: the first `Message-ID` after its own header
/// section is the returned message's (Postfix returns the original's headers
/// as a `text/rfc822-headers` or `message/global-headers` part); `Status`
/// and `Diagnostic-Code` come from its delivery-status part.
pub fn read(message: &[u8]) -> Return {
    let text = String::from_utf8_lossy(message);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Folded lines (a continuation starts with white space) unfolded.
    let lines: Vec<String> = body.split("\r\n").fold(Vec::new(), |mut acc, l| {
        match acc.last_mut() {
            Some(last) if l.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(l.trim());
            }
            _ => acc.push(l.to_string()),
        }
        acc
    });
    let field = |name: &str| {
        lines.iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    Return {
        original: field("Message-ID")
            .map(|v| v.trim_start_matches('<').trim_end_matches('>').to_string()),
        status: field("Status"),
        diagnostic: field("Diagnostic-Code"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postfix_bounce_names_the_original_its_status_and_why() {
        let dsn = "Message-Id: <20261128.ABC@relay.dlab.invalid>\r\nFrom: MAILER-DAEMON@relay.dlab.invalid (Mail Delivery System)\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n\r\n--B\r\nContent-Type: message/global-delivery-status\r\n\r\nReporting-MTA: dns; relay.dlab.invalid\r\n\r\nFinal-Recipient: utf-8; t\u{e9}l\u{e9}phone@dlab.invalid\r\nAction: failed\r\nStatus: 5.6.7\r\nDiagnostic-Code: X-Postfix; SMTPUTF8 is required, but was not offered by host\r\n    127.0.0.1[127.0.0.1]\r\n\r\n--B\r\nContent-Type: message/global-headers\r\n\r\nFrom: dlab <notify@dlab.invalid>\r\nMessage-ID: <run-7@dlab>\r\n\r\n--B--\r\n";
        let r = read(dsn.as_bytes());
        assert_eq!(r.original.as_deref(), Some("run-7@dlab"));
        assert_eq!(r.status.as_deref(), Some("5.6.7"));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some(
                "X-Postfix; SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1]"
            )
        );
        assert_eq!(read(b"no header end"), Return::default());
    }
}
