//! Schedulers: which real server gets a new flow. State is per worker and per service.
//!
//! Every scheduler follows its Linux IPVS namesake (net/netfilter/ipvs/ip_vs_<name>.c):
//! rotation (rr, wrr), fewest connections (lc, wlc), highest weight (fo), 256-bucket hashing of
//! the client (sh) or destination (dh) address, and Maglev hashing (mh). A server is
//! *available* when its weight is > 0 and it is not overloaded (IPVS's IP_VS_DEST_F_OVERLOAD,
//! from `u_threshold`/`l_threshold`); only available servers are ever picked.
//!
//! `pick` runs per new flow: it allocates nothing and cannot panic, for every kind, as long as
//! it is given the list last passed to `new`/`update` (a different list is taken as an implicit
//! `update`, which may allocate). The one costly structure, mh's lookup table, is built by
//! [`MaglevTable::build`], meant for the control plane: once per change, shared (`Arc`) by every
//! worker through [`SchedState::new_with_table`] / [`SchedState::update_with_table`].

mod hash;
mod least;
mod maglev;
mod wrr;

pub use maglev::{MaglevTable, MAGLEV_SIZES};

use hash::HashTable;
use rvs_model::{RealServer, SchedKind};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use wrr::WrrState;

/// What a scheduler may look at for one new flow.
#[derive(Debug, Clone, Copy)]
pub struct PickCtx<'a> {
    pub client: Ipv4Addr,
    pub client_port: u16,
    /// Destination address of the flow (the VIP): what dh hashes.
    pub dest: Ipv4Addr,
    /// Per real server (indexed like `reals`): (active, inactive) connections on this worker.
    /// Empty when the caller does not track them (rr and wrr do not need them; lc and wlc then
    /// see every server as idle, and thresholds are not looked at).
    pub conns: &'a [(u32, u32)],
}

/// Round robin (ip_vs_rr.c): the next server in list order after the last one picked that can
/// take a flow.
#[derive(Debug, Clone, Default)]
struct RrState {
    /// Last server picked; `None` is the list head (the next pick tries index 0 first).
    last: Option<usize>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Per-kind state.
#[derive(Debug, Clone)]
enum KindState {
    Rr(RrState),
    Wrr(WrrState),
    /// Least connection (ip_vs_lc.c): stateless, works on `PickCtx::conns`.
    Lc,
    /// Weighted least connection (ip_vs_wlc.c): stateless, works on `PickCtx::conns`.
    Wlc,
    /// Weighted failover (ip_vs_fo.c): stateless.
    Fo,
    /// Source hashing (ip_vs_sh.c) on the client address.
    Sh(HashTable),
    /// Destination hashing on the flow's destination address (see `hash` for how it departs
    /// from ip_vs_dh.c).
    Dh(HashTable),
    /// Maglev hashing (ip_vs_mh.c); the table may be shared with other workers.
    Mh(Arc<MaglevTable>),
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
    /// State for a new service. mh builds its table here (size [`MaglevTable::DEFAULT_SIZE`]);
    /// use [`SchedState::new_with_table`] to hand it one built off the packet path.
    pub fn new(kind: SchedKind, reals: &[RealServer]) -> Self {
        Self::new_with_table(kind, reals, None)
    }

    /// As [`SchedState::new`], with mh using `table` when it was built from this very list
    /// ([`MaglevTable::matches`]); otherwise mh builds its own, of `table`'s size when one was
    /// given, else of the default size. Other kinds ignore `table`.
    pub fn new_with_table(kind: SchedKind, reals: &[RealServer], table: Option<Arc<MaglevTable>>) -> Self {
        let k = match kind {
            SchedKind::Rr => KindState::Rr(RrState::default()),
            SchedKind::Wrr => KindState::Wrr(WrrState::new(reals)),
            SchedKind::Lc => KindState::Lc,
            SchedKind::Wlc => KindState::Wlc,
            SchedKind::Fo => KindState::Fo,
            SchedKind::Sh => KindState::Sh(HashTable::build(reals)),
            SchedKind::Dh => KindState::Dh(HashTable::build(reals)),
            SchedKind::Mh => KindState::Mh(match table {
                Some(t) if t.matches(reals) => t,
                other => Arc::new(MaglevTable::build(reals, other.map_or(MaglevTable::DEFAULT_SIZE, |t| t.size()))),
            }),
        };
        SchedState { kind: k, known: Self::known_of(reals), overloaded: vec![false; reals.len()] }
    }

