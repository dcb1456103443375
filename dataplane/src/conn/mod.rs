//! Per-worker session table: bidirectional, bounded, no locks, expiry amortised over bursts by a
//! timer wheel.
//!
//! Sessions live in a slab (a `Vec` grown in fixed chunks, with a free list); ONE index ([`index`])
//! holds each direction a session can be seen in (client → VIP, and for NAT/FULLNAT the real
//! server's reply) → (slab index, direction), so a packet of either direction costs one lookup.
//! The timer wheel holds slab indices.

mod index;

use rvs_model::{FwdMode, Proto, ServiceKey, SessionTimeouts};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The 5-tuple of a packet as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

impl FlowKey {
    /// The same flow seen from the other end.
    pub fn reversed(&self) -> FlowKey {
        FlowKey { proto: self.proto, src: self.dst, dst: self.src, sport: self.dport, dport: self.sport }
    }
}

/// Which way a packet of a session goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client → VIP (IPVS's "input").
    Orig,
    /// Real server → client, the reply of a NAT/FULLNAT session (IPVS's "output").
    Reply,
}

/// Connection state, as IPVS names them (ip_vs_proto_tcp.c). NAT and FULLNAT sessions see both
/// directions and move on the INPUT/OUTPUT rows of IPVS's table; DR and TUN see the client
/// direction only and use its INPUT-ONLY rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnState {
    TcpSynSent,
    TcpSynRecv,
    TcpEstablished,
    TcpFinWait,
    TcpTimeWait,
    TcpClose,
    TcpCloseWait,
    TcpLastAck,
    TcpListen,
    TcpSynAck,
    Udp,
}

impl ConnState {
    /// Name as `ipvsadm -L -c` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            ConnState::TcpSynSent => "SYN_SENT",
            ConnState::TcpSynRecv => "SYN_RECV",
            ConnState::TcpEstablished => "ESTABLISHED",
            ConnState::TcpFinWait => "FIN_WAIT",
            ConnState::TcpTimeWait => "TIME_WAIT",
            ConnState::TcpClose => "CLOSE",
            ConnState::TcpCloseWait => "CLOSE_WAIT",
            ConnState::TcpLastAck => "LAST_ACK",
            ConnState::TcpListen => "LISTEN",
            ConnState::TcpSynAck => "SYNACK",
            ConnState::Udp => "UDP",
        }
    }
    /// ipvsadm's ActiveConn counts ESTABLISHED; every other state is InActConn.
    pub const fn is_active(self) -> bool {
        matches!(self, ConnState::TcpEstablished)
    }
    /// Column of IPVS's state table (sNO is column 0 and has no variant: a session is created
    /// from its first packet).
    const fn col(self) -> usize {
        match self {
            ConnState::TcpEstablished => 1,
            ConnState::TcpSynSent => 2,
            ConnState::TcpSynRecv => 3,
            ConnState::TcpFinWait => 4,
            ConnState::TcpTimeWait => 5,
            ConnState::TcpClose => 6,
            ConnState::TcpCloseWait => 7,
            ConnState::TcpLastAck => 8,
            ConnState::TcpListen => 9,
            ConnState::TcpSynAck => 10,
            ConnState::Udp => 0,
        }
    }
    /// Whether a SYN on a session in this state opens a new connection on the same tuple
    /// (IPVS's `is_new_conn_expected` with conn_reuse_mode 1 and bit 2 for NOOUTPUT: TIME_WAIT,
    /// CLOSE, and FIN_WAIT of a session whose replies bypass rvs, DR and TUN).
    pub fn reusable(self, fwd: FwdMode) -> bool {
        match self {
            ConnState::TcpTimeWait | ConnState::TcpClose => true,
            ConnState::TcpFinWait => !crate::mode::sees_replies(fwd),
            _ => false,
        }
    }
}

/// Timeouts per state, nanoseconds: the per-packet form of [`SessionTimeouts`] (seconds), from
/// which it is built; [`Default`] is IPVS's ([`SessionTimeouts::IPVS`]).
/// `ipvsadm --set tcp tcpfin udp` changes `tcp_established_ns`, `tcp_fin_wait_ns`, `udp_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent_ns: u64,
    pub tcp_syn_recv_ns: u64,
    pub tcp_established_ns: u64,
    pub tcp_fin_wait_ns: u64,
    pub tcp_time_wait_ns: u64,
    pub tcp_close_ns: u64,
    pub tcp_close_wait_ns: u64,
    pub tcp_last_ack_ns: u64,
    pub tcp_listen_ns: u64,
    pub tcp_synack_ns: u64,
    pub udp_ns: u64,
}

const NS_PER_S: u64 = 1_000_000_000;

/// Seconds to nanoseconds.
const fn s_to_ns(s: u32) -> u64 {
    s as u64 * NS_PER_S
}

/// Nanoseconds to whole seconds (saturating at `u32::MAX`).
fn ns_to_s(ns: u64) -> u32 {
    u32::try_from(ns / NS_PER_S).unwrap_or(u32::MAX)
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::from(SessionTimeouts::IPVS)
    }
}

impl From<SessionTimeouts> for Timeouts {
    fn from(t: SessionTimeouts) -> Self {
        Timeouts {
            tcp_syn_sent_ns: s_to_ns(t.tcp_syn_sent_s),
            tcp_syn_recv_ns: s_to_ns(t.tcp_syn_recv_s),
            tcp_established_ns: s_to_ns(t.tcp_established_s),
            tcp_fin_wait_ns: s_to_ns(t.tcp_fin_wait_s),
            tcp_time_wait_ns: s_to_ns(t.tcp_time_wait_s),
            tcp_close_ns: s_to_ns(t.tcp_close_s),
            tcp_close_wait_ns: s_to_ns(t.tcp_close_wait_s),
            tcp_last_ack_ns: s_to_ns(t.tcp_last_ack_s),
            tcp_listen_ns: s_to_ns(t.tcp_listen_s),
            tcp_synack_ns: s_to_ns(t.tcp_synack_s),
            udp_ns: s_to_ns(t.udp_s),
        }
    }
}

impl From<Timeouts> for SessionTimeouts {
    /// Whole seconds (fractions dropped, saturating at `u32::MAX`).
    fn from(t: Timeouts) -> Self {
        SessionTimeouts {
            tcp_syn_sent_s: ns_to_s(t.tcp_syn_sent_ns),
            tcp_syn_recv_s: ns_to_s(t.tcp_syn_recv_ns),
            tcp_established_s: ns_to_s(t.tcp_established_ns),
            tcp_fin_wait_s: ns_to_s(t.tcp_fin_wait_ns),
            tcp_time_wait_s: ns_to_s(t.tcp_time_wait_ns),
            tcp_close_s: ns_to_s(t.tcp_close_ns),
            tcp_close_wait_s: ns_to_s(t.tcp_close_wait_ns),
            tcp_last_ack_s: ns_to_s(t.tcp_last_ack_ns),
            tcp_listen_s: ns_to_s(t.tcp_listen_ns),
            tcp_synack_s: ns_to_s(t.tcp_synack_ns),
            udp_s: ns_to_s(t.udp_ns),
        }
    }
}

impl Timeouts {
    pub fn of(&self, s: ConnState) -> u64 {
        match s {
            ConnState::TcpSynSent => self.tcp_syn_sent_ns,
            ConnState::TcpSynRecv => self.tcp_syn_recv_ns,
            ConnState::TcpEstablished => self.tcp_established_ns,
            ConnState::TcpFinWait => self.tcp_fin_wait_ns,
            ConnState::TcpTimeWait => self.tcp_time_wait_ns,
            ConnState::TcpClose => self.tcp_close_ns,
            ConnState::TcpCloseWait => self.tcp_close_wait_ns,
            ConnState::TcpLastAck => self.tcp_last_ack_ns,
            ConnState::TcpListen => self.tcp_listen_ns,
            ConnState::TcpSynAck => self.tcp_synack_ns,
            ConnState::Udp => self.udp_ns,
        }
    }
    /// ipvsadm's `--set TCP TCPFIN UDP`, seconds; 0 leaves that timeout unchanged. Only the
    /// established, FIN_WAIT and UDP timeouts change; the other states keep theirs.
    pub fn set_ipvsadm(&mut self, tcp: u32, tcpfin: u32, udp: u32) {
        if tcp != 0 {
            self.tcp_established_ns = s_to_ns(tcp);
        }
        if tcpfin != 0 {
            self.tcp_fin_wait_ns = s_to_ns(tcpfin);
        }
        if udp != 0 {
            self.udp_ns = s_to_ns(udp);
        }
    }
    /// ipvsadm's `-L --timeout` figures `(tcp, tcpfin, udp)`, whole seconds.
    pub fn ipvsadm(&self) -> (u32, u32, u32) {
        (ns_to_s(self.tcp_established_ns), ns_to_s(self.tcp_fin_wait_ns), ns_to_s(self.udp_ns))
    }
}

