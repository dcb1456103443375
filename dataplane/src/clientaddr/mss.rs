//! MSS clamping: lower the MSS option (RFC 9293 §3.7.1) of a SYN or SYN-ACK so that segments the
//! peer sends still fit the path MTU after rvs grows them (TOA: 8 bytes of option, PROXY v2: 28
//! bytes in front of the first payload, IPIP: 20 bytes of outer header).

use super::{edit_tcp_header, opt, tcp_only, walk_options, ClientAddrError};
use crate::buf::PacketBuf;
use crate::segment::Segment;
use crate::wire::tcp;

/// Length of the MSS option.
const MSS_LEN: usize = 4;
/// The smallest MSS clamping goes to: the IPv4 default (RFC 9293 §3.7.1, 576 − 40).
pub const MIN_MSS: u16 = 536;

/// On a segment with SYN: if it carries an MSS option (kind 2, length 4; the first one counts),
/// lower it by `reduce_by`, not below [`MIN_MSS`] (an MSS already at or under 536 is left as
/// is). Returns whether the segment changed. Not a SYN, no MSS option, or options malformed
/// before it: `Ok(false)`, unchanged. Header-local: the TCP checksum is updated incrementally,
/// Ethernet padding is kept.
pub fn clamp<B: PacketBuf>(pkt: &mut B, seg: &Segment, reduce_by: u16) -> Result<bool, ClientAddrError> {
    tcp_only(seg)?;
    if seg.flags & tcp::flags::SYN == 0 {
        return Ok(false);
    }
    let header = &pkt.data()[seg.l4()..seg.payload()];
    let mut found = None;
    walk_options(&header[tcp::MIN_HEADER_LEN..], |kind, at, len| {
        if found.is_none() && kind == opt::MSS && len == MSS_LEN {
            found = Some(tcp::MIN_HEADER_LEN + at + 2);
        }
    });
    let Some(at) = found else { return Ok(false) };
    let mss = u16::from_be_bytes([header[at], header[at + 1]]);
    let new = if mss <= MIN_MSS { mss } else { mss.saturating_sub(reduce_by).max(MIN_MSS) };
    if new == mss {
        return Ok(false);
    }
    edit_tcp_header(pkt, seg, |h| h[at..at + 2].copy_from_slice(&new.to_be_bytes()));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::buf::VecBuf;
    use crate::wire::tcp::flags::{ACK, SYN};

    /// Parse, then clamp (the two steps of the pipeline).
    fn clamp(b: &mut VecBuf, l3: usize, by: u16) -> Result<bool, ClientAddrError> {
        mss_clamp(b, l3, by)
    }

    /// Linux's SYN options: MSS 1460, SACK-permitted, timestamps, NOP, window scale 7.
    const LINUX_SYN_OPTS: &str = "020405b4 0402080a 0a1b2c3d 00000000 01030307";

    #[test]
    fn clamps_syn_and_synack() {
        for flags in [SYN, SYN | ACK] {
            let mut b = VecBuf::new(&frame(flags, 1, 0, &hex(LINUX_SYN_OPTS), &[]), 0);
            assert_eq!(clamp(&mut b, L3, 28), Ok(true));
            let want = hex("02040598 0402080a 0a1b2c3d 00000000 01030307");
            assert_eq!(b.data(), &frame(flags, 1, 0, &want, &[])[..]);
        }
    }

    #[test]
    fn odd_offset_mss() {
        // NOP, MSS at option byte 1 (value straddling two checksum words), NOP NOP NOP.
        let f = frame(SYN, 1, 0, &hex("01 020405b4 010101"), &[]);
        let mut b = VecBuf::new(&f, 0);
        assert_eq!(clamp(&mut b, L3, 0x100), Ok(true));
        assert_eq!(b.data(), &frame(SYN, 1, 0, &hex("01 020404b4 010101"), &[])[..]);
        assert!(checksums_ok(b.data()));
    }

    #[test]
    fn floor_and_no_change_cases() {
        let mut b = VecBuf::new(&frame(SYN, 1, 0, &hex("02040258"), &[]), 0); // 600
        assert_eq!(clamp(&mut b, L3, 100), Ok(true));
        assert_eq!(&b.data()[L3 + 40..L3 + 44], &hex("02040218")[..]); // 536
        assert!(checksums_ok(b.data()));
        for (opts, flags, by) in [
            ("02040200", SYN, 10),           // 512: already below the floor
            ("02040218", SYN, 10),           // 536: at the floor
            ("020405b4", SYN, 0),            // nothing to take off
            ("020405b4", ACK, 28),           // not a SYN
            ("01010101", SYN, 28),           // no MSS option
            ("0301 020405b4", SYN, 28),      // malformed before the MSS
            ("00 020405b4 000000", SYN, 28), // MSS after EOL is not an option
        ] {
            let o = hex(opts);
            let mut pad = o.clone();
            pad.resize(o.len().div_ceil(4) * 4, 0);
            let f = frame(flags, 1, 0, &pad, &[]);
            let mut b = VecBuf::new(&f, 0);
            assert_eq!(clamp(&mut b, L3, by), Ok(false), "{opts}");
            assert_eq!(b.data(), &f[..]);
        }
    }

    #[test]
    fn errors() {
        let f = frame(SYN, 1, 0, &hex("020405b4"), &[]);
        assert_eq!(clamp(&mut VecBuf::new(&f[..L3 + 42], 0), L3, 28), Err(ClientAddrError::Truncated));
        let mut udp = f.clone();
        udp[L3 + 9] = 17;
        assert_eq!(clamp(&mut VecBuf::new(&udp, 0), L3, 28), Err(ClientAddrError::NotTcp));
    }
}
