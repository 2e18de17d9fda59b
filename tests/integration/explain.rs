//! Which messages, and why: the report's lost and duplicated IDs against
//! the effect store; `dlab explain` stories checked line by line against
//! the history file and the effect store of real runs (a consumer crash
//! between effect and ack, a lost confirm, an inbox hang-up behind Postfix);
//! `dlab check` of a real history against the run's own counts, and of
//! tampered copies.

use crate::support::{self, dlab, plan_from, show, text};
use dlab::report::RunResult;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const CRASH_AFTER_EFFECT: &str = r#"
name = "explain-crash-after-effect"
description = "consumer 0 aborts between effect and ack"
guarantee = "at-least-once"
messages = 300
consumers = 2
prefetch = 20
seed = 1

[[faults]]
kind = "consumer-crash"
point = "after-effect-before-ack"
after = 60
worker = 0
restart_after = "300ms"

[expect]
max_lost = 0
min_duplicates = 1
"#;

const CONFIRM_LOST: &str = r#"
name = "explain-confirm-lost"
description = "a confirm is cut: the producer is in doubt and republishes"
guarantee = "at-least-once"
messages = 1000
rate = 2000
consumers = 2
prefetch = 20
seed = 1

[[faults]]
kind = "confirm-lost"
link = "producers"
after = 100
every = 100

[expect]
max_lost = 0
min_duplicates = 1
"#;

const CRASH_BEFORE_EFFECT_AUTO_ACK: &str = r#"
name = "explain-at-most-once-crash-before-effect"
description = "consumer 0 aborts before the effect of an auto-acked delivery"
guarantee = "at-most-once"
messages = 300
consumers = 2
prefetch = 20
seed = 1

[[faults]]
kind = "consumer-crash"
point = "before-effect"
after = 60
worker = 0
restart_after = "300ms"

[expect]
min_lost = 1
max_duplicates = 0
"#;

const INBOX_HANGUP: &str = r#"
name = "explain-inbox-hangup"
description = "the inbox hangs up after the dot: the relay delivers again"
transport = "smtp"
guarantee = "at-least-once"
messages = 300
rate = 250
producers = 2
seed = 1

[[faults]]
kind = "inbox-hangup"
at = "500ms"
duration = "1s"

[expect]
max_lost = 0
"#;

/// A finished run and its `--json` file.
struct Saved {
    r: RunResult,
    json: PathBuf,
}

fn saved(name: &str, toml: &str) -> Saved {
    let r = support::run(&plan_from(name, toml, &[]));
    let json = support::temp_dir("explain-json").join("result.json");
    dlab::report::write_json(&json, &r).unwrap();
    Saved { r, json }
}

/// One run of the crash scenario, shared by the tests that read it.
fn crash_run() -> &'static Saved {
    static RUN: OnceLock<Saved> = OnceLock::new();
    RUN.get_or_init(|| saved("explain-crash-after-effect", CRASH_AFTER_EFFECT))
}

/// The run directory and the DLAB_HOME it is in.
fn run_dir(r: &RunResult) -> (PathBuf, PathBuf) {
    let dir = Path::new(r.history.as_ref().expect("a history"))
        .parent()
        .unwrap()
        .to_path_buf();
    let home = dir.parent().unwrap().parent().unwrap().to_path_buf();
    (dir, home)
}

/// `dlab explain RUN MESSAGE` with DLAB_HOME `home`: its output, exit 0 required.
fn explain(home: &Path, run: &str, message: &str) -> String {
    let out = dlab(home).args(["explain", run, message]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    text(&out.stdout)
}

/// The message IDs whose effects satisfy `sql_having` (e.g. `count(*) > 1`).
fn ids_with_effects(r: &RunResult, sql_having: &str) -> BTreeSet<String> {
    let conn = rusqlite::Connection::open(&r.effect_store).unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT message_id FROM effects GROUP BY message_id HAVING {sql_having}"
        ))
        .unwrap();
    stmt.query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// One step line of a story.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    hop: String,
    estimated: bool,
    at_us: i64,
    worker: String,
    pid: u32,
    what: String,
    source: String,
    faults: Option<String>,
}

