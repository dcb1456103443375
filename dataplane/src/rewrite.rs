//! The rewriting primitives of the NAT and FULLNAT modes ([`crate::mode::nat`],
//! [`crate::mode::fullnat`]): addresses and ports of a TCP/UDP datagram with incremental
//! checksums (RFC 1624), and the translation of ICMP errors that quote a rewritten packet (as
//! IPVS's ip_vs_nat_icmp). Which addresses a mode writes in which direction is the mode's
//! business; these functions only write them.

use crate::segment::Segment;
use crate::wire::{checksum, icmp, ipv4, udp};
use std::net::{Ipv4Addr, SocketAddrV4};

/// [`addresses`] on the datagram of a parsed segment of `frame`.
#[inline]
pub fn segment(frame: &mut [u8], seg: &Segment, src: Option<SocketAddrV4>, dst: Option<SocketAddrV4>) {
    if let Some(l3) = frame.get_mut(seg.l3()..) {
        addresses(l3, seg.ip_hl(), seg.key.proto, src, dst);
    }
}

/// Rewrite source and/or destination address and port of a TCP or UDP datagram in place: the
/// IPv4 header checksum and the L4 checksum are updated incrementally (a UDP checksum of 0,
/// "none", stays 0). `l3` is the IP datagram (header + payload) whose header is `hl` bytes and
/// was validated; the L4 header was validated too (TCP ≥ 20, UDP ≥ 8 bytes).
pub fn addresses(l3: &mut [u8], hl: usize, proto: u8, src: Option<SocketAddrV4>, dst: Option<SocketAddrV4>) {
    if l3.len() < hl + 8 {
        return;
    }
    let (h, l4) = l3.split_at_mut(hl);
    let mut ip = ipv4::Packet::new_unchecked(h);
    let (old_src, old_dst) = (ip.src_addr(), ip.dst_addr());
    let mut ipc = ip.checksum();
    // L4 checksum position: TCP 16, UDP 6.
    let at = if proto == ipv4::protocol::TCP { 16 } else { 6 };
    if l4.len() < at + 2 {
        return;
    }
    let mut l4c = u16::from_be_bytes([l4[at], l4[at + 1]]);
    let has_l4c = proto == ipv4::protocol::TCP || l4c != 0;
    // RFC 1624 terms of every changed field, summed and applied once per checksum: the
    // addresses count in both (the L4 checksum covers them in its pseudo-header), the ports in
    // the L4 one only.
    let (mut addrs, mut ports) = (0u32, 0u32);
    if let Some(s) = src {
        ip.set_src_addr(*s.ip());
        addrs += checksum::diff32(u32::from(old_src), u32::from(*s.ip()));
        ports += checksum::diff16(u16::from_be_bytes([l4[0], l4[1]]), s.port());
        l4[0..2].copy_from_slice(&s.port().to_be_bytes());
    }
    if let Some(d) = dst {
        ip.set_dst_addr(*d.ip());
        addrs += checksum::diff32(u32::from(old_dst), u32::from(*d.ip()));
        ports += checksum::diff16(u16::from_be_bytes([l4[2], l4[3]]), d.port());
        l4[2..4].copy_from_slice(&d.port().to_be_bytes());
    }
    ipc = checksum::apply_diff(ipc, addrs);
    if has_l4c {
        l4c = checksum::apply_diff(l4c, addrs + ports);
    }
    ip.set_checksum(ipc);
    if has_l4c {
        // RFC 768: a computed UDP checksum of 0 is sent as all ones.
        if proto == ipv4::protocol::UDP && l4c == 0 {
            l4c = 0xffff;
        }
        l4[at..at + 2].copy_from_slice(&l4c.to_be_bytes());
    }
}

/// The packet an ICMP error quotes (RFC 792: its IP header and first 8 data bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    pub proto: u8,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

