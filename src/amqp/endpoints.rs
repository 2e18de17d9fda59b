//! Clients that fail over: the AMQP URLs of every member of a cluster, tried
//! in turn. lapin takes one URL; a client with several starts at its own
//! (so clients spread over the members), and after losing a connection
//! starts at the next one, so that a dead, paused or cut-off member costs
//! one refused or timed-out attempt, not the client.

use super::connect::{connect, BrokerError};
use lapin::Connection;
use std::time::Duration;

/// How long one member may take to accept a connection when there are
/// others to try.
const PER_MEMBER: Duration = Duration::from_secs(3);

/// The endpoints of one client.
#[derive(Debug, Clone)]
pub struct Endpoints {
    urls: Vec<String>,
    next: usize,
    current: Option<usize>,
}

impl Endpoints {
    /// `urls` (at least one), starting at `first` (modulo their number).
    pub fn new(urls: Vec<String>, first: usize) -> Endpoints {
        assert!(!urls.is_empty(), "a client needs a broker");
        let next = first % urls.len();
        Endpoints {
            urls,
            next,
            current: None,
        }
    }

    /// How many members there are (never zero).
    pub fn members(&self) -> usize {
        self.urls.len()
    }

    /// Whether there is more than one member to choose from.
    pub fn several(&self) -> bool {
        self.urls.len() > 1
    }

    /// The member of the last connection opened.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// The connection was lost: the next attempt starts at the next member.
    pub fn lost(&mut self) {
        if let Some(c) = self.current.take() {
            self.next = (c + 1) % self.urls.len();
        }
    }

    /// Connects to the first member that accepts, trying each once; the
    /// error is the last member's.
    pub async fn connect(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> Result<Connection, BrokerError> {
        let n = self.urls.len();
        let each = if n > 1 {
            timeout.min(PER_MEMBER)
        } else {
            timeout
        };
        let mut last = None;
        for k in 0..n {
            let i = (self.next + k) % n;
            match connect(&self.urls[i], name, each).await {
                Ok(c) => {
                    self.current = Some(i);
                    self.next = i;
                    return Ok(c);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one URL was tried"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_starts_at_its_own_member_and_moves_on_after_a_loss() {
        // Three endpoints nobody listens on, then one that answers nothing
        // either: every attempt fails, and `lost` moves the start along.
        let dead = |port: u16| format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        let ports: Vec<u16> = (0..3).map(|_| crate::broker::free_port()).collect();
        let mut e = Endpoints::new(ports.iter().map(|p| dead(*p)).collect(), 4);
        assert_eq!(e.next, 1);
        assert!(e.several());
        let err = e.connect("t", Duration::from_secs(1)).await.unwrap_err();
        assert!(err.to_string().contains("cannot reach"), "{err}");
        assert_eq!(e.current(), None);
        e.current = Some(2);
        e.lost();
        assert_eq!((e.next, e.current), (0, None));
    }
}
