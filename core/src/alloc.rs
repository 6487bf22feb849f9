//! A global allocator that survives absurd allocation requests.
//!
//! The wire codec (the kafka-protocol crate, 0.18) pre-sizes each decoded array with the
//! element count read from the request, before it checks that the bytes are there. A
//! 14-byte request can therefore ask for tens of gigabytes; if the allocator cannot
//! give it, Rust aborts the whole process, and one bad client would take the broker
//! down. (Upstream knows; see `docs/design/0002-untrusted-allocation.md`.)
//!
//! [`GuardedAllocator`] serves every allocation of [`HUGE_BYTES`] or more from an
//! anonymous `mmap` with `MAP_NORESERVE`: address space only, no memory until pages are
//! touched, and it does not fail on account of its size. The decoder's oversized
//! reservation costs nothing and is released when the decode fails on the short buffer.
//! Everything smaller goes to the system allocator unchanged.
//!
//! Under `vm.overcommit_memory=2` (strict accounting) `MAP_NORESERVE` is ignored and a
//! huge request fails as before.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations of this size or more are mapped, not taken from the heap. Nothing in the
/// broker legitimately allocates this much at once: requests are capped at
/// `socket.request.max.bytes` (100 MiB by default) and segments are mapped files.
pub const HUGE_BYTES: usize = 1 << 30;

/// The system allocator, with huge requests served by address-space-only mappings.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuardedAllocator;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
}

fn is_huge(layout: Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= page_size()
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED { std::ptr::null_mut() } else { ptr.cast() }
}

// SAFETY: huge blocks are page-aligned mappings (alignment checked in `is_huge`) released
// with munmap of the same size; all others are the system allocator's.
unsafe impl GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract of GlobalAlloc::alloc.
        unsafe { if is_huge(layout) { map(layout.size()) } else { System.alloc(layout) } }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: anonymous mappings are zero-filled; otherwise forwarded.
        unsafe { if is_huge(layout) { map(layout.size()) } else { System.alloc_zeroed(layout) } }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(layout) {
            // SAFETY: `ptr` came from `map` with this size.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded contract of GlobalAlloc::dealloc.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align(new_size, layout.align()).expect("valid layout");
        if !is_huge(layout) && !is_huge(new_layout) {
            // SAFETY: forwarded contract of GlobalAlloc::realloc.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate, copy the overlap, free the old block: each call's contract holds.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_untouched_allocation_costs_nothing_and_comes_back() {
        let allocator = GuardedAllocator;
        // 64 GiB: more than this machine's memory, as a bogus array count would ask.
        let layout = Layout::from_size_align(64 << 30, 8).unwrap();
        // SAFETY: the layout is non-zero; the block is freed with the same layout.
        unsafe {
            let ptr = allocator.alloc(layout);
            assert!(!ptr.is_null());
            *ptr = 7; // touching one page is fine
            assert_eq!(*ptr, 7);
            allocator.dealloc(ptr, layout);
        }
        let small = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: as above.
        unsafe {
            let ptr = allocator.alloc(small);
            let grown = allocator.realloc(ptr, small, 1000);
            assert!(!grown.is_null());
            allocator.dealloc(grown, Layout::from_size_align(1000, 8).unwrap());
        }
    }
}
