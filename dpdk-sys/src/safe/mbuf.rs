//! Packet buffer pools (`rte_mempool` of mbufs) and owned mbufs.

use std::ffi::CString;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::eal::Eal;
use super::error::DpdkError;
use crate::ffi;

/// `RTE_MBUF_DEFAULT_BUF_SIZE`: data room of a default mbuf (2048 + headroom).
pub const MBUF_DEFAULT_BUF_SIZE: u16 = ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16;
/// `RTE_PKTMBUF_HEADROOM`: bytes reserved in front of a freshly allocated mbuf's data.
pub const PKTMBUF_HEADROOM: usize = ffi::RTE_PKTMBUF_HEADROOM as usize;
/// `ol_flags` value of the RX IPv4 checksum field when the NIC found the checksum good.
pub const RX_IP_CKSUM_GOOD: u64 = ffi::RTE_MBUF_F_RX_IP_CKSUM_GOOD as u64;
/// `ol_flags` mask of the RX IPv4 checksum field (GOOD, BAD, NONE or UNKNOWN).
pub const RX_IP_CKSUM_MASK: u64 = ffi::RTE_MBUF_F_RX_IP_CKSUM_MASK as u64;

/// A raw pool pointer remembered for the [`Eal::cleanup`] check.
struct PoolPtr(NonNull<ffi::rte_mempool>, String);
// SAFETY: the pointer is only passed to rte_mempool_in_use_count, which is thread-safe.
unsafe impl Send for PoolPtr {}

/// Every pool created through [`Mempool::new`]. Pools are never freed before EAL cleanup:
/// mbufs and port RX queues may outlive the `Mempool` handle and still point into them.
static POOLS: Mutex<Vec<PoolPtr>> = Mutex::new(Vec::new());
/// Live [`Mempool`] and [`Ring`](super::Ring) handles.
pub(crate) static LIVE_HANDLES: AtomicUsize = AtomicUsize::new(0);

/// `Err(description)` while a pool/ring handle is alive or a pool has mbufs in use.
pub(crate) fn check_all_released() -> Result<(), String> {
    let live = LIVE_HANDLES.load(Ordering::Acquire);
    if live > 0 {
        return Err(format!("{live} Mempool/Ring handle(s) still alive"));
    }
    let pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    for PoolPtr(p, name) in pools.iter() {
        // SAFETY: pools in POOLS are never freed while EAL runs.
        let n = unsafe { ffi::rte_mempool_in_use_count(p.as_ptr()) };
        if n > 0 {
            return Err(format!("mempool {name:?} still has {n} mbuf(s) in use"));
        }
    }
    Ok(())
}

/// A pool of packet mbufs (`rte_pktmbuf_pool_create`). Thread-safe (`Send + Sync`): share it
/// with `Arc`. Dropping the handle does not free the pool (ports and mbufs may still use it);
/// EAL cleanup does.
pub struct Mempool {
    ptr: NonNull<ffi::rte_mempool>,
    name: String,
}