    fn known_of(reals: &[RealServer]) -> Vec<(SocketAddr, u32)> {
        reals.iter().map(|r| (r.addr, r.weight)).collect()
    }

    pub fn kind(&self) -> SchedKind {
        match self.kind {
            KindState::Rr(_) => SchedKind::Rr,
            KindState::Wrr(_) => SchedKind::Wrr,
            KindState::Lc => SchedKind::Lc,
            KindState::Wlc => SchedKind::Wlc,
            KindState::Fo => SchedKind::Fo,
            KindState::Sh(_) => SchedKind::Sh,
            KindState::Dh(_) => SchedKind::Dh,
            KindState::Mh(_) => SchedKind::Mh,
        }
    }

    /// mh's lookup table (`None` for the other kinds), e.g. to share it with another worker.
    pub fn maglev_table(&self) -> Option<&Arc<MaglevTable>> {
        match &self.kind {
            KindState::Mh(t) => Some(t),
            _ => None,
        }
    }

    /// The real server list changed (added, removed, reweighted): keep the rotation position
    /// where it makes sense, recompute weights and tables.
    ///
    /// Servers are matched by address. rr goes on after the server it picked last, or after the
    /// nearest survivor before it when that one left (as ip_vs_rr_del_dest does); wrr restarts its round from
    /// the list head with the current weight kept in range (ip_vs_wrr_dest_changed); sh and dh
    /// refill their 256 buckets; mh keeps its table when it already matches `reals` and
    /// otherwise rebuilds it here, at the same size (an O(M log M) job: prefer
    /// [`SchedState::update_with_table`] with a table built once for all workers). Overload
    /// flags follow their server.
    pub fn update(&mut self, reals: &[RealServer]) {
        self.update_with_table(reals, None)
    }

    /// As [`SchedState::update`], with mh taking `table` when it matches `reals`.
    pub fn update_with_table(&mut self, reals: &[RealServer], table: Option<Arc<MaglevTable>>) {
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
                rr.last = rr.last.and_then(|l| {
                    (0..=l.min(old.len().saturating_sub(1))).rev().find_map(|i| old.get(i).and_then(|k| find(k.0)))
                });
            }
            KindState::Wrr(w) => w.update(reals),
            KindState::Lc | KindState::Wlc | KindState::Fo => {}
            KindState::Sh(t) | KindState::Dh(t) => *t = HashTable::build(reals),
            KindState::Mh(t) => match table {
                Some(given) if given.matches(reals) => *t = given,
                _ if t.matches(reals) => {}
                _ => *t = Arc::new(MaglevTable::build(reals, t.size())),
            },
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
        self.pick_current(reals, ctx)
    }

