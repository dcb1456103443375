//! ARP for IPv4 over Ethernet (RFC 826). Other hardware or protocol types are refused with
//! [`Error::Unsupported`].

use super::{be16, ipv4_at, put16, Error, Result};
use std::net::Ipv4Addr;

/// Hardware type Ethernet (RFC 826, IANA "Hardware Types" 1).
pub const HTYPE_ETHERNET: u16 = 1;
/// Protocol type IPv4 (the EtherType, RFC 826).
pub const PTYPE_IPV4: u16 = 0x0800;

/// Opcodes (RFC 826; IANA "Operation Codes").
pub mod op {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

mod field {
    use std::ops::Range;
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    // Offsets below hold for HLEN 6 / PLEN 4 only, which new_checked enforces.
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// At least 28 bytes, hardware Ethernet (length 6), protocol IPv4 (length 4).
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    pub fn check(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < field::OPER + 2 {
            return Err(Error::Truncated);
        }
        if be16(b, field::HTYPE) != HTYPE_ETHERNET
            || be16(b, field::PTYPE) != PTYPE_IPV4
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(Error::Unsupported);
        }
        if b.len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn hardware_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::HTYPE)
    }
    pub fn protocol_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PTYPE)
    }
    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER)
    }
    pub fn sender_hw_addr(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::SHA]);
        m
    }
    pub fn sender_ip(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::SPA.start)
    }
    pub fn target_hw_addr(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::THA]);
        m
    }
    pub fn target_ip(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::TPA.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Write the fixed Ethernet/IPv4 header (types and lengths).
    pub fn fill_ethernet_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        put16(b, field::HTYPE, HTYPE_ETHERNET);
        put16(b, field::PTYPE, PTYPE_IPV4);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }
    pub fn set_operation(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::OPER, v)
    }
    pub fn set_sender_hw_addr(&mut self, m: [u8; 6]) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&m)
    }
    pub fn set_sender_ip(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&ip.octets())
    }
    pub fn set_target_hw_addr(&mut self, m: [u8; 6]) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&m)
    }
    pub fn set_target_ip(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&ip.octets())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::hex;

    // A who-has 192.0.2.1 tell 192.0.2.2 request, as tcpdump -x shows it (after the Ethernet header).
    const REQ: &str = "0001 0800 06 04 0001 020000000002 c0000202 000000000000 c0000201";

    #[test]
    fn parse_request() {
        let b = hex(REQ);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.hardware_type(), HTYPE_ETHERNET);
        assert_eq!(p.protocol_type(), PTYPE_IPV4);
        assert_eq!(p.operation(), op::REQUEST);
        assert_eq!(p.sender_hw_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(p.sender_ip(), Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(p.target_hw_addr(), [0; 6]);
        assert_eq!(p.target_ip(), Ipv4Addr::new(192, 0, 2, 1));
    }

    #[test]
    fn build_matches_fixture() {
        let mut b = vec![0u8; PACKET_LEN];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.fill_ethernet_ipv4();
        p.set_operation(op::REQUEST);
        p.set_sender_hw_addr([2, 0, 0, 0, 0, 2]);
        p.set_sender_ip(Ipv4Addr::new(192, 0, 2, 2));
        p.set_target_hw_addr([0; 6]);
        p.set_target_ip(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(b, hex(REQ));
    }

    #[test]
    fn refuses_short_and_foreign() {
        let b = hex(REQ);
        for n in 0..PACKET_LEN {
            assert!(Packet::new_checked(&b[..n]).is_err(), "len {n}");
        }
        let mut ipv6 = b.clone();
        ipv6[2] = 0x86;
        ipv6[3] = 0xdd;
        assert_eq!(Packet::new_checked(&ipv6[..]).unwrap_err(), Error::Unsupported);
        let mut hlen = b.clone();
        hlen[4] = 8;
        assert_eq!(Packet::new_checked(&hlen[..]).unwrap_err(), Error::Unsupported);
        let mut token_ring = b;
        token_ring[1] = 6;
        assert_eq!(Packet::new_checked(&token_ring[..]).unwrap_err(), Error::Unsupported);
    }
}
