//! Hostile review of issue 13: a `TaskHandle` holds its group's seat in a process-wide table
//! of live groups (`src/directory.rs`) instead of an `Arc` of the group, and looks the group up
//! on every use. Attacks from outside: races between handle use and the group's last drop,
//! re-entrant handle use from futures' `Drop` and from tasks, a user `fmt::Write` under
//! `Debug`, seats reused across shards, limiters, `JoinHandle`/`Results`, runtime shutdown,
//! panicking `Drop`s, and storms of groups (memory must stay flat).

mod common;

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::Duration;

use common::{
    DropFlag, bounded, iterations, join_bounded, join_scoped_bounded, ms, multi_thread, settle,
};
use schedgroup::{CancelledBy, Group, Limiter, TaskHandle};
use tokio::time::Instant;

#[global_allocator]
static ALLOCATOR: common::counting::Counting = common::counting::Counting;

const HOUR: Duration = Duration::from_secs(3600);

/// Counts drops and polls of the futures that carry it.
#[derive(Default)]
struct Ledger {
    dropped: AtomicUsize,
    polled: AtomicUsize,
}

struct Entry(Arc<Ledger>);

impl Drop for Entry {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A future that counts its polls and its drop, and never completes before `run`.
fn counted(ledger: &Arc<Ledger>, run: Duration) -> impl Future<Output = ()> + Send + 'static {
    let entry = Entry(ledger.clone());
    async move {
        entry.0.polled.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(run).await;
        drop(entry);
    }
}

/// Every answer of a handle whose group is gone (every group here that is checked so is
/// named, so that `group: None` in `Debug` means gone).
#[track_caller]
fn assert_gone(handle: &TaskHandle) {
    assert!(handle.is_finished(), "{handle:?}");
    assert!(!handle.is_pending(), "{handle:?}");
    assert!(!handle.cancel(), "{handle:?}");
    assert!(!handle.reschedule(Instant::now() + ms(1)), "{handle:?}");
    assert_eq!(handle.deadline(), None);
    assert!(format!("{handle:?}").contains("group: None"), "{handle:?}");
}

/// Spins (real time, bounded) until `handle` says its group is gone: its monitor may still be
/// exiting on another thread.
#[track_caller]
fn await_gone(handle: &TaskHandle) {
    let start = std::time::Instant::now();
    while !format!("{handle:?}").contains("group: None") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the group never went: {handle:?}"
        );
        std::thread::sleep(Duration::from_micros(100));
    }
    assert_gone(handle);
}

/// Drops `owned` on one thread while `use_handles` runs on another, both let go at once by a
/// barrier; returns what `use_handles` returned.
fn drop_while<D: Send, T: Send>(owned: D, use_handles: impl FnOnce() -> T + Send) -> T {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let dropper = s.spawn(|| {
            barrier.wait();
            drop(owned);
        });
        let user = s.spawn(|| {
            barrier.wait();
            use_handles()
        });
        join_scoped_bounded(dropper);
        join_scoped_bounded(user)
    })
}

// ===== races on the multi-thread runtime =====

/// The last `Group` is dropped on one thread while another cancels, reschedules and
/// debug-prints every pending task through its handle. The monitor keeps the group while tasks
/// wait, so every cancel reaches its task (true), each future is dropped exactly once and none
/// runs; the last cancel's lookup may hold the group's last `Arc`, so `Shared::drop` runs
/// inside `cancel()`. Afterwards every handle says its task ended.
#[test]
fn last_group_dropped_while_another_thread_cancels_through_handles() {
    let rt = multi_thread(2);
    for _ in 0..iterations(3000) / 30 {
        let ledger = Arc::new(Ledger::default());
        let group = Group::builder()
            .name("race")
            .runtime(rt.handle().clone())
            .build();
        let handles: Vec<_> = (0..8)
            .map(|_| group.delay(HOUR, counted(&ledger, HOUR)))
            .collect();
        let trues = drop_while(group, || {
            let mut trues = 0;
            for h in &handles {
                assert!(format!("{h:?}").contains("Some(\"race\")"), "{h:?}");
                assert!(h.is_pending());
                assert!(h.deadline().is_some());
                assert!(h.reschedule(Instant::now() + 2 * HOUR));
                trues += usize::from(h.cancel());
                assert!(!h.reschedule(Instant::now()));
                assert!(h.is_finished());
            }
            trues
        });
        assert_eq!(trues, 8, "every pending task is reachable while it waits");
        assert_eq!(ledger.dropped.load(Ordering::SeqCst), 8);
        assert_eq!(ledger.polled.load(Ordering::SeqCst), 0, "none started");
        for h in &handles {
            await_gone(h);
        }
    }
}

