//! Fourth hostile review of the outputs machinery, after 15d77ca: a panic on its way to a
//! requester is counted panicked at once (`Counters::record(.., deferred)`) and joins
//! `wait()`'s report only once the delivery shows nobody took it (`Handed::PanicUntaken`,
//! `Pool::handed`, `Counters::untaken_panic`). Public API only.
//!
//! Each attack says what it tries. Found:
//!
//! - `Counters::untaken_panic` appends a deferred panic's id to `wait()`'s list when the
//!   delivery is refused, not when the task ended (was counted): panics that ended in between
//!   come first, and once eight of them have, the deferred one has no place at all. `wait()`
//!   names eight later tasks instead of "the first of those tasks (up to 8), in the order they
//!   ended" (deterministic). Fixed: such a panic holds a tentative place in its turn, which
//!   the delivery confirms or gives up (`stats::tests` checks the rule against a model).

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::outputs::{Quiet, cause, quiet_hook, quiet_panic, spin_until, waking_waker};
use common::{
    alive, assert_adds_up, bounded, current_thread, iterations, join_bounded, ms, multi_thread,
    settle,
};
use schedgroup::{CancelledBy, Group, Limiter, TaskId, WaitError};

// ===== helpers =====

/// A panic payload whose `Drop` (run by whoever drops the `JoinError`) signals `holding`,
/// then waits (real time, bounded) for `release`, runs `hook`, and counts itself dropped.
struct HeldPayload {
    holding: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
    hook: Option<Box<dyn FnOnce() + Send>>,
}

impl HeldPayload {
    fn new(holding: &Arc<AtomicBool>, release: &Arc<AtomicBool>) -> Self {
        Self {
            holding: holding.clone(),
            release: release.clone(),
            dropped: Arc::new(AtomicUsize::new(0)),
            hook: None,
        }
    }
}

impl Drop for HeldPayload {
    fn drop(&mut self) {
        self.holding.store(true, Ordering::SeqCst);
        let start = std::time::Instant::now();
        while !self.release.load(Ordering::SeqCst) {
            assert!(start.elapsed() < common::REAL_BOUND, "never released");
            std::thread::yield_now();
        }
        if let Some(hook) = self.hook.take() {
            hook();
        }
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A payload that counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Keeps [`Quiet`], [`HeldPayload`], [`Counted`] and [`DropBomb`] panics off stderr.
fn quiet() {
    quiet_hook(|p| p.is::<HeldPayload>() || p.is::<Counted>() || p.is::<DropBomb>());
}

/// A gate a task waits at (yielding) until the test opens it. (The first version of the two
/// refused-panic attacks had none: a task that ended before its requester was dropped had its
/// panic taken, and the test thread, dropping the requester, then blocked in the held payload's
/// `Drop`; a race that showed only when the file's tests ran side by side.)
struct Gate(Arc<AtomicBool>);

impl Gate {
    async fn open(&self) {
        while !self.0.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    }
}

fn gate() -> (Arc<AtomicBool>, Gate) {
    let go = Arc::new(AtomicBool::new(false));
    (go.clone(), Gate(go))
}

fn panic_with<P: Send + 'static>(payload: P) -> u32 {
    std::panic::panic_any(payload)
}

/// A waker that sets its flag.
fn flag_waker(flag: &Arc<AtomicBool>) -> Waker {
    let flag = flag.clone();
    waking_waker(move || flag.store(true, Ordering::SeqCst))
}

type WaitFut = Pin<Box<dyn Future<Output = Result<(), WaitError>> + Send>>;

/// A `wait()` parked in a slot, to be polled from odd places.
#[derive(Clone)]
struct Parked {
    fut: Arc<Mutex<Option<WaitFut>>>,
    woken: Arc<AtomicBool>,
    /// What the first poll (from the odd place) said: `Some(true)` pending.
    first_pending: Arc<Mutex<Option<bool>>>,
}

impl Parked {
    fn new(group: &Group) -> Self {
        let g = group.clone();
        Self {
            fut: Arc::new(Mutex::new(Some(Box::pin(async move { g.wait().await })))),
            woken: Arc::new(AtomicBool::new(false)),
            first_pending: Arc::new(Mutex::new(None)),
        }
    }

