//! TCP headers (RFC 793, RFC 9293): what a layer-4 balancer reads and rewrites.

use super::{be16, be32, checksum, put16, put32, Error, Result};
use std::net::Ipv4Addr;

/// Flag bits of the 13th header byte (RFC 793 §3.1; ECE/CWR RFC 3168).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// Minimum header length (data offset 5).
pub const MIN_HEADER_LEN: usize = 20;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// A view of a TCP segment (the IP payload). After `new_checked`: at least 20 bytes, data
/// offset ≥ 5 and the header (options included) within the buffer.
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
        if len < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = p.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(Error::BadDataOffset);
        }
        if hl > len {
            return Err(Error::Truncated);
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
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ)
    }
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK)
    }
    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::DATA_OFF] >> 4) as usize) * 4
    }
    /// The 8 flag bits (see [`flags`]); the NS bit is not included.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
    /// Checksum over the pseudo-header and the whole segment (the buffer must be exactly the
    /// segment, i.e. the IP payload up to the total length).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u16::try_from(b.len()) else { return false };
        checksum::combine(&[checksum::pseudo_header(src, dst, super::ipv4::protocol::TCP, len), checksum::data(b)])
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
    pub fn set_seq_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::SEQ, v)
    }
    pub fn set_ack_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::ACK, v)
    }
    /// Header length in bytes (multiple of 4, 20..=60); keeps the reserved bits.
    pub fn set_header_len(&mut self, len: usize) {
        let b = self.buffer.as_mut();
        b[field::DATA_OFF] = (b[field::DATA_OFF] & 0x0f) | (((len / 4) as u8) << 4);
    }
    pub fn set_flags(&mut self, f: u8) {
        self.buffer.as_mut()[field::FLAGS] = f;
    }
    pub fn set_window_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::WINDOW, v)
    }
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v)
    }
    pub fn set_urgent_at(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::URGENT, v)
    }
    /// Compute and store the checksum (pseudo-header + segment).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
        let c = !checksum::combine(&[
            checksum::pseudo_header(src, dst, super::ipv4::protocol::TCP, len),
            checksum::data(b),
        ]);
        self.set_checksum(c);
    }
    /// Rewrite a port with an incremental checksum update (NAT modes).
    pub fn set_dst_port_incremental(&mut self, v: u16) {
        let old = self.dst_port();
        self.set_dst_port(v);
        let c = checksum::update16(self.checksum(), old, v);
        self.set_checksum(c);
    }
    pub fn set_src_port_incremental(&mut self, v: u16) {
        let old = self.src_port();
        self.set_src_port(v);
        let c = checksum::update16(self.checksum(), old, v);
        self.set_checksum(c);
    }
    /// Account an address change of the pseudo-header (NAT modes): RFC 1624 over 32 bits.
    pub fn update_checksum_for_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let c = checksum::update32(self.checksum(), u32::from(old), u32::from(new));
        self.set_checksum(c);
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buffer.as_mut()[h..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::hex;

    /// A Linux-style SYN 198.51.100.10:40000 → 203.0.113.100:80 with MSS 1460, SACK-permitted,
    /// timestamps and window scale 7; checksum 79e8 computed independently.
    const SYN: &str = "9c40 0050 3e2a5b71 00000000 a002 faf0 79e8 0000 \
                       020405b4 0402080a 0a1b2c3d 00000000 01030307";
    const SRC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const DST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);

    #[test]
    fn parse_syn() {
        let b = hex(SYN);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 0x3e2a5b71);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), flags::SYN);
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst());
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.checksum(), 0x79e8);
        assert_eq!(p.options().len(), 20);
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(203, 0, 113, 101)));
    }

    #[test]
    fn fill_checksum_reproduces_fixture() {
        let mut b = hex(SYN);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_checksum(0);
        p.fill_checksum(SRC, DST);
        assert_eq!(p.checksum(), 0x79e8);
    }

    #[test]
    fn incremental_rewrites_keep_checksum_valid() {
        let mut b = hex(SYN);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_dst_port_incremental(8080);
        p.set_src_port_incremental(1024);
        let new_dst = Ipv4Addr::new(203, 0, 113, 11);
        p.update_checksum_for_addr(DST, new_dst);
        assert!(p.verify_checksum(SRC, new_dst));
    }

    #[test]
    fn malformed() {
        let b = hex(SYN);
        for n in 0..MIN_HEADER_LEN {
            assert_eq!(Packet::new_checked(&b[..n]).unwrap_err(), Error::Truncated);
        }
        // Data offset 10 (40 bytes) with only 39 there.
        assert_eq!(Packet::new_checked(&b[..39]).unwrap_err(), Error::Truncated);
        for off in 0..5u8 {
            let mut x = b.clone();
            x[12] = off << 4;
            assert_eq!(Packet::new_checked(&x[..]).unwrap_err(), Error::BadDataOffset);
        }
    }
}
