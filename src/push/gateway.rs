//! The push gateway: dlab's own HTTP server playing the phone's push service
//! (as APNs or FCM would). Every notification it shows becomes an effect in
//! the run's effect store, attributed to the consumer that asked for it,
//! before the 2xx that tells the consumer it may ack; with an
//! `Idempotency-Key`, a request seen before within `key_ttl` gets the first
//! answer again and no second effect.
//!
//! `POST /v1/push` with a JSON [`PushRequest`]; headers `Idempotency-Key`
//! (optional), `X-Dlab-Consumer` and `X-Dlab-Pid` (the caller, 0 when
//! absent). HTTP/1.1 with keep-alive, or HTTP/2 when the client speaks it
//! (prior knowledge). Effects are group-committed ([`crate::group_commit`]);
//! each request's access-log line ([`super::access_log`]) follows its
//! commit and precedes its answer. Faults on command: down, restart,
//! [`Misbehaviour`].

use super::access_log::{AccessLog, Line, Outcome};
use super::keys::{KeyStore, Keys, Lookup};
use crate::effects::{Batch, EffectStore, EffectStoreError};
use crate::group_commit::GroupCommit;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The one path the gateway serves.
pub const PATH: &str = "/v1/push";
/// The request header naming an idempotency key.
pub const KEY_HEADER: &str = "idempotency-key";
/// The request header naming the calling consumer's index.
pub const CONSUMER_HEADER: &str = "x-dlab-consumer";
/// The request header naming the calling consumer's process ID.
pub const PID_HEADER: &str = "x-dlab-pid";
/// The response header (`true`) of an answer replayed for a known key.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// The largest request body read; a larger one is answered 413.
pub const MAX_BODY: usize = 64 * 1024;

/// What a gateway is started with.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where it listens (port 0: a free one).
    pub addr: SocketAddr,
    /// The run's effect store (created with its schema if need be). `None`:
    /// every push is answered 200 and nothing is stored, keys are ignored
    /// (the no-store limit, for the benchmark).
    pub store: Option<PathBuf>,
    /// How long an idempotency key's answer is remembered.
    pub key_ttl: Duration,
    /// Where keys are remembered.
    pub key_store: KeyStore,
    /// Where to write the access log (`push-access.log` in the run
    /// directory); `None`: no log.
    pub access_log: Option<PathBuf>,
    /// HTTPS with this configuration (the lab CA's server certificate; with
    /// mutual TLS it requires a client certificate); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// How the gateway answers while a gateway fault is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// 503 with `Retry-After`, and no effect.
    Unavailable {
        /// The `Retry-After` seconds.
        retry_after_s: u32,
    },
    /// 429 with `Retry-After`, and no effect.
    Throttled {
        /// The `Retry-After` seconds.
        retry_after_s: u32,
    },
    /// The effect (the phone rang), then the answer `delay` late: longer than
    /// the client waits, it retries what was shown.
    Slow {
        /// How late the answer is.
        delay: Duration,
    },
}

/// A push request's body. Other fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PushRequest {
    /// The message whose notification to show.
    pub message_id: String,
    /// The notification's text.
    #[serde(default)]
    pub text: String,
}

/// The body of a 200: the notification shown. A replay returns the first
/// answer's body unchanged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PushResponse {
    /// The gateway's running count of notifications shown, from 1.
    pub notification: u64,
    /// The message it was shown for.
    pub message_id: String,
}

/// What the gateway did: a snapshot of its counters.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct GatewayStats {
    /// Requests answered (one access-log line each).
    pub requests: u64,
    /// Answers with a 2xx status.
    pub status_2xx: u64,
    /// Answers with a 4xx status.
    pub status_4xx: u64,
    /// Answers with a 5xx status.
    pub status_5xx: u64,
    /// Effects committed (in no-store mode: pushes answered 200).
    pub applied: u64,
    /// Requests answered again for a known key, with no effect.
    pub replayed: u64,
    /// Requests refused with 409: their key's first request was running.
    pub in_flight: u64,
    /// Requests refused with 503 by a fault.
    pub unavailable: u64,
    /// Requests refused with 429 by a fault.
    pub throttled: u64,
    /// Keys seen again after their TTL: forgotten, the effect applied again.
    pub keys_expired: u64,
    /// Restarts.
    pub restarts: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Connections that spoke HTTP/2.
    pub http2_connections: u64,
    /// HTTPS: the handshakes, by version and client certificate.
    #[serde(default)]
    pub tls: GatewayTls,
}

