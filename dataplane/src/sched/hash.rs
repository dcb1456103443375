//! Source and destination hashing (ip_vs_sh.c, ip_vs_dh.c): a table of 256 buckets, each naming
//! a server, indexed by a hash of the client (sh) or destination (dh) address.
//!
//! Semantics, as IPVS with the `sh-fallback` flag (`ipvsadm -b sh-fallback`) always on: when
//! the bucket's server is unavailable (weight 0 or overloaded) the lookup probes on through the
//! table in a fixed, address-dependent order (ip_vs_sh_get_fallback) and takes the first
//! available server, so such clients move while every other client keeps its server. Without
//! the flag IPVS would refuse the flow instead. Only the address is hashed: the `sh-port` flag
//! (address and port) is not supported.
//!
//! dh departs from ip_vs_dh.c on purpose: it uses this same weighted table and fallback (IPVS's
//! dh gives every server one bucket in turn whatever its weight, and has no fallback). With
//! every weight 1 and every server available both build and pick the same.

use rvs_model::RealServer;
use std::net::Ipv4Addr;

/// IP_VS_SH_TAB_BITS (the default CONFIG_IP_VS_SH_TAB_BITS).
const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: usize = TAB_SIZE - 1;

/// GOLDEN_RATIO_32 of the kernel's include/linux/hash.h.
const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// The kernel's hash_32: multiplicative hashing, keeping the top `bits` bits.
fn hash_32(v: u32, bits: u32) -> u32 {
    v.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// ip_vs_sh_hashkey with port 0 (no sh-port): bucket of `addr`, moved on by `offset`.
fn hashkey(addr: Ipv4Addr, offset: u32) -> usize {
    (offset.wrapping_add(hash_32(u32::from(addr), TAB_BITS)) as usize) & TAB_MASK
}

/// The 256 buckets, each an index into the server list it was built from (empty when the list
/// is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HashTable {
    buckets: Vec<u32>,
}

impl HashTable {
    /// ip_vs_sh_reassign: walk the list, giving each server `weight` consecutive buckets (at
    /// least one: a weight-0 server keeps a bucket, which lookups probe past, so draining a
    /// server moves only its own clients), and wrap around until all 256 are given.
    pub(super) fn build(reals: &[RealServer]) -> Self {
        let mut buckets = Vec::with_capacity(if reals.is_empty() { 0 } else { TAB_SIZE });
        let (mut i, mut count) = (0usize, 0u32);
        while !reals.is_empty() && buckets.len() < TAB_SIZE {
            buckets.push(i as u32);
            count += 1;
            if count >= reals[i].weight {
                i = (i + 1) % reals.len();
                count = 0;
            }
        }
        HashTable { buckets }
    }

    /// ip_vs_sh_get_fallback: the bucket's server when `avail`, else the first available one
    /// on the probe sequence. At most 257 buckets are looked at.
    pub(super) fn lookup(&self, addr: Ipv4Addr, avail: impl Fn(usize) -> bool) -> Option<usize> {
        let ihash = hashkey(addr, 0);
        let first = *self.buckets.get(ihash)? as usize;
        if avail(first) {
            return Some(first);
        }
        (0..TAB_SIZE as u32)
            .map(|offset| self.buckets[hashkey(addr, (offset + ihash as u32) & TAB_MASK as u32)] as usize)
            .find(|&i| avail(i))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{PickCtx, SchedState};
    use super::*;
    use rvs_model::SchedKind;

    fn counts(t: &HashTable, n: usize) -> Vec<usize> {
        (0..n).map(|i| t.buckets.iter().filter(|&&b| b as usize == i).count()).collect()
    }

    #[test]
    fn hash_32_matches_the_kernel() {
        // hash_32(1, 8) is the top byte of the golden ratio.
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(2, 8), 0xC3);
        // 203.0.113.7 = 0xCB007107; × 0x61C88647 mod 2^32 has top byte 0x7C.
        assert_eq!(hash_32(0xCB00_7107, 8), 0x7C);
        assert_eq!(hashkey(Ipv4Addr::new(203, 0, 113, 7), 0), 0x7C);
        assert_eq!(hashkey(Ipv4Addr::new(203, 0, 113, 7), 0xF0), 0x6C, "offset wraps within the table");
    }

