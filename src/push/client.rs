//! The consumer's side of the push hop: one notification shown by calling the
//! gateway over HTTP/1.1 (keep-alive), with a timeout, retries with
//! exponential backoff, and `Retry-After` honoured.
//!
//! Whether a call is retried and whether it carries an `Idempotency-Key` is
//! the consumer policy's business ([`Calling`]); every attempt and every wait
//! is reported as a [`CallEvent`] on the worker's event stream, so the report
//! counts what the client saw beside what the gateway's access log says.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::fmt;
use std::time::Duration;

/// The text of every push notification (what an eavesdropper looks for).
pub const TEXT: &str = "You have a new notification";

/// What one attempt (or one wait) came to, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEvent {
    /// A 2xx for a first request: the phone showed the notification.
    Shown,
    /// A 2xx that says it replays an earlier response to the same key.
    Replayed,
    /// Any other status (409 in flight, 429, 503, 4xx).
    Status(u16),
    /// No response within the timeout.
    Timeout,
    /// The connection failed or closed before a whole response arrived.
    Failed,
    /// The client waited this many ms before the next attempt because the
    /// gateway said so (`Retry-After`).
    RetryAfter(u64),
    /// The client waited this many ms of its own backoff.
    Backoff(u64),
    /// The client stopped trying (its policy calls once, or the attempts ran out).
    GaveUp,
}

impl fmt::Display for CallEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallEvent::Shown => f.write_str("shown"),
            CallEvent::Replayed => f.write_str("replayed"),
            CallEvent::Status(s) => write!(f, "status:{s}"),
            CallEvent::Timeout => f.write_str("timeout"),
            CallEvent::Failed => f.write_str("failed"),
            CallEvent::RetryAfter(ms) => write!(f, "retry-after:{ms}"),
            CallEvent::Backoff(ms) => write!(f, "backoff:{ms}"),
            CallEvent::GaveUp => f.write_str("gave-up"),
        }
    }
}

impl CallEvent {
    /// Whether the attempt may have made the gateway show the notification:
    /// a 2xx for a first request, or an attempt whose answer never came.
    pub fn may_apply(self) -> bool {
        matches!(
            self,
            CallEvent::Shown | CallEvent::Timeout | CallEvent::Failed
        )
    }

    /// In words, for `dlab explain`.
    pub fn describe(self) -> String {
        match self {
            CallEvent::Shown => "call to the gateway: 2xx, shown".into(),
            CallEvent::Replayed => {
                "call to the gateway: 2xx, its key's first answer replayed".into()
            }
            CallEvent::Status(s) => format!("call to the gateway: answered {s}"),
            CallEvent::Timeout => "call to the gateway: no answer within the timeout".into(),
            CallEvent::Failed => {
                "call to the gateway: the connection failed or closed before an answer".into()
            }
            CallEvent::RetryAfter(ms) => format!("waited {ms} ms as Retry-After said"),
            CallEvent::Backoff(ms) => format!("waited {ms} ms (backoff)"),
            CallEvent::GaveUp => "gave the call up".into(),
        }
    }

    /// Parses what `Display` wrote.
    pub fn parse(s: &str) -> Option<CallEvent> {
        let (tag, n) = match s.split_once(':') {
            Some((t, n)) => (t, Some(n.parse::<u64>().ok()?)),
            None => (s, None),
        };
        Some(match (tag, n) {
            ("shown", None) => CallEvent::Shown,
            ("replayed", None) => CallEvent::Replayed,
            ("status", Some(n)) => CallEvent::Status(u16::try_from(n).ok()?),
            ("timeout", None) => CallEvent::Timeout,
            ("failed", None) => CallEvent::Failed,
            ("retry-after", Some(ms)) => CallEvent::RetryAfter(ms),
            ("backoff", Some(ms)) => CallEvent::Backoff(ms),
            ("gave-up", None) => CallEvent::GaveUp,
            _ => return None,
        })
    }
}

/// How a consumer policy calls: retry until a 2xx or call once; with the
/// message ID as `Idempotency-Key` or without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calling {
    /// Retry after a timeout, a failure, a 409, 429 or 5xx.
    pub retry: bool,
    /// Send the message ID as the `Idempotency-Key`.
    pub key: bool,
}

/// The client's settings (from the plan's `[push]` table).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// How long one attempt may take, response body included.
    pub timeout: Duration,
    /// The first backoff, doubled per retry.
    pub backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// Attempts per message at most when retrying (0: until a 2xx).
    pub attempts: u32,
}

/// A keep-alive HTTP client for one consumer process.
pub struct PushClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    settings: Settings,
    consumer: u32,
}

