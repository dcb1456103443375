//! IP-in-IP encapsulation (RFC 2003), the primitive of the TUN mode ([`crate::mode::tun`]), and the ICMP
//! "fragmentation needed" (RFC 1191) rvs answers with when the encapsulated packet would not fit
//! the egress MTU. rvs never fragments: a packet that does not fit is refused (DF set: the client
//! is told the MTU to use; DF clear: the caller drops and counts it).
//!
//! The real server strips the outer header (Linux `ipip` module / `tunl0`, or `rvs-ipip-decap`
//! where there is no such module) and answers the client directly from the VIP.

use crate::buf::PacketBuf;
use crate::wire::{ethernet, icmp, ipv4};
use std::net::Ipv4Addr;

/// Ethernet header length.
const ETH: usize = ethernet::HEADER_LEN;
/// The outer header rvs adds: no options (RFC 2003 §3.1).
pub const OUTER_LEN: usize = ipv4::MIN_HEADER_LEN;

/// Why a packet could not be encapsulated. On any of them the packet is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunError {
    /// The inner packet has DF and the outer one would exceed the egress MTU. `mtu` is what the
    /// client must use (egress MTU − 20): answer with [`frag_needed`] carrying it.
    FragNeeded { mtu: u16 },
    /// The inner packet has no DF and the outer one would exceed the egress MTU. rvs does not
    /// fragment: the caller drops and counts it.
    TooBig,
    /// Not enough headroom in the buffer to prepend the outer header.
    NoHeadroom,
    /// Not an Ethernet frame carrying a valid IPv4 packet.
    Malformed,
}

impl std::fmt::Display for TunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TunError::FragNeeded { mtu } => write!(f, "fragmentation needed (DF set), client MTU {mtu}"),
            TunError::TooBig => f.write_str("encapsulated packet exceeds the egress MTU"),
            TunError::NoHeadroom => f.write_str("no headroom for the outer IPv4 header"),
            TunError::Malformed => f.write_str("malformed inner packet"),
        }
    }
}

impl std::error::Error for TunError {}

/// Wrap the IPv4 packet of `pkt` (Ethernet at offset 0, IPv4 at 14, possibly Ethernet padding
/// after the IP total length, which is trimmed) in an outer IPv4 header (RFC 2003, protocol 4):
/// source `outer_src`, destination `outer_dst`, TTL 64, TOS/DSCP+ECN byte and DF copied from the
/// inner header (RFC 2003 §3.1), no options, checksum filled.
///
/// The outer identification is taken from `ident`, which is then incremented (wrapping): the
/// caller keeps one counter per worker (seed each worker's counter differently). A counter rather
/// than the inner ID, because the outer (src, dst, proto 4) triple aggregates many clients, whose
/// inner IDs collide; RFC 6864 wants IDs unique per triple for packets that may be fragmented
/// downstream (those without DF). On error the counter is untouched.
///
/// The Ethernet header is moved to the new front unchanged (the caller rewrites the MACs); the
/// inner packet is not modified (its TTL is the caller's business).
///
/// `mtu` is the IP-level MTU of the egress port (1500 on plain Ethernet): a result longer than
/// that gives [`TunError::FragNeeded`] (inner DF) or [`TunError::TooBig`]. On any error the
/// packet is unchanged.
pub fn encap_ipip<B: PacketBuf>(
    pkt: &mut B,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    mtu: u16,
    ident: &mut u16,
) -> Result<(), TunError> {
    let data = pkt.data();
    let eth = ethernet::Packet::new_checked(data).map_err(|_| TunError::Malformed)?;
    if eth.ethertype() != ethernet::ethertype::IPV4 {
        return Err(TunError::Malformed);
    }
    let inner = ipv4::Packet::new_checked(&data[ETH..]).map_err(|_| TunError::Malformed)?;
    let total = inner.total_len() as usize;
    let (tos, df) = (inner.dscp_ecn(), inner.dont_frag());
    let padding = data.len() - ETH - total;
    // `mtu` is a u16, so this also keeps the outer total length within its 16-bit field.
    let outer_len = total + OUTER_LEN;
    if outer_len > mtu as usize {
        return Err(if df {
            TunError::FragNeeded { mtu: mtu.saturating_sub(OUTER_LEN as u16) }
        } else {
            TunError::TooBig
        });
    }
    if pkt.prepend(OUTER_LEN).is_none() {
        return Err(TunError::NoHeadroom);
    }
    // Cannot fail: the padding is part of the packet.
    pkt.trim(padding);
    let d = pkt.data_mut();
    d.copy_within(OUTER_LEN..OUTER_LEN + ETH, 0);
    let mut ip = ipv4::Packet::new_unchecked(&mut d[ETH..ETH + OUTER_LEN]);
    ip.set_version_and_header_len(OUTER_LEN);
    ip.set_dscp_ecn(tos);
    ip.set_total_len(outer_len as u16);
    ip.set_ident(*ident);
    ip.set_flags_and_offset(df, false, 0);
    ip.set_ttl(ipv4::DEFAULT_TTL);
    ip.set_protocol(ipv4::protocol::IPIP);
    ip.set_src_addr(outer_src);
    ip.set_dst_addr(outer_dst);
    ip.fill_checksum();
    *ident = ident.wrapping_add(1);
    Ok(())
}

