//! FULLNAT local ports: which LIP:lport a new flow towards a real server leaves with.
//!
//! A port is unique per `LIP:lport → RIP:rport`, not per `LIP:lport`: the real server's reply
//! key (`RIP:rport → LIP:lport`) is what must be unambiguous, so every real server has the whole
//! port range of every local address. Per worker, per (local address, real server) pair, the
//! ports this worker may use (`port % n_cores == core`, so the reply to LIP:lport can be steered
//! to its owner from the port alone, about 64k / n) are walked in a fixed pseudo-random order
//! (an affine permutation seeded per pair and per run) by a cursor: a port comes back only after
//! every other port of the pair was handed out, the latest reuse possible. A port is in use while
//! a session holds its reply key; the caller answers that question (`in_use`: one index probe),
//! so there is no free list to keep and a pair costs a few words, whatever the number of pairs.
//!
//! Reuse towards the same real server within its TIME_WAIT (2 × MSL, 60 s on Linux) cannot
//! always be avoided: at more than about 64k / 60 s ≈ 1,000 new connections per second per
//! (local address, real server) a port's previous connection may still be in TIME_WAIT on the
//! real server. The FULLNAT mode makes that safe for TCP ([`crate::mode::fullnat`]: the real
//! server sees rvs's own initial sequence numbers and timestamps, newer on every connection of a
//! tuple); [`Allocated::reused_early`] says when it happened, for the counter.

use hashbrown::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

/// First port handed out (below are the well-known ports).
pub const FIRST_PORT: u16 = 1024;

/// Ports tried per local address before it counts as exhausted: a cursor finds a free port at
/// once unless most ports of the pair are held by live sessions.
pub const PROBES: u32 = 512;

/// Why no local address could be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaddrError {
    /// The service has no IPv4 local address.
    NoLocalAddr,
    /// No free port was found on any local address of the service towards this real server
    /// ([`PROBES`] tried per address).
    NoLocalPort,
}

/// A local address and port for a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocated {
    pub laddr: SocketAddrV4,
    /// The port was last handed out towards the same real server less than the TIME_WAIT
    /// window ago (a lower bound: the check uses the start of the cursor's previous round).
    pub reused_early: bool,
}

/// The walk over the ports of one (local address, real server) pair.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// Step of the permutation of the port indices `i ↦ (a·i + b) mod m` (`a` coprime with `m`),
    /// walked by adding `a`: `idx` is the index of step `i`.
    a: u32,
    idx: u32,
    /// Steps taken in the current round.
    i: u32,
    /// When the current round (i = 0 …) and the one before it began; `None` before the second.
    round_start_ns: u64,
    prev_round_start_ns: Option<u64>,
}

/// The local ports of one worker, per (local address, real server).
#[derive(Debug)]
pub struct LocalPorts {
    seed: u64,
    /// The first port of this worker (the smallest ≥ FIRST_PORT with `port % n == core`).
    first: u16,
    /// Stride between this worker's ports (the number of workers).
    stride: u16,
    /// How many ports this worker has.
    m: u32,
    cursors: HashMap<(Ipv4Addr, SocketAddrV4), Cursor>,
    /// Rotates the first address tried over the service's list.
    next: usize,
}

