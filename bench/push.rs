//! Benchmark: dlab's push gateway committing an effect per push against the
//! same gateway answering without storing anything (its no-store limit),
//! driven by `wrk`.
//!
//! In one invocation: `wrk` (2 threads, `PUSH_BENCH_CONNECTIONS`
//! connections, default 4, for `PUSH_BENCH_SECONDS` seconds each, default
//! 5) POSTs `/v1/push` with a JSON body whose `message_id` is unique per
//! request (a Lua script written to a temp file),
//! alternating the no-store gateway and a gateway with a fresh,
//! group-committed effect store, 3 rounds; each run's requests/s and the
//! median of the rounds' ratios store/no-store (target >= 0.5). Then one run
//! with an `Idempotency-Key` per request (keys in memory). After every stored
//! run the effect store's rows are counted again and set beside the
//! gateway's `applied` and the 2xx answers `wrk` counted. The gateway runs
//! in-process (no access log) on a tokio runtime of 2 worker threads, `wrk`
//! as a child process on the same 2 cores. Nothing is asserted but the row
//! count (exit 1 if rows and `applied` differ); `cargo bench --bench push`
//! runs it (`wrk` installed: `apt-get install wrk`, or `scripts/install-deps`).

use dlab::effects::EffectStore;
use dlab::push::gateway::{Gateway, GatewayConfig, GatewayStats, PATH};
use dlab::push::keys::KeyStore;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
/// wrk's threads (2 cores); connections: `PUSH_BENCH_CONNECTIONS`, default 4.
const THREADS: u32 = 2;

/// The wrk script: a message ID per request (`<run>-<thread>-<counter>`),
/// optionally the same string as its `Idempotency-Key`; `done` prints the
/// figures this benchmark reads, on one line.
const SCRIPT: &str = r#"
local threads = 0

function setup(thread)
   thread:set("thread_id", threads)
   threads = threads + 1
end

function init(args)
   run = args[1] or "run"
   keyed = args[2] == "keys"
   counter = 0
   headers = { ["content-type"] = "application/json" }
end

function request()
   counter = counter + 1
   local id = run .. "-" .. thread_id .. "-" .. counter
   if keyed then
      headers["idempotency-key"] = id
   end
   local body = '{"message_id": "' .. id .. '", "text": "your parcel is on its way"}'
   return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "dlab-wrk requests=%d duration_us=%d status_errors=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d\n",
      summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99)))
end
"#;

/// What `wrk` reported for one run.
#[derive(Debug, Default)]
struct Wrk {
    /// Requests answered.
    requests: u64,
    /// Of those, answered with a status above 399.
    status_errors: u64,
    /// Socket errors: connect, read, write, timeout.
    socket_errors: u64,
    seconds: f64,
    p50_us: u64,
    p99_us: u64,
}

impl Wrk {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// Answered below 400: the gateway only answers 200, 4xx or 5xx.
    fn ok(&self) -> u64 {
        self.requests - self.status_errors
    }
}

/// How hard and how long wrk pushes.
#[derive(Debug, Clone, Copy)]
struct Load {
    connections: u32,
    seconds: u64,
}

