//! A hostile review of issue 10's additions: task ids, `task_id()`, `next_deadline`, any
//! output, panics reported once, `Window` fields, `ThrottleOutcome::Uncapped`, and the
//! reschedule fix. Six of these failed on the first version and pin what was fixed or is now
//! documented. Every wait is bounded.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::{bounded, ms, settle};
use rand::{Rng, SeedableRng};
use schedgroup::{Group, Limiter, TaskId, Throttle, ThrottleOutcome, task_id};
use tokio::time::Instant;

type Cell = Arc<Mutex<Vec<(&'static str, Option<TaskId>)>>>;

struct Record(&'static str, Cell);
impl Drop for Record {
    fn drop(&mut self) {
        self.1.lock().unwrap().push((self.0, task_id()));
    }
}

// ---------------------------------------------------------------- task_id()

/// A nested runtime inside block_in_place, inside a group's task: a *plain tokio task* spawned
/// on it runs on this thread inside the group task's poll. The docs say task_id() is None
/// "inside a tokio task the group's task spawned".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_id_inside_an_executor_driven_by_the_task_is_the_tasks_as_documented() {
    let group = Group::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let h = group.delay(Duration::ZERO, async move {
        let seen = tokio::task::block_in_place(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async { tokio::spawn(async { task_id() }).await.unwrap() })
        });
        tx.send(seen).ok();
    });
    bounded(group.wait()).await.unwrap();
    let seen = rx.await.unwrap();
    // Documented: anything run on this thread during the task's poll sees the task's id.
    assert_eq!(seen, Some(h.id()));
}

/// A panic in a task's poll: task_id() is None again afterwards on the thread, and the panic
/// hook (which runs before unwinding) sees the panicking task's id.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn task_id_is_restored_after_a_panicking_poll_and_seen_by_the_panic_hook() {
    let group = Group::new();
    let hook_saw: Arc<Mutex<Vec<Option<TaskId>>>> = Arc::default();
    let prev = std::panic::take_hook();
    {
        let hook_saw = hook_saw.clone();
        std::panic::set_hook(Box::new(move |_| hook_saw.lock().unwrap().push(task_id())));
    }
    let boom = group.delay(ms(1), async {
        panic!("boom");
    });
    // A plain tokio task that polls right after the panic on the same thread.
    let after = tokio::spawn(async {
        tokio::time::sleep(ms(1)).await;
        tokio::task::yield_now().await;
        task_id()
    });
    let err = bounded(group.wait()).await.unwrap_err();
    let _ = std::panic::take_hook();
    std::panic::set_hook(prev);
    assert_eq!(err.panicked_ids(), [boom.id()]);
    assert_eq!(task_id(), None);
    assert_eq!(bounded(after).await.unwrap(), None);
    assert_eq!(*hook_saw.lock().unwrap(), vec![Some(boom.id())]);
}

/// What task_id() says in the Drops that run when a task ends: the output's Drop, an async
/// block's captured value, and a hand-written future's own field (dropped by the runner after
/// the poll). They should agree with each other.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn task_id_in_the_drops_that_end_a_task_is_consistent() {
    let cell: Cell = Arc::default();
    let group = Group::new();

    // Output's Drop.
    let c = cell.clone();
    let out = group.delay(ms(1), async move { Record("output", c) });
    // Async block's captured value.
    let cap = Record("async-capture", cell.clone());
    let capt = group.delay(ms(2), async move {
        let _keep = &cap;
    });
    // Hand-written future with a field.
    struct Fut(#[allow(dead_code)] Option<Record>);
    impl Future for Fut {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Ready(())
        }
    }
    let hand = group.delay(ms(3), Fut(Some(Record("hand-written-field", cell.clone()))));
    bounded(group.wait()).await.unwrap();

    let got = cell.lock().unwrap().clone();
    eprintln!("task_id() inside Drops: {got:?}");
    let want = vec![
        ("output", Some(out.id())),
        ("async-capture", Some(capt.id())),
        ("hand-written-field", Some(hand.id())),
    ];
    assert_eq!(got, want);
}

