//! The buffer the packet logic works on. A DPDK mbuf implements it in rvsd; [`VecBuf`] implements
//! it for tests, fuzzing and benchmarks without EAL.

/// A packet buffer: contiguous bytes starting at the Ethernet header, with room to grow at both
/// ends (prepend for IPIP/TOA-style insertions, append for trailers).
pub trait PacketBuf {
    /// The packet bytes, starting at the Ethernet header.
    fn data(&self) -> &[u8];
    /// The packet bytes, mutable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grow the packet by `n` bytes at the front; the new bytes are returned (contents unspecified).
    /// `None` when there is not enough headroom; the packet is then unchanged.
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]>;
    /// Remove `n` bytes from the front. `false` (packet unchanged) if shorter than `n`.
    fn adj(&mut self, n: usize) -> bool;
    /// Grow the packet by `n` bytes at the end; the new bytes are returned (contents unspecified).
    /// `None` when there is not enough tailroom; the packet is then unchanged.
    fn append(&mut self, n: usize) -> Option<&mut [u8]>;
    /// Remove `n` bytes from the end. `false` (packet unchanged) if shorter than `n`.
    fn trim(&mut self, n: usize) -> bool;
    /// Length of the packet in bytes.
    fn len(&self) -> usize {
        self.data().len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Ingress port id the packet arrived on.
    fn port(&self) -> u16;
    /// Set the port id (the egress port once the pipeline has decided).
    fn set_port(&mut self, port: u16);
    /// The receiving NIC verified the (outer) IPv4 header checksum and found it good (DPDK's
    /// `RTE_MBUF_F_RX_IP_CKSUM_GOOD`): the pipeline then skips its software verification.
    /// `false` unless the buffer knows better.
    fn l3_csum_verified(&self) -> bool {
        false
    }
    /// A hint that the cache line holding `addr` is about to be read: the platform's prefetch
    /// instruction (rvsd's mbuf takes it from dpdk-sys, the crate that talks to the CPU and DPDK).
    /// Never dereferences `addr`; the default does nothing.
    #[inline(always)]
    fn prefetch(addr: *const u8) {
        let _ = addr;
    }
}

/// A heap buffer with headroom and tailroom, for tests and benchmarks.
#[derive(Clone, PartialEq, Eq)]
pub struct VecBuf {
    storage: Vec<u8>,
    start: usize,
    end: usize,
    port: u16,
}

impl VecBuf {
    /// Default headroom, as DPDK's RTE_PKTMBUF_HEADROOM.
    pub const HEADROOM: usize = 128;
    /// Default tailroom.
    pub const TAILROOM: usize = 512;

    /// A buffer holding `bytes`, received on `port`.
    pub fn new(bytes: &[u8], port: u16) -> Self {
        Self::with_room(bytes, port, Self::HEADROOM, Self::TAILROOM)
    }

    pub fn with_room(bytes: &[u8], port: u16, headroom: usize, tailroom: usize) -> Self {
        let mut storage = vec![0u8; headroom + bytes.len() + tailroom];
        storage[headroom..headroom + bytes.len()].copy_from_slice(bytes);
        VecBuf { storage, start: headroom, end: headroom + bytes.len(), port }
    }

    /// An empty buffer (as a freshly allocated mbuf is).
    pub fn empty() -> Self {
        Self::new(&[], 0)
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }
}

impl std::fmt::Debug for VecBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VecBuf(port {}, {} bytes: ", self.port, self.len())?;
        for b in self.data() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl PacketBuf for VecBuf {
    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.end]
    }
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.start {
            return None;
        }
        self.start -= n;
        Some(&mut self.storage[self.start..self.start + n])
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        if self.end + n > self.storage.len() {
            return None;
        }
        let old = self.end;
        self.end += n;
        Some(&mut self.storage[old..self.end])
    }
    fn trim(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.end -= n;
        true
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn set_port(&mut self, port: u16) {
        self.port = port;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_append_adj_trim() {
        let mut b = VecBuf::with_room(&[1, 2, 3], 7, 4, 2);
        assert_eq!(b.port(), 7);
        b.prepend(2).unwrap().copy_from_slice(&[9, 9]);
        assert_eq!(b.data(), &[9, 9, 1, 2, 3]);
        assert!(b.prepend(3).is_none(), "only 2 bytes of headroom left");
        assert_eq!(b.data(), &[9, 9, 1, 2, 3]);
        b.append(2).unwrap().copy_from_slice(&[8, 8]);
        assert!(b.append(1).is_none());
        assert!(b.adj(2));
        assert!(b.trim(1));
        assert_eq!(b.data(), &[1, 2, 3, 8]);
        assert!(!b.adj(5));
        assert!(!b.trim(5));
    }
}