    /// Polls the parked `wait()` once with a waker that sets `woken`.
    fn poll_first(&self) {
        let waker = flag_waker(&self.woken);
        let mut slot = self.fut.lock().unwrap();
        let fut = slot.as_mut().unwrap();
        let pending = fut
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending();
        *self.first_pending.lock().unwrap() = Some(pending);
    }

    /// Waits (real time) to be woken, then polls again: the result.
    fn finish(&self) -> Result<(), WaitError> {
        spin_until(|| self.woken.load(Ordering::SeqCst));
        let mut slot = self.fut.lock().unwrap();
        let fut = slot.as_mut().unwrap();
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("woken, but the group is not idle"),
        }
    }
}

// ===== 1. the order of wait()'s ids when a deferred panic is refused late =====

/// Attack on `Counters::untaken_panic` (src/stats.rs), called from `Pool::handed` after the
/// delivery: a deferred panic (one on its way to a requester) is counted panicked when its
/// task ends (`Pool::finish`), but its id joins `wait()`'s list only when the delivery is
/// refused. `WaitError::panicked_ids`: "The ids of the first of those tasks (up to 8), in the
/// order they ended."
///
/// Here task A is scheduled with `delay_join` and its `JoinHandle` dropped at once, so its
/// panic is refused by the delivery, which drops the payload; the payload's `Drop` holds the
/// runner there (after the count, before `handed`). Meanwhile eight plain tasks panic, one
/// after another. A ended first (`stats().panicked` says 1 while it is held), so `wait()` must
/// name A, then the first seven others. It names the eight others, and A not at all.
#[test]
fn a_refused_panic_keeps_its_place_among_the_ids_by_the_order_tasks_ended() {
    quiet();
    let rt = multi_thread(3);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    let holding = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let payload = HeldPayload::new(&holding, &release);
    // A ends only once its handle is gone (otherwise the handle takes the panic).
    let (go, g) = gate();
    let a = group.delay_join(Duration::ZERO, async move {
        g.open().await;
        panic_with(payload)
    });
    let a_id = a.id();
    drop(a);
    go.store(true, Ordering::SeqCst);
    spin_until(|| holding.load(Ordering::SeqCst));
    assert_eq!(group.stats().panicked, 1, "A ended and is counted");
    let mut later = Vec::new();
    for n in 0..8u64 {
        let h = group.delay(Duration::ZERO, async {
            quiet_panic();
        });
        later.push(h.id());
        spin_until(|| group.stats().panicked == n + 2);
    }
    release.store(true, Ordering::SeqCst);
    let err = rt.block_on(bounded(group.wait())).unwrap_err();
    assert_eq!(err.panicked(), 9, "{err}");
    let mut expected = vec![a_id];
    expected.extend_from_slice(&later[..7]);
    assert_eq!(
        err.panicked_ids(),
        &expected[..],
        "the first eight, in the order they ended: {err}"
    );
    assert_adds_up(group.stats());
}

/// The same window with a single later panic: the two ids must come in the order the tasks
/// ended, A first.
#[test]
fn a_refused_panic_is_named_before_a_panic_that_ended_after_it() {
    quiet();
    let rt = multi_thread(3);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    let holding = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let payload = HeldPayload::new(&holding, &release);
    let results = group.results::<u32>();
    let (go, g) = gate();
    let a = results.delay(Duration::ZERO, async move {
        g.open().await;
        panic_with(payload)
    });
    // Through a `Results` dropped before A ends: the delivery refuses A's panic.
    drop(results);
    go.store(true, Ordering::SeqCst);
    spin_until(|| holding.load(Ordering::SeqCst));
    let b = group.delay(Duration::ZERO, async {
        quiet_panic();
    });
    spin_until(|| group.stats().panicked == 2);
    release.store(true, Ordering::SeqCst);
    let err = rt.block_on(bounded(group.wait())).unwrap_err();
    assert_eq!(err.panicked(), 2, "{err}");
    assert_eq!(err.panicked_ids(), [a.id(), b.id()], "{err}");
}

