//! The per-core pipeline. OWNER: pipeline helper.
//!
//! A worker owns everything it touches per packet (neighbour cache, session table, scheduler
//! state, counters), so the packet path takes no lock. It reads configuration from an immutable
//! [`Snapshot`] it swaps between bursts.
//!
//! Shape of `process`: parsing and decisions borrow the buffer (`&mut B`) and return a
//! [`Verdict`]; only the last step (transmit, hold for ARP, drop) takes ownership. Forwarding
//! to a real server is planned (`forward_plan`, one function per forwarding mode) before any
//! state is created, then applied (`forward`), so NAT/FULLNAT/TUN slot in as new match arms.

use crate::buf::PacketBuf;
use crate::conn::{ConnState, ConnTable, FlowKey, Timeouts};
use crate::counters::{Counters, DropReason};
use crate::neigh::{Enqueue, NeighConfig, NeighTable, NeighView};
use crate::route::Route;
use crate::sched::{PickCtx, SchedState};
use crate::snapshot::{PortInfo, Snapshot};
use crate::wire::{arp, ethernet, icmp, ipv4, tcp, udp};
use hashbrown::HashMap;
use rvs_config::model::{FwdMode, Proto, RealServer, SchedKind, Service, ServiceKey};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Static parameters of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Index of this worker (0-based).
    pub core: usize,
    /// Number of workers.
    pub n_cores: usize,
    /// Session table capacity of this worker.
    pub max_sessions: usize,
    pub timeouts: Timeouts,
    pub neigh: NeighConfig,
    /// session-wheel entries examined per tick
    pub expire_budget: usize,
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
        }
    }
}

/// What the worker needs from its environment (rvsd: a mempool + per-port tx buffers; tests: Vecs).
pub trait Io<B: PacketBuf> {
    /// A new empty buffer (for ARP requests, ICMP errors), or None when the pool is empty.
    fn alloc(&mut self) -> Option<B>;
    /// Queue `pkt` for transmission on port `pkt.port()`.
    fn tx(&mut self, pkt: B);
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
}

/// How to forward a flow to its real server: decided before the session is created, so a flow
/// that cannot be forwarded leaves no state behind. One variant per forwarding mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Direct routing: the frame goes unchanged (but for the MACs and TTL) to the RS on `port`.
    Dr { port: u16, rip: Ipv4Addr },
}

/// Scheduler state of one service on this worker, with the server list it was built from.
#[derive(Debug)]
struct SvcSched {
    kind: SchedKind,
    reals: Vec<RealServer>,
    /// `None` when this build does not implement the scheduler (every new flow is then
    /// NoRealServer; rvsd refuses such services before they get here).
    state: Option<SchedState>,
}

/// Per-(service, real server) (active, inactive) session counts.
type ConnCounts = HashMap<(ServiceKey, SocketAddr), (u32, u32)>;

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
    sched: HashMap<ServiceKey, SvcSched>,
    conn_counts: ConnCounts,
    counters: Counters,
    /// Reused for `PickCtx::conns` of schedulers that look at connection counts.
    scratch: Vec<(u32, u32)>,
    /// Received packets used up without output or drop (ARP replies to us). Not in `Counters`
    /// (yet); kept for the accounting invariant rx = tx(forwarded) + held + dropped + consumed.
    consumed: u64,
    /// IP packets this worker built itself (ICMP errors), for the same invariant.
    originated: u64,
}

impl<B: PacketBuf> Worker<B> {
    pub fn new(cfg: WorkerConfig, snap: Arc<Snapshot>) -> Self {
        let neigh = NeighTable::new(cfg.neigh);
        let conns = ConnTable::new(cfg.max_sessions, cfg.timeouts);
        let mut w = Worker {
            snap: Arc::new(Snapshot::empty()),
            st: State {
                cfg,
                neigh,
                conns,
                sched: HashMap::new(),
                conn_counts: HashMap::new(),
                counters: Counters::default(),
                scratch: Vec::new(),
                consumed: 0,
                originated: 0,
            },
        };
        w.set_snapshot(snap);
        w
    }

