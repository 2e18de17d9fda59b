//! The TCP fault proxy: sits between clients and a server (the broker) and
//! does to the byte stream what a scenario's network faults say.
//!
//! Architecture invariant: this is the only module that touches raw sockets
//! to inject faults. Each fault is a small transform in its own place
//! ([`pump`] for stream transforms, [`amqp_frames`] for the protocol point);
//! connection-level faults (cut, down) live here. The proxy never buffers a
//! whole stream.

pub mod amqp_frames;
mod pump;
mod settings;
pub mod smtp_lines;
mod splice;
mod stats;
mod tap;
pub mod wire;

pub use pump::End;
pub use settings::{Direction, DirectionFaults, LinkFaults, Protocol};
pub use stats::{Stats, StatsSnapshot};
pub use tap::{Capture, Captured, Chunk, Tap};

use pump::PumpCtx;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

struct ProxyState {
    upstream: SocketAddr,
    protocol: Protocol,
    faults: watch::Sender<LinkFaults>,
    confirm_armed: Arc<AtomicBool>,
    reply_lost_armed: Arc<AtomicBool>,
    stats: Arc<Stats>,
    conns: Mutex<HashMap<u64, watch::Sender<Option<End>>>>,
    next_id: AtomicU64,
    seed: u64,
    follow_points: Arc<AtomicBool>,
    tap: OnceLock<Arc<Tap>>,
    impersonation: OnceLock<Arc<wire::Impersonation>>,
}

/// A running proxy for one link (say, the producers' connections to the broker).
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut_all(End::CloseFin);
    }
}

