//! Leaks: after `wait()`, after cancellation, and after every clone is dropped, the heap bytes
//! the group's work used and the runtime's live tokio tasks return to their baseline.
//!
//! # Why the byte counts are exact
//!
//! The counting global allocator (`common::counting`) keeps one counter per thread: each allocation and free is
//! counted on the thread that makes it, in a `const` thread-local `Cell` (which itself never
//! allocates, so reading it inside the allocator cannot recurse). A test measures only its own
//! thread's counter, and runs everything it measures on that thread: a current-thread runtime
//! driven by `block_on` on the test thread runs every task, the timer and every drop there, the
//! crate starts no thread of its own, and nothing printed or shared with another thread is
//! allocated between the two readings. So every byte the group's work allocates or frees is
//! counted, and no byte of anyone else's is: other tests' threads (the harness runs them in
//! parallel in this process) can allocate and free as they like without moving the count. That
//! is by construction, not by luck: the process-wide counter this file once read failed CI with
//! "1451 heap bytes still held" when another test's threads held memory across the window
//! (issue 9, item 5), and `item5_leak_checks_ignore_other_threads_allocating` pins it.
//!
//! Re-running each test in a child process (as `tests/hostile.rs` does for other reasons) would
//! not be exact by itself: the harness's main thread still allocates in the child, for example
//! to print a "has been running for over 60 seconds" note.
//!
//! The tolerance of 1 KiB in the assertions is for structures that tokio and the crate grow
//! lazily and keep (a timer wheel level, a slab's capacity), not for noise; a leak of even one
//! byte per task in these tests is at least 10 KB.
//!
//! The check with a million tasks is `#[ignore]`d; run it in release mode:
//! `cargo test --release --test leaks -- --ignored`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::counting::{Counting, live_bytes, process_bytes};
use common::{bounded, join_bounded, ms};
use schedgroup::Group;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

/// Every way a group's work can end, each on a group of `n` tasks that is then dropped.
async fn every_ending(n: u64, counter: &Arc<AtomicU64>) {
    let task = |counter: &Arc<AtomicU64>| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    };
    // Ran to completion, then wait().
    let group = Group::new();
    for i in 0..n {
        group.delay(ms(i % 50), task(counter));
    }
    bounded(group.wait()).await.unwrap();
    drop(group);

    // Cancelled while pending and while running.
    let group = Group::builder().max_concurrent(8).build();
    for i in 0..n {
        group.delay(ms(i % 50), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
    }
    tokio::time::sleep(ms(10)).await;
    group.cancel();
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    drop(group);

    // Every handle cancelled, with the group still alive: its queue must be empty memory too.
    let group = Group::new();
    let handles: Vec<_> = (0..n)
        .map(|i| group.delay(Duration::from_secs(3600 + i), task(counter)))
        .collect();
    for h in &handles {
        assert!(h.cancel());
    }
    drop(handles);
    settle().await;
    bounded(group.wait()).await.unwrap();
    drop(group);

    // Every clone dropped with work pending: it runs, then everything goes.
    let group = Group::builder().max_concurrent(4).build();
    for i in 0..n {
        group.delay(ms(i % 50), task(counter));
    }
    drop(group);
    tokio::time::sleep(ms(100)).await;
    settle().await;
}

/// Runs [`every_ending`] on groups of `n` tasks, once to warm up and then three times, on a
/// current-thread runtime on this thread; each time, this thread's heap bytes and the runtime's
/// live tokio tasks are back at the level after the warm-up. `inside` runs within the measured
/// window, before each round.
fn assert_memory_returns_to_baseline(n: u64, inside: impl Fn()) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let counter = Arc::new(AtomicU64::new(0));
        let metrics = tokio::runtime::Handle::current().metrics();
        // Once to let tokio and the test reach their steady state (timer wheel levels, ...).
        every_ending(n, &counter).await;
        let bytes = live_bytes();
        let tasks = metrics.num_alive_tasks();
        for round in 0..3 {
            inside();
            every_ending(n, &counter).await;
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
        assert_eq!(counter.load(Ordering::Relaxed), 2 * 4 * n);
    });
}