    /// Switch to a newer snapshot (between bursts). Rebuilds per-service scheduler state (keeping
    /// rotation state of services whose real-server list is unchanged, `SchedState::update` when changed).
    pub fn set_snapshot(&mut self, snap: Arc<Snapshot>) {
        let mut old = std::mem::take(&mut self.st.sched);
        for svc in snap.services.values() {
            let entry = match old.remove(&svc.key) {
                Some(mut s) if s.kind == svc.sched => {
                    if s.reals != svc.reals {
                        match s.state.as_mut() {
                            Some(st) => st.update(&svc.reals),
                            None => s.state = new_sched(svc),
                        }
                        s.reals.clone_from(&svc.reals);
                    }
                    s
                }
                _ => SvcSched { kind: svc.sched, reals: svc.reals.clone(), state: new_sched(svc) },
            };
            self.st.sched.insert(svc.key, entry);
        }
        self.snap = snap;
    }

    pub fn generation(&self) -> u64 {
        self.snap.generation
    }

    /// Handle one received frame; it ends transmitted (io.tx), held (waiting for ARP) or dropped
    /// (counted under a DropReason, then dropped — B's Drop frees it).
    pub fn process(&mut self, mut pkt: B, now_ns: u64, io: &mut impl Io<B>) {
        let snap: &Snapshot = &self.snap;
        let st = &mut self.st;
        st.counters.rx_pkts += 1;
        st.counters.rx_bytes += pkt.len() as u64;
        match st.input(snap, &mut pkt, now_ns, io) {
            Verdict::Drop(r) => st.counters.drop(r),
            Verdict::Consumed => st.consumed += 1,
            Verdict::Tx => st.tx(pkt, io),
            Verdict::Output { port, nh } => st.send_via(snap, pkt, port, nh, now_ns, io),
        }
    }

    /// Timers, called between bursts: ARP retries (build requests with io.alloc), packets whose next hop
    /// never answered (drop NeighUnreachable), session expiry (ConnTable::expire with expire_budget).
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
        st.conns.expire(now_ns, st.cfg.expire_budget, |_, s| {
            counts_sub(counts, s.svc, s.rs, s.state);
            counters.sessions_expired += 1;
        });
        st.counters.sessions_active = st.conns.len() as u64;
    }

    pub fn counters(&self) -> &Counters {
        &self.st.counters
    }

    /// rvsd counts tx-queue-full drops itself.
    pub fn count_drop(&mut self, r: DropReason, n: u64) {
        self.st.counters.drops[r as usize] += n;
    }

    /// Per (service, real server) sessions on this worker: (active, inactive) as ipvsadm counts them (ESTABLISHED = active).
    pub fn conn_counts(&self) -> impl Iterator<Item = (&ServiceKey, &SocketAddr, (u32, u32))> + '_ {
        self.st.conn_counts.iter().map(|((k, a), v)| (k, a, *v))
    }

    pub fn sessions(&self) -> &ConnTable {
        &self.st.conns
    }

    pub fn neigh_entries(&self) -> Vec<NeighView> {
        self.st.neigh.entries()
    }

    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.st.cfg.timeouts = t;
        self.st.conns.set_timeouts(t);
    }
}

fn new_sched(svc: &Service) -> Option<SchedState> {
    match SchedState::new(svc.sched, &svc.reals) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(service = %svc.key, "no scheduler, new flows are dropped: {e}");
            None
        }
    }
}

/// Schedulers that look at connection counts (all but the rotating ones).
fn needs_conns(k: SchedKind) -> bool {
    !matches!(k, SchedKind::Rr | SchedKind::Wrr)
}

fn counts_add(m: &mut ConnCounts, svc: ServiceKey, rs: SocketAddr, s: ConnState) {
    let e = m.entry((svc, rs)).or_insert((0, 0));
    if s.is_active() {
        e.0 += 1;
    } else {
        e.1 += 1;
    }
}

