//! A RabbitMQ cluster dlab starts itself: several private nodes
//! ([`crate::broker::node`]) joined into one cluster, each on a loopback
//! address of its own, sharing one Erlang cookie and a private epmd
//! ([`epmd`]), so that faults can aim at one member ([`Cluster::member`],
//! [`Cluster::leader`]) and partitions can cut the links between members
//! ([`partition`]). [`watch`] samples what the cluster says of itself during
//! a run (members, partitions, the queue's leader); [`counts`] asks its CLI
//! tools after the drain.
//!
//! Architecture invariants:
//! - A cluster's record (`cluster.json`: owner, epmd, nftables table) is
//!   written before anything of it starts, and each member has its node
//!   record, so a killed dlab leaves enough to remove all of it
//!   (`crate::leftovers`).
//! - Members start one after the other (two cores), then join the first.

pub mod counts;
pub mod epmd;
pub mod partition;
pub mod watch;

use crate::broker::node::{self, free_ports, Seat};
use crate::broker::{Management, Node, NodeError, NodeState};
use crate::leftovers::{self, Owner};
use crate::scenario::PartitionHandling;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How soon a silent peer counts as gone: short, so that a partition is
/// seen in seconds (RabbitMQ's default is 60).
pub const NET_TICKTIME: u32 = 10;

/// How long the members may take to agree that they are one cluster.
const JOIN_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A member could not start.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Something else failed (epmd, joining).
    #[error("{0}")]
    Setup(String),
}

/// What a cluster is made of; saved as `cluster.json` in its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Who it belongs to.
    pub owner: Owner,
    /// How many members.
    pub size: u32,
    /// The private epmd's port and pid (0 before it started).
    pub epmd_port: u16,
    /// The private epmd's pid.
    pub epmd_pid: u32,
    /// The nftables table partitions go in (`inet` family).
    pub table: String,
    /// Member `i` (0-based) listens for distribution on `base` + i + 1.
    pub base: Ipv4Addr,
    /// `cluster_partition_handling` of every member.
    pub partition_handling: PartitionHandling,
}

impl Record {
    /// The record file in `dir`.
    pub fn file(dir: &Path) -> PathBuf {
        dir.join("cluster.json")
    }

    /// Reads the record saved in `dir`, if any.
    pub fn load(dir: &Path) -> Option<Record> {
        serde_json::from_slice(&std::fs::read(Record::file(dir)).ok()?).ok()
    }

    fn save(&self, dir: &Path) -> Result<(), ClusterError> {
        leftovers::write_record(&Record::file(dir), self)
            .map_err(|e| ClusterError::Setup(format!("cannot write {}: {e}", dir.display())))
    }

    /// The address of member `i` (0-based).
    pub fn address(&self, i: usize) -> Ipv4Addr {
        let [a, b, c, _] = self.base.octets();
        Ipv4Addr::new(a, b, c, i as u8 + 1)
    }

    /// Removes what is not a member's: epmd, the nftables table, the record.
    /// Members are stopped by their own records.
    pub fn remove_own(&self, dir: &Path) {
        epmd::stop(self.epmd_pid);
        partition::heal(&self.table);
        let _ = std::fs::remove_file(Record::file(dir));
    }
}

/// The directories of a cluster's members.
pub fn member_dirs(dir: &Path, size: u32) -> Vec<PathBuf> {
    (1..=size).map(|i| dir.join(format!("n{i}"))).collect()
}

/// A running cluster under dlab's control.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    record: Record,
    members: Vec<Arc<Node>>,
    /// Started for this value's owner: retired when dropped.
    owned: bool,
    retired: AtomicBool,
}

/// Whether a node's boot failed because one of its ports was taken.
fn port_taken(log_tail: &str) -> bool {
    ["already_used", "eaddrinuse", "address already in use"]
        .iter()
        .any(|p| log_tail.to_ascii_lowercase().contains(p))
}

/// A loopback /24 of this cluster's own (127.64-191.x.0), so that two
/// clusters on one machine never share a member address.
fn pick_base() -> Ipv4Addr {
    let r = uuid::Uuid::new_v4();
    let b = r.as_bytes();
    Ipv4Addr::new(127, 64 + b[0] % 128, 1 + b[1] % 254, 0)
}

fn inetrc(record: &Record) -> String {
    let mut s = String::from("{host, {127,0,0,1}, [\"localhost\"]}.\n");
    for i in 0..record.size as usize {
        let [a, b, c, d] = record.address(i).octets();
        s.push_str(&format!(
            "{{host, {{{a},{b},{c},{d}}}, [\"h{}\"]}}.\n",
            i + 1
        ));
    }
    s.push_str("{lookup, [file, native]}.\n");
    s
}

