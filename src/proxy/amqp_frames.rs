//! Finding AMQP 0-9-1 method frames in a byte stream as it streams past,
//! without buffering it: enough to cut a connection just before the broker's
//! `basic.ack` (a publisher confirm) reaches the producer.
//!
//! A frame is `type(1) channel(2) size(4) payload(size) end(1)`; a method
//! frame (type 1) begins its payload with `class(2) method(2)`. The scanner
//! keeps only the first 11 bytes of the current frame.

/// AMQP class `basic`.
pub const CLASS_BASIC: u16 = 60;
/// `basic.ack` (from the broker: a publisher confirm).
pub const METHOD_ACK: u16 = 80;

const FRAME_METHOD: u8 = 1;
const PREFIX: usize = 11;

/// Streaming scanner for one direction of one connection (server to client:
/// that stream is frames from its first byte).
#[derive(Debug, Default, Clone)]
pub struct FrameScanner {
    prefix: [u8; PREFIX],
    pos: usize,
    total: usize,
}

/// A method frame seen in a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodFrame {
    /// Offset in the chunk where the frame began (negative: in an earlier chunk).
    pub start: isize,
    /// AMQP class ID.
    pub class: u16,
    /// AMQP method ID.
    pub method: u16,
}

impl FrameScanner {
    /// Scans `chunk`, returning the method frames whose class and method
    /// became known within it.
    pub fn scan(&mut self, chunk: &[u8]) -> Vec<MethodFrame> {
        let mut found = Vec::new();
        let mut i = 0;
        while i < chunk.len() {
            if self.pos < 7 || (self.pos < PREFIX && self.pos < self.total) {
                let want = if self.pos < 7 {
                    7
                } else {
                    PREFIX.min(self.total)
                };
                let n = (want - self.pos).min(chunk.len() - i);
                self.prefix[self.pos..self.pos + n].copy_from_slice(&chunk[i..i + n]);
                self.pos += n;
                i += n;
                if self.pos == 7 {
                    let size = u32::from_be_bytes([
                        self.prefix[3],
                        self.prefix[4],
                        self.prefix[5],
                        self.prefix[6],
                    ]);
                    self.total = 8 + size as usize;
                }
                if self.pos == PREFIX && self.prefix[0] == FRAME_METHOD {
                    found.push(MethodFrame {
                        start: i as isize - PREFIX as isize,
                        class: u16::from_be_bytes([self.prefix[7], self.prefix[8]]),
                        method: u16::from_be_bytes([self.prefix[9], self.prefix[10]]),
                    });
                }
            } else {
                let n = (self.total - self.pos).min(chunk.len() - i);
                self.pos += n;
                i += n;
            }
            if self.pos >= 7 && self.pos == self.total {
                self.pos = 0;
                self.total = 0;
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    // Mutants that survive `cargo mutants` (README, "Tests"), and why:
    // - scan: `self.pos < 7` -> `<= 7` in the outer `if`: at pos 7 the other arm holds anyway
    //   (total >= 8 > 7 and 7 < PREFIX), so the branch taken is the same.
    // - scan: `self.pos < self.total` -> `<=`: pos == total at the loop's top only when both are
    //   0 (a frame that ends is reset at once), and then `pos < 7` already holds.
    // - scan: `self.total - self.pos` -> `/` when skipping a payload: total / pos is >= 1 and never
    //   past the frame's end, so the result is the same, only in more steps.
    // Most other mutants here show as timeouts, not failures: a scanner that stops advancing
    // loops forever, and the proxy's confirm-lost tests wait for an ack it never finds.
    use super::*;

    fn method_frame(channel: u16, class: u16, method: u16, args: &[u8]) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&class.to_be_bytes());
        payload.extend_from_slice(&method.to_be_bytes());
        payload.extend_from_slice(args);
        let mut f = vec![FRAME_METHOD];
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(&payload);
        f.push(0xCE);
        f
    }

    fn heartbeat() -> Vec<u8> {
        vec![8, 0, 0, 0, 0, 0, 0, 0xCE]
    }

    fn stream() -> (Vec<u8>, usize) {
        let mut s = method_frame(0, 10, 30, &[0; 8]); // connection.tune
        s.extend(heartbeat());
        s.extend(vec![3, 0, 1, 0, 0, 0, 2, b'h', b'i', 0xCE]); // a body frame
        let ack_at = s.len();
        s.extend(method_frame(
            1,
            CLASS_BASIC,
            METHOD_ACK,
            &[0, 0, 0, 0, 0, 0, 0, 7, 0],
        ));
        s.extend(heartbeat());
        (s, ack_at)
    }

    #[test]
    fn finds_the_ack_in_one_chunk() {
        let (s, ack_at) = stream();
        let found = FrameScanner::default().scan(&s);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[1],
            MethodFrame {
                start: ack_at as isize,
                class: CLASS_BASIC,
                method: METHOD_ACK
            }
        );
    }

    #[test]
    fn finds_the_ack_whatever_the_chunking() {
        let (s, ack_at) = stream();
        for size in 1..s.len() {
            let mut scanner = FrameScanner::default();
            let mut acks = Vec::new();
            for (k, chunk) in s.chunks(size).enumerate() {
                for f in scanner.scan(chunk) {
                    if (f.class, f.method) == (CLASS_BASIC, METHOD_ACK) {
                        acks.push((k * size) as isize + f.start);
                    }
                }
            }
            assert_eq!(acks, vec![ack_at as isize], "chunks of {size}");
        }
    }
}
