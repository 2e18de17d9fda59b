//! The AMQP transport: a RabbitMQ queue between producer and consumer workers.
//!
//! Split by role as in vector's AMQP sink: connecting, the queue, the
//! publisher (producer policies), the consumer (consumer policies).

pub mod connect;
pub mod consumer;
pub mod publisher;
pub mod send_log;
pub mod topology;
pub mod url;

pub use connect::{connect, BrokerError};
pub use url::mask_password;
