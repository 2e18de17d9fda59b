//! Shared test setup: one broker for the whole binary, runs one at a time
//! (a 2-core machine measures nothing well when runs overlap), and checks that
//! every result agrees with an independent count.

use dlab::broker::Node;
use dlab::ledger::Event;
use dlab::relay::Relay;
use dlab::report::RunResult;
use dlab::runner::{self, RunContext};
use dlab::scenario::{self, Override, Plan};
use dlab::worker::wire::WireEvent;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

static NODE: OnceLock<Arc<Node>> = OnceLock::new();
static CLUSTER: OnceLock<Arc<dlab::cluster::Cluster>> = OnceLock::new();
static ROOT: OnceLock<PathBuf> = OnceLock::new();
static RUNS: Mutex<()> = Mutex::new(());

/// At exit: stop the test node, then remove every directory the tests made
/// (kept, for a post-mortem, when `DLAB_TEST_KEEP` is set).
extern "C" fn clean_up() {
    if let Some(node) = NODE.get() {
        node.stop(Duration::from_secs(30));
    }
    if let Some(cluster) = CLUSTER.get() {
        cluster.retire();
    }
    if let Some(root) = ROOT.get() {
        if std::env::var_os("DLAB_TEST_KEEP").is_some() {
            eprintln!("DLAB_TEST_KEEP: test files kept in {}", root.display());
        } else {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

/// One directory for everything this test binary writes, removed at exit.
fn root() -> &'static Path {
    ROOT.get_or_init(|| {
        // SAFETY: registering a plain extern "C" function with atexit.
        unsafe {
            libc::atexit(clean_up);
        }
        std::env::temp_dir().join(format!("dlab-test-{}", std::process::id()))
    })
}

/// A private RabbitMQ node for this test binary, started on first use and
/// stopped at exit. Broker-fault tests kill, pause and restart it.
pub fn node() -> &'static Arc<Node> {
    NODE.get_or_init(|| {
        let dir = root().join("node");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let state = rt
            .block_on(dlab::broker::node::start(&dir))
            .expect("a private RabbitMQ node starts (is rabbitmq-server installed? run scripts/install-deps)");
        Node::new(state)
    })
}

/// A three-node cluster (pause-minority) for this test binary, started on
/// first use and stopped at exit. Cluster tests kill, pause and cut off its
/// members; each run leaves it whole again.
pub fn cluster() -> &'static Arc<dlab::cluster::Cluster> {
    CLUSTER.get_or_init(|| {
        let dir = root().join("cluster");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let c = rt
            .block_on(dlab::cluster::Cluster::start(
                &dir,
                3,
                dlab::scenario::PartitionHandling::PauseMinority,
                |m| eprintln!("{m}"),
            ))
            .expect("a three-node RabbitMQ cluster forms (rabbitmq-server and nftables installed? run scripts/install-deps)");
        Arc::new(c)
    })
}

/// The broker most tests use: `DLAB_AMQP_URL`, or the private node.
pub fn broker_url() -> String {
    std::env::var("DLAB_AMQP_URL").unwrap_or_else(|_| node().state().url())
}

/// The management API of the test broker: the private node's, or the one
/// beside `DLAB_AMQP_URL`.
pub fn management() -> Option<dlab::broker::Management> {
    match std::env::var("DLAB_AMQP_URL") {
        Ok(url) => dlab::broker::Management::beside(&url),
        Err(_) => node().state().management(),
    }
}