/// The gateway's own account of its HTTPS handshakes.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct GatewayTls {
    /// Handshakes completed, by TLS version.
    pub versions: std::collections::BTreeMap<String, u64>,
    /// Handshakes completed, by client certificate ("CN=consumer", or
    /// "no client certificate").
    pub clients: std::collections::BTreeMap<String, u64>,
    /// Handshakes that failed.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    status_2xx: AtomicU64,
    status_4xx: AtomicU64,
    status_5xx: AtomicU64,
    applied: AtomicU64,
    replayed: AtomicU64,
    in_flight: AtomicU64,
    unavailable: AtomicU64,
    throttled: AtomicU64,
    keys_expired: AtomicU64,
    restarts: AtomicU64,
    connections: AtomicU64,
    http2_connections: AtomicU64,
    tls: Mutex<TlsTally>,
}

/// The gateway's own account of its HTTPS connections.
#[derive(Debug, Default)]
struct TlsTally {
    versions: std::collections::BTreeMap<String, u64>,
    clients: std::collections::BTreeMap<String, u64>,
    failed: u64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// One push for the effect writer.
struct Job {
    message_id: String,
    consumer: u32,
    pid: u32,
    /// The key, when keys are kept on disk (looked up and remembered in the
    /// effect's transaction).
    disk_key: Option<String>,
}

/// What the effect writer did with a [`Job`].
enum Committed {
    /// The effect is committed; `expired`: its key was on disk, past its TTL.
    Applied { body: String, expired: bool },
    /// Its key was on disk within its TTL: this first answer, no effect.
    Replayed(String),
}

struct State {
    /// `None`: the no-store limit.
    writer: Option<GroupCommit<Job, Committed>>,
    key_store: KeyStore,
    keys: Mutex<Keys>,
    log: Option<AccessLog>,
    how: Mutex<Option<Misbehaviour>>,
    /// Notifications shown (the number in each answer).
    shown: Arc<AtomicU64>,
    counters: Counters,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    state: Arc<State>,
    task: Mutex<Option<JoinHandle<()>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Dropping the gateway takes it down whole (the listener and every open
/// connection) and writes out its access log.
impl Drop for Gateway {
    fn drop(&mut self) {
        self.close();
        self.flush_log();
    }
}

impl Gateway {
    /// Starts the gateway as `cfg` says.
    pub async fn start(cfg: GatewayConfig) -> std::io::Result<Gateway> {
        let shown = Arc::new(AtomicU64::new(0));
        let writer = match &cfg.store {
            None => None,
            Some(path) => {
                let store = EffectStore::create(path).map_err(std::io::Error::other)?;
                let ttl_us = i64::try_from(cfg.key_ttl.as_micros()).unwrap_or(i64::MAX);
                let shown = shown.clone();
                Some(GroupCommit::start(store, 0, move |batch, job| {
                    apply(batch, job, ttl_us, &shown)
                })?)
            }
        };
        let log = match &cfg.access_log {
            Some(path) => Some(AccessLog::create(path)?),
            None => None,
        };
        let listener = TcpListener::bind(cfg.addr).await?;
        let gateway = Gateway {
            addr: listener.local_addr()?,
            state: Arc::new(State {
                writer,
                key_store: cfg.key_store,
                keys: Mutex::new(Keys::new(cfg.key_ttl)),
                log,
                how: Mutex::new(None),
                shown,
                counters: Counters::default(),
                tls: cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from),
            }),
            task: Mutex::new(None),
            connections: Arc::default(),
        };
        gateway.listen(listener);
        Ok(gateway)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn listen(&self, listener: TcpListener) {
        let (state, open) = (self.state.clone(), self.connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    // Out of descriptors, or a connection reset before it
                    // was taken: keep listening.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                bump(&state.counters.connections);
                let handle = tokio::spawn(connection(stream, state.clone()));
                if let Ok(mut open) = open.lock() {
                    open.retain(|h| !h.is_finished());
                    open.push(handle);
                }
            }
        });
        if let Ok(mut t) = self.task.lock() {
            *t = Some(task);
        }
    }

    /// Stops listening; returns the listener's task, to wait until it is gone.
    fn stop_listening(&self) -> Option<JoinHandle<()>> {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = &task {
            t.abort();
        }
        task
    }