/// As above with tasks that start at once and run until stopped: the cancel reaches each
/// whether it is still pending or already running (runners keep the group), each is dropped
/// once, and the group goes once all have stopped.
#[test]
fn last_group_dropped_while_running_tasks_are_cancelled_through_handles() {
    let rt = multi_thread(2);
    for _ in 0..iterations(3000) / 30 {
        let ledger = Arc::new(Ledger::default());
        let group = Group::builder()
            .name("g")
            .runtime(rt.handle().clone())
            .build();
        let handles: Vec<_> = (0..6)
            .map(|_| group.delay(Duration::ZERO, counted(&ledger, HOUR)))
            .collect();
        let trues = drop_while(group, || handles.iter().filter(|h| h.cancel()).count());
        assert_eq!(trues, 6);
        for h in &handles {
            await_gone(h);
        }
        assert_eq!(ledger.dropped.load(Ordering::SeqCst), 6);
    }
}

/// Stale handles of gone groups are hammered on one thread while another creates groups (which
/// take the vacated seats, in every shard) each with one pending task of the same id. A stale
/// handle never reaches a new task: its cancel is always false and no new task is dropped.
#[test]
fn stale_handles_hammered_while_seats_are_reused_on_another_thread() {
    let rt = multi_thread(1);
    let stale: Vec<TaskHandle> = (0..64)
        .map(|_| {
            let group = Group::builder()
                .name("g")
                .runtime(rt.handle().clone())
                .build();
            let h = group.delay(HOUR, async {});
            assert!(h.cancel());
            h
        })
        .collect();
    for h in &stale {
        await_gone(h);
    }
    let rounds = iterations(3000) / 10;
    let done = AtomicBool::new(false);
    let fresh: Vec<(Group, TaskHandle, Arc<AtomicBool>)> = std::thread::scope(|s| {
        let hammer = s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                for h in &stale {
                    assert!(!h.cancel(), "a stale handle reached a task: {h:?}");
                    assert!(!h.reschedule(Instant::now()));
                    assert!(!h.is_pending());
                    assert!(h.is_finished());
                }
            }
        });
        let mut fresh = Vec::new();
        for i in 0..rounds {
            let group = Group::builder()
                .name("g")
                .runtime(rt.handle().clone())
                .build();
            let (flag, dropped) = DropFlag::new();
            let h = group.delay(HOUR, async move { drop(flag) });
            if i % 4 == 0 {
                // Most leave again, so that their seats are taken over and over.
                fresh.push((group, h, dropped));
            } else {
                assert!(h.cancel());
                assert!(dropped.load(Ordering::SeqCst));
            }
        }
        done.store(true, Ordering::SeqCst);
        join_scoped_bounded(hammer);
        fresh
    });
    for (group, h, dropped) in &fresh {
        assert!(!dropped.load(Ordering::SeqCst), "a new task was dropped");
        assert!(h.is_pending());
        assert_eq!(group.stats().cancelled, 0);
        assert!(h.cancel());
    }
}

/// The runtime a group spawns on shuts down while another thread cancels, reschedules and
/// prints its tasks through their handles: no panic, no hang, every future dropped exactly
/// once, none started, and every handle ends up saying its task ended.
#[test]
fn runtime_shut_down_while_handles_are_used_on_another_thread() {
    for _ in 0..iterations(3000) / 60 {
        let rt = multi_thread(1);
        let ledger = Arc::new(Ledger::default());
        let group = Group::builder()
            .name("g")
            .runtime(rt.handle().clone())
            .build();
        let handles: Vec<_> = (0..8)
            .map(|_| group.delay(HOUR, counted(&ledger, HOUR)))
            .collect();
        drop(group);
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            let user = s.spawn(|| {
                barrier.wait();
                for (i, h) in handles.iter().enumerate() {
                    let _ = format!("{h:?}");
                    if i % 2 == 0 {
                        let _ = h.cancel();
                    } else {
                        let _ = h.reschedule(Instant::now() + 2 * HOUR);
                    }
                    let _ = h.deadline();
                }
            });
            barrier.wait();
            drop(rt);
            join_scoped_bounded(user);
        });
        for h in &handles {
            await_gone(h);
        }
        assert_eq!(ledger.dropped.load(Ordering::SeqCst), 8);
        assert_eq!(ledger.polled.load(Ordering::SeqCst), 0);
    }
}

