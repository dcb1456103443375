//! The per-core pipeline.
//!
//! A worker owns everything it touches per packet (neighbour cache, session table, scheduler
//! state, local ports, persistence templates, counters), so the packet path takes no lock. It
//! reads configuration from an immutable [`Snapshot`] it swaps between bursts.
//!
//! Shape of `process`: parsing and decisions borrow the buffer (`&mut B`) and return a
//! [`Verdict`]; only the last step (transmit, hold for ARP, hand to another worker, drop) takes
//! ownership. Forwarding is planned (`plan`: route, egress) before any state is created, then
//! applied (`apply`: TTL, then the mode's rewrite), one match arm per forwarding mode.
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

use crate::buf::PacketBuf;
use crate::clientaddr;
use crate::conn::{
    ca_flags, ConnState, ConnTable, Dir, FlowKey, Session, SessionFilter, SessionId, SessionView, Timeouts, NO_HOP,
    NO_STATS_SLOT,
};
use crate::counters::{Counters, DropReason, RsStats};
use crate::laddr::{LaddrError, LocalPorts};
use crate::nat;
use crate::neigh::{Enqueue, NeighConfig, NeighTable, NeighView};
use crate::route::Route;
use crate::sched::{PickCtx, SchedState};
use crate::snapshot::{Owner, PortInfo, Snapshot};
use crate::tun::{self, TunError};
use crate::wire::{arp, ethernet, icmp, ipv4, tcp, udp};
use hashbrown::HashMap;
use rvs_model::{ClientAddrMode, FwdMode, Proto, SchedKind, Service, ServiceKey};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
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
    /// Varies the FULLNAT local-port order between runs (rvsd passes the start time), so a
    /// restarted gateway does not reuse the ports its predecessor left in TIME_WAIT on the RS.
    pub seed: u64,
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

/// The NAT owner hash: a fixed multiplicative mix of client address and port (the same on
/// every worker and every run).
#[inline]
pub fn owner_of(ip: Ipv4Addr, port: u16, n_cores: usize) -> usize {
    let h = (u32::from(ip) ^ (port as u32).rotate_left(16)).wrapping_mul(0x9E37_79B1) >> 16;
    h as usize % n_cores.max(1)
}

/// `ip` with its host bits (under `mask`) cleared: the client network of a persistence template.
#[inline]
fn masked(ip: Ipv4Addr, mask: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) & u32::from(mask))
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

/// How a packet of a session leaves: decided before a new session is created, so a flow that
/// cannot be forwarded leaves no state behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    port: u16,
    /// Next hop on `port` (the destination itself on a connected route).
    nh: Ipv4Addr,
    /// TUN: outer source (the egress port's address) and the egress MTU.
    tun: Option<(Ipv4Addr, u16)>,
}

/// Scheduler state of one service on this worker, with the server list it was built from.
#[derive(Debug)]
struct SvcSched {
    kind: SchedKind,
    /// Statistics slot of each real server of `def` (by index), [`SLOT_UNKNOWN`] until its
    /// first session: a new flow finds its slot without hashing (service, real server).
    slots: Vec<u32>,
    /// The definition this state was built from (its real servers), shared with the snapshot.
    def: Arc<Service>,
    /// `None` when this build does not implement the scheduler (every new flow is then
    /// NoRealServer; rvsd refuses such services before they get here).
    state: Option<SchedState>,
    /// Some server has an upper threshold: pass connection counts whatever the scheduler.
    thresholds: bool,
}

/// The hop towards a real server under a forwarding stamp (0: none yet), kept per statistics
/// slot so that the new sessions of a (service, real server) pair skip the route and neighbour
/// lookups their first packet would otherwise make.
#[derive(Debug, Clone, Copy)]
struct SlotHop {
    stamp: u32,
    port_idx: u8,
    mac: [u8; 6],
    /// TUN: the outer source address.
    tun_src: Ipv4Addr,
}

/// [`SvcSched::slots`] entry not looked up yet.
const SLOT_UNKNOWN: u32 = u32::MAX - 1;

/// The worker's key of a service (its scheduler state): (protocol, VIP, port) packed into one
/// word, so finding it costs one hash step. Services are IPv4 (the snapshot holds no others).
fn sched_id(k: &ServiceKey) -> u64 {
    match k.vip {
        SocketAddr::V4(a) => {
            u64::from(k.proto.ip_proto()) << 48 | u64::from(u32::from(*a.ip())) << 16 | u64::from(a.port())
        }
        SocketAddr::V6(_) => u64::MAX,
    }
}

/// Per-(service, real server) (active, inactive) session counts, as ipvsadm shows them and the
/// lc/wlc/... schedulers read them: indexed by the session's statistics slot (no hashing on the
/// packet path), in a map for the sessions of pairs that have no slot.
#[derive(Default)]
struct ConnCounts {
    by_slot: Vec<(u32, u32)>,
    other: HashMap<(ServiceKey, SocketAddr), (u32, u32)>,
}

impl ConnCounts {
    fn get(&self, slot: Option<u32>, svc: ServiceKey, rs: SocketAddr) -> (u32, u32) {
        match slot.and_then(|i| self.by_slot.get(i as usize)) {
            Some(c) => *c,
            None => self.other.get(&(svc, rs)).copied().unwrap_or((0, 0)),
        }
    }

    /// Count a session (of statistics slot `slot`) in `state`.
    fn add(&mut self, slot: u32, svc: ServiceKey, rs: SocketAddr, state: ConnState) {
        let c = match self.by_slot.get_mut(slot as usize) {
            Some(c) => c,
            None => self.other.entry((svc, rs)).or_insert((0, 0)),
        };
        if state.is_active() {
            c.0 += 1;
        } else {
            c.1 += 1;
        }
    }

    /// Uncount a session (of statistics slot `slot`) in `state`.
    fn sub(&mut self, slot: u32, svc: ServiceKey, rs: SocketAddr, state: ConnState) {
        if let Some(c) = self.by_slot.get_mut(slot as usize) {
            dec(c, state);
            return;
        }
        let k = (svc, rs);
        if let Some(c) = self.other.get_mut(&k) {
            dec(c, state);
            if *c == (0, 0) {
                self.other.remove(&k);
            }
        }
    }

    /// A session moved from state `old` to `new`.
    fn moved(&mut self, slot: u32, svc: ServiceKey, rs: SocketAddr, old: ConnState, new: ConnState) {
        if old.is_active() != new.is_active() {
            self.sub(slot, svc, rs, old);
            self.add(slot, svc, rs, new);
        }
    }
}

fn dec(c: &mut (u32, u32), state: ConnState) {
    if state.is_active() {
        c.0 = c.0.saturating_sub(1);
    } else {
        c.1 = c.1.saturating_sub(1);
    }
}

/// Most (service, real server) statistics slots a worker keeps; sessions of pairs beyond it
/// (only after a great many distinct real servers came and went) are not counted per server.
pub const MAX_RS_STATS: usize = 1 << 16;

/// A persistence template (IPVS's): new flows of a client network go to `rs` until `expires_ns`.
#[derive(Debug, Clone, Copy)]
struct Template {
    rs: SocketAddr,
    expires_ns: u64,
}

/// (IP protocol, VIP, VIP port, client address & netmask).
type TemplateKey = (u8, Ipv4Addr, u16, u32);

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
    /// Forwarding stamp sessions cache their hops under (`Session::fwd_stamp`): changes with the
    /// snapshot generation and the neighbour table's epoch; never 0.
    fwd_stamp: u32,
    /// (snapshot generation, neighbour epoch) `fwd_stamp` stands for.
    stamp_of: (u64, u32),
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
                fwd_stamp: 1,
                stamp_of: (u64::MAX, 0),
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
                    Some(svc) => update_sched(&mut self.st.sched, svc, &snap),
                    None => {
                        self.st.sched.remove(&sched_id(key));
                    }
                }
            }
        } else {
            // A snapshot built with `Snapshot::build_from` shares the `Arc` of every unchanged
            // service (pointer compare); otherwise an equal definition is still skipped after a
            // compare, without rebuilding.
            for svc in snap.services.values() {
                update_sched(&mut self.st.sched, svc, &snap);
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
        let lports = &mut st.lports;
        st.conns.expire_with(now_ns, st.cfg.expire_budget, B::prefetch, |s| {
            counts.sub(s.stats, s.svc(), s.rs_addr(), s.state);
            if s.fwd == FwdMode::FullNat {
                lports.free(s.laddr);
            }
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

/// Bring the scheduler state of `svc` up to its definition in `snap`: nothing when it is the
/// same (shared `Arc` or equal), `update` when only its real servers changed, else a new state.
fn update_sched(sched: &mut HashMap<u64, SvcSched>, svc: &Arc<Service>, snap: &Snapshot) {
    match sched.get_mut(&sched_id(&svc.key)) {
        Some(s) if Arc::ptr_eq(&s.def, svc) => {}
        Some(s) if *s.def == **svc => s.def = Arc::clone(svc),
        Some(s) if s.kind == svc.sched => {
            if s.def.reals != svc.reals {
                match s.state.as_mut() {
                    Some(st) => st.update_with_table(&svc.reals, snap.maglev.get(&svc.key).cloned()),
                    None => s.state = new_sched(svc, snap),
                }
            }
            s.thresholds = svc.reals.iter().any(|r| r.u_threshold > 0);
            if s.def.reals.iter().map(|r| r.addr).ne(svc.reals.iter().map(|r| r.addr)) {
                s.slots = vec![SLOT_UNKNOWN; svc.reals.len()];
            }
            s.def = Arc::clone(svc);
        }
        _ => {
            let entry = SvcSched {
                kind: svc.sched,
                slots: vec![SLOT_UNKNOWN; svc.reals.len()],
                def: Arc::clone(svc),
                state: new_sched(svc, snap),
                thresholds: svc.reals.iter().any(|r| r.u_threshold > 0),
            };
            sched.insert(sched_id(&svc.key), entry);
        }
    }
}

fn new_sched(svc: &Service, snap: &Snapshot) -> Option<SchedState> {
    match SchedState::new_with_table(svc.sched, &svc.reals, snap.maglev.get(&svc.key).cloned()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(service = %svc.key, "no scheduler, new flows are dropped: {e}");
            None
        }
    }
}

/// Schedulers that look at connection counts (all but the rotating and hashing ones).
fn needs_conns(k: SchedKind) -> bool {
    !matches!(k, SchedKind::Rr | SchedKind::Wrr | SchedKind::Sh | SchedKind::Dh | SchedKind::Mh)
}

/// Whether `a` and `b` share the first `len` bits.
fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) };
    (u32::from(a) ^ u32::from(b)) & mask == 0
}

/// An address an ICMP message may be sent to (RFC 1812 §4.3.2.7: not to broadcast, multicast or
/// unspecified sources).
fn is_unicast_ip(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast())
}

