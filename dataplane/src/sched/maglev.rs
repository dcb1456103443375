//! Maglev hashing (mh): Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016, §3.4, with weights, hashes and fallback as Linux ip_vs_mh.c.
//!
//! Each server has a preference list of the M table positions, a permutation given by an
//! offset and a skip from two hashes of its address:port. Servers take turns claiming their
//! next free preferred position until the table is full; a server of (gcd-reduced) weight w
//! takes w turns in a row per round. A client is looked up by a hash of its address mod M. M
//! is prime, so every skip walks all positions.
//!
//! Properties the paper shows and the tests measure: near-perfect balance (with equal weights
//! the servers' entry counts differ by at most one) and small disruption (removing a server
//! moves its entries and few others).
//!
//! The hashes are SipHash-1-3 with ip_vs_mh.c's fixed keys, so every process and every worker
//! builds the same table from the same list. Given the same list in the same order, the table
//! and lookups are meant to equal the Linux kernel's (64-bit, `hsiphash` = SipHash-1-3) but for
//! one difference: IPVS keeps a server whose weight was set to 0 in the table (`last_weight`,
//! its clients fall back elsewhere), while here a weight-0 server is left out of the table.

use super::gcd;
use rvs_model::RealServer;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Prime table sizes: ip_vs_mh.c's `primes[]` plus 65537, the paper's choice and the default.
pub const MAGLEV_SIZES: [usize; 11] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 65537, 131071];

/// SipHash keys (k0, k1) of ip_vs_mh.c's generate_hash_secret: hash1 gives the offsets and the
/// client lookup, hash2 the skips.
const HASH1: (u64, u64) = (2654435761, 2654435761);
const HASH2: (u64, u64) = (2654446892, 2654446892);

/// IP_VS_MH_TAB_BITS for the default CONFIG_IP_VS_MH_TAB_INDEX (12): gcd-reduced weights are
/// shifted right until the largest fits in this many bits, bounding one round's length.
const WEIGHT_BITS: u32 = 6;

/// SipHash-c-d (Aumasson and Bernstein, 2012) of `msg` under the key (k0, k1).
fn siphash(c: usize, d: usize, (k0, k1): (u64, u64), msg: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let compress = |v: &mut [u64; 4], m: u64| {
        v[3] ^= m;
        (0..c).for_each(|_| round(v));
        v[0] ^= m;
    };
    let chunks = msg.chunks_exact(8);
    let tail = chunks.remainder();
    for ch in chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(ch);
        compress(&mut v, u64::from_le_bytes(b));
    }
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    last[7] = msg.len() as u8;
    compress(&mut v, u64::from_le_bytes(last));
    v[2] ^= 0xff;
    (0..d).for_each(|_| round(&mut v));
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// ip_vs_mh_hashkey: hsiphash (SipHash-1-3 on 64-bit kernels, truncated to 32 bits) of the
/// host-order sum offset + port + address, as the 4 bytes of a little-endian u32.
fn hashkey(addr: u32, port: u16, key: (u64, u64), offset: u32) -> u32 {
    let v = offset.wrapping_add(port as u32).wrapping_add(addr);
    siphash(1, 3, key, &v.to_le_bytes()) as u32
}

/// The address as ip_vs_mh.c folds it: IPv4 as is, IPv6 as the xor of its four 32-bit words.
fn fold(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let o = a.octets();
            (0..4)
                .map(|i| u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
                .fold(0, |x, w| x ^ w)
        }
    }
}

/// fls: 1-based index of the highest set bit, 0 for 0.
fn fls(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// A Maglev lookup table of M entries, each an index into the server list it was built from.
///
/// Built off the packet path (O(M log M) expected), immutable, meant to be shared by every
/// worker behind an `Arc`; [`MaglevTable::matches`] tells whether it fits a list.
#[derive(Clone, PartialEq, Eq)]
pub struct MaglevTable {
    size: usize,
    /// `size` entries, or none when no server has a positive weight.
    entries: Vec<u32>,
    /// (address, weight) of the servers it was built from, in order.
    built_from: Vec<(SocketAddr, u32)>,
}

impl fmt::Debug for MaglevTable {
    /// Not the entries: 65537 of them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaglevTable")
            .field("size", &self.size)
            .field("filled", &!self.entries.is_empty())
            .field("built_from", &self.built_from)
            .finish()
    }
}

