//! The SMTP relay: a private Postfix instance that stores and forwards.
//!
//! Its own configuration, queue, data and log directories live under one
//! directory of `.dlab/`; it listens on a free 127.0.0.1 port and relays every
//! message to one next hop (the inbox) with retry times of seconds, so
//! store-and-forward is visible in a run. Starting it needs root and Debian's
//! `postfix` package (`scripts/install-deps`), and the directory listed in
//! `alternate_config_directories` of `/etc/postfix/main.cf`, which
//! [`Relay::start`] adds.
//!
//! Architecture invariant: dlab owns the relay's processes (`postfix -c DIR`
//! start/stop, the master's pid for a kill) and reads its queue from disk.

mod config;
pub use config::RETRY_TIMING;
pub mod log;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The `postfix` command.
pub const POSTFIX: &str = "/usr/sbin/postfix";
/// Where a relay's port and next hop are saved, in its directory.
const STATE: &str = "relay.json";

/// What [`Relay::attach`] needs to find a running relay again.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    port: u16,
    next_hop: SocketAddr,
}

/// The system main.cf that must list private configuration directories.
pub const SYSTEM_MAIN_CF: &str = "/etc/postfix/main.cf";

/// Why the relay could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Postfix is not installed.
    #[error("Postfix is not installed ({POSTFIX} is missing). Try: `scripts/install-deps` (installs Debian's postfix package), or name a relay with --smtp-url")]
    NotInstalled,
    /// Not root.
    #[error("the private Postfix relay needs root (it runs `postfix -c DIR start` and edits {SYSTEM_MAIN_CF}); run as root, or name a relay with --smtp-url")]
    NotRoot,
    /// A file could not be written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What dlab was doing.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Postfix refused to start or did not listen.
    #[error("the private Postfix relay in {dir} did not start: {detail} (log: {log})")]
    Start {
        /// Its directory.
        dir: PathBuf,
        /// What went wrong.
        detail: String,
        /// Its log file.
        log: PathBuf,
    },
}

/// A private Postfix relay.
#[derive(Debug, Clone)]
pub struct Relay {
    dir: PathBuf,
    port: u16,
    next_hop: SocketAddr,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RelayError {
    let path = path.to_path_buf();
    move |source| RelayError::Io { what, path, source }
}

impl Relay {
    /// Starts a relay in `dir` (created if needed) that forwards everything to
    /// `next_hop`, and waits until it accepts SMTP.
    pub fn start(dir: &Path, next_hop: SocketAddr) -> Result<Relay, RelayError> {
        if !Path::new(POSTFIX).exists() {
            return Err(RelayError::NotInstalled);
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(RelayError::NotRoot);
        }
        let dir = std::path::absolute(dir).map_err(io("cannot resolve", dir))?;
        let relay = Relay {
            port: crate::broker::free_port(),
            next_hop,
            dir,
        };
        config::write(&relay.dir, relay.port, next_hop)?;
        config::list_in_system_main_cf(Path::new(SYSTEM_MAIN_CF), &relay.etc())?;
        if let Err(e) = relay.launch() {
            // Leave nothing behind: no master that started but never
            // listened, no entry in the system main.cf.
            relay.retire();
            return Err(e);
        }
        let saved = Saved {
            port: relay.port,
            next_hop,
        };
        let state = relay.dir.join(STATE);
        std::fs::write(&state, serde_json::to_vec(&saved).expect("serializes"))
            .map_err(io("cannot write", &state))?;
        Ok(relay)
    }

    /// The relay started in `dir` earlier (by `dlab up`), if it still runs.
    pub fn attach(dir: &Path) -> Option<Relay> {
        let saved: Saved = serde_json::from_slice(&std::fs::read(dir.join(STATE)).ok()?).ok()?;
        let relay = Relay {
            dir: std::path::absolute(dir).ok()?,
            port: saved.port,
            next_hop: saved.next_hop,
        };
        relay.master_pid().is_some().then_some(relay)
    }

