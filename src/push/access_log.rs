//! The gateway's access log: the independent count. One TSV line per
//! request the gateway answered,
//!
//! ```text
//! at_us  status  outcome  message_id  key  consumer  micros
//! ```
//!
//! (`-` for an absent message ID or key). A line reporting an effect is
//! written only after that effect is committed, and before the response
//! leaves; `micros` is the time from the request's arrival to its line.
//! [`recount`] reads the file back on its own, knowing nothing of the
//! gateway's counters or the effect store.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Mutex;

/// What the gateway did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// An effect was committed (a notification shown).
    Applied,
    /// A key seen before: the first response returned again, no effect.
    Replayed,
    /// 409: the key's first request was still running; no effect.
    InFlight,
    /// 503 by an injected fault; no effect.
    Unavailable,
    /// 429 by an injected fault; no effect.
    Throttled,
    /// 400, 404, 405 or 413: not a push request; no effect.
    BadRequest,
    /// 500: the effect store failed; no effect.
    Error,
}

impl Outcome {
    /// Every outcome, in order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Applied,
        Outcome::Replayed,
        Outcome::InFlight,
        Outcome::Unavailable,
        Outcome::Throttled,
        Outcome::BadRequest,
        Outcome::Error,
    ];

    /// Its name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Replayed => "replayed",
            Outcome::InFlight => "in-flight",
            Outcome::Unavailable => "unavailable",
            Outcome::Throttled => "throttled",
            Outcome::BadRequest => "bad-request",
            Outcome::Error => "error",
        }
    }

    /// The outcome a log name stands for.
    pub fn parse(name: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

/// One request, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// When it was answered (µs since the Unix epoch, the effect store's clock).
    pub at_us: i64,
    /// The HTTP status code.
    pub status: u16,
    /// What was done.
    pub outcome: Outcome,
    /// The push's message ID, if the request named one.
    pub message_id: Option<&'a str>,
    /// Its `Idempotency-Key`, if any.
    pub key: Option<&'a str>,
    /// The calling consumer (`X-Dlab-Consumer`, 0 when absent).
    pub consumer: u32,
    /// Microseconds from the request's arrival to this line.
    pub micros: u64,
}

/// An open access log. Lines are buffered; [`AccessLog::flush`] (or
/// dropping the log) writes them out.
pub struct AccessLog {
    out: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl AccessLog {
    /// Creates (or truncates) the log at `path`.
    pub fn create(path: &Path) -> std::io::Result<AccessLog> {
        Ok(AccessLog {
            out: Mutex::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        })
    }

    /// Appends one line. Tabs and line ends in a field become spaces, so a
    /// line stays one line of seven fields.
    pub fn write(&self, line: &Line<'_>) -> std::io::Result<()> {
        let field = |v: Option<&str>| match v {
            None => "-".to_string(),
            Some(v) => v.replace(['\t', '\r', '\n'], " "),
        };
        let text = format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            line.at_us,
            line.status,
            line.outcome.as_str(),
            field(line.message_id),
            field(line.key),
            line.consumer,
            line.micros
        );
        let mut out = self
            .out
            .lock()
            .map_err(|_| std::io::Error::other("access log lock poisoned"))?;
        out.write_all(text.as_bytes())
    }

    /// Writes out every buffered line.
    pub fn flush(&self) -> std::io::Result<()> {
        match self.out.lock() {
            Ok(mut out) => out.flush(),
            Err(_) => Err(std::io::Error::other("access log lock poisoned")),
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// An access log counted again from its file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recount {
    /// Lines, one per request.
    pub requests: u64,
    /// Requests by HTTP status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests by outcome.
    pub by_outcome: BTreeMap<Outcome, u64>,
    /// Applied effects per message ID (`applied` lines naming one).
    pub applied_ids: HashMap<String, u64>,
    /// Lines that are not seven well-formed fields (a torn last line).
    pub malformed: u64,
}

impl Recount {
    /// How many requests had `outcome`.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.by_outcome.get(&outcome).copied().unwrap_or(0)
    }

    /// Distinct message IDs with an applied effect.
    pub fn distinct_applied(&self) -> u64 {
        self.applied_ids.len() as u64
    }

    /// Applied effects beyond the first of each message ID.
    pub fn duplicates(&self) -> u64 {
        self.applied_ids.values().map(|n| n.saturating_sub(1)).sum()
    }
}

/// Reads the access log at `path` and counts it, independently of
/// everything else.
pub fn recount(path: &Path) -> std::io::Result<Recount> {
    let mut count = Recount::default();
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    for line in file.lines() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let parsed = match fields[..] {
            [at, status, outcome, id, _key, consumer, micros] => (|| {
                at.parse::<i64>().ok()?;
                consumer.parse::<u32>().ok()?;
                micros.parse::<u64>().ok()?;
                Some((status.parse::<u16>().ok()?, Outcome::parse(outcome)?, id))
            })(),
            _ => None,
        };
        let Some((status, outcome, id)) = parsed else {
            count.malformed += 1;
            continue;
        };
        count.requests += 1;
        *count.by_status.entry(status).or_default() += 1;
        *count.by_outcome.entry(outcome).or_default() += 1;
        if outcome == Outcome::Applied && id != "-" {
            *count.applied_ids.entry(id.to_string()).or_default() += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_lines_are_counted_again_from_the_file() {
        let dir = std::env::temp_dir().join(format!("dlab-access-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("push-access.log");
        let log = AccessLog::create(&path).unwrap();
        let line = |status, outcome, id, key| Line {
            at_us: 1,
            status,
            outcome,
            message_id: id,
            key,
            consumer: 2,
            micros: 30,
        };
        log.write(&line(200, Outcome::Applied, Some("m1"), Some("k1")))
            .unwrap();
        log.write(&line(200, Outcome::Replayed, Some("m1"), Some("k1")))
            .unwrap();
        log.write(&line(200, Outcome::Applied, Some("m1"), None))
            .unwrap();
        log.write(&line(200, Outcome::Applied, Some("m\t2"), None))
            .unwrap();
        log.write(&line(503, Outcome::Unavailable, Some("m3"), None))
            .unwrap();
        log.write(&line(404, Outcome::BadRequest, None, None))
            .unwrap();
        drop(log);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"17\t200\tappl")
            .unwrap();
        let count = recount(&path).unwrap();
        assert_eq!(count.requests, 6);
        assert_eq!(count.malformed, 1);
        assert_eq!(
            count.by_status,
            BTreeMap::from([(200, 4), (404, 1), (503, 1)])
        );
        assert_eq!(count.count(Outcome::Applied), 3);
        assert_eq!(count.count(Outcome::Replayed), 1);
        assert_eq!(count.count(Outcome::Throttled), 0);
        assert_eq!(count.applied_ids.get("m 2"), Some(&1));
        assert_eq!((count.distinct_applied(), count.duplicates()), (2, 1));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn outcome_names_parse_back() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(Outcome::parse("other"), None);
    }
}