/// A 64-bit mix (the finaliser of SplitMix64): spreads the bits of a key and a seed (here the
/// port walk's; FULLNAT's ISN offsets use it too).
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl LocalPorts {
    pub fn new(core: usize, n_cores: usize) -> Self {
        Self::with_seed(core, n_cores, 0)
    }

    /// As `new`, with `seed` mixed into every pair's order (rvsd passes its start time, so a
    /// restarted gateway does not walk the ports in its predecessor's order).
    pub fn with_seed(core: usize, n_cores: usize, seed: u64) -> Self {
        let n = n_cores.clamp(1, usize::from(u16::MAX / 2)) as u32;
        let core = (core as u32) % n;
        let first = u32::from(FIRST_PORT) + (core + n - u32::from(FIRST_PORT) % n) % n;
        let m = (u32::from(u16::MAX) - first) / n + 1;
        LocalPorts { seed, first: first as u16, stride: n as u16, m, cursors: HashMap::new(), next: 0 }
    }

    /// How many ports this worker has per (local address, real server).
    pub fn ports_per_pair(&self) -> u32 {
        self.m
    }

    /// The walk of a pair seen for the first time.
    fn cursor(seed: u64, m: u32, lip: Ipv4Addr, rs: SocketAddrV4, now_ns: u64) -> Cursor {
        let m = u64::from(m);
        let pair = u64::from(u32::from(lip)) << 32 ^ u64::from(u32::from(*rs.ip())) ^ u64::from(rs.port()) << 48;
        let h = mix(pair ^ mix(seed));
        let mut a = (h % m).max(1);
        while gcd(a, m) != 1 {
            a = a % (m - 1).max(1) + 1;
        }
        Cursor { a: a as u32, idx: (mix(h) % m) as u32, i: 0, round_start_ns: now_ns, prev_round_start_ns: None }
    }

    /// Whether the next port of `lip`'s walk towards `rs` was handed out to `rs` less than `tw_ns`
    /// ago (a lower bound, as [`Allocated::reused_early`]).
    fn early(&self, lip: Ipv4Addr, rs: SocketAddrV4, now_ns: u64, tw_ns: u64) -> bool {
        let Some(c) = self.cursors.get(&(lip, rs)) else { return false };
        let prev = if c.i == self.m { Some(c.round_start_ns) } else { c.prev_round_start_ns };
        prev.is_some_and(|t| now_ns.saturating_sub(t) < tw_ns)
    }

    /// A local address of `laddrs` (tried in rotation, but one whose next port towards `rs` is
    /// past the real server's TIME_WAIT `tw_ns` first) and a port towards `rs` that `in_use`
    /// says no session holds, in each pair's walk order.
    pub fn alloc(
        &mut self,
        laddrs: &[IpAddr],
        rs: SocketAddrV4,
        now_ns: u64,
        tw_ns: u64,
        mut in_use: impl FnMut(SocketAddrV4) -> bool,
    ) -> Result<Allocated, LaddrError> {
        let n = laddrs.len();
        let v4 = |k: usize| match laddrs[k % n] {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        };
        // The rotation's choice, unless reuse comes too soon there and not on another address.
        let skip = match n {
            0 | 1 => 0,
            _ => {
                (0..n).find(|&k| v4(self.next + k).is_some_and(|lip| !self.early(lip, rs, now_ns, tw_ns))).unwrap_or(0)
            }
        };
        let mut any = false;
        for j in 0..n {
            let k = (skip + j) % n;
            let Some(lip) = v4(self.next + k) else { continue };
            any = true;
            let (seed, m, first, stride) = (self.seed, self.m, u32::from(self.first), u32::from(self.stride));
            let c = self.cursors.entry((lip, rs)).or_insert_with(|| Self::cursor(seed, m, lip, rs, now_ns));
            for _ in 0..PROBES.min(m) {
                if c.i == m {
                    c.i = 0;
                    c.prev_round_start_ns = Some(c.round_start_ns);
                    c.round_start_ns = now_ns;
                }
                let port = (first + stride * c.idx) as u16;
                // idx + a (mod m), both below m < 2^16.
                c.idx += c.a;
                if c.idx >= m {
                    c.idx -= m;
                }
                c.i += 1;
                let laddr = SocketAddrV4::new(lip, port);
                if !in_use(laddr) {
                    self.next = (self.next + k + 1) % n;
                    let reused_early = c.prev_round_start_ns.is_some_and(|t| now_ns.saturating_sub(t) < tw_ns);
                    return Ok(Allocated { laddr, reused_early });
                }
            }
        }
        Err(if any { LaddrError::NoLocalPort } else { LaddrError::NoLocalAddr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashbrown::HashSet;

    const RS1: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 11), 80);
    const RS2: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 12), 80);
    const S: u64 = 1_000_000_000;

    fn lip() -> IpAddr {
        Ipv4Addr::new(192, 0, 2, 200).into()
    }

    /// Counted by hand: ports 1024..=65535 are 64512; odd ones 32256, one in 64 of them 1008.
    #[test]
    fn port_counts_follow_the_core_rule() {
        assert_eq!(LocalPorts::new(0, 1).ports_per_pair(), 64512);
        assert_eq!(LocalPorts::new(1, 2).ports_per_pair(), 32256);
        assert_eq!(LocalPorts::new(0, 64).ports_per_pair(), 1008);
        assert_eq!(LocalPorts::new(63, 64).ports_per_pair(), 1008);
        let p = LocalPorts::new(3, 7);
        assert_eq!(p.ports_per_pair() as usize, (FIRST_PORT..=u16::MAX).filter(|x| x % 7 == 3).count());
    }

    /// Every port of the worker comes once per round, in the same order every round, and the
    /// core rule holds; the next round reports early reuse inside the window only.
    #[test]
    fn a_round_hands_out_every_port_once() {
        let mut p = LocalPorts::new(1, 2);
        let mut seen = HashSet::new();
        let mut order = Vec::new();
        for _ in 0..p.ports_per_pair() {
            let a = p.alloc(&[lip()], RS1, 0, 60 * S, |_| false).unwrap();
            assert_eq!(a.laddr.port() % 2, 1);
            assert!(a.laddr.port() >= FIRST_PORT);
            assert!(!a.reused_early);
            assert!(seen.insert(a.laddr.port()), "port {} twice in a round", a.laddr.port());
            order.push(a.laddr.port());
        }
        let again = p.alloc(&[lip()], RS1, 10 * S, 60 * S, |_| false).unwrap();
        assert_eq!(again.laddr.port(), order[0]);
        assert!(again.reused_early, "the previous round began 10 s ago");
        let later = p.alloc(&[lip()], RS1, 61 * S, 60 * S, |_| false).unwrap();
        assert_eq!(later.laddr.port(), order[1]);
        assert!(!later.reused_early, "61 s after the previous round began");
    }

    /// Each real server has the whole range: the same port may be live towards two servers.
    #[test]
    fn ports_are_unique_per_real_server_not_per_address() {
        let mut p = LocalPorts::new(0, 1);
        let mut to1 = HashSet::new();
        for _ in 0..1000 {
            to1.insert(p.alloc(&[lip()], RS1, 0, 0, |_| false).unwrap().laddr.port());
        }
        let mut to2 = HashSet::new();
        for _ in 0..1000 {
            to2.insert(p.alloc(&[lip()], RS2, 0, 0, |_| false).unwrap().laddr.port());
        }
        assert_eq!((to1.len(), to2.len()), (1000, 1000));
        // Each pair walks its own order, started afresh.
        assert!(to1 != to2);
    }

    /// Ports in use are skipped; when every probed port is in use the address is exhausted.
    #[test]
    fn live_ports_are_skipped_and_exhaustion_is_reported() {
        let mut p = LocalPorts::new(0, 1);
        let first = p.alloc(&[lip()], RS1, 0, 0, |_| false).unwrap().laddr;
        let mut q = LocalPorts::new(0, 1);
        let skipped = q.alloc(&[lip()], RS1, 0, 0, |a| a == first).unwrap().laddr;
        assert_ne!(skipped, first);
        assert_eq!(q.alloc(&[lip()], RS1, 0, 0, |_| true), Err(LaddrError::NoLocalPort));
        assert_eq!(p.alloc(&[], RS1, 0, 0, |_| false), Err(LaddrError::NoLocalAddr));
        assert_eq!(p.alloc(&["2001:db8::1".parse().unwrap()], RS1, 0, 0, |_| false), Err(LaddrError::NoLocalAddr));
    }

    #[test]
    fn seed_changes_the_order() {
        let take = |seed| {
            let mut p = LocalPorts::with_seed(0, 1, seed);
            (0..8).map(|_| p.alloc(&[lip()], RS1, 0, 0, |_| false).unwrap().laddr.port()).collect::<Vec<_>>()
        };
        assert_ne!(take(1), take(2));
        assert_eq!(take(1), take(1));
    }

    /// An address whose ports towards the server came round less than the TIME_WAIT ago gives
    /// way to one whose did not.
    #[test]
    fn an_address_past_time_wait_goes_first() {
        let (l1, l2) = (Ipv4Addr::new(192, 0, 2, 200), Ipv4Addr::new(192, 0, 2, 201));
        let mut p = LocalPorts::new(0, 64);
        for _ in 0..p.ports_per_pair() {
            p.alloc(&[l1.into()], RS1, 0, 60 * S, |_| false).unwrap();
        }
        let a = p.alloc(&[l1.into(), l2.into()], RS1, S, 60 * S, |_| false).unwrap();
        assert_eq!((*a.laddr.ip(), a.reused_early), (l2, false));
        // Towards another server l1 is fresh: the rotation decides.
        let b = p.alloc(&[l1.into(), l2.into()], RS2, S, 60 * S, |_| false).unwrap();
        assert!(!b.reused_early);
        // Once the window is over, l1 is as good as any.
        let c = p.alloc(&[l1.into()], RS1, 61 * S, 60 * S, |_| false).unwrap();
        assert_eq!((*c.laddr.ip(), c.reused_early), (l1, false));
    }

    /// Local addresses are used in turn; an exhausted one gives way to the next.
    #[test]
    fn addresses_rotate_and_the_next_takes_over() {
        let (l1, l2) = (Ipv4Addr::new(192, 0, 2, 200), Ipv4Addr::new(192, 0, 2, 201));
        let list = [l1.into(), l2.into()];
        let mut p = LocalPorts::new(0, 64);
        let ips: Vec<_> = (0..4).map(|_| *p.alloc(&list, RS1, 0, 0, |_| false).unwrap().laddr.ip()).collect();
        assert_eq!(ips, [l1, l2, l1, l2]);
        let only2 = p.alloc(&list, RS1, 0, 0, |a| *a.ip() == l1).unwrap();
        assert_eq!(*only2.laddr.ip(), l2);
    }
}
