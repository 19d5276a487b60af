//! Hostile review of 7799dd9 ("pending futures stored inline, one slab per future type"),
//! through the public API only: many future types (200 via const generics, zero-sized ones,
//! futures of exactly 256 and 257 bytes, over-aligned ones), ties between types, reschedules
//! across types, stale handles, `Builder::reserve` with odd values, futures whose `Drop` uses
//! the group while it is drained, runtime shutdown, races, and memory given back.
//!
//! Five of these found defects, all fixed since: `reserve(usize::MAX)` panicked in `schedule()`
//! after counting the task (so `wait()` hung); `reserve(1 << 40)` aborted the process; a
//! cancelled group kept its reserve's heap room; an emptied lane kept up to 256 slots of its
//! type; schedules within the reserve allocated once `history()` had moved tasks to the due
//! heap.

mod common;

use std::cell::RefCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::counting::{Counting, live_bytes};
use common::{assert_adds_up, bounded, current_thread, join_bounded, ms, multi_thread, settle};
use rand::{Rng, SeedableRng};
use schedgroup::{Group, TaskHandle, TaskId, task_id};
use tokio::time::Instant;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ===== future types =====

thread_local! {
    /// Ids of the tasks that ran on this thread, in the order they started.
    static RAN: RefCell<Vec<TaskId>> = const { RefCell::new(Vec::new()) };
}

fn record() {
    let id = task_id().expect("task_id() inside a task");
    RAN.with(|ran| ran.borrow_mut().push(id));
}

fn take_ran() -> Vec<TaskId> {
    RAN.with(|ran| std::mem::take(&mut *ran.borrow_mut()))
}

/// One future type per `N`: a generic `async fn` is a distinct type for each instantiation.
async fn tagged<const N: usize>() {
    record();
}

/// A zero-sized future, one type per `N`.
struct Zst<const N: usize>;

impl<const N: usize> Future for Zst<N> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        record();
        Poll::Ready(())
    }
}

/// A future of exactly `PAD` bytes (alignment 1), one type per `(PAD, TAG)`.
struct Exact<const PAD: usize, const TAG: usize = 0>([u8; PAD]);

impl<const PAD: usize, const TAG: usize> Exact<PAD, TAG> {
    fn new() -> Self {
        Self([0; PAD])
    }
}

impl<const PAD: usize, const TAG: usize> Future for Exact<PAD, TAG> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        std::hint::black_box(&self.0);
        record();
        Poll::Ready(())
    }
}

/// A 128-byte future aligned to 128: stored inline, in a slot padded to its alignment.
#[repr(align(128))]
struct Aligned([u8; 128]);

impl Future for Aligned {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        std::hint::black_box(&self.0);
        record();
        Poll::Ready(())
    }
}

type Sched = fn(&Group, Instant) -> TaskHandle;

fn tag<const N: usize>(group: &Group, at: Instant) -> TaskHandle {
    group.schedule(at, tagged::<N>())
}

fn zst<const N: usize>(group: &Group, at: Instant) -> TaskHandle {
    group.schedule(at, Zst::<N>)
}

fn exact<const PAD: usize>(group: &Group, at: Instant) -> TaskHandle {
    group.schedule(at, Exact::<PAD>::new())
}

fn aligned(group: &Group, at: Instant) -> TaskHandle {
    group.schedule(at, Aligned([0; 128]))
}

macro_rules! row {
    ($t:literal) => {
        [
            tag::<{ $t * 10 }> as Sched,
            tag::<{ $t * 10 + 1 }> as Sched,
            tag::<{ $t * 10 + 2 }> as Sched,
            tag::<{ $t * 10 + 3 }> as Sched,
            tag::<{ $t * 10 + 4 }> as Sched,
            tag::<{ $t * 10 + 5 }> as Sched,
            tag::<{ $t * 10 + 6 }> as Sched,
            tag::<{ $t * 10 + 7 }> as Sched,
            tag::<{ $t * 10 + 8 }> as Sched,
            tag::<{ $t * 10 + 9 }> as Sched,
        ]
    };
}

/// 200 distinct `async fn` future types.
fn two_hundred_types() -> Vec<Sched> {
    [
        row!(0),
        row!(1),
        row!(2),
        row!(3),
        row!(4),
        row!(5),
        row!(6),
        row!(7),
        row!(8),
        row!(9),
        row!(10),
        row!(11),
        row!(12),
        row!(13),
        row!(14),
        row!(15),
        row!(16),
        row!(17),
        row!(18),
        row!(19),
    ]
    .concat()
}

/// Odd types: zero-sized, exactly 255/256 bytes (inline), 257 and 1000 bytes (boxed at
/// schedule), over-aligned.
fn odd_types() -> Vec<Sched> {
    vec![
        zst::<0>,
        zst::<1>,
        zst::<2>,
        exact::<255>,
        exact::<256>,
        exact::<257>,
        exact::<1000>,
        aligned,
    ]
}

