//! The producer's append-only send log: what it is about to publish (written
//! ahead, before the publish) and what the broker confirmed (appended as
//! confirms arrive, in batches). A producer restarted after a crash reads it
//! to know what it must publish again.
//!
//! Invariant: a confirm-retry producer republishes everything the log cannot
//! prove confirmed; a fire-and-forget producer never sends twice what the log
//! says it sent. Confirms not yet written when the process dies are simply
//! republished (a duplicate, which at-least-once allows).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

/// What a previous process of the same producer left in the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Messages it had started to publish.
    pub sent: HashSet<u64>,
    /// Messages the broker had confirmed.
    pub confirmed: HashSet<u64>,
}

/// An open send log (or none, when the producer keeps no log).
#[derive(Debug, Default)]
pub struct SendLog {
    file: Option<File>,
    pending: Vec<u8>,
}

impl SendLog {
    /// Opens the log at `path` for appending and reads what it already holds.
    pub fn open(path: Option<&Path>) -> io::Result<(SendLog, Recovered)> {
        let Some(path) = path else {
            return Ok((SendLog::default(), Recovered::default()));
        };
        let mut recovered = Recovered::default();
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines() {
                let line = line?;
                let Some((tag, seq)) = line.split_once(' ') else {
                    continue;
                };
                let Ok(seq) = seq.parse::<u64>() else {
                    continue;
                };
                match tag {
                    "S" => recovered.sent.insert(seq),
                    "C" => recovered.confirmed.insert(seq),
                    _ => false,
                };
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok((
            SendLog {
                file: Some(file),
                pending: Vec::new(),
            },
            recovered,
        ))
    }

    /// Records, before publishing, that `seq` is about to be sent.
    pub fn sending(&mut self, seq: u64) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(format!("S {seq}\n").as_bytes()),
            None => Ok(()),
        }
    }

    /// Records that the broker confirmed `seq` (written at the next flush).
    pub fn confirmed(&mut self, seq: u64) {
        if self.file.is_some() {
            let _ = writeln!(self.pending, "C {seq}");
        }
    }

    /// Writes the confirms recorded since the last flush.
    pub fn flush(&mut self) -> io::Result<()> {
        if let (Some(f), false) = (&mut self.file, self.pending.is_empty()) {
            f.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_producer_reads_what_the_last_one_wrote() {
        let dir =
            std::env::temp_dir().join(format!("dlab-sendlog-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.sendlog");
        let (mut log, rec) = SendLog::open(Some(&path)).unwrap();
        assert_eq!(rec, Recovered::default());
        log.sending(1).unwrap();
        log.sending(2).unwrap();
        log.confirmed(1);
        log.flush().unwrap();
        log.confirmed(2); // never flushed: the process "died"
        drop(log);
        let (_, rec) = SendLog::open(Some(&path)).unwrap();
        assert_eq!(rec.sent, HashSet::from([1, 2]));
        assert_eq!(rec.confirmed, HashSet::from([1]));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
