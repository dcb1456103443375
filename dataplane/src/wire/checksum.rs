//! The Internet checksum: RFC 1071 one's-complement sum, and RFC 1624 incremental updates for
//! rewriting a field without summing the whole header again.

use std::net::Ipv4Addr;

/// One's-complement sum of `data` as big-endian 16-bit words (an odd last byte is padded with a
/// zero, RFC 1071 §4.1), folded to 16 bits. Not complemented: combine partial sums with
/// [`combine`], complement once at the end.
pub fn data(data: &[u8]) -> u16 {
    let mut acc = sum(data);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Unfolded accumulation in 64 bits: no input length can overflow it.
fn sum(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        acc += u16::from_be_bytes([w[0], w[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u64) << 8;
    }
    acc
}

/// Fold carries back into the low 16 bits (end-around carry).
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// One's-complement sum of partial sums.
pub fn combine(parts: &[u16]) -> u16 {
    fold(parts.iter().map(|&p| p as u32).sum())
}

/// Sum of the IPv4 pseudo-header of TCP and UDP (RFC 793 §3.1, RFC 768): source, destination,
/// zero + protocol, upper-layer length.
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u16 {
    let s = src.octets();
    let d = dst.octets();
    let acc = u16::from_be_bytes([s[0], s[1]]) as u32
        + u16::from_be_bytes([s[2], s[3]]) as u32
        + u16::from_be_bytes([d[0], d[1]]) as u32
        + u16::from_be_bytes([d[2], d[3]]) as u32
        + proto as u32
        + len as u32;
    fold(acc)
}

/// The checksum field value after a 16-bit word of the covered data changes from `old` to `new`:
/// RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, which (unlike eqn. 2) never yields 0x0000 from a
/// valid non-zero input sum.
#[inline]
pub fn update16(cksum: u16, old: u16, new: u16) -> u16 {
    let acc = (!cksum) as u32 + (!old) as u32 + new as u32;
    !fold(acc)
}

/// [`update16`] for a 32-bit field (an IPv4 address, a TCP sequence number): two 16-bit words.
#[inline]
pub fn update32(cksum: u16, old: u32, new: u32) -> u16 {
    let acc = (!cksum) as u32 + (!(old >> 16) as u16) as u32 + (!(old as u16)) as u32 + (new >> 16) + (new & 0xffff);
    !fold(acc)
}

/// The RFC 1624 terms `~m + m'` of a 32-bit field changing from `old` to `new`: summed over
/// several fields and applied once with [`apply_diff`], one fold instead of one per field.
#[inline]
pub fn diff32(old: u32, new: u32) -> u32 {
    (!old >> 16) + (!old & 0xffff) + (new >> 16) + (new & 0xffff)
}

/// [`diff32`] of a 16-bit field.
#[inline]
pub fn diff16(old: u16, new: u16) -> u32 {
    u32::from(!old) + u32::from(new)
}

/// The checksum field after changes whose [`diff32`]/[`diff16`] terms add up to `diff`:
/// `HC' = ~(~HC + Σ(~m + m'))` (RFC 1624 eqn. 3).
#[inline]
pub fn apply_diff(cksum: u16, diff: u32) -> u16 {
    !fold(u32::from(!cksum) + diff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::hex;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(data(&[]), 0);
    }

    #[test]
    fn ipv4_header_known_checksum() {
        // IPv4 header (Wikipedia's worked example) with checksum b861.
        let h = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
        assert_eq!(!data(&h), 0, "a valid header sums to 0xffff");
        let mut z = h.clone();
        z[10] = 0;
        z[11] = 0;
        assert_eq!(!data(&z), 0xb861);
    }

    #[test]
    fn incremental_16_matches_full_recompute() {
        let mut h = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
        // Decrement TTL 0x40 -> 0x3f: the word TTL|proto changes.
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[8] -= 1;
        let new = u16::from_be_bytes([h[8], h[9]]);
        let inc = update16(0xb861, old, new);
        h[10] = 0;
        h[11] = 0;
        assert_eq!(inc, !data(&h));
        assert_eq!(inc, 0xb961);
    }

    #[test]
    fn incremental_32_matches_full_recompute() {
        let mut h = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
        let old = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let new = u32::from(Ipv4Addr::new(203, 0, 113, 7));
        h[12..16].copy_from_slice(&new.to_be_bytes());
        let inc = update32(0xb861, old, new);
        h[10] = 0;
        h[11] = 0;
        assert_eq!(inc, !data(&h));
    }

    #[test]
    fn incremental_exhaustive_small_space() {
        // Every old/new value of one word in a short buffer: incremental == recompute,
        // modulo the two representations of zero (0x0000/0xffff) which RFC 1624 allows.
        let base = [0x12u8, 0x34, 0x00, 0x00, 0xab, 0xcd];
        for old in (0u32..=0xffff).step_by(257) {
            for new in (0u32..=0xffff).step_by(263) {
                let mut b = base;
                b[2..4].copy_from_slice(&(old as u16).to_be_bytes());
                let c = !data(&b);
                b[2..4].copy_from_slice(&(new as u16).to_be_bytes());
                let full = !data(&b);
                let inc = update16(c, old as u16, new as u16);
                assert!(inc == full || (inc == 0xffff && full == 0) || (inc == 0 && full == 0xffff));
            }
        }
    }

    #[test]
    fn pseudo_header_sum() {
        let s = pseudo_header(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 2), 6, 20);
        let manual = data(&hex("c000 0201 c633 6402 0006 0014"));
        assert_eq!(s, manual);
    }
}