// ---------------------------------------------------------------- ids

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn ids_grow_and_never_repeat_across_handle_cancels_group_cancel_and_refusals() {
    let group = Group::builder().max_concurrent(1).build();
    let mut ids = Vec::new();
    for n in 0..10 {
        let h = group.delay(ms(n), async {});
        if n % 2 == 0 {
            assert!(h.cancel());
        }
        ids.push(h.id());
    }
    bounded(group.wait()).await.unwrap();
    for n in 0..5 {
        ids.push(group.delay(ms(100 + n), async {}).id());
    }
    group.cancel();
    for n in 0..5 {
        let h = group.delay(ms(n), async {});
        assert!(!h.is_pending());
        ids.push(h.id());
    }
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let set: HashSet<_> = ids.iter().collect();
    assert_eq!(set.len(), ids.len());
}

#[test]
fn ids_are_unique_when_scheduled_from_many_threads_while_the_group_is_cancelled() {
    for _ in 0..common::iterations(2000) / 100 {
        let rt = common::multi_thread(2);
        let group = Group::builder().runtime(rt.handle().clone()).build();
        let ids = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let group = group.clone();
                let ids = ids.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for n in 0..500u64 {
                        if t == 0 && n == 250 {
                            group.cancel();
                        }
                        let h = group.delay(Duration::from_micros(n % 7), async {});
                        mine.push(h.id());
                    }
                    ids.lock().unwrap().extend(mine);
                })
            })
            .collect();
        for t in threads {
            common::join_bounded(t);
        }
        let ids = ids.lock().unwrap();
        let set: HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), 2000);
        rt.block_on(async { bounded(group.wait()).await.unwrap_err() });
        let s = group.stats();
        assert_eq!(s.scheduled, 2000);
        common::assert_adds_up(s);
    }
}

// ---------------------------------------------------------------- panics reported once

/// Several concurrent waiters on a multi-thread runtime, every round: the sum of panics they
/// report equals the panics of the round, and exactly one waiter carries them.
#[test]
fn concurrent_waiters_report_each_panic_exactly_once() {
    let rt = common::multi_thread(4);
    rt.block_on(async {
        let group = Group::builder().max_concurrent(3).build();
        let mut total = 0;
        for round in 0..common::iterations(2000) / 10 {
            let panics = 1 + round % 5;
            let mut ids = HashSet::new();
            for n in 0..panics {
                ids.insert(
                    group
                        .delay(Duration::from_micros(n as u64 * 10), async { panic!("p") })
                        .id(),
                );
                group.delay(Duration::from_micros(n as u64 * 7), async {});
            }
            let waiters: Vec<_> = (0..4)
                .map(|_| {
                    let g = group.clone();
                    tokio::spawn(async move { bounded(g.wait()).await })
                })
                .collect();
            let mut reported = 0;
            let mut carriers = 0;
            let mut seen_ids = HashSet::new();
            for w in waiters {
                if let Err(e) = bounded(w).await.unwrap() {
                    assert!(!e.is_cancelled());
                    reported += e.panicked();
                    carriers += 1;
                    seen_ids.extend(e.panicked_ids().iter().copied());
                }
            }
            // A waiter that started after... no: all started before any round's task ended?
            // Not necessarily; then a later one reports Ok. Either way, once in total.
            // Any panics not yet reported are taken by one more wait().
            if let Err(e) = bounded(group.wait()).await {
                reported += e.panicked();
                carriers += 1;
                seen_ids.extend(e.panicked_ids().iter().copied());
            }
            assert_eq!(reported, panics as u64, "round {round}");
            assert!(carriers >= 1, "round {round}");
            assert_eq!(seen_ids, ids, "round {round}");
            total += panics as u64;
            assert_eq!(group.stats().panicked, total);
        }
    });
}

/// A wait() raced against a timeout / select! that fires at the same instant: whichever wins,
/// the panic is reported by some wait() exactly once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn wait_cancelled_by_select_or_timeout_never_loses_a_panic() {
    let group = Group::new();
    let mut lost = 0;
    for round in 0..200u64 {
        let d = ms(10 + round % 3);
        let h = group.delay(d, async { panic!("x") });
        let mut got = None;
        // Zero, equal and slightly longer timeouts.
        let t = match round % 3 {
            0 => d,
            1 => d - ms(1),
            _ => d + ms(1),
        };
        tokio::select! {
            r = group.wait() => got = Some(r),
            () = tokio::time::sleep(t) => {}
        }
        let r = match got {
            Some(r) => r,
            None => bounded(group.wait()).await,
        };
        match r {
            Err(e) if e.panicked_ids() == [h.id()] => {}
            other => {
                lost += 1;
                eprintln!("round {round}: {other:?}");
            }
        }
        // Nothing left for the next round.
        assert!(bounded(group.wait()).await.is_ok());
    }
    assert_eq!(lost, 0);
}

