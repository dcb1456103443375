//! Sequence-space and timestamp shifts of FULLNAT: the real server's view of the client's stream
//! starts at rvs's own initial sequence number and, after a [`super::proxy_v2`] insertion, is
//! longer by the header; its view of the client's timestamps runs on rvs's clock. Client→RS
//! segments get `seq + delta` and `TSval + ts_delta`; RS→client segments get `ack - delta`, SACK
//! block edges (RFC 2018) `- delta` and `TSecr - ts_delta`, all modulo 2^32 (RFC 9293 §3.4,
//! RFC 7323 §3). Header-local edits: the TCP checksum is updated incrementally and first
//! fragments are accepted.

use super::{opt, tcp_only, walk_options, ClientAddrError};
use crate::buf::PacketBuf;
use crate::segment::Segment;
use crate::wire::checksum;
use crate::wire::tcp;

/// Offset of the sequence number in the TCP header (RFC 9293 §3.1).
const SEQ: usize = 4;
/// Offset of the acknowledgment number.
const ACK: usize = 8;
/// SACK option (RFC 2018 §3): kind and length ...
const SACK_BASE: usize = 2;
/// ... then blocks of two 32-bit edges. A power of two: lengths are checked with a mask.
const SACK_BLOCK: usize = 8;

/// Offset (in the TCP header) of the first timestamps option's TSval; TSecr follows it.
fn timestamp_at(h: &[u8]) -> Option<usize> {
    let mut found = None;
    walk_options(&h[tcp::MIN_HEADER_LEN..], |kind, at, len| {
        if found.is_none() && kind == opt::TIMESTAMP && len == TS_LEN {
            found = Some(tcp::MIN_HEADER_LEN + at + 2);
        }
    });
    found
}

/// Timestamps option length (RFC 7323 §3).
const TS_LEN: usize = 10;

/// The TSval of the segment's timestamps option, if it has one (parsed as a receiver would).
pub fn tsval<B: PacketBuf>(pkt: &B, seg: &Segment) -> Option<u32> {
    let h = pkt.data().get(seg.l4()..seg.payload())?;
    let at = timestamp_at(h)?;
    Some(u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]))
}

/// `seq = seq + delta (mod 2^32)` on the TCP segment `seg` of the frame.
pub fn shift_seq<B: PacketBuf>(pkt: &mut B, seg: &Segment, delta: u32) -> Result<(), ClientAddrError> {
    shift_out(pkt, seg, delta, 0)
}

/// Client → real server: `seq + delta` and, when `ts_delta` is not 0, `TSval + ts_delta` of the
/// first timestamps option; one incremental checksum update for both.
pub fn shift_out<B: PacketBuf>(pkt: &mut B, seg: &Segment, delta: u32, ts_delta: u32) -> Result<(), ClientAddrError> {
    tcp_only(seg)?;
    let h = &mut pkt.data_mut()[seg.l4()..seg.payload()];
    let mut diff = add32(h, SEQ, delta);
    if ts_delta != 0 && h.len() > tcp::MIN_HEADER_LEN {
        if let Some(at) = timestamp_at(h) {
            diff += add32(h, at, ts_delta);
        }
    }
    set_checksum(h, diff);
    Ok(())
}

/// If the ACK flag is set: `ack = ack - delta (mod 2^32)` and every SACK block edge `- delta`.
/// Without ACK the segment acknowledges nothing and is left as is (`Ok`).
///
/// Options are parsed like Linux's `tcp_parse_options`: a malformed option ends parsing (SACK
/// blocks before it are shifted, as the receiver will read them); a SACK option whose length is
/// not 2 + 8n is ignored, as the receiver ignores it.
pub fn shift_ack<B: PacketBuf>(pkt: &mut B, seg: &Segment, delta: u32) -> Result<(), ClientAddrError> {
    shift_back(pkt, seg, delta, 0)
}

/// Real server → client: as [`shift_ack`], and when `ts_delta` is not 0, `TSecr - ts_delta` of
/// the first timestamps option (the echo of a shifted TSval); one incremental checksum update.
pub fn shift_back<B: PacketBuf>(pkt: &mut B, seg: &Segment, delta: u32, ts_delta: u32) -> Result<(), ClientAddrError> {
    tcp_only(seg)?;
    if seg.flags & tcp::flags::ACK == 0 {
        return Ok(());
    }
    let h = &mut pkt.data_mut()[seg.l4()..seg.payload()];
    let mut diff = add32(h, ACK, delta.wrapping_neg());
    if h.len() > tcp::MIN_HEADER_LEN {
        // At most 4 SACK blocks fit in 40 bytes of options; collect their offsets first.
        let (mut edges, mut n, mut ts) = ([0usize; 8], 0, None);
        walk_options(&h[tcp::MIN_HEADER_LEN..], |kind, at, len| {
            if kind == opt::SACK && len >= SACK_BASE + SACK_BLOCK && (len - SACK_BASE) & (SACK_BLOCK - 1) == 0 {
                for b in 0..(len - SACK_BASE) / SACK_BLOCK {
                    if n + 2 <= edges.len() {
                        let edge = tcp::MIN_HEADER_LEN + at + SACK_BASE + b * SACK_BLOCK;
                        edges[n] = edge;
                        edges[n + 1] = edge + 4;
                        n += 2;
                    }
                }
            } else if ts.is_none() && kind == opt::TIMESTAMP && len == TS_LEN {
                ts = Some(tcp::MIN_HEADER_LEN + at + 2 + 4);
            }
        });
        for &at in &edges[..n] {
            diff += add32(h, at, delta.wrapping_neg());
        }
        if let (Some(at), true) = (ts, ts_delta != 0) {
            diff += add32(h, at, ts_delta.wrapping_neg());
        }
    }
    set_checksum(h, diff);
    Ok(())
}

