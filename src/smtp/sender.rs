//! The sender: notifications as emails through `mail-send`, each with its
//! message ID as the Message-ID, over N concurrent SMTP sessions with many
//! messages per session.
//!
//! What a message is (`[esmtp]`): by default a MIME message as the mail
//! library builds it; or 8-bit text, declared with `BODY=8BITMIME` or not,
//! with or without MIME headers; to an ASCII address, or to an
//! internationalised one with `SMTPUTF8`.
//!
//! Policies: `send-once` makes one attempt per message and gives up on any
//! failure; `retry` sends again until a 2xx reply, also after a lost reply
//! (the message may then arrive twice: RFC 1047).
//!
//! TLS ([`SenderTls`]): STARTTLS with the lab CA as the only root (or any
//! certificate, when verification is off), required (no offer: no message,
//! it waits) or opportunistic (no offer: in clear).

use super::esmtp::{self, Body};
use crate::ledger::Event;
use crate::message_id;
use mail_send::mail_builder::MessageBuilder;
use mail_send::smtp::message::{Address, Message, Parameters};
use mail_send::{SmtpClient, SmtpClientBuilder};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// What the sender does when it does not get a 2xx reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendPolicy {
    /// One attempt per message.
    SendOnce,
    /// Again until a 2xx reply.
    Retry,
}

/// What happened to the messages sent (also the sender's part of an SMTP
/// run's result).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct SendReport {
    /// Attempts (DATA transactions started).
    pub attempts: u64,
    /// Messages that got a 2xx reply.
    pub accepted: u64,
    /// Replies 4xx or 5xx.
    pub refused: u64,
    /// Attempts whose reply never came (connection lost, timeout): in doubt.
    pub in_doubt: u64,
    /// Messages given up on.
    pub given_up: u64,
}

/// The text of a notification: non-ASCII on purpose, to see it arrive intact.
pub const BODY: &str = "Votre colis est arrivé ☎ — ça sonne une fois.";

/// Message `seq` of run `run_id`, its envelope included.
pub fn message(run_id: &str, seq: u64, how: esmtp::Send) -> Message<'static> {
    let to = how.recipient.address();
    let id = message_id::format(run_id, seq);
    let body = match how.body {
        Body::Mime => MessageBuilder::new()
            .from(("dlab", esmtp::SENDER))
            .to(("phone", to))
            .subject(format!("Notification {seq}"))
            .message_id(id)
            .text_body(BODY)
            .write_to_vec()
            .unwrap_or_default(),
        Body::EightBitMime | Body::EightBitUndeclared => format!(
            "From: dlab <{}>\r\nTo: phone <{to}>\r\nSubject: Notification {seq}\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{BODY}\r\n",
            esmtp::SENDER
        )
        .into_bytes(),
        Body::EightBitNoMime => format!(
            "From: dlab <{}>\r\nTo: phone <{to}>\r\nSubject: Notification {seq}\r\nMessage-ID: <{id}>\r\n\r\n{BODY}\r\n",
            esmtp::SENDER
        )
        .into_bytes(),
    };
    let mut params = Parameters::new();
    if how.body == Body::EightBitMime {
        params.add(("BODY", "8BITMIME"));
    }
    if how.recipient == esmtp::Recipient::Utf8 {
        params.add("SMTPUTF8");
    }
    Message {
        mail_from: Address::new(esmtp::SENDER, params),
        rcpt_to: vec![Address::new(to, Parameters::new())],
        body: body.into(),
    }
}

/// The sender's TLS.
#[derive(Clone)]
pub struct SenderTls {
    /// The client configuration: the lab CA as the only root (or none), a
    /// certificate with mutual TLS.
    pub connector: TlsConnector,
    /// Whether a session without STARTTLS is refused (`true`) or goes on in clear.
    pub required: bool,
}

impl std::fmt::Debug for SenderTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SenderTls {{ required: {} }}", self.required)
    }
}

/// How to send.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Concurrent SMTP sessions.
    pub sessions: usize,
    /// What to do without a 2xx reply.
    pub policy: SendPolicy,
    /// Messages per second across all sessions (0: as fast as possible).
    pub rate: u64,
    /// What each message is.
    pub esmtp: esmtp::Send,
    /// STARTTLS, or plain SMTP.
    pub tls: Option<SenderTls>,
}

