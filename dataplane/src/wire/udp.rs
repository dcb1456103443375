//! UDP headers (RFC 768).

use super::{be16, checksum, put16, Error, Result};
use std::net::Ipv4Addr;

/// Header length.
pub const HEADER_LEN: usize = 8;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A view of a UDP datagram (the IP payload). After `new_checked`: at least 8 bytes and the
/// length field within 8..=buffer length.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let l = p.len() as usize;
        if l < HEADER_LEN || l > len {
            return Err(Error::BadLength);
        }
        Ok(p)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }
    /// The length field (header + data).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// The data, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len() as usize]
    }
    /// Whether the checksum is right; a zero checksum means "not computed" (RFC 768) and passes.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let l = self.len();
        let b = &self.buffer.as_ref()[..l as usize];
        checksum::combine(&[checksum::pseudo_header(src, dst, super::ipv4::protocol::UDP, l), checksum::data(b)])
            == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, v)
    }
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, v)
    }
    pub fn set_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, v)
    }
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v)
    }
    /// Compute and store the checksum; a computed 0 is sent as 0xffff (RFC 768).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let l = self.len();
        let b = &self.buffer.as_ref()[..(l as usize).min(self.buffer.as_ref().len())];
        let c =
            !checksum::combine(&[checksum::pseudo_header(src, dst, super::ipv4::protocol::UDP, l), checksum::data(b)]);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let l = self.len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..l]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::hex;

    /// 198.51.100.10:53000 → 203.0.113.100:53, "hello rvs\n", checksum a076 computed independently.
    const DGRAM: &str = "cf08 0035 0012 a076 68656c6c6f207276730a";
    const SRC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const DST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);

    #[test]
    fn parse() {
        let b = hex(DGRAM);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.src_port(), 53000);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 18);
        assert_eq!(p.payload(), b"hello rvs\n");
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(DST, DST));
    }

    #[test]
    fn fill_reproduces_fixture_and_zero_means_none() {
        let mut b = hex(DGRAM);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_checksum(0);
        assert!(p.verify_checksum(DST, DST), "zero checksum is not verified");
        p.fill_checksum(SRC, DST);
        assert_eq!(p.checksum(), 0xa076);
    }

    #[test]
    fn malformed() {
        let b = hex(DGRAM);
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&b[..n]).unwrap_err(), Error::Truncated);
        }
        assert_eq!(Packet::new_checked(&b[..17]).unwrap_err(), Error::BadLength);
        let mut x = b.clone();
        x[5] = 7;
        assert_eq!(Packet::new_checked(&x[..]).unwrap_err(), Error::BadLength);
    }
}
