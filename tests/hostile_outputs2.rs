//! Second hostile review of the outputs machinery, after 2baa8ae and 2c39eab: the two-step
//! end (`Task::end`, count, `Task::deliver`) and the `delivering` count `wait()` reads; the
//! runners' `Relay` registration on the abort `Notify`; panics counted as received by a live
//! requester; `Results`' `open` flag and `Delivery`'s count. Public API only.
//!
//! Each attack says what it tries. Six found defects, all fixed since (the runner now ends a
//! task in one helper, `close`, for both its paths; a group counts a panic as taken, or an
//! unreceived output's `Drop` panic, only once the delivery showed it); the tests stay as
//! regression tests. Found:
//!
//! - `Registration::keep` can leave a runner registered nowhere (a fresh `Notified` completed
//!   by a concurrent `notify_waiters` before its first poll, without calling the relay): its
//!   abort and the group's cancel are lost, `wait()` hangs. Confirmed by a local, uncommitted
//!   experiment: re-polling fresh `Notified`s until one is `Pending` makes the attack pass.
//! - `panic_received` is asked before the delivery: a `JoinHandle` or `Results` dropped in
//!   between loses the panic (never received, never reported by `wait()`), and an output
//!   whose `Drop` panics is then dropped inside `Sink::send`, its panic swallowed, the task
//!   counted completed.
//! - `Runner::drop` (runtime shutdown) counts the end without raising `delivering`: `wait()`
//!   returns before the result is delivered.
//! - `Results::poll_join_next` clones the caller's waker under the `Results`' lock: a clone
//!   that ends one of its tasks deadlocks.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;
use std::time::Duration;

use common::counting::{Counting, live_bytes};
use common::outputs::{Quiet, cause, forever, next, poll_once, spin_for, spin_until, waking_waker};
use common::{
    DropFlag, alive, assert_adds_up, bounded, current_thread, iterations, join_bounded, ms,
    multi_thread, settle,
};
use schedgroup::{CancelledBy, Group, JoinHandle};
use tokio::sync::mpsc;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ===== helpers =====

/// Receives `n` messages on `rx` from a plain thread (real time, bounded).
#[track_caller]
fn recv_n(rx: &mut mpsc::UnboundedReceiver<()>, n: usize) {
    let mut got = 0;
    spin_until(|| {
        while rx.try_recv().is_ok() {
            got += 1;
        }
        got >= n
    });
}

/// A panic payload that records the thread that dropped it, and whose panics the panic hook
/// keeps quiet (thousands of them would bury the test output).
struct Payload(Arc<Mutex<Vec<ThreadId>>>);

impl Drop for Payload {
    fn drop(&mut self) {
        self.0.lock().unwrap().push(std::thread::current().id());
    }
}

/// An output whose `Drop` panics (quietly), and records that it ran.
struct BadOutput(Arc<AtomicUsize>);

impl Drop for BadOutput {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::panic::panic_any(Quiet);
    }
}

/// Keeps [`Quiet`] and [`Payload`] panics off stderr.
fn quiet_hook() {
    common::outputs::quiet_hook(|p| p.is::<Payload>());
}

/// A waker that panics (quietly) when woken.
struct QuietBomb;

impl std::task::Wake for QuietBomb {
    fn wake(self: Arc<Self>) {
        std::panic::panic_any(Quiet);
    }
}

// ===== 1. the Relay: no abort and no group cancel is ever lost =====