/// Where the sender reports each attempt, with the moment it happened, as
/// the ledger's events: an attempt is a DATA transaction, a 2xx reply a
/// confirm (the relay owns the message), 4xx or 5xx a nack, a lost reply in
/// doubt.
pub type Events = tokio::sync::mpsc::UnboundedSender<(Event, std::time::Instant)>;

/// Sends messages `seqs` of run `run_id` to `addr` over `sessions` sessions.
pub async fn send_all(
    addr: SocketAddr,
    run_id: &str,
    seqs: Vec<u64>,
    sessions: usize,
    policy: SendPolicy,
) -> SendReport {
    let options = SendOptions {
        sessions,
        policy,
        rate: 0,
        esmtp: esmtp::Send::default(),
        tls: None,
    };
    send(addr, run_id, Pending::new(seqs), options, None).await
}

/// The messages the sender has yet to send (retries go back in); emptying
/// it stops the sender once the transactions in progress end.
#[derive(Debug, Clone, Default)]
pub struct Pending(Arc<Mutex<VecDeque<u64>>>);

impl Pending {
    /// Messages `seqs`, to be sent in this order.
    pub fn new(seqs: Vec<u64>) -> Pending {
        Pending(Arc::new(Mutex::new(VecDeque::from(seqs))))
    }

    /// Drops every message not sent yet and says how many there were.
    pub fn clear(&self) -> usize {
        let mut q = self.0.lock().expect("not poisoned");
        let n = q.len();
        q.clear();
        n
    }
}

/// Sends the `pending` messages as `options` say, reporting every attempt to `events`.
pub async fn send(
    addr: SocketAddr,
    run_id: &str,
    pending: Pending,
    options: SendOptions,
    events: Option<Events>,
) -> SendReport {
    let queue = pending.0;
    let report = Arc::new(Mutex::new(SendReport::default()));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..options.sessions.max(1) {
        let s = Session {
            addr,
            run_id: run_id.to_string(),
            queue: queue.clone(),
            report: report.clone(),
            options: options.clone(),
            events: events.clone(),
            start,
        };
        tasks.push(tokio::spawn(s.run()));
    }
    for t in tasks {
        let _ = t.await;
    }
    let r = report.lock().expect("not poisoned").clone();
    r
}

struct Session {
    addr: SocketAddr,
    run_id: String,
    queue: Arc<Mutex<VecDeque<u64>>>,
    report: Arc<Mutex<SendReport>>,
    options: SendOptions,
    events: Option<Events>,
    start: tokio::time::Instant,
}

impl Session {
    fn event(&self, e: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send((e, std::time::Instant::now()));
        }
    }

    fn next(&self) -> Option<u64> {
        self.queue.lock().expect("not poisoned").pop_front()
    }

    fn again(&self, seq: u64) {
        self.queue.lock().expect("not poisoned").push_back(seq);
    }

    async fn run(self) {
        let policy = self.options.policy;
        // The server's name is its address: the lab's certificate names 127.0.0.1.
        let (host, port) = (self.addr.ip().to_string(), self.addr.port());
        let builder = match &self.options.tls {
            Some(t) => SmtpClientBuilder::new_with_tls_connector(host, port, t.connector.clone()),
            None => match SmtpClientBuilder::new(host, port) {
                Ok(b) => b,
                Err(_) => return,
            },
        }
        .implicit_tls(false)
        .helo_host(HELO_HOST)
        .timeout(Duration::from_secs(10));
        let mut client = None;
        let mut failures = 0u32;
        while let Some(seq) = self.next() {
            if self.options.rate > 0 {
                // Message `seq` is due seq/rate seconds after the start.
                let due = Duration::from_secs_f64(seq as f64 / self.options.rate as f64);
                tokio::time::sleep_until(self.start + due).await;
            }
            if client.is_none() {
                match connect(&builder, self.options.tls.as_ref()).await {
                    Ok(c) => client = Some(c),
                    Err(_) => {
                        failures += 1;
                        if policy == SendPolicy::SendOnce || failures > 600 {
                            self.report.lock().expect("not poisoned").given_up += 1;
                        } else {
                            self.again(seq);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        continue;
                    }
                }
            }
            let c = client.as_mut().expect("connected above");
            self.report.lock().expect("not poisoned").attempts += 1;
            self.event(Event::Attempt(seq));
            let outcome = c.send(message(&self.run_id, seq, self.options.esmtp)).await;
            let retry = match outcome {
                Ok(_) => {
                    failures = 0;
                    self.report.lock().expect("not poisoned").accepted += 1;
                    self.event(Event::Confirmed(seq));
                    false
                }
                Err(mail_send::Error::UnexpectedReply(_)) => {
                    self.report.lock().expect("not poisoned").refused += 1;
                    self.event(Event::Nacked(seq));
                    // The session may be mid-transaction; start clean.
                    client = None;
                    true
                }
                Err(_) => {
                    self.report.lock().expect("not poisoned").in_doubt += 1;
                    self.event(Event::InDoubt(seq));
                    client = None;
                    true
                }
            };
            if retry {
                if policy == SendPolicy::Retry {
                    self.again(seq);
                } else {
                    self.report.lock().expect("not poisoned").given_up += 1;
                }
            }
        }
        if let Some(c) = client {
            let _ = c.quit().await;
        }
    }
}

