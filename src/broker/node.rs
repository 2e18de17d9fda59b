//! A private RabbitMQ node started from the installed `rabbitmq-server`
//! package: its own node name, free AMQP and distribution ports, its own data,
//! logs, cookie and config under a directory of `.dlab/`.
//!
//! Architecture invariant: dlab owns the node's OS process (the Erlang VM
//! itself, not a wrapper script: `RUNNING_UNDER_SYSTEMD` makes the script
//! `exec` the VM), so later work can kill, pause and restart it. Its state
//! file names its owner and is written before the VM starts, so that a dlab
//! killed at any point leaves a record of what to remove (`crate::leftovers`).

use super::ports::free_port;
use crate::leftovers::{self, Owner};
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The server script of Debian's `rabbitmq-server` package (not the
/// `/usr/sbin` wrapper, which switches user).
pub const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// How long a node may take to accept AMQP connections.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a node could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The package is not installed.
    #[error("RabbitMQ is not installed ({SERVER} is missing). Try: `scripts/install-deps` (installs Debian's rabbitmq-server), or name a broker with --amqp-url")]
    NotInstalled,
    /// Something on the file system failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What dlab was doing.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The node did not come up.
    #[error("the private RabbitMQ node {node} did not accept AMQP on {url} within {secs}s; its log says: {log_tail}")]
    Boot {
        /// Node name.
        node: String,
        /// AMQP URL it should have listened on.
        url: String,
        /// Seconds waited.
        secs: u64,
        /// The end of its console log.
        log_tail: String,
    },
}

/// What is known about a running private node; saved as `state.json` in its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Erlang node name, e.g. `dlab-40123@localhost`.
    pub node: String,
    /// OS process ID of the Erlang VM.
    pub pid: u32,
    /// AMQP port on 127.0.0.1.
    pub amqp_port: u16,
    /// Erlang distribution port.
    pub dist_port: u16,
    /// The management API's port on 127.0.0.1 (0 in a state file written
    /// before nodes had one).
    #[serde(default)]
    pub mgmt_port: u16,
    /// The Prometheus endpoint's port on 127.0.0.1: the node's global
    /// counters (0 in a state file written before nodes had one).
    #[serde(default)]
    pub prom_port: u16,
    /// The AMQPS (TLS) port on 127.0.0.1, with the certificates of the lab
    /// CA in the node's `tls/` (0: no TLS listener).
    #[serde(default)]
    pub amqps_port: u16,
    /// The node's directory (data, logs, config).
    pub dir: PathBuf,
    /// Who it belongs to: the dlab process that started it, or `dlab up`
    /// (also for a state file written before owners were recorded).
    #[serde(default)]
    pub owner: Owner,
    /// Its place in a cluster (None: a node of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat: Option<Seat>,
}

/// A node's place in a cluster dlab started: its own loopback address and
/// host name (distribution listens and connects only there, so that a
/// partition can drop the traffic between two addresses), the cluster's
/// private epmd, and the settings all members share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seat {
    /// The node's own loopback address, e.g. 127.77.12.2.
    pub address: std::net::Ipv4Addr,
    /// Its host name (`h1`..), mapped to `address` by the cluster's inetrc.
    pub host: String,
    /// The cluster's private epmd.
    pub epmd_port: u16,
    /// The cluster's `ERL_INETRC` file (host names of all members).
    pub inetrc: PathBuf,
    /// The Erlang cookie all members share.
    pub cookie: String,
    /// `cluster_partition_handling`: ignore, pause_minority or autoheal.
    pub partition_handling: String,
    /// `net_ticktime` in seconds: how soon a silent peer counts as gone.
    pub net_ticktime: u32,
}

impl Seat {
    /// The environment a node of this seat, and every CLI tool that talks
    /// to it, needs: the host names, the private epmd.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("ERL_INETRC", self.inetrc.display().to_string()),
            ("ERL_EPMD_PORT", self.epmd_port.to_string()),
        ]
    }

    fn erl_args(&self) -> String {
        let [a, b, c, d] = self.address.octets();
        format!(
            "-kernel inet_dist_use_interface {{{a},{b},{c},{d}}} -kernel inet_dist_connect_options [{{ip,{{{a},{b},{c},{d}}}}}] -kernel net_ticktime {}",
            self.net_ticktime
        )
    }
}

impl NodeState {
    /// The AMQP URL of the node (guest/guest over loopback).
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// The AMQPS URL of the node, if it has a TLS listener.
    pub fn tls_url(&self) -> Option<String> {
        (self.amqps_port != 0)
            .then(|| format!("amqps://guest:guest@127.0.0.1:{}/%2f", self.amqps_port))
    }

