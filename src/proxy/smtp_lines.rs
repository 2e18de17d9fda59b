//! Finding the end of an SMTP message (the client's final "." line) in the
//! client-to-server stream as it streams past: enough to cut a connection
//! after the server has the whole message and before its reply reaches the
//! client (RFC 1047: both sides now own the message).
//!
//! Command lines are read up to a bound; after a `DATA` command the scanner
//! watches for CRLF "." CRLF. `BDAT` (CHUNKING) is not followed.

const MAX_LINE: usize = 1024;

/// Streaming scanner for the client-to-server direction of one SMTP connection.
#[derive(Debug, Clone, Default)]
pub struct DotScanner {
    in_data: bool,
    line: Vec<u8>,
    window: [u8; 5],
}

impl DotScanner {
    /// Scans `chunk`; returns the offset just past each final "." line
    /// (CRLF "." CRLF) that ends a message in it.
    pub fn scan(&mut self, chunk: &[u8]) -> Vec<usize> {
        let mut ends = Vec::new();
        for (i, &b) in chunk.iter().enumerate() {
            if self.in_data {
                self.window.rotate_left(1);
                self.window[4] = b;
                if &self.window == b"\r\n.\r\n" {
                    self.in_data = false;
                    self.line.clear();
                    ends.push(i + 1);
                }
                continue;
            }
            if b == b'\n' {
                let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
                if line.eq_ignore_ascii_case(b"DATA") {
                    self.in_data = true;
                    // The CRLF that ended "DATA" also starts an empty body's ".".
                    self.window = [0, 0, 0, b'\r', b'\n'];
                }
                self.line.clear();
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
        ends
    }
}

#[cfg(test)]
mod tests {
    // Mutants that survive `cargo mutants` (README, "Tests"), and why:
    // - scan: `self.line.len() < MAX_LINE` -> `<=`: the bound only caps memory; a line that
    //   long is never "DATA" either way.
    use super::*;

    const SESSION: &[u8] = b"EHLO client\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n..leading dot\r\n.\r\nQUIT\r\n";

    #[test]
    fn finds_the_final_dot_and_not_a_stuffed_one() {
        let ends = DotScanner::default().scan(SESSION);
        let expected = SESSION.windows(5).position(|w| w == b"\r\n.\r\n").unwrap() + 5;
        assert_eq!(ends, vec![expected]);
        assert_eq!(&SESSION[expected..], b"QUIT\r\n");
    }

    #[test]
    fn finds_it_whatever_the_chunking() {
        let expected = SESSION.windows(5).position(|w| w == b"\r\n.\r\n").unwrap() + 5;
        for size in 1..SESSION.len() {
            let mut s = DotScanner::default();
            let mut ends = Vec::new();
            for (k, c) in SESSION.chunks(size).enumerate() {
                ends.extend(s.scan(c).into_iter().map(|e| k * size + e));
            }
            assert_eq!(ends, vec![expected], "chunks of {size}");
        }
    }

    #[test]
    fn an_empty_body_and_two_messages_in_one_session() {
        let two = b"DATA\r\n.\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\ndata\r\nx\r\n.\r\n";
        let ends = DotScanner::default().scan(two);
        assert_eq!(ends.len(), 2);
        assert_eq!(ends[0], 9);
        assert_eq!(ends[1], two.len());
    }

    #[test]
    fn a_dot_line_outside_data_is_not_an_end() {
        assert!(DotScanner::default()
            .scan(b"NOOP\r\n.\r\nHELP\r\n")
            .is_empty());
    }
}
