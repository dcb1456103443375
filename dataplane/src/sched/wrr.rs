//! Interleaved weighted round robin (ip_vs_wrr.c).

use super::gcd;
use rvs_model::RealServer;

/// Interleaved weighted round robin (ip_vs_wrr.c), state named as there.
#[derive(Debug, Clone)]
pub(super) struct WrrState {
    /// Last server picked; `None` is the list head (before the first server).
    cl: Option<usize>,
    /// Current weight: servers with weight ≥ cw are eligible in this round.
    cw: i64,
    /// Max weight less (gcd − 1): the first round's cw.
    mw: i64,
    /// Decrement of cw per round: the gcd of the positive weights.
    di: i64,
}

impl WrrState {
    /// gcd over the positive weights (1 when none), as ip_vs_wrr_gcd_weight.
    fn gcd_weight(reals: &[RealServer]) -> i64 {
        let g = reals.iter().filter(|r| r.weight > 0).fold(0u64, |g, r| {
            if g == 0 {
                r.weight as u64
            } else {
                gcd(r.weight as u64, g)
            }
        });
        if g == 0 {
            1
        } else {
            g as i64
        }
    }
    fn max_weight(reals: &[RealServer]) -> i64 {
        reals.iter().map(|r| r.weight as i64).max().unwrap_or(0)
    }
    /// ip_vs_wrr_init_svc.
    pub(super) fn new(reals: &[RealServer]) -> Self {
        let di = Self::gcd_weight(reals);
        let mw = Self::max_weight(reals) - (di - 1);
        WrrState { cl: None, cw: mw, mw, di }
    }
    /// ip_vs_wrr_dest_changed: restart from the list head, keep cw in range and on the gcd grid.
    pub(super) fn update(&mut self, reals: &[RealServer]) {
        self.cl = None;
        self.di = Self::gcd_weight(reals);
        self.mw = Self::max_weight(reals) - (self.di - 1);
        if self.cw > self.mw || self.cw <= 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }
    /// ip_vs_wrr_schedule, on indices. `ok(i)`: server i is not overloaded.
    pub(super) fn pick(&mut self, reals: &[RealServer], ok: impl Fn(usize) -> bool) -> Option<usize> {
        if self.mw <= 0 {
            return None;
        }
        let last = self.cl;
        let mut from = self.cl;
        let mut stop: Option<usize> = None;
        let (mut last_pass, mut restarted) = (false, false);
        // The kernel loop ends by itself (a last pass from the head covers every positive
        // weight); the bound only guards the "never hang" promise against inconsistent input.
        let rounds = (self.mw / self.di) as u64 * 2 + 4;
        for _ in 0..rounds {
            let start = from.map_or(0, |i| i + 1);
            for (i, r) in reals.iter().enumerate().skip(start) {
                if ok(i) && r.weight as i64 >= self.cw {
                    self.cl = Some(i);
                    return Some(i);
                }
                if stop == Some(i) {
                    return None;
                }
            }
            from = None;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                // Stop when the last pass was done, or when the first and only traversal
                // started from the head and so already covered every server for weight ≥ 1.
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                // The weight ≥ 1 pass began after `last`: finish it up to `last`.
                stop = last;
            }
        }
        None
    }
}
