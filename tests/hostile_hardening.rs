//! Hostile review of the issue 9 hardening, through the public API only: stale handles, odd
//! durations, history across gaps, panicking drops and wakers, races with the last task.
//! Every wait is bounded.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::{assert_adds_up, bounded, join_bounded, settle};
use schedgroup::{Group, Limiter, Throttle};
use tokio::time::Instant;

const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// Counts wakes.
#[derive(Default)]
struct Count(AtomicUsize);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn poll_once<F: Future>(f: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(waker))
}

// ===== A: a panicking waker on one wait() strands another wait() of the same group =====

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_waker_on_one_wait_strands_no_other_wait_of_the_same_group() {
    let group = Group::new();
    group.delay(Duration::from_millis(10), async {});
    // First waiter: polled once by an executor whose waker panics.
    let bomb = common::bomb();
    let mut hostile = Box::pin(group.wait());
    assert!(poll_once(hostile.as_mut(), &bomb).is_pending());
    // Second waiter: an ordinary tokio task, registered after the first.
    let g = group.clone();
    let honest = tokio::spawn(async move { g.wait().await });
    settle().await;
    // The task ends at 10 ms; its runner announces idle: the bomb panics (caught), and the
    // honest waiter must still be woken.
    let out = tokio::time::timeout(Duration::from_secs(5), honest).await;
    drop(hostile);
    assert!(
        out.is_ok(),
        "an honest wait() on the group never returned after another waiter's waker panicked; \
         stats {:?}",
        group.stats()
    );
}

// ===== B: a panicking waker on a child of the group's token leaves the group uncancelled =====

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cancelling_the_groups_token_with_a_panicking_waker_on_a_child_token_still_cancels_the_group()
 {
    let group = Group::new();
    let token = group.cancellation_token();
    // Someone watches a child of the group's token on a hostile executor.
    let child = token.child_token();
    let bomb = common::bomb();
    let mut watch = Box::pin(child.cancelled_owned());
    assert!(poll_once(watch.as_mut(), &bomb).is_pending());
    // Cancelling through the token is documented to cancel the group.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| token.cancel()));
    drop(watch);
    assert!(token.is_cancelled());
    let ran = Arc::new(AtomicBool::new(false));
    let r2 = ran.clone();
    group.delay(
        Duration::ZERO,
        async move { r2.store(true, Ordering::SeqCst) },
    );
    settle().await;
    assert!(
        group.is_cancelled() && !ran.load(Ordering::SeqCst),
        "the group's token is cancelled (cancel() panicked: {}), yet group.is_cancelled() = {} \
         and a task scheduled afterwards ran = {}",
        r.is_err(),
        group.is_cancelled(),
        ran.load(Ordering::SeqCst)
    );
}

/// The same through a parent: a panicking waker on one sibling group's child token keeps the
/// other sibling group from ever learning that the parent was cancelled.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_parent_cancel_with_a_panicking_waker_under_one_group_still_cancels_a_sibling_group() {
    let parent = tokio_util::sync::CancellationToken::new();
    let a = Group::builder().cancellation_token(parent.clone()).build();
    let b = Group::builder().cancellation_token(parent.clone()).build();
    let pending_b = b.delay(Duration::from_secs(1), async {});
    // Someone else watches the same parent on a hostile executor, registered after `b`.
    let sibling = parent.child_token();
    let bomb = common::bomb();
    let mut watch = Box::pin(sibling.cancelled_owned());
    assert!(poll_once(watch.as_mut(), &bomb).is_pending());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parent.cancel()));
    drop(watch);
    settle().await;
    let out = tokio::time::timeout(Duration::from_secs(5), b.wait()).await;
    assert!(
        b.is_cancelled() && !pending_b.is_pending() && matches!(out, Ok(Err(_))),
        "parent cancelled (cancel panicked: {}); a.is_cancelled() = {}, b.is_cancelled() = {}, \
         b's token cancelled = {}, b's task pending = {}, b.wait() = {:?}, b {:?}",
        r.is_err(),
        a.is_cancelled(),
        b.is_cancelled(),
        b.cancellation_token().is_cancelled(),
        pending_b.is_pending(),
        out,
        b.stats()
    );
}

