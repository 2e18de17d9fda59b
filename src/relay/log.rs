//! Reading the relay's own log: how many times Postfix says it delivered
//! each Message-ID. This is a count independent of dlab's ledger (which
//! counts effects in the inbox's store), so a report can set the two side by
//! side.
//!
//! A delivery is a `status=sent` line, or a deferral that Postfix itself
//! marks "message may be sent more than once" (the connection was lost or
//! timed out after the final "."): RFC 1047's duplicate, in Postfix's words.

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
    for line in log.lines() {
        let Some((queue_id, rest)) = entry(line) else {
            continue;
        };
        if let Some(id) = rest.strip_prefix("message-id=") {
            let id = id.trim().trim_start_matches('<').trim_end_matches('>');
            ids.insert(queue_id, id);
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
    LogCount {
        messages: per_message.len() as u64,
        deliveries: per_message.values().sum(),
        maybe_twice,
    }
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
                maybe_twice: 1
            }
        );
        assert_eq!(c.duplicates(), 1);
        assert_eq!(count(LOG, "none-").deliveries, 0);
    }
}
