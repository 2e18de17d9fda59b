//! The SMTP part of a plan and the SMTP transport's [`Vocabulary`]: its
//! keys (`[esmtp]`), its policies and its faults. Keys only SMTP reads go
//! into [`SmtpPlan`] and `SMTP.keys`.

use super::plan::Invalid;
use super::spec::{FaultKind, Spec, StartTls, TlsMode, Transport};
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
    /// What the sender and the relay do about TLS, with `tls` on.
    #[serde(default)]
    pub tls: SmtpTls,
}

/// What the SMTP clients (the sender, the relay's delivery agent) do about
/// TLS, when the scenario's `tls` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpTls {
    /// Required, or used when offered.
    pub starttls: StartTls,
    /// Whether the next hop's certificate is verified against the lab CA.
    pub verify: bool,
}

impl Default for SmtpTls {
    fn default() -> SmtpTls {
        SmtpTls {
            starttls: StartTls::Required,
            verify: true,
        }
    }
}

impl SmtpTls {
    /// Postfix's `smtp_tls_security_level` for the relay's next hop.
    pub fn postfix_level(self) -> &'static str {
        match (self.starttls, self.verify) {
            (StartTls::Opportunistic, _) => "may",
            (StartTls::Required, false) => "encrypt",
            (StartTls::Required, true) => "verify",
        }
    }
}

/// The SMTP transport's keys, policies and faults.
pub const SMTP: Vocabulary = Vocabulary {
    transport: Transport::Smtp,
    keys: &[
        Key {
            name: "esmtp",
            set: |s| s.esmtp.is_some(),
        },
        Key {
            name: "starttls",
            set: |s| s.starttls.is_some(),
        },
        Key {
            name: "tls_verify",
            set: |s| s.tls_verify.is_some(),
        },
    ],
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
        FaultKind::StarttlsStrip,
        FaultKind::MitmCertificate,
        FaultKind::CertificateExpired,
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
        let tls_off = spec.tls.unwrap_or_default() == TlsMode::Off;
        for (key, set) in [
            ("starttls", spec.starttls.is_some()),
            ("tls_verify", spec.tls_verify.is_some()),
        ] {
            if set && tls_off {
                return Err(Invalid::at(
                    &[key],
                    "says what the SMTP clients do about TLS, and this scenario has none; expected `tls = \"on\"` or `tls = \"mutual\"` with it",
                ));
            }
        }
        Ok(SmtpPlan {
            tls: SmtpTls {
                starttls: spec.starttls.unwrap_or_default(),
                verify: spec.tls_verify.unwrap_or(true),
            },
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
        self.inbox != Announce::default() || self.send != Send::default()
    }
}
