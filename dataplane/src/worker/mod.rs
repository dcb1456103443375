//! The per-core pipeline.
//!
//! A worker owns everything it touches per packet (neighbour cache, session table, scheduler
//! state, local ports, persistence templates, counters), so the packet path takes no lock. It
//! reads configuration from an immutable [`Snapshot`] it swaps between bursts.
//!
//! Shape of `process`: parsing and decisions borrow the buffer (`&mut B`) and return a
//! [`Verdict`]; only the last step (transmit, hold for ARP, hand to another worker, drop) takes
//! ownership. Forwarding is planned (route, egress: [`crate::mode::plan`]) before any state is
//! created, then applied (TTL, then the mode's rewrite: [`crate::mode::forward`]).
//!
//! The type is split over the files of this folder, one stage each:
//!
//! | file | stage |
//! |---|---|
//! | `mod.rs` | the public API: configuration, `process`/`process_burst`, `tick`, read-outs |
//! | `input.rs` | Ethernet, ARP, IPv4, local delivery (ICMP echo), L4 dispatch (the [`Segment`] is built there) |
//! | `forward.rs` | packets of known sessions and the first packets of new flows |
//! | `owner.rs` | which worker owns a packet's session |
//! | `sched.rs` | scheduler glue: per-service state, persistence templates, statistics slots, connection counts |
//! | `icmp.rs` | ICMP errors: translated for sessions, built for TTL and MTU |
//! | `output.rs` | MACs, next hops, ARP requests, transmission |
//!
//! What a forwarding mode does to a packet is in [`crate::mode`], one file per mode.
//!
//! # Which worker owns a session (multi-core)
//!
//! The rules are deterministic and the same on every worker, so any worker can tell where a
//! packet's session lives without shared state:
//!
//! - **DR and TUN**: the worker that receives the client's packet owns the flow. There is no
//!   reply direction through rvs, and RSS keeps a flow on one queue.
//! - **NAT**: the owner is [`owner_of`]`(client_ip, client_port) % n_cores`. A client packet to
//!   a service with NAT real servers that arrives elsewhere is handed to the owner before the
//!   session lookup; a reply (source = a NAT real server of some service) goes to
//!   `owner_of(dst_ip, dst_port)`. RSS of the reply hashes other addresses, hence the hand-off.
//! - **FULLNAT**: the receiving worker owns the flow and takes a local port with
//!   `lport % n_cores == core`; a reply to LIP:lport goes to worker `lport % n_cores`.
//! - **Persistent services** (any mode): the owner is `owner_of(client_ip & netmask, 0)`, so a
//!   client network's template lives on one worker whichever queue its connections arrive on;
//!   client packets arriving elsewhere are handed over (before the session lookup), and NAT
//!   replies follow the same rule when every service of their real server is persistent with
//!   one netmask ([`Owner`]).
//! - ICMP errors quoting a NAT flow (either side) or a FULLNAT flow (real-server side) follow
//!   the same rules on the quoted tuple.
//!
//! A handed-over packet is processed with [`Worker::process_redirected`], never handed again.

mod forward;
mod icmp;
mod input;
mod output;
mod owner;
mod sched;
#[cfg(test)]
mod tests;

pub use owner::owner_of;
pub use sched::MAX_RS_STATS;

use crate::buf::PacketBuf;
use crate::conn::{ConnTable, SessionFilter, SessionView, Timeouts};
use crate::counters::{Counters, DropReason, RsStats};
use crate::laddr::LocalPorts;
use crate::neigh::{NeighConfig, NeighTable, NeighView};
use crate::snapshot::Snapshot;
use crate::wire::{ethernet, ipv4};
use hashbrown::HashMap;
use rvs_model::ServiceKey;
use sched::{ConnCounts, SlotHop, SvcSched, Template, TemplateKey};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Static parameters of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Index of this worker (0-based).
    pub core: usize,
    /// Number of workers.
    pub n_cores: usize,
    /// Session table capacity of this worker (also bounds the persistence templates).
    pub max_sessions: usize,
    /// Initial timeouts; a snapshot whose `tunables.timeouts` differ from the previous one's
    /// replaces them.
    pub timeouts: Timeouts,
    pub neigh: NeighConfig,
    /// session-wheel entries examined per tick
    pub expire_budget: usize,
    /// Varies the FULLNAT local-port order between runs (rvsd passes the start time, in ns since
    /// the Unix epoch), so a restarted gateway does not walk the ports in its predecessor's
    /// order; also the base of FULLNAT's sequence and timestamp clock (`seed + now`), which so
    /// keeps going forward across restarts.
    pub seed: u64,
    /// FULLNAT: offsets the initial sequence numbers and timestamps the real servers see, per
    /// tuple (rvsd draws it at random at start).
    pub secret: u64,
    /// How long the real servers keep a closed connection in TIME_WAIT (2 × MSL; 60 s on
    /// Linux): a local port handed out again towards the same server sooner is counted
    /// (`lport_reused_early`).
    pub rs_time_wait_ns: u64,
    /// Sessions from which `process_burst` prefetches a burst's lookups (below it the slab and
    /// index fit in a core's L2 cache and the pre-pass only costs instructions).
    pub prefetch_from: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            core: 0,
            n_cores: 1,
            max_sessions: 1 << 20,
            timeouts: Timeouts::default(),
            neigh: NeighConfig::default(),
            expire_budget: 256,
            seed: 0,
            secret: 0,
            rs_time_wait_ns: 60_000_000_000,
            prefetch_from: PREFETCH_FROM,
        }
    }
}

