//! Telling the real server who the client is, in FULLNAT mode.
//!
//! FULLNAT rewrites client→VIP into LIP→RIP, so the real server (RS) sees the balancer's local
//! address instead of the client's. Two standard ways carry the client address along:
//!
//! - [`toa`]: a TCP option (kind 254, the format of Alibaba's/DPVS's `toa` kernel module) put
//!   into the ACK that completes the handshake; the RS kernel module reads it when it creates
//!   the socket. The stream is not changed, so no sequence numbers move.
//! - [`proxy_v2`]: the PROXY protocol v2 header (haproxy's `proxy-protocol.txt` §2.2) put in
//!   front of the first payload byte of the client→RS stream. The stream grows, so every later
//!   client→RS sequence number moves up and every RS→client acknowledgment (and SACK edge)
//!   moves down by the header length: [`seq`].
//!
//! [`mss`] clamps the MSS option of SYNs so that grown segments still fit the path MTU.
//!
//! Every function takes the whole frame and its parsed [`Segment`] (built once by L4 dispatch; an
//! insertion updates it), keeps the IPv4 total length, IPv4 header checksum and TCP checksum right, and on `Err` leaves the packet
//! byte-for-byte unchanged. Checksums are updated incrementally (RFC 1624), also after an
//! insertion: inserted blocks have even length at an even offset of the segment, so the 16-bit
//! word alignment of the payload is kept and the payload need not be summed again. A segment
//! that arrives with a wrong checksum therefore still leaves with a wrong one (the RS drops it,
//! as it would have without the balancer), and one with a right checksum leaves with a right one.

pub mod mss;
pub mod proxy_v2;
pub mod seq;
pub mod toa;

use crate::buf::PacketBuf;
use crate::segment::Segment;
use crate::wire::{checksum, ipv4, tcp};

/// Why a client-address operation was refused. The packet is then unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddrError {
    /// The TCP options would exceed 40 bytes (data offset ≤ 15, RFC 9293 §3.1), the IPv4 total
    /// length would exceed 65535, or the existing options are malformed so there is no safe
    /// place to add one.
    NoRoom,
    /// Not something these functions edit: not IPv4, not TCP, or an IP fragment other than a
    /// first one (insertions refuse first fragments too: the segment is not all here).
    NotTcp,
    /// Headers cut short or inconsistent: IPv4 header or total length beyond the frame, TCP
    /// header (data offset) beyond the IPv4 total length.
    Truncated,
    /// The buffer has no tailroom for the bytes to insert (after reusing Ethernet padding).
    NoBuffer,
}

impl std::fmt::Display for ClientAddrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAddrError::NoRoom => "no room for the client address in the TCP header or IP datagram",
            ClientAddrError::NotTcp => "not an unfragmented IPv4 TCP segment",
            ClientAddrError::Truncated => "truncated or inconsistent IPv4/TCP headers",
            ClientAddrError::NoBuffer => "no tailroom in the packet buffer",
        })
    }
}

impl std::error::Error for ClientAddrError {}

/// TCP option kinds used here (IANA "TCP Option Kind Numbers").
pub(crate) mod opt {
    /// End of option list (RFC 9293 §3.1).
    pub const EOL: u8 = 0;
    /// No-operation (RFC 9293 §3.1).
    pub const NOP: u8 = 1;
    /// Maximum segment size, length 4 (RFC 9293 §3.7.1).
    pub const MSS: u8 = 2;
    /// SACK blocks, length 2 + 8n (RFC 2018 §3).
    pub const SACK: u8 = 5;
    /// Timestamps, length 10: TSval, TSecr (RFC 7323 §3).
    pub const TIMESTAMP: u8 = 8;
}

/// Largest TCP header: data offset 15 (RFC 9293 §3.1), so at most 40 bytes of options.
pub(crate) const TCP_MAX_HEADER_LEN: usize = 60;

/// Largest IPv4 datagram (16-bit total length, RFC 791 §3.1).
const IP_MAX_TOTAL_LEN: usize = 65535;

/// The segment an operation edits: TCP, and whole (not a fragment) where the operation grows it.
fn tcp_only(seg: &Segment) -> Result<(), ClientAddrError> {
    if seg.is_tcp() {
        Ok(())
    } else {
        Err(ClientAddrError::NotTcp)
    }
}