    /// Closes every open connection; returns their tasks, to wait until
    /// they are gone.
    fn close_connections(&self) -> Vec<JoinHandle<()>> {
        let open = match self.connections.lock() {
            Ok(mut open) => std::mem::take(&mut *open),
            Err(_) => Vec::new(),
        };
        for c in &open {
            c.abort();
        }
        open
    }

    /// Stops listening and closes every open connection, without waiting.
    fn close(&self) {
        self.stop_listening();
        self.close_connections();
    }

    /// Takes the gateway down (`true`: the listener closed, so connections
    /// are refused, and every open connection closed) or brings it back on
    /// the same address. A request already being committed when it goes
    /// down is still committed and logged; its answer is lost.
    pub async fn set_down(&self, down: bool) -> std::io::Result<()> {
        if down {
            // The listener first: once it is gone, no connection is added.
            if let Some(listener) = self.stop_listening() {
                let _ = listener.await;
            }
            for connection in self.close_connections() {
                let _ = connection.await;
            }
            return Ok(());
        }
        let running = self.task.lock().map(|t| t.is_some()).unwrap_or(false);
        if !running {
            // The port was just freed; another process may take it meanwhile,
            // so retry briefly rather than fail at once.
            let deadline = Instant::now() + Duration::from_secs(5);
            let listener = loop {
                match TcpListener::bind(self.addr).await {
                    Ok(l) => break l,
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            self.listen(listener);
        }
        Ok(())
    }

    /// Restarts the gateway: down, every key in memory forgotten (with
    /// [`KeyStore::Disk`] only the in-flight markers; the keys stay in the
    /// effect store), up again.
    pub async fn restart(&self) -> std::io::Result<()> {
        self.set_down(true).await?;
        if let Ok(mut keys) = self.state.keys.lock() {
            keys.forget_all();
        }
        bump(&self.state.counters.restarts);
        self.set_down(false).await
    }

    /// Makes the gateway misbehave (or behave again with `None`).
    pub fn misbehave(&self, how: Option<Misbehaviour>) {
        if let Ok(mut h) = self.state.how.lock() {
            *h = how;
        }
    }

    /// Its counters now.
    pub fn stats(&self) -> GatewayStats {
        let c = &self.state.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GatewayStats {
            requests: get(&c.requests),
            status_2xx: get(&c.status_2xx),
            status_4xx: get(&c.status_4xx),
            status_5xx: get(&c.status_5xx),
            applied: get(&c.applied),
            replayed: get(&c.replayed),
            in_flight: get(&c.in_flight),
            unavailable: get(&c.unavailable),
            throttled: get(&c.throttled),
            keys_expired: get(&c.keys_expired),
            restarts: get(&c.restarts),
            connections: get(&c.connections),
            http2_connections: get(&c.http2_connections),
            tls: c.tls.lock().map_or(Default::default(), |t| GatewayTls {
                versions: t.versions.clone(),
                clients: t.clients.clone(),
                failed: t.failed,
            }),
        }
    }

    /// Writes out the access log's buffered lines.
    pub fn flush_log(&self) {
        if let Some(log) = &self.state.log {
            let _ = log.flush();
        }
    }
}

/// The effect writer's step for one job, inside the batch's transaction.
fn apply(
    batch: &mut Batch<'_>,
    job: &Job,
    ttl_us: i64,
    shown: &AtomicU64,
) -> Result<Committed, EffectStoreError> {
    let now = crate::effects::now_us();
    let mut expired = false;
    if let Some(key) = &job.disk_key {
        if let Some((response, at)) = batch.key_lookup(key)? {
            if now.saturating_sub(at) <= ttl_us {
                return Ok(Committed::Replayed(response));
            }
            expired = true;
        }
    }
    batch.apply_as(&job.message_id, job.consumer, job.pid, now)?;
    // A number taken by a batch that then fails is not given again.
    let body = response_body(shown.fetch_add(1, Ordering::Relaxed) + 1, &job.message_id);
    if let Some(key) = &job.disk_key {
        batch.key_remember(key, &body, now)?;
    }
    Ok(Committed::Applied { body, expired })
}

fn response_body(notification: u64, message_id: &str) -> String {
    let response = PushResponse {
        notification,
        message_id: message_id.to_string(),
    };
    serde_json::to_string(&response).unwrap_or_default()
}

async fn connection(stream: TcpStream, state: Arc<State>) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = state.tls.clone() else {
        return serve_http(stream, state).await;
    };
    let handshake = acceptor.accept(stream);
    match tokio::time::timeout(Duration::from_secs(10), handshake).await {
        Ok(Ok(tls)) => {
            let (version, client) = crate::tls::peer(tls.get_ref().1);
            if let Ok(mut t) = state.counters.tls.lock() {
                *t.versions.entry(version).or_default() += 1;
                *t.clients.entry(client).or_default() += 1;
            }
            serve_http(tls, state).await
        }
        _ => {
            if let Ok(mut t) = state.counters.tls.lock() {
                t.failed += 1;
            }
        }
    }
}

/// HTTP/1.1 or h2 (by the client's preface) on one connection, plain or TLS.
async fn serve_http<S>(stream: S, state: Arc<State>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let http2 = AtomicBool::new(false);
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        if req.version() == hyper::Version::HTTP_2 && !http2.swap(true, Ordering::Relaxed) {
            bump(&state.counters.http2_connections);
        }
        serve(state.clone(), req)
    });
    let builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let _ = builder
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

/// A valid push request.
struct Push {
    message_id: String,
    key: Option<String>,
    consumer: u32,
    pid: u32,
}

/// An answer, before it becomes a response.
struct Answer {
    status: StatusCode,
    outcome: Outcome,
    body: String,
    headers: Vec<(&'static str, HeaderValue)>,
    /// How long to wait before answering (the slow fault).
    delay: Option<Duration>,
}

impl Answer {
    fn new(status: StatusCode, outcome: Outcome, body: String) -> Answer {
        Answer {
            status,
            outcome,
            body,
            headers: Vec::new(),
            delay: None,
        }
    }

