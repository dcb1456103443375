//! Output: MACs, next hops (resolved, or held while ARP asks), ARP requests, transmission.

use super::{Io, State, Verdict, ETH};
use crate::buf::PacketBuf;
use crate::counters::DropReason;
use crate::neigh::Enqueue;
use crate::route::same_subnet;
use crate::snapshot::Snapshot;
use crate::wire::{arp, ethernet};
use std::net::Ipv4Addr;

impl<B: PacketBuf> State<B> {
    pub(super) fn tx(&mut self, pkt: B, io: &mut impl Io<B>) {
        self.counters.tx_pkts += 1;
        self.counters.tx_bytes += pkt.len() as u64;
        io.tx(pkt);
    }

    /// Out of `snap.ports[port_idx]` to `mac` (a cached, resolved next hop).
    pub(super) fn send_hop(&mut self, snap: &Snapshot, mut pkt: B, port_idx: u8, mac: [u8; 6], io: &mut impl Io<B>) {
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
    pub(super) fn send_via(
        &mut self,
        snap: &Snapshot,
        mut pkt: B,
        port: u16,
        nh: Ipv4Addr,
        now: u64,
        io: &mut impl Io<B>,
    ) {
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
    pub(super) fn send_arp_request(&mut self, snap: &Snapshot, port: u16, target: Ipv4Addr, io: &mut impl Io<B>) {
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
pub(super) fn route_local(snap: &Snapshot, dst: Ipv4Addr) -> Verdict {
    match snap.routes.next_hop(dst) {
        Some((port, nh)) => Verdict::Output { port, nh },
        None => Verdict::Drop(DropReason::NoRoute),
    }
}

/// An address an ICMP message may be sent to (RFC 1812 §4.3.2.7: not to broadcast, multicast or
/// unspecified sources).
pub(super) fn is_unicast_ip(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast())
}

/// Write the Ethernet addresses of a frame (no-op on a frame shorter than a header, which
/// cannot reach here: every frame on the output path was parsed or built with one).
pub(super) fn set_macs(data: &mut [u8], src: [u8; 6], dst: Option<[u8; 6]>) {
    if let Ok(mut e) = ethernet::Packet::new_checked(data) {
        e.set_src_addr(src);
        if let Some(d) = dst {
            e.set_dst_addr(d);
        }
    }
}