// ===== re-entrancy =====

/// A cancelled future's `Drop` (which runs inside `cancel()`, with the handle's lookup held)
/// uses its own handle and its siblings', prints them, cancels a sibling (nested cancel),
/// and builds, uses and drops other groups (their seats enter and leave the table meanwhile).
/// The group's `Group` handles are all gone, so the monitor and the lookups are all that keep
/// it. Nothing deadlocks, the sibling is cancelled once, and the third task still runs on time.
#[tokio::test(start_paused = true)]
async fn handle_use_from_a_futures_drop_inside_cancel() {
    let group = Group::builder().name("re").build();
    let handles: Arc<OnceLock<Vec<TaskHandle>>> = Arc::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    struct OnDrop(Arc<OnceLock<Vec<TaskHandle>>>, Arc<Mutex<Vec<bool>>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            let hs = self.0.get().expect("set before the cancel");
            let me = &hs[0];
            let mut out = vec![
                me.is_pending(),
                me.is_finished(),
                me.cancel(),
                me.reschedule(Instant::now()),
                me.deadline().is_some(),
                format!("{me:?}").contains("Some(\"re\")"),
                hs[1].cancel(),
                hs[1].is_finished(),
                hs[2].is_pending(),
            ];
            // Other groups come and go while the lookup is held.
            for _ in 0..40 {
                let other = Group::new();
                let h = other.delay(HOUR, async {});
                out.push(h.cancel());
                drop(other);
            }
            self.1.lock().unwrap().extend(out);
        }
    }
    let guard = OnDrop(handles.clone(), seen.clone());
    let (flag1, dropped1) = DropFlag::new();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let hs = vec![
        group.delay(HOUR, async move {
            let _g = guard;
            unreachable!();
        }),
        group.delay(HOUR, async move {
            let _f = flag1;
            unreachable!();
        }),
        group.delay(ms(500), async move { r.store(true, Ordering::SeqCst) }),
    ];
    handles.set(hs.clone()).ok().unwrap();
    drop(group);
    assert!(hs[0].cancel());
    let out = seen.lock().unwrap().clone();
    // [is_pending, is_finished, cancel, reschedule, deadline, debug, sibling cancel,
    //  sibling finished, third pending, 40 × other group's cancel]
    assert_eq!(
        &out[..9],
        &[false, true, false, false, false, true, true, true, true]
    );
    assert_eq!(out.len(), 49);
    assert!(out[9..].iter().all(|&b| b));
    assert!(dropped1.load(Ordering::SeqCst));
    assert!(!hs[1].cancel(), "cancelled once");
    let start = Instant::now();
    tokio::time::sleep(ms(499)).await;
    settle().await;
    assert!(!ran.load(Ordering::SeqCst), "not early");
    tokio::time::sleep(ms(2)).await;
    settle().await;
    assert!(ran.load(Ordering::SeqCst));
    assert!(start.elapsed() >= ms(500));
    for h in &hs {
        assert_gone(h);
    }
}

/// A running task uses its own handle after every `Group` is gone: it sees itself running,
/// cancels itself (true, once), and stops at its next `.await`; its `JoinHandle` says it was
/// cancelled by its handle.
#[tokio::test(start_paused = true)]
async fn a_task_cancels_itself_through_its_own_handle_after_the_group_is_gone() {
    let group = Group::builder().name("g").build();
    let me: Arc<OnceLock<TaskHandle>> = Arc::default();
    let m = me.clone();
    let after = Arc::new(AtomicBool::new(false));
    let a = after.clone();
    let join = group.delay_join(ms(5), async move {
        let h = m.get().unwrap();
        assert!(!h.is_pending());
        assert!(!h.is_finished());
        assert_eq!(h.deadline(), None);
        assert!(format!("{h:?}").contains("pending: false, finished: false"));
        assert!(h.cancel());
        assert!(!h.cancel(), "asked once");
        assert!(!h.reschedule(Instant::now()));
        tokio::task::yield_now().await;
        a.store(true, Ordering::SeqCst);
    });
    me.set(join.handle().clone()).ok().unwrap();
    let handle = join.handle().clone();
    drop(group);
    let err = bounded(join).await.unwrap_err();
    assert_eq!(err.cancelled_by(), Some(CancelledBy::Handle));
    assert!(!after.load(Ordering::SeqCst));
    settle().await;
    assert_gone(&handle);
}

