//! The forwarding modes: what each does to the packets of its sessions.
//!
//! | mode | file | client → RS | RS → client |
//! |---|---|---|---|
//! | DR (`-g`) | [`dr`] | destination MAC only | bypasses rvs |
//! | TUN (`-i`) | [`tun`] | IPIP to the RS ([`crate::ipip`]) | bypasses rvs |
//! | NAT (`-m`) | [`nat`] | destination → RIP:rport | source → VIP:vport |
//! | FULLNAT (`-b`) | [`fullnat`] | client → LIP:lport, VIP → RIP:rport, client address by TOA or PROXY v2 | both back |
//!
//! Each mode is a unit type implementing [`Forwarding`]: for its sessions it says what a new
//! flow takes from the worker ([`Forwarding::open`]), where a packet
//! leaves ([`Forwarding::plan`]), how each direction is rewritten ([`Forwarding::forward`]), the
//! key its replies come back with ([`Forwarding::reply_dst`]) and how an ICMP error quoting one
//! of its packets is translated ([`Forwarding::icmp_error`]).
//!
//! The worker and the session table ask through the functions of this module, which pick the
//! mode of a session (a `match` on [`FwdMode`], in [`with_mode!`] only). Adding a mode is its
//! file and one line there; so is adding IPv6 to a mode, apart from the parsing that builds the
//! [`Segment`].

pub mod dr;
pub mod fullnat;
pub mod nat;
pub mod tun;

use crate::buf::PacketBuf;
use crate::conn::{ConnTable, Dir, FlowKey, Session};
use crate::counters::{Counters, DropReason};
use crate::laddr::LocalPorts;
use crate::segment::Segment;
use crate::snapshot::{PortInfo, Snapshot};
use rvs_model::{FwdMode, Service};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Runs `$body` with `$m` standing for the type of mode `$fwd`: the one place a forwarding
/// mode is picked.
macro_rules! with_mode {
    ($fwd:expr, $m:ident => $body:expr) => {
        match $fwd {
            FwdMode::Dr => {
                type $m = dr::Dr;
                $body
            }
            FwdMode::Tun => {
                type $m = tun::Tun;
                $body
            }
            FwdMode::Nat => {
                type $m = nat::Nat;
                $body
            }
            FwdMode::FullNat => {
                type $m = fullnat::FullNat;
                $body
            }
        }
    };
}

/// How a packet of a session leaves: decided before a new session is created, so a flow that
/// cannot be forwarded leaves no state behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub port: u16,
    /// Next hop on `port` (the destination itself on a connected route); unspecified when the
    /// hop's MAC is already known (a session's cached hop).
    pub nh: Ipv4Addr,
    /// TUN: outer source (the egress port's address) and the egress MTU.
    pub tun: Option<(Ipv4Addr, u16)>,
}

/// Why a mode did not forward a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Drop it, counted under the reason.
    Drop(DropReason),
    /// TUN: too big for the egress MTU with DF set. The worker tells the source the MTU to use
    /// (ICMP "fragmentation needed", RFC 1191), then drops it as `FragNeeded`.
    FragNeeded { mtu: u16 },
}

impl From<DropReason> for Refusal {
    fn from(r: DropReason) -> Refusal {
        Refusal::Drop(r)
    }
}

/// What a new session takes from the worker when it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// FULLNAT: the local address and port the flow leaves with; 0.0.0.0:0 otherwise.
    pub laddr: SocketAddrV4,
    /// The session's initial [`crate::conn::ca_flags`].
    pub ca_flags: u8,
}

impl Opened {
    /// Nothing taken.
    pub const NOTHING: Opened = Opened { laddr: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), ca_flags: 0 };
}

