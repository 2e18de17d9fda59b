//! The push hop: the phone's push service as dlab's own HTTP gateway, and the
//! consumer's remote effect through it.
//!
//! The gateway records each notification it shows in the run's effect store
//! before it answers 2xx and honours `Idempotency-Key`s for `key_ttl`, in
//! memory or on disk; its access log is the independent count. The client
//! side (timeouts, retries, backoff, Retry-After) lives in the AMQP consumer
//! ([`client`], called by `crate::amqp::consumer`).

pub mod access_log;
pub mod client;
pub mod gateway;
pub mod keys;
