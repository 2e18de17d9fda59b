//! The wire's faults, on the connections a link accepts while one is active
//! (starting one closes the connections already open, so every session
//! after it meets the middlebox):
//!
//! - `StripStartTls`: an SMTP middlebox that removes STARTTLS from the
//!   server's EHLO reply. A client that requires TLS gives up on the
//!   session; an opportunistic one carries on in clear.
//! - `Impersonate`: a man in the middle that terminates TLS itself with a
//!   certificate of its own ([`Impostor`]: one a foreign CA signed, or the
//!   lab's own expired one) and opens its own TLS to the real server (as a
//!   client without a certificate). On SMTP it passes the dialogue in clear
//!   up to STARTTLS first. A client that verifies refuses the handshake; one
//!   that does not hands the man in the middle everything, and the tap
//!   records it in clear.
//!
//! These connections carry no other stream fault; the tap copies what each
//! side sent (the server's offer before it is stripped; the plaintext the
//! man in the middle decrypted).

use super::settings::{Direction, Protocol};
use super::stats::Stats;
use super::tap::Tap;
use crate::tls::Conn;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Whose certificate the man in the middle presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impostor {
    /// One for the same names, signed by a CA the lab does not know.
    Foreign,
    /// The lab CA's own, its validity over.
    Expired,
}

/// A wire fault on a link's new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// STARTTLS removed from the SMTP server's EHLO reply.
    StripStartTls,
    /// TLS terminated by a man in the middle with this certificate.
    Impersonate(Impostor),
}

/// What the man in the middle holds: a server configuration per impostor
/// certificate, and its client configuration towards the real server.
pub struct Impersonation {
    /// Presenting the foreign CA's certificate.
    pub foreign: Arc<rustls::ServerConfig>,
    /// Presenting the lab's expired certificate.
    pub expired: Arc<rustls::ServerConfig>,
    /// Towards the real server: the lab CA as root, no client certificate.
    pub upstream: Arc<rustls::ClientConfig>,
}

impl Impersonation {
    /// From a lab CA's directory: its fault certificates and its root.
    pub fn from_dir(dir: &std::path::Path) -> Result<Impersonation, String> {
        let (expired, foreign) = crate::tls::fault_certificates(dir)?;
        let server = |id: &crate::tls::Issued| crate::tls::server_config(id, None).map(Arc::new);
        Ok(Impersonation {
            foreign: server(&foreign)?,
            expired: server(&expired)?,
            upstream: Arc::new(crate::tls::client_config(&dir.join("ca.pem"), None)?),
        })
    }
}

/// A connection's two ends and what it reports to.
pub(super) struct Ends {
    pub client: TcpStream,
    pub server: TcpStream,
    pub upstream: std::net::SocketAddr,
    pub rec: Recorder,
}

/// The longest line read in clear (SMTP's dialogue before TLS).
const MAX_LINE: u64 = 4096;

impl Ends {
    /// Serves the connection under `wire` until either side closes.
    pub(super) async fn serve(self, wire: Wire, protocol: Protocol, with: Option<&Impersonation>) {
        match (wire, with) {
            (Wire::StripStartTls, _) => self.strip_starttls().await,
            (Wire::Impersonate(who), Some(with)) => {
                let config = match who {
                    Impostor::Foreign => with.foreign.clone(),
                    Impostor::Expired => with.expired.clone(),
                };
                self.impersonate(protocol, config, with.upstream.clone())
                    .await
            }
            // Nothing to impersonate with (a link without TLS): pass through.
            (Wire::Impersonate(_), None) => {
                copy_both(Box::new(self.client), Box::new(self.server), &self.rec).await
            }
        }
    }

    async fn strip_starttls(self) {
        let rec = self.rec;
        let (cr, mut cw) = self.client.into_split();
        let (sr, mut sw) = self.server.into_split();
        let up = copy(cr, &mut sw, Direction::ToServer, &rec);
        let down = async {
            let mut r = BufReader::new(sr);
            let (mut reply, mut line) = (Vec::new(), Vec::new());
            loop {
                line.clear();
                match (&mut r).take(MAX_LINE).read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                rec.record(Direction::ToClient, &line);
                reply.push(line.clone());
                if line.get(3) == Some(&b'-') {
                    continue; // more lines of the same reply
                }
                let out = strip_starttls_offer(&reply);
                if out.len() != reply.iter().map(Vec::len).sum::<usize>() {
                    Stats::add(&rec.stats.starttls_stripped, 1);
                }
                reply.clear();
                if cw.write_all(&out).await.is_err() {
                    break;
                }
            }
            let _ = cw.shutdown().await;
        };
        tokio::join!(up, down);
    }

    async fn impersonate(
        self,
        protocol: Protocol,
        impostor: Arc<rustls::ServerConfig>,
        upstream: Arc<rustls::ClientConfig>,
    ) {
        let rec = self.rec;
        let server_name = ServerName::IpAddress(self.upstream.ip().into());
        let (client, server): (Box<dyn Conn>, Box<dyn Conn>) = if protocol == Protocol::Smtp {
            match until_starttls(self.client, self.server, &rec).await {
                Some(ends) => ends,
                None => return,
            }
        } else {
            (Box::new(self.client), Box::new(self.server))
        };
        let client = match TlsAcceptor::from(impostor).accept(client).await {
            Ok(c) => c,
            Err(_) => {
                // The client did not accept the impostor's certificate.
                Stats::add(&rec.stats.impostor_refused, 1);
                return;
            }
        };
        let Ok(server) = TlsConnector::from(upstream)
            .connect(server_name, server)
            .await
        else {
            return;
        };
        Stats::add(&rec.stats.intercepted, 1);
        copy_both(Box::new(client), Box::new(server), &rec).await;
    }
}