// ===== 2. waiters while a deferred panic is refused =====

/// Two `wait()`s on other threads while a refused panic's delivery is held: neither returns
/// before the delivery ends (the panic is counted, but not yet reported), and then exactly one
/// of them reports it, with its id.
#[test]
fn two_waiters_during_a_held_refusal_report_the_panic_exactly_once() {
    quiet();
    let rt = multi_thread(3);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    let holding = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let payload = HeldPayload::new(&holding, &release);
    let dropped = payload.dropped.clone();
    // A ends only once its handle is gone (otherwise the handle takes the panic, and the test
    // thread, dropping it, blocks in the held payload's `Drop`: seen once in CI).
    let (go, g) = gate();
    let a = group.delay_join(Duration::ZERO, async move {
        g.open().await;
        panic_with(payload)
    });
    let a_id = a.id();
    drop(a);
    go.store(true, Ordering::SeqCst);
    spin_until(|| holding.load(Ordering::SeqCst));
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let g = group.clone();
            let h = rt.handle().clone();
            std::thread::spawn(move || h.block_on(bounded(g.wait())))
        })
        .collect();
    std::thread::sleep(ms(50));
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "a wait() returned while a counted panic was still on its way"
    );
    release.store(true, Ordering::SeqCst);
    let got: Vec<_> = waiters.into_iter().map(join_bounded).collect();
    let reports: Vec<_> = got.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(reports.len(), 1, "{got:?}");
    assert_eq!(
        (reports[0].panicked(), reports[0].panicked_ids()),
        (1, &[a_id][..])
    );
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_eq!(rt.block_on(bounded(group.wait())), Ok(()), "reported once");
}

/// A `wait()` polled from inside the refused panic's payload `Drop` (run by the delivery, after
/// the count): the group is counted idle-but-delivering, so it is pending; it is woken once
/// the delivery ends and reports the panic. From the same `Drop`, the task is finished and its
/// handle cancels nothing.
#[test]
fn a_wait_polled_from_a_refused_payloads_drop_is_woken_and_reports_it() {
    quiet();
    let rt = multi_thread(2);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    let parked = Parked::new(&group);
    let holding = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(true));
    let mut payload = HeldPayload::new(&holding, &release);
    let seen = Arc::new(Mutex::new(None));
    let handle_slot: Arc<Mutex<Option<schedgroup::TaskHandle>>> = Arc::new(Mutex::new(None));
    let (p, g, s, hs) = (
        parked.clone(),
        group.clone(),
        seen.clone(),
        handle_slot.clone(),
    );
    payload.hook = Some(Box::new(move || {
        let h = hs.lock().unwrap().clone().unwrap();
        let st = g.stats();
        *s.lock().unwrap() = Some((h.is_finished(), h.cancel(), st.running, st.panicked));
        p.poll_first();
    }));
    let go = Arc::new(AtomicBool::new(false));
    let g2 = go.clone();
    let a = group.delay_join(Duration::ZERO, async move {
        while !g2.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        panic_with(payload)
    });
    let a_id = a.id();
    *handle_slot.lock().unwrap() = Some(a.handle().clone());
    drop(a);
    go.store(true, Ordering::SeqCst);
    let err = parked.finish().unwrap_err();
    assert_eq!(*parked.first_pending.lock().unwrap(), Some(true));
    assert_eq!(*seen.lock().unwrap(), Some((true, false, 0, 1)));
    assert_eq!((err.panicked(), err.panicked_ids()), (1, &[a_id][..]));
    assert_adds_up(group.stats());
}

// ===== 3. wait() polled from the requester's waker and from the task's own output Drop =====