#[test]
fn the_odd_types_have_the_sizes_the_attacks_need() {
    assert_eq!(std::mem::size_of::<Zst<0>>(), 0);
    assert_eq!(std::mem::size_of::<Exact<256>>(), 256);
    assert_eq!(std::mem::size_of::<Exact<257>>(), 257);
    assert_eq!(std::mem::align_of::<Aligned>(), 128);
    assert_eq!(two_hundred_types().len(), 200);
}

// ===== ordering across types =====

/// 200 types (and the odd ones) at one deadline, scheduled in type order and in reverse type
/// order, interleaved: they start in schedule order, capped at 1 and uncapped.
#[test]
fn equal_deadlines_across_two_hundred_types_start_in_schedule_order() {
    let mut types = two_hundred_types();
    types.extend(odd_types());
    for cap in [1, usize::MAX] {
        current_thread(true).block_on(async {
            let group = Group::builder().max_concurrent(cap).build();
            let at = Instant::now() + ms(50);
            let mut expected = Vec::new();
            // Forward, backward, then every third type again: lanes hold 1 to 3 entries and
            // the heads heap sees every insertion order.
            let order: Vec<usize> = (0..types.len())
                .chain((0..types.len()).rev())
                .chain((0..types.len()).step_by(3))
                .collect();
            for i in order {
                expected.push(types[i](&group, at).id());
            }
            bounded(group.wait()).await.unwrap();
            assert_eq!(take_ran(), expected, "cap {cap}");
            let stats = group.stats();
            assert_adds_up(stats);
            assert_eq!(stats.completed, expected.len() as u64);
        });
    }
}

/// A rescheduled task goes behind those already at its new deadline, whatever their types,
/// including a move to the deadline it already has; a later schedule goes behind it.
#[test]
fn a_reschedule_goes_behind_every_type_already_at_the_new_deadline() {
    current_thread(true).block_on(async {
        let group = Group::builder().max_concurrent(1).build();
        let t = Instant::now() + ms(100);
        let a = tag::<1>(&group, t);
        let b = zst::<1>(&group, t);
        let c = exact::<257>(&group, t + ms(10));
        let d = exact::<256>(&group, t - ms(10));
        assert_eq!(group.next_deadline(), Some(t - ms(10)));
        assert!(a.reschedule(t)); // same deadline: behind b
        assert!(c.reschedule(t)); // earlier: behind a
        assert!(d.reschedule(t)); // later: behind c
        assert_eq!(group.next_deadline(), Some(t));
        let e = tag::<1>(&group, t); // same type as a: behind d
        let f = aligned(&group, t - ms(1)); // earlier deadline: first
        bounded(group.wait()).await.unwrap();
        let ids = |hs: &[&TaskHandle]| hs.iter().map(|h| h.id()).collect::<Vec<_>>();
        assert_eq!(take_ran(), ids(&[&f, &b, &a, &c, &d, &e]));
    });
}

#[derive(Debug)]
struct Modelled {
    handle: TaskHandle,
    deadline: i64,
    seq: u64,
}