/// A fresh directory, removed when the test binary exits.
pub fn temp_dir(what: &str) -> PathBuf {
    let dir = root().join(format!("{what}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The repository's `scenarios/` directory.
pub fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// A shipped scenario, with overrides.
pub fn plan(name: &str, set: &[&str]) -> Plan {
    let overrides: Vec<Override> = set.iter().map(|s| Override::parse(s).unwrap()).collect();
    scenario::load(&scenarios().join(name), &overrides).unwrap()
}

/// Holds the lock that keeps broker runs from overlapping.
pub fn exclusive() -> MutexGuard<'static, ()> {
    RUNS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a plan against the test broker, with workers from the dlab binary;
/// plans with broker process faults run on the private node.
pub fn run(plan: &Plan) -> RunResult {
    let (url, node) = if plan.transport == dlab::scenario::Transport::Smtp || plan.needs_cluster() {
        // An SMTP run needs no broker: the relay and the inbox are its own.
        (String::new(), None)
    } else if plan.needs_node() {
        (node().state().url(), Some(node().clone()))
    } else {
        (broker_url(), None)
    };
    let _guard = exclusive();
    let amqp = plan.needs_one_broker().then(|| dlab::runner::AmqpTarget {
        url,
        node,
        management: management(),
    });
    let ctx = RunContext {
        home: temp_dir("home"),
        worker_exe: PathBuf::from(env!("CARGO_BIN_EXE_dlab")),
        keep_queue: false,
        always_proxy: false,
        progress: false,
        amqp,
        cluster: plan.needs_cluster().then(|| cluster().clone()),
        relay: dlab::smtp::RelayTarget::Private,
        cancel: dlab::runner::Cancel::never(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = rt
        .block_on(runner::run(plan, &ctx))
        .expect("the run completes");
    assert_agrees_with_effect_store(&result);
    result
}

/// Every check a finished run gets: the ledger against the effect store
/// read with plain SQL, the series against the store's timestamps, the
/// effects against the workers' history, and the ledger against the broker's
/// own count.
pub fn assert_agrees_with_effect_store(r: &RunResult) {
    let conn = rusqlite::Connection::open(&r.effect_store).unwrap();
    let (rows, distinct): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT message_id) FROM effects",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    let suppressed: i64 = conn
        .query_row("SELECT count(*) FROM suppressed", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        rows as u64, r.counts.effects,
        "effects vs effect store rows"
    );
    assert_eq!(
        distinct as u64, r.counts.unique,
        "unique vs distinct message IDs"
    );
    assert_eq!(
        suppressed as u64, r.counts.suppressed,
        "suppressed vs suppressed rows"
    );
    assert_eq!(r.counts.intended - r.counts.unique, r.counts.lost);
    assert_eq!(r.counts.effects - r.counts.unique, r.counts.duplicates);
    assert!(
        r.drain.completed,
        "the drain did not complete; the timeline's end: {:?}; faults fired: {}",
        r.timeline
            .iter()
            .rev()
            .take(6)
            .rev()
            .map(|t| format!("{} ms {}", t.at_ms, t.event))
            .collect::<Vec<_>>(),
        r.fault_timeline.iter().filter(|f| f.fired).count()
    );
    assert_eq!(
        r.drain.remaining_in_queue, 0,
        "the queue is empty after the drain"
    );
    assert_eq!(r.counts.unexpected, 0);
    assert_series_recount(r, &conn);
    if r.transport == dlab::scenario::Transport::Amqp {
        assert_agrees_with_history(r);
        assert_agrees_with_broker(r);
    }
}

/// The effect series recounted from the effect store's own timestamps with
/// SQL: per 100 ms bucket, the effects and the effects beyond a message's first.
fn assert_series_recount(r: &RunResult, conn: &rusqlite::Connection) {
    let bucket_us = r.series.bucket_ms as i64 * 1000;
    let mut stmt = conn
        .prepare(
            "SELECT max(applied_at_us - ?1, 0) / ?2 AS b, count(*), sum(rn > 1)
             FROM (SELECT applied_at_us,
                          row_number() OVER (PARTITION BY message_id ORDER BY id) AS rn
                   FROM effects)
             GROUP BY b ORDER BY b",
        )
        .unwrap();
    let buckets: Vec<(i64, u64, u64)> = stmt
        .query_map([r.started_unix_us, bucket_us], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let dense = |pick: fn(&(i64, u64, u64)) -> u64| {
        let len = buckets.last().map_or(0, |b| b.0 as usize + 1);
        let mut v = vec![0u64; len];
        for b in &buckets {
            v[b.0 as usize] = pick(b);
        }
        v
    };
    let trim = |v: &[u64]| {
        let end = v.iter().rposition(|&x| x > 0).map_or(0, |i| i + 1);
        v[..end].to_vec()
    };
    assert_eq!(
        trim(&r.series.effects),
        trim(&dense(|b| b.1)),
        "effects per bucket vs SQL over applied_at_us"
    );
    assert_eq!(
        trim(&r.series.duplicates),
        trim(&dense(|b| b.2)),
        "duplicates per bucket vs SQL over applied_at_us"
    );
}

/// One event of a run's history file (its time, the first field, is not
/// compared: a worker's reports arrive in batches).
#[derive(Debug, Clone)]
pub struct Happened {
    /// `consumer 0`, `producer 1`, ...
    pub worker: String,
    /// The worker's process.
    pub pid: u32,
    /// What it reported (None for an exit line).
    pub event: Option<WireEvent>,
    /// How the process ended (`exit 0`, `exit 75`, `signal 6`), on its last line.
    pub exit: Option<String>,
}

fn ended(what: &str) -> bool {
    what.starts_with("exit ") || what.starts_with("signal ")
}

/// The run's history, as the runner wrote it.
pub fn history(r: &RunResult) -> Vec<Happened> {
    let path = r.history.as_ref().expect("an AMQP run keeps its history");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, '\t').collect();
            assert_eq!(f.len(), 4, "a history line has four fields: {l:?}");
            Happened {
                worker: f[1].to_string(),
                pid: f[2].parse().unwrap(),
                event: if ended(f[3]) {
                    None
                } else {
                    Some(WireEvent::parse(f[3]).unwrap_or_else(|| panic!("{l:?}")))
                },
                exit: ended(f[3]).then(|| f[3].to_string()),
            }
        })
        .collect()
}

/// The message number of a message ID of run `run_id`.
pub fn seq_of(r: &RunResult, id: &str) -> u64 {
    dlab::message_id::parse(&r.run_id, id).unwrap_or_else(|| panic!("{id} is of run {}", r.run_id))
}

/// Effect rows of the store, as (message number, pid).
pub fn effect_rows(r: &RunResult) -> Vec<(u64, u32)> {
    let conn = rusqlite::Connection::open(&r.effect_store).unwrap();
    let mut stmt = conn
        .prepare("SELECT message_id, pid FROM effects ORDER BY id")
        .unwrap();
    stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, u32>(1)?))
    })
    .unwrap()
    .map(|x| {
        let (id, pid) = x.unwrap();
        (seq_of(r, &id), pid)
    })
    .collect()
}

