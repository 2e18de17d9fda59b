//! What a killed dlab left behind, found from the state files under its home
//! and removed.
//!
//! Whatever dlab starts that must not outlive it has a state file in its own
//! directory under `.dlab/`, written before it starts and removed when dlab
//! stops it: a private RabbitMQ node (`state.json`, `crate::broker::node`), a
//! private Postfix relay and its entry in the system `main.cf` (`relay.json`,
//! `crate::relay`), a cluster's epmd and nftables table (`cluster.json`,
//! `crate::cluster`; its members have node records of their own). Each
//! names its [`Owner`]. A dlab process killed by SIGKILL
//! removes nothing; [`sweep`], at the start of the next `dlab` command, ends
//! the processes of every record whose owner no longer lives (found by their
//! working directory, which is the thing's directory), takes the relay out of
//! `main.cf`, deletes a cluster's nftables table and removes the record. What a live dlab owns, and what `dlab
//! up` keeps, is never touched.
//!
//! Worker processes need no record: they end when their stdin closes, which
//! the kernel does when the runner dies.

mod owner;
pub mod process;

pub use owner::Owner;

use crate::broker::NodeState;
use crate::cluster::{self, partition};
use crate::relay;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a leftover gets to end on SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(3);
/// How long to wait, after SIGKILL, for it to be gone.
const DEADLINE: Duration = Duration::from_secs(10);

/// One thing removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The pid of the killed dlab that owned it.
    pub owner: u32,
    /// What it was, e.g. `private RabbitMQ node .dlab/nodes/X (pid 5678)`.
    pub what: String,
}

/// Writes a state file whole: to a temporary file beside it, then renamed,
/// so that a sweep never reads half of one.
pub fn write_record(path: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

/// The directories where dlab starts things under `home`: `broker` and
/// `relay` (`dlab up`), `nodes/*` (a node for one command), and every
/// directory of a run (`runs/*/*`: its private relay).
fn places(home: &Path) -> Vec<PathBuf> {
    let subdirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut places = vec![home.join("broker"), home.join("relay")];
    places.extend(subdirs(&home.join("nodes")));
    for run in subdirs(&home.join("runs")) {
        places.extend(subdirs(&run));
    }
    // A cluster's members first (their VMs), then the cluster itself (its
    // epmd and nftables table).
    let mut clusters = vec![home.join("cluster")];
    clusters.extend(subdirs(&home.join("clusters")));
    for c in clusters {
        if let Some(r) = cluster::Record::load(&c) {
            places.extend(cluster::member_dirs(&c, r.size));
            places.push(c);
        }
    }
    places
}

/// The owner a place's record names, when that owner no longer lives.
fn gone_owner(dir: &Path) -> Option<u32> {
    let owner = match (NodeState::load(dir), relay::Record::load(dir)) {
        (Some(node), _) => node.owner,
        (None, Some(relay)) => relay.owner,
        (None, None) => cluster::Record::load(dir)?.owner,
    };
    owner.is_gone().then(|| owner.pid()).flatten()
}

/// Finds every record under `home` whose owner was killed, ends what it
/// names, and removes it; returns what was removed (nothing for a record
/// whose processes had already ended). Concurrent sweeps of one home take
/// turns (a lock file, created only when there is something to sweep).
pub fn sweep(home: &Path) -> Vec<Removed> {
    let found: Vec<PathBuf> = places(home)
        .into_iter()
        .filter(|d| gone_owner(d).is_some())
        .collect();
    if found.is_empty() {
        return Vec::new();
    }
    let _lock = lock(home);
    found
        .iter()
        .filter_map(|dir| Some((dir, gone_owner(dir)?)))
        .filter_map(|(dir, owner)| {
            let what = remove(home, dir)?;
            Some(Removed { owner, what })
        })
        .collect()
}

/// An exclusive lock on `home/leftovers.lock`, released when dropped
/// (`None` if it cannot be had: the sweep goes on without it).
fn lock(home: &Path) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(home.join("leftovers.lock"))
        .ok()?;
    // SAFETY: flock on a descriptor this function owns.
    (unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0).then_some(file)
}

