//! One TCP or UDP datagram over IPv4, parsed once.
//!
//! L4 dispatch ([`crate::worker`]) builds a [`Segment`] from the frame's validated IPv4 header
//! and its TCP or UDP header, and everything after it — the session lookup, the forwarding
//! modes ([`crate::mode`]), the address rewrite ([`crate::rewrite`]) and the FULLNAT
//! client-address insertions ([`crate::clientaddr`]) — reads addresses, ports, flags and header
//! offsets from it instead of parsing the frame again. An insertion that grows the datagram
//! (TOA, PROXY v2) updates the view it was given, so the offsets stay true for what follows.
//!
//! After [`Segment::parse`] or [`Segment::parse_after`] every offset is inside the frame:
//! `l4() + l4_hl() ≤ end() ≤ frame.len()`.

use crate::conn::FlowKey;
use crate::wire::{self, ipv4, tcp, udp};
use std::net::Ipv4Addr;

/// Why a frame is not a TCP or UDP segment this view can describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentError {
    /// Not IPv4, not TCP or UDP, or an IP fragment other than the first (it carries no ports).
    NotTcpUdp,
    /// Headers cut short or inconsistent: the IPv4 header or total length beyond the frame, the
    /// TCP header (data offset) or the UDP header beyond the IPv4 total length.
    Truncated,
}

impl std::fmt::Display for SegmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SegmentError::NotTcpUdp => "not an IPv4 TCP or UDP segment with its ports",
            SegmentError::Truncated => "truncated or inconsistent IPv4/L4 headers",
        })
    }
}

impl std::error::Error for SegmentError {}

/// UDP header length (RFC 768).
const UDP_HEADER_LEN: u16 = udp::HEADER_LEN as u16;

/// A TCP or UDP segment over IPv4: its 5-tuple, TCP flags and sequence number, TTL, and the
/// offsets of its headers and payload in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The 5-tuple as it arrived (protocol, source, destination, ports).
    pub key: FlowKey,
    /// TCP flags (0 for UDP).
    pub flags: u8,
    /// IPv4 time to live as it arrived.
    pub ttl: u8,
    /// TCP sequence number (0 for UDP).
    pub seq: u32,
    l3: u16,
    ip_hl: u16,
    ip_total: u16,
    l4_hl: u16,
    /// MF set: a first fragment; the segment continues in later fragments.
    partial: bool,
}

impl Segment {
    /// Parse the IPv4 header at offset `l3` of `frame` and the TCP or UDP header behind it.
    #[inline]
    pub fn parse(frame: &[u8], l3: usize) -> Result<Segment, SegmentError> {
        let bytes = frame.get(l3..).ok_or(SegmentError::Truncated)?;
        let ip = ipv4::Packet::new_checked(bytes).map_err(|e| match e {
            wire::Error::BadVersion => SegmentError::NotTcpUdp,
            _ => SegmentError::Truncated,
        })?;
        Segment::parse_after(&ip, l3)
    }

    /// The segment behind an IPv4 header already validated (`ipv4::Packet::new_checked`),
    /// which starts at frame offset `l3`. Later fragments are refused (`NotTcpUdp`); a first
    /// fragment is accepted and marked [`Segment::partial`].
    #[inline]
    pub fn parse_after(ip: &ipv4::Packet<&[u8]>, l3: usize) -> Result<Segment, SegmentError> {
        if ip.frag_offset() != 0 {
            return Err(SegmentError::NotTcpUdp);
        }
        let (hl, total) = (ip.header_len(), ip.total_len() as usize);
        let l3 = u16::try_from(l3).map_err(|_| SegmentError::Truncated)?;
        let l4 = ip.payload();
        let proto = ip.protocol();
        let (sport, dport, flags, seq, l4_hl) = match proto {
            ipv4::protocol::TCP => {
                let t = tcp::Packet::new_checked(l4).map_err(|_| SegmentError::Truncated)?;
                (t.src_port(), t.dst_port(), t.flags(), t.seq_number(), t.header_len() as u16)
            }
            ipv4::protocol::UDP => {
                let u = udp::Packet::new_checked(l4).map_err(|_| SegmentError::Truncated)?;
                (u.src_port(), u.dst_port(), 0, 0, UDP_HEADER_LEN)
            }
            _ => return Err(SegmentError::NotTcpUdp),
        };
        // Built in place: a key assembled apart and then copied in is read back with wide loads
        // across its narrow stores, which stalls store forwarding.
        Ok(Segment {
            key: FlowKey { proto, src: ip.src_addr(), dst: ip.dst_addr(), sport, dport },
            flags,
            ttl: ip.ttl(),
            seq,
            l3,
            ip_hl: hl as u16,
            ip_total: total as u16,
            l4_hl,
            partial: ip.more_frags(),
        })
    }