    /// The lab CA's directory of the node's TLS listener.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }

    /// The node's management API (the broker's own counts).
    pub fn management(&self) -> Option<super::Management> {
        (self.mgmt_port != 0 && self.prom_port != 0)
            .then(|| super::Management::loopback(self.mgmt_port, self.prom_port))
    }

    /// Whether the node's process still exists.
    pub fn alive(&self) -> bool {
        pid_alive(self.pid)
    }

    /// The state file in `dir`.
    pub fn state_file(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// Reads the state saved in `dir`, if any.
    pub fn load(dir: &Path) -> Option<NodeState> {
        let bytes = fs::read(NodeState::state_file(dir)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn save(&self) -> Result<(), NodeError> {
        let path = NodeState::state_file(&self.dir);
        leftovers::write_record(&path, self).map_err(|source| NodeError::Io {
            what: "cannot write",
            path,
            source,
        })
    }

    /// Hands the node to `dlab up`: it outlives this command, until `dlab down`.
    pub fn keep_running(&mut self) -> Result<(), NodeError> {
        self.owner = Owner::Up;
        self.save()
    }

    /// Removes the state file (the node is stopped).
    pub fn remove_record(&self) {
        let _ = fs::remove_file(NodeState::state_file(&self.dir));
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    leftovers::process::alive(pid)
}

fn write(path: PathBuf, text: &str) -> Result<(), NodeError> {
    fs::write(&path, text).map_err(|source| NodeError::Io {
        what: "cannot write",
        path,
        source,
    })
}

/// Starts a node in `dir` (created if needed) on free ports and waits until it accepts AMQP.
pub async fn start(dir: &Path) -> Result<NodeState, NodeError> {
    if !Path::new(SERVER).exists() {
        return Err(NodeError::NotInstalled);
    }
    let dir = std::path::absolute(dir).map_err(|source| NodeError::Io {
        what: "cannot resolve",
        path: dir.to_path_buf(),
        source,
    })?;
    let [amqp_port, dist_port, mgmt_port, prom_port, amqps_port] = free_ports();
    let planned = NodeState {
        node: format!("dlab-{amqp_port}@localhost"),
        pid: 0,
        amqp_port,
        dist_port,
        mgmt_port,
        prom_port,
        amqps_port,
        dir,
        owner: Owner::this_process(),
        seat: None,
    };
    launch(&planned).await
}

/// `N` distinct free ports for one node: AMQP, distribution, management,
/// Prometheus (and AMQPS).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let mut ports = [0u16; N];
    let mut found = 0;
    while found < N {
        let p = free_port();
        if !ports[..found].contains(&p) {
            ports[found] = p;
            found += 1;
        }
    }
    ports
}

/// Starts the VM of `planned` (its name, ports, directory and owner; its pid
/// is ignored), saves the new state and waits until it accepts AMQP. The
/// state is saved before the VM starts too (with pid 0; the VM, found by its
/// working directory, is what a killed owner leaves then).
pub async fn launch(planned: &NodeState) -> Result<NodeState, NodeError> {
    let dir = planned.dir.clone();
    for sub in ["", "log", "mnesia"] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(|source| NodeError::Io {
            what: "cannot create",
            path: p,
            source,
        })?;
    }
    let (amqp_port, dist_port, node) = (planned.amqp_port, planned.dist_port, planned.node.clone());
    // The management and Prometheus plugins are the broker's own count of
    // each run (see `management.rs`).
    let (plugins, mgmt) = if planned.mgmt_port == 0 || planned.prom_port == 0 {
        ("[].\n", String::new())
    } else {
        (
            "[rabbitmq_management,rabbitmq_prometheus].\n",
            format!(
                "management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {}\nprometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = {}\n",
                planned.mgmt_port, planned.prom_port,
            ),
        )
    };
    let tls = if planned.amqps_port == 0 {
        String::new()
    } else {
        // The lab CA's server certificate; a client certificate is checked
        // when one is presented (mutual TLS) and not required otherwise.
        let tls_dir = dir.join("tls");
        crate::tls::standard(&tls_dir).map_err(|e| NodeError::Io {
            what: "cannot make the lab CA in",
            path: tls_dir.clone(),
            source: std::io::Error::other(e),
        })?;
        format!(
            "listeners.ssl.default = 127.0.0.1:{}\nssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\nssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = false\n",
            planned.amqps_port,
            tls_dir.join("ca.pem").display(),
            tls_dir.join("server.pem").display(),
            tls_dir.join("server.key").display(),
        )
    };
    let clustering = match &planned.seat {
        Some(seat) => {
            write_cookie(&dir, &seat.cookie)?;
            format!("cluster_partition_handling = {}\n", seat.partition_handling)
        }
        None => String::new(),
    };
    write(
        dir.join("rabbitmq.conf"),
        &format!(
            "listeners.tcp.default = 127.0.0.1:{amqp_port}\nloopback_users.guest = true\n{tls}{mgmt}{clustering}"
        ),
    )?;
    write(dir.join("enabled_plugins"), plugins)?;
    write(
        dir.join("rabbitmq-env.conf"),
        "# dlab: no system-wide settings\n",
    )?;
    let console = dir.join("log").join("console.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&console)
        .map_err(|source| NodeError::Io {
            what: "cannot open",
            path: console.clone(),
            source,
        })?;
    let log2 = log.try_clone().map_err(|source| NodeError::Io {
        what: "cannot open",
        path: console.clone(),
        source,
    })?;
    let mut cmd = Command::new(SERVER);
    cmd.env("RABBITMQ_NODENAME", &node)
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", amqp_port.to_string())
        .env("RABBITMQ_DIST_PORT", dist_port.to_string())
        .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", dir.join("log"))
        .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
        .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
        .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
        .env("RABBITMQ_PID_FILE", dir.join("rabbitmq.pid"))
        .env(
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
            planned.seat.as_ref().map_or_else(
                || "-kernel inet_dist_use_interface {127,0,0,1}".to_string(),
                Seat::erl_args,
            ),
        )
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .envs(planned.seat.iter().flat_map(Seat::env))
        .env("RUNNING_UNDER_SYSTEMD", "true")
        .env("HOME", &dir)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("ERL_FLAGS")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        // Its own process group: a Ctrl-C meant for dlab does not reach the
        // node, and dlab decides when it stops.
        .process_group(0);
    NodeState {
        pid: 0,
        ..planned.clone()
    }
    .save()?;
    let child = cmd.spawn().map_err(|source| NodeError::Io {
        what: "cannot start",
        path: PathBuf::from(SERVER),
        source,
    })?;
    let state = NodeState {
        pid: child.id(),
        ..planned.clone()
    };
    state.save()?;
    // The child is reaped by whoever stops it; forget the handle.
    std::mem::forget(child);
    wait_ready(&state).await?;
    Ok(state)
}

async fn wait_ready(state: &NodeState) -> Result<(), NodeError> {
    let started = Instant::now();
    let url = state.url();
    loop {
        let conn = crate::amqp::connect(&url, "dlab readiness probe", Duration::from_secs(5)).await;
        if let Ok(c) = conn {
            let _ = c.close(200, "ready".into()).await;
            // The management API (the broker's own counts) comes up with
            // the plugins; wait for it too.
            let mut mgmt_up = true;
            for port in [state.mgmt_port, state.prom_port] {
                mgmt_up &= port == 0
                    || tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_ok();
            }
            if mgmt_up {
                return Ok(());
            }
        }
        if !state.alive() || started.elapsed() >= BOOT_TIMEOUT {
            let secs = started.elapsed().as_secs();
            let log_tail = log_tail(&state.dir.join("log").join("console.log"));
            stop(state, Duration::from_secs(5));
            state.remove_record();
            return Err(NodeError::Boot {
                node: state.node.clone(),
                url: crate::amqp::mask_password(&url),
                secs,
                log_tail,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The shared Erlang cookie, in the node's `HOME` (read only by its owner,
/// as Erlang demands).
fn write_cookie(dir: &Path, cookie: &str) -> Result<(), NodeError> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(".erlang.cookie");
    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
    write(path.clone(), cookie)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).map_err(|source| NodeError::Io {
        what: "cannot protect",
        path,
        source,
    })
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        format!("(nothing; see {})", path.display())
    } else {
        format!("{tail} (full log: {})", path.display())
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn reap(pid: u32) {
    // SAFETY: waitpid on a pid that may or may not be our child; WNOHANG never blocks.
    unsafe {
        libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG);
    }
}

/// Stops the node: SIGTERM (RabbitMQ shuts down gracefully), then SIGKILL to
/// its whole process group if it is still there after `grace`. Returns whether
/// it had to be killed.
pub fn stop(state: &NodeState, grace: Duration) -> bool {
    // A state saved before its VM started names no process (and pid 0
    // would address dlab's own process group).
    if state.pid == 0 {
        return false;
    }
    signal(state.pid, libc::SIGTERM);
    let started = Instant::now();
    while started.elapsed() < grace {
        reap(state.pid);
        if !pid_alive(state.pid) {
            cleanup_group(state.pid);
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: see `signal`; a negative pid addresses the process group.
    unsafe {
        libc::kill(-(state.pid as libc::pid_t), libc::SIGKILL);
    }
    signal(state.pid, libc::SIGKILL);
    let started = Instant::now();
    while pid_alive(state.pid) && started.elapsed() < Duration::from_secs(5) {
        reap(state.pid);
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Helpers the VM started in its group (erl_child_setup) go with it.
fn cleanup_group(pid: u32) {
    // SAFETY: see `signal`.
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
}

/// A private node under dlab's control, shared by the runner's fault driver
/// and whoever stops it. Its pid changes when it is restarted. One made with
/// [`Node::own`] retires itself when dropped.
#[derive(Debug)]
pub struct Node {
    state: std::sync::Mutex<NodeState>,
    /// Started for this value's owner: retired when dropped.
    owned: bool,
    retired: std::sync::atomic::AtomicBool,
}

impl Node {
    /// Control of a running node someone else stops (`dlab up`'s, a test's).
    pub fn new(state: NodeState) -> std::sync::Arc<Node> {
        Node::with(state, false)
    }

    /// Control of a node started for this command alone: retired (stopped,
    /// its directory removed) by [`Node::retire`] or when dropped.
    pub fn own(state: NodeState) -> std::sync::Arc<Node> {
        Node::with(state, true)
    }

    fn with(state: NodeState, owned: bool) -> std::sync::Arc<Node> {
        std::sync::Arc::new(Node {
            state: std::sync::Mutex::new(state),
            owned,
            retired: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Stops the node (SIGKILL after 30 s) and removes its directory, state
    /// file included. Once: later calls, and the drop, do nothing.
    pub fn retire(&self) {
        if self.retired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let state = self.state();
        stop(&state, Duration::from_secs(30));
        let _ = fs::remove_dir_all(&state.dir);
    }

    /// Lets the node outlive this value (handed to `dlab up`).
    pub fn release(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The node's current state.
    pub fn state(&self) -> NodeState {
        self.state.lock().expect("not poisoned").clone()
    }

    /// SIGKILL to the VM and its process group: no shutdown, no flushing.
    pub fn kill(&self) {
        let pid = self.state().pid;
        if pid == 0 {
            return;
        }
        // SAFETY: sending signals has no memory-safety preconditions.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
        let started = Instant::now();
        while pid_alive(pid) && started.elapsed() < Duration::from_secs(10) {
            reap(pid);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A graceful stop (SIGTERM, waiting up to `grace`).
    pub fn stop(&self, grace: Duration) -> bool {
        stop(&self.state(), grace)
    }

    /// Starts the VM again with the same name, ports and data.
    pub async fn relaunch(&self) -> Result<(), NodeError> {
        let planned = self.state();
        let state = launch(&planned).await?;
        *self.state.lock().expect("not poisoned") = state;
        Ok(())
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) to the VM.
    pub fn pause(&self, paused: bool) {
        signal(
            self.state().pid,
            if paused { libc::SIGSTOP } else { libc::SIGCONT },
        );
    }

    /// Sets the memory high watermark (a tiny fraction raises the memory alarm).
    pub async fn set_memory_watermark(&self, fraction: f64) -> Result<(), String> {
        self.state()
            .ctl(
                "rabbitmqctl",
                &["set_vm_memory_high_watermark", &format!("{fraction}")],
            )
            .await
            .map(drop)
    }
}

impl NodeState {
    /// Runs one of RabbitMQ's CLI tools (`rabbitmqctl`, `rabbitmq-queues`,
    /// `rabbitmq-diagnostics`) against this node, with the cookie, host
    /// names and epmd it needs; returns what it printed, or why it failed.
    /// Each call starts an Erlang VM: about a second of CPU, so use it for
    /// reads after the fact, not for polling.
    pub async fn ctl(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let out = tokio::process::Command::new(format!("/usr/lib/rabbitmq/bin/{tool}"))
            .args(["-q", "-n", &self.node])
            .args(args)
            .env("HOME", &self.dir)
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("rabbitmq-env.conf"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .envs(self.seat.iter().flat_map(Seat::env))
            .env_remove("ERL_FLAGS")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("cannot run {tool}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = if why.trim().is_empty() {
                String::from_utf8_lossy(&out.stdout)
            } else {
                why
            };
            Err(format!(
                "{tool} {} on {} failed: {}",
                args.first().unwrap_or(&""),
                self.node,
                why.trim().lines().take(3).collect::<Vec<_>>().join(" | ")
            ))
        }
    }
}

impl Drop for Node {
    /// A node started for this command goes with it (every wait is bounded).
    fn drop(&mut self) {
        if self.owned {
            self.retire();
        }
    }
}
