//! Ethernet II frames (IEEE 802.3 with an EtherType, RFC 894), without the FCS (NICs strip it).

use super::{be16, put16, Error, Result};

/// EtherType values (IEEE registry).
pub mod ethertype {
    /// IPv4, RFC 894.
    pub const IPV4: u16 = 0x0800;
    /// ARP, RFC 826.
    pub const ARP: u16 = 0x0806;
    /// IEEE 802.1Q VLAN tag (not handled yet).
    pub const VLAN: u16 = 0x8100;
    /// IPv6, RFC 2464.
    pub const IPV6: u16 = 0x86dd;
}

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// ff:ff:ff:ff:ff:ff.
pub const BROADCAST: Mac = [0xff; 6];

/// Length of the header: destination, source, EtherType.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// Broadcast address.
pub fn is_broadcast(mac: &Mac) -> bool {
    *mac == BROADCAST
}

/// Group address: the I/G bit (least significant bit of the first octet) is set. Includes broadcast.
pub fn is_multicast(mac: &Mac) -> bool {
    mac[0] & 0x01 != 0
}

/// Individual (unicast) address, and not all zeros.
pub fn is_unicast(mac: &Mac) -> bool {
    !is_multicast(mac) && *mac != [0; 6]
}

/// Format as aa:bb:cc:dd:ee:ff.
pub fn fmt_mac(mac: &Mac) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5])
}

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking; getters may then panic on a short buffer. Use `new_checked`.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap a buffer at least [`HEADER_LEN`] long.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        m
    }

    pub fn src_addr(&self) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        m
    }

    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_dst_addr(&mut self, mac: Mac) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac);
    }

    pub fn set_src_addr(&mut self, mac: Mac) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac);
    }

    pub fn set_ethertype(&mut self, t: u16) {
        put16(self.buffer.as_mut(), field::ETHERTYPE, t)
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::hex;

    #[test]
    fn parse_and_modify() {
        let mut b = hex("ffffffffffff 020000000001 0806 0001");
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.dst_addr(), BROADCAST);
        assert_eq!(p.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(p.ethertype(), ethertype::ARP);
        assert_eq!(p.payload(), &[0, 1]);
        p.set_dst_addr([2, 0, 0, 0, 0, 9]);
        p.set_src_addr([2, 0, 0, 0, 0, 8]);
        p.set_ethertype(ethertype::IPV4);
        assert_eq!(b, hex("020000000009 020000000008 0800 0001"));
    }

    #[test]
    fn short_frames_are_refused() {
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&vec![0u8; n][..]).unwrap_err(), Error::Truncated);
        }
        assert!(Packet::new_checked(&[0u8; HEADER_LEN][..]).unwrap().payload().is_empty());
    }

    #[test]
    fn address_classes() {
        assert!(is_broadcast(&BROADCAST) && is_multicast(&BROADCAST));
        assert!(is_multicast(&[0x01, 0x00, 0x5e, 0, 0, 1]));
        assert!(!is_multicast(&[0x02, 0, 0, 0, 0, 1]));
        assert!(is_unicast(&[0x02, 0, 0, 0, 0, 1]));
        assert!(!is_unicast(&[0; 6]));
        assert_eq!(fmt_mac(&[2, 0, 0, 0, 0xab, 1]), "02:00:00:00:ab:01");
    }
}