/// The parts of the worker a mode's rewrite may change besides the packet and its session.
pub struct ModeCx<'a> {
    pub counters: &'a mut Counters,
    /// IP identification of the outer headers of TUN packets (one counter per worker).
    pub tun_ident: &'a mut u16,
    /// A clock in nanoseconds that keeps going forward across restarts of rvsd (its start time
    /// plus the time since): FULLNAT's initial sequence numbers and timestamps run on it.
    pub clock_ns: u64,
    /// The worker's secret (random per run): offsets FULLNAT's sequence numbers and timestamps
    /// per (local address, real server) tuple, so they cannot be guessed from the clock.
    pub secret: u64,
}

/// What a new session may take from the worker, and what it needs to decide.
pub struct OpenCx<'a> {
    pub lports: &'a mut LocalPorts,
    /// The sessions: a local port is free towards a real server while no session holds the
    /// reply key it would make.
    pub conns: &'a ConnTable,
    pub counters: &'a mut Counters,
    pub now_ns: u64,
    /// How long a real server keeps a closed connection in TIME_WAIT (for the early-reuse
    /// counter).
    pub rs_time_wait_ns: u64,
}

/// A forwarding mode. Every function is about one session of the mode (`s.fwd` is the mode).
pub trait Forwarding {
    /// The real server's replies come back through rvs (NAT, FULLNAT): the session is also found
    /// by its reply key, and TCP follows IPVS's INPUT and OUTPUT rows; without (DR, TUN) the
    /// INPUT-ONLY rows.
    const SEES_REPLIES: bool;

    /// Where the real server sends its replies: the reply key is `RIP:rport → reply_dst`.
    /// `None` (the default) when the replies bypass rvs.
    #[inline(always)]
    fn reply_dst(s: &Session) -> Option<SocketAddrV4> {
        let _ = s;
        None
    }

    /// What a new session of `svc` towards `rs` takes from the worker (FULLNAT: a local port,
    /// free while no session holds it, so nothing is given back), before the session exists.
    /// Refused with the reason to drop the flow's first packet.
    fn open(svc: &Service, rs: SocketAddrV4, seg: &Segment, cx: &mut OpenCx) -> Result<Opened, DropReason> {
        let _ = (svc, rs, seg, cx);
        Ok(Opened::NOTHING)
    }

    /// Where a packet of `s` going `dir` leaves: route (and for TUN the outer source) towards
    /// the real server or the client.
    fn plan(snap: &Snapshot, s: &Session, dir: Dir) -> Result<Plan, DropReason>;

    /// The plan of a session whose hop is cached (egress port `pi`, MAC known).
    fn cached_plan(s: &Session, pi: &PortInfo) -> Plan {
        let _ = s;
        Plan { port: pi.id, nh: Ipv4Addr::UNSPECIFIED, tun: None }
    }

    /// Rewrite a packet of `s` going `dir` (TTL already decremented): the mode's part of
    /// forwarding. `seg` is the packet's parsed view; it follows any growth.
    fn forward<B: PacketBuf>(
        pkt: &mut B,
        seg: &mut Segment,
        s: &mut Session,
        dir: Dir,
        plan: &Plan,
        cx: &mut ModeCx,
    ) -> Result<(), Refusal>;

    /// Translate an ICMP error (outer IPv4 header of `hl` bytes, `total` bytes in all, at frame
    /// offset `l3`; TTL already decremented) that quotes a packet of `s` and goes `dir`, so that
    /// its receiver recognises the packet it sent.
    fn icmp_error<B: PacketBuf>(
        pkt: &mut B,
        at: IcmpAt,
        s: &Session,
        dir: Dir,
        plan: &Plan,
        cx: &mut ModeCx,
    ) -> Result<(), DropReason>;
}

/// Where an ICMP error's IPv4 datagram is in its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpAt {
    pub l3: usize,
    pub hl: usize,
    pub total: usize,
}

impl IcmpAt {
    /// The datagram's bytes.
    fn datagram<'a>(&self, frame: &'a mut [u8]) -> Option<&'a mut [u8]> {
        frame.get_mut(self.l3..self.l3 + self.total)
    }
}

