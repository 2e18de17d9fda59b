//! Worker processes as the runner sees them: spawn, read their events, notice
//! their exits, stop them.
//!
//! Each worker's stdout is read by its own task, which forwards parsed events
//! and finally the exit status to the runner over one channel, so the runner
//! handles everything in the order it arrived.

use crate::worker::wire::WireEvent;
use crate::worker::Role;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc::UnboundedSender;

/// Identifies one worker slot (a slot keeps its identity across restarts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Producer or consumer.
    pub role: Role,
    /// 0-based index within the role.
    pub index: u32,
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = match self.role {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        };
        write!(f, "{role} {}", self.index)
    }
}

/// One process of a slot: which incarnation, and its OS process ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The slot.
    pub slot: Slot,
    /// 0 for the first process of the slot, then one more per restart.
    pub incarnation: u32,
    /// The OS process ID.
    pub pid: u32,
}

/// What a worker's reader task reports.
#[derive(Debug)]
pub enum Report {
    /// An event line.
    Event(Origin, WireEvent),
    /// The process ended.
    Exited(Origin, ExitStatus),
}

/// Everything that is the same for every worker of a run.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `dlab` executable.
    pub exe: PathBuf,
    /// The transport whose workers these are (`dlab worker --transport`).
    pub transport: &'static str,
    /// The plan file.
    pub plan: PathBuf,
    /// The run ID.
    pub run_id: String,
    /// Where stderr logs go.
    pub log_dir: PathBuf,
}

/// A running worker process.
#[derive(Debug)]
pub struct Running {
    /// The OS process ID.
    pub pid: u32,
    stdin: Option<ChildStdin>,
}

impl Running {
    /// Asks the worker to finish (closes its stdin).
    pub fn stop(&mut self) {
        self.stdin = None;
    }

    /// Kills the worker outright.
    pub fn kill(&self) {
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// Starts incarnation `incarnation` of `slot` with its transport's own
/// arguments `args`, reporting to `tx`.
pub fn spawn(
    launch: &Launch,
    slot: Slot,
    incarnation: u32,
    args: &[String],
    tx: UnboundedSender<Report>,
) -> std::io::Result<Running> {
    let role = match slot.role {
        Role::Producer => "producer",
        Role::Consumer => "consumer",
    };
    let log = std::fs::File::create(
        launch
            .log_dir
            .join(format!("{role}-{}.{incarnation}.log", slot.index)),
    )?;
    let mut cmd = Command::new(&launch.exe);
    cmd.arg("worker")
        .arg("--transport")
        .arg(launch.transport)
        .arg("--role")
        .arg(role)
        .arg("--index")
        .arg(slot.index.to_string())
        .arg("--plan")
        .arg(&launch.plan)
        .arg("--run-id")
        .arg(&launch.run_id)
        .arg("--")
        .args(args);
    // A process group of its own: a Ctrl-C at the terminal reaches dlab
    // only, which then stops its workers in order (their stdin closes).
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    let origin = Origin {
        slot,
        incarnation,
        pid,
    };
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout is piped");
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(ev) = WireEvent::parse(&line) {
                if tx.send(Report::Event(origin, ev)).is_err() {
                    break;
                }
            }
        }
        if let Ok(status) = child.wait().await {
            let _ = tx.send(Report::Exited(origin, status));
        }
    });
    Ok(Running { pid, stdin })
}