/// What the worker needs from its environment (rvsd: a mempool, per-port tx buffers, rings to
/// the other workers; tests: Vecs).
pub trait Io<B: PacketBuf> {
    /// A new empty buffer (for ARP requests, ICMP errors), or None when the pool is empty.
    fn alloc(&mut self) -> Option<B>;
    /// Queue `pkt` for transmission on port `pkt.port()`.
    fn tx(&mut self, pkt: B);
    /// Hand `pkt` to worker `core`, which owns its session (that worker calls
    /// [`Worker::process_redirected`] with it). On a full ring rvsd drops it and counts
    /// `DropReason::RedirectFull` (with `Worker::count_drop`).
    fn redirect(&mut self, core: usize, pkt: B);
    /// This worker learned ip → mac on `port`: rvsd passes it to the other workers
    /// ([`Worker::learn_neigh`]), since an ARP reply lands on one queue only. Called only when
    /// `n_cores > 1`.
    fn neigh_learned(&mut self, port: u16, ip: Ipv4Addr, mac: [u8; 6]);
}

/// Outcome of looking at a packet; the caller then acts on the owned buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Count under the reason and free.
    Drop(DropReason),
    /// Used up without output (an ARP reply we learned from).
    Consumed,
    /// Transmit as is on `pkt.port()` (the MACs are already set: ARP replies).
    Tx,
    /// Send out of `port` to the neighbour `nh` (resolving its MAC, or holding for ARP).
    Output { port: u16, nh: Ipv4Addr },
    /// Hand to worker `core`, the owner of the packet's session (a `u16`, so that a verdict is
    /// 8 bytes and travels in a register).
    Redirect(u16),
    /// Send out of `snapshot.ports[port_idx]` to `mac` (a session's cached next hop).
    Hop { port_idx: u8, mac: [u8; 6] },
}

/// The forwarding stamp sessions cache their hops under (`Session::fwd_stamp`): a new one
/// whenever the snapshot generation or the neighbour table's epoch changed, so cached hops go
/// stale with what they were computed from. Never 0 (a session's "nothing cached").
#[derive(Debug, Clone, Copy)]
struct FwdStamp {
    current: u32,
    /// (snapshot generation, neighbour epoch) `current` stands for.
    of: (u64, u32),
}

impl FwdStamp {
    const NEW: FwdStamp = FwdStamp { current: 1, of: (u64::MAX, 0) };

    /// The stamp for this snapshot generation and neighbour epoch.
    #[inline]
    fn at(&mut self, generation: u64, neigh_epoch: u32) -> u32 {
        let of = (generation, neigh_epoch);
        if of != self.of {
            self.of = of;
            self.current = self.current.wrapping_add(1).max(1);
        }
        self.current
    }
}

/// The per-core pipeline. See the module documentation.
pub struct Worker<B: PacketBuf> {
    snap: Arc<Snapshot>,
    st: State<B>,
}