/// A user `fmt::Write` under a handle's `Debug` drops the last `Group`, cancels the handle's
/// task (so that the group lives on only through `Debug`'s own lookup), prints the handle
/// again from inside, and uses other handles: nothing deadlocks, and after the print the
/// handle says its group is gone.
#[test]
fn debug_with_a_hostile_writer_drops_the_group_and_reenters() {
    let rt = multi_thread(1);
    let thread = std::thread::spawn(move || {
        struct Evil {
            group: Option<Group>,
            handle: TaskHandle,
            other: TaskHandle,
            out: String,
            nested: Vec<String>,
        }
        impl fmt::Write for Evil {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                if let Some(group) = self.group.take() {
                    drop(group);
                    assert!(self.handle.cancel());
                    assert!(self.other.cancel());
                    // The group's monitor exits on the runtime's thread meanwhile.
                    std::thread::sleep(ms(5));
                    self.nested.push(format!("{:?}", self.handle));
                    self.nested.push(format!("{:?}", self.other));
                }
                self.out.push_str(s);
                Ok(())
            }
        }
        let group = Group::builder()
            .name("evil")
            .runtime(rt.handle().clone())
            .build();
        let handle = group.delay(HOUR, async {});
        let other = group.delay(HOUR, async {});
        let mut evil = Evil {
            group: Some(group),
            handle: handle.clone(),
            other,
            out: String::new(),
            nested: Vec::new(),
        };
        write!(evil, "{handle:?}").unwrap();
        assert!(evil.out.contains("Some(\"evil\")"), "{}", evil.out);
        assert_eq!(evil.nested.len(), 2);
        await_gone(&handle);
        drop(rt);
    });
    join_bounded(thread);
}

// ===== limiters, JoinHandle, Results =====

