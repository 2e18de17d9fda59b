//! The runner's own view of the queue: its depth during the drain and at the
//! end. It reconnects by itself, since broker faults take its connection too.

use crate::amqp::endpoints::Endpoints;
use crate::amqp::{topology, BrokerError};
use lapin::{Channel, Connection};
use std::time::Duration;

/// A reconnecting connection for looking at (and finally deleting) the run's queue.
pub struct Inspector {
    url: String,
    ends: Endpoints,
    queue: String,
    name: String,
    link: Option<(Connection, Channel)>,
}

impl Inspector {
    /// Connects to the first of `urls` that answers (a cluster's members;
    /// after a loss, the next one) for looking at `queue`.
    pub async fn connect(
        urls: &[String],
        queue: &str,
        name: &str,
    ) -> Result<Inspector, BrokerError> {
        let mut i = Inspector {
            url: urls[0].clone(),
            ends: Endpoints::new(urls.to_vec(), 0),
            queue: queue.to_string(),
            name: name.to_string(),
            link: None,
        };
        i.link = Some(i.open().await?);
        Ok(i)
    }

    async fn open(&mut self) -> Result<(Connection, Channel), BrokerError> {
        self.ends.lost();
        let conn = self
            .ends
            .connect(&self.name, Duration::from_secs(5))
            .await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| BrokerError::refused(&self.url, "a channel", e))?;
        Ok((conn, channel))
    }

    /// The channel, reconnecting if the last one was lost.
    pub async fn channel(&mut self) -> Option<&Channel> {
        if self
            .link
            .as_ref()
            .is_none_or(|(c, _)| !c.status().connected())
        {
            self.link = self.open().await.ok();
        }
        self.link.as_ref().map(|(_, ch)| ch)
    }

    /// Messages ready in the queue, or None when the broker cannot be asked.
    pub async fn ready(&mut self) -> Option<u32> {
        let queue = self.queue.clone();
        let ch = self.channel().await?;
        // A paused or cut-off member answers nothing: bounded.
        match bounded(topology::ready_messages(ch, &queue)).await {
            Ok(n) => Some(n),
            _ => {
                self.link = None;
                None
            }
        }
    }

    /// Deletes the queue (or, with `keep`, only counts it); returns the
    /// messages it held. The broker may be restarting after a fault, so
    /// this tries for a while; a queue that cannot be read is an error, never
    /// a count of zero.
    pub async fn finish(mut self, keep: bool) -> Result<u32, BrokerError> {
        let queue = self.queue.clone();
        let deadline = std::time::Instant::now() + FINISH_WITHIN;
        let n = loop {
            let read = match self.channel().await {
                Some(ch) if keep => bounded(topology::ready_messages(ch, &queue)).await,
                Some(ch) => bounded(topology::delete_queue(ch, &queue)).await,
                None => Err("no connection".to_string()),
            };
            match read {
                Ok(n) => break n,
                Err(e) if std::time::Instant::now() >= deadline => {
                    return Err(BrokerError::refused(
                        &self.url,
                        &format!("reading the depth of queue {queue} after the drain"),
                        e,
                    ))
                }
                Err(_) => {
                    self.link = None;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        if let Some((conn, _)) = self.link.take() {
            let _ = conn.close(200, "run finished".into()).await;
        }
        Ok(n)
    }
}

/// One broker round trip, bounded: a paused or cut-off member answers nothing.
async fn bounded<T>(f: impl std::future::Future<Output = lapin::Result<T>>) -> Result<T, String> {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .map_err(|_| "no answer within 5s".to_string())?
        .map_err(|e| e.to_string())
}

/// How long the final read of the queue may keep trying.
const FINISH_WITHIN: Duration = Duration::from_secs(15);
