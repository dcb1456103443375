//! FULLNAT local ports: which LIP:lport a new flow leaves with, "without search".
//!
//! Per worker and per local address, a pre-shuffled free list of the ports in 1024..=65535 this
//! worker may use (`port % n_cores == core`, so the reply to LIP:lport can be steered to its
//! owner from the port alone). Allocation pops the front, release pushes the back: O(1), and a
//! port is reused as late as possible. A list is built on the first use of its address.

use hashbrown::HashMap;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

/// First port handed out (below are the well-known ports).
pub const FIRST_PORT: u16 = 1024;

/// Why no local address could be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaddrError {
    /// The service has no IPv4 local address.
    NoLocalAddr,
    /// Every port of every local address of the service is taken on this worker.
    NoLocalPort,
}

/// The free ports of one worker, per local address.
#[derive(Debug)]
pub struct LocalPorts {
    core: usize,
    n_cores: usize,
    seed: u64,
    pools: HashMap<Ipv4Addr, VecDeque<u16>>,
    /// Rotates the first address tried over the service's list.
    next: usize,
}

impl LocalPorts {
    pub fn new(core: usize, n_cores: usize) -> Self {
        Self::with_seed(core, n_cores, 0)
    }

    /// As `new`, with `seed` mixed into every address's shuffle.
    pub fn with_seed(core: usize, n_cores: usize, seed: u64) -> Self {
        let n_cores = n_cores.max(1);
        LocalPorts { core: core % n_cores, n_cores, seed, pools: HashMap::new(), next: 0 }
    }

    /// The ports of this worker, shuffled (xorshift seeded from the address, the core and the
    /// run's seed, so neither two addresses nor two runs hand out the same sequence).
    fn build(core: usize, n_cores: usize, seed: u64, lip: Ipv4Addr) -> VecDeque<u16> {
        let mut v: Vec<u16> = (FIRST_PORT..=u16::MAX).filter(|p| *p as usize % n_cores == core).collect();
        let mut x = (u64::from(u32::from(lip)) << 16 | core as u64) ^ 0x9e37_79b9_7f4a_7c15 ^ seed.rotate_left(29);
        if x == 0 {
            x = 0x9e37_79b9_7f4a_7c15; // xorshift never leaves 0
        }
        for i in (1..v.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.swap(i, (x % (i as u64 + 1)) as usize);
        }
        v.into()
    }

    /// A free LIP:lport from `laddrs` (IPv6 entries are skipped), trying the addresses in turn.
    pub fn alloc(&mut self, laddrs: &[IpAddr]) -> Result<SocketAddrV4, LaddrError> {
        let n = laddrs.len();
        let mut any = false;
        for k in 0..n {
            let IpAddr::V4(lip) = laddrs[(self.next + k) % n] else { continue };
            any = true;
            let (core, n_cores, seed) = (self.core, self.n_cores, self.seed);
            let pool = self.pools.entry(lip).or_insert_with(|| Self::build(core, n_cores, seed, lip));
            if let Some(port) = pool.pop_front() {
                self.next = (self.next + k + 1) % n;
                return Ok(SocketAddrV4::new(lip, port));
            }
        }
        Err(if any { LaddrError::NoLocalPort } else { LaddrError::NoLocalAddr })
    }

    /// Give a port back (when its session goes).
    pub fn free(&mut self, a: SocketAddrV4) {
        if let Some(pool) = self.pools.get_mut(a.ip()) {
            pool.push_back(a.port());
        }
    }

    /// Free ports of `lip` (None before its first use).
    pub fn available(&self, lip: Ipv4Addr) -> Option<usize> {
        self.pools.get(&lip).map(VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_the_core_rule_and_come_back() {
        let lip = Ipv4Addr::new(192, 0, 2, 200);
        let mut p = LocalPorts::new(1, 2);
        let a = p.alloc(&[lip.into()]).unwrap();
        assert_eq!(*a.ip(), lip);
        assert_eq!(a.port() % 2, 1);
        assert!(a.port() >= FIRST_PORT);
        let total = (FIRST_PORT..=u16::MAX).filter(|x| x % 2 == 1).count();
        assert_eq!(p.available(lip), Some(total - 1));
        let mut seen = hashbrown::HashSet::new();
        seen.insert(a.port());
        while let Ok(b) = p.alloc(&[lip.into()]) {
            assert!(seen.insert(b.port()), "port {} twice", b.port());
        }
        assert_eq!(seen.len(), total);
        assert_eq!(p.alloc(&[lip.into()]), Err(LaddrError::NoLocalPort));
        p.free(a);
        assert_eq!(p.alloc(&[lip.into()]), Ok(a));
        assert_eq!(p.alloc(&[]), Err(LaddrError::NoLocalAddr));
        assert_eq!(p.alloc(&["2001:db8::1".parse().unwrap()]), Err(LaddrError::NoLocalAddr));
    }

    #[test]
    fn seed_changes_the_order() {
        let lip = Ipv4Addr::new(192, 0, 2, 200);
        let mut a = LocalPorts::with_seed(0, 1, 1);
        let mut b = LocalPorts::with_seed(0, 1, 2);
        let mut c = LocalPorts::with_seed(0, 1, 1);
        let sa: Vec<_> = (0..8).map(|_| a.alloc(&[lip.into()]).unwrap().port()).collect();
        let sb: Vec<_> = (0..8).map(|_| b.alloc(&[lip.into()]).unwrap().port()).collect();
        let sc: Vec<_> = (0..8).map(|_| c.alloc(&[lip.into()]).unwrap().port()).collect();
        assert_ne!(sa, sb);
        assert_eq!(sa, sc);
    }

    #[test]
    fn second_address_used_when_first_is_exhausted() {
        let (l1, l2) = (Ipv4Addr::new(192, 0, 2, 200), Ipv4Addr::new(192, 0, 2, 201));
        let mut p = LocalPorts::new(0, 64);
        let list = [l1.into(), l2.into()];
        let mut per = [0usize; 2];
        while let Ok(a) = p.alloc(&list) {
            per[usize::from(*a.ip() == l2)] += 1;
            assert_eq!(a.port() % 64, 0);
        }
        assert_eq!(per[0], per[1]);
        assert!(per[0] > 900);
    }
}
