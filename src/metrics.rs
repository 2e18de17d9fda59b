//! Latency histograms: recorded in workers, shipped in HdrHistogram's own
//! serialized form, merged (never averaged) by the runner.
//!
//! Values are microseconds. Pure: callers pass the measured durations in.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Publish to broker confirm, per confirmed attempt.
pub const PUBLISH_TO_CONFIRM: &str = "publish_to_confirm";
/// From the moment a message was due to be sent to the moment its effect
/// committed (coordinated-omission safe under a fixed rate).
pub const END_TO_END: &str = "end_to_end";

/// A new latency histogram: 1 µs to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

/// Serializes a histogram for the wire.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads a histogram from the wire.
pub fn decode(text: &str) -> Option<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).ok()
}

/// Percentiles of one latency, with the sample count they rest on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LatencySummary {
    /// How many samples.
    pub samples: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest sample, µs.
    pub max_us: u64,
    /// The distribution: latency at each of a fixed set of quantiles, for charts.
    pub percentiles: Vec<Percentile>,
}

/// The latency at one quantile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Percentile {
    /// The quantile, 0 to 1.
    pub quantile: f64,
    /// The latency there, µs.
    pub us: u64,
}

/// The quantiles charted: the median out to the maximum.
pub const CHART_QUANTILES: [f64; 11] = [
    0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

impl LatencySummary {
    /// Summarizes a histogram.
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            samples: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            percentiles: CHART_QUANTILES
                .iter()
                .map(|&q| Percentile {
                    quantile: q,
                    us: h.value_at_quantile(q),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_the_wire_and_merge() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        for v in 1..=1000 {
            a.record(v).unwrap();
            b.record(v * 1000).unwrap();
        }
        let mut merged = decode(&encode(&a)).unwrap();
        merged.add(decode(&encode(&b)).unwrap()).unwrap();
        let s = LatencySummary::of(&merged);
        assert_eq!(s.samples, 2000);
        assert!(s.p50_us >= 990 && s.p50_us <= 1010, "{s:?}");
        assert!(s.max_us >= 999_000, "{s:?}");
        assert_eq!(s.percentiles.len(), CHART_QUANTILES.len());
        assert!(
            s.percentiles.windows(2).all(|w| w[0].us <= w[1].us),
            "monotone"
        );
        assert_eq!(decode("not base64!"), None);
    }
}