/// A `wait()` first polled from the requester's waker, which the delivery calls (the task is
/// counted, the delivery not finished): pending then, woken afterwards, and `Ok` (the panic,
/// if any, was taken by the requester).
#[test]
fn a_wait_polled_from_the_requesters_waker_is_woken_after_the_delivery() {
    quiet();
    let rt = multi_thread(2);
    for panics in [false, true] {
        let group = Group::builder().runtime(rt.handle().clone()).build();
        let parked = Parked::new(&group);
        let go = Arc::new(AtomicBool::new(false));
        let g = go.clone();
        let mut jh = group.delay_join(Duration::ZERO, async move {
            while !g.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
            if panics { quiet_panic() } else { 7 }
        });
        let p = parked.clone();
        let waker = waking_waker(move || p.poll_first());
        assert!(
            Pin::new(&mut jh)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        go.store(true, Ordering::SeqCst);
        let result = parked.finish();
        assert_eq!(*parked.first_pending.lock().unwrap(), Some(true));
        assert_eq!(result, Ok(()), "panics: {panics}");
        let out = rt.block_on(bounded(jh));
        assert_eq!(out.is_err(), panics);
        assert_adds_up(group.stats());
    }
}

/// An output that polls a parked `wait()` when dropped, and may panic after.
struct WaitingOutput {
    parked: Parked,
    group: Group,
    seen: Arc<Mutex<Option<(u64, u64)>>>,
    panics: bool,
}

impl Drop for WaitingOutput {
    fn drop(&mut self) {
        let s = self.group.stats();
        *self.seen.lock().unwrap() = Some((s.running, s.completed));
        self.parked.poll_first();
        if self.panics {
            std::panic::panic_any(Quiet);
        }
    }
}

/// A `wait()` first polled from the task's own output's `Drop`, which the group runs because
/// the `JoinHandle` was dropped (inside the task's end, before it is counted): pending then,
/// woken afterwards; `Ok`, or the panic of that `Drop` with the task's id.
#[test]
fn a_wait_polled_from_the_tasks_own_output_drop_is_woken_and_reports_its_panic() {
    quiet();
    let rt = multi_thread(2);
    for panics in [false, true] {
        let group = Group::builder().runtime(rt.handle().clone()).build();
        let parked = Parked::new(&group);
        let seen = Arc::new(Mutex::new(None));
        let go = Arc::new(AtomicBool::new(false));
        let output = WaitingOutput {
            parked: parked.clone(),
            group: group.clone(),
            seen: seen.clone(),
            panics,
        };
        let g = go.clone();
        let jh = group.delay_join(Duration::ZERO, async move {
            while !g.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
            output
        });
        let id = jh.id();
        drop(jh);
        go.store(true, Ordering::SeqCst);
        let result = parked.finish();
        assert_eq!(*parked.first_pending.lock().unwrap(), Some(true));
        assert_eq!(
            *seen.lock().unwrap(),
            Some((1, 0)),
            "dropped before the count"
        );
        if panics {
            let err = result.unwrap_err();
            assert_eq!((err.panicked(), err.panicked_ids()), (1, &[id][..]));
        } else {
            assert_eq!(result, Ok(()));
        }
        let s = group.stats();
        assert_adds_up(s);
        assert_eq!(
            (s.completed, s.panicked),
            (u64::from(!panics), u64::from(panics))
        );
    }
}

// ===== 4. tasks cancelled mid-run whose future's Drop panics =====

/// Panics when dropped (quietly); pending for ever, or panics in `poll` if `poll_panics`.
struct DropBomb {
    poll_panics: bool,
}

impl Future for DropBomb {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<u32> {
        if self.poll_panics {
            std::panic::panic_any(Counted(Arc::new(AtomicUsize::new(0))));
        }
        Poll::Pending
    }
}

impl Drop for DropBomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            std::panic::panic_any(DropBomb { poll_panics: false });
        }
    }
}