impl Cluster {
    /// Starts a cluster of `size` members in `dir` (created; it must not hold
    /// another cluster) and waits until every member runs and sees all the
    /// others. `notify` hears about each step.
    pub async fn start(
        dir: &Path,
        size: u32,
        handling: PartitionHandling,
        notify: impl Fn(&str),
    ) -> Result<Cluster, ClusterError> {
        if !Path::new(node::SERVER).exists() {
            return Err(NodeError::NotInstalled.into());
        }
        let dir = std::path::absolute(dir)
            .map_err(|e| ClusterError::Setup(format!("cannot resolve {}: {e}", dir.display())))?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| ClusterError::Setup(format!("cannot create {}: {e}", dir.display())))?;
        let id = dir
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            })
            .unwrap_or_default();
        let mut record = Record {
            owner: Owner::this_process(),
            size,
            epmd_port: crate::broker::free_port(),
            epmd_pid: 0,
            table: format!("dlab_{}", &id[..id.len().min(40)]),
            base: pick_base(),
            partition_handling: handling,
        };
        record.save(&dir)?;
        let addresses: Vec<Ipv4Addr> = (0..size as usize).map(|i| record.address(i)).collect();
        record.epmd_pid = epmd::start(&dir, record.epmd_port, &addresses)
            .map_err(|e| ClusterError::Setup(format!("cannot start the cluster's epmd: {e}")))?;
        record.save(&dir)?;
        let inetrc_path = dir.join("inetrc");
        std::fs::write(&inetrc_path, inetrc(&record))
            .map_err(|e| ClusterError::Setup(format!("cannot write the inetrc: {e}")))?;
        let cookie = format!("DLAB{}", uuid::Uuid::new_v4().simple()).to_uppercase();
        let mut cluster = Cluster {
            dir: dir.clone(),
            record: record.clone(),
            members: Vec::new(),
            owned: true,
            retired: AtomicBool::new(false),
        };
        for (i, member_dir) in member_dirs(&dir, size).into_iter().enumerate() {
            let host = format!("h{}", i + 1);
            let seat = Seat {
                address: addresses[i],
                host: host.clone(),
                epmd_port: record.epmd_port,
                inetrc: inetrc_path.clone(),
                cookie: cookie.clone(),
                partition_handling: handling.conf_value().to_string(),
                net_ticktime: NET_TICKTIME,
            };
            // A port that was free when picked may be taken by the time the
            // VM binds it (other servers start on this machine too): the
            // member is started again on fresh ports.
            let mut attempt = 0;
            let state = loop {
                attempt += 1;
                let [amqp_port, dist_port, mgmt_port, prom_port] = free_ports();
                notify(&format!(
                    "dlab: starting cluster member {} of {size} (rabbit node dlab-{amqp_port}@{host}, distribution on {})",
                    i + 1,
                    addresses[i]
                ));
                let planned = NodeState {
                    node: format!("dlab-{amqp_port}@{host}"),
                    pid: 0,
                    amqp_port,
                    dist_port,
                    mgmt_port,
                    prom_port,
                    amqps_port: 0,
                    dir: member_dir.clone(),
                    owner: Owner::this_process(),
                    seat: Some(seat.clone()),
                };
                match node::launch(&planned).await {
                    Ok(state) => break state,
                    Err(NodeError::Boot { log_tail, .. })
                        if attempt < 3 && port_taken(&log_tail) => {}
                    // Each member is the cluster's from its first moment: a
                    // failure retires what has started (the drop of `cluster`).
                    Err(e) => return Err(e.into()),
                }
            };
            cluster.members.push(Node::own(state));
        }
        notify(&format!("dlab: joining {size} nodes into one cluster"));
        cluster.join().await?;
        Ok(cluster)
    }

    /// Joins every member to the first, then waits until the first sees all
    /// of them running.
    async fn join(&self) -> Result<(), ClusterError> {
        let first = self.members[0].state();
        for m in &self.members[1..] {
            let s = m.state();
            for args in [
                vec!["stop_app"],
                vec!["join_cluster", first.node.as_str()],
                vec!["start_app"],
            ] {
                s.ctl("rabbitmqctl", &args)
                    .await
                    .map_err(|e| ClusterError::Setup(format!("joining the cluster: {e}")))?;
            }
        }
        let started = Instant::now();
        loop {
            let seen = watch::ask_nodes(&self.managements()[0], Duration::from_secs(2)).await;
            let names: Vec<String> = self.members.iter().map(|m| m.state().node).collect();
            if let Ok(nodes) = &seen {
                if names
                    .iter()
                    .all(|n| nodes.iter().any(|x| &x.name == n && x.running))
                {
                    return Ok(());
                }
            }
            if started.elapsed() > JOIN_TIMEOUT {
                return Err(ClusterError::Setup(format!(
                    "the members did not form one cluster within {}s (the first node says: {:?})",
                    JOIN_TIMEOUT.as_secs(),
                    seen
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A cluster `dlab up --nodes N` left running in `dir`, if its members live.
    pub fn attach(dir: &Path) -> Option<Cluster> {
        let record = Record::load(dir)?;
        let members: Option<Vec<Arc<Node>>> = member_dirs(dir, record.size)
            .iter()
            .map(|d| NodeState::load(d).map(Node::new))
            .collect();
        let members = members?;
        members.iter().any(|m| m.state().alive()).then(|| Cluster {
            dir: dir.to_path_buf(),
            record,
            members,
            owned: false,
            retired: AtomicBool::new(false),
        })
    }

    /// Hands the cluster to `dlab up`: it outlives this command.
    pub fn keep_running(mut self) -> Result<(), ClusterError> {
        self.record.owner = Owner::Up;
        self.record.save(&self.dir)?;
        for m in &self.members {
            let mut s = m.state();
            s.keep_running()?;
            m.release();
        }
        self.owned = false;
        Ok(())
    }

    /// Its record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Its members, in order (member 0 is `h1`).
    pub fn members(&self) -> &[Arc<Node>] {
        &self.members
    }

    /// Member `i`'s Erlang node name.
    pub fn name(&self, i: usize) -> String {
        self.members[i].state().node
    }

    /// Which member has this Erlang node name.
    pub fn index_of(&self, node: &str) -> Option<usize> {
        self.members.iter().position(|m| m.state().node == node)
    }

    /// Every member's AMQP URL, in order.
    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.state().url()).collect()
    }

    /// Every member's management API, in order.
    pub fn managements(&self) -> Vec<Management> {
        self.members
            .iter()
            .map(|m| {
                let s = m.state();
                Management::loopback(s.mgmt_port, s.prom_port)
            })
            .collect()
    }

    /// The member that leads `queue` now (a quorum queue's leader, a
    /// classic queue's master), asked of the first member that answers.
    pub async fn leader(&self, queue: &str) -> Option<usize> {
        for m in self.managements() {
            if let Ok(q) = watch::ask_queue(&m, queue, Duration::from_secs(2)).await {
                return q.leader.and_then(|l| self.index_of(&l));
            }
        }
        None
    }

    /// Cuts the links between these members (0-based pairs), and the
    /// clients of these members off from them.
    pub fn partition(&self, cuts: &[(usize, usize)], clients_of: &[usize]) -> Result<(), String> {
        partition::available()?;
        let links: Vec<(Ipv4Addr, Ipv4Addr)> = cuts
            .iter()
            .map(|(a, b)| (self.record.address(*a), self.record.address(*b)))
            .collect();
        let ports: Vec<u16> = clients_of
            .iter()
            .map(|i| self.members[*i].state().amqp_port)
            .collect();
        partition::cut(&self.record.table, &links, &ports)
    }

    /// Ends every partition.
    pub fn heal(&self) {
        partition::heal(&self.record.table);
    }

    /// Stops every member (in parallel; SIGKILL after 30 s), epmd and any
    /// partition, and removes the directory. Once.
    pub fn retire(&self) {
        if self.retired.swap(true, Ordering::SeqCst) {
            return;
        }
        self.heal();
        std::thread::scope(|s| {
            for m in &self.members {
                s.spawn(|| {
                    node::stop(&m.state(), Duration::from_secs(30));
                });
            }
        });
        self.record.remove_own(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    /// A cluster started for this command goes with it.
    fn drop(&mut self) {
        if self.owned {
            self.retire();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inetrc_names_every_member_at_its_own_address() {
        let r = Record {
            owner: Owner::Up,
            size: 3,
            epmd_port: 1,
            epmd_pid: 0,
            table: "dlab_x".into(),
            base: Ipv4Addr::new(127, 70, 9, 0),
            partition_handling: PartitionHandling::PauseMinority,
        };
        let text = inetrc(&r);
        assert!(text.contains("{host, {127,70,9,1}, [\"h1\"]}."), "{text}");
        assert!(text.contains("{host, {127,70,9,3}, [\"h3\"]}."), "{text}");
        assert!(text.ends_with("{lookup, [file, native]}.\n"));
        assert!(port_taken(
            "{dist_port_already_used,38773,not_erlang,\"h1\"}"
        ));
        assert!(!port_taken("{could_not_start,rabbit,enoent}"));
        let b = pick_base();
        assert_eq!(b.octets()[0], 127);
        assert!((64..192).contains(&b.octets()[1]));
    }
}
