//! Where TLS begins in one direction of a captured connection: a sniffer
//! sees the clear bytes before the handshake (all of them on a plain link,
//! the dialogue up to STARTTLS on an upgraded one) and then only TLS
//! records, each a 5-byte header (type 20-23, version 3.x, length) and
//! ciphertext.

use crate::proxy::{Capture, Direction};
use std::time::Duration;

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

/// How long a connection's TLS handshake took as the wire shows it: from
/// the chunk that carried the client's hello to the client's next flight
/// after the server's first record (its Finished, with its certificate
/// under mutual TLS): one round trip and both ends' work. Only a handshake
/// after which the server spoke again counts: under TLS 1.3 a client's
/// alert (it refused the certificate) is as encrypted as its Finished, and
/// only what follows tells them apart. `None` when the connection made no
/// handshake that way or the tap kept too little of it.
pub fn handshake_time(c: &Capture) -> Option<Duration> {
    let (client, server) = (split(&c.to_server), split(&c.to_client));
    if !client.handshake || !server.handshake {
        return None;
    }
    let mut chunks = c.chunks.iter();
    let hello = chunks
        .by_ref()
        .filter(|k| k.direction == Direction::ToServer && k.at <= client.clear)
        .last()?;
    let mut chunks = c.chunks.iter().skip_while(|k| !std::ptr::eq(*k, hello));
    chunks.find(|k| k.direction == Direction::ToClient && k.at >= server.clear)?;
    let finished = chunks.find(|k| k.direction == Direction::ToServer)?;
    chunks.find(|k| k.direction == Direction::ToClient)?;
    Some(finished.time.saturating_duration_since(hello.time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::Chunk;
    use std::time::Instant;

    #[test]
    fn a_handshake_is_timed_from_the_hello_to_the_clients_next_flight() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let chunk = |direction, at, time| Chunk {
            direction,
            at,
            time,
        };
        let mut to_server = b"EHLO x\r\nSTARTTLS\r\n".to_vec();
        let hello_at = to_server.len();
        to_server.extend(rec(22, &[1; 100]));
        let finished_at = to_server.len();
        to_server.extend(rec(23, &[2; 50]));
        let mut to_client = b"250 ok\r\n220 go ahead\r\n".to_vec();
        let server_at = to_client.len();
        to_client.extend(rec(22, &[3; 90]));
        let c = Capture {
            to_server,
            to_client,
            chunks: vec![
                chunk(Direction::ToServer, 0, ms(0)),
                chunk(Direction::ToClient, 0, ms(1)),
                chunk(Direction::ToServer, 8, ms(2)),
                chunk(Direction::ToClient, 8, ms(3)),
                chunk(Direction::ToServer, hello_at, ms(10)),
                chunk(Direction::ToClient, server_at, ms(14)),
                chunk(Direction::ToServer, finished_at, ms(17)),
            ],
        };
        assert_eq!(
            handshake_time(&c),
            None,
            "refused, or cut: the server never spoke again"
        );
        let mut c = c;
        c.chunks
            .push(chunk(Direction::ToClient, server_at + 95, ms(18)));
        assert_eq!(handshake_time(&c), Some(Duration::from_millis(7)));
        let plain = Capture {
            chunks: c.chunks[..4].to_vec(),
            to_server: b"EHLO x\r\n".to_vec(),
            to_client: b"250 ok\r\n".to_vec(),
        };
        assert_eq!(handshake_time(&plain), None, "no handshake, no time");
    }

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
