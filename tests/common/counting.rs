//! A counting global allocator for the memory tests. A test binary that measures heap bytes
//! installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: common::counting::Counting = common::counting::Counting;
//! ```
//!
//! It forwards to the system allocator and counts live bytes per thread: each allocation and
//! free is counted on the thread that makes it, in a `const` thread-local `Cell` (which never
//! allocates, so reading it inside the allocator cannot recurse), and for the whole process,
//! which only shows what a process-wide count would have seen.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

/// Forwards to [`System`] and counts live bytes per thread and for the process.
pub struct Counting;

thread_local! {
    /// Bytes this thread allocated minus bytes it freed.
    static MINE: Cell<isize> = const { Cell::new(0) };
}

/// Bytes allocated minus freed by every thread.
static PROCESS: AtomicIsize = AtomicIsize::new(0);

fn count(bytes: isize) {
    // `try_with` and not `with`: the allocator may run while this thread's locals are being
    // torn down. A `const` local without `Drop` is never torn down, so this cannot miss a byte
    // in practice; it must only never panic inside the allocator.
    let _ = MINE.try_with(|c| c.set(c.get() + bytes));
    PROCESS.fetch_add(bytes, Ordering::Relaxed);
}

/// Heap bytes this thread holds (allocated minus freed by it) while [`Counting`] is the
/// global allocator; 0 otherwise.
pub fn live_bytes() -> isize {
    MINE.with(Cell::get)
}

/// Heap bytes every thread holds, counted the same way.
pub fn process_bytes() -> isize {
    PROCESS.load(Ordering::Relaxed)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// caller's guarantees to us are exactly the guarantees `System` needs; we only add counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (see the impl).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (see the impl).
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract (see the impl).
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract (see the impl).
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        new
    }
}