/// Groups on a `Limiter` of 1: a task of a group whose `Group` is dropped waits in the
/// limiter's line; its handle still reaches it (pending, deadline, reschedule, cancel). A new
/// group that takes the gone group's place in the limiter's pool is never reached by the old
/// handles, and its task runs exactly once when the slot frees.
#[tokio::test(start_paused = true)]
async fn limiter_handles_survive_their_groups_drop_and_never_reach_a_successor() {
    let limiter = Limiter::new(1);
    let holder = Group::builder().name("g").limiter(&limiter).build();
    let hold = holder.delay(Duration::ZERO, tokio::time::sleep(HOUR));
    settle().await;
    assert_eq!(limiter.running(), 1);

    let b = Group::builder().name("g").limiter(&limiter).build();
    let ledger = Arc::new(Ledger::default());
    let waits = b.delay(ms(10), counted(&ledger, ms(1)));
    let moved = b.delay(ms(10), counted(&ledger, ms(1)));
    drop(b);
    tokio::time::sleep(ms(20)).await;
    settle().await;
    assert!(waits.is_pending(), "due, waiting in the limiter's line");
    assert!(waits.deadline().is_some());
    assert!(moved.reschedule(Instant::now() + ms(100)));
    assert!(waits.cancel());
    assert!(moved.cancel());
    assert_eq!(ledger.dropped.load(Ordering::SeqCst), 2);
    settle().await;
    assert_gone(&waits);
    assert_gone(&moved);

    // A successor takes the vacated member and seat.
    let c = Group::builder().name("g").limiter(&limiter).build();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let hc = c.delay(ms(1), async move {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert_gone(&waits);
    assert_gone(&moved);
    assert_eq!(ledger.polled.load(Ordering::SeqCst), 0);
    tokio::time::sleep(ms(5)).await;
    settle().await;
    assert!(hc.is_pending(), "waits for the held slot");
    assert!(hold.cancel());
    bounded(c.wait()).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(hc.is_finished());
    assert_eq!(limiter.running(), 0);
}

/// A `JoinHandle` outlives its group: its handle cancels the pending task after the `Group`
/// is dropped, the result says so, and `Debug` works throughout. A `Results` keeps its group
/// and its handles reach their tasks.
#[tokio::test(start_paused = true)]
async fn join_handle_and_results_handles_after_the_group_is_dropped() {
    let group = Group::builder().name("j").build();
    let join = group.delay_join(HOUR, async { 1 });
    let done = group.delay_join(ms(1), async { 2 });
    let mut results = group.results::<u32>();
    let r1 = results.delay(HOUR, async { 3 });
    let r2 = results.delay(ms(2), async { 4 });
    drop(group);
    assert!(format!("{join:?}").contains("Some(\"j\")"));
    assert!(join.handle().clone().cancel());
    let err = bounded(join).await.unwrap_err();
    assert_eq!(err.cancelled_by(), Some(CancelledBy::Handle));
    assert_eq!(bounded(done).await.unwrap(), 2);
    assert!(r1.cancel());
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (_, res) = bounded(results.join_next()).await.unwrap();
        seen.push(res.map_err(|e| e.cancelled_by()));
    }
    seen.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(seen, [Err(Some(CancelledBy::Handle)), Ok(4)]);
    assert!(!r2.cancel());
    assert!(r2.is_finished());
    // The `Results` still holds the group: its handles find it.
    assert!(format!("{r1:?}").contains("Some(\"j\")"));
    drop(results);
    settle().await;
    assert_gone(&r1);
    assert_gone(&r2);
}

// ===== threads and runtimes =====

/// A handle moved to a thread with no runtime, and to a thread running another runtime,
/// reschedules and cancels there; the group's own runtime runs the rescheduled task on time,
/// once.
#[test]
fn handles_used_from_foreign_threads_and_runtimes() {
    let rt = multi_thread(1);
    let group = Group::builder()
        .name("g")
        .runtime(rt.handle().clone())
        .build();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let ran_at = Arc::new(Mutex::new(None));
    let at = ran_at.clone();
    let moved = group.delay(HOUR, async move {
        r.fetch_add(1, Ordering::SeqCst);
        *at.lock().unwrap() = Some(std::time::Instant::now());
    });
    let (flag, dropped) = DropFlag::new();
    let cancelled = group.delay(HOUR, async move { drop(flag) });
    drop(group);
    let target = std::time::Instant::now() + ms(30);
    let (m, c) = (moved.clone(), cancelled.clone());
    join_bounded(std::thread::spawn(move || {
        assert!(m.reschedule(target));
        assert!(m.deadline().is_some());
    }));
    join_bounded(std::thread::spawn(move || {
        let other = common::current_thread(false);
        other.block_on(async {
            assert!(c.cancel());
        });
    }));
    assert!(dropped.load(Ordering::SeqCst));
    await_gone(&moved);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(ran_at.lock().unwrap().unwrap() >= target, "not early");
    assert_gone(&cancelled);
}

// ===== panics =====

/// A future whose `Drop` panics is cancelled through its handle after the `Group` is gone:
/// the panic is caught, `cancel()` returns true, the other task is unaffected, and the group
/// goes when its last task ends.
#[tokio::test(start_paused = true)]
async fn a_panicking_drop_during_cancel_through_a_handle() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("hostile drop");
        }
    }
    let group = Group::builder().name("g").build();
    let bomb = Bomb;
    let h = group.delay(HOUR, async move {
        let _b = bomb;
    });
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let other = group.delay(ms(5), async move { r.store(true, Ordering::SeqCst) });
    drop(group);
    assert!(h.cancel());
    assert!(h.is_finished());
    tokio::time::sleep(ms(10)).await;
    settle().await;
    assert!(ran.load(Ordering::SeqCst));
    assert_gone(&h);
    assert_gone(&other);
}

// ===== memory =====

