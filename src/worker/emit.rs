//! Buffered writing of [`WireEvent`]s to the runner.
//!
//! Events are written in batches (one `write` per batch) so that reporting
//! does not cost a system call per message. A worker flushes at every point
//! where it may abort, so the runner sees everything that happened before.

use super::wire::WireEvent;
use std::io::Write;
use std::time::{Duration, Instant};

/// Collects events and writes them to stdout in batches.
pub struct Emitter {
    buf: Vec<u8>,
    last_flush: Instant,
}

impl Default for Emitter {
    fn default() -> Self {
        Emitter::new()
    }
}

impl Emitter {
    /// An empty emitter.
    pub fn new() -> Emitter {
        Emitter {
            buf: Vec::with_capacity(64 * 1024),
            last_flush: Instant::now(),
        }
    }

    /// Queues one event.
    pub fn push(&mut self, event: WireEvent) {
        // Writing into a Vec cannot fail.
        let _ = writeln!(self.buf, "{event}");
    }

    /// Writes everything queued. A runner that is gone ends the worker: with
    /// nobody to tell, there is nothing left to do.
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            let mut out = std::io::stdout().lock();
            if out.write_all(&self.buf).and_then(|_| out.flush()).is_err() {
                std::process::exit(super::EXIT_RUNNER_GONE);
            }
            self.buf.clear();
        }
        self.last_flush = Instant::now();
    }

    /// Flushes when enough has been queued or enough time has passed.
    pub fn maybe_flush(&mut self) {
        if self.buf.len() >= 32 * 1024 || self.last_flush.elapsed() >= Duration::from_millis(50) {
            self.flush();
        }
    }
}