/// Attack on `Registration::keep` (src/cancel.rs): when its relay fired, `keep` makes a new
/// `Notified` (which snapshots the `Notify`'s count of `notify_waiters` calls), drops the old
/// one (a `Notified` in the waiting state takes the `Notify`'s lock to unlink itself), and
/// polls the new one. If another thread's `notify_waiters` (another abort) lands between the
/// snapshot and the poll, tokio's first poll sees the count moved and returns `Ready` without
/// registering any waker, and without calling the relay: `fired` stays `false`. The next
/// `keep` sees the same waker and `fired == false` and returns at once: the runner is
/// registered nowhere, for good. Its own abort, and the group's cancellation, are lost.
///
/// Here: six victims run for ever; three plain threads abort bursts of other running tasks
/// (each abort wakes every runner, which registers again, while the next aborts land); then
/// each victim is aborted and must resolve; then the group is cancelled and `wait()` must
/// return.
#[test]
fn an_abort_storm_from_many_threads_never_leaves_a_runner_deaf() {
    let rt = multi_thread(2);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    let rounds = iterations(2000) / 40;
    let mut lost = None;
    'rounds: for round in 0..rounds {
        let (tx, mut started) = mpsc::unbounded_channel();
        let victims: Vec<_> = (0..6)
            .map(|_| group.delay_join(Duration::ZERO, forever(tx.clone())))
            .collect();
        recv_n(&mut started, victims.len());
        let stormers: Vec<_> = (0..3)
            .map(|_| {
                let group = group.clone();
                std::thread::spawn(move || {
                    for _ in 0..8 {
                        let (tx, mut started) = mpsc::unbounded_channel();
                        let burst: Vec<_> = (0..6)
                            .map(|_| group.delay_join(Duration::ZERO, forever(tx.clone())))
                            .collect();
                        recv_n(&mut started, burst.len());
                        for h in &burst {
                            assert!(h.cancel());
                        }
                        // Their results, each bounded: a storm task deaf to its abort counts
                        // as a loss too.
                        for h in burst {
                            let r = futures_lite_block_on(h, Duration::from_secs(2));
                            match r {
                                Some(r) => assert_eq!(cause(&r), Some(CancelledBy::Handle)),
                                None => return false,
                            }
                        }
                    }
                    true
                })
            })
            .collect();
        let mut storm_ok = true;
        for s in stormers {
            storm_ok &= join_bounded(s);
        }
        if !storm_ok {
            lost = Some((round, "a storm task"));
            break;
        }
        for v in &victims {
            assert!(v.cancel());
        }
        for v in victims {
            let r = rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), v).await });
            match r {
                Ok(r) => assert_eq!(cause(&r), Some(CancelledBy::Handle)),
                Err(_) => {
                    lost = Some((round, "a victim"));
                    break 'rounds;
                }
            }
        }
    }
    let Some((round, who)) = lost else {
        rt.block_on(bounded(group.wait())).unwrap();
        assert_adds_up(group.stats());
        return;
    };
    group.cancel();
    let waited =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), group.wait()).await });
    panic!(
        "round {round} of {rounds}: the abort of {who} was lost (its JoinHandle did not resolve \
         within 2 s); after group.cancel(), wait() {}; {:?}",
        if waited.is_ok() {
            "returned"
        } else {
            "did not return within 2 s either"
        },
        group.stats()
    );
}

/// Blocks a plain thread on `fut` for at most `bound` (real time), with a thread-parking
/// waker: `None` if it did not finish.
fn futures_lite_block_on<F: Future + Unpin>(mut fut: F, bound: Duration) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let start = std::time::Instant::now();
    loop {
        if let Poll::Ready(out) = Pin::new(&mut fut).poll(&mut Context::from_waker(&waker)) {
            return Some(out);
        }
        let elapsed = start.elapsed();
        if elapsed >= bound {
            return None;
        }
        std::thread::park_timeout((bound - elapsed).min(ms(10)));
    }
}

// ===== 2. panics: reported once, by whoever receives them, never lost =====

/// Attack on `Task::panic_received` (src/output.rs `Joined::panic_received`, asked in
/// src/driver.rs `Runner::run` before the pool counts the end): it asks whether the
/// `JoinHandle` is still open, and the group then counts the panic as received and never
/// reports it from `wait()`. The handle can be dropped on another thread after that question
/// and before `Task::deliver` sends: the send fails, the payload is dropped on the runner's
/// thread, nobody ever saw the panic, and `wait()` says nothing of it.
///
/// Each round: a task panics with a payload that records which thread drops it; a plain thread
/// drops the task's `JoinHandle` at a random moment around the task's end (timed from its
/// future's `Drop`, which runs inside `Task::end`). A payload dropped anywhere but on the
/// dropping thread never reached the handle (it was refused by a closed channel): then the
/// next `wait()` must report it. (One dropped on the dropping thread was in the channel when
/// the handle went: received, as documented, and not reported.)
#[test]
fn a_join_handle_dropped_as_its_task_panics_never_loses_the_panic() {
    panics_refused_by_a_dropped_requester_are_reported(
        0x9e37_79b9_7f4a_7c15,
        "JoinHandle",
        |group, task| {
            let handle: JoinHandle<()> = group.delay_join(Duration::ZERO, task);
            Box::new(handle)
        },
    );
}