/// Random schedules (over 208 types, half the time over 4 of them so lanes fill), reschedules
/// (earlier, later, same), cancels by handle, clock moves and `history()` calls (which move
/// entries between each lane's due and later heaps), on a paused group; the due count is
/// checked against the model after every step; then the cap is raised to 1 and the run order
/// must be (deadline, schedule-or-reschedule order).
#[test]
fn random_operations_over_many_types_keep_deadline_then_schedule_order() {
    let mut types = two_hundred_types();
    types.extend(odd_types());
    let hot: Vec<Sched> = vec![tag::<3>, zst::<0>, exact::<256>, exact::<257>];
    for seed in 0..64u64 {
        current_thread(true).block_on(async {
            // Keep every deadline after the process's clock epoch.
            tokio::time::sleep(Duration::from_secs(10)).await;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let group = Group::builder().max_concurrent(0).build();
            let base = Instant::now();
            let at = |offset: i64| {
                if offset >= 0 {
                    base + ms(offset as u64)
                } else {
                    base - ms((-offset) as u64)
                }
            };
            let mut now = 0i64;
            let mut seq = 0u64;
            let mut live: Vec<Modelled> = Vec::new();
            let mut cancelled = 0u64;
            let mut dead: Vec<TaskHandle> = Vec::new();
            for step in 0..400 {
                match rng.random_range(0..12) {
                    0..=4 => {
                        let deadline = now + rng.random_range(-3i64..6) * 10;
                        let sched = if rng.random_bool(0.5) {
                            hot[rng.random_range(0..hot.len())]
                        } else {
                            types[rng.random_range(0..types.len())]
                        };
                        let handle = sched(&group, at(deadline));
                        seq += 1;
                        live.push(Modelled {
                            handle,
                            deadline,
                            seq,
                        });
                    }
                    5..=7 if !live.is_empty() => {
                        let i = rng.random_range(0..live.len());
                        let deadline = match rng.random_range(0..3) {
                            0 => live[i].deadline,
                            _ => now + rng.random_range(-3i64..6) * 10,
                        };
                        assert!(
                            live[i].handle.reschedule(at(deadline)),
                            "seed {seed} step {step}"
                        );
                        seq += 1;
                        live[i].deadline = deadline;
                        live[i].seq = seq;
                    }
                    8 if !live.is_empty() => {
                        let i = rng.random_range(0..live.len());
                        let gone = live.swap_remove(i);
                        assert!(gone.handle.cancel(), "seed {seed} step {step}");
                        assert!(!gone.handle.is_pending());
                        cancelled += 1;
                        dead.push(gone.handle);
                    }
                    9 => {
                        let by = rng.random_range(0..4) * 10;
                        tokio::time::sleep(ms(by as u64)).await;
                        now += by;
                    }
                    _ => {}
                }
                // Stale handles stay inert whatever reuses their slots.
                if let Some(h) = dead.last() {
                    assert!(!h.is_pending() && !h.reschedule(at(now)) && !h.cancel());
                }
                let due = live.iter().filter(|m| m.deadline <= now).count();
                assert_eq!(
                    group.history().waiting,
                    due,
                    "seed {seed} step {step}: due count"
                );
                let next = live.iter().map(|m| m.deadline).min();
                assert_eq!(
                    group.next_deadline(),
                    next.map(at),
                    "seed {seed} step {step}"
                );
                assert_adds_up(group.stats());
            }
            live.sort_by_key(|m| (m.deadline, m.seq));
            let expected: Vec<TaskId> = live.iter().map(|m| m.handle.id()).collect();
            group.set_max_concurrent(1);
            bounded(group.wait()).await.unwrap();
            assert_eq!(take_ran(), expected, "seed {seed}");
            let stats = group.stats();
            assert_adds_up(stats);
            assert_eq!(stats.completed, expected.len() as u64);
            assert_eq!(stats.cancelled, cancelled);
        });
    }
}

thread_local! {
    /// When each task started, by id.
    static RAN_AT: RefCell<Vec<(TaskId, Instant)>> = const { RefCell::new(Vec::new()) };
}

/// One future type per `N` that records when it started.
async fn timed<const N: usize>() {
    let id = task_id().expect("task_id() inside a task");
    RAN_AT.with(|ran| ran.borrow_mut().push((id, Instant::now())));
}

macro_rules! timed_types {
    ($($n:literal)*) => { [$(|g: &Group, at: Instant| g.schedule(at, timed::<$n>()),)*] };
}

/// The same model with the cap at 1 from the start, so tasks run while the test schedules,
/// reschedules (to the future) and cancels across 16 types; a reschedule or cancel that comes
/// too late (the task started) is taken at its word. Every task that was not cancelled starts
/// once, at its final deadline (within the timer's millisecond), in (deadline, order) order.
#[test]
fn tasks_running_while_others_move_across_types_start_on_time_and_in_order() {
    let types: [Sched; 16] = timed_types!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    for seed in 0..32u64 {
        current_thread(true).block_on(async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + seed);
            let group = Group::builder().max_concurrent(1).build();
            let base = Instant::now();
            let mut now = 0u64;
            let mut seq = 0u64;
            let mut tasks: Vec<(TaskHandle, u64, u64, bool)> = Vec::new();
            for _ in 0..300 {
                match rng.random_range(0..10) {
                    0..=4 => {
                        let deadline = now + rng.random_range(1..6) * 10;
                        let h =
                            types[rng.random_range(0..types.len())](&group, base + ms(deadline));
                        seq += 1;
                        tasks.push((h, deadline, seq, false));
                    }
                    5..=6 if !tasks.is_empty() => {
                        let i = rng.random_range(0..tasks.len());
                        let deadline = now + rng.random_range(1..6) * 10;
                        if tasks[i].0.reschedule(base + ms(deadline)) {
                            seq += 1;
                            tasks[i].1 = deadline;
                            tasks[i].2 = seq;
                        }
                    }
                    7 if !tasks.is_empty() => {
                        let i = rng.random_range(0..tasks.len());
                        if tasks[i].0.cancel() {
                            tasks[i].3 = true;
                        }
                    }
                    _ => {
                        let by = rng.random_range(0..3) * 10;
                        tokio::time::sleep(ms(by)).await;
                        settle().await;
                        now += by;
                    }
                }
                assert_adds_up(group.stats());
            }
            bounded(group.wait()).await.unwrap();
            let ran = RAN_AT.with(|r| std::mem::take(&mut *r.borrow_mut()));
            let mut expected: Vec<_> = tasks.iter().filter(|t| !t.3).collect();
            expected.sort_by_key(|t| (t.1, t.2));
            let ids: Vec<TaskId> = expected.iter().map(|t| t.0.id()).collect();
            assert_eq!(
                ran.iter().map(|r| r.0).collect::<Vec<_>>(),
                ids,
                "seed {seed}"
            );
            for ((_, at), t) in ran.iter().zip(&expected) {
                let deadline = base + ms(t.1);
                assert!(
                    *at >= deadline && *at < deadline + ms(1),
                    "seed {seed}: {at:?} for {deadline:?}"
                );
            }
            let stats = group.stats();
            assert_adds_up(stats);
            assert_eq!(stats.completed, ids.len() as u64);
            assert!(ids.len() > 50, "seed {seed}: only {} tasks ran", ids.len());
        });
    }
}

