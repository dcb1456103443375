//! `rte_ring` of mbufs: hand packets between threads.

use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use super::eal::Eal;
use super::error::DpdkError;
use super::mbuf::{Mbuf, LIVE_HANDLES};
use super::port::{remove_front_without_drop, MAX_BURST};
use crate::ffi;

/// A DPDK ring carrying mbufs. `Send + Sync`: share it with `Arc`.
///
/// A ring created single-producer (or single-consumer) uses DPDK's cheaper SP (SC) code,
/// which is only correct with one enqueuer (dequeuer) at a time; the wrapper enforces that
/// with an uncontended flag per side, so misuse costs spinning, not memory safety.
/// Dropping the ring frees the mbufs still in it and the ring.
pub struct Ring {
    ptr: NonNull<ffi::rte_ring>,
    name: String,
    /// `Some(busy flag)` for a single-producer ring.
    prod: Option<AtomicBool>,
    /// `Some(busy flag)` for a single-consumer ring.
    cons: Option<AtomicBool>,
}

// SAFETY: rte_ring operations are thread-safe in MP/MC mode, and SP/SC sides are serialised
// by the busy flags; the ring memory lives until drop, and EAL cleanup waits for all handles.
unsafe impl Send for Ring {}
// SAFETY: as above; all methods take &self.
unsafe impl Sync for Ring {}

/// Holds a single-producer/consumer side exclusively.
struct Side<'a>(Option<&'a AtomicBool>);

impl<'a> Side<'a> {
    #[inline]
    fn acquire(flag: Option<&'a AtomicBool>) -> Side<'a> {
        if let Some(f) = flag {
            while f.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
                std::hint::spin_loop();
            }
        }
        Side(flag)
    }
}

impl Drop for Side<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(f) = self.0 {
            f.store(false, Ordering::Release);
        }
    }
}

impl Ring {
    /// `rte_ring_create` with room for exactly `size` mbufs (`RING_F_EXACT_SZ`) on any
    /// socket. Names are process-wide, unique and short (< 29 chars).
    pub fn new(
        _eal: &Eal,
        name: &str,
        size: u32,
        single_producer: bool,
        single_consumer: bool,
    ) -> Result<Ring, DpdkError> {
        let op = || format!("rte_ring_create({name:?}, size={size}, sp={single_producer}, sc={single_consumer})");
        let c = CString::new(name).map_err(|_| DpdkError::check(op(), libc::EINVAL, "name contains a NUL byte"))?;
        let mut flags = ffi::RING_F_EXACT_SZ;
        if single_producer {
            flags |= ffi::RING_F_SP_ENQ;
        }
        if single_consumer {
            flags |= ffi::RING_F_SC_DEQ;
        }
        // SAFETY: EAL is running (_eal); c is a valid C string for the call's duration.
        let raw = unsafe { ffi::rte_ring_create(c.as_ptr(), size, ffi::SOCKET_ID_ANY, flags) };
        let ptr = NonNull::new(raw).ok_or_else(|| DpdkError::from_rte_errno(op()))?;
        LIVE_HANDLES.fetch_add(1, Ordering::AcqRel);
        Ok(Ring {
            ptr,
            name: name.to_string(),
            prod: single_producer.then(|| AtomicBool::new(false)),
            cons: single_consumer.then(|| AtomicBool::new(false)),
        })
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Enqueue one mbuf; gives it back if the ring is full.
    #[inline]
    pub fn enqueue(&self, m: Mbuf) -> Result<(), Mbuf> {
        let _side = Side::acquire(self.prod.as_ref());
        // SAFETY: live ring; producer side held exclusively if SP. On success the ring owns
        // the mbuf (we forget our handle); on failure nothing was stored.
        let ret = unsafe { ffi::rte_ring_enqueue(self.ptr.as_ptr(), m.as_ptr().cast::<c_void>()) };
        if ret == 0 {
            std::mem::forget(m);
            Ok(())
        } else {
            Err(m)
        }
    }

    /// Enqueue as many mbufs from the front of `pkts` as fit; those are removed from `pkts`.
    /// Returns how many.
    #[inline]
    pub fn enqueue_burst(&self, pkts: &mut Vec<Mbuf>) -> usize {
        if pkts.is_empty() {
            return 0;
        }
        let n = u32::try_from(pkts.len()).unwrap_or(u32::MAX);
        let _side = Side::acquire(self.prod.as_ref());
        // SAFETY: live ring, producer side held if SP. pkts[..n] are valid owned mbuf
        // pointers (transparent Mbuf); the ring takes the first k, which are then removed
        // from pkts without being dropped.
        unsafe {
            let k = ffi::rte_ring_enqueue_burst(
                self.ptr.as_ptr(),
                pkts.as_ptr().cast::<*mut c_void>(),
                n,
                std::ptr::null_mut(),
            ) as usize;
            remove_front_without_drop(pkts, k);
            k
        }
    }

    /// Dequeue up to `max` mbufs (bounded by `out`'s spare capacity) onto `out`.
    /// Returns how many.
    #[inline]
    pub fn dequeue_burst(&self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let room = (out.capacity() - out.len()).min(max).min(u32::MAX as usize);
        if room == 0 {
            return 0;
        }
        let _side = Side::acquire(self.cons.as_ref());
        let len = out.len();
        // SAFETY: live ring, consumer side held if SC. `out` has `room` spare slots usable as
        // `*mut c_void` (transparent Mbuf). Only mbufs enqueued through this type are in the
        // ring, so the k written pointers are valid mbufs whose ownership passes to `out`.
        unsafe {
            let dst = out.as_mut_ptr().add(len).cast::<*mut c_void>();
            let k = ffi::rte_ring_dequeue_burst(self.ptr.as_ptr(), dst, room as u32, std::ptr::null_mut()) as usize;
            out.set_len(len + k);
            k
        }
    }

    /// Mbufs currently in the ring.
    pub fn count(&self) -> u32 {
        // SAFETY: live ring; reads the head/tail indices.
        unsafe { ffi::rte_ring_count(self.ptr.as_ptr()) }
    }

    /// How many mbufs the ring can hold.
    pub fn capacity(&self) -> u32 {
        // SAFETY: live ring; reads a constant field.
        unsafe { ffi::rte_ring_get_capacity(self.ptr.as_ptr()) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let mut v = Vec::with_capacity(MAX_BURST);
        while self.dequeue_burst(&mut v, MAX_BURST) > 0 {
            v.clear(); // frees the mbufs
        }
        // SAFETY: &mut self: no other user; the ring is empty and freed exactly once.
        unsafe { ffi::rte_ring_free(self.ptr.as_ptr()) };
        LIVE_HANDLES.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("name", &self.name)
            .field("count", &self.count())
            .field("capacity", &self.capacity())
            .finish()
    }
}