impl MaglevTable {
    /// The paper's M.
    pub const DEFAULT_SIZE: usize = 65537;

    /// `m` when it is one of [`MAGLEV_SIZES`], else an error naming them (for config checks).
    pub fn check_size(m: usize) -> Result<usize, String> {
        if MAGLEV_SIZES.contains(&m) {
            Ok(m)
        } else {
            Err(format!("Maglev table size {m} is not one of the primes {MAGLEV_SIZES:?}"))
        }
    }

    /// The size `build` uses for `m`: the smallest of [`MAGLEV_SIZES`] ≥ `m`, the largest when
    /// `m` is beyond them all. The table must have a prime size (so skips walk every entry)
    /// and should have M ≫ N (the paper uses M > 100·N).
    pub fn size_for(m: usize) -> usize {
        MAGLEV_SIZES.iter().copied().find(|&p| p >= m).unwrap_or(MAGLEV_SIZES[MAGLEV_SIZES.len() - 1])
    }

    /// ip_vs_mh_reassign for `reals` and a table of [`MaglevTable::size_for`]`(m)` entries.
    ///
    /// Weights: divided by their gcd, then shifted right so the largest fits in 6 bits
    /// (ip_vs_mh_shift_weight), a positive weight never going below one turn. Weight-0 servers
    /// get no entry; with none positive the table is empty and every lookup `None`. When
    /// there are more positive-weight servers than entries (IPVS refuses that), the table is
    /// filled in list order and the servers beyond get none.
    pub fn build(reals: &[RealServer], m: usize) -> MaglevTable {
        let size = Self::size_for(m);
        let built_from = reals.iter().map(|r| (r.addr, r.weight)).collect();
        let g = reals.iter().filter(|r| r.weight > 0).fold(0u64, |g, r| gcd(r.weight as u64, g));
        if g == 0 {
            return MaglevTable { size, entries: Vec::new(), built_from };
        }
        let mw = reals.iter().map(|r| r.weight as u64).max().unwrap_or(0) / g;
        let rshift = fls(mw).saturating_sub(WEIGHT_BITS);
        // (next preferred position, skip, turns) per server: ip_vs_mh_permutate.
        let mut setup: Vec<(usize, usize, u64)> = reals
            .iter()
            .map(|r| {
                let (a, p) = (fold(r.addr.ip()), r.addr.port());
                let offset = hashkey(a, p, HASH1, 0) as usize % size;
                let skip = hashkey(a, p, HASH2, 0) as usize % (size - 1) + 1;
                let w = r.weight as u64;
                let turns = match (w / g) >> rshift {
                    0 => u64::from(w != 0),
                    t => t,
                };
                (offset, skip, turns)
            })
            .collect();
        // ip_vs_mh_populate: rounds over the list until every entry is taken. Each claim walks
        // the server's permutation to its next free position; one exists while n < size, and
        // the walk finds it because the skip is coprime with the prime size.
        const FREE: u32 = u32::MAX;
        let mut entries = vec![FREE; size];
        let mut n = 0;
        'fill: loop {
            for (i, (perm, skip, turns)) in setup.iter_mut().enumerate() {
                for _ in 0..*turns {
                    while entries[*perm] != FREE {
                        *perm += *skip;
                        if *perm >= size {
                            *perm -= size;
                        }
                    }
                    entries[*perm] = i as u32;
                    n += 1;
                    if n == size {
                        break 'fill;
                    }
                }
            }
        }
        MaglevTable { size, entries, built_from }
    }

    /// M.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The entries: indices into the server list it was built from (empty when no server had a
    /// positive weight).
    pub fn entries(&self) -> &[u32] {
        &self.entries
    }

    /// Whether this table was built from `reals` (same addresses and weights, same order), so
    /// its indices are indices into `reals`.
    pub fn matches(&self, reals: &[RealServer]) -> bool {
        self.built_from.len() == reals.len()
            && self.built_from.iter().zip(reals).all(|(&(a, w), r)| a == r.addr && w == r.weight)
    }

    /// ip_vs_mh_get: the entry for `client` (availability not looked at).
    pub fn lookup(&self, client: Ipv4Addr) -> Option<usize> {
        self.lookup_available(client, |_| true)
    }

    /// ip_vs_mh_get_fallback (the mh-fallback flag, always on here): the entry for `client`
    /// when `avail`, else the first available one along the client's rehash sequence (hash of
    /// the address moved on by 0, 1, 2 ... from the first position), at most M + 1 probes.
    /// The port is not hashed (no mh-port).
    pub(super) fn lookup_available(&self, client: Ipv4Addr, avail: impl Fn(usize) -> bool) -> Option<usize> {
        let a = u32::from(client);
        let ihash = hashkey(a, 0, HASH1, 0) as usize % self.size;
        let first = *self.entries.get(ihash)? as usize;
        if avail(first) {
            return Some(first);
        }
        (0..self.size)
            .map(|offset| {
                self.entries[hashkey(a, 0, HASH1, ((offset + ihash) % self.size) as u32) as usize % self.size] as usize
            })
            .find(|&i| avail(i))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::SchedState;
    use super::*;
    use rvs_model::SchedKind;
    use std::hash::Hasher;
    use std::sync::Arc;

    fn owned(t: &MaglevTable, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        t.entries().iter().for_each(|&i| c[i as usize] += 1);
        c
    }

    #[test]
    fn siphash_reference_vectors() {
        // SipHash-2-4 paper, appendix A: key 00..0f, message 00..0e.
        let k = (u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]), u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]));
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(siphash(2, 4, k, &msg), 0xa129_ca61_49be_45e5);
        // Reference vectors 0 and 8 (empty message; one full block).
        assert_eq!(siphash(2, 4, k, &[]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash(2, 4, k, &msg[..8]), 0x93f5_f579_9a93_2462);
        // SipHash-1-3 against std's (today SipHash-1-3 with a zero key; the check is skipped
        // should std ever change its hasher, which it documents it may).
        let std13 = |v: u32| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            h.write(&v.to_le_bytes());
            h.finish()
        };
        println!("std SipHash-1-3 agrees: {}", std13(0) == siphash(1, 3, (0, 0), &0u32.to_le_bytes()));
        if std13(0) == siphash(1, 3, (0, 0), &0u32.to_le_bytes()) {
            for v in [1u32, 0xCB00_7101, u32::MAX] {
                assert_eq!(siphash(1, 3, (0, 0), &v.to_le_bytes()), std13(v));
            }
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(MaglevTable::size_for(0), 251);
        assert_eq!(MaglevTable::size_for(300), 509);
        assert_eq!(MaglevTable::size_for(65537), 65537);
        assert_eq!(MaglevTable::size_for(1 << 30), 131071);
        assert_eq!(MaglevTable::check_size(4093), Ok(4093));
        assert!(MaglevTable::check_size(4096).unwrap_err().contains("4096 is not one of the primes"));
        for p in MAGLEV_SIZES {
            assert!((2..p).take_while(|d| d * d <= p).all(|d| p % d != 0), "{p} is prime");
            assert_eq!(MaglevTable::build(&[rs(1, 1)], p).entries().len(), p);
        }
    }

    /// Paper property 1: with equal weights, servers own M/N entries within one.
    #[test]
    fn balance_equal_weights() {
        for n in [3, 10, 100, 500] {
            let m = MaglevTable::size_for(100 * n + 1);
            let t = MaglevTable::build(&many(n, 1), m);
            let c = owned(&t, n);
            let ideal = m as f64 / n as f64;
            let (lo, hi) = (*c.iter().min().unwrap(), *c.iter().max().unwrap());
            println!("mh balance N={n} M={m}: entries per server {lo}..={hi} (M/N = {ideal:.2})");
            assert!(hi - lo <= 1, "N={n}: {lo}..{hi}");
            assert!(lo as f64 >= 0.99 * ideal && hi as f64 <= 1.01 * ideal, "N={n}: {lo}..{hi}, M/N {ideal}");
        }
        let c = owned(&MaglevTable::build(&many(10, 7), 65537), 10);
        assert!(c.iter().all(|&k| k == 6553 || k == 6554), "{c:?}");
    }

    /// Paper property 1 with weights (as ip_vs_mh.c: w turns per round).
    #[test]
    fn balance_weighted() {
        let reals = [rs(1, 1), rs(2, 2), rs(3, 3)];
        let t = MaglevTable::build(&reals, 65537);
        let c = owned(&t, 3);
        println!("mh weights 1:2:3 M=65537: {c:?}");
        for (i, w) in [1.0, 2.0, 3.0].into_iter().enumerate() {
            let share = c[i] as f64 / 65537.0;
            assert!((share / (w / 6.0) - 1.0).abs() < 0.01, "server {i}: {share}");
        }
        // gcd-reduced: 10:20:30 is 1:2:3, entry for entry.
        let tens = [rs(1, 10), rs(2, 20), rs(3, 30)];
        assert_eq!(MaglevTable::build(&tens, 65537).entries(), t.entries());
        // Weights beyond 6 bits are shifted down: 1:1000 is 1:62 (1000 >> 4), never 0 turns.
        let c = owned(&MaglevTable::build(&[rs(1, 1), rs(2, 1000)], 65537), 2);
        assert!(c[0] > 0 && (c[1] as f64 / c[0] as f64 - 62.0).abs() < 1.0, "{c:?}");
        // Weight 0: no entry.
        let c = owned(&MaglevTable::build(&[rs(1, 1), rs(2, 0), rs(3, 1)], 4093), 3);
        assert_eq!(c[1], 0);
        assert_eq!(c[0] + c[2], 4093);
    }

    /// Paper property 2: removing one of N servers moves its entries and few others.
    #[test]
    fn minimal_disruption() {
        for (n, m) in [(100, 65537), (10, 65537), (1000, 131071)] {
            let reals = many(n, 1);
            let before = MaglevTable::build(&reals, m);
            let gone = n / 3;
            let mut fewer = reals.clone();
            fewer.remove(gone);
            let after = MaglevTable::build(&fewer, m);
            let (mut of_removed, mut others_moved) = (0, 0);
            for (&b, &a) in before.entries().iter().zip(after.entries()) {
                let (was, now) = (reals[b as usize].addr, fewer[a as usize].addr);
                assert_ne!(now, reals[gone].addr);
                if b as usize == gone {
                    of_removed += 1;
                } else if was != now {
                    others_moved += 1;
                }
            }
            let frac = others_moved as f64 / m as f64;
            println!("mh disruption N={n} M={m}: removed server owned {of_removed} entries; {others_moved} other entries changed owner ({:.3}% of M)", 100.0 * frac);
            assert!(of_removed > 0);
            if n == 100 {
                assert!(frac < 0.05, "{frac}");
            }
        }
    }

    /// Paper property 3 and the "same table on every worker" promise.
    #[test]
    fn deterministic() {
        let reals = many(37, 1);
        let a = MaglevTable::build(&reals, 65537);
        assert_eq!(a, MaglevTable::build(&reals, 65537));
        // Pinned values: a change of hash or fill order would move every client of every
        // deployed rvs at upgrade time; it must be deliberate.
        assert_eq!([hashkey(0xCB00_7101, 80, HASH1, 0), hashkey(0xCB00_7101, 80, HASH2, 0)], PINNED_KEYS);
        let pin = MaglevTable::build(&[rs(1, 1), rs(2, 1), rs(3, 1)], 251);
        assert_eq!(&pin.entries()[..12], PINNED_251);
        // IPv6 real servers hash by their folded address.
        let v6 = |s: &str| rs_at(s.parse().unwrap(), 1);
        let t6 = MaglevTable::build(&[v6("[2001:db8::1]:80"), v6("[2001:db8::2]:80")], 509);
        assert_eq!(owned(&t6, 2).iter().sum::<usize>(), 509);
        assert_eq!(fold("2001:db8::1".parse().unwrap()), 0x2001_0db8 ^ 1);
    }
    const PINNED_251: &[u32] = &[2, 1, 0, 2, 2, 1, 0, 2, 2, 1, 0, 1];
    const PINNED_KEYS: [u32; 2] = [1712878671, 2633505321];

    #[test]
    fn lookups_are_sticky_and_follow_the_table() {
        let reals = many(10, 1);
        let t = Arc::new(MaglevTable::build(&reals, 65537));
        let mut w1 = SchedState::new_with_table(SchedKind::Mh, &reals, Some(t.clone()));
        let mut w2 = SchedState::new(SchedKind::Mh, &reals);
        assert!(Arc::ptr_eq(w1.maglev_table().unwrap(), &t), "a matching table is shared, not rebuilt");
        let mut hits = [0usize; 10];
        for c in clients() {
            let i = w1.pick(&reals, &ctx_from(c, &[])).unwrap();
            assert_eq!(t.lookup(c), Some(i));
            assert_eq!(w1.pick(&reals, &ctx_from(c, &[])), Some(i));
            assert_eq!(w2.pick(&reals, &ctx_from(c, &[])), Some(i), "another worker, its own table");
            hits[i] += 1;
        }
        // 768 clients over 10 servers.
        assert!(hits.iter().all(|&h| h > 40), "{hits:?}");
    }

    #[test]
    fn fallback_when_overloaded() {
        let mut reals = many(5, 1);
        reals[2].u_threshold = 1;
        let mut s = SchedState::new(SchedKind::Mh, &reals);
        let idle = [(0, 0); 5];
        let busy = [(0, 0), (0, 0), (1, 0), (0, 0), (0, 0)];
        let mut moved = 0;
        for c in clients() {
            let home = s.pick(&reals, &ctx_from(c, &idle)).unwrap();
            let now = s.pick(&reals, &ctx_from(c, &busy)).unwrap();
            if home == 2 {
                assert_ne!(now, 2);
                // Deterministic: the same fallback every time, on every worker.
                assert_eq!(s.pick(&reals, &ctx_from(c, &busy)), Some(now));
                let mut other = SchedState::new(SchedKind::Mh, &reals);
                assert_eq!(other.pick(&reals, &ctx_from(c, &busy)), Some(now));
                moved += 1;
            } else {
                assert_eq!(now, home, "only the overloaded server's clients move");
            }
        }
        assert!(moved > 0);
        // Only one server left available: everyone lands there, quickly enough.
        let mut all = reals.clone();
        all.iter_mut().for_each(|r| r.u_threshold = 1);
        let mut s = SchedState::new(SchedKind::Mh, &all);
        let one_left = [(1, 0), (1, 0), (1, 0), (0, 0), (1, 0)];
        assert!(clients().all(|c| s.pick(&all, &ctx_from(c, &one_left)) == Some(3)));
        assert_eq!(s.pick(&all, &ctx(&[(1, 0); 5])), None);
    }

    #[test]
    fn tables_given_and_rebuilt() {
        let reals = many(4, 1);
        let t = Arc::new(MaglevTable::build(&reals, 4093));
        let mut s = SchedState::new_with_table(SchedKind::Mh, &reals, Some(t.clone()));
        // A table for another list is not used; the state builds its own, of that size.
        let fewer = many(3, 1);
        let mut s2 = SchedState::new_with_table(SchedKind::Mh, &fewer, Some(t.clone()));
        assert!(!Arc::ptr_eq(s2.maglev_table().unwrap(), &t));
        assert!(s2.maglev_table().unwrap().matches(&fewer));
        assert_eq!(s2.maglev_table().unwrap().size(), 4093);
        // update: keeps a still-matching table, takes a given matching one, else rebuilds.
        s.update(&reals);
        assert!(Arc::ptr_eq(s.maglev_table().unwrap(), &t));
        let t3 = Arc::new(MaglevTable::build(&fewer, 4093));
        s.update_with_table(&fewer, Some(t3.clone()));
        assert!(Arc::ptr_eq(s.maglev_table().unwrap(), &t3));
        s.update_with_table(&reals, Some(t3.clone()));
        assert!(s.maglev_table().unwrap().matches(&reals) && !Arc::ptr_eq(s.maglev_table().unwrap(), &t3));
        assert_eq!(s.maglev_table().unwrap().entries(), t.entries());
        // A list changed behind its back: pick catches up and never indexes out of range.
        let c = ctx(&[]);
        assert!(s2.pick(&reals, &c).is_some_and(|i| i < 4));
        assert!(s2.pick(&reals[..1], &c) == Some(0));
        assert_eq!(s2.pick(&[], &c), None);
        // Other kinds ignore tables.
        let s3 = SchedState::new_with_table(SchedKind::Rr, &reals, Some(t));
        assert!(s3.maglev_table().is_none());
    }

    #[test]
    fn more_servers_than_entries() {
        let reals = many(300, 1);
        let t = MaglevTable::build(&reals, 251);
        let c = owned(&t, 300);
        assert!(c[..251].iter().all(|&k| k == 1) && c[251..].iter().all(|&k| k == 0));
        let mut s = SchedState::new_with_table(SchedKind::Mh, &reals, Some(Arc::new(t)));
        // Only servers past the table are available: no entry leads there, None after M probes.
        let mut conns = vec![(1u32, 0u32); 300];
        conns[260] = (0, 0);
        let mut over = reals.clone();
        over.iter_mut().for_each(|r| r.u_threshold = 1);
        s.update(&over);
        assert_eq!(s.pick(&over, &ctx(&conns)), None);
    }
}