/// How one attempt ended.
enum Attempt {
    Answer {
        status: StatusCode,
        replayed: bool,
        retry_after: Option<Duration>,
    },
    Timeout,
    Failed,
}

impl PushClient {
    /// A client of the gateway at `url` (`http://host:port/v1/push`, or
    /// `https://` with `tls`: the lab CA as the only root, and with mutual
    /// TLS the consumer's certificate).
    pub fn new(
        url: &str,
        settings: Settings,
        consumer: u32,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<PushClient, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("bad push gateway URL {url}: {e}"))?;
        if uri.scheme_str() == Some("https") && tls.is_none() {
            return Err(format!("{url}: HTTPS needs the lab CA (--tls-dir)"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.timeout));
        connector.enforce_http(false);
        // Plain HTTP needs no roots; HTTPS trusts what `tls` trusts.
        let tls = match tls {
            Some(t) => t,
            None => rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(PushClient {
            client,
            uri,
            settings,
            consumer,
        })
    }

    async fn attempt(&self, message_id: &str, key: bool) -> Attempt {
        let body = serde_json::json!({
            "message_id": message_id,
            "text": TEXT,
        })
        .to_string();
        let mut req = Request::post(self.uri.clone())
            .header("content-type", "application/json")
            .header("x-dlab-consumer", self.consumer.to_string())
            .header("x-dlab-pid", std::process::id().to_string());
        if key {
            req = req.header("idempotency-key", message_id);
        }
        let Ok(req) = req.body(Full::new(Bytes::from(body))) else {
            return Attempt::Failed;
        };
        let call = async {
            let resp = self.client.request(req).await.map_err(|_| ())?;
            let status = resp.status();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let replayed = header("idempotent-replayed").is_some_and(|v| v == "true");
            let retry_after = header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // The whole body: a response cut short is no answer.
            resp.into_body().collect().await.map_err(|_| ())?;
            Ok::<_, ()>(Attempt::Answer {
                status,
                replayed,
                retry_after,
            })
        };
        match tokio::time::timeout(self.settings.timeout, call).await {
            Ok(Ok(a)) => a,
            Ok(Err(())) => Attempt::Failed,
            Err(_) => Attempt::Timeout,
        }
    }

    /// Shows one notification: calls until a 2xx or until the policy gives up,
    /// reporting every attempt and wait to `report`. Returns whether a 2xx
    /// came, and whether it was a first showing (not a replay).
    pub async fn show(
        &self,
        message_id: &str,
        calling: Calling,
        mut report: impl FnMut(CallEvent),
    ) -> Option<bool> {
        let mut backoff = self.settings.backoff;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let wait = match self.attempt(message_id, calling.key).await {
                Attempt::Answer {
                    status, replayed, ..
                } if status.is_success() => {
                    report(if replayed {
                        CallEvent::Replayed
                    } else {
                        CallEvent::Shown
                    });
                    return Some(!replayed);
                }
                Attempt::Answer {
                    status,
                    retry_after,
                    ..
                } => {
                    report(CallEvent::Status(status.as_u16()));
                    let retryable = matches!(status.as_u16(), 408 | 409 | 425 | 429)
                        || status.is_server_error();
                    if !retryable {
                        report(CallEvent::GaveUp);
                        return None;
                    }
                    retry_after
                }
                Attempt::Timeout => {
                    report(CallEvent::Timeout);
                    None
                }
                Attempt::Failed => {
                    report(CallEvent::Failed);
                    None
                }
            };
            let out_of_attempts = self.settings.attempts > 0 && attempts >= self.settings.attempts;
            if !calling.retry || out_of_attempts {
                report(CallEvent::GaveUp);
                return None;
            }
            match wait {
                Some(after) => {
                    report(CallEvent::RetryAfter(after.as_millis() as u64));
                    tokio::time::sleep(after).await;
                }
                None => {
                    report(CallEvent::Backoff(backoff.as_millis() as u64));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_events_round_trip() {
        for e in [
            CallEvent::Shown,
            CallEvent::Replayed,
            CallEvent::Status(503),
            CallEvent::Timeout,
            CallEvent::Failed,
            CallEvent::RetryAfter(1000),
            CallEvent::Backoff(50),
            CallEvent::GaveUp,
        ] {
            assert_eq!(CallEvent::parse(&e.to_string()), Some(e), "{e}");
        }
        for bad in ["", "status", "status:x", "shown:1", "retry-after", "nope"] {
            assert_eq!(CallEvent::parse(bad), None, "{bad:?}");
        }
    }
}