/// Write the Ethernet addresses of a frame (no-op on a frame shorter than a header, which
/// cannot reach here: every frame on the output path was parsed or built with one).
fn set_macs(data: &mut [u8], src: [u8; 6], dst: Option<[u8; 6]>) {
    if let Ok(mut e) = ethernet::Packet::new_checked(data) {
        e.set_src_addr(src);
        if let Some(d) = dst {
            e.set_dst_addr(d);
        }
    }
}

/// The address of `pi` to speak from towards `nh`: the one on its subnet, else the first.
fn port_addr_towards(pi: &PortInfo, nh: Ipv4Addr) -> Option<Ipv4Addr> {
    pi.addrs.iter().find(|(a, l)| same_subnet(*a, nh, *l)).or(pi.addrs.first()).map(|(a, _)| *a)
}

/// Whether the session's real server is still in its service.
fn rs_configured(snap: &Snapshot, s: &Session) -> bool {
    let proto = if s.key.proto == ipv4::protocol::UDP { Proto::Udp } else { Proto::Tcp };
    snap.service(proto, s.key.dst, s.key.dport).is_some_and(|svc| svc.reals.iter().any(|r| r.addr == s.rs_addr()))
}

const ETH: usize = ethernet::HEADER_LEN;

/// Frames of a burst whose session lookups are started together (DPDK's usual burst).
const LOOKAHEAD: usize = 32;

/// Default [`WorkerConfig::prefetch_from`]: 16k sessions take ~1.5 MiB of slab and index (80 +
/// ~16 bytes each), about a server core's L2 cache.
pub const PREFETCH_FROM: usize = 1 << 14;

/// The 5-tuple of a TCP or UDP over IPv4 frame, read without validation, only to start the
/// cache loads of its lookup early (the pipeline parses and checks the frame afterwards).
fn peek_key(d: &[u8]) -> Option<FlowKey> {
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
    Some(FlowKey {
        proto,
        src: Ipv4Addr::new(a[0], a[1], a[2], a[3]),
        dst: Ipv4Addr::new(a[4], a[5], a[6], a[7]),
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
    })
}

/// The parsed L3/L4 facts of a TCP/UDP packet the session code needs.
#[derive(Debug, Clone, Copy)]
struct L4Info {
    key: FlowKey,
    flags: u8,
    hl: usize,
    total: usize,
    ttl: u8,
}

impl<B: PacketBuf> State<B> {
    fn tx(&mut self, pkt: B, io: &mut impl Io<B>) {
        self.counters.tx_pkts += 1;
        self.counters.tx_bytes += pkt.len() as u64;
        io.tx(pkt);
    }

    fn input(&mut self, snap: &Snapshot, pkt: &mut B, now: u64, io: &mut impl Io<B>) -> Verdict {
        let Some(pinfo) = snap.port(pkt.port()) else {
            return Verdict::Drop(DropReason::NotForUs);
        };
        let Ok(eth) = ethernet::Packet::new_checked(pkt.data()) else {
            return Verdict::Drop(DropReason::MalformedEth);
        };
        let dst = eth.dst_addr();
        if dst != pinfo.mac && !ethernet::is_multicast(&dst) {
            return Verdict::Drop(DropReason::NotForUs);
        }
        match eth.ethertype() {
            ethernet::ethertype::ARP => self.arp_input(snap, pinfo, pkt, now, io),
            ethernet::ethertype::IPV4 => self.ipv4_input(snap, pkt, now, io),
            ethernet::ethertype::IPV6 => Verdict::Drop(DropReason::Ipv6),
            _ => Verdict::Drop(DropReason::MalformedEth),
        }
    }

    /// RFC 826 reception: answer for our addresses, VIPs and FULLNAT local addresses, learn from
    /// what concerns us.
    fn arp_input(&mut self, snap: &Snapshot, pinfo: &PortInfo, pkt: &mut B, now: u64, io: &mut impl Io<B>) -> Verdict {
        let (op, sha, spa, tpa) = match arp::Packet::new_checked(&pkt.data()[ETH..]) {
            Ok(a) => (a.operation(), a.sender_hw_addr(), a.sender_ip(), a.target_ip()),
            Err(_) => return Verdict::Drop(DropReason::MalformedArp),
        };
        // A group sender address is bogus (RFC 1812 §3.3.2): never learn or answer it.
        if (op != arp::op::REQUEST && op != arp::op::REPLY) || !ethernet::is_unicast(&sha) {
            return Verdict::Drop(DropReason::MalformedArp);
        }
        let port = pinfo.id;
        // Interface addresses are answered on their own port; VIPs and local addresses on any
        // (the DR real servers hold the VIP too but do not answer ARP for it).
        let ours = |a: &Ipv4Addr| snap.vips.contains(a) || snap.laddrs.contains(a);
        let for_us = snap.local_addrs.get(&tpa) == Some(&port) || ours(&tpa);
        // 0.0.0.0 is an ARP probe (RFC 5227); our own addresses are never learned from others.
        let learnable = !spa.is_unspecified() && !snap.local_addrs.contains_key(&spa) && !ours(&spa);
        if for_us {
            if learnable {
                self.learn(snap, port, spa, sha, now, io);
            }
            if op != arp::op::REQUEST {
                return Verdict::Consumed;
            }
            let data = pkt.data_mut();
            set_macs(data, pinfo.mac, Some(sha));
            let mut a = arp::Packet::new_unchecked(&mut data[ETH..]);
            a.set_operation(arp::op::REPLY);
            a.set_target_hw_addr(sha);
            a.set_target_ip(spa);
            a.set_sender_hw_addr(pinfo.mac);
            a.set_sender_ip(tpa);
            self.counters.arp_replies += 1;
            return Verdict::Tx;
        }
        if learnable && self.neigh.contains(spa) {
            self.learn(snap, port, spa, sha, now, io);
        }
        Verdict::Drop(DropReason::ArpNotForUs)
    }

    /// Record a neighbour, tell the other workers, and send the packets that were waiting for it.
    fn learn(&mut self, snap: &Snapshot, port: u16, ip: Ipv4Addr, mac: [u8; 6], now: u64, io: &mut impl Io<B>) {
        if self.cfg.n_cores > 1 {
            io.neigh_learned(port, ip, mac);
        }
        self.release(snap, port, ip, mac, now, io);
    }

    /// Record a neighbour and send the packets that were waiting for it.
    fn release(&mut self, snap: &Snapshot, port: u16, ip: Ipv4Addr, mac: [u8; 6], now: u64, io: &mut impl Io<B>) {
        for (out_port, mut pkt) in self.neigh.learn(port, ip, mac, now) {
            match snap.port(out_port) {
                Some(pi) => {
                    set_macs(pkt.data_mut(), pi.mac, Some(mac));
                    pkt.set_port(out_port);
                    self.tx(pkt, io);
                }
                // The port went away with a snapshot change while the packet waited.
                None => self.counters.drop(DropReason::NoRoute),
            }
        }
    }

    fn ipv4_input(&mut self, snap: &Snapshot, pkt: &mut B, now: u64, io: &mut impl Io<B>) -> Verdict {
        let data = pkt.data();
        let frame_len = data.len();
        let ip = match ipv4::Packet::new_checked(&data[ETH..]) {
            Ok(p) => p,
            Err(_) => return Verdict::Drop(DropReason::MalformedIpv4),
        };
        if !pkt.l3_csum_verified() && !ip.verify_checksum() {
            return Verdict::Drop(DropReason::BadIpv4Checksum);
        }
        let total = ip.total_len() as usize;
        let hl = ip.header_len();
        let dst = ip.dst_addr();
        let proto = ip.protocol();
        // Ethernet pads short frames to 60 bytes: forward the datagram, not the padding.
        let pad = frame_len - ETH - total;
        if pad > 0 && !pkt.trim(pad) {
            return Verdict::Drop(DropReason::MalformedIpv4);
        }
        if snap.local_addrs.contains_key(&dst) {
            return self.local_input(snap, pkt, hl, total);
        }
        match proto {
            ipv4::protocol::TCP | ipv4::protocol::UDP => self.l4_input(snap, pkt, hl, total, now, io),
            ipv4::protocol::ICMP => self.icmp_error_input(snap, pkt, hl, total),
            _ if snap.vips.contains(&dst) => Verdict::Drop(DropReason::NoService),
            _ => Verdict::Drop(DropReason::NotForUs),
        }
    }

    /// Packets to an interface address: ICMP echo is answered, nothing else.
    fn local_input(&mut self, snap: &Snapshot, pkt: &mut B, hl: usize, total: usize) -> Verdict {
        let data = pkt.data_mut();
        let Some(l3) = data.get_mut(ETH..ETH + total) else {
            return Verdict::Drop(DropReason::MalformedIpv4);
        };
        let (l3h, l4) = l3.split_at_mut(hl);
        let ip = ipv4::Packet::new_unchecked(&mut *l3h);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if ip.protocol() != ipv4::protocol::ICMP || ip.is_fragment() || !is_unicast_ip(src) {
            return Verdict::Drop(DropReason::LocalUnhandled);
        }
        let mut ic = match icmp::Packet::new_checked(l4) {
            Ok(p) => p,
            Err(_) => return Verdict::Drop(DropReason::MalformedIcmp),
        };
        if ic.msg_type() != icmp::msg_type::ECHO_REQUEST {
            return Verdict::Drop(DropReason::LocalUnhandled);
        }
        if !ic.verify_checksum() {
            return Verdict::Drop(DropReason::MalformedIcmp);
        }
        ic.set_type_code_incremental(icmp::msg_type::ECHO_REPLY, 0);
        let mut ip = ipv4::Packet::new_unchecked(l3h);
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_ttl(ipv4::DEFAULT_TTL);
        ip.fill_checksum();
        self.counters.icmp_echo_replies += 1;
        route_local(snap, src)
    }

    /// The worker that owns this packet's session, when it is not this one (see the module
    /// documentation). `None` with one worker and for handed-over packets.
    fn owner_elsewhere(&self, snap: &Snapshot, key: &FlowKey) -> Option<usize> {
        let n = self.cfg.n_cores;
        if n <= 1 || self.redirected {
            return None;
        }
        let me = self.cfg.core;
        let other = |o: usize| (o != me).then_some(o);
        if !snap.laddrs.is_empty() && snap.laddrs.contains(&key.dst) {
            return other(key.dport as usize % n);
        }
        if !snap.persistent.is_empty() {
            if let Some(mask) = snap.persistent.get(&(key.proto, key.dst, key.dport)) {
                return other(owner_of(masked(key.src, *mask), 0, n));
            }
        }
        if snap.nat_reals.is_empty() {
            return None;
        }
        let o = owner_of(key.src, key.sport, n);
        if o != me && snap.nat_services.contains(&(key.proto, key.dst, key.dport)) {
            return Some(o);
        }
        match snap.nat_reals.get(&(key.proto, key.src, key.sport)) {
            Some(Owner::ClientTuple) => other(owner_of(key.dst, key.dport, n)),
            Some(Owner::ClientNet(mask)) => other(owner_of(masked(key.dst, *mask), 0, n)),
            None => None,
        }
    }