/// Ends the processes working in `dir` (the recorded leader first, with its
/// group), and removes the record; for a relay, its `main.cf` entry too. A
/// node for one command (under `nodes/`) goes with its directory.
fn remove(home: &Path, dir: &Path) -> Option<String> {
    let real = dir.canonicalize().ok()?;
    let pids = process::working_in(&real);
    process::end(&pids, GRACE, DEADLINE);
    let shown = dir.display();
    if let Some(node) = NodeState::load(dir) {
        if dir.parent() == Some(&home.join("nodes")) {
            let _ = std::fs::remove_dir_all(dir);
        } else {
            node.remove_record();
        }
        let pid = pids.iter().find(|p| **p == node.pid).or(pids.first())?;
        return Some(format!("private RabbitMQ node {shown} (pid {pid})"));
    }
    if let Some(c) = cluster::Record::load(dir) {
        let table = partition::exists(&c.table);
        c.remove_own(dir);
        if dir.parent() == Some(&home.join("clusters")) {
            let _ = std::fs::remove_dir_all(dir);
        }
        let mut what = vec![format!("cluster {shown}: its epmd (pid {})", c.epmd_pid)];
        if table {
            what.push(format!("its nftables table inet {}", c.table));
        }
        return Some(what.join(" and "));
    }
    let record = relay::Record::load(dir)?;
    let listed = relay::unlist(dir);
    relay::Record::remove(dir);
    let master = record
        .master_pid
        .filter(|p| pids.contains(p))
        .or(pids.first().copied());
    match (master, listed) {
        (Some(pid), true) => Some(format!(
            "Postfix relay {shown} (master pid {pid}) and its main.cf entry"
        )),
        (Some(pid), false) => Some(format!("Postfix relay {shown} (master pid {pid})")),
        (None, true) => Some(format!("the main.cf entry of the Postfix relay {shown}")),
        (None, false) => None,
    }
}

/// One line per killed dlab: `removed what a killed dlab (pid N) left: A; B`.
pub fn describe(removed: &[Removed]) -> Vec<String> {
    let mut by_owner: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for r in removed {
        by_owner.entry(r.owner).or_default().push(&r.what);
    }
    by_owner
        .into_iter()
        .map(|(pid, what)| {
            format!(
                "removed what a killed dlab (pid {pid}) left: {}",
                what.join("; ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_killed_dlab() {
        let r = |owner, what: &str| Removed {
            owner,
            what: what.to_string(),
        };
        assert_eq!(
            describe(&[r(7, "a"), r(3, "b"), r(7, "c")]),
            [
                "removed what a killed dlab (pid 3) left: b",
                "removed what a killed dlab (pid 7) left: a; c"
            ]
        );
    }

    #[test]
    fn what_a_live_dlab_owns_is_kept_and_what_a_killed_one_owned_is_removed() {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let home = std::env::temp_dir().join(format!("dlab-sweep-owned-{}", std::process::id()));
        let dir = home.join("nodes").join("n1");
        std::fs::create_dir_all(&dir).unwrap();
        // A stand-in for the node's VM: working in its directory, leading its group.
        let mut vm = std::process::Command::new("sleep")
            .arg("60")
            .current_dir(&dir)
            .process_group(0)
            .spawn()
            .unwrap();
        let mut state = NodeState {
            node: "dlab-1@localhost".into(),
            pid: vm.id(),
            amqp_port: 1,
            dist_port: 2,
            mgmt_port: 0,
            prom_port: 0,
            amqps_port: 0,
            dir: dir.clone(),
            owner: Owner::this_process(),
            seat: None,
        };
        write_record(&NodeState::state_file(&dir), &state).unwrap();
        assert!(sweep(&home).is_empty(), "this process lives");
        assert!(process::alive(vm.id()));

        // The same pid, started at another time: a killed dlab's pid reused.
        let Owner::Process { pid, start_time } = state.owner else {
            unreachable!()
        };
        state.owner = Owner::Process {
            pid,
            start_time: start_time + 1,
        };
        write_record(&NodeState::state_file(&dir), &state).unwrap();
        assert_eq!(
            sweep(&home),
            [Removed {
                owner: pid,
                what: format!("private RabbitMQ node {} (pid {})", dir.display(), vm.id()),
            }]
        );
        assert!(vm.wait().unwrap().signal().is_some(), "ended by a signal");
        assert!(
            !dir.exists(),
            "a node for one command goes with its directory"
        );
        assert!(sweep(&home).is_empty(), "once");
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn a_home_with_nothing_to_sweep_is_left_as_it_is() {
        let home = std::env::temp_dir().join(format!("dlab-sweep-{}", std::process::id()));
        assert!(sweep(&home).is_empty());
        assert!(!home.exists(), "no lock file, no home, made for nothing");
    }
}
