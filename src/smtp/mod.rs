//! The SMTP transport: dlab's sender (notifications as emails through
//! `mail-send`), its inbox (the recipient's phone as an SMTP server), the
//! decoding of a message's text, what a server advertises after EHLO, what
//! each hop speaks (`[esmtp]`), and
//! the run's side of it: the [`Engine`] behind the run skeleton and the
//! relay a run goes through. The private relay itself is [`crate::relay`].

pub mod body;
pub mod ehlo;
mod engine;
pub mod esmtp;
pub mod inbox;
mod inbox_tls;
mod relay_use;
pub mod returns;
pub mod sender;
mod tls_use;

pub use engine::Engine;
pub use relay_use::RelayTarget;
