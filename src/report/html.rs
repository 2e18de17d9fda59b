//! The HTML renderer: one self-contained file (no external assets, no fonts)
//! with SVG charts drawn by plotters: throughput over time with fault
//! windows shaded, the latency distribution on a log scale, and the matrix
//! grid coloured by whether each promise held.
//!
//! The page carries a small self-check script: it measures every chart and
//! records script errors into `#dlab-selfcheck`, so a headless browser can
//! tell whether the report rendered.

use super::RunResult;
use crate::metrics::LatencySummary;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::fmt::Write as _;

/// A grid to draw above the runs (the matrix).
pub struct Grid<'a> {
    /// Row labels, top to bottom.
    pub rows: Vec<&'a str>,
    /// Column labels, left to right.
    pub columns: Vec<&'a str>,
    /// (row, column, index into the results).
    pub cells: Vec<(&'a str, &'a str, usize)>,
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:0.3em 0.6em;text-align:right}\
th{background:#f0f0f0}td.label{text-align:left}.held{background:#c8f0c8}.broken{background:#f6c0c0}\
section.run{border-top:2px solid #ddd;margin-top:2em;padding-top:1em}.charts{display:flex;flex-wrap:wrap;gap:1em}\
svg.chart{border:1px solid #eee}#dlab-selfcheck{color:#888;font-size:small;white-space:pre-wrap;word-break:break-all}";

const SELFCHECK: &str = r#"(function(){var out={charts:[],errors:[]};
window.addEventListener('error',function(e){out.errors.push(String(e.message));});
function check(){var svgs=document.querySelectorAll('svg.chart');
for(var i=0;i<svgs.length;i++){var r=svgs[i].getBoundingClientRect();
out.charts.push({id:svgs[i].id,width:Math.round(r.width),height:Math.round(r.height),
paths:svgs[i].querySelectorAll('path,polyline,rect,line').length,texts:svgs[i].querySelectorAll('text').length});}
out.grid=document.querySelectorAll('table.grid td.held,table.grid td.broken').length;
document.getElementById('dlab-selfcheck').textContent='DLAB-SELFCHECK '+JSON.stringify(out);}
if(document.readyState==='loading'){document.addEventListener('DOMContentLoaded',check);}else{check();}})();"#;

/// Renders `results` (and the matrix grid, if any) as one HTML page.
pub fn render(title: &str, results: &[RunResult], grid: Option<&Grid<'_>>) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>",
        t = esc(title)
    );
    if let Some(g) = grid {
        h.push_str(&grid_table(g, results));
    }
    if results.len() > 1 {
        h.push_str(&summary_table(results));
    }
    for (i, r) in results.iter().enumerate() {
        h.push_str(&run_section(i, r));
    }
    let _ = write!(
        h,
        "<pre id=\"dlab-selfcheck\"></pre><script>{SELFCHECK}</script></body></html>"
    );
    h
}

fn promise_cell(r: &RunResult) -> (String, &'static str) {
    match &r.promise {
        Some(p) => (
            format!(
                "lost {} · dup {} · {}",
                r.counts.lost,
                r.counts.duplicates,
                if p.held { "held" } else { "BROKEN" }
            ),
            if p.held { "held" } else { "broken" },
        ),
        None => (
            format!("lost {} · dup {}", r.counts.lost, r.counts.duplicates),
            "",
        ),
    }
}

