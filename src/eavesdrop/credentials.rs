//! Credentials in a client's clear bytes, read the way a sniffer reads
//! them: AMQP's `connection.start-ok` (PLAIN and AMQPLAIN responses), SMTP
//! `AUTH PLAIN` and `AUTH LOGIN`, HTTP `Authorization`. The secret itself is
//! never kept: only the user name and whether the secret was readable.

use base64::Engine as _;

/// One credential found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    /// Where: `AMQP PLAIN`, `SMTP AUTH LOGIN`, `HTTP Bearer`...
    pub how: String,
    /// The user name (a token: its first 4 characters and `…`).
    pub user: String,
    /// Whether the secret was readable too.
    pub secret_read: bool,
}

/// Credentials in the client-to-server bytes of one AMQP connection.
pub fn amqp(to_server: &[u8]) -> Vec<Found> {
    const HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";
    let Some(mut at) = to_server.strip_prefix(HEADER).map(|_| HEADER.len()) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    // Frames: type(1) channel(2) size(4) payload end(0xCE).
    while let Some(h) = to_server.get(at..at + 7) {
        let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
        let Some(payload) = to_server.get(at + 7..at + 7 + size) else {
            break;
        };
        if h[0] == 1 && payload.get(..4) == Some(&[0, 10, 0, 11]) {
            found.extend(start_ok(&payload[4..]));
        }
        at += 7 + size + 1;
    }
    found
}

/// `connection.start-ok`: client-properties (table), mechanism (short
/// string), response (long string), locale.
fn start_ok(args: &[u8]) -> Option<Found> {
    let table = u32::from_be_bytes(args.get(..4)?.try_into().ok()?) as usize;
    let rest = args.get(4 + table..)?;
    let mlen = *rest.first()? as usize;
    let mechanism = String::from_utf8_lossy(rest.get(1..1 + mlen)?).into_owned();
    let rest = rest.get(1 + mlen..)?;
    let rlen = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let response = rest.get(4..4 + rlen)?;
    match mechanism.as_str() {
        "PLAIN" => plain(response).map(|(user, secret_read)| Found {
            how: "AMQP PLAIN".into(),
            user,
            secret_read,
        }),
        "AMQPLAIN" => {
            let text = String::from_utf8_lossy(response);
            Some(Found {
                how: "AMQP AMQPLAIN".into(),
                user: if text.contains("LOGIN") {
                    "(in the table)".into()
                } else {
                    String::new()
                },
                secret_read: text.contains("PASSWORD"),
            })
        }
        // EXTERNAL: the identity is the client's certificate, no secret.
        _ => None,
    }
}

/// SASL PLAIN: `authzid NUL authcid NUL password`.
fn plain(response: &[u8]) -> Option<(String, bool)> {
    let mut parts = response.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = String::from_utf8_lossy(parts.next()?).into_owned();
    let secret = parts.next()?;
    Some((user, !secret.is_empty()))
}

fn b64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

/// Credentials in the client-to-server lines of one SMTP session (what is
/// in clear: before STARTTLS, or all of it without).
pub fn smtp(to_server: &[u8]) -> Vec<Found> {
    let text = String::from_utf8_lossy(to_server);
    let mut lines = text.split("\r\n");
    let mut found = Vec::new();
    while let Some(line) = lines.next() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("AUTH"))
        {
            continue;
        }
        match words.get(1).map(|m| m.to_ascii_uppercase()).as_deref() {
            Some("PLAIN") => {
                let initial = words.get(2).map(|s| s.to_string());
                let response = initial.or_else(|| lines.next().map(str::to_string));
                if let Some((user, secret_read)) =
                    response.as_deref().and_then(b64).as_deref().and_then(plain)
                {
                    found.push(Found {
                        how: "SMTP AUTH PLAIN".into(),
                        user,
                        secret_read,
                    });
                }
            }
            Some("LOGIN") => {
                let user = match words.get(2) {
                    Some(u) => Some(u.to_string()),
                    None => lines.next().map(str::to_string),
                };
                let user = user.as_deref().and_then(b64);
                let secret = lines.next().and_then(b64);
                if let Some(user) = user {
                    found.push(Found {
                        how: "SMTP AUTH LOGIN".into(),
                        user: String::from_utf8_lossy(&user).into_owned(),
                        secret_read: secret.is_some_and(|s| !s.is_empty()),
                    });
                }
            }
            _ => {}
        }
    }
    found
}

