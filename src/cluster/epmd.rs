//! The cluster's own Erlang port mapper: listens on 127.0.0.1 and on every
//! member's address, on a port of its own (`ERL_EPMD_PORT`), so that a
//! cluster never registers with, or depends on, the system's epmd.
//!
//! It runs in the foreground as dlab's child, in a process group of its own,
//! with the cluster's directory as its working directory: that is how a
//! later dlab finds it when the owner was killed (`crate::leftovers`).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The epmd program of Debian's `erlang-base`.
pub const EPMD: &str = "/usr/bin/epmd";

/// Starts epmd on `port` for these addresses (and 127.0.0.1) and waits until
/// it accepts connections; returns its pid.
pub fn start(dir: &Path, port: u16, addresses: &[Ipv4Addr]) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let mut all = vec!["127.0.0.1".to_string()];
    all.extend(addresses.iter().map(Ipv4Addr::to_string));
    let log = std::fs::File::create(dir.join("epmd.log"))?;
    let child = Command::new(EPMD)
        .args(["-port", &port.to_string(), "-address", &all.join(",")])
        .current_dir(dir)
        .env_remove("ERL_FLAGS")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    let pid = child.id();
    // Reaped by whoever stops it.
    std::mem::forget(child);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let up = addresses.iter().chain([&Ipv4Addr::LOCALHOST]).all(|a| {
            std::net::TcpStream::connect_timeout(&(*a, port).into(), Duration::from_millis(200))
                .is_ok()
        });
        if up {
            return Ok(pid);
        }
        if !crate::leftovers::process::alive(pid) {
            let log = std::fs::read_to_string(dir.join("epmd.log")).unwrap_or_default();
            return Err(std::io::Error::other(format!(
                "epmd -port {port} exited at once: {}",
                log.trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(pid);
    Err(std::io::Error::other(format!(
        "epmd -port {port} did not listen on {} within 10s",
        all.join(",")
    )))
}

/// Ends epmd (and anything in its group).
pub fn stop(pid: u32) {
    if pid == 0 {
        return;
    }
    crate::leftovers::process::end_group(pid, Duration::from_millis(500), Duration::from_secs(5));
    // SAFETY: waitpid with WNOHANG on a pid that may be our child never blocks.
    unsafe {
        libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG);
    }
}
