//! What the proxy is told to do, per direction and per link. Changing these
//! settings is how a fault starts and ends; the pumps read them per chunk.

use std::time::Duration;

/// The protocol a link speaks, which decides the protocol points the proxy
/// watches for (nothing else is parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// AMQP 0-9-1: the broker's frames are followed for confirm-lost.
    Amqp,
    /// SMTP: the client's lines are followed for reply-lost-after-dot.
    Smtp,
    /// HTTP/1.1: a client's request is answered by the server's next bytes
    /// (no pipelining), which is all response-lost needs to know.
    Http,
}

impl Protocol {
    /// Whether a protocol point (confirm-lost, reply-lost-after-dot,
    /// response-lost) needs to see the bytes going `direction`: AMQP's acks
    /// come from the broker; SMTP's dot and HTTP's request go to the server,
    /// and the reply that the fault drops comes back.
    pub fn has_point(self, direction: Direction) -> bool {
        match self {
            Protocol::Amqp => direction == Direction::ToClient,
            Protocol::Smtp | Protocol::Http => true,
        }
    }
}

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the server.
    ToServer,
    /// From the server to the client.
    ToClient,
}

/// Faults acting on one direction of every connection of a link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirectionFaults {
    /// Each chunk is held this long (plus up to `jitter`) before it is written.
    pub latency: Option<Duration>,
    /// Up to this much extra latency, drawn per chunk from the seed.
    pub jitter: Duration,
    /// Bytes per second at most.
    pub bandwidth: Option<u64>,
    /// Writes are split into pieces of at most this many bytes.
    pub slice: Option<usize>,
    /// The connection is closed once this many more bytes have passed.
    pub limit_data: Option<u64>,
    /// Nothing moves (a partition): the sender sees a stall, not an error.
    pub blackhole: bool,
}

/// Everything the proxy is doing to one link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkFaults {
    /// Client to server.
    pub to_server: DirectionFaults,
    /// Server to client.
    pub to_client: DirectionFaults,
    /// New connections are refused (accepted and reset at once).
    pub down: bool,
    /// The next broker `basic.ack` cuts its connection before it is forwarded.
    pub confirm_lost: bool,
    /// A wire fault on new connections (STARTTLS stripped, a man in the middle).
    pub wire: Option<super::wire::Wire>,
}

impl LinkFaults {
    /// The faults of one direction.
    pub fn direction(&self, d: Direction) -> &DirectionFaults {
        match d {
            Direction::ToServer => &self.to_server,
            Direction::ToClient => &self.to_client,
        }
    }

    /// The faults of one direction, to change.
    pub fn direction_mut(&mut self, d: Direction) -> &mut DirectionFaults {
        match d {
            Direction::ToServer => &mut self.to_server,
            Direction::ToClient => &mut self.to_client,
        }
    }
}
