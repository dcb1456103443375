//! ICMP errors: errors from elsewhere that quote a session's packet are translated by the
//! session's mode and passed on (IPVS's ip_vs_in_icmp / ip_vs_out_icmp); the worker's own
//! (time exceeded, fragmentation needed) are built here.

use super::output::{is_unicast_ip, route_local};
use super::Io;
use super::{State, Verdict, ETH};
use crate::buf::PacketBuf;
use crate::conn::FlowKey;
use crate::counters::DropReason;
use crate::ipip;
use crate::mode::{self, IcmpAt, ModeCx};
use crate::rewrite;
use crate::snapshot::Snapshot;
use crate::wire::{ethernet, icmp, ipv4};

impl<B: PacketBuf> State<B> {
    /// ICMP not addressed to an interface: errors quoting a session's packet are translated and
    /// passed to the other side; anything else is not ours.
    pub(super) fn icmp_error_input(&mut self, snap: &Snapshot, pkt: &mut B, hl: usize, total: usize) -> Verdict {
        let data = pkt.data();
        let Some(l3) = data.get(ETH..ETH + total) else {
            return Verdict::Drop(DropReason::MalformedIpv4);
        };
        let ip = ipv4::Packet::new_unchecked(l3);
        let (dst, ttl) = (ip.dst_addr(), ip.ttl());
        let ours = snap.vips.contains(&dst) || snap.laddrs.contains(&dst);
        let not_ours = if ours { DropReason::NoService } else { DropReason::UnknownDst };
        let msg = &l3[hl..];
        let Ok(ic) = icmp::Packet::new_checked(msg) else {
            return Verdict::Drop(if ours { DropReason::MalformedIcmp } else { DropReason::UnknownDst });
        };
        if !icmp::is_error(ic.msg_type()) || ip.is_fragment() {
            return Verdict::Drop(not_ours);
        }
        let Some(q) = rewrite::quoted(msg) else {
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
            let rs_side = snap.nat_reals.contains_key(&(q.proto, *q.dst.ip(), q.dst.port()));
            return Verdict::Drop(if ours || rs_side { DropReason::IcmpNoSession } else { DropReason::UnknownDst });
        };
        if ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        let Some(s) = self.conns.get(id) else {
            return Verdict::Drop(DropReason::IcmpNoSession);
        };
        let plan = match mode::plan(snap, s, dir) {
            Ok(pl) => pl,
            Err(r) => return Verdict::Drop(r),
        };
        if let Some(l3) = pkt.data_mut().get_mut(ETH..ETH + total) {
            ipv4::Packet::new_unchecked(l3).decrement_ttl();
        }
        // No new sequence numbers come out of an ICMP error: the clock is not read.
        let mut cx = ModeCx {
            counters: &mut self.counters,
            tun_ident: &mut self.tun_ident,
            clock_ns: 0,
            secret: self.cfg.secret,
        };
        if let Err(r) = mode::icmp_error(pkt, IcmpAt { l3: ETH, hl, total }, s, dir, &plan, &mut cx) {
            return Verdict::Drop(r);
        }
        self.counters.icmp_errors_translated += 1;
        self.counters.fwd_pkts += 1;
        Verdict::Output { port: plan.port, nh: plan.nh }
    }

    /// TTL would reach 0: tell the source (RFC 792 Time Exceeded) and drop.
    pub(super) fn ttl_exceeded(
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
    pub(super) fn send_frag_needed(&mut self, snap: &Snapshot, pkt: &B, mtu: u16, now: u64, io: &mut impl Io<B>) {
        let Some(&(from, _)) = snap.port(pkt.port()).and_then(|p| p.addrs.first()) else { return };
        let Some(to) = pkt.data().get(ETH..).and_then(|l3| ipv4::Packet::new_checked(l3).ok()).map(|ip| ip.src_addr())
        else {
            return;
        };
        let Some(mut out) = io.alloc() else { return };
        if !ipip::frag_needed(&mut out, pkt.data(), from, mtu) {
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
}