/// A panic while the group is cancelled: running task panics after cancel() — counted once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panic_in_the_drop_of_an_aborted_running_task_is_reported_once() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("drop");
        }
    }
    let group = Group::new();
    let h = group.delay(ms(1), async {
        let _p = PanicOnDrop;
        tokio::time::sleep(ms(100)).await;
    });
    tokio::time::sleep(ms(2)).await;
    settle().await;
    group.cancel();
    let e = bounded(group.wait()).await.unwrap_err();
    eprintln!("{e:?} {:?}", group.stats());
    let again = bounded(group.wait()).await.unwrap_err();
    assert!(again.is_cancelled());
    assert!(!again.is_panicked(), "reported twice: {again:?}");
    let _ = h;
}

// ---------------------------------------------------------------- outputs

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn outputs_whose_drop_panics_or_schedules_into_the_group() {
    struct PanicOut;
    impl Drop for PanicOut {
        fn drop(&mut self) {
            panic!("output drop");
        }
    }
    struct ScheduleOut(Group, Arc<AtomicUsize>);
    impl Drop for ScheduleOut {
        fn drop(&mut self) {
            let ran = self.1.clone();
            self.0.delay(ms(5), async move {
                ran.fetch_add(1, Ordering::SeqCst);
            });
        }
    }
    let group = Group::builder().max_concurrent(1).build();
    let p = group.delay(ms(1), async { PanicOut });
    let ran = Arc::new(AtomicUsize::new(0));
    let (g, r) = (group.clone(), ran.clone());
    group.delay(ms(2), async move { ScheduleOut(g, r) });
    let e = bounded(group.wait()).await.unwrap_err();
    assert_eq!(e.panicked_ids(), [p.id()]);
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "wait() covered the output's schedule"
    );
    let s = group.stats();
    assert_eq!((s.completed, s.panicked, s.scheduled), (2, 1, 3));
    // Window: output drop panic counts as panicked there too.
    let w = &group.history().windows[0];
    assert_eq!(
        (w.started, w.ended, w.completed, w.panicked, w.freed),
        (3, 3, 2, 1, 3)
    );
}

// ---------------------------------------------------------------- Window

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn windows_add_up_for_a_group_in_a_limiter_and_for_the_limiter() {
    let limiter = Limiter::new(2);
    let group = Group::builder().limiter(&limiter).max_concurrent(2).build();
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("drop");
        }
    }
    for n in 0..4 {
        group.delay(ms(n), async {}); // completed
    }
    group.delay(ms(5), async { panic!("poll") });
    group.delay(ms(6), async { PanicOnDrop }); // output drop panics
    group.delay(ms(7), async {
        tokio::time::sleep(ms(10_000)).await; // running when cancelled
    });
    group.delay(ms(8), async {
        tokio::time::sleep(ms(10_000)).await;
    });
    group.delay(ms(60_000), async {}); // pending when cancelled
    let permit = limiter.try_acquire();
    tokio::time::sleep(ms(100)).await;
    settle().await;
    drop(permit);
    settle().await;
    tokio::time::sleep(ms(100)).await;
    group.cancel();
    let e = bounded(group.wait()).await.unwrap_err();
    assert_eq!(e.panicked(), 2);
    let s = group.stats();
    assert_eq!((s.completed, s.panicked, s.cancelled), (4, 2, 3));
    for w in group.history().windows {
        assert_eq!(w.ended, w.completed + w.panicked + w.cancelled, "{w:?}");
        assert_eq!(w.freed, w.ended, "{w:?}");
        assert_eq!(w.started, 8, "{w:?}");
        assert_eq!((w.completed, w.panicked, w.cancelled), (4, 2, 2), "{w:?}");
    }
    settle().await;
    for w in limiter.history().windows {
        assert_eq!(
            (w.ended, w.completed, w.panicked, w.cancelled),
            (0, 0, 0, 0),
            "{w:?}"
        );
        assert_eq!(w.started, 9, "8 tasks + 1 permit: {w:?}");
        assert_eq!(w.freed, 9, "{w:?}");
    }
    assert_eq!(limiter.running(), 0);
}