// ===== handles =====

/// A handle kept after its task ran, was cancelled, or its group was cancelled is inert, and
/// never reaches the task of the same type that took its slot.
#[test]
fn handles_kept_after_the_task_left_never_reach_the_slot_s_next_tenant() {
    current_thread(true).block_on(async {
        let group = Group::new();
        let ran = zst::<2>(&group, Instant::now() + ms(10));
        let cancelled = exact::<256>(&group, Instant::now() + ms(10));
        assert!(cancelled.cancel());
        bounded(group.wait()).await.unwrap();
        assert_eq!(take_ran(), [ran.id()]);
        // Same types again: they take the vacated slots.
        let next_zst = zst::<2>(&group, Instant::now() + ms(10));
        let next_exact = exact::<256>(&group, Instant::now() + ms(10));
        for stale in [&ran, &cancelled] {
            assert!(!stale.is_pending());
            assert!(!stale.cancel());
            assert!(!stale.reschedule(Instant::now()));
        }
        assert!(next_zst.is_pending() && next_exact.is_pending());
        bounded(group.wait()).await.unwrap();
        assert_eq!(take_ran(), [next_zst.id(), next_exact.id()]);
        // After the group's cancellation, too.
        let last = zst::<2>(&group, Instant::now() + ms(10));
        group.cancel();
        assert!(!last.is_pending() && !last.cancel() && !last.reschedule(Instant::now()));
        assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
        let stats = group.stats();
        assert_adds_up(stats);
        assert_eq!((stats.completed, stats.cancelled), (3, 2));
    });
}

/// Cancelled by handle, its `Drop` schedules a replacement of its own type (which takes the
/// slot it just vacated) and then uses the old handle: the old handle is inert and never
/// reaches the replacement, which runs.
struct Replacer {
    group: Group,
    me: Arc<Mutex<Option<TaskHandle>>>,
    replacement: Arc<Mutex<Option<TaskHandle>>>,
    generation: usize,
}

impl Drop for Replacer {
    fn drop(&mut self) {
        if self.generation == 0 {
            let next = Replacer {
                group: self.group.clone(),
                me: self.replacement.clone(),
                replacement: Arc::default(),
                generation: 1,
            };
            let h = self.group.delay(ms(10), replacer(next));
            *self.replacement.lock().unwrap() = Some(h);
            let me = self.me.lock().unwrap().clone().unwrap();
            assert!(!me.is_pending());
            assert!(!me.cancel(), "the old handle cancelled something");
            assert!(!me.reschedule(Instant::now() + Duration::from_secs(999)));
        }
    }
}

async fn replacer(r: Replacer) {
    let _keep = &r;
    record();
}

#[test]
fn a_drop_that_refills_the_vacated_slot_is_out_of_the_old_handle_s_reach() {
    current_thread(true).block_on(async {
        let group = Group::new();
        let me: Arc<Mutex<Option<TaskHandle>>> = Arc::default();
        let replacement: Arc<Mutex<Option<TaskHandle>>> = Arc::default();
        let h = group.delay(
            Duration::from_secs(60),
            replacer(Replacer {
                group: group.clone(),
                me: me.clone(),
                replacement: replacement.clone(),
                generation: 0,
            }),
        );
        *me.lock().unwrap() = Some(h.clone());
        assert!(h.cancel());
        let next = replacement
            .lock()
            .unwrap()
            .clone()
            .expect("the Drop scheduled a replacement");
        assert!(next.is_pending());
        assert_ne!(next.id(), h.id());
        assert!(!h.cancel() && !h.reschedule(Instant::now()));
        bounded(group.wait()).await.unwrap();
        assert_eq!(take_ran(), [next.id()]);
        let stats = group.stats();
        assert_adds_up(stats);
        assert_eq!((stats.completed, stats.cancelled), (1, 1));
        // Break the cycles: the handles live in the futures' shared cells.
        me.lock().unwrap().take();
        replacement.lock().unwrap().take();
    });
}

// ===== drains: futures whose Drop uses the group =====

