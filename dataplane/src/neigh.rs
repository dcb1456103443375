//! Per-worker neighbour (ARP) cache with a bounded queue of packets waiting for resolution.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy)]
pub struct NeighConfig {
    /// Most entries kept (resolved + pending).
    pub max_entries: usize,
    /// Most packets held for one unresolved address.
    pub pending_per_entry: usize,
    /// Most packets held over all unresolved addresses.
    pub pending_total: usize,
    /// Interval between ARP requests for an unresolved address.
    pub retry_ns: u64,
    /// Requests sent before giving up (the held packets are then dropped as unreachable).
    pub max_requests: u32,
    /// How long a resolved entry is trusted without hearing from the address again.
    pub reachable_ns: u64,
}

impl Default for NeighConfig {
    fn default() -> Self {
        NeighConfig {
            max_entries: 4096,
            pending_per_entry: 16,
            pending_total: 1024,
            retry_ns: 1_000_000_000,
            max_requests: 3,
            reachable_ns: 300_000_000_000,
        }
    }
}

/// Result of holding a packet for an unresolved next hop.
#[derive(Debug)]
pub enum Enqueue<B> {
    /// Held; this is the first packet for the address: send an ARP request now.
    SendRequest,
    /// Held; a request is already outstanding.
    Queued,
    /// Not held (per-entry or total limit reached, or table full): the caller drops it
    /// (DropReason::NeighPendingOverflow).
    Overflow(B),
}

/// What `poll` found due.
#[derive(Debug)]
pub struct PollOut<B> {
    /// (egress port, address) to send another ARP request for.
    pub retries: Vec<(u16, Ipv4Addr)>,
    /// Packets whose next hop never answered: drop them (DropReason::NeighUnreachable).
    pub unreachable: Vec<B>,
}

/// One entry as `neigh show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighView {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// `None` while incomplete.
    pub mac: Option<[u8; 6]>,
    pub pending: usize,
}

/// One cache entry.
#[derive(Debug)]
enum Entry<B> {
    Resolved {
        mac: [u8; 6],
        port: u16,
        /// Last time the address was heard from.
        confirmed_ns: u64,
    },
    Incomplete {
        /// Port the held packets leave by once resolved (and the ARP requests go out of).
        port: u16,
        /// Held packets, in arrival order.
        queue: VecDeque<B>,
        /// ARP requests sent so far (the caller sends the first on `SendRequest`).
        requests_sent: u32,
        next_retry_ns: u64,
    },
}

/// The cache. One per worker, so no locks; everything is bounded by [`NeighConfig`].
///
/// Timers are scanned by [`NeighTable::poll`]: the table is small (a gateway talks to its real
/// servers and a few routers), and `poll` skips the scan altogether until the earliest deadline it
/// knows of has passed.
#[derive(Debug)]
pub struct NeighTable<B> {
    cfg: NeighConfig,
    map: hashbrown::HashMap<Ipv4Addr, Entry<B>>,
    /// Packets held over all incomplete entries (exactly the sum of the queue lengths).
    pending: usize,
    /// No retry and no resolved-entry collection is due before this time.
    next_poll_ns: u64,
    /// Changes whenever an answer `lookup` gave may no longer hold: an address learned or
    /// changed, entries dropped or flushed, or a resolved entry going stale. Sessions cache the
    /// MAC of their next hop with this value ([`NeighTable::epoch`]).
    epoch: u32,
    /// No resolved entry goes stale before this time (a lower bound: refreshes only delay it).
    stale_at_ns: u64,
}

impl<B> NeighTable<B> {
    pub fn new(cfg: NeighConfig) -> Self {
        NeighTable { cfg, map: hashbrown::HashMap::new(), pending: 0, next_poll_ns: 0, epoch: 1, stale_at_ns: u64::MAX }
    }

