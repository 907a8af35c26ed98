//! A global allocator that keeps large freed blocks for reuse.
//!
//! A forward pass on the CPU allocates the same large buffers (activations, scores, logits)
//! block after block and pass after pass. The system allocator hands blocks this large to the
//! kernel on free and maps fresh ones on the next allocation, and every fresh page then costs a
//! page fault and a zeroing: 2.5 million faults and ~0.6 s of a 2 s SmolLM2 pass
//! (docs/BENCHMARKS.md). [`ReusingAllocator`] keeps freed blocks of at least
//! [`ReusingAllocator::MIN_BLOCK`] bytes (up to [`ReusingAllocator::CAPACITY`] bytes in all, the
//! oldest given back first) and returns one of exactly the requested size and alignment when
//! asked again; everything else goes straight to the system allocator.
//!
//! A binary opts in with one line (Prism's CLI and benchmarks do):
//!
//! ```
//! #[global_allocator]
//! static ALLOCATOR: prism_core::alloc::ReusingAllocator = prism_core::alloc::ReusingAllocator;
//!
//! let v = vec![1.0f32; 1 << 20]; // 4 MiB: from the system the first time
//! drop(v); // kept
//! let w = vec![0.0f32; 1 << 20]; // the same block, zeroed again
//! assert!(w.iter().all(|&x| x == 0.0));
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many freed blocks the cache holds at most.
const SLOTS: usize = 64;

#[derive(Clone, Copy)]
struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
}

/// Freed blocks, oldest first in ring order.
struct Cache {
    blocks: [Option<Block>; SLOTS],
    next: usize,
    bytes: usize,
}

// SAFETY: the cache owns the blocks it holds (nobody else has their pointers); moving that
// ownership between threads is what an allocator does.
unsafe impl Send for Cache {}

static ENABLED: AtomicBool = AtomicBool::new(true);

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    blocks: [None; SLOTS],
    next: 0,
    bytes: 0,
});

/// Whether a block the system allocated with alignment `had` can serve a request for `wants`:
/// the same alignment, or both at most `malloc`'s (two words, 16 bytes on 64-bit targets), which
/// the system allocator serves and frees alike. Byte buffers (burn's tensor storage) and `f32`
/// vectors then share blocks.
fn interchangeable(had: usize, wants: usize) -> bool {
    const MALLOC_ALIGN: usize = 2 * std::mem::size_of::<usize>();
    had == wants || (had <= MALLOC_ALIGN && wants <= MALLOC_ALIGN)
}

/// The system allocator, with large freed blocks kept for reuse (module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReusingAllocator;

impl ReusingAllocator {
    /// Smallest block kept: below this the system allocator already reuses memory itself.
    pub const MIN_BLOCK: usize = 256 << 10;
    /// Most bytes kept in freed blocks at once.
    pub const CAPACITY: usize = 1 << 30;

    /// Turns reuse on (the default) or off; off gives every cached block back and makes this
    /// the plain system allocator, so a benchmark can time both in one process.
    pub fn set_enabled(enabled: bool) {
        ENABLED.store(enabled, Ordering::SeqCst);
        if !enabled {
            let blocks = CACHE.lock().map(|mut c| {
                c.bytes = 0;
                std::mem::replace(&mut c.blocks, [None; SLOTS])
            });
            for block in blocks.into_iter().flatten().flatten() {
                // SAFETY: each cached block was allocated by `System` with its recorded layout.
                unsafe {
                    System.dealloc(
                        block.ptr,
                        Layout::from_size_align_unchecked(block.size, block.align),
                    )
                };
            }
        }
    }

    fn reuses(layout: Layout) -> bool {
        layout.size() >= Self::MIN_BLOCK && ENABLED.load(Ordering::Relaxed)
    }

    /// Bytes currently held in freed blocks (for tests and diagnostics).
    pub fn cached_bytes() -> usize {
        CACHE.lock().map(|c| c.bytes).unwrap_or(0)
    }

    fn take(layout: Layout) -> Option<*mut u8> {
        let mut cache = CACHE.lock().ok()?;
        let slot = cache.blocks.iter().position(|b| {
            b.is_some_and(|b| b.size == layout.size() && interchangeable(b.align, layout.align()))
        })?;
        let block = cache.blocks[slot].take()?;
        cache.bytes -= block.size;
        Some(block.ptr)
    }