/// The steps and the verdict of a story, read back from its text.
fn parse_story(out: &str) -> (Vec<Step>, String) {
    let mut steps = Vec::new();
    let mut hop = String::new();
    let mut verdict = None;
    for line in out.lines() {
        if let Some(v) = line.strip_prefix("verdict: ") {
            verdict = Some(v.to_string());
        } else if line.starts_with("  sending") || line.starts_with("  receiving") {
            hop = line.trim().split(':').next().unwrap().to_string();
        } else if line.starts_with("    ") && line.contains(" ms  ") {
            let (time, rest) = line.trim_start().split_once(" ms  ").unwrap();
            let estimated = time.starts_with('~');
            let (whole, frac) = time.trim_start_matches('~').split_once('.').unwrap();
            assert_eq!(frac.len(), 3, "{line}");
            let at_us = whole.parse::<i64>().unwrap() * 1000 + frac.parse::<i64>().unwrap();
            let (who, rest) = rest.split_once(')').unwrap();
            let (worker, pid) = who.split_once(" (pid ").unwrap();
            let (rest, faults) = match rest.split_once("  [fault ") {
                Some((r, f)) => (r, Some(f.trim_end_matches(']').to_string())),
                None => (rest, None),
            };
            let rest = rest.trim();
            let at = ["history.tsv:", "effects row ", "suppressed row "]
                .iter()
                .filter_map(|s| rest.rfind(s))
                .max()
                .unwrap_or_else(|| panic!("a source on {line:?}"));
            steps.push(Step {
                hop: hop.clone(),
                estimated,
                at_us,
                worker: worker.to_string(),
                pid: pid.parse().unwrap(),
                what: rest[..at].trim().to_string(),
                source: rest[at..].to_string(),
                faults,
            });
        }
    }
    (steps, verdict.expect("a verdict line"))
}

/// The event a story's words must come from.
fn expected_event(what: &str, seq: u64) -> String {
    let simple = [
        ("attempt ", format!("A {seq}")),
        ("confirmed", format!("C {seq}")),
        ("nacked", format!("N {seq}")),
        ("in doubt", format!("D {seq}")),
        ("delivered", format!("R {seq} 0")),
        ("redelivered", format!("R {seq} 1")),
        ("acked", format!("K {seq}")),
    ];
    if let Some((_, e)) = simple.iter().find(|(w, _)| what.starts_with(w)) {
        return e.clone();
    }
    if let Some(rest) = what.strip_prefix("aborted at ") {
        // "aborted at POINT (its delivery COUNT, this message|ID)"
        let (point, rest) = rest.split_once(" (its ").unwrap();
        let count = rest
            .split_whitespace()
            .nth(1)
            .unwrap()
            .trim_end_matches(',');
        let on = rest.split(", ").nth(1).unwrap().trim_end_matches(')');
        let on = if on == "this message" {
            seq.to_string()
        } else {
            on.rsplit('-').next().unwrap().to_string()
        };
        return format!("abort {point} {count} {on}");
    }
    if let Some(end) = what.strip_prefix("ended: ") {
        return end.to_string();
    }
    panic!("a step in words the test does not know: {what:?}");
}

