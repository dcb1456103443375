//! PROXY protocol version 2 (haproxy's `proxy-protocol.txt` §2.2): a binary header in front of
//! the client→RS byte stream naming the original connection's addresses and ports.
//!
//! rvs puts the header before the first payload byte of the stream. From then on the stream
//! the RS sees is [`HEADER_LEN_V4`] bytes longer than the client's: later client→RS segments
//! need [`super::seq::shift_seq`] and RS→client ones [`super::seq::shift_ack`].

use super::{fits, insert_after_tcp_header, tcp_only, ClientAddrError};
use crate::buf::PacketBuf;
use crate::segment::Segment;
use crate::wire::tcp;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The 12-byte signature (§2.2): CR LF CR LF NUL CR LF "QUIT" LF.
pub const SIGNATURE: [u8; 12] = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/// Version 2 (high nibble) and command PROXY (low nibble 1), §2.2 byte 13.
const VER_CMD_PROXY: u8 = 0x21;
/// Address family AF_INET (high nibble 1) and transport STREAM (low nibble 1), §2.2 byte 14.
const FAM_TCP4: u8 = 0x11;
/// Length of the IPv4 address block: src addr, dst addr, src port, dst port (§2.2 `ipv4_addr`).
const ADDR_LEN_V4: u16 = 12;
/// Fixed part: signature, ver_cmd, fam, 2-byte length.
const FIXED_LEN: usize = 16;

/// Header length for TCP over IPv4 without TLVs: 16 + 12.
pub const HEADER_LEN_V4: usize = 28;

/// The header announcing a TCP connection from `client` to `dst` (what the client connected
/// to: the VIP and virtual port).
pub fn header_v4(client: SocketAddrV4, dst: SocketAddrV4) -> [u8; HEADER_LEN_V4] {
    let mut h = [0u8; HEADER_LEN_V4];
    h[..12].copy_from_slice(&SIGNATURE);
    h[12] = VER_CMD_PROXY;
    h[13] = FAM_TCP4;
    h[14..16].copy_from_slice(&ADDR_LEN_V4.to_be_bytes());
    h[16..20].copy_from_slice(&client.ip().octets());
    h[20..24].copy_from_slice(&dst.ip().octets());
    h[24..26].copy_from_slice(&client.port().to_be_bytes());
    h[26..28].copy_from_slice(&dst.port().to_be_bytes());
    h
}

/// Insert the PROXY v2 header for `client` → `dst` in front of the TCP payload of segment `seg`
/// of the frame (`seg` follows the growth); the payload may be empty (a bare ACK becomes a 28-byte data segment).
/// The sequence number is unchanged: the header takes the place of the first payload bytes. An
/// urgent pointer (URG set) moves forward by the header length so it still points at the same
/// byte. Ethernet padding is dropped; IPv4 total length and both checksums are updated.
///
/// Returns the number of bytes inserted ([`HEADER_LEN_V4`]), the amount for the sequence and
/// acknowledgment shifts of the rest of the connection.
///
/// Errors (packet unchanged): `NoRoom` if the datagram would exceed 65535 bytes, `NoBuffer`
/// without tailroom, `NotTcp` for UDP and fragments.
pub fn insert<B: PacketBuf>(
    pkt: &mut B,
    seg: &mut Segment,
    client: SocketAddrV4,
    dst: SocketAddrV4,
) -> Result<usize, ClientAddrError> {
    tcp_only(seg)?;
    if seg.partial() {
        return Err(ClientAddrError::NotTcp);
    }
    if !fits(seg, HEADER_LEN_V4) {
        return Err(ClientAddrError::NoRoom);
    }
    let header = header_v4(client, dst);
    insert_after_tcp_header(pkt, seg, &header, |h| {
        let mut t = tcp::Packet::new_unchecked(h);
        if t.flags() & tcp::flags::URG != 0 {
            let u = t.urgent_at().wrapping_add(HEADER_LEN_V4 as u16);
            t.set_urgent_at(u);
        }
    })?;
    seg.grew(0, HEADER_LEN_V4);
    Ok(HEADER_LEN_V4)
}

