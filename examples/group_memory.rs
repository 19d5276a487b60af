//! Heap bytes a group holds: idle, and after use, counted by a counting global allocator.
//!
//! Creates groups on a current-thread runtime with a paused clock (so five minutes pass at
//! once), runs the tasks of each case, keeps the groups alive and prints the heap bytes they
//! hold, per group and for all of them, as a markdown table. The history kept for
//! `history()` is part of what a used group holds, read or not. Run it in release mode:
//!
//! ```text
//! cargo run --release --example group_memory
//! ```
//!
//! Pass a count to change how many groups each case makes, e.g. `-- 1000`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use schedgroup::Group;

/// Forwards to the system allocator and keeps a running total of live bytes.
struct Counting;

/// Live heap bytes of the whole process. Relaxed: one thread does all the work here.
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// caller's guarantees to us are exactly the guarantees `System` needs; we only add counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (see the impl).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (see the impl).
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract (see the impl).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract (see the impl).
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Lets every ready task run, without moving the paused clock.
async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

/// Heap bytes held by `count` groups that each ran a task at each of `at` (empty: idle).
async fn held_by(count: usize, at: &[Duration]) -> isize {
    let before = live();
    let mut groups = Vec::with_capacity(count);
    let list = live() - before;
    for _ in 0..count {
        let group = Group::new();
        for &delay in at {
            group.delay(delay, async {});
        }
        groups.push(group);
    }
    for group in &groups {
        group.wait().await.expect("no task panics");
    }
    settle().await;
    let held = live() - before - list;
    drop(groups);
    settle().await;
    held
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("the argument is a group count"))
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(async {
        let secs = Duration::from_secs;
        let cases: [(&str, &[Duration]); 4] = [
            ("idle (never used)", &[]),
            ("used once", &[secs(0)]),
            ("used twice, 1 s apart", &[secs(0), secs(1)]),
            ("used twice, 5 min apart", &[secs(0), secs(300)]),
        ];
        // Warm up the process clock, the runtime's timer and its task storage.
        held_by(1, cases[3].1).await;
        println!("| group | bytes per group (1 group) | bytes per group ({count} groups) | {count} groups (MiB) |");
        println!("|---|---|---|---|");
        for (name, at) in cases {
            let one = held_by(1, at).await;
            let all = held_by(count, at).await;
            println!(
                "| {name} | {one} | {:.0} | {:.1} |",
                all as f64 / count as f64,
                all as f64 / (1024.0 * 1024.0)
            );
        }
    });
}