    /// Frame offset of the IPv4 header.
    #[inline]
    pub fn l3(&self) -> usize {
        usize::from(self.l3)
    }
    /// IPv4 header length.
    #[inline]
    pub fn ip_hl(&self) -> usize {
        usize::from(self.ip_hl)
    }
    /// IPv4 total length (header and payload).
    #[inline]
    pub fn ip_total(&self) -> usize {
        usize::from(self.ip_total)
    }
    /// Frame offset of the TCP or UDP header.
    #[inline]
    pub fn l4(&self) -> usize {
        self.l3() + self.ip_hl()
    }
    /// TCP header length (data offset × 4), or 8 for UDP.
    #[inline]
    pub fn l4_hl(&self) -> usize {
        usize::from(self.l4_hl)
    }
    /// Frame offset of the payload.
    #[inline]
    pub fn payload(&self) -> usize {
        self.l4() + self.l4_hl()
    }
    /// Payload length (in this fragment, for a first fragment).
    #[inline]
    pub fn payload_len(&self) -> usize {
        self.ip_total() - self.ip_hl() - self.l4_hl()
    }
    /// Frame offset just past the IPv4 datagram (Ethernet padding may follow).
    #[inline]
    pub fn end(&self) -> usize {
        self.l3() + self.ip_total()
    }
    /// L4 header and payload length, as in the pseudo-header.
    #[inline]
    pub fn l4_len(&self) -> usize {
        self.ip_total() - self.ip_hl()
    }
    /// MF set: a first fragment, the rest of the segment is in later fragments.
    #[inline]
    pub fn partial(&self) -> bool {
        self.partial
    }
    #[inline]
    pub fn is_tcp(&self) -> bool {
        self.key.proto == ipv4::protocol::TCP
    }
    /// A TCP SYN without ACK or RST: the opening of a connection.
    #[inline]
    pub fn syn_only(&self) -> bool {
        use tcp::flags::{ACK, RST, SYN};
        self.is_tcp() && self.flags & (SYN | ACK | RST) == SYN
    }
    /// The source address as it arrived.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        self.key.src
    }
    /// The destination address as it arrived.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        self.key.dst
    }

    /// The datagram grew by `header` bytes of L4 header (a TCP option) and `payload` bytes in
    /// front of the payload: the view follows. Callers checked that the result fits 65535.
    pub(crate) fn grew(&mut self, header: usize, payload: usize) {
        self.l4_hl += header as u16;
        self.ip_total += (header + payload) as u16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::hex;

    /// Ethernet + IPv4 (20) + TCP with 4 bytes of options (MSS) + 3 bytes of payload and 2 of
    /// Ethernet padding; written out by hand.
    const TCP_HEX: &str = "020000000002 020000000001 0800 \
        4500 002f 0001 0000 4006 0000 c6336401 cb007164 \
        9c40 0050 00000064 00000000 6012 faf0 0000 0000 020405b4 \
        616263 0000";

    #[test]
    fn tcp_fields_and_offsets() {
        let f = hex(TCP_HEX);
        let s = Segment::parse(&f, 14).unwrap();
        assert_eq!(s.key.proto, 6);
        assert_eq!(s.key.src, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(s.key.dst, Ipv4Addr::new(203, 0, 113, 100));
        assert_eq!((s.key.sport, s.key.dport), (40000, 80));
        assert_eq!((s.flags, s.seq, s.ttl), (0x12, 100, 64));
        assert_eq!((s.l3(), s.ip_hl(), s.ip_total(), s.l4(), s.l4_hl()), (14, 20, 47, 34, 24));
        assert_eq!((s.payload(), s.payload_len(), s.end(), s.l4_len()), (58, 3, 61, 27));
        assert_eq!(&f[s.payload()..s.end()], b"abc");
        assert!(!s.partial() && s.is_tcp() && !s.syn_only());
    }

    #[test]
    fn udp_fields() {
        let f = hex(
            "020000000002 020000000001 0800 4500 001d 0001 0000 4011 0000 c6336401 cb007164 1388 2328 0009 0000 71",
        );
        let s = Segment::parse(&f, 14).unwrap();
        assert_eq!((s.key.proto, s.key.sport, s.key.dport, s.flags, s.seq), (17, 5000, 9000, 0, 0));
        assert_eq!((s.l4_hl(), s.payload_len(), s.end()), (8, 1, 43));
    }

    #[test]
    fn refusals() {
        let f = hex(TCP_HEX);
        let with = |at: usize, v: u8| {
            let mut g = f.clone();
            g[at] = v;
            g
        };
        assert_eq!(Segment::parse(&f, 100), Err(SegmentError::Truncated));
        assert_eq!(Segment::parse(&f, usize::MAX), Err(SegmentError::Truncated));
        assert_eq!(Segment::parse(&with(14, 0x65), 14), Err(SegmentError::NotTcpUdp), "IPv6 version");
        assert_eq!(Segment::parse(&with(23, 1), 14), Err(SegmentError::NotTcpUdp), "ICMP");
        assert_eq!(Segment::parse(&with(21, 0x10), 14), Err(SegmentError::NotTcpUdp), "later fragment");
        assert!(Segment::parse(&with(20, 0x20), 14).unwrap().partial(), "MF: first fragment");
        assert_eq!(Segment::parse(&with(46, 0xf0), 14), Err(SegmentError::Truncated), "data offset past total");
        assert_eq!(Segment::parse(&with(46, 0x40), 14), Err(SegmentError::Truncated), "data offset below 5");
        for n in 0..f.len() - 2 {
            assert!(Segment::parse(&f[..n], 14).is_err(), "cut at {n}");
        }
    }

    #[test]
    fn growth_moves_the_offsets() {
        let mut s = Segment::parse(&hex(TCP_HEX), 14).unwrap();
        s.grew(8, 0);
        assert_eq!((s.l4_hl(), s.ip_total(), s.payload(), s.payload_len()), (32, 55, 66, 3));
        s.grew(0, 28);
        assert_eq!((s.l4_hl(), s.ip_total(), s.payload(), s.payload_len()), (32, 83, 66, 31));
    }
}
