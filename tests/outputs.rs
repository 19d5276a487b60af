//! Issue 10: outputs back to the requester, aborting a running task, `is_finished` and
//! `deadline`, each on tokio's paused clock.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{DropFlag, bounded, ms};
use schedgroup::{CancelledBy, Group, JoinError, JoinHandle, Limiter, Results, task_id};
use tokio::time::{Instant, sleep};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `JoinError` boxes into the error type `anyhow` and `?` in most applications take.
#[test]
fn the_output_types_are_send_and_the_error_is_sync() {
    fn send<T: Send + 'static>() {}
    fn boxed(err: JoinError) -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(err)
    }
    send::<JoinHandle<Vec<u8>>>();
    send::<Results<Vec<u8>>>();
    let _ = boxed;
}

#[tokio::test(start_paused = true)]
async fn a_join_handle_returns_the_output_at_the_deadline_after_the_future_is_dropped() {
    let group = Group::new();
    let start = Instant::now();
    let (guard, dropped) = DropFlag::new();
    let answer = group.delay_join(secs(2), async move {
        let _guard = guard;
        sleep(ms(5)).await;
        42
    });
    assert!(!answer.is_finished());
    let got = bounded(answer).await.unwrap();
    assert_eq!(got, 42);
    assert_eq!(start.elapsed(), secs(2) + ms(5));
    assert!(dropped.load(Ordering::SeqCst), "the future went first");
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.stats().completed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_pending_task_cancelled_by_its_handle_says_so_and_its_future_is_gone_first() {
    let group = Group::new();
    let (guard, dropped) = DropFlag::new();
    let task = group.delay_join(secs(5), async move {
        let _guard = guard;
        unreachable!("cancelled before it started")
    });
    let id = task.id();
    assert!(task.cancel());
    assert!(dropped.load(Ordering::SeqCst));
    assert!(task.is_finished());
    let err = bounded(task).await.unwrap_err();
    assert_eq!(err.id(), id);
    assert!(err.is_cancelled() && !err.is_panic());
    assert_eq!(err.cancelled_by(), Some(CancelledBy::Handle));
    assert_eq!(
        err.to_string(),
        format!("task {id} was cancelled by its handle")
    );
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.stats().cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn the_group_cancelling_pending_running_and_refused_tasks_says_group() {
    let group = Group::new();
    let pending = group.delay_join(secs(5), async { 1 });
    let running = group.delay_join(ms(1), async {
        sleep(secs(10)).await;
        2
    });
    sleep(ms(2)).await;
    assert!(!running.is_finished() && running.deadline().is_none());
    group.cancel();
    let refused = group.delay_join(ms(1), async { 3 });
    for task in [pending, running, refused] {
        let err = bounded(task).await.unwrap_err();
        assert_eq!(err.cancelled_by(), Some(CancelledBy::Group), "{err}");
    }
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    assert_eq!(group.stats().cancelled, 3);
}

#[tokio::test(start_paused = true)]
async fn a_panic_comes_back_with_its_payload_once_and_resumes() {
    let group = Group::new();
    let task = group.delay_join(ms(1), async {
        if task_id().is_some() {
            std::panic::panic_any(String::from("boom"));
        }
        7
    });
    let id = task.id();
    let err = bounded(task).await.unwrap_err();
    assert!(err.is_panic() && !err.is_cancelled() && err.cancelled_by().is_none());
    assert_eq!(err.id(), id);
    assert_eq!(err.to_string(), format!("task {id} panicked: boom"));
    assert!(format!("{err:?}").contains("boom"));
    let payload = err.into_panic();
    let resumed = catch_unwind(AssertUnwindSafe(|| resume_unwind(payload))).unwrap_err();
    assert_eq!(
        resumed.downcast_ref::<String>().map(String::as_str),
        Some("boom")
    );
    // Reported once: to its requester, so not by `wait()`; the stats keep it.
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.stats().panicked, 1);
}

/// A panic nobody receives (its `JoinHandle` was dropped, or it had none) is reported by
/// `wait()`; one its `Results` received is not.
#[tokio::test(start_paused = true)]
async fn wait_reports_the_panics_no_requester_received() {
    let group = Group::new();
    let mut results = group.results::<()>();
    let boom = || async {
        if task_id().is_some() {
            panic!("boom");
        }
    };
    let detached = {
        let task = group.delay_join(ms(1), boom());
        task.id()
    };
    let plain = group.delay(ms(1), boom()).id();
    results.delay(ms(1), boom());
    let err = bounded(group.wait()).await.unwrap_err();
    let mut ids = err.panicked_ids().to_vec();
    ids.sort();
    assert_eq!(ids, [detached, plain]);
    assert!(
        bounded(results.join_next())
            .await
            .unwrap()
            .1
            .unwrap_err()
            .is_panic()
    );
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.stats().panicked, 3);
}

