//! An allocator that watches what one fuzz input makes the readers allocate.
//!
//! A reader that trusts a count from a file (`num_hidden_layers: 10^12`, a GGUF array of 2^60
//! strings) asks for memory it can never use: the process aborts, or swaps the machine to a halt.
//! [`BoundedAllocator`] wraps the system allocator, counts live bytes, and records any single
//! request above [`SINGLE_ALLOCATION_BOUND`] or any peak of live bytes above
//! [`LIVE_BYTES_BOUND`] (both measured from the start of an input). A request it records is still
//! passed on — refusing it would abort the process before the input could be saved — so the
//! input being run is written to the crash file first, from inside the allocator, without
//! allocating.
//!
//! The test binary and the long run install it with
//! `#[global_allocator] static A: BoundedAllocator = BoundedAllocator;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicUsize, Ordering};

/// The largest single allocation one fuzz input may cause: 64 MiB. Seeds are below 1 MiB and
/// mutated inputs below [`crate::MAX_INPUT_BYTES`]; the largest honest expansion (4-bit GGUF
/// blocks to f32, a safetensors file to tensors) is under 16× the input.
pub const SINGLE_ALLOCATION_BOUND: usize = 64 << 20;

/// The most live heap one fuzz input may add to what was live when it started: 256 MiB.
pub const LIVE_BYTES_BOUND: usize = 256 << 20;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static BASELINE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);
static ARMED: AtomicBool = AtomicBool::new(false);
static SAVED: AtomicBool = AtomicBool::new(false);
static INPUT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);
static CRASH_FD: AtomicI32 = AtomicI32::new(-1);

/// The system allocator with live-byte accounting and the bounds above.
pub struct BoundedAllocator;

// SAFETY: every method forwards to `System` with the caller's layout and pointer unchanged;
// the bookkeeping only touches atomics and (on a violation) writes bytes to a file descriptor,
// neither of which allocates or unwinds.
unsafe impl GlobalAlloc for BoundedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_request(layout.size());
        // SAFETY: forwarded unchanged (see the impl's comment).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note_live(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_request(layout.size());
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note_live(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) };
        note_live(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_request(new_size);
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note_live(new_size as isize - layout.size() as isize);
        }
        p
    }
}

fn note_request(size: usize) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    LARGEST.fetch_max(size, Ordering::Relaxed);
    if size > SINGLE_ALLOCATION_BOUND {
        save_input_once(b"an allocation above the bound");
    }
}

fn note_live(delta: isize) {
    let live = if delta >= 0 {
        LIVE.fetch_add(delta as usize, Ordering::Relaxed) + delta as usize
    } else {
        LIVE.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed)
            .saturating_sub(delta.unsigned_abs())
    };
    if ARMED.load(Ordering::Relaxed) {
        let above = live.saturating_sub(BASELINE.load(Ordering::Relaxed));
        PEAK.fetch_max(above, Ordering::Relaxed);
        if above > LIVE_BYTES_BOUND {
            save_input_once(b"live heap above the bound");
        }
    }
}

/// Writes the current input to the crash file (once per input) without allocating: the process
/// may abort on the very allocation that triggered this.
fn save_input_once(why: &[u8]) {
    if SAVED.swap(true, Ordering::Relaxed) {
        return;
    }
    let _ = std::io::stderr().write_all(b"prism-fuzz: ");
    let _ = std::io::stderr().write_all(why);
    let _ = std::io::stderr().write_all(b"; the input is saved in the crash file\n");
    let fd = CRASH_FD.load(Ordering::Relaxed);
    let ptr = INPUT.load(Ordering::Relaxed);
    if fd < 0 || ptr.is_null() {
        return;
    }
    // SAFETY: `fd` was opened by `arm` and stays open for the whole run (it is never closed:
    // the `File` is wrapped in `ManuallyDrop`); `ptr`/`len` point at the input `arm` was given,
    // which outlives the armed section (`disarm` clears them before the input is dropped).
    let mut file = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    let bytes = unsafe { std::slice::from_raw_parts(ptr, INPUT_LEN.load(Ordering::Relaxed)) };
    let _ = file.write_all(bytes);
    let _ = file.sync_all();
}

/// What the allocator saw while one input ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocationReport {
    /// The largest single request, in bytes.
    pub largest: usize,
    /// The peak of live bytes above the start of the input.
    pub peak: usize,
}

impl AllocationReport {
    /// Whether the input stayed within both bounds.
    pub fn within_bounds(&self) -> bool {
        self.largest <= SINGLE_ALLOCATION_BOUND && self.peak <= LIVE_BYTES_BOUND
    }
}

/// Starts watching: `input` is what the crash file receives if a bound is crossed. `crash_fd`
/// is an open, writable, truncated file descriptor (see [`crate::Campaign`]).
pub(crate) fn arm(input: &[u8], crash_fd: i32) {
    INPUT.store(input.as_ptr() as *mut u8, Ordering::Relaxed);
    INPUT_LEN.store(input.len(), Ordering::Relaxed);
    CRASH_FD.store(crash_fd, Ordering::Relaxed);
    SAVED.store(false, Ordering::Relaxed);
    LARGEST.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    BASELINE.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    ARMED.store(true, Ordering::SeqCst);
}

/// Stops watching and reports.
pub(crate) fn disarm() -> AllocationReport {
    ARMED.store(false, Ordering::SeqCst);
    INPUT.store(std::ptr::null_mut(), Ordering::Relaxed);
    INPUT_LEN.store(0, Ordering::Relaxed);
    AllocationReport {
        largest: LARGEST.load(Ordering::Relaxed),
        peak: PEAK.load(Ordering::Relaxed),
    }
}

/// Whether [`BoundedAllocator`] is the global allocator of this process (it counts live bytes
/// only when it is). Checked by allocating and watching the count move.
pub fn installed() -> bool {
    let before = LIVE.load(Ordering::Relaxed);
    let v = std::hint::black_box(vec![0u8; 1 << 16]);
    let during = LIVE.load(Ordering::Relaxed);
    drop(v);
    during >= before + (1 << 16)
}

/// Runs `f` with the allocator watching (no crash file) and reports what it allocated.
///
/// ```
/// // Without `BoundedAllocator` installed nothing is counted: the report is empty.
/// let r = prism_fuzz::guard::measure(|| drop(vec![0u8; 1024]));
/// assert!(r.within_bounds());
/// ```
pub fn measure(f: impl FnOnce()) -> AllocationReport {
    arm(&[], -1);
    f();
    disarm()
}