/// The name the sender gives in EHLO.
const HELO_HOST: &str = "sender.dlab.invalid";

/// A session with the relay, in clear or in TLS.
enum Client {
    Plain(SmtpClient<TcpStream>),
    Tls(Box<SmtpClient<TlsStream<TcpStream>>>),
}

impl Client {
    async fn send(&mut self, message: Message<'_>) -> mail_send::Result<()> {
        match self {
            Client::Plain(c) => c.send(message).await.map(|_| ()),
            Client::Tls(c) => c.send(message).await.map(|_| ()),
        }
    }

    async fn quit(self) -> mail_send::Result<()> {
        match self {
            Client::Plain(c) => c.quit().await,
            Client::Tls(c) => c.quit().await,
        }
    }
}

/// A session as `tls` says: plain; STARTTLS required (mail-send's own
/// `connect`: no offer, an error); or STARTTLS when offered.
async fn connect(
    builder: &SmtpClientBuilder<String>,
    tls: Option<&SenderTls>,
) -> mail_send::Result<Client> {
    let client = match tls {
        None => Client::Plain(builder.connect_plain().await?),
        Some(t) if t.required => Client::Tls(Box::new(builder.connect().await?)),
        Some(t) => opportunistic(builder, &t.connector).await?,
    };
    // Without this, Nagle's algorithm and delayed ACKs hold every command
    // of a session for tens of milliseconds.
    let _ = match &client {
        Client::Plain(c) => c.stream.set_nodelay(true),
        Client::Tls(c) => c.stream.get_ref().0.set_nodelay(true),
    };
    Ok(client)
}

/// STARTTLS if the EHLO reply offers it, else the session goes on in clear.
async fn opportunistic(
    builder: &SmtpClientBuilder<String>,
    connector: &TlsConnector,
) -> mail_send::Result<Client> {
    use mail_send::smtp::AssertReply;
    let connect = TcpStream::connect(&builder.addr);
    let stream = tokio::time::timeout(builder.timeout, connect)
        .await
        .map_err(|_| mail_send::Error::Timeout)??;
    let mut c = SmtpClient {
        stream,
        timeout: builder.timeout,
    };
    c.read().await?.assert_positive_completion()?;
    let ehlo = c.cmd(format!("EHLO {HELO_HOST}\r\n")).await?;
    let offered = ehlo.code / 100 == 2 && ehlo.message.to_ascii_uppercase().contains("STARTTLS");
    if !offered {
        return Ok(Client::Plain(c));
    }
    let mut c = c.start_tls(connector, &builder.tls_hostname).await?;
    c.cmd(format!("EHLO {HELO_HOST}\r\n"))
        .await?
        .assert_positive_completion()?;
    Ok(Client::Tls(Box::new(c)))
}