/// Storms of groups created and dropped, each leaving a stale handle behind (kept), with and
/// without pending tasks at the drop, on a limiter and not: this thread's heap stays flat; a
/// kept handle costs its own bytes, not its group's.
#[test]
fn storms_of_groups_leave_the_heap_flat() {
    let rt = common::current_thread(false);
    let limiter = Limiter::new(4);
    let cycles = 2000;
    let mut kept: Vec<TaskHandle> = Vec::with_capacity(2 * cycles + 400);
    let cycle = |kept: &mut Vec<TaskHandle>, n: usize| {
        for i in 0..n {
            // A name no other test uses: with the `metrics` feature, groups of one name share
            // a series, which other tests' groups (on other threads) would grow meanwhile.
            let mut builder = Group::builder().name("storm").runtime(rt.handle().clone());
            if i % 2 == 0 {
                builder = builder.limiter(&limiter);
            }
            let group = builder.build();
            let a = group.delay(HOUR, async {});
            let b = group.delay(HOUR, async {});
            drop(group);
            assert!(a.cancel());
            kept.push(a);
            if i % 3 == 0 {
                assert!(b.cancel());
            } else {
                // Left to the monitor; its runtime is driven below.
                assert!(b.reschedule(Instant::now()));
            }
            kept.push(b);
            if i % 50 == 49 {
                rt.block_on(async {
                    tokio::time::sleep(ms(1)).await;
                    settle().await;
                });
            }
        }
        rt.block_on(async {
            tokio::time::sleep(ms(1)).await;
            settle().await;
        });
    };
    cycle(&mut kept, 200);
    let before = common::counting::live_bytes();
    cycle(&mut kept, cycles);
    let after = common::counting::live_bytes();
    let grown = after - before;
    assert!(
        grown < 64 * 1024,
        "{grown} bytes more after {cycles} groups came and went"
    );
    for h in &kept {
        assert_gone(h);
    }
}

// ===== odds and ends =====

/// A handle is still plain, thread-safe data.
#[test]
fn a_handle_is_send_sync_unpin_and_unwind_safe() {
    fn check<T: Send + Sync + Unpin + std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
    check::<TaskHandle>();
    assert!(std::mem::size_of::<TaskHandle>() <= 32);
}

/// A task scheduled into a cancelled group never entered it: its handle says it ended both
/// while the group lives and after it is gone, and never reaches a later task of the same id.
#[tokio::test(start_paused = true)]
async fn a_handle_refused_by_a_cancelled_group_ends_before_and_after_the_group_goes() {
    let group = Group::builder().name("g").build();
    group.cancel();
    let (flag, dropped) = DropFlag::new();
    let refused = group.delay(ms(1), async move { drop(flag) });
    assert!(dropped.load(Ordering::SeqCst));
    assert!(refused.is_finished());
    assert!(!refused.is_pending());
    assert!(!refused.cancel());
    assert_eq!(refused.deadline(), None);
    drop(group);
    settle().await;
    assert_gone(&refused);
}

/// After the `Group` is dropped, a pending task moved earlier and later through its handle
/// runs at its last deadline, not before, exactly once; a handle clone sees the same.
#[tokio::test(start_paused = true)]
async fn rescheduled_through_a_handle_after_the_group_is_gone_runs_on_time_once() {
    let group = Group::builder().name("g").build();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let r = runs.clone();
    let start = Instant::now();
    let h = group.delay(HOUR, async move { r.lock().unwrap().push(Instant::now()) });
    drop(group);
    let clone = h.clone();
    assert!(h.reschedule(start + ms(10)));
    assert!(clone.reschedule(start + ms(300)));
    assert_eq!(h.deadline(), Some(start + ms(300)));
    tokio::time::sleep(ms(299)).await;
    settle().await;
    assert!(runs.lock().unwrap().is_empty(), "not early");
    tokio::time::sleep(ms(5)).await;
    settle().await;
    assert_eq!(*runs.lock().unwrap(), [start + ms(300)]);
    assert_gone(&h);
    assert_gone(&clone);
}