/// Checks every step of the story of `id` against the run's history file
/// and effect store: each history step is its line (time, worker, pid,
/// event), each row step its row (message, pid, commit time); every line
/// about the message and every row of it is told; within a hop the history
/// lines keep their order; every effect follows its process's delivery;
/// the faults shown are the fault timeline's at that time.
fn assert_story_matches(s: &Saved, id: &str, out: &str) -> (Vec<Step>, String) {
    let r = &s.r;
    let seq = support::seq_of(r, id);
    let (steps, verdict) = parse_story(out);
    let history: Vec<String> = std::fs::read_to_string(r.history.as_ref().unwrap())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let conn = rusqlite::Connection::open(&r.effect_store).unwrap();
    let mut told_lines = BTreeSet::new();
    let mut told_rows = BTreeSet::new();
    for step in &steps {
        if let Some(n) = step.source.strip_prefix("history.tsv:") {
            let n: usize = n.parse().unwrap();
            let f: Vec<&str> = history[n - 1].split('\t').collect();
            assert_eq!(f[0].parse::<i64>().unwrap(), step.at_us, "{step:?}");
            assert!(!step.estimated);
            assert_eq!(
                (f[1], f[2].parse::<u32>().unwrap()),
                (step.worker.as_str(), step.pid),
                "{step:?}"
            );
            assert_eq!(f[3], expected_event(&step.what, seq), "{step:?}");
            told_lines.insert(n);
        } else {
            let (table, row) = step.source.rsplit_once(" row ").unwrap();
            let at = if table == "effects" {
                "applied_at_us"
            } else {
                "at_us"
            };
            let (message, pid, at_us): (String, u32, i64) = conn
                .query_row(
                    &format!("SELECT message_id, pid, {at} FROM {table} WHERE id = ?1"),
                    [row.parse::<i64>().unwrap()],
                    |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?)),
                )
                .unwrap();
            assert_eq!((message.as_str(), pid), (id, step.pid), "{step:?}");
            if !step.estimated {
                assert_eq!(at_us - r.started_unix_us, step.at_us, "{step:?}");
            }
            told_rows.insert((table.to_string(), row.parse::<i64>().unwrap()));
        }
    }
    // Everything about the message is told.
    let about: BTreeSet<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#'))
        .filter(|(_, l)| {
            let e = l.split('\t').nth(3).unwrap();
            let mut w = e.split(' ');
            let (tag, s) = (w.next().unwrap(), w.next());
            match tag {
                "A" | "C" | "N" | "D" | "K" | "R" => s == Some(seq.to_string().as_str()),
                "abort" => e.rsplit(' ').next() == Some(seq.to_string().as_str()),
                _ => false,
            }
        })
        .map(|(i, _)| i + 1)
        .collect();
    assert!(
        about.is_subset(&told_lines),
        "lines {about:?} in {told_lines:?}"
    );
    for n in told_lines.difference(&about) {
        let e = history[n - 1].split('\t').nth(3).unwrap();
        assert!(
            e.starts_with("abort ")
                || e.starts_with("signal ")
                || (e.starts_with("exit ") && e != "exit 0"),
            "only abnormal ends of other lines are told: {e}"
        );
    }
    let mut rows = BTreeSet::new();
    for table in ["effects", "suppressed"] {
        let mut stmt = conn
            .prepare(&format!("SELECT id FROM {table} WHERE message_id = ?1"))
            .unwrap();
        for id in stmt.query_map([id], |x| x.get::<_, i64>(0)).unwrap() {
            rows.insert((table.to_string(), id.unwrap()));
        }
    }
    assert_eq!(told_rows, rows, "every row of {id} is told");
    // Sending first, then receiving; within each, a process's lines in file order.
    let rank = |h: &str| usize::from(h == "receiving");
    assert!(
        steps.windows(2).all(|w| rank(&w[0].hop) <= rank(&w[1].hop)),
        "{steps:?}"
    );
    let mut last: std::collections::HashMap<(String, u32), usize> = Default::default();
    for step in &steps {
        if let Some(n) = step.source.strip_prefix("history.tsv:") {
            let n: usize = n.parse().unwrap();
            let prev = last.entry((step.hop.clone(), step.pid)).or_default();
            assert!(
                *prev < n,
                "pid {}'s lines in file order: {steps:?}",
                step.pid
            );
            *prev = n;
        }
    }
    for (i, step) in steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.what.starts_with("effect "))
    {
        assert!(
            steps[..i]
                .iter()
                .any(|d| d.pid == step.pid && d.what.contains("delivered")),
            "effect after a delivery to its process: {steps:?}"
        );
    }
    // The faults shown are those of the fault timeline at that moment.
    for step in steps.iter().filter(|s| !s.estimated) {
        let ms = (step.at_us.max(0) / 1000) as u64;
        let mut active: Vec<String> = r
            .fault_timeline
            .iter()
            .filter(|f| {
                f.fired
                    && f.started_ms.is_some_and(|s| s <= ms)
                    && f.ended_ms.is_none_or(|e| ms <= e)
            })
            .map(|f| {
                format!(
                    "#{} {}",
                    f.fault,
                    f.description
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .trim_end_matches(':')
                )
            })
            .collect();
        active.dedup();
        let shown = step.faults.clone().unwrap_or_default();
        assert_eq!(shown, active.join(", "), "{step:?}");
    }
    (steps, verdict)
}

