//! The eavesdropper's tap: a passive copy of the bytes that cross a proxied
//! link, per connection and direction, exactly as they travel (before any
//! fault touches them). It never changes, delays or holds a stream; it keeps
//! at most its budget of bytes and counts the rest, so a long run cannot
//! exhaust memory.

use super::Direction;
use std::sync::Mutex;
use std::time::Instant;

/// Chunks timed per connection: enough for a handshake, even after an SMTP
/// dialogue up to STARTTLS.
const TIMED_CHUNKS: usize = 32;

/// When one chunk of a connection went past, and where it began in its
/// direction's captured bytes.
#[derive(Debug, Clone, Copy)]
pub struct Chunk {
    /// Which way it went.
    pub direction: Direction,
    /// Where it begins in that direction's captured bytes.
    pub at: usize,
    /// When the proxy read it.
    pub time: Instant,
}

/// What one connection carried, each way, as far as the budget allowed.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// Client to server.
    pub to_server: Vec<u8>,
    /// Server to client.
    pub to_client: Vec<u8>,
    /// The connection's first chunks, both ways, in the order they went past.
    pub chunks: Vec<Chunk>,
}

/// Everything a tap saw on its link.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// One entry per connection, in the order they were accepted.
    pub connections: Vec<Capture>,
    /// Bytes that crossed the link while the tap listened.
    pub bytes_seen: u64,
    /// Bytes kept (the rest went past once the budget was spent).
    pub bytes_kept: u64,
}

/// A bounded tap on one link.
pub struct Tap {
    budget: u64,
    inner: Mutex<Captured>,
}

impl Tap {
    /// A tap that keeps at most `budget` bytes of the link's traffic.
    pub fn new(budget: u64) -> Tap {
        Tap {
            budget,
            inner: Mutex::new(Captured::default()),
        }
    }

    /// A new connection; returns its number for [`Tap::record`].
    pub fn open(&self) -> usize {
        let mut c = self.inner.lock().expect("not poisoned");
        c.connections.push(Capture::default());
        c.connections.len() - 1
    }

    /// Bytes read from one side of connection `conn`, before any fault.
    pub fn record(&self, conn: usize, direction: Direction, bytes: &[u8]) {
        let mut c = self.inner.lock().expect("not poisoned");
        c.bytes_seen += bytes.len() as u64;
        let room = self.budget.saturating_sub(c.bytes_kept) as usize;
        let keep = &bytes[..bytes.len().min(room)];
        c.bytes_kept += keep.len() as u64;
        let capture = &mut c.connections[conn];
        if capture.chunks.len() < TIMED_CHUNKS {
            let at = match direction {
                Direction::ToServer => capture.to_server.len(),
                Direction::ToClient => capture.to_client.len(),
            };
            capture.chunks.push(Chunk {
                direction,
                at,
                time: Instant::now(),
            });
        }
        match direction {
            Direction::ToServer => capture.to_server.extend_from_slice(keep),
            Direction::ToClient => capture.to_client.extend_from_slice(keep),
        }
    }

    /// What the tap has seen so far.
    pub fn captured(&self) -> Captured {
        self.inner.lock().expect("not poisoned").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_each_connection_apart_and_stops_at_its_budget() {
        let tap = Tap::new(10);
        let a = tap.open();
        let b = tap.open();
        tap.record(a, Direction::ToServer, b"hello");
        tap.record(b, Direction::ToClient, b"world");
        tap.record(a, Direction::ToServer, b"again");
        let c = tap.captured();
        assert_eq!(c.connections[a].to_server, b"hello");
        assert_eq!(c.connections[b].to_client, b"world");
        assert_eq!((c.bytes_seen, c.bytes_kept), (15, 10));
    }
}