/// Dropped (once) when its task's future is dropped; on drop, uses the group: schedules into
/// it, cancels and reschedules handles of other types' tasks, cancels it again, checks the
/// counters, and maybe panics.
struct Nasty {
    group: Group,
    others: Arc<Mutex<Vec<TaskHandle>>>,
    dropped: Arc<AtomicUsize>,
    panics: bool,
}

impl Drop for Nasty {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
        assert_adds_up(self.group.stats());
        let refused = self.group.delay(Duration::ZERO, tagged::<150>());
        assert!(!refused.is_pending());
        for other in self.others.lock().unwrap().iter() {
            assert!(!other.cancel());
            assert!(!other.reschedule(Instant::now()));
        }
        self.group.cancel();
        assert_adds_up(self.group.stats());
        if self.panics {
            panic!("hostile Drop during drain");
        }
    }
}

async fn nasty<const N: usize>(n: Nasty) {
    let _keep = &n;
    unreachable!("a nasty task never starts");
}

#[test]
fn drops_that_use_the_group_while_it_is_drained_lose_nothing() {
    current_thread(true).block_on(async {
        let group = Group::new();
        let others = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(AtomicUsize::new(0));
        let make = |panics| Nasty {
            group: group.clone(),
            others: others.clone(),
            dropped: dropped.clone(),
            panics,
        };
        let mut handles = Vec::new();
        for i in 0..20 {
            let at = Instant::now() + Duration::from_secs(60 + i);
            handles.push(group.schedule(at, nasty::<0>(make(i % 3 == 0))));
            handles.push(group.schedule(at, nasty::<1>(make(false))));
            handles.push(group.schedule(at, nasty::<2>(make(i % 5 == 0))));
            // A boxed (large) one: its lane is the boxed futures'.
            let big = Exact::<300>::new();
            let n = make(false);
            handles.push(group.schedule(at, async move {
                let _keep = (&big, &n);
                unreachable!();
            }));
        }
        others.lock().unwrap().extend(handles.iter().cloned());
        assert!(group.cancel());
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            80,
            "cancel() returned before every drop"
        );
        assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
        let stats = group.stats();
        assert_adds_up(stats);
        // 80 tasks, plus the 80 refused ones their Drops scheduled.
        assert_eq!(stats.scheduled, 160);
        assert_eq!(stats.cancelled, 160);
        assert_eq!((stats.pending, stats.running, stats.completed), (0, 0, 0));
        others.lock().unwrap().clear();
    });
}

// ===== races =====

#[derive(Default)]
struct Tally {
    ran: Vec<AtomicUsize>,
    dropped: Vec<AtomicUsize>,
    cancelled_by_handle: Vec<AtomicBool>,
}

impl Tally {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            ran: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            dropped: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            cancelled_by_handle: (0..n).map(|_| AtomicBool::new(false)).collect(),
        })
    }
}

struct Probe {
    tally: Arc<Tally>,
    i: usize,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.tally.dropped[self.i].fetch_add(1, Ordering::SeqCst);
    }
}

async fn probe<const N: usize>(p: Probe) {
    p.tally.ran[p.i].fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
}

type ProbeSched = fn(&Group, Duration, Probe) -> TaskHandle;

fn sched_probe<const N: usize>(group: &Group, delay: Duration, p: Probe) -> TaskHandle {
    if N % 4 == 3 {
        // A boxed one now and then: futures over 256 bytes share the boxed lane.
        let pad = [0u8; 300];
        group.delay(delay, async move {
            std::hint::black_box(&pad);
            probe::<N>(p).await;
        })
    } else {
        group.delay(delay, probe::<N>(p))
    }
}

const PROBES: [ProbeSched; 8] = [
    sched_probe::<0>,
    sched_probe::<1>,
    sched_probe::<2>,
    sched_probe::<3>,
    sched_probe::<4>,
    sched_probe::<5>,
    sched_probe::<6>,
    sched_probe::<7>,
];