    fn bump(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// The current epoch at `now_ns`: a MAC obtained from `lookup` under the same epoch is still
    /// what `lookup` would answer. Crossing the time a resolved entry goes stale bumps it.
    pub fn epoch(&mut self, now_ns: u64) -> u32 {
        if now_ns >= self.stale_at_ns {
            self.bump();
            let reachable = self.cfg.reachable_ns;
            self.stale_at_ns = self
                .map
                .values()
                .filter_map(|e| match e {
                    Entry::Resolved { confirmed_ns, .. } => Some(confirmed_ns.saturating_add(reachable)),
                    Entry::Incomplete { .. } => None,
                })
                .filter(|&t| t > now_ns)
                .min()
                .unwrap_or(u64::MAX);
        }
        self.epoch
    }

    /// A resolved entry is usable while it was confirmed less than `reachable_ns` ago.
    fn fresh(&self, confirmed_ns: u64, now_ns: u64) -> bool {
        now_ns.saturating_sub(confirmed_ns) < self.cfg.reachable_ns
    }

    /// A resolved entry is forgotten once unconfirmed for twice the reachable time (expired
    /// entries are kept a while so `contains` still learns from the address).
    fn gc_deadline(&self, confirmed_ns: u64) -> u64 {
        confirmed_ns.saturating_add(self.cfg.reachable_ns.saturating_mul(2))
    }

    /// The MAC of a resolved, still reachable address.
    pub fn lookup(&self, ip: Ipv4Addr, now_ns: u64) -> Option<[u8; 6]> {
        match self.map.get(&ip)? {
            Entry::Resolved { mac, confirmed_ns, .. } if self.fresh(*confirmed_ns, now_ns) => Some(*mac),
            _ => None,
        }
    }

    /// Hold `pkt` until `ip` (reached through `port`) resolves.
    ///
    /// Called after `lookup` missed: a resolved entry (expired, or trusted no longer by the
    /// caller) turns incomplete again and a fresh request is asked for.
    pub fn enqueue(&mut self, port: u16, ip: Ipv4Addr, pkt: B, now_ns: u64) -> Enqueue<B> {
        if self.pending >= self.cfg.pending_total {
            return Enqueue::Overflow(pkt);
        }
        let fresh_incomplete = |pkt: B, cfg: &NeighConfig| {
            let mut queue = VecDeque::with_capacity(cfg.pending_per_entry.min(4));
            queue.push_back(pkt);
            Entry::Incomplete { port, queue, requests_sent: 1, next_retry_ns: now_ns.saturating_add(cfg.retry_ns) }
        };
        if self.cfg.pending_per_entry == 0 {
            return Enqueue::Overflow(pkt);
        }
        match self.map.get_mut(&ip) {
            Some(Entry::Incomplete { queue, .. }) => {
                if queue.len() >= self.cfg.pending_per_entry {
                    return Enqueue::Overflow(pkt);
                }
                queue.push_back(pkt);
                self.pending += 1;
                Enqueue::Queued
            }
            Some(e @ Entry::Resolved { .. }) => {
                *e = fresh_incomplete(pkt, &self.cfg);
                self.epoch = self.epoch.wrapping_add(1);
                self.pending += 1;
                self.next_poll_ns = self.next_poll_ns.min(now_ns.saturating_add(self.cfg.retry_ns));
                Enqueue::SendRequest
            }
            None => {
                if self.map.len() >= self.cfg.max_entries {
                    return Enqueue::Overflow(pkt);
                }
                self.map.insert(ip, fresh_incomplete(pkt, &self.cfg));
                self.pending += 1;
                self.next_poll_ns = self.next_poll_ns.min(now_ns.saturating_add(self.cfg.retry_ns));
                Enqueue::SendRequest
            }
        }
    }

    /// Record ip → mac (from any ARP request or reply heard). Returns the packets that were
    /// waiting for it, in arrival order, with the port they were to leave by.
    ///
    /// A new address is not recorded when the table is full.
    pub fn learn(&mut self, port: u16, ip: Ipv4Addr, mac: [u8; 6], now_ns: u64) -> Vec<(u16, B)> {
        let resolved = Entry::Resolved { mac, port, confirmed_ns: now_ns };
        let mut changed = true;
        let out = match self.map.get_mut(&ip) {
            Some(e) => match std::mem::replace(e, resolved) {
                Entry::Incomplete { port: out_port, queue, .. } => {
                    self.pending -= queue.len();
                    queue.into_iter().map(|b| (out_port, b)).collect()
                }
                Entry::Resolved { mac: old_mac, port: old_port, .. } => {
                    // A refresh of the same answer leaves cached MACs valid.
                    changed = old_mac != mac || old_port != port;
                    Vec::new()
                }
            },
            None => {
                if self.map.len() < self.cfg.max_entries {
                    self.map.insert(ip, resolved);
                }
                Vec::new()
            }
        };
        if changed {
            self.bump();
        }
        self.stale_at_ns = self.stale_at_ns.min(now_ns.saturating_add(self.cfg.reachable_ns));
        self.next_poll_ns = self.next_poll_ns.min(self.gc_deadline(now_ns));
        out
    }

    /// Whether `ip` has an entry (resolved or pending): ARP from it is then learned even when not
    /// addressed to us.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.map.contains_key(&ip)
    }