fn set_linger_zero(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a valid, open socket fd with a properly sized struct.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

impl Proxy {
    /// Listens on a free 127.0.0.1 port and forwards every connection to
    /// `upstream`, which speaks `protocol`.
    pub async fn start(
        upstream: SocketAddr,
        protocol: Protocol,
        seed: u64,
    ) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (faults, _) = watch::channel(LinkFaults::default());
        let shared = Arc::new(ProxyState {
            upstream,
            protocol,
            faults,
            confirm_armed: Arc::new(AtomicBool::new(false)),
            reply_lost_armed: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(Stats::default()),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            seed,
            follow_points: Arc::new(AtomicBool::new(true)),
            tap: OnceLock::new(),
            impersonation: OnceLock::new(),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, s.clone()));
            }
        });
        Ok(Proxy { addr, shared, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the link speaks.
    pub fn protocol(&self) -> Protocol {
        self.shared.protocol
    }

    /// Changes the link's fault settings.
    pub fn set(&self, change: impl FnOnce(&mut LinkFaults)) {
        self.shared.faults.send_modify(change);
    }

    /// The link's current fault settings.
    pub fn faults(&self) -> LinkFaults {
        self.shared.faults.borrow().clone()
    }

    /// Arms confirm-lost: the next broker `basic.ack` cuts its connection.
    pub fn arm_confirm_lost(&self, armed: bool) {
        self.check_points(armed);
        self.shared.confirm_armed.store(armed, Ordering::SeqCst);
    }

    /// Arms reply-lost-after-dot: the next message's final "." reaches the
    /// server, and the server's reply to it cuts the connection (RFC 1047).
    /// On an HTTP link (response-lost): the next request reaches the server,
    /// and its response cuts the connection.
    pub fn arm_reply_lost(&self, armed: bool) {
        self.check_points(armed);
        self.shared.reply_lost_armed.store(armed, Ordering::SeqCst);
    }

    /// Says that no protocol-point fault (confirm-lost, reply-lost-after-dot,
    /// response-lost) will be armed on this link, so that a direction no
    /// fault or tap touches may take the zero-copy path. A link follows its
    /// points until told this; the switch is one way (a spliced stream is
    /// not watched, so a scanner could not pick it up in step again), and
    /// arming a point afterwards is a bug in the caller.
    pub fn without_points(&self) {
        self.shared.follow_points.store(false, Ordering::SeqCst);
    }

    fn check_points(&self, armed: bool) {
        assert!(
            !armed || self.shared.follow_points.load(Ordering::SeqCst),
            "a protocol point armed on a link told it would have none"
        );
    }

    /// Whether a reply-lost-after-dot is armed and has not struck yet.
    pub fn reply_lost_armed(&self) -> bool {
        self.shared.reply_lost_armed.load(Ordering::SeqCst)
    }

    /// Whether a confirm-lost is armed and has not cut a connection yet.
    pub fn confirm_lost_armed(&self) -> bool {
        self.shared.confirm_armed.load(Ordering::SeqCst)
    }

    /// Cuts every open connection (FIN or RST); returns how many.
    pub fn cut_all(&self, how: End) -> usize {
        let conns = self.shared.conns.lock().expect("not poisoned");
        for tx in conns.values() {
            let _ = tx.send(Some(how));
        }
        conns.len()
    }

    /// The link's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Puts the eavesdropper's tap on the link: every later connection's
    /// bytes are copied, each way, up to `budget` bytes in all. A link
    /// without a tap copies nothing.
    pub fn tap(&self, budget: u64) {
        let _ = self.shared.tap.set(Arc::new(Tap::new(budget)));
    }

    /// Gives the link what a man in the middle needs (its certificates and
    /// its way to the real server) for `mitm-certificate` and
    /// `certificate-expired`; without it, those pass connections through.
    pub fn impersonate_with(&self, with: Arc<wire::Impersonation>) {
        let _ = self.shared.impersonation.set(with);
    }

    /// What the tap has captured, if the link has one.
    pub fn captured(&self) -> Option<Captured> {
        self.shared.tap.get().map(|t| t.captured())
    }
}

async fn serve(client: TcpStream, shared: Arc<ProxyState>) {
    if shared.faults.borrow().down {
        Stats::add(&shared.stats.refused, 1);
        set_linger_zero(&client);
        return;
    }
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        set_linger_zero(&client);
        return;
    };
    Stats::add(&shared.stats.accepted, 1);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (cut_tx, mut cut_rx) = watch::channel(None);
    let dot_passed = Arc::new(AtomicBool::new(false));
    let tap = shared.tap.get().map(|t| (t.clone(), t.open()));
    shared
        .conns
        .lock()
        .expect("not poisoned")
        .insert(id, cut_tx.clone());
    let wire = shared.faults.borrow().wire;
    if let Some(wire) = wire {
        let ends = wire::Ends {
            client,
            server,
            upstream: shared.upstream,
            rec: wire::Recorder {
                stats: shared.stats.clone(),
                tap,
            },
        };
        let serve = ends.serve(
            wire,
            shared.protocol,
            shared.impersonation.get().map(|i| &**i),
        );
        tokio::select! {
            _ = serve => {}
            _ = cut_rx.wait_for(Option::is_some) => Stats::add(&shared.stats.cut, 1),
        }
        shared.conns.lock().expect("not poisoned").remove(&id);
        return;
    }
    let ctx = |direction| PumpCtx {
        direction,
        protocol: shared.protocol,
        faults: shared.faults.subscribe(),
        confirm_armed: shared.confirm_armed.clone(),
        reply_lost_armed: shared.reply_lost_armed.clone(),
        dot_passed: dot_passed.clone(),
        cut: cut_rx.clone(),
        stats: shared.stats.clone(),
        tap: tap.clone(),
        follow_points: shared.follow_points.clone(),
        seed: shared.seed ^ id.wrapping_mul(0x9E37_79B9) ^ direction as u64,
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let end = pump::pump(&mut cr, &mut sw, ctx(Direction::ToServer)).await;
        if end != End::Eof {
            let _ = cut_tx.send(Some(end));
        }
        end
    };
    let down = async {
        let end = pump::pump(&mut sr, &mut cw, ctx(Direction::ToClient)).await;
        if end != End::Eof {
            let _ = cut_tx.send(Some(end));
        }
        end
    };
    let (a, b) = tokio::join!(up, down);
    shared.conns.lock().expect("not poisoned").remove(&id);
    if a != End::Eof || b != End::Eof {
        Stats::add(&shared.stats.cut, 1);
    }
    if a == End::CloseRst || b == End::CloseRst {
        set_linger_zero(cw.as_ref());
        set_linger_zero(sw.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn forwards_byte_for_byte_over_real_sockets() {
        let proxy = Proxy::start(echo_server().await, Protocol::Amqp, 1)
            .await
            .unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let (mut r, mut w) = c.split();
        let send = async {
            w.write_all(&data).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let mut got = Vec::new();
        let (_, read) = tokio::join!(send, r.read_to_end(&mut got));
        read.unwrap();
        assert_eq!(got, data);
        assert_eq!(proxy.stats().bytes_forwarded, 2 * data.len() as u64);
        assert_eq!(
            proxy.stats().bytes_zero_copy,
            data.len() as u64,
            "only the client's bytes skip the copy: the broker's are read for acks"
        );
    }

    /// Sends `data` through `c` to the echo server and reads it back.
    async fn echo_through(c: &mut TcpStream, data: &[u8]) -> Vec<u8> {
        let (mut r, mut w) = c.split();
        let send = async { w.write_all(data).await.unwrap() };
        let mut got = vec![0u8; data.len()];
        let (_, read) = tokio::join!(send, r.read_exact(&mut got));
        read.unwrap();
        got
    }

    #[tokio::test]
    async fn idle_streams_skip_the_copy_until_a_fault_needs_them() {
        let proxy = Proxy::start(echo_server().await, Protocol::Smtp, 1)
            .await
            .unwrap();
        proxy.without_points();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 256) as u8).collect();
        assert_eq!(echo_through(&mut c, &data).await, data);
        let idle = proxy.stats();
        assert_eq!(idle.bytes_zero_copy, 2 * data.len() as u64);

        proxy.set(|f| f.to_server.latency = Some(std::time::Duration::from_millis(200)));
        let start = std::time::Instant::now();
        assert_eq!(echo_through(&mut c, &data).await, data);
        assert!(start.elapsed() >= std::time::Duration::from_millis(200));
        let busy = proxy.stats().since(&idle);
        assert_eq!(busy.bytes_delayed, data.len() as u64, "held by the fault");
        assert_eq!(
            busy.bytes_zero_copy,
            data.len() as u64,
            "the echo's way back has no fault"
        );

        proxy.set(|f| f.to_server.latency = None);
        let before = proxy.stats();
        assert_eq!(echo_through(&mut c, &data).await, data);
        let after = proxy.stats().since(&before);
        assert_eq!(
            after.bytes_zero_copy,
            2 * data.len() as u64,
            "back to zero copy"
        );
        assert_eq!(after.bytes_delayed, 0);
    }

    #[tokio::test]
    async fn down_refuses_and_cut_resets() {
        let proxy = Proxy::start(echo_server().await, Protocol::Amqp, 1)
            .await
            .unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(proxy.cut_all(End::CloseRst), 1);
        let mut rest = Vec::new();
        let r = c.read_to_end(&mut rest).await;
        assert!(r.is_err() || rest.is_empty(), "the connection is gone");

        proxy.set(|f| f.down = true);
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut buf = [0u8; 1];
        let r = c.read(&mut buf).await;
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "a refused connection closes at once"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while proxy.stats().refused == 0 && std::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert_eq!(proxy.stats().refused, 1);
    }
}