fn grid_table(g: &Grid<'_>, results: &[RunResult]) -> String {
    let mut h = String::from(
        "<h2>Guarantee matrix</h2><table class=\"grid\"><tr><th>fault \\ guarantee</th>",
    );
    for c in &g.columns {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>");
    for row in &g.rows {
        let _ = write!(h, "<tr><td class=\"label\">{}</td>", esc(row));
        for col in &g.columns {
            match g.cells.iter().find(|(r, c, _)| r == row && c == col) {
                Some(&(_, _, i)) => {
                    let (text, class) = promise_cell(&results[i]);
                    let _ = write!(
                        h,
                        "<td class=\"{class}\"><a href=\"#run-{i}\">{}</a></td>",
                        esc(&text)
                    );
                }
                None => h.push_str("<td>not run</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    h
}

fn summary_table(results: &[RunResult]) -> String {
    let mut h = String::from(
        "<h2>Side by side</h2><table><tr><th>run</th><th>transport</th><th>policies</th><th>intended</th><th>effects</th><th>lost</th><th>duplicates</th><th>in doubt</th><th>steady msg/s</th><th>e2e p50</th><th>e2e p99</th></tr>",
    );
    for (i, r) in results.iter().enumerate() {
        let (_, class) = promise_cell(r);
        let _ = write!(
            h,
            "<tr><td class=\"label {class}\"><a href=\"#run-{i}\">{}</a></td><td>{}</td><td>{} + {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.scenario),
            esc(r.transport.name()),
            esc(&r.producer),
            esc(&r.consumer),
            r.counts.intended,
            r.counts.effects,
            r.counts.lost,
            r.counts.duplicates,
            r.counts.in_doubt,
            r.steady_throughput_per_s,
            us_as_ms(r.latency.end_to_end.p50_us),
            us_as_ms(r.latency.end_to_end.p99_us),
        );
    }
    h.push_str("</table>");
    h
}

fn us_as_ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn run_section(i: usize, r: &RunResult) -> String {
    let c = &r.counts;
    let mut h = String::new();
    let _ = write!(
        h,
        "<section class=\"run\" id=\"run-{i}\"><h2>{}</h2><p>{}</p><p>{} + {} over {}, seed {}, run {}, broker {}</p>",
        esc(&r.scenario),
        esc(&r.description),
        esc(&r.producer),
        esc(&r.consumer),
        esc(r.transport.name()),
        r.seed,
        esc(&r.run_id),
        esc(&r.broker)
    );
    for f in &r.faults {
        let _ = write!(h, "<p>fault: {}</p>", esc(f));
    }
    let _ = write!(
        h,
        "<table><tr><th>intended</th><th>published</th><th>confirmed</th><th>in doubt</th><th>deliveries</th><th>redelivered</th><th>effects</th><th>unique</th><th>duplicates</th><th>suppressed</th><th>lost</th><th>lost after confirm</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        c.intended, c.published, c.confirmed, c.in_doubt, c.deliveries, c.redelivered, c.effects, c.unique, c.duplicates, c.suppressed, c.lost, c.lost_after_confirm
    );
    for (what, ids) in [("lost", &r.lost_ids), ("duplicated", &r.duplicated_ids)] {
        if !ids.is_empty() {
            let _ = write!(
                h,
                "<p class=\"ids\">{what}: {}</p>",
                esc(&super::table::first_ids(ids))
            );
        }
    }
    if let Some(id) = r.duplicated_ids.first().or(r.lost_ids.first()) {
        let _ = write!(
            h,
            "<p class=\"ids\"><code>dlab explain {} {}</code> tells one message's story</p>",
            esc(&r.run_id),
            esc(id)
        );
    }
    let v = &r.verdicts;
    let verdict = |name: &str, held: bool| {
        format!(
            "<td class=\"{}\">{name}: {}</td>",
            if held { "held" } else { "broken" },
            if held { "held" } else { "broken" }
        )
    };
    let _ = write!(
        h,
        "<table><tr>{}{}{}</tr></table><p>steady throughput {:.0} effects/s; end-to-end p50 {} p99 {} ({} samples); drain {}</p>",
        verdict("at-most-once", v.at_most_once),
        verdict("at-least-once", v.at_least_once),
        verdict("exactly-once", v.exactly_once),
        r.steady_throughput_per_s,
        us_as_ms(r.latency.end_to_end.p50_us),
        us_as_ms(r.latency.end_to_end.p99_us),
        r.latency.end_to_end.samples,
        if r.drain.completed { "completed" } else { "timed out" }
    );
    if let Some(smtp) = &r.smtp {
        h.push_str(&super::html_smtp::details(smtp, r.counts.duplicates));
    }
    h.push_str(&broker_count_table(r));
    if let Some(c) = &r.cluster {
        h.push_str(&super::html_cluster::details(c));
    }
    if let Some(p) = &r.push {
        h.push_str(&super::html_push::details(p));
    }
    if !r.broker_tls.is_empty() {
        h.push_str(&super::eavesdrop_text::broker_tls_html(&r.broker_tls));
    }
    if let Some(e) = &r.eavesdropper {
        h.push_str(&super::eavesdrop_text::html(e, r.counts.intended));
    }
    let _ = write!(
        h,
        "<div class=\"charts\">{}{}{}{}</div></section>",
        throughput_svg(i, r),
        latency_svg(i, r),
        r.smtp
            .as_ref()
            .map_or(String::new(), |_| super::html_smtp::relay_queue_svg(i, r)),
        super::html_cluster::membership_svg(i, r)
    );
    h
}

/// The broker's own count beside the ledger's (AMQP runs).
fn broker_count_table(r: &RunResult) -> String {
    if let Some(why) = &r.broker_count_missing {
        return format!(
            "<p class=\"broker-count\">broker: not counted: {}</p>",
            esc(why)
        );
    }
    let Some(b) = &r.broker_count else {
        return String::new();
    };
    let mut h = format!(
        "<table class=\"broker-count\"><caption>the broker's own count: {} queue, {}{}</caption><tr><th>broker</th><th></th><th>ledger</th><th></th><th>agree?</th></tr>",
        esc(&b.queue_type),
        esc(&b.source),
        if b.whole_run { "" } else { " (since its last restart)" }
    );
    for p in &b.pairs {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&p.name),
            p.broker,
            esc(&p.ledger_field),
            p.ledger,
            if p.agree() { "held" } else { "differs" },
            esc(p.why.as_deref().unwrap_or("agree"))
        );
    }
    h.push_str("</table>");
    h
}

const W: u32 = 640;
const H: u32 = 300;

/// A chart over the run's seconds, `0..x_max` by `0..y_top`, with the window
/// of every fault occurrence shaded; `draw` adds the lines (and a legend of
/// their labels when `legend`). The SVG gets class `chart` and `id`.
pub(super) fn time_chart_svg(
    id: &str,
    caption: &str,
    y_desc: &str,
    r: &RunResult,
    (x_max, y_top): (f64, f64),
    legend: bool,
    draw: impl FnOnce(
        &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    ),
) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, 0f64..y_top);
        if let Ok(mut chart) = chart {
            let _ = chart
                .configure_mesh()
                .x_desc("seconds")
                .y_desc(y_desc)
                .draw();
            for f in &r.fault_timeline {
                if let (Some(a), end) = (f.started_ms, f.ended_ms) {
                    let a = a as f64 / 1000.0;
                    let b = end.map_or(x_max, |e| e as f64 / 1000.0).max(a + 0.05);
                    let _ = chart.draw_series(std::iter::once(Rectangle::new(
                        [(a, 0.0), (b, y_top)],
                        RGBColor(255, 200, 120).mix(0.35).filled(),
                    )));
                }
            }
            draw(&mut chart);
            if legend {
                let _ = chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw();
            }
        }
        let _ = root.present();
    }
    with_id(svg, id)
}