#[test]
fn the_report_lists_exactly_the_messages_the_effect_store_duplicates() {
    let s = crash_run();
    let r = &s.r;
    let duplicated = ids_with_effects(r, "count(*) > 1");
    assert!(!duplicated.is_empty(), "the crash made duplicates");
    assert_eq!(
        r.duplicated_ids.iter().cloned().collect::<BTreeSet<_>>(),
        duplicated
    );
    assert_eq!(r.duplicated_ids.len() as u64, r.counts.duplicated_messages);
    let mut sorted = r.duplicated_ids.clone();
    sorted.sort_by_key(|id| support::seq_of(r, id));
    assert_eq!(sorted, r.duplicated_ids, "in message order");
    assert!(r.lost_ids.is_empty());
    assert_eq!(r.lost_ids.len() as u64, r.counts.lost);
    // The table and the HTML name the first five and how many more.
    let mut table = Vec::new();
    dlab::report::table::write_run(&mut table, r).unwrap();
    let table = String::from_utf8(table).unwrap();
    let first = dlab::report::table::first_ids(&r.duplicated_ids);
    assert!(
        table.contains(&format!("  duplicated {first}\n")),
        "{table}"
    );
    assert!(table.contains(&format!(
        "dlab explain {} {}",
        r.run_id, r.duplicated_ids[0]
    )));
    if r.duplicated_ids.len() > 5 {
        assert!(first.ends_with(&format!(" and {} more", r.duplicated_ids.len() - 5)));
    }
    let html = dlab::report::html::render("t", std::slice::from_ref(r), None);
    assert!(
        html.contains(&format!("duplicated: {first}")),
        "the HTML lists them"
    );
    // Saved results from before the lists still load.
    let mut old = serde_json::to_value(r).unwrap();
    old.as_object_mut().unwrap().remove("lost_ids");
    old.as_object_mut().unwrap().remove("duplicated_ids");
    let loaded: RunResult = serde_json::from_value(old).unwrap();
    assert!(loaded.duplicated_ids.is_empty());
}