    /// [`SchedState::pick`] for a caller that always calls `update` when the list changes (the
    /// worker does, on each snapshot): skips comparing the list with the known one.
    pub fn pick_current(&mut self, reals: &[RealServer], ctx: &PickCtx<'_>) -> Option<usize> {
        let n = reals.len();
        if n == 0 || self.known.len() != n {
            return if n == 0 { None } else { self.pick(reals, ctx) };
        }
        debug_assert!(
            self.known.iter().zip(reals).all(|(k, r)| k.0 == r.addr && k.1 == r.weight),
            "list changed without update"
        );
        if !ctx.conns.is_empty() {
            for (i, r) in reals.iter().enumerate() {
                let c = ctx.conns.get(i).copied().unwrap_or((0, 0));
                self.overloaded[i] = overloaded(self.overloaded[i], r, c);
            }
        }
        let flags = &self.overloaded;
        let ok = |i: usize| !flags[i];
        // Index-checked: hash tables hold indices, and must not panic on a stale one.
        let avail = |i: usize| i < n && !flags[i] && reals[i].weight > 0;
        if !(0..n).any(avail) {
            return None;
        }
        match &mut self.kind {
            KindState::Rr(rr) => {
                let start = rr.last.map_or(0, |l| l + 1);
                let i = (0..n).map(|k| (start + k) % n).find(|&i| avail(i))?;
                rr.last = Some(i);
                Some(i)
            }
            KindState::Wrr(w) => w.pick(reals, ok),
            KindState::Lc => least::lc(n, ctx.conns, avail),
            KindState::Wlc => least::wlc(reals, ctx.conns, avail),
            KindState::Fo => least::fo(reals, avail),
            KindState::Sh(t) => t.lookup(ctx.client, avail),
            KindState::Dh(t) => t.lookup(ctx.dest, avail),
            KindState::Mh(t) => t.lookup_available(ctx.client, avail),
        }
    }
}

/// Shared by the tests of every scheduler.
#[cfg(test)]
mod testutil {
    use super::*;
    use rvs_model::FwdMode;