    /// Timers: retries due and packets to drop. Call every few milliseconds.
    ///
    /// Also forgets resolved entries unconfirmed for twice `reachable_ns`, and, while the table is
    /// full, every expired resolved entry (so new addresses can be resolved).
    pub fn poll(&mut self, now_ns: u64) -> PollOut<B> {
        let mut out = PollOut { retries: Vec::new(), unreachable: Vec::new() };
        let full = self.map.len() >= self.cfg.max_entries;
        if now_ns < self.next_poll_ns && !full {
            return out;
        }
        let cfg = self.cfg;
        let before = self.map.len();
        let mut next = u64::MAX;
        let mut dropped = 0usize;
        self.map.retain(|&ip, e| match e {
            Entry::Incomplete { port, queue, requests_sent, next_retry_ns } => {
                if now_ns < *next_retry_ns {
                    next = next.min(*next_retry_ns);
                    return true;
                }
                if *requests_sent < cfg.max_requests {
                    out.retries.push((*port, ip));
                    *requests_sent += 1;
                    *next_retry_ns = now_ns.saturating_add(cfg.retry_ns);
                    next = next.min(*next_retry_ns);
                    true
                } else {
                    dropped += queue.len();
                    out.unreachable.extend(queue.drain(..));
                    false
                }
            }
            Entry::Resolved { confirmed_ns, .. } => {
                let age = now_ns.saturating_sub(*confirmed_ns);
                let gc = confirmed_ns.saturating_add(cfg.reachable_ns.saturating_mul(2));
                if now_ns >= gc || (full && age >= cfg.reachable_ns) {
                    false
                } else {
                    next = next.min(gc);
                    true
                }
            }
        });
        self.pending -= dropped;
        self.next_poll_ns = next;
        if self.map.len() != before {
            self.bump();
        }
        out
    }

    /// Drop all entries (and their held packets, returned for counting and freeing).
    pub fn flush(&mut self) -> Vec<B> {
        let mut out = Vec::with_capacity(self.pending);
        for (_, e) in self.map.drain() {
            if let Entry::Incomplete { queue, .. } = e {
                out.extend(queue);
            }
        }
        self.pending = 0;
        self.next_poll_ns = u64::MAX;
        self.bump();
        out
    }

    /// Drop the entries of port `port` (all entries when `None`), returning the packets they
    /// held (for counting and freeing) and how many entries went.
    pub fn flush_port(&mut self, port: Option<u16>) -> (usize, Vec<B>) {
        let mut out = Vec::new();
        let before = self.map.len();
        let mut released = 0usize;
        self.map.retain(|_, e| {
            let p = match e {
                Entry::Resolved { port, .. } | Entry::Incomplete { port, .. } => *port,
            };
            if port.is_some_and(|want| want != p) {
                return true;
            }
            if let Entry::Incomplete { queue, .. } = e {
                released += queue.len();
                out.extend(queue.drain(..));
            }
            false
        });
        self.pending -= released;
        if self.map.len() != before {
            self.bump();
        }
        (before - self.map.len(), out)
    }

    /// All entries, ordered by address.
    pub fn entries(&self) -> Vec<NeighView> {
        let mut v: Vec<NeighView> = self
            .map
            .iter()
            .map(|(&ip, e)| match e {
                Entry::Resolved { mac, port, .. } => NeighView { ip, port: *port, mac: Some(*mac), pending: 0 },
                Entry::Incomplete { port, queue, .. } => NeighView { ip, port: *port, mac: None, pending: queue.len() },
            })
            .collect();
        v.sort_unstable_by_key(|e| u32::from(e.ip));
        v
    }

