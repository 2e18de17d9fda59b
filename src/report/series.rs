//! Throughput over time: counts per 100 ms bucket of what was sent,
//! confirmed, applied as an effect, and applied twice.
//!
//! Pure: callers pass the time (ms since the run started) of each event.

use serde::{Deserialize, Serialize};

/// Width of one bucket.
pub const BUCKET_MS: u64 = 100;

/// Counts per bucket, from the start of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Series {
    /// Width of each bucket in milliseconds.
    pub bucket_ms: u64,
    /// Publish attempts per bucket (as the runner received them).
    pub sent: Vec<u64>,
    /// Confirms per bucket.
    pub confirmed: Vec<u64>,
    /// Effects per bucket (by the time the effect committed).
    pub effects: Vec<u64>,
    /// Effects per bucket that were a message's second or later.
    pub duplicates: Vec<u64>,
}

fn bump(v: &mut Vec<u64>, at_ms: u64) {
    let i = (at_ms / BUCKET_MS) as usize;
    if v.len() <= i {
        v.resize(i + 1, 0);
    }
    v[i] += 1;
}

impl Series {
    /// An empty series of 100 ms buckets.
    pub fn new() -> Series {
        Series {
            bucket_ms: BUCKET_MS,
            ..Series::default()
        }
    }

    /// One publish attempt at `at_ms`.
    pub fn sent(&mut self, at_ms: u64) {
        bump(&mut self.sent, at_ms);
    }

    /// One confirm at `at_ms`.
    pub fn confirmed(&mut self, at_ms: u64) {
        bump(&mut self.confirmed, at_ms);
    }

    /// One effect at `at_ms`; `duplicate` when its message already had one.
    pub fn effect(&mut self, at_ms: u64, duplicate: bool) {
        bump(&mut self.effects, at_ms);
        if duplicate {
            bump(&mut self.duplicates, at_ms);
        }
    }

    /// Pads every series to the same length.
    pub fn finish(&mut self) {
        let n = [&self.sent, &self.confirmed, &self.effects, &self.duplicates]
            .iter()
            .map(|v| v.len())
            .max()
            .unwrap_or(0);
        for v in [
            &mut self.sent,
            &mut self.confirmed,
            &mut self.effects,
            &mut self.duplicates,
        ] {
            v.resize(n, 0);
        }
    }

    /// Effects per second over the steady part of the run: the middle 80% of
    /// the span from the first to the last bucket with an effect (all of it
    /// when that span is under ten buckets).
    pub fn steady_rate(&self) -> f64 {
        let first = self.effects.iter().position(|&n| n > 0);
        let last = self.effects.iter().rposition(|&n| n > 0);
        let (Some(first), Some(last)) = (first, last) else {
            return 0.0;
        };
        let span = last - first + 1;
        let (from, to) = if span < 10 {
            (first, last)
        } else {
            (first + span / 10, last - span / 10)
        };
        let total: u64 = self.effects[from..=to].iter().sum();
        total as f64 / ((to - from + 1) as f64 * self.bucket_ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_land_in_their_bucket_and_series_line_up() {
        let mut s = Series::new();
        s.sent(0);
        s.sent(99);
        s.sent(100);
        s.effect(250, false);
        s.effect(251, true);
        s.finish();
        assert_eq!(s.sent, vec![2, 1, 0]);
        assert_eq!(s.effects, vec![0, 0, 2]);
        assert_eq!(s.duplicates, vec![0, 0, 1]);
        assert_eq!(s.confirmed, vec![0, 0, 0]);
    }

    #[test]
    fn the_steady_rate_leaves_out_ramp_up_and_tail() {
        let mut s = Series::new();
        // 20 buckets: a slow first and last bucket, 50 effects per 100 ms between.
        for b in 0..20u64 {
            let n = if b == 0 || b == 19 { 1 } else { 50 };
            for _ in 0..n {
                s.effect(b * 100 + 10, false);
            }
        }
        s.finish();
        assert!(
            (s.steady_rate() - 500.0).abs() < 1e-9,
            "{}",
            s.steady_rate()
        );
        assert_eq!(Series::new().steady_rate(), 0.0);
    }

    #[test]
    fn the_steady_span_starts_and_ends_at_effects_and_trims_from_ten_buckets() {
        // Effects in buckets 5..=5+span-1 only (1 in the first and last, 50
        // between); sends run on to bucket 30, so the padded effects series
        // has empty buckets on both sides of the span.
        let series = |span: u64| {
            let mut s = Series::new();
            for b in 5..5 + span {
                let n = if b == 5 || b == 4 + span { 1 } else { 50 };
                for _ in 0..n {
                    s.effect(b * 100 + 10, false);
                }
            }
            s.sent(3000);
            s.finish();
            s
        };
        // Ten buckets: the first and last are left out, 8 x 50 in 0.8 s.
        let ten = series(10).steady_rate();
        assert!((ten - 500.0).abs() < 1e-9, "{ten}");
        // Nine: all of the span counts, (1 + 7 x 50 + 1) in 0.9 s.
        let nine = series(9).steady_rate();
        assert!((nine - 352.0 / 0.9).abs() < 1e-9, "{nine}");
    }
}