    /// TCP and UDP not addressed to an interface: sessions first (one lookup finds either
    /// direction), then new flows to a VIP.
    fn l4_input(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        hl: usize,
        total: usize,
        now: u64,
        io: &mut impl Io<B>,
    ) -> Verdict {
        let data = pkt.data();
        let Some(l3) = data.get(ETH..ETH + total) else {
            return Verdict::Drop(DropReason::MalformedIpv4);
        };
        let ip = ipv4::Packet::new_unchecked(l3);
        let (src, dst, proto, ttl) = (ip.src_addr(), ip.dst_addr(), ip.protocol(), ip.ttl());
        if ip.is_fragment() {
            // Non-first fragments carry no ports; balancing fragments needs reassembly.
            return Verdict::Drop(if snap.vips.contains(&dst) { DropReason::Fragment } else { DropReason::NotForUs });
        }
        let l4 = &l3[hl..];
        let (sport, dport, flags) = if proto == ipv4::protocol::TCP {
            match tcp::Packet::new_checked(l4) {
                Ok(t) => (t.src_port(), t.dst_port(), t.flags()),
                Err(_) => return Verdict::Drop(DropReason::MalformedL4),
            }
        } else {
            match udp::Packet::new_checked(l4) {
                Ok(u) => (u.src_port(), u.dst_port(), 0),
                Err(_) => return Verdict::Drop(DropReason::MalformedL4),
            }
        };
        // Built in place: a key assembled apart and then copied in is read back with wide loads
        // across its narrow stores, which stalls store forwarding.
        let info = L4Info { key: FlowKey { proto, src, dst, sport, dport }, flags, hl, total, ttl };
        let key = &info.key;
        if let Some(core) = self.owner_elsewhere(snap, key).and_then(|c| u16::try_from(c).ok()) {
            return Verdict::Redirect(core);
        }
        let h = match self.hint.take() {
            Some(h) => {
                debug_assert_eq!(h, self.conns.hash(key), "pre-pass hashed another tuple");
                h
            }
            None => self.conns.hash(key),
        };
        if let Some((id, dir)) = self.conns.lookup_hashed(key, h) {
            if let Some(v) = self.existing(snap, pkt, id, dir, &info, now, io) {
                return v;
            }
        }
        let kind = if proto == ipv4::protocol::TCP { Proto::Tcp } else { Proto::Udp };
        if let Some(svc) = snap.service(kind, dst, dport) {
            return self.new_flow(snap, svc, pkt, &info, now, io);
        }
        if !snap.vips.contains(&dst) {
            if snap.laddrs.contains(&dst) || snap.nat_reals.contains_key(&(proto, src, sport)) {
                // The reply of a NAT/FULLNAT flow we do not know (expired, or never ours).
                return Verdict::Drop(DropReason::NoSession);
            }
            return Verdict::Drop(DropReason::NotForUs);
        }
        Verdict::Drop(DropReason::NoService)
    }

    /// Remove a session with its bookkeeping (counts, FULLNAT port).
    fn remove_session(&mut self, id: SessionId) {
        if let Some(old) = self.conns.remove(id) {
            self.conn_counts.sub(old.stats, old.svc(), old.rs_addr(), old.state);
            if old.fwd == FwdMode::FullNat {
                self.lports.free(old.laddr);
            }
        }
        self.counters.sessions_active = self.conns.len() as u64;
    }

    /// A packet of a known session. `None`: the session was closed and a SYN reopens the tuple
    /// (IPVS's conn_reuse_mode): the caller schedules it afresh.
    #[allow(clippy::too_many_arguments)]
    fn existing(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        id: SessionId,
        dir: Dir,
        p: &L4Info,
        now: u64,
        io: &mut impl Io<B>,
    ) -> Option<Verdict> {
        let s = self.conns.get(id)?;
        let (fwd, state) = (s.fwd, s.state);
        let gen = snap.generation as u32;
        if s.gen != gen {
            // The configuration changed since this session last looked: is its RS still there?
            if snap.tunables.expire_nodest_conn && !rs_configured(snap, s) {
                self.remove_session(id);
                return Some(Verdict::Drop(DropReason::NoDest));
            }
            if let Some(s) = self.conns.get_mut(id) {
                s.gen = gen;
            }
        }
        let syn_only = p.key.proto == ipv4::protocol::TCP
            && p.flags & (tcp::flags::SYN | tcp::flags::ACK | tcp::flags::RST) == tcp::flags::SYN;
        if dir == Dir::Orig && syn_only && state.reusable(fwd) {
            self.remove_session(id);
            return None;
        }
        if p.ttl <= 1 {
            return Some(self.ttl_exceeded(snap, pkt, p.hl, p.total, now, io));
        }
        let stamp = self.stamp(snap, now);
        let s = self.conns.get(id)?;
        // The hop cached under the current stamp, else the route lookup (and, once the packet
        // is rewritten, the neighbour lookup, cached for the next packets).
        let cached = s.cached_hop(dir, stamp).and_then(|(i, mac)| {
            let pi = snap.ports.get(usize::from(i))?;
            let tun = (s.fwd == FwdMode::Tun).then(|| (s.cached_tun_src(), pi.mtu));
            Some((Plan { port: pi.id, nh: Ipv4Addr::UNSPECIFIED, tun }, i, mac))
        });
        let (plan, hit) = match cached {
            Some((pl, i, mac)) => (pl, Some((i, mac))),
            None => match plan(snap, s, dir) {
                Ok(pl) => (pl, None),
                Err(r) => return Some(Verdict::Drop(r)),
            },
        };
        if let Some((old, new)) = self.conns.touch(id, dir, p.flags, now) {
            if old.is_active() != new.is_active() {
                if let Some(s) = self.conns.get(id) {
                    self.conn_counts.moved(s.stats, s.svc(), s.rs_addr(), old, new);
                }
            }
        }
        let v = self.apply(snap, pkt, id, dir, plan, p, now, io);
        Some(match (v, hit) {
            (Verdict::Output { .. }, Some((port_idx, mac))) => Verdict::Hop { port_idx, mac },
            (Verdict::Output { port, nh }, None) => self.cache_hop(snap, id, dir, stamp, port, nh, plan.tun, now),
            (v, _) => v,
        })
    }

    /// The forwarding stamp at `now`: a new one when the snapshot or the neighbour table
    /// changed since the last packet, so sessions' cached hops go stale.
    fn stamp(&mut self, snap: &Snapshot, now: u64) -> u32 {
        let of = (snap.generation, self.neigh.epoch(now));
        if of != self.stamp_of {
            self.stamp_of = of;
            self.fwd_stamp = self.fwd_stamp.wrapping_add(1).max(1);
        }
        self.fwd_stamp
    }

    /// Remember in session `id` the hop a packet takes (when its neighbour is resolved), and
    /// send it there; otherwise leave it to `send_via` (ARP, holding).
    #[allow(clippy::too_many_arguments)]
    fn cache_hop(
        &mut self,
        snap: &Snapshot,
        id: SessionId,
        dir: Dir,
        stamp: u32,
        port: u16,
        nh: Ipv4Addr,
        tun: Option<(Ipv4Addr, u16)>,
        now: u64,
    ) -> Verdict {
        let idx =
            snap.ports.iter().position(|p| p.id == port).and_then(|i| u8::try_from(i).ok()).filter(|&i| i != NO_HOP);
        let (Some(port_idx), Some(mac), Some(s)) = (idx, self.neigh.lookup(nh, now), self.conns.get_mut(id)) else {
            return Verdict::Output { port, nh };
        };
        s.cache_hop(dir, stamp, port_idx, mac);
        if let Some((src, _)) = tun {
            s.cache_tun_src(src);
        }
        Verdict::Hop { port_idx, mac }
    }

