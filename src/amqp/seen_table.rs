//! The consumer's local seen-table for the `seen-table` push policy: a
//! SQLite file of its own (`consumer-seen.sqlite` beside the effect store)
//! with the message IDs whose call to the gateway returned a 2xx.
//!
//! This is what many teams write around a remote call (check, call, mark),
//! and the lab keeps it honest: the mark is committed after the call and
//! cannot be in one transaction with an effect on somebody else's server, so
//! a response lost after the gateway applied the call, or a crash between the
//! call and the mark, leaves the ID unmarked and the next try calls again.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An open seen-table.
pub struct SeenTable {
    conn: Connection,
}

/// The seen-table's file beside the effect store at `store`.
pub fn path_beside(store: &Path) -> PathBuf {
    store.with_file_name("consumer-seen.sqlite")
}

impl SeenTable {
    /// Opens (or creates) the table at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<SeenTable> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS seen (message_id TEXT PRIMARY KEY) WITHOUT ROWID;",
        )?;
        Ok(SeenTable { conn })
    }

    /// Whether `id` was marked.
    pub fn has(&self, id: &str) -> rusqlite::Result<bool> {
        self.conn
            .query_row("SELECT 1 FROM seen WHERE message_id = ?1", [id], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
    }

    /// Marks `id` (committed at once).
    pub fn mark(&self, id: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO seen (message_id) VALUES (?1)")?
            .execute(params![id])
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_seen_by_the_next_process() {
        let dir = std::env::temp_dir().join(format!("dlab-seen-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = path_beside(&dir.join("effects.sqlite"));
        let t = SeenTable::open(&path).unwrap();
        assert!(!t.has("m1").unwrap());
        t.mark("m1").unwrap();
        t.mark("m1").unwrap();
        drop(t);
        assert!(SeenTable::open(&path).unwrap().has("m1").unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
