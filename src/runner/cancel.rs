//! One way to stop: a cancellation created at the command line and honoured
//! by every engine.
//!
//! The first SIGINT, SIGTERM or SIGHUP cancels: the run in progress stops its
//! producers, workers, proxies, inbox, relays and private nodes, and reports
//! what it saw so far as interrupted. A second SIGINT exits at once with 130;
//! what that leaves behind is removed by the next `dlab` command (see
//! `src/leftovers/mod.rs`).

use tokio::sync::watch;

/// The exit code of a run stopped by a signal (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

/// A cancellation that engines wait on or poll. Clones share one state.
#[derive(Debug, Clone)]
pub struct Cancel {
    rx: watch::Receiver<Option<String>>,
    /// Keeps the channel open for cancellations nobody can trigger.
    _tx: Option<std::sync::Arc<watch::Sender<Option<String>>>>,
}

/// The side that cancels.
#[derive(Debug, Clone)]
pub struct Canceller(std::sync::Arc<watch::Sender<Option<String>>>);

impl Canceller {
    /// Cancels, saying why (e.g. "SIGINT"); later calls keep the first reason.
    pub fn cancel(&self, why: &str) {
        self.0.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            *r = Some(why.to_string());
            true
        });
    }
}

impl Cancel {
    /// A cancellation and the handle that triggers it.
    pub fn new() -> (Canceller, Cancel) {
        let (tx, rx) = watch::channel(None);
        (Canceller(std::sync::Arc::new(tx)), Cancel { rx, _tx: None })
    }

    /// A cancellation that never happens (library callers, benchmarks, tests).
    pub fn never() -> Cancel {
        let (tx, rx) = watch::channel(None);
        Cancel {
            rx,
            _tx: Some(std::sync::Arc::new(tx)),
        }
    }

    /// Why the run was cancelled, once it was.
    pub fn reason(&self) -> Option<String> {
        self.rx.borrow().clone()
    }

    /// Whether it was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.rx.borrow().is_some()
    }

    /// Waits until it is cancelled (forever for [`Cancel::never`]).
    pub async fn cancelled(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(Option::is_some).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::never()
    }
}

/// Installs the handlers of SIGINT, SIGTERM and SIGHUP and returns the
/// cancellation they trigger. Must be called inside a Tokio runtime.
pub fn on_signals() -> std::io::Result<Cancel> {
    use tokio::signal::unix::{signal, SignalKind};
    let (canceller, cancel) = Cancel::new();
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let why = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            };
            seen += 1;
            if seen > 1 && why == "SIGINT" {
                eprintln!("\ndlab: interrupted again: exiting now (the next `dlab` command removes what is left)");
                std::process::exit(EXIT_INTERRUPTED);
            }
            if seen == 1 {
                eprintln!("\ndlab: {why}: stopping the run and writing what it saw (Ctrl-C again to exit at once)");
            }
            canceller.cancel(why);
        }
    });
    Ok(cancel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancellation_is_seen_by_every_clone_and_keeps_its_first_reason() {
        let (c, cancel) = Cancel::new();
        let other = cancel.clone();
        assert!(!cancel.is_cancelled());
        let waiter = tokio::spawn(async move { other.cancelled().await });
        c.cancel("SIGTERM");
        c.cancel("SIGINT");
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter wakes")
            .unwrap();
        assert_eq!(cancel.reason().as_deref(), Some("SIGTERM"));
    }

    #[tokio::test]
    async fn never_is_never_cancelled() {
        let never = Cancel::never();
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), never.cancelled()).await;
        assert!(waited.is_err());
        assert!(!never.is_cancelled());
    }
}
