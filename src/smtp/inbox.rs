//! The inbox: dlab's own SMTP server, playing the recipient's phone. Every
//! message it accepts becomes an effect in the effect store, keyed by its
//! Message-ID, before the 250 reply that tells the client (the relay) it may
//! forget the message; with `idempotent`, a Message-ID already seen is
//! accepted again with no second effect, in the same transaction.
//!
//! It announces what the scenario's `[esmtp]` says (by default PIPELINING,
//! 8BITMIME, SMTPUTF8 and SIZE; or HELO only), refuses a MAIL parameter it
//! did not announce, and records whether each message's text was valid
//! UTF-8, 7-bit, quoted-printable and intact. Without 8BITMIME it is a 7-bit
//! hop as RFC 821 knew them: it clears the eighth bit of every octet (and
//! counts the messages that had one). A message with the null reverse-path
//! is a relay's return ([`super::returns`]), counted, never an effect.
//! Lines are read one at a time (PIPELINING needs nothing more). With TLS
//! ([`Inbox::offer_starttls`]) it offers STARTTLS and restarts the dialogue
//! inside TLS ([`super::inbox_tls`]).

use super::esmtp::{Announce, Extension};
use super::inbox_tls::{InboxTls, TlsAccount};
use super::returns::{self, Return};
use crate::effects::EffectStore;
use crate::group_commit::GroupCommit;
use crate::tls::Conn;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The largest message accepted (advertised as SIZE): a larger one is read
/// to its final "." without being kept, and refused with 552 and no effect.
pub const MAX_SIZE: usize = 10 * 1024 * 1024;
/// The longest line, command or text, with its CRLF. RFC 5321 allows 1000
/// octets in a text line and 512 in a command (more with extension
/// parameters); this is four times that. A line longer still closes the
/// session with a 500 reply instead of being buffered without end.
pub const MAX_LINE: usize = 4096;

/// Counters of what the inbox did.
#[derive(Debug, Default)]
pub struct InboxStats {
    /// Connections accepted.
    pub sessions: AtomicU64,
    /// Messages accepted with a 250.
    pub accepted: AtomicU64,
    /// Messages whose Message-ID was seen before (idempotent mode: no effect).
    pub suppressed: AtomicU64,
    /// Messages without a Message-ID header.
    pub without_id: AtomicU64,
    /// Messages whose text was not valid UTF-8.
    pub not_utf8: AtomicU64,
    /// Messages with bytes above 127 (8-bit or UTF-8 text).
    pub eight_bit: AtomicU64,
    /// Messages whose decoded text contained the expected text.
    pub text_intact: AtomicU64,
    /// Messages whose decoded text did not (mangled on the way).
    pub text_mangled: AtomicU64,
    /// Replies to a final "." withheld or refused by an inbox fault.
    pub misbehaved: AtomicU64,
    /// Messages whose text arrived quoted-printable.
    pub quoted_printable: AtomicU64,
    /// Messages with 8-bit octets on a hop that did not announce 8BITMIME
    /// (their eighth bit cleared, as a 7-bit hop does).
    pub eight_bit_on_7bit_hop: AtomicU64,
    /// Transactions whose MAIL FROM declared `BODY=8BITMIME`.
    pub declared_8bitmime: AtomicU64,
    /// Transactions whose MAIL FROM asked for `SMTPUTF8`.
    pub smtputf8: AtomicU64,
    /// Messages with the null reverse-path: returns, not notifications.
    pub returns: AtomicU64,
    /// What came over TLS, and how.
    pub tls: TlsAccount,
}

/// A running inbox.
pub struct Inbox {
    addr: SocketAddr,
    shared: Arc<InboxState>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    sessions: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

/// Dropping the inbox takes it down whole: the listener and every open
/// session (a relay's cached connection must not outlive the phone).
impl Drop for Inbox {
    fn drop(&mut self) {
        self.close();
    }
}

/// How the inbox answers while an inbox fault is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// 451 after the final "." and no effect.
    Tempfail,
    /// The effect, then the 250 after [`SLOW_REPLY`] (longer than the relay waits).
    Slow,
    /// The effect, then the connection closed without a reply.
    Hangup,
}

