//! Schedulers: which real server gets a new flow. State is per worker and per service.

use rvs_config::model::{RealServer, SchedKind};
use std::net::{Ipv4Addr, SocketAddr};

/// What a scheduler may look at for one new flow.
#[derive(Debug, Clone, Copy)]
pub struct PickCtx<'a> {
    pub client: Ipv4Addr,
    pub client_port: u16,
    /// Per real server (indexed like `reals`): (active, inactive) connections on this worker.
    /// Empty when the caller does not track them (rr and wrr do not need them).
    pub conns: &'a [(u32, u32)],
}

/// Round robin (ip_vs_rr.c): the next server in list order after the last one picked that can
/// take a flow.
#[derive(Debug, Clone, Default)]
struct RrState {
    /// Last server picked; `None` is the list head (the next pick tries index 0 first).
    last: Option<usize>,
}

/// Interleaved weighted round robin (ip_vs_wrr.c), state named as there.
#[derive(Debug, Clone)]
struct WrrState {
    /// Last server picked; `None` is the list head (before the first server).
    cl: Option<usize>,
    /// Current weight: servers with weight ≥ cw are eligible in this round.
    cw: i64,
    /// Max weight less (gcd − 1): the first round's cw.
    mw: i64,
    /// Decrement of cw per round: the gcd of the positive weights.
    di: i64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl WrrState {
    /// gcd over the positive weights (1 when none), as ip_vs_wrr_gcd_weight.
    fn gcd_weight(reals: &[RealServer]) -> i64 {
        let g = reals.iter().filter(|r| r.weight > 0).fold(0u64, |g, r| if g == 0 { r.weight as u64 } else { gcd(r.weight as u64, g) });
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
    fn new(reals: &[RealServer]) -> Self {
        let di = Self::gcd_weight(reals);
        let mw = Self::max_weight(reals) - (di - 1);
        WrrState { cl: None, cw: mw, mw, di }
    }
    /// ip_vs_wrr_dest_changed: restart from the list head, keep cw in range and on the gcd grid.
    fn update(&mut self, reals: &[RealServer]) {
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
    fn pick(&mut self, reals: &[RealServer], ok: impl Fn(usize) -> bool) -> Option<usize> {
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

/// Per-kind state; lc, wlc, sh, dh, fo and mh join as variants.
#[derive(Debug, Clone)]
enum KindState {
    Rr(RrState),
    Wrr(WrrState),
}

/// Scheduler state of one service on one worker.
#[derive(Debug, Clone)]
pub struct SchedState {
    kind: KindState,
    /// (address, weight) of the servers as last given to `new`/`update`: carries per-server
    /// state across list changes, and lets `pick` notice a list it was not told about.
    known: Vec<(SocketAddr, u32)>,
    /// IPVS's IP_VS_DEST_F_OVERLOAD per server: set at the upper threshold, cleared below the
    /// lower one (hysteresis).
    overloaded: Vec<bool>,
}

/// Overload flag with IPVS semantics: set when active + inactive reaches `u_threshold`;
/// cleared once below `l_threshold`, or below 3/4 of `u_threshold` when there is no lower one.
fn overloaded(was: bool, r: &RealServer, (active, inactive): (u32, u32)) -> bool {
    if r.u_threshold == 0 {
        return false;
    }
    let total = active as u64 + inactive as u64;
    let u = r.u_threshold as u64;
    if total >= u {
        return true;
    }
    if !was {
        return false;
    }
    if r.l_threshold != 0 {
        total >= r.l_threshold as u64
    } else {
        total * 4 >= u * 3
    }
}

impl SchedState {
    /// Errors name the scheduler when this build does not implement it.
    pub fn new(kind: SchedKind, reals: &[RealServer]) -> Result<Self, String> {
        let k = match kind {
            SchedKind::Rr => KindState::Rr(RrState::default()),
            SchedKind::Wrr => KindState::Wrr(WrrState::new(reals)),
            SchedKind::Lc | SchedKind::Wlc | SchedKind::Sh | SchedKind::Dh | SchedKind::Fo | SchedKind::Mh => {
                return Err(format!("scheduler '{}' is not implemented yet", kind));
            }
        };
        Ok(SchedState { kind: k, known: Self::known_of(reals), overloaded: vec![false; reals.len()] })
    }

    fn known_of(reals: &[RealServer]) -> Vec<(SocketAddr, u32)> {
        reals.iter().map(|r| (r.addr, r.weight)).collect()
    }

    pub fn kind(&self) -> SchedKind {
        match self.kind {
            KindState::Rr(_) => SchedKind::Rr,
            KindState::Wrr(_) => SchedKind::Wrr,
        }
    }

    /// The real server list changed (added, removed, reweighted): keep the rotation position
    /// where it makes sense, recompute weights.
    ///
    /// Servers are matched by address. rr goes on after the server it picked last, or after the
    /// nearest survivor before it when that one left (as ip_vs_rr_del_dest does); wrr restarts its round from
    /// the list head with the current weight kept in range (ip_vs_wrr_dest_changed). Overload
    /// flags follow their server.
    pub fn update(&mut self, reals: &[RealServer]) {
        let find = |a: SocketAddr| reals.iter().position(|r| r.addr == a);
        let mut overloaded = vec![false; reals.len()];
        for (i, &(a, _)) in self.known.iter().enumerate() {
            if let (Some(j), Some(&o)) = (find(a), self.overloaded.get(i)) {
                overloaded[j] = o;
            }
        }
        match &mut self.kind {
            KindState::Rr(rr) => {
                // The last server picked, or the nearest survivor before it (ip_vs_rr_del_dest
                // steps the pointer back); the list head when none.
                let old = &self.known;
                rr.last = rr.last.and_then(|l| (0..=l.min(old.len().saturating_sub(1))).rev().find_map(|i| old.get(i).and_then(|k| find(k.0))));
            }
            KindState::Wrr(w) => w.update(reals),
        }
        self.overloaded = overloaded;
        self.known = Self::known_of(reals);
    }

    /// Index into `reals` of the server for a new flow; `None` when no server can take one
    /// (all weight 0, or over their upper threshold). Weight 0 servers are never picked.
    ///
    /// Thresholds are looked at only when `ctx.conns` is given. A list that differs from the one
    /// last given to `new`/`update` (addresses or weights) is taken as an implicit `update`.
    pub fn pick(&mut self, reals: &[RealServer], ctx: &PickCtx<'_>) -> Option<usize> {
        let n = reals.len();
        if n == 0 {
            return None;
        }
        if self.known.len() != n || self.known.iter().zip(reals).any(|(k, r)| k.0 != r.addr || k.1 != r.weight) {
            // The caller changed the list without `update`: catch up now.
            self.update(reals);
        }
        if !ctx.conns.is_empty() {
            for (i, r) in reals.iter().enumerate() {
                let c = ctx.conns.get(i).copied().unwrap_or((0, 0));
                self.overloaded[i] = overloaded(self.overloaded[i], r, c);
            }
        }
        let flags = &self.overloaded;
        let ok = |i: usize| !flags[i];
        if !(0..n).any(|i| ok(i) && reals[i].weight > 0) {
            return None;
        }
        match &mut self.kind {
            KindState::Rr(rr) => {
                let start = rr.last.map_or(0, |l| l + 1);
                let i = (0..n).map(|k| (start + k) % n).find(|&i| ok(i) && reals[i].weight > 0)?;
                rr.last = Some(i);
                Some(i)
            }
            KindState::Wrr(w) => w.pick(reals, ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_config::model::FwdMode;

    fn rs(last: u8, weight: u32) -> RealServer {
        RealServer {
            addr: SocketAddr::new(Ipv4Addr::new(203, 0, 113, last).into(), 80),
            fwd: FwdMode::Dr,
            weight,
            u_threshold: 0,
            l_threshold: 0,
        }
    }
    fn ctx(conns: &[(u32, u32)]) -> PickCtx<'_> {
        PickCtx { client: Ipv4Addr::new(198, 51, 100, 1), client_port: 40000, conns }
    }
    fn picks(s: &mut SchedState, reals: &[RealServer], n: usize) -> Vec<Option<usize>> {
        (0..n).map(|_| s.pick(reals, &ctx(&[]))).collect()
    }
    fn some(v: &[usize]) -> Vec<Option<usize>> {
        v.iter().map(|&i| Some(i)).collect()
    }

    #[test]
    fn unimplemented_kinds_are_named() {
        for k in [SchedKind::Lc, SchedKind::Wlc, SchedKind::Sh, SchedKind::Dh, SchedKind::Fo, SchedKind::Mh] {
            let e = SchedState::new(k, &[rs(1, 1)]).unwrap_err();
            assert_eq!(e, format!("scheduler '{}' is not implemented yet", k.name()));
        }
        assert_eq!(SchedState::new(SchedKind::Rr, &[]).unwrap().kind(), SchedKind::Rr);
        assert_eq!(SchedState::new(SchedKind::Wrr, &[]).unwrap().kind(), SchedKind::Wrr);
    }

    #[test]
    fn empty_and_all_zero_give_none() {
        for k in [SchedKind::Rr, SchedKind::Wrr] {
            let mut s = SchedState::new(k, &[]).unwrap();
            assert_eq!(s.pick(&[], &ctx(&[])), None);
            let zero = [rs(1, 0), rs(2, 0)];
            s.update(&zero);
            assert_eq!(picks(&mut s, &zero, 3), vec![None; 3]);
            let mut s = SchedState::new(k, &zero).unwrap();
            assert_eq!(picks(&mut s, &zero, 3), vec![None; 3]);
            // A list the state never saw (no update) must not panic either.
            let other = [rs(1, 1), rs(2, 1), rs(3, 1), rs(4, 1)];
            assert!(s.pick(&other, &ctx(&[(0, 0)])).is_some());
        }
    }

    #[test]
    fn rr_strict_alternation() {
        let reals = [rs(1, 1), rs(2, 5), rs(3, 1)];
        let mut s = SchedState::new(SchedKind::Rr, &reals).unwrap();
        assert_eq!(picks(&mut s, &reals, 7), some(&[0, 1, 2, 0, 1, 2, 0]));
    }

    #[test]
    fn rr_skips_weight_zero_and_re_adds() {
        let reals = [rs(1, 1), rs(2, 0), rs(3, 1)];
        let mut s = SchedState::new(SchedKind::Rr, &reals).unwrap();
        assert_eq!(picks(&mut s, &reals, 4), some(&[0, 2, 0, 2]));
        // Reweight server 2 to 1: it joins the rotation (after .3, last picked, comes .1).
        let reals2 = [rs(1, 1), rs(2, 1), rs(3, 1)];
        s.update(&reals2);
        assert_eq!(picks(&mut s, &reals2, 4), some(&[0, 1, 2, 0]));
        // Remove it: next after .1 is .3.
        let reals3 = [rs(1, 1), rs(3, 1)];
        s.update(&reals3);
        assert_eq!(picks(&mut s, &reals3, 3), some(&[1, 0, 1]));
        // Add it back at the end: after .3 comes .2 now.
        let reals4 = [rs(1, 1), rs(3, 1), rs(2, 1)];
        s.update(&reals4);
        assert_eq!(picks(&mut s, &reals4, 4), some(&[2, 0, 1, 2]));
        // Back to weight 0 without an update call: the pick notices the changed list.
        let reals5 = [rs(1, 1), rs(3, 1), rs(2, 0)];
        assert_eq!(picks(&mut s, &reals5, 3), some(&[0, 1, 0]));
    }

    #[test]
    fn rr_update_after_removing_the_next_server() {
        let reals = [rs(1, 1), rs(2, 1), rs(3, 1), rs(4, 1)];
        let mut s = SchedState::new(SchedKind::Rr, &reals).unwrap();
        assert_eq!(picks(&mut s, &reals, 2), some(&[0, 1]));
        // The one just picked (index 1) and the one to come (index 2) leave: go on with .4.
        let reals2 = [rs(1, 1), rs(4, 1)];
        s.update(&reals2);
        assert_eq!(picks(&mut s, &reals2, 3), some(&[1, 0, 1]));
        // The last one picked was .4 (the last index); removing everything but .1 works too.
        let reals3 = [rs(1, 1)];
        s.update(&reals3);
        assert_eq!(picks(&mut s, &reals3, 2), some(&[0, 0]));
        s.update(&[]);
        assert_eq!(s.pick(&[], &ctx(&[])), None);
        s.update(&reals);
        assert_eq!(picks(&mut s, &reals, 4), some(&[0, 1, 2, 3]));
    }

    #[test]
    fn wrr_ratio_3_to_1() {
        let reals = [rs(1, 3), rs(2, 1)];
        let mut s = SchedState::new(SchedKind::Wrr, &reals).unwrap();
        let p = picks(&mut s, &reals, 400);
        assert_eq!(p.iter().filter(|&&x| x == Some(0)).count(), 300);
        assert_eq!(p.iter().filter(|&&x| x == Some(1)).count(), 100);
        // cw 3: A; cw 2: A; cw 1: A B.
        assert_eq!(&p[..8], &some(&[0, 0, 0, 1, 0, 0, 0, 1])[..]);
    }

    #[test]
    fn wrr_interleaving_4_3_2() {
        // ip_vs_wrr: mw 4, di 1. cw 4: A. cw 3: A B. cw 2: A B C. cw 1: A B C.
        let reals = [rs(1, 4), rs(2, 3), rs(3, 2)];
        let mut s = SchedState::new(SchedKind::Wrr, &reals).unwrap();
        let seq = some(&[0, 0, 1, 0, 1, 2, 0, 1, 2]);
        assert_eq!(picks(&mut s, &reals, 9), seq);
        assert_eq!(picks(&mut s, &reals, 9), seq);
    }

    #[test]
    fn wrr_gcd_and_zero_weights() {
        // Weights 4 and 2 (gcd 2) behave as 2:1; the weight-0 server is never picked.
        let reals = [rs(1, 4), rs(2, 0), rs(3, 2)];
        let mut s = SchedState::new(SchedKind::Wrr, &reals).unwrap();
        assert_eq!(picks(&mut s, &reals, 6), some(&[0, 0, 2, 0, 0, 2]));
        // Equal weights: plain rotation.
        let eq = [rs(1, 5), rs(2, 5), rs(3, 5)];
        let mut s = SchedState::new(SchedKind::Wrr, &eq).unwrap();
        assert_eq!(picks(&mut s, &eq, 6), some(&[0, 1, 2, 0, 1, 2]));
    }

    #[test]
    fn wrr_update_keeps_working() {
        let reals = [rs(1, 4), rs(2, 3), rs(3, 2)];
        let mut s = SchedState::new(SchedKind::Wrr, &reals).unwrap();
        assert_eq!(picks(&mut s, &reals, 3), some(&[0, 0, 1]));
        // Remove the server picked last (index 1) and the heavy one goes to weight 0.
        let reals2 = [rs(1, 0), rs(3, 2)];
        s.update(&reals2);
        assert_eq!(picks(&mut s, &reals2, 4), some(&[1, 1, 1, 1]));
        // Back to 4:2:... with a new server of weight 6: gcd 2, ratio 2:1:3 over 12 picks.
        let reals3 = [rs(1, 4), rs(3, 2), rs(4, 6)];
        s.update(&reals3);
        let p = picks(&mut s, &reals3, 12);
        let count = |i| p.iter().filter(|&&x| x == Some(i)).count();
        assert_eq!((count(0), count(1), count(2)), (4, 2, 6), "{p:?}");
        // Everything removed, then one server.
        s.update(&[]);
        assert_eq!(s.pick(&[], &ctx(&[])), None);
        let one = [rs(9, 7)];
        s.update(&one);
        assert_eq!(picks(&mut s, &one, 3), some(&[0, 0, 0]));
    }

    #[test]
    fn wrr_long_run_ratios() {
        let reals = [rs(1, 5), rs(2, 1), rs(3, 0), rs(4, 3), rs(5, 7)];
        let mut s = SchedState::new(SchedKind::Wrr, &reals).unwrap();
        let p = picks(&mut s, &reals, 16 * 100);
        for (i, w) in [5, 1, 0, 3, 7].into_iter().enumerate() {
            assert_eq!(p.iter().filter(|&&x| x == Some(i)).count(), w * 100, "server {i}");
        }
    }

    #[test]
    fn thresholds_with_hysteresis() {
        for kind in [SchedKind::Rr, SchedKind::Wrr] {
            let mut a = rs(1, 1);
            a.u_threshold = 4; // no lower threshold: back below 3/4 × 4 = 3
            let mut b = rs(2, 1);
            b.u_threshold = 10;
            b.l_threshold = 5;
            let reals = [a, b];
            let mut s = SchedState::new(kind, &reals).unwrap();
            let p = |s: &mut SchedState, c: &[(u32, u32)]| s.pick(&reals, &ctx(c));
            // Under the thresholds: both.
            assert_eq!(p(&mut s, &[(1, 1), (0, 0)]), Some(0));
            assert_eq!(p(&mut s, &[(1, 1), (0, 0)]), Some(1));
            // a reaches 4 (active + inactive): only b.
            assert_eq!(p(&mut s, &[(2, 2), (0, 0)]), Some(1));
            assert_eq!(p(&mut s, &[(2, 2), (0, 0)]), Some(1));
            // a at 3: still overloaded (not below 3).
            assert_eq!(p(&mut s, &[(3, 0), (0, 0)]), Some(1));
            // a at 2: clear again.
            assert_eq!(p(&mut s, &[(2, 0), (0, 0)]), Some(0));
            // Both overloaded: none.
            assert_eq!(p(&mut s, &[(4, 0), (10, 0)]), None);
            // b down to 5: still over (needs < 5); a to 3: still over.
            assert_eq!(p(&mut s, &[(3, 0), (5, 0)]), None);
            // b at 4: back.
            assert_eq!(p(&mut s, &[(3, 0), (4, 0)]), Some(1));
            // Untracked (empty conns) ignores thresholds: flags left as they were (a still
            // over), b picks.
            assert_eq!(p(&mut s, &[]), Some(1));
            // Overload flags follow the server across an update that reorders the list.
            let reals_rev = [b, a];
            s.update(&reals_rev);
            assert_eq!(s.pick(&reals_rev, &ctx(&[(0, 0), (3, 0)])), Some(0));
            assert_eq!(s.pick(&reals_rev, &ctx(&[(0, 0), (3, 0)])), Some(0));
            assert!(s.pick(&reals_rev, &ctx(&[(0, 0), (0, 0)])).is_some());
        }
    }

    #[test]
    fn zero_thresholds_never_overload() {
        let reals = [rs(1, 1), rs(2, 1)];
        let mut s = SchedState::new(SchedKind::Rr, &reals).unwrap();
        let c = [(u32::MAX, u32::MAX), (u32::MAX, u32::MAX)];
        assert_eq!(s.pick(&reals, &ctx(&c)), Some(0));
        assert_eq!(s.pick(&reals, &ctx(&c)), Some(1));
        // A conns slice shorter than the list counts the missing ones as idle.
        assert_eq!(s.pick(&reals, &ctx(&c[..1])), Some(0));
    }

    #[test]
    fn wrr_with_overloaded_servers() {
        let mut a = rs(1, 4);
        a.u_threshold = 1;
        let reals = [a, rs(2, 3), rs(3, 2)];
        let mut s = SchedState::new(SchedKind::Wrr, &reals).unwrap();
        // a overloaded: b and c keep their 3:2 share.
        let c = [(1, 0), (0, 0), (0, 0)];
        let p: Vec<_> = (0..50).map(|_| s.pick(&reals, &ctx(&c))).collect();
        assert_eq!(p.iter().filter(|&&x| x == Some(1)).count(), 30);
        assert_eq!(p.iter().filter(|&&x| x == Some(2)).count(), 20);
        // All overloaded: None, quickly and repeatedly.
        let mut b = rs(2, 3);
        b.u_threshold = 1;
        let mut cc = rs(3, 2);
        cc.u_threshold = 1;
        let all = [a, b, cc];
        s.update(&all);
        for _ in 0..3 {
            assert_eq!(s.pick(&all, &ctx(&[(1, 0), (0, 1), (5, 5)])), None);
        }
        assert!(s.pick(&all, &ctx(&[(0, 0), (0, 0), (0, 0)])).is_some());
    }
}