/// The same through a `Results` dropped on another thread as its task panics
/// (`Delivery::receiving` reads `open`, the delivery finds it closed and drops the result).
#[test]
fn a_results_dropped_as_its_task_panics_never_loses_the_panic() {
    panics_refused_by_a_dropped_requester_are_reported(
        0x2545_f491_4f6c_dd1d,
        "Results",
        |group, task| {
            let results = group.results::<()>();
            results.delay(Duration::ZERO, task);
            Box::new(results)
        },
    );
}

/// The rounds of the two attacks above: `schedule` schedules the panicking task through a
/// requester and returns the requester, which a plain thread drops around the task's end.
fn panics_refused_by_a_dropped_requester_are_reported(
    mut seed: u64,
    requester: &str,
    schedule: impl Fn(&Group, Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn Send>,
) {
    quiet_hook();
    let rt = multi_thread(2);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    let rounds = iterations(2000);
    let (mut lost, mut refused, mut reached) = (0, 0, 0);
    for _ in 0..rounds {
        let drops = Arc::new(Mutex::new(Vec::new()));
        let ending = Arc::new(AtomicBool::new(false));
        let go = Arc::new(AtomicBool::new(false));
        let (d, e, g) = (drops.clone(), DropFlag(ending.clone()), go.clone());
        let owner = schedule(
            &group,
            Box::pin(async move {
                let _ending = e;
                while !g.load(Ordering::SeqCst) {
                    tokio::task::yield_now().await;
                }
                std::panic::panic_any(Payload(d))
            }),
        );
        let jitter = next(&mut seed) % 3000;
        let dropper = std::thread::spawn(move || {
            go.store(true, Ordering::SeqCst);
            spin_until(|| ending.load(Ordering::SeqCst));
            spin_for(jitter);
            drop(owner);
            std::thread::current().id()
        });
        let dropper = join_bounded(dropper);
        let report = rt.block_on(bounded(group.wait()));
        let reported = report.err().map_or(0, |e| e.panicked());
        let dropped_on = drops.lock().unwrap().clone();
        assert_eq!(dropped_on.len(), 1, "the payload is dropped once");
        if dropped_on[0] == dropper {
            reached += 1;
            assert_eq!(
                reported, 0,
                "a panic that reached the {requester} is reported there"
            );
        } else {
            refused += 1;
            if reported != 1 {
                lost += 1;
            }
        }
    }
    assert_adds_up(group.stats());
    assert_eq!(
        lost, 0,
        "{lost} of {refused} panics refused by a dropped {requester} were never reported by \
         wait() ({reached} reached it first; {rounds} rounds)"
    );
}

/// The output's side of the same window. Found: an output dropped inside `Sink::send` (its
/// `JoinHandle` gone after `end` looked and before the delivery) had its `Drop`'s panic
/// swallowed while the task counted completed. The third review then showed that recounting
/// such a task as panicked after the fact makes `stats().completed` go backwards and the
/// history disagree, so the documented rule is now: an output nobody will receive when the
/// task ends is dropped before the count and its `Drop`'s panic makes the task a panicked one
/// (reported by `wait()`); one whose requester goes away after the count is dropped by the
/// delivery, which changes no count (the panic hook reports the panic). So for every output
/// the group drops: reported as a panic, or counted completed; never neither.
#[test]
fn an_output_refused_by_a_handle_dropped_as_its_task_ends_counts_its_drops_panic() {
    quiet_hook();
    let rt = multi_thread(2);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    let rounds = iterations(2000);
    let mut seed = 0x1234_5678_9abc_def1u64;
    let (mut lost, mut worker_drops, mut before_count) = (0, 0, 0);
    for _ in 0..rounds {
        let drops = Arc::new(AtomicUsize::new(0));
        let ending = Arc::new(AtomicBool::new(false));
        let go = Arc::new(AtomicBool::new(false));
        let dropped_by = Arc::new(Mutex::new(None));
        let (d, e, g) = (drops.clone(), DropFlag(ending.clone()), go.clone());
        let completed = group.stats().completed;
        let handle = group.delay_join(Duration::ZERO, async move {
            let _ending = e;
            while !g.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
            BadOutput(d)
        });
        let jitter = next(&mut seed) % 3000;
        let by = dropped_by.clone();
        let dropper = std::thread::spawn(move || {
            go.store(true, Ordering::SeqCst);
            spin_until(|| ending.load(Ordering::SeqCst));
            spin_for(jitter);
            // The output may be in the channel: its Drop panics here, on our thread.
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(handle)));
            *by.lock().unwrap() = Some(caught.is_err());
        });
        join_bounded(dropper);
        let report = rt.block_on(bounded(group.wait()));
        let reported = report.err().map_or(0, |e| e.panicked());
        let completed = group.stats().completed - completed;
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the output is dropped once"
        );
        let on_dropper = dropped_by.lock().unwrap().unwrap();
        if !on_dropper {
            worker_drops += 1;
            before_count += reported;
            match (reported, completed) {
                (1, 0) | (0, 1) => {}
                _ => lost += 1,
            }
        }
    }
    assert_adds_up(group.stats());
    assert_eq!(
        lost, 0,
        "{lost} of {worker_drops} outputs dropped by the group were neither reported as panics \
         nor counted completed ({before_count} dropped before the count); {rounds} rounds"
    );
}