/// Whether an address may receive an ICMP error (RFC 1122 §3.2.2: not to a broadcast,
/// multicast, unspecified, loopback or class E source).
fn is_unicast_source(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() || a.octets()[0] >= 240)
}

/// Build into `out` (an empty buffer) an Ethernet frame (MACs zeroed: the output path fills them)
/// carrying ICMP Destination Unreachable, Fragmentation Needed (type 3 code 4; RFC 1191 §4: the
/// next-hop MTU in the low 16 bits of the otherwise unused word) from `from` to the source of the
/// IPv4 packet in the frame `orig`, quoting its IP header and the first 8 bytes of its payload
/// (RFC 792). TTL 64, precedence "internetwork control" as for the other errors rvs originates.
///
/// Returns false (and `out` is then unspecified) when `orig` is not Ethernet + valid IPv4, when
/// RFC 1122 §3.2.2 forbids an error (the original is an ICMP error, a non-first fragment, or
/// from a non-unicast source), when `out` is not empty, or when it lacks room.
pub fn frag_needed<B: PacketBuf>(out: &mut B, orig: &[u8], from: Ipv4Addr, next_hop_mtu: u16) -> bool {
    let Ok(eth) = ethernet::Packet::new_checked(orig) else { return false };
    if eth.ethertype() != ethernet::ethertype::IPV4 || !out.is_empty() {
        return false;
    }
    let Ok(ip) = ipv4::Packet::new_checked(&orig[ETH..]) else { return false };
    let to = ip.src_addr();
    if !is_unicast_source(to) || ip.frag_offset() != 0 {
        return false;
    }
    if ip.protocol() == ipv4::protocol::ICMP && ip.payload().first().is_some_and(|&t| icmp::is_error(t)) {
        return false;
    }
    let total = ip.total_len() as usize;
    let quote = (ip.header_len() + icmp::ERROR_QUOTE_LEN).min(total);
    let quoted = &orig[ETH..ETH + quote];
    let ip_len = ipv4::MIN_HEADER_LEN + icmp::HEADER_LEN + quote;
    let Some(area) = out.append(ETH + ip_len) else { return false };
    area.fill(0);
    ethernet::Packet::new_unchecked(&mut *area).set_ethertype(ethernet::ethertype::IPV4);
    icmp::write_ipv4_error(
        &mut area[ETH..],
        icmp::msg_type::DEST_UNREACHABLE,
        icmp::unreachable::FRAG_NEEDED,
        u32::from(next_hop_mtu),
        quoted,
        from,
        to,
    )
}