    pub(super) const ALL: [SchedKind; 8] = SchedKind::ALL;
    pub(super) fn rs(last: u8, weight: u32) -> RealServer {
        rs_at(SocketAddr::new(Ipv4Addr::new(203, 0, 113, last).into(), 80), weight)
    }
    pub(super) fn rs_at(addr: SocketAddr, weight: u32) -> RealServer {
        RealServer { addr, fwd: FwdMode::Dr, weight, u_threshold: 0, l_threshold: 0 }
    }
    /// `n` distinct servers of weight `w` (203.0.113.1-250, port 80 upwards).
    pub(super) fn many(n: usize, w: u32) -> Vec<RealServer> {
        (0..n)
            .map(|i| {
                rs_at(SocketAddr::new(Ipv4Addr::new(203, 0, 113, (1 + i % 250) as u8).into(), 80 + (i / 250) as u16), w)
            })
            .collect()
    }
    pub(super) fn ctx(conns: &[(u32, u32)]) -> PickCtx<'_> {
        ctx_from(Ipv4Addr::new(198, 51, 100, 1), conns)
    }
    pub(super) fn ctx_from(client: Ipv4Addr, conns: &[(u32, u32)]) -> PickCtx<'_> {
        PickCtx { client, client_port: 40000, dest: Ipv4Addr::new(192, 0, 2, 10), conns }
    }
    /// The 768 addresses of the three documentation networks (RFC 5737), as clients.
    pub(super) fn clients() -> impl Iterator<Item = Ipv4Addr> {
        [[192, 0, 2], [198, 51, 100], [203, 0, 113]]
            .into_iter()
            .flat_map(|[a, b, c]| (0..=255u8).map(move |d| Ipv4Addr::new(a, b, c, d)))
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    fn picks(s: &mut SchedState, reals: &[RealServer], n: usize) -> Vec<Option<usize>> {
        (0..n).map(|_| s.pick(reals, &ctx(&[]))).collect()
    }
    fn some(v: &[usize]) -> Vec<Option<usize>> {
        v.iter().map(|&i| Some(i)).collect()
    }

    #[test]
    fn every_kind_is_implemented() {
        for k in ALL {
            assert_eq!(SchedState::new(k, &[]).kind(), k);
            assert_eq!(SchedState::new(k, &[rs(1, 1)]).kind(), k);
        }
    }

    /// Every kind, on pseudo-random lists, weights, thresholds and loads: a pick is an
    /// available server, and `None` only when there is none.
    #[test]
    fn every_kind_picks_only_available_servers() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for k in ALL {
            let mut s = SchedState::new(k, &[]);
            for round in 0..300 {
                let n = rnd(8) as usize;
                let mut reals = many(n, 1);
                let mut conns = Vec::new();
                for r in reals.iter_mut() {
                    r.weight = [0, 1, 2, 5, 100][rnd(5) as usize];
                    r.u_threshold = rnd(4) as u32;
                    conns.push((rnd(3) as u32, rnd(3) as u32));
                }
                if round % 3 == 0 {
                    s.update(&reals);
                }
                // Overload as `overloaded` computes it from scratch (hysteresis aside: flags
                // were set by earlier rounds, so only servers clearly under or over are checked).
                let over = |i: usize| reals[i].u_threshold != 0 && conns[i].0 + conns[i].1 >= reals[i].u_threshold;
                let under =
                    |i: usize| reals[i].u_threshold == 0 || (conns[i].0 + conns[i].1) * 4 < reals[i].u_threshold * 3;
                for c in clients().step_by(97) {
                    match s.pick(&reals, &ctx_from(c, &conns)) {
                        Some(i) => assert!(i < n && reals[i].weight > 0 && !over(i), "{k}: {i} of {reals:?} {conns:?}"),
                        None => assert!(
                            (0..n).all(|i| reals[i].weight == 0 || !under(i)),
                            "{k}: none of {reals:?} {conns:?}"
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn empty_and_all_zero_give_none() {
        for k in ALL {
            let mut s = SchedState::new(k, &[]);
            assert_eq!(s.pick(&[], &ctx(&[])), None);
            let zero = [rs(1, 0), rs(2, 0)];
            s.update(&zero);
            assert_eq!(picks(&mut s, &zero, 3), vec![None; 3]);
            let mut s = SchedState::new(k, &zero);
            assert_eq!(picks(&mut s, &zero, 3), vec![None; 3]);
            // A list the state never saw (no update) must not panic either.
            let other = [rs(1, 1), rs(2, 1), rs(3, 1), rs(4, 1)];
            assert!(s.pick(&other, &ctx(&[(0, 0)])).is_some());
        }
    }

    #[test]
    fn rr_strict_alternation() {
        let reals = [rs(1, 1), rs(2, 5), rs(3, 1)];
        let mut s = SchedState::new(SchedKind::Rr, &reals);
        assert_eq!(picks(&mut s, &reals, 7), some(&[0, 1, 2, 0, 1, 2, 0]));
    }

    #[test]
    fn rr_skips_weight_zero_and_re_adds() {
        let reals = [rs(1, 1), rs(2, 0), rs(3, 1)];
        let mut s = SchedState::new(SchedKind::Rr, &reals);
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
        let mut s = SchedState::new(SchedKind::Rr, &reals);
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
        let mut s = SchedState::new(SchedKind::Wrr, &reals);
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
        let mut s = SchedState::new(SchedKind::Wrr, &reals);
        let seq = some(&[0, 0, 1, 0, 1, 2, 0, 1, 2]);
        assert_eq!(picks(&mut s, &reals, 9), seq);
        assert_eq!(picks(&mut s, &reals, 9), seq);
    }

    #[test]
    fn wrr_gcd_and_zero_weights() {
        // Weights 4 and 2 (gcd 2) behave as 2:1; the weight-0 server is never picked.
        let reals = [rs(1, 4), rs(2, 0), rs(3, 2)];
        let mut s = SchedState::new(SchedKind::Wrr, &reals);
        assert_eq!(picks(&mut s, &reals, 6), some(&[0, 0, 2, 0, 0, 2]));
        // Equal weights: plain rotation.
        let eq = [rs(1, 5), rs(2, 5), rs(3, 5)];
        let mut s = SchedState::new(SchedKind::Wrr, &eq);
        assert_eq!(picks(&mut s, &eq, 6), some(&[0, 1, 2, 0, 1, 2]));
    }

    #[test]
    fn wrr_update_keeps_working() {
        let reals = [rs(1, 4), rs(2, 3), rs(3, 2)];
        let mut s = SchedState::new(SchedKind::Wrr, &reals);
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
        let mut s = SchedState::new(SchedKind::Wrr, &reals);
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
            let mut s = SchedState::new(kind, &reals);
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
        let mut s = SchedState::new(SchedKind::Rr, &reals);
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
        let mut s = SchedState::new(SchedKind::Wrr, &reals);
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