fn counts_sub(m: &mut ConnCounts, svc: ServiceKey, rs: SocketAddr, s: ConnState) {
    let k = (svc, rs);
    if let Some(e) = m.get_mut(&k) {
        if s.is_active() {
            e.0 = e.0.saturating_sub(1);
        } else {
            e.1 = e.1.saturating_sub(1);
        }
        if *e == (0, 0) {
            m.remove(&k);
        }
    }
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

const ETH: usize = ethernet::HEADER_LEN;

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

    /// RFC 826 reception: answer for our addresses and VIPs, learn from what concerns us.
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
        // Interface addresses are answered on their own port; VIPs on any (the DR real servers
        // hold the VIP too but do not answer ARP for it).
        let for_us = snap.local_addrs.get(&tpa) == Some(&port) || snap.vips.contains(&tpa);
        // 0.0.0.0 is an ARP probe (RFC 5227); our own addresses are never learned from others.
        let learnable = !spa.is_unspecified() && !snap.local_addrs.contains_key(&spa) && !snap.vips.contains(&spa);
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

    /// Record a neighbour and send the packets that were waiting for it.
    fn learn(&mut self, snap: &Snapshot, port: u16, ip: Ipv4Addr, mac: [u8; 6], now: u64, io: &mut impl Io<B>) {
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
        if !ip.verify_checksum() {
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

    /// TCP and UDP not addressed to us: established flows first, then new flows to a VIP.
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
        let key = FlowKey { proto, src, dst, sport, dport };
        let is_tcp = proto == ipv4::protocol::TCP;
        let syn_only = is_tcp && flags & (tcp::flags::SYN | tcp::flags::ACK | tcp::flags::RST) == tcp::flags::SYN;

        if let Some(s) = self.conns.get(&key) {
            let (svc, rs, fwd, state) = (s.svc, s.rs, s.fwd, s.state);
            // A new SYN on a closing connection starts a new one (IPVS's conn_reuse_mode):
            // forget the old session and schedule afresh.
            let reuse = syn_only && matches!(state, ConnState::TcpClose | ConnState::TcpFinWait);
            if !reuse {
                if ttl <= 1 {
                    return self.ttl_exceeded(snap, pkt, hl, total, now, io);
                }
                let plan = match forward_plan(snap, fwd, rs) {
                    Ok(p) => p,
                    Err(r) => return Verdict::Drop(r),
                };
                if let Some((old, new)) = self.conns.touch(&key, flags, now, total) {
                    if old.is_active() != new.is_active() {
                        counts_sub(&mut self.conn_counts, svc, rs, old);
                        counts_add(&mut self.conn_counts, svc, rs, new);
                    }
                }
                return self.forward(plan, pkt);
            }
            if let Some(old) = self.conns.remove(&key) {
                counts_sub(&mut self.conn_counts, old.svc, old.rs, old.state);
            }
            self.counters.sessions_active = self.conns.len() as u64;
        }

        if !snap.vips.contains(&dst) {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let p = if is_tcp { Proto::Tcp } else { Proto::Udp };
        let Some(svc) = snap.service(p, dst, dport) else {
            return Verdict::Drop(DropReason::NoService);
        };
        if is_tcp && !syn_only {
            return Verdict::Drop(DropReason::NoSession);
        }
        if ttl <= 1 {
            return self.ttl_exceeded(snap, pkt, hl, total, now, io);
        }
        let Some(rs) = self.pick(svc, src, sport).and_then(|i| svc.reals.get(i)) else {
            return Verdict::Drop(DropReason::NoRealServer);
        };
        let plan = match forward_plan(snap, rs.fwd, rs.addr) {
            Ok(p) => p,
            Err(r) => return Verdict::Drop(r),
        };
        let sess = self.conns.new_session(svc.key, rs.addr, rs.fwd, proto, flags, now, total);
        let state = sess.state;
        if self.conns.insert(key, sess).is_err() {
            return Verdict::Drop(DropReason::SessionTableFull);
        }
        counts_add(&mut self.conn_counts, svc.key, rs.addr, state);
        self.counters.sessions_created += 1;
        self.counters.sessions_active = self.conns.len() as u64;
        self.forward(plan, pkt)
    }

    /// Ask the service's scheduler for a real server (index into `svc.reals`).
    fn pick(&mut self, svc: &Service, client: Ipv4Addr, client_port: u16) -> Option<usize> {
        let ss = self.sched.get_mut(&svc.key)?;
        let state = ss.state.as_mut()?;
        let conns: &[(u32, u32)] = if needs_conns(ss.kind) {
            self.scratch.clear();
            for r in &svc.reals {
                self.scratch.push(self.conn_counts.get(&(svc.key, r.addr)).copied().unwrap_or((0, 0)));
            }
            &self.scratch
        } else {
            &[]
        };
        state.pick(&svc.reals, &PickCtx { client, client_port, conns })
    }

    /// Apply a forwarding plan: rvs is an IP hop (TTL checked by the caller), then the
    /// mode-specific rewrite.
    fn forward(&mut self, plan: Plan, pkt: &mut B) -> Verdict {
        if let Some(l3) = pkt.data_mut().get_mut(ETH..) {
            let mut ip = ipv4::Packet::new_unchecked(l3);
            ip.decrement_ttl();
        }
        self.counters.fwd_pkts += 1;
        match plan {
            Plan::Dr { port, rip } => fwd_dr(port, rip),
        }
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
        let l3 = &mut area[ETH..];
        let (h, msg) = l3.split_at_mut(ipv4::MIN_HEADER_LEN);
        let mut ic = icmp::Packet::new_unchecked(msg);
        ic.set_msg_type(icmp::msg_type::TIME_EXCEEDED);
        ic.set_msg_code(icmp::time_exceeded::TTL);
        ic.data_mut()[..quote].copy_from_slice(&orig[..quote]);
        ic.fill_checksum();
        let mut ip = ipv4::Packet::new_unchecked(h);
        ip.set_version_and_header_len(ipv4::MIN_HEADER_LEN);
        // Precedence "internetwork control" (0xc0), as routers mark their ICMP errors.
        ip.set_dscp_ecn(0xc0);
        ip.set_total_len(ip_len as u16);
        ip.set_ttl(ipv4::DEFAULT_TTL);
        ip.set_protocol(ipv4::protocol::ICMP);
        ip.set_src_addr(from);
        ip.set_dst_addr(to);
        ip.fill_checksum();
        self.originated += 1;
        match route_local(snap, to) {
            Verdict::Output { port, nh } => self.send_via(snap, out, port, nh, now, io),
            _ => self.counters.drop(DropReason::NoRoute),
        }
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

/// How a flow reaches real server `rs` with forwarding mode `fwd`.
fn forward_plan(snap: &Snapshot, fwd: FwdMode, rs: SocketAddr) -> Result<Plan, DropReason> {
    match fwd {
        FwdMode::Dr => plan_dr(snap, rs),
        // NAT, FULLNAT and TUN rewrite addresses/encapsulate: next release, one plan_* each.
        FwdMode::Nat | FwdMode::FullNat | FwdMode::Tun => Err(DropReason::UnsupportedFwd),
    }
}

fn plan_dr(snap: &Snapshot, rs: SocketAddr) -> Result<Plan, DropReason> {
    let IpAddr::V4(rip) = rs.ip() else { return Err(DropReason::NoRoute) };
    match snap.routes.lookup(rip) {
        // DR only rewrites the destination MAC, so the RS must be on the same L2 segment as one
        // of our ports (a connected route). Through a gateway the frame would reach the gateway,
        // which would route it by its IP destination (the VIP) — back to us.
        Some(Route { port, via: None }) => Ok(Plan::Dr { port, rip }),
        Some(Route { via: Some(_), .. }) | None => Err(DropReason::NoRoute),
    }
}

/// DR: the IP packet is untouched (but for the TTL); only the Ethernet header changes, on output.
fn fwd_dr(port: u16, rip: Ipv4Addr) -> Verdict {
    Verdict::Output { port, nh: rip }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::VecBuf;
    use crate::snapshot::StaticRoute;
    use crate::wire::hex;
    use rvs_config::model::Service;

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
        Arc::new(Snapshot::build(1, vec![port], &[default], &[svc(Proto::Tcp, 80), svc(Proto::Udp, 53)], Default::default()).unwrap())
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
                c.rx_pkts + w.st.originated,
                forwarded_or_answered + held + c.total_drops() + w.st.consumed,
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

    #[test]
    fn snapshot_change_keeps_or_updates_scheduler_state() {
        let mut w: Worker<VecBuf> = Worker::new(WorkerConfig::default(), snapshot());
        assert_eq!(w.st.sched.len(), 2);
        w.set_snapshot(Arc::new(Snapshot::empty()));
        assert!(w.st.sched.is_empty(), "services gone with the snapshot");
        assert_eq!(w.generation(), 0);
    }
}