/// How late a slow inbox replies: longer than the private relay's
/// `smtp_data_done_timeout` (see [`crate::relay`]).
pub const SLOW_REPLY: std::time::Duration = std::time::Duration::from_secs(6);

struct InboxState {
    writer: GroupCommit<String, bool>,
    stats: InboxStats,
    /// 0: well behaved; else a [`Misbehaviour`] (see `misbehaviour`).
    mode: std::sync::atomic::AtomicU8,
    /// The text every message should carry, to check it arrived intact.
    expect_text: Option<String>,
    /// Where each committed message is reported as a delivery.
    deliveries: Mutex<Option<Deliveries>>,
    /// What it answers to EHLO.
    announce: Announce,
    /// Every return received, in order.
    returned: Mutex<Vec<Return>>,
    /// STARTTLS: offered with this, or not at all.
    tls: Mutex<Option<InboxTls>>,
}

/// The run whose messages the inbox reports as deliveries, and where to.
struct Deliveries {
    run_id: String,
    events: crate::smtp::sender::Events,
    /// Messages received before: a second receipt is a redelivery.
    seen: std::collections::HashSet<u64>,
}

impl InboxState {
    fn misbehaviour(&self) -> Option<Misbehaviour> {
        match self.mode.load(Ordering::SeqCst) {
            1 => Some(Misbehaviour::Tempfail),
            2 => Some(Misbehaviour::Slow),
            3 => Some(Misbehaviour::Hangup),
            _ => None,
        }
    }
}

/// The inbox's effect writer: every message waiting is committed in one
/// transaction (see [`crate::group_commit`]), so every 250 still follows the
/// commit that covers its message. Answers whether the effect was applied.
fn writer(
    store: EffectStore,
    idempotent: bool,
    consumer: u32,
) -> std::io::Result<GroupCommit<String, bool>> {
    GroupCommit::start(store, consumer, move |batch, id: &String| {
        let now = crate::effects::now_us();
        if idempotent {
            batch.apply_once(id, now)
        } else {
            batch.apply(id, now).map(|_| true)
        }
    })
}

impl Inbox {
    /// Listens on `addr` (port 0: a free one) and records effects in the
    /// effect store at `store`.
    pub async fn start(
        addr: SocketAddr,
        store: &Path,
        idempotent: bool,
        consumer: u32,
    ) -> std::io::Result<Inbox> {
        Inbox::start_checking(addr, store, idempotent, consumer, None, Announce::default()).await
    }

    /// Like [`Inbox::start`], announcing `announce` after EHLO, and checks
    /// that every message's decoded text contains `expect_text` (counted in
    /// [`InboxStats::text_intact`]).
    pub async fn start_checking(
        addr: SocketAddr,
        store: &Path,
        idempotent: bool,
        consumer: u32,
        expect_text: Option<String>,
        announce: Announce,
    ) -> std::io::Result<Inbox> {
        let store = EffectStore::open(store).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(InboxState {
            writer: writer(store, idempotent, consumer)?,
            stats: InboxStats::default(),
            mode: Default::default(),
            expect_text,
            deliveries: Mutex::new(None),
            announce,
            returned: Mutex::default(),
            tls: Mutex::default(),
        });
        let inbox = Inbox {
            addr,
            shared,
            task: Mutex::new(None),
            sessions: Arc::default(),
        };
        inbox.listen(listener);
        Ok(inbox)
    }

    /// Reports every message of run `run_id` whose effect (or suppressed
    /// duplicate) is committed as a delivery to `events`, the same ledger
    /// event a consumer worker reports (its text is the effect store's).
    pub fn report_deliveries(&self, run_id: &str, events: crate::smtp::sender::Events) {
        if let Ok(mut d) = self.shared.deliveries.lock() {
            *d = Some(Deliveries {
                run_id: run_id.to_string(),
                events,
                seen: Default::default(),
            });
        }
    }

