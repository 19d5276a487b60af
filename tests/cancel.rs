//! Cancellation: of the group (directly or through a parent token) and of single tasks by
//! handle, and rescheduling by handle.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{DropFlag, bounded, ms, settle};
use schedgroup::Group;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[tokio::test(start_paused = true)]
async fn cancel_drops_pending_futures_before_returning() {
    let group = Group::new();
    let mut flags = Vec::new();
    for n in 0..10 {
        let (guard, flag) = DropFlag::new();
        flags.push(flag);
        group.delay(Duration::from_secs(n + 1), async move {
            let _guard = guard;
            unreachable!("cancelled tasks never start");
        });
    }
    assert!(group.cancel());
    assert!(flags.iter().all(|f| f.load(Ordering::SeqCst)));
    let stats = group.stats();
    assert_eq!((stats.pending, stats.cancelled), (0, 10));
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn cancel_aborts_running_tasks_at_their_next_await() {
    let group = Group::new();
    let (guard, dropped) = DropFlag::new();
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    group.delay(ms(10), async move {
        let _guard = guard;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        f.store(true, Ordering::SeqCst);
    });
    tokio::time::sleep(ms(20)).await;
    assert_eq!(group.stats().running, 1);
    group.cancel();
    let err = bounded(group.wait()).await.unwrap_err();
    assert!(err.is_cancelled());
    assert!(
        dropped.load(Ordering::SeqCst),
        "wait() returned after the drop"
    );
    assert!(!finished.load(Ordering::SeqCst));
    let stats = group.stats();
    assert_eq!((stats.running, stats.cancelled, stats.completed), (0, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_task_scheduled_after_cancellation_is_dropped_at_once() {
    let group = Group::new();
    group.cancel();
    let (guard, dropped) = DropFlag::new();
    let handle = group.delay(ms(1), async move {
        let _guard = guard;
    });
    assert!(dropped.load(Ordering::SeqCst));
    assert!(!handle.is_pending());
    assert!(!handle.cancel());
    let stats = group.stats();
    assert_eq!((stats.scheduled, stats.cancelled, stats.pending), (1, 1, 0));
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn parent_token_cancels_the_group_but_the_group_never_cancels_the_parent() {
    let parent = CancellationToken::new();
    let a = Group::builder().cancellation_token(parent.clone()).build();
    let b = Group::builder().cancellation_token(parent.clone()).build();
    a.cancel();
    assert!(a.is_cancelled());
    assert!(
        !parent.is_cancelled(),
        "group cancel leaves the parent alone"
    );
    assert!(!b.is_cancelled());

    let (guard, dropped) = DropFlag::new();
    b.delay(Duration::from_secs(60), async move {
        let _guard = guard;
    });
    parent.cancel();
    assert!(b.is_cancelled());
    // The monitor drops b's pending futures promptly, without the clock moving.
    let t0 = Instant::now();
    assert!(bounded(b.wait()).await.unwrap_err().is_cancelled());
    assert_eq!(Instant::now(), t0);
    assert!(dropped.load(Ordering::SeqCst));
    assert!(!b.cancel(), "already cancelled through the parent");
}

#[tokio::test(start_paused = true)]
async fn group_token_is_the_groups_own() {
    let group = Group::new();
    let token = group.cancellation_token();
    group.delay(Duration::from_secs(1), async {});
    token.cancel();
    assert!(group.is_cancelled());
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    assert_eq!(group.stats().cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn handle_cancel_drops_the_future_before_returning() {
    let group = Group::new();
    let (guard, dropped) = DropFlag::new();
    let handle = group.delay(Duration::from_secs(5), async move {
        let _guard = guard;
        unreachable!();
    });
    assert!(handle.is_pending());
    assert!(handle.cancel());
    assert!(dropped.load(Ordering::SeqCst));
    assert!(!handle.cancel(), "second cancel changes nothing");
    assert!(!handle.reschedule(Instant::now()));
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.stats().cancelled, 1);
    assert!(!group.is_cancelled(), "a task cancel is not a group cancel");
}

/// Issue 10 changed this: `cancel()` is the one way to stop a task, whatever its state, so a
/// running task's handle cancels it (it stops at its next `.await`); a finished task's does
/// nothing, and neither can move a task that has started.
#[tokio::test(start_paused = true)]
async fn handles_of_finished_tasks_return_false_and_a_running_one_cancels_it() {
    let group = Group::new();
    let long = group.delay(ms(1), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    let short = group.delay(ms(1), async {});
    tokio::time::sleep(ms(10)).await;
    assert!(!long.is_pending() && !long.is_finished());
    assert!(!long.reschedule(Instant::now() + ms(5)));
    assert!(short.is_finished());
    assert!(!short.cancel(), "finished");
    assert!(long.cancel(), "running: asked to stop");
    assert!(!long.cancel(), "asked before");
    bounded(group.wait()).await.unwrap();
    assert!(long.is_finished());
    let stats = group.stats();
    assert_eq!((stats.completed, stats.cancelled), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_stale_handle_never_touches_a_task_that_reused_its_slot() {
    let group = Group::new();
    let ran = Arc::new(AtomicU64::new(0));
    let old = group.delay(Duration::from_secs(1), async {});
    assert!(old.cancel());
    // The next task takes the freed slot.
    let r = ran.clone();
    let new = group.delay(Duration::from_secs(1), async move {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert!(!old.cancel());
    assert!(!old.reschedule(Instant::now() + Duration::from_secs(100)));
    assert!(!old.is_pending());
    assert!(new.is_pending());
    bounded(group.wait()).await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn reschedule_moves_a_pending_task_later_or_earlier() {
    let group = Group::new();
    let t0 = Instant::now();
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = starts.clone();
    let later = group.delay(ms(100), async move {
        s.lock().unwrap().push(("later", Instant::now()));
    });
    let s = starts.clone();
    let earlier = group.delay(Duration::from_secs(10), async move {
        s.lock().unwrap().push(("earlier", Instant::now()));
    });
    assert!(later.reschedule(t0 + ms(700)));
    assert!(earlier.reschedule(t0 + ms(300)));
    bounded(group.wait()).await.unwrap();
    let starts = starts.lock().unwrap();
    assert_eq!(starts[0], ("earlier", t0 + ms(300)));
    assert_eq!(starts[1], ("later", t0 + ms(700)));
}

#[tokio::test(start_paused = true)]
async fn cancelling_every_pending_task_by_handle_lets_the_monitor_exit() {
    let group = Group::new();
    let base = common::alive();
    let handles: Vec<_> = (0..1000)
        .map(|n| group.delay(Duration::from_secs(3600 + n), async {}))
        .collect();
    settle().await;
    assert_eq!(common::alive(), base + 1, "one monitor");
    for h in &handles {
        assert!(h.cancel());
    }
    settle().await;
    assert_eq!(
        common::alive(),
        base,
        "the monitor exited without waiting an hour"
    );
    assert_eq!(group.stats().cancelled, 1000);
    bounded(group.wait()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_futures_drop_may_use_the_group() {
    // A user Drop that schedules into, or cancels, the same group must not deadlock.
    struct Reentrant(Group);
    impl Drop for Reentrant {
        fn drop(&mut self) {
            let stats = self.0.stats();
            assert!(stats.pending >= 1);
            self.0.delay(ms(1), async {});
        }
    }
    let group = Group::new();
    let guard = Reentrant(group.clone());
    let handle = group.delay(Duration::from_secs(1), async move {
        let _guard = guard;
    });
    assert!(handle.cancel());
    bounded(group.wait()).await.unwrap();
    let stats = group.stats();
    assert_eq!((stats.cancelled, stats.completed), (1, 1));

    let guard = Reentrant(group.clone());
    group.delay(Duration::from_secs(1), async move {
        let _guard = guard;
    });
    group.cancel();
    // The Drop's own schedule landed after cancellation and was dropped too.
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    let stats = group.stats();
    assert_eq!(stats.scheduled, 4);
    assert_eq!(stats.cancelled, 3);
}

#[tokio::test(start_paused = true)]
async fn a_group_built_on_a_cancelled_parent_is_cancelled_from_the_start() {
    let parent = CancellationToken::new();
    parent.cancel();
    let group = Group::builder().cancellation_token(parent).build();
    assert!(group.is_cancelled());
    let (guard, dropped) = DropFlag::new();
    group.delay(ms(1), async move {
        let _guard = guard;
    });
    assert!(dropped.load(Ordering::SeqCst));
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
}

/// A handle holds no reference to its group (issue 13): it still reaches a pending task of a
/// group whose `Group` handles are all dropped (its monitor keeps it), and once the group is
/// gone it says that its task ended.
#[tokio::test(start_paused = true)]
async fn a_handle_reaches_its_task_after_the_group_is_dropped_and_ends_with_it() {
    let group = Group::builder().name("gone").build();
    let (guard, dropped) = DropFlag::new();
    let pending = group.delay(Duration::from_secs(60), async move {
        let _guard = guard;
        unreachable!("cancelled by its handle");
    });
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let runs = group.delay(ms(10), async move { r.store(true, Ordering::SeqCst) });
    drop(group);
    assert!(
        pending.is_pending(),
        "the monitor keeps the group while tasks wait"
    );
    assert!(pending.deadline().is_some());
    assert!(
        format!("{pending:?}").contains("Some(\"gone\")"),
        "{pending:?}"
    );
    assert!(pending.cancel());
    assert!(dropped.load(Ordering::SeqCst));
    tokio::time::sleep(ms(20)).await;
    settle().await;
    assert!(ran.load(Ordering::SeqCst));
    // Nothing of the group is left: every answer is "ended".
    for handle in [&pending, &runs] {
        assert!(handle.is_finished());
        assert!(!handle.is_pending());
        assert!(!handle.cancel());
        assert!(!handle.reschedule(Instant::now() + ms(10)));
        assert_eq!(handle.deadline(), None);
        assert!(format!("{handle:?}").contains("group: None"), "{handle:?}");
    }
}

/// A handle of a group that is gone never reaches a task of a later group, whatever that one
/// reuses (the table's seat, the task's id, lane and slot).
#[tokio::test(start_paused = true)]
async fn a_handle_of_a_gone_group_never_reaches_a_later_groups_task() {
    let old: Vec<_> = (0..64)
        .map(|_| {
            let group = Group::new();
            let handle = group.delay(Duration::from_secs(1), async {});
            assert!(handle.cancel());
            handle
        })
        .collect();
    settle().await;
    let groups: Vec<_> = (0..256).map(|_| Group::new()).collect();
    let new: Vec<_> = groups
        .iter()
        .map(|group| group.delay(Duration::from_secs(1), async {}))
        .collect();
    for handle in &old {
        assert!(!handle.cancel());
        assert!(!handle.reschedule(Instant::now()));
        assert!(!handle.is_pending());
        assert!(handle.is_finished());
    }
    assert!(new.iter().all(|handle| handle.is_pending()));
    for group in &groups {
        bounded(group.wait()).await.unwrap();
        assert_eq!(group.stats().completed, 1);
    }
}