    /// The first packet of a flow to a VIP: service, scheduler (or persistence template), plan,
    /// FULLNAT local port, session, then forward.
    fn new_flow(
        &mut self,
        snap: &Snapshot,
        svc: &Service,
        pkt: &mut B,
        p: &L4Info,
        now: u64,
        io: &mut impl Io<B>,
    ) -> Verdict {
        let k = p.key;
        let is_tcp = k.proto == ipv4::protocol::TCP;
        let syn_only = is_tcp && p.flags & (tcp::flags::SYN | tcp::flags::ACK | tcp::flags::RST) == tcp::flags::SYN;
        if is_tcp && !syn_only {
            return Verdict::Drop(DropReason::NoSession);
        }
        if p.ttl <= 1 {
            return self.ttl_exceeded(snap, pkt, p.hl, p.total, now, io);
        }
        let Some((rs_idx, rs)) =
            self.choose(svc, k.src, k.sport, k.dst, now).and_then(|i| Some((i, svc.reals.get(i)?)))
        else {
            return Verdict::Drop(DropReason::NoRealServer);
        };
        let SocketAddr::V4(rs_addr) = rs.addr else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let laddr = if rs.fwd == FwdMode::FullNat {
            match self.lports.alloc(&svc.laddrs) {
                Ok(a) => a,
                Err(LaddrError::NoLocalAddr) => return Verdict::Drop(DropReason::NoLocalAddr),
                Err(LaddrError::NoLocalPort) => return Verdict::Drop(DropReason::NoLocalPort),
            }
        } else {
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)
        };
        let mut sess = self.conns.new_session(k, rs_addr, rs.fwd, laddr, p.flags, now);
        sess.gen = snap.generation as u32;
        if rs.fwd == FwdMode::FullNat && is_tcp {
            sess.ca_flags = match svc.client_addr {
                ClientAddrMode::Toa => ca_flags::MODE_TOA,
                ClientAddrMode::ProxyV2 => ca_flags::MODE_PROXY,
                ClientAddrMode::None => 0,
            };
        }
        let slot = self.rs_slot(svc, rs_idx);
        sess.stats = slot;
        // The hop towards this real server that its previous new session found under the same
        // forwarding stamp (route and neighbour tables unchanged since): no route or neighbour
        // lookup for this one, and the session starts with its hop cached.
        let stamp = self.stamp(snap, now);
        let known = self
            .slot_hops
            .get(slot as usize)
            .filter(|h| h.stamp == stamp)
            .and_then(|h| Some((*h, snap.ports.get(usize::from(h.port_idx))?)));
        let planned = match known {
            Some((h, pi)) => {
                sess.cache_hop(Dir::Orig, stamp, h.port_idx, h.mac);
                let tun = (rs.fwd == FwdMode::Tun).then(|| {
                    sess.cache_tun_src(h.tun_src);
                    (h.tun_src, pi.mtu)
                });
                Ok(Plan { port: pi.id, nh: Ipv4Addr::UNSPECIFIED, tun })
            }
            None => plan(snap, &sess, Dir::Orig),
        };
        let plan = match planned {
            Ok(pl) => pl,
            Err(r) => {
                if rs.fwd == FwdMode::FullNat {
                    self.lports.free(laddr);
                }
                return Verdict::Drop(r);
            }
        };
        // A stale session holding the reply tuple (a NAT client reusing its port towards another
        // VIP on the same RS) goes, with its bookkeeping.
        if let Some(rk) = sess.reply_key() {
            if let Some((old, _)) = self.conns.lookup(&rk) {
                self.remove_session(old);
            }
        }
        let state = sess.state;
        // Neither key is held: the forward key missed in `l4_input` (or its closed session was
        // removed there) and the reply key's holder went just above.
        let id = match self.conns.insert_new(sess) {
            Ok(id) => id,
            Err(_) => {
                if rs.fwd == FwdMode::FullNat {
                    self.lports.free(laddr);
                }
                return Verdict::Drop(DropReason::SessionTableFull);
            }
        };
        self.conn_counts.add(slot, svc.key, rs.addr, state);
        if let Some((_, st)) = self.rs_stats.get_mut(slot as usize) {
            st.conns += 1;
        }
        self.counters.sessions_created += 1;
        self.counters.sessions_active = self.conns.len() as u64;
        match (self.apply(snap, pkt, id, Dir::Orig, plan, p, now, io), known) {
            (Verdict::Output { .. }, Some((h, _))) => Verdict::Hop { port_idx: h.port_idx, mac: h.mac },
            (Verdict::Output { port, nh }, None) => {
                let v = self.cache_hop(snap, id, Dir::Orig, stamp, port, nh, plan.tun, now);
                if let (Verdict::Hop { port_idx, mac }, Some(h)) = (v, self.slot_hops.get_mut(slot as usize)) {
                    let tun_src = plan.tun.map_or(Ipv4Addr::UNSPECIFIED, |(src, _)| src);
                    *h = SlotHop { stamp, port_idx, mac, tun_src };
                }
                v
            }
            (v, _) => v,
        }
    }

    /// A real server for a new flow: the persistence template's while it lives and the server
    /// is still in the service with a weight, else the scheduler's (recorded as the template).
    fn choose(&mut self, svc: &Service, client: Ipv4Addr, client_port: u16, vip: Ipv4Addr, now: u64) -> Option<usize> {
        let Some(pers) = svc.persistence else {
            return self.pick(svc, client, client_port, vip);
        };
        let tk: TemplateKey =
            (svc.key.proto.ip_proto(), vip, svc.key.vip.port(), u32::from(client) & u32::from(pers.netmask));
        let life = u64::from(pers.timeout_s).saturating_mul(1_000_000_000);
        if let Some(t) = self.templates.get_mut(&tk) {
            if t.expires_ns > now {
                if let Some(i) = svc.reals.iter().position(|r| r.addr == t.rs && r.weight > 0) {
                    t.expires_ns = now.saturating_add(life);
                    return Some(i);
                }
            }
        }
        let i = self.pick(svc, client, client_port, vip)?;
        let rs = svc.reals.get(i)?.addr;
        if self.templates.len() < self.cfg.max_sessions || self.templates.contains_key(&tk) {
            self.templates.insert(tk, Template { rs, expires_ns: now.saturating_add(life) });
        }
        Some(i)
    }

    /// Ask the service's scheduler for a real server (index into `svc.reals`).
    fn pick(&mut self, svc: &Service, client: Ipv4Addr, client_port: u16, dest: Ipv4Addr) -> Option<usize> {
        let ss = self.sched.get_mut(&sched_id(&svc.key))?;
        let state = ss.state.as_mut()?;
        let conns: &[(u32, u32)] = if needs_conns(ss.kind) || ss.thresholds {
            self.scratch.clear();
            for (i, r) in svc.reals.iter().enumerate() {
                let slot = match ss.slots.get(i) {
                    Some(&s) if s != SLOT_UNKNOWN && ss.def.reals.get(i).is_some_and(|d| d.addr == r.addr) => Some(s),
                    _ => self.rs_slots.get(&(svc.key, r.addr)).copied(),
                };
                self.scratch.push(self.conn_counts.get(slot, svc.key, r.addr));
            }
            &self.scratch
        } else {
            &[]
        };
        let ctx = PickCtx { client, client_port, dest, conns };
        if std::ptr::eq(&*ss.def, svc) {
            // The snapshot's own definition, which `update_sched` gave the state.
            state.pick_current(&svc.reals, &ctx)
        } else {
            state.pick(&svc.reals, &ctx)
        }
    }

    /// Forward a packet of session `id` going `dir` along `plan`: rvs is an IP hop (TTL checked
    /// by the caller), then the mode's rewrite.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        id: SessionId,
        dir: Dir,
        plan: Plan,
        p: &L4Info,
        now: u64,
        io: &mut impl Io<B>,
    ) -> Verdict {
        let Some(s) = self.conns.get(id) else {
            return Verdict::Drop(DropReason::NoSession);
        };
        let (fwd, key, rs, laddr, slot) = (s.fwd, s.key, s.rs, s.laddr, s.stats);
        if let Some(l3) = pkt.data_mut().get_mut(ETH..) {
            ipv4::Packet::new_unchecked(l3).decrement_ttl();
        }
        let vip = SocketAddrV4::new(key.dst, key.dport);
        let client = SocketAddrV4::new(key.src, key.sport);
        match (fwd, dir) {
            (FwdMode::Dr, _) => {}
            (FwdMode::Tun, _) => {
                let Some((outer_src, mtu)) = plan.tun else {
                    return Verdict::Drop(DropReason::NoRoute);
                };
                match tun::encap_ipip(pkt, outer_src, *rs.ip(), mtu, &mut self.tun_ident) {
                    Ok(()) => {}
                    Err(TunError::FragNeeded { mtu }) => {
                        self.send_frag_needed(snap, pkt, mtu, now, io);
                        return Verdict::Drop(DropReason::FragNeeded);
                    }
                    Err(TunError::TooBig) => return Verdict::Drop(DropReason::TunTooBig),
                    Err(TunError::NoHeadroom) => return Verdict::Drop(DropReason::NoBuffer),
                    Err(TunError::Malformed) => return Verdict::Drop(DropReason::MalformedIpv4),
                }
            }
            (FwdMode::Nat, Dir::Orig) => self.rewrite(pkt, p, None, Some(rs)),
            (FwdMode::Nat, Dir::Reply) => self.rewrite(pkt, p, Some(vip), None),
            (FwdMode::FullNat, Dir::Orig) => {
                if let Err(r) = self.client_addr_out(pkt, id, p, client, vip) {
                    return Verdict::Drop(r);
                }
                // Client-address insertions changed lengths: the L4 header is where it was.
                self.rewrite(pkt, p, Some(laddr), Some(rs));
            }
            (FwdMode::FullNat, Dir::Reply) => {
                self.client_addr_back(pkt, id, p);
                self.rewrite(pkt, p, Some(vip), Some(client));
            }
        }
        if let Some((_, st)) = self.rs_stats.get_mut(slot as usize) {
            let len = p.total as u64;
            match dir {
                Dir::Orig => {
                    st.inpkts += 1;
                    st.inbytes += len;
                }
                Dir::Reply => {
                    st.outpkts += 1;
                    st.outbytes += len;
                }
            }
        }
        self.counters.fwd_pkts += 1;
        Verdict::Output { port: plan.port, nh: plan.nh }
    }

    /// The statistics slot of real server `i` of `svc`: remembered in the service's scheduler
    /// state after the first session, else [`State::stats_slot`].
    fn rs_slot(&mut self, svc: &Service, i: usize) -> u32 {
        let id = sched_id(&svc.key);
        let Some(rs) = svc.reals.get(i) else { return NO_STATS_SLOT };
        let same = |ss: &SvcSched| ss.def.reals.get(i).is_some_and(|d| d.addr == rs.addr);
        if let Some(&slot) = self.sched.get(&id).filter(|ss| same(ss)).and_then(|ss| ss.slots.get(i)) {
            if slot != SLOT_UNKNOWN {
                return slot;
            }
        }
        let slot = self.stats_slot(svc.key, rs.addr);
        if let Some(x) = self.sched.get_mut(&id).filter(|ss| same(ss)).and_then(|ss| ss.slots.get_mut(i)) {
            *x = slot;
        }
        slot
    }

    /// The statistics slot of (service, real server): one hash lookup.
    fn stats_slot(&mut self, svc: ServiceKey, rs: SocketAddr) -> u32 {
        if let Some(&i) = self.rs_slots.get(&(svc, rs)) {
            return i;
        }
        if self.rs_stats.len() >= MAX_RS_STATS {
            return NO_STATS_SLOT;
        }
        let i = self.rs_stats.len() as u32;
        self.rs_stats.push(((svc, rs), RsStats::default()));
        self.conn_counts.by_slot.push((0, 0));
        self.slot_hops.push(SlotHop { stamp: 0, port_idx: NO_HOP, mac: [0; 6], tun_src: Ipv4Addr::UNSPECIFIED });
        self.rs_slots.insert((svc, rs), i);
        i
    }

    /// Rewrite addresses/ports of the IP datagram in `pkt` (its current length).
    fn rewrite(&mut self, pkt: &mut B, p: &L4Info, src: Option<SocketAddrV4>, dst: Option<SocketAddrV4>) {
        if let Some(l3) = pkt.data_mut().get_mut(ETH..) {
            nat::rewrite(l3, p.hl, p.key.proto, src, dst);
        }
    }

    /// FULLNAT client → RS: TOA on the first ACK after the handshake, or the PROXY v2 header
    /// before the first data byte (again on a retransmission of that segment) and the sequence
    /// shift of everything after it.
    fn client_addr_out(
        &mut self,
        pkt: &mut B,
        id: SessionId,
        p: &L4Info,
        client: SocketAddrV4,
        vip: SocketAddrV4,
    ) -> Result<(), DropReason> {
        use tcp::flags::{ACK, RST, SYN};
        let Some(s) = self.conns.get(id) else { return Ok(()) };
        let (cf, delta, pseq) = (s.ca_flags, s.seq_delta, s.proxy_seq);
        if cf & ca_flags::MODE_TOA != 0 {
            if cf & ca_flags::TOA_DONE == 0 && p.flags & ACK != 0 && p.flags & (SYN | RST) == 0 {
                match clientaddr::toa::insert(pkt, ETH, client) {
                    Ok(()) => self.counters.toa_inserted += 1,
                    Err(_) => self.counters.toa_skipped += 1,
                }
                if let Some(s) = self.conns.get_mut(id) {
                    s.ca_flags |= ca_flags::TOA_DONE;
                }
            }
            return Ok(());
        }
        if cf & ca_flags::MODE_PROXY == 0 || p.flags & SYN != 0 {
            return Ok(());
        }
        let Some((seq, payload)) = pkt.data().get(ETH + p.hl..).and_then(nat::tcp_seq_and_payload) else {
            return Ok(());
        };
        if cf & ca_flags::PROXY_DONE == 0 {
            if payload == 0 {
                return Ok(());
            }
            let n = clientaddr::proxy_v2::insert(pkt, ETH, client, vip).map_err(|_| DropReason::NoBuffer)?;
            self.counters.proxy_inserted += 1;
            if let Some(s) = self.conns.get_mut(id) {
                s.ca_flags |= ca_flags::PROXY_DONE;
                s.seq_delta = n as u32;
                s.proxy_seq = seq;
            }
        } else if seq == pseq && payload > 0 {
            // The first data segment again (a retransmission): the header goes with it again.
            clientaddr::proxy_v2::insert(pkt, ETH, client, vip).map_err(|_| DropReason::NoBuffer)?;
            self.counters.proxy_inserted += 1;
        } else {
            // Only fails on headers already validated here.
            let _ = clientaddr::seq::shift_seq(pkt, ETH, delta);
        }
        Ok(())
    }

    /// FULLNAT RS → client: MSS of the SYN-ACK lowered by what the client-address mode adds to
    /// client segments; acknowledgments shifted back over the PROXY v2 header.
    fn client_addr_back(&mut self, pkt: &mut B, id: SessionId, p: &L4Info) {
        let Some(s) = self.conns.get(id) else { return };
        let (cf, delta) = (s.ca_flags, s.seq_delta);
        if p.flags & tcp::flags::SYN != 0 {
            let by = if cf & ca_flags::MODE_TOA != 0 {
                clientaddr::toa::TOA_LEN
            } else if cf & ca_flags::MODE_PROXY != 0 {
                clientaddr::proxy_v2::HEADER_LEN_V4
            } else {
                0
            };
            if by > 0 {
                let _ = clientaddr::mss::clamp(pkt, ETH, by as u16);
            }
        }
        if cf & ca_flags::PROXY_DONE != 0 && p.flags & tcp::flags::ACK != 0 {
            let _ = clientaddr::seq::shift_ack(pkt, ETH, delta);
        }
    }

    /// ICMP not addressed to an interface: errors quoting a session's packet are translated and
    /// passed to the other side (IPVS ip_vs_in_icmp / ip_vs_out_icmp); anything else is not ours.
    fn icmp_error_input(&mut self, snap: &Snapshot, pkt: &mut B, hl: usize, total: usize) -> Verdict {
        let data = pkt.data();
        let Some(l3) = data.get(ETH..ETH + total) else {
            return Verdict::Drop(DropReason::MalformedIpv4);
        };
        let ip = ipv4::Packet::new_unchecked(l3);
        let (dst, ttl) = (ip.dst_addr(), ip.ttl());
        let ours = snap.vips.contains(&dst) || snap.laddrs.contains(&dst);
        let not_ours = if ours { DropReason::NoService } else { DropReason::NotForUs };
        let msg = &l3[hl..];
        let Ok(ic) = icmp::Packet::new_checked(msg) else {
            return Verdict::Drop(if ours { DropReason::MalformedIcmp } else { DropReason::NotForUs });
        };
        if !icmp::is_error(ic.msg_type()) || ip.is_fragment() {
            return Verdict::Drop(not_ours);
        }
        let Some(q) = nat::quoted(msg) else {
            return Verdict::Drop(not_ours);
        };
        if !ic.verify_checksum() {
            return Verdict::Drop(DropReason::MalformedIcmp);
        }
        // The quoted packet went out from us: the session knows its reverse.
        let look =
            FlowKey { proto: q.proto, src: *q.dst.ip(), dst: *q.src.ip(), sport: q.dst.port(), dport: q.src.port() };
        if let Some(core) = self.icmp_owner_elsewhere(snap, &q).and_then(|c| u16::try_from(c).ok()) {
            return Verdict::Redirect(core);
        }
        let Some((id, dir)) = self.conns.lookup(&look) else {
            return Verdict::Drop(if ours || snap.nat_reals.contains_key(&(q.proto, *q.dst.ip(), q.dst.port())) {
                DropReason::IcmpNoSession
            } else {
                DropReason::NotForUs
            });
        };
        if ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        let Some(s) = self.conns.get(id) else {
            return Verdict::Drop(DropReason::IcmpNoSession);
        };
        let (fwd, key, rs, laddr) = (s.fwd, s.key, s.rs, s.laddr);
        let plan = match plan(snap, s, dir) {
            Ok(pl) => pl,
            Err(r) => return Verdict::Drop(r),
        };
        let vip = SocketAddrV4::new(key.dst, key.dport);
        let client = SocketAddrV4::new(key.src, key.sport);
        if let Some(l3) = pkt.data_mut().get_mut(ETH..ETH + total) {
            ipv4::Packet::new_unchecked(&mut *l3).decrement_ttl();
            match (fwd, dir) {
                (FwdMode::Nat, Dir::Orig) => nat::rewrite_icmp_error(l3, hl, None, Some(*rs.ip()), Some(rs), None),
                (FwdMode::Nat, Dir::Reply) => nat::rewrite_icmp_error(l3, hl, Some(*vip.ip()), None, None, Some(vip)),
                (FwdMode::FullNat, Dir::Orig) => {
                    nat::rewrite_icmp_error(l3, hl, Some(*laddr.ip()), Some(*rs.ip()), Some(rs), Some(laddr))
                }
                (FwdMode::FullNat, Dir::Reply) => {
                    nat::rewrite_icmp_error(l3, hl, Some(*vip.ip()), Some(*client.ip()), Some(client), Some(vip))
                }
                // DR/TUN: about the RS's reply (from the VIP): to the RS, as its data goes.
                (FwdMode::Dr | FwdMode::Tun, _) => {}
            }
        }
        if fwd == FwdMode::Tun {
            let Some((outer_src, mtu)) = plan.tun else {
                return Verdict::Drop(DropReason::NoRoute);
            };
            if tun::encap_ipip(pkt, outer_src, *rs.ip(), mtu, &mut self.tun_ident).is_err() {
                return Verdict::Drop(DropReason::TunTooBig);
            }
        }
        self.counters.icmp_errors_translated += 1;
        self.counters.fwd_pkts += 1;
        Verdict::Output { port: plan.port, nh: plan.nh }
    }

    /// Owner of the session an ICMP error quotes, when it is another worker: NAT from either
    /// side (by the client), FULLNAT from the real-server side (by the local port). Errors from
    /// the client side of FULLNAT/DR/TUN flows land where RSS puts them (not steerable).
    fn icmp_owner_elsewhere(&self, snap: &Snapshot, q: &nat::Quoted) -> Option<usize> {
        let n = self.cfg.n_cores;
        if n <= 1 || self.redirected {
            return None;
        }
        let me = self.cfg.core;
        let o = if snap.laddrs.contains(q.src.ip()) {
            q.src.port() as usize % n
        } else if let Some(rule) = snap.nat_reals.get(&(q.proto, *q.dst.ip(), q.dst.port())) {
            match rule {
                Owner::ClientTuple => owner_of(*q.src.ip(), q.src.port(), n),
                Owner::ClientNet(mask) => owner_of(masked(*q.src.ip(), *mask), 0, n),
            }
        } else if let Some(mask) = snap.persistent.get(&(q.proto, *q.src.ip(), q.src.port())) {
            owner_of(masked(*q.dst.ip(), *mask), 0, n)
        } else if snap.nat_services.contains(&(q.proto, *q.src.ip(), q.src.port())) {
            owner_of(*q.dst.ip(), q.dst.port(), n)
        } else {
            return None;
        };
        (o != me).then_some(o)
    }

    /// TTL would reach 0: tell the source (RFC 792 Time Exceeded) and drop.
    fn ttl_exceeded(
        &mut self,
        snap: &Snapshot,
        pkt: &B,
        hl: usize,
        total: usize,
        now: u64,
        io: &mut impl Io<B>,
    ) -> Verdict {
        self.send_time_exceeded(snap, pkt, hl, total, now, io);
        Verdict::Drop(DropReason::TtlExceeded)
    }

    /// TUN with DF and too big: ICMP "fragmentation needed" (RFC 1191) with the inner MTU, from
    /// the ingress port's address, back to the source.
    fn send_frag_needed(&mut self, snap: &Snapshot, pkt: &B, mtu: u16, now: u64, io: &mut impl Io<B>) {
        let Some(&(from, _)) = snap.port(pkt.port()).and_then(|p| p.addrs.first()) else { return };
        let Some(to) = pkt.data().get(ETH..).and_then(|l3| ipv4::Packet::new_checked(l3).ok()).map(|ip| ip.src_addr())
        else {
            return;
        };
        let Some(mut out) = io.alloc() else { return };
        if !tun::frag_needed(&mut out, pkt.data(), from, mtu) {
            return;
        }
        self.counters.icmp_errors_sent += 1;
        match route_local(snap, to) {
            Verdict::Output { port, nh } => self.send_via(snap, out, port, nh, now, io),
            _ => self.counters.drop(DropReason::NoRoute),
        }
    }

    /// Build ICMP Time Exceeded (type 11 code 0) quoting the IP header + 8 bytes (RFC 792), from
    /// the ingress port's first address, and route it like any local packet. Without a buffer
    /// nothing is sent (the offending packet is dropped anyway).
    fn send_time_exceeded(&mut self, snap: &Snapshot, pkt: &B, hl: usize, total: usize, now: u64, io: &mut impl Io<B>) {
        let data = pkt.data();
        let Some(orig) = data.get(ETH..ETH + total) else { return };
        let to = ipv4::Packet::new_unchecked(orig).src_addr();
        if !is_unicast_ip(to) {
            return;
        }
        let Some(&(from, _)) = snap.port(pkt.port()).and_then(|p| p.addrs.first()) else { return };
        let quote = (hl + icmp::ERROR_QUOTE_LEN).min(total);
        let ip_len = ipv4::MIN_HEADER_LEN + icmp::HEADER_LEN + quote;
        let Some(mut out) = io.alloc() else { return };
        let Some(area) = out.append(ETH + ip_len) else { return };
        area.fill(0);
        let mut eth = ethernet::Packet::new_unchecked(&mut *area);
        eth.set_ethertype(ethernet::ethertype::IPV4);
        let quoted = &orig[..quote];
        if !icmp::write_ipv4_error(
            &mut area[ETH..],
            icmp::msg_type::TIME_EXCEEDED,
            icmp::time_exceeded::TTL,
            0,
            quoted,
            from,
            to,
        ) {
            return;
        }
        self.counters.icmp_errors_sent += 1;
        match route_local(snap, to) {
            Verdict::Output { port, nh } => self.send_via(snap, out, port, nh, now, io),
            _ => self.counters.drop(DropReason::NoRoute),
        }
    }

    /// Out of `snap.ports[port_idx]` to `mac` (a cached, resolved next hop).
    fn send_hop(&mut self, snap: &Snapshot, mut pkt: B, port_idx: u8, mac: [u8; 6], io: &mut impl Io<B>) {
        let Some(pi) = snap.ports.get(usize::from(port_idx)) else {
            self.counters.drop(DropReason::NoRoute);
            return;
        };
        pkt.set_port(pi.id);
        set_macs(pkt.data_mut(), pi.mac, Some(mac));
        self.tx(pkt, io);
    }

    /// Out of `port` to neighbour `nh`: our MAC as source, the neighbour's as destination, or
    /// hold the packet while ARP resolves it. Shared by forwarded and locally built packets.
    fn send_via(&mut self, snap: &Snapshot, mut pkt: B, port: u16, nh: Ipv4Addr, now: u64, io: &mut impl Io<B>) {
        let Some(pi) = snap.port(port) else {
            self.counters.drop(DropReason::NoRoute);
            return;
        };
        pkt.set_port(port);
        let mac = self.neigh.lookup(nh, now);
        set_macs(pkt.data_mut(), pi.mac, mac);
        if mac.is_some() {
            self.tx(pkt, io);
            return;
        }
        match self.neigh.enqueue(port, nh, pkt, now) {
            Enqueue::SendRequest => self.send_arp_request(snap, port, nh, io),
            Enqueue::Queued => {}
            Enqueue::Overflow(p) => {
                drop(p);
                self.counters.drop(DropReason::NeighPendingOverflow);
            }
        }
    }

    /// Broadcast "who has `target`" out of `port`, from the port's address on the target's
    /// subnet if it has one, else its first address.
    fn send_arp_request(&mut self, snap: &Snapshot, port: u16, target: Ipv4Addr, io: &mut impl Io<B>) {
        let Some(pi) = snap.port(port) else { return };
        let sender = pi
            .addrs
            .iter()
            .find(|(a, l)| same_subnet(*a, target, *l))
            .or(pi.addrs.first())
            .map_or(Ipv4Addr::UNSPECIFIED, |(a, _)| *a);
        let Some(mut b) = io.alloc() else {
            self.counters.drop(DropReason::NoBuffer);
            return;
        };
        let Some(area) = b.append(ETH + arp::PACKET_LEN) else {
            self.counters.drop(DropReason::NoBuffer);
            return;
        };
        let mut eth = ethernet::Packet::new_unchecked(&mut *area);
        eth.set_dst_addr(ethernet::BROADCAST);
        eth.set_src_addr(pi.mac);
        eth.set_ethertype(ethernet::ethertype::ARP);
        let mut a = arp::Packet::new_unchecked(&mut area[ETH..]);
        a.fill_ethernet_ipv4();
        a.set_operation(arp::op::REQUEST);
        a.set_sender_hw_addr(pi.mac);
        a.set_sender_ip(sender);
        a.set_target_hw_addr([0; 6]);
        a.set_target_ip(target);
        b.set_port(port);
        self.counters.arp_requests += 1;
        self.tx(b, io);
    }
}

