//! dlab, the delivery-guarantee lab: producers and consumers talk to a real
//! RabbitMQ broker while faults are injected at precise points, and a ledger
//! counts, message by message, what was lost and what was duplicated.
//!
//! See `ARCHITECTURE.md` for the code map and the invariants.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![allow(unreachable_pub)]

pub mod amqp;
pub mod broker;
pub mod cli;
pub mod cluster;
pub mod cluster_matrix;
pub mod compare;
pub mod eavesdrop;
pub mod effects;
pub mod group_commit;
pub mod history;
pub mod ledger;
pub mod leftovers;
pub mod matrix;
pub mod message_id;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod push;
pub mod relay;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod schedule;
pub mod smtp;
pub mod tls;
pub mod wire_matrix;
pub mod worker;
