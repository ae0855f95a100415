//! The process allocator: mimalloc, asked for a plain block whenever a plain block is already
//! aligned enough, so that every small allocation takes mimalloc's fast path.
//!
//! `mimalloc::MiMalloc` passes every request to `mi_malloc_aligned`, whose fast path needs a free
//! block of the size class that happens to be aligned, and whose fallback over-allocates for size
//! classes that are not powers of two (a 24-byte `Vec` of pointers, say). mimalloc's plain blocks
//! are 8-aligned, and 16-aligned from 16 bytes up (`MI_MAX_ALIGN_SIZE`); Rust sizes are multiples
//! of their alignment, so any request aligned to at most 16 bytes is served by `mi_malloc` as is.
//! The same rule as the standard library's `System` allocator uses with `malloc`.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned,
};

/// Alignment every plain mimalloc block of at least this many bytes has.
const PLAIN_ALIGN: usize = 16;

/// Whether a plain block of `size` bytes is aligned enough for `align`.
fn plain_is_aligned(size: usize, align: usize) -> bool {
    align <= 8 || (align <= PLAIN_ALIGN && size >= PLAIN_ALIGN)
}

/// The global allocator of the binary and the benchmarks (`#[global_allocator]`).
pub struct Allocator;

// SAFETY: every method hands the request to mimalloc, which returns null or a block of at least
// the requested size; plain blocks are only used where `plain_is_aligned` holds (see the module docs).
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc accepts any size and power-of-two alignment.
        unsafe {
            if plain_is_aligned(layout.size(), layout.align()) {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if plain_is_aligned(layout.size(), layout.align()) {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator; the new block keeps `layout`'s alignment.
        unsafe {
            if plain_is_aligned(new_size, layout.align()) {
                mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every small size and alignment come back aligned, through alloc and realloc.
    #[test]
    fn blocks_are_aligned_for_every_small_layout() {
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for size in (align..=2048).step_by(align) {
                let layout = Layout::from_size_align(size, align).expect("valid layout");
                // SAFETY: non-zero size; the block is freed with the same allocator.
                unsafe {
                    let block = Allocator.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "size {size} align {align}");
                    let grown = Allocator.realloc(block, layout, size * 3);
                    assert!(!grown.is_null());
                    assert_eq!(grown as usize % align, 0, "realloc to {} align {align}", size * 3);
                    Allocator.dealloc(grown, Layout::from_size_align(size * 3, align).expect("valid layout"));
                    let zeroed = Allocator.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0);
                    assert!(std::slice::from_raw_parts(zeroed, size).iter().all(|&b| b == 0));
                    Allocator.dealloc(zeroed, layout);
                }
            }
        }
    }
}