    fn listen(&self, listener: TcpListener) {
        let (shared, open) = (self.shared.clone(), self.sessions.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.stats.sessions.fetch_add(1, Ordering::Relaxed);
                let handle = tokio::spawn(session(stream, shared.clone())).abort_handle();
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

    /// Stops listening and closes every open session.
    fn close(&self) {
        if let Some(t) = self.task.lock().ok().and_then(|mut t| t.take()) {
            t.abort();
        }
        if let Ok(mut sessions) = self.sessions.lock() {
            for s in sessions.drain(..) {
                s.abort();
            }
        }
    }

    /// Takes the inbox down (`true`: connections refused, open sessions
    /// closed) or brings it back on the same address.
    pub async fn set_down(&self, down: bool) -> std::io::Result<()> {
        if down {
            self.close();
            return Ok(());
        }
        let running = self.task.lock().map(|t| t.is_some()).unwrap_or(false);
        if !running {
            // The port was just freed; another process may take it meanwhile,
            // so retry briefly rather than fail at once.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let listener = loop {
                match TcpListener::bind(self.addr).await {
                    Ok(l) => break l,
                    Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            };
            self.listen(listener);
        }
        Ok(())
    }

    /// Offers STARTTLS from now on, with `config`; `required`: a
    /// transaction in clear is refused with 530 (as Postfix's `encrypt`).
    pub fn offer_starttls(&self, config: Arc<rustls::ServerConfig>, required: bool) {
        if let Ok(mut t) = self.shared.tls.lock() {
            *t = Some(InboxTls::new(config, required));
        }
    }

    /// Makes the inbox misbehave (or behave again with `None`).
    pub fn misbehave(&self, how: Option<Misbehaviour>) {
        let mode = match how {
            None => 0,
            Some(Misbehaviour::Tempfail) => 1,
            Some(Misbehaviour::Slow) => 2,
            Some(Misbehaviour::Hangup) => 3,
        };
        self.shared.mode.store(mode, Ordering::SeqCst);
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn stats(&self) -> &InboxStats {
        &self.shared.stats
    }

    /// The returns it received, in order.
    pub fn returned(&self) -> Vec<Return> {
        self.shared
            .returned
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

/// The Message-ID of a message's header section, without angle brackets.
pub fn message_id(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let mut lines = text.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            return None;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("message-id") {
            let mut value = value.trim().to_string();
            while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                value.push_str(next.trim());
                lines.next();
            }
            let id = value
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string();
            return (!id.is_empty()).then_some(id);
        }
    }
    None
}

enum Step {
    Reply(&'static str),
    /// The EHLO reply, as announced.
    Ehlo,
    Data,
    Quit,
}

/// The value of parameter `name` of a `MAIL FROM:<...> NAME=value` command
/// (`Some("")` for a parameter without a value, e.g. SMTPUTF8).
fn parameter<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let after = line.find('>').map_or(line, |i| &line[i + 1..]);
    after.split_whitespace().find_map(|p| {
        let (key, value) = p.split_once('=').unwrap_or((p, ""));
        key.eq_ignore_ascii_case(name).then_some(value)
    })
}

/// The `SIZE=n` parameter of a `MAIL FROM:<...> SIZE=n` command (RFC 1870).
fn declared_size(line: &str) -> Option<u64> {
    parameter(line, "SIZE")?.parse().ok()
}

/// The mail transaction in progress.
#[derive(Debug, Default, Clone, Copy)]
struct Txn {
    mail: bool,
    rcpt: bool,
    /// `MAIL FROM:<>`: a return.
    null_sender: bool,
    /// `BODY=8BITMIME` was declared.
    eight_bit_mime: bool,
    /// `SMTPUTF8` was asked for.
    smtputf8: bool,
}

/// The reply to a MAIL parameter of an extension the inbox did not announce.
const UNANNOUNCED: &str = "555 5.5.4 Error: parameter not announced by this server\r\n";

fn command(line: &str, t: &mut Txn, announce: &Announce) -> Step {
    let verb = line
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" => Step::Ehlo,
        "HELO" => Step::Reply("250 inbox.dlab.invalid\r\n"),
        "MAIL" if declared_size(line).is_some_and(|n| n > MAX_SIZE as u64) => {
            Step::Reply("552 5.3.4 Error: message size exceeds fixed limit\r\n")
        }
        "MAIL" => {
            let body = parameter(line, "BODY").map(str::to_ascii_uppercase);
            let smtputf8 = parameter(line, "SMTPUTF8").is_some();
            let refused = (body.as_deref() == Some("8BITMIME")
                && !announce.has(Extension::EightBitMime))
                || (smtputf8 && !announce.has(Extension::SmtpUtf8))
                || (parameter(line, "SIZE").is_some() && !announce.has(Extension::Size));
            if refused {
                return Step::Reply(UNANNOUNCED);
            }
            *t = Txn {
                mail: true,
                rcpt: false,
                null_sender: line
                    .split_once(':')
                    .is_some_and(|(_, path)| path.trim_start().starts_with("<>")),
                eight_bit_mime: body.as_deref() == Some("8BITMIME"),
                smtputf8,
            };
            Step::Reply("250 2.1.0 Ok\r\n")
        }
        "RCPT" if t.mail && !t.smtputf8 && !line.is_ascii() => {
            Step::Reply("553 5.6.7 Error: an address in UTF-8 needs SMTPUTF8\r\n")
        }
        "RCPT" if t.mail => {
            t.rcpt = true;
            Step::Reply("250 2.1.5 Ok\r\n")
        }
        "RCPT" => Step::Reply("503 5.5.1 Error: need MAIL command\r\n"),
        "DATA" if t.rcpt => Step::Data,
        "DATA" => Step::Reply("503 5.5.1 Error: need RCPT command\r\n"),
        "RSET" => {
            *t = Txn::default();
            Step::Reply("250 2.0.0 Ok\r\n")
        }
        "NOOP" => Step::Reply("250 2.0.0 Ok\r\n"),
        "QUIT" => Step::Quit,
        _ => Step::Reply("502 5.5.2 Error: command not recognized\r\n"),
    }
}

async fn session(stream: TcpStream, shared: Arc<InboxState>) {
    let _ = stream.set_nodelay(true);
    let tls = shared.tls.lock().ok().and_then(|t| t.clone());
    let greeting = "220 inbox.dlab.invalid ESMTP dlab inbox\r\n";
    let Some(clear) = dialogue(Box::new(stream), &shared, greeting, tls.as_ref(), false).await
    else {
        return;
    };
    // STARTTLS: the handshake, then the dialogue again from the start
    // (RFC 3207: the client says EHLO again, nothing before counts).
    let Some(tls) = tls else { return };
    if let Some(secure) = tls.handshake(clear, &shared.stats.tls).await {
        dialogue(secure, &shared, "", None, true).await;
    }
}

/// One SMTP dialogue on `conn`: `greeting` first, then commands until QUIT
/// or the end of the connection. With `tls`, it offers STARTTLS and returns
/// the connection once it accepted it; `secure`: the dialogue is in TLS.
async fn dialogue(
    conn: Box<dyn Conn>,
    shared: &Arc<InboxState>,
    greeting: &str,
    tls: Option<&InboxTls>,
    secure: bool,
) -> Option<Box<dyn Conn>> {
    let (r, w) = tokio::io::split(conn);
    let mut r = BufReader::new(r);
    // Replies are written together while pipelined commands are waiting, and
    // flushed when the client has nothing more in flight (PIPELINING).
    let mut w = tokio::io::BufWriter::new(w);
    let mut line = Vec::new();
    let mut txn = Txn::default();
    let mut reply = greeting.to_string();
    let required = tls.is_some_and(|t| t.required);
    loop {
        if w.write_all(reply.as_bytes()).await.is_err() {
            return None;
        }
        if r.buffer().is_empty() && w.flush().await.is_err() {
            return None;
        }
        line.clear();
        match (&mut r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return None,
            Ok(_) if !line.ends_with(b"\n") => {
                // MAX_LINE octets and no end of line: the client does not
                // speak SMTP; say so and stop reading. (Shorter: the
                // connection ended mid-line.)
                if line.len() >= MAX_LINE {
                    refuse_and_close(&mut r, &mut w).await;
                }
                return None;
            }
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let verb = text.split_whitespace().next().unwrap_or("");
        if tls.is_some() && verb.eq_ignore_ascii_case("STARTTLS") {
            if w.write_all(b"220 2.0.0 Ready to start TLS\r\n")
                .await
                .is_err()
                || w.flush().await.is_err()
            {
                return None;
            }
            // Anything the client sent after STARTTLS is dropped (RFC 3207).
            return Some(r.into_inner().unsplit(w.into_inner()));
        }
        if required && verb.eq_ignore_ascii_case("MAIL") {
            reply = "530 5.7.0 Must issue a STARTTLS command first\r\n".to_string();
            continue;
        }
        reply = match command(text.trim_end(), &mut txn, &shared.announce) {
            Step::Reply(r) => r.to_string(),
            Step::Ehlo => shared.announce.ehlo_reply(MAX_SIZE, tls.is_some()),
            Step::Quit => {
                let _ = w.write_all(b"221 2.0.0 Bye\r\n").await;
                let _ = w.flush().await;
                return None;
            }
            Step::Data => {
                if w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await
                    .is_err()
                    || w.flush().await.is_err()
                {
                    return None;
                }
                let message = match read_data(&mut r).await {
                    Data::Message(m) => m,
                    Data::TooBig => {
                        // Read to its final "." (the session stays in step)
                        // and refused: no effect.
                        txn = Txn::default();
                        reply = "552 5.3.4 Error: message size exceeds fixed limit\r\n".into();
                        continue;
                    }
                    Data::LineTooLong => {
                        refuse_and_close(&mut r, &mut w).await;
                        return None;
                    }
                    Data::Closed => return None,
                };
                let this = std::mem::take(&mut txn);
                let message = arrived(shared, &this, message, secure);
                if this.null_sender {
                    reply = returned(shared, &message);
                    continue;
                }
                let how = shared.misbehaviour();
                if how.is_some() {
                    shared.stats.misbehaved.fetch_add(1, Ordering::Relaxed);
                }
                if how == Some(Misbehaviour::Tempfail) {
                    "451 4.3.2 dlab inbox: try again later\r\n".to_string()
                } else {
                    // The commit and its reply are one step, in a task of
                    // their own: taking the inbox down aborts this session,
                    // but a message already being committed still gets its
                    // 250 (a phone switched off does not forget to answer
                    // what it showed; losing that reply is `inbox-hangup`).
                    let shared = shared.clone();
                    let step = tokio::spawn(async move {
                        let reply = match accept(&shared, message).await {
                            Ok(n) => format!("250 2.0.0 Ok: queued as {n}\r\n"),
                            Err(e) => format!("451 4.3.0 Error: {e}\r\n"),
                        };
                        match how {
                            // The effect is committed; the client never hears so.
                            Some(Misbehaviour::Hangup) => return None,
                            Some(Misbehaviour::Slow) => tokio::time::sleep(SLOW_REPLY).await,
                            _ => {}
                        }
                        let sent =
                            w.write_all(reply.as_bytes()).await.is_ok() && w.flush().await.is_ok();
                        sent.then_some(w)
                    });
                    match step.await {
                        Ok(Some(back)) => w = back,
                        _ => return None,
                    }
                    String::new()
                }
            }
        };
    }
}

/// The reply before closing a session that sent a line longer than [`MAX_LINE`].
const LINE_TOO_LONG: &[u8] = b"500 5.5.0 Error: line too long; closing the connection\r\n";

/// Answers a line longer than [`MAX_LINE`] with a 500 and closes. What the
/// client already sent is read and dropped first (up to 1 MiB, for up to a
/// second): closing with unread input would reset the connection, and the
/// client might lose the reply.
async fn refuse_and_close<R, W>(r: &mut R, w: &mut W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let _ = w.write_all(LINE_TOO_LONG).await;
    let _ = w.flush().await;
    let _ = w.shutdown().await;
    let (mut input, mut sink) = (r.take(1 << 20), tokio::io::sink());
    let drain = tokio::io::copy(&mut input, &mut sink);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
}

/// What the text after DATA turned out to be.
#[derive(Debug, PartialEq, Eq)]
enum Data {
    /// The message, dot-stuffing undone.
    Message(Vec<u8>),
    /// Read to its final "." but larger than [`MAX_SIZE`]; not kept.
    TooBig,
    /// A line longer than [`MAX_LINE`]: the rest cannot be trusted.
    LineTooLong,
    /// The connection ended (or failed) before the final ".".
    Closed,
}

/// Reads message lines up to the final "." line, undoing dot-stuffing; never
/// holds more than [`MAX_SIZE`] plus one line.
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Data {
    let mut message = Vec::new();
    let mut too_big = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut *r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return Data::Closed,
            Ok(_) if !line.ends_with(b"\n") => {
                return if line.len() >= MAX_LINE {
                    Data::LineTooLong
                } else {
                    Data::Closed
                };
            }
            Ok(_) => {}
        }
        if line == b".\r\n" || line == b".\n" {
            return if too_big {
                Data::TooBig
            } else {
                Data::Message(message)
            };
        }
        let body = line.strip_prefix(b".").unwrap_or(&line);
        if too_big || message.len() + body.len() > MAX_SIZE {
            too_big = true;
            message = Vec::new();
        } else {
            message.extend_from_slice(body);
        }
    }
}

/// Counts what the message's transaction and bytes say of the hop, and
/// clears the eighth bit of every octet when 8BITMIME was not announced.
fn arrived(shared: &InboxState, txn: &Txn, mut message: Vec<u8>, secure: bool) -> Vec<u8> {
    let stats = &shared.stats;
    stats.tls.arrived(&message, secure);
    if txn.eight_bit_mime {
        stats.declared_8bitmime.fetch_add(1, Ordering::Relaxed);
    }
    if txn.smtputf8 {
        stats.smtputf8.fetch_add(1, Ordering::Relaxed);
    }
    if !shared.announce.has(Extension::EightBitMime) && message.iter().any(|b| *b > 127) {
        stats.eight_bit_on_7bit_hop.fetch_add(1, Ordering::Relaxed);
        for b in message.iter_mut() {
            *b &= 0x7f;
        }
    }
    message
}

/// Counts a return and keeps what it says; the reply to its final ".".
fn returned(shared: &InboxState, message: &[u8]) -> String {
    shared.stats.returns.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut r) = shared.returned.lock() {
        r.push(returns::read(message));
    }
    "250 2.0.0 Ok: return received\r\n".to_string()
}