/// Add `add` (mod 2^32) to the 32-bit field at offset `at` of the TCP header `h`; returns the
/// field's term of an incremental checksum update (RFC 1624). A field at an odd offset straddles
/// the checksum's 16-bit words: its term is the aligned one with its bytes swapped (the
/// one's-complement sum is byte-order independent, RFC 1071 §2(B)).
#[inline]
fn add32(h: &mut [u8], at: usize, add: u32) -> u32 {
    let old = u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let new = old.wrapping_add(add);
    h[at..at + 4].copy_from_slice(&new.to_be_bytes());
    let d = checksum::diff32(old, new);
    if at & 1 == 0 {
        d
    } else {
        let f = (d & 0xffff) + (d >> 16);
        let f = (f & 0xffff) + (f >> 16);
        u32::from((f as u16).swap_bytes())
    }
}

/// Apply the summed terms of [`add32`] (at most 10, each under 2^18: no overflow) to the TCP
/// checksum of header `h`.
#[inline]
fn set_checksum(h: &mut [u8], diff: u32) {
    let mut t = tcp::Packet::new_unchecked(h);
    let c = checksum::apply_diff(t.checksum(), diff);
    t.set_checksum(c);
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::buf::VecBuf;
    use crate::wire::tcp::flags::{ACK as F_ACK, PSH, SYN};

    /// Parse, then shift (the two steps of the pipeline).
    fn shift_seq(b: &mut VecBuf, l3: usize, delta: u32) -> Result<(), ClientAddrError> {
        super::super::testutil::shift_seq(b, l3, delta)
    }
    fn shift_ack(b: &mut VecBuf, l3: usize, delta: u32) -> Result<(), ClientAddrError> {
        super::super::testutil::shift_ack(b, l3, delta)
    }

    #[test]
    fn seq_shift_wraps() {
        let f = frame(F_ACK | PSH, 0xffff_fff0, 5, &[], b"payload");
        let mut b = VecBuf::new(&f, 0);
        shift_seq(&mut b, L3, 28).unwrap();
        assert_eq!(b.data(), &frame(F_ACK | PSH, 12, 5, &[], b"payload")[..]);
        assert!(checksums_ok(b.data()));
        shift_seq(&mut b, L3, 28u32.wrapping_neg()).unwrap();
        assert_eq!(b.data(), &f[..]);
    }

    #[test]
    fn ack_shift_wraps() {
        let f = frame(F_ACK, 7, 10, &[], &[]);
        let mut b = VecBuf::new(&f, 0);
        shift_ack(&mut b, L3, 28).unwrap();
        assert_eq!(b.data(), &frame(F_ACK, 7, 0xffff_ffee, &[], &[])[..]);
        assert!(checksums_ok(b.data()));
    }

    #[test]
    fn sack_edges_shift() {
        // NOP NOP SACK with two blocks, then NOP NOP TS: SACK edges at odd-word offsets of
        // nothing in particular; both blocks move, the timestamps do not.
        let opts = hex("0101 0512 00000010 00000100 fffffff0 00000004 0101 080a 00000010 00000020");
        let f = frame(F_ACK, 1, 0x20, &opts, &[]);
        let mut b = VecBuf::new(&f, 0);
        shift_ack(&mut b, L3, 0x10).unwrap();
        let want = hex("0101 0512 00000000 000000f0 ffffffe0 fffffff4 0101 080a 00000010 00000020");
        assert_eq!(b.data(), &frame(F_ACK, 1, 0x10, &want, &[])[..]);
        // An odd option offset: a single NOP, SACK at option byte 1, EOL-padded.
        let opts = hex("01 050a 00000064 000000c8 00");
        let mut b = VecBuf::new(&frame(F_ACK, 1, 100, &opts, b"z"), 0);
        shift_ack(&mut b, L3, 50).unwrap();
        let want = hex("01 050a 00000032 00000096 00");
        assert_eq!(b.data(), &frame(F_ACK, 1, 50, &want, b"z")[..]);
        assert!(checksums_ok(b.data()));
    }

    #[test]
    fn bad_sack_lengths_and_malformed_options() {
        // SACK length 6 (not 2 + 8n) is ignored; the ack still moves.
        let opts = hex("0506 00000064 0101");
        let mut b = VecBuf::new(&frame(F_ACK, 1, 100, &opts, &[]), 0);
        shift_ack(&mut b, L3, 1).unwrap();
        assert_eq!(b.data(), &frame(F_ACK, 1, 99, &opts, &[])[..]);
        // A SACK block, then an option running past the header: the block before it moves.
        let opts = hex("050a 00000064 000000c8 08ff 00000000");
        let mut b = VecBuf::new(&frame(F_ACK, 1, 100, &opts, &[]), 0);
        shift_ack(&mut b, L3, 1).unwrap();
        let want = hex("050a 00000063 000000c7 08ff 00000000");
        assert_eq!(b.data(), &frame(F_ACK, 1, 99, &want, &[])[..]);
    }

    #[test]
    fn no_ack_flag_no_change() {
        let f = frame(SYN, 1, 12345, &hex("020405b4"), &[]);
        let mut b = VecBuf::new(&f, 0);
        shift_ack(&mut b, L3, 28).unwrap();
        assert_eq!(b.data(), &f[..]);
    }

    #[test]
    fn first_fragment_and_padding() {
        let mut f = frame(F_ACK, 1, 2, &[], b"abcd");
        f[L3 + 6] |= 0x20; // MF: a first fragment; the header edits are still exact.
        fix_checksums(&mut f);
        f.extend_from_slice(&[0xee; 4]);
        let mut b = VecBuf::new(&f, 0);
        shift_seq(&mut b, L3, 3).unwrap();
        shift_ack(&mut b, L3, 3).unwrap();
        assert!(checksums_ok(b.data()));
        assert_eq!(b.len(), f.len(), "in-place edits keep the padding");
        assert_eq!(&b.data()[L3 + 24..L3 + 32], &hex("00000004 ffffffff")[..]);
    }

    #[test]
    fn errors_leave_packet_unchanged() {
        let mut f = frame(F_ACK, 1, 2, &[], &[]);
        f[L3 + 9] = 17;
        let mut b = VecBuf::new(&f, 0);
        assert_eq!(shift_seq(&mut b, L3, 1), Err(ClientAddrError::NotTcp));
        assert_eq!(shift_ack(&mut b, L3, 1), Err(ClientAddrError::NotTcp));
        assert_eq!(b.data(), &f[..]);
        assert_eq!(shift_seq(&mut VecBuf::new(&f[..L3 + 30], 0), L3, 1), Err(ClientAddrError::Truncated));
    }

    /// Linux's data-segment options (NOP NOP TS) and SYN options (MSS, SACK-permitted, TS,
    /// NOP, window scale): TSval moves forward on the way out, TSecr back on the way in, with
    /// the sequence numbers in the same edit; the values are written out by hand.
    #[test]
    fn timestamps_shift_with_the_sequence_numbers() {
        let l3 = |f: &[u8]| locate(f, L3).unwrap();
        let data = hex("0101 080a 00001000 00002000");
        let f = frame(F_ACK | PSH, 0x100, 200, &data, b"abc");
        let mut b = VecBuf::new(&f, 0);
        assert_eq!(tsval(&b, &l3(&f)), Some(0x1000));
        shift_out(&mut b, &l3(&f), 0x10, 0x0100_0000).unwrap();
        let want = hex("0101 080a 01001000 00002000");
        assert_eq!(b.data(), &frame(F_ACK | PSH, 0x110, 200, &want, b"abc")[..]);
        assert!(checksums_ok(b.data()));
        let back = frame(F_ACK, 300, 0x110, &hex("0101 080a 00005000 01001000"), &[]);
        let mut b = VecBuf::new(&back, 0);
        shift_back(&mut b, &l3(&back), 0x10, 0x0100_0000).unwrap();
        assert_eq!(b.data(), &frame(F_ACK, 300, 0x100, &hex("0101 080a 00005000 00001000"), &[])[..]);
        assert!(checksums_ok(b.data()));
        let syn_opts = hex("020405b4 0402 080a fffffff0 00000000 01 030307");
        let syn = frame(SYN, 0xffff_fffe, 0, &syn_opts, &[]);
        let mut b = VecBuf::new(&syn, 0);
        assert_eq!(tsval(&b, &l3(&syn)), Some(0xffff_fff0));
        shift_out(&mut b, &l3(&syn), 3, 0x20).unwrap();
        let want = hex("020405b4 0402 080a 00000010 00000000 01 030307");
        assert_eq!(b.data(), &frame(SYN, 1, 0, &want, &[])[..]);
        assert!(checksums_ok(b.data()));
        // No timestamps option: only the sequence number moves.
        let plain = frame(F_ACK, 5, 6, &[], &[]);
        let mut b = VecBuf::new(&plain, 0);
        assert_eq!(tsval(&b, &l3(&plain)), None);
        shift_out(&mut b, &l3(&plain), 1, 0x20).unwrap();
        assert_eq!(b.data(), &frame(F_ACK, 6, 6, &[], &[])[..]);
    }
}
