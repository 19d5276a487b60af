//! History memory per group (issue 9, item 4): what a group's history holds after use does not
//! depend on how far apart its tasks ran, and its windows stay right across long gaps.
//!
//! The allocator counts per thread, and each measurement runs on a current-thread runtime on
//! the test's own thread, so other tests and the harness cannot move the count.

mod common;

use std::time::Duration;

use common::counting::{Counting, live_bytes};
use schedgroup::Group;
use tokio::time::timeout;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds")
}

/// Heap bytes a group still holds after one task now and one `gap` later have run (`None`:
/// no task, an idle group).
async fn held_by_a_group(gap: Option<Duration>) -> isize {
    let before = live_bytes();
    // A name of its own: with the `metrics` feature, groups of one name share a series, which
    // other tests' groups must not keep alive or let go of on another thread.
    let group = Group::builder().name("history-memory").build();
    if let Some(gap) = gap {
        group.delay(Duration::ZERO, async {});
        group.delay(gap, async {});
        timeout(gap + Duration::from_secs(60), group.wait())
            .await
            .expect("the tasks ran by their deadlines")
            .expect("no task panicked");
    }
    common::settle().await;
    let after = live_bytes();
    drop(group);
    common::settle().await;
    after - before
}

#[test]
fn history_memory_per_group_does_not_grow_with_the_gap_between_tasks() {
    paused_runtime().block_on(async {
        // Warm up: the process clock, the runtime's timer and task storage.
        held_by_a_group(Some(Duration::from_secs(1))).await;
        let idle = held_by_a_group(None).await;
        let close = held_by_a_group(Some(Duration::from_secs(1))).await;
        let five_minutes = held_by_a_group(Some(Duration::from_secs(300))).await;
        let an_hour = held_by_a_group(Some(Duration::from_secs(3_600))).await;
        // Issue 12: a step in which tasks started or ended keeps their durations (528 bytes)
        // while it is in a window, so tasks far apart hold fewer steps' worth, never more.
        assert!(
            five_minutes <= close && an_hour <= five_minutes,
            "bytes held after two tasks 1 s, 5 min and 1 h apart: {close}, {five_minutes}, \
             {an_hour} (idle: {idle})"
        );
        // A used group keeps its history's rings, the durations of four steps (two in the
        // 10 s window, one in each of the others: 2,112 bytes), its future type's lane and
        // (issue 10) a small table of running tasks' ids (about 100 bytes).
        assert!(
            close - idle <= 5_300,
            "a used group holds {close} bytes, an idle one {idle}"
        );
    });
}

#[test]
fn history_windows_count_right_across_long_gaps() {
    paused_runtime().block_on(async {
        let group = Group::new();
        let run = |secs| {
            group.delay(Duration::ZERO, async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
            });
        };
        let wait = || async {
            timeout(Duration::from_secs(3_600), group.wait())
                .await
                .expect("the tasks ran by their deadlines")
                .expect("no task panicked");
        };
        run(2);
        run(2);
        wait().await;
        // 100 s later: gone from the 10 s and the 1 min windows (at most 66 s), not from 5 min.
        tokio::time::advance(Duration::from_secs(98)).await;
        let [w10, w60, w300] = group.history().windows;
        assert_eq!((w10.started, w10.peak_running), (0, 0));
        assert_eq!((w60.started, w60.peak_running), (0, 0));
        assert_eq!((w300.started, w300.completed, w300.peak_running), (2, 2, 2));
        let mean = w300.mean_running;
        assert!(4.0 / 330.0 < mean && mean <= 4.0 / 300.0, "{mean}");
        // An hour of silence, then one more task: only it counts, everywhere.
        tokio::time::advance(Duration::from_secs(3_600)).await;
        run(1);
        wait().await;
        for w in group.history().windows {
            assert_eq!(
                (w.started, w.completed, w.peak_running),
                (1, 1, 1),
                "{:?}",
                w.span
            );
        }
        // And after five more minutes and a half, nothing does.
        tokio::time::advance(Duration::from_secs(331)).await;
        for w in group.history().windows {
            assert_eq!((w.started, w.peak_running), (0, 0), "{:?}", w.span);
            assert_eq!(w.mean_running, 0.0);
        }
    });
}

/// Issue 12: a window reports how late tasks started and how long they ran (p50, p99, max),
/// and how many waited for a slot on average, on the paused clock to the nanosecond.
#[test]
fn windows_report_start_lateness_run_time_and_waiting() {
    paused_runtime().block_on(async {
        // Cap 1, four tasks due at once, 5 s each: they start 0, 5, 10 and 15 s late.
        let group = Group::builder().max_concurrent(1).build();
        for _ in 0..4 {
            group.delay(Duration::ZERO, async {
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
        }
        tokio::time::sleep(Duration::from_secs(12)).await;
        let now = group.history();
        assert_eq!((now.running, now.waiting), (1, 1), "one runs, one waits");
        timeout(Duration::from_secs(60), group.wait())
            .await
            .expect("four 5 s tasks end by 20 s")
            .expect("no task panicked");
        let five_minutes = &group.history().windows[2];
        let late = five_minutes.start_lateness.expect("four tasks started");
        assert_eq!(late.count, 4);
        assert_eq!(late.max, Duration::from_secs(15));
        assert_eq!(late.p99, Duration::from_secs(15), "rank 4 of 4: the max");
        // Rank 2 of 4 is 5 s; the estimate is in its bin, `[4.29 s, 6.44 s)`.
        assert!(
            (4_294_967_296..6_442_450_944).contains(&late.p50.as_nanos()),
            "{late:?}"
        );
        let run = five_minutes.run_time.expect("four tasks ended");
        assert_eq!(
            (run.count, run.p50, run.p99, run.max),
            (
                4,
                Duration::from_secs(5),
                Duration::from_secs(5),
                Duration::from_secs(5)
            ),
            "equal run times are reported exactly"
        );
        // 30 task-seconds waited (0 + 5 + 10 + 15) against 20 run, over the same stretch.
        let ratio = five_minutes.mean_waiting / five_minutes.mean_running;
        assert!((ratio - 1.5).abs() < 1e-9, "{five_minutes:?}");
    });
}

/// Issue 12: a limiter's window reports its groups' tasks' lateness and run time, and not a
/// permit's.
#[test]
fn a_limiters_windows_report_its_groups_tasks_durations_and_not_permits() {
    paused_runtime().block_on(async {
        let limiter = schedgroup::Limiter::new(1);
        let permit = limiter.try_acquire().expect("a free slot");
        let group = Group::builder().limiter(&limiter).build();
        group.delay(Duration::from_secs(1), async {
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        tokio::time::sleep(Duration::from_secs(4)).await;
        drop(permit); // the task, due at 1 s, starts at 4 s
        timeout(Duration::from_secs(60), group.wait())
            .await
            .expect("the task ends at 6 s")
            .expect("no task panicked");
        let w = &limiter.history().windows[0];
        assert_eq!((w.started, w.freed), (2, 2), "the permit and the task");
        let late = w.start_lateness.expect("the task started");
        assert_eq!((late.count, late.max), (1, Duration::from_secs(3)));
        let run = w.run_time.expect("the task ended");
        assert_eq!((run.count, run.max), (1, Duration::from_secs(2)));
    });
}
