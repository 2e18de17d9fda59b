//! The effect store: one SQLite file per run, one row per effect a user would
//! notice (a push notification shown).
//!
//! Architecture invariants:
//! - Duplicates and losses are counted on these rows, not on deliveries.
//! - The idempotent consumer's seen-check, effect and seen-insert happen in one
//!   transaction ([`Batch::apply_once`]); a consumer acks only after the commit
//!   that covers the delivery.
//! - A push gateway's idempotency key on disk (`push_keys`) commits in the
//!   transaction of the effect it answers for ([`Batch::key_remember`]).
//! - WAL with `synchronous = NORMAL`: a commit survives the abort of the
//!   process that made it (the fault model here); it may not survive a power loss.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Now on the effect store's time axis (µs since the Unix epoch), the one
/// clock effects, worker events and a run's start are placed on.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Something went wrong with the effect store file.
#[derive(Debug, thiserror::Error)]
#[error("effect store {path}: {source}")]
pub struct EffectStoreError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// What a row of the store records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// An effect was applied.
    Effect,
    /// The idempotent layer recognised an ID already seen and applied nothing.
    Suppressed,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS effects (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    consumer INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    applied_at_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (message_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS suppressed (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    consumer INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    at_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS push_keys (
    key TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    at_us INTEGER NOT NULL
);
";

/// An open effect store.
pub struct EffectStore {
    conn: Connection,
    path: PathBuf,
}

impl EffectStore {
    /// Creates (or opens) the store at `path` with its schema.
    pub fn create(path: &Path) -> Result<EffectStore, EffectStoreError> {
        let store = EffectStore::open(path)?;
        store.conn.execute_batch(SCHEMA).map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// Opens an existing store.
    pub fn open(path: &Path) -> Result<EffectStore, EffectStoreError> {
        let err = |source| EffectStoreError {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        Ok(EffectStore {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> EffectStoreError {
        EffectStoreError {
            path: self.path.clone(),
            source,
        }
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a batch of effects that commits as one transaction.
    pub fn batch(&mut self, consumer: u32) -> Result<Batch<'_>, EffectStoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| EffectStoreError {
                path: self.path.clone(),
                source,
            })?;
        Ok(Batch {
            tx,
            consumer,
            pid: std::process::id(),
            path: &self.path,
        })
    }

    /// Calls `f` with every row's message ID and time (µs since the Unix
    /// epoch), effects first, each table in the order the rows were written.
    pub fn scan(&self, mut f: impl FnMut(&str, Row, i64)) -> Result<(), EffectStoreError> {
        for (sql, row) in [
            (
                "SELECT message_id, applied_at_us FROM effects ORDER BY id",
                Row::Effect,
            ),
            (
                "SELECT message_id, at_us FROM suppressed ORDER BY id",
                Row::Suppressed,
            ),
        ] {
            let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;
            let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                let id: String = r.get(0).map_err(|e| self.err(e))?;
                let at: i64 = r.get(1).map_err(|e| self.err(e))?;
                f(&id, row, at);
            }
        }
        Ok(())
    }

    /// An independent recount straight from SQL: (effect rows, distinct message IDs).
    pub fn recount(&self) -> Result<(u64, u64), EffectStoreError> {
        self.conn
            .query_row(
                "SELECT count(*), count(DISTINCT message_id) FROM effects",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| self.err(e))
    }
}

/// Effects that commit together.
pub struct Batch<'a> {
    tx: Transaction<'a>,
    consumer: u32,
    pid: u32,
    path: &'a Path,
}

impl Batch<'_> {
    fn err(&self, source: rusqlite::Error) -> EffectStoreError {
        EffectStoreError {
            path: self.path.to_path_buf(),
            source,
        }
    }

    /// Applies the effect of `message_id` unconditionally.
    pub fn apply(&mut self, message_id: &str, now_us: i64) -> Result<(), EffectStoreError> {
        self.apply_as(message_id, self.consumer, self.pid, now_us)
    }

    /// Applies the effect of `message_id` unconditionally, attributed to
    /// consumer `consumer` in process `pid` rather than to the batch's own:
    /// for a server (the push gateway) that writes effects its callers caused.
    pub fn apply_as(
        &mut self,
        message_id: &str,
        consumer: u32,
        pid: u32,
        now_us: i64,
    ) -> Result<(), EffectStoreError> {
        let mut stmt = self
            .tx
            .prepare_cached("INSERT INTO effects (message_id, consumer, pid, applied_at_us) VALUES (?1, ?2, ?3, ?4)")
            .map_err(|e| self.err(e))?;
        stmt.execute(params![message_id, consumer, pid, now_us])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The response remembered for idempotency key `key` and when it was
    /// remembered (µs since the Unix epoch), if any; see [`Batch::key_remember`].
    pub fn key_lookup(&mut self, key: &str) -> Result<Option<(String, i64)>, EffectStoreError> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT response, at_us FROM push_keys WHERE key = ?1")
            .map_err(|e| self.err(e))?;
        stmt.query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Remembers `response` for idempotency key `key` at `at_us`, replacing
    /// what was remembered before. In the batch that applies the key's
    /// effect, so the key and its effect commit together.
    pub fn key_remember(
        &mut self,
        key: &str,
        response: &str,
        at_us: i64,
    ) -> Result<(), EffectStoreError> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "INSERT OR REPLACE INTO push_keys (key, response, at_us) VALUES (?1, ?2, ?3)",
            )
            .map_err(|e| self.err(e))?;
        stmt.execute(params![key, response, at_us])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Applies the effect unless `message_id` was seen; returns whether it was applied.
    /// The check, the effect and the seen-insert are one transaction.
    pub fn apply_once(&mut self, message_id: &str, now_us: i64) -> Result<bool, EffectStoreError> {
        let inserted = {
            let mut stmt = self
                .tx
                .prepare_cached("INSERT OR IGNORE INTO seen (message_id) VALUES (?1)")
                .map_err(|e| self.err(e))?;
            stmt.execute(params![message_id]).map_err(|e| self.err(e))?
        };
        if inserted == 1 {
            self.apply(message_id, now_us)?;
            Ok(true)
        } else {
            let mut stmt = self
                .tx
                .prepare_cached("INSERT INTO suppressed (message_id, consumer, pid, at_us) VALUES (?1, ?2, ?3, ?4)")
                .map_err(|e| self.err(e))?;
            stmt.execute(params![message_id, self.consumer, self.pid, now_us])
                .map_err(|e| self.err(e))?;
            Ok(false)
        }
    }

    /// Makes the batch's effects durable.
    pub fn commit(self) -> Result<(), EffectStoreError> {
        let path = self.path.to_path_buf();
        self.tx
            .commit()
            .map_err(|source| EffectStoreError { path, source })
    }
}

/// Whether `message_id` has a row in `seen` (for tests and diagnostics).
pub fn was_seen(store: &EffectStore, message_id: &str) -> Result<bool, EffectStoreError> {
    store
        .conn
        .query_row(
            "SELECT 1 FROM seen WHERE message_id = ?1",
            [message_id],
            |_| Ok(()),
        )
        .optional()
        .map(|r| r.is_some())
        .map_err(|e| store.err(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (EffectStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("dlab-effects-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("effects.sqlite");
        (EffectStore::create(&path).unwrap(), dir)
    }

    #[test]
    fn apply_once_suppresses_a_second_effect() {
        let (mut store, dir) = temp_store();
        let mut b = store.batch(0).unwrap();
        assert!(b.apply_once("m1", 1).unwrap());
        assert!(!b.apply_once("m1", 2).unwrap());
        b.commit().unwrap();
        let mut b = store.batch(1).unwrap();
        assert!(!b.apply_once("m1", 3).unwrap());
        b.apply("m2", 4).unwrap();
        b.apply("m2", 5).unwrap();
        b.commit().unwrap();
        assert_eq!(store.recount().unwrap(), (3, 2));
        let mut rows = Vec::new();
        store
            .scan(|id, row, _| rows.push((id.to_string(), row)))
            .unwrap();
        assert_eq!(rows.iter().filter(|r| r.1 == Row::Suppressed).count(), 2);
        assert!(was_seen(&store, "m1").unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_key_commits_with_its_effect_and_rows_name_their_caller() {
        let (mut store, dir) = temp_store();
        {
            let mut b = store.batch(0).unwrap();
            b.apply_as("m1", 7, 4242, 1).unwrap();
            b.key_remember("k1", "first", 1).unwrap();
            assert_eq!(b.key_lookup("k1").unwrap(), Some(("first".into(), 1)));
        }
        let mut b = store.batch(0).unwrap();
        assert_eq!(b.key_lookup("k1").unwrap(), None, "rolled back together");
        b.apply_as("m1", 7, 4242, 2).unwrap();
        b.key_remember("k1", "first", 2).unwrap();
        b.key_remember("k1", "second", 3).unwrap();
        b.commit().unwrap();
        let mut b = store.batch(0).unwrap();
        assert_eq!(b.key_lookup("k1").unwrap(), Some(("second".into(), 3)));
        drop(b);
        let (consumer, pid): (u32, u32) = store
            .conn
            .query_row("SELECT consumer, pid FROM effects", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((consumer, pid), (7, 4242));
        assert_eq!(store.recount().unwrap(), (1, 1));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn now_is_microseconds_since_the_unix_epoch() {
        let micros = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as i64
        };
        let before = micros();
        let now = now_us();
        let after = micros();
        assert!(
            (before..=after).contains(&now),
            "{before} <= {now} <= {after}"
        );
    }

    #[test]
    fn an_uncommitted_batch_leaves_nothing() {
        let (mut store, dir) = temp_store();
        {
            let mut b = store.batch(0).unwrap();
            assert!(b.apply_once("m1", 1).unwrap());
        }
        assert_eq!(store.recount().unwrap(), (0, 0));
        assert!(!was_seen(&store, "m1").unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
