//! Measurement and reports: the JSON against its committed schema, series
//! that add up to the counts, latency that shows a stall, the HTML report
//! rendered in a real headless Chromium, and `dlab report`.

use crate::support::{plan, run};
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

/// The cells of the page's grid: (row label, column, class, run index).
fn grid_cells(dom: &str) -> Vec<(String, String, String, usize)> {
    let table = dom
        .split("<table class=\"grid\">")
        .nth(1)
        .expect("a grid")
        .split("</table>")
        .next()
        .unwrap();
    let mut rows = table.split("<tr>").skip(1);
    let columns: Vec<String> = rows
        .next()
        .unwrap()
        .split("<th>")
        .skip(2)
        .map(|h| h.split("</th>").next().unwrap().to_string())
        .collect();
    let mut cells = Vec::new();
    for row in rows {
        let mut tds = row.split("<td class=\"").skip(1);
        let label = tds.next().unwrap();
        let label = label.split('>').nth(1).unwrap().split('<').next().unwrap();
        for (k, td) in tds.enumerate() {
            let class = td.split('"').next().unwrap().to_string();
            let run: usize = td
                .split("href=\"#run-")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            cells.push((label.to_string(), columns[k].clone(), class, run));
        }
    }
    cells
}

/// Each chart's SVG in the page, by its id.
fn charts(dom: &str) -> std::collections::HashMap<String, String> {
    dom.split("<svg ")
        .skip(1)
        .filter_map(|svg| {
            let head = svg.split('>').next().unwrap();
            if !head.contains("class=\"chart\"") {
                return None;
            }
            let id = head.split("id=\"").nth(1)?.split('"').next()?.to_string();
            Some((id, svg.split("</svg>").next().unwrap().to_string()))
        })
        .collect()
}

/// The number of points of each line drawn in `colour` (the series; axes
/// and ticks are black, fault windows are rectangles).
fn lines_in(svg: &str, colour: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .map(|p| p.split('>').next().unwrap())
        .filter(|p| {
            p.to_ascii_uppercase()
                .contains(&format!("STROKE=\"{colour}\""))
        })
        .map(|p| {
            p.split("points=\"").nth(1).map_or(0, |pts| {
                pts.split('"').next().unwrap().split_whitespace().count()
            })
        })
        .collect()
}

