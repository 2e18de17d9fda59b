//! Benchmark: the ledger and the effect store fed synthetic events at 10^5,
//! 10^6 and 10^7 messages, no broker. Each size runs in a fresh child process
//! so its peak memory (VmHWM) is its own. Prints time, time per message and
//! peak memory (targets: 10^7 under 320 MB, cost per message flat). Nothing
//! is asserted; `cargo bench --bench scale` runs it.

use dlab::effects::EffectStore;
use dlab::ledger::{Event, Ledger};
use std::time::Instant;

fn peak_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

/// One size, in this process: prints "n ledger_s store_s peak_kb".
fn child(n: u64) {
    let start = Instant::now();
    let mut ledger = Ledger::new(n);
    for seq in 0..n {
        ledger.record(Event::Attempt(seq));
        ledger.record(Event::Confirmed(seq));
        ledger.record(Event::Delivered {
            seq,
            redelivered: false,
        });
        ledger.record(Event::Acked(seq));
        ledger.record(Event::Effect(seq));
    }
    let r = ledger.reconcile();
    assert_eq!(r.counts.unique, n);
    let ledger_s = start.elapsed().as_secs_f64();
    // The effect store: the idempotent path, 500 effects per transaction.
    let dir = std::env::temp_dir().join(format!("dlab-bench-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store_n = n;
    let start = Instant::now();
    {
        let mut store = EffectStore::create(&dir.join("effects.sqlite")).unwrap();
        let mut seq = 0;
        while seq < store_n {
            let mut b = store.batch(0).unwrap();
            for _ in 0..500.min(store_n - seq) {
                b.apply_once(&format!("bench-{seq}"), 0).unwrap();
                seq += 1;
            }
            b.commit().unwrap();
        }
    }
    let store_s = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    println!("{n} {ledger_s} {store_s} {}", peak_kb());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        child(args[pos + 1].parse().unwrap());
        return;
    }
    println!("dlab bench scale: 5 ledger events per message; the effect store applies n effects (idempotent, 500 per transaction), measured at every size");
    println!(
        "  {:>10} {:>10} {:>14} {:>12} {:>14} {:>10}",
        "messages", "ledger s", "ns/msg ledger", "store s", "us/msg store", "peak MB"
    );
    let exe = std::env::current_exe().unwrap();
    for n in [100_000u64, 1_000_000, 10_000_000] {
        let out = std::process::Command::new(&exe)
            .args(["--child", &n.to_string()])
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            println!("  {n:>10} failed: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        }
        let (ledger_s, store_s, peak_kb): (f64, f64, f64) = (
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
        );
        println!(
            "  {n:>10} {ledger_s:>10.3} {:>14.1} {store_s:>12.2} {:>14.2} {:>10.0}",
            ledger_s * 1e9 / n as f64,
            store_s * 1e6 / n as f64,
            peak_kb / 1024.0,
        );
    }
}
