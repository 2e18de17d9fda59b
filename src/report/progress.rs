//! Live progress on a terminal: sent, confirmed, delivered, the rate and the
//! faults active now. Shown only when stderr is a terminal and not `--quiet`;
//! it draws what the runner already counted and measures nothing itself.

use super::Tally;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// A one-line live status.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A spinner line for the run `name`.
    pub fn new(name: &str) -> Progress {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg}").expect("static template"),
        );
        bar.set_prefix(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar }
    }

    /// Shows the counts so far.
    pub fn update(&self, t: &Tally, elapsed: Duration, faults: Vec<String>) {
        let secs = elapsed.as_secs_f64().max(0.001);
        let active = if faults.is_empty() {
            String::new()
        } else {
            format!(" | active: {}", faults.join("; "))
        };
        self.bar.set_message(format!(
            "sent {} confirmed {} delivered {} in doubt {} | {:.0}/s{active}",
            t.published,
            t.confirmed,
            t.delivered,
            t.in_doubt,
            t.delivered as f64 / secs
        ));
    }

    /// Removes the line.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