// ===== 3. wait() never returns before every result is delivered =====

/// A waker whose `clone` runs the caller's code: a hostile (or merely instrumented)
/// executor. `Results::poll_join_next` clones the waker under the `Results`' own lock, which
/// the crate says runs nothing of the user's.
struct CloneHook(Box<dyn Fn() + Send + Sync>);

fn hooked_waker(hook: impl Fn() + Send + Sync + 'static) -> Waker {
    use std::task::{RawWaker, RawWakerVTable};
    fn raw(data: *const ()) -> RawWaker {
        RawWaker::new(data, &VTABLE)
    }
    unsafe fn clone(data: *const ()) -> RawWaker {
        // SAFETY: `data` is a leaked `CloneHook`, alive for ever.
        let hook = unsafe { &*(data as *const CloneHook) };
        (hook.0)();
        raw(data)
    }
    unsafe fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    let hook: &'static CloneHook = Box::leak(Box::new(CloneHook(Box::new(hook))));
    // SAFETY: the vtable's functions uphold the RawWaker contract for a leaked, shared hook.
    unsafe { Waker::from_raw(raw(hook as *const CloneHook as *const ())) }
}

/// Holds up the delivery of a result to `results`: its `join_next` is polled with a waker
/// whose `wake` (which the delivery calls, after queueing the result) blocks until `release`.
/// Returns the `Results` and a flag set once a delivery is being held.
///
/// (The first version held the `Results`' own lock through a waker whose *clone* blocked,
/// since `poll_join_next` cloned the waker under that lock; it clones unlocked now, the sixth
/// defect below, so a delivery is held in the wake instead.)
fn hold_delivery<T: Send + 'static>(
    mut results: schedgroup::Results<T>,
    release: Arc<AtomicBool>,
) -> (schedgroup::Results<T>, Arc<AtomicBool>) {
    let holding = Arc::new(AtomicBool::new(false));
    let h = holding.clone();
    let waker = waking_waker(move || {
        h.store(true, Ordering::SeqCst);
        let start = std::time::Instant::now();
        while !release.load(Ordering::SeqCst) {
            assert!(start.elapsed() < common::REAL_BOUND, "never released");
            std::thread::yield_now();
        }
    });
    assert!(
        results
            .poll_join_next(&mut Context::from_waker(&waker))
            .is_pending()
    );
    (results, holding)
}

