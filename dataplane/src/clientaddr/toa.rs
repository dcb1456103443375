//! TOA ("TCP Option Address"): the client's address in a TCP option, in the format of Alibaba's
//! and DPVS's `toa` kernel module — kind 254, length 8, then the client port (2 bytes) and IPv4
//! address (4 bytes), both in network order. The RS module reads it from the ACK that completes
//! the handshake (when the socket is created), so rvs puts it into the first client→RS ACK.
//!
//! Kind 254 is the shared experimental kind of RFC 4727/RFC 6994; the `toa` module predates
//! RFC 6994's experiment identifiers and recognises its option by kind and length alone.

use super::{edit_tcp_header, fits, insert_after_tcp_header, tcp_only, walk_options, ClientAddrError, Walk};
use super::{opt, TCP_MAX_HEADER_LEN};
use crate::buf::PacketBuf;
use crate::segment::Segment;
use crate::wire::tcp;
use std::net::{Ipv4Addr, SocketAddrV4};

/// TCP option kind of TOA (RFC 4727 experimental kind, as the `toa` module uses it).
pub const TOA_KIND: u8 = 254;
/// Option length: kind, length, port (2), IPv4 address (4).
pub const TOA_LEN: usize = 8;

/// The option bytes for `client`.
fn encode(client: SocketAddrV4) -> [u8; TOA_LEN] {
    let mut o = [0u8; TOA_LEN];
    o[0] = TOA_KIND;
    o[1] = TOA_LEN as u8;
    o[2..4].copy_from_slice(&client.port().to_be_bytes());
    o[4..8].copy_from_slice(&client.ip().octets());
    o
}

/// Offsets (within the options) of the TOA options already there, at most 5 fit in 40 bytes.
fn existing(opts: &[u8]) -> ([usize; 5], usize, Walk) {
    let (mut at, mut n) = ([0usize; 5], 0);
    let walk = walk_options(opts, |kind, off, len| {
        if kind == TOA_KIND && len == TOA_LEN && n < at.len() {
            at[n] = off;
            n += 1;
        }
    });
    (at, n, walk)
}

/// Add a TOA option carrying `client` to the TCP segment `seg` of the frame (`seg` follows the
/// growth).
///
/// The option goes after the existing options, before the payload: the header grows by 8 (data
/// offset + 2), the payload moves back by 8, the IPv4 total length grows by 8, Ethernet padding
/// is dropped, checksums are updated. If the options end with End-of-option-list, that byte and
/// the padding after it become NOPs so the receiver's parser reaches the new option.
///
/// If the segment already carries TOA options (a client trying to pass a forged address), they
/// are overwritten in place with `client` and nothing grows.
///
/// Errors (packet unchanged): `NoRoom` when the options are already over 32 bytes, malformed,
/// or the datagram would exceed 65535 bytes; `NoBuffer` without tailroom; `NotTcp` for UDP and
/// fragments.
pub fn insert<B: PacketBuf>(pkt: &mut B, seg: &mut Segment, client: SocketAddrV4) -> Result<(), ClientAddrError> {
    tcp_only(seg)?;
    if seg.partial() {
        return Err(ClientAddrError::NotTcp);
    }
    let opts_at = seg.l4() + tcp::MIN_HEADER_LEN;
    let (found, n_found, walk) = existing(&pkt.data()[opts_at..seg.payload()]);
    if walk == Walk::Malformed {
        return Err(ClientAddrError::NoRoom);
    }
    let option = encode(client);
    if n_found > 0 {
        edit_tcp_header(pkt, seg, |h| {
            for &off in &found[..n_found] {
                let at = tcp::MIN_HEADER_LEN + off;
                h[at..at + TOA_LEN].copy_from_slice(&option);
            }
        });
        return Ok(());
    }
    if seg.l4_hl() + TOA_LEN > TCP_MAX_HEADER_LEN || !fits(seg, TOA_LEN) {
        return Err(ClientAddrError::NoRoom);
    }
    let old_hl = seg.l4_hl();
    insert_after_tcp_header(pkt, seg, &option, |h| {
        if let Walk::Eol(off) = walk {
            h[tcp::MIN_HEADER_LEN + off..old_hl].fill(opt::NOP);
        }
        tcp::Packet::new_unchecked(h).set_header_len(old_hl + TOA_LEN);
    })?;
    seg.grew(TOA_LEN, 0);
    Ok(())
}

