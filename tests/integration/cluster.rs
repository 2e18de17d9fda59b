//! A real three-node RabbitMQ cluster: a quorum queue loses nothing it
//! confirmed when its leader is killed or cut off, clients fail over to
//! another member, the cluster heals, and nothing of a cluster (member,
//! epmd, nftables table) outlives the dlab that started it, even one killed
//! with SIGKILL.

use crate::support;
use dlab::cluster::{partition, watch, Record};
use dlab::report::RunResult;
use std::time::Duration;

/// The cluster, asked by its first member that answers: every member runs
/// and none reports a partition.
fn whole(c: &dlab::cluster::Cluster) -> bool {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for m in c.managements() {
            if let Ok(nodes) = watch::ask_nodes(&m, Duration::from_secs(2)).await {
                return nodes.len() == c.members().len()
                    && nodes.iter().all(|n| n.running && n.partitions.is_empty());
            }
        }
        false
    })
}

/// What every cluster run must show: nothing confirmed lost, the cluster's
/// own count of the queue beside dlab's, agreeing.
fn nothing_confirmed_lost(r: &RunResult) -> &dlab::report::ClusterReport {
    assert_eq!(r.counts.lost_after_confirm, 0, "{:?}", r.lost_ids);
    assert_eq!(r.counts.lost, 0, "{:?}", r.lost_ids);
    assert!(r.expectations_held, "{:?}", r.expectations);
    let c = r
        .cluster
        .as_ref()
        .expect("a cluster run reports its cluster");
    assert_eq!(c.members.len(), 3);
    let after = c.after.as_ref().unwrap_or_else(|| panic!("{:?}", c.notes));
    assert_eq!(after.queue_messages, Some(0), "{after:?}");
    assert_eq!(after.agree, Some(true), "{after:?}");
    c
}

/// Each client's members, in the order it connected to them.
fn members_of(c: &dlab::report::ClusterReport, client: &str) -> Vec<u32> {
    c.clients
        .iter()
        .filter(|x| x.client == client)
        .map(|x| x.member)
        .collect()
}

#[test]
fn a_quorum_queue_loses_nothing_confirmed_when_its_leader_is_killed() {
    let plan = support::plan(
        "cluster-quorum-leader-kill.toml",
        &["messages=2000", "rate=400"],
    );
    let r = support::run(&plan);
    let c = nothing_confirmed_lost(&r);
    // The fault was aimed at the leader the cluster named when it fired.
    let f = &r.fault_timeline[0];
    let aimed = f.aimed_at.as_deref().unwrap_or_default();
    assert!(aimed.ends_with("the leader"), "{aimed}");
    let first = &c.samples[0];
    let killed = first.leader.clone().expect("the cluster named a leader");
    assert!(aimed.contains(&killed), "{aimed} / {killed}");
    // A follower took over.
    assert!(c.leader_changes >= 1, "{:?}", c.samples);
    assert!(
        c.samples
            .iter()
            .any(|s| s.leader.as_ref().is_some_and(|l| *l != killed)),
        "{:?}",
        c.samples
    );
    assert!(
        c.samples
            .iter()
            .any(|s| s.members.iter().any(|m| m.name == killed && !m.running)),
        "the cluster saw its leader go: {:?}",
        c.samples
    );
    // The producer was on the killed member and failed over to another.
    let killed_member = c.members.iter().position(|m| *m == killed).unwrap() as u32;
    let producer = members_of(c, "producer 0");
    assert_eq!(producer.first(), Some(&killed_member), "{:?}", c.clients);
    assert!(
        producer.iter().any(|m| *m != killed_member),
        "the producer failed over: {:?}",
        c.clients
    );
    // The killed member came back into the cluster.
    support::wait_for("the cluster to be whole again", 120, || {
        whole(support::cluster())
    });
}

#[test]
fn a_quorum_queue_loses_nothing_confirmed_when_its_leader_is_cut_off_and_the_cluster_heals() {
    let plan = support::plan("cluster-quorum-isolate-leader.toml", &["messages=2500"]);
    let r = support::run(&plan);
    let c = nothing_confirmed_lost(&r);
    let f = &r.fault_timeline[0];
    let aimed = f.aimed_at.as_deref().unwrap_or_default();
    assert!(
        aimed.contains("the leader") && aimed.contains("cut"),
        "{aimed}"
    );
    assert_eq!(f.note, None, "the partition was made: {:?}", f.note);
    let isolated = c.samples[0].leader.clone().expect("a leader");
    // The majority saw the old leader go (pause-minority paused it) and
    // elected another.
    assert!(
        c.samples.iter().any(|s| s
            .members
            .iter()
            .any(|m| m.name == isolated && (!m.running || !m.partitions.is_empty()))),
        "{:?}",
        c.samples
    );
    assert!(
        c.samples
            .iter()
            .any(|s| s.leader.as_ref().is_some_and(|l| *l != isolated)),
        "{:?}",
        c.samples
    );
    // Clients that were on the cut-off member went elsewhere.
    let isolated_member = c.members.iter().position(|m| *m == isolated).unwrap() as u32;
    for client in ["producer 0", "consumer 0"] {
        let on = members_of(c, client);
        if on.first() == Some(&isolated_member) {
            assert!(
                on.iter().any(|m| *m != isolated_member),
                "{client}: {:?}",
                c.clients
            );
        }
    }
    // The partition is healed: dlab's table is gone, and the cluster is whole.
    let table = &support::cluster().record().table;
    assert!(
        !partition::exists(table),
        "nftables table {table} still there"
    );
    support::wait_for("the cluster to heal", 120, || whole(support::cluster()));
}

