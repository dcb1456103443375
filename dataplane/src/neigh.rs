//! Per-worker neighbour (ARP) cache with a bounded queue of packets waiting for resolution.
//! OWNER: tables helper. API is fixed (other modules code against it); bodies to be written.

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

pub struct NeighTable<B> {
    _b: std::marker::PhantomData<B>,
}

impl<B> NeighTable<B> {
    pub fn new(_cfg: NeighConfig) -> Self {
        todo!()
    }
    /// The MAC of a resolved, still reachable address.
    pub fn lookup(&self, _ip: Ipv4Addr, _now_ns: u64) -> Option<[u8; 6]> {
        todo!()
    }
    /// Hold `pkt` until `ip` (reached through `port`) resolves.
    pub fn enqueue(&mut self, _port: u16, _ip: Ipv4Addr, _pkt: B, _now_ns: u64) -> Enqueue<B> {
        todo!()
    }
    /// Record ip → mac (from any ARP request or reply heard). Returns the packets that were
    /// waiting for it, in arrival order, with the port they were to leave by.
    pub fn learn(&mut self, _port: u16, _ip: Ipv4Addr, _mac: [u8; 6], _now_ns: u64) -> Vec<(u16, B)> {
        todo!()
    }
    /// Whether `ip` has an entry (resolved or pending): ARP from it is then learned even when not
    /// addressed to us.
    pub fn contains(&self, _ip: Ipv4Addr) -> bool {
        todo!()
    }
    /// Timers: retries due and packets to drop. Call every few milliseconds.
    pub fn poll(&mut self, _now_ns: u64) -> PollOut<B> {
        todo!()
    }
    /// Drop all entries (and their held packets, returned for counting and freeing).
    pub fn flush(&mut self) -> Vec<B> {
        todo!()
    }
    pub fn entries(&self) -> Vec<NeighView> {
        todo!()
    }
    /// Packets currently held, over all entries.
    pub fn pending_len(&self) -> usize {
        todo!()
    }
}