    /// Keeps `ptr`, giving back the oldest blocks when the cache is full; returns the blocks to
    /// free (freed after the lock is released).
    fn keep(ptr: *mut u8, layout: Layout) -> [Option<Block>; SLOTS] {
        let mut evicted = [None; SLOTS];
        let block = Block {
            ptr,
            size: layout.size(),
            align: layout.align(),
        };
        let Ok(mut cache) = CACHE.lock() else {
            evicted[0] = Some(block);
            return evicted;
        };
        if block.size > Self::CAPACITY {
            evicted[0] = Some(block);
            return evicted;
        }
        let mut n = 0;
        // Walk from the oldest slot, giving back until the block fits in both count and bytes.
        for step in 0..SLOTS {
            let full = cache.blocks.iter().all(Option::is_some);
            if !full && cache.bytes + block.size <= Self::CAPACITY {
                break;
            }
            let i = (cache.next + step) % SLOTS;
            if let Some(old) = cache.blocks[i].take() {
                cache.bytes -= old.size;
                evicted[n] = Some(old);
                n += 1;
            }
        }
        let free = (0..SLOTS)
            .map(|s| (cache.next + s) % SLOTS)
            .find(|&i| cache.blocks[i].is_none());
        match free {
            Some(i) => {
                cache.blocks[i] = Some(block);
                cache.bytes += block.size;
                cache.next = (i + 1) % SLOTS;
            }
            None => evicted[n] = Some(block),
        }
        evicted
    }
}

// SAFETY: every block handed out is either fresh from `System` for this layout or a block
// `System` allocated for exactly the same size and alignment and that was freed (so nobody else
// holds it); blocks leave the cache exactly once (under the lock); blocks given back to
// `System` are freed with the layout they were allocated with.
unsafe impl GlobalAlloc for ReusingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::reuses(layout)
            && let Some(ptr) = Self::take(layout)
        {
            return ptr;
        }
        // SAFETY: forwarded with the caller's guarantees (non-zero size).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::reuses(layout)
            && let Some(ptr) = Self::take(layout)
        {
            // SAFETY: the block is `layout.size()` bytes, owned by the caller from here.
            unsafe { ptr.write_bytes(0, layout.size()) };
            return ptr;
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !Self::reuses(layout) {
            // SAFETY: `ptr` came from `System` with this layout (a cached block is handed out
            // only for its exact layout, so this block is `System`'s either way).
            return unsafe { System.dealloc(ptr, layout) };
        }
        for block in Self::keep(ptr, layout).into_iter().flatten() {
            // SAFETY: each block was allocated by `System` with its recorded size and alignment.
            unsafe {
                System.dealloc(
                    block.ptr,
                    Layout::from_size_align_unchecked(block.size, block.align),
                )
            };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() < Self::MIN_BLOCK && new_size < Self::MIN_BLOCK {
            // SAFETY: forwarded with the caller's guarantees; the block is `System`'s.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees `new_size` with this alignment is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and distinct (`new` is fresh
            // or came out of the cache, which never holds a live block).
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    // The cache is process-wide; one test drives it through its cases in order.
    #[test]
    fn reuses_exact_blocks_and_gives_back_the_oldest() {
        let a = ReusingAllocator;
        let big = layout(ReusingAllocator::MIN_BLOCK + 4096, 64);
        unsafe {
            let p = a.alloc(big);
            p.write_bytes(7, big.size());
            a.dealloc(p, big);
            // Same size and alignment: the same block back.
            let q = a.alloc(big);
            assert_eq!(p, q);
            a.dealloc(q, big);
            // Zeroed on request.
            let z = a.alloc_zeroed(big);
            assert_eq!(z, p);
            assert!(
                std::slice::from_raw_parts(z, big.size())
                    .iter()
                    .all(|&b| b == 0)
            );
            // A byte buffer's block serves an f32 vector of the same size.
            let bytes = layout(big.size(), 1);
            let b1 = a.alloc(bytes);
            a.dealloc(b1, bytes);
            let f = a.alloc(layout(big.size(), 4));
            assert_eq!(f, b1);
            a.dealloc(f, layout(big.size(), 4));
            // An over-aligned request is not served from a plain block.
            let other = layout(big.size(), 4096);
            let o = a.alloc(other);
            assert_ne!(o, z);
            assert_eq!(o as usize % 4096, 0);
            a.dealloc(o, other);
            a.dealloc(z, big);
            // Growing through realloc keeps the contents.
            let r = a.alloc(big);
            r.write_bytes(3, big.size());
            let g = a.realloc(r, big, big.size() * 2);
            assert!(
                std::slice::from_raw_parts(g, big.size())
                    .iter()
                    .all(|&b| b == 3)
            );
            a.dealloc(g, layout(big.size() * 2, 64));
            // More blocks than slots: the cache stays within its count and byte bounds.
            let many: Vec<*mut u8> = (0..SLOTS + 8).map(|_| a.alloc(big)).collect();
            for p in many {
                a.dealloc(p, big);
            }
            let cache = CACHE.lock().unwrap();
            assert!(cache.blocks.iter().flatten().count() <= SLOTS);
            let held: usize = cache.blocks.iter().flatten().map(|b| b.size).sum();
            assert_eq!(held, cache.bytes);
            assert!(cache.bytes <= ReusingAllocator::CAPACITY);
            drop(cache);
            // Switched off: everything given back, blocks go straight to the system.
            ReusingAllocator::set_enabled(false);
            assert_eq!(ReusingAllocator::cached_bytes(), 0);
            let p = a.alloc(big);
            a.dealloc(p, big);
            assert_eq!(ReusingAllocator::cached_bytes(), 0);
            ReusingAllocator::set_enabled(true);
        }
    }
}