/// Where a locally originated packet to `dst` goes.
fn route_local(snap: &Snapshot, dst: Ipv4Addr) -> Verdict {
    match snap.routes.next_hop(dst) {
        Some((port, nh)) => Verdict::Output { port, nh },
        None => Verdict::Drop(DropReason::NoRoute),
    }
}

/// How a packet of session `s` going `dir` leaves: towards the real server (client side) or
/// the client (reply side).
fn plan(snap: &Snapshot, s: &Session, dir: Dir) -> Result<Plan, DropReason> {
    let rip = *s.rs.ip();
    let routed = |dst: Ipv4Addr| match snap.routes.next_hop(dst) {
        Some((port, nh)) => Ok(Plan { port, nh, tun: None }),
        None => Err(DropReason::NoRoute),
    };
    match (s.fwd, dir) {
        // DR only rewrites the destination MAC, so the RS must be on the same L2 segment as one
        // of our ports (a connected route). Through a gateway the frame would reach the gateway,
        // which would route it by its IP destination (the VIP) — back to us.
        (FwdMode::Dr, _) => match snap.routes.lookup(rip) {
            Some(Route { port, via: None }) => Ok(Plan { port, nh: rip, tun: None }),
            Some(Route { via: Some(_), .. }) | None => Err(DropReason::NoRoute),
        },
        // TUN: the outer packet is routed (a gateway is fine); its source is the egress port's
        // address towards the next hop.
        (FwdMode::Tun, _) => {
            let Some(Route { port, via }) = snap.routes.lookup(rip) else {
                return Err(DropReason::NoRoute);
            };
            let nh = via.unwrap_or(rip);
            let pi = snap.port(port).ok_or(DropReason::NoRoute)?;
            let src = port_addr_towards(pi, nh).ok_or(DropReason::NoRoute)?;
            Ok(Plan { port, nh, tun: Some((src, pi.mtu)) })
        }
        (FwdMode::Nat | FwdMode::FullNat, Dir::Orig) => routed(rip),
        (FwdMode::Nat | FwdMode::FullNat, Dir::Reply) => routed(s.key.src),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::VecBuf;
    use crate::snapshot::StaticRoute;
    use crate::wire::hex;
    use rvs_model::{RealServer, Service};

    /// Verdicts are returned through several inlined layers per packet: 8 bytes keep them in a
    /// register instead of stack copies.
    #[test]
    fn verdict_is_one_word() {
        assert_eq!(std::mem::size_of::<Verdict>(), 8);
    }

    /// Seeds for mutation: frames that reach every stage of the pipeline (see tests/pipeline.rs
    /// for what each does).
    const SEEDS: &[&str] = &[
        // ARP request for the local address, for the VIP; ARP replies from the gateway and RS .11.
        "ffffffffffff0200000000fe080600010800060400010200000000fecb007101000000000000cb007102000000000000000000000000000000000000",
        "ffffffffffff0200000000fe080600010800060400010200000000fecb007101000000000000cb007164000000000000000000000000000000000000",
        "0200000000010200000000fe080600010800060400020200000000fecb007101020000000001cb007102000000000000000000000000000000000000",
        "02000000000102000000000b0806000108000604000202000000000bcb00710b020000000001cb007102000000000000000000000000000000000000",
        // ICMP echo request to 203.0.113.2.
        "0200000000010200000000fe08004500003c333340003f01a24dc633640acb0071020800f3c812340001101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f",
        // TCP SYN to the VIP, and the same with TTL 1.
        "0200000000010200000000fe08004500003c1c4640004006b7d3c633640acb0071649c4000503e2a5b7100000000a002faf079e80000020405b40402080a0a1b2c3d0000000001030307",
        "0200000000010200000000fe08004500003c1c4640000106f6d3c633640acb0071649c4000503e2a5b7100000000a002faf079e80000020405b40402080a0a1b2c3d0000000001030307",
        // UDP to VIP:53, padded to 60 bytes.
        "0200000000010200000000fe080045000026222240004011b202c633640acb007164cf0800350012a07668656c6c6f207276730a0000000000000000",
    ];

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    struct VecIo {
        sent: u64,
        fail_alloc_every: u64,
        allocs: u64,
    }
    impl Io<VecBuf> for VecIo {
        fn alloc(&mut self) -> Option<VecBuf> {
            self.allocs += 1;
            if self.fail_alloc_every != 0 && self.allocs.checked_rem(self.fail_alloc_every) == Some(0) {
                return None;
            }
            Some(VecBuf::empty())
        }
        fn tx(&mut self, pkt: VecBuf) {
            assert!(pkt.len() >= ethernet::HEADER_LEN, "a transmitted frame has an Ethernet header");
            self.sent += 1;
        }
        fn redirect(&mut self, _core: usize, _pkt: VecBuf) {
            panic!("one core never redirects");
        }
        fn neigh_learned(&mut self, _port: u16, _ip: Ipv4Addr, _mac: [u8; 6]) {
            panic!("one core never shares neighbours");
        }
    }

    fn snapshot() -> Arc<Snapshot> {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let port = PortInfo {
            id: 0,
            name: "p0".into(),
            mac: [2, 0, 0, 0, 0, 1],
            addrs: vec![(ip("203.0.113.2"), 24)],
            mtu: 1500,
        };
        let rs = |last: u8, p: u16| RealServer {
            addr: SocketAddr::new(Ipv4Addr::new(203, 0, 113, last).into(), p),
            fwd: FwdMode::Dr,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        let svc = |proto, port: u16| Service {
            key: ServiceKey { proto, vip: SocketAddr::new(ip("203.0.113.100").into(), port) },
            sched: SchedKind::Rr,
            persistence: None,
            laddrs: Vec::new(),
            client_addr: Default::default(),
            reals: vec![rs(11, port), rs(12, port)],
        };
        let default = StaticRoute { prefix: ip("0.0.0.0"), len: 0, port: 0, via: Some(ip("203.0.113.1")) };
        // UDP through NAT, so mutated frames reach the rewrite path too.
        let mut udp = svc(Proto::Udp, 53);
        for r in &mut udp.reals {
            r.fwd = FwdMode::Nat;
        }
        Arc::new(Snapshot::build(1, vec![port], &[default], &[svc(Proto::Tcp, 80), udp], Default::default()).unwrap())
    }

    /// One mutated frame: truncated, bytes flipped or overwritten (mostly in the headers),
    /// sometimes with the IP checksum fixed up so the mutation reaches layer 4, or pure noise.
    fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
        if rng.below(20) == 0 {
            let n = rng.below(80);
            return (0..n).map(|_| rng.next() as u8).collect();
        }
        let mut f = seeds[rng.below(seeds.len())].clone();
        for _ in 0..rng.below(4) {
            let at = if rng.below(4) == 0 { rng.below(f.len()) } else { rng.below(f.len().min(60)) };
            match rng.below(3) {
                0 => f[at] ^= 1 << rng.below(8),
                1 => f[at] = rng.next() as u8,
                _ => f[at] = [0, 1, 0xff, 0x40, 0x45, 0x4f, 0x50][rng.below(7)],
            }
        }
        if rng.below(2) == 0 && f.len() >= 34 {
            if let Ok(mut ip) = ipv4::Packet::new_checked(&mut f[14..]) {
                ip.fill_checksum();
            }
        }
        if rng.below(6) == 0 {
            f.truncate(rng.below(f.len() + 1));
        }
        if rng.below(8) == 0 {
            for _ in 0..rng.below(30) {
                f.push(rng.next() as u8);
            }
        }
        f
    }

    #[test]
    fn random_and_mutated_frames_never_panic_and_are_all_accounted_for() {
        let seeds: Vec<Vec<u8>> = SEEDS.iter().map(|s| hex(s)).collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let cfg = WorkerConfig {
            max_sessions: 64,
            neigh: NeighConfig { pending_total: 32, pending_per_entry: 4, ..NeighConfig::default() },
            ..WorkerConfig::default()
        };
        let mut w: Worker<VecBuf> = Worker::new(cfg, snapshot());
        let mut io = VecIo { sent: 0, fail_alloc_every: 0, allocs: 0 };
        let mut now = 0u64;
        for i in 0..20_000u32 {
            let f = mutate(&mut rng, &seeds);
            let port = if rng.below(50) == 0 { 1 } else { 0 };
            w.process(VecBuf::new(&f, port), now, &mut io);
            now += rng.below(5_000_000) as u64;
            if i % 64 == 0 {
                w.tick(now, &mut io);
            }
            if i % 5000 == 4999 {
                // Let sessions and neighbours time out now and then.
                now += 1000 * 1_000_000_000;
                w.tick(now, &mut io);
            }
            let c = w.counters();
            assert_eq!(io.sent, c.tx_pkts);
            let held = w.st.neigh.pending_len() as u64;
            let forwarded_or_answered = c.tx_pkts - c.arp_requests;
            assert_eq!(
                c.rx_pkts + c.icmp_errors_sent,
                forwarded_or_answered + held + c.total_drops() + c.arp_rx_consumed,
                "packet {i} ({f:02x?}) unaccounted: {c:?}, held {held}"
            );
            let sessions: u32 = w.conn_counts().map(|(_, _, (a, i))| a + i).sum();
            assert_eq!(sessions as usize, w.sessions().len(), "conn counts follow the table");
        }
        let c = w.counters();
        // The mutations must have reached the interesting paths, or this test proves little.
        for r in [
            DropReason::MalformedEth,
            DropReason::MalformedArp,
            DropReason::MalformedIpv4,
            DropReason::BadIpv4Checksum,
            DropReason::MalformedL4,
            DropReason::NoService,
            DropReason::NotForUs,
            DropReason::TtlExceeded,
        ] {
            assert!(c.drops_of(r) > 0, "{r:?} never hit: {c:?}");
        }
        assert!(c.fwd_pkts > 0 && c.arp_replies > 0 && c.icmp_echo_replies > 0 && c.sessions_created > 0, "{c:?}");
    }

    #[test]
    fn failing_allocations_never_panic() {
        let seeds: Vec<Vec<u8>> = SEEDS.iter().map(|s| hex(s)).collect();
        let mut rng = Rng(42);
        let mut w: Worker<VecBuf> = Worker::new(WorkerConfig::default(), snapshot());
        let mut io = VecIo { sent: 0, fail_alloc_every: 2, allocs: 0 };
        for i in 0..3000u64 {
            let f = mutate(&mut rng, &seeds);
            w.process(VecBuf::with_room(&f, 0, 0, 0), i * 10_000_000, &mut io);
            if i % 16 == 0 {
                w.tick(i * 10_000_000, &mut io);
            }
        }
        assert!(w.counters().drops_of(DropReason::NoBuffer) > 0);
    }

    #[test]
    fn same_subnet_edges() {
        let a = Ipv4Addr::new(203, 0, 113, 2);
        assert!(same_subnet(a, Ipv4Addr::new(203, 0, 113, 200), 24));
        assert!(!same_subnet(a, Ipv4Addr::new(203, 0, 114, 2), 24));
        assert!(same_subnet(a, Ipv4Addr::new(1, 2, 3, 4), 0));
        assert!(same_subnet(a, a, 32) && !same_subnet(a, Ipv4Addr::new(203, 0, 113, 3), 32));
        assert!(same_subnet(a, a, 40), "over-long prefixes are clamped, not a panic");
    }

    /// A buffer whose NIC claims (or not) to have verified the IPv4 header checksum.
    struct OffloadBuf(VecBuf, bool);
    impl PacketBuf for OffloadBuf {
        fn data(&self) -> &[u8] {
            self.0.data()
        }
        fn data_mut(&mut self) -> &mut [u8] {
            self.0.data_mut()
        }
        fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
            self.0.prepend(n)
        }
        fn adj(&mut self, n: usize) -> bool {
            self.0.adj(n)
        }
        fn append(&mut self, n: usize) -> Option<&mut [u8]> {
            self.0.append(n)
        }
        fn trim(&mut self, n: usize) -> bool {
            self.0.trim(n)
        }
        fn port(&self) -> u16 {
            self.0.port()
        }
        fn set_port(&mut self, port: u16) {
            self.0.set_port(port)
        }
        fn l3_csum_verified(&self) -> bool {
            self.1
        }
    }
    #[derive(Default)]
    struct OffloadIo(Vec<OffloadBuf>);
    impl Io<OffloadBuf> for OffloadIo {
        fn alloc(&mut self) -> Option<OffloadBuf> {
            Some(OffloadBuf(VecBuf::empty(), false))
        }
        fn tx(&mut self, pkt: OffloadBuf) {
            self.0.push(pkt);
        }
        fn redirect(&mut self, _core: usize, _pkt: OffloadBuf) {
            panic!("one core never redirects");
        }
        fn neigh_learned(&mut self, _port: u16, _ip: Ipv4Addr, _mac: [u8; 6]) {}
    }

    /// The software IPv4 header checksum check is skipped only when the buffer says the NIC did
    /// it: a corrupted checksum is then trusted (as the NIC's verdict is), otherwise dropped.
    #[test]
    fn nic_verified_ip_checksum_skips_software_check() {
        let mut w: Worker<OffloadBuf> = Worker::new(WorkerConfig::default(), snapshot());
        let mut io = OffloadIo::default();
        // UDP to VIP:53 (SEEDS' last frame) with its IPv4 header checksum broken.
        let mut f = hex(SEEDS[SEEDS.len() - 1]);
        f[ETH + 10] ^= 0xff;
        w.process(OffloadBuf(VecBuf::new(&f, 0), false), 0, &mut io);
        assert_eq!(w.counters().drops_of(DropReason::BadIpv4Checksum), 1);
        assert_eq!(w.counters().sessions_created, 0);
        w.process(OffloadBuf(VecBuf::new(&f, 0), true), 1, &mut io);
        assert_eq!(w.counters().drops_of(DropReason::BadIpv4Checksum), 1, "not checked again");
        assert_eq!(w.counters().sessions_created, 1, "went on to the service");
    }

    #[test]
    fn snapshot_change_keeps_or_updates_scheduler_state() {
        let first = snapshot();
        let mut w: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&first));
        assert_eq!(w.st.sched.len(), 2);
        // A rebuild sharing the unchanged services (`build_from`) keeps their `Arc`s; a changed
        // service gets a new definition and its state follows it.
        let mut svcs: Vec<Service> = first.services.values().map(|s| (**s).clone()).collect();
        svcs.sort_by_key(|s| s.key);
        svcs[0].reals[0].weight = 5;
        let next = Arc::new(
            Snapshot::build_from(Some(&first), 2, first.ports.clone(), &[], &svcs, Default::default()).unwrap(),
        );
        let (changed, same) = (svcs[0].key, svcs[1].key);
        let v4 = |k: ServiceKey| (k.proto, k.vip.ip().to_string().parse::<Ipv4Addr>().unwrap(), k.vip.port());
        assert!(Arc::ptr_eq(&first.services[&v4(same)], &next.services[&v4(same)]), "unchanged service shared");
        assert!(!Arc::ptr_eq(&first.services[&v4(changed)], &next.services[&v4(changed)]));
        w.set_snapshot(Arc::clone(&next));
        assert_eq!(w.st.sched.len(), 2);
        assert!(Arc::ptr_eq(&w.st.sched[&sched_id(&changed)].def, &next.services[&v4(changed)]));
        assert_eq!(w.st.sched[&sched_id(&changed)].def.reals[0].weight, 5);
        // An equal definition from an unrelated build is adopted without a rebuild.
        let again = Arc::new(Snapshot::build(3, first.ports.clone(), &[], &svcs, Default::default()).unwrap());
        w.set_snapshot(Arc::clone(&again));
        assert!(Arc::ptr_eq(&w.st.sched[&sched_id(&same)].def, &again.services[&v4(same)]));
        // A service removed from a snapshot of the same size minus one is dropped.
        let one = Arc::new(Snapshot::build(4, first.ports.clone(), &[], &svcs[..1], Default::default()).unwrap());
        w.set_snapshot(one);
        assert_eq!(w.st.sched.len(), 1);
        assert!(w.st.sched.contains_key(&sched_id(&changed)));
        w.set_snapshot(Arc::new(Snapshot::empty()));
        assert!(w.st.sched.is_empty(), "services gone with the snapshot");
        assert_eq!(w.generation(), 0);
    }

    /// Services on ports 1..=n of one VIP, schedulers cycling through rr, wrr, mh, lc.
    fn sched_services(n: u16) -> Vec<Service> {
        let kinds = [SchedKind::Rr, SchedKind::Wrr, SchedKind::Mh, SchedKind::Lc];
        (1..=n)
            .map(|p| {
                let vip = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 100).into(), p);
                let mut s = Service::new(ServiceKey { proto: Proto::Udp, vip }, kinds[usize::from(p) % kinds.len()]);
                s.reals = (11..15u8)
                    .map(|i| RealServer {
                        addr: SocketAddr::new(Ipv4Addr::new(203, 0, 113, i).into(), p),
                        fwd: FwdMode::Dr,
                        weight: u32::from(i - 10),
                        u_threshold: 0,
                        l_threshold: 0,
                    })
                    .collect();
                s
            })
            .collect()
    }

    fn build_next(prev: &Snapshot, gen: u64, svcs: &[Service]) -> Arc<Snapshot> {
        Arc::new(Snapshot::build_from(Some(prev), gen, prev.ports.clone(), &[], svcs, Default::default()).unwrap())
    }

    /// The picks of `a` and `b` for the same 24 new flows of every service in `svcs` (whether or
    /// not the workers know it), which must agree; returns them.
    fn same_picks(a: &mut Worker<VecBuf>, b: &mut Worker<VecBuf>, svcs: &[Service]) -> Vec<Option<usize>> {
        let mut out = Vec::new();
        for svc in svcs {
            for i in 0..24u8 {
                let client = Ipv4Addr::new(198, 51, 100, i);
                let vip = Ipv4Addr::new(203, 0, 113, 100);
                let (pa, pb) = (
                    a.st.pick(svc, client, 40_000 + u16::from(i), vip),
                    b.st.pick(svc, client, 40_000 + u16::from(i), vip),
                );
                assert_eq!(pa, pb, "service {} flow {i}", svc.key);
                out.push(pa);
            }
        }
        let keys = |w: &Worker<VecBuf>| {
            let mut k: Vec<ServiceKey> = w.st.sched.values().map(|s| s.def.key).collect();
            k.sort();
            k
        };
        assert_eq!(keys(a), keys(b));
        out
    }

    #[test]
    fn change_list_switch_equals_a_fresh_worker_and_a_full_walk() {
        let first = snapshot();
        let svcs = sched_services(8);
        let g = build_next(&first, 2, &svcs);
        // g+1: port 2 (mh) gets new weights, port 3 (lc) loses a real server, port 4 changes
        // scheduler (rr to wrr), port 5 is removed, port 9 is added.
        let mut next: Vec<Service> = svcs.iter().filter(|s| s.key.vip.port() != 5).cloned().collect();
        next[1].reals[0].weight = 9;
        next[2].reals.pop();
        next[3].sched = SchedKind::Wrr;
        next.extend(sched_services(9).pop());
        let g1 = build_next(&g, 3, &next);
        let mut listed: Vec<u16> = g1.changes.as_ref().unwrap().keys.iter().map(|k| k.vip.port()).collect();
        listed.sort_unstable();
        assert_eq!(listed, vec![2, 3, 4, 5, 9]);

        let mut a: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g));
        a.set_snapshot(Arc::clone(&g1));
        // The same switch by the full walk (the change list taken away).
        let mut walk_snap = (*g1).clone();
        walk_snap.changes = None;
        let mut c: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g));
        c.set_snapshot(Arc::new(walk_snap));
        let mut fresh: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g1));
        assert_eq!(a.generation(), 3);
        assert_eq!(a.st.sched.len(), 8);
        assert!(!a.st.sched.contains_key(&sched_id(&svcs[4].key)), "removed service has no scheduler");
        // Every service of either generation, including the removed one (no pick) and the added.
        let mut all = svcs.clone();
        all.extend(sched_services(9).pop());
        let defs: Vec<Service> =
            all.iter().map(|s| next.iter().find(|n| n.key == s.key).cloned().unwrap_or_else(|| s.clone())).collect();
        let picks = same_picks(&mut a, &mut fresh, &defs);
        assert_eq!(&picks[4 * 24..5 * 24], &[None; 24][..], "port 5 is gone");
        assert!(picks[8 * 24..].iter().all(|p| p.is_some()), "port 9 is scheduled");
        for s in &defs {
            if let Some(ss) = a.st.sched.get(&sched_id(&s.key)) {
                assert_eq!(*ss.def, *s);
                assert_eq!(ss.kind, s.sched);
            }
        }
        let mut a2: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g));
        a2.set_snapshot(Arc::clone(&g1));
        same_picks(&mut a2, &mut c, &defs);
        // A new flow to the removed service's VIP:port is dropped as NoService.
        let mut io = VecIo { sent: 0, fail_alloc_every: 0, allocs: 0 };
        let frame = udp_frame("198.51.100.7:4000".parse().unwrap(), "203.0.113.100:5".parse().unwrap(), b"x");
        a.process(VecBuf::new(&frame, 0), 1_000, &mut io);
        assert_eq!(a.counters().drops_of(DropReason::NoService), 1);
    }

    #[test]
    fn skipped_generation_falls_back_to_the_full_walk() {
        let first = snapshot();
        let svcs = sched_services(8);
        let g = build_next(&first, 2, &svcs);
        // g+1 removes port 5; g+2 (built from g+1) only edits port 2: its list does not say
        // port 5 is gone, so a worker still on g must not use it.
        let g1_svcs: Vec<Service> = svcs.iter().filter(|s| s.key.vip.port() != 5).cloned().collect();
        let g1 = build_next(&g, 3, &g1_svcs);
        let mut g2_svcs = g1_svcs.clone();
        g2_svcs[1].reals[0].weight = 9;
        let g2 = build_next(&g1, 4, &g2_svcs);
        assert_eq!(g2.changes.as_ref().map(|c| c.keys.len()), Some(1));
        let mut w: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g));
        w.set_snapshot(Arc::clone(&g2));
        let mut fresh: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g2));
        assert_eq!(w.generation(), 4);
        assert!(!w.st.sched.contains_key(&sched_id(&svcs[4].key)), "removed in the skipped generation");
        let picks = same_picks(&mut w, &mut fresh, &svcs);
        assert_eq!(&picks[4 * 24..5 * 24], &[None; 24][..]);
        assert_eq!(*w.st.sched[&sched_id(&svcs[1].key)].def, g2_svcs[1]);
        // A worker started on a snapshot never takes a list relative to another one, even of
        // the same generation.
        let other = Arc::new(Snapshot::build(3, first.ports.clone(), &[], &svcs, Default::default()).unwrap());
        let mut x: Worker<VecBuf> = Worker::new(WorkerConfig::default(), other);
        x.set_snapshot(Arc::clone(&g2));
        let mut fresh2: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g2));
        same_picks(&mut x, &mut fresh2, &svcs);
    }

    /// A UDP datagram in an Ethernet frame to our port MAC, IP checksum filled, UDP checksum 0.
    fn udp_frame(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
        let mut f = hex("0200000000010200000000fe0800");
        let total = 20 + 8 + payload.len();
        f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src.ip().octets());
        f.extend_from_slice(&dst.ip().octets());
        f.extend_from_slice(&src.port().to_be_bytes());
        f.extend_from_slice(&dst.port().to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        ipv4::Packet::new_unchecked(&mut f[ETH..]).fill_checksum();
        f
    }

    fn stats_of(w: &Worker<VecBuf>, svc: &str, proto: Proto, rs: SocketAddr) -> RsStats {
        let key = ServiceKey { proto, vip: svc.parse().unwrap() };
        w.rs_stats().filter(|(k, _)| **k == (key, rs)).map(|(_, v)| *v).next().unwrap_or_default()
    }

    #[test]
    fn per_real_server_stats_count_both_directions_of_nat_and_client_side_of_dr() {
        let mut w: Worker<VecBuf> = Worker::new(WorkerConfig::default(), snapshot());
        let mut io = VecIo { sent: 0, fail_alloc_every: 0, allocs: 0 };
        let client: SocketAddrV4 = "198.51.100.10:40000".parse().unwrap();
        let vip53: SocketAddrV4 = "203.0.113.100:53".parse().unwrap();
        // NAT (UDP 53): two datagrams in (33 and 35 bytes of IP), one reply out.
        w.process(VecBuf::new(&udp_frame(client, vip53, b"hello"), 0), 1_000, &mut io);
        w.process(VecBuf::new(&udp_frame(client, vip53, b"hello!!"), 0), 2_000, &mut io);
        let (views, n) = w.dump_sessions(&SessionFilter::default(), 10, 2_000);
        assert_eq!(n, 1);
        let rs = views[0].rip;
        assert_eq!((views[0].fwd, views[0].client, views[0].vip), (FwdMode::Nat, client, vip53));
        w.process(VecBuf::new(&udp_frame(rs, client, b"answer-long"), 0), 3_000, &mut io);
        let st = stats_of(&w, "203.0.113.100:53", Proto::Udp, SocketAddr::V4(rs));
        assert_eq!(st, RsStats { conns: 1, inpkts: 2, outpkts: 1, inbytes: 33 + 35, outbytes: 28 + 11 });
        assert_eq!(w.counters().fwd_pkts, 3);

        // DR (TCP 80): the SYN makes a session on .11 and counts in; no out direction exists.
        w.process(VecBuf::new(&hex(SEEDS[5]), 0), 4_000, &mut io);
        let dr = stats_of(&w, "203.0.113.100:80", Proto::Tcp, "203.0.113.11:80".parse().unwrap());
        assert_eq!(dr, RsStats { conns: 1, inpkts: 1, outpkts: 0, inbytes: 60, outbytes: 0 });
        // A dropped packet (TTL 1 on a new flow) counts nowhere.
        w.process(VecBuf::new(&hex(SEEDS[6]), 0), 5_000, &mut io);
        assert_eq!(
            stats_of(&w, "203.0.113.100:80", Proto::Tcp, "203.0.113.12:80".parse().unwrap()),
            RsStats::default()
        );
        // Expiry does not reset the figures (cumulative, as IPVS's).
        w.tick(u64::MAX / 2, &mut io);
        assert_eq!(w.sessions().len(), 0);
        assert_eq!(stats_of(&w, "203.0.113.100:53", Proto::Udp, SocketAddr::V4(rs)).inpkts, 2);
        // The session dump filters by service.
        w.process(VecBuf::new(&udp_frame(client, vip53, b"x"), 0), u64::MAX / 2 + 1, &mut io);
        let f = SessionFilter {
            service: Some(ServiceKey { proto: Proto::Tcp, vip: "203.0.113.100:80".parse().unwrap() }),
            real: None,
        };
        assert_eq!(w.dump_sessions(&f, 10, 0).1, 0);
        assert_eq!(w.dump_sessions(&SessionFilter::default(), 10, 0).1, 1);
    }

    #[test]
    fn neighbour_flush_all_or_one_port() {
        let mut w: Worker<VecBuf> = Worker::new(WorkerConfig::default(), snapshot());
        let mut io = VecIo { sent: 0, fail_alloc_every: 0, allocs: 0 };
        // ARP replies from the gateway .1 and the RS .11 (both on port 0), after a SYN asked for .11.
        w.process(VecBuf::new(&hex(SEEDS[5]), 0), 1_000, &mut io);
        w.process(VecBuf::new(&hex(SEEDS[3]), 0), 2_000, &mut io);
        assert_eq!(w.neigh_entries().iter().filter(|e| e.mac.is_some()).count(), 1);
        assert_eq!(w.flush_neigh(Some(7), 3_000), 0, "nothing on port 7");
        assert_eq!(w.neigh_entries().len(), 1, "other ports' entries are kept");
        assert_eq!(w.flush_neigh(Some(0), 3_000), 1);
        assert!(w.neigh_entries().is_empty());
        // An unresolved entry's held packet is dropped and counted.
        w.process(VecBuf::new(&hex(SEEDS[5]), 0), 4_000_000_000_000, &mut io);
        assert_eq!(w.neigh_entries().len(), 1);
        let before = w.counters().drops_of(DropReason::NeighUnreachable);
        assert_eq!(w.flush_neigh(None, 4_000_000_000_001), 1);
        assert_eq!(w.counters().drops_of(DropReason::NeighUnreachable), before + 1);
    }
}
