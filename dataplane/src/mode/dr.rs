//! DR, direct routing (`-g`, ipvsadm's "Route"): the client's packet goes to the real server
//! unchanged but for the destination MAC; the real server holds the VIP (on `lo`, not answering
//! ARP for it) and replies to the client directly.

use super::{Forwarding, IcmpAt, ModeCx, Plan, Refusal};
use crate::buf::PacketBuf;
use crate::conn::{Dir, Session};
use crate::counters::DropReason;
use crate::route::Route;
use crate::segment::Segment;
use crate::snapshot::Snapshot;

/// The DR mode.
pub struct Dr;

impl Forwarding for Dr {
    /// The real server replies to the client directly.
    const SEES_REPLIES: bool = false;

    /// Only the destination MAC changes, so the real server must be on the same L2 segment as
    /// one of our ports (a connected route). Through a gateway the frame would reach the
    /// gateway, which would route it by its IP destination (the VIP) — back to us.
    fn plan(snap: &Snapshot, s: &Session, _: Dir) -> Result<Plan, DropReason> {
        let rip = *s.rs.ip();
        match snap.routes.lookup(rip) {
            Some(Route { port, via: None }) => Ok(Plan { port, nh: rip, tun: None }),
            Some(Route { via: Some(_), .. }) | None => Err(DropReason::NoRoute),
        }
    }

    /// Nothing to rewrite: the output path sets the MACs.
    #[inline]
    fn forward<B: PacketBuf>(
        _: &mut B,
        _: &mut Segment,
        _: &mut Session,
        _: Dir,
        _: &Plan,
        _: &mut ModeCx,
    ) -> Result<(), Refusal> {
        Ok(())
    }

    /// An error about the real server's reply (sent from the VIP) reaches rvs, the VIP's owner:
    /// it goes to the real server as the flow's data does, unchanged.
    fn icmp_error<B: PacketBuf>(
        _: &mut B,
        _: IcmpAt,
        _: &Session,
        _: Dir,
        _: &Plan,
        _: &mut ModeCx,
    ) -> Result<(), DropReason> {
        Ok(())
    }
}
