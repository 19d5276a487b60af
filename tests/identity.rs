//! Task identity (issue 10): ids are unique within a group, a running task learns its own id,
//! and the group tells its earliest pending deadline. On the paused clock; every wait bounded.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{bounded, ms};
use schedgroup::{Group, TaskId, task_id};
use tokio::time::Instant;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn ids_are_unique_within_a_group_even_after_slots_are_reused() {
    let group = Group::new();
    let mut seen = HashSet::new();
    for round in 0..50 {
        for n in 0..20 {
            let handle = group.delay(ms(n), async {});
            assert!(
                seen.insert(handle.id()),
                "round {round}: id {} again",
                handle.id()
            );
            if n % 3 == 0 {
                handle.cancel();
            }
        }
        bounded(group.wait()).await.unwrap();
    }
    // A task refused by a cancelled group has an id of its own too.
    group.cancel();
    let refused = group.delay(ms(1), async {});
    assert!(seen.insert(refused.id()));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_running_task_learns_its_own_id_and_nothing_else_does() {
    let group = Group::builder().max_concurrent(2).build();
    type Seen = Vec<(TaskId, Option<TaskId>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let mut handles = Vec::new();
    for n in 0..6 {
        let seen = seen.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<TaskId>();
        let handle = group.delay(ms(n), async move {
            let mine = rx.await.unwrap();
            // Across an await, on whichever poll: still its own.
            tokio::time::sleep(ms(5)).await;
            seen.lock().unwrap().push((mine, task_id()));
        });
        tx.send(handle.id()).unwrap();
        handles.push(handle);
    }
    assert_eq!(task_id(), None);
    bounded(group.wait()).await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), 6);
    for (mine, seen) in seen {
        assert_eq!(Some(mine), seen);
    }
    // A tokio task spawned by a group's task is not the group's task.
    let (tx, rx) = tokio::sync::oneshot::channel();
    group.delay(ms(1), async move {
        let inner = tokio::spawn(async { task_id() });
        tx.send(inner.await.unwrap()).ok();
    });
    bounded(group.wait()).await.unwrap();
    assert_eq!(rx.await.unwrap(), None);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn next_deadline_follows_schedules_reschedules_cancels_and_starts() {
    let group = Group::builder().max_concurrent(0).build();
    assert_eq!(group.next_deadline(), None);
    let t0 = Instant::now();
    let a = group.schedule(t0 + ms(30), async {});
    let b = group.schedule(t0 + ms(20), async {});
    assert_eq!(group.next_deadline(), Some(t0 + ms(20)));
    assert!(b.reschedule(t0 + ms(40)));
    assert_eq!(group.next_deadline(), Some(t0 + ms(30)));
    assert!(a.cancel());
    assert_eq!(group.next_deadline(), Some(t0 + ms(40)));
    // Due but held back by the cap: still pending, still the next deadline.
    tokio::time::advance(ms(50)).await;
    assert_eq!(group.next_deadline(), Some(t0 + ms(40)));
    group.set_max_concurrent(1);
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.next_deadline(), None, "started tasks are not pending");
    // A delay of Duration::MAX is pending for ever: its deadline is beyond any timer.
    let never = group.delay(Duration::MAX, async {});
    let far = group.next_deadline().expect("pending");
    assert!(far > Instant::now() + Duration::from_secs(86_400 * 365 * 30));
    never.cancel();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn tasks_may_have_any_output_which_is_dropped_when_they_end() {
    let dropped = Arc::new(Mutex::new(0));
    struct Output(Arc<Mutex<i32>>);
    impl Drop for Output {
        fn drop(&mut self) {
            *self.0.lock().unwrap() += 1;
        }
    }
    let group = Group::new();
    let d = dropped.clone();
    group.delay(ms(1), async move { Output(d) });
    group.delay(ms(2), async {
        Err::<(), _>("an error is an output like any other")
    });
    group.delay(ms(3), async { 42u64 });
    bounded(group.wait()).await.unwrap();
    assert_eq!(*dropped.lock().unwrap(), 1);
    assert_eq!(group.stats().completed, 3);
}