/// Polls fresh `wait()`s from this thread for `for_ms` of real time: whether one returned.
fn wait_returns_within(group: &Group, for_ms: u64) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < ms(for_ms) {
        let mut wait = Box::pin(group.wait());
        if poll_once(&mut wait).is_ready() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

/// Attack on `Runner::drop` (src/driver.rs): a runtime shut down mid-task drops the runner,
/// which ends the task, counts it (`finish`), then delivers, but never raises `delivering`
/// first as `Runner::run` and `settle_cancelled` do. Between the count and the delivery the
/// group is idle for `wait()`: "`wait()` never returns before every result is delivered"
/// fails. The window is made as wide as we like by holding the `Results`' lock (a waker
/// whose clone blocks, from `poll_join_next` on another thread): the delivery waits for it,
/// and `wait()` must wait too. It returns at once.
#[test]
fn wait_never_returns_before_a_result_the_runtimes_shutdown_delivers() {
    let rt = current_thread(false);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    let results = group.results::<u32>();
    let (tx, mut started) = mpsc::unbounded_channel();
    results.delay(Duration::ZERO, forever(tx));
    rt.block_on(bounded(started.recv())).unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let (mut results, holding) = hold_delivery(results, release.clone());
    // The runtime's shutdown drops the runner, whose delivery blocks in the wake.
    let dropper = std::thread::spawn(move || drop(rt));
    spin_until(|| holding.load(Ordering::SeqCst));
    let (g, r) = (group.clone(), release.clone());
    let early = std::thread::spawn(move || {
        let early = wait_returns_within(&g, 300);
        r.store(true, Ordering::SeqCst);
        early
    });
    let early = join_bounded(early);
    release.store(true, Ordering::SeqCst);
    join_bounded(dropper);
    let got = results.try_join_next().map(|(_, r)| cause(&r));
    assert_eq!(got, Some(Some(CancelledBy::Group)));
    assert!(
        !early,
        "wait() returned while the task's result was blocked on its way to the Results"
    );
}

/// The same held lock on the ordinary end (`Runner::run`, which raises `delivering`): `wait()`
/// does not return until the delivery went through.
#[test]
fn wait_waits_for_a_delivery_held_up_by_the_results_lock() {
    let rt = multi_thread(2);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    let results = group.results::<u32>();
    let go = Arc::new(AtomicBool::new(false));
    let g2 = go.clone();
    results.delay(Duration::ZERO, async move {
        while !g2.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        7
    });
    let release = Arc::new(AtomicBool::new(false));
    let (mut results, holding) = hold_delivery(results, release.clone());
    go.store(true, Ordering::SeqCst);
    spin_until(|| holding.load(Ordering::SeqCst));
    assert!(
        !wait_returns_within(&group, 200),
        "wait() returned while the result was held up"
    );
    assert_eq!(
        group.stats().completed,
        1,
        "counted before it was delivered"
    );
    release.store(true, Ordering::SeqCst);
    rt.block_on(bounded(group.wait())).unwrap();
    assert_eq!(results.try_join_next().map(|(_, r)| r.unwrap()), Some(7));
}

/// "Nothing of the user's runs under this lock" (src/output.rs `Collector::lock`): but
/// `poll_join_next` clones the caller's waker under it. A waker whose clone cancels a pending
/// task of the same `Results` (any call that ends a task of it delivers under that lock)
/// deadlocks the thread on the `Results`' own mutex.
#[test]
fn a_waker_whose_clone_cancels_a_task_of_the_results_does_not_deadlock() {
    let rt = current_thread(false);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    let mut results = group.results::<u32>();
    let pending = results.delay(Duration::from_secs(3600), async { 1 });
    let thread = std::thread::spawn(move || {
        let p = pending.clone();
        let waker = hooked_waker(move || {
            p.cancel();
        });
        // The clone runs unlocked now: the cancel delivers, and the poll, looking again after
        // the clone, returns that result.
        let r = results.poll_join_next(&mut Context::from_waker(&waker));
        let got = match r {
            Poll::Ready(Some((_, r))) => Some(cause(&r)),
            Poll::Ready(None) => None,
            Poll::Pending => results.try_join_next().map(|(_, r)| cause(&r)),
        };
        assert_eq!(got, Some(Some(CancelledBy::Handle)));
    });
    let start = std::time::Instant::now();
    while !thread.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "poll_join_next deadlocked on its own lock (the thread is left stuck)"
        );
        std::thread::sleep(ms(5));
    }
    thread.join().unwrap();
    drop(rt);
}