/// Threads schedule tasks of 8 types (two boxed) at deadlines a few ms apart while they
/// cancel and reschedule each other's handles, a thread checks every snapshot of the
/// counters, and in half the iterations the group is cancelled midway. Every future is
/// dropped exactly once, runs at most once, never runs once its handle's cancel said `true`,
/// and the counters add up to what happened.
#[test]
fn threads_scheduling_cancelling_and_rescheduling_across_types_lose_and_repeat_nothing() {
    const THREADS: usize = 3;
    const PER: usize = 300;
    let rt = multi_thread(2);
    for iter in 0..common::iterations(2000) / 20 {
        let group = rt.block_on(async { Group::builder().max_concurrent(3).build() });
        let tally = Tally::new(THREADS * PER);
        let shared: Arc<Mutex<Vec<(usize, TaskHandle)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let checker = {
            let (group, stop) = (group.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    assert_adds_up(group.stats());
                    std::thread::yield_now();
                }
            })
        };
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (group, tally, shared) = (group.clone(), tally.clone(), shared.clone());
                std::thread::spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64((iter * 10 + t) as u64);
                    for k in 0..PER {
                        let i = t * PER + k;
                        let p = Probe {
                            tally: tally.clone(),
                            i,
                        };
                        let delay = Duration::from_micros(rng.random_range(0..3000));
                        let h = PROBES[rng.random_range(0..PROBES.len())](&group, delay, p);
                        shared.lock().unwrap().push((i, h));
                        let pick = {
                            let hs = shared.lock().unwrap();
                            hs[rng.random_range(0..hs.len())].clone()
                        };
                        match rng.random_range(0..4) {
                            0 if pick.1.cancel() => {
                                tally.cancelled_by_handle[pick.0].store(true, Ordering::SeqCst);
                            }
                            1 => {
                                let at = Instant::now()
                                    + Duration::from_micros(rng.random_range(0..2000));
                                pick.1.reschedule(at);
                            }
                            _ => {}
                        }
                        if t == 0 && k == PER / 2 && iter % 2 == 1 {
                            group.cancel();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            join_bounded(thread);
        }
        let result = rt.block_on(async { bounded(group.wait()).await });
        stop.store(true, Ordering::SeqCst);
        join_bounded(checker);
        assert_eq!(result.is_err(), iter % 2 == 1, "iter {iter}: {result:?}");
        let stats = group.stats();
        assert_adds_up(stats);
        let n = THREADS * PER;
        let mut ran = 0;
        for i in 0..n {
            let r = tally.ran[i].load(Ordering::SeqCst);
            assert_eq!(
                tally.dropped[i].load(Ordering::SeqCst),
                1,
                "iter {iter}: task {i} dropped"
            );
            assert!(r <= 1, "iter {iter}: task {i} ran {r} times");
            // Since issue 10, `cancel()` says true for a running task too (it stops at its next
            // `.await`), so a task it cancelled may have begun; one it did not cancel ran
            // unless the group was cancelled.
            if iter % 2 == 0 && !tally.cancelled_by_handle[i].load(Ordering::SeqCst) {
                assert_eq!(
                    r, 1,
                    "iter {iter}: task {i} was never cancelled but did not run"
                );
            }
            ran += r;
        }
        assert_eq!(stats.scheduled, n as u64);
        assert_eq!((stats.pending, stats.running, stats.panicked), (0, 0, 0));
        // A task aborted mid-run counts as cancelled though it began.
        assert!(stats.completed <= ran as u64);
        assert_eq!(
            stats.completed + stats.cancelled,
            n as u64,
            "iter {iter}: {stats:?}"
        );
        let untouched = n - tally
            .cancelled_by_handle
            .iter()
            .filter(|c| c.load(Ordering::SeqCst))
            .count();
        if iter % 2 == 0 {
            assert!(
                ran >= untouched,
                "iter {iter}: {ran} ran, {untouched} never cancelled"
            );
        }
    }
}

/// A runtime dropped with tasks of many types pending (some boxed) and some running: the
/// group cancels itself, every future is dropped once, and `wait()` on another runtime ends.
#[test]
fn a_runtime_dropped_with_many_types_pending_cancels_and_drops_everything() {
    for _ in 0..4 {
        let rt = multi_thread(2);
        let n = PROBES.len() * 40 + 4;
        let tally = Tally::new(n);
        let group = rt.block_on(async { Group::builder().max_concurrent(2).build() });
        for i in 0..n - 4 {
            let p = Probe {
                tally: tally.clone(),
                i,
            };
            PROBES[i % PROBES.len()](&group, Duration::from_secs(3600 + i as u64), p);
        }
        for i in n - 4..n {
            let p = Probe {
                tally: tally.clone(),
                i,
            };
            group.delay(Duration::ZERO, async move {
                let _p = p;
                std::future::pending::<()>().await;
            });
        }
        rt.block_on(async {
            for _ in 0..100 {
                if group.stats().running == 2 {
                    break;
                }
                tokio::time::sleep(ms(1)).await;
            }
        });
        drop(rt);
        let result = current_thread(false).block_on(async { bounded(group.wait()).await });
        assert!(result.unwrap_err().is_cancelled());
        for i in 0..n {
            assert_eq!(tally.dropped[i].load(Ordering::SeqCst), 1, "task {i}");
        }
        let stats = group.stats();
        assert_adds_up(stats);
        assert_eq!(
            (stats.pending, stats.running, stats.cancelled),
            (0, 0, n as u64)
        );
    }
}

// ===== Builder::reserve =====

