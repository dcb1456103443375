//! Input: Ethernet, ARP (answered and learned from), IPv4 (validated once), local delivery (ICMP
//! echo), and L4 dispatch, where the packet's [`Segment`] is built and handed on.

use super::output::{is_unicast_ip, route_local, set_macs};
use super::{Io, State, Verdict, ETH};
use crate::buf::PacketBuf;
use crate::counters::DropReason;
use crate::segment::Segment;
use crate::snapshot::{PortInfo, Snapshot};
use crate::wire::{arp, ethernet, icmp, ipv4};
use rvs_model::Proto;
use std::net::Ipv4Addr;

impl<B: PacketBuf> State<B> {
    pub(super) fn input(&mut self, snap: &Snapshot, pkt: &mut B, now: u64, io: &mut impl Io<B>) -> Verdict {
        let Some(pinfo) = snap.port(pkt.port()) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        let Ok(eth) = ethernet::Packet::new_checked(pkt.data()) else {
            return Verdict::Drop(DropReason::MalformedEth);
        };
        let dst = eth.dst_addr();
        if dst != pinfo.mac && !ethernet::is_multicast(&dst) {
            return Verdict::Drop(DropReason::OtherMac);
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
    pub(super) fn release(
        &mut self,
        snap: &Snapshot,
        port: u16,
        ip: Ipv4Addr,
        mac: [u8; 6],
        now: u64,
        io: &mut impl Io<B>,
    ) {
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
            ipv4::protocol::TCP | ipv4::protocol::UDP => self.l4_input(snap, pkt, now, io),
            ipv4::protocol::ICMP => self.icmp_error_input(snap, pkt, hl, total),
            _ if snap.vips.contains(&dst) => Verdict::Drop(DropReason::NoService),
            _ => Verdict::Drop(DropReason::UnknownDst),
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

    /// TCP and UDP not addressed to an interface: parsed once into a [`Segment`], then
    /// sessions first (one lookup finds either direction), then new flows to a VIP.
    fn l4_input(&mut self, snap: &Snapshot, pkt: &mut B, now: u64, io: &mut impl Io<B>) -> Verdict {
        let Some(ip) = pkt.data().get(ETH..).map(ipv4::Packet::new_unchecked) else {
            return Verdict::Drop(DropReason::MalformedIpv4);
        };
        if ip.is_fragment() {
            // Non-first fragments carry no ports; balancing fragments needs reassembly.
            let to_vip = snap.vips.contains(&ip.dst_addr());
            return Verdict::Drop(if to_vip { DropReason::Fragment } else { DropReason::UnknownDst });
        }
        let mut seg = match Segment::parse_after(&ip, ETH) {
            Ok(s) => s,
            Err(_) => return Verdict::Drop(DropReason::MalformedL4),
        };
        let key = &seg.key;
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
            if let Some(v) = self.established(snap, pkt, id, dir, &mut seg, now, io) {
                return v;
            }
        }
        let key = &seg.key;
        let (proto, src, dst, sport, dport) = (key.proto, key.src, key.dst, key.sport, key.dport);
        let Some(kind) = Proto::from_ip_proto(proto) else {
            return Verdict::Drop(DropReason::MalformedL4);
        };
        if let Some(svc) = snap.service(kind, dst, dport) {
            return self.new_flow(snap, svc, pkt, &mut seg, now, io);
        }
        if !snap.vips.contains(&dst) {
            if snap.laddrs.contains(&dst) || snap.nat_reals.contains_key(&(proto, src, sport)) {
                // The reply of a NAT/FULLNAT flow we do not know (expired, or never ours).
                return Verdict::Drop(DropReason::NoSession);
            }
            return Verdict::Drop(DropReason::UnknownDst);
        }
        Verdict::Drop(DropReason::NoService)
    }
}
