//! ICMP for IPv4 (RFC 792): echo request/reply, destination unreachable, time exceeded. All
//! share an 8-byte header (type, code, checksum, 4 type-specific bytes); the checksum covers the
//! whole message.

use super::{be16, checksum, put16, Error, Result};

/// Message types (RFC 792).
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
}

/// Codes of Time Exceeded (RFC 792).
pub mod time_exceeded {
    /// Time to live exceeded in transit.
    pub const TTL: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const REASSEMBLY: u8 = 1;
}

/// Codes of Destination Unreachable (RFC 792, RFC 1191).
pub mod unreachable {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
}

/// Whether a type is an error message (RFC 1122 §3.2.2: never answer an error with an error).
pub fn is_error(t: u8) -> bool {
    !matches!(t, msg_type::ECHO_REPLY | msg_type::ECHO_REQUEST | 9 | 10 | 13..=18)
}

/// Length of the header common to the messages handled here.
pub const HEADER_LEN: usize = field::DATA;

/// How much of the offending datagram an error message quotes beyond its IP header (RFC 792).
pub const ERROR_QUOTE_LEN: usize = 8;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    /// Echo: identifier; errors: unused (or next-hop MTU for frag-needed).
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const DATA: usize = 8;
}

/// A view of an ICMP message (the IP payload).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// At least the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQ)
    }
    /// Echo data, or the quoted datagram of an error message.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }
    /// The checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v)
    }
    pub fn set_echo_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::ECHO_IDENT, v)
    }
    pub fn set_echo_seq_no(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::ECHO_SEQ, v)
    }
    /// Zero the 4 type-specific bytes ("unused" of error messages).
    pub fn clear_rest_of_header(&mut self) {
        self.buffer.as_mut()[field::ECHO_IDENT..field::DATA].fill(0);
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }
    /// Compute and store the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = !checksum::data(self.buffer.as_ref());
        self.set_checksum(c);
    }
    /// Change type and code, updating the checksum incrementally (RFC 1624): echo request →
    /// reply touches one 16-bit word.
    pub fn set_type_code_incremental(&mut self, t: u8, code: u8) {
        let b = self.buffer.as_mut();
        let old = be16(b, field::TYPE);
        b[field::TYPE] = t;
        b[field::CODE] = code;
        let c = checksum::update16(be16(b, field::CHECKSUM), old, be16(b, field::TYPE));
        put16(b, field::CHECKSUM, c);
    }
}

/// Write, into `l3`, an IPv4 datagram carrying an ICMP error (RFC 792) from `from` to `to`:
/// `msg_type`/`code`, `rest` as the 32-bit word after the checksum (zero for Time Exceeded, the
/// next-hop MTU in its low half for Fragmentation Needed, RFC 1191 §4), then `quote` (the
/// offending packet's IP header and first 8 payload bytes). TTL 64 and precedence "internetwork
/// control" (0xc0), as routers mark their errors; both checksums filled.
///
/// `l3` must be exactly `ipv4::MIN_HEADER_LEN + HEADER_LEN + quote.len()` bytes, else nothing is
/// written and `false` is returned.
pub fn write_ipv4_error(
    l3: &mut [u8],
    msg_type: u8,
    code: u8,
    rest: u32,
    quote: &[u8],
    from: std::net::Ipv4Addr,
    to: std::net::Ipv4Addr,
) -> bool {
    use super::ipv4;
    let ip_len = ipv4::MIN_HEADER_LEN + HEADER_LEN + quote.len();
    if l3.len() != ip_len || ip_len > usize::from(u16::MAX) {
        return false;
    }
    l3.fill(0);
    let (h, msg) = l3.split_at_mut(ipv4::MIN_HEADER_LEN);
    msg[field::ECHO_IDENT..field::DATA].copy_from_slice(&rest.to_be_bytes());
    let mut ic = Packet::new_unchecked(msg);
    ic.set_msg_type(msg_type);
    ic.set_msg_code(code);
    ic.data_mut().copy_from_slice(quote);
    ic.fill_checksum();
    let mut ip = ipv4::Packet::new_unchecked(h);
    ip.set_version_and_header_len(ipv4::MIN_HEADER_LEN);
    ip.set_dscp_ecn(0xc0);
    ip.set_total_len(ip_len as u16);
    ip.set_ttl(ipv4::DEFAULT_TTL);
    ip.set_protocol(ipv4::protocol::ICMP);
    ip.set_src_addr(from);
    ip.set_dst_addr(to);
    ip.fill_checksum();
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::hex;

    /// ICMP part of an echo request (ident 0x1234, seq 1, 32 data bytes 0x10..0x2f).
    const ECHO: &str = "0800f3c812340001 101112131415161718191a1b1c1d1e1f 202122232425262728292a2b2c2d2e2f";

    #[test]
    fn parse_echo() {
        let b = hex(ECHO);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.data().len(), 32);
        assert!(p.verify_checksum());
    }

    #[test]
    fn request_to_reply_incrementally() {
        let mut b = hex(ECHO);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_type_code_incremental(msg_type::ECHO_REPLY, 0);
        assert!(p.verify_checksum());
        let inc = p.checksum();
        p.fill_checksum();
        assert_eq!(inc, p.checksum());
        assert_eq!(inc, 0xfbc8);
    }

    #[test]
    fn corrupt_and_short() {
        let mut b = hex(ECHO);
        b[20] ^= 1;
        assert!(!Packet::new_checked(&b[..]).unwrap().verify_checksum());
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&b[..n]).unwrap_err(), Error::Truncated);
        }
    }

    #[test]
    fn error_classes() {
        assert!(is_error(msg_type::TIME_EXCEEDED) && is_error(msg_type::DEST_UNREACHABLE));
        assert!(!is_error(msg_type::ECHO_REQUEST) && !is_error(msg_type::ECHO_REPLY));
    }
}
