//! CPU hints the packet path uses: the prefetch of `rte_prefetch0`, inlined into the caller
//! (DPDK's own is a static inline function, which through bindgen's wrappers would be a call).

/// Start loading the cache line holding `addr` into all cache levels (`rte_prefetch0`). A hint:
/// any address is fine, including dangling or null ones.
#[inline(always)]
pub fn prefetch(addr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 never faults and changes no architectural state, whatever the address
    // (Intel SDM vol. 2B, "PREFETCHh"); SSE, which it needs, is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(addr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_takes_any_address() {
        let v = vec![7u8; 256];
        prefetch(v.as_ptr());
        prefetch(v.as_ptr().wrapping_add(200));
        prefetch(std::ptr::null());
        prefetch(usize::MAX as *const u8);
        assert_eq!(v[200], 7);
    }
}