/// A running task stopped by its handle, or by its group, whose future's `Drop` panics: the
/// `JoinError` is a cancellation with the right cause, the task counts cancelled (not
/// panicked, not both), `wait()` reports no panic, and the history's window agrees. A task
/// whose `poll` panics and whose `Drop` then panics too is one panicked task, and its
/// `JoinError` carries the poll's payload.
#[tokio::test(start_paused = true)]
async fn a_task_stopped_mid_run_whose_drop_panics_is_cancelled_with_its_cause() {
    quiet();
    let group = Group::new();
    let by_handle = group.delay_join(Duration::ZERO, DropBomb { poll_panics: false });
    let mut results = group.results::<u32>();
    let by_group = results.delay(Duration::ZERO, DropBomb { poll_panics: false });
    let poll_panics = group.delay_join(Duration::ZERO, DropBomb { poll_panics: true });
    settle().await;
    assert!(by_handle.cancel());
    let got = bounded(by_handle).await;
    assert_eq!(cause(&got), Some(CancelledBy::Handle), "{got:?}");
    let poll_err = bounded(poll_panics).await.unwrap_err();
    assert!(poll_err.is_panic());
    assert!(
        poll_err.into_panic().is::<Counted>(),
        "the payload is the poll's, not the Drop's"
    );
    let s = group.stats();
    assert_eq!((s.cancelled, s.panicked, s.running), (1, 1, 1));
    assert!(group.cancel());
    let (id, got) = bounded(results.join_next()).await.unwrap();
    assert_eq!((id, cause(&got)), (by_group.id(), Some(CancelledBy::Group)));
    let err = bounded(group.wait()).await.unwrap_err();
    assert!(err.is_cancelled());
    assert!(!err.is_panicked(), "the poll's panic was taken: {err}");
    let s = group.stats();
    assert_adds_up(s);
    assert_eq!((s.completed, s.cancelled, s.panicked), (0, 2, 1));
    let w = &group.history().windows[0];
    assert_eq!(
        (w.completed, w.cancelled, w.panicked, w.ended),
        (0, 2, 1, 3)
    );
}

// ===== 5. TaskHandle::cancel from the task's own output's Drop =====

/// An output that cancels tasks by handle when dropped.
struct CancellingOutput {
    own: Arc<Mutex<Option<schedgroup::TaskHandle>>>,
    other: Option<schedgroup::TaskHandle>,
    said: Arc<Mutex<Vec<bool>>>,
}

impl Drop for CancellingOutput {
    fn drop(&mut self) {
        let own = self.own.lock().unwrap().clone().unwrap();
        let mut said = self.said.lock().unwrap();
        said.push(own.cancel());
        said.push(own.cancel());
        if let Some(other) = &self.other {
            said.push(other.cancel());
        }
    }
}

/// Under cap 1 a runner runs A, then B and C. A's output (dropped by the group: its
/// `JoinHandle` is gone) cancels A itself, twice, and cancels C, pending. A counts completed
/// (its future returned: "If the task is inside a poll at that moment and returns from it, it
/// completed"), the second cancel says `false`, B, which the same runner runs next, is not
/// hit by A's abort and completes, and C is cancelled by its handle.
#[tokio::test(start_paused = true)]
async fn a_task_cancelled_from_its_own_outputs_drop_counts_completed_and_spares_the_next() {
    let group = Group::builder().max_concurrent(1).build();
    let own = Arc::new(Mutex::new(None));
    let said = Arc::new(Mutex::new(Vec::new()));
    let c = group.delay_join(ms(3), async { 3u32 });
    let output = CancellingOutput {
        own: own.clone(),
        other: Some(c.handle().clone()),
        said: said.clone(),
    };
    let a = group.delay_join(ms(1), async move {
        tokio::task::yield_now().await;
        output
    });
    *own.lock().unwrap() = Some(a.handle().clone());
    let a_handle = a.handle().clone();
    drop(a);
    let b = group.delay_join(ms(1), async {
        tokio::time::sleep(ms(5)).await;
        2u32
    });
    assert_eq!(bounded(b).await.unwrap(), 2, "B is not hit by A's abort");
    let got = bounded(c).await;
    assert_eq!(cause(&got), Some(CancelledBy::Handle));
    let said = said.lock().unwrap().clone();
    assert_eq!(said.len(), 3);
    assert!(!said[1], "asked before: {said:?}");
    assert!(said[2], "C was pending: {said:?}");
    assert!(a_handle.is_finished());
    bounded(group.wait()).await.unwrap();
    let s = group.stats();
    assert_adds_up(s);
    assert_eq!((s.completed, s.cancelled, s.panicked), (2, 1, 0));
}