/// Groups on a shared limiter of 1 on the multi-thread runtime: while one thread drops the
/// last `Group` of each, another cancels half their waiting tasks through handles. Every task
/// runs or is dropped exactly once, nothing is lost, the limiter ends with no slot taken, and
/// every handle ends up gone.
#[test]
fn limiter_groups_dropped_while_handles_cancel_on_another_thread() {
    let rt = multi_thread(2);
    let limiter = Limiter::new(1);
    for _ in 0..iterations(3000) / 60 {
        let ledger = Arc::new(Ledger::default());
        let groups: Vec<Group> = (0..3)
            .map(|_| {
                Group::builder()
                    .name("g")
                    .limiter(&limiter)
                    .runtime(rt.handle().clone())
                    .build()
            })
            .collect();
        let handles: Vec<TaskHandle> = groups
            .iter()
            .flat_map(|g| {
                let ledger = ledger.clone();
                (0..4).map(move |_| g.delay(Duration::ZERO, counted(&ledger, Duration::ZERO)))
            })
            .collect();
        let cancelled = drop_while(groups, || {
            handles.iter().step_by(2).filter(|h| h.cancel()).count()
        });
        for h in &handles {
            await_gone(h);
        }
        let polled = ledger.polled.load(Ordering::SeqCst);
        assert_eq!(ledger.dropped.load(Ordering::SeqCst), 12);
        // A cancel that returned true either never let the task start, or stopped it
        // (possibly after it was polled and returned: then it completed).
        assert!(
            polled >= 12 - cancelled,
            "{polled} polled, {cancelled} cancelled"
        );
        assert_eq!(limiter.running(), 0);
        assert_eq!(limiter.waiting(), 0);
    }
}

/// Deterministically, the group's last `Arc` is the one `cancel()` looked up: the cancelled
/// future's `Drop` (inside `cancel()`) waits until the monitor has exited, so `Shared::drop`
/// runs at the end of `cancel()`, which must neither deadlock nor panic; right after it the
/// handle says its group is gone, and a group built at once takes over the seat untouched.
#[test]
fn shared_drop_runs_inside_cancel_when_its_lookup_holds_the_last_arc() {
    let rt = multi_thread(1);
    let metrics = rt.metrics();
    struct WaitForMonitor(tokio::runtime::RuntimeMetrics, Arc<AtomicBool>);
    impl Drop for WaitForMonitor {
        fn drop(&mut self) {
            let start = std::time::Instant::now();
            while self.0.num_alive_tasks() > 0 {
                assert!(start.elapsed() < Duration::from_secs(10), "monitor stayed");
                std::thread::sleep(Duration::from_micros(50));
            }
            self.1.store(true, Ordering::SeqCst);
        }
    }
    for _ in 0..20 {
        let group = Group::builder()
            .name("g")
            .runtime(rt.handle().clone())
            .build();
        let waited = Arc::new(AtomicBool::new(false));
        let guard = WaitForMonitor(metrics.clone(), waited.clone());
        let h = group.delay(HOUR, async move { drop(guard) });
        let start = std::time::Instant::now();
        while metrics.num_alive_tasks() == 0 {
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::yield_now();
        }
        drop(group);
        assert!(h.cancel());
        assert!(waited.load(Ordering::SeqCst));
        assert_gone(&h);
        let next = Group::builder()
            .name("g")
            .runtime(rt.handle().clone())
            .build();
        let n = next.delay(HOUR, async {});
        assert_gone(&h);
        assert!(n.is_pending());
        assert!(n.cancel());
    }
}

/// Handles used from a thread-local's destructor, as the thread exits: the group is found
/// (its monitor keeps it), its task cancelled once, and nothing panics.
#[test]
fn handles_used_from_a_thread_local_destructor() {
    let rt = multi_thread(1);
    let group = Group::builder()
        .name("g")
        .runtime(rt.handle().clone())
        .build();
    let (flag, dropped) = DropFlag::new();
    let h = group.delay(HOUR, async move { drop(flag) });
    drop(group);
    struct AtExit(TaskHandle, Arc<AtomicUsize>);
    impl Drop for AtExit {
        fn drop(&mut self) {
            let ok = self.0.is_pending()
                && self.0.deadline().is_some()
                && format!("{:?}", self.0).contains("Some(\"g\")")
                && self.0.cancel()
                && !self.0.cancel();
            self.1.store(if ok { 1 } else { 2 }, Ordering::SeqCst);
        }
    }
    thread_local! {
        static EXIT: std::cell::RefCell<Option<AtExit>> = const { std::cell::RefCell::new(None) };
    }
    let result = Arc::new(AtomicUsize::new(0));
    let (handle, r) = (h.clone(), result.clone());
    join_bounded(std::thread::spawn(move || {
        EXIT.with(|e| *e.borrow_mut() = Some(AtExit(handle, r)));
    }));
    assert_eq!(result.load(Ordering::SeqCst), 1);
    assert!(dropped.load(Ordering::SeqCst));
    await_gone(&h);
}
