//! Effect-store rows with the process that wrote them, read with plain SQL
//! (read only): what `dlab check` folds and `dlab explain` tells. The
//! runner reads the same rows through `EffectStore::scan`; here the `pid`
//! and the row's ID come along, so a row can be set beside the history.

use super::HistoryError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// What a row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An effect was applied (table `effects`).
    Effect,
    /// The idempotent layer recognised the message and applied nothing
    /// (table `suppressed`).
    Suppressed,
}

/// One row of the effect store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Effect or suppressed.
    pub kind: Kind,
    /// The row's `id` in its table.
    pub id: i64,
    /// The message ID.
    pub message_id: String,
    /// The process that wrote it.
    pub pid: u32,
    /// When, µs since the Unix epoch (`applied_at_us` or `at_us`).
    pub at_us: i64,
}

/// An effect store opened read only.
pub struct Store {
    conn: Connection,
    path: std::path::PathBuf,
}

impl Store {
    /// Opens the store at `path`, which must exist.
    pub fn open(path: &Path) -> Result<Store, HistoryError> {
        if !path.is_file() {
            return Err(HistoryError::Input(format!(
                "{}: no effect store (a run directory holds effects.sqlite)",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| HistoryError::Store {
                path: path.to_path_buf(),
                source,
            },
        )?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> HistoryError + '_ {
        |source| HistoryError::Store {
            path: self.path.clone(),
            source,
        }
    }

    /// Calls `f` with every row (of one message, when `message_id` is
    /// given): effects first, then suppressed rows, each table in the order
    /// its rows were written, as the runner reads them.
    pub fn for_each(
        &self,
        message_id: Option<&str>,
        mut f: impl FnMut(Row),
    ) -> Result<(), HistoryError> {
        let only = if message_id.is_some() {
            "WHERE message_id = ?1"
        } else {
            "WHERE ?1 IS NULL"
        };
        for (kind, table, at) in [
            (Kind::Effect, "effects", "applied_at_us"),
            (Kind::Suppressed, "suppressed", "at_us"),
        ] {
            let sql = format!("SELECT id, message_id, pid, {at} FROM {table} {only} ORDER BY id");
            let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
            let mut rows = stmt.query([message_id]).map_err(self.err())?;
            while let Some(r) = rows.next().map_err(self.err())? {
                f(Row {
                    kind,
                    id: r.get(0).map_err(self.err())?,
                    message_id: r.get(1).map_err(self.err())?,
                    pid: r.get(2).map_err(self.err())?,
                    at_us: r.get(3).map_err(self.err())?,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::EffectStore;

    #[test]
    fn rows_come_with_their_process_effects_first() {
        let dir = std::env::temp_dir().join(format!("dlab-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("effects.sqlite");
        let mut s = EffectStore::create(&path).unwrap();
        let mut b = s.batch(0).unwrap();
        b.apply_once("r-1", 10).unwrap();
        b.apply_once("r-1", 11).unwrap();
        b.apply("r-2", 12).unwrap();
        b.commit().unwrap();
        drop(s);
        let store = Store::open(&path).unwrap();
        let mut all = Vec::new();
        store.for_each(None, |r| all.push(r)).unwrap();
        let pid = std::process::id();
        let row = |kind, id, m: &str, at| Row {
            kind,
            id,
            message_id: m.into(),
            pid,
            at_us: at,
        };
        assert_eq!(
            all,
            vec![
                row(Kind::Effect, 1, "r-1", 10),
                row(Kind::Effect, 2, "r-2", 12),
                row(Kind::Suppressed, 1, "r-1", 11)
            ]
        );
        let mut one = Vec::new();
        store.for_each(Some("r-2"), |r| one.push(r)).unwrap();
        assert_eq!(one, vec![row(Kind::Effect, 2, "r-2", 12)]);
        assert!(Store::open(&dir.join("none.sqlite")).is_err());
        assert!(!dir.join("none.sqlite").exists(), "nothing is created");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