/// Everything mutable, separate from the snapshot so the packet path can borrow both at once
/// without cloning the `Arc` (an atomic on a cache line shared by all workers) per packet.
struct State<B> {
    cfg: WorkerConfig,
    neigh: NeighTable<B>,
    conns: ConnTable,
    /// By [`sched_id`].
    sched: HashMap<u64, SvcSched>,
    conn_counts: ConnCounts,
    counters: Counters,
    /// Reused for `PickCtx::conns` of schedulers that look at connection counts.
    scratch: Vec<(u32, u32)>,
    lports: LocalPorts,
    templates: HashMap<TemplateKey, Template>,
    /// Next time expired templates are swept.
    template_sweep_ns: u64,
    /// IP identification of the outer headers of TUN packets.
    tun_ident: u16,
    /// The packet being processed was handed over by another worker: never redirect it again.
    redirected: bool,
    /// (service, real server) → index into `rs_stats`, looked up once per new session.
    rs_slots: HashMap<(ServiceKey, SocketAddr), u32>,
    /// Per statistics slot: the hop of the real server's last new session (see `new_flow`).
    slot_hops: Vec<SlotHop>,
    /// Per-(service, real server) traffic; a session holds its slot index (`Session::stats`).
    /// Slots are never reused, so the figures are cumulative for the worker's life.
    rs_stats: Vec<((ServiceKey, SocketAddr), RsStats)>,
    /// The session-index hash of the packet being processed, computed by the burst's pre-pass
    /// (`process_burst`) from the same header fields `l4_input` reads; `None` otherwise.
    hint: Option<u64>,
    stamp: FwdStamp,
}

impl<B: PacketBuf> Worker<B> {
    pub fn new(cfg: WorkerConfig, snap: Arc<Snapshot>) -> Self {
        let neigh = NeighTable::new(cfg.neigh);
        let conns = ConnTable::new(cfg.max_sessions, cfg.timeouts);
        let lports = LocalPorts::with_seed(cfg.core, cfg.n_cores, cfg.seed);
        let mut w = Worker {
            snap: Arc::new(Snapshot::empty()),
            st: State {
                cfg,
                neigh,
                conns,
                sched: HashMap::new(),
                conn_counts: ConnCounts::default(),
                counters: Counters::default(),
                scratch: Vec::new(),
                lports,
                templates: HashMap::new(),
                template_sweep_ns: 0,
                tun_ident: 0,
                redirected: false,
                rs_slots: HashMap::new(),
                rs_stats: Vec::new(),
                slot_hops: Vec::new(),
                hint: None,
                stamp: FwdStamp::NEW,
            },
        };
        w.set_snapshot(snap);
        w
    }

    /// Switch to a newer snapshot (between bursts). Rebuilds per-service scheduler state (keeping
    /// rotation state of services whose real-server list is unchanged, `SchedState::update` when
    /// changed), and takes the snapshot's timeouts when they changed. Sessions of deleted real
    /// servers are looked at lazily, on their next packet.
    ///
    /// When `snap` was built from the very snapshot this worker runs on, only the services of
    /// its change list ([`Snapshot::changes`]) are touched: O(changes), not O(services). Else
    /// (a skipped generation, no list) every service is walked.
    pub fn set_snapshot(&mut self, snap: Arc<Snapshot>) {
        let listed = snap.changes.as_ref().filter(|c| c.base == self.snap.id() && c.since == self.snap.generation);
        if let Some(changes) = listed {
            for key in &changes.keys {
                let svc = match key.vip.ip() {
                    IpAddr::V4(v4) => snap.services.get(&(key.proto, v4, key.vip.port())),
                    IpAddr::V6(_) => None,
                };
                match svc {
                    Some(svc) => sched::update(&mut self.st.sched, svc, &snap),
                    None => {
                        self.st.sched.remove(&sched::sched_id(key));
                    }
                }
            }
        } else {
            // A snapshot built with `Snapshot::build_from` shares the `Arc` of every unchanged
            // service (pointer compare); otherwise an equal definition is still skipped after a
            // compare, without rebuilding.
            for svc in snap.services.values() {
                sched::update(&mut self.st.sched, svc, &snap);
            }
            // Every service of the snapshot now has an entry: more entries means some are gone.
            if self.st.sched.len() != snap.services.len() {
                self.st.sched.retain(|_, s| match s.def.key.vip.ip() {
                    IpAddr::V4(v4) => snap.services.contains_key(&(s.def.key.proto, v4, s.def.key.vip.port())),
                    IpAddr::V6(_) => false,
                });
            }
        }
        if snap.tunables.timeouts != self.snap.tunables.timeouts {
            self.set_timeouts(snap.tunables.timeouts);
        }
        self.snap = snap;
    }

    pub fn generation(&self) -> u64 {
        self.snap.generation
    }

