//! The broker's own count of a run, from two of RabbitMQ's plugins: the
//! second source beside the ledger for every AMQP run.
//!
//! - The Prometheus endpoint's **global counters** (`rabbit_global_counters`,
//!   RabbitMQ 3.9 and later): messages received, delivered, redelivered and
//!   acknowledged over AMQP 0-9-1, counted by the channels as they happen.
//!   They are node-wide, so a run reads them before and after and takes the
//!   difference; they are exact when the run is the node's only traffic (a
//!   private node's is, in the tests). The management API's per-queue
//!   `message_stats` are not used: they are samples, and a channel that closes
//!   between two samples takes its last counts with it (a short producer's
//!   publishes then count as zero).
//! - The **management API** for what the broker says of the queue itself:
//!   its type. (Its `messages` is a sample too, up to 5 s old; the queue's
//!   depth after the drain is asked over AMQP instead.)
//!
//! Requests are plain HTTP/1.0 (one GET, no keep-alive), so the answer is
//! never chunked and ends with the connection.

use serde::Deserialize;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where a broker's management API and Prometheus endpoint listen, and as
/// whom dlab asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Management {
    host: String,
    port: u16,
    prom_port: u16,
    user: String,
    password: String,
    vhost: String,
}

/// What the broker says of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// `classic`, `quorum` or `stream`, as the broker declared it.
    pub kind: String,
}

/// The node's AMQP 0-9-1 message counters (totals since the node started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages published to the broker (`messages_received_total`).
    pub received: u64,
    /// Deliveries to consumers and gets (`messages_delivered_total`).
    pub delivered: u64,
    /// Deliveries of messages delivered before (`messages_redelivered_total`).
    pub redelivered: u64,
    /// Acks the broker processed (`messages_acknowledged_total`).
    pub acknowledged: u64,
}

impl Counters {
    /// What was counted since `before`, or None if a counter went down (the
    /// node restarted in between and began again at zero).
    pub fn since(&self, before: &Counters) -> Option<Counters> {
        Some(Counters {
            received: self.received.checked_sub(before.received)?,
            delivered: self.delivered.checked_sub(before.delivered)?,
            redelivered: self.redelivered.checked_sub(before.redelivered)?,
            acknowledged: self.acknowledged.checked_sub(before.acknowledged)?,
        })
    }

    /// Reads the counters from a Prometheus text exposition: the lines of
    /// `rabbitmq_global_messages_*_total` labelled `protocol="amqp091"`,
    /// added up over their `queue_type` labels where they have them.
    pub fn parse(text: &str) -> Option<Counters> {
        let value = |name: &str| -> Option<u64> {
            let prefix = format!("rabbitmq_global_{name}_total{{");
            let mut found = None;
            for l in text.lines() {
                let Some(rest) = l.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                let (labels, v) = rest.split_once("} ")?;
                if !labels.split(',').any(|x| x == "protocol=\"amqp091\"") {
                    continue;
                }
                let v = v.trim().parse::<f64>().ok()? as u64;
                *found.get_or_insert(0) += v;
            }
            found
        };
        Some(Counters {
            received: value("messages_received")?,
            delivered: value("messages_delivered")?,
            redelivered: value("messages_redelivered")?,
            acknowledged: value("messages_acknowledged")?,
        })
    }
}

#[derive(Deserialize)]
struct RawQueue {
    #[serde(rename = "type", default)]
    kind: String,
}