/// Every effect row has a delivery of its message to the same process in
/// the workers' history; a message shown twice was delivered twice (to
/// another process, or redelivered to the same one); every crash the result
/// lists is in the history, from the process that aborted.
fn assert_agrees_with_history(r: &RunResult) {
    use std::collections::HashMap;
    let h = history(r);
    let mut delivered: HashMap<(u64, u32), u64> = HashMap::new();
    let mut deliveries = 0u64;
    // A push consumer may call more than once per delivery (a lost response,
    // a timeout): its rows are matched by calls that may have been applied,
    // each of a message delivered to the same process.
    let mut called: HashMap<(u64, u32), u64> = HashMap::new();
    for e in &h {
        match e.event {
            Some(WireEvent::Ledger(Event::Delivered { seq, .. })) => {
                *delivered.entry((seq, e.pid)).or_default() += 1;
                deliveries += 1;
            }
            Some(WireEvent::Push {
                call,
                seq: Some(seq),
            }) if call.may_apply() => *called.entry((seq, e.pid)).or_default() += 1,
            _ => {}
        }
    }
    let push = r.push.is_some();
    assert_eq!(
        deliveries, r.counts.deliveries,
        "the history holds every delivery the ledger counted"
    );
    let mut shown: HashMap<(u64, u32), u64> = HashMap::new();
    for key in effect_rows(r) {
        *shown.entry(key).or_default() += 1;
    }
    for (&(seq, pid), &n) in &shown {
        let got = delivered.get(&(seq, pid)).copied().unwrap_or(0);
        if push {
            let calls = called.get(&(seq, pid)).copied().unwrap_or(0);
            assert!(
                got >= 1 && calls >= n,
                "message {seq}: {n} effect(s) for pid {pid}, which received it {got} time(s) and called {calls} time(s)"
            );
            continue;
        }
        assert!(
            got >= n,
            "message {seq}: {n} effect(s) by pid {pid}, which received it {got} time(s)"
        );
    }
    let mut per_message: HashMap<u64, Vec<u32>> = HashMap::new();
    for (&(seq, pid), &n) in &shown {
        per_message
            .entry(seq)
            .or_default()
            .extend(std::iter::repeat_n(pid, n as usize));
    }
    for (seq, pids) in per_message
        .iter()
        .filter(|(_, p)| p.len() > 1)
        .filter(|_| !push)
    {
        let total: u64 = delivered
            .iter()
            .filter(|((s, _), _)| s == seq)
            .map(|(_, n)| n)
            .sum();
        assert!(
            total >= pids.len() as u64,
            "message {seq} shown {} times by {pids:?} but delivered {total} time(s)",
            pids.len()
        );
    }
    let aborts: Vec<(String, u32, String, u64)> = h
        .iter()
        .filter_map(|e| match &e.event {
            Some(WireEvent::Aborted { point, count, .. }) => {
                Some((e.worker.clone(), e.pid, point.clone(), *count))
            }
            _ => None,
        })
        .collect();
    let listed: Vec<(String, u32, String, u64)> = r
        .crashes
        .iter()
        .map(|c| (c.worker.clone(), c.pid, c.point.clone(), c.count))
        .collect();
    assert_eq!(aborts, listed, "the result's crashes are the history's");
}

