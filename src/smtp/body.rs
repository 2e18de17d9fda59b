//! The text of a single-part message, decoded from its
//! Content-Transfer-Encoding (7bit, 8bit, quoted-printable, base64), so the
//! inbox can tell whether non-ASCII text arrived intact.

/// The decoded body of `message` (header section, blank line, body), or
/// `None` when its encoding is unknown or broken.
pub fn decoded_text(message: &[u8]) -> Option<Vec<u8>> {
    let split = find(message, b"\r\n\r\n")?;
    let (header, body) = (&message[..split], &message[split + 4..]);
    let encoding = encoding(header).unwrap_or_else(|| "7bit".into());
    match encoding.as_str() {
        "7bit" | "8bit" | "binary" => Some(body.to_vec()),
        "quoted-printable" => Some(quoted_printable(body)),
        "base64" => base64(body),
        _ => None,
    }
}

/// The Content-Transfer-Encoding its header section names, in lower case.
pub fn encoding(message: &[u8]) -> Option<String> {
    let end = find(message, b"\r\n\r\n").unwrap_or(message.len());
    String::from_utf8_lossy(&message[..end])
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| {
            name.trim()
                .eq_ignore_ascii_case("content-transfer-encoding")
        })
        .map(|(_, v)| v.trim().to_ascii_lowercase())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'=' if body[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' if body[i + 1..].starts_with(b"\n") => i += 2,
            b'=' if i + 2 < body.len() => match (hex(body[i + 1]), hex(body[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn base64(body: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    let text: Vec<u8> = body
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_encoding_decodes_to_the_same_text() {
        let text = "Votre colis est arrivé ☎";
        let qp = b"Content-Transfer-Encoding: quoted-printable\r\n\r\nVotre colis est arriv=C3=A9 =\r\n=E2=98=8E";
        assert_eq!(decoded_text(qp).unwrap(), text.as_bytes());
        let b64 =
            b"Content-Transfer-Encoding: base64\r\n\r\nVm90cmUgY29saXMgZXN0IGFy\r\ncml2w6kg4piO\r\n";
        assert_eq!(decoded_text(b64).unwrap(), text.as_bytes());
        let raw = format!("Subject: x\r\n\r\n{text}");
        assert_eq!(decoded_text(raw.as_bytes()).unwrap(), text.as_bytes());
        assert_eq!(
            decoded_text(b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin"),
            None
        );
    }
}