/// Counts a connection's bytes and copies them to the tap.
pub(super) struct Recorder {
    pub stats: Arc<Stats>,
    pub tap: Option<(Arc<Tap>, usize)>,
}

impl Recorder {
    fn record(&self, direction: Direction, bytes: &[u8]) {
        if let Some((tap, conn)) = &self.tap {
            tap.record(*conn, direction, bytes);
        }
        Stats::add(&self.stats.bytes_forwarded, bytes.len() as u64);
    }
}

async fn copy<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut r: R,
    w: &mut W,
    direction: Direction,
    rec: &Recorder,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        rec.record(direction, &buf[..n]);
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

async fn copy_both(client: Box<dyn Conn>, server: Box<dyn Conn>, rec: &Recorder) {
    let (cr, mut cw) = tokio::io::split(client);
    let (sr, mut sw) = tokio::io::split(server);
    tokio::join!(
        copy(cr, &mut sw, Direction::ToServer, rec),
        copy(sr, &mut cw, Direction::ToClient, rec)
    );
}

/// Reads one SMTP reply (its lines up to the one without a '-' after the
/// code), copied to the tap.
async fn reply<R: AsyncBufReadExt + Unpin>(r: &mut R, rec: &Recorder) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut line = Vec::new();
        match r.take(MAX_LINE).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        rec.record(Direction::ToClient, &line);
        let more = line.get(3) == Some(&b'-');
        out.extend_from_slice(&line);
        if !more {
            return Some(out);
        }
    }
}

/// Passes an SMTP dialogue in clear, one command and its reply at a time,
/// until the server accepts STARTTLS: returns both ends then. A session
/// that goes on without it (a command other than EHLO, HELO, NOOP or RSET)
/// is copied as it is to its end, and nothing is returned.
async fn until_starttls(
    client: TcpStream,
    server: TcpStream,
    rec: &Recorder,
) -> Option<(Box<dyn Conn>, Box<dyn Conn>)> {
    let (mut c, mut s) = (BufReader::new(client), BufReader::new(server));
    loop {
        let answer = reply(&mut s, rec).await?;
        c.get_mut().write_all(&answer).await.ok()?;
        let mut line = Vec::new();
        match (&mut c).take(MAX_LINE).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        rec.record(Direction::ToServer, &line);
        s.get_mut().write_all(&line).await.ok()?;
        let verb = String::from_utf8_lossy(&line)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "STARTTLS" => {
                let answer = reply(&mut s, rec).await?;
                c.get_mut().write_all(&answer).await.ok()?;
                if answer.starts_with(b"220") && c.buffer().is_empty() && s.buffer().is_empty() {
                    return Some((Box::new(c.into_inner()), Box::new(s.into_inner())));
                }
            }
            "EHLO" | "HELO" | "NOOP" | "RSET" => {}
            _ => {
                // In clear from here on; what the readers hold goes first.
                let (cb, sb) = (c.buffer().to_vec(), s.buffer().to_vec());
                let (mut client, mut server) = (c.into_inner(), s.into_inner());
                rec.record(Direction::ToServer, &cb);
                rec.record(Direction::ToClient, &sb);
                server.write_all(&cb).await.ok()?;
                client.write_all(&sb).await.ok()?;
                copy_both(Box::new(client), Box::new(server), rec).await;
                return None;
            }
        }
    }
}

/// An SMTP reply with any `250 STARTTLS` line removed and the remaining
/// lines' separators mended ('-' on all but the last).
pub fn strip_starttls_offer(reply: &[Vec<u8>]) -> Vec<u8> {
    let offers = |l: &Vec<u8>| {
        l.starts_with(b"250")
            && l.len() > 4
            && l[4..].trim_ascii().eq_ignore_ascii_case(b"STARTTLS")
    };
    if !reply.iter().any(offers) {
        return reply.concat();
    }
    let kept: Vec<&Vec<u8>> = reply.iter().filter(|l| !offers(l)).collect();
    let mut out = Vec::new();
    for (i, l) in kept.iter().enumerate() {
        out.extend_from_slice(&l[..3.min(l.len())]);
        if l.len() > 3 {
            out.push(if i + 1 == kept.len() { b' ' } else { b'-' });
            out.extend_from_slice(&l[4..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<Vec<u8>> {
        text.split_inclusive("\r\n")
            .map(|l| l.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn the_offer_is_removed_wherever_it_is_and_the_reply_stays_well_formed() {
        let middle = lines("250-relay\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n");
        assert_eq!(
            strip_starttls_offer(&middle),
            b"250-relay\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        );
        let last = lines("250-inbox\r\n250-SIZE 10\r\n250 STARTTLS\r\n");
        assert_eq!(strip_starttls_offer(&last), b"250-inbox\r\n250 SIZE 10\r\n");
        let none = lines("220 relay ESMTP\r\n");
        assert_eq!(strip_starttls_offer(&none), b"220 relay ESMTP\r\n");
    }
}