const LONG_PARTITION: &str = r#"
guarantee = "at-least-once"
nodes = 3
queue_type = "quorum"
messages = 100000
rate = 50
drain_timeout = "5s"

[[faults]]
kind = "partition"
partition = "isolate"
node = 2
at = "1s"
duration = "10m"
"#;

/// The pids working in a directory tree's member directories and the
/// cluster's epmd, from the records.
fn cluster_pids(dir: &std::path::Path) -> Vec<u32> {
    let r = Record::load(dir).expect("a cluster record");
    let mut pids = vec![r.epmd_pid];
    for d in dlab::cluster::member_dirs(dir, r.size) {
        if let Some(s) = dlab::broker::NodeState::load(&d) {
            pids.push(s.pid);
        }
    }
    pids
}

#[test]
fn nothing_of_a_cluster_outlives_its_run_nor_a_killed_dlab() {
    let home = support::temp_dir("cluster-home");
    // A run that ends normally: its own cluster, stopped and removed after.
    let json = home.join("r.json");
    let mut cmd = support::dlab(&home);
    cmd.args(["run", "scenarios/cluster-quorum-leader-kill.toml"])
        .args([
            "--set",
            "messages=300",
            "--set",
            "rate=0",
            "--set",
            "faults=[]",
        ]);
    let (_, v) = support::succeeds_with_json(cmd, &json);
    assert_eq!(v["cluster"]["members"].as_array().unwrap().len(), 3);
    let clusters = home.join("clusters");
    let left: Vec<_> = std::fs::read_dir(&clusters)
        .map(|d| d.filter_map(Result::ok).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "cluster directories left: {left:?}");
    assert!(dlab::leftovers::process::working_in(&home.canonicalize().unwrap()).is_empty());

    // A dlab killed in the middle of a partition leaves members, epmd and
    // the nftables table; the next dlab command removes all of them.
    let scenario = home.join("long-partition.toml");
    std::fs::write(&scenario, LONG_PARTITION).unwrap();
    let mut child = support::dlab(&home)
        .args(["run", scenario.to_str().unwrap(), "--quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut dir = None;
    support::wait_for("the partition to be made", 240, || {
        dir = std::fs::read_dir(&clusters)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
            .map(|e| e.path());
        dir.as_ref()
            .and_then(|d| Record::load(d))
            .is_some_and(|r| partition::exists(&r.table))
    });
    let dir = dir.unwrap();
    let record = Record::load(&dir).unwrap();
    let pids = cluster_pids(&dir);
    assert_eq!(pids.len(), 4, "three members and epmd: {pids:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(pids.iter().all(|p| dlab::leftovers::process::alive(*p)));
    assert!(partition::exists(&record.table));

    let out = support::dlab(&home).args(["status"]).output().unwrap();
    let said = support::text(&out.stderr);
    assert!(
        said.contains("removed what a killed dlab"),
        "{}",
        support::show(&out)
    );
    assert!(said.contains(&record.table), "{said}");
    for p in &pids {
        assert!(!dlab::leftovers::process::alive(*p), "pid {p} still runs");
    }
    assert!(!partition::exists(&record.table));
    assert!(!dir.exists(), "{} is still there", dir.display());
}

#[test]
fn dlab_up_keeps_a_cluster_that_runs_use_status_shows_and_down_removes() {
    let home = support::temp_dir("cluster-up");
    let out = support::dlab(&home)
        .args(["up", "--nodes", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", support::show(&out));
    let urls: Vec<String> = support::text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("amqp://"))
        .map(str::to_string)
        .collect();
    assert_eq!(urls.len(), 3, "{}", support::show(&out));
    let dir = home.join("cluster");
    let pids = cluster_pids(&dir);

    let out = support::dlab(&home).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", support::show(&out));
    let said = support::text(&out.stdout);
    for i in 0..3 {
        assert!(said.contains(&format!("member {i}  running")), "{said}");
    }
    assert!(!said.contains("guest:guest"), "passwords masked: {said}");

    // A run with --nodes 3 uses the kept cluster instead of starting one.
    let json = home.join("r.json");
    let mut cmd = support::dlab(&home);
    cmd.args(["run", "scenarios/exactly-once-quorum.toml", "--nodes", "3"])
        .args(["--set", "messages=300"]);
    let out = cmd.arg("--json").arg(&json).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", support::show(&out));
    assert!(
        !support::text(&out.stderr).contains("starting cluster member"),
        "{}",
        support::show(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["counts"]["lost"], 0);
    assert_eq!(v["counts"]["duplicates"], 0);
    let first = v["cluster"]["members"][0].as_str().unwrap().to_string();
    assert!(first.ends_with("@h1"), "{first}");
    assert_eq!(v["cluster"]["after"]["agree"], true, "{}", v["cluster"]);

    let out = support::dlab(&home).arg("down").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", support::show(&out));
    assert!(
        support::text(&out.stderr).contains("cluster of 3 nodes stopped"),
        "{}",
        support::show(&out)
    );
    for p in &pids {
        assert!(!dlab::leftovers::process::alive(*p), "pid {p} still runs");
    }
    assert!(!dir.exists(), "{} is still there", dir.display());
}