/// One wrk run against `url` (the script's arguments: the run's ID prefix
/// and whether to send keys).
fn wrk(script: &Path, url: &str, load: Load, run: &str, keys: bool) -> Wrk {
    let out = Command::new("wrk")
        .arg(format!("-c{}", load.connections))
        .arg(format!("-t{}", THREADS.min(load.connections)))
        .arg(format!("-d{}s", load.seconds))
        .arg("-s")
        .arg(script)
        .arg(url)
        .args(["--", run, if keys { "keys" } else { "plain" }])
        .stdin(Stdio::null())
        .output()
        .expect("wrk runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("dlab-wrk "));
    let Some(line) = line.filter(|_| out.status.success()) else {
        panic!(
            "wrk failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("wrk's line has no {name}: {line}"))
    };
    Wrk {
        requests: field("requests"),
        status_errors: field("status_errors"),
        socket_errors: field("connect") + field("read") + field("write") + field("timeout"),
        seconds: field("duration_us") as f64 / 1e6,
        p50_us: field("p50_us"),
        p99_us: field("p99_us"),
    }
}

/// One measured run: a fresh gateway (storing into `store`, or not), wrk
/// against it, and its counters once every request wrk left behind (those
/// in flight when it stopped) has been answered.
fn measure(
    rt: &tokio::runtime::Runtime,
    script: &Path,
    load: Load,
    run: &str,
    store: Option<PathBuf>,
    keys: bool,
) -> (Wrk, GatewayStats) {
    let gateway = rt
        .block_on(Gateway::start(GatewayConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            store,
            key_ttl: Duration::from_secs(3600),
            key_store: KeyStore::Memory,
            access_log: None,
            tls: None,
        }))
        .expect("the gateway starts");
    let url = format!("http://{}{PATH}", gateway.addr());
    let measured = wrk(script, &url, load, run, keys);
    // Settled: no answer for 200 ms (the group commit answers within
    // milliseconds).
    let (mut last, mut since) = (gateway.stats().requests, Instant::now());
    while since.elapsed() < Duration::from_millis(200) {
        std::thread::sleep(Duration::from_millis(20));
        let now = gateway.stats().requests;
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    let stats = gateway.stats();
    drop(gateway);
    (measured, stats)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prints a stored run's honest count; returns whether rows equal `applied`.
fn check(store: &Path, wrk: &Wrk, stats: &GatewayStats) -> bool {
    let (rows, distinct) = EffectStore::open(store).unwrap().recount().unwrap();
    let same = rows == stats.applied && distinct == rows;
    println!(
        "      effect rows {rows} ({distinct} distinct IDs) = gateway applied {}: {}; wrk counted {} answered 2xx ({} non-2xx, {} socket errors); rows - wrk's 2xx = {} (answered after wrk stopped)",
        stats.applied,
        if same { "yes" } else { "MISMATCH" },
        wrk.ok(),
        wrk.status_errors,
        wrk.socket_errors,
        rows as i64 - wrk.ok() as i64,
    );
    same
}

fn line(label: &str, w: &Wrk) -> String {
    format!(
        "  {label:<32} {:>9.0} req/s   p50 {:.2} ms p99 {:.2} ms ({} requests)",
        w.rate(),
        w.p50_us as f64 / 1e3,
        w.p99_us as f64 / 1e3,
        w.requests
    )
}

fn main() {
    match Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("dlab bench push: wrk is missing; install it (apt-get install wrk, or scripts/install-deps)");
            std::process::exit(2);
        }
        _ => {}
    }
    let env = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&v| v > 0)
            .unwrap_or(default)
    };
    let load = Load {
        connections: env("PUSH_BENCH_CONNECTIONS", 4).min(10_000) as u32,
        seconds: env("PUSH_BENCH_SECONDS", 5),
    };
    let dir = std::env::temp_dir().join(format!("dlab-bench-push-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("push.lua");
    std::fs::write(&script, SCRIPT).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    println!(
        "dlab bench push: wrk -c {} -t {} -d {}s, POST {PATH} with a unique message_id each, {ROUNDS} rounds alternated, median ratio",
        load.connections,
        THREADS.min(load.connections),
        load.seconds
    );
    let mut honest = true;
    let (mut ratios, mut rates) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let (limit, _) = measure(&rt, &script, load, &format!("n{round}"), None, false);
        println!(
            "{}",
            line(&format!("round {round} no store (limit)"), &limit)
        );
        let store = dir.join(format!("effects-{round}.sqlite"));
        let (stored, stats) = measure(
            &rt,
            &script,
            load,
            &format!("s{round}"),
            Some(store.clone()),
            false,
        );
        let ratio = stored.rate() / limit.rate();
        println!(
            "{}   ratio {ratio:.3}",
            line(&format!("round {round} effects committed"), &stored)
        );
        honest &= check(&store, &stored, &stats);
        ratios.push(ratio);
        rates.push(stored.rate());
    }
    let ratio = median(ratios);
    println!(
        "  median ratio store / no store {ratio:.3} (target >= 0.5: {})",
        if ratio >= 0.5 { "met" } else { "NOT met" }
    );

    let store = dir.join("effects-keys.sqlite");
    let (keyed, stats) = measure(&rt, &script, load, "k", Some(store.clone()), true);
    println!(
        "{}   ratio to the median stored run {:.3} (an Idempotency-Key per request, keys in memory, all new)",
        line("effects committed, with keys", &keyed),
        keyed.rate() / median(rates)
    );
    honest &= check(&store, &keyed, &stats);
    if stats.replayed != 0 || stats.in_flight != 0 {
        println!(
            "      unexpected: {} replayed, {} refused in flight (every key is new)",
            stats.replayed, stats.in_flight
        );
    }

    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
    if !honest {
        eprintln!("dlab bench push: effect rows differ from the gateway's applied count");
        std::process::exit(1);
    }
}