    fn refused(status: StatusCode, outcome: Outcome, why: &str) -> Answer {
        Answer::new(
            status,
            outcome,
            serde_json::json!({ "error": why }).to_string(),
        )
    }

    fn header(mut self, name: &'static str, value: impl Into<HeaderValue>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }

    fn response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            headers.insert(HeaderName::from_static(name), value);
        }
        response
    }
}

async fn serve(
    state: Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let arrived = Instant::now();
    let push = match read(req).await {
        Ok(push) => push,
        Err(answer) => {
            state.record(&answer, None, arrived);
            return Ok(answer.response());
        }
    };
    // The decision, the commit and the log line in a task of their own:
    // taking the gateway down closes this connection, but a push already
    // being committed is still committed, remembered and logged (a phone
    // switched off does not forget what it showed; its answer is lost).
    let answer = tokio::spawn(async move {
        let answer = state.answer(&push).await;
        state.record(&answer, Some(&push), arrived);
        answer
    })
    .await
    .unwrap_or_else(|_| {
        Answer::refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            Outcome::Error,
            "gateway task failed",
        )
    });
    if let Some(delay) = answer.delay {
        tokio::time::sleep(delay).await;
    }
    Ok(answer.response())
}

/// The push a request asks for, or the answer refusing it.
async fn read(req: Request<hyper::body::Incoming>) -> Result<Push, Answer> {
    let bad = |status, why: &str| Answer::refused(status, Outcome::BadRequest, why);
    if req.uri().path() != PATH {
        return Err(bad(StatusCode::NOT_FOUND, "no such path"));
    }
    if req.method() != Method::POST {
        return Err(bad(StatusCode::METHOD_NOT_ALLOWED, "POST only")
            .header("allow", HeaderValue::from_static("POST")));
    }
    let header = |name: &str| -> Result<Option<&str>, Answer> {
        match req.headers().get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|v| Some(v.trim()))
                .map_err(|_| bad(StatusCode::BAD_REQUEST, "header not visible ASCII")),
        }
    };
    let number = |name: &str| -> Result<u32, Answer> {
        header(name)?.map_or(Ok(0), |v| {
            v.parse()
                .map_err(|_| bad(StatusCode::BAD_REQUEST, "caller header not a u32"))
        })
    };
    let (consumer, pid) = (number(CONSUMER_HEADER)?, number(PID_HEADER)?);
    let key = header(KEY_HEADER)?.map(str::to_string);
    if key.as_deref() == Some("") {
        return Err(bad(StatusCode::BAD_REQUEST, "empty Idempotency-Key"));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(bad(StatusCode::PAYLOAD_TOO_LARGE, "body too large"))
        }
        Err(_) => return Err(bad(StatusCode::BAD_REQUEST, "body not read")),
    };
    let request: PushRequest = serde_json::from_slice(&body)
        .map_err(|_| bad(StatusCode::BAD_REQUEST, "body is not a push request"))?;
    // A message ID is one field of a log line and a row's key.
    if request.message_id.is_empty() || request.message_id.contains(char::is_control) {
        return Err(bad(StatusCode::BAD_REQUEST, "bad message_id"));
    }
    Ok(Push {
        message_id: request.message_id,
        key,
        consumer,
        pid,
    })
}