/// How a walk over TCP options ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Every byte was an option or a NOP.
    Complete,
    /// An End-of-option-list at this offset; the rest is padding.
    Eol(usize),
    /// An option whose length byte is missing, below 2 or past the end. Like Linux's
    /// `tcp_parse_options`, parsing stops there; options before it were reported.
    Malformed,
}

/// Call `f(kind, offset, len)` for each length-prefixed option of `opts` (the TCP header bytes
/// after the fixed 20), in order. NOPs are skipped. Never reads out of bounds: `offset + len ≤
/// opts.len()` and `len ≥ 2` for every reported option.
pub(crate) fn walk_options(opts: &[u8], mut f: impl FnMut(u8, usize, usize)) -> Walk {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            opt::EOL => return Walk::Eol(i),
            opt::NOP => i += 1,
            kind => {
                let Some(&len) = opts.get(i + 1) else { return Walk::Malformed };
                let len = len as usize;
                if len < 2 || i + len > opts.len() {
                    return Walk::Malformed;
                }
                f(kind, i, len);
                i += len;
            }
        }
    }
    Walk::Complete
}

/// Edit bytes of the TCP header in place (no length change) and update the TCP checksum
/// incrementally from the sums of the header before and after. The header starts at an even
/// offset of the segment, so its words are the checksum's words; the checksum field itself is
/// not touched by `edit` and cancels out.
pub(crate) fn edit_tcp_header<B: PacketBuf>(pkt: &mut B, seg: &Segment, edit: impl FnOnce(&mut [u8])) {
    let header = &mut pkt.data_mut()[seg.l4()..seg.payload()];
    let before = checksum::data(header);
    edit(header);
    let after = checksum::data(header);
    let mut t = tcp::Packet::new_unchecked(header);
    let c = checksum::update16(t.checksum(), before, after);
    t.set_checksum(c);
}

/// Insert `bytes` (even length) right after the TCP header, i.e. in front of the payload, then
/// let `edit_header` adjust the TCP header, now `seg.l4_hl() + bytes.len()` long with `bytes` at
/// its end (for a TCP option; for a payload insertion the closure leaves those bytes alone).
/// Updates the IPv4 total length and both checksums. The caller has checked that the segment is
/// complete (`!seg.partial()`) and that the grown datagram fits 65535 bytes. `seg` is left as it
/// was: the caller says with [`Segment::grew`] whether the bytes joined the header or the payload.
///
/// Ethernet padding after the datagram is reused as room, and what is left of it is trimmed, so
/// the frame ends with the datagram. `Err(NoBuffer)` (packet unchanged) without enough tailroom.
pub(crate) fn insert_after_tcp_header<B: PacketBuf>(
    pkt: &mut B,
    seg: &Segment,
    bytes: &[u8],
    edit_header: impl FnOnce(&mut [u8]),
) -> Result<(), ClientAddrError> {
    let n = bytes.len();
    debug_assert!(n & 1 == 0 && !seg.partial() && seg.ip_total() + n <= IP_MAX_TOTAL_LEN);
    let (tcp_at, at, end) = (seg.l4(), seg.payload(), seg.end());
    // The covered data before: the header and the pseudo-header length. The payload keeps its
    // word alignment (it moves by an even amount), so its contribution does not change.
    let old_len = seg.l4_len() as u16;
    let old_sum = checksum::combine(&[checksum::data(&pkt.data()[tcp_at..at]), old_len]);

    let pad = pkt.len() - end;
    if pad < n {
        if pkt.append(n - pad).is_none() {
            return Err(ClientAddrError::NoBuffer);
        }
    } else if pad > n {
        // Cannot fail: the frame is longer than `pad - n`.
        let trimmed = pkt.trim(pad - n);
        debug_assert!(trimmed);
    }
    let frame = pkt.data_mut();
    frame.copy_within(at..end, at + n);
    frame[at..at + n].copy_from_slice(bytes);
    edit_header(&mut frame[tcp_at..at + n]);

    let new_len = old_len + n as u16;
    let new_sum = checksum::combine(&[checksum::data(&frame[tcp_at..at + n]), new_len]);
    let mut t = tcp::Packet::new_unchecked(&mut frame[tcp_at..]);
    let c = checksum::update16(t.checksum(), old_sum, new_sum);
    t.set_checksum(c);

    let mut ip = ipv4::Packet::new_unchecked(&mut frame[seg.l3()..]);
    let (old_total, new_total) = (seg.ip_total() as u16, (seg.ip_total() + n) as u16);
    ip.set_total_len(new_total);
    let c = checksum::update16(ip.checksum(), old_total, new_total);
    ip.set_checksum(c);
    Ok(())
}