    /// `postfix start` on the written configuration and queue (first, or
    /// again after [`Relay::kill`] or [`Relay::stop`]); waits until it listens.
    pub fn launch(&self) -> Result<(), RelayError> {
        let relay = self;
        let out = Command::new(POSTFIX)
            .arg("-c")
            .arg(relay.etc())
            .arg("start")
            .output()
            .map_err(io("cannot run", Path::new(POSTFIX)))?;
        if !out.status.success() {
            return Err(relay.start_error(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(relay.addr()).is_err() {
            if Instant::now() >= deadline {
                return Err(
                    relay.start_error(format!("nothing listens on {} after 30s", relay.addr()))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGKILL to the master and every process of its group (smtpd, qmgr,
    /// smtp...): no cleanup, as in a crash. The queue stays on disk.
    pub fn kill(&self) {
        if let Some(pid) = self.master_pid() {
            // SAFETY: killpg has no memory preconditions; the master leads
            // its own process group (it calls setsid).
            unsafe {
                libc::killpg(pid as libc::pid_t, libc::SIGKILL);
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            // Gone means every process of the group, not only the master: a
            // delivery agent still dying holds its lock on a queue file, and
            // a new queue manager that meets such a lock sets the message
            // aside for 60 seconds.
            let deadline = Instant::now() + Duration::from_secs(10);
            while (self.master_pid().is_some() || group_alive(pid)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Messages in its queue as `postqueue -j` lists them, or `None` when
    /// Postfix cannot answer (not running).
    pub fn postqueue_depth(&self) -> Option<u64> {
        let out = Command::new("/usr/sbin/postqueue")
            .arg("-c")
            .arg(self.etc())
            .arg("-j")
            .output()
            .ok()?;
        out.status.success().then(|| {
            out.stdout
                .split(|b| *b == b'\n')
                .filter(|l| l.starts_with(b"{"))
                .count() as u64
        })
    }

    fn start_error(&self, detail: String) -> RelayError {
        RelayError::Start {
            dir: self.dir.clone(),
            detail,
            log: self.log(),
        }
    }

    fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }

    /// Where the relay accepts SMTP.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Where it forwards to.
    pub fn next_hop(&self) -> SocketAddr {
        self.next_hop
    }

    /// Its log file (`maillog_file`).
    pub fn log(&self) -> PathBuf {
        self.dir.join("log").join("postfix.log")
    }

    /// Messages in its queue now (incoming, active, deferred, hold), read
    /// from disk: complete queue files only. `cleanup` marks a queue file
    /// complete by setting its owner-execute bit; a file without it is one
    /// being written, or one a killed `cleanup` left half-written (never
    /// answered 250, so never the relay's to deliver).
    pub fn queue_depth(&self) -> u64 {
        ["incoming", "active", "deferred", "hold", "maildrop"]
            .iter()
            .map(|q| count_files(&self.dir.join("spool").join(q)))
            .sum()
    }

    /// The pid of the Postfix master process, if it runs.
    pub fn master_pid(&self) -> Option<u32> {
        let text =
            std::fs::read_to_string(self.dir.join("spool").join("pid").join("master.pid")).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        crate::broker::node::pid_alive(pid).then_some(pid)
    }

    /// Stops it gracefully (`postfix stop`); its queue stays on disk.
    pub fn stop(&self) {
        let _ = Command::new(POSTFIX)
            .arg("-c")
            .arg(self.etc())
            .arg("stop")
            .output();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.master_pid().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Relay {
    /// Its directory (configuration, queue, data, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops it and takes its directory out of the system `main.cf`, keeping
    /// its files (the log stays for anyone to recount).
    pub fn retire(&self) {
        self.stop();
        let _ = config::unlist_from_system_main_cf(Path::new(SYSTEM_MAIN_CF), &self.etc());
    }

    /// Stops it, takes its directory out of the system `main.cf` and removes
    /// its directory (queue included).
    pub fn remove(self) {
        self.stop();
        let _ = config::unlist_from_system_main_cf(Path::new(SYSTEM_MAIN_CF), &self.etc());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether any process of process group `pgid` still lives (zombies, dead
/// and only waiting to be reaped, do not count).
fn group_alive(pgid: u32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.filter_map(Result::ok).any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // After the command's closing parenthesis: state, ppid, pgrp, ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

fn count_files(dir: &Path) -> u64 {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => count_files(&e.path()),
            Ok(m) if m.permissions().mode() & 0o100 != 0 => 1,
            _ => 0,
        })
        .sum()
}
