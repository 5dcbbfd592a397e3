//! Latency histograms: an HDR histogram (bounded memory, O(1) recording) plus the exact
//! count, sum, minimum and maximum.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Decimal digits of precision kept by the HDR histogram: a percentile is within 0.1% of
/// the true value.
const SIGNIFICANT_DIGITS: u8 = 3;
/// Values are recorded in microseconds and reported in milliseconds.
const UNITS_PER_MS: f64 = 1000.0;
/// The largest value the HDR buckets resolve: 2^42 µs, about 51 days. A larger value
/// lands in the last bucket (its min, max and sum stay exact), which caps a histogram's
/// memory at about 270 KiB.
const MAX_UNITS: u64 = 1 << 42;

/// Percentiles of a histogram, in the histogram's unit (milliseconds for the queue's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The 99th percentile.
    pub p99: f64,
}

/// Statistics of a histogram. Count, sum, min, max and mean are exact; percentiles are
/// within 0.1% (HDR histogram with three significant digits), and never outside
/// `min..=max`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HistogramStats {
    /// How many values were recorded.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// The mean (`sum / count`; 0 when empty).
    pub mean: f64,
    /// p50, p90, p95 and p99.
    pub percentiles: Percentiles,
}

/// One histogram. Memory grows with the logarithm of the largest value recorded (about
/// 8 KiB per power of two of microseconds, at most about 270 KiB), never with the number
/// of values.
#[derive(Clone)]
pub(crate) struct Hdr {
    hist: Histogram<u64>,
    sum: f64,
    min: f64,
    max: f64,
}

impl std::fmt::Debug for Hdr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hdr")
            .field("count", &self.hist.len())
            .field("min", &self.min)
            .field("max", &self.max)
            .finish()
    }
}

/// Whether `value` can go into a latency histogram.
pub(crate) fn is_recordable(value: f64) -> bool {
    value.is_finite() && value >= 0.0
}

impl Hdr {
    pub(crate) fn new() -> Self {
        let hist = Histogram::new(SIGNIFICANT_DIGITS)
            .expect("three significant digits is a valid HDR precision");
        Self {
            hist,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Records one value (milliseconds); the caller checked [`is_recordable`].
    pub(crate) fn record(&mut self, value_ms: f64) {
        self.record_n(value_ms, 1);
    }

    pub(crate) fn record_n(&mut self, value_ms: f64, count: u64) {
        let units = ((value_ms * UNITS_PER_MS).round() as u64).min(MAX_UNITS);
        // Auto-resize grows the buckets up to `units`; growth happens at most once per
        // power of two, so recording stays O(1) amortised.
        if self.hist.record_n(units, count).is_err() {
            self.hist.saturating_record_n(units, count);
        }
        self.sum += value_ms * count as f64;
        self.min = self.min.min(value_ms);
        self.max = self.max.max(value_ms);
    }

    pub(crate) fn len(&self) -> u64 {
        self.hist.len()
    }

    pub(crate) fn merge(&mut self, other: &Hdr) {
        // Auto-resize is on, so adding never fails for lack of range.
        let _ = self.hist.add(&other.hist);
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Each distinct recorded value (milliseconds, the middle of its HDR bucket, kept
    /// within `min..=max`) with its count.
    pub(crate) fn recorded(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.hist.iter_recorded().map(|v| {
            let value = self.hist.median_equivalent(v.value_iterated_to()) as f64 / UNITS_PER_MS;
            (value.clamp(self.min, self.max), v.count_at_value())
        })
    }

    pub(crate) fn stats(&self) -> HistogramStats {
        let count = self.hist.len();
        if count == 0 {
            return HistogramStats::default();
        }
        let at = |q: f64| {
            let value = self.hist.value_at_quantile(q) as f64 / UNITS_PER_MS;
            value.clamp(self.min, self.max)
        };
        HistogramStats {
            count,
            sum: self.sum,
            min: self.min,
            max: self.max,
            mean: self.sum / count as f64,
            percentiles: Percentiles {
                p50: at(0.50),
                p90: at(0.90),
                p95: at(0.95),
                p99: at(0.99),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_a_thousand() {
        let mut h = Hdr::new();
        for v in 1..=1000 {
            h.record(v as f64);
        }
        let s = h.stats();
        assert_eq!(s.count, 1000);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 1000.0);
        assert!((s.mean - 500.5).abs() < 1e-9);
        for (got, want) in [
            (s.percentiles.p50, 500.0),
            (s.percentiles.p90, 900.0),
            (s.percentiles.p95, 950.0),
            (s.percentiles.p99, 990.0),
        ] {
            assert!((got - want).abs() <= want * 0.001 + 1e-9, "{got} vs {want}");
        }
    }

    #[test]
    fn memory_does_not_grow_with_the_number_of_values() {
        let mut h = Hdr::new();
        for v in 0..10_000 {
            h.record((v % 50) as f64);
        }
        let before = h.hist.distinct_values();
        for v in 0..100_000 {
            h.record((v % 50) as f64);
        }
        assert_eq!(h.hist.distinct_values(), before);
        assert_eq!(h.len(), 110_000);
    }

    #[test]
    fn merge_and_recorded_values_keep_counts() {
        let mut a = Hdr::new();
        let mut b = Hdr::new();
        a.record(2.0);
        b.record_n(7.5, 3);
        a.merge(&b);
        let s = a.stats();
        assert_eq!(s.count, 4);
        assert_eq!(s.min, 2.0);
        assert_eq!(s.max, 7.5);
        let recorded: Vec<(f64, u64)> = a.recorded().collect();
        assert_eq!(recorded.len(), 2);
        assert_eq!(recorded[0].1, 1);
        assert!((recorded[1].0 - 7.5).abs() < 0.01);
        assert_eq!(recorded[1].1, 3);
    }

    proptest::proptest! {
        /// Any percentile is within 0.1% (plus the 1 µs unit) of the exact one.
        #[test]
        fn percentiles_are_within_a_thousandth(values in proptest::collection::vec(0.0f64..600_000.0, 1..400)) {
            let mut h = Hdr::new();
            for &v in &values {
                h.record(v);
            }
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let s = h.stats();
            for (q, got) in [(0.5, s.percentiles.p50), (0.9, s.percentiles.p90), (0.95, s.percentiles.p95), (0.99, s.percentiles.p99)] {
                let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
                let want = sorted[rank - 1];
                proptest::prop_assert!((got - want).abs() <= want * 0.001 + 0.001, "q{} got {} want {}", q, got, want);
            }
            proptest::prop_assert_eq!(s.count, values.len() as u64);
            proptest::prop_assert_eq!(s.min, sorted[0]);
            proptest::prop_assert_eq!(s.max, sorted[sorted.len() - 1]);
        }
    }

    #[test]
    fn only_finite_non_negative_values_are_recordable() {
        assert!(is_recordable(0.0));
        assert!(is_recordable(12.5));
        assert!(!is_recordable(-1.0));
        assert!(!is_recordable(f64::NAN));
        assert!(!is_recordable(f64::INFINITY));
    }
}
