//! Which relay an SMTP run goes through, and how the run holds it.

use crate::relay::Relay;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Which relay an SMTP run goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayTarget {
    /// A private Postfix started for the run under its directory.
    Private,
    /// The private Postfix `dlab up` started in this directory: it forwards
    /// to a fixed inbox address, where the run's inbox listens.
    Up(std::path::PathBuf),
    /// A relay someone else runs, already configured to forward to `inbox`.
    External {
        /// Where the relay accepts SMTP.
        relay: SocketAddr,
        /// Where dlab's inbox listens (the relay's next hop).
        inbox: SocketAddr,
    },
}

/// The relay of a run and how to reach it.
pub(super) struct RelayUse {
    pub(super) addr: SocketAddr,
    pub(super) private: Option<Arc<Relay>>,
    /// Started for this run (and stopped after it).
    pub(super) owned: bool,
}

impl RelayUse {
    pub(super) fn describe(&self) -> String {
        match &self.private {
            Some(r) => format!(
                "smtp://{} ({}, log {})",
                self.addr,
                if self.owned {
                    "private Postfix"
                } else {
                    "the Postfix of `dlab up`"
                },
                r.log().display()
            ),
            None => format!("smtp://{} (external relay)", self.addr),
        }
    }
}

/// A relay's queue depth and where it was read.
pub(super) fn depth(r: &Relay) -> (u64, &'static str) {
    match r.postqueue_depth() {
        Some(n) => (n, "postqueue -j"),
        None => (r.queue_depth(), "spool directories"),
    }
}

impl RelayUse {
    /// Starts (private), attaches to (`dlab up`'s) or names (external) the
    /// relay, whose next hop is `next_hop` when dlab starts it (and where
    /// it returns mail to the sender, and its TLS: `options`).
    pub(super) async fn open(
        target: &RelayTarget,
        dir: &Path,
        next_hop: SocketAddr,
        options: crate::relay::Options,
    ) -> Result<RelayUse, crate::runner::RunError> {
        use crate::runner::RunError;
        Ok(match target {
            RelayTarget::Private => {
                let dir = dir.to_path_buf();
                let r = tokio::task::spawn_blocking(move || {
                    Relay::start_with(&dir, next_hop, &options)
                })
                .await
                .map_err(|e| RunError::Worker(e.to_string()))??;
                RelayUse {
                    addr: r.addr(),
                    private: Some(Arc::new(r)),
                    owned: true,
                }
            }
            RelayTarget::Up(dir) => {
                let r = Relay::attach(dir).ok_or_else(|| {
                    RunError::Unsupported(format!(
                        "the relay of `dlab up` in {} is not running; run `dlab up` again or `dlab down`",
                        dir.display()
                    ))
                })?;
                RelayUse {
                    addr: r.addr(),
                    private: Some(Arc::new(r)),
                    owned: false,
                }
            }
            RelayTarget::External { relay, .. } => RelayUse {
                addr: *relay,
                private: None,
                owned: false,
            },
        })
    }

    /// Stops the relay when this run started it (its log is complete then).
    pub(super) async fn retire(&self) {
        if let Some(r) = self.private.clone().filter(|_| self.owned) {
            let _ = tokio::task::spawn_blocking(move || r.retire()).await;
        }
    }
}
