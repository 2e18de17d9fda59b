//! The AMQP transport: a RabbitMQ queue between producer and consumer workers.
//!
//! Split by role as in vector's AMQP sink: connecting, the queue, the
//! publisher (producer policies), the consumer (consumer policies); and the
//! run's side of it: the [`Engine`] behind the run skeleton, the
//! supervision of the worker processes, the runner's view of the queue.

mod cluster_use;
pub mod connect;
pub mod consumer;
pub mod endpoints;
mod engine;
mod inspect;
pub mod publisher;
mod push_use;
mod seen_table;
pub mod send_log;
mod supervise;
mod tls_view;
pub mod topology;
pub mod url;
pub mod worker;

pub use connect::{connect, BrokerError};
pub use engine::Engine;
pub use url::mask_password;