// ---------------------------------------------------------------- next_deadline

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn next_deadline_matches_a_model_under_random_reschedules_and_cancels() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    let group = Group::builder().max_concurrent(0).build();
    let base = Instant::now();
    let mut live: Vec<(schedgroup::TaskHandle, Instant)> = Vec::new();
    for step in 0..3000 {
        match rng.random_range(0..4) {
            0 | 1 => {
                let at = base + ms(rng.random_range(0..10_000));
                live.push((group.schedule(at, async {}), at));
            }
            2 if !live.is_empty() => {
                let i = rng.random_range(0..live.len());
                let at = base + ms(rng.random_range(0..10_000));
                assert!(live[i].0.reschedule(at));
                live[i].1 = at;
            }
            3 if !live.is_empty() => {
                let i = rng.random_range(0..live.len());
                let (h, _) = live.swap_remove(i);
                assert!(h.cancel());
            }
            _ => {}
        }
        let want = live.iter().map(|(_, at)| *at).min();
        assert_eq!(group.next_deadline(), want, "step {step}");
    }
    group.cancel();
    assert_eq!(group.next_deadline(), None);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn next_deadline_for_duration_max_and_far_instants_reports_the_292_year_limit() {
    let group = Group::builder().max_concurrent(0).build();
    let now = Instant::now();
    group.delay(Duration::MAX, async {});
    let nd = group.next_deadline().unwrap();
    assert!(nd > now + Duration::from_secs(86_400 * 365 * 100), "{nd:?}");
    // An instant far but representable: reported as given?
    let far = now + Duration::from_secs(86_400 * 365 * 500);
    group.schedule(far, async {});
    // Documented: deadlines are kept to about 292 years from the process's first use.
    let kept = group.next_deadline().unwrap();
    assert!(kept < far, "{kept:?}");
    assert!(
        kept > now + Duration::from_secs(86_400 * 365 * 291),
        "{kept:?}"
    );
}

/// "Never early" on the paused clock: a task scheduled for an Instant 1000 years out, and the
/// clock moved 301 years (past the 292-year reach of the crate's keys).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_task_1000_years_out_waits_the_292_years_deadlines_are_kept_to() {
    let group = Group::new();
    let year = Duration::from_secs(86_400 * 365);
    let start = Instant::now();
    let ran_at: Arc<Mutex<Option<Duration>>> = Arc::default();
    let r = ran_at.clone();
    let late = group.schedule(start + year * 1000, async move {
        *r.lock().unwrap() = Some(start.elapsed());
    });
    // Not early by the 292 years kept...
    tokio::time::advance(year * 280).await;
    settle().await;
    assert_eq!(*ran_at.lock().unwrap(), None);
    assert!(late.is_pending());
    // ...and run once the paused clock has passed them (documented on `Group::delay`).
    tokio::time::advance(year * 21).await;
    settle().await;
    bounded(group.wait()).await.unwrap();
    let ran = ran_at.lock().unwrap().expect("ran");
    assert!(ran > year * 291 && ran <= year * 301, "{ran:?}");
}

// ---------------------------------------------------------------- reschedule fix

/// Random reschedules around a parked monitor on the paused clock: every task starts exactly at
/// its final deadline.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn random_reschedules_never_start_a_task_late_or_early() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..common::iterations(2000) / 20 {
        let group = Group::new();
        let base = Instant::now();
        let started: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::default();
        let mut handles = Vec::new();
        let mut deadlines = Vec::new();
        for i in 0..6 {
            let at = base + ms(rng.random_range(10..200));
            let s = started.clone();
            handles.push(group.schedule(at, async move {
                s.lock().unwrap().push((i, Instant::now()));
            }));
            deadlines.push(at);
        }
        // Let the monitor park, then move tasks around, with small advances between.
        for _ in 0..10 {
            tokio::time::sleep(ms(rng.random_range(0..5))).await;
            settle().await;
            let i = rng.random_range(0..6);
            let at = Instant::now() + ms(rng.random_range(1..300));
            if handles[i].reschedule(at) {
                deadlines[i] = at;
            }
        }
        bounded(group.wait()).await.unwrap();
        let started = started.lock().unwrap();
        assert_eq!(started.len(), 6);
        for &(i, at) in started.iter() {
            assert_eq!(
                at.duration_since(base),
                deadlines[i].duration_since(base),
                "round {round} task {i}: started at {:?}, deadline {:?}",
                at.duration_since(base),
                deadlines[i].duration_since(base)
            );
        }
    }
}