/// [`Forwarding::SEES_REPLIES`] of mode `fwd`.
#[inline]
pub fn sees_replies(fwd: FwdMode) -> bool {
    with_mode!(fwd, M => M::SEES_REPLIES)
}

/// [`Forwarding::reply_dst`] of `s`'s mode.
#[inline(always)]
pub fn reply_dst(s: &Session) -> Option<SocketAddrV4> {
    with_mode!(s.fwd, M => M::reply_dst(s))
}

/// The key the real server's replies of `s` come with (`RIP:rport → reply_dst`), if they come
/// through rvs.
#[inline]
pub fn reply_key(s: &Session) -> Option<FlowKey> {
    let to = reply_dst(s)?;
    Some(FlowKey { proto: s.key.proto, src: *s.rs.ip(), dst: *to.ip(), sport: s.rs.port(), dport: to.port() })
}

/// [`Forwarding::open`] of mode `fwd`.
#[inline]
pub fn open(
    fwd: FwdMode,
    svc: &Service,
    rs: SocketAddrV4,
    seg: &Segment,
    cx: &mut OpenCx,
) -> Result<Opened, DropReason> {
    with_mode!(fwd, M => M::open(svc, rs, seg, cx))
}

/// [`Forwarding::plan`] of `s`'s mode.
#[inline]
pub fn plan(snap: &Snapshot, s: &Session, dir: Dir) -> Result<Plan, DropReason> {
    with_mode!(s.fwd, M => M::plan(snap, s, dir))
}

/// [`Forwarding::cached_plan`] of `s`'s mode.
#[inline]
pub fn cached_plan(s: &Session, pi: &PortInfo) -> Plan {
    with_mode!(s.fwd, M => M::cached_plan(s, pi))
}

/// [`Forwarding::forward`] of `s`'s mode.
#[inline]
pub fn forward<B: PacketBuf>(
    pkt: &mut B,
    seg: &mut Segment,
    s: &mut Session,
    dir: Dir,
    plan: &Plan,
    cx: &mut ModeCx,
) -> Result<(), Refusal> {
    with_mode!(s.fwd, M => M::forward(pkt, seg, s, dir, plan, cx))
}

/// [`Forwarding::icmp_error`] of `s`'s mode.
#[inline]
pub fn icmp_error<B: PacketBuf>(
    pkt: &mut B,
    at: IcmpAt,
    s: &Session,
    dir: Dir,
    plan: &Plan,
    cx: &mut ModeCx,
) -> Result<(), DropReason> {
    with_mode!(s.fwd, M => M::icmp_error(pkt, at, s, dir, plan, cx))
}

/// The plan of the modes whose packets are routed by their (rewritten) destination, NAT and
/// FULLNAT: towards the real server, and its replies towards the client.
fn routed(snap: &Snapshot, s: &Session, dir: Dir) -> Result<Plan, DropReason> {
    let dst = match dir {
        Dir::Orig => *s.rs.ip(),
        Dir::Reply => s.key.src,
    };
    match snap.routes.next_hop(dst) {
        Some((port, nh)) => Ok(Plan { port, nh, tun: None }),
        None => Err(DropReason::NoRoute),
    }
}