impl State {
    fn misbehaviour(&self) -> Option<Misbehaviour> {
        self.how.lock().ok().and_then(|h| *h)
    }

    /// Decides a valid push's answer, committing its effect if it has one.
    async fn answer(&self, push: &Push) -> Answer {
        let how = self.misbehaviour();
        let answer = match how {
            Some(Misbehaviour::Unavailable { retry_after_s }) => Answer::refused(
                StatusCode::SERVICE_UNAVAILABLE,
                Outcome::Unavailable,
                "unavailable",
            )
            .header("retry-after", retry_after_s),
            Some(Misbehaviour::Throttled { retry_after_s }) => Answer::refused(
                StatusCode::TOO_MANY_REQUESTS,
                Outcome::Throttled,
                "throttled",
            )
            .header("retry-after", retry_after_s),
            _ => self.show(push).await,
        };
        Answer {
            delay: match how {
                Some(Misbehaviour::Slow { delay }) => Some(delay),
                _ => None,
            },
            ..answer
        }
    }

    /// Shows the notification (commits its effect) unless its key was
    /// answered before.
    async fn show(&self, push: &Push) -> Answer {
        let ok = |body| Answer::new(StatusCode::OK, Outcome::Applied, body);
        let replay = |body| {
            Answer::new(StatusCode::OK, Outcome::Replayed, body)
                .header(REPLAYED_HEADER, HeaderValue::from_static("true"))
        };
        let Some(writer) = &self.writer else {
            let n = self.shown.fetch_add(1, Ordering::Relaxed) + 1;
            return ok(response_body(n, &push.message_id));
        };
        let claim = match &push.key {
            None => None,
            Some(key) => match self.keys.lock().map(|mut k| k.claim(key, Instant::now())) {
                Ok(Lookup::New(claim)) => Some(claim),
                Ok(Lookup::Expired(claim)) => {
                    bump(&self.counters.keys_expired);
                    Some(claim)
                }
                Ok(Lookup::Done(body)) => return replay(body),
                Ok(Lookup::InFlight) => {
                    return Answer::refused(
                        StatusCode::CONFLICT,
                        Outcome::InFlight,
                        "this key's first request is still running",
                    )
                    .header("retry-after", 1u32)
                }
                Err(_) => None,
            },
        };
        let job = Job {
            message_id: push.message_id.clone(),
            consumer: push.consumer,
            pid: push.pid,
            disk_key: push
                .key
                .clone()
                .filter(|_| self.key_store == KeyStore::Disk),
        };
        let (answer, remember) = match writer.submit(job).await {
            Ok(Committed::Applied { body, expired }) => {
                if expired {
                    bump(&self.counters.keys_expired);
                }
                (ok(body.clone()), Some(body))
            }
            Ok(Committed::Replayed(body)) => (replay(body), None),
            Err(e) => (
                Answer::refused(StatusCode::INTERNAL_SERVER_ERROR, Outcome::Error, &e),
                None,
            ),
        };
        if let (Some(claim), Ok(mut keys)) = (claim, self.keys.lock()) {
            // On disk the key was remembered in the effect's transaction.
            let remember = remember.filter(|_| self.key_store == KeyStore::Memory);
            keys.finish(claim, remember, Instant::now());
        }
        answer
    }