/// The ledger against RabbitMQ's own counters (their growth over the run).
/// Without faults the two agree exactly. A consumer process that ends
/// abnormally (an abort, a lost connection) may take up to a prefetch of
/// deliveries the broker sent it, and its last acks, with it; a producer
/// whose connection is cut or that aborts may lose publishes on the wire.
fn assert_agrees_with_broker(r: &RunResult) {
    let b = r.broker_count.as_ref().unwrap_or_else(|| {
        panic!(
            "every AMQP run carries the broker's own count: {:?}",
            r.broker_count_missing
        )
    });
    assert_eq!(
        b.queue_type, r.settings.queue_type,
        "the broker's queue type"
    );
    if !b.whole_run {
        return;
    }
    let pair = |n: &str| b.pair(n).unwrap_or_else(|| panic!("{n} in {b:?}"));
    if r.faults.is_empty() {
        for p in &b.pairs {
            assert!(
                p.agree(),
                "no fault: the broker and the ledger agree on {p:?}"
            );
        }
        return;
    }
    let ended_abnormally = history(r)
        .iter()
        .filter(|e| e.worker.starts_with("consumer"))
        .filter(|e| e.exit.as_ref().is_some_and(|x| x != "exit 0"))
        .count() as u64;
    let in_flight = ended_abnormally * u64::from(r.settings.prefetch);
    let (received, delivered, acked) = (pair("received"), pair("delivered"), pair("acknowledged"));
    assert!(received.broker <= received.ledger, "{received:?}");
    // A cluster fault takes a producer's connection, publishes on the wire
    // included, as a cut does.
    let producer_trouble = r.fault_timeline.iter().any(|f| f.effect.is_some())
        || r.crashes.iter().any(|c| c.worker.starts_with("producer"))
        || (r.cluster.is_some() && !r.fault_timeline.is_empty());
    if !producer_trouble {
        assert!(
            received.agree(),
            "no publish can be lost on the wire: {received:?}"
        );
    }
    assert!(
        delivered.ledger <= delivered.broker,
        "every delivery a worker reported, the broker counted: {delivered:?}"
    );
    assert!(acked.broker <= acked.ledger, "{acked:?}");
    if r.consumer != "auto-ack" {
        assert!(
            delivered.broker - delivered.ledger <= in_flight,
            "deliveries the ledger missed: at most a prefetch for each of the {ended_abnormally} consumer(s) that ended abnormally: {delivered:?}"
        );
        assert!(acked.ledger - acked.broker <= in_flight, "{acked:?}");
    }
}

/// The crashes of a run's consumers, as the workers reported them.
pub fn consumer_crashes(r: &RunResult) -> Vec<&dlab::report::CrashRecord> {
    r.crashes
        .iter()
        .filter(|c| c.worker.starts_with("consumer"))
        .collect()
}

/// A private Postfix relay for one test, removed when the test ends, passed
/// or failed: no Postfix left running, no directory left listed in the
/// system `main.cf`.
pub struct TestRelay(Option<Relay>);

impl TestRelay {
    /// Starts one in `dir` that forwards to `next_hop`.
    pub fn start(dir: &Path, next_hop: SocketAddr) -> TestRelay {
        TestRelay(Some(
            Relay::start(dir, next_hop).expect("the private Postfix relay starts"),
        ))
    }
}

impl std::ops::Deref for TestRelay {
    type Target = Relay;
    fn deref(&self) -> &Relay {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(relay) = self.0.take() {
            relay.remove();
        }
    }
}