#[test]
fn memory_and_tokio_tasks_return_to_their_baseline() {
    assert_memory_returns_to_baseline(10_000, || {});
}

/// Issue 9, item 5: the leak check held only when no other thread allocated during it. Here
/// two threads allocate and free blocks of changing sizes as fast as they can, holding a
/// changing amount, for the whole check: it must pass every time. (With the process-wide
/// counter this file used before, it failed five runs out of five, off by 4 to 13 KB.)
#[test]
fn item5_leak_checks_ignore_other_threads_allocating() {
    let stop = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicU64::new(0));
    let noise: Vec<_> = (0..2u64)
        .map(|t| {
            let (stop, churned) = (stop.clone(), churned.clone());
            std::thread::spawn(move || {
                let mut held: Vec<Vec<u8>> = (0..64).map(|_| Vec::new()).collect();
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                while !stop.load(Ordering::Relaxed) {
                    // xorshift: which block to replace, and with how many bytes (0-4095).
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    held[(x % 64) as usize] = vec![1; (x >> 20) as usize % 4096];
                    churned.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Inside the measured window, before each round, wait until the noise has replaced another
    // thousand blocks: it overlaps the check for certain, however the threads are scheduled.
    // (Spinning on an atomic allocates nothing.)
    let noise_in_the_window = || {
        let from = churned.load(Ordering::Relaxed);
        while churned.load(Ordering::Relaxed) < from + 1_000 {
            std::thread::yield_now();
        }
    };
    let process_before = process_bytes();
    let during = churned.load(Ordering::Relaxed);
    assert_memory_returns_to_baseline(1_000, noise_in_the_window);
    let during = churned.load(Ordering::Relaxed) - during;
    let process_moved = process_bytes() - process_before;
    stop.store(true, Ordering::Relaxed);
    for t in noise {
        join_bounded(t);
    }
    eprintln!(
        "{during} blocks replaced by other threads during the check; the process-wide count \
         moved by {process_moved} bytes"
    );
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

/// A million tasks, cancelled, three times over: the heap bytes this thread holds return to
/// their baseline each time (exactly: the counting allocator sees every byte it allocates and
/// frees, and no other thread's).
///
/// Resident memory (the whole process's) is printed, not asserted: glibc keeps freed 32-byte chunks (each task's box)
/// as free memory in the process, and how much of it `malloc_trim` could hand back depends on
/// where the allocator's heap happens to be fragmented. Measured here: 67 MB resident with a
/// million pending, 35 MB after the cancel in a first cycle and 60 MB in later ones, with the
/// heap bytes back at baseline (+0) every time. (A `malloc_trim(0)` after the cancel
/// was once measured to bring a first cycle to 3.3 MB and a later one only to 28 MB.)
#[test]
#[ignore = "a million tasks: run in release mode with --ignored"]
fn a_million_cancelled_tasks_give_back_every_byte() {
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
        // Printed after the loop: output written during it would be counted as held.
        let mut report = [(0, 0, 0, 0); 3];
        let bytes = live_bytes();
        let before = resident_bytes();
        for (cycle, line) in report.iter_mut().enumerate() {
            let group = Group::new();
            fill(&group, &counter);
            let full_bytes = live_bytes() - bytes;
            let full = resident_bytes();
            assert!(group.cancel());
            drop(group);
            settle().await;
            let kept = live_bytes() - bytes;
            *line = (full_bytes, kept, full, resident_bytes());
            // 40 bytes a pending task (inline storage, issue 13), plus the vectors' spare room.
            assert!(
                full_bytes >= 40_000_000,
                "a million tasks were held: {full_bytes}"
            );
            assert!(
                kept.abs() <= 1024,
                "cycle {cycle}: {kept} heap bytes still held after cancelling a million tasks"
            );
        }
        for (cycle, (full_bytes, kept, full, after)) in report.iter().enumerate() {
            eprintln!(
                "cycle {cycle}: heap bytes with 1M pending +{full_bytes}, after cancel +{kept}; \
                 RSS before {before}, with 1M pending {full}, after cancel {after}"
            );
        }
    });
}