/// Credentials in the request headers of one HTTP/1.1 connection.
pub fn http(to_server: &[u8]) -> Vec<Found> {
    let text = String::from_utf8_lossy(to_server);
    text.split("\r\n")
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            if !name.trim().eq_ignore_ascii_case("authorization") {
                return None;
            }
            let (scheme, value) = value.trim().split_once(' ')?;
            Some(match scheme.to_ascii_lowercase().as_str() {
                "basic" => {
                    let decoded = b64(value)?;
                    let decoded = String::from_utf8_lossy(&decoded).into_owned();
                    let (user, secret) = decoded.split_once(':')?;
                    Found {
                        how: "HTTP Basic".into(),
                        user: user.to_string(),
                        secret_read: !secret.is_empty(),
                    }
                }
                _ => Found {
                    how: format!("HTTP {scheme}"),
                    user: format!("{}…", value.chars().take(4).collect::<String>()),
                    secret_read: !value.is_empty(),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![kind, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f.push(0xCE);
        f
    }

    #[test]
    fn reads_amqp_plain_from_start_ok() {
        let mut args = vec![0, 10, 0, 11];
        args.extend_from_slice(&3u32.to_be_bytes());
        args.extend_from_slice(b"abc");
        args.push(5);
        args.extend_from_slice(b"PLAIN");
        let response = b"\0guest\0s3cret";
        args.extend_from_slice(&(response.len() as u32).to_be_bytes());
        args.extend_from_slice(response);
        args.push(5);
        args.extend_from_slice(b"en_US");
        let mut stream = b"AMQP\x00\x00\x09\x01".to_vec();
        stream.extend(frame(1, &args));
        stream.extend(frame(1, &[0, 20, 0, 10, 0]));
        let found = amqp(&stream);
        assert_eq!(
            found,
            vec![Found {
                how: "AMQP PLAIN".into(),
                user: "guest".into(),
                secret_read: true
            }]
        );
        assert!(amqp(&[22, 3, 1, 0, 5, 1, 2, 3, 4, 5]).is_empty());
    }

    #[test]
    fn reads_smtp_auth_plain_and_login() {
        let plain = base64::engine::general_purpose::STANDARD.encode(b"\0ann\0pw");
        let user = base64::engine::general_purpose::STANDARD.encode(b"bob");
        let pass = base64::engine::general_purpose::STANDARD.encode(b"pw");
        let s =
            format!("EHLO x\r\nAUTH PLAIN {plain}\r\nAUTH LOGIN\r\n{user}\r\n{pass}\r\nQUIT\r\n");
        let found = smtp(s.as_bytes());
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].user.as_str(), found[0].secret_read),
            ("ann", true)
        );
        assert_eq!(found[1].how, "SMTP AUTH LOGIN");
        assert_eq!(
            (found[1].user.as_str(), found[1].secret_read),
            ("bob", true)
        );
    }

    #[test]
    fn reads_http_authorization_and_keeps_no_secret() {
        let basic = base64::engine::general_purpose::STANDARD.encode(b"dlab:hunter2");
        let s = format!(
            "POST / HTTP/1.1\r\nauthorization: Basic {basic}\r\n\r\nPOST / HTTP/1.1\r\nAuthorization: Bearer tok-123456\r\n\r\n"
        );
        let found = http(s.as_bytes());
        assert_eq!(found[0].user, "dlab");
        assert_eq!(found[1].how, "HTTP Bearer");
        assert_eq!(found[1].user, "tok-…");
        assert!(found.iter().all(|f| !format!("{f:?}").contains("hunter2")));
    }
}