/// The client address of the first TOA option in `tcp_options` (the TCP header bytes after the
/// fixed 20), parsed as a receiver would: option by option, stopping at End-of-option-list or a
/// malformed length. Kind 254 options of another length (other RFC 6994 experiments) are skipped.
pub fn parse(tcp_options: &[u8]) -> Option<SocketAddrV4> {
    let mut found = None;
    walk_options(tcp_options, |kind, at, len| {
        if found.is_none() && kind == TOA_KIND && len == TOA_LEN {
            let o = &tcp_options[at..at + TOA_LEN];
            let port = u16::from_be_bytes([o[2], o[3]]);
            found = Some(SocketAddrV4::new(Ipv4Addr::new(o[4], o[5], o[6], o[7]), port));
        }
    });
    found
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::buf::VecBuf;
    use crate::wire::tcp::flags::{ACK, PSH};

    /// Parse, then insert (the two steps of the pipeline).
    fn insert(b: &mut VecBuf, l3: usize, client: SocketAddrV4) -> Result<(), ClientAddrError> {
        toa_insert(b, l3, client)
    }

    /// The bare ACK of `clientaddr::tests::ACK_HEX` with TOA for 198.51.100.10:40000, computed
    /// independently (Python): total length 0x30, data offset 7, TCP checksum 11ed.
    const ACK_TOA_HEX: &str = "020000000002 020000000001 0800 \
        4500 0030 1234 4000 4006 2a7e c000020a cb00710b \
        0401 0050 11223344 aabbccdd 7010 faf0 11ed 0000 \
        fe08 9c40 c633 640a";

    fn tcp_options(f: &[u8]) -> &[u8] {
        let thl = ((f[L3 + 20 + 12] >> 4) as usize) * 4;
        &f[L3 + 40..L3 + 20 + thl]
    }

    #[test]
    fn insert_into_bare_ack() {
        let mut b = VecBuf::new(&frame(ACK, 0x1122_3344, 0xaabb_ccdd, &[], &[]), 0);
        insert(&mut b, L3, CLIENT).unwrap();
        assert_eq!(b.data(), &hex(ACK_TOA_HEX)[..]);
        assert!(valid(b.data()));
        assert_eq!(parse(tcp_options(b.data())), Some(CLIENT));
    }

    #[test]
    fn insert_after_timestamps_moves_payload() {
        // NOP NOP TS(10): 12 bytes of options, and 5 bytes of payload behind them.
        let ts = hex("0101 080a 0a1b2c3d 00c0ffee");
        let payload = b"hello";
        let before = frame(ACK | PSH, 5, 6, &ts, payload);
        let mut b = VecBuf::new(&before, 0);
        insert(&mut b, L3, CLIENT).unwrap();
        let mut opts = ts.clone();
        opts.extend_from_slice(&encode(CLIENT));
        assert_eq!(b.data(), &frame(ACK | PSH, 5, 6, &opts, payload)[..]);
        assert!(valid(b.data()));
        assert_eq!(b.len(), before.len() + 8);
    }

    #[test]
    fn eol_becomes_nop() {
        // MSS, then End-of-option-list and padding: the TOA would be invisible after EOL.
        let mut b = VecBuf::new(&frame(ACK, 1, 2, &hex("020405b4 00000000"), &[]), 0);
        insert(&mut b, L3, CLIENT).unwrap();
        let mut opts = hex("020405b4 01010101");
        opts.extend_from_slice(&encode(CLIENT));
        assert_eq!(b.data(), &frame(ACK, 1, 2, &opts, &[])[..]);
        assert_eq!(parse(tcp_options(b.data())), Some(CLIENT));
    }

    #[test]
    fn refused_when_options_full_or_malformed() {
        // 36 bytes of options (9 × NOP NOP NOP NOP): 36 + 8 > 40.
        let full = frame(ACK, 1, 2, &[1; 36], b"x");
        let mut b = VecBuf::new(&full, 0);
        assert_eq!(insert(&mut b, L3, CLIENT), Err(ClientAddrError::NoRoom));
        assert_eq!(b.data(), &full[..]);
        // 32 bytes still fit, exactly reaching the 60-byte header.
        let mut b = VecBuf::new(&frame(ACK, 1, 2, &[1; 32], b"x"), 0);
        insert(&mut b, L3, CLIENT).unwrap();
        assert!(valid(b.data()));
        assert_eq!(b.data()[L3 + 20 + 12] >> 4, 15);
        // An option whose length runs past the header.
        let bad = frame(ACK, 1, 2, &hex("0101 0808 00000000"), &[]);
        let mut b = VecBuf::new(&bad, 0);
        assert_eq!(insert(&mut b, L3, CLIENT), Err(ClientAddrError::NoRoom));
        assert_eq!(b.data(), &bad[..]);
    }

    #[test]
    fn no_tailroom_is_no_buffer() {
        let f = frame(ACK, 1, 2, &[], &[]);
        let mut b = VecBuf::with_room(&f, 0, 128, 7);
        assert_eq!(insert(&mut b, L3, CLIENT), Err(ClientAddrError::NoBuffer));
        assert_eq!(b.data(), &f[..]);
        let mut b = VecBuf::with_room(&f, 0, 128, 8);
        insert(&mut b, L3, CLIENT).unwrap();
        assert!(valid(b.data()));
    }

    #[test]
    fn ethernet_padding_is_trimmed() {
        // A 54-byte bare ACK is padded to the 60-byte Ethernet minimum.
        let mut f = frame(ACK, 0x1122_3344, 0xaabb_ccdd, &[], &[]);
        f.extend_from_slice(&[0; 6]);
        let mut b = VecBuf::new(&f, 0);
        insert(&mut b, L3, CLIENT).unwrap();
        assert_eq!(b.data(), &hex(ACK_TOA_HEX)[..]);
        // Padding longer than the option: reused, the rest trimmed.
        let mut f = frame(ACK, 0x1122_3344, 0xaabb_ccdd, &[], &[]);
        f.extend_from_slice(&[0x55; 20]);
        let mut b = VecBuf::with_room(&f, 0, 0, 0);
        insert(&mut b, L3, CLIENT).unwrap();
        assert_eq!(b.data(), &hex(ACK_TOA_HEX)[..]);
    }

    #[test]
    fn forged_toa_is_overwritten() {
        let forged = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 99), 1);
        let mut opts = vec![1, 1, 1, 1];
        opts.extend_from_slice(&encode(forged));
        let mut b = VecBuf::new(&frame(ACK, 1, 2, &opts, b"abc"), 0);
        insert(&mut b, L3, CLIENT).unwrap();
        let mut want = vec![1, 1, 1, 1];
        want.extend_from_slice(&encode(CLIENT));
        assert_eq!(b.data(), &frame(ACK, 1, 2, &want, b"abc")[..]);
    }

    #[test]
    fn fragments_and_other_protocols_refused() {
        let mut f = frame(ACK, 1, 2, &[], b"abcd");
        f[L3 + 6] |= 0x20; // MF
        let mut b = VecBuf::new(&f, 0);
        assert_eq!(insert(&mut b, L3, CLIENT), Err(ClientAddrError::NotTcp));
        assert_eq!(b.data(), &f[..]);
    }

    #[test]
    fn parse_cases() {
        assert_eq!(parse(&encode(CLIENT)), Some(CLIENT));
        assert_eq!(parse(&[]), None);
        // After EOL the option is not parsed.
        let mut o = vec![0, 0, 0, 0];
        o.extend_from_slice(&encode(CLIENT));
        assert_eq!(parse(&o), None);
        // A kind-254 option of another length is another experiment.
        assert_eq!(parse(&hex("fe06 1234 5678 0101")), None);
        // Truncated TOA.
        assert_eq!(parse(&encode(CLIENT)[..7]), None);
        let port0 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 1), 0);
        assert_eq!(parse(&encode(port0)), Some(port0));
    }
}
