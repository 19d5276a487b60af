//! `wait()`: resolves exactly when nothing is pending or running, reports panics and
//! cancellation, covers work scheduled while waiting, and is cancel safe.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{bounded, ms, settle};
use schedgroup::Group;
use tokio::time::{Instant, timeout};

#[tokio::test(start_paused = true)]
async fn wait_with_no_tasks_resolves_at_once() {
    let group = Group::new();
    let t0 = Instant::now();
    bounded(group.wait()).await.unwrap();
    assert_eq!(Instant::now(), t0);
}

#[tokio::test(start_paused = true)]
async fn wait_resolves_when_the_last_task_finishes_not_before() {
    let group = Group::new();
    let t0 = Instant::now();
    group.delay(ms(100), async {});
    group.delay(ms(300), async {
        tokio::time::sleep(ms(50)).await;
    });
    bounded(group.wait()).await.unwrap();
    assert_eq!(Instant::now() - t0, ms(350));
    let stats = group.stats();
    assert_eq!((stats.pending, stats.running, stats.completed), (0, 0, 2));
}

#[tokio::test(start_paused = true)]
async fn many_waiters_on_clones_and_tasks_all_resolve() {
    let group = Group::new();
    group.delay(ms(10), async {});
    group.delay(ms(20), async {});
    let mut waiters = Vec::new();
    for _ in 0..8 {
        let g = group.clone();
        waiters.push(tokio::spawn(async move { bounded(g.wait()).await }));
    }
    let direct = bounded(group.wait());
    let (direct, joined) = tokio::join!(direct, async {
        let mut out = Vec::new();
        for w in waiters {
            out.push(bounded(w).await.unwrap());
        }
        out
    });
    direct.unwrap();
    assert!(joined.into_iter().all(|r| r.is_ok()));
}

#[tokio::test(start_paused = true)]
async fn a_task_that_schedules_its_retry_is_covered_by_the_same_wait() {
    let group = Group::new();
    let attempts = Arc::new(AtomicU64::new(0));
    fn attempt(group: Group, attempts: Arc<AtomicU64>, backoff: Duration) {
        let g = group.clone();
        group.delay(backoff, async move {
            if attempts.fetch_add(1, Ordering::SeqCst) < 4 {
                attempt(g, attempts, backoff * 2);
            }
        });
    }
    let t0 = Instant::now();
    attempt(group.clone(), attempts.clone(), ms(100));
    bounded(group.wait()).await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 5);
    // 100 + 200 + 400 + 800 + 1600 ms of backoff.
    assert_eq!(Instant::now() - t0, ms(3100));
}

#[tokio::test(start_paused = true)]
async fn work_scheduled_after_wait_returned_is_covered_by_a_later_wait() {
    let group = Group::new();
    group.delay(ms(10), async {});
    bounded(group.wait()).await.unwrap();
    let t1 = Instant::now();
    group.delay(ms(500), async {});
    bounded(group.wait()).await.unwrap();
    assert_eq!(Instant::now() - t1, ms(500));
    assert_eq!(group.stats().completed, 2);
}

#[tokio::test(start_paused = true)]
async fn wait_reports_how_many_tasks_panicked() {
    let group = Group::new();
    let first = group.delay(ms(1), async { panic!("first") }).id();
    group.delay(ms(2), async {});
    let second = group
        .delay(ms(3), async {
            tokio::task::yield_now().await;
            panic!("second, after an await")
        })
        .id();
    let err = bounded(group.wait()).await.unwrap_err();
    assert!(err.is_panicked());
    assert!(!err.is_cancelled());
    assert_eq!(err.panicked(), 2);
    assert_eq!(err.panicked_ids(), [first, second]);
    assert_eq!(
        err.to_string(),
        format!("2 tasks panicked (tasks {first}, {second})")
    );
    let stats = group.stats();
    assert_eq!((stats.completed, stats.panicked), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn wait_says_cancelled_after_cancel() {
    let group = Group::new();
    group.delay(Duration::from_secs(10), async {});
    let g = group.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(5)).await;
        g.cancel();
    });
    let err = bounded(group.wait()).await.unwrap_err();
    assert!(err.is_cancelled() && !err.is_panicked());
    assert_eq!(err.to_string(), "group was cancelled");
}

#[tokio::test(start_paused = true)]
async fn dropping_a_wait_loses_nothing() {
    let group = Group::new();
    group.delay(ms(100), async {});
    group.delay(ms(300), async {});
    // A wait() that times out is dropped mid-flight...
    assert!(timeout(ms(150), group.wait()).await.is_err());
    assert_eq!(group.stats().completed, 1);
    // ...and the next one still sees the rest.
    let t = Instant::now();
    bounded(group.wait()).await.unwrap();
    assert_eq!(Instant::now() - t, ms(150));
}

#[tokio::test(start_paused = true)]
async fn wait_is_not_fooled_by_an_idle_moment_it_did_not_see() {
    // Go's schedgroup loses its one-shot "0 left" message if Wait is not parked at that
    // instant. Here the group goes idle, gets new work, and goes idle again while a waiter is
    // being polled only now and then.
    let group = Group::new();
    group.delay(ms(10), async {});
    let mut wait = Box::pin(group.wait());
    assert!(futures_poll_once(wait.as_mut()).is_none());
    tokio::time::sleep(ms(20)).await;
    settle().await;
    group.delay(ms(10), async {});
    assert!(
        bounded(wait).await.is_ok(),
        "level-triggered: idle once is enough"
    );
}

fn futures_poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match f.poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// Issue 9, item 9: a wait that never ends fails its test within moments of real time on the
/// paused clock, instead of hanging CI until its time limit. Here a group's only task never
/// ends, so `wait()` never does either.
#[test]
fn item9_a_hung_wait_fails_in_seconds() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let hung = rt.block_on(async {
        let group = Group::new();
        group.delay(ms(1), std::future::pending::<()>());
        // Not bounded again: the bound inside ends it, and an outer one would fire as well.
        tokio::spawn(async move { bounded(group.wait()).await }).await
    });
    let panic = hung.expect_err("wait() of a task that never ends returned");
    let message = *panic.into_panic().downcast::<String>().unwrap();
    assert!(
        message.contains("a wait did not end within") && message.contains("paused time"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the hang took {:?} of real time to fail",
        started.elapsed()
    );
}

/// Issue 9, item 9: `bounded` tells the paused clock from the real one, so it applies a bound
/// that a hang reaches quickly on either.
#[test]
fn item9_bounded_tells_the_paused_clock_from_the_real_one() {
    for paused in [true, false] {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(paused)
            .build()
            .unwrap();
        assert_eq!(rt.block_on(async { common::clock_is_paused() }), paused);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    assert!(!rt.block_on(async { common::clock_is_paused() }));
}
