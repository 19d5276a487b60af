//! The concurrency cap: never exceeded, changed at run time, and due tasks beyond it wait in
//! the queue rather than as tokio tasks.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Concurrency, alive, bounded, ms, settle};
use schedgroup::Group;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn running_tasks_never_exceed_the_cap() {
    let group = Group::builder().max_concurrent(3).build();
    let c = Arc::new(Concurrency::default());
    for n in 0..50u64 {
        let c = c.clone();
        group.delay(ms(n % 5), async move {
            let _in = c.enter();
            tokio::time::sleep(ms(10 + n % 7)).await;
        });
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(c.max(), 3);
    assert_eq!(group.stats().completed, 50);
}

#[tokio::test(start_paused = true)]
async fn due_tasks_beyond_the_cap_wait_in_the_queue_not_as_tokio_tasks() {
    const CAP: usize = 16;
    let group = Group::builder().max_concurrent(CAP).build();
    let base = alive();
    let peak = Arc::new(AtomicUsize::new(0));
    for _ in 0..100_000 {
        let peak = peak.clone();
        group.delay(Duration::ZERO, async move {
            peak.fetch_max(alive(), Ordering::Relaxed);
            tokio::task::yield_now().await;
        });
    }
    bounded(group.wait()).await.unwrap();
    let peak = peak.load(Ordering::Relaxed) - base;
    // CAP runners and the monitor.
    assert!(
        peak <= CAP + 1,
        "{peak} live tokio tasks for a cap of {CAP}"
    );
    assert!(peak >= CAP, "the cap was used: {peak}");
}

#[tokio::test(start_paused = true)]
async fn raising_the_cap_starts_waiting_tasks_at_once() {
    let group = Group::builder().max_concurrent(1).build();
    let c = Arc::new(Concurrency::default());
    for _ in 0..10 {
        let c = c.clone();
        group.delay(Duration::ZERO, async move {
            let _in = c.enter();
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
    }
    settle().await;
    assert_eq!(c.now(), 1);
    let t0 = Instant::now();
    assert!(group.set_max_concurrent(4));
    assert!(!group.set_max_concurrent(4), "no change");
    settle().await;
    assert_eq!(Instant::now(), t0);
    assert_eq!(c.now(), 4, "three more started without the clock moving");
    bounded(group.wait()).await.unwrap();
    assert_eq!(c.max(), 4);
}

#[tokio::test(start_paused = true)]
async fn lowering_the_cap_aborts_nothing_and_starts_nothing_until_below_it() {
    let group = Group::builder().max_concurrent(4).build();
    let c = Arc::new(Concurrency::default());
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    for n in 0..8u64 {
        let (c, starts) = (c.clone(), starts.clone());
        group.delay(Duration::ZERO, async move {
            let _in = c.enter();
            starts.lock().unwrap().push(Instant::now());
            // The first four end at 100, 200, 300 and 400 ms.
            tokio::time::sleep(ms(100 * (n + 1))).await;
        });
    }
    settle().await;
    assert_eq!(c.now(), 4);
    let t0 = Instant::now();
    group.set_max_concurrent(2);
    assert_eq!(c.now(), 4, "running tasks keep going");
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.stats().completed, 8, "nothing was aborted");
    let starts = starts.lock().unwrap();
    // Tasks 0..3 run to 100..400 ms; running drops below 2 only at 300 ms.
    assert!(starts[4..].iter().all(|&s| s >= t0 + ms(300)), "{starts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_cap_of_zero_pauses_starts_until_raised() {
    let group = Group::builder().max_concurrent(0).build();
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let ran = ran.clone();
        group.delay(ms(10), async move {
            ran.fetch_add(1, Ordering::SeqCst);
        });
    }
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(group.stats().pending, 5);
    group.set_max_concurrent(usize::MAX);
    bounded(group.wait()).await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_task_frees_its_slot() {
    let group = Group::builder().max_concurrent(1).build();
    let ran = Arc::new(AtomicUsize::new(0));
    group.delay(ms(1), async { panic!("holding the only slot") });
    for _ in 0..3 {
        let ran = ran.clone();
        group.delay(ms(2), async move {
            ran.fetch_add(1, Ordering::SeqCst);
        });
    }
    let err = bounded(group.wait()).await.unwrap_err();
    assert_eq!(err.panicked(), 1);
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    assert_eq!(group.stats().running, 0);
}