// ---------------------------------------------------------------- throttle

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn throttle_uncapped_edges() {
    let group = Group::builder().max_concurrent(4).build();
    group.set_max_concurrent(usize::MAX);
    assert_eq!(group.throttle_down(), ThrottleOutcome::Uncapped);
    assert_eq!(group.throttle_up(), ThrottleOutcome::Uncapped);
    #[allow(deprecated)]
    {
        assert_eq!(group.limit(), usize::MAX);
        assert!(group.set_limit(3));
        assert_eq!(group.max_concurrent(), 3);
    }
    assert_eq!(
        group.throttle_down(),
        ThrottleOutcome::Applied { from: 3, to: 1 }
    );

    let limiter = Limiter::new(4);
    assert!(limiter.set_limit(usize::MAX));
    assert_eq!(limiter.throttle_down(), ThrottleOutcome::Uncapped);
    assert!(limiter.set_limit(5));
    assert!(limiter.throttle_down().is_applied());
}

/// A throttle may step a finite limit *up to* usize::MAX (no cap), after which throttle_down is
/// refused for ever as Uncapped: a controller cannot bring it back.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn throttle_up_can_step_into_uncapped_and_then_never_down() {
    let limiter = Limiter::new(4);
    limiter.set_throttle(Throttle {
        step_up: usize::MAX,
        ceiling: Some(usize::MAX),
        hold: Duration::ZERO,
        ..Throttle::default()
    });
    let up = limiter.throttle_up();
    let down = limiter.throttle_down();
    assert!(
        down.is_applied(),
        "up: {up:?}, then down: {down:?} (limit now {})",
        limiter.limit()
    );
}

// ---------------------------------------------------------------- misc

/// Ids shown by WaitError are in the order the tasks ended, capped at 8, and Display lists them.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn panicked_ids_are_the_first_eight_in_end_order() {
    let group = Group::new();
    let mut ids = Vec::new();
    for n in (0..12u64).rev() {
        ids.push((n, group.delay(ms(n), async { panic!() }).id()));
    }
    ids.sort();
    let e = bounded(group.wait()).await.unwrap_err();
    assert_eq!(e.panicked(), 12);
    let want: Vec<TaskId> = ids.iter().take(8).map(|x| x.1).collect();
    assert_eq!(e.panicked_ids(), want);
    assert!(e.to_string().ends_with(", ...)"), "{e}");
}

/// A task years out runs once the paused clock passes its deadline.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn far_tasks_run_once_the_clock_passes_them() {
    let year = Duration::from_secs(86_400 * 365);
    for years in [1u32, 3, 10, 100, 250, 291] {
        let group = Group::new();
        let start = Instant::now();
        let h = group.delay(year * years, async {});
        tokio::time::advance(year * years + ms(1)).await;
        settle().await;
        tokio::time::sleep(ms(10)).await;
        settle().await;
        eprintln!(
            "{years}y: pending {} stats {:?} (clock moved {:?})",
            h.is_pending(),
            group.stats(),
            start.elapsed()
        );
        assert!(!h.is_pending(), "{years} years");
    }
}

