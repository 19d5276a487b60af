//! Regression tests for eight defects of the `Limiter`, one test each, named after the defect.
//!
//! Each pins a guarantee a user relies on: free slots never sit idle while a group has due work
//! it may start; grants follow each group's *current* due head; no slot leaks, and the line
//! holds only groups that can use a slot; a task never starts before its deadline on its own
//! group's clock, whoever frees the slot; `wait()` returns only once the group's slot is back;
//! and dropping a runtime with thousands of groups in line neither recurses nor aborts.
//!
//! Every wait is bounded: a hang fails in seconds (virtual ones on the paused clock).

mod common;

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{iterations, join_bounded, ms, settle};
use schedgroup::{Group, Limiter, Throttle};
use tokio::time::{Instant, sleep_until, timeout};

/// Bounds every `wait()`: virtual seconds on the paused clock, real ones elsewhere.
const PATIENCE: Duration = Duration::from_secs(10);

fn group(k: usize, limiter: &Limiter) -> Group {
    Group::builder().max_concurrent(k).limiter(limiter).build()
}

/// Records each task's name and start time, in start order.
#[derive(Clone, Default)]
struct Starts(Arc<Mutex<Vec<(&'static str, Instant)>>>);

impl Starts {
    fn task(&self, name: &'static str, run: Duration) -> impl Future<Output = ()> + Send + 'static {
        let starts = self.clone();
        async move {
            starts.0.lock().unwrap().push((name, Instant::now()));
            tokio::time::sleep(run).await;
        }
    }

    fn names(&self) -> Vec<&'static str> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|&(name, _)| name)
            .collect()
    }

    fn of(&self, name: &str) -> Option<Instant> {
        let starts = self.0.lock().unwrap();
        starts.iter().find(|(n, _)| *n == name).map(|&(_, at)| at)
    }
}

async fn wait_all(groups: &[&Group]) {
    for g in groups {
        timeout(PATIENCE, g.wait())
            .await
            .expect("wait() hung")
            .unwrap();
    }
}

/// Tasks the groups could run now if the limiter allowed: each runs at most its own `k` of
/// its due tasks (the callers schedule only due tasks).
fn demand(groups: &[&Group]) -> usize {
    groups
        .iter()
        .map(|g| {
            let s = g.stats();
            usize::try_from(s.pending + s.running)
                .unwrap()
                .min(g.max_concurrent())
        })
        .sum()
}

/// Work conservation: the limiter runs as many tasks as its limit and the due work allow.
fn assert_conserving(limiter: &Limiter, groups: &[&Group], t0: Instant) {
    let demand = demand(groups);
    assert_eq!(
        limiter.running(),
        demand.min(limiter.limit()),
        "at {:?}: {} of {} slots taken while the groups could run {demand}",
        t0.elapsed(),
        limiter.running(),
        limiter.limit(),
    );
}

fn all_idle(groups: &[&Group]) -> bool {
    groups.iter().all(|g| {
        let s = g.stats();
        s.pending + s.running == 0
    })
}

/// Schedules `count` due tasks of `run` on each group, interleaved (so ties alternate), and
/// returns the latest end time seen by any of them.
fn schedule_due(groups: &[&Group], count: usize, run: Duration) -> Arc<Mutex<Option<Instant>>> {
    let last_end = Arc::new(Mutex::new(None));
    for _ in 0..count {
        for g in groups {
            let last_end = last_end.clone();
            g.delay(Duration::ZERO, async move {
                tokio::time::sleep(run).await;
                last_end.lock().unwrap().replace(Instant::now());
            });
        }
    }
    last_end
}

// ===== 1. free slots sit idle while work is due =====

#[tokio::test(start_paused = true)]
async fn free_slots_never_sit_idle_while_a_group_has_due_work() {
    two_groups_keep_a_pool_of_four_full().await;
    a_raised_limit_is_filled_at_once_and_stays_full().await;
    a_task_due_later_starts_at_its_deadline_while_its_group_runs_a_long_one().await;
}

/// A pool of 4 shared by two groups, 20 tasks of 100 ms each, all due. With k = 3 each, 4 run
/// in every round while the groups can run 4. With k = 4 each, they always can, whatever the
/// split: 40 tasks, 4 at a time, done at exactly 1 s.
async fn two_groups_keep_a_pool_of_four_full() {
    for k in [3, 4] {
        let limiter = Limiter::new(4);
        let (a, b) = (group(k, &limiter), group(k, &limiter));
        let groups = [&a, &b];
        let t0 = Instant::now();
        let last_end = schedule_due(&groups, 20, ms(100));
        // Between rounds (tasks end on whole 100 ms).
        let mut at = t0 + ms(50);
        while !all_idle(&groups) && at < t0 + PATIENCE {
            sleep_until(at).await;
            assert_conserving(&limiter, &groups, t0);
            at += ms(100);
        }
        wait_all(&groups).await;
        if k == 4 {
            let drained = last_end.lock().unwrap().unwrap() - t0;
            assert_eq!(drained, ms(1000), "40 tasks of 100 ms, 4 at a time");
        }
        assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
    }
}

/// Three groups of k = 3 (9 could run): lowering the limit to 2 and raising it to 8 must leave
/// 8 running, at once and in every later round while 8 can run.
async fn a_raised_limit_is_filled_at_once_and_stays_full() {
    let limiter = Limiter::new(4);
    let (a, b, c) = (group(3, &limiter), group(3, &limiter), group(3, &limiter));
    let groups = [&a, &b, &c];
    let t0 = Instant::now();
    schedule_due(&groups, 20, ms(100));
    // Tasks end on whole 100 ms, and (after the raise at 350) on 50s: check on 25s and 75s.
    sleep_until(t0 + ms(25)).await;
    assert_conserving(&limiter, &groups, t0);
    sleep_until(t0 + ms(150)).await;
    limiter.set_limit(2);
    for at in [225, 325] {
        sleep_until(t0 + ms(at)).await;
        assert_conserving(&limiter, &groups, t0);
    }
    sleep_until(t0 + ms(350)).await;
    limiter.set_limit(8);
    // Settled, and nothing has ended since the raise.
    sleep_until(t0 + ms(351)).await;
    assert_conserving(&limiter, &groups, t0);
    let mut at = t0 + ms(375);
    while !all_idle(&groups) && at < t0 + PATIENCE {
        sleep_until(at).await;
        assert_conserving(&limiter, &groups, t0);
        at += ms(50);
    }
    wait_all(&groups).await;
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

/// A group waits in line for a second slot, then its first runner keeps its slot for that
/// task (an hour long). The other slot frees at 20 ms; a task due at 100 ms must start then,
/// not when the hour-long task ends.
async fn a_task_due_later_starts_at_its_deadline_while_its_group_runs_a_long_one() {
    let limiter = Limiter::new(2);
    let holder = limiter.try_acquire().unwrap();
    let g = group(2, &limiter);
    let starts = Starts::default();
    let t0 = Instant::now();
    g.delay(Duration::ZERO, starts.task("short", ms(10)));
    g.delay(
        Duration::ZERO,
        starts.task("hour", Duration::from_secs(3600)),
    );
    g.delay(ms(100), starts.task("due at 100", ms(1)));
    sleep_until(t0 + ms(20)).await;
    drop(holder);
    sleep_until(t0 + ms(200)).await;
    assert_eq!(
        starts.of("due at 100").map(|at| at - t0),
        Some(ms(100)),
        "a slot was free from 20 ms and the group ran 1 of its 2"
    );
    g.cancel();
    let _ = timeout(PATIENCE, g.wait()).await.expect("wait() hung");
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

// ===== 2. raising a limit leaks the slots of declined grants =====

#[tokio::test(start_paused = true)]
async fn raising_a_limit_after_a_declined_grant_leaks_no_slot() {
    type Raise = fn(&Limiter);
    let raises: [(&str, Raise); 2] = [
        ("set_limit", |l| assert!(l.set_limit(2))),
        ("throttle_up", |l| {
            l.set_throttle(Throttle {
                ceiling: Some(2),
                ..Throttle::default()
            });
            assert!(l.throttle_up().is_applied());
        }),
    ];
    for (how, raise) in raises {
        let limiter = Limiter::new(1);
        let holder = limiter.try_acquire().unwrap();
        let g = group(1, &limiter);
        let queued = g.delay(Duration::ZERO, async {});
        settle().await;
        assert!(queued.cancel());
        // The new slot may be offered to `g`, which has nothing due any more.
        raise(&limiter);
        settle().await;
        drop(holder);
        settle().await;
        assert_eq!(
            (limiter.running(), limiter.waiting()),
            (0, 0),
            "{how}: a declined grant kept its slot"
        );
        let both = (limiter.try_acquire(), limiter.try_acquire());
        assert!(
            both.0.is_some() && both.1.is_some(),
            "{how}: both slots are free"
        );
    }
}

// ===== 3. cancelling the due head strands the next task =====

#[tokio::test(start_paused = true)]
async fn cancelling_the_due_head_while_its_group_waits_in_line_strands_nothing() {
    let limiter = Limiter::new(1);
    let holder = limiter.try_acquire().unwrap();
    let g = group(1, &limiter);
    let starts = Starts::default();
    let t0 = Instant::now();
    let head = g.delay(Duration::ZERO, starts.task("head", ms(1)));
    g.delay(ms(50), starts.task("next", ms(1)));
    settle().await;
    assert_eq!(limiter.waiting(), 1, "the group waits for the held slot");
    assert!(head.cancel());
    // The slot frees before the next task is due.
    sleep_until(t0 + ms(10)).await;
    drop(holder);
    timeout(PATIENCE, g.wait())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "wait() hung with the limiter at {} running, {} waiting",
                limiter.running(),
                limiter.waiting()
            )
        })
        .unwrap();
    assert_eq!(starts.of("next").map(|at| at - t0), Some(ms(50)));
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

// ===== 4. a stale line entry breaks EDF =====

#[tokio::test(start_paused = true)]
async fn a_cancelled_heads_deadline_never_jumps_the_line() {
    let limiter = Limiter::new(1);
    let holder = limiter.try_acquire().unwrap();
    let (a, b) = (group(1, &limiter), group(1, &limiter));
    let starts = Starts::default();
    let t0 = Instant::now();
    let a_head = a.delay(Duration::ZERO, starts.task("a due at 0", ms(1)));
    a.delay(ms(50), starts.task("a due at 50", ms(1)));
    b.delay(ms(10), starts.task("b due at 10", ms(1)));
    settle().await;
    // `a` waits in line for its head, which is then cancelled: its due head is now at 50.
    assert!(a_head.cancel());
    sleep_until(t0 + ms(60)).await;
    drop(holder);
    wait_all(&[&a, &b]).await;
    assert_eq!(starts.names(), ["b due at 10", "a due at 50"]);
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

// ===== 5. a task started early on another thread's clock =====

/// The group runs on this test's paused clock; the slot is freed from a thread whose tokio
/// clock is an hour ahead (another paused runtime, advanced).
#[tokio::test(start_paused = true)]
async fn a_slot_freed_on_a_clock_that_is_ahead_never_starts_a_task_early() {
    let limiter = Limiter::new(1);
    let holder = limiter.try_acquire().unwrap();
    let g = group(1, &limiter);
    let starts = Starts::default();
    let task = g.delay(Duration::ZERO, starts.task("task", ms(1)));
    settle().await;
    assert_eq!(limiter.waiting(), 1, "the group waits for the held slot");
    // Moved later while its group waits in line.
    let deadline = Instant::now() + ms(100);
    assert!(task.reschedule(deadline));
    settle().await;
    std::thread::spawn(move || {
        let ahead = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        ahead.block_on(async {
            tokio::time::advance(Duration::from_secs(3600)).await;
            drop(holder);
        });
    })
    .join()
    .unwrap();
    settle().await;
    timeout(PATIENCE, g.wait())
        .await
        .expect("wait() hung")
        .unwrap();
    let started = starts.of("task").unwrap();
    assert!(
        started >= deadline,
        "started {:?} before its deadline",
        deadline - started
    );
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

// ===== 6. dropping a runtime with many groups in line recurses and aborts =====

/// Set in the child process that runs the scenario.
const CHILD: &str = "SCHEDGROUP_LIMITER_DEFECTS_CHILD";

/// A stack overflow aborts the whole process, so the scenario runs in a child: this same
/// test, re-executed alone with `CHILD` set.
#[test]
fn dropping_a_runtime_with_thousands_of_groups_in_line_neither_recurses_nor_aborts() {
    const NAME: &str =
        "dropping_a_runtime_with_thousands_of_groups_in_line_neither_recurses_nor_aborts";
    if std::env::var_os(CHILD).is_some() {
        drop_a_runtime_with_groups_in_line(5000);
        return;
    }
    let (status, stdout, stderr) = common::run_child(NAME, CHILD, Duration::from_secs(30));
    assert!(
        status.success() && stdout.contains(&format!("test {NAME} ... ok")),
        "the child {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

/// One group runs the limiter's only slot; `count - 1` more wait in line; then the runtime is
/// dropped while the groups are still alive.
fn drop_a_runtime_with_groups_in_line(count: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let limiter = Limiter::new(1);
    let groups = runtime.block_on(async {
        let first = group(1, &limiter);
        first.delay(Duration::ZERO, std::future::pending::<()>());
        settle().await;
        assert_eq!(limiter.running(), 1);
        let mut groups = vec![first];
        for _ in 1..count {
            let g = group(1, &limiter);
            g.delay(Duration::ZERO, std::future::pending::<()>());
            groups.push(g);
        }
        for _ in 0..1000 {
            if limiter.waiting() == count - 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(limiter.waiting(), count - 1);
        groups
    });
    drop(runtime);
    // The shutdown cancelled every group: nothing holds a slot or waits for one.
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
    drop(groups);
}

// ===== 7. cancelled or dropped groups stay in the line =====

#[tokio::test(start_paused = true)]
async fn cancelled_or_dropped_groups_leave_the_line() {
    const GROUPS: usize = 999;
    let limiter = Limiter::new(1);
    let holder = limiter.try_acquire().unwrap();
    let groups: Vec<_> = (0..GROUPS)
        .map(|_| {
            let g = group(1, &limiter);
            let task = g.delay(Duration::ZERO, async {});
            (g, task)
        })
        .collect();
    // Lets every monitor run (the tasks are due already).
    tokio::time::sleep(ms(1)).await;
    assert_eq!(
        limiter.waiting(),
        GROUPS,
        "every group waits for the held slot"
    );
    let mut kept = Vec::new();
    for (i, (g, task)) in groups.into_iter().enumerate() {
        match i % 3 {
            // Cancelled, still alive.
            0 => {
                g.cancel();
                kept.push(g);
            }
            // Cancelled, then dropped.
            1 => {
                g.cancel();
            }
            // Its only task cancelled, then dropped: nothing left of it.
            _ => {
                assert!(task.cancel());
            }
        }
    }
    tokio::time::sleep(ms(1)).await;
    assert_eq!(
        (limiter.waiting(), limiter.history().waiting),
        (0, 0),
        "no group is left that could use a slot"
    );
    drop(holder);
    tokio::time::sleep(ms(1)).await;
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
    for g in &kept {
        let waited = timeout(PATIENCE, g.wait()).await.expect("wait() hung");
        assert!(waited.unwrap_err().is_cancelled());
    }
}

// ===== 8. wait() resolves before the group's limiter slot is released =====

/// A plain thread calls `wait()` over and over (polling each call once, so the calls look at
/// the group at every moment of its last runner's hand-back) and takes a slot the moment one
/// returns, while a dashboard thread reads the limiter. Fresh runtimes re-deal the threads.
#[test]
fn after_wait_returns_the_group_holds_no_limiter_slot() {
    const RUNTIMES: usize = 10;
    let rounds = (iterations(2000) * 5).div_ceil(RUNTIMES);
    let mut held = 0;
    for _ in 0..RUNTIMES {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let limiter = Limiter::new(1);
        let g = Group::builder()
            .max_concurrent(1)
            .limiter(&limiter)
            .runtime(runtime.handle().clone())
            .build();
        let stop = Arc::new(AtomicBool::new(false));
        let dashboard = std::thread::spawn({
            let (limiter, stop) = (limiter.clone(), stop.clone());
            move || {
                // Relaxed: only tells the loop to end.
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(limiter.history());
                }
            }
        });
        for _ in 0..rounds {
            g.delay(Duration::ZERO, async {});
            held += usize::from(!wait_then_try_acquire(&g, &limiter));
        }
        stop.store(true, Ordering::Relaxed);
        join_bounded(dashboard);
        assert_eq!(g.stats().completed, rounds as u64);
    }
    assert_eq!(
        held,
        0,
        "in {held} of {} rounds a slot was still taken right after wait() returned",
        rounds * RUNTIMES
    );
}

/// Polls fresh `wait()` calls until one returns, then at once tries to take the limiter's
/// only slot: whether that succeeded.
fn wait_then_try_acquire(g: &Group, limiter: &Limiter) -> bool {
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(result) = pin!(g.wait()).poll(&mut cx) {
            let took = limiter.try_acquire().is_some();
            result.unwrap();
            return took;
        }
        assert!(std::time::Instant::now() < deadline, "wait() hung");
    }
}
