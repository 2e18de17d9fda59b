//! The proxy's zero-copy path: while nothing needs to see a direction's
//! bytes (no fault on it, no tap on the link, no protocol point followed),
//! they move socket -> pipe -> socket with splice(2) and never enter user
//! space. The copying pump ([`super::pump`]) decides when this path may run
//! and takes over as soon as a fault starts; a pipe is always emptied into
//! its destination before the pump reads again, so the stream keeps its order.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use tokio::io::{DuplexStream, Interest};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// An end of a proxied connection that may take part in the zero-copy path:
/// a TCP socket does, an in-memory stream (the pump's tests) does not.
pub trait Socket {
    /// The TCP socket under this end, if there is one.
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl Socket for OwnedReadHalf {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl Socket for OwnedWriteHalf {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl Socket for DuplexStream {}

/// A kernel pipe between the two sockets of one direction, and how many
/// bytes it holds.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    held: usize,
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call; null
    // offsets mean "the current position", which sockets and pipes require.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl Pipe {
    /// A new, empty, non-blocking pipe.
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is an array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe {
            read,
            write,
            held: 0,
        })
    }

    /// Waits for `src` to have bytes and moves up to `most` of them into the
    /// (empty) pipe; 0 means the source closed. Cancel-safe: nothing moves
    /// until the socket is ready, and then the move is one system call.
    /// (No more than the copying pump reads at once, so a fault that starts
    /// finds no more bytes past it than it would there.)
    pub async fn fill(&mut self, src: &TcpStream, most: usize) -> io::Result<usize> {
        debug_assert_eq!(self.held, 0, "a pipe is emptied before it is filled");
        loop {
            src.readable().await?;
            let moved = src.try_io(Interest::READABLE, || {
                splice(src.as_raw_fd(), self.write.as_raw_fd(), most)
            });
            match moved {
                Ok(n) => {
                    self.held += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves everything the pipe holds into `dst`.
    pub async fn drain(&mut self, dst: &TcpStream) -> io::Result<()> {
        while self.held > 0 {
            dst.writable().await?;
            let moved = dst.try_io(Interest::WRITABLE, || {
                splice(self.read.as_raw_fd(), dst.as_raw_fd(), self.held)
            });
            match moved {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.held -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
