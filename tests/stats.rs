//! The counters add up in every snapshot: scheduled = pending + running + completed +
//! cancelled + panicked.

mod common;

use std::time::Duration;

use common::{assert_adds_up, bounded, ms, settle};
use schedgroup::Group;

#[tokio::test(start_paused = true)]
async fn counters_add_up_through_every_kind_of_ending() {
    let group = Group::builder().max_concurrent(2).build();
    let mut handles = Vec::new();
    for n in 0..40u64 {
        let handle = group.delay(ms(n * 3), async move {
            if n % 7 == 0 {
                panic!("task {n}");
            }
            tokio::time::sleep(ms(n % 11)).await;
        });
        handles.push(handle);
        assert_adds_up(group.stats());
    }
    for (n, handle) in handles.iter().enumerate() {
        if n % 5 == 1 {
            handle.cancel();
        }
        assert_adds_up(group.stats());
    }
    for _ in 0..30 {
        tokio::time::advance(ms(2)).await;
        settle().await;
        assert_adds_up(group.stats());
    }
    group.cancel();
    assert_adds_up(group.stats());
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    let s = group.stats();
    assert_adds_up(s);
    assert_eq!((s.pending, s.running), (0, 0));
    assert!(
        s.completed > 0 && s.cancelled > 0 && s.panicked > 0,
        "{s:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn pending_and_running_follow_a_task_through_its_life() {
    let group = Group::new();
    group.delay(ms(10), async {
        tokio::time::sleep(ms(10)).await;
    });
    let s = group.stats();
    assert_eq!((s.scheduled, s.pending, s.running), (1, 1, 0));
    tokio::time::sleep(ms(15)).await;
    let s = group.stats();
    assert_eq!((s.pending, s.running, s.completed), (0, 1, 0));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let s = group.stats();
    assert_eq!((s.pending, s.running, s.completed), (0, 0, 1));
}
