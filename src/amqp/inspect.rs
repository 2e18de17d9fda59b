//! The runner's own view of the queue: its depth during the drain and at the
//! end. It reconnects by itself, since broker faults take its connection too.

use crate::amqp::{self, topology, BrokerError};
use lapin::{Channel, Connection};
use std::time::Duration;

/// A reconnecting connection for looking at (and finally deleting) the run's queue.
pub struct Inspector {
    url: String,
    queue: String,
    name: String,
    link: Option<(Connection, Channel)>,
}

impl Inspector {
    /// Connects to `url` for looking at `queue`.
    pub async fn connect(url: &str, queue: &str, name: &str) -> Result<Inspector, BrokerError> {
        let mut i = Inspector {
            url: url.to_string(),
            queue: queue.to_string(),
            name: name.to_string(),
            link: None,
        };
        i.link = Some(i.open().await?);
        Ok(i)
    }

    async fn open(&self) -> Result<(Connection, Channel), BrokerError> {
        let conn = amqp::connect(&self.url, &self.name, Duration::from_secs(5)).await?;
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
        match topology::ready_messages(ch, &queue).await {
            Ok(n) => Some(n),
            Err(_) => {
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
                Some(ch) if keep => topology::ready_messages(ch, &queue)
                    .await
                    .map_err(|e| e.to_string()),
                Some(ch) => topology::delete_queue(ch, &queue)
                    .await
                    .map_err(|e| e.to_string()),
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

/// How long the final read of the queue may keep trying.
const FINISH_WITHIN: Duration = Duration::from_secs(15);
