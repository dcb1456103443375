//! CPU and memory hints the packet path uses: the prefetch of `rte_prefetch0`, inlined into the
//! caller (DPDK's own is a static inline function, which through bindgen's wrappers would be a
//! call), and transparent huge pages for the large per-worker tables.

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

/// Ask the kernel to back the pages of `[addr, addr + len)` with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`), for tables read at random (sessions, their index): 2 MiB pages
/// keep their TLB entries from thrashing. Only the whole 4 KiB pages inside the range are
/// advised. A hint: `false` when the kernel refused (THP disabled, range not mapped), with
/// nothing changed. Any range is fine, including memory not mapped at all.
pub fn advise_hugepages(addr: usize, len: usize) -> bool {
    const PAGE: usize = 4096;
    let start = addr.saturating_add(PAGE - 1) & !(PAGE - 1);
    let end = addr.saturating_add(len) & !(PAGE - 1);
    if end <= start {
        return false;
    }
    // SAFETY: MADV_HUGEPAGE only sets a flag on the mappings of the range that tells the kernel
    // which page size to back them with; it never changes, moves or frees their contents, so no
    // Rust reference into the range is affected. An unmapped range makes it fail with ENOMEM.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugepage_advice_keeps_contents_and_refuses_nothing_mapped() {
        let v: Vec<u64> = (0..1 << 20).collect();
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        let advised = advise_hugepages(v.as_ptr() as usize, v.len() * 8);
        if thp.contains("[madvise]") || thp.contains("[always]") {
            assert!(advised, "THP is {thp:?}");
        }
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
        assert!(!advise_hugepages(v.as_ptr() as usize + 1, 100), "no whole page inside");
        assert!(!advise_hugepages(0x10_0000, 1 << 21), "nothing mapped there");
    }

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
