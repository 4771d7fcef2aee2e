//! The global allocator: jemalloc, except that huge requests get address space only.
//!
//! **jemalloc** (through `tikv-jemallocator`, unprefixed, so RocksDB's C++ allocations use it too):
//! the broker's large buffers (request frames, group commits, memtable arenas, fetch reads) are
//! freed on other threads than the ones that allocated them, and glibc's per-thread arenas kept
//! that memory: peak RSS in the issue-15 benchmark went from about 550 MiB to about 310 MiB
//! (docs/performance.md). Background threads return freed pages after half a second
//! (`MALLOC_CONF` in the environment overrides `malloc_conf` below).
//!
//! **Huge requests**: `kafka-protocol` 0.18 sizes a decoded array with `Vec::with_capacity(n)` where `n` is the
//! array length read from the wire, before it finds out that the frame is far too short for `n`
//! elements. A ten-byte frame claiming two billion topics asks for hundreds of GiB, and a failed
//! allocation aborts the process: any client could kill the broker. (Upstream pull requests #152,
//! #161 and #200 bound the capacity; none is released.)
//!
//! Nothing in zombi legitimately allocates 1 GiB at once (frames are capped far below that), so
//! requests of that size are served with `mmap(MAP_NORESERVE)`: virtual address space that costs
//! nothing until touched. The decoder then fails on the short frame after touching at most a few
//! pages, and the mapping is released when the vector drops. Ordinary allocations are untouched.

use std::alloc::{GlobalAlloc, Layout};

use tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once at its start (a C string): purge freed pages from background
/// threads, dirty pages after 500 ms, without keeping them as "muzzy" pages in between.
#[unsafe(export_name = "malloc_conf")]
pub static MALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:500,muzzy_decay_ms:0\0"[0];

/// Allocations at least this large are reserved lazily.
const LAZY_BYTES_MIN: usize = 1 << 30;
const PAGE_BYTES: usize = 4096;

pub struct LazyHugeAllocator;

fn is_lazy(layout: Layout) -> bool {
    layout.size() >= LAZY_BYTES_MIN && layout.align() <= PAGE_BYTES
}

// SAFETY: every pointer handed out is either the system allocator's (and goes back to it) or a
// fresh private anonymous mapping of at least `layout.size()` bytes, page-aligned (so aligned for
// any `layout.align() <= PAGE_BYTES`), zero-filled, and unmapped with the same size on dealloc.
// `is_lazy` depends only on the layout, which callers must pass unchanged to `dealloc`.
unsafe impl GlobalAlloc for LazyHugeAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_lazy(layout) {
            // SAFETY: forwarded unchanged under the caller's contract.
            return unsafe { Jemalloc.alloc(layout) };
        }
        // SAFETY: an anonymous private mapping has no preconditions; failure is checked.
        let pointer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if pointer == libc::MAP_FAILED { std::ptr::null_mut() } else { pointer.cast() }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_lazy(layout) {
            // SAFETY: forwarded unchanged under the caller's contract.
            return unsafe { Jemalloc.alloc_zeroed(layout) };
        }
        // SAFETY: anonymous mappings are zero-filled.
        unsafe { self.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if !is_lazy(layout) {
            // SAFETY: `pointer` came from jemalloc with this layout.
            return unsafe { Jemalloc.dealloc(pointer, layout) };
        }
        // SAFETY: `pointer` is a mapping of `layout.size()` bytes made by `alloc`.
        unsafe {
            libc::munmap(pointer.cast(), layout.size());
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` forms a valid layout with the same alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_lazy(layout) && !is_lazy(new_layout) {
            // SAFETY: forwarded unchanged under the caller's contract.
            return unsafe { Jemalloc.realloc(pointer, layout, new_size) };
        }
        // Moving between the two kinds: allocate, copy what both hold, free the old block.
        // SAFETY: `new_layout` is valid (see above); the copy stays within both blocks.
        unsafe {
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(pointer, moved, layout.size().min(new_size));
                self.dealloc(pointer, layout);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    /// A capacity no machine here could back with memory is only reserved, and released again.
    #[test]
    fn huge_capacities_do_not_abort() {
        let mut huge: Vec<[u8; 64]> = Vec::with_capacity(2_000_000_000);
        huge.push([7; 64]);
        assert_eq!(huge[0][0], 7);
        assert!(huge.capacity() >= 2_000_000_000);
    }
}
