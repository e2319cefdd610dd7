//! Latency histograms (microseconds) and the one form they travel in between processes: the
//! HdrHistogram V2 serialization, base64 in the worker's JSON.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency a histogram holds: one hour in microseconds. Longer values are clamped.
pub const LATENCY_MAX_US: u64 = 3_600 * 1_000_000;
/// Significant decimal digits kept (0.1 % resolution).
const SIGFIG: u8 = 3;

/// A latency histogram in microseconds.
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Histogram<u64>,
}

/// The percentiles every report shows, in microseconds; zeros when empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        let hist = Histogram::new_with_bounds(1, LATENCY_MAX_US, SIGFIG)
            .expect("constant histogram bounds are valid");
        Latency { hist }
    }

    /// Records a latency given in nanoseconds; sub-microsecond values count as 1 µs.
    pub fn record_ns(&mut self, ns: u64) {
        let us = (ns / 1_000).clamp(1, LATENCY_MAX_US);
        self.hist.saturating_record(us);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn summary(&self) -> Summary {
        if self.hist.is_empty() {
            return Summary::default();
        }
        Summary {
            count: self.hist.len(),
            p50: self.hist.value_at_quantile(0.50),
            p90: self.hist.value_at_quantile(0.90),
            p99: self.hist.value_at_quantile(0.99),
            p999: self.hist.value_at_quantile(0.999),
            max: self.hist.max(),
            mean: self.hist.mean(),
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Both come from `new` with the same bounds, so the add cannot fail.
        self.hist
            .add(&other.hist)
            .expect("histograms with the same bounds merge");
    }

    /// V2 serialization, base64.
    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(&self.hist, &mut bytes)
            .expect("serializing into a Vec cannot fail");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Reads what [`Latency::to_base64`] wrote (in another process).
    pub fn from_base64(text: &str) -> Result<Latency, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("histogram base64: {e}"))?;
        let read: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("histogram V2: {e:?}"))?;
        let mut latency = Latency::new();
        latency
            .hist
            .add(&read)
            .map_err(|e| format!("histogram out of range: {e:?}"))?;
        Ok(latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves merging two histograms through their serialized form equals recording all values
    /// in one.
    #[test]
    fn merge_through_serialization() {
        let (mut a, mut b, mut all) = (Latency::new(), Latency::new(), Latency::new());
        for us in 1..=1000u64 {
            let target = if us % 2 == 0 { &mut a } else { &mut b };
            target.record_ns(us * 1000);
            all.record_ns(us * 1000);
        }
        let mut merged = Latency::from_base64(&a.to_base64()).unwrap();
        merged.merge(&Latency::from_base64(&b.to_base64()).unwrap());
        assert_eq!(merged.summary(), all.summary());
        assert_eq!(merged.count(), 1000);
        let s = merged.summary();
        assert!((499..=501).contains(&s.p50), "{s:?}");
        assert_eq!(s.max, 1000);
    }

    /// Proves an empty histogram summarizes to zeros and survives serialization.
    #[test]
    fn empty() {
        let e = Latency::from_base64(&Latency::new().to_base64()).unwrap();
        assert_eq!(e.summary(), Summary::default());
    }

    /// Proves out-of-range values are clamped, not lost, and bad input is an error.
    #[test]
    fn clamping_and_bad_input() {
        let mut l = Latency::new();
        l.record_ns(10);
        l.record_ns(u64::MAX);
        assert_eq!(l.count(), 2);
        assert!(l.summary().max >= LATENCY_MAX_US);
        assert!(Latency::from_base64("not base64!").is_err());
        assert!(Latency::from_base64("AAAA").is_err());
    }
}
