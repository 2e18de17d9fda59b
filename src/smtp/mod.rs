//! The SMTP side: dlab's inbox (the recipient's phone as an SMTP server).
//!
//! Groundwork for the SMTP transport: the sender and the runner integration
//! are not built yet; the private relay is [`crate::relay`].

pub mod inbox;
