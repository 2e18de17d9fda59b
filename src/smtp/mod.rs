//! The SMTP side: dlab's sender (notifications as emails through
//! `mail-send`), its inbox (the recipient's phone as an SMTP server), the
//! decoding of a message's text, and what a server advertises after EHLO.
//! The private relay between sender and inbox is [`crate::relay`]; an SMTP
//! run is [`crate::runner::smtp`].

pub mod body;
pub mod ehlo;
pub mod inbox;
pub mod sender;