    #[test]
    fn table_fill_follows_weights() {
        // Weights 2, 1: A A B A A B ...
        let t = HashTable::build(&[rs(1, 2), rs(2, 1)]);
        assert_eq!(t.buckets.len(), 256);
        assert_eq!(&t.buckets[..6], &[0, 0, 1, 0, 0, 1]);
        assert_eq!(counts(&t, 2), vec![171, 85]);
        // A weight-0 server keeps one bucket per cycle.
        let t = HashTable::build(&[rs(1, 3), rs(2, 0), rs(3, 1)]);
        assert_eq!(&t.buckets[..10], &[0, 0, 0, 1, 2, 0, 0, 0, 1, 2]);
        // A weight beyond the table fills it all.
        let t = HashTable::build(&[rs(1, 1000), rs(2, 1)]);
        assert_eq!(counts(&t, 2), vec![256, 0]);
        assert!(HashTable::build(&[]).buckets.is_empty());
        assert_eq!(HashTable::build(&[]).lookup(Ipv4Addr::new(192, 0, 2, 1), |_| true), None);
    }

    #[test]
    fn sh_is_sticky_and_spreads_by_weight() {
        let reals = [rs(1, 1), rs(2, 3)];
        let mut s = SchedState::new(SchedKind::Sh, &reals);
        let mut hits = [0usize; 2];
        for c in clients() {
            let a = s.pick(&reals, &ctx_from(c, &[])).unwrap();
            // Same client, same server, also from another worker's state.
            assert_eq!(s.pick(&reals, &ctx_from(c, &[])), Some(a));
            assert_eq!(SchedState::new(SchedKind::Sh, &reals).pick(&reals, &ctx_from(c, &[])), Some(a));
            hits[a] += 1;
        }
        // 768 clients over 64 + 192 buckets: close to 1:3 (measured 190:578).
        assert_eq!(hits[0] + hits[1], 768);
        assert!((hits[0] as f64 / 768.0 - 0.25).abs() < 0.03, "{hits:?}");
    }

    #[test]
    fn sh_fallback_moves_only_the_unavailable_servers_clients() {
        let reals = [rs(1, 1), rs(2, 1), rs(3, 1), rs(4, 1)];
        let mut s = SchedState::new(SchedKind::Sh, &reals);
        let before: Vec<_> = clients().map(|c| s.pick(&reals, &ctx_from(c, &[])).unwrap()).collect();
        // Drain server 1 (weight 0): its clients go elsewhere, nobody else moves.
        let drained = [rs(1, 1), rs(2, 0), rs(3, 1), rs(4, 1)];
        s.update(&drained);
        for (c, &b) in clients().zip(&before) {
            let a = s.pick(&drained, &ctx_from(c, &[])).unwrap();
            if b == 1 {
                assert_ne!(a, 1);
            } else {
                assert_eq!(a, b, "client {c} moved");
            }
        }
        // Overload server 2 instead: same story, from the threshold.
        let mut over = reals;
        over[2].u_threshold = 1;
        let mut s = SchedState::new(SchedKind::Sh, &over);
        let conns = [(0, 0), (0, 0), (1, 0), (0, 0)];
        for (c, &b) in clients().zip(&before) {
            let a = s.pick(&over, &ctx_from(c, &conns)).unwrap();
            assert!(if b == 2 { a != 2 } else { a == b });
        }
        // All overloaded: none.
        let all_over = [(1, 0); 4];
        let mut every = over;
        every.iter_mut().for_each(|r| r.u_threshold = 1);
        let mut s = SchedState::new(SchedKind::Sh, &every);
        assert_eq!(s.pick(&every, &ctx(&all_over)), None);
    }

    #[test]
    fn dh_hashes_the_destination() {
        let reals = [rs(1, 1), rs(2, 1), rs(3, 1)];
        let mut s = SchedState::new(SchedKind::Dh, &reals);
        let to = |dest: Ipv4Addr, client: Ipv4Addr| PickCtx { client, client_port: 1, dest, conns: &[] };
        let mut seen = [false; 3];
        for d in clients() {
            let a = s.pick(&reals, &to(d, Ipv4Addr::new(198, 51, 100, 1))).unwrap();
            // Whoever the client, the destination decides.
            assert_eq!(s.pick(&reals, &to(d, Ipv4Addr::new(198, 51, 100, 200))), Some(a));
            assert_eq!(a, HashTable::build(&reals).buckets[hashkey(d, 0)] as usize);
            seen[a] = true;
        }
        assert_eq!(seen, [true; 3]);
        // One bucket per server in turn with weights 1: ip_vs_dh's table.
        assert_eq!(&HashTable::build(&reals).buckets[..6], &[0, 1, 2, 0, 1, 2]);
    }
}