/// Zero-sized futures with a reserve: the slots are 8-byte stamps; everything runs.
#[test]
fn a_reserve_with_zero_sized_and_boundary_sized_futures_works() {
    current_thread(true).block_on(async {
        let group = Group::builder().reserve(20_000).build();
        let at = Instant::now() + ms(5);
        let mut expected = Vec::new();
        for i in 0..30 {
            let sched = [zst::<0>, zst::<1>, exact::<256>, exact::<257>, aligned][i % 5];
            expected.push(sched(&group, at).id());
        }
        bounded(group.wait()).await.unwrap();
        assert_eq!(take_ran(), expected);
        // Again after the lanes drained (they keep their reserve).
        let handles: Vec<_> = (0..10).map(|_| zst::<0>(&group, at + ms(5))).collect();
        assert!(handles[3].cancel());
        bounded(group.wait()).await.unwrap();
        assert_eq!(take_ran().len(), 9);
        assert_adds_up(group.stats());
    });
}

/// `reserve(usize::MAX)`: "odd input never panics". Found a defect, fixed since: the first
/// schedule made the type's lane, whose `Vec::with_capacity(usize::MAX)` panicked ("capacity
/// overflow") under the pool's lock, after the pool had counted the task as scheduled and
/// pending; nothing took it off `pending`, so `wait()` hung, even after `cancel()`.
#[test]
fn reserve_usize_max_neither_panics_nor_strands_wait() {
    current_thread(true).block_on(async {
        let group = Group::builder().reserve(usize::MAX).build();
        let scheduled = catch_unwind(AssertUnwindSafe(|| {
            group.delay(ms(10), tagged::<42>());
        }));
        let stats = group.stats();
        group.cancel();
        let waited = tokio::time::timeout(Duration::from_secs(3600), group.wait()).await;
        assert!(
            waited.is_ok(),
            "wait() never ended after cancel(); stats {stats:?}; schedule panicked: {}",
            scheduled.is_err()
        );
        assert!(
            scheduled.is_ok(),
            "schedule() panicked on reserve(usize::MAX)"
        );
        assert_adds_up(group.stats());
    });
}

const CHILD: &str = "SCHEDGROUP_HOSTILE_INLINE_CHILD";

/// The child of `reserve_of_2_pow_40_does_not_abort_the_process`: does nothing unless run as
/// the child.
#[test]
fn child_reserve_of_2_pow_40() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    current_thread(true).block_on(async {
        let group = Group::builder().reserve(1 << 40).build();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            group.delay(ms(10), tagged::<43>());
        }));
        println!(
            "OUTCOME {}",
            if outcome.is_ok() { "ok" } else { "panicked" }
        );
    });
}