    /// Counts an answer and writes its access-log line.
    fn record(&self, answer: &Answer, push: Option<&Push>, arrived: Instant) {
        let c = &self.counters;
        bump(&c.requests);
        match answer.status.as_u16() {
            200..=299 => bump(&c.status_2xx),
            400..=499 => bump(&c.status_4xx),
            500..=599 => bump(&c.status_5xx),
            _ => {}
        }
        match answer.outcome {
            Outcome::Applied => bump(&c.applied),
            Outcome::Replayed => bump(&c.replayed),
            Outcome::InFlight => bump(&c.in_flight),
            Outcome::Unavailable => bump(&c.unavailable),
            Outcome::Throttled => bump(&c.throttled),
            Outcome::BadRequest | Outcome::Error => {}
        }
        if let Some(log) = &self.log {
            let _ = log.write(&Line {
                at_us: crate::effects::now_us(),
                status: answer.status.as_u16(),
                outcome: answer.outcome,
                message_id: push.map(|p| p.message_id.as_str()),
                key: push.and_then(|p| p.key.as_deref()),
                consumer: push.map_or(0, |p| p.consumer),
                micros: arrived.elapsed().as_micros() as u64,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Run {
        dir: PathBuf,
        gateway: Gateway,
    }

    impl Run {
        async fn start(key_ttl: Duration, key_store: KeyStore) -> Run {
            let dir = std::env::temp_dir().join(format!("dlab-push-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            let gateway = Gateway::start(GatewayConfig {
                addr: "127.0.0.1:0".parse().unwrap(),
                store: Some(dir.join("effects.sqlite")),
                key_ttl,
                key_store,
                access_log: Some(dir.join("push-access.log")),
                tls: None,
            })
            .await
            .unwrap();
            Run { dir, gateway }
        }

        fn store(&self) -> EffectStore {
            EffectStore::open(&self.dir.join("effects.sqlite")).unwrap()
        }

        /// Effect rows per message ID.
        fn rows(&self) -> std::collections::HashMap<String, u64> {
            let mut rows = std::collections::HashMap::new();
            self.store()
                .scan(|id, row, _| {
                    if row == crate::effects::Row::Effect {
                        *rows.entry(id.to_string()).or_default() += 1;
                    }
                })
                .unwrap();
            rows
        }

        fn effects(&self) -> u64 {
            self.store().recount().unwrap().0
        }

        async fn push(&self, id: &str, key: Option<&str>) -> Reply {
            let mut headers = vec![("X-Dlab-Consumer", "3"), ("X-Dlab-Pid", "4242")];
            headers.extend(key.map(|k| ("Idempotency-Key", k)));
            let body = format!(r#"{{"message_id": "{id}", "text": "hello", "extra": 1}}"#);
            request(self.gateway.addr(), "POST", PATH, &headers, &body)
                .await
                .unwrap()
        }

        /// The access log counted again equals the effect rows.
        fn check_log(&self) {
            self.gateway.flush_log();
            let count =
                super::super::access_log::recount(&self.dir.join("push-access.log")).unwrap();
            assert_eq!(count.applied_ids, self.rows());
            assert_eq!(count.requests, self.gateway.stats().requests);
            assert_eq!(count.malformed, 0);
        }
    }

    impl Drop for Run {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn shown(&self) -> PushResponse {
            serde_json::from_str(&self.body).unwrap()
        }
    }

    /// One HTTP/1.1 request on a connection of its own (`Connection: close`).
    async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<Reply> {
        let mut stream = TcpStream::connect(addr).await?;
        let mut text = format!(
            "{method} {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(body);
        stream.write_all(text.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse(&String::from_utf8_lossy(&raw))
    }

    /// One HTTP/1.1 push on a kept-alive connection, and its answer.
    async fn exchange(stream: &mut tokio::io::BufReader<TcpStream>, id: &str) -> Reply {
        use tokio::io::AsyncBufReadExt;
        let body = format!(r#"{{"message_id": "{id}"}}"#);
        let text = format!(
            "POST {PATH} HTTP/1.1\r\nHost: gateway\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.get_mut().write_all(text.as_bytes()).await.unwrap();
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            assert!(stream.read_line(&mut head).await.unwrap() > 0, "closed");
        }
        let mut reply = parse(&head).unwrap();
        let mut body = vec![0; reply.header("content-length").unwrap().parse().unwrap()];
        stream.read_exact(&mut body).await.unwrap();
        reply.body = String::from_utf8(body).unwrap();
        reply
    }

    fn parse(raw: &str) -> std::io::Result<Reply> {
        let bad = || std::io::Error::other(format!("not an HTTP answer: {raw:?}"));
        let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(bad)?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        Ok(Reply {
            status,
            headers,
            body: body.to_string(),
        })
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_sent_twice_shows_once_and_replays_the_first_answer() {
        for key_store in [KeyStore::Memory, KeyStore::Disk] {
            let run = Run::start(LONG, key_store).await;
            let first = run.push("m1", Some("k1")).await;
            let second = run.push("m1", Some("k1")).await;
            assert_eq!((first.status, second.status), (200, 200));
            assert_eq!(first.header(REPLAYED_HEADER), None);
            assert_eq!(second.header(REPLAYED_HEADER), Some("true"));
            assert_eq!(second.body, first.body);
            assert_eq!(
                first.shown(),
                PushResponse {
                    notification: 1,
                    message_id: "m1".into()
                }
            );
            assert_eq!(run.effects(), 1);
            let stats = run.gateway.stats();
            assert_eq!((stats.applied, stats.replayed), (1, 1), "{key_store:?}");
            let (consumer, pid): (u32, u32) =
                rusqlite::Connection::open(run.dir.join("effects.sqlite"))
                    .unwrap()
                    .query_row("SELECT consumer, pid FROM effects", [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .unwrap();
            assert_eq!(
                (consumer, pid),
                (3, 4242),
                "the caller's, not the gateway's"
            );
            run.check_log();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_key_every_push_is_shown() {
        let run = Run::start(LONG, KeyStore::Memory).await;
        let first = run.push("m1", None).await;
        let second = run.push("m1", None).await;
        assert_eq!(second.header(REPLAYED_HEADER), None);
        assert_eq!(
            (first.shown().notification, second.shown().notification),
            (1, 2)
        );
        assert_eq!(run.effects(), 2);
        run.check_log();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_past_its_ttl_is_forgotten() {
        for key_store in [KeyStore::Memory, KeyStore::Disk] {
            let run = Run::start(Duration::from_millis(50), key_store).await;
            run.push("m1", Some("k1")).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let again = run.push("m1", Some("k1")).await;
            assert_eq!(again.header(REPLAYED_HEADER), None);
            assert_eq!(run.effects(), 2, "{key_store:?}");
            assert_eq!(run.gateway.stats().keys_expired, 1, "{key_store:?}");
            run.check_log();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_forgets_keys_in_memory_but_not_on_disk() {
        for (key_store, effects) in [(KeyStore::Memory, 2), (KeyStore::Disk, 1)] {
            let run = Run::start(LONG, key_store).await;
            run.push("m1", Some("k1")).await;
            run.gateway.restart().await.unwrap();
            let again = run.push("m1", Some("k1")).await;
            assert_eq!(again.status, 200);
            assert_eq!(run.effects(), effects, "{key_store:?}");
            assert_eq!(run.gateway.stats().restarts, 1);
            run.check_log();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn faults_refuse_with_retry_after_and_no_effect() {
        let run = Run::start(LONG, KeyStore::Memory).await;
        run.gateway
            .misbehave(Some(Misbehaviour::Unavailable { retry_after_s: 7 }));
        let refused = run.push("m1", Some("k1")).await;
        assert_eq!(
            (refused.status, refused.header("retry-after")),
            (503, Some("7"))
        );
        run.gateway
            .misbehave(Some(Misbehaviour::Throttled { retry_after_s: 2 }));
        let throttled = run.push("m1", Some("k1")).await;
        assert_eq!(
            (throttled.status, throttled.header("retry-after")),
            (429, Some("2"))
        );
        assert_eq!(run.effects(), 0);
        run.gateway.misbehave(None);
        assert_eq!(
            run.push("m1", Some("k1")).await.status,
            200,
            "the key was not taken"
        );
        let stats = run.gateway.stats();
        assert_eq!(
            (
                stats.unavailable,
                stats.throttled,
                stats.applied,
                stats.status_5xx,
                stats.status_4xx
            ),
            (1, 1, 1, 1, 1)
        );
        run.check_log();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_gateway_shows_first_and_answers_late() {
        let run = Run::start(LONG, KeyStore::Memory).await;
        run.gateway.misbehave(Some(Misbehaviour::Slow {
            delay: Duration::from_secs(2),
        }));
        let late =
            tokio::time::timeout(Duration::from_millis(300), run.push("m1", Some("k1"))).await;
        assert!(late.is_err(), "the client gave up first");
        until("the effect", || run.effects() == 1).await;
        run.gateway.misbehave(None);
        let retry = run.push("m1", Some("k1")).await;
        assert_eq!(retry.header(REPLAYED_HEADER), Some("true"));
        run.check_log();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_whose_first_request_runs_is_refused_with_409() {
        let run = Run::start(LONG, KeyStore::Memory).await;
        // Another connection holds the store's write lock: the first push waits.
        let mut blocker = rusqlite::Connection::open(run.dir.join("effects.sqlite")).unwrap();
        let lock = blocker
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        let first = {
            let addr = run.gateway.addr();
            tokio::spawn(async move {
                let body = r#"{"message_id": "m1"}"#;
                request(addr, "POST", PATH, &[("Idempotency-Key", "k1")], body).await
            })
        };
        let keys = &run.gateway.state.keys;
        until("the first request's claim", || {
            keys.lock().unwrap().get("k1") == Some(&super::super::keys::Entry::InFlight)
        })
        .await;
        let second = run.push("m1", Some("k1")).await;
        assert_eq!(
            (second.status, second.header("retry-after")),
            (409, Some("1"))
        );
        lock.rollback().unwrap();
        assert_eq!(first.await.unwrap().unwrap().status, 200);
        assert_eq!(
            run.push("m1", Some("k1")).await.header(REPLAYED_HEADER),
            Some("true")
        );
        assert_eq!(run.effects(), 1);
        assert_eq!(run.gateway.stats().in_flight, 1);
        run.check_log();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn down_refuses_and_closes_connections_and_up_serves_again() {
        let run = Run::start(LONG, KeyStore::Memory).await;
        let addr = run.gateway.addr();
        // A kept-alive connection, answered once.
        let mut open = tokio::io::BufReader::new(TcpStream::connect(addr).await.unwrap());
        assert_eq!(exchange(&mut open, "m0").await.status, 200);
        run.gateway.set_down(true).await.unwrap();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        run.gateway.set_down(false).await.unwrap();
        assert_eq!(run.push("m1", None).await.status, 200);
        assert_eq!(run.effects(), 2);
        run.check_log();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_is_not_a_push_is_refused_with_no_effect() {
        let run = Run::start(LONG, KeyStore::Memory).await;
        let addr = run.gateway.addr();
        let ok = r#"{"message_id": "m1"}"#;
        let status = |r: std::io::Result<Reply>| r.unwrap().status;
        assert_eq!(
            status(request(addr, "POST", "/v2/other", &[], ok).await),
            404
        );
        assert_eq!(status(request(addr, "GET", PATH, &[], "").await), 405);
        assert_eq!(status(request(addr, "POST", PATH, &[], "{").await), 400);
        assert_eq!(
            status(request(addr, "POST", PATH, &[], r#"{"text": "x"}"#).await),
            400
        );
        let bad_caller = [("X-Dlab-Consumer", "minus one")];
        assert_eq!(
            status(request(addr, "POST", PATH, &bad_caller, ok).await),
            400
        );
        let big = format!(
            r#"{{"message_id": "m1", "text": "{}"}}"#,
            "x".repeat(MAX_BODY)
        );
        assert_eq!(status(request(addr, "POST", PATH, &[], &big).await), 413);
        assert_eq!(run.effects(), 0);
        assert_eq!(run.gateway.stats().status_4xx, 6);
        run.check_log();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http1_keeps_connections_alive_and_http2_is_spoken() {
        let run = Run::start(LONG, KeyStore::Memory).await;
        let mut kept =
            tokio::io::BufReader::new(TcpStream::connect(run.gateway.addr()).await.unwrap());
        for i in 1..=2 {
            let reply = exchange(&mut kept, &format!("h1-{i}")).await;
            assert_eq!((reply.status, reply.shown().notification), (200, i));
        }
        assert_eq!(run.gateway.stats().connections, 1);
        let uri: hyper::Uri = format!("http://{}{PATH}", run.gateway.addr())
            .parse()
            .unwrap();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<Full<Bytes>>();
        for i in 0..3 {
            let req = Request::post(uri.clone())
                .body(Full::new(Bytes::from(format!(
                    r#"{{"message_id": "h2-{i}"}}"#
                ))))
                .unwrap();
            let response = client.request(req).await.unwrap();
            assert_eq!(response.status(), 200);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let shown: PushResponse = serde_json::from_slice(&body).unwrap();
            assert_eq!(shown.message_id, format!("h2-{i}"));
        }
        let stats = run.gateway.stats();
        assert!(stats.http2_connections >= 1);
        assert_eq!(stats.connections, 1 + stats.http2_connections);
        assert_eq!(run.effects(), 5);
        run.check_log();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_store_every_push_is_answered_and_nothing_kept() {
        let gateway = Gateway::start(GatewayConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            store: None,
            key_ttl: LONG,
            key_store: KeyStore::Memory,
            access_log: None,
            tls: None,
        })
        .await
        .unwrap();
        let body = r#"{"message_id": "m1"}"#;
        let key = [("Idempotency-Key", "k1")];
        for n in 1..=2 {
            let reply = request(gateway.addr(), "POST", PATH, &key, body)
                .await
                .unwrap();
            assert_eq!((reply.status, reply.shown().notification), (200, n));
        }
        assert_eq!(gateway.stats().requests, 2);
    }
}
