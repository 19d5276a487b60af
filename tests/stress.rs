//! Races on the multi-thread runtime, many iterations each, every wait under a timeout so a
//! hang fails instead of stalling. `SCHEDGROUP_STRESS_ITERS` scales the iteration counts.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{assert_adds_up, iterations, join_bounded};
use schedgroup::Group;
use tokio::time::{Instant, timeout};

const NO_HANG: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_never_hangs_when_tasks_fire_microseconds_apart() {
    // The Go schedgroup hang: the last task finishes while Wait is entering, and a one-shot
    // "done" signal is lost. Vary how long the waiter dawdles before it calls wait().
    for i in 0..iterations(2000) {
        let group = Group::new();
        let now = Instant::now();
        let tasks = 1 + i % 5;
        for n in 0..tasks {
            group.schedule(now + Duration::from_micros(n as u64), async {});
        }
        let other = {
            let group = group.clone();
            tokio::spawn(async move { timeout(NO_HANG, group.wait()).await })
        };
        for _ in 0..(i % 4) {
            tokio::task::yield_now().await;
        }
        timeout(NO_HANG, group.wait())
            .await
            .unwrap_or_else(|_| panic!("wait() hung in iteration {i}"))
            .unwrap();
        other.await.unwrap().expect("second waiter hung").unwrap();
        assert_eq!(group.stats().completed, tasks as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_from_threads_while_tasks_fire_loses_and_repeats_nothing() {
    let per_thread = iterations(2000) * 10;
    let group = Group::builder().max_concurrent(8).build();
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let group = group.clone();
            std::thread::spawn(move || {
                let mut flags = Vec::with_capacity(per_thread);
                let mut cancelled = Vec::with_capacity(per_thread);
                for n in 0..per_thread {
                    let ran = Arc::new(AtomicBool::new(false));
                    let r = ran.clone();
                    let handle =
                        group.delay(Duration::from_micros((n % 2000) as u64), async move {
                            assert!(!r.swap(true, Ordering::SeqCst), "a task ran twice");
                        });
                    let c = (n + t) % 7 == 0 && handle.cancel();
                    flags.push(ran);
                    cancelled.push(c);
                }
                (flags, cancelled)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(join_bounded).collect();
    timeout(NO_HANG * 3, group.wait())
        .await
        .expect("no hang")
        .unwrap();
    let mut not_run = 0;
    for (flags, cancelled) in results {
        for (ran, cancelled) in flags.iter().zip(cancelled) {
            // At least one of: ran, cancelled (a cancel that lands as the task runs says true
            // too; the task, which never awaits, then completes).
            assert!(ran.load(Ordering::SeqCst) || cancelled);
            not_run += u64::from(!ran.load(Ordering::SeqCst));
        }
    }
    let s = group.stats();
    assert_adds_up(s);
    assert_eq!(s.scheduled, 3 * per_thread as u64);
    // A body runs to its end in one poll: a task that ran completed, one that did not was
    // cancelled.
    assert_eq!(s.cancelled, not_run);
    assert_eq!(s.completed, s.scheduled - not_run);
}

/// A fresh group with one task due 0-49 µs from now that records whether it ran.
fn racing_task(i: usize) -> (Group, Arc<AtomicBool>, schedgroup::TaskHandle) {
    let group = Group::new();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let handle = group.schedule(
        Instant::now() + Duration::from_micros((i % 50) as u64),
        async move {
            r.store(true, Ordering::SeqCst);
        },
    );
    (group, ran, handle)
}

/// How long the racing thread waits before it acts: 0-975 µs, spread across the deadline.
///
/// The spread is what makes both sides of each race win, every run: with no delay the thread
/// acts before the runtime's timer (1 ms ticks) fires, with close to a millisecond it acts after
/// the task has started. Measured over 2000 iterations in release mode, alone and beside two
/// busy-looping processes on two cores: run 1010 / cancelled 990 and 1127 / 873; started 1225 /
/// moved 775 and 1345 / 655. So "both sides won" is asserted, over at least
/// [`RACE_ITERATIONS`] iterations (ten sweeps of the 40 delays).
fn racing_delay(i: usize) -> Duration {
    Duration::from_micros((i % 40) as u64 * 25)
}

/// The fewest iterations of a race test, whatever `SCHEDGROUP_STRESS_ITERS` says: enough that
/// both sides of the race win (see [`racing_delay`]).
const RACE_ITERATIONS: usize = 400;

/// Since issue 10, `cancel()` stops a task whatever its state, so a cancel that lands while
/// the task is running says `true` too. What holds: the task runs, or is counted cancelled,
/// never both and never neither; a cancel that fails means the task had run; and the counters
/// say which happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_either_run_or_cancelled_never_both_never_neither() {
    let mut both_sides_won = [0u32; 2];
    for i in 0..iterations(2000).max(RACE_ITERATIONS) {
        let (group, ran, handle) = racing_task(i);
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(racing_delay(i));
            handle.cancel()
        });
        let cancelled = join_bounded(canceller);
        timeout(NO_HANG, group.wait())
            .await
            .expect("no hang")
            .unwrap();
        let ran = ran.load(Ordering::SeqCst);
        let s = group.stats();
        assert_eq!(s.completed + s.cancelled, 1);
        // The body stores the flag and returns in one poll: it ran iff it completed.
        assert_eq!(ran, s.completed == 1, "iteration {i}: {s:?}");
        assert!(
            cancelled || ran,
            "iteration {i}: cancel() failed, yet the task never ran"
        );
        both_sides_won[usize::from(!ran)] += 1;
    }
    // Otherwise the race was never run from one side, and the test proved nothing about it.
    eprintln!(
        "ran first: {}, cancelled first: {}",
        both_sides_won[0], both_sides_won[1]
    );
    assert!(
        both_sides_won.iter().all(|&n| n > 0),
        "one side never won: ran first {}, cancelled first {}",
        both_sides_won[0],
        both_sides_won[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_add_up_in_every_snapshot_under_load() {
    let group = Group::builder().max_concurrent(4).build();
    let stop = Arc::new(AtomicBool::new(false));
    let snapshots = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (group, stop, snapshots) = (group.clone(), stop.clone(), snapshots.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                assert_adds_up(group.stats());
                snapshots.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for n in 0..iterations(2000) * 5 {
        let handle = group.delay(Duration::from_micros((n % 500) as u64), async move {
            if n % 97 == 0 {
                panic!("planned");
            }
            tokio::task::yield_now().await;
        });
        if n % 3 == 0 {
            handle.cancel();
        }
        if n % 1000 == 999 {
            group.set_max_concurrent(1 + n % 7);
        }
    }
    let result = timeout(NO_HANG * 3, group.wait()).await.expect("no hang");
    stop.store(true, Ordering::SeqCst);
    join_bounded(sampler);
    assert!(result.unwrap_err().is_panicked());
    assert_adds_up(group.stats());
    assert!(snapshots.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_cancelled_from_a_plain_thread_stops_everything() {
    for i in 0..iterations(2000) / 4 {
        let parent = tokio_util::sync::CancellationToken::new();
        let group = Group::builder()
            .cancellation_token(parent.clone())
            .max_concurrent(1 + i % 3)
            .build();
        let live = Arc::new(AtomicU64::new(0));
        /// Counts a future as gone however it ends: finished, or dropped unpolled or mid-run.
        struct Gone(Arc<AtomicU64>);
        impl Drop for Gone {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        for n in 0..8u64 {
            live.fetch_add(1, Ordering::SeqCst);
            let gone = Gone(live.clone());
            group.delay(Duration::from_micros(n * 20), async move {
                let _gone = gone;
                if n % 2 == 0 {
                    std::future::pending::<()>().await;
                }
            });
        }
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros((i % 30) as u64 * 10));
            parent.cancel();
        });
        let result = timeout(NO_HANG, group.wait()).await.expect("no hang");
        join_bounded(canceller);
        // Tasks that never end can only have left through cancellation.
        assert!(result.unwrap_err().is_cancelled(), "iteration {i}");
        assert_eq!(
            live.load(Ordering::SeqCst),
            0,
            "every future is gone when wait() returns"
        );
        let s = group.stats();
        assert_adds_up(s);
        assert_eq!((s.pending, s.running), (0, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reschedule_racing_with_the_deadline_either_moves_the_task_or_finds_it_started() {
    let mut outcomes = [0u32; 2];
    for i in 0..iterations(2000).max(RACE_ITERATIONS) {
        let (group, ran, handle) = racing_task(i);
        let mover = std::thread::spawn(move || {
            std::thread::sleep(racing_delay(i));
            let moved = handle.reschedule(Instant::now() + Duration::from_secs(3600));
            (moved, handle)
        });
        let (moved, handle) = join_bounded(mover);
        if moved {
            // It waits an hour now: it must not have run, and it is still pending.
            tokio::time::sleep(Duration::from_millis(2)).await;
            assert!(
                !ran.load(Ordering::SeqCst),
                "iteration {i}: ran after a successful reschedule"
            );
            assert!(handle.cancel(), "iteration {i}: still pending");
        }
        timeout(NO_HANG, group.wait())
            .await
            .expect("no hang")
            .unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), !moved, "iteration {i}");
        outcomes[usize::from(moved)] += 1;
    }
    // Otherwise the race was never run from one side, and the test proved nothing about it.
    eprintln!("found started: {}, moved: {}", outcomes[0], outcomes[1]);
    assert!(
        outcomes.iter().all(|&n| n > 0),
        "one side never won: found started {}, moved {}",
        outcomes[0],
        outcomes[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_changes_racing_with_completions_never_exceed_the_cap_or_stall() {
    const MAX_CAP: usize = 4;
    let group = Group::builder().max_concurrent(2).build();
    let c = Arc::new(common::Concurrency::default());
    let n = iterations(2000) * 5;
    for i in 0..n {
        let c = c.clone();
        group.delay(Duration::from_micros((i % 1000) as u64), async move {
            let _in = c.enter();
            tokio::task::yield_now().await;
        });
    }
    let changer = {
        let group = group.clone();
        std::thread::spawn(move || {
            // Includes 0: a paused group must wake when the cap comes back.
            for k in 0..20_000usize {
                group.set_max_concurrent([0, 1, MAX_CAP, 2, 3][k % 5]);
            }
            group.set_max_concurrent(MAX_CAP);
        })
    };
    join_bounded(changer);
    timeout(NO_HANG * 3, group.wait())
        .await
        .expect("a cap change was lost: the group stalled")
        .unwrap();
    assert!(c.max() <= MAX_CAP, "{} ran at once", c.max());
    assert_eq!(group.stats().completed, n as u64);
}