/// Task A (group 1) cancels task B (group 2, pending) by its handle: B's future is dropped
/// synchronously inside A's poll. What does task_id() say in B's Drop? A Drop that uses
/// task_id() to deregister "itself" would see A's id.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pending_futures_drop_run_inside_another_tasks_poll_sees_that_tasks_id() {
    let cell: Cell = Arc::default();
    let g1 = Group::new();
    let g2 = Group::new();
    for _ in 0..3 {
        g2.delay(ms(1), async {}).cancel(); // so that B's id is not A's
    }
    let b = g2.delay(ms(1000), {
        let rec = Record("B dropped", cell.clone());
        async move {
            let _keep = &rec;
        }
    });
    let b2 = b.clone();
    let a = g1.delay(ms(1), async move {
        assert!(b2.cancel());
    });
    bounded(g1.wait()).await.unwrap();
    bounded(g2.wait()).await.unwrap();
    let got = cell.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![("B dropped", None)],
        "B is {}, A is {}",
        b.id(),
        a.id()
    );
}

/// Multi-thread: reschedules from a plain thread race with the monitor's timer. Every task
/// starts no earlier than its last accepted deadline, and none is left behind by a late timer
/// (wait() returns within 1 s of the last deadline).
#[test]
fn reschedules_racing_with_the_timer_never_start_early_or_strand_a_task() {
    let rt = common::multi_thread(2);
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    for iter in 0..common::iterations(2000) / 60 {
        let group = Group::builder().runtime(rt.handle().clone()).build();
        let base = Instant::now();
        let n = 20;
        let started: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; n]));
        let mut handles = Vec::new();
        let mut last = Vec::new();
        for i in 0..n {
            let at = base + Duration::from_micros(rng.random_range(0..30_000));
            let s = started.clone();
            handles.push(group.schedule(at, async move {
                s.lock().unwrap()[i] = Some(Instant::now());
            }));
            last.push(at);
        }
        let seeds: Vec<(usize, u64, u64)> = (0..200)
            .map(|_| {
                (
                    rng.random_range(0..n),
                    rng.random_range(0..40_000),
                    rng.random_range(0..150),
                )
            })
            .collect();
        let hs = handles.clone();
        let mover = std::thread::spawn(move || {
            let mut last = last;
            for (i, to, pause) in seeds {
                let at = Instant::now() + Duration::from_micros(to);
                if hs[i].reschedule(at) {
                    last[i] = at;
                }
                std::thread::sleep(Duration::from_micros(pause));
            }
            last
        });
        let last = common::join_bounded(mover);
        let latest = *last.iter().max().unwrap();
        rt.block_on(async {
            let left = latest.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
            match tokio::time::timeout(left, group.wait()).await {
                Ok(r) => r.unwrap(),
                Err(_) => panic!(
                    "iter {iter}: stranded: stats {:?}, next_deadline {:?} (now {:?})",
                    group.stats(),
                    group.next_deadline(),
                    Instant::now()
                ),
            }
        });
        let started = started.lock().unwrap();
        for i in 0..n {
            let s = started[i].expect("ran");
            assert!(s >= last[i], "iter {iter} task {i} started early");
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_refused_tasks_handle_is_inert_and_next_deadline_ignores_it() {
    let group = Group::new();
    group.cancel();
    let h = group.delay(ms(5), async {});
    assert!(!h.cancel());
    assert!(!h.reschedule(Instant::now()));
    assert!(!h.is_pending());
    assert_eq!(group.next_deadline(), None);
    let _ = format!("{h:?}");
    let s = group.stats();
    assert_eq!((s.scheduled, s.cancelled, s.pending), (1, 1, 0));
}

/// Tasks ended by the runtime's shutdown (Runner dropped): the group's window still adds up.
#[test]
fn windows_add_up_after_runtime_shutdown_drops_running_tasks() {
    let rt = common::current_thread(true);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    rt.block_on(async {
        for _ in 0..3 {
            group.delay(ms(1), async {
                tokio::time::sleep(ms(1_000_000)).await;
            });
        }
        group.delay(ms(1), async {});
        tokio::time::sleep(ms(10)).await;
        settle().await;
    });
    drop(rt);
    let s = group.stats();
    common::assert_adds_up(s);
    assert_eq!((s.completed, s.cancelled, s.running), (1, 3, 0), "{s:?}");
    let w = &group.history().windows[0];
    assert_eq!(w.ended, w.completed + w.panicked + w.cancelled, "{w:?}");
    assert_eq!(
        (w.started, w.ended, w.freed, w.cancelled),
        (4, 4, 4, 3),
        "{w:?}"
    );
    assert!(group.is_cancelled());
}