/// The client's address and port, and the VIP and port it connected to, of session `s`.
#[inline]
fn client_and_vip(s: &Session) -> (SocketAddrV4, SocketAddrV4) {
    (SocketAddrV4::new(s.key.src, s.key.sport), SocketAddrV4::new(s.key.dst, s.key.dport))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{ca_flags, ConnTable, Timeouts};
    use crate::wire::hex;
    use rvs_model::{ClientAddrMode, Proto, SchedKind, ServiceKey};
    use std::net::{IpAddr, SocketAddr};

    const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 40000);
    const VIP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 100), 80);
    const RS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 11), 8080);
    const LADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 3), 5001);

    fn session(fwd: FwdMode, laddr: SocketAddrV4) -> Session {
        let key = FlowKey { proto: 6, src: *CLIENT.ip(), dst: *VIP.ip(), sport: CLIENT.port(), dport: VIP.port() };
        ConnTable::new(16, Timeouts::default()).new_session(key, RS, fwd, laddr, 0x02, 0)
    }

    /// The reply key of each mode, written out: RIP:rport → client (NAT), → LIP:lport
    /// (FULLNAT), none where replies bypass rvs.
    #[test]
    fn reply_keys_per_mode() {
        let unspec = Opened::NOTHING.laddr;
        let rk = |src: SocketAddrV4, dst: SocketAddrV4| FlowKey {
            proto: 6,
            src: *src.ip(),
            dst: *dst.ip(),
            sport: src.port(),
            dport: dst.port(),
        };
        assert_eq!(reply_key(&session(FwdMode::Nat, unspec)), Some(rk(RS, CLIENT)));
        assert_eq!(reply_key(&session(FwdMode::FullNat, LADDR)), Some(rk(RS, LADDR)));
        assert_eq!(reply_key(&session(FwdMode::Dr, unspec)), None);
        assert_eq!(reply_key(&session(FwdMode::Tun, unspec)), None);
        for fwd in FwdMode::ALL {
            assert_eq!(sees_replies(fwd), matches!(fwd, FwdMode::Nat | FwdMode::FullNat), "{fwd:?}");
        }
    }

    /// FULLNAT takes a local port that no session holds towards the real server (TCP with the
    /// service's client-address mode, UDP without one); without local addresses the flow is
    /// refused; the other modes take nothing.
    #[test]
    fn open_per_mode() {
        let syn = hex("0200000000010200000000fe08004500003c1c4640004006b7d3c633640acb0071649c4000503e2a5b7100000000a002faf079e80000020405b40402080a0a1b2c3d0000000001030307");
        let udp = hex(
            "0200000000010200000000fe080045000026222240004011b202c633640acb007164cf0800350012a07668656c6c6f207276730a",
        );
        let (tcp_seg, udp_seg) = (Segment::parse(&syn, 14).unwrap(), Segment::parse(&udp, 14).unwrap());
        let mut svc = Service::new(ServiceKey { proto: Proto::Tcp, vip: SocketAddr::V4(VIP) }, SchedKind::Rr);
        let mut lports = LocalPorts::new(0, 1);
        let mut conns = ConnTable::new(16, Timeouts::default());
        let mut counters = Counters::default();
        let mut open_with = |fwd, svc: &Service, seg: &Segment, conns: &ConnTable| {
            let mut cx = OpenCx { lports: &mut lports, conns, counters: &mut counters, now_ns: 0, rs_time_wait_ns: 0 };
            open(fwd, svc, RS, seg, &mut cx)
        };
        assert_eq!(open_with(FwdMode::FullNat, &svc, &tcp_seg, &conns), Err(DropReason::NoLocalAddr));
        svc.laddrs = vec![IpAddr::V4(*LADDR.ip())];
        svc.client_addr = ClientAddrMode::ProxyV2;
        let o = open_with(FwdMode::FullNat, &svc, &tcp_seg, &conns).unwrap();
        assert_eq!((*o.laddr.ip(), o.ca_flags), (*LADDR.ip(), ca_flags::MODE_PROXY));
        // Its session holds the port: the next flow to that server gets another one.
        conns.insert(session(FwdMode::FullNat, o.laddr)).unwrap();
        let o2 = open_with(FwdMode::FullNat, &svc, &tcp_seg, &conns).unwrap();
        assert_ne!(o2.laddr, o.laddr);
        let u = open_with(FwdMode::FullNat, &svc, &udp_seg, &conns).unwrap();
        assert_eq!(u.ca_flags, 0, "no client address in UDP");
        for fwd in [FwdMode::Dr, FwdMode::Tun, FwdMode::Nat] {
            assert_eq!(open_with(fwd, &svc, &tcp_seg, &conns), Ok(Opened::NOTHING), "{fwd:?}");
        }
    }
}