// ===== C: the paused clock beyond 292 years from the process base =====

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_short_delay_still_runs_after_the_paused_clock_passes_292_years() {
    let group = Group::new();
    tokio::time::advance(300 * YEAR).await;
    let ran = Arc::new(AtomicUsize::new(0));
    for d in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_secs(1),
    ] {
        let r = ran.clone();
        group.delay(d, async move {
            r.fetch_add(1, Ordering::SeqCst);
        });
    }
    let r = ran.clone();
    group.schedule(Instant::now(), async move {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let out = tokio::time::timeout(Duration::from_secs(10), group.wait()).await;
    assert!(
        out.is_ok() && ran.load(Ordering::SeqCst) == 4,
        "300 years on the paused clock: of delay(0), delay(1 ms), delay(1 s), \
         schedule(now), {} ran within 10 s; {:?}",
        ran.load(Ordering::SeqCst),
        group.stats()
    );
}

// ===== D: stale handles across many reuse cycles =====

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn stale_handles_across_many_reuse_cycles_never_touch_a_later_task() {
    let group = Group::new();
    let mut stale = Vec::new();
    for round in 0..20_000u64 {
        let h = group.delay(Duration::from_secs(1), async {});
        match round % 3 {
            0 => assert!(h.cancel()),
            1 => {
                assert!(h.reschedule(Instant::now()));
                settle().await;
            }
            _ => {
                tokio::time::advance(Duration::from_secs(1)).await;
                settle().await;
            }
        }
        assert!(!h.is_pending());
        if round % 97 == 0 {
            stale.push(h);
        }
    }
    let live = group.delay(Duration::from_secs(5), async {});
    for h in &stale {
        assert!(!h.is_pending() && !h.cancel() && !h.reschedule(Instant::now()));
    }
    assert!(live.is_pending());
    bounded(group.wait()).await.unwrap();
    assert_adds_up(group.stats());
}

// ===== E: reschedule storms, then cancel =====

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reschedule_storm_under_a_zero_cap_then_cancel() {
    let group = Group::builder().max_concurrent(0).build();
    let hs: Vec<_> = (0..8)
        .map(|_| group.delay(Duration::from_secs(3600), async {}))
        .collect();
    let now = Instant::now();
    let past = now.checked_sub(Duration::from_secs(10)).unwrap();
    for i in 0..200_000u64 {
        let h = &hs[(i % 8) as usize];
        let at = match i % 4 {
            0 => past,
            1 => now + Duration::from_nanos(i),
            2 => now + YEAR * 1000,
            _ => now,
        };
        assert!(h.reschedule(at));
        if i % 10_000 == 0 {
            let hist = group.history();
            assert!(hist.waiting <= 8, "{hist:?}");
            settle().await;
        }
    }
    assert_eq!(group.stats().pending, 8);
    for h in &hs {
        assert!(h.cancel());
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.stats().cancelled, 8);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reschedule_storm_racing_the_deadline_runs_each_task_once() {
    let group = Group::builder().max_concurrent(2).build();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut hs = Vec::new();
    for _ in 0..200 {
        let r = runs.clone();
        hs.push(group.delay(Duration::from_millis(1), async move {
            r.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }));
    }
    let mut moved = 0;
    for step in 0..400 {
        for h in &hs {
            if h.reschedule(Instant::now() + Duration::from_micros(step % 3 * 500)) {
                moved += 1;
            }
        }
        tokio::time::advance(Duration::from_micros(700)).await;
        settle().await;
    }
    bounded(group.wait()).await.unwrap();
    assert!(moved > 0);
    assert_eq!(runs.load(Ordering::SeqCst), 200);
    assert_eq!(group.stats().completed, 200);
}

// ===== F: odd durations and instants =====

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn odd_durations_and_instants_never_panic_and_behave() {
    let group = Group::new();
    let far_past = {
        let mut at = Instant::now();
        let mut chunk = YEAR * 10_000;
        while chunk >= Duration::from_secs(1) {
            match at.checked_sub(chunk) {
                Some(next) => at = next,
                None => chunk /= 2,
            }
        }
        at
    };
    let far_future = {
        let mut at = Instant::now();
        let mut chunk = Duration::MAX;
        while chunk >= Duration::from_secs(1) {
            match at.checked_add(chunk) {
                Some(next) => at = next,
                None => chunk /= 2,
            }
        }
        at
    };
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let a = group.schedule(far_future, async move {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let r = ran.clone();
    let b = group.delay(Duration::MAX, async move {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let r = ran.clone();
    let c = group.delay(Duration::new(u64::MAX, 999_999_999), async move {
        r.fetch_add(1, Ordering::SeqCst);
    });
    tokio::time::advance(YEAR * 50).await;
    settle().await;
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    // Moves to the ends of the range.
    assert!(a.reschedule(far_future) && b.reschedule(far_future));
    assert!(c.reschedule(far_past));
    settle().await;
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the far past runs at once");
    assert!(a.reschedule(far_past));
    assert!(b.reschedule(std::time::Instant::now()));
    bounded(group.wait()).await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    let _ = group.history();

    // Throttle extremes.
    for hold in [Duration::ZERO, Duration::from_nanos(1), Duration::MAX] {
        for (floor, ceiling, step) in [
            (0, Some(usize::MAX), usize::MAX),
            (usize::MAX, None, 0),
            (0, Some(0), 1),
        ] {
            let limiter = Limiter::new(usize::MAX);
            let t = Throttle {
                step_down: step,
                step_up: step,
                floor,
                ceiling,
                hold,
            };
            limiter.set_throttle(t);
            group.set_throttle(t);
            for _ in 0..4 {
                let _ = limiter.throttle_down();
                let _ = limiter.throttle_up();
                let _ = group.throttle_down();
                let _ = group.throttle_up();
                tokio::time::advance(YEAR * 100).await;
            }
            let _ = limiter.history();
        }
    }
    group.set_max_concurrent(usize::MAX);
    group.delay(Duration::ZERO, async {});
    bounded(group.wait()).await.unwrap();
}

// ===== G: history across gaps and many events =====

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn history_across_gaps_jumps_and_many_events() {
    let group = Group::new();
    for _ in 0..50_000 {
        group.delay(Duration::ZERO, async {});
    }
    bounded(group.wait()).await.unwrap();
    let h = group.history();
    assert_eq!(h.windows[0].started, 50_000, "{h:?}");
    assert_eq!(h.windows[2].completed, 50_000, "{h:?}");
    // One long task started, then a jump of an hour: it is still running.
    group.delay(Duration::ZERO, async {
        tokio::time::sleep(Duration::from_secs(7200)).await;
    });
    settle().await;
    tokio::time::advance(Duration::from_secs(3600)).await;
    settle().await;
    let h = group.history();
    assert_eq!(h.running, 1);
    for w in &h.windows {
        assert_eq!((w.started, w.completed, w.peak_running), (0, 0, 1), "{h:?}");
        assert!((w.mean_running - 1.0).abs() < 1e-9, "{h:?}");
    }
    // A jump of a century: the 2 h task's timer fires at the jump's end, so it ends "now".
    tokio::time::advance(YEAR * 100).await;
    settle().await;
    let h = group.history();
    assert_eq!(h.running, 0, "{h:?}");
    assert_eq!(h.windows[2].completed, 1, "{h:?}");
    tokio::time::advance(Duration::from_secs(400)).await;
    let h = group.history();
    for w in &h.windows {
        assert_eq!((w.started, w.completed, w.peak_running), (0, 0, 0), "{h:?}");
        assert_eq!(w.mean_running, 0.0, "{h:?}");
    }
    // A task in the 10 s window: 5 s of running in a 10-11 s window.
    group.delay(Duration::ZERO, async {
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    settle().await;
    // Sleep (not advance): the task's timer fires at 5 s, not at the end of a jump.
    tokio::time::sleep(Duration::from_secs(6)).await;
    settle().await;
    let h = group.history();
    let w = &h.windows[0];
    assert_eq!((w.started, w.completed, w.peak_running), (1, 1, 1), "{h:?}");
    assert!(
        w.mean_running > 0.4 && w.mean_running <= 0.5 + 1e-9,
        "{h:?}"
    );
}

// ===== H: wait() racing the last task on a multi-thread runtime =====

#[test]
fn wait_racing_the_last_task_on_a_multi_thread_runtime() {
    let rt = common::multi_thread(4);
    rt.block_on(async {
        for iter in 0..common::iterations(2000) {
            let group = Group::builder().max_concurrent(3).build();
            let done = Arc::new(AtomicUsize::new(0));
            for i in 0..4 {
                let d = done.clone();
                group.delay(Duration::from_micros(i * 10), async move {
                    tokio::task::yield_now().await;
                    d.fetch_add(1, Ordering::SeqCst);
                });
            }
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let g = group.clone();
                    tokio::spawn(async move { g.wait().await })
                })
                .collect();
            bounded(group.wait()).await.unwrap();
            assert_eq!(done.load(Ordering::SeqCst), 4, "iteration {iter}");
            let s = group.stats();
            assert_eq!(
                (s.pending, s.running, s.completed),
                (0, 0, 4),
                "iteration {iter}"
            );
            for w in waiters {
                bounded(w).await.unwrap().unwrap();
            }
        }
    });
}

// ===== I: tokens cancelled from other threads while runners poll =====

#[test]
fn tokens_cancelled_from_other_threads_while_runners_poll() {
    let rt = common::multi_thread(3);
    for iter in 0..common::iterations(2000) / 7 {
        let parent = tokio_util::sync::CancellationToken::new();
        let group = rt.block_on(async {
            Group::builder()
                .cancellation_token(parent.clone())
                .max_concurrent(8)
                .build()
        });
        let live = Arc::new(AtomicUsize::new(0));
        for i in 0..64u64 {
            let l = live.clone();
            group.delay(Duration::from_micros(i % 5 * 50), async move {
                l.fetch_add(1, Ordering::SeqCst);
                struct Dec(Arc<AtomicUsize>);
                impl Drop for Dec {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _d = Dec(l);
                loop {
                    tokio::task::yield_now().await;
                }
            });
        }
        let p = parent.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros(100 + (iter as u64 % 7) * 40));
            p.cancel();
        });
        join_bounded(t);
        let r = rt.block_on(async { bounded(group.wait()).await });
        assert!(r.is_err(), "iteration {iter}: {r:?}");
        assert_eq!(live.load(Ordering::SeqCst), 0, "iteration {iter}");
        assert!(group.is_cancelled());
        let s = group.stats();
        assert_eq!((s.pending, s.running), (0, 0), "iteration {iter}: {s:?}");
        assert_adds_up(s);
    }
}

// ===== J: Drops that panic in odd places =====

struct PanicOnDrop;
impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("drop bomb");
        }
    }
}

#[test]
fn drops_that_panic_during_runtime_shutdown_hand_limiter_slots_on() {
    let limiter = Limiter::new(2);
    let rt = common::current_thread(false);
    let g = rt.block_on(async { Group::builder().limiter(&limiter).build() });
    for _ in 0..10 {
        let bomb = PanicOnDrop;
        g.delay(Duration::ZERO, async move {
            let _b = &bomb;
            std::future::pending::<()>().await;
        });
        let bomb = PanicOnDrop;
        g.delay(Duration::from_secs(60), async move {
            let _b = &bomb;
        });
    }
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(5)).await });
    assert_eq!(limiter.running(), 2);
    drop(rt);
    assert_eq!(limiter.running(), 0, "shutdown left limiter slots held");
    let s = g.stats();
    assert_eq!((s.pending, s.running), (0, 0), "{s:?}");
    assert_adds_up(s);
    // Another runtime gets the limiter's slots.
    let rt2 = common::current_thread(false);
    rt2.block_on(async {
        let h = Group::builder().limiter(&limiter).build();
        for _ in 0..5 {
            h.delay(Duration::ZERO, async {});
        }
        tokio::time::timeout(Duration::from_secs(5), h.wait())
            .await
            .unwrap()
            .unwrap();
        let p = tokio::time::timeout(Duration::from_secs(5), limiter.acquire())
            .await
            .unwrap();
        drop(p);
    });
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_drop_that_panics_while_a_handle_cancels_it_and_on_a_limiter_grant() {
    let limiter = Limiter::new(1);
    let g = Group::builder().limiter(&limiter).build();
    let bomb = PanicOnDrop;
    let h = g.delay(Duration::from_secs(1), async move {
        let _b = &bomb;
    });
    assert!(h.cancel(), "cancel returns true though Drop panicked");
    assert!(!h.is_pending());
    // A task holding the only slot; a waiting acquire() whose permit is dropped by a
    // panicking Drop while the grant happens.
    g.delay(Duration::ZERO, async {
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
    settle().await;
    assert_eq!(limiter.running(), 1);
    let l = limiter.clone();
    let waiter = tokio::spawn(async move {
        let permit = l.acquire().await;
        let _bomb = PanicOnDrop;
        drop(permit);
    });
    settle().await;
    let r = bounded(waiter).await;
    assert!(r.is_err(), "the acquirer's task panicked");
    bounded(g.wait()).await.unwrap();
    assert_eq!(limiter.running(), 0);
    assert!(limiter.try_acquire().is_some());
    let s = g.stats();
    assert_eq!(s.cancelled, 1);
    assert_adds_up(s);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_drop_that_panics_during_group_cancel_while_others_schedule_into_it() {
    let group = Group::new();
    let g = group.clone();
    struct Reenter(Group);
    impl Drop for Reenter {
        fn drop(&mut self) {
            // Schedule into the cancelled group (refused) and cancel it again, then panic.
            self.0.delay(Duration::ZERO, async {});
            self.0.cancel();
            panic!("reentrant drop bomb");
        }
    }
    for _ in 0..100 {
        let r = Reenter(g.clone());
        group.delay(Duration::from_secs(1), async move {
            let _r = &r;
        });
    }
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| group.cancel()));
    assert!(matches!(first, Ok(true)), "{first:?}");
    bounded(group.wait()).await.unwrap_err();
    let s = group.stats();
    assert_eq!(s.cancelled, 200, "{s:?}");
    assert_adds_up(s);
}

// ===== K: wait() and acquire() polled with changing wakers =====

#[test]
fn wait_and_acquire_follow_the_latest_waker() {
    let rt = common::current_thread(true);
    let limiter = Limiter::new(1);
    let group = rt.block_on(async {
        let group = Group::builder().limiter(&limiter).build();
        group.delay(Duration::from_millis(5), async {
            tokio::time::sleep(Duration::from_millis(5)).await;
        });
        group
    });
    let counts: Vec<Arc<Count>> = (0..4).map(|_| Arc::new(Count::default())).collect();
    let wakers: Vec<Waker> = counts.iter().map(|c| Waker::from(c.clone())).collect();
    // The group's task takes the only slot at 5 ms; an acquire() then waits behind it.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(6)).await });
    assert_eq!(limiter.running(), 1);
    let mut wait = Box::pin(group.wait());
    let mut acquire = Box::pin(limiter.acquire());
    for (i, w) in wakers.iter().enumerate() {
        assert!(poll_once(wait.as_mut(), w).is_pending(), "{i}");
        assert!(poll_once(acquire.as_mut(), w).is_pending(), "{i}");
    }
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    let acquire_out = poll_once(acquire.as_mut(), &wakers[3]);
    assert!(
        acquire_out.is_ready(),
        "acquire() not granted after the task ended"
    );
    drop(acquire_out);
    let woken: Vec<usize> = counts.iter().map(|c| c.0.load(Ordering::SeqCst)).collect();
    assert!(woken[3] >= 1, "the latest waker was not woken: {woken:?}");
    let last = &wakers[3];
    let mut done_wait = false;
    for _ in 0..3 {
        if let Poll::Ready(r) = poll_once(wait.as_mut(), last) {
            r.unwrap();
            done_wait = true;
            break;
        }
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    }
    assert!(done_wait, "{:?} woken {woken:?}", group.stats());
}

// ===== L: many groups on one limiter; memory kept by the pool =====

#[test]
fn a_hundred_thousand_short_lived_groups_on_one_limiter() {
    let rt = common::current_thread(true);
    let limiter = Limiter::new(4);
    rt.block_on(async {
        for i in 0..100_000u64 {
            let g = Group::builder().limiter(&limiter).build();
            if i % 100 == 0 {
                g.delay(Duration::ZERO, async {});
                bounded(g.wait()).await.unwrap();
            }
        }
        assert_eq!(limiter.running(), 0);
        assert_eq!(limiter.waiting(), 0);
    });
}