// SAFETY: DPDK mempools (default "ring_mp_mc" ops) are multi-producer/multi-consumer safe,
// and the pool memory stays valid until EAL cleanup, which waits for all handles to drop.
unsafe impl Send for Mempool {}
// SAFETY: as above; all methods take &self and call thread-safe mempool functions.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Create a pool of `n_mbufs` mbufs with a per-lcore cache of `cache` and `data_room`
    /// bytes of buffer each (headroom included; use [`MBUF_DEFAULT_BUF_SIZE`]), on NUMA
    /// `socket` (-1 = any). Names are process-wide and must be unique and short (< 26 chars).
    pub fn new(
        _eal: &Eal,
        name: &str,
        n_mbufs: u32,
        cache: u32,
        data_room: u16,
        socket: i32,
    ) -> Result<Mempool, DpdkError> {
        let op = || {
            format!(
                "rte_pktmbuf_pool_create({name:?}, n={n_mbufs}, cache={cache}, \
                 data_room={data_room}, socket={socket})"
            )
        };
        let c = CString::new(name).map_err(|_| DpdkError::check(op(), libc::EINVAL, "name contains a NUL byte"))?;
        // SAFETY: EAL is running (_eal); c is a valid C string for the call's duration.
        let raw = unsafe { ffi::rte_pktmbuf_pool_create(c.as_ptr(), n_mbufs, cache, 0, data_room, socket) };
        let ptr = NonNull::new(raw).ok_or_else(|| DpdkError::from_rte_errno(op()))?;
        POOLS.lock().unwrap_or_else(|e| e.into_inner()).push(PoolPtr(ptr, name.to_string()));
        LIVE_HANDLES.fetch_add(1, Ordering::AcqRel);
        Ok(Mempool { ptr, name: name.to_string() })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `rte_pktmbuf_alloc`: an empty mbuf with [`PKTMBUF_HEADROOM`] of headroom, or `None`
    /// when the pool is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: self.ptr is a live pktmbuf pool; the returned mbuf (if any) is ours alone.
        let m = unsafe { ffi::rte_pktmbuf_alloc(self.ptr.as_ptr()) };
        NonNull::new(m).map(Mbuf)
    }

    /// An mbuf holding a copy of `bytes`; `None` if the pool is empty or `bytes` does not fit.
    pub fn alloc_from(&self, bytes: &[u8]) -> Option<Mbuf> {
        let mut m = self.alloc()?;
        m.append(bytes.len())?.copy_from_slice(bytes);
        Some(m)
    }

    /// `rte_pktmbuf_alloc_bulk`: push `n` fresh mbufs onto `out`, all or nothing.
    pub fn alloc_bulk(&self, out: &mut Vec<Mbuf>, n: usize) -> bool {
        let Ok(n32) = u32::try_from(n) else {
            return false;
        };
        out.reserve(n);
        let len = out.len();
        // SAFETY: out has room for n more elements; Mbuf is a transparent NonNull<rte_mbuf>, so
        // the spare capacity is a valid array of n `*mut rte_mbuf` slots. On success DPDK fills
        // all n with valid, exclusively owned mbufs; on failure it writes nothing we keep.
        unsafe {
            let dst = out.as_mut_ptr().add(len).cast::<*mut ffi::rte_mbuf>();
            if ffi::rte_pktmbuf_alloc_bulk(self.ptr.as_ptr(), dst, n32) != 0 {
                return false;
            }
            out.set_len(len + n);
        }
        true
    }

    /// `rte_mempool_avail_count`: free mbufs (including per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: self.ptr is a live pool; the count is read without side effects.
        unsafe { ffi::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// `rte_mempool_in_use_count`: mbufs currently allocated (held by the app or by ports).
    pub fn in_use(&self) -> u32 {
        // SAFETY: self.ptr is a live pool; the count is read without side effects.
        unsafe { ffi::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    /// The raw pool pointer, for FFI calls not wrapped here.
    pub fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.ptr.as_ptr()
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        LIVE_HANDLES.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for Mempool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.name)
            .field("available", &self.available())
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// An owned packet mbuf. Dropping it frees it (`rte_pktmbuf_free`, all segments).
///
/// The byte accessors see the **first segment only**: rvs configures ports without scatter,
/// so received packets are single-segment. `Send` (ownership moves between threads, mempools
/// are thread-safe) but not `Sync`.
#[repr(transparent)]
pub struct Mbuf(NonNull<ffi::rte_mbuf>);

// SAFETY: an Mbuf exclusively owns its mbuf; freeing it from any thread is allowed (mempool
// put is thread-safe). Not Sync: nothing is gained by sharing &Mbuf across threads.
unsafe impl Send for Mbuf {}

// rx/tx/ring bursts treat Vec<Mbuf> storage as an array of `*mut rte_mbuf`.
const _: () = assert!(std::mem::size_of::<Mbuf>() == std::mem::size_of::<*mut ffi::rte_mbuf>());
const _: () = assert!(std::mem::size_of::<Option<Mbuf>>() == std::mem::size_of::<*mut ffi::rte_mbuf>());

impl Mbuf {
    /// Take ownership of a raw mbuf.
    ///
    /// # Safety
    /// `ptr` must be a valid, non-null pktmbuf that nothing else uses or frees afterwards
    /// (reference count 1, direct, not attached to another mbuf's buffer).
    pub unsafe fn from_raw(ptr: *mut ffi::rte_mbuf) -> Option<Mbuf> {
        NonNull::new(ptr).map(Mbuf)
    }

    /// Give up ownership; the caller must free the mbuf (or hand it to DPDK).
    pub fn into_raw(self) -> *mut ffi::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// The raw mbuf pointer (still owned by `self`).
    pub fn as_ptr(&self) -> *mut ffi::rte_mbuf {
        self.0.as_ptr()
    }

    #[inline]
    fn raw(&self) -> &ffi::rte_mbuf {
        // SAFETY: self.0 points to a valid mbuf owned by self for self's lifetime.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn raw_mut(&mut self) -> &mut ffi::rte_mbuf {
        // SAFETY: as in raw(), and &mut self makes the access exclusive.
        unsafe { self.0.as_mut() }
    }

    /// The first segment's bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's buffer (an mbuf
        // invariant DPDK maintains); the buffer is owned by self and borrowed immutably.
        unsafe {
            std::slice::from_raw_parts(m.buf_addr.cast::<u8>().add(usize::from(m.data_off)), usize::from(m.data_len))
        }
    }

    /// The first segment's bytes, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw_mut();
        // SAFETY: as in data(); &mut self makes the borrow exclusive (refcnt 1, direct mbuf).
        unsafe {
            std::slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    /// `rte_pktmbuf_prepend`: grow the packet by `n` bytes at the front and return them
    /// (contents unspecified). `None` (mbuf unchanged) if the headroom is smaller than `n`.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: self owns a valid mbuf; rte_pktmbuf_prepend checks the headroom and returns
        // NULL without changes when it is too small, else a pointer to n bytes in the buffer.
        unsafe {
            let p = ffi::rte_pktmbuf_prepend(self.0.as_ptr(), n16);
            (!p.is_null()).then(|| std::slice::from_raw_parts_mut(p.cast::<u8>(), n))
        }
    }

    /// `rte_pktmbuf_adj`: remove `n` bytes from the front. `false` (unchanged) if the first
    /// segment is shorter than `n`.
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: self owns a valid mbuf; rte_pktmbuf_adj bounds-checks against data_len.
        unsafe { !ffi::rte_pktmbuf_adj(self.0.as_ptr(), n16).is_null() }
    }

    /// `rte_pktmbuf_append`: grow the packet by `n` bytes at the end and return them
    /// (contents unspecified). `None` (unchanged) if the tailroom is smaller than `n`.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: self owns a valid mbuf; rte_pktmbuf_append checks the last segment's
        // tailroom and returns NULL without changes, else a pointer to n bytes in the buffer.
        unsafe {
            let p = ffi::rte_pktmbuf_append(self.0.as_ptr(), n16);
            (!p.is_null()).then(|| std::slice::from_raw_parts_mut(p.cast::<u8>(), n))
        }
    }

    /// `rte_pktmbuf_trim`: remove `n` bytes from the end. `false` (unchanged) if the last
    /// segment is shorter than `n`.
    #[inline]
    pub fn trim(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: self owns a valid mbuf; rte_pktmbuf_trim bounds-checks against data_len.
        unsafe { ffi::rte_pktmbuf_trim(self.0.as_ptr(), n16) == 0 }
    }

    /// Length of the first segment (`data_len`) = `data().len()`.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.raw().data_len)
    }

    /// `true` if the first segment is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total packet length over all segments (`pkt_len`).
    #[inline]
    pub fn pkt_len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// Number of segments.
    #[inline]
    pub fn nb_segs(&self) -> u16 {
        self.raw().nb_segs
    }

    /// Free bytes in front of the data (`rte_pktmbuf_headroom`).
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.raw().data_off)
    }

    /// Free bytes after the data in the first segment (`rte_pktmbuf_tailroom`).
    #[inline]
    pub fn tailroom(&self) -> usize {
        let m = self.raw();
        usize::from(m.buf_len) - usize::from(m.data_off) - usize::from(m.data_len)
    }

    /// Input port id (set by the PMD on receive).
    #[inline]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Set the port id field.
    #[inline]
    pub fn set_port(&mut self, p: u16) {
        self.raw_mut().port = p;
    }

    /// The NIC's RSS hash, when `RTE_MBUF_F_RX_RSS_HASH` is set.
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        let m = self.raw();
        if m.ol_flags & u64::from(ffi::RTE_MBUF_F_RX_RSS_HASH) != 0 {
            // SAFETY: with RTE_MBUF_F_RX_RSS_HASH set the PMD wrote hash.rss; any u32 is valid.
            Some(unsafe { m.__bindgen_anon_2.hash.rss })
        } else {
            None
        }
    }

    /// The PMD verified the IPv4 header checksum and found it good: the 2-bit
    /// `RTE_MBUF_F_RX_IP_CKSUM_MASK` field of `ol_flags` reads `RTE_MBUF_F_RX_IP_CKSUM_GOOD`
    /// (drivers without the RX offload leave it UNKNOWN).
    #[inline]
    pub fn rx_ip_cksum_good(&self) -> bool {
        self.ol_flags() & RX_IP_CKSUM_MASK == RX_IP_CKSUM_GOOD
    }

    /// Offload flags (`ol_flags`).
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.raw().ol_flags
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: self exclusively owns the mbuf; it is freed exactly once, here.
        unsafe { ffi::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("port", &self.port())
            .field("len", &self.len())
            .field("pkt_len", &self.pkt_len())
            .field("headroom", &self.headroom())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_dpdk_defaults() {
        assert_eq!(PKTMBUF_HEADROOM, 128);
        assert_eq!(usize::from(MBUF_DEFAULT_BUF_SIZE), 2048 + PKTMBUF_HEADROOM);
    }

    #[test]
    fn mbuf_on_a_fake_buffer() {
        // An mbuf header over a plain buffer exercises the Rust-side accessors without EAL
        // (prepend/adj/... are exercised for real in tests/eal.rs).
        let mut buf = [0u8; 64];
        buf[16..20].copy_from_slice(&[1, 2, 3, 4]);
        let mut raw = ffi::rte_mbuf {
            buf_addr: buf.as_mut_ptr().cast(),
            buf_len: 64,
            data_off: 16,
            data_len: 4,
            pkt_len: 4,
            port: 7,
            ..Default::default()
        };
        let m = std::mem::ManuallyDrop::new(Mbuf(NonNull::from(&mut raw)));
        assert_eq!(m.data(), &[1, 2, 3, 4]);
        assert_eq!((m.headroom(), m.tailroom(), m.port()), (16, 44, 7));
        assert_eq!(m.rss_hash(), None);
    }
}
