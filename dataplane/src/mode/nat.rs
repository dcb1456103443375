//! NAT (`-m`, ipvsadm's "Masq"): destination NAT. The client's packet goes to `RIP:rport`; the
//! real server's reply (rvs is its gateway) leaves from `VIP:vport` again. The client address
//! reaches the real server unchanged.

use super::{client_and_vip, routed, Forwarding, IcmpAt, ModeCx, Plan, Refusal};
use crate::buf::PacketBuf;
use crate::conn::{Dir, Session};
use crate::counters::DropReason;
use crate::rewrite;
use crate::segment::Segment;
use crate::snapshot::Snapshot;
use std::net::SocketAddrV4;

/// The NAT mode.
pub struct Nat;

impl Forwarding for Nat {
    const SEES_REPLIES: bool = true;

    /// The real server answers the client itself: `RIP:rport → client`.
    #[inline(always)]
    fn reply_dst(s: &Session) -> Option<SocketAddrV4> {
        Some(SocketAddrV4::new(s.key.src, s.key.sport))
    }

    fn plan(snap: &Snapshot, s: &Session, dir: Dir) -> Result<Plan, DropReason> {
        routed(snap, s, dir)
    }

    /// Client → RS: the destination becomes the real server. RS → client: the source becomes
    /// the VIP.
    #[inline]
    fn forward<B: PacketBuf>(
        pkt: &mut B,
        seg: &mut Segment,
        s: &mut Session,
        dir: Dir,
        _: &Plan,
        _: &mut ModeCx,
    ) -> Result<(), Refusal> {
        match dir {
            Dir::Orig => rewrite::segment(pkt.data_mut(), seg, None, Some(s.rs)),
            Dir::Reply => rewrite::segment(pkt.data_mut(), seg, Some(client_and_vip(s).1), None),
        }
        Ok(())
    }

    /// From the client side, about a packet the client sent to the VIP: to the real server, as
    /// if about `client → RIP`. From the real-server side, about a reply: to the client, from
    /// the VIP, quoting `VIP → client`.
    fn icmp_error<B: PacketBuf>(
        pkt: &mut B,
        at: IcmpAt,
        s: &Session,
        dir: Dir,
        _: &Plan,
        _: &mut ModeCx,
    ) -> Result<(), DropReason> {
        let vip = client_and_vip(s).1;
        if let Some(l3) = at.datagram(pkt.data_mut()) {
            match dir {
                Dir::Orig => rewrite::rewrite_icmp_error(l3, at.hl, None, Some(*s.rs.ip()), Some(s.rs), None),
                Dir::Reply => rewrite::rewrite_icmp_error(l3, at.hl, Some(*vip.ip()), None, None, Some(vip)),
            }
        }
        Ok(())
    }
}
