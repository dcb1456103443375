//! The mbuf as the dataplane's packet buffer. A newtype, because the trait lives in the
//! DPDK-free `rvs-dataplane` and the mbuf in `dpdk-sys`.

use dpdk_sys::Mbuf;
use rvs_dataplane::PacketBuf;

/// An owned DPDK mbuf handed to the pipeline. Dropping it frees the mbuf.
pub struct Pkt(pub Mbuf);

impl PacketBuf for Pkt {
    #[inline]
    fn data(&self) -> &[u8] {
        self.0.data()
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        self.0.data_mut()
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        self.0.prepend(n)
    }
    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        self.0.adj(n)
    }
    #[inline]
    fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        self.0.append(n)
    }
    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        self.0.trim(n)
    }
    #[inline]
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline]
    fn port(&self) -> u16 {
        self.0.port()
    }
    #[inline]
    fn set_port(&mut self, port: u16) {
        self.0.set_port(port)
    }
    /// The PMD checked the IPv4 header checksum (RX offload) and found it good.
    #[inline]
    fn l3_csum_verified(&self) -> bool {
        self.0.rx_ip_cksum_good()
    }
    #[inline(always)]
    fn prefetch(addr: *const u8) {
        dpdk_sys::prefetch(addr)
    }
}