/// Strip the outer header of an IPIP packet (the inverse of [`encap_ipip`], for tests and the
/// `rvs-ipip-decap` tool): `ip_packet` starts at the outer IPv4 header. Returns the inner IPv4
/// packet, cut at its total length, or `None` when the outer header is invalid (checksum
/// included), is not protocol 4, is a fragment, or the inner packet is not valid IPv4.
pub fn decap_ipip(ip_packet: &[u8]) -> Option<&[u8]> {
    let outer = ipv4::Packet::new_checked(ip_packet).ok()?;
    if outer.protocol() != ipv4::protocol::IPIP || outer.is_fragment() || !outer.verify_checksum() {
        return None;
    }
    let payload = &ip_packet[outer.header_len()..outer.total_len() as usize];
    let inner = ipv4::Packet::new_checked(payload).ok()?;
    Some(&payload[..inner.total_len() as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::VecBuf;
    use crate::wire::hex;

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const RS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
    const LB: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);

    /// RFC 1071 checksum written out independently of `wire::checksum`: the 16-bit
    /// one's-complement of the one's-complement sum, computed with an explicit carry loop.
    fn rfc1071(b: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < b.len() {
            sum += ((b[i] as u32) << 8) | b[i + 1] as u32;
            if sum > 0xffff {
                sum = (sum & 0xffff) + 1;
            }
            i += 2;
        }
        if i < b.len() {
            sum += (b[i] as u32) << 8;
            if sum > 0xffff {
                sum = (sum & 0xffff) + 1;
            }
        }
        !(sum as u16)
    }

    /// Ethernet (dst 02:..:02, src 02:..:01) + IPv4 203.0.113.1 → 203.0.113.100, TOS 0x2e,
    /// ID 0x1c46, DF per `df`, TTL 63, TCP SYN 40000 → 80, then `pad` bytes of Ethernet padding
    /// (0xee) and `extra` payload bytes (0xab) in the TCP segment.
    fn frame(df: bool, extra: usize, pad: usize) -> Vec<u8> {
        let mut f = hex("020000000002 020000000001 0800");
        let total = 40 + extra;
        let mut ip = hex("452e 0000 1c46 0000 3f06 0000 cb007101 cb007164");
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        if df {
            ip[6] = 0x40;
        }
        let c = rfc1071(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        // TCP header (checksum left as an arbitrary value: encap must not look at it).
        f.extend_from_slice(&hex("9c40 0050 00000001 00000000 5002 faf0 1234 0000"));
        f.extend_from_slice(&vec![0xab; extra]);
        f.extend_from_slice(&vec![0xee; pad]);
        f
    }

    #[test]
    fn encap_exact_bytes() {
        let orig = frame(true, 0, 0);
        let mut b = VecBuf::new(&orig, 3);
        let mut id = 0x0102;
        encap_ipip(&mut b, LB, RS, 1500, &mut id).unwrap();
        assert_eq!(id, 0x0103, "counter advanced");
        let d = b.to_vec();
        assert_eq!(d.len(), orig.len() + 20);
        assert_eq!(d[..14], orig[..14], "Ethernet header moved to the front unchanged");
        // Outer: v4 IHL5, TOS 0x2e, length 60, ID 0x0102, DF, TTL 64, proto 4, checksum, LB → RS.
        let mut expect = hex("452e 003c 0102 4000 4004 0000 c63364fe c633640b");
        let c = rfc1071(&expect);
        expect[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(d[14..34], expect[..]);
        assert_eq!(rfc1071(&d[14..34]), 0, "a valid header checksums to zero");
        assert!(ipv4::Packet::new_checked(&d[14..]).unwrap().verify_checksum());
        assert_eq!(d[34..], orig[14..], "inner packet untouched");
        assert_eq!(b.port(), 3);
    }

    #[test]
    fn tos_and_df_are_copied() {
        for df in [false, true] {
            let mut orig = frame(df, 4, 0);
            orig[15] = 0xb9; // DSCP EF + ECT(1)
            let mut b = VecBuf::new(&orig, 0);
            let mut id = 7;
            encap_ipip(&mut b, LB, RS, 1500, &mut id).unwrap();
            let d = b.to_vec();
            let outer = ipv4::Packet::new_checked(&d[14..]).unwrap();
            assert_eq!(outer.dscp_ecn(), 0xb9);
            assert_eq!(outer.dont_frag(), df);
            assert!(!outer.is_fragment());
            assert_eq!(outer.ident(), 7);
            assert_eq!(outer.ttl(), 64);
            assert_eq!(outer.protocol(), ipv4::protocol::IPIP);
            assert_eq!((outer.src_addr(), outer.dst_addr()), (LB, RS));
            assert!(outer.verify_checksum());
        }
    }

    #[test]
    fn padding_is_trimmed() {
        let orig = frame(true, 0, 6); // 54 + 6 = 60, the Ethernet minimum
        assert_eq!(orig.len(), 60);
        let mut b = VecBuf::new(&orig, 0);
        encap_ipip(&mut b, LB, RS, 1500, &mut 0).unwrap();
        let d = b.to_vec();
        assert_eq!(d.len(), 14 + 20 + 40);
        assert_eq!(d[34..], orig[14..54]);
        assert_eq!(decap_ipip(&d[14..]).unwrap(), &orig[14..54]);
    }

    #[test]
    fn mtu_boundary() {
        // Inner 1480 bytes: outer exactly 1500 fits.
        let orig = frame(true, 1440, 0);
        let mut b = VecBuf::with_room(&orig, 0, 64, 0);
        encap_ipip(&mut b, LB, RS, 1500, &mut 0).unwrap();
        assert_eq!(b.len(), 14 + 1500);
        assert_eq!(ipv4::Packet::new_checked(&b.data()[14..]).unwrap().total_len(), 1500);
    }

    #[test]
    fn too_big_with_df_is_frag_needed_and_unchanged() {
        let orig = frame(true, 1441, 2); // inner 1481: outer 1501
        let mut b = VecBuf::new(&orig, 0);
        let before = b.clone();
        let mut id = 9;
        assert_eq!(encap_ipip(&mut b, LB, RS, 1500, &mut id), Err(TunError::FragNeeded { mtu: 1480 }));
        assert_eq!(b, before);
        assert_eq!(id, 9);
        // A tiny MTU does not underflow.
        assert_eq!(encap_ipip(&mut b, LB, RS, 10, &mut id), Err(TunError::FragNeeded { mtu: 0 }));
        assert_eq!(b, before);
    }

    #[test]
    fn too_big_without_df_is_refused_and_unchanged() {
        let orig = frame(false, 1441, 0);
        let mut b = VecBuf::new(&orig, 0);
        let before = b.clone();
        let mut id = 9;
        assert_eq!(encap_ipip(&mut b, LB, RS, 1500, &mut id), Err(TunError::TooBig));
        assert_eq!(b, before);
        assert_eq!(id, 9);
    }

    #[test]
    fn no_headroom_is_refused_and_unchanged() {
        let orig = frame(true, 0, 6);
        let mut b = VecBuf::with_room(&orig, 0, 19, 0);
        let before = b.clone();
        let mut id = 1;
        assert_eq!(encap_ipip(&mut b, LB, RS, 1500, &mut id), Err(TunError::NoHeadroom));
        assert_eq!(b, before);
        assert_eq!(id, 1);
        // Exactly 20 bytes of headroom are enough.
        let mut b = VecBuf::with_room(&orig, 0, 20, 0);
        assert_eq!(encap_ipip(&mut b, LB, RS, 1500, &mut id), Ok(()));
    }

    #[test]
    fn malformed_is_refused_and_unchanged() {
        let good = frame(true, 0, 0);
        let mut cases = vec![good[..13].to_vec(), good[..33].to_vec(), good[..53].to_vec()];
        let mut arp = good.clone();
        arp[13] = 0x06;
        cases.push(arp);
        let mut v6 = good.clone();
        v6[14] = 0x60;
        cases.push(v6);
        for c in cases {
            let mut b = VecBuf::new(&c, 0);
            let before = b.clone();
            assert_eq!(encap_ipip(&mut b, LB, RS, 1500, &mut 0), Err(TunError::Malformed), "{c:02x?}");
            assert_eq!(b, before);
        }
    }

    #[test]
    fn decap_round_trip() {
        for (df, extra, pad) in [(true, 0, 6), (false, 100, 0), (true, 1440, 0)] {
            let orig = frame(df, extra, pad);
            let mut b = VecBuf::new(&orig, 0);
            encap_ipip(&mut b, LB, RS, 1500, &mut 0x4242).unwrap();
            let d = b.to_vec();
            assert_eq!(decap_ipip(&d[14..]).unwrap(), &orig[14..orig.len() - pad]);
            // Trailing bytes after the outer total length are ignored too.
            let mut padded = d[14..].to_vec();
            padded.extend_from_slice(&[0; 5]);
            assert_eq!(decap_ipip(&padded).unwrap(), &orig[14..orig.len() - pad]);
        }
    }

    #[test]
    fn decap_refuses() {
        let orig = frame(true, 0, 0);
        let mut b = VecBuf::new(&orig, 0);
        encap_ipip(&mut b, LB, RS, 1500, &mut 0).unwrap();
        let good = b.data()[14..].to_vec();
        assert!(decap_ipip(&good).is_some());
        // Not IPIP: the inner packet itself (TCP).
        assert_eq!(decap_ipip(&orig[14..]), None);
        // Bad outer checksum.
        let mut x = good.clone();
        x[11] ^= 1;
        assert_eq!(decap_ipip(&x), None);
        // A fragment (MF), checksum fixed up.
        let mut x = good.clone();
        x[6] |= 0x20;
        x[10..12].fill(0);
        let c = rfc1071(&x[..20]);
        x[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(decap_ipip(&x), None);
        // Inner truncated: outer length shortened consistently.
        let mut x = good[..50].to_vec();
        x[2..4].copy_from_slice(&50u16.to_be_bytes());
        x[10..12].fill(0);
        let c = rfc1071(&x[..20]);
        x[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(decap_ipip(&x), None);
        assert_eq!(decap_ipip(&[]), None);
    }

    #[test]
    fn frag_needed_bytes() {
        let orig = frame(true, 1441, 0);
        let mut out = VecBuf::empty();
        let from = Ipv4Addr::new(203, 0, 113, 254);
        assert!(frag_needed(&mut out, &orig, from, 1480));
        let d = out.to_vec();
        // Ethernet: zero MACs, IPv4.
        assert_eq!(d[..14], hex("000000000000 000000000000 0800")[..]);
        // IP: 20 + 8 + (20 + 8) = 56 bytes, TOS c0, TTL 64, ICMP, from → 203.0.113.1.
        let mut ip = hex("45c0 0038 0000 0000 4001 0000 cb0071fe cb007101");
        let c = rfc1071(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(d[14..34], ip[..]);
        assert_eq!(d.len(), 14 + 56);
        // ICMP: type 3 code 4, checksum, unused 0000, next-hop MTU 1480 (0x05c8), quote.
        let icmp_bytes = &d[34..];
        assert_eq!(icmp_bytes[..2], [3, 4]);
        assert_eq!(icmp_bytes[4..8], [0x00, 0x00, 0x05, 0xc8]);
        assert_eq!(icmp_bytes[8..], orig[14..14 + 28], "IP header + 8 bytes quoted");
        assert_eq!(rfc1071(icmp_bytes), 0, "ICMP checksum valid");
        let p = icmp::Packet::new_checked(icmp_bytes).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (icmp::msg_type::DEST_UNREACHABLE, icmp::unreachable::FRAG_NEEDED));
    }

    #[test]
    fn frag_needed_refuses() {
        let from = Ipv4Addr::new(203, 0, 113, 254);
        let good = frame(true, 0, 0);
        let mut out = VecBuf::empty();
        assert!(!frag_needed(&mut out, &good[..30], from, 1480), "truncated");
        let mut out = VecBuf::with_room(&[], 0, 0, 60);
        assert!(!frag_needed(&mut out, &good, from, 1480), "no room for 14 + 56");
        let mut out = VecBuf::new(&[1], 0);
        assert!(!frag_needed(&mut out, &good, from, 1480), "out not empty");
        // Source not unicast.
        for src in [[0, 0, 0, 0], [255, 255, 255, 255], [224, 0, 0, 1], [127, 0, 0, 1]] {
            let mut x = good.clone();
            x[26..30].copy_from_slice(&src);
            assert!(!frag_needed(&mut VecBuf::empty(), &x, from, 1480));
        }
        // A non-first fragment.
        let mut x = good.clone();
        x[21] = 0x10;
        assert!(!frag_needed(&mut VecBuf::empty(), &x, from, 1480));
        // An ICMP error is not answered, an echo request is.
        let mut x = good.clone();
        x[23] = ipv4::protocol::ICMP;
        x[34] = icmp::msg_type::DEST_UNREACHABLE;
        assert!(!frag_needed(&mut VecBuf::empty(), &x, from, 1480));
        x[34] = icmp::msg_type::ECHO_REQUEST;
        assert!(frag_needed(&mut VecBuf::empty(), &x, from, 1480));
    }

    #[test]
    fn frag_needed_short_payload_quotes_what_there_is() {
        // An IP packet with 3 bytes of payload: the quote is header + 3.
        let mut f = hex("020000000002 020000000001 0800");
        f.extend_from_slice(&hex("4500 0017 0000 4000 4011 0000 cb007101 cb007164 010203"));
        let mut out = VecBuf::empty();
        assert!(frag_needed(&mut out, &f, LB, 576));
        let d = out.to_vec();
        assert_eq!(d.len(), 14 + 20 + 8 + 23);
        assert_eq!(d[42..], f[14..]);
    }

    #[test]
    fn random_inputs_never_panic() {
        let seeds = [frame(true, 0, 6), frame(false, 30, 0), frame(true, 1441, 0)];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..10_000 {
            let r = next();
            let mut b: Vec<u8> = if i % 2 == 0 {
                let s = &seeds[(r % 3) as usize];
                let mut v = s[..(r >> 8) as usize % (s.len() + 1)].to_vec();
                for _ in 0..(r >> 20) % 4 {
                    let n = next();
                    if !v.is_empty() {
                        let at = n as usize % v.len();
                        v[at] = (n >> 32) as u8;
                    }
                }
                v
            } else {
                (0..(r % 120) as usize).map(|_| next() as u8).collect()
            };
            if b.len() > 14 && r & 4 == 0 {
                b[12] = 0x08;
                b[13] = 0x00;
            }
            let mtu = (next() % 1600) as u16;
            let head = (next() % 40) as usize;
            let mut pkt = VecBuf::with_room(&b, 0, head, 0);
            let before = pkt.clone();
            let mut id = 0;
            match encap_ipip(&mut pkt, LB, RS, mtu, &mut id) {
                Ok(()) => {
                    let d = pkt.data();
                    assert!(d.len() <= 14 + mtu as usize);
                    assert!(decap_ipip(&d[14..]).is_some());
                }
                Err(_) => assert_eq!(pkt, before),
            }
            let mut out = VecBuf::with_room(&[], 0, 0, (next() % 120) as usize);
            let _ = frag_needed(&mut out, &b, SRC, mtu);
            let _ = decap_ipip(&b);
            if b.len() > 14 {
                let _ = decap_ipip(&b[14..]);
            }
        }
    }
}
