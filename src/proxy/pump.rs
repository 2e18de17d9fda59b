//! One direction of one proxied connection: read chunks, apply the faults of
//! that direction, write them on.
//!
//! Each fault is a small transform of the stream: latency (chunks held until
//! due, order kept), bandwidth (pauses between writes), slicer (small writes),
//! limit_data (close after N bytes), blackhole (nothing moves), and the
//! protocol points confirm-lost (cut just before a broker `basic.ack`),
//! reply-lost-after-dot (SMTP) and response-lost (HTTP: the request reaches
//! the server, its response never reaches the client). With no
//! fault active a chunk is written as soon as it is read; and while nothing
//! needs to see a direction's bytes at all, they take the zero-copy path
//! ([`super::splice`]) instead of this copy.

use super::amqp_frames::{FrameScanner, CLASS_BASIC, METHOD_ACK};
use super::settings::{Direction, DirectionFaults, LinkFaults, Protocol};
use super::smtp_lines::DotScanner;
use super::splice::{Pipe, Socket};
use super::stats::Stats;
use super::tap::Tap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// How a pump ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The source closed; the close was passed on.
    Eof,
    /// The connection must be closed with a FIN.
    CloseFin,
    /// The connection must be reset.
    CloseRst,
}

/// What a pump shares with its link and its connection.
pub struct PumpCtx {
    /// Which way this pump moves bytes.
    pub direction: Direction,
    /// What the link speaks.
    pub protocol: Protocol,
    /// The link's fault settings.
    pub faults: watch::Receiver<LinkFaults>,
    /// Set by the link when a confirm-lost fault is armed; taken by the first pump that sees an ack.
    pub confirm_armed: Arc<AtomicBool>,
    /// Set by the link when a reply-lost-after-dot fault is armed; taken by the
    /// first connection whose client sends a message's final ".".
    pub reply_lost_armed: Arc<AtomicBool>,
    /// Per connection: the final "." of a message passed with reply-lost
    /// armed; the server's next bytes (its reply) cut the connection instead.
    pub dot_passed: Arc<AtomicBool>,
    /// Turns to Some when the connection is cut from outside or by the other direction.
    pub cut: watch::Receiver<Option<End>>,
    /// The link's counters.
    pub stats: Arc<Stats>,
    /// The eavesdropper's tap and this connection's number in it.
    pub tap: Option<(Arc<Tap>, usize)>,
    /// Whether the link follows its protocol points (a point fault may be
    /// armed on it); a direction whose point is followed is always copied.
    pub follow_points: Arc<AtomicBool>,
    /// Seed for jitter.
    pub seed: u64,
}

const CHUNK: usize = 64 * 1024;
const MAX_QUEUED: usize = 64;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Pump<'a> {
    ctx: &'a mut PumpCtx,
    scanner: FrameScanner,
    dots: DotScanner,
    rng: u64,
    limit_seen: Option<u64>,
    limit_passed: u64,
    /// The zero-copy path's pipe, made when first needed.
    pipe: Option<Pipe>,
    /// No pipe could be made: this direction is copied for good.
    no_pipe: bool,
}

/// How a stretch on the zero-copy path ended.
enum Spliced {
    /// The source closed.
    Eof,
    /// Something needs to see the bytes now: the copying pump goes on.
    Busy,
    /// The connection is cut.
    End(End),
}

/// Whether nothing needs to see this direction's bytes under faults `f`:
/// no fault on it, no tap on the link, no protocol point followed.
fn zero_copy(ctx: &PumpCtx, f: &DirectionFaults) -> bool {
    ctx.tap.is_none()
        && *f == DirectionFaults::default()
        && !(ctx.follow_points.load(Ordering::SeqCst) && ctx.protocol.has_point(ctx.direction))
}