// ===== 6. Every series runs beside aborts =====

/// Cap 2: a series every 10 ms (each run sleeps 3 ms) shares the runners with awaited tasks
/// that are stopped by their handles as they run (each abort wakes every runner, the series'
/// run among them). Every run calls `make()` once, runs never overlap, run on the grid, and
/// after `stop` the group is idle with everything counted.
#[tokio::test(start_paused = true)]
async fn a_series_beside_an_abort_storm_runs_on_its_grid_once_per_tick() {
    let group = Group::builder().max_concurrent(2).build();
    let start = tokio::time::Instant::now();
    let makes = Arc::new(AtomicUsize::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let overlap = Arc::new(AtomicBool::new(false));
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let (m, i, o, t) = (
        makes.clone(),
        inside.clone(),
        overlap.clone(),
        ticks.clone(),
    );
    let series = group.every(ms(10), move || {
        m.fetch_add(1, Ordering::SeqCst);
        t.lock().unwrap().push(start.elapsed());
        let (i, o) = (i.clone(), o.clone());
        async move {
            if i.fetch_add(1, Ordering::SeqCst) > 0 {
                o.store(true, Ordering::SeqCst);
            }
            tokio::time::sleep(ms(3)).await;
            i.fetch_sub(1, Ordering::SeqCst);
        }
    });
    let rounds = 30;
    for _ in 0..rounds {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let jh = group.delay_join(Duration::ZERO, common::outputs::forever(tx));
        bounded(rx.recv()).await.unwrap();
        assert!(jh.cancel());
        assert_eq!(cause(&bounded(jh).await), Some(CancelledBy::Handle));
        tokio::time::sleep(ms(7)).await;
    }
    assert!(series.stop());
    bounded(group.wait()).await.unwrap();
    let runs = makes.load(Ordering::SeqCst);
    assert!(!overlap.load(Ordering::SeqCst));
    let ticks = ticks.lock().unwrap().clone();
    for (n, at) in ticks.iter().enumerate() {
        assert_eq!(
            *at,
            ms(10 * (n as u64 + 1)),
            "run {n} off the grid: {ticks:?}"
        );
    }
    let s = group.stats();
    assert_adds_up(s);
    assert_eq!(s.completed, runs as u64);
    assert_eq!(
        s.cancelled,
        rounds + 1,
        "the aborted tasks and the stopped pending run"
    );
}

// ===== 7. k of N: awaited tasks, aborts, and another group's runtime dropped =====

/// Two groups share a `Limiter` of 2, each with a cap of 2. Group B runs on a current-thread
/// runtime on its own thread and holds both slots with two tasks that never end; group A's
/// three awaited tasks wait in line. B's first task is stopped by its handle: A runs through
/// that slot. Then B's runtime is dropped: its other task ends cancelled by the group, and
/// its slot goes to A too. Every `JoinHandle` (awaited on A's runtime) has the right result,
/// the limiter ends with no slot taken and nobody in line, and its history frees every slot
/// it handed out.
#[test]
fn slots_come_back_after_an_abort_and_another_groups_runtime_drop() {
    let limiter = Limiter::new(2);
    let rt_a = multi_thread(2);
    let rt_b = current_thread(false);
    let a = Group::builder()
        .limiter(&limiter)
        .max_concurrent(2)
        .runtime(rt_a.handle().clone())
        .build();
    let b = Group::builder()
        .limiter(&limiter)
        .max_concurrent(2)
        .runtime(rt_b.handle().clone())
        .build();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let driver = std::thread::spawn(move || {
        rt_b.block_on(async {
            while stop_rx.try_recv().is_err() {
                tokio::time::sleep(ms(1)).await;
            }
        });
        drop(rt_b);
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let b1 = b.delay_join(Duration::ZERO, common::outputs::forever(tx.clone()));
    let b2 = b.delay_join(Duration::ZERO, common::outputs::forever(tx));
    rt_a.block_on(async {
        bounded(rx.recv()).await.unwrap();
        bounded(rx.recv()).await.unwrap();
    });
    assert_eq!(limiter.running(), 2);
    let done = Arc::new(AtomicUsize::new(0));
    let awaited: Vec<_> = (0..3u32)
        .map(|n| {
            let done = done.clone();
            a.delay_join(Duration::ZERO, async move {
                tokio::time::sleep(ms(2)).await;
                done.fetch_add(1, Ordering::SeqCst);
                n
            })
        })
        .collect();
    std::thread::sleep(ms(20));
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "A waits: both slots are B's"
    );
    assert!(b1.cancel());
    let outs: Vec<_> = rt_a.block_on(async {
        let mut outs = Vec::new();
        for h in awaited {
            outs.push(bounded(h).await.unwrap());
        }
        outs
    });
    assert_eq!(outs, [0, 1, 2]);
    assert_eq!(limiter.running(), 1, "b2 still holds its slot");
    stop_tx.send(()).unwrap();
    join_bounded(driver);
    let (r1, r2) = rt_a.block_on(async { (bounded(b1).await, bounded(b2).await) });
    assert_eq!(cause(&r1), Some(CancelledBy::Handle));
    assert_eq!(cause(&r2), Some(CancelledBy::Group));
    rt_a.block_on(async {
        bounded(a.wait()).await.unwrap();
        assert!(bounded(b.wait()).await.unwrap_err().is_cancelled());
    });
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
    for g in [&a, &b] {
        assert_adds_up(g.stats());
    }
    assert_eq!(a.stats().completed, 3);
    assert_eq!(b.stats().cancelled, 2);
    let w = &limiter.history().windows[0];
    assert_eq!(w.started, w.freed, "{w:?}");
}

// ===== 8. deadline() and is_finished() under reserve(n), many future types =====

async fn typed<const N: usize>() -> u32 {
    N as u32
}

fn big<const N: usize>() -> impl Future<Output = u32> + Send + 'static {
    let pad = [N as u8; 400];
    async move { u32::from(pad[399]) }
}

/// A group with `reserve(2)` and a cap of 1, given tasks of a dozen future types (inline and
/// boxed, plain, `JoinHandle` and `Results`): each `deadline()` says what it was scheduled or
/// rescheduled to, `None` once cancelled, and `is_finished()` follows; once `wait()` returns
/// every task is finished and every output arrived.
#[tokio::test(start_paused = true)]
async fn deadlines_and_is_finished_hold_across_many_future_types_with_a_reserve() {
    let group = Group::builder().reserve(2).max_concurrent(1).build();
    let now = tokio::time::Instant::now();
    let mut results = group.results::<u32>();
    let mut handles = Vec::new();
    let mut joins = Vec::new();
    macro_rules! each {
        ($($n:literal)*) => {$(
            for k in 0..3u64 {
                let at = now + ms(100 + 10 * $n + k);
                match k {
                    0 => handles.push((group.schedule(at, typed::<$n>()), at)),
                    1 => {
                        let j = group.schedule_join(at, big::<$n>());
                        handles.push((j.handle().clone(), at));
                        joins.push(j);
                    }
                    _ => handles.push((results.schedule(at, typed::<$n>()), at)),
                }
            }
        )*};
    }
    each!(0 1 2 3 4 5 6 7 8 9 10 11);
    for (h, at) in &handles {
        assert_eq!(h.deadline(), Some(*at));
        assert!(!h.is_finished());
    }
    for (n, (h, at)) in handles.iter_mut().enumerate() {
        if n % 2 == 1 {
            *at += ms(1000 + n as u64);
            assert!(h.reschedule(*at));
        }
    }
    let mut cancelled = 0;
    for (n, (h, at)) in handles.iter().enumerate() {
        if n % 5 == 0 {
            assert!(h.cancel());
            assert_eq!((h.deadline(), h.is_finished()), (None, true));
            cancelled += 1;
        } else {
            assert_eq!(h.deadline(), Some(*at), "task {n}");
        }
    }
    bounded(group.wait()).await.unwrap();
    for (h, _) in &handles {
        assert_eq!((h.deadline(), h.is_finished()), (None, true));
    }
    let mut got = 0;
    while let Some((_, r)) = bounded(results.join_next()).await {
        let _ = r;
        got += 1;
    }
    assert_eq!(got, 12);
    for j in joins {
        let _ = bounded(j).await;
    }
    let s = group.stats();
    assert_adds_up(s);
    assert_eq!((s.scheduled, s.cancelled), (36, cancelled));
}

// ===== 9. every payload dropped once, every panic reported by one party, nothing left =====

/// Rounds of panics through every requester state: a live `JoinHandle` (taken), one dropped
/// before (refused), a live `Results` (taken), one dropped before (refused), a plain task.
/// Every payload is dropped exactly once, `wait()` reports exactly the refused and plain ones,
/// and no tokio task is left behind.
#[test]
fn every_panic_payload_is_dropped_once_and_reported_by_one_party() {
    quiet();
    let rt = multi_thread(2);
    let group = Group::builder()
        .max_concurrent(3)
        .runtime(rt.handle().clone())
        .build();
    let base = rt.block_on(async { alive() });
    let drops = Arc::new(AtomicUsize::new(0));
    let rounds = iterations(2000) / 20;
    let mut made = 0;
    for _ in 0..rounds {
        let p = || Counted(drops.clone());
        let (p1, p2, p3, p4, p5) = (p(), p(), p(), p(), p());
        made += 5;
        // The refused two end only once their requesters are gone: a delay of a millisecond
        // of real time was not enough on a loaded machine (the handle took the panic, and
        // `wait()` reported two).
        let (go, g) = gate();
        let g = Arc::new(g);
        let taken = group.delay_join(Duration::ZERO, async move { panic_with(p1) });
        let g2 = g.clone();
        let refused = group.delay_join(Duration::ZERO, async move {
            g2.open().await;
            panic_with(p2)
        });
        drop(refused);
        let mut live = group.results::<u32>();
        live.delay(Duration::ZERO, async move { panic_with(p3) });
        let gone = group.results::<u32>();
        gone.delay(Duration::ZERO, async move {
            g.open().await;
            panic_with(p4)
        });
        drop(gone);
        go.store(true, Ordering::SeqCst);
        let plain = group.delay(Duration::ZERO, async move {
            panic_with(p5);
        });
        let err = rt.block_on(async {
            assert!(bounded(taken).await.unwrap_err().is_panic());
            let (_, r) = bounded(live.join_next()).await.unwrap();
            assert!(r.unwrap_err().is_panic());
            bounded(group.wait()).await.unwrap_err()
        });
        assert_eq!(err.panicked(), 3, "{err}");
        assert!(err.panicked_ids().contains(&plain.id()), "{err}");
    }
    rt.block_on(async {
        for _ in 0..100 {
            if alive() == base {
                break;
            }
            tokio::time::sleep(ms(1)).await;
        }
        assert_eq!(alive(), base);
    });
    assert_eq!(drops.load(Ordering::SeqCst), made);
    let s = group.stats();
    assert_adds_up(s);
    assert_eq!(s.panicked, made as u64);
}

/// The taken side: a panic a live `JoinHandle` takes is not reported by a `wait()` already
/// waiting when it ends, even with a second waiter; the id a later plain panic gives is the
/// only one named.
#[tokio::test(start_paused = true)]
async fn a_taken_panic_stays_out_of_both_waiters_reports() {
    quiet();
    let group = Group::new();
    let taken = group.delay_join(ms(1), async { quiet_panic() });
    let plain = group.delay(ms(2), async {
        quiet_panic();
    });
    let (g1, g2) = (group.clone(), group.clone());
    let w1 = tokio::spawn(async move { g1.wait().await });
    let w2 = tokio::spawn(async move { g2.wait().await });
    assert!(bounded(taken).await.unwrap_err().is_panic());
    let r1 = bounded(w1).await.unwrap();
    let r2 = bounded(w2).await.unwrap();
    let reports: Vec<TaskId> = [r1, r2]
        .iter()
        .filter_map(|r| r.as_ref().err())
        .flat_map(|e| e.panicked_ids().to_vec())
        .collect();
    assert_eq!(reports, [plain.id()]);
    assert_adds_up(group.stats());
}
