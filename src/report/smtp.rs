//! The SMTP part of a result: what only an SMTP run has to say.

use serde::{Deserialize, Serialize};

/// What an SMTP run adds to its result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SmtpReport {
    /// The relay and where its log is.
    pub relay: String,
    /// What the relay advertised after EHLO.
    pub relay_advertised: Vec<String>,
    /// What dlab's inbox advertised after EHLO.
    pub inbox_advertised: Vec<String>,
    /// What the sender saw.
    pub sender: crate::smtp::sender::SendReport,
    /// Whether the notifications' non-ASCII text arrived intact.
    pub text: TextCheck,
    /// The relay's queue depth over time.
    pub relay_queue: Vec<QueueSample>,
    /// Where the depth was read (`postqueue -j`, or the spool directories
    /// while Postfix could not answer).
    pub relay_queue_source: String,
    /// The deepest the relay's queue was.
    pub relay_queue_peak: u64,
    /// Deliveries of this run's Message-IDs in the relay's own log (private relay).
    pub relay_log: Option<RelayLogCount>,
    /// SMTP sessions the inbox accepted.
    pub inbox_sessions: u64,
    /// Replies the inbox withheld, delayed or refused because of an inbox fault.
    pub inbox_misbehaved: u64,
    /// What each hop spoke, and what that changed.
    #[serde(default)]
    pub esmtp: EsmtpReport,
    /// TLS on both hops, each side's account (a scenario with `tls` on).
    #[serde(default)]
    pub tls: Option<super::SmtpTlsReport>,
}

/// What each hop spoke (`[esmtp]`) and its consequences, as the inbox and
/// the sender's mailbox saw them; the relay's own account is in
/// [`RelayLogCount`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EsmtpReport {
    /// How the inbox answered EHLO, in words.
    pub inbox: String,
    /// What the sender sent: `mime`, `8bitmime`, `8bit-undeclared` or `8bit-no-mime`.
    pub body: String,
    /// The phone's address: `ascii` or `utf8`.
    pub recipient: String,
    /// Transactions at the inbox that declared `BODY=8BITMIME`.
    pub declared_8bitmime: u64,
    /// Transactions at the inbox that asked for `SMTPUTF8`.
    pub smtputf8: u64,
    /// Messages sent as 8-bit text that arrived quoted-printable: the relay
    /// downgraded them (whether their text survived: `text`).
    pub downgraded: u64,
    /// Messages that arrived with 8-bit octets at an inbox that did not
    /// announce 8BITMIME: it cleared their eighth bit, as a 7-bit hop does.
    pub eight_bit_on_7bit_hop: u64,
    /// Returns (null reverse-path) of this run's messages that the sender's
    /// mailbox received.
    pub returns_received: u64,
    /// Their status and diagnostic, each distinct one with how many it covers.
    pub return_reasons: Vec<ReasonCount>,
}

/// A reason, and how many messages it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReasonCount {
    /// The words.
    pub reason: String,
    /// How many.
    pub count: u64,
}

impl ReasonCount {
    /// Each distinct reason of `reasons` with how often it occurs, in the
    /// order each first occurs.
    pub fn tally(reasons: impl IntoIterator<Item = String>) -> Vec<ReasonCount> {
        let mut out: Vec<ReasonCount> = Vec::new();
        for reason in reasons {
            match out.iter_mut().find(|r| r.reason == reason) {
                Some(r) => r.count += 1,
                None => out.push(ReasonCount { reason, count: 1 }),
            }
        }
        out
    }
}

/// The check of the notification text at the inbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TextCheck {
    /// The text every notification carries.
    pub expected: String,
    /// Messages whose decoded text contained it.
    pub intact: u64,
    /// Messages whose decoded text did not.
    pub mangled: u64,
    /// Messages with 8-bit bytes on the wire.
    pub eight_bit: u64,
}

/// One reading of the relay's queue depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueueSample {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// Messages in the relay's queue.
    pub depth: u64,
}

/// The relay log's own count of deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RelayLogCount {
    /// Message-IDs the log shows delivered.
    pub messages: u64,
    /// Deliveries: `status=sent`, plus deferrals Postfix marks "message may
    /// be sent more than once".
    pub deliveries: u64,
    /// Deliveries beyond the first of each message.
    pub duplicates: u64,
    /// Of the deliveries, "may be sent more than once" deferrals.
    pub maybe_twice: u64,
    /// This run's messages the relay bounced (`status=bounced`).
    #[serde(default)]
    pub bounced: u64,
    /// Postfix's reasons for them.
    #[serde(default)]
    pub bounce_reasons: Vec<ReasonCount>,
    /// Returns the relay made for them ("sender non-delivery notification").
    #[serde(default)]
    pub returns_sent: u64,
    /// This run's messages that came in 8bit and went out quoted-printable
    /// (the relay's header checks log both).
    #[serde(default)]
    pub downgraded: u64,
    /// The log file.
    pub log: String,
}
