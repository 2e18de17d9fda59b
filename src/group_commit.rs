//! Group commit: one thread owns an [`EffectStore`] and writes every job
//! waiting for it in one transaction, then answers each job.
//!
//! Why: a commit is the slow part of an effect (a WAL write), and a server
//! answering many clients at once would otherwise commit once per request.
//! Taking everything that queued up during the previous commit amortises
//! that cost without ever answering early: **every reply follows the commit
//! that covers it**. If anything in a batch fails, nothing of it is
//! committed and every job of it gets the error.
//!
//! Used by the SMTP inbox ([`crate::smtp::inbox`]) and the push gateway
//! ([`crate::push::gateway`]).

use crate::effects::{Batch, EffectStore, EffectStoreError};
use std::sync::mpsc;

/// The most jobs one transaction takes.
pub const MAX_BATCH: usize = 1024;

type Reply<O> = tokio::sync::oneshot::Sender<Result<O, String>>;

/// A running group-commit writer for jobs `J` answered with `O`. Dropping
/// it ends the writer thread once the jobs already submitted are answered.
pub struct GroupCommit<J, O> {
    jobs: mpsc::Sender<(J, Reply<O>)>,
}

impl<J: Send + 'static, O: Send + 'static> GroupCommit<J, O> {
    /// Starts the writer thread. Each batch is a transaction of `store`
    /// attributed to `consumer` ([`EffectStore::batch`]); `apply` runs once
    /// per job inside it, in the order the jobs were submitted, and its
    /// result is the job's answer once the transaction has committed.
    pub fn start<F>(mut store: EffectStore, consumer: u32, mut apply: F) -> std::io::Result<Self>
    where
        F: FnMut(&mut Batch<'_>, &J) -> Result<O, EffectStoreError> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<(J, Reply<O>)>();
        std::thread::Builder::new()
            .name("dlab-group-commit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut pending = vec![first];
                    while pending.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(next) => pending.push(next),
                            Err(_) => break,
                        }
                    }
                    match commit(&mut store, consumer, &mut apply, &pending) {
                        Ok(outs) => {
                            for ((_, reply), out) in pending.into_iter().zip(outs) {
                                let _ = reply.send(Ok(out));
                            }
                        }
                        Err(e) => {
                            for (_, reply) in pending {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
            })?;
        Ok(GroupCommit { jobs: tx })
    }

    /// Hands `job` to the writer and waits for the commit that covers it.
    /// An error is the effect store's (the whole batch was rolled back) or
    /// the writer's end.
    pub async fn submit(&self, job: J) -> Result<O, String> {
        let gone = || "the effect writer is gone".to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs.send((job, tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// One transaction over `pending`: every job applied, then the commit.
fn commit<J, O, F>(
    store: &mut EffectStore,
    consumer: u32,
    apply: &mut F,
    pending: &[(J, Reply<O>)],
) -> Result<Vec<O>, String>
where
    F: FnMut(&mut Batch<'_>, &J) -> Result<O, EffectStoreError>,
{
    let mut batch = store.batch(consumer).map_err(|e| e.to_string())?;
    let mut outs = Vec::with_capacity(pending.len());
    for (job, _) in pending {
        outs.push(apply(&mut batch, job).map_err(|e| e.to_string())?);
    }
    batch.commit().map_err(|e| e.to_string())?;
    Ok(outs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_answer_follows_its_commit() {
        let dir = std::env::temp_dir().join(format!("dlab-gc-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("effects.sqlite");
        let store = EffectStore::create(&path).unwrap();
        let writer = std::sync::Arc::new(
            GroupCommit::start(store, 3, |b: &mut Batch<'_>, id: &String| {
                b.apply_once(id, crate::effects::now_us())
            })
            .unwrap(),
        );
        let mut tasks = Vec::new();
        for i in 0..50 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("m{}", i % 10);
                (w.submit(id.clone()).await, id)
            }));
        }
        let mut applied = 0;
        for t in tasks {
            let (answer, id) = t.await.unwrap();
            // The answer came after the commit: a second connection sees it.
            let other = EffectStore::open(&path).unwrap();
            assert!(crate::effects::was_seen(&other, &id).unwrap());
            applied += usize::from(answer.unwrap());
        }
        assert_eq!(applied, 10);
        assert_eq!(
            EffectStore::open(&path).unwrap().recount().unwrap(),
            (10, 10)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
