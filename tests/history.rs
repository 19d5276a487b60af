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
    let group = Group::new();
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
        assert_eq!(
            (five_minutes, an_hour),
            (close, close),
            "bytes held after two tasks 1 s, 5 min and 1 h apart (idle: {idle})"
        );
        // A used group keeps its history's rings, its future type's lane and (issue 10) a
        // small table of running tasks' ids (about 100 bytes).
        assert!(
            close - idle <= 2_304,
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
