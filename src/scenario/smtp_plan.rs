//! The SMTP part of a plan and the SMTP transport's [`Vocabulary`]: its
//! keys (`[esmtp]`), its policies and its faults. Keys only SMTP reads go
//! into [`SmtpPlan`] and `SMTP.keys`.

use super::plan::Invalid;
use super::spec::{FaultKind, Spec, Transport};
use super::transport::{Key, Vocabulary};
use crate::policy::{ConsumerPolicy, Guarantee, ProducerPolicy};
use crate::smtp::esmtp::{Announce, Extension, Send};
use serde::{Deserialize, Serialize};

/// What only an SMTP run uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpPlan {
    /// How the inbox answers EHLO.
    pub inbox: Announce,
    /// What the sender sends.
    pub send: Send,
}

/// The SMTP transport's keys, policies and faults.
pub const SMTP: Vocabulary = Vocabulary {
    transport: Transport::Smtp,
    keys: &[Key {
        name: "esmtp",
        set: |s| s.esmtp.is_some(),
    }],
    producers: &[ProducerPolicy::SendOnce, ProducerPolicy::Retry],
    // The inbox commits each effect before its 250: SMTP has no auto-ack.
    consumers: &[ConsumerPolicy::AckAfterEffect, ConsumerPolicy::Idempotent],
    faults: &[
        FaultKind::Latency,
        FaultKind::Bandwidth,
        FaultKind::Slicer,
        FaultKind::Cut,
        FaultKind::Down,
        FaultKind::Blackhole,
        FaultKind::LimitData,
        FaultKind::InboxDown,
        FaultKind::InboxTempfail,
        FaultKind::InboxSlow,
        FaultKind::InboxHangup,
        FaultKind::RelayKill,
        FaultKind::ReplyLostAfterDot,
    ],
    preset: Guarantee::smtp_policies,
};

impl SmtpPlan {
    /// The SMTP keys of `spec`, defaults filled in and ranges checked.
    pub fn from_spec(spec: &Spec) -> Result<SmtpPlan, Invalid> {
        let esmtp = spec.esmtp.clone().unwrap_or_default();
        let helo_only = esmtp.helo_only.unwrap_or(false);
        if helo_only && esmtp.inbox.is_some() {
            return Err(Invalid::at(
                &["esmtp", "inbox"],
                "an inbox that speaks only HELO announces no extensions; expected either `helo_only = true` or `inbox = [...]`",
            ));
        }
        let mut extensions = esmtp.inbox.unwrap_or_else(|| Extension::ALL.to_vec());
        extensions.sort();
        if extensions.windows(2).any(|w| w[0] == w[1]) {
            return Err(Invalid::at(
                &["esmtp", "inbox"],
                "an extension is listed twice; expected each of \"PIPELINING\", \"8BITMIME\", \"SMTPUTF8\", \"SIZE\" at most once",
            ));
        }
        if extensions.contains(&Extension::SmtpUtf8)
            && !extensions.contains(&Extension::EightBitMime)
        {
            return Err(Invalid::at(
                &["esmtp", "inbox"],
                "a server that announces SMTPUTF8 must announce 8BITMIME too (RFC 6531, section 3.2; Postfix takes SMTPUTF8 to mean both); expected \"8BITMIME\" in the list, or no \"SMTPUTF8\"",
            ));
        }
        Ok(SmtpPlan {
            inbox: Announce {
                ehlo: !helo_only,
                extensions,
            },
            send: Send {
                body: esmtp.body.unwrap_or_default(),
                recipient: esmtp.recipient.unwrap_or_default(),
            },
        })
    }

    /// Whether the plan changes what a hop speaks from dlab's defaults (the
    /// run then needs a relay dlab configures: the returns mailbox and
    /// the header log).
    pub fn esmtp_changed(&self) -> bool {
        *self != SmtpPlan::default()
    }
}