/// `reserve(1 << 40)`: 24 TiB of slots for a small future. Found a defect, fixed since (the
/// room is now asked for with `try_reserve`, and a refusal means no reserve): the first
/// schedule asked the allocator for them, which refused, and `handle_alloc_error` aborted the
/// process: no panic to catch, every group of the process gone.
#[test]
fn reserve_of_2_pow_40_does_not_abort_the_process() {
    let (status, stdout, stderr) =
        common::run_child("child_reserve_of_2_pow_40", CHILD, Duration::from_secs(60));
    assert!(
        status.success() && stdout.contains("OUTCOME ok"),
        "child: {status:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
}

// ===== memory =====

/// Heap bytes this thread still holds, with the group alive, after `work` ran on a fresh
/// group built with `reserve` and the runtime settled; measured from just before the build.
fn held_after(reserve: usize, work: impl AsyncFn(&Group)) -> isize {
    let rt = current_thread(true);
    rt.block_on(async {
        // Warm the runtime (timer wheel, task slabs, its run queue, which keeps the room the
        // most tasks ready at once needed) with the same work on a throwaway group.
        let warm = Group::new();
        work_twice_guard(&warm).await;
        work(&warm).await;
        drop(warm);
        settle().await;
        let before = live_bytes();
        let group = Group::builder().reserve(reserve).build();
        work(&group).await;
        settle().await;
        let held = live_bytes() - before;
        drop(group);
        held
    })
}

async fn work_twice_guard(group: &Group) {
    group.delay(ms(1), tagged::<9>());
    group
        .delay(Duration::from_secs(3600), tagged::<9>())
        .cancel();
    bounded(group.wait()).await.unwrap();
}

/// Builder::reserve: "a cancelled group gives back all of it". Found a defect, fixed since:
/// the lane's `take_all` set its own reserve to 0 but not the `later` heap's, whose `clear()`
/// shrank to the heap's own reserve: 16 bytes a task of the reserve stayed held per future
/// type until the group was dropped.
#[test]
fn a_cancelled_group_gives_back_its_reserve() {
    async fn work(group: &Group) {
        group.delay(Duration::from_secs(3600), tagged::<11>());
        group.delay(Duration::from_secs(3600), Zst::<11>);
        group.cancel();
        assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    }
    let plain = held_after(0, work);
    let reserved = held_after(100_000, work);
    assert!(
        reserved - plain <= 4096,
        "a cancelled group with reserve(100_000) holds {} bytes more than one without ({plain} B)",
        reserved - plain
    );
}

/// Builder::reserve: "A group that empties gives back the memory beyond the reserve, as one
/// without a reserve gives back all of it." Found a defect, fixed since (the docs now say at
/// most a few hundred bytes a type): a lane's slab was shrunk only when its capacity was over
/// 4 x max(len, 64), so an emptied lane kept up to 256 slots of its type: for 256-byte
/// futures, 256 x 264 B = 66 KiB per future type, for as long as the group lived (the old
/// single slab kept at most 256 x 24 B = 6 KiB per group). Eight such types: 528 KiB.
#[test]
fn an_emptied_group_without_reserve_gives_back_its_slabs() {
    let held = held_after(0, async |group: &Group| {
        let at = Instant::now() + ms(10);
        for _ in 0..256 {
            group.schedule(at, Exact::<256, 0>::new());
            group.schedule(at, Exact::<256, 1>::new());
            group.schedule(at, Exact::<256, 2>::new());
            group.schedule(at, Exact::<256, 3>::new());
            group.schedule(at, Exact::<256, 4>::new());
            group.schedule(at, Exact::<256, 5>::new());
            group.schedule(at, Exact::<256, 6>::new());
            group.schedule(at, Exact::<256, 7>::new());
        }
        bounded(group.wait()).await.unwrap();
        take_ran();
    });
    assert!(
        held <= 16 * 1024,
        "an emptied group (no reserve, 8 future types of 256 bytes) still holds {held} bytes"
    );
}

/// Control for the next test: with a reserve, schedules up to it allocate nothing.
#[test]
fn schedules_within_the_reserve_allocate_nothing() {
    current_thread(true).block_on(async {
        let group = Group::builder().reserve(1000).max_concurrent(0).build();
        // The type's lane, the monitor: made by the first schedule.
        group.delay(Duration::from_secs(1), tagged::<12>());
        settle().await;
        let before = live_bytes();
        for _ in 0..999 {
            group.delay(Duration::from_secs(1), tagged::<12>());
        }
        let grown = live_bytes() - before;
        assert_eq!(
            grown, 0,
            "999 schedules within the reserve allocated {grown} bytes"
        );
        group.cancel();
    });
}

/// Builder::reserve: "scheduling up to that many costs no allocation". Found a defect, fixed
/// since: not once `history()` had been asked (a dashboard), for the queue's frontier moves to
/// now and tasks due by then go to each lane's `due` heap, which had no reserve.
#[test]
fn schedules_within_the_reserve_allocate_nothing_after_history() {
    current_thread(true).block_on(async {
        let group = Group::builder().reserve(1000).max_concurrent(0).build();
        group.delay(Duration::ZERO, tagged::<13>());
        settle().await;
        let _ = group.history();
        let before = live_bytes();
        for _ in 0..999 {
            group.delay(Duration::ZERO, tagged::<13>());
        }
        let grown = live_bytes() - before;
        group.cancel();
        assert_eq!(
            grown, 0,
            "999 due schedules within the reserve allocated {grown} bytes"
        );
    });
}

/// The inline threshold: a 256-byte future is stored inline (no allocation per schedule
/// within the reserve), a 257-byte one is boxed at schedule.
#[test]
fn futures_of_256_bytes_are_inline_and_of_257_are_boxed() {
    current_thread(true).block_on(async {
        let group = Group::builder().reserve(200).max_concurrent(0).build();
        group.delay(Duration::from_secs(1), Exact::<256>::new());
        group.delay(Duration::from_secs(1), Exact::<257>::new());
        settle().await;
        let before = live_bytes();
        for _ in 0..100 {
            group.delay(Duration::from_secs(1), Exact::<256>::new());
        }
        let inline = live_bytes() - before;
        let before = live_bytes();
        for _ in 0..100 {
            group.delay(Duration::from_secs(1), Exact::<257>::new());
        }
        let boxed = live_bytes() - before;
        assert_eq!(inline, 0);
        assert!(boxed >= 100 * 257, "boxed: {boxed}");
        group.cancel();
        assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
        assert_eq!(group.stats().cancelled, 202);
    });
}

/// Many types scheduled and all cancelled by handle, with the group alive: what is held is
/// per-type bookkeeping only (reported, with a loose bound).
#[test]
fn two_hundred_types_cancelled_by_handle_leave_only_bookkeeping() {
    let types = two_hundred_types();
    let held = held_after(0, async |group: &Group| {
        let at = Instant::now() + Duration::from_secs(60);
        let handles: Vec<_> = types.iter().map(|s| s(group, at)).collect();
        for h in &handles {
            assert!(h.cancel());
        }
        drop(handles);
        bounded(group.wait()).await.unwrap();
    });
    eprintln!(
        "200 emptied lanes hold {held} bytes ({} per type)",
        held / 200
    );
    assert!(held <= 200 * 512, "{held} bytes held by 200 emptied lanes");
}
