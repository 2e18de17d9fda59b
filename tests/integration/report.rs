//! Measurement and reports: the JSON against its committed schema, series
//! that add up to the counts, latency that shows a stall, the HTML report
//! rendered in a real headless Chromium, and `dlab report`.

use crate::support::{broker_url, exclusive, plan, run, temp_dir};
use std::path::Path;
use std::process::Command;

fn schema() -> serde_json::Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/run-result.schema.json"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_committed_schema_is_the_one_the_code_generates() {
    let out = Command::new(env!("CARGO_BIN_EXE_dlab"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        generated,
        schema(),
        "run `dlab schema > schema/run-result.schema.json` and commit it"
    );
}

#[test]
fn real_output_validates_and_its_series_add_up_to_its_counts() {
    let r = run(&plan(
        "exactly-once-crash-after-effect.toml",
        &["messages=1500"],
    ));
    let json = serde_json::to_value(&r).unwrap();
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    // A broken result must not validate: the check can fail.
    let mut broken = json.clone();
    broken["counts"]["lost"] = serde_json::json!("none");
    assert!(!validator.is_valid(&broken));

    let sum = |v: &[u64]| v.iter().sum::<u64>();
    assert_eq!(
        sum(&r.series.effects),
        r.counts.effects,
        "effects over time add up"
    );
    assert_eq!(sum(&r.series.duplicates), r.counts.duplicates);
    assert_eq!(sum(&r.series.sent), r.counts.attempts);
    assert_eq!(
        sum(&r.series.confirmed),
        r.latency.publish_to_confirm.samples
    );
    assert!(r.steady_throughput_per_s > 0.0);
    for l in [&r.latency.end_to_end, &r.latency.publish_to_confirm] {
        assert!(l.samples > 0, "percentiles come with their sample count");
        assert!(!l.percentiles.is_empty());
        assert_eq!(l.percentiles.last().unwrap().us, l.max_us);
    }
}

#[test]
fn a_broker_pause_at_a_fixed_rate_shows_in_end_to_end_latency() {
    // 1000 messages/s and a 3 s pause: messages due during the pause wait for
    // it to end, and latency measured from when they were due shows it.
    let r = run(&plan("broker-pause.toml", &[]));
    assert_eq!(r.settings.rate, 1000);
    assert!(
        r.latency.end_to_end.max_us >= 2_000_000,
        "{:?}",
        r.latency.end_to_end
    );
    assert!(r.latency.end_to_end.p50_us < r.latency.end_to_end.max_us);
}

fn chromium() -> &'static str {
    "/usr/bin/chromium"
}

#[test]
fn the_html_report_of_a_real_matrix_renders_its_grid_and_charts_in_chromium() {
    let url = broker_url();
    let home = temp_dir("html");
    let html = home.join("matrix.html");
    let json = home.join("matrix.json");
    {
        let _guard = exclusive();
        let out = Command::new(env!("CARGO_BIN_EXE_dlab"))
            .env("DLAB_HOME", &home)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "matrix",
                "--rows",
                "core",
                "--transport",
                "amqp",
                "--messages",
                "300",
                "-q",
                "--amqp-url",
                &url,
                "--html",
            ])
            .arg(&html)
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("<link") && !page.contains(" src=") && !page.contains("https://"),
        "no external assets"
    );
    let profile = home.join("chromium-profile");
    let headless = |extra: &[&str]| {
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(["--window-size=1280,4000", "--virtual-time-budget=5000"])
            .args(extra)
            .arg(format!("file://{}", html.display()))
            .output()
            .expect("Debian's chromium runs (scripts/install-deps installs it)")
    };
    let out = headless(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout);
    let line = dom.split("DLAB-SELFCHECK ").nth(1).unwrap_or_else(|| {
        panic!(
            "the self-check ran: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let json_text = line.split("</pre>").next().unwrap().replace("&quot;", "\"");
    let check: serde_json::Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(
        check["errors"].as_array().unwrap().len(),
        0,
        "no script errors: {check}"
    );
    assert_eq!(
        check["grid"], 9,
        "the grid has a coloured cell per preset and row: {check}"
    );
    let charts = check["charts"].as_array().unwrap();
    assert_eq!(
        charts.len(),
        18,
        "a throughput and a latency chart per cell: {check}"
    );
    for c in charts {
        assert!(
            c["width"].as_u64().unwrap() >= 300 && c["height"].as_u64().unwrap() >= 150,
            "sized: {c}"
        );
        assert!(c["paths"].as_u64().unwrap() >= 10, "drawn: {c}");
        assert!(c["texts"].as_u64().unwrap() >= 3, "labelled: {c}");
    }
    if let Ok(shot) = std::env::var("DLAB_SCREENSHOT") {
        let out = headless(&[&format!("--screenshot={shot}")]);
        assert!(
            Path::new(&shot).exists(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // dlab report reads the same JSON back, side by side.
    let out = Command::new(env!("CARGO_BIN_EXE_dlab"))
        .arg("report")
        .arg(&json)
        .arg("--html")
        .arg(home.join("again.html"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("matrix-exactly-once-no-fault") || text.contains("matrix-exactly-once-"),
        "{text}"
    );
    assert!(home.join("again.html").exists());
}