    /// Handle one received frame; it ends transmitted (io.tx), held (waiting for ARP), handed to
    /// the worker owning its session (io.redirect) or dropped (counted under a DropReason).
    pub fn process(&mut self, pkt: B, now_ns: u64, io: &mut impl Io<B>) {
        self.st.counters.rx_pkts += 1;
        self.st.counters.rx_bytes += pkt.len() as u64;
        self.run(pkt, now_ns, false, io);
    }

    /// Handle a burst of received frames, each as [`Worker::process`] does, in order; the burst
    /// is left empty. The session lookups of the burst are started first: every frame's tuple is
    /// hashed and its index bucket prefetched, then the session that bucket points to, so the
    /// cache misses of a burst overlap instead of following one another (from about a million
    /// sessions on, a lookup is mostly waiting for memory). The prefetch is the buffer's
    /// [`PacketBuf::prefetch`]; without one this is `process` in a loop.
    pub fn process_burst(&mut self, pkts: &mut Vec<B>, now_ns: u64, io: &mut impl Io<B>) {
        if self.st.conns.len() < self.st.cfg.prefetch_from {
            // The sessions are in the cache anyway: the pre-pass would only add instructions.
            for p in pkts.drain(..) {
                self.process(p, now_ns, io);
            }
            return;
        }
        while !pkts.is_empty() {
            let n = pkts.len().min(LOOKAHEAD);
            let mut hashes = [None; LOOKAHEAD];
            let conns = &self.st.conns;
            for (h, p) in hashes.iter_mut().zip(&pkts[..n]) {
                *h = peek_key(p.data()).map(|k| conns.hash(&k));
                if let Some(h) = *h {
                    conns.prefetch_bucket(h, B::prefetch);
                }
            }
            let mut fresh = 0;
            for h in hashes[..n].iter().flatten() {
                if !conns.prefetch_session(*h, B::prefetch) {
                    fresh += 1;
                }
            }
            // Flows without a candidate session are most likely new: the slab entries they will
            // take.
            conns.prefetch_free(fresh, B::prefetch);
            for (p, h) in pkts.drain(..n).zip(hashes) {
                // The lookup takes the hash from here instead of computing it again.
                self.st.hint = h;
                self.process(p, now_ns, io);
                self.st.hint = None;
            }
        }
    }

    /// A packet another worker handed over (it was counted in `rx_pkts` there): processed here
    /// whatever the owner rule says, so it is never redirected twice.
    pub fn process_redirected(&mut self, pkt: B, now_ns: u64, io: &mut impl Io<B>) {
        self.st.counters.redirected_in += 1;
        self.run(pkt, now_ns, true, io);
    }

    /// A neighbour learned by another worker: record it and release the packets held for it.
    pub fn learn_neigh(&mut self, port: u16, ip: Ipv4Addr, mac: [u8; 6], now_ns: u64, io: &mut impl Io<B>) {
        let snap: &Snapshot = &self.snap;
        self.st.release(snap, port, ip, mac, now_ns, io);
    }

    fn run(&mut self, mut pkt: B, now_ns: u64, redirected: bool, io: &mut impl Io<B>) {
        let snap: &Snapshot = &self.snap;
        let st = &mut self.st;
        st.redirected = redirected;
        match st.input(snap, &mut pkt, now_ns, io) {
            Verdict::Drop(r) => st.counters.drop(r),
            Verdict::Consumed => st.counters.arp_rx_consumed += 1,
            Verdict::Tx => st.tx(pkt, io),
            Verdict::Output { port, nh } => st.send_via(snap, pkt, port, nh, now_ns, io),
            Verdict::Hop { port_idx, mac } => st.send_hop(snap, pkt, port_idx, mac, io),
            Verdict::Redirect(core) => {
                st.counters.redirected_out += 1;
                io.redirect(usize::from(core), pkt);
            }
        }
    }