/// Percent-encodes one path segment of the API (queue and vhost names).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes `%XX` escapes (the vhost as an AMQP URL writes it).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Management {
    /// The endpoints of a private node: loopback, the management API on
    /// `port`, Prometheus on `prom_port`, guest/guest, vhost `/`.
    pub fn loopback(port: u16, prom_port: u16) -> Management {
        Management {
            host: "127.0.0.1".into(),
            port,
            prom_port,
            user: "guest".into(),
            password: "guest".into(),
            vhost: "/".into(),
        }
    }

    /// The endpoints next to an external broker: its host, the plugins'
    /// default ports (15672, 15692), the URL's user, password and vhost.
    pub fn beside(amqp_url: &str) -> Option<Management> {
        let (host, _) = crate::amqp::url::host_port(amqp_url)?;
        let rest = amqp_url.split_once("://")?.1;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, password) = match authority.rsplit_once('@') {
            Some((cred, _)) => match cred.split_once(':') {
                Some((u, p)) => (unescape(u), unescape(p)),
                None => (unescape(cred), String::new()),
            },
            None => ("guest".into(), "guest".into()),
        };
        let vhost = match path.split('?').next().unwrap_or("") {
            "" => "/".to_string(),
            v => unescape(v),
        };
        Some(Management {
            host,
            port: 15672,
            prom_port: 15692,
            user,
            password,
            vhost,
        })
    }

    /// Where the counts come from, for reports (no password).
    pub fn describe(&self) -> String {
        format!(
            "RabbitMQ's global counters, http://{}:{}/metrics",
            self.host, self.prom_port
        )
    }

    /// What the broker says of `queue`: its type.
    pub async fn queue(&self, queue: &str) -> Result<QueueInfo, String> {
        let path = format!("/api/queues/{}/{}", segment(&self.vhost), segment(queue));
        let body = self.get(self.port, &path).await?;
        let raw: RawQueue = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "http://{}:{}{path}: unreadable answer: {e}",
                self.host, self.port
            )
        })?;
        Ok(QueueInfo { kind: raw.kind })
    }

    /// A JSON answer of the API (`path` from `/api/`), waiting at most
    /// `timeout`: a paused or partitioned node must not hold its caller up.
    pub async fn json(&self, path: &str, timeout: Duration) -> Result<serde_json::Value, String> {
        let path = format!("/api/{path}");
        let body = self.get_within(self.port, &path, timeout).await?;
        serde_json::from_slice(&body).map_err(|e| {
            format!(
                "http://{}:{}{path}: unreadable answer: {e}",
                self.host, self.port
            )
        })
    }

    /// The API path of `queue` in this API's vhost (after `/api/`).
    pub fn queue_path(&self, queue: &str) -> String {
        format!("queues/{}/{}", segment(&self.vhost), segment(queue))
    }

    /// The node's message counters now.
    pub async fn counters(&self) -> Result<Counters, String> {
        let body = self.get(self.prom_port, "/metrics").await?;
        Counters::parse(&String::from_utf8_lossy(&body)).ok_or_else(|| {
            format!(
                "http://{}:{}/metrics has no rabbitmq_global_messages_*_total counters (RabbitMQ 3.9 or later has them)",
                self.host, self.prom_port
            )
        })
    }

    async fn get(&self, port: u16, path: &str) -> Result<Vec<u8>, String> {
        self.get_within(port, path, Duration::from_secs(5)).await
    }

    async fn get_within(&self, port: u16, path: &str, limit: Duration) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let what = format!("http://{}:{port}{path}", self.host);
        let io = async {
            let mut s = tokio::net::TcpStream::connect((self.host.as_str(), port)).await?;
            let auth = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", self.user, self.password));
            let req = format!(
                "GET {path} HTTP/1.0\r\nHost: {}:{port}\r\nAuthorization: Basic {auth}\r\n\r\n",
                self.host
            );
            s.write_all(req.as_bytes()).await?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = tokio::time::timeout(limit, io)
            .await
            .map_err(|_| format!("{what}: no answer within {}ms", limit.as_millis()))?
            .map_err(|e| {
                format!("{what}: {e} (are the rabbitmq_management and rabbitmq_prometheus plugins enabled on the broker?)")
            })?;
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("{what}: not an HTTP answer"))?;
        let head = String::from_utf8_lossy(&buf[..split]);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("{what}: not an HTTP answer"))?;
        if status != 200 {
            let line = head.lines().next().unwrap_or("").to_string();
            return Err(format!("{what}: {line}"));
        }
        Ok(buf[split + 4..].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_beside_a_url_takes_its_host_credentials_and_vhost() {
        let m = Management::beside("amqp://u%40x:p%2Fw@broker:5673/prod").unwrap();
        assert_eq!(
            m,
            Management {
                host: "broker".into(),
                port: 15672,
                prom_port: 15692,
                user: "u@x".into(),
                password: "p/w".into(),
                vhost: "prod".into(),
            }
        );
        assert_eq!(
            Management::beside("amqp://127.0.0.1:5672/%2f")
                .unwrap()
                .vhost,
            "/"
        );
        assert_eq!(Management::beside("amqp://h").unwrap().user, "guest");
    }

    #[test]
    fn names_are_one_path_segment_each() {
        assert_eq!(segment("/"), "%2F");
        assert_eq!(segment("dlab.a b.x-1"), "dlab.a%20b.x-1");
        assert!(!Management::loopback(1, 2).describe().contains("guest"));
    }

    #[test]
    fn the_counters_are_the_amqp_091_lines_only() {
        let text = "# TYPE rabbitmq_global_messages_received_total counter
rabbitmq_global_messages_received_total{protocol=\"amqp091\"} 12
rabbitmq_global_messages_received_total{protocol=\"stream\"} 99
rabbitmq_global_messages_delivered_total{protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"} 7
rabbitmq_global_messages_delivered_total{protocol=\"amqp091\",queue_type=\"rabbit_quorum_queue\"} 4
rabbitmq_global_messages_delivered_consume_manual_ack_total{protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"} 70
rabbitmq_global_messages_redelivered_total{protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"} 1
rabbitmq_global_messages_acknowledged_total{protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"} 10
";
        let c = Counters::parse(text).unwrap();
        assert_eq!(
            c,
            Counters {
                received: 12,
                delivered: 11,
                redelivered: 1,
                acknowledged: 10
            }
        );
        assert_eq!(
            Counters::parse("rabbitmq_global_messages_received_total{protocol=\"amqp091\"} 1"),
            None
        );
        let later = Counters { received: 20, ..c };
        assert_eq!(later.since(&c).unwrap().received, 8);
        assert_eq!(
            c.since(&later),
            None,
            "a counter that went down: the node restarted"
        );
    }
}