#[test]
fn the_html_report_of_the_full_matrix_colours_each_cell_as_its_promise_and_draws_every_series() {
    let m = crate::matrix_full::full_matrix();
    assert_eq!(m.code, Some(0), "{}", m.shown);
    let results = m.json.as_array().unwrap();
    let (home, html, json) = (&m.home, &m.html, &m.json_path);
    let page = std::fs::read_to_string(html).unwrap();
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
        check["grid"].as_u64(),
        Some(results.len() as u64),
        "the grid has a coloured cell per preset and row: {check}"
    );

    // The grid, cell by cell, as the browser has it: each cell links to its
    // run and is coloured as that run's promise was judged in the JSON.
    let cells = grid_cells(&dom);
    assert_eq!(cells.len(), results.len(), "{cells:?}");
    let mut seen = std::collections::HashSet::new();
    for (row, column, class, i) in &cells {
        let r = &results[*i];
        assert!(seen.insert(*i), "one cell per run: {cells:?}");
        assert_eq!(r["guarantee"].as_str(), Some(column.as_str()), "{row}");
        let held = r["promise"]["held"].as_bool().unwrap();
        assert_eq!(
            class,
            if held { "held" } else { "broken" },
            "{row} / {column}: {}",
            r["scenario"]
        );
    }
    // The deliberately broken cells: at-most-once across a relay that
    // retries, at-least-once and exactly-once to an address that needs
    // SMTPUTF8 through an inbox without it.
    assert_eq!(
        cells.iter().filter(|c| c.2 == "broken").count(),
        3,
        "the three deliberately broken cells"
    );

    // Every chart is sized, labelled, and has its data drawn: the effects
    // line with a point per 100 ms bucket, the end-to-end latency curve with
    // a point per percentile, the relay's queue depth with a point per
    // sample. An empty chart (axes only) has none of these lines.
    let smtp = results.iter().filter(|r| r["transport"] == "smtp").count();
    let listed = check["charts"].as_array().unwrap();
    assert_eq!(listed.len(), 2 * results.len() + smtp, "{check}");
    for c in listed {
        assert!(
            c["width"].as_u64().unwrap() >= 300 && c["height"].as_u64().unwrap() >= 150,
            "sized: {c}"
        );
        assert!(c["texts"].as_u64().unwrap() >= 3, "labelled: {c}");
    }
    let svgs = charts(&dom);
    assert_eq!(svgs.len(), listed.len());
    let len = |v: &serde_json::Value| v.as_array().unwrap().len();
    for (i, r) in results.iter().enumerate() {
        let effects = lines_in(&svgs[&format!("throughput-{i}")], "#28963C");
        let buckets = len(&r["series"]["effects"]);
        // Two lines in the colour: the legend's sample and the series.
        assert!(
            buckets >= 1 && effects.len() >= 2 && effects.contains(&buckets),
            "throughput-{i}: {effects:?} vs {buckets}"
        );
        let e2e = lines_in(&svgs[&format!("latency-{i}")], "#28963C");
        let pcts = len(&r["latency"]["end_to_end"]["percentiles"]);
        if r["counts"]["effects"] == 0 {
            // Nothing arrived (every message bounced): no curve is drawn.
            assert!(
                pcts == 0 && e2e.is_empty(),
                "latency-{i}: {e2e:?} vs {pcts}"
            );
        } else {
            assert!(
                pcts >= 1 && e2e.len() >= 2 && e2e.contains(&pcts),
                "latency-{i}: {e2e:?} vs {pcts}"
            );
        }
        if r["transport"] == "smtp" {
            let depth = lines_in(&svgs[&format!("relay-queue-{i}")], "#783CB4");
            let samples = len(&r["smtp"]["relay_queue"]);
            // No legend here: the one line is the series.
            assert!(
                samples >= 1 && depth == [samples],
                "relay-queue-{i}: {depth:?} vs {samples}"
            );
        }
    }
    if let Ok(shot) = std::env::var("DLAB_SCREENSHOT") {
        let out = headless(&[&format!("--screenshot={shot}")]);
        assert!(
            Path::new(&shot).exists(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // dlab report reads the same JSON back, side by side: what it prints is
    // what the JSON holds, run by run.
    let out = Command::new(env!("CARGO_BIN_EXE_dlab"))
        .arg("report")
        .arg(json)
        .arg("--html")
        .arg(home.join("again.html"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // Columns of `table::write_side_by_side`: a 26-wide key, then one column
    // per run, as wide as its widest value; the scenario row shows where
    // each column starts (its full name, in the order of the runs).
    let scenario_line = text
        .lines()
        .find(|l| l.starts_with("scenario "))
        .unwrap_or_else(|| panic!("a scenario row in {text}"));
    let mut starts = Vec::new();
    let mut from = 26;
    for r in results.iter() {
        let name = r["scenario"].as_str().unwrap();
        let at = from
            + scenario_line[from..]
                .find(name)
                .unwrap_or_else(|| panic!("{name} in full in {scenario_line}"));
        starts.push(at);
        from = at + name.len();
    }
    let column = |key: &str, k: usize| -> String {
        let line = text
            .lines()
            .find(|l| l.len() > 26 && l[..26].trim_end() == key)
            .unwrap_or_else(|| panic!("a {key} row in {text}"));
        let end = starts
            .get(k + 1)
            .copied()
            .unwrap_or(line.len())
            .min(line.len());
        line.get(starts[k]..end).unwrap_or("").trim().to_string()
    };
    for (k, r) in results.iter().enumerate() {
        let name = r["scenario"].as_str().unwrap();
        assert_eq!(column("scenario", k), name);
        for (key, field) in [
            ("intended", "intended"),
            ("published", "published"),
            ("confirmed", "confirmed"),
            ("in doubt", "in_doubt"),
            ("effects", "effects"),
            ("lost", "lost"),
            ("duplicates", "duplicates"),
        ] {
            assert_eq!(
                column(key, k),
                r["counts"][field].to_string(),
                "{key} of {}",
                r["scenario"]
            );
        }
    }
    assert!(home.join("again.html").exists());
}
