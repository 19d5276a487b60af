//! Odd input never panics: extreme deadlines and caps, and very large batches.
//! `SCHEDGROUP_HEAVY=1` runs the full ten-million-task batch (do that in release mode).

mod common;

use std::time::Duration;

use common::{alive, assert_adds_up, bounded, ms, settle};
use schedgroup::Group;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The earliest `Instant` this platform will represent, stepping back a year at a time.
fn far_past(from: Instant) -> Instant {
    let mut at = from;
    let year = Duration::from_secs(86_400 * 365);
    while let Some(earlier) = at.checked_sub(year) {
        at = earlier;
        if from - at > year * 1000 {
            break;
        }
    }
    at
}

#[tokio::test(start_paused = true)]
async fn an_instant_far_in_the_past_runs_at_once_and_first() {
    let group = Group::builder().max_concurrent(1).build();
    let now = Instant::now();
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for (name, at) in [("recent", now - ms(1)), ("ancient", far_past(now))] {
        let order = order.clone();
        group.schedule(at, async move { order.lock().unwrap().push(name) });
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(Instant::now(), now);
    assert_eq!(*order.lock().unwrap(), ["ancient", "recent"]);
}

#[tokio::test(start_paused = true)]
async fn extreme_deadlines_in_reschedule_are_fine() {
    let group = Group::new();
    let now = Instant::now();
    let h = group.delay(ms(5), async {});
    assert!(h.reschedule(now + Duration::from_secs(86_400 * 365 * 200)));
    assert!(h.reschedule(far_past(now)));
    bounded(group.wait()).await.unwrap();
    assert_eq!(
        Instant::now(),
        now,
        "rescheduled into the past: ran at once"
    );
}

#[tokio::test(start_paused = true)]
async fn caps_beyond_a_semaphores_limit_work() {
    for cap in [Semaphore::MAX_PERMITS + 1, usize::MAX - 1, usize::MAX] {
        let group = Group::builder().max_concurrent(cap).build();
        for _ in 0..100 {
            group.delay(Duration::ZERO, async {
                tokio::time::sleep(ms(1)).await;
            });
        }
        settle().await;
        assert_eq!(group.stats().running, 100, "cap {cap}: all start");
        group.set_max_concurrent(cap);
        bounded(group.wait()).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_very_large_batch_scheduled_then_cancelled_leaves_nothing() {
    let n: u64 = if std::env::var_os("SCHEDGROUP_HEAVY").is_some() {
        10_000_000
    } else {
        200_000
    };
    let base = alive();
    let group = Group::new();
    let handles: Vec<_> = (0..n)
        .map(|i| group.delay(Duration::from_secs(3600 + i % 1000), async {}))
        .collect();
    assert_eq!(group.stats().pending, n);
    // Half by handle, the rest with the group.
    for h in &handles[..(n / 2) as usize] {
        assert!(h.cancel());
    }
    assert!(group.cancel());
    let s = group.stats();
    assert_adds_up(s);
    assert_eq!((s.pending, s.cancelled), (0, n));
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    settle().await;
    assert_eq!(alive(), base, "the monitor exited");
}