/// Parse the quoted TCP/UDP packet of an ICMP error message (`msg` starts at the ICMP header).
/// `None` for anything else (not an error type, short, quoted non-TCP/UDP or a non-first
/// fragment).
pub fn quoted(msg: &[u8]) -> Option<Quoted> {
    let ic = icmp::Packet::new_checked(msg).ok()?;
    let t = ic.msg_type();
    if t != icmp::msg_type::DEST_UNREACHABLE && t != icmp::msg_type::TIME_EXCEEDED {
        return None;
    }
    let inner = ic.data();
    if inner.len() < ipv4::MIN_HEADER_LEN || inner[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(inner[0] & 0x0f) * 4;
    if ihl < ipv4::MIN_HEADER_LEN || inner.len() < ihl + icmp::ERROR_QUOTE_LEN {
        return None;
    }
    let proto = inner[9];
    let frag_off = u16::from_be_bytes([inner[6], inner[7]]) & 0x1fff;
    if (proto != ipv4::protocol::TCP && proto != ipv4::protocol::UDP) || frag_off != 0 {
        return None;
    }
    let a = |at: usize| Ipv4Addr::new(inner[at], inner[at + 1], inner[at + 2], inner[at + 3]);
    let p = |at: usize| u16::from_be_bytes([inner[ihl + at], inner[ihl + at + 1]]);
    Some(Quoted { proto, src: SocketAddrV4::new(a(12), p(0)), dst: SocketAddrV4::new(a(16), p(2)) })
}

/// Add `add` (mod 2^32) to the TCP sequence number an ICMP error quotes (its quoted packet
/// starts with the TCP header's first 8 bytes: ports, sequence number). `l3` is the outer
/// datagram with an `hl`-byte header; nothing happens unless the quote is TCP and long enough.
/// The ICMP checksum is left to [`rewrite_icmp_error`], which recomputes it.
pub fn quoted_tcp_seq(l3: &mut [u8], hl: usize, add: u32) {
    let Some(inner) = l3.get_mut(hl + icmp::HEADER_LEN..) else { return };
    if inner.len() < ipv4::MIN_HEADER_LEN || inner[9] != ipv4::protocol::TCP {
        return;
    }
    let ihl = usize::from(inner[0] & 0x0f) * 4;
    if let Some(q) = inner.get_mut(ihl + 4..ihl + 8) {
        let v = u32::from_be_bytes([q[0], q[1], q[2], q[3]]).wrapping_add(add);
        q.copy_from_slice(&v.to_be_bytes());
    }
}

/// Rewrite an ICMP error in place: outer source/destination (header checksum recomputed), the
/// quoted packet's addresses and ports (its header checksum recomputed; its L4 checksum, which
/// covers bytes not quoted, is left), and the ICMP checksum (recomputed). `l3` is the outer
/// datagram with a validated `hl`-byte header; `quoted` must have succeeded on `l3[hl..]`.
pub fn rewrite_icmp_error(
    l3: &mut [u8],
    hl: usize,
    outer_src: Option<Ipv4Addr>,
    outer_dst: Option<Ipv4Addr>,
    inner_src: Option<SocketAddrV4>,
    inner_dst: Option<SocketAddrV4>,
) {
    let (h, msg) = l3.split_at_mut(hl);
    let mut ip = ipv4::Packet::new_unchecked(h);
    if let Some(a) = outer_src {
        ip.set_src_addr(a);
    }
    if let Some(a) = outer_dst {
        ip.set_dst_addr(a);
    }
    ip.fill_checksum();
    if msg.len() < icmp::HEADER_LEN + ipv4::MIN_HEADER_LEN {
        return;
    }
    {
        let inner = &mut msg[icmp::HEADER_LEN..];
        let ihl = usize::from(inner[0] & 0x0f) * 4;
        if inner.len() < ihl + 4 {
            return;
        }
        if let Some(s) = inner_src {
            inner[12..16].copy_from_slice(&s.ip().octets());
            inner[ihl..ihl + 2].copy_from_slice(&s.port().to_be_bytes());
        }
        if let Some(d) = inner_dst {
            inner[16..20].copy_from_slice(&d.ip().octets());
            inner[ihl + 2..ihl + 4].copy_from_slice(&d.port().to_be_bytes());
        }
        inner[10] = 0;
        inner[11] = 0;
        let c = !checksum::data(&inner[..ihl]);
        inner[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let mut ic = icmp::Packet::new_unchecked(msg);
    ic.fill_checksum();
}

/// Whether a UDP checksum is present (test aid and documentation of the RFC 768 rule).
pub fn udp_has_checksum(l4: &[u8]) -> bool {
    udp::Packet::new_checked(l4).map(|u| u.checksum() != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{hex, tcp};

    fn full_ok(l3: &[u8]) -> bool {
        let ip = ipv4::Packet::new_checked(l3).unwrap();
        let (s, d) = (ip.src_addr(), ip.dst_addr());
        let l4 = ip.payload();
        ip.verify_checksum()
            && match ip.protocol() {
                6 => tcp::Packet::new_checked(l4).unwrap().verify_checksum(s, d),
                _ => udp::Packet::new_checked(l4).unwrap().verify_checksum(s, d),
            }
    }

    #[test]
    fn rewrite_keeps_checksums_valid() {
        // The SYN and UDP fixtures of the pipeline tests, without Ethernet.
        let syn = hex("4500003c1c4640004006b7d3c633640acb0071649c4000503e2a5b7100000000a002faf079e80000020405b40402080a0a1b2c3d0000000001030307");
        let udp = hex("45000026222240004011b202c633640acb007164cf0800350012a07668656c6c6f207276730a");
        for pkt in [syn, udp] {
            assert!(full_ok(&pkt));
            let mut p = pkt.clone();
            let proto = p[9];
            addresses(&mut p, 20, proto, None, Some("203.0.113.11:8080".parse().unwrap()));
            assert!(full_ok(&p));
            addresses(
                &mut p,
                20,
                proto,
                Some("192.0.2.200:5001".parse().unwrap()),
                Some("198.51.100.77:1".parse().unwrap()),
            );
            assert!(full_ok(&p));
            assert_eq!(&p[12..20], &[192, 0, 2, 200, 198, 51, 100, 77]);
            assert_eq!(&p[20..24], &[0x13, 0x89, 0, 1]);
        }
    }

    /// Random datagrams, random rewrites of either or both ends (the checksum terms of all
    /// fields are summed and applied once): the checksums stay valid by full recomputation, and
    /// a UDP checksum never becomes 0.
    #[test]
    fn summed_updates_keep_random_datagrams_valid() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for case in 0..5000 {
            let proto = if case % 2 == 0 { 6 } else { 17 };
            let l4_len = if proto == 6 { 20 } else { 8 } + (next() % 40) as usize;
            let mut p = vec![0u8; 20 + l4_len];
            p[0] = 0x45;
            p[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            p[8] = 64;
            p[9] = proto;
            for b in p[12..].iter_mut() {
                *b = next() as u8;
            }
            if proto == 6 {
                p[32] = 0x50;
            } else {
                p[24..26].copy_from_slice(&(l4_len as u16).to_be_bytes());
            }
            let (s, d) = (Ipv4Addr::new(p[12], p[13], p[14], p[15]), Ipv4Addr::new(p[16], p[17], p[18], p[19]));
            ipv4::Packet::new_unchecked(&mut p[..20]).fill_checksum();
            if proto == 6 {
                tcp::Packet::new_unchecked(&mut p[20..]).fill_checksum(s, d);
            } else {
                udp::Packet::new_unchecked(&mut p[20..]).fill_checksum(s, d);
            }
            assert!(full_ok(&p), "case {case}: built");
            let which = next() % 3;
            let mut addr = || SocketAddrV4::new(Ipv4Addr::from(next() as u32), next() as u16);
            let (src, dst) = match which {
                0 => (Some(addr()), None),
                1 => (None, Some(addr())),
                _ => (Some(addr()), Some(addr())),
            };
            addresses(&mut p, 20, proto, src, dst);
            assert!(full_ok(&p), "case {case}: rewritten {src:?} {dst:?}");
            if proto == 17 {
                assert!(udp_has_checksum(&p[20..]), "case {case}");
            }
        }
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let mut p = hex("45000026222240004011b202c633640acb007164cf08003500120000");
        p.extend_from_slice(b"hello rvs\n");
        addresses(&mut p, 20, 17, None, Some("203.0.113.11:53".parse().unwrap()));
        assert_eq!(&p[26..28], &[0, 0]);
        assert!(!udp_has_checksum(&p[20..]));
        assert!(ipv4::Packet::new_checked(&p[..]).unwrap().verify_checksum());
    }
}