    /// Packets currently held, over all entries.
    pub fn pending_len(&self) -> usize {
        self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, last)
    }

    fn cfg() -> NeighConfig {
        NeighConfig {
            max_entries: 8,
            pending_per_entry: 3,
            pending_total: 5,
            retry_ns: S,
            max_requests: 3,
            reachable_ns: 30 * S,
        }
    }

    /// The invariant `pending_len` promises: the sum of the queues shown by `entries`.
    fn check_pending(t: &NeighTable<u32>) {
        let sum: usize = t.entries().iter().map(|e| e.pending).sum();
        assert_eq!(t.pending_len(), sum);
    }

    #[test]
    fn resolve_flow_releases_in_order() {
        let mut t: NeighTable<u32> = NeighTable::new(cfg());
        assert_eq!(t.lookup(ip(1), 0), None);
        assert!(!t.contains(ip(1)));
        assert!(matches!(t.enqueue(1, ip(1), 10, 0), Enqueue::SendRequest));
        assert!(t.contains(ip(1)));
        assert!(matches!(t.enqueue(1, ip(1), 11, 1), Enqueue::Queued));
        assert!(matches!(t.enqueue(1, ip(1), 12, 2), Enqueue::Queued));
        assert_eq!(t.pending_len(), 3);
        assert_eq!(t.entries(), vec![NeighView { ip: ip(1), port: 1, mac: None, pending: 3 }]);
        assert_eq!(t.lookup(ip(1), 3), None);
        // Heard on port 2, but the packets leave by the port they were routed to.
        let out = t.learn(2, ip(1), MAC_A, 5);
        assert_eq!(out, vec![(1, 10), (1, 11), (1, 12)]);
        assert_eq!(t.pending_len(), 0);
        assert_eq!(t.lookup(ip(1), 5), Some(MAC_A));
        assert_eq!(t.entries(), vec![NeighView { ip: ip(1), port: 2, mac: Some(MAC_A), pending: 0 }]);
        // Learning again changes the MAC and returns nothing.
        assert!(t.learn(2, ip(1), MAC_B, 6).is_empty());
        assert_eq!(t.lookup(ip(1), 6), Some(MAC_B));
        check_pending(&t);
    }

    #[test]
    fn learn_unknown_address_creates_entry() {
        let mut t: NeighTable<u32> = NeighTable::new(cfg());
        assert!(t.learn(0, ip(7), MAC_A, 100).is_empty());
        assert!(t.contains(ip(7)));
        assert_eq!(t.lookup(ip(7), 100), Some(MAC_A));
    }

    #[test]
    fn resolved_entry_expires_and_re_resolves() {
        let mut t: NeighTable<u32> = NeighTable::new(cfg());
        t.learn(0, ip(1), MAC_A, 0);
        assert_eq!(t.lookup(ip(1), 30 * S - 1), Some(MAC_A));
        assert_eq!(t.lookup(ip(1), 30 * S), None);
        // Still known (ARP from it is learned), but packets wait for a fresh answer.
        assert!(t.contains(ip(1)));
        assert!(matches!(t.enqueue(0, ip(1), 1, 30 * S), Enqueue::SendRequest));
        assert!(matches!(t.enqueue(0, ip(1), 2, 30 * S), Enqueue::Queued));
        assert_eq!(t.lookup(ip(1), 30 * S), None);
        assert_eq!(t.learn(0, ip(1), MAC_B, 31 * S), vec![(0, 1), (0, 2)]);
        assert_eq!(t.lookup(ip(1), 31 * S), Some(MAC_B));
    }

    #[test]
    fn per_entry_and_total_limits() {
        let mut t: NeighTable<u32> = NeighTable::new(cfg());
        assert!(matches!(t.enqueue(0, ip(1), 1, 0), Enqueue::SendRequest));
        assert!(matches!(t.enqueue(0, ip(1), 2, 0), Enqueue::Queued));
        assert!(matches!(t.enqueue(0, ip(1), 3, 0), Enqueue::Queued));
        match t.enqueue(0, ip(1), 4, 0) {
            Enqueue::Overflow(p) => assert_eq!(p, 4),
            other => panic!("expected overflow, got {other:?}"),
        }
        assert_eq!(t.pending_len(), 3);
        assert!(matches!(t.enqueue(0, ip(2), 5, 0), Enqueue::SendRequest));
        assert!(matches!(t.enqueue(0, ip(2), 6, 0), Enqueue::Queued));
        assert_eq!(t.pending_len(), 5);
        // Total reached: neither an existing nor a new address may hold more.
        assert!(matches!(t.enqueue(0, ip(2), 7, 0), Enqueue::Overflow(7)));
        assert!(matches!(t.enqueue(0, ip(3), 8, 0), Enqueue::Overflow(8)));
        assert!(!t.contains(ip(3)));
        check_pending(&t);
        // Resolving one frees room.
        assert_eq!(t.learn(0, ip(1), MAC_A, 1).len(), 3);
        assert_eq!(t.pending_len(), 2);
        assert!(matches!(t.enqueue(0, ip(3), 8, 1), Enqueue::SendRequest));
        check_pending(&t);
    }

    #[test]
    fn table_full_refuses_new_addresses() {
        let mut c = cfg();
        c.max_entries = 2;
        let mut t: NeighTable<u32> = NeighTable::new(c);
        t.learn(0, ip(1), MAC_A, 0);
        assert!(matches!(t.enqueue(0, ip(2), 1, 0), Enqueue::SendRequest));
        assert!(matches!(t.enqueue(0, ip(3), 2, 0), Enqueue::Overflow(2)));
        assert!(t.learn(0, ip(4), MAC_B, 0).is_empty());
        assert!(!t.contains(ip(4)));
        assert_eq!(t.pending_len(), 1);
        // Once ip(1) has expired, a poll on the full table makes room.
        let out = t.poll(30 * S);
        assert!(out.unreachable.is_empty());
        assert!(!t.contains(ip(1)));
        assert!(matches!(t.enqueue(0, ip(3), 2, 30 * S), Enqueue::SendRequest));
    }

    #[test]
    fn retries_then_unreachable() {
        let mut t: NeighTable<String> = NeighTable::new(cfg());
        assert!(matches!(t.enqueue(3, ip(9), "a".to_string(), 0), Enqueue::SendRequest));
        assert!(matches!(t.enqueue(3, ip(9), "b".to_string(), 10), Enqueue::Queued));
        // Nothing due yet.
        let o = t.poll(S - 1);
        assert!(o.retries.is_empty() && o.unreachable.is_empty());
        // Requests 2 and 3.
        assert_eq!(t.poll(S).retries, vec![(3, ip(9))]);
        assert!(t.poll(S + 10).retries.is_empty());
        assert_eq!(t.poll(2 * S).retries, vec![(3, ip(9))]);
        assert!(t.contains(ip(9)));
        assert_eq!(t.pending_len(), 2);
        // Third request unanswered for retry_ns: give up, in arrival order.
        let o = t.poll(3 * S);
        assert!(o.retries.is_empty());
        assert_eq!(o.unreachable, vec!["a".to_string(), "b".to_string()]);
        assert!(!t.contains(ip(9)));
        assert_eq!(t.pending_len(), 0);
        assert!(t.entries().is_empty());
        // A later packet starts over.
        assert!(matches!(t.enqueue(3, ip(9), "c".to_string(), 4 * S), Enqueue::SendRequest));
    }

    #[test]
    fn poll_handles_many_entries_independently() {
        let mut t: NeighTable<u32> = NeighTable::new(cfg());
        assert!(matches!(t.enqueue(0, ip(1), 1, 0), Enqueue::SendRequest));
        assert!(matches!(t.enqueue(0, ip(2), 2, S / 2), Enqueue::SendRequest));
        let mut r = t.poll(S).retries;
        r.sort();
        assert_eq!(r, vec![(0, ip(1))]);
        assert_eq!(t.poll(S + S / 2).retries, vec![(0, ip(2))]);
        // ip(1) answers; ip(2) never does.
        assert_eq!(t.learn(0, ip(1), MAC_A, 2 * S - 1), vec![(0, 1)]);
        assert_eq!(t.poll(2 * S + S / 2).retries, vec![(0, ip(2))]);
        let o = t.poll(3 * S + S / 2);
        assert_eq!(o.unreachable, vec![2]);
        assert!(t.contains(ip(1)));
        assert_eq!(t.pending_len(), 0);
        check_pending(&t);
    }

    #[test]
    fn resolved_entries_are_collected_after_twice_reachable() {
        let mut t: NeighTable<u32> = NeighTable::new(cfg());
        t.learn(0, ip(1), MAC_A, 0);
        t.learn(0, ip(2), MAC_B, 10 * S);
        t.poll(59 * S);
        assert!(t.contains(ip(1)));
        t.poll(60 * S);
        assert!(!t.contains(ip(1)));
        assert!(t.contains(ip(2)));
        // Confirmation pushes the deadline.
        t.learn(0, ip(2), MAC_B, 60 * S);
        t.poll(100 * S);
        assert!(t.contains(ip(2)));
        t.poll(120 * S);
        assert!(!t.contains(ip(2)));
    }

    #[test]
    fn flush_returns_everything_held() {
        let mut t: NeighTable<u32> = NeighTable::new(cfg());
        t.enqueue(0, ip(1), 1, 0);
        t.enqueue(0, ip(1), 2, 0);
        t.enqueue(1, ip(2), 3, 0);
        t.learn(0, ip(3), MAC_A, 0);
        let mut f = t.flush();
        f.sort();
        assert_eq!(f, vec![1, 2, 3]);
        assert_eq!(t.pending_len(), 0);
        assert!(t.entries().is_empty());
        assert!(!t.contains(ip(3)));
        // Still usable afterwards, timers included.
        assert!(matches!(t.enqueue(0, ip(1), 4, 0), Enqueue::SendRequest));
        assert_eq!(t.poll(S).retries, vec![(0, ip(1))]);
    }

    #[test]
    fn zero_per_entry_limit_holds_nothing() {
        let mut c = cfg();
        c.pending_per_entry = 0;
        let mut t: NeighTable<u32> = NeighTable::new(c);
        assert!(matches!(t.enqueue(0, ip(1), 1, 0), Enqueue::Overflow(1)));
        assert_eq!(t.pending_len(), 0);
    }

    #[test]
    fn pending_accounting_stays_exact_under_churn() {
        let mut t: NeighTable<u32> = NeighTable::new(NeighConfig {
            max_entries: 16,
            pending_per_entry: 4,
            pending_total: 20,
            retry_ns: 3,
            max_requests: 2,
            reachable_ns: 50,
        });
        // Deterministic pseudo-random mix of enqueue / learn / poll.
        let mut x: u32 = 12345;
        let mut held = 0usize;
        for now in 0..5000u64 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let a = ip((x >> 8) as u8 % 24);
            match (x >> 20) % 5 {
                0..=2 => {
                    if !matches!(t.enqueue(0, a, now as u32, now), Enqueue::Overflow(_)) {
                        held += 1;
                    }
                }
                3 => held -= t.learn(0, a, MAC_A, now).len(),
                _ => held -= t.poll(now).unreachable.len(),
            }
            assert_eq!(t.pending_len(), held);
            assert!(held <= 20);
            assert!(t.entries().len() <= 16);
            check_pending(&t);
        }
        assert_eq!(t.flush().len(), held);
        assert_eq!(t.pending_len(), 0);
    }
    #[test]
    fn flush_port_keeps_other_ports() {
        let mut t: NeighTable<u32> = NeighTable::new(NeighConfig::default());
        let a = Ipv4Addr::new(203, 0, 113, 11);
        let b = Ipv4Addr::new(192, 0, 2, 11);
        let c = Ipv4Addr::new(192, 0, 2, 12);
        t.learn(0, a, [2, 0, 0, 0, 0, 1], 0);
        t.learn(1, b, [2, 0, 0, 0, 0, 2], 0);
        assert!(matches!(t.enqueue(1, c, 7, 0), Enqueue::SendRequest));
        assert_eq!(t.pending_len(), 1);
        let (n, held) = t.flush_port(Some(1));
        assert_eq!((n, held), (2, vec![7]));
        assert_eq!(t.pending_len(), 0);
        assert_eq!(t.lookup(a, 1), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(t.lookup(b, 1), None);
        let (n, held) = t.flush_port(None);
        assert_eq!((n, held.len()), (1, 0));
        assert!(t.entries().is_empty());
    }

    /// The epoch changes whenever a cached `lookup` answer could be wrong, and only then.
    #[test]
    fn epoch_tracks_changes_and_staleness() {
        let mut t: NeighTable<u32> = NeighTable::new(cfg());
        let reach = cfg().reachable_ns;
        let e0 = t.epoch(0);
        t.learn(0, ip(1), [2, 0, 0, 0, 0, 1], 0);
        let e1 = t.epoch(1);
        assert_ne!(e0, e1, "a new address");
        t.learn(0, ip(1), [2, 0, 0, 0, 0, 1], 20);
        assert_eq!(t.epoch(11), e1, "a refresh of the same MAC keeps cached answers");
        t.learn(0, ip(1), [2, 0, 0, 0, 0, 9], 20);
        let e2 = t.epoch(21);
        // Staleness is tracked from the first confirmation (a lower bound): one early bump.
        assert_ne!(t.epoch(reach), e2);
        let e2 = t.epoch(reach);
        assert_ne!(e1, e2, "a changed MAC");
        assert_eq!(t.epoch(20 + reach - 1), e2);
        assert_eq!(t.lookup(ip(1), 20 + reach), None);
        let e3 = t.epoch(20 + reach);
        assert_ne!(e2, e3, "the entry went stale");
        assert_eq!(t.epoch(20 + reach + 1), e3);
        t.flush();
        assert_ne!(t.epoch(20 + reach + 2), e3, "flush");
    }
}
