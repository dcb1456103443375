//! Stateless schedulers over connection counts and weights: least connection (ip_vs_lc.c),
//! weighted least connection (ip_vs_wlc.c) and weighted failover (ip_vs_fo.c).
//!
//! `avail(i)`: server i has weight > 0 and is not overloaded. Ties go to the first server in
//! list order, as the kernel's strict comparisons do.

use rvs_model::RealServer;

/// ip_vs_dest_conn_overhead: an active connection weighs as much as 256 inactive ones (which
/// mostly are TIME_WAIT leftovers).
fn overhead(conns: &[(u32, u32)], i: usize) -> u64 {
    let (active, inactive) = conns.get(i).copied().unwrap_or((0, 0));
    ((active as u64) << 8) + inactive as u64
}

/// ip_vs_lc_schedule: the available server of lowest overhead.
pub(super) fn lc(n: usize, conns: &[(u32, u32)], avail: impl Fn(usize) -> bool) -> Option<usize> {
    let mut least: Option<(usize, u64)> = None;
    for i in (0..n).filter(|&i| avail(i)) {
        let doh = overhead(conns, i);
        match least {
            Some((_, loh)) if doh >= loh => {}
            _ => least = Some((i, doh)),
        }
    }
    least.map(|(i, _)| i)
}

/// ip_vs_wlc_schedule: the available server of lowest overhead / weight, compared by
/// cross-multiplication (loh × w > doh × lw) so no division is done. u128: overhead < 2^41
/// and weight < 2^32.
pub(super) fn wlc(reals: &[RealServer], conns: &[(u32, u32)], avail: impl Fn(usize) -> bool) -> Option<usize> {
    let mut least: Option<(usize, u128, u128)> = None;
    for i in (0..reals.len()).filter(|&i| avail(i)) {
        let (doh, w) = (overhead(conns, i) as u128, reals[i].weight as u128);
        match least {
            Some((_, loh, lw)) if loh * w <= doh * lw => {}
            _ => least = Some((i, doh, w)),
        }
    }
    least.map(|(i, _, _)| i)
}

/// ip_vs_fo_schedule: the available server of highest weight.
pub(super) fn fo(reals: &[RealServer], avail: impl Fn(usize) -> bool) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    for i in (0..reals.len()).filter(|&i| avail(i)) {
        match best {
            Some((_, hw)) if reals[i].weight <= hw => {}
            _ => best = Some((i, reals[i].weight)),
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::SchedState;
    use rvs_model::{RealServer, SchedKind};

    fn pick(kind: SchedKind, reals: &[RealServer], conns: &[(u32, u32)]) -> Option<usize> {
        SchedState::new(kind, reals).pick(reals, &ctx(conns))
    }

    #[test]
    fn lc_counts_active_as_256_inactive() {
        let reals = [rs(1, 1), rs(2, 1), rs(3, 1)];
        let lc = |c: &[(u32, u32)]| pick(SchedKind::Lc, &reals, c);
        assert_eq!(lc(&[(3, 0), (1, 0), (2, 0)]), Some(1));
        // 1 active (256) against 255 inactive: the inactive ones win.
        assert_eq!(lc(&[(1, 0), (0, 255), (1, 0)]), Some(1));
        // 256 inactive ties with 1 active: the first in list order.
        assert_eq!(lc(&[(1, 0), (0, 256), (1, 0)]), Some(0));
        assert_eq!(lc(&[(5, 5), (5, 5), (5, 4)]), Some(2));
        // Weight is ignored by lc, but for 0 (never picked).
        let w = [rs(1, 0), rs(2, 100), rs(3, 1)];
        assert_eq!(pick(SchedKind::Lc, &w, &[(0, 0), (1, 0), (0, 0)]), Some(2));
        // Untracked or short counts: missing ones are idle.
        assert_eq!(lc(&[]), Some(0));
        assert_eq!(lc(&[(1, 0)]), Some(1));
        // Saturated counters do not overflow.
        assert_eq!(lc(&[(u32::MAX, u32::MAX), (u32::MAX, u32::MAX - 1), (u32::MAX, u32::MAX)]), Some(1));
    }

    #[test]
    fn lc_skips_overloaded() {
        let mut a = rs(1, 1);
        a.u_threshold = 2;
        let reals = [a, rs(2, 1)];
        let mut s = SchedState::new(SchedKind::Lc, &reals);
        // a is idler but at its threshold.
        assert_eq!(s.pick(&reals, &ctx(&[(2, 0), (9, 0)])), Some(1));
        assert_eq!(s.pick(&reals, &ctx(&[(1, 0), (9, 0)])), Some(0));
    }

    #[test]
    fn wlc_divides_by_weight_without_dividing() {
        let reals = [rs(1, 1), rs(2, 3), rs(3, 2)];
        let wlc = |c: &[(u32, u32)]| pick(SchedKind::Wlc, &reals, c);
        // 256/1, 512/3 ≈ 171, 512/2 = 256: the weight-3 server.
        assert_eq!(wlc(&[(1, 0), (2, 0), (2, 0)]), Some(1));
        // 256/1 = 768/3: tie, the first.
        assert_eq!(wlc(&[(1, 0), (3, 0), (9, 0)]), Some(0));
        // All idle: the first.
        assert_eq!(wlc(&[]), Some(0));
        // Weight 0 never, even when idle; others with saturated counters and huge weights
        // compare without overflow.
        let big = [rs(1, 0), rs(2, u32::MAX), rs(3, u32::MAX - 1)];
        let c = [(0, 0), (u32::MAX, u32::MAX), (u32::MAX, u32::MAX)];
        assert_eq!(pick(SchedKind::Wlc, &big, &c), Some(1));
        let mut over = reals;
        over[1].u_threshold = 2;
        assert_eq!(pick(SchedKind::Wlc, &over, &[(1, 0), (2, 0), (2, 0)]), Some(0));
    }

    #[test]
    fn wlc_long_run_follows_weights() {
        // Connections that never close: wlc keeps overhead/weight level, so counts follow
        // the weights.
        let reals = [rs(1, 1), rs(2, 3), rs(3, 2), rs(4, 0)];
        let mut s = SchedState::new(SchedKind::Wlc, &reals);
        let mut conns = [(0u32, 0u32); 4];
        for _ in 0..600 {
            let i = s.pick(&reals, &ctx(&conns)).unwrap();
            conns[i].0 += 1;
        }
        assert_eq!(conns.map(|c| c.0), [100, 300, 200, 0]);
    }

    #[test]
    fn fo_takes_the_heaviest_available() {
        let mut reals = [rs(1, 2), rs(2, 5), rs(3, 5), rs(4, 3)];
        assert_eq!(pick(SchedKind::Fo, &reals, &[]), Some(1));
        reals[1].u_threshold = 1;
        let c = [(0, 0), (1, 0), (0, 0), (0, 0)];
        assert_eq!(pick(SchedKind::Fo, &reals, &c), Some(2), "tie with the overloaded one: next");
        reals[2].weight = 0;
        assert_eq!(pick(SchedKind::Fo, &reals, &c), Some(3));
        // Always the same one while nothing changes, whatever the load.
        let mut s = SchedState::new(SchedKind::Fo, &reals);
        for k in 0..10 {
            assert_eq!(s.pick(&reals, &ctx(&[(0, 0), (1, 0), (0, 0), (k, k)])), Some(3));
        }
    }
}
