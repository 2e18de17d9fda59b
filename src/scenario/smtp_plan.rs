//! The SMTP part of a plan and the SMTP transport's [`Vocabulary`]: its
//! keys (none yet: an SMTP run reads only common keys), its policies and
//! its faults. Keys only SMTP reads go into [`SmtpPlan`] and `SMTP.keys`.

use super::plan::Invalid;
use super::spec::{FaultKind, Spec, Transport};
use super::transport::Vocabulary;
use crate::policy::{ConsumerPolicy, Guarantee, ProducerPolicy};
use serde::{Deserialize, Serialize};

/// What only an SMTP run uses (nothing yet beyond the common settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpPlan {}

/// The SMTP transport's keys, policies and faults.
pub const SMTP: Vocabulary = Vocabulary {
    transport: Transport::Smtp,
    keys: &[],
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
    pub fn from_spec(_spec: &Spec) -> Result<SmtpPlan, Invalid> {
        Ok(SmtpPlan {})
    }
}
