//! The process's allocator: mimalloc for small blocks, the system's malloc (glibc's) for large
//! ones.
//!
//! Every tensor op allocates its output. mimalloc serves that churn of small blocks fastest, and
//! was chosen for training, where glibc handed freed pages back to the kernel, which zeroed
//! them again (12% of a step). But mimalloc (v3 as v2) keeps a thread's freed large pages for
//! that thread: `predict`, whose batches run on two encoder threads while the main thread
//! loads, reads and caches, held 415 MB on the 2,626 pairs of the ER file with no seeker cache,
//! against 280 MB under glibc alone at the same speed (2-core AMD EPYC, docs/PERFORMANCE.md).
//! glibc's arenas coalesce freed blocks of any size and, past its first frees, serve large
//! blocks from them instead of fresh mappings. So large blocks, the tensors' buffers, go to
//! glibc, and everything smaller stays with mimalloc.
//!
//! A block's allocator is decided by its size alone, which every `dealloc` and `realloc` is
//! given with the block, so each block returns to the allocator that made it.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at least this many bytes come from the system allocator: a 64-token row of
/// MiniLM's hidden states is 96 KiB, so every batch's tensors do.
pub const LARGE_BLOCK: usize = 64 << 10;

pub struct SplitAllocator;

fn is_large(size: usize) -> bool {
    size >= LARGE_BLOCK
}

// SAFETY: each method forwards to one of two allocators that uphold `GlobalAlloc`'s contract,
// chosen by a size that the caller passes unchanged from allocation to deallocation.
unsafe impl GlobalAlloc for SplitAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size()) {
            System.alloc(layout)
        } else {
            mimalloc::MiMalloc.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size()) {
            System.alloc_zeroed(layout)
        } else {
            mimalloc::MiMalloc.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(layout.size()) {
            System.dealloc(ptr, layout)
        } else {
            mimalloc::MiMalloc.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (is_large(layout.size()), is_large(new_size)) {
            (true, true) => System.realloc(ptr, layout, new_size),
            (false, false) => mimalloc::MiMalloc.realloc(ptr, layout, new_size),
            // Crossing the line moves the block to the other allocator.
            _ => {
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grows and shrinks a block across the line both ways, as a `Vec` does, and checks that
    /// its contents survive each move.
    #[test]
    fn a_block_keeps_its_bytes_when_realloc_moves_it_between_allocators() {
        let a = SplitAllocator;
        let small = 1000;
        let large = LARGE_BLOCK * 3;
        unsafe {
            let layout = Layout::from_size_align(small, 16).unwrap();
            let p = a.alloc(layout);
            assert!(!p.is_null());
            for i in 0..small {
                *p.add(i) = (i % 251) as u8;
            }
            let p = a.realloc(p, layout, large);
            assert!(!p.is_null());
            assert_eq!(p as usize % 16, 0);
            for i in 0..small {
                assert_eq!(*p.add(i), (i % 251) as u8);
            }
            let big = Layout::from_size_align(large, 16).unwrap();
            let p = a.realloc(p, big, 500);
            assert!(!p.is_null());
            for i in 0..500 {
                assert_eq!(*p.add(i), (i % 251) as u8);
            }
            a.dealloc(p, Layout::from_size_align(500, 16).unwrap());
            let z = a.alloc_zeroed(big);
            assert!((0..large).all(|i| *z.add(i) == 0));
            a.dealloc(z, big);
        }
    }
}