    /// Timers, called between bursts: ARP retries (build requests with io.alloc), packets whose
    /// next hop never answered (drop NeighUnreachable), session expiry (ConnTable::expire with
    /// expire_budget; FULLNAT ports go back), expired persistence templates (once a second).
    pub fn tick(&mut self, now_ns: u64, io: &mut impl Io<B>) {
        let snap: &Snapshot = &self.snap;
        let st = &mut self.st;
        let due = st.neigh.poll(now_ns);
        for (port, ip) in due.retries {
            st.send_arp_request(snap, port, ip, io);
        }
        for pkt in due.unreachable {
            drop(pkt);
            st.counters.drop(DropReason::NeighUnreachable);
        }
        let counts = &mut st.conn_counts;
        let counters = &mut st.counters;
        st.conns.expire_with(now_ns, st.cfg.expire_budget, B::prefetch, |s| {
            counts.sub(s.stats_slot(), s.svc(), s.rs_addr(), s.state);
            counters.sessions_expired += 1;
        });
        st.counters.sessions_active = st.conns.len() as u64;
        if now_ns >= st.template_sweep_ns {
            st.templates.retain(|_, t| t.expires_ns > now_ns);
            st.template_sweep_ns = now_ns.saturating_add(1_000_000_000);
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.st.counters
    }

    /// rvsd counts tx-queue-full and redirect-ring-full drops itself.
    pub fn count_drop(&mut self, r: DropReason, n: u64) {
        self.st.counters.drops[r as usize] += n;
    }

    /// Per (service, real server) sessions on this worker: (active, inactive) as ipvsadm counts them (ESTABLISHED = active).
    pub fn conn_counts(&self) -> impl Iterator<Item = (&ServiceKey, &SocketAddr, (u32, u32))> + '_ {
        let c = &self.st.conn_counts;
        let by_slot =
            self.st.rs_stats.iter().zip(&c.by_slot).filter(|(_, n)| **n != (0, 0)).map(|((k, _), n)| (&k.0, &k.1, *n));
        by_slot.chain(c.other.iter().map(|((k, a), n)| (k, a, *n)))
    }

    /// The address ranges of the session slab and index ([`ConnTable::memory`]).
    pub fn table_memory(&self) -> [(usize, usize); 2] {
        self.st.conns.memory()
    }

    pub fn sessions(&self) -> &ConnTable {
        &self.st.conns
    }

    pub fn neigh_entries(&self) -> Vec<NeighView> {
        self.st.neigh.entries()
    }

    /// Live persistence templates of this worker.
    pub fn templates(&self) -> usize {
        self.st.templates.len()
    }

    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.st.cfg.timeouts = t;
        self.st.conns.set_timeouts(t);
    }

    /// Traffic per (service, real server) on this worker since it started (`ipvsadm --stats`).
    pub fn rs_stats(&self) -> impl Iterator<Item = (&(ServiceKey, SocketAddr), &RsStats)> + '_ {
        self.st.rs_stats.iter().map(|(k, v)| (k, v))
    }

    /// Up to `max` sessions matching `filter` (`ipvsadm -L -c`), and how many matched in all.
    pub fn dump_sessions(&self, filter: &SessionFilter, max: usize, now_ns: u64) -> (Vec<SessionView>, u64) {
        self.st.conns.views(filter, max, now_ns)
    }

    /// Forget the neighbours learned on `port` (all ports: `None`); returns how many entries
    /// went. The neighbour table only flushes as a whole, so with a port the entries of the
    /// other ports are flushed and learned again (their age restarts); packets held for any
    /// unresolved neighbour are dropped as `NeighUnreachable`.
    pub fn flush_neigh(&mut self, port: Option<u16>, _now_ns: u64) -> usize {
        let (removed, held) = self.st.neigh.flush_port(port);
        self.st.counters.drops[DropReason::NeighUnreachable as usize] += held.len() as u64;
        removed
    }
}

/// Frames of a burst whose session lookups are started together (DPDK's usual burst).
const LOOKAHEAD: usize = 32;

/// Default [`WorkerConfig::prefetch_from`]: 16k sessions take ~1.5 MiB of slab and index (80 +
/// ~16 bytes each), about a server core's L2 cache.
pub const PREFETCH_FROM: usize = 1 << 14;

/// The 5-tuple of a TCP or UDP over IPv4 frame, read without validation, only to start the
/// cache loads of its lookup early (the pipeline parses and checks the frame afterwards).
fn peek_key(d: &[u8]) -> Option<crate::conn::FlowKey> {
    if d.get(12..14)? != ethernet::ethertype::IPV4.to_be_bytes() {
        return None;
    }
    let ihl = usize::from(d.get(ETH)? & 0x0f) * 4;
    let proto = *d.get(ETH + 9)?;
    if proto != ipv4::protocol::TCP && proto != ipv4::protocol::UDP {
        return None;
    }
    let a = d.get(ETH + 12..ETH + 20)?;
    let l4 = d.get(ETH + ihl..ETH + ihl + 4)?;
    Some(crate::conn::FlowKey {
        proto,
        src: Ipv4Addr::new(a[0], a[1], a[2], a[3]),
        dst: Ipv4Addr::new(a[4], a[5], a[6], a[7]),
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
    })
}

const ETH: usize = ethernet::HEADER_LEN;