/// The same window in `Runner::run`, which raises `delivering`: a plain thread polls fresh
/// `wait()`s as tasks end on a multi-thread runtime; whenever one returns, every `JoinHandle`
/// and the `Results` must have their results, and the counters add up.
#[test]
fn wait_returns_only_after_every_result_of_a_busy_group_is_delivered() {
    let rt = multi_thread(2);
    let group = Group::builder()
        .max_concurrent(3)
        .runtime(rt.handle().clone())
        .build();
    let rounds = iterations(2000) / 20;
    for round in 0..rounds {
        let mut results = group.results::<usize>();
        let mut handles: Vec<_> = (0..8)
            .map(|i| {
                group.delay_join(Duration::ZERO, async move {
                    if i % 3 == 0 {
                        tokio::task::yield_now().await;
                    }
                    i
                })
            })
            .collect();
        for i in 0..8 {
            results.delay(Duration::ZERO, async move { i });
        }
        let start = std::time::Instant::now();
        loop {
            let mut wait = Box::pin(group.wait());
            if let Poll::Ready(r) = poll_once(&mut wait) {
                r.unwrap();
                break;
            }
            assert!(
                start.elapsed() < common::REAL_BOUND,
                "wait() never returned"
            );
        }
        let s = group.stats();
        assert_eq!((s.pending, s.running), (0, 0), "round {round}: {s:?}");
        assert_adds_up(s);
        for (i, h) in handles.iter_mut().enumerate() {
            assert!(h.is_finished());
            match poll_once(h) {
                Poll::Ready(r) => assert_eq!(r.unwrap(), i),
                Poll::Pending => {
                    panic!("round {round}: wait() returned before handle {i}'s result")
                }
            }
        }
        let mut got = 0;
        while let Some((_, r)) = results.try_join_next() {
            r.unwrap();
            got += 1;
        }
        assert_eq!(
            got, 8,
            "round {round}: wait() returned before every Results' result"
        );
        assert!(results.is_empty());
    }
}

// ===== 4. the delivering count never leaks; counters add up =====

/// A group cancel racing with tasks ending (completing, panicking, aborted by handle) on a
/// multi-thread runtime, with some tasks refused by the cancelled group, through `Results`
/// and `JoinHandle`s, and a panicking waker on one `JoinHandle`: every task yields exactly one
/// result, `wait()` returns (no `delivering` leaked), the counters add up, and no tokio task is
/// left behind.
#[test]
fn a_group_cancel_racing_with_ends_and_refusals_leaks_no_delivery() {
    quiet_hook();
    let rt = multi_thread(2);
    let base = rt.block_on(async { alive() });
    let rounds = iterations(2000) / 20;
    for round in 0..rounds {
        let group = Group::builder()
            .max_concurrent(4)
            .runtime(rt.handle().clone())
            .build();
        let mut results = group.results::<u32>();
        let mut handles = Vec::new();
        for i in 0..12u32 {
            let f = async move {
                if i % 2 == 0 {
                    tokio::task::yield_now().await;
                }
                if i % 5 == 0 {
                    std::panic::panic_any(Quiet);
                }
                i
            };
            if i % 3 == 0 {
                handles.push(group.delay_join(Duration::ZERO, f));
            } else {
                let h = results.delay(Duration::ZERO, f);
                if i % 4 == 0 {
                    h.cancel();
                }
            }
        }
        // One JoinHandle is polled with a waker that panics when woken.
        let mut bombed = group.delay_join(Duration::ZERO, async { 99u32 });
        let bomb = Waker::from(Arc::new(QuietBomb));
        let mut bombed_done = Pin::new(&mut bombed)
            .poll(&mut Context::from_waker(&bomb))
            .is_ready();
        spin_for(round as u64 * 997 % 50_000);
        let g = group.clone();
        let canceller = std::thread::spawn(move || g.cancel());
        // Refused, or not, as the cancel lands.
        for _ in 0..3 {
            results.delay(Duration::ZERO, async { 0 });
            handles.push(group.delay_join(Duration::ZERO, async { 0 }));
        }
        join_bounded(canceller);
        let err = rt.block_on(bounded(group.wait())).unwrap_err();
        assert!(err.is_cancelled());
        let mut got = 0;
        while results.try_join_next().is_some() {
            got += 1;
        }
        assert_eq!(
            got,
            8 + 3,
            "round {round}: one result per task of the Results"
        );
        assert!(results.is_empty());
        for h in &mut handles {
            assert!(
                poll_once(h).is_ready(),
                "round {round}: wait() before a handle's result"
            );
        }
        bombed_done = bombed_done || poll_once(&mut bombed).is_ready();
        assert!(bombed_done);
        let s = group.stats();
        assert_adds_up(s);
        assert_eq!((s.scheduled, s.pending, s.running), (12 + 1 + 6, 0, 0));
    }
    rt.block_on(async {
        for _ in 0..100 {
            if alive() <= base {
                break;
            }
            tokio::time::sleep(ms(1)).await;
        }
        assert!(alive() <= base, "tokio tasks left behind");
    });
}

