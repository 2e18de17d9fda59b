//! Reading the relay's own log: how many times Postfix says it delivered
//! each Message-ID. This is a count independent of dlab's ledger (which
//! counts effects in the inbox's store), so a report can set the two side by
//! side.
//!
//! A delivery is a `status=sent` line, or a deferral that Postfix itself
//! marks "message may be sent more than once" (the connection was lost or
//! timed out after the final "."): RFC 1047's duplicate, in Postfix's words.
//!
//! It also reads what the relay did about ESMTP: a `status=bounced` line
//! (with Postfix's reason), a "sender non-delivery notification" (the
//! return it sent), and the Content-Transfer-Encoding each message had as it
//! came in (`cleanup`) and as it went out (`smtp`), logged by the relay's
//! header checks: 8bit in and quoted-printable out is a downgrade.

use std::collections::HashMap;

/// What the log says about the messages of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCount {
    /// Message-IDs with at least one delivery.
    pub messages: u64,
    /// Deliveries (sent, plus "may be sent more than once").
    pub deliveries: u64,
    /// Of those, "may be sent more than once" deferrals.
    pub maybe_twice: u64,
    /// Postfix's reason for each message it bounced (`status=bounced`), in
    /// log order.
    pub bounced: Vec<String>,
    /// Returns (non-delivery notifications) the relay made for the run's messages.
    pub returns_sent: u64,
    /// Messages that came in 8bit and went out quoted-printable.
    pub downgraded: u64,
}

impl LogCount {
    /// Deliveries beyond the first of each message.
    pub fn duplicates(&self) -> u64 {
        self.deliveries - self.messages
    }
}