/// Parse a PROXY v2 header for TCP over IPv4 at the start of `data` (the stream bytes): the
/// source (client) and destination addresses, and the header's full length (16 + the length
/// field, TLVs included) — how many stream bytes to skip. `None` for anything else: short,
/// wrong signature, another version, command or family, or a length under 12 or past `data`.
pub fn parse(data: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, usize)> {
    let fixed = data.get(..FIXED_LEN)?;
    if fixed[..12] != SIGNATURE || fixed[12] != VER_CMD_PROXY || fixed[13] != FAM_TCP4 {
        return None;
    }
    let len = u16::from_be_bytes([fixed[14], fixed[15]]);
    if len < ADDR_LEN_V4 {
        return None;
    }
    let total = FIXED_LEN + len as usize;
    let a = data.get(FIXED_LEN..total)?;
    let src = SocketAddrV4::new(Ipv4Addr::new(a[0], a[1], a[2], a[3]), u16::from_be_bytes([a[8], a[9]]));
    let dst = SocketAddrV4::new(Ipv4Addr::new(a[4], a[5], a[6], a[7]), u16::from_be_bytes([a[10], a[11]]));
    Some((src, dst, total))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::buf::VecBuf;
    use crate::wire::tcp::flags::{ACK, FIN, PSH, URG};

    /// Parse, then insert (the two steps of the pipeline).
    fn insert(b: &mut VecBuf, l3: usize, client: SocketAddrV4, dst: SocketAddrV4) -> Result<usize, ClientAddrError> {
        proxy_insert(b, l3, client, dst)
    }

    /// §2.2 field by field: signature, 0x21 (v2, PROXY), 0x11 (AF_INET, STREAM), length 12,
    /// src 198.51.100.10, dst 203.0.113.100, src port 40000, dst port 80.
    const HEADER_HEX: &str = "0d0a0d0a000d0a515549540a 21 11 000c c633640a cb007164 9c40 0050";

    /// The DATA_HEX frame of `clientaddr::tests` with the header inserted, computed
    /// independently (Python): total length 0x56, TCP checksum 2590.
    const DATA_PP_HEX: &str = "020000000002 020000000001 0800 \
        4500 0056 1234 4000 4006 2a58 c000020a cb00710b \
        0401 0050 11223344 aabbccdd 5018 faf0 2590 0000 \
        0d0a0d0a000d0a515549540a 21 11 000c c633640a cb007164 9c40 0050 \
        474554202f20485454502f312e300d0a0d0a";

    #[test]
    fn header_bytes() {
        assert_eq!(header_v4(CLIENT, VIP).to_vec(), hex(HEADER_HEX));
        assert_eq!(HEADER_LEN_V4, hex(HEADER_HEX).len());
    }

    #[test]
    fn insert_into_empty_ack() {
        let f = frame(ACK, 1000, 2000, &[], &[]);
        let mut b = VecBuf::new(&f, 0);
        assert_eq!(insert(&mut b, L3, CLIENT, VIP), Ok(28));
        assert_eq!(b.data(), &frame(ACK, 1000, 2000, &[], &hex(HEADER_HEX))[..]);
        assert!(valid(b.data()));
    }

    #[test]
    fn insert_into_data_segment() {
        let f = frame(ACK | PSH, 0x1122_3344, 0xaabb_ccdd, &[], b"GET / HTTP/1.0\r\n\r\n");
        let mut b = VecBuf::new(&f, 0);
        assert_eq!(insert(&mut b, L3, CLIENT, VIP), Ok(28));
        assert_eq!(b.data(), &hex(DATA_PP_HEX)[..]);
        let payload = &b.data()[L3 + 40..];
        assert_eq!(parse(payload), Some((CLIENT, VIP, 28)));
        assert_eq!(&payload[28..], b"GET / HTTP/1.0\r\n\r\n");
    }

    #[test]
    fn insert_with_options_odd_payload_and_padding() {
        // Timestamps, a 3-byte payload (odd: last word zero-padded in the checksum), and
        // Ethernet padding after it.
        let ts = hex("0101 080a 00000001 00000002");
        let mut f = frame(ACK | PSH | FIN, 9, 10, &ts, b"abc");
        f.extend_from_slice(&[0; 3]);
        let mut b = VecBuf::new(&f, 0);
        assert_eq!(insert(&mut b, L3, CLIENT, VIP), Ok(28));
        let mut want_payload = hex(HEADER_HEX);
        want_payload.extend_from_slice(b"abc");
        assert_eq!(b.data(), &frame(ACK | PSH | FIN, 9, 10, &ts, &want_payload)[..]);
        assert!(valid(b.data()));
    }

    #[test]
    fn urgent_pointer_follows_its_byte() {
        let mut f = frame(ACK | URG, 1, 2, &[], b"ab");
        f[L3 + 20 + 19] = 2;
        fix_checksums(&mut f);
        let mut b = VecBuf::new(&f, 0);
        insert(&mut b, L3, CLIENT, VIP).unwrap();
        assert_eq!(b.data()[L3 + 20 + 19], 30);
        assert!(valid(b.data()));
    }

    #[test]
    fn refusals_leave_packet_unchanged() {
        let f = frame(ACK, 1, 2, &[], b"x");
        let mut b = VecBuf::with_room(&f, 0, 128, 27);
        assert_eq!(insert(&mut b, L3, CLIENT, VIP), Err(ClientAddrError::NoBuffer));
        assert_eq!(b.data(), &f[..]);
        // A datagram already 65520 bytes long cannot take 28 more.
        let mut big = frame(ACK, 1, 2, &[], &vec![7; 65520 - 40]);
        assert!(valid(&big));
        let mut b = VecBuf::new(&big, 0);
        assert_eq!(insert(&mut b, L3, CLIENT, VIP), Err(ClientAddrError::NoRoom));
        assert_eq!(b.data(), &big[..]);
        big.truncate(L3 + 20);
        let mut b = VecBuf::new(&big, 0);
        assert_eq!(insert(&mut b, L3, CLIENT, VIP), Err(ClientAddrError::Truncated));
    }

    #[test]
    fn parse_cases() {
        let h = hex(HEADER_HEX);
        assert_eq!(parse(&h), Some((CLIENT, VIP, 28)));
        for n in 0..28 {
            assert_eq!(parse(&h[..n]), None, "cut at {n}");
        }
        // TLVs after the addresses are counted in the length and skipped.
        let mut tlv = h.clone();
        tlv[15] = 12 + 4;
        tlv.extend_from_slice(&[0x04, 0x00, 0x01, 0xaa, b'G']);
        assert_eq!(parse(&tlv), Some((CLIENT, VIP, 32)));
        for (at, v) in [(0, 0x0e), (11, 0x0b), (12, 0x20), (12, 0x11), (13, 0x21), (13, 0x12), (15, 11)] {
            let mut x = h.clone();
            x[at] = v;
            assert_eq!(parse(&x), None, "byte {at} = {v:#x}");
        }
        let other = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 200), 65535);
        assert_eq!(parse(&header_v4(other, CLIENT)), Some((other, CLIENT, 28)));
    }
}
