//! Finding a saved run from what the user typed: a run directory, a run ID
//! under `DLAB_HOME/runs/`, a `--json` result (whose `history` names the
//! history file; the run directory is its parent; a `dlab matrix --json`
//! list is narrowed to one run by the message's run ID), or a history file
//! itself. A run directory holds `history.tsv`, `effects.sqlite`,
//! `plan.json`, and maybe a `result.json`.

use super::HistoryError;
use crate::report::RunResult;
use crate::scenario::Plan;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The files of one saved run.
#[derive(Debug, Clone)]
pub struct RunFiles {
    /// The run directory.
    pub dir: PathBuf,
    /// The run's ID (the prefix of its message IDs).
    pub run_id: String,
    /// Its history.
    pub history: PathBuf,
    /// Its effect store.
    pub effects: PathBuf,
    /// The plan it ran (`plan.json`).
    pub plan: Plan,
    /// Its result, when one was given (`--json`) or the run directory
    /// holds one (`result.json`): the fault timeline and time zero.
    pub result: Option<RunResult>,
}

impl RunFiles {
    /// Finds the run `what` names; `run_id` (from a full message ID) picks
    /// one result of a list.
    pub fn locate(
        what: &Path,
        home: &Path,
        run_id: Option<&str>,
    ) -> Result<RunFiles, HistoryError> {
        if what.is_dir() {
            return RunFiles::in_dir(what, None, None);
        }
        if what.is_file() {
            if !looks_like_json(what)? {
                // A history file: its run directory is where it lies.
                let dir = parent(what);
                return RunFiles::in_dir(&dir, Some(what.to_path_buf()), None);
            }
            let result = read_result(what, run_id)?;
            let history = result.history.clone().map(PathBuf::from).ok_or_else(|| {
                HistoryError::Input(format!(
                    "{}: the result names no history (made by a dlab without histories?)",
                    what.display()
                ))
            })?;
            if !history.is_file() {
                return Err(HistoryError::Input(format!(
                    "{}: its history {} does not exist (removed by `dlab clean`?)",
                    what.display(),
                    history.display()
                )));
            }
            return RunFiles::in_dir(&parent(&history), Some(history.clone()), Some(result));
        }
        let by_id = home.join("runs").join(what);
        if what.components().count() == 1 && by_id.is_dir() {
            return RunFiles::in_dir(&by_id, None, None);
        }
        Err(HistoryError::Input(format!(
            "{}: no such run: expected a run directory, a run ID under {}, or a result file of `dlab run --json`",
            what.display(),
            home.join("runs").display()
        )))
    }

    fn in_dir(
        dir: &Path,
        history: Option<PathBuf>,
        result: Option<RunResult>,
    ) -> Result<RunFiles, HistoryError> {
        let history = history.unwrap_or_else(|| dir.join("history.tsv"));
        if !history.is_file() {
            return Err(HistoryError::Input(format!(
                "{}: no history.tsv: not a run directory",
                dir.display()
            )));
        }
        let plan_file = dir.join("plan.json");
        let bytes = std::fs::read(&plan_file).map_err(HistoryError::io(&plan_file))?;
        let plan: Plan = serde_json::from_slice(&bytes).map_err(|e| {
            HistoryError::Input(format!("{}: not a dlab plan: {e}", plan_file.display()))
        })?;
        let result = match result {
            Some(r) => Some(r),
            None => {
                let kept = dir.join("result.json");
                kept.is_file()
                    .then(|| read_result(&kept, None))
                    .transpose()?
            }
        };
        let run_id = match &result {
            Some(r) => r.run_id.clone(),
            None => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        Ok(RunFiles {
            dir: dir.to_path_buf(),
            run_id,
            history,
            effects: dir.join("effects.sqlite"),
            plan,
            result,
        })
    }

    /// The wall clock at the run's time zero, µs since the Unix epoch, and
    /// whether it is exact (from the result) or estimated (from when the
    /// history file was created, which is within microseconds of it).
    pub fn started_unix_us(&self) -> (i64, bool) {
        if let Some(r) = self.result.as_ref().filter(|r| r.started_unix_us > 0) {
            return (r.started_unix_us, true);
        }
        let meta = std::fs::metadata(&self.history).ok();
        let when = meta
            .as_ref()
            .and_then(|m| m.created().ok())
            .or_else(|| meta.as_ref().and_then(|m| m.modified().ok()));
        let us = when
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_micros() as i64);
        (us, false)
    }
}

fn parent(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether the file's first non-blank byte opens a JSON object or list.
fn looks_like_json(path: &Path) -> Result<bool, HistoryError> {
    let mut head = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(HistoryError::io(path))?;
    Ok(head[..n]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{' || *b == b'['))
}

/// The result in a `--json` file: the one result of `dlab run`, or the one
/// of run `run_id` in a list of `dlab matrix` or `dlab compare`.
fn read_result(path: &Path, run_id: Option<&str>) -> Result<RunResult, HistoryError> {
    let bytes = std::fs::read(path).map_err(HistoryError::io(path))?;
    let not_a_result = |e: serde_json::Error| {
        HistoryError::Input(format!(
            "{}: not a dlab result (from `dlab run --json`): {e}",
            path.display()
        ))
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(not_a_result)?;
    if !value.is_array() {
        return serde_json::from_value(value).map_err(not_a_result);
    }
    let list: Vec<RunResult> = serde_json::from_value(value).map_err(not_a_result)?;
    let ids = || {
        list.iter()
            .map(|r| r.run_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (run_id, list.len()) {
        (_, 1) => Ok(list.into_iter().next().expect("one")),
        (Some(id), _) => {
            let ids = ids();
            list.into_iter().find(|r| r.run_id == id).ok_or_else(|| {
                HistoryError::Input(format!(
                    "{}: no run {id} among its results (runs {ids})",
                    path.display()
                ))
            })
        }
        (None, n) => Err(HistoryError::Input(format!(
            "{}: holds {n} results (runs {}): name the message by its full ID (RUN-SEQ)",
            path.display(),
            ids()
        ))),
    }
}