/// Whether the datagram can grow by `n` bytes.
pub(crate) fn fits(seg: &Segment, n: usize) -> bool {
    seg.ip_total() + n <= IP_MAX_TOTAL_LEN
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Byte-level fixtures: Ethernet + IPv4 + TCP frames after FULLNAT (LIP → RIP), with
    //! checksums from an implementation of RFC 1071 independent of `wire::checksum`; and each
    //! operation behind the parse that L4 dispatch does in the pipeline.
    use super::{mss, proxy_v2, seq, toa, ClientAddrError};
    use crate::buf::PacketBuf;
    use crate::segment::Segment;
    use crate::wire::ipv4;
    use std::net::{Ipv4Addr, SocketAddrV4};

    /// The segment of the frame, refused as the operations refuse it: not TCP (or a later
    /// fragment) `NotTcp`, headers cut short `Truncated`.
    pub fn locate(frame: &[u8], l3: usize) -> Result<Segment, ClientAddrError> {
        let bytes = frame.get(l3..).ok_or(ClientAddrError::Truncated)?;
        let ip = ipv4::Packet::new_checked(bytes).map_err(|e| match e {
            crate::wire::Error::BadVersion => ClientAddrError::NotTcp,
            _ => ClientAddrError::Truncated,
        })?;
        if ip.protocol() != ipv4::protocol::TCP || ip.frag_offset() != 0 {
            return Err(ClientAddrError::NotTcp);
        }
        Segment::parse_after(&ip, l3).map_err(|_| ClientAddrError::Truncated)
    }
    pub fn toa_insert<B: PacketBuf>(b: &mut B, l3: usize, client: SocketAddrV4) -> Result<(), ClientAddrError> {
        let mut seg = locate(b.data(), l3)?;
        toa::insert(b, &mut seg, client)
    }
    pub fn proxy_insert<B: PacketBuf>(
        b: &mut B,
        l3: usize,
        client: SocketAddrV4,
        dst: SocketAddrV4,
    ) -> Result<usize, ClientAddrError> {
        let mut seg = locate(b.data(), l3)?;
        proxy_v2::insert(b, &mut seg, client, dst)
    }
    pub fn shift_seq<B: PacketBuf>(b: &mut B, l3: usize, delta: u32) -> Result<(), ClientAddrError> {
        seq::shift_seq(b, &locate(b.data(), l3)?, delta)
    }
    pub fn shift_ack<B: PacketBuf>(b: &mut B, l3: usize, delta: u32) -> Result<(), ClientAddrError> {
        seq::shift_ack(b, &locate(b.data(), l3)?, delta)
    }
    pub fn mss_clamp<B: PacketBuf>(b: &mut B, l3: usize, by: u16) -> Result<bool, ClientAddrError> {
        mss::clamp(b, &locate(b.data(), l3)?, by)
    }

    pub const L3: usize = 14;
    pub const LIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    pub const RIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
    pub const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 40000);
    pub const VIP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 100), 80);

    /// RFC 1071 §1 as written: 16-bit big-endian words (an odd byte padded with zero) added in
    /// 32 bits, carries folded, one's complement taken.
    pub fn rfc1071(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < bytes.len() {
            sum += ((bytes[i] as u32) << 8) | bytes[i + 1] as u32;
            i += 2;
        }
        if i < bytes.len() {
            sum += (bytes[i] as u32) << 8;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// The pseudo-header (RFC 793 §3.1) followed by the segment.
    fn with_pseudo(src: &[u8], dst: &[u8], seg: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(src);
        v.extend_from_slice(dst);
        v.extend_from_slice(&[0, 6]);
        v.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        v.extend_from_slice(seg);
        v
    }

    /// A frame LIP:1025 → RIP:80 with `flags`, `seq`, `ack`, options (a multiple of 4 long) and
    /// payload, window 64240, both checksums computed here.
    pub fn frame(flags: u8, seq: u32, ack: u32, options: &[u8], payload: &[u8]) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
        let total = 20 + 20 + options.len() + payload.len();
        f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&LIP.octets());
        f.extend_from_slice(&RIP.octets());
        let ck = rfc1071(&f[L3..L3 + 20]);
        f[L3 + 10..L3 + 12].copy_from_slice(&ck.to_be_bytes());
        f.extend_from_slice(&[0x04, 0x01, 0x00, 0x50]);
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&ack.to_be_bytes());
        f.extend_from_slice(&[(((20 + options.len()) / 4) << 4) as u8, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
        f.extend_from_slice(options);
        f.extend_from_slice(payload);
        let t = L3 + 20;
        let ck = rfc1071(&with_pseudo(&LIP.octets(), &RIP.octets(), &f[t..]));
        f[t + 16..t + 18].copy_from_slice(&ck.to_be_bytes());
        f
    }

    /// Recompute both checksums of a frame with a 20-byte IPv4 header at L3 (for the fuzz test,
    /// which mutates fields and wants valid checksums again).
    pub fn fix_checksums(f: &mut [u8]) {
        let ihl = ((f[L3] & 0x0f) as usize) * 4;
        let total = u16::from_be_bytes([f[L3 + 2], f[L3 + 3]]) as usize;
        f[L3 + 10..L3 + 12].fill(0);
        let ck = rfc1071(&f[L3..L3 + ihl]);
        f[L3 + 10..L3 + 12].copy_from_slice(&ck.to_be_bytes());
        let t = L3 + ihl;
        f[t + 16..t + 18].fill(0);
        let ck = rfc1071(&with_pseudo(&f[L3 + 12..L3 + 16], &f[L3 + 16..L3 + 20], &f[t..L3 + total]));
        f[t + 16..t + 18].copy_from_slice(&ck.to_be_bytes());
    }

    /// Both checksums verify (a correct sum is all ones, so its complement is zero), over the
    /// datagram up to its total length.
    pub fn checksums_ok(f: &[u8]) -> bool {
        let ihl = ((f[L3] & 0x0f) as usize) * 4;
        let total = u16::from_be_bytes([f[L3 + 2], f[L3 + 3]]) as usize;
        let t = L3 + ihl;
        L3 + total <= f.len()
            && rfc1071(&f[L3..L3 + ihl]) == 0
            && rfc1071(&with_pseudo(&f[L3 + 12..L3 + 16], &f[L3 + 16..L3 + 20], &f[t..L3 + total])) == 0
    }

    /// [`checksums_ok`], and the frame ends exactly at the IPv4 total length (no stale padding).
    pub fn valid(f: &[u8]) -> bool {
        let total = u16::from_be_bytes([f[L3 + 2], f[L3 + 3]]) as usize;
        f.len() == L3 + total && checksums_ok(f)
    }

    pub fn hex(s: &str) -> Vec<u8> {
        crate::wire::hex(s)
    }

    /// xorshift64: deterministic pseudo-random bytes for the fuzz-ish tests.
    pub struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use crate::buf::VecBuf;
    use crate::wire::tcp::flags::{ACK, PSH, SYN};

    /// Frames computed outside Rust (Python, the same RFC 1071 arithmetic), pinning the
    /// fixture builder and its checksum implementation to known bytes.
    pub const ACK_HEX: &str = "020000000002 020000000001 0800 \
        4500 0028 1234 4000 4006 2a86 c000020a cb00710b \
        0401 0050 11223344 aabbccdd 5010 faf0 f67c 0000";
    pub const DATA_HEX: &str = "020000000002 020000000001 0800 \
        4500 003a 1234 4000 4006 2a74 c000020a cb00710b \
        0401 0050 11223344 aabbccdd 5018 faf0 17c3 0000 \
        474554202f20485454502f312e300d0a0d0a";

    #[test]
    fn fixture_builder_matches_independent_bytes() {
        assert_eq!(frame(ACK, 0x1122_3344, 0xaabb_ccdd, &[], &[]), hex(ACK_HEX));
        assert_eq!(frame(ACK | PSH, 0x1122_3344, 0xaabb_ccdd, &[], b"GET / HTTP/1.0\r\n\r\n"), hex(DATA_HEX));
        assert!(valid(&hex(ACK_HEX)) && valid(&hex(DATA_HEX)));
        // And against the crate's own verifier, which these tests do not otherwise rely on.
        let f = hex(DATA_HEX);
        let ip = ipv4::Packet::new_checked(&f[L3..]).unwrap();
        assert!(ip.verify_checksum());
        assert!(tcp::Packet::new_checked(ip.payload()).unwrap().verify_checksum(LIP, RIP));
    }

    #[test]
    fn locate_validates() {
        let f = frame(SYN, 1, 0, &[2, 4, 5, 0xb4], &[]);
        let s = locate(&f, L3).unwrap();
        assert_eq!((s.ip_hl(), s.ip_total(), s.l4_hl(), s.partial()), (20, 44, 24, false));
        assert_eq!(locate(&f, 100).unwrap_err(), ClientAddrError::Truncated);
        assert_eq!(locate(&f, usize::MAX).unwrap_err(), ClientAddrError::Truncated);
        for n in 0..f.len() {
            assert!(locate(&f[..n], L3).is_err(), "cut at {n}");
        }
        let mut udp = f.clone();
        udp[L3 + 9] = 17;
        assert_eq!(locate(&udp, L3).unwrap_err(), ClientAddrError::NotTcp);
        let mut v6 = f.clone();
        v6[L3] = 0x65;
        assert_eq!(locate(&v6, L3).unwrap_err(), ClientAddrError::NotTcp);
        let mut later_frag = f.clone();
        later_frag[L3 + 7] = 1;
        assert_eq!(locate(&later_frag, L3).unwrap_err(), ClientAddrError::NotTcp);
        let mut first_frag = f.clone();
        first_frag[L3 + 6] = 0x20;
        assert!(locate(&first_frag, L3).unwrap().partial());
        // Data offset 15 claims 60 bytes; the datagram holds 24.
        let mut big_off = f.clone();
        big_off[L3 + 20 + 12] = 0xf0;
        assert_eq!(locate(&big_off, L3).unwrap_err(), ClientAddrError::Truncated);
    }

    #[test]
    fn walk_options_kinds() {
        let mut seen = Vec::new();
        let opts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 2, 4, 5, 0xb4, 0, 9, 9, 9];
        assert_eq!(walk_options(&opts, |k, at, len| seen.push((k, at, len))), Walk::Eol(16));
        assert_eq!(seen, vec![(8, 2, 10), (2, 12, 4)]);
        assert_eq!(walk_options(&[1, 1, 1, 1], |_, _, _| panic!()), Walk::Complete);
        assert_eq!(walk_options(&[], |_, _, _| panic!()), Walk::Complete);
        assert_eq!(walk_options(&[2], |_, _, _| panic!()), Walk::Malformed);
        assert_eq!(walk_options(&[2, 1, 0, 0], |_, _, _| panic!()), Walk::Malformed);
        assert_eq!(walk_options(&[2, 5, 0, 0], |_, _, _| panic!()), Walk::Malformed);
        let mut n = 0;
        assert_eq!(walk_options(&[2, 4, 5, 0xb4, 3, 0, 1, 1], |_, _, _| n += 1), Walk::Malformed);
        assert_eq!(n, 1, "options before the bad one are still reported");
    }

    #[test]
    fn padding_is_reused_then_trimmed() {
        // 30 bytes of padding after a bare ACK: 28 are used by the insertion, 2 trimmed; with no
        // tailroom at all the insertion still works.
        let mut f = frame(ACK, 7, 9, &[], &[]);
        f.extend_from_slice(&[0xee; 30]);
        let mut b = VecBuf::with_room(&f, 0, 0, 0);
        let s = locate(b.data(), L3).unwrap();
        insert_after_tcp_header(&mut b, &s, &[0xab; 28], |_| {}).unwrap();
        assert!(valid(b.data()));
        assert_eq!(&b.data()[L3 + 40..], &[0xab; 28]);
        // 4 bytes of padding and no tailroom: refused, unchanged.
        let mut f = frame(ACK, 7, 9, &[], &[]);
        f.extend_from_slice(&[0xee; 4]);
        let mut b = VecBuf::with_room(&f, 0, 0, 0);
        let s = locate(b.data(), L3).unwrap();
        assert_eq!(insert_after_tcp_header(&mut b, &s, &[0xab; 8], |_| {}), Err(ClientAddrError::NoBuffer));
        assert_eq!(b.data(), &f[..]);
    }

    /// Fuzz-ish: random bytes, and valid frames with random mutations, through every function.
    /// Nothing panics, `Err` leaves the bytes unchanged, and `Ok` on a frame whose checksums
    /// were valid leaves them valid with no padding behind the datagram.
    #[test]
    fn random_input_never_panics_and_err_is_atomic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let client = CLIENT;
        // Per function: successful changes to frames with valid checksums (the checked path).
        let mut valid_ok = [0usize; 5];
        for round in 0..10_000 {
            let mut f: Vec<u8>;
            let mut checksums_valid = false;
            if round % 2 == 0 {
                let len = rng.below(120);
                f = (0..len).map(|_| rng.next() as u8).collect();
                if len > L3 && rng.below(2) == 0 {
                    f[L3] = 0x45;
                }
                if len > L3 + 9 && rng.below(2) == 0 {
                    f[L3 + 9] = 6;
                }
            } else {
                let nopts = rng.below(11) * 4;
                let mut opts: Vec<u8> =
                    (0..nopts).map(|_| [0, 1, 2, 4, 5, 10, 254, 8, rng.next() as u8][rng.below(9)]).collect();
                if nopts > 0 && rng.below(3) == 0 {
                    // A well-formed MSS option first, so clamping has something to do.
                    opts[..4].copy_from_slice(&[2, 4, rng.next() as u8, rng.next() as u8]);
                }
                let payload: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
                f = frame(rng.next() as u8, rng.next() as u32, rng.next() as u32, &opts, &payload);
                if rng.below(4) == 0 {
                    let at = L3 + rng.below(f.len() - L3);
                    f[at] = rng.next() as u8;
                }
                let total = u16::from_be_bytes([f[L3 + 2], f[L3 + 3]]) as usize;
                if f[L3] == 0x45 && total >= 40 && total + L3 <= f.len() && f[L3 + 20 + 12] >> 4 >= 5 {
                    let thl = ((f[L3 + 20 + 12] >> 4) as usize) * 4;
                    if 20 + thl <= total {
                        fix_checksums(&mut f);
                        checksums_valid = true;
                    }
                }
                let pad = rng.below(3) * rng.below(40);
                f.extend((0..pad).map(|_| rng.next() as u8));
            }
            let tailroom = [0, 8, 28, 512][rng.below(4)];
            let l3 = if rng.below(8) == 0 { rng.below(40) } else { L3 };
            let delta = [0, 28, 0xffff_ffff, 0x8000_0001, rng.next() as u32][rng.below(5)];
            let check = |name: &str, before: &[u8], after: &VecBuf, ok: bool| {
                if !ok {
                    assert_eq!(after.data(), before, "{name} changed the packet on Err");
                } else if checksums_valid && l3 == L3 {
                    // A grown datagram must have lost its padding; in-place edits keep it.
                    let grown = after.data()[L3 + 2..L3 + 4] != before[L3 + 2..L3 + 4];
                    let good = if grown { valid(after.data()) } else { checksums_ok(after.data()) };
                    assert!(good, "{name} broke a valid frame: {after:?}");
                }
            };
            let run = |b: &mut VecBuf, which: usize| -> bool {
                match which {
                    0 => toa_insert(b, l3, client).is_ok(),
                    1 => proxy_insert(b, l3, client, VIP).is_ok(),
                    2 => shift_seq(b, l3, delta).is_ok(),
                    3 => shift_ack(b, l3, delta).is_ok(),
                    _ => mss_clamp(b, l3, 40).is_ok(),
                }
            };
            for which in 0..5 {
                let mut b = VecBuf::with_room(&f, 0, 16, tailroom);
                let ok = run(&mut b, which);
                valid_ok[which] += usize::from(ok && checksums_valid && b.data() != &f[..]);
                check(["toa", "proxy", "seq", "ack", "mss"][which], &f, &b, ok);
            }
            let _ = toa::parse(&f);
            let _ = proxy_v2::parse(&f);
        }
        assert!(valid_ok.iter().all(|&n| n >= 500), "too few successful edits exercised: {valid_ok:?}");
    }
}