fn with_id(svg: String, id: &str) -> String {
    svg.replacen("<svg ", &format!("<svg class=\"chart\" id=\"{id}\" "), 1)
}

fn throughput_svg(i: usize, r: &RunResult) -> String {
    let s = &r.series;
    let per_s = 1000.0 / s.bucket_ms.max(1) as f64;
    let n = s.effects.len().max(s.sent.len()).max(1);
    let x_max = n as f64 * s.bucket_ms as f64 / 1000.0;
    let y_max = [&s.sent, &s.confirmed, &s.effects]
        .iter()
        .flat_map(|v| v.iter())
        .copied()
        .max()
        .unwrap_or(0) as f64
        * per_s;
    let y_top = (y_max * 1.1).max(1.0);
    time_chart_svg(
        &format!("throughput-{i}"),
        "throughput (messages/s) with fault windows",
        "per second",
        r,
        (x_max.max(0.1), y_top),
        true,
        |chart| {
            for c in &r.crashes {
                let x = c.at_ms as f64 / 1000.0;
                let _ = chart.draw_series(LineSeries::new([(x, 0.0), (x, y_top)], RED.mix(0.6)));
            }
            let series: [(&str, &Vec<u64>, RGBColor); 4] = [
                ("sent", &s.sent, RGBColor(90, 90, 220)),
                ("confirmed", &s.confirmed, RGBColor(40, 160, 200)),
                ("effects", &s.effects, RGBColor(40, 150, 60)),
                ("duplicates", &s.duplicates, RGBColor(220, 60, 60)),
            ];
            for (name, v, color) in series {
                let points: Vec<(f64, f64)> = v
                    .iter()
                    .enumerate()
                    .map(|(k, &c)| (k as f64 * s.bucket_ms as f64 / 1000.0, c as f64 * per_s))
                    .collect();
                if let Ok(a) = chart.draw_series(LineSeries::new(points, color.stroke_width(2))) {
                    a.label(name).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                }
            }
        },
    )
}

fn nines(q: f64) -> f64 {
    (-(1.0 - q).max(1e-5).log10()).min(5.0)
}

fn latency_svg(i: usize, r: &RunResult) -> String {
    let curves: [(&str, &LatencySummary, RGBColor); 2] = [
        ("end-to-end", &r.latency.end_to_end, RGBColor(40, 150, 60)),
        (
            "publish-to-confirm",
            &r.latency.publish_to_confirm,
            RGBColor(40, 120, 200),
        ),
    ];
    let lo = curves
        .iter()
        .flat_map(|c| c.1.percentiles.iter())
        .map(|p| p.us.max(1))
        .min()
        .unwrap_or(1) as f64
        / 1000.0;
    let hi = curves.iter().map(|c| c.1.max_us).max().unwrap_or(1).max(2) as f64 / 1000.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .caption("latency distribution (ms, log scale)", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..5f64, ((lo * 0.8).max(0.001)..hi * 1.5).log_scale());
        if let Ok(mut chart) = chart {
            let _ = chart
                .configure_mesh()
                .x_desc("percentile (0 = p0, 1 = p90, 2 = p99, 3 = p99.9, 4 = p99.99)")
                .y_desc("ms")
                .draw();
            for (name, l, color) in curves {
                if l.samples == 0 {
                    continue;
                }
                let points: Vec<(f64, f64)> = l
                    .percentiles
                    .iter()
                    .map(|p| (nines(p.quantile), (p.us.max(1) as f64) / 1000.0))
                    .collect();
                if let Ok(a) = chart.draw_series(LineSeries::new(points, color.stroke_width(2))) {
                    let label = format!("{name} ({} samples)", l.samples);
                    a.label(label).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                }
            }
            let _ = chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw();
        }
        let _ = root.present();
    }
    with_id(svg, &format!("latency-{i}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_spread_the_tail() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0), 5.0);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