/// A panic received by a live `JoinHandle` or `Results` is reported there and not by
/// `wait()`; one whose requester was dropped well before is reported by `wait()`, once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_panic_is_reported_by_exactly_one_party() {
    quiet_hook();
    let group = Group::new();
    let held = group.delay_join(ms(10), async { std::panic::panic_any(Quiet) });
    let mut results = group.results::<()>();
    results.delay(ms(10), async { std::panic::panic_any(Quiet) });
    let dropped = group.delay_join(ms(10), async { std::panic::panic_any(Quiet) });
    drop(dropped);
    let gone = group.results::<()>();
    gone.delay(ms(10), async { std::panic::panic_any(Quiet) });
    drop(gone);
    let err = bounded(group.wait()).await.unwrap_err();
    assert_eq!(
        err.panicked(),
        2,
        "the dropped handle's and the dropped Results' panics"
    );
    assert!(bounded(held).await.unwrap_err().is_panic());
    assert!(
        bounded(results.join_next())
            .await
            .unwrap()
            .1
            .unwrap_err()
            .is_panic()
    );
    assert!(bounded(group.wait()).await.is_ok(), "reported once");
    assert_eq!(group.stats().panicked, 4);
    settle().await;
}

/// Memory held by the relays: many aborts of running tasks, each waking two long-lived
/// runners (which register again through the relay they keep), leave nothing behind.
#[test]
fn aborts_on_few_runners_hold_no_memory_per_abort() {
    let rt = current_thread(false);
    let group = Group::builder()
        .max_concurrent(3)
        .runtime(rt.handle().clone())
        .build();
    let n = iterations(2000) / 4;
    rt.block_on(async {
        let (tx, mut started) = mpsc::unbounded_channel();
        let keep: Vec<_> = (0..2)
            .map(|_| group.delay_join(Duration::ZERO, forever(tx.clone())))
            .collect();
        bounded(started.recv()).await.unwrap();
        bounded(started.recv()).await.unwrap();
        let mut before = 0;
        for i in 0..n {
            if i == n / 2 {
                before = live_bytes();
            }
            let h = group.delay_join(Duration::ZERO, forever(tx.clone()));
            bounded(started.recv()).await.unwrap();
            assert!(h.cancel());
            assert_eq!(cause(&bounded(h).await), Some(CancelledBy::Handle));
        }
        settle().await;
        let grown = live_bytes() - before;
        assert!(
            grown < 4096,
            "{grown} bytes held after {} aborts on 2 runners",
            n / 2
        );
        for h in &keep {
            assert!(h.cancel());
        }
        for h in keep {
            assert_eq!(cause(&bounded(h).await), Some(CancelledBy::Handle));
        }
        bounded(group.wait()).await.unwrap();
        assert_adds_up(group.stats());
    });
}