#[test]
fn explain_tells_a_duplicate_of_a_crash_after_effect_as_the_history_and_store_hold_it() {
    let s = crash_run();
    let r = &s.r;
    let crash = support::consumer_crashes(r)[0].clone();
    let (dir, home) = run_dir(r);
    let json = s.json.to_str().unwrap();
    for id in &r.duplicated_ids {
        let out = explain(&home, json, id);
        let (steps, verdict) = assert_story_matches(s, id, &out);
        assert_eq!(
            verdict,
            format!(
                "duplicated: shown 2 times; the second effect followed a redelivery after {} (pid {}) aborted at after-effect-before-ack",
                crash.worker, crash.pid
            ),
            "{out}"
        );
        let effects: Vec<&Step> = steps
            .iter()
            .filter(|s| s.what.starts_with("effect "))
            .collect();
        assert_eq!(
            effects[0].pid, crash.pid,
            "the crashed consumer showed it first:\n{out}"
        );
        assert_ne!(
            effects[1].pid, crash.pid,
            "another consumer showed it again:\n{out}"
        );
        assert!(
            steps
                .iter()
                .any(|s| s.pid == crash.pid
                    && s.what.starts_with("aborted at after-effect-before-ack")),
            "the abort of the consumer that held it is told:\n{out}"
        );
        assert!(steps
            .iter()
            .any(|s| s.what == "redelivered (flagged as delivered before)"));
    }
    // By run ID, by run directory and by bare number: the same story, with
    // effects on an estimated time zero (no result given), and the faults
    // known (the plan has none but the crash the history holds).
    let id = &r.duplicated_ids[0];
    let seq = support::seq_of(r, id).to_string();
    let (exact, verdict) = parse_story(&explain(&home, json, id));
    for (run, message) in [
        (r.run_id.as_str(), id.as_str()),
        (dir.to_str().unwrap(), seq.as_str()),
    ] {
        let out = explain(&home, run, message);
        let (steps, v) = assert_story_matches(s, id, &out);
        assert_eq!(v, verdict);
        assert!(out.contains("time zero estimated"), "{out}");
        assert!(out.contains("faults: none"), "{out}");
        let strip = |v: &[Step]| -> Vec<(String, String)> {
            v.iter()
                .map(|s| (s.what.clone(), s.source.clone()))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        assert_eq!(strip(&steps), strip(&exact));
        assert!(steps
            .iter()
            .filter(|s| s.source.contains(" row "))
            .all(|s| s.estimated));
    }
    // A message shown once says so.
    let once = ids_with_effects(r, "count(*) = 1")
        .into_iter()
        .next()
        .unwrap();
    let out = explain(&home, json, &once);
    assert_eq!(
        assert_story_matches(s, &once, &out).1,
        "shown once",
        "{out}"
    );
}

#[test]
fn explain_refuses_an_unknown_message_or_run_in_one_line() {
    let s = crash_run();
    let r = &s.r;
    let (_, home) = run_dir(r);
    let json = s.json.to_str().unwrap();
    let other = format!(
        "{}-1",
        if r.run_id == "00000000" {
            "11111111"
        } else {
            "00000000"
        }
    );
    for (run, message, says) in [
        (json, "300", "no such message"),
        (json, "x-y", "not a message ID"),
        (json, other.as_str(), "not a message of run"),
        ("no-such-run", "1", "no such run"),
        (r.run_id.as_str(), "1.5", "not a message ID"),
    ] {
        let out = dlab(&home)
            .args(["explain", run, message])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
        assert!(out.stdout.is_empty());
    }
}

/// `dlab check PATH --json OUT`: exit code, stdout, the check's JSON.
fn check(home: &Path, path: &Path) -> (Option<i32>, String, serde_json::Value) {
    let json = support::temp_dir("check").join("check.json");
    let out = dlab(home)
        .arg("check")
        .arg(path)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let v = std::fs::read(&json)
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or(serde_json::Value::Null);
    (out.status.code(), text(&out.stdout) + &text(&out.stderr), v)
}

/// A copy of the run directory, named as the run, to tamper with.
fn copy_of(dir: &Path) -> PathBuf {
    let copy = support::temp_dir("tampered").join(dir.file_name().unwrap());
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["history.tsv", "effects.sqlite", "plan.json"] {
        std::fs::copy(dir.join(f), copy.join(f)).unwrap();
    }
    copy
}

#[test]
fn check_of_a_saved_history_gives_the_runs_counts_and_notices_tampering() {
    let s = crash_run();
    let r = &s.r;
    let (dir, home) = run_dir(r);
    let counts = serde_json::to_value(&r.counts).unwrap();
    let history = dir.join("history.tsv");
    for path in [
        history.clone(),
        dir.clone(),
        PathBuf::from(&r.run_id),
        s.json.clone(),
    ] {
        let (code, out, v) = check(&home, &path);
        assert_eq!(code, Some(0), "{}: {out}", path.display());
        assert_eq!(v["counts"], counts, "the run's counts, exactly: {out}");
        assert_eq!(v["duplicated_ids"], serde_json::json!(r.duplicated_ids));
        assert_eq!(v["verdicts"], serde_json::to_value(r.verdicts).unwrap());
        assert_eq!(
            v["expectations"],
            serde_json::to_value(&r.expectations).unwrap()
        );
        assert_eq!(v["unaccounted"], 0);
        assert!(out.contains("verdict: held"), "{out}");
    }

    // A delivery line removed: the history no longer accounts for an effect.
    let copy = copy_of(&dir);
    let lines: Vec<String> = std::fs::read_to_string(copy.join("history.tsv"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let cut = lines
        .iter()
        .position(|l| {
            l.ends_with(" 0") && l.split('\t').nth(3).is_some_and(|e| e.starts_with("R "))
        })
        .unwrap();
    let kept: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != cut)
        .map(|(_, l)| l.as_str())
        .collect();
    std::fs::write(copy.join("history.tsv"), kept.join("\n") + "\n").unwrap();
    let (code, out, v) = check(&home, &copy.join("history.tsv"));
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(v["counts"]["deliveries"], r.counts.deliveries - 1);
    assert_eq!(v["unaccounted"], 1, "{out}");
    assert!(out.contains("verdict: BROKEN"), "{out}");

    // A message's effects deleted: lost, and the promise breaks.
    let copy = copy_of(&dir);
    let victim = ids_with_effects(r, "count(*) = 1")
        .into_iter()
        .next()
        .unwrap();
    let conn = rusqlite::Connection::open(copy.join("effects.sqlite")).unwrap();
    conn.execute("DELETE FROM effects WHERE message_id = ?1", [&victim])
        .unwrap();
    drop(conn);
    let (code, out, v) = check(&home, &copy.join("history.tsv"));
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(v["counts"]["lost"], 1);
    assert_eq!(v["lost_ids"], serde_json::json!([victim]));
    assert_eq!(v["promise"]["held"], false, "{out}");
    assert!(out.contains(&format!("lost       {victim}")), "{out}");

    // An effect row added: one more duplicate, and no delivery accounts for it.
    let copy = copy_of(&dir);
    let conn = rusqlite::Connection::open(copy.join("effects.sqlite")).unwrap();
    conn.execute(
        "INSERT INTO effects (message_id, consumer, pid, applied_at_us) VALUES (?1, 0, 1, 0)",
        [&victim],
    )
    .unwrap();
    drop(conn);
    let (code, out, v) = check(&home, &copy.join("history.tsv"));
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(v["counts"]["duplicates"], r.counts.duplicates + 1);
    assert_eq!(v["unaccounted"], 1);

    // Bad input: exit 2, one line.
    let copy = copy_of(&dir);
    let mut h = std::fs::read_to_string(copy.join("history.tsv")).unwrap();
    h.push_str("garbage\n");
    std::fs::write(copy.join("history.tsv"), &h).unwrap();
    for path in [
        copy.join("history.tsv"),
        PathBuf::from("/no/such/history.tsv"),
    ] {
        let (code, out, _) = check(&home, &path);
        assert_eq!(code, Some(2), "{out}");
        assert_eq!(out.lines().count(), 1, "{out}");
    }
}

#[test]
fn explain_tells_a_duplicate_from_a_lost_confirm() {
    let s = saved("explain-confirm-lost", CONFIRM_LOST);
    let r = &s.r;
    assert!(
        r.counts.duplicates >= 1 && r.counts.in_doubt >= 1,
        "{:?}",
        r.counts
    );
    let (_, home) = run_dir(r);
    let json = s.json.to_str().unwrap();
    let mut during = 0;
    for id in r.duplicated_ids.iter().take(20) {
        let out = explain(&home, json, id);
        let (steps, verdict) = assert_story_matches(&s, id, &out);
        // Under load a republish can be cut again: shown once per attempt.
        let shown: usize = verdict
            .strip_prefix("duplicated: shown ")
            .and_then(|v| v.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{out}"));
        assert!(
            shown >= 2
                && verdict.contains(
                    "; the second effect followed a second attempt after the first was in doubt"
                ),
            "{out}"
        );
        during += usize::from(verdict.ends_with("during fault #0 confirm-lost"));
        let words: Vec<&str> = steps
            .iter()
            .filter(|s| s.hop == "sending")
            .map(|s| s.what.as_str())
            .collect();
        // A republish cut before the broker had it adds an attempt, not an effect.
        let attempts = words.iter().filter(|w| w.starts_with("attempt")).count();
        assert!(attempts >= shown, "an attempt per effect at least: {out}");
        assert_eq!(
            words.iter().filter(|w| w.starts_with("in doubt")).count(),
            attempts - 1,
            "each attempt but the last was in doubt: {out}"
        );
    }
    assert!(during >= 1, "the fault that made them is named");
}

#[test]
fn explain_tells_a_duplicate_the_relay_made_after_an_inbox_hangup() {
    let s = saved("explain-inbox-hangup", INBOX_HANGUP);
    let r = &s.r;
    assert!(r.counts.duplicates >= 1, "{:?}", r.counts);
    let (_, home) = run_dir(r);
    let json = s.json.to_str().unwrap();
    for id in &r.duplicated_ids {
        let out = explain(&home, json, id);
        let (steps, verdict) = assert_story_matches(&s, id, &out);
        assert!(
            verdict.starts_with("duplicated: shown 2 times; the second effect followed the relay delivering it again"),
            "{out}"
        );
        assert!(verdict.ends_with("during fault #0 inbox-hangup"), "{out}");
        assert!(steps
            .iter()
            .all(|s| s.hop == "receiving" || s.worker == "sender"));
        assert!(steps
            .iter()
            .filter(|s| s.hop == "receiving")
            .all(|s| s.worker == "inbox"));
    }
    let (code, out, v) = check(&home, Path::new(r.history.as_ref().unwrap()));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(v["counts"], serde_json::to_value(&r.counts).unwrap());
}

#[test]
fn explain_tells_where_a_lost_message_went() {
    let s = saved(
        "explain-at-most-once-crash-before-effect",
        CRASH_BEFORE_EFFECT_AUTO_ACK,
    );
    let r = &s.r;
    let shown = ids_with_effects(r, "count(*) >= 1");
    let never: Vec<String> = (0..r.counts.intended)
        .map(|q| dlab::message_id::format(&r.run_id, q))
        .filter(|id| !shown.contains(id))
        .collect();
    assert!(!never.is_empty(), "the crash lost messages");
    assert_eq!(r.lost_ids, never, "the lost IDs are those with no effect");
    let crash = support::consumer_crashes(r)[0].clone();
    let (_, home) = run_dir(r);
    let json = s.json.to_str().unwrap();
    let held = format!(
        "lost: delivered last to {} (pid {}), which aborted at before-effect before its effect, and auto-ack had settled it with the broker already",
        crash.worker, crash.pid
    );
    let in_flight = format!(
        "lost: sent with no confirm to wait for and never reported delivered: with auto-ack the broker forgets what it sends, and it may have been in flight to a consumer that ended before reading it ({} (pid {}) aborted at before-effect)",
        crash.worker, crash.pid
    );
    let mut told_held = 0;
    for id in &r.lost_ids {
        let out = explain(&home, json, id);
        let (steps, verdict) = assert_story_matches(&s, id, &out);
        assert!(steps.iter().all(|s| !s.what.starts_with("effect")), "{out}");
        if steps.iter().any(|s| s.what == "delivered") {
            assert_eq!(verdict, held, "{out}");
            assert!(
                steps
                    .iter()
                    .any(|s| s.pid == crash.pid && s.what.starts_with("aborted at before-effect")),
                "{out}"
            );
            told_held += 1;
        } else {
            assert_eq!(verdict, in_flight, "{out}");
        }
    }
    assert!(
        told_held >= 1,
        "the message the consumer held when it aborted is told"
    );
}
