//! What a run of bursts measured ([`Acc`], filled by the driver) and the figures reported from
//! it ([`Figures`]: Mpps, ns and cycles per packet, burst latency quantiles, allocations).

use crate::NS_PER_S;
use hdrhistogram::Histogram;
use serde_json::json;

/// Errors kept per run: enough to say what went wrong, without flooding the report.
const ERRORS_KEPT: usize = 8;

/// What one run of bursts measured.
#[derive(Debug)]
pub struct Acc {
    pub pkts: u64,
    pub out: u64,
    pub cycles_total: u64,
    pub cycles_pipeline: u64,
    pub verified: u64,
    pub tx_full: u64,
    pub errors: Vec<String>,
    /// Time per burst, ns.
    pub hist: Histogram<u64>,
    pub allocs: u64,
}

impl Default for Acc {
    fn default() -> Self {
        Acc::new()
    }
}

impl Acc {
    pub fn new() -> Acc {
        Acc {
            pkts: 0,
            out: 0,
            cycles_total: 0,
            cycles_pipeline: 0,
            verified: 0,
            tx_full: 0,
            errors: Vec::new(),
            hist: ns_histogram(),
            allocs: 0,
        }
    }

    /// Note an error (the first few are kept).
    pub fn error(&mut self, e: String) {
        if self.errors.len() < ERRORS_KEPT {
            self.errors.push(e);
        }
    }
}

/// A histogram of nanoseconds from 1 ns to a minute, 3 significant digits.
pub fn ns_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60 * NS_PER_S, 3).expect("valid histogram bounds")
}

/// Figures of a measured run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub pkts: u64,
    pub secs: f64,
    pub mpps: f64,
    pub ns_pkt: f64,
    pub cycles_pkt: f64,
    pub pipe_ns_pkt: f64,
    pub pipe_cycles_pkt: f64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    /// Heap allocations per packet inside the measured loop (should be 0).
    pub allocs_pkt: f64,
}

impl Figures {
    /// The figures of `acc`, its cycles counted by a TSC of `hz`.
    pub fn of(acc: &Acc, hz: u64) -> Figures {
        let secs = acc.cycles_total as f64 / hz as f64;
        let p = acc.pkts.max(1) as f64;
        Figures {
            pkts: acc.pkts,
            secs,
            mpps: acc.pkts as f64 / secs.max(1e-12) / 1e6,
            ns_pkt: secs * 1e9 / p,
            cycles_pkt: acc.cycles_total as f64 / p,
            pipe_ns_pkt: acc.cycles_pipeline as f64 / hz as f64 * 1e9 / p,
            pipe_cycles_pkt: acc.cycles_pipeline as f64 / p,
            p50: acc.hist.value_at_quantile(0.5),
            p99: acc.hist.value_at_quantile(0.99),
            p999: acc.hist.value_at_quantile(0.999),
            max: acc.hist.max(),
            allocs_pkt: acc.allocs as f64 / p,
        }
    }

    /// Pipeline Mpps over bare-forwarder Mpps (`base`).
    pub fn ratio_to(&self, base: &Figures) -> f64 {
        self.mpps / base.mpps.max(1e-12)
    }

    pub fn json(&self) -> serde_json::Value {
        json!({"pkts": self.pkts, "secs": self.secs, "mpps": self.mpps, "ns_per_pkt": self.ns_pkt,
            "cycles_per_pkt": self.cycles_pkt, "pipeline_ns_per_pkt": self.pipe_ns_pkt,
            "pipeline_cycles_per_pkt": self.pipe_cycles_pkt,
            "burst_ns": {"p50": self.p50, "p99": self.p99, "p99_9": self.p999, "max": self.max},
            "heap_allocs_per_pkt": self.allocs_pkt})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_from_counts_and_cycles() {
        // 1000 packets in 2,000,000 cycles of a 1 GHz TSC (2 ms), half of it in the pipeline.
        let mut acc = Acc::new();
        acc.pkts = 1000;
        acc.cycles_total = 2_000_000;
        acc.cycles_pipeline = 1_000_000;
        acc.allocs = 10;
        for ns in 1..=1000u64 {
            acc.hist.record(ns * 100).unwrap();
        }
        let f = Figures::of(&acc, 1_000_000_000);
        assert_eq!(f.pkts, 1000);
        assert!((f.secs - 0.002).abs() < 1e-12);
        assert!((f.mpps - 0.5).abs() < 1e-9, "{}", f.mpps);
        assert!((f.ns_pkt - 2000.0).abs() < 1e-6);
        assert!((f.cycles_pkt - 2000.0).abs() < 1e-9);
        assert!((f.pipe_ns_pkt - 1000.0).abs() < 1e-6);
        assert!((f.pipe_cycles_pkt - 1000.0).abs() < 1e-9);
        assert!((f.allocs_pkt - 0.01).abs() < 1e-12);
        // Quantiles of 100, 200, ..., 100000 ns, to the histogram's 3 significant digits.
        let near = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(near(f.p50, 50_000), "{}", f.p50);
        assert!(near(f.p99, 99_000), "{}", f.p99);
        assert!(near(f.p999, 99_900), "{}", f.p999);
        assert!(near(f.max, 100_000), "{}", f.max);
        let base = Figures { mpps: 2.0, ..Figures::default() };
        assert!((f.ratio_to(&base) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn errors_kept_are_bounded() {
        let mut acc = Acc::new();
        for i in 0..20 {
            acc.error(format!("e{i}"));
        }
        assert_eq!(acc.errors.len(), 8);
        assert_eq!(acc.errors[7], "e7");
    }

    #[test]
    fn empty_run_has_no_nan() {
        let f = Figures::of(&Acc::new(), 2_300_000_000);
        assert_eq!(f.pkts, 0);
        assert_eq!(f.mpps, 0.0);
        assert_eq!(f.ns_pkt, 0.0);
    }
}
