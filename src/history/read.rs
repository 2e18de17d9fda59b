//! Reading a history file: one line per event a worker (or the SMTP sender
//! or inbox) reported, as the runner wrote it: `at_us \t worker \t pid \t
//! event`, the event in the worker protocol (`src/worker/wire.rs`) or
//! `exit CODE` / `signal N` when a process ended. Lines starting with `#`
//! are comments. The file is streamed: a run of 10^7 messages has a history
//! of tens of millions of lines.

use super::HistoryError;
use crate::ledger::Event;
use crate::worker::wire::WireEvent;
use std::io::BufRead;
use std::path::Path;

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Its 1-based line number in the file.
    pub number: usize,
    /// µs since the run started, when the runner read the event (a worker
    /// reports in batches, so up to about 50 ms after it happened).
    pub at_us: u64,
    /// Who reported it: `producer 0`, `consumer 1`, `sender`, `inbox`.
    pub worker: String,
    /// Its OS process (for consumers, the effect store's `pid`).
    pub pid: u32,
    /// What happened.
    pub what: What,
}

/// What a history line records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// An event of the worker protocol.
    Event(WireEvent),
    /// The process exited with this code.
    Exit(i32),
    /// The process was ended by this signal (None: the runner could not tell).
    Signal(Option<i32>),
}

impl Line {
    /// The ledger event the line carries, if any.
    pub fn ledger_event(&self) -> Option<Event> {
        match self.what {
            What::Event(WireEvent::Ledger(e)) => Some(e),
            _ => None,
        }
    }

    /// The message the line is about: a ledger event's message, the one an
    /// abort names, or the one a call to the push gateway was for.
    pub fn seq(&self) -> Option<u64> {
        match &self.what {
            What::Event(WireEvent::Ledger(e)) => e.seq(),
            What::Event(WireEvent::Aborted { seq, .. }) => *seq,
            What::Event(WireEvent::Push { seq, .. }) => *seq,
            _ => None,
        }
    }

    /// Whether the line says the process ended abnormally: an abort at a
    /// crash point, a non-zero exit, or a signal.
    pub fn ends_abnormally(&self) -> bool {
        match self.what {
            What::Event(WireEvent::Aborted { .. }) | What::Signal(_) => true,
            What::Exit(code) => code != 0,
            What::Event(_) => false,
        }
    }
}

/// A line that is not one the runner writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotALine;

/// Parses line `number` of a history; `Ok(None)` for a comment or a blank line.
pub fn parse(number: usize, text: &str) -> Result<Option<Line>, NotALine> {
    if text.starts_with('#') || text.trim().is_empty() {
        return Ok(None);
    }
    let f: Vec<&str> = text.splitn(4, '\t').collect();
    let [at, worker, pid, event] = f[..] else {
        return Err(NotALine);
    };
    let what = if let Some(code) = event.strip_prefix("exit ") {
        What::Exit(code.parse().map_err(|_| NotALine)?)
    } else if let Some(sig) = event.strip_prefix("signal ") {
        What::Signal(match sig {
            "?" => None,
            n => Some(n.parse().map_err(|_| NotALine)?),
        })
    } else {
        What::Event(WireEvent::parse(event).ok_or(NotALine)?)
    };
    if worker.is_empty() {
        return Err(NotALine);
    }
    Ok(Some(Line {
        number,
        at_us: at.parse().map_err(|_| NotALine)?,
        worker: worker.to_string(),
        pid: pid.parse().map_err(|_| NotALine)?,
        what,
    }))
}

/// Calls `f` with every line of the history at `path`, in file order;
/// returns how many event lines there were.
pub fn for_each(path: &Path, mut f: impl FnMut(Line)) -> Result<u64, HistoryError> {
    let file = std::fs::File::open(path).map_err(HistoryError::io(path))?;
    let mut n = 0;
    for (i, text) in std::io::BufReader::new(file).lines().enumerate() {
        let text = text.map_err(HistoryError::io(path))?;
        match parse(i + 1, &text) {
            Ok(Some(line)) => {
                n += 1;
                f(line);
            }
            Ok(None) => {}
            Err(NotALine) => {
                return Err(HistoryError::BadLine {
                    path: path.to_path_buf(),
                    line: i + 1,
                    text,
                })
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_line_parses() {
        let l = parse(3, "1500\tconsumer 1\t42\tR 7 1").unwrap().unwrap();
        assert_eq!((l.number, l.at_us, l.pid), (3, 1500, 42));
        assert_eq!(l.worker, "consumer 1");
        assert_eq!(
            l.ledger_event(),
            Some(Event::Delivered {
                seq: 7,
                redelivered: true
            })
        );
        assert_eq!(l.seq(), Some(7));
        assert!(!l.ends_abnormally());
        let abort = parse(1, "9\tconsumer 0\t41\tabort after-ack 3 12")
            .unwrap()
            .unwrap();
        assert_eq!((abort.seq(), abort.ledger_event()), (Some(12), None));
        assert!(abort.ends_abnormally());
        let exit = |s: &str| parse(1, s).unwrap().unwrap();
        assert_eq!(exit("9\tproducer 0\t40\texit 0").what, What::Exit(0));
        assert!(!exit("9\tproducer 0\t40\texit 0").ends_abnormally());
        assert!(exit("9\tconsumer 0\t40\texit 75").ends_abnormally());
        assert_eq!(
            exit("9\tconsumer 0\t40\tsignal 6").what,
            What::Signal(Some(6))
        );
        assert_eq!(exit("9\tconsumer 0\t40\tsignal ?").what, What::Signal(None));
        assert_eq!(exit("9\tinbox\t40\tready").seq(), None);
    }

    #[test]
    fn comments_and_blank_lines_are_skipped_and_garbage_is_an_error() {
        assert_eq!(parse(1, "# at_us\tworker\tpid\tevent"), Ok(None));
        assert_eq!(parse(1, ""), Ok(None));
        for bad in [
            "1\tconsumer 0\t2",
            "x\tconsumer 0\t2\tA 1",
            "1\tconsumer 0\tx\tA 1",
            "1\tconsumer 0\t2\tA",
            "1\t\t2\tA 1",
            "1\tconsumer 0\t2\texit x",
            "1\tconsumer 0\t2\tsignal",
        ] {
            assert_eq!(parse(1, bad), Err(NotALine), "{bad:?}");
        }
    }
}
