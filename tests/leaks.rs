//! Leaks: after `wait()`, after cancellation, and after every clone is dropped, the heap bytes
//! this process holds and the runtime's live tokio tasks return to their baseline.
//!
//! A counting global allocator sees the whole process, so the tests in this file take a lock
//! and never run beside each other. The check with a million tasks is `#[ignore]`d; run it in
//! release mode:
//! `cargo test --release --test leaks -- --ignored`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ms;
use schedgroup::Group;

/// Forwards to the system allocator and keeps a running total of live bytes.
struct Counting;

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

static SERIAL: Mutex<()> = Mutex::new(());

fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

const N: u64 = 10_000;

/// Every way a group's work can end, each on a group that is then dropped.
async fn every_ending(counter: &Arc<AtomicU64>) {
    let task = |counter: &Arc<AtomicU64>| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    };
    // Ran to completion, then wait().
    let group = Group::new();
    for i in 0..N {
        group.delay(ms(i % 50), task(counter));
    }
    group.wait().await.unwrap();
    drop(group);

    // Cancelled while pending and while running.
    let group = Group::builder().max_concurrent(8).build();
    for i in 0..N {
        group.delay(ms(i % 50), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
    }
    tokio::time::sleep(ms(10)).await;
    group.cancel();
    assert!(group.wait().await.unwrap_err().is_cancelled());
    drop(group);

    // Every handle cancelled, with the group still alive: its queue must be empty memory too.
    let group = Group::new();
    let handles: Vec<_> = (0..N)
        .map(|i| group.delay(Duration::from_secs(3600 + i), task(counter)))
        .collect();
    for h in &handles {
        assert!(h.cancel());
    }
    drop(handles);
    settle().await;
    group.wait().await.unwrap();
    drop(group);

    // Every clone dropped with work pending: it runs, then everything goes.
    let group = Group::builder().max_concurrent(4).build();
    for i in 0..N {
        group.delay(ms(i % 50), task(counter));
    }
    drop(group);
    tokio::time::sleep(ms(100)).await;
    settle().await;
}

#[test]
fn memory_and_tokio_tasks_return_to_their_baseline() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let counter = Arc::new(AtomicU64::new(0));
        let metrics = tokio::runtime::Handle::current().metrics();
        // Once to let tokio and the test reach their steady state (timer wheel levels, ...).
        every_ending(&counter).await;
        let bytes = live_bytes();
        let tasks = metrics.num_alive_tasks();
        for round in 0..3 {
            every_ending(&counter).await;
            let grown = live_bytes() - bytes;
            assert!(
                grown.abs() <= 1024,
                "round {round}: {grown} bytes more than the baseline after every group ended"
            );
            assert_eq!(
                metrics.num_alive_tasks(),
                tasks,
                "round {round}: live tokio tasks"
            );
        }
        // Two endings run their tasks, in the warm-up and in each of three rounds.
        assert_eq!(counter.load(Ordering::Relaxed), 2 * 4 * N);
    });
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Schedules a million far-future tasks that each capture one `Arc`.
fn fill(group: &Group, counter: &Arc<AtomicU64>) {
    for i in 0..1_000_000u64 {
        let counter = counter.clone();
        group.delay(Duration::from_secs(3600 + i % 100), async move {
            counter.fetch_add(1, Ordering::Relaxed);
        });
    }
}

/// A million tasks, cancelled, three times over: the heap bytes the process holds return to
/// their baseline each time (exactly: the counting allocator sees every byte).
///
/// Resident memory is printed, not asserted: glibc keeps freed 32-byte chunks (each task's box)
/// as free memory in the process, and how much of it `malloc_trim` could hand back depends on
/// where the allocator's heap happens to be fragmented. Measured here: 67 MB resident with a
/// million pending, 35 MB after the cancel in a first cycle and 60 MB in later ones, with the
/// heap bytes back at baseline (+0 to +512) every time. (A `malloc_trim(0)` after the cancel
/// was once measured to bring a first cycle to 3.3 MB and a later one only to 28 MB.)
#[test]
#[ignore = "a million tasks: run in release mode with --ignored"]
fn a_million_cancelled_tasks_give_back_every_byte() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let counter = Arc::new(AtomicU64::new(0));
        // Warm up tokio's own structures (timer levels, ...) with one small cycle first.
        let group = Group::new();
        group.delay(Duration::from_secs(3600), async {});
        group.cancel();
        drop(group);
        settle().await;
        let bytes = live_bytes();
        let before = resident_bytes();
        for cycle in 0..3 {
            let group = Group::new();
            fill(&group, &counter);
            let full_bytes = live_bytes() - bytes;
            let full = resident_bytes();
            assert!(group.cancel());
            drop(group);
            settle().await;
            let kept = live_bytes() - bytes;
            eprintln!(
                "cycle {cycle}: heap bytes with 1M pending +{full_bytes}, after cancel +{kept}; \
                 RSS before {before}, with 1M pending {full}, after cancel {}",
                resident_bytes()
            );
            assert!(
                full_bytes > 50_000_000,
                "a million tasks were held: {full_bytes}"
            );
            assert!(
                kept.abs() <= 1024,
                "cycle {cycle}: {kept} heap bytes still held after cancelling a million tasks"
            );
        }
    });
}