/// TCP flags relevant to the state machine (RFC 793 bit values).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// IPVS's `tcp_states[]` (ip_vs_proto_tcp.c, current kernels): 3 blocks (INPUT, OUTPUT,
/// INPUT-ONLY) × 4 rows (syn, fin, ack, rst) × 11 columns (sNO sES sSS sSR sFW sTW sCL sCW sLA
/// sLI sSA).
const TCP_STATES: [[[ConnState; 11]; 4]; 3] = {
    use ConnState::*;
    const ES: ConnState = TcpEstablished;
    const SS: ConnState = TcpSynSent;
    const SR: ConnState = TcpSynRecv;
    const FW: ConnState = TcpFinWait;
    const TW: ConnState = TcpTimeWait;
    const CL: ConnState = TcpClose;
    const CW: ConnState = TcpCloseWait;
    const LA: ConnState = TcpLastAck;
    const LI: ConnState = TcpListen;
    [
        // INPUT
        [
            [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
            [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
            [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
            [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
        ],
        // OUTPUT
        [
            [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
            [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
            [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
            [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
        ],
        // INPUT-ONLY
        [
            [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
            [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
            [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
            [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
        ],
    ]
};

/// Row of the table for these flags, in IPVS's precedence (`tcp_state_idx`): RST, SYN, FIN,
/// ACK; `None` (state unchanged) for none of them.
fn tcp_row(flags: u8) -> Option<usize> {
    use tcp_flags::*;
    if flags & RST != 0 {
        Some(3)
    } else if flags & SYN != 0 {
        Some(0)
    } else if flags & FIN != 0 {
        Some(1)
    } else if flags & ACK != 0 {
        Some(2)
    } else {
        None
    }
}

/// Block of the table: modes whose replies bypass rvs (DR, TUN) use INPUT-ONLY (IPVS's
/// NOOUTPUT).
fn tcp_block(fwd: FwdMode, dir: Dir) -> usize {
    match (crate::mode::sees_replies(fwd), dir) {
        (false, _) => 2,
        (true, Dir::Orig) => 0,
        (true, Dir::Reply) => 1,
    }
}

/// IPVS `set_tcp_state` for a packet with `flags` going `dir` on a `fwd` session in `old`
/// (`None`: sNO, the session's first packet). Non-TCP protocols are `Udp`.
pub fn next_state(proto: u8, fwd: FwdMode, dir: Dir, old: Option<ConnState>, flags: u8) -> ConnState {
    if proto != 6 {
        return ConnState::Udp;
    }
    let col = old.map_or(0, ConnState::col);
    match tcp_row(flags) {
        Some(row) => TCP_STATES[tcp_block(fwd, dir)][row][col],
        None => old.unwrap_or(ConnState::TcpClose),
    }
}

/// Client-address bookkeeping of a FULLNAT session (bits of [`Session::ca_flags`]).
pub mod ca_flags {
    /// TOA was dealt with (inserted, or skipped for lack of room): not tried again.
    pub const TOA_DONE: u8 = 0x01;
    /// The PROXY v2 header went out with the first data segment (`proxy_seq`, `seq_delta` set).
    pub const PROXY_DONE: u8 = 0x02;
    /// The service sends the client address as a TOA option.
    pub const MODE_TOA: u8 = 0x04;
    /// The service sends the client address as a PROXY v2 header.
    pub const MODE_PROXY: u8 = 0x08;
    /// The real server sees rvs's initial sequence number: client → RS sequence numbers are
    /// shifted by `seq_delta`, RS → client acknowledgments (and SACK edges) back.
    pub const SEQ_SHIFT: u8 = 0x10;
    /// The real server sees rvs's timestamps: client → RS TSval shifted by `ts_delta`, RS →
    /// client TSecr back.
    pub const TS_SHIFT: u8 = 0x20;
}

/// One session. Kept small: IPv4 addresses as plain `SocketAddrV4`, the service derived from the
/// forward key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The client → VIP tuple (the forward key; its destination is the service).
    pub key: FlowKey,
    /// RIP:port the flow goes to.
    pub rs: SocketAddrV4,
    /// FULLNAT: the local address and port the flow leaves with (LIP:lport); 0.0.0.0:0 otherwise.
    pub laddr: SocketAddrV4,
    pub fwd: FwdMode,
    pub state: ConnState,
    /// [`ca_flags`] bits.
    pub ca_flags: u8,
    /// Snapshot generation (low 16 bits) at which the real server was last seen configured: a
    /// packet under another generation checks it again (a wrap only delays that check by one
    /// change).
    pub gen: u16,
    /// FULLNAT TCP: what client → RS sequence numbers gain ([`ca_flags::SEQ_SHIFT`]): rvs's
    /// initial sequence number minus the client's, plus the PROXY v2 header once it went out.
    pub seq_delta: u32,
    /// FULLNAT TCP: what client → RS TSvals gain ([`ca_flags::TS_SHIFT`]).
    pub ts_delta: u32,
    /// PROXY v2: the client's sequence number of its first data byte (retransmissions of the
    /// first segment get the header again).
    pub proxy_seq: u32,
    /// When the session expires unless touched again.
    pub expires_ns: u64,
    /// The worker's per-(service, real server) statistics slot this session counts into
    /// ([`NO_STATS_SLOT`] when it has none), so a packet costs an indexed increment, not a
    /// hash lookup.
    pub stats: u16,
    /// Cached forwarding: the worker's forwarding stamp (snapshot generation + neighbour epoch,
    /// see `Worker`) `hop_port`/`hop_mac` were computed under; 0 = nothing cached. An
    /// established packet under the same stamp skips the route and neighbour lookups.
    pub fwd_stamp: u32,
    /// Per direction (original, reply): index of the egress port in `Snapshot::ports`, or
    /// [`NO_HOP`] when that direction has nothing cached.
    pub hop_port: [u8; 2],
    /// Per direction: the next hop's MAC. DR and TUN have no reply direction through rvs; TUN
    /// keeps its outer source address in the first 4 bytes of the reply slot.
    pub hop_mac: [[u8; 6]; 2],
}

/// [`Session::hop_port`] of a direction with nothing cached.
pub const NO_HOP: u8 = u8::MAX;

/// [`Session::stats`] of a session that counts nowhere.
pub const NO_STATS_SLOT: u32 = u16::MAX as u32;

impl Session {
    /// The statistics slot ([`NO_STATS_SLOT`] when none).
    #[inline]
    pub fn stats_slot(&self) -> u32 {
        u32::from(self.stats)
    }
    /// The virtual service (protocol, VIP:port) of the session.
    pub fn svc(&self) -> ServiceKey {
        let proto = Proto::from_ip_proto(self.key.proto).unwrap_or(Proto::Tcp);
        ServiceKey { proto, vip: SocketAddr::V4(SocketAddrV4::new(self.key.dst, self.key.dport)) }
    }
    /// The cached (egress port index, next-hop MAC) of `dir`, when computed under `stamp`.
    #[inline]
    pub fn cached_hop(&self, dir: Dir, stamp: u32) -> Option<(u8, [u8; 6])> {
        let d = dir as usize;
        (self.fwd_stamp == stamp && self.hop_port[d] != NO_HOP).then(|| (self.hop_port[d], self.hop_mac[d]))
    }

    /// Cache the hop of `dir` under `stamp` (a new stamp forgets the other direction's).
    pub fn cache_hop(&mut self, dir: Dir, stamp: u32, port_idx: u8, mac: [u8; 6]) {
        if self.fwd_stamp != stamp {
            self.fwd_stamp = stamp;
            self.hop_port = [NO_HOP; 2];
        }
        self.hop_port[dir as usize] = port_idx;
        self.hop_mac[dir as usize] = mac;
    }

    /// TUN: the cached outer source address (valid with the original direction's hop).
    pub fn cached_tun_src(&self) -> Ipv4Addr {
        let m = self.hop_mac[1];
        Ipv4Addr::new(m[0], m[1], m[2], m[3])
    }

    /// TUN: cache the outer source address (call with [`Session::cache_hop`] of `Dir::Orig`).
    pub fn cache_tun_src(&mut self, src: Ipv4Addr) {
        let o = src.octets();
        self.hop_mac[1] = [o[0], o[1], o[2], o[3], 0, 0];
    }

    /// The real server as a `SocketAddr` (how the model names it).
    pub fn rs_addr(&self) -> SocketAddr {
        SocketAddr::V4(self.rs)
    }
    /// The key of the real server's replies, when they come through rvs (the mode's
    /// [`crate::mode::Forwarding::reply_dst`]): NAT `RIP:rport → client`, FULLNAT
    /// `RIP:rport → LIP:lport`.
    pub fn reply_key(&self) -> Option<FlowKey> {
        crate::mode::reply_key(self)
    }

    /// Account a packet going `dir` with `tcp_flags` at `now_ns`: TCP state from IPVS's table
    /// (INPUT/OUTPUT rows for modes that see replies, INPUT-ONLY for the others), expiry from
    /// the new state's timeout. When the expiry moved earlier ([`Touched::shortened`]) the
    /// table must [`ConnTable::refile`] the session for it to go in time.
    #[inline]
    pub fn advance(&mut self, dir: Dir, tcp_flags: u8, now_ns: u64, timeouts: &Timeouts) -> Touched {
        let old = self.state;
        let new = next_state(self.key.proto, self.fwd, dir, Some(old), tcp_flags);
        self.state = new;
        let expires = now_ns.saturating_add(timeouts.of(new));
        let shortened = expires < self.expires_ns;
        self.expires_ns = expires;
        Touched { old, new, shortened }
    }
}

/// What [`Session::advance`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touched {
    pub old: ConnState,
    pub new: ConnState,
    /// The expiry moved earlier than it was.
    pub shortened: bool,
}

/// Which sessions a dump wants: all, or those of one service and/or one real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionFilter {
    pub service: Option<ServiceKey>,
    /// Real server address; port 0 matches any port of that address.
    pub real: Option<SocketAddr>,
}

impl SessionFilter {
    pub fn matches(&self, s: &Session) -> bool {
        if self.service.is_some_and(|k| k != s.svc()) {
            return false;
        }
        match self.real {
            None => true,
            Some(r) if r.port() == 0 => r.ip() == std::net::IpAddr::V4(*s.rs.ip()),
            Some(r) => r == s.rs_addr(),
        }
    }
}

/// One session as `ipvsadm -L -c` shows it (plus the FULLNAT local address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView {
    pub proto: Proto,
    pub client: SocketAddrV4,
    pub vip: SocketAddrV4,
    /// FULLNAT: LIP:lport the flow leaves with.
    pub lip: Option<SocketAddrV4>,
    pub rip: SocketAddrV4,
    pub state: ConnState,
    /// Whole seconds until the session expires unless traffic renews it.
    pub expires_in_s: u64,
    pub fwd: FwdMode,
}

impl SessionView {
    pub fn of(s: &Session, now_ns: u64) -> SessionView {
        SessionView {
            proto: Proto::from_ip_proto(s.key.proto).unwrap_or(Proto::Tcp),
            client: SocketAddrV4::new(s.key.src, s.key.sport),
            vip: SocketAddrV4::new(s.key.dst, s.key.dport),
            lip: (s.fwd == FwdMode::FullNat).then_some(s.laddr),
            rip: s.rs,
            state: s.state,
            expires_in_s: s.expires_ns.saturating_sub(now_ns) / 1_000_000_000,
            fwd: s.fwd,
        }
    }
}

/// Index of a session in its table (valid until the session is removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(u32);

/// The table is at capacity; the new flow is refused (existing flows are untouched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// Default wheel tick: 1/16 s. Expiry is at most one tick late.
pub const WHEEL_TICK_NS: u64 = 62_500_000;
/// Default wheel size: 1024 ticks of 1/16 s, a 64 s horizon. Sessions expiring later sit in the
/// farthest slot and are looked at again when it comes round (an ESTABLISHED session's 900 s
/// costs about 14 such looks over its life).
pub const WHEEL_SLOTS: usize = 1024;

/// A session with its place on the timer wheel (80 bytes).
#[derive(Debug)]
struct Entry {
    s: Session,
    /// Wheel slot of the session's one wheel record. Its tick is the first tick at or after the
    /// cursor that falls in this slot (records are always filed less than a revolution ahead).
    slot: u32,
    /// Index of that record inside its slot.
    pos: u32,
}

/// The slab grows by this many slots at a time (`reserve_exact`), not by doubling: at most one
/// chunk of slack, and no doubled `Vec` to copy (large reallocations are page remaps, not
/// copies, with glibc). Also what is reserved up front.
const CHUNK: usize = 1 << 16;

/// Sessions the slab and the index are sized for up front (320 MiB of slab address space,
/// touched as sessions arrive, and 64 MiB of index): below it neither ever grows (a rebuild of
/// the index stops the worker), and both are single ranges that can be put on huge pages
/// ([`ConnTable::memory`]). A table allowed more grows its slab by chunks and its index by
/// doubling, rebuilt from the slab.
const PREALLOC: usize = 1 << 22;

/// Index value: slab index << 1 | direction bit (1 = reply).
fn packed(idx: u32, dir: Dir) -> u32 {
    idx << 1 | u32::from(dir == Dir::Reply)
}

/// Whether index value `v` stands for `k`: field by field, without building the session's key
/// (a key assembled on the stack and read back whole stalls store forwarding).
#[inline(always)]
fn holds_key(slab: &[Option<Entry>], v: u32, k: &FlowKey) -> bool {
    let Some(Some(e)) = slab.get((v >> 1) as usize) else { return false };
    let s = &e.s;
    if v & 1 == 0 {
        return s.key.sport == k.sport
            && s.key.src == k.src
            && s.key.dport == k.dport
            && s.key.dst == k.dst
            && s.key.proto == k.proto;
    }
    // The reply key: RIP:rport → where the mode's real server replies to.
    let Some(to) = crate::mode::reply_dst(s) else { return false };
    s.rs.port() == k.sport && to.port() == k.dport && *s.rs.ip() == k.src && *to.ip() == k.dst && s.key.proto == k.proto
}

/// Both cache lines of a slab entry.
#[inline(always)]
fn prefetch_entry(e: &Option<Entry>, prefetch: impl Fn(*const u8)) {
    let p = e as *const Option<Entry> as *const u8;
    prefetch(p);
    prefetch(p.wrapping_add(std::mem::size_of::<Option<Entry>>() - 1));
}

/// The session table: a slab of sessions bounded by `capacity`, one index for both
/// directions' keys, and a hashed timer wheel of slab indices for expiry.
///
/// Wheel bookkeeping is exact: every session has exactly one record (its slab index) on the
/// wheel, and the session knows where (`due_tick`, `pos`). `remove` takes the record out with a
/// `swap_remove` and fixes the position of the record moved into the hole, so the wheel never
/// holds stale records and its memory is one `u32` per session. `touch` only moves `expires_ns`
/// later without touching the wheel (the common case); when the wheel reaches a record whose
/// session expires later, the record is filed again for the new expiry ("lazy rescheduling").
/// An expiry moved earlier (e.g. RST on an ESTABLISHED flow) moves the record right away, so a
/// session is never removed more than one tick after its `expires_ns`.
pub struct ConnTable {
    index: index::Index,
    slab: Vec<Option<Entry>>,
    free: Vec<u32>,
    live: usize,
    capacity: usize,
    timeouts: Timeouts,
    wheel: Vec<Vec<u32>>,
    tick_ns: u64,
    /// Next tick to process. Ticks before it are done.
    cursor: u64,
}

/// The wheel tick a record for `expires_ns` goes to: its own tick, but not before the cursor
/// (already late) and not beyond the horizon (looked at again then).
fn target_tick(expires_ns: u64, tick_ns: u64, cursor: u64, slots: usize) -> u64 {
    (expires_ns / tick_ns).clamp(cursor, cursor + slots as u64 - 1)
}

impl ConnTable {
    /// A table that holds at most `capacity` sessions.
    pub fn new(capacity: usize, timeouts: Timeouts) -> Self {
        Self::with_wheel(capacity, timeouts, WHEEL_TICK_NS, WHEEL_SLOTS)
    }

    /// As `new`, with a timer wheel of `slots` ticks of `tick_ns` (expiry is at most one tick
    /// late; sessions beyond `slots × tick_ns` are re-examined once per horizon). Values below
    /// 1 ns / 2 slots are raised to those. Capacity is capped at 2^31 sessions.
    pub fn with_wheel(capacity: usize, timeouts: Timeouts, tick_ns: u64, slots: usize) -> Self {
        Self::sized(capacity, timeouts, tick_ns, slots, PREALLOC)
    }

    fn sized(capacity: usize, timeouts: Timeouts, tick_ns: u64, slots: usize, prealloc: usize) -> Self {
        let slots = slots.max(2);
        let capacity = capacity.min(1 << 31);
        ConnTable {
            // Two keys per session of the whole capacity, up to `prealloc` sessions.
            index: index::Index::with_room(2 * capacity.min(prealloc)),
            // Address space only: pages are touched as sessions fill the slots.
            slab: Vec::with_capacity(capacity.min(prealloc)),
            free: Vec::new(),
            live: 0,
            capacity,
            timeouts,
            wheel: (0..slots).map(|_| Vec::new()).collect(),
            tick_ns: tick_ns.max(1),
            cursor: 0,
        }
    }

    /// The address ranges (start, length in bytes) of the slab and of the index: the memory
    /// every packet reads at random, for the platform to put on huge pages.
    pub fn memory(&self) -> [(usize, usize); 2] {
        [
            (self.slab.as_ptr() as usize, self.slab.capacity() * std::mem::size_of::<Option<Entry>>()),
            (self.index.bucket_addr(0) as usize, self.index.bytes()),
        ]
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }
    /// Applies to the next state change or touch of each session.
    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.timeouts = t;
    }

    /// The hash of a tuple in this table's index (what a burst's pre-pass computes once per
    /// packet for [`ConnTable::prefetch_bucket`] and [`ConnTable::lookup_hashed`]).
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.index.hash(key)
    }

    /// Start loading the index bucket of hash `h` into the cache (first stage of a burst's
    /// lookups). `prefetch` is the platform's prefetch hint.
    #[inline]
    pub fn prefetch_bucket(&self, h: u64, prefetch: impl Fn(*const u8)) {
        prefetch(self.index.bucket_addr(h));
    }

    /// Start loading the session that hash `h` most likely belongs to (second stage, once its
    /// bucket is in the cache): both cache lines of its slab entry. `false` when the bucket has
    /// no candidate (most likely a new flow).
    #[inline]
    pub fn prefetch_session(&self, h: u64, prefetch: impl Fn(*const u8)) -> bool {
        match self.index.first_candidate(h).and_then(|v| self.slab.get((v >> 1) as usize)) {
            Some(e) => {
                prefetch_entry(e, prefetch);
                true
            }
            None => false,
        }
    }

    /// Start loading the slab entries the next `n` new sessions will take (from the free list).
    #[inline]
    pub fn prefetch_free(&self, n: usize, prefetch: impl Fn(*const u8)) {
        for &i in self.free.iter().rev().take(n) {
            if let Some(e) = self.slab.get(i as usize) {
                prefetch_entry(e, &prefetch);
            }
        }
    }

    /// The session a packet with this tuple belongs to, and which way it goes: one index lookup.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<(SessionId, Dir)> {
        self.lookup_hashed(key, self.index.hash(key))
    }

    /// [`ConnTable::lookup`] with the key's [`ConnTable::hash`] already computed.
    #[inline]
    pub fn lookup_hashed(&self, key: &FlowKey, h: u64) -> Option<(SessionId, Dir)> {
        let slab = &self.slab;
        let v = self.index.find(h, |v| holds_key(slab, v, key))?;
        Some((SessionId(v >> 1), if v & 1 == 1 { Dir::Reply } else { Dir::Orig }))
    }

    pub fn get(&self, id: SessionId) -> Option<&Session> {
        self.slab.get(id.0 as usize)?.as_ref().map(|e| &e.s)
    }
    /// Counters and fields may be changed freely, but not `key`, `rs`, `laddr` or `fwd` (the
    /// index holds keys derived from them). Moving `expires_ns` earlier through this reference
    /// takes effect only when the wheel reaches the session's current record (use `touch` to
    /// shorten a life precisely); moving it later is fine.
    pub fn get_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        self.slab.get_mut(id.0 as usize)?.as_mut().map(|e| &mut e.s)
    }
    /// The session of a key (either direction).
    pub fn find(&self, key: &FlowKey) -> Option<&Session> {
        self.lookup(key).and_then(|(id, _)| self.get(id))
    }

    /// Put slab index `idx` on the wheel for `tick`; returns (slot, position in the slot).
    fn file(&mut self, idx: u32, tick: u64) -> (u32, u32) {
        let n = self.wheel.len() as u64;
        let si = (tick % n) as usize;
        let slot = &mut self.wheel[si];
        slot.push(idx);
        (si as u32, (slot.len() - 1) as u32)
    }

    /// The tick a record in wheel slot `si` is due at: the first at or after the cursor.
    fn due_tick(&self, si: u32) -> u64 {
        let n = self.wheel.len() as u64;
        self.cursor + (u64::from(si) + n - self.cursor % n) % n
    }

    /// Take the record at (`si`, `pos`) off the wheel, fixing the session whose record fills
    /// the hole.
    fn unfile(&mut self, si: u32, pos: u32) {
        let Some(slot) = self.wheel.get_mut(si as usize) else {
            debug_assert!(false, "conn wheel slot out of range");
            return;
        };
        let pos = pos as usize;
        if pos >= slot.len() {
            debug_assert!(false, "conn wheel record out of place");
            return;
        }
        slot.swap_remove(pos);
        if let Some(moved) = slot.get(pos).copied() {
            if let Some(Some(e)) = self.slab.get_mut(moved as usize) {
                e.pos = pos as u32;
            }
        }
    }

    /// Insert a new session (state and expiry already set, e.g. with `new_session`) under its
    /// forward key and, for NAT/FULLNAT, its reply key. A session already holding either key is
    /// removed first (callers that keep per-session accounting remove it themselves before);
    /// this works when the table is full.
    pub fn insert(&mut self, s: Session) -> Result<SessionId, TableFull> {
        for k in std::iter::once(s.key).chain(s.reply_key()) {
            if let Some((old, _)) = self.lookup(&k) {
                self.remove(old);
            }
        }
        self.insert_new(s)
    }

    /// [`ConnTable::insert`] for a caller that knows no session holds either key of `s` (it
    /// looked them up already): two index probes fewer per new flow.
    pub fn insert_new(&mut self, s: Session) -> Result<SessionId, TableFull> {
        let hf = self.index.hash(&s.key);
        let hr = s.reply_key().map(|r| self.index.hash(&r));
        debug_assert!(self.lookup_hashed(&s.key, hf).is_none(), "forward key held");
        debug_assert!(s.reply_key().zip(hr).is_none_or(|(r, h)| self.lookup_hashed(&r, h).is_none()), "reply key held");
        if self.live >= self.capacity {
            return Err(TableFull);
        }
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                if self.slab.len() == self.slab.capacity() {
                    let room = self.capacity.saturating_sub(self.slab.len()).clamp(1, CHUNK);
                    self.slab.reserve_exact(room);
                }
                self.slab.push(None);
                (self.slab.len() - 1) as u32
            }
        };
        let tick = target_tick(s.expires_ns, self.tick_ns, self.cursor, self.wheel.len());
        let (slot, pos) = self.file(idx, tick);
        if let Some(e) = self.slab.get_mut(idx as usize) {
            *e = Some(Entry { s, slot, pos });
        }
        self.live += 1;
        let grown = self.index.full() || (hr.is_some() && self.index.len() + 2 > self.index.slots() * 7 / 8);
        if grown {
            // Rebuilt from the slab, which now holds the new session: its keys go in there.
            self.grow_index();
        } else {
            self.index.insert(hf, packed(idx, Dir::Orig));
            if let Some(h) = hr {
                self.index.insert(h, packed(idx, Dir::Reply));
            }
        }
        Ok(SessionId(idx))
    }

    /// Double the index, filled again from the slab (only past PREALLOC sessions).
    fn grow_index(&mut self) {
        // Same seeds: hashes a burst's pre-pass computed before the rebuild still find their keys.
        let mut ix = self.index.with_room_like(self.index.slots() * 2 * 8 / 10);
        for (i, e) in self.slab.iter().enumerate() {
            let Some(e) = e else { continue };
            ix.insert(ix.hash(&e.s.key), packed(i as u32, Dir::Orig));
            if let Some(r) = e.s.reply_key() {
                ix.insert(ix.hash(&r), packed(i as u32, Dir::Reply));
            }
        }
        self.index = ix;
    }

    /// Take the slab entry out, with its keys; the wheel record is the caller's business.
    fn take(&mut self, idx: u32) -> Option<Entry> {
        let e = self.slab.get_mut(idx as usize)?.take()?;
        let removed = self.index.remove(self.index.hash(&e.s.key), packed(idx, Dir::Orig));
        debug_assert!(removed, "session without its forward key");
        if let Some(r) = e.s.reply_key() {
            let removed = self.index.remove(self.index.hash(&r), packed(idx, Dir::Reply));
            debug_assert!(removed, "session without its reply key");
        }
        self.free.push(idx);
        self.live -= 1;
        Some(e)
    }

    pub fn remove(&mut self, id: SessionId) -> Option<Session> {
        let e = self.take(id.0)?;
        self.unfile(e.slot, e.pos);
        Some(e.s)
    }

    /// A fresh session for the first packet of a flow (client → VIP): TCP state from IPVS's
    /// table from sNO (SYN → SYN_RECV; RST, FIN or a bare ACK → CLOSE), anything else `Udp`.
    #[allow(clippy::too_many_arguments)]
    pub fn new_session(
        &self,
        key: FlowKey,
        rs: SocketAddrV4,
        fwd: FwdMode,
        laddr: SocketAddrV4,
        tcp_flags: u8,
        now_ns: u64,
    ) -> Session {
        let state = next_state(key.proto, fwd, Dir::Orig, None, tcp_flags);
        Session {
            key,
            rs,
            laddr,
            fwd,
            state,
            ca_flags: 0,
            gen: 0,
            seq_delta: 0,
            ts_delta: 0,
            proxy_seq: 0,
            expires_ns: now_ns.saturating_add(self.timeouts.of(state)),
            stats: u16::MAX,
            fwd_stamp: 0,
            hop_port: [NO_HOP; 2],
            hop_mac: [[0; 6]; 2],
        }
    }

    /// Account a packet of an existing flow going `dir` ([`Session::advance`], then
    /// [`ConnTable::refile`] when the life was shortened). Returns (old state, new state).
    pub fn touch(&mut self, id: SessionId, dir: Dir, tcp_flags: u8, now_ns: u64) -> Option<(ConnState, ConnState)> {
        let timeouts = self.timeouts;
        let t = self.get_mut(id)?.advance(dir, tcp_flags, now_ns, &timeouts);
        if t.shortened {
            self.refile(id);
        }
        Some((t.old, t.new))
    }

    /// After [`Session::advance`] moved a session's expiry earlier: when it now falls before
    /// the tick of its wheel record, move the record (a record at or before the new expiry is
    /// re-filed by the wheel when it gets there, so longer lives never come here).
    pub fn refile(&mut self, id: SessionId) {
        let idx = id.0;
        let (tick_ns, cursor, slots) = (self.tick_ns, self.cursor, self.wheel.len());
        let Some(Some(e)) = self.slab.get(idx as usize) else { return };
        let tick = target_tick(e.s.expires_ns, tick_ns, cursor, slots);
        let (old_slot, old_pos) = (e.slot, e.pos);
        if tick < self.due_tick(old_slot) {
            // Life shortened below the record's tick: move the record now.
            self.unfile(old_slot, old_pos);
            let (slot, pos) = self.file(idx, tick);
            if let Some(Some(e)) = self.slab.get_mut(idx as usize) {
                e.slot = slot;
                e.pos = pos;
            }
        }
    }

    /// Remove sessions whose expiry has passed, examining at most `budget` timer entries; call
    /// once per burst. `on_expire` sees each removed session. Returns how many were removed.
    ///
    /// Only wheel ticks entirely in the past are processed, so a session goes at most one tick
    /// after its `expires_ns`. A call that runs out of budget resumes where it stopped.
    pub fn expire(&mut self, now_ns: u64, budget: usize, on_expire: impl FnMut(&Session)) -> usize {
        self.expire_with(now_ns, budget, |_| {}, on_expire)
    }

    /// [`ConnTable::expire`] with the platform's prefetch: the sessions a few records ahead on
    /// the wheel, and the index buckets of their keys, are loaded while the current one is
    /// looked at (a large table's expiry is otherwise one cache miss after another).
    pub fn expire_with(
        &mut self,
        now_ns: u64,
        budget: usize,
        prefetch: impl Fn(*const u8),
        mut on_expire: impl FnMut(&Session),
    ) -> usize {
        /// Records ahead whose session is prefetched, and whose keys' buckets are.
        const AHEAD_SESSION: usize = 16;
        const AHEAD_BUCKET: usize = 8;
        let slots = self.wheel.len();
        // Ticks before `due_limit` end at or before `now_ns`.
        let due_limit = now_ns / self.tick_ns;
        if self.live == 0 {
            self.cursor = self.cursor.max(due_limit);
            return 0;
        }
        if due_limit > self.cursor + slots as u64 {
            // More than a revolution behind (first call, or a stall): every slot is due. Moving
            // the cursor to one revolution before `due_limit` only reinterprets each record as
            // due at a later tick that is still due, and bounds the walk over empty slots.
            self.cursor = due_limit - slots as u64;
        }
        let mut examined = 0usize;
        let mut removed = 0usize;
        while self.cursor < due_limit {
            let si = (self.cursor % slots as u64) as usize;
            // Pop from the end: records still in the slot keep their positions if we stop.
            while let Some(&idx) = self.wheel[si].last() {
                if examined >= budget {
                    return removed;
                }
                let recs = &self.wheel[si];
                if let Some(e) = recs.len().checked_sub(1 + AHEAD_SESSION).and_then(|i| self.slab.get(recs[i] as usize))
                {
                    prefetch_entry(e, &prefetch);
                }
                if let Some(Some(e)) =
                    recs.len().checked_sub(1 + AHEAD_BUCKET).and_then(|i| self.slab.get(recs[i] as usize))
                {
                    prefetch(self.index.bucket_addr(self.index.hash(&e.s.key)));
                    if let Some(r) = e.s.reply_key() {
                        prefetch(self.index.bucket_addr(self.index.hash(&r)));
                    }
                }
                examined += 1;
                self.wheel[si].pop();
                let Some(Some(e)) = self.slab.get_mut(idx as usize) else {
                    debug_assert!(false, "conn wheel record without session");
                    continue;
                };
                if e.s.expires_ns <= now_ns {
                    if let Some(e) = self.take(idx) {
                        on_expire(&e.s);
                        removed += 1;
                    }
                } else {
                    // Touched since filed: expires_ns > now_ns, so its tick is at least
                    // `due_limit` > cursor and the record never lands back in this slot.
                    let tick = target_tick(e.s.expires_ns, self.tick_ns, self.cursor, slots);
                    debug_assert!(tick > self.cursor);
                    let ts = (tick % slots as u64) as usize;
                    let slot = &mut self.wheel[ts];
                    slot.push(idx);
                    e.slot = ts as u32;
                    e.pos = (slot.len() - 1) as u32;
                }
            }
            // Give back the memory of an exceptional burst.
            let keep = 2 * (self.live / slots) + 64;
            let slot = &mut self.wheel[si];
            if slot.capacity() > 4 * keep {
                slot.shrink_to(keep);
            }
            self.cursor += 1;
            if self.live == 0 {
                self.cursor = due_limit;
            }
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.live
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Every session with its id.
    pub fn iter(&self) -> impl Iterator<Item = (SessionId, &Session)> + '_ {
        self.slab.iter().enumerate().filter_map(|(i, e)| e.as_ref().map(|e| (SessionId(i as u32), &e.s)))
    }

    /// Up to `max` sessions matching `filter`, as `ipvsadm -L -c` lists them, and how many
    /// matched in all (so a caller can say how many it left out). Walks the whole slab: a
    /// control-plane request, served between bursts.
    pub fn views(&self, filter: &SessionFilter, max: usize, now_ns: u64) -> (Vec<SessionView>, u64) {
        let mut out = Vec::with_capacity(max.min(self.live).min(4096));
        let mut matched = 0u64;
        for (_, s) in self.iter() {
            if !filter.matches(s) {
                continue;
            }
            matched += 1;
            if out.len() < max {
                out.push(SessionView::of(s, now_ns));
            }
        }
        (out, matched)
    }

    /// Test aid: every session has exactly one wheel record, where it says it is, and its keys
    /// in the map.
    #[cfg(test)]
    fn check_wheel(&self) {
        let records: usize = self.wheel.iter().map(Vec::len).sum();
        assert_eq!(records, self.live, "wheel records vs sessions");
        let mut keys = 0;
        for (i, e) in self.slab.iter().enumerate() {
            let Some(e) = e else { continue };
            assert_eq!(self.wheel[e.slot as usize].get(e.pos as usize), Some(&(i as u32)), "record of {i}");
            let id = SessionId(i as u32);
            assert_eq!(self.lookup(&e.s.key), Some((id, Dir::Orig)));
            keys += 1;
            if let Some(r) = e.s.reply_key() {
                assert_eq!(self.lookup(&r), Some((id, Dir::Reply)));
                keys += 1;
            }
        }
        assert_eq!(keys, self.index.len(), "no stray keys");
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_flags::*;
    use super::*;

    const S: u64 = 1_000_000_000;
    const T: u64 = WHEEL_TICK_NS;

    fn key(i: u32) -> FlowKey {
        FlowKey {
            proto: 6,
            src: Ipv4Addr::new(198, 51, 100, (i % 250) as u8),
            dst: Ipv4Addr::new(192, 0, 2, 10),
            sport: 1024 + (i / 250) as u16,
            dport: 80,
        }
    }
    fn rs() -> SocketAddrV4 {
        "203.0.113.5:80".parse().unwrap()
    }
    const NOL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    fn syn_k(t: &ConnTable, k: FlowKey, now: u64) -> Session {
        t.new_session(k, rs(), FwdMode::Dr, NOL, SYN, now)
    }
    /// Key-based shorthands over the id-based API.
    trait ByKey {
        fn ins(&mut self, k: FlowKey, s: Session) -> Result<SessionId, TableFull>;
        fn g(&self, k: &FlowKey) -> Option<&Session>;
        fn tk(&mut self, k: &FlowKey, flags: u8, now: u64) -> Option<(ConnState, ConnState)>;
        fn rm(&mut self, k: &FlowKey) -> Option<Session>;
    }
    impl ByKey for ConnTable {
        fn ins(&mut self, k: FlowKey, mut s: Session) -> Result<SessionId, TableFull> {
            s.key = k;
            self.insert(s)
        }
        fn g(&self, k: &FlowKey) -> Option<&Session> {
            self.find(k)
        }
        fn tk(&mut self, k: &FlowKey, flags: u8, now: u64) -> Option<(ConnState, ConnState)> {
            let (id, dir) = self.lookup(k)?;
            self.touch(id, dir, flags, now)
        }
        fn rm(&mut self, k: &FlowKey) -> Option<Session> {
            let (id, _) = self.lookup(k)?;
            self.remove(id)
        }
    }
    /// Drive `expire` tick by tick from `from` to `to`; returns when each key went.
    fn run(t: &mut ConnTable, from: u64, to: u64, step: u64) -> Vec<(FlowKey, u64)> {
        let mut gone = Vec::new();
        let mut now = from;
        while now <= to {
            t.expire(now, usize::MAX, |s| gone.push((s.key, now)));
            t.check_wheel();
            now += step;
        }
        gone
    }

    #[test]
    fn new_session_states() {
        let t = ConnTable::new(10, Timeouts::default());
        let d = Timeouts::default();
        let s = t.new_session(key(0), rs(), FwdMode::Dr, NOL, SYN, 5);
        assert_eq!((s.state, s.expires_ns), (ConnState::TcpSynRecv, 5 + d.tcp_syn_recv_ns));
        // IPVS's sNO column: anything but a SYN is CLOSE.
        for f in [RST | ACK, FIN | ACK, ACK] {
            assert_eq!(t.new_session(key(0), rs(), FwdMode::Dr, NOL, f, 0).state, ConnState::TcpClose);
            assert_eq!(t.new_session(key(0), rs(), FwdMode::Nat, NOL, f, 0).state, ConnState::TcpClose);
        }
        let u = t.new_session(FlowKey { proto: 17, ..key(0) }, rs(), FwdMode::Dr, NOL, SYN, 7);
        assert_eq!((u.state, u.expires_ns), (ConnState::Udp, 7 + d.udp_ns));
    }

    #[test]
    fn tcp_transitions_input_only() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let k = key(1);
        t.ins(k, syn_k(&t, k, 0)).unwrap();
        use ConnState::*;
        // Retransmitted SYN keeps SYN_RECV.
        assert_eq!(t.tk(&k, SYN, 1), Some((TcpSynRecv, TcpSynRecv)));
        assert_eq!(t.tk(&k, ACK, 2), Some((TcpSynRecv, TcpEstablished)));
        assert_eq!(t.tk(&k, ACK | 0x08, 3), Some((TcpEstablished, TcpEstablished)));
        assert_eq!(t.tk(&k, SYN, 4), Some((TcpEstablished, TcpEstablished)));
        assert_eq!(t.tk(&k, FIN | ACK, 5), Some((TcpEstablished, TcpFinWait)));
        assert_eq!(t.tk(&k, ACK, 6), Some((TcpFinWait, TcpFinWait)));
        assert_eq!(t.tk(&k, FIN, 7), Some((TcpFinWait, TcpFinWait)));
        assert_eq!(t.tk(&k, RST, 8), Some((TcpFinWait, TcpClose)));
        assert_eq!(t.tk(&k, FIN, 9), Some((TcpClose, TcpClose)));
        assert_eq!(t.tk(&k, ACK, 10), Some((TcpClose, TcpClose)));
        // A SYN reopens (the worker reschedules before this; the table alone says SYN_RECV).
        assert_eq!(t.tk(&k, SYN, 11), Some((TcpClose, TcpSynRecv)));
        // No flag of interest: unchanged.
        assert_eq!(t.tk(&k, 0x08, 12), Some((TcpSynRecv, TcpSynRecv)));
        let s = t.g(&k).unwrap();
        assert_eq!(s.expires_ns, 12 + Timeouts::default().tcp_syn_recv_ns);
        // RST in SYN_RECV stays SYN_RECV (IPVS), RST in ESTABLISHED closes; FIN from SYN_RECV.
        let k2 = key(2);
        t.ins(k2, syn_k(&t, k2, 0)).unwrap();
        assert_eq!(t.tk(&k2, FIN, 1), Some((TcpSynRecv, TcpTimeWait)));
        let k3 = key(3);
        t.ins(k3, syn_k(&t, k3, 0)).unwrap();
        assert_eq!(t.tk(&k3, RST | ACK, 1), Some((TcpSynRecv, TcpSynRecv)));
        assert_eq!(t.tk(&k3, ACK, 1), Some((TcpSynRecv, TcpEstablished)));
        assert_eq!(t.tk(&k3, RST, 1), Some((TcpEstablished, TcpClose)));
        // Absent key.
        assert_eq!(t.tk(&key(99), ACK, 1), None);
    }

    /// A NAT/FULLNAT session through a full handshake and both closes, as IPVS moves it.
    #[test]
    fn tcp_transitions_both_directions() {
        use ConnState::*;
        let mut t = ConnTable::new(10, Timeouts::default());
        let k = key(1);
        let id = t.insert(t.new_session(k, rs(), FwdMode::Nat, NOL, SYN, 0)).unwrap();
        let r = t.get(id).unwrap().reply_key().unwrap();
        assert_eq!(t.lookup(&r), Some((id, Dir::Reply)));
        assert_eq!(t.lookup(&k), Some((id, Dir::Orig)));
        assert_eq!(t.tk(&r, SYN | ACK, 1), Some((TcpSynRecv, TcpSynRecv)));
        assert_eq!(t.tk(&k, ACK, 2), Some((TcpSynRecv, TcpEstablished)));
        assert_eq!(t.tk(&r, ACK, 3), Some((TcpEstablished, TcpEstablished)));
        // Client closes first: INPUT fin in ES → CLOSE_WAIT; the server's FIN → TIME_WAIT.
        assert_eq!(t.tk(&k, FIN | ACK, 4), Some((TcpEstablished, TcpCloseWait)));
        assert_eq!(t.tk(&r, ACK, 5), Some((TcpCloseWait, TcpCloseWait)));
        assert_eq!(t.tk(&r, FIN | ACK, 6), Some((TcpCloseWait, TcpTimeWait)));
        assert_eq!(t.tk(&k, ACK, 7), Some((TcpTimeWait, TcpTimeWait)));
        assert_eq!(t.get(id).unwrap().expires_ns, 7 + Timeouts::default().tcp_time_wait_ns);
        // Server closes first: OUTPUT fin in ES → FIN_WAIT; the client's FIN → TIME_WAIT.
        let k2 = key(2);
        let id2 = t
            .insert(t.new_session(
                k2,
                rs(),
                FwdMode::FullNat,
                SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 200), 5000),
                SYN,
                0,
            ))
            .unwrap();
        let r2 = t.get(id2).unwrap().reply_key().unwrap();
        assert_eq!((r2.dst, r2.dport), (Ipv4Addr::new(192, 0, 2, 200), 5000));
        t.tk(&r2, SYN | ACK, 1);
        t.tk(&k2, ACK, 2);
        assert_eq!(t.tk(&r2, FIN | ACK, 3), Some((TcpEstablished, TcpFinWait)));
        assert_eq!(t.tk(&k2, FIN | ACK, 4), Some((TcpFinWait, TcpTimeWait)));
        // RST from the server closes.
        let k3 = key(3);
        let id3 = t.insert(t.new_session(k3, rs(), FwdMode::Nat, NOL, SYN, 0)).unwrap();
        let r3 = t.get(id3).unwrap().reply_key().unwrap();
        assert_eq!(t.tk(&r3, RST | ACK, 1), Some((TcpSynRecv, TcpClose)));
        assert!(TcpTimeWait.reusable(FwdMode::Nat) && TcpClose.reusable(FwdMode::Nat));
        assert!(!TcpFinWait.reusable(FwdMode::Nat) && TcpFinWait.reusable(FwdMode::Dr));
        t.check_wheel();
        // Removing drops both keys.
        t.remove(id);
        assert_eq!((t.lookup(&k), t.lookup(&r)), (None, None));
        t.check_wheel();
    }

    /// Names of every state as ipvsadm prints them; only ESTABLISHED is active.
    #[test]
    fn state_names() {
        use ConnState::*;
        let all = [
            TcpSynSent,
            TcpSynRecv,
            TcpEstablished,
            TcpFinWait,
            TcpTimeWait,
            TcpClose,
            TcpCloseWait,
            TcpLastAck,
            TcpListen,
            TcpSynAck,
            Udp,
        ];
        let names: Vec<_> = all.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "SYN_SENT",
                "SYN_RECV",
                "ESTABLISHED",
                "FIN_WAIT",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "SYNACK",
                "UDP"
            ]
        );
        assert_eq!(all.iter().filter(|s| s.is_active()).count(), 1);
        let d = Timeouts::default();
        assert_eq!(d.of(TcpSynSent), 120 * S);
        assert_eq!(d.of(TcpLastAck), 30 * S);
        assert_eq!(d.of(TcpCloseWait), 60 * S);
    }

    #[test]
    fn udp_stays_udp() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let k = FlowKey { proto: 17, ..key(1) };
        let s = t.new_session(FlowKey { proto: 17, ..key(0) }, rs(), FwdMode::Dr, NOL, 0, 0);
        t.ins(k, s).unwrap();
        for f in [0, SYN, FIN, RST, ACK] {
            assert_eq!(t.tk(&k, f, 1), Some((ConnState::Udp, ConnState::Udp)));
        }
        assert_eq!(t.g(&k).unwrap().expires_ns, 1 + Timeouts::default().udp_ns);
    }

    #[test]
    fn capacity_limit_keeps_existing_flows_working() {
        let mut t = ConnTable::new(3, Timeouts::default());
        assert_eq!(t.capacity(), 3);
        for i in 0..3 {
            t.ins(key(i), syn_k(&t, key(0), 0)).unwrap();
        }
        let before = t.g(&key(0)).cloned();
        assert_eq!(t.ins(key(3), syn_k(&t, key(0), 5)).err(), Some(TableFull));
        assert_eq!(t.len(), 3);
        assert!(t.g(&key(3)).is_none());
        assert_eq!(t.g(&key(0)).cloned(), before);
        // Existing flows still update and can be replaced while full.
        assert!(t.tk(&key(0), ACK, 1).is_some());
        let mut s = syn_k(&t, key(0), 9);
        s.seq_delta = 42;
        let id = t.ins(key(1), s).unwrap();
        assert_eq!(t.get(id).unwrap().seq_delta, 42);
        assert_eq!(t.len(), 3);
        t.check_wheel();
        // Room again after a removal.
        assert!(t.rm(&key(2)).is_some());
        assert!(t.ins(key(3), syn_k(&t, key(0), 5)).is_ok());
        t.check_wheel();
        // Zero capacity refuses everything.
        let mut z = ConnTable::new(0, Timeouts::default());
        assert_eq!(z.ins(key(0), syn_k(&t, key(0), 0)).err(), Some(TableFull));
    }

    #[test]
    fn each_state_expires_after_its_timeout() {
        let d = Timeouts::default();
        let cases: [(&[u8], u64); 5] = [
            (&[], d.tcp_syn_recv_ns),
            (&[ACK], d.tcp_established_ns),
            (&[ACK, FIN], d.tcp_fin_wait_ns),
            (&[RST], d.tcp_syn_recv_ns),
            (&[ACK, RST], d.tcp_close_ns),
        ];
        for (touches, timeout) in cases {
            let flags = touches.last().copied().unwrap_or(SYN);
            let mut t = ConnTable::new(10, d);
            let t0 = 1000 * S + 123;
            let s = t.new_session(key(7), rs(), FwdMode::Dr, NOL, SYN, t0);
            t.ins(key(7), s).unwrap();
            for &f in touches {
                t.tk(&key(7), f, t0);
            }
            let gone = run(&mut t, t0, t0 + timeout + 2 * S, T / 2);
            assert_eq!(gone.len(), 1, "flags {flags:#x}");
            let at = gone[0].1;
            assert!(at >= t0 + timeout && at <= t0 + timeout + T, "flags {flags:#x}: expired at +{}", at - t0);
            assert!(t.is_empty());
        }
        // UDP, checked with one-second steps.
        let mut t = ConnTable::new(10, d);
        let s = t.new_session(FlowKey { proto: 17, ..key(0) }, rs(), FwdMode::Dr, NOL, 0, 0);
        t.ins(key(8), s).unwrap();
        let gone = run(&mut t, 0, 400 * S, S);
        // 300 s is a tick boundary: that tick is over at the next step.
        assert_eq!(gone, vec![(key(8), 301 * S)]);
    }

    #[test]
    fn touch_extends_life() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let k = key(1);
        t.ins(k, t.new_session(FlowKey { proto: 17, ..key(0) }, rs(), FwdMode::Dr, NOL, 0, 0)).unwrap();
        assert!(run(&mut t, 0, 200 * S, S).is_empty());
        t.tk(&k, 0, 200 * S);
        assert!(run(&mut t, 201 * S, 499 * S, S).is_empty());
        assert!(t.g(&k).is_some());
        assert_eq!(run(&mut t, 500 * S, 510 * S, S), vec![(k, 501 * S)]);
    }

    #[test]
    fn touch_shortening_life_moves_the_record() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let k = key(1);
        t.ins(k, syn_k(&t, key(0), 0)).unwrap();
        t.tk(&k, ACK, 1); // ESTABLISHED, 900 s: filed at the horizon
        t.tk(&k, RST, 2 * S); // CLOSE, 10 s
        t.check_wheel();
        let gone = run(&mut t, 2 * S, 30 * S, T);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].1 >= 12 * S && gone[0].1 <= 12 * S + T, "at {}", gone[0].1);
    }

    #[test]
    fn budget_is_respected_and_work_resumes() {
        let mut t = ConnTable::new(20_000, Timeouts::default());
        for i in 0..10_000 {
            t.ins(key(i), syn_k(&t, key(0), 0)).unwrap();
        }
        let now = 61 * S;
        let mut seen = hashbrown::HashSet::new();
        let mut calls = 0;
        loop {
            let n = t.expire(now, 1000, |s| {
                assert_eq!(s.state, ConnState::TcpSynRecv);
                assert!(seen.insert(s.key), "expired twice");
            });
            assert!(n <= 1000);
            calls += 1;
            t.check_wheel();
            if n == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), 10_000);
        assert!(t.is_empty());
        assert_eq!(calls, 11);
        // Budget zero does nothing.
        t.ins(key(1), syn_k(&t, key(0), 0)).unwrap();
        assert_eq!(t.expire(200 * S, 0, |_| panic!("budget 0")), 0);
        assert_eq!(t.len(), 1);
        assert_eq!(t.expire(200 * S, 1, |_| {}), 1);
    }

    #[test]
    fn budget_counts_rescheduled_records_too() {
        let mut t = ConnTable::new(100, Timeouts::default());
        for i in 0..10 {
            t.ins(key(i), syn_k(&t, key(0), 0)).unwrap();
        }
        // All touched: at 61 s none is due, but each record must be examined and moved.
        for i in 0..10 {
            t.tk(&key(i), ACK, 30 * S);
        }
        assert_eq!(t.expire(61 * S, 4, |_| panic!("none due")), 0);
        t.check_wheel();
        assert_eq!(t.expire(61 * S, 100, |_| panic!("none due")), 0);
        t.check_wheel();
        assert_eq!(t.len(), 10);
        assert_eq!(t.expire(930 * S + T, usize::MAX, |_| {}), 10);
    }

    #[test]
    fn remove_then_expire_does_not_resurrect() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let (a, b) = (key(1), key(2));
        t.ins(a, syn_k(&t, key(0), 0)).unwrap();
        t.ins(b, syn_k(&t, key(0), 0)).unwrap();
        assert_eq!(t.rm(&a).map(|s| s.state), Some(ConnState::TcpSynRecv));
        assert_eq!(t.rm(&a), None);
        t.check_wheel();
        let gone = run(&mut t, 0, 70 * S, S);
        assert_eq!(gone.iter().map(|g| g.0).collect::<Vec<_>>(), vec![b]);
        assert!(t.g(&a).is_none());

        // Remove and re-insert the same key (a flow rescheduled) with a later life: it goes
        // once, at the new time.
        let mut t = ConnTable::new(10, Timeouts::default());
        t.ins(a, syn_k(&t, key(0), 0)).unwrap();
        t.rm(&a);
        t.ins(a, syn_k(&t, key(0), 30 * S)).unwrap();
        t.check_wheel();
        let gone = run(&mut t, 0, 100 * S, S);
        assert_eq!(gone, vec![(a, 91 * S)]);
        // Replace by insert without remove: same.
        t.ins(a, syn_k(&t, key(0), 0)).unwrap();
        t.ins(a, syn_k(&t, key(0), 20 * S)).unwrap();
        t.check_wheel();
        assert_eq!(t.len(), 1);
        let gone = run(&mut t, 100 * S, 200 * S, S);
        // Already past due when inserted: filed for the current tick, gone once it is over.
        assert_eq!(gone, vec![(a, 101 * S)]);
    }

    #[test]
    fn repeated_reschedule_does_not_grow_the_wheel() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let a = key(1);
        for i in 0..100_000u64 {
            t.rm(&a);
            t.ins(a, syn_k(&t, key(0), i)).unwrap();
        }
        t.check_wheel();
        let records: usize = t.wheel.iter().map(Vec::len).sum();
        assert_eq!(records, 1);
    }

    #[test]
    fn far_future_clock_and_stalls() {
        // A clock that starts far from zero (ns since boot) must not make the first call walk
        // millions of empty ticks or misplace records.
        let mut t = ConnTable::new(10, Timeouts::default());
        let t0 = 5_000_000 * S;
        t.ins(key(1), syn_k(&t, key(0), t0)).unwrap();
        assert_eq!(t.expire(t0, usize::MAX, |_| {}), 0);
        assert_eq!(t.expire(t0 + 59 * S, usize::MAX, |_| {}), 0);
        assert_eq!(t.expire(t0 + 60 * S + T, usize::MAX, |_| {}), 1);
        // A stall of many horizons with live and dead sessions mixed.
        let t1 = t0 + 100 * S;
        t.ins(key(2), syn_k(&t, key(0), t1)).unwrap();
        let mut u = t.new_session(FlowKey { proto: 17, ..key(0) }, rs(), FwdMode::Dr, NOL, 0, t1);
        u.expires_ns = t1 + 10_000 * S;
        t.ins(key(3), u).unwrap();
        let mut gone = Vec::new();
        assert_eq!(t.expire(t1 + 5000 * S, usize::MAX, |s| gone.push(s.key)), 1);
        assert_eq!(gone, vec![key(2)]);
        t.check_wheel();
        assert!(t.g(&key(3)).is_some());
        assert_eq!(t.expire(t1 + 10_000 * S + T, usize::MAX, |_| {}), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn set_timeouts_applies_on_next_touch() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let k = key(1);
        t.ins(k, syn_k(&t, key(0), 0)).unwrap();
        let mut to = *t.timeouts();
        to.tcp_established_ns = 5 * S;
        t.set_timeouts(to);
        assert_eq!(t.timeouts().tcp_established_ns, 5 * S);
        assert_eq!(t.g(&k).unwrap().expires_ns, 60 * S);
        t.tk(&k, ACK, S);
        assert_eq!(t.g(&k).unwrap().expires_ns, 6 * S);
        let gone = run(&mut t, S, 10 * S, T);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].1 <= 6 * S + T);
    }

    #[test]
    fn iteration_and_get_mut() {
        let mut t = ConnTable::new(100, Timeouts::default());
        for i in 0..50 {
            t.ins(key(i), syn_k(&t, key(0), i as u64)).unwrap();
        }
        t.get_mut(t.lookup(&key(3)).unwrap().0).unwrap().seq_delta = 7;
        let life = Timeouts::default().tcp_syn_recv_ns;
        let mut seen: Vec<u64> = t
            .iter()
            .map(|(_, s)| {
                let k = s.key;
                let born = s.expires_ns - life;
                assert_eq!(born, (k.sport as u64 - 1024) * 250 + k.src.octets()[3] as u64);
                born
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<u64>>());
        assert_eq!(t.g(&key(3)).unwrap().seq_delta, 7);
        assert!(!t.is_empty());
        assert_eq!(t.len(), 50);
    }

    #[test]
    fn model_check_against_naive_table() {
        // Random operations; after each full expire, exactly the sessions whose expiry is at
        // least one tick in the past are gone, and none whose expiry is in the future.
        let tick = 1000;
        let mut t = ConnTable::with_wheel(
            64,
            Timeouts {
                tcp_syn_recv_ns: 30_000,
                tcp_established_ns: 200_000,
                tcp_fin_wait_ns: 20_000,
                tcp_close_ns: 5_000,
                tcp_time_wait_ns: 7_000,
                udp_ns: 50_000,
                ..Timeouts::default()
            },
            tick,
            16,
        );
        let mut model: hashbrown::HashMap<FlowKey, u64> = hashbrown::HashMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut now = 0u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now += x % 700;
            let k = key((x >> 32) as u32 % 80);
            match (x >> 16) % 6 {
                0 | 1 => {
                    let r = t.ins(k, t.new_session(FlowKey { proto: 6, ..key(0) }, rs(), FwdMode::Dr, NOL, SYN, now));
                    if r.is_ok() {
                        model.insert(k, now + 30_000);
                    } else {
                        assert_eq!(model.len(), 64);
                        assert!(!model.contains_key(&k));
                    }
                }
                2 => {
                    let flags = [ACK, FIN, RST, SYN][((x >> 40) % 4) as usize];
                    if t.tk(&k, flags, now).is_some() {
                        model.insert(k, t.g(&k).unwrap().expires_ns);
                    } else {
                        assert!(!model.contains_key(&k));
                    }
                }
                3 => assert_eq!(t.rm(&k).is_some(), model.remove(&k).is_some()),
                _ => {
                    let budget = if (x >> 50) & 1 == 0 { usize::MAX } else { 3 };
                    t.expire(now, budget, |s| {
                        assert!(s.expires_ns <= now);
                        assert_eq!(model.remove(&s.key), Some(s.expires_ns));
                    });
                    if budget == usize::MAX {
                        for (k, &e) in &model {
                            assert!(e + tick > now, "{k:?} expiring at {e} still there at {now}");
                        }
                    }
                }
            }
            assert_eq!(t.len(), model.len());
            t.check_wheel();
        }
    }

    #[test]
    fn session_views_filter_bound_and_count() {
        let mut t = ConnTable::new(100, Timeouts::default());
        let rs2: SocketAddrV4 = "203.0.113.6:8080".parse().unwrap();
        for i in 0..5 {
            t.insert(syn_k(&t, key(i), 0)).unwrap();
        }
        let mut other = t.new_session(key(10), rs2, FwdMode::FullNat, "203.0.113.3:5000".parse().unwrap(), SYN, 0);
        other.key.dport = 443;
        t.insert(other).unwrap();
        let all = SessionFilter::default();
        let (v, n) = t.views(&all, 100, 30 * S);
        assert_eq!((v.len(), n), (6, 6));
        let (v, n) = t.views(&all, 2, 0);
        assert_eq!((v.len(), n), (2, 6), "bounded output, full count");
        let svc = |port| ServiceKey {
            proto: Proto::Tcp,
            vip: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), port)),
        };
        let (v, n) = t.views(&SessionFilter { service: Some(svc(443)), real: None }, 100, 30 * S);
        assert_eq!(n, 1);
        let f = v[0];
        assert_eq!(
            (f.rip, f.lip, f.fwd, f.state),
            (rs2, Some("203.0.113.3:5000".parse().unwrap()), FwdMode::FullNat, ConnState::TcpSynRecv)
        );
        assert_eq!(f.expires_in_s, 60 - 30, "SYN_RECV lives 60 s");
        assert_eq!(f.vip, "192.0.2.10:443".parse().unwrap());
        let (_, n) = t.views(&SessionFilter { service: Some(svc(80)), real: None }, 100, 0);
        assert_eq!(n, 5);
        let (v, n) = t.views(&SessionFilter { service: None, real: Some("203.0.113.5:80".parse().unwrap()) }, 100, 0);
        assert_eq!(n, 5);
        assert!(v.iter().all(|v| v.lip.is_none() && v.fwd == FwdMode::Dr));
        let (_, n) = t.views(&SessionFilter { service: None, real: Some("203.0.113.6:0".parse().unwrap()) }, 100, 0);
        assert_eq!(n, 1, "port 0 matches any port of the address");
        let (_, n) = t.views(&SessionFilter { service: Some(svc(80)), real: Some(SocketAddr::V4(rs2)) }, 100, 0);
        assert_eq!(n, 0, "both filters apply");
    }

    #[test]
    fn memory_per_session() {
        // Slab entry (session + wheel position) + two index slots (2-byte tag + 4-byte value, in
        // 64-byte buckets of 10) at most 80 % full after sizing, for NAT/FULLNAT + one u32 wheel
        // record.
        let entry = std::mem::size_of::<Option<Entry>>();
        println!(
            "session {} bytes, slab entry {entry}, index slot 6.4 bytes, wheel record 4",
            std::mem::size_of::<Session>()
        );
        assert_eq!(entry, 80, "two cache lines at most, prefetched as two");
        let t = ConnTable::new(1 << 20, Timeouts::default());
        let index_per_session = t.index.slots() as f64 * 6.4 / f64::from(1 << 20);
        assert!(index_per_session <= 20.0, "{index_per_session}");
        assert!(entry as f64 + index_per_session + 4.0 <= 110.0);
    }

    /// The prefetch hints point where the lookups will read: the key's home bucket, the entry
    /// of the session a known key belongs to (nothing for an unknown key), the entries the next
    /// new sessions take, and during expiry the sessions ahead on the wheel.
    #[test]
    fn prefetch_hints_point_at_what_lookups_read() {
        use std::cell::RefCell;
        let mut t = ConnTable::new(1000, Timeouts::default());
        for i in 0..100 {
            t.ins(key(i), syn_k(&t, key(0), 0)).unwrap();
        }
        let seen = RefCell::new(Vec::new());
        let rec = |p: *const u8| seen.borrow_mut().push(p as usize);
        let entry = |id: SessionId| {
            let s = t.get(id).unwrap() as *const Session as usize;
            s..s + 1
        };
        for i in [0, 42, 99] {
            let h = t.hash(&key(i));
            t.prefetch_bucket(h, rec);
            assert_eq!(seen.borrow()[0], t.index.bucket_addr(h) as usize);
            seen.borrow_mut().clear();
            assert!(t.prefetch_session(h, rec));
            let (id, _) = t.lookup(&key(i)).unwrap();
            let (lo, hi) = (seen.borrow()[0], seen.borrow()[1]);
            let e = entry(id);
            assert!(lo <= e.start && e.start < hi && hi - lo == std::mem::size_of::<Option<Entry>>() - 1, "key {i}");
            seen.borrow_mut().clear();
        }
        assert!(!t.prefetch_session(t.hash(&key(500)), rec) || t.lookup(&key(500)).is_none());
        // Free entries: removing two sessions puts their slots on the free list.
        let gone: Vec<SessionId> = [7, 8].iter().map(|&i| t.lookup(&key(i)).unwrap().0).collect();
        let addrs: Vec<usize> = gone.iter().map(|&id| entry(id).start).collect();
        for id in gone {
            t.remove(id);
        }
        seen.borrow_mut().clear();
        t.prefetch_free(2, rec);
        let got = seen.borrow().clone();
        assert_eq!(got.len(), 4);
        for a in addrs {
            assert!(got.chunks(2).any(|c| c[0] <= a && a <= c[1]), "free slot {a:#x} not prefetched");
        }
        // Expiry walks with hints and removes exactly what `expire` would.
        seen.borrow_mut().clear();
        let n = t.expire_with(1000 * S, usize::MAX, rec, |_| {});
        assert_eq!(n, 98);
        assert!(seen.borrow().len() >= 2 * (98 - 16), "sessions and buckets ahead are hinted");
        assert!(t.is_empty());
        t.check_wheel();
    }

    /// A table allowed more sessions than its index was sized for doubles the index, rebuilt
    /// from the slab, with both keys of every session findable afterwards.
    #[test]
    fn index_grows_past_its_first_size() {
        let mut t = ConnTable::new(5000, Timeouts::default());
        t.index = index::Index::with_room(8);
        let first = t.index.slots();
        let h7 = t.hash(&key(7));
        for i in 0..3000u32 {
            let s = t.new_session(key(i), rs(), if i % 2 == 0 { FwdMode::Nat } else { FwdMode::Dr }, NOL, SYN, 0);
            t.insert(s).unwrap();
        }
        assert!(
            t.index.slots() >= 4 * first && t.index.len() == 4500,
            "{} slots, {} keys",
            t.index.slots(),
            t.index.len()
        );
        assert_eq!(t.hash(&key(7)), h7, "a hash from before the growth still finds its key");
        assert!(t.lookup_hashed(&key(7), h7).is_some());
        t.check_wheel();
        for i in (0..3000u32).step_by(3) {
            let id = t.lookup(&key(i)).unwrap().0;
            t.remove(id);
        }
        t.check_wheel();
    }

    /// The slab grows by fixed chunks (never past the table's capacity), not by doubling.
    #[test]
    fn slab_grows_by_chunks() {
        let key = |i: u32| FlowKey {
            proto: 17,
            src: Ipv4Addr::from(0xc000_0200 + i),
            dst: Ipv4Addr::new(203, 0, 113, 100),
            sport: 1000,
            dport: 53,
        };
        let rs = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 11), 53);
        // Sized up front for 16 sessions of CHUNK + 26.
        let mut t = ConnTable::sized(CHUNK + 26, Timeouts::default(), WHEEL_TICK_NS, WHEEL_SLOTS, 16);
        assert_eq!(t.slab.capacity(), 16);
        for i in 0..=16 {
            let s = t.new_session(key(i), rs, FwdMode::Dr, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), 0, 0);
            t.insert(s).unwrap();
        }
        assert_eq!(t.slab.capacity(), 16 + CHUNK, "one chunk more");
        for i in 17..=(CHUNK as u32 + 16) {
            let s = t.new_session(key(i), rs, FwdMode::Dr, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), 0, 0);
            t.insert(s).unwrap();
        }
        assert_eq!(t.slab.capacity(), CHUNK + 26, "the next chunk capped at the capacity");
        t.check_wheel();
        let big = ConnTable::new(3 << 20, Timeouts::default());
        assert_eq!(big.slab.capacity(), 3 << 20, "the whole capacity up front, as address space");
        let [(slab_at, slab_len), (index_at, index_len)] = big.memory();
        assert_eq!((slab_at, slab_len), (big.slab.as_ptr() as usize, (3 << 20) * std::mem::size_of::<Option<Entry>>()));
        assert_eq!((index_at, index_len), (big.index.bucket_addr(0) as usize, big.index.bytes()));
        let mut small = ConnTable::new(4, Timeouts::default());
        assert_eq!(small.slab.capacity(), 4, "small tables reserve little");
        for i in 0..4 {
            let s = small.new_session(key(i), rs, FwdMode::Dr, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), 0, 0);
            small.insert(s).unwrap();
        }
        assert_eq!(small.slab.capacity(), 4);
    }
}
