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
//! Its state file, `relay.json`, names its owner and is written before the
//! relay is listed in the system `main.cf` or started, so that a dlab killed
//! at any point leaves a record of what to remove (`crate::leftovers`).

mod config;
pub mod tls_log;
pub use config::{Options, Tls, RETRY_TIMING};
pub mod log;

use crate::leftovers::{self, Owner};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The `postfix` command.
pub const POSTFIX: &str = "/usr/sbin/postfix";
/// A relay's state file, in its directory.
const STATE: &str = "relay.json";

/// A relay's state file: what [`Relay::attach`] needs to find it again, and
/// what `crate::leftovers` needs to remove it when its owner was killed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// Where it accepts SMTP on 127.0.0.1.
    pub port: u16,
    /// Where it forwards to.
    pub next_hop: SocketAddr,
    /// Who it belongs to (`Up` in a file written before owners were recorded).
    #[serde(default)]
    pub owner: Owner,
    /// Its master's pid (the leader of its process group), once started.
    #[serde(default)]
    pub master_pid: Option<u32>,
}

impl Record {
    /// The record in `dir`, if any.
    pub fn load(dir: &Path) -> Option<Record> {
        serde_json::from_slice(&std::fs::read(dir.join(STATE)).ok()?).ok()
    }

    /// Removes the record of `dir`.
    pub fn remove(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(STATE));
    }
}

/// Takes the relay in `dir` out of the system `main.cf`; returns whether it
/// was listed there.
pub fn unlist(dir: &Path) -> bool {
    config::unlist_from_system_main_cf(Path::new(SYSTEM_MAIN_CF), &dir.join("etc")).unwrap_or(false)
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

/// A private Postfix relay. One that [`Relay::start`] started retires itself
/// when dropped (unless handed to `dlab up` with [`Relay::keep_running`]);
/// one found with [`Relay::attach`] is left as it is.
#[derive(Debug)]
pub struct Relay {
    dir: PathBuf,
    port: u16,
    next_hop: SocketAddr,
    owner: Owner,
    /// Started by this value: retired when dropped.
    owned: bool,
    retired: AtomicBool,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RelayError {
    let path = path.to_path_buf();
    move |source| RelayError::Io { what, path, source }
}

impl Relay {
    /// Starts a relay in `dir` (created if needed) that forwards everything to
    /// `next_hop`, and waits until it accepts SMTP.
    pub fn start(dir: &Path, next_hop: SocketAddr) -> Result<Relay, RelayError> {
        Relay::start_with(dir, next_hop, &Options::default())
    }

    /// Like [`Relay::start`]; mail for the sender's address (what the relay
    /// returns) goes to `options.returns` instead of `next_hop` when given,
    /// and with `options.tls` both its hops speak STARTTLS.
    pub fn start_with(
        dir: &Path,
        next_hop: SocketAddr,
        options: &Options,
    ) -> Result<Relay, RelayError> {
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
            owner: Owner::this_process(),
            owned: true,
            retired: AtomicBool::new(false),
        };
        config::write(&relay.dir, relay.port, next_hop, options)?;
        // Recorded before anything outside its directory changes.
        relay.save(None)?;
        config::list_in_system_main_cf(Path::new(SYSTEM_MAIN_CF), &relay.etc())?;
        if let Err(e) = relay.launch() {
            // Leave nothing behind: no master that started but never
            // listened, no entry in the system main.cf.
            relay.retire();
            return Err(e);
        }
        Ok(relay)
    }

    /// The relay started in `dir` earlier (by `dlab up`), if it still runs.
    /// Dropping it leaves it running.
    pub fn attach(dir: &Path) -> Option<Relay> {
        let saved = Record::load(dir)?;
        let relay = Relay {
            dir: std::path::absolute(dir).ok()?,
            port: saved.port,
            next_hop: saved.next_hop,
            owner: saved.owner,
            owned: false,
            retired: AtomicBool::new(false),
        };
        relay.master_pid().is_some().then_some(relay)
    }

    /// Hands the relay to `dlab up`: it outlives this command (its record
    /// says so, and dropping it leaves it running) until `dlab down`.
    pub fn keep_running(&mut self) -> Result<(), RelayError> {
        self.owner = Owner::Up;
        self.save(self.master_pid())?;
        self.owned = false;
        Ok(())
    }

    fn save(&self, master_pid: Option<u32>) -> Result<(), RelayError> {
        let record = Record {
            port: self.port,
            next_hop: self.next_hop,
            owner: self.owner,
            master_pid,
        };
        let path = self.dir.join(STATE);
        leftovers::write_record(&path, &record).map_err(io("cannot write", &path))
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
        relay.save(relay.master_pid())
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
            while (self.master_pid().is_some() || leftovers::process::group_alive(pid))
                && Instant::now() < deadline
            {
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
        leftovers::process::alive(pid).then_some(pid)
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

    /// Stops it (killing it if `postfix stop` does not within its time),
    /// takes its directory out of the system `main.cf` and removes its
    /// record, keeping its files (the log stays for anyone to recount).
    /// Once: later calls, and the drop, do nothing.
    pub fn retire(&self) {
        if self.retired.swap(true, Ordering::SeqCst) {
            return;
        }
        let master = self.master_pid();
        self.stop();
        // Whatever of its process group outlived `postfix stop`.
        if let Some(pid) = master {
            leftovers::process::end_group(pid, Duration::from_secs(5), Duration::from_secs(10));
        }
        unlist(&self.dir);
        Record::remove(&self.dir);
    }

    /// Retires it and removes its directory (queue included).
    pub fn remove(self) {
        self.retire();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Relay {
    /// A relay this value started goes with it (every wait is bounded).
    fn drop(&mut self) {
        if self.owned {
            self.retire();
        }
    }
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