impl Pump<'_> {
    /// Moves bytes on the zero-copy path until something needs to see them,
    /// the source closes or the connection is cut. The pipe is empty
    /// whenever this returns.
    async fn splice_while_idle(&mut self, src: &TcpStream, dst: &TcpStream) -> Spliced {
        let pipe = match &mut self.pipe {
            Some(pipe) => pipe,
            None => match Pipe::new() {
                Ok(pipe) => self.pipe.insert(pipe),
                Err(_) => {
                    self.no_pipe = true;
                    return Spliced::Busy;
                }
            },
        };
        loop {
            if let Some(end) = *self.ctx.cut.borrow() {
                return Spliced::End(end);
            }
            let f = self
                .ctx
                .faults
                .borrow()
                .direction(self.ctx.direction)
                .clone();
            if !zero_copy(self.ctx, &f) {
                return Spliced::Busy;
            }
            tokio::select! {
                biased;
                _ = self.ctx.cut.changed() => {}
                _ = self.ctx.faults.changed() => {}
                r = pipe.fill(src, CHUNK) => match r {
                    Ok(0) => return Spliced::Eof,
                    Ok(n) => {
                        // A cut does not wait for a receiver that stopped reading.
                        let drained = tokio::select! {
                            biased;
                            _ = self.ctx.cut.wait_for(Option::is_some) => None,
                            r = pipe.drain(dst) => Some(r),
                        };
                        match drained {
                            None => return Spliced::End(self.ctx.cut.borrow().unwrap_or(End::CloseRst)),
                            Some(Err(_)) => return Spliced::End(End::CloseRst),
                            Some(Ok(())) => {}
                        }
                        Stats::add(&self.ctx.stats.bytes_forwarded, n as u64);
                        Stats::add(&self.ctx.stats.bytes_zero_copy, n as u64);
                    }
                    Err(_) => return Spliced::End(End::CloseRst),
                },
            }
        }
    }

    fn delay(&mut self, f: &DirectionFaults) -> Duration {
        let jitter = if f.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(splitmix(&mut self.rng) % (f.jitter.as_nanos() as u64 + 1))
        };
        f.latency.unwrap_or_default() + jitter
    }

    /// Writes one chunk through the write-side transforms.
    async fn deliver<W: AsyncWrite + Unpin>(
        &mut self,
        dst: &mut W,
        chunk: &[u8],
        f: &DirectionFaults,
    ) -> Result<(), End> {
        let mut data = chunk;
        let mut end = None;
        let mut dot_passes = false;
        let (smtp, amqp) = (
            self.ctx.protocol == Protocol::Smtp,
            self.ctx.protocol == Protocol::Amqp,
        );
        let http = self.ctx.protocol == Protocol::Http;
        if (smtp || http)
            && self.ctx.direction == Direction::ToClient
            && self.ctx.dot_passed.load(Ordering::SeqCst)
        {
            // The server's reply to the final ".": it never reaches the client
            // (counted as dropped when the dot passed).
            return Err(End::CloseRst);
        }
        if smtp && self.ctx.direction == Direction::ToServer {
            if let Some(&dot_end) = self.dots.scan(data).first() {
                if self.ctx.reply_lost_armed.swap(false, Ordering::SeqCst) {
                    data = &data[..dot_end];
                    dot_passes = true;
                    // Its reply is dropped: counted now, inside the fault's
                    // window (the reply itself comes after the window ends).
                    Stats::add(&self.ctx.stats.frames_dropped, 1);
                }
            }
        }
        if http
            && self.ctx.direction == Direction::ToServer
            && self.ctx.reply_lost_armed.swap(false, Ordering::SeqCst)
        {
            // An HTTP/1.1 client sends nothing more on this connection until
            // it has its response: the server's next bytes answer this
            // request, and they never reach the client.
            dot_passes = true;
            Stats::add(&self.ctx.stats.frames_dropped, 1);
        }
        if amqp && self.ctx.direction == Direction::ToClient {
            let frames = self.scanner.scan(data);
            if let Some(ack) = frames
                .iter()
                .find(|m| (m.class, m.method) == (CLASS_BASIC, METHOD_ACK))
            {
                if self.ctx.confirm_armed.swap(false, Ordering::SeqCst) {
                    Stats::add(&self.ctx.stats.frames_dropped, 1);
                    data = &data[..ack.start.max(0) as usize];
                    end = Some(End::CloseRst);
                }
            }
        }
        if self.limit_seen != f.limit_data {
            self.limit_seen = f.limit_data;
            self.limit_passed = 0;
        }
        if let Some(limit) = f.limit_data {
            let left = limit.saturating_sub(self.limit_passed);
            if data.len() as u64 >= left {
                data = &data[..left as usize];
                end = end.or(Some(End::CloseFin));
            }
            self.limit_passed += data.len() as u64;
        }
        // The server's next bytes are the reply to this final ".": mark it
        // before the dot leaves, or a fast server's 250 could overtake the
        // mark, reach the client, and the cut would fall on a later reply.
        if dot_passes {
            self.ctx.dot_passed.store(true, Ordering::SeqCst);
        }
        let piece = f.slice.unwrap_or(data.len()).max(1);
        let mut rest = data;
        while !rest.is_empty() {
            // The bandwidth now, not when the chunk was read: a limit ends
            // with its fault, not after the rest of a 64 KiB chunk has crept
            // through at the old rate. A limited write carries at most a
            // tenth of a second of the budget, so the limit is re-read at
            // least that often.
            let bw = self
                .ctx
                .faults
                .borrow()
                .direction(self.ctx.direction)
                .bandwidth
                .map(|b| b.max(1));
            let n = match bw {
                Some(b) => piece.min((b / 10).max(1) as usize),
                None => piece,
            }
            .min(rest.len());
            let (part, tail) = rest.split_at(n);
            rest = tail;
            dst.write_all(part).await.map_err(|_| End::CloseRst)?;
            Stats::add(&self.ctx.stats.bytes_forwarded, part.len() as u64);
            if let Some(bw) = bw {
                Stats::add(&self.ctx.stats.bytes_delayed, part.len() as u64);
                tokio::time::sleep(Duration::from_secs_f64(part.len() as f64 / bw as f64)).await;
            }
        }
        match end {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Moves bytes from `src` to `dst` until the source closes or the connection is cut.
pub async fn pump<R, W>(src: &mut R, dst: &mut W, mut ctx: PumpCtx) -> End
where
    R: AsyncRead + Unpin + Socket,
    W: AsyncWrite + Unpin + Socket,
{
    let seed = ctx.seed;
    let mut p = Pump {
        ctx: &mut ctx,
        scanner: FrameScanner::default(),
        dots: DotScanner::default(),
        rng: seed,
        limit_seen: None,
        limit_passed: 0,
        pipe: None,
        no_pipe: false,
    };
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut buf = vec![0u8; CHUNK];
    let mut eof = false;
    loop {
        if let Some(end) = *p.ctx.cut.borrow() {
            return end;
        }
        let f = p.ctx.faults.borrow().direction(p.ctx.direction).clone();
        if eof && queue.is_empty() {
            let _ = dst.shutdown().await;
            return End::Eof;
        }
        if !eof && queue.is_empty() && !p.no_pipe && zero_copy(p.ctx, &f) {
            if let (Some(s), Some(d)) = (src.socket(), dst.socket()) {
                match p.splice_while_idle(s, d).await {
                    Spliced::Eof => eof = true,
                    Spliced::Busy => {}
                    Spliced::End(end) => return end,
                }
                continue;
            }
        }
        if f.blackhole {
            tokio::select! {
                _ = p.ctx.faults.changed() => {}
                _ = p.ctx.cut.changed() => {}
            }
            continue;
        }
        let head = queue.front().map(|(due, _)| *due);
        tokio::select! {
            biased;
            _ = p.ctx.cut.changed() => {}
            _ = tokio::time::sleep_until(head.unwrap_or_else(Instant::now)), if head.is_some() => {
                let (_, chunk) = queue.pop_front().expect("head exists");
                if let Err(end) = p.deliver(dst, &chunk, &f).await {
                    return end;
                }
            }
            r = src.read(&mut buf), if !eof && queue.len() < MAX_QUEUED => match r {
                Ok(0) => eof = true,
                Ok(n) => {
                    if let Some((tap, conn)) = &p.ctx.tap {
                        tap.record(*conn, p.ctx.direction, &buf[..n]);
                    }
                    let delay = p.delay(&f);
                    if delay.is_zero() && queue.is_empty() {
                        if let Err(end) = p.deliver(dst, &buf[..n], &f).await {
                            return end;
                        }
                    } else {
                        Stats::add(&p.ctx.stats.bytes_delayed, n as u64);
                        queue.push_back((Instant::now() + delay, buf[..n].to_vec()));
                    }
                }
                Err(_) => return End::CloseRst,
            },
            _ = p.ctx.faults.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt};

    struct Rig {
        faults: watch::Sender<LinkFaults>,
        cut: watch::Sender<Option<End>>,
        armed: Arc<AtomicBool>,
        stats: Arc<Stats>,
    }

    fn rig(direction: Direction, faults: LinkFaults) -> (Rig, PumpCtx) {
        let (ftx, frx) = watch::channel(faults);
        let (ctx_tx, crx) = watch::channel(None);
        let armed = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let ctx = PumpCtx {
            direction,
            protocol: Protocol::Amqp,
            faults: frx,
            reply_lost_armed: Arc::new(AtomicBool::new(false)),
            dot_passed: Arc::new(AtomicBool::new(false)),
            confirm_armed: armed.clone(),
            cut: crx,
            stats: stats.clone(),
            tap: None,
            follow_points: Arc::new(AtomicBool::new(true)),
            seed: 7,
        };
        (
            Rig {
                faults: ftx,
                cut: ctx_tx,
                armed,
                stats,
            },
            ctx,
        )
    }

    fn with(d: DirectionFaults) -> LinkFaults {
        LinkFaults {
            to_server: d,
            ..LinkFaults::default()
        }
    }

    /// Sends `data` through a pump and returns what arrived and when (virtual time).
    async fn through(faults: LinkFaults, data: Vec<u8>) -> (Vec<u8>, Duration, End) {
        let (_rig, ctx) = rig(Direction::ToServer, faults);
        let (mut client, mut proxy_in) = duplex(1 << 20);
        let (mut proxy_out, mut server) = duplex(1 << 20);
        let start = Instant::now();
        let pumping = tokio::spawn(async move { pump(&mut proxy_in, &mut proxy_out, ctx).await });
        client.write_all(&data).await.unwrap();
        drop(client);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        let end = pumping.await.unwrap();
        (got, start.elapsed(), end)
    }

    #[tokio::test(start_paused = true)]
    async fn without_faults_bytes_arrive_intact_and_at_once() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (got, took, end) = through(LinkFaults::default(), data.clone()).await;
        assert_eq!(got, data);
        assert_eq!(end, End::Eof);
        assert!(took < Duration::from_millis(1), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn latency_holds_bytes_back_and_keeps_them_in_order() {
        let d = DirectionFaults {
            latency: Some(Duration::from_millis(200)),
            jitter: Duration::from_millis(50),
            ..Default::default()
        };
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
        let (got, took, _) = through(with(d), data.clone()).await;
        assert_eq!(got, data);
        assert!(
            took >= Duration::from_millis(200) && took <= Duration::from_millis(400),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bandwidth_limits_the_rate() {
        let d = DirectionFaults {
            bandwidth: Some(10_000),
            ..Default::default()
        };
        let (got, took, _) = through(with(d), vec![1u8; 50_000]).await;
        assert_eq!(got.len(), 50_000);
        assert!(
            took >= Duration::from_secs(5) && took < Duration::from_secs(6),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_bandwidth_limit_ends_with_its_fault() {
        // 1000 B/s would take 50 s for these bytes; the fault ends after 1 s
        // and the rest goes through at once.
        let d = DirectionFaults {
            bandwidth: Some(1_000),
            ..Default::default()
        };
        let (rig, ctx) = rig(Direction::ToServer, with(d));
        let (mut client, mut proxy_in) = duplex(1 << 20);
        let (mut proxy_out, mut server) = duplex(1 << 20);
        let start = Instant::now();
        let pumping = tokio::spawn(async move { pump(&mut proxy_in, &mut proxy_out, ctx).await });
        client.write_all(&[7u8; 50_000]).await.unwrap();
        drop(client);
        tokio::time::sleep(Duration::from_secs(1)).await;
        rig.faults.send_modify(|f| f.to_server.bandwidth = None);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(pumping.await.unwrap(), End::Eof);
        assert_eq!(got.len(), 50_000);
        let took = start.elapsed();
        assert!(took < Duration::from_millis(1200), "{took:?}");
        let delayed = rig.stats.snapshot().bytes_delayed;
        assert!((1_000..=1_200).contains(&delayed), "{delayed}");
    }

    #[tokio::test(start_paused = true)]
    async fn limit_data_closes_after_that_many_bytes() {
        let d = DirectionFaults {
            limit_data: Some(1000),
            ..Default::default()
        };
        let (got, _, end) = through(with(d), vec![9u8; 5000]).await;
        assert_eq!(got.len(), 1000);
        assert_eq!(end, End::CloseFin);
    }

    #[tokio::test(start_paused = true)]
    async fn slicer_splits_writes_but_not_the_stream() {
        let d = DirectionFaults {
            slice: Some(7),
            ..Default::default()
        };
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let (got, _, _) = through(with(d), data.clone()).await;
        assert_eq!(got, data);
    }

    #[tokio::test(start_paused = true)]
    async fn a_blackhole_stalls_until_it_ends() {
        let d = DirectionFaults {
            blackhole: true,
            ..Default::default()
        };
        let (rig, ctx) = rig(Direction::ToServer, with(d));
        let (mut client, mut proxy_in) = duplex(1 << 16);
        let (mut proxy_out, mut server) = duplex(1 << 16);
        tokio::spawn(async move { pump(&mut proxy_in, &mut proxy_out, ctx).await });
        client.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        let stalled =
            tokio::time::timeout(Duration::from_secs(30), server.read_exact(&mut buf)).await;
        assert!(stalled.is_err(), "nothing passes a blackhole");
        rig.faults.send_modify(|f| f.to_server.blackhole = false);
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello", "and everything passes once it ends");
        drop(rig.cut);
    }

    #[tokio::test(start_paused = true)]
    async fn an_armed_confirm_lost_cuts_just_before_the_ack() {
        let (rig, ctx) = rig(Direction::ToClient, LinkFaults::default());
        rig.armed.store(true, Ordering::SeqCst);
        let tune = [1u8, 0, 0, 0, 0, 0, 4, 0, 10, 0, 30, 0xCE];
        let ack = [1u8, 0, 1, 0, 0, 0, 4, 0, 60, 0, 80, 0xCE];
        let mut data = tune.to_vec();
        data.extend_from_slice(&ack);
        let (mut server, mut proxy_in) = duplex(1 << 16);
        let (mut proxy_out, mut client) = duplex(1 << 16);
        let pumping = tokio::spawn(async move { pump(&mut proxy_in, &mut proxy_out, ctx).await });
        server.write_all(&data).await.unwrap();
        assert_eq!(pumping.await.unwrap(), End::CloseRst);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got,
            tune.to_vec(),
            "everything before the ack, nothing of it"
        );
        assert_eq!(rig.stats.snapshot().frames_dropped, 1);
        assert!(
            !rig.armed.load(Ordering::SeqCst),
            "one lost confirm per arming"
        );
    }
}