/// Counts deliveries of Message-IDs that start with `prefix` in a Postfix log.
pub fn count(log: &str, prefix: &str) -> LogCount {
    let mut ids: HashMap<&str, &str> = HashMap::new();
    let mut per_message: HashMap<&str, u64> = HashMap::new();
    let mut maybe_twice = 0;
    let mut bounced: Vec<(&str, &str)> = Vec::new();
    let mut returns: Vec<&str> = Vec::new();
    let mut came_in_8bit: Vec<&str> = Vec::new();
    let mut went_out_qp: Vec<&str> = Vec::new();
    for line in log.lines() {
        let Some((queue_id, rest)) = entry(line) else {
            continue;
        };
        if let Some(id) = rest.strip_prefix("message-id=") {
            let id = id.trim().trim_start_matches('<').trim_end_matches('>');
            ids.insert(queue_id, id);
            continue;
        }
        if let Some(cte) = rest.strip_prefix("info: header Content-Transfer-Encoding:") {
            let value = cte.trim_start().split([' ', ':', ';']).next().unwrap_or("");
            if line.contains("/cleanup[") && value.eq_ignore_ascii_case("8bit") {
                came_in_8bit.push(queue_id);
            } else if line.contains("/smtp[") && value.eq_ignore_ascii_case("quoted-printable") {
                went_out_qp.push(queue_id);
            }
            continue;
        }
        if rest.starts_with("sender non-delivery notification:") {
            returns.push(queue_id);
            continue;
        }
        if let Some(reason) = bounce_reason(rest) {
            bounced.push((queue_id, reason));
            continue;
        }
        let sent = rest.contains(" status=sent ");
        // Deferrals by the `error` transport ("delivery temporarily
        // suspended", relay=none) repeat an earlier reason; nothing was sent.
        let twice = rest.contains(" status=deferred ")
            && rest.contains("may be sent more than once")
            && !rest.contains("relay=none");
        if !(sent || twice) {
            continue;
        }
        let Some(id) = ids.get(queue_id).filter(|id| id.starts_with(prefix)) else {
            continue;
        };
        *per_message.entry(id).or_default() += 1;
        if twice {
            maybe_twice += 1;
        }
    }
    let ours = |q: &&str| ids.get(q).is_some_and(|id| id.starts_with(prefix));
    let distinct = |qs: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = qs
            .iter()
            .filter(|q| ours(q))
            .map(|q| q.to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let (came_in_8bit, went_out_qp) = (distinct(&came_in_8bit), distinct(&went_out_qp));
    LogCount {
        messages: per_message.len() as u64,
        deliveries: per_message.values().sum(),
        maybe_twice,
        bounced: bounced
            .iter()
            .filter(|(q, _)| ours(q))
            .map(|(_, reason)| reason.to_string())
            .collect(),
        returns_sent: distinct(&returns).len() as u64,
        downgraded: came_in_8bit
            .iter()
            .filter(|q| went_out_qp.contains(q))
            .count() as u64,
    }
}

/// Postfix's reason for bouncing the message with Message-ID `id`, if its
/// log says it bounced it (`status=bounced (...)`), with the log's line
/// number (from 1).
pub fn bounce_of(log: &str, id: &str) -> Option<(usize, String)> {
    let mut queue_ids: Vec<&str> = Vec::new();
    for (n, line) in log.lines().enumerate() {
        let Some((queue_id, rest)) = entry(line) else {
            continue;
        };
        if let Some(m) = rest.strip_prefix("message-id=") {
            if m.trim().trim_start_matches('<').trim_end_matches('>') == id {
                queue_ids.push(queue_id);
            }
        } else if queue_ids.contains(&queue_id) {
            if let Some(reason) = bounce_reason(rest) {
                return Some((n + 1, reason.to_string()));
            }
        }
    }
    None
}

/// The reason in a `... status=bounced (REASON)` entry.
fn bounce_reason(rest: &str) -> Option<&str> {
    let (_, reason) = rest.split_once(" status=bounced (")?;
    Some(reason.strip_suffix(')').unwrap_or(reason))
}

/// The queue ID and the rest of a line `... postfix/smtp[12]: 4F2A1B: rest`.
fn entry(line: &str) -> Option<(&str, &str)> {
    let start = line.find("postfix")?;
    let (_, after) = line[start..].split_once("]: ")?;
    let (queue_id, rest) = after.split_once(": ")?;
    queue_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric())
        .then_some((queue_id, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
Nov 27 10:00:00 relay postfix/smtpd[10]: 1A2B: client=localhost[127.0.0.1]
Nov 27 10:00:00 relay postfix/cleanup[11]: 1A2B: message-id=<run1-0@dlab>
Nov 27 10:00:00 relay postfix/cleanup[11]: 3C4D: message-id=<run1-1@dlab>
Nov 27 10:00:00 relay postfix/cleanup[11]: 5E6F: message-id=<other-1@dlab>
Nov 27 10:00:01 relay postfix/smtp[12]: 1A2B: to=<p@x>, relay=127.0.0.1[127.0.0.1]:25, status=deferred (lost connection with 127.0.0.1[127.0.0.1] while sending end of data -- message may be sent more than once)
Nov 27 10:00:01 relay postfix/smtp[12]: 3C4D: to=<p@x>, relay=none, status=deferred (connect to 127.0.0.1[127.0.0.1]:25: Connection refused)
Nov 27 10:00:01 relay postfix/error[14]: 3C4D: to=<p@x>, relay=none, status=deferred (delivery temporarily suspended: lost connection with 127.0.0.1[127.0.0.1] while sending end of data -- message may be sent more than once)
Nov 27 10:00:02 relay postfix/smtp[12]: 1A2B: to=<p@x>, relay=127.0.0.1[127.0.0.1]:25, status=sent (250 2.0.0 Ok)
Nov 27 10:00:02 relay postfix/smtp[12]: 3C4D: to=<p@x>, relay=127.0.0.1[127.0.0.1]:25, status=sent (250 2.0.0 Ok)
Nov 27 10:00:02 relay postfix/smtp[12]: 5E6F: to=<p@x>, relay=127.0.0.1[127.0.0.1]:25, status=sent (250 2.0.0 Ok)
Nov 27 10:00:02 relay postfix/qmgr[13]: 1A2B: removed
";

    #[test]
    fn sent_lines_and_maybe_twice_deferrals_count_per_message_id() {
        let c = count(LOG, "run1-");
        assert_eq!(
            c,
            LogCount {
                messages: 2,
                deliveries: 3,
                maybe_twice: 1,
                ..LogCount::default()
            }
        );
        assert_eq!(c.duplicates(), 1);
        assert_eq!(count(LOG, "none-").deliveries, 0);
    }

    /// As Postfix 3.7 writes them, with the private relay's header checks.
    const ESMTP_LOG: &str = "\
Nov 28 15:29:30 relay postfix/cleanup[9]: 89B2: message-id=<run2-0@dlab>
Nov 28 15:29:30 relay postfix/cleanup[9]: 89B2: info: header Content-Transfer-Encoding: 8bit from localhost[127.0.0.1]; from=<notify@dlab.invalid> to=<phone@dlab.invalid> proto=ESMTP helo=<sender>: dlab: transfer encoding
Nov 28 15:29:30 relay postfix/smtp[10]: 89B2: info: header Content-Transfer-Encoding: quoted-printable: dlab: transfer encoding
Nov 28 15:29:30 relay postfix/smtp[10]: 89B2: to=<phone@dlab.invalid>, relay=127.0.0.1[127.0.0.1]:2626, delay=0.02, delays=0.01/0.01/0/0, dsn=2.0.0, status=sent (250 ok)
Nov 28 15:29:31 relay postfix/cleanup[9]: 5EC3: message-id=<run2-1@dlab>
Nov 28 15:29:31 relay postfix/cleanup[9]: 5EC3: info: header Content-Transfer-Encoding: 8bit from localhost[127.0.0.1]; from=<notify@dlab.invalid> to=<téléphone@dlab.invalid> proto=ESMTP helo=<sender>: dlab: transfer encoding
Nov 28 15:29:31 relay postfix/smtp[10]: 5EC3: to=<téléphone@dlab.invalid>, relay=127.0.0.1[127.0.0.1]:2626, delay=0, delays=0/0/0/0, dsn=5.6.7, status=bounced (SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1])
Nov 28 15:29:31 relay postfix/cleanup[9]: 61D2: message-id=<20261128152854.61D2@relay.dlab.invalid>
Nov 28 15:29:31 relay postfix/bounce[11]: 5EC3: sender non-delivery notification: 61D2
Nov 28 15:29:31 relay postfix/smtp[10]: 61D2: to=<notify@dlab.invalid>, relay=127.0.0.1[127.0.0.1]:2627, delay=0, dsn=5.6.7, status=bounced (SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1])
";

    #[test]
    fn bounces_returns_and_downgrades_are_read_per_message_of_the_run() {
        let c = count(ESMTP_LOG, "run2-");
        assert_eq!(c.messages, 1);
        assert_eq!(c.downgraded, 1, "8bit in, quoted-printable out");
        assert_eq!(
            c.bounced,
            ["SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1]"],
            "the return's own bounce is not the run's"
        );
        assert_eq!(c.returns_sent, 1);
        let (line, why) = bounce_of(ESMTP_LOG, "run2-1@dlab").unwrap();
        assert_eq!(line, 7);
        assert!(why.starts_with("SMTPUTF8 is required"), "{why}");
        assert_eq!(bounce_of(ESMTP_LOG, "run2-0@dlab"), None);
    }
}