/// A running `smtp-sink`, killed when dropped.
pub struct Sink(std::process::Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Postfix's `smtp-sink` on 127.0.0.1:`port`, dumping every message it
/// accepts into `dumps` (one file each); returns once it listens.
pub fn smtp_sink(dumps: &Path, port: u16) -> Sink {
    use std::os::unix::fs::PermissionsExt;
    // smtp-sink drops to `nobody`, which must be able to write the dumps.
    std::fs::set_permissions(dumps, std::fs::Permissions::from_mode(0o777)).unwrap();
    let child = std::process::Command::new("/usr/sbin/smtp-sink")
        .args(["-u", "nobody", "-d"])
        .arg(format!("{}/", dumps.display()))
        .arg(format!("127.0.0.1:{port}"))
        .arg("50")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("Postfix's smtp-sink runs (scripts/install-deps installs postfix)");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "smtp-sink listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Sink(child)
}

/// Messages smtp-sink has dumped whole into `dir`. It creates a dump's file
/// when a message begins and writes it through a buffer (far larger than the
/// tests' messages) when the message ends, so an empty file is one still
/// arriving, or cut off when the sink was killed mid-message.
pub fn dumps(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.metadata().is_ok_and(|m| m.len() > 0))
                .count()
        })
        .unwrap_or(0)
}

/// How many deliveries an inbox fault's window may count although nothing
/// new reached the inbox during it: a message whose DATA ended just before
/// the fault began commits (and is reported) just after, once per relay
/// session open then, and Postfix opens at most 20 to one destination
/// (`default_destination_concurrency_limit`).
pub const COMMITTED_AS_FAULT_BEGAN: u64 = 20;

/// Waits up to `secs` for `cond`, failing the test with `what` after that.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `dlab` binary with `home` as its DLAB_HOME, in the repository root,
/// with no broker named by the environment.
pub fn dlab(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlab"));
    cmd.env("DLAB_HOME", home)
        .env_remove("DLAB_AMQP_URL")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// Bytes a command printed, as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A command's status and both its outputs, for an assertion's message.
pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// Runs `cmd` with `--json JSON` appended, requires exit 0, and returns
/// what it printed and the JSON it wrote.
pub fn succeeds_with_json(mut cmd: Command, json: &Path) -> (String, serde_json::Value) {
    let out = cmd.arg("--json").arg(json).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    (text(&out.stdout), v)
}

/// A plan from scenario text written for one test (with overrides), loaded
/// as `dlab run` loads a file.
pub fn plan_from(name: &str, toml: &str, set: &[&str]) -> Plan {
    let file = temp_dir("scenario").join(format!("{name}.toml"));
    std::fs::write(&file, toml).unwrap();
    let overrides: Vec<Override> = set.iter().map(|s| Override::parse(s).unwrap()).collect();
    scenario::load(&file, &overrides).unwrap()
}

/// Runs `cmd` with `--json JSON` appended, whatever its exit code; returns
/// its output and the JSON it wrote.
pub fn output_with_json(mut cmd: Command, json: &Path) -> (Output, serde_json::Value) {
    let out = cmd.arg("--json").arg(json).output().unwrap();
    let bytes = std::fs::read(json).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    (out, serde_json::from_slice(&bytes).unwrap())
}

/// Messages ready in `queue` on the broker at `url` (None: no such queue),
/// read with a passive declare on a fresh connection.
pub fn queue_depth(url: &str, queue: &str) -> Option<u32> {
    on_broker(
        url,
        |ch, q| async move { dlab::amqp::topology::ready_messages(&ch, &q).await.ok() },
        queue,
    )
}

/// Deletes `queue` on the broker at `url`.
pub fn delete_queue(url: &str, queue: &str) {
    on_broker(
        url,
        |ch, q| async move {
            dlab::amqp::topology::delete_queue(&ch, &q).await.unwrap();
        },
        queue,
    )
}

/// Runs `f` with a channel on a fresh connection to `url`, then closes it.
fn on_broker<T, F, Fut>(url: &str, f: F, queue: &str) -> T
where
    F: FnOnce(lapin::Channel, String) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = dlab::amqp::connect(url, "dlab-test", Duration::from_secs(10))
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let out = f(ch, queue.to_string()).await;
        let _ = conn.close(200, "done".into()).await;
        out
    })
}
