//! TUN, IP-in-IP tunnelling (`-i`, ipvsadm's "Tunnel"): the client's packet is encapsulated
//! (RFC 2003, [`crate::ipip`]) towards the real server, which may be on any routed network; it
//! strips the outer header and replies to the client directly from the VIP.

use super::{Forwarding, IcmpAt, ModeCx, Plan, Refusal};
use crate::buf::PacketBuf;
use crate::conn::{Dir, Session};
use crate::counters::DropReason;
use crate::ipip::{self, TunError};
use crate::route::Route;
use crate::segment::Segment;
use crate::snapshot::{PortInfo, Snapshot};
use std::net::Ipv4Addr;

/// The TUN mode.
pub struct Tun;

/// The outer packet's source: the address of `pi` on the next hop's subnet, else its first.
fn source_towards(pi: &PortInfo, nh: Ipv4Addr) -> Option<Ipv4Addr> {
    pi.addrs.iter().find(|(a, l)| crate::route::same_subnet(*a, nh, *l)).or(pi.addrs.first()).map(|(a, _)| *a)
}

/// Encapsulate towards the session's real server along `plan` (`Err(NoRoute)` without an
/// outer source: not a TUN plan).
fn encap<B: PacketBuf>(
    pkt: &mut B,
    s: &Session,
    plan: &Plan,
    cx: &mut ModeCx,
) -> Result<Result<(), TunError>, DropReason> {
    let (outer_src, mtu) = plan.tun.ok_or(DropReason::NoRoute)?;
    Ok(ipip::encap_ipip(pkt, outer_src, *s.rs.ip(), mtu, cx.tun_ident))
}

impl Forwarding for Tun {
    /// The real server replies to the client directly.
    const SEES_REPLIES: bool = false;

    /// The outer packet is routed (a gateway is fine); its source is the egress port's address
    /// towards the next hop.
    fn plan(snap: &Snapshot, s: &Session, _: Dir) -> Result<Plan, DropReason> {
        let rip = *s.rs.ip();
        let Some(Route { port, via }) = snap.routes.lookup(rip) else {
            return Err(DropReason::NoRoute);
        };
        let nh = via.unwrap_or(rip);
        let pi = snap.port(port).ok_or(DropReason::NoRoute)?;
        let src = source_towards(pi, nh).ok_or(DropReason::NoRoute)?;
        Ok(Plan { port, nh, tun: Some((src, pi.mtu)) })
    }

    /// The cached hop, with the outer source the session cached beside it.
    fn cached_plan(s: &Session, pi: &PortInfo) -> Plan {
        Plan { port: pi.id, nh: Ipv4Addr::UNSPECIFIED, tun: Some((s.cached_tun_src(), pi.mtu)) }
    }

    fn forward<B: PacketBuf>(
        pkt: &mut B,
        _: &mut Segment,
        s: &mut Session,
        _: Dir,
        plan: &Plan,
        cx: &mut ModeCx,
    ) -> Result<(), Refusal> {
        match encap(pkt, s, plan, cx)? {
            Ok(()) => Ok(()),
            Err(TunError::FragNeeded { mtu }) => Err(Refusal::FragNeeded { mtu }),
            Err(TunError::TooBig) => Err(DropReason::TunTooBig.into()),
            Err(TunError::NoHeadroom) => Err(DropReason::NoBuffer.into()),
            Err(TunError::Malformed) => Err(DropReason::MalformedIpv4.into()),
        }
    }

    /// As DR: the error about the real server's reply goes to the real server, encapsulated as
    /// the flow's data is.
    fn icmp_error<B: PacketBuf>(
        pkt: &mut B,
        _: IcmpAt,
        s: &Session,
        _: Dir,
        plan: &Plan,
        cx: &mut ModeCx,
    ) -> Result<(), DropReason> {
        encap(pkt, s, plan, cx)?.map_err(|_| DropReason::TunTooBig)
    }
}