#[tokio::test(start_paused = true)]
async fn try_into_panic_hands_a_cancellation_back() {
    let group = Group::new();
    let task = group.delay_join(secs(1), async {});
    task.cancel();
    let err = bounded(task).await.unwrap_err();
    let err = err.try_into_panic().unwrap_err();
    assert_eq!(err.cancelled_by(), Some(CancelledBy::Handle));
}

/// A future that returned and then panicked in its `Drop`: a panicked task, whose output the
/// requester never sees (it is dropped), with the `Drop`'s payload.
#[tokio::test(start_paused = true)]
async fn a_future_whose_drop_panics_after_returning_is_a_panic_and_its_output_is_dropped() {
    struct Returns(Option<DropFlag>);
    impl std::future::Future for Returns {
        type Output = DropFlag;
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<DropFlag> {
            std::task::Poll::Ready(self.0.take().expect("polled once"))
        }
    }
    impl Drop for Returns {
        fn drop(&mut self) {
            panic!("drop");
        }
    }
    let group = Group::new();
    let (out_guard, out_dropped) = DropFlag::new();
    let task = group.delay_join(ms(1), Returns(Some(out_guard)));
    let err = bounded(task).await.unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.into_panic().downcast_ref::<&str>(), Some(&"drop"));
    assert!(out_dropped.load(Ordering::SeqCst));
    assert_eq!(group.stats().panicked, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_join_handle_detaches_and_the_output_is_dropped_when_the_task_ends() {
    let group = Group::new();
    let ran = Arc::new(AtomicBool::new(false));
    let (out_guard, out_dropped) = DropFlag::new();
    let r = ran.clone();
    drop(group.delay_join(secs(1), async move {
        r.store(true, Ordering::SeqCst);
        out_guard
    }));
    bounded(group.wait()).await.unwrap();
    assert!(ran.load(Ordering::SeqCst) && out_dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_running_task_learns_its_own_id() {
    let group = Group::new();
    let task = group.delay_join(ms(1), async { task_id() });
    let id = task.id();
    assert_eq!(bounded(task).await.unwrap(), Some(id));
}

// ===== abort =====

/// A running task's handle stops it at its `.await`: at once on the paused clock, counted as
/// cancelled, its requester told so; under a cap of one the next due task starts at once.
#[tokio::test(start_paused = true)]
async fn cancel_stops_a_running_task_at_its_await_and_frees_its_slot() {
    let group = Group::builder().max_concurrent(1).build();
    let (guard, dropped) = DropFlag::new();
    let reached = Arc::new(AtomicUsize::new(0));
    let r = reached.clone();
    let long = group.delay_join(ms(1), async move {
        let _guard = guard;
        r.fetch_add(1, Ordering::SeqCst);
        sleep(secs(3600)).await;
        r.fetch_add(1, Ordering::SeqCst);
    });
    let next = group.delay_join(ms(1), async { Instant::now() });
    sleep(ms(10)).await;
    assert_eq!(reached.load(Ordering::SeqCst), 1);
    assert!(!long.is_finished() && !long.handle().is_pending());
    let at = Instant::now();
    assert!(long.cancel(), "running: asked to stop");
    assert!(!long.cancel(), "asked before");
    let err = bounded(long).await.unwrap_err();
    assert_eq!(err.cancelled_by(), Some(CancelledBy::Handle));
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(
        reached.load(Ordering::SeqCst),
        1,
        "never went past its await"
    );
    assert_eq!(
        bounded(next).await.unwrap(),
        at,
        "the freed slot went to the next task"
    );
    bounded(group.wait()).await.unwrap();
    let stats = group.stats();
    assert_eq!((stats.completed, stats.cancelled), (1, 1));
}

/// One runner, several aborts in a row (each uses its wake-up up): every one lands.
#[tokio::test(start_paused = true)]
async fn aborts_in_a_row_on_one_runner_each_land() {
    let group = Group::builder().max_concurrent(1).build();
    let tasks: Vec<_> = (0..5)
        .map(|_| group.delay_join(ms(1), sleep(secs(3600))))
        .collect();
    for task in tasks {
        sleep(ms(1)).await;
        assert!(task.cancel());
        let err = bounded(task).await.unwrap_err();
        assert_eq!(err.cancelled_by(), Some(CancelledBy::Handle));
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.stats().cancelled, 5);
}

/// An abort frees the limiter's slot too: the other group's task starts at once.
#[tokio::test(start_paused = true)]
async fn an_abort_hands_the_limiters_slot_on() {
    let limiter = Limiter::new(1);
    let a = Group::builder().limiter(&limiter).build();
    let b = Group::builder().limiter(&limiter).build();
    let hog = a.delay_join(ms(1), sleep(secs(3600)));
    let waiting = b.delay_join(ms(2), async { Instant::now() });
    sleep(ms(10)).await;
    assert_eq!(limiter.running(), 1);
    let at = Instant::now();
    assert!(hog.cancel());
    assert_eq!(bounded(waiting).await.unwrap(), at);
    bounded(a.wait()).await.unwrap();
    bounded(b.wait()).await.unwrap();
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

// ===== is_finished and deadline =====

#[tokio::test(start_paused = true)]
async fn is_finished_and_deadline_follow_the_task() {
    let group = Group::new();
    let start = Instant::now();
    let first = group.delay(secs(1), async {});
    let middle = group.delay(secs(2), async { sleep(secs(1)).await });
    let last = group.delay(secs(3), async {});
    // The earliest (O(1)) and the others (looked up).
    assert_eq!(first.deadline(), Some(start + secs(1)));
    assert_eq!(middle.deadline(), Some(start + secs(2)));
    assert_eq!(last.deadline(), Some(start + secs(3)));
    assert!(middle.reschedule(start + secs(4)));
    assert_eq!(middle.deadline(), Some(start + secs(4)));
    assert!(!middle.is_finished());
    sleep(secs(4) + ms(1)).await;
    assert_eq!(middle.deadline(), None, "started");
    assert!(!middle.is_finished(), "running");
    assert!(first.is_finished() && last.is_finished());
    sleep(secs(1)).await;
    assert!(middle.is_finished());
    let never = group.delay(Duration::MAX, async {});
    assert!(never.deadline().unwrap() >= Instant::now() + secs(29 * 365 * 86_400));
    assert!(never.cancel());
    assert_eq!(never.deadline(), None);
    assert!(never.is_finished());
    bounded(group.wait()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_task_refused_by_a_cancelled_group_is_finished_at_once() {
    let group = Group::new();
    group.cancel();
    let refused = group.delay(secs(1), async {});
    assert!(refused.is_finished() && refused.deadline().is_none() && !refused.cancel());
}

// ===== Results =====

#[tokio::test(start_paused = true)]
async fn results_come_in_the_order_tasks_end_with_their_ids() {
    let group = Group::builder().max_concurrent(2).build();
    let mut results = group.results::<&'static str>();
    assert!(results.is_empty());
    assert!(
        bounded(results.join_next()).await.is_none(),
        "nothing outstanding"
    );
    // Under a cap of 2: b runs from 1 s to 5 s; c runs at 2 s and ends at once; d starts at
    // 2 s in c's slot and ends at 4 s; a, due at 3 s, waits for d's slot and ends at 4 s.
    let a = results.delay(secs(3), async { "a" });
    let b = results.delay(secs(1), async {
        sleep(secs(4)).await;
        "b"
    });
    let c = results.delay(secs(2), async { "c" });
    let d = results.delay(secs(2), async {
        sleep(secs(2)).await;
        "d"
    });
    assert_eq!(results.len(), 4);
    assert!(results.try_join_next().is_none());
    let mut got = Vec::new();
    while let Some((id, result)) = bounded(results.join_next()).await {
        got.push((id, result.unwrap(), Instant::now()));
    }
    let start = Instant::now() - secs(5);
    assert_eq!(
        got,
        [
            (c.id(), "c", start + secs(2)),
            (d.id(), "d", start + secs(4)),
            (a.id(), "a", start + secs(4)),
            (b.id(), "b", start + secs(5)),
        ]
    );
    assert!(results.is_empty());
    bounded(group.wait()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn results_say_how_each_task_ended_once() {
    let group = Group::new();
    let mut results = group.results::<u32>();
    let ok = results.delay(ms(1), async { 1 });
    let cancelled = results.delay(secs(1), async { 2 });
    let aborted = results.delay(ms(1), async {
        sleep(secs(3600)).await;
        3
    });
    let boom = results.delay(ms(2), async {
        if task_id().is_some() {
            panic!("boom");
        }
        4
    });
    assert!(cancelled.cancel());
    sleep(ms(5)).await;
    assert!(aborted.cancel());
    let mut seen = std::collections::HashMap::new();
    while let Some((id, result)) = bounded(results.join_next()).await {
        assert!(seen.insert(id, result).is_none(), "{id} twice");
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[&ok.id()].as_ref().unwrap(), &1);
    let by = |id| seen[&id].as_ref().unwrap_err().cancelled_by();
    assert_eq!(by(cancelled.id()), Some(CancelledBy::Handle));
    assert_eq!(by(aborted.id()), Some(CancelledBy::Handle));
    assert!(seen[&boom.id()].as_ref().unwrap_err().is_panic());
    group.cancel();
    let refused = results.delay(ms(1), async { 5 });
    let (id, result) = bounded(results.join_next()).await.unwrap();
    assert_eq!(id, refused.id());
    assert_eq!(result.unwrap_err().cancelled_by(), Some(CancelledBy::Group));
    assert!(bounded(results.join_next()).await.is_none());
}

/// Dropping a `Results` detaches its tasks: they run (they are the group's), and their outputs
/// are dropped as they end.
#[tokio::test(start_paused = true)]
async fn a_dropped_results_detaches_its_tasks_and_drops_their_outputs() {
    let group = Group::new();
    let results = group.results::<DropFlag>();
    let (early, early_dropped) = DropFlag::new();
    let (late, late_dropped) = DropFlag::new();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    results.delay(ms(1), async move {
        r.fetch_add(1, Ordering::SeqCst);
        early
    });
    let r = ran.clone();
    results.delay(secs(1), async move {
        r.fetch_add(1, Ordering::SeqCst);
        late
    });
    sleep(ms(2)).await;
    assert!(!early_dropped.load(Ordering::SeqCst), "held by the Results");
    drop(results);
    assert!(
        early_dropped.load(Ordering::SeqCst),
        "dropped with the Results"
    );
    bounded(group.wait()).await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 2);
    assert!(late_dropped.load(Ordering::SeqCst), "dropped as it ended");
}

/// `wait()` does not wait for anyone to take the outputs.
#[tokio::test(start_paused = true)]
async fn wait_returns_once_tasks_end_whoever_holds_their_outputs() {
    let group = Group::new();
    let mut results = group.results::<u8>();
    let joined = group.delay_join(secs(1), async { 1u8 });
    results.schedule(Instant::now() + secs(2), async { 2u8 });
    bounded(group.wait()).await.unwrap();
    assert!(joined.is_finished());
    assert_eq!(results.len(), 1);
    assert_eq!(bounded(joined).await.unwrap(), 1);
    assert_eq!(bounded(results.join_next()).await.unwrap().1.unwrap(), 2);
}

/// Futures over the inline limit are boxed when scheduled: their outputs come back the same.
#[tokio::test(start_paused = true)]
async fn large_futures_and_zero_sized_outputs_come_back_too() {
    let group = Group::new();
    let pad = [7u8; 1024];
    let big = group.delay_join(ms(1), async move {
        sleep(ms(1)).await;
        pad
    });
    let unit = group.delay_join(ms(1), async {});
    assert_eq!(bounded(big).await.unwrap(), [7u8; 1024]);
    bounded(unit).await.unwrap();
}

// ===== the requester hears after the group counted =====

/// Found by review: the result used to reach the requester before the group recorded the end,
/// so right after `Ok(output)` a third of the time `stats()` still said running, `is_finished()`
/// said false and `cancel()` said true. The group now counts first, then delivers, then may
/// announce itself idle.
#[test]
fn a_received_output_finds_the_task_counted_finished_and_not_cancellable() {
    let rt = common::multi_thread(2);
    let n = common::iterations(2000);
    rt.block_on(async {
        let group = Group::new();
        let mut results = group.results::<u64>();
        for i in 0..n as u64 {
            let joined = group.delay_join(Duration::ZERO, async move { i });
            let handle = joined.handle().clone();
            assert_eq!(bounded(joined).await.unwrap(), i);
            assert!(handle.is_finished(), "iteration {i}");
            assert!(!handle.cancel(), "iteration {i}: cancel() after the output");
            let collected = results.delay(Duration::ZERO, async move { i });
            let (id, out) = bounded(results.join_next()).await.unwrap();
            assert_eq!((id, out.unwrap()), (collected.id(), i));
            assert!(
                collected.is_finished() && !collected.cancel(),
                "iteration {i}"
            );
            let stats = group.stats();
            assert_eq!(
                (stats.running, stats.completed),
                (0, 2 * (i + 1)),
                "iteration {i}"
            );
        }
    });
}

/// And a `wait()` that returns finds every result delivered.
#[test]
fn wait_returns_after_every_result_is_delivered() {
    let rt = common::multi_thread(2);
    let n = common::iterations(2000) / 4;
    rt.block_on(async {
        for i in 0..n {
            let group = Group::builder().max_concurrent(2).build();
            let mut results = group.results::<usize>();
            for k in 0..4 {
                results.delay(Duration::ZERO, async move { k });
            }
            let cancelled = results.delay(Duration::from_secs(60), async { 9 });
            cancelled.cancel();
            bounded(group.wait()).await.unwrap();
            let mut got = 0;
            while results.try_join_next().is_some() {
                got += 1;
            }
            assert_eq!(got, 5, "iteration {i}: results missing after wait()");
        }
    });
}
