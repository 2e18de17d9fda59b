//! A saved run, read back: its history (`history.tsv`), its effect store
//! and its plan, as a run directory under `.dlab/runs/` holds them.
//!
//! Two commands read a saved run. `dlab check` re-folds the history's
//! ledger events and the effect store's rows into a fresh
//! [`Ledger`](crate::ledger::Ledger), as the run's own fold did, and judges
//! the reconciliation ([`check`]). `dlab explain` tells one message's story
//! across the hops, every line taken from a history line or an effect-store
//! row, and says why it was lost or duplicated ([`explain`]).
//!
//! Files: [`locate`] finds a run from what the user typed, [`read`] parses
//! the history, [`store`] reads effect-store rows with their processes,
//! [`accounts`] asks whether the history accounts for every row.

pub mod accounts;
pub mod check;
pub mod explain;
pub mod locate;
pub mod read;
pub mod store;

pub use locate::RunFiles;

use std::path::PathBuf;

/// Why a saved run cannot be read (bad input: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A line of the history is not one the runner writes.
    #[error("{path}:{line}: not a history line (at_us, worker, pid, event): {text:?}")]
    BadLine {
        /// The history file.
        path: PathBuf,
        /// Its 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// The effect store could not be read.
    #[error("effect store {path}: {source}")]
    Store {
        /// The SQLite file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// Anything else wrong with what was given, in one sentence.
    #[error("{0}")]
    Input(String),
}

impl HistoryError {
    /// Maps an OS error on `path` to [`HistoryError::Io`].
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> HistoryError + '_ {
        move |source| HistoryError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
