//! A cache-line prefetch hint: one of the workspace's two `unsafe` blocks (ARCHITECTURE.md).
//!
//! Remote write resolves a request's ~2,000 series one after another, and each resolution
//! waits on cache misses (the series cache's map slot, the series, its open chunk's last
//! byte) that the series before it cannot overlap: every step takes a lock, and a locked
//! instruction waits for the loads before it. A prefetch issued a few series ahead starts
//! those misses early; prefetches are not ordered by locked instructions, so they overlap.

/// Asks the CPU to bring the cache line holding `p` into its caches; no effect otherwise.
/// Any pointer value is fine, dangling or null: nothing is read.
#[inline(always)]
pub fn prefetch<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: PREFETCHT0 is a hint with no architectural effect: it never faults, whatever
    // the address (Intel SDM vol. 2, PREFETCHh: "does not affect program behavior"), reads
    // nothing into the program and writes nothing; SSE is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_pointer_is_fine() {
        let v = [1u8; 64];
        super::prefetch(v.as_ptr());
        super::prefetch(v.as_ptr().wrapping_add(1 << 40));
        super::prefetch(std::ptr::null::<u64>());
        assert_eq!(v[0], 1, "nothing changed");
    }
}
