//! Faults: panics in tasks and in their `Drop`, user `Drop`s that call back into the group,
//! and a group used from another runtime.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Concurrency, assert_adds_up, bounded, ms, settle};
use schedgroup::Group;

/// Panics when dropped, unless disarmed.
struct PanicOnDrop(bool);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if self.0 {
            panic!("a task's Drop panicked");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_drop_that_panics_on_handle_cancel_is_contained() {
    let group = Group::new();
    let bomb = PanicOnDrop(true);
    let handle = group.delay(ms(10), async move {
        let _bomb = bomb;
    });
    assert!(
        handle.cancel(),
        "the cancel happened; the panic did not escape"
    );
    let s = group.stats();
    assert_eq!((s.pending, s.cancelled), (0, 1));
    bounded(group.wait()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn drops_that_panic_on_group_cancel_are_contained_pending_and_running() {
    let group = Group::new();
    for n in 0..5u64 {
        let bomb = PanicOnDrop(true);
        group.delay(ms(10 * n), async move {
            let _bomb = bomb;
            std::future::pending::<()>().await;
        });
    }
    tokio::time::sleep(ms(25)).await;
    assert_eq!(group.stats().running, 3);
    assert!(group.cancel());
    let err = bounded(group.wait()).await.unwrap_err();
    assert!(err.is_cancelled());
    let s = group.stats();
    assert_adds_up(s);
    assert_eq!((s.cancelled, s.running, s.pending), (5, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_drop_that_panics_after_completion_counts_as_panicked() {
    let group = Group::new();
    let bomb = PanicOnDrop(true);
    group.delay(ms(1), async move {
        let _keep = &bomb;
    });
    assert_eq!(bounded(group.wait()).await.unwrap_err().panicked(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_others_run_disturbs_nothing() {
    let group = Group::builder().max_concurrent(4).build();
    let c = Arc::new(Concurrency::default());
    let done = Arc::new(AtomicU64::new(0));
    for n in 0..12u64 {
        let (c, done) = (c.clone(), done.clone());
        group.delay(ms(n), async move {
            let _in = c.enter();
            tokio::time::sleep(ms(5)).await;
            if n == 5 {
                panic!("task 5");
            }
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    let err = bounded(group.wait()).await.unwrap_err();
    assert_eq!(err.panicked(), 1);
    assert_eq!(done.load(Ordering::SeqCst), 11);
    assert_eq!(c.now(), 0, "every task ended");
    assert!(c.max() <= 4);
}

#[tokio::test(start_paused = true)]
async fn a_drop_that_cancels_its_own_group_does_not_deadlock() {
    struct CancelOnDrop(Group);
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            self.0.cancel();
        }
    }
    // By handle: the future's Drop cancels the group, which drops the others.
    let group = Group::new();
    let guard = CancelOnDrop(group.clone());
    let first = group.delay(ms(10), async move {
        let _guard = guard;
    });
    group.delay(ms(20), async {});
    assert!(first.cancel());
    assert!(group.is_cancelled());
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    assert_eq!(group.stats().cancelled, 2);

    // By group cancel: the Drop re-enters cancel() while the first one is dropping futures.
    let group = Group::new();
    for _ in 0..3 {
        let guard = CancelOnDrop(group.clone());
        group.delay(ms(10), async move {
            let _guard = guard;
        });
    }
    assert!(group.cancel());
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    assert_eq!(group.stats().cancelled, 3);

    // While running: a running task's Drop cancels its group.
    let group = Group::new();
    let guard = CancelOnDrop(group.clone());
    group.delay(ms(1), async move {
        let _guard = guard;
    });
    group.delay(ms(50), async {
        unreachable!("cancelled by the first task's Drop")
    });
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    let s = group.stats();
    assert_eq!((s.completed, s.cancelled), (1, 1));
}

#[test]
fn a_group_built_on_one_runtime_is_used_from_another() {
    let home = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let group = Group::builder().runtime(home.handle().clone()).build();
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    other.block_on(async {
        for n in 0..100u64 {
            let done = done.clone();
            group.delay(Duration::from_micros(n * 50), async move {
                // Runs on the group's runtime, not this one.
                assert!(tokio::runtime::Handle::current().metrics().num_workers() == 1);
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        tokio::time::timeout(Duration::from_secs(10), group.wait())
            .await
            .expect("no hang")
            .unwrap();
    });
    assert_eq!(done.load(Ordering::SeqCst), 100);
}

#[tokio::test(start_paused = true)]
async fn each_panic_is_reported_once_with_its_task_id() {
    let group = Group::new();
    let first = group.delay(ms(1), async { panic!("once") });
    let err = bounded(group.wait()).await.unwrap_err();
    assert_eq!((err.panicked(), err.panicked_ids()), (1, &[first.id()][..]));
    // The next round reports only its own panics.
    group.delay(ms(1), async {});
    bounded(group.wait())
        .await
        .expect("the panic was reported once");
    let ids: Vec<_> = (0..10)
        .map(|n| group.delay(ms(n), async { panic!("again") }).id())
        .collect();
    let err = bounded(group.wait()).await.unwrap_err();
    assert_eq!(err.panicked(), 10);
    assert_eq!(
        err.panicked_ids(),
        &ids[..8],
        "the first eight, in the order they ended"
    );
    assert!(err.to_string().ends_with(", ...)"), "{err}");
    assert_eq!(group.stats().panicked, 11, "stats keep the lifetime total");
    // Cancellation is still reported by every wait(), as a state, not an event.
    group.cancel();
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    settle().await;
}