/// Applies the message's effect (committed with whatever else is waiting)
/// and returns a queue number.
async fn accept(shared: &Arc<InboxState>, message: Vec<u8>) -> Result<u64, String> {
    let stats = &shared.stats;
    if message.iter().any(|b| *b > 127) {
        stats.eight_bit.fetch_add(1, Ordering::Relaxed);
    }
    if std::str::from_utf8(&message).is_err() {
        stats.not_utf8.fetch_add(1, Ordering::Relaxed);
    }
    if super::body::encoding(&message).as_deref() == Some("quoted-printable") {
        stats.quoted_printable.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(expected) = &shared.expect_text {
        let intact = super::body::decoded_text(&message)
            .is_some_and(|t| String::from_utf8_lossy(&t).contains(expected.as_str()));
        if intact {
            &stats.text_intact
        } else {
            &stats.text_mangled
        }
        .fetch_add(1, Ordering::Relaxed);
    }
    let id = message_id(&message).unwrap_or_else(|| {
        stats.without_id.fetch_add(1, Ordering::Relaxed);
        String::new()
    });
    let applied = shared.writer.submit(id.clone()).await?;
    if !applied {
        stats.suppressed.fetch_add(1, Ordering::Relaxed);
    }
    if let Ok(mut guard) = shared.deliveries.lock() {
        // A message of another run (or none) is counted from its row.
        if let Some(d) = guard.as_mut() {
            if let Some(seq) = crate::message_id::parse(&d.run_id, &id) {
                let redelivered = !d.seen.insert(seq);
                let _ = d.events.send((
                    crate::ledger::Event::Delivered { seq, redelivered },
                    std::time::Instant::now(),
                ));
            }
        }
    }
    Ok(stats.accepted.fetch_add(1, Ordering::Relaxed) + 1)
}

/// The default place for an inbox's effect store in a directory.
pub fn store_in(dir: &Path) -> PathBuf {
    dir.join("effects.sqlite")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_found_in_the_header_only() {
        let m = b"From: a\r\nMessage-Id: <abc-1@x>\r\nSubject: s\r\n\r\nMessage-ID: <not-this>\r\n";
        assert_eq!(message_id(m).as_deref(), Some("abc-1@x"));
        let folded = b"message-id:\r\n <folded@x>\r\n\r\nbody\r\n";
        assert_eq!(message_id(folded).as_deref(), Some("folded@x"));
        assert_eq!(
            message_id(b"Subject: none\r\n\r\nMessage-Id: <x>\r\n"),
            None
        );
    }

    #[test]
    fn commands_keep_the_transaction_order() {
        let (mut t, all) = (Txn::default(), Announce::default());
        assert!(matches!(command("DATA", &mut t, &all), Step::Reply(r) if r.starts_with("503")));
        assert!(
            matches!(command("RCPT TO:<a@b>", &mut t, &all), Step::Reply(r) if r.starts_with("503"))
        );
        assert!(
            matches!(command("MAIL FROM:<a@b>", &mut t, &all), Step::Reply(r) if r.starts_with("250"))
        );
        assert!(
            matches!(command("rcpt to:<a@b>", &mut t, &all), Step::Reply(r) if r.starts_with("250"))
        );
        assert!(matches!(command("DATA", &mut t, &all), Step::Data));
        assert!(matches!(command("EHLO x", &mut t, &all), Step::Ehlo));
        assert!(matches!(command("QUIT", &mut t, &all), Step::Quit));
    }

    #[test]
    fn a_parameter_not_announced_is_refused_and_a_utf8_address_needs_smtputf8() {
        let all = Announce::default();
        let seven_bit = Announce {
            ehlo: true,
            extensions: vec![Extension::Pipelining],
        };
        let mut t = Txn::default();
        let mail = "MAIL FROM:<a@b> BODY=8BITMIME SMTPUTF8";
        assert!(
            matches!(command(mail, &mut t, &seven_bit), Step::Reply(r) if r.starts_with("555"))
        );
        assert!(!t.mail);
        assert!(matches!(command(mail, &mut t, &all), Step::Reply(r) if r.starts_with("250")));
        assert!(t.eight_bit_mime && t.smtputf8 && !t.null_sender);
        assert!(
            matches!(command("RCPT TO:<tél@b>", &mut t, &all), Step::Reply(r) if r.starts_with("250"))
        );
        let mut t = Txn::default();
        assert!(
            matches!(command("MAIL FROM: <>", &mut t, &seven_bit), Step::Reply(r) if r.starts_with("250"))
        );
        assert!(t.null_sender && !t.smtputf8);
        assert!(
            matches!(command("RCPT TO:<tél@b>", &mut t, &seven_bit), Step::Reply(r) if r.starts_with("553"))
        );
    }

    #[tokio::test]
    async fn dot_stuffing_is_undone_and_the_final_dot_ends_the_message() {
        let data = b"a\r\n..b\r\n.\r\nMAIL";
        let mut r = BufReader::new(&data[..]);
        assert_eq!(
            read_data(&mut r).await,
            Data::Message(b"a\r\n.b\r\n".to_vec())
        );
        let mut r = BufReader::new(&b"a\r\nno final dot"[..]);
        assert_eq!(read_data(&mut r).await, Data::Closed);
    }

    #[test]
    fn the_declared_size_is_read_from_the_mail_command() {
        assert_eq!(declared_size("MAIL FROM:<a@b> SIZE=1234"), Some(1234));
        assert_eq!(
            declared_size("MAIL FROM:<a@b> BODY=8BITMIME size=7"),
            Some(7)
        );
        assert_eq!(declared_size("MAIL FROM:<a@b>"), None);
        let mut t = Txn::default();
        let over = format!("MAIL FROM:<a@b> SIZE={}", MAX_SIZE + 1);
        assert!(
            matches!(command(&over, &mut t, &Announce::default()), Step::Reply(r) if r.starts_with("552"))
        );
        assert!(!t.mail, "no transaction was started");
    }
}
