//! Wire formats, one file per protocol, in smoltcp's `src/wire/` style: a zero-copy
//! `Packet<T: AsRef<[u8]>>` view over the bytes, a `new_checked` constructor that validates
//! everything the getters rely on (so no getter can index out of bounds afterwards, whatever
//! the input), getters, and setters for `T: AsMut<[u8]>`. Byte offsets live in a private
//! `mod field` of each file.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;

/// Why a buffer is not a valid packet of the protocol asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// Shorter than the fixed header, or than the length a header field announces.
    Truncated,
    /// IPv4 version field is not 4.
    BadVersion,
    /// IPv4 IHL under 5 (a header is at least 20 bytes).
    BadIhl,
    /// A length field that contradicts the header or the buffer (IPv4 total length, UDP length).
    BadLength,
    /// TCP data offset under 5 (a header is at least 20 bytes).
    BadDataOffset,
    /// A well-formed packet of a variant this code does not handle (ARP over non-Ethernet or
    /// for a protocol other than IPv4).
    Unsupported,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated packet",
            Error::BadVersion => "bad IP version",
            Error::BadIhl => "bad IPv4 header length",
            Error::BadLength => "bad length field",
            Error::BadDataOffset => "bad TCP data offset",
            Error::Unsupported => "unsupported packet variant",
        })
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Big-endian field access over a slice whose bounds the caller checked (`new_checked`).
/// Kept in one place so every view reads fields the same way.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn ipv4_at(b: &[u8], at: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// Decode a hex string (whitespace ignored) for byte-level fixtures in tests.
#[cfg(test)]
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    assert!(digits.len() & 1 == 0, "odd number of hex digits");
    digits.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap()).collect()
}

#[cfg(test)]
mod fuzz {
    //! Every view over arbitrary bytes: `new_checked` either refuses or yields a packet whose
    //! getters all stay in bounds.
    use super::*;

    fn exercise(b: &[u8]) {
        if let Ok(p) = ethernet::Packet::new_checked(b) {
            let _ = (p.dst_addr(), p.src_addr(), p.ethertype(), p.payload().len());
        }
        if let Ok(p) = arp::Packet::new_checked(b) {
            let _ = (p.operation(), p.sender_hw_addr(), p.sender_ip(), p.target_hw_addr(), p.target_ip());
        }
        if let Ok(p) = ipv4::Packet::new_checked(b) {
            let _ = (p.version(), p.dscp_ecn(), p.ident(), p.frag_offset(), p.is_fragment(), p.ttl());
            let _ = (p.protocol(), p.checksum(), p.src_addr(), p.dst_addr(), p.verify_checksum());
            let _ = (p.header().len(), p.payload().len());
        }
        if let Ok(p) = icmp::Packet::new_checked(b) {
            let _ = (p.msg_type(), p.msg_code(), p.echo_ident(), p.echo_seq_no(), p.data().len(), p.verify_checksum());
        }
        let a = std::net::Ipv4Addr::new(192, 0, 2, 1);
        if let Ok(p) = tcp::Packet::new_checked(b) {
            let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.flags(), p.window_len());
            let _ = (p.urgent_at(), p.options().len(), p.payload().len(), p.verify_checksum(a, a));
        }
        if let Ok(p) = udp::Packet::new_checked(b) {
            let _ = (p.src_port(), p.dst_port(), p.payload().len(), p.verify_checksum(a, a));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 90) as usize;
            let mut b: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8).collect();
            // Bias towards plausible headers so the deeper checks run too.
            if len > 0 && x & 3 == 0 {
                b[0] = 0x40 | (x >> 40) as u8 & 0x0f;
            }
            exercise(&b);
        }
    }
}
