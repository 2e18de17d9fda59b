//! Where TLS begins in one direction of a captured connection: a sniffer
//! sees the clear bytes before the handshake (all of them on a plain link,
//! the dialogue up to STARTTLS on an upgraded one) and then only TLS
//! records, each a 5-byte header (type 20-23, version 3.x, length) and
//! ciphertext.

/// One direction split into its clear part and its TLS records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Bytes before the first TLS record (the whole stream when none).
    pub clear: usize,
    /// Bytes from the first TLS record on.
    pub tls: usize,
    /// Whether a TLS handshake record began it.
    pub handshake: bool,
}

const HANDSHAKE: u8 = 22;
const MAX_RECORD: usize = 16_384 + 2_048;

/// A record header at `at`: its length, if it is one.
fn record(stream: &[u8], at: usize) -> Option<usize> {
    let h = stream.get(at..at + 5)?;
    let len = u16::from_be_bytes([h[3], h[4]]) as usize;
    ((20..=23).contains(&h[0]) && h[1] == 3 && h[2] <= 4 && len > 0 && len <= MAX_RECORD)
        .then_some(len)
}

/// Whether records chain from `at` to the end of the stream (the last one
/// may be cut short by the tap's budget or by the connection's end).
fn chains(stream: &[u8], mut at: usize) -> bool {
    while at < stream.len() {
        match record(stream, at) {
            Some(len) => at += 5 + len,
            None => return stream.len() - at < 5 && at > 0,
        }
    }
    true
}

/// Splits one direction of a connection at its first handshake record
/// from which TLS records run to the end.
pub fn split(stream: &[u8]) -> Split {
    let start = (0..stream.len()).find(|&i| {
        stream[i] == HANDSHAKE
            && (i == 0 || stream[i - 1] == b'\n')
            && record(stream, i).is_some()
            && chains(stream, i)
    });
    match start {
        Some(i) => Split {
            clear: i,
            tls: stream.len() - i,
            handshake: true,
        },
        None => Split {
            clear: stream.len(),
            tls: 0,
            handshake: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn plain_text_is_all_clear() {
        let s = split(b"EHLO x\r\nMAIL FROM:<a@b>\r\n");
        assert_eq!((s.clear, s.tls, s.handshake), (25, 0, false));
    }

    #[test]
    fn starttls_leaves_the_dialogue_before_it_clear() {
        let mut s = b"EHLO x\r\nSTARTTLS\r\n".to_vec();
        let clear = s.len();
        s.extend(rec(22, &[1; 200]));
        s.extend(rec(23, &[9; 1000]));
        let got = split(&s);
        assert_eq!(
            (got.clear, got.tls, got.handshake),
            (clear, s.len() - clear, true)
        );
    }

    #[test]
    fn implicit_tls_is_records_from_the_first_byte_even_cut_short() {
        let mut s = rec(22, &[1; 300]);
        s.extend(rec(23, &[7; 500]));
        s.extend(&rec(23, &[7; 500])[..3]);
        assert_eq!(split(&s).clear, 0);
    }

    #[test]
    fn a_byte_that_looks_like_a_header_in_clear_text_is_not_tls() {
        let mut s = b"data\n".to_vec();
        s.extend([22, 3, 3, 0, 4, 1, 2, 3, 4]);
        s.extend(b"more clear text after it\r\n");
        assert!(!split(&s).handshake);
    }
}
