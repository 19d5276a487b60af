//! When tasks start: never early, at their deadline on the paused clock, in deadline order,
//! FIFO among equal deadlines, and odd deadlines never panic.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{bounded, ms, settle};
use schedgroup::Group;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn task_starts_at_its_deadline_and_never_before() {
    let group = Group::new();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    for delay in [0u64, 1, 7, 250, 499, 500, 1000, 3_600_000] {
        let deadline = t0 + ms(delay);
        let starts = starts.clone();
        group.schedule(deadline, async move {
            starts.lock().unwrap().push((deadline, Instant::now()));
        });
    }
    bounded(group.wait()).await.unwrap();
    let starts = starts.lock().unwrap();
    assert_eq!(starts.len(), 8);
    for &(deadline, started) in starts.iter() {
        assert!(
            started >= deadline,
            "started {:?} early",
            deadline - started
        );
        assert!(
            started - deadline <= ms(1),
            "started {:?} late",
            started - deadline
        );
    }
}

#[tokio::test(start_paused = true)]
async fn delay_is_measured_from_now() {
    let group = Group::new();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let scheduled_at = Instant::now();
    let started = Arc::new(Mutex::new(None));
    let s = started.clone();
    group.delay(ms(500), async move {
        *s.lock().unwrap() = Some(Instant::now());
    });
    tokio::time::sleep(ms(499)).await;
    settle().await;
    assert!(started.lock().unwrap().is_none(), "ran before its delay");
    bounded(group.wait()).await.unwrap();
    let started = started.lock().unwrap().unwrap();
    assert!(started - scheduled_at >= ms(500));
    assert!(started - scheduled_at <= ms(501));
}

#[tokio::test(start_paused = true)]
async fn due_tasks_start_in_deadline_order() {
    let group = Group::builder().max_concurrent(1).build();
    let order = Arc::new(Mutex::new(Vec::new()));
    // Schedule in scrambled order, all well in the future.
    for n in [5u64, 3, 9, 1, 7, 2, 8, 4, 6, 0] {
        let order = order.clone();
        group.delay(ms(100 + n * 10), async move {
            order.lock().unwrap().push(n);
        });
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn equal_deadlines_start_in_schedule_order() {
    let group = Group::builder().max_concurrent(1).build();
    let order = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + ms(50);
    for n in 0..100 {
        let order = order.clone();
        group.schedule(deadline, async move {
            order.lock().unwrap().push(n);
            // Each task yields, so the next start really waits for this slot.
            tokio::task::yield_now().await;
        });
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(*order.lock().unwrap(), (0..100).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn cap_one_runs_in_deadline_then_schedule_order_even_when_all_are_due() {
    let group = Group::builder().max_concurrent(1).build();
    let order = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    // (deadline offset, id): ids are the expected run order.
    let plan = [(30, 4), (10, 0), (20, 2), (10, 1), (20, 3), (30, 5)];
    for (offset, id) in plan {
        let order = order.clone();
        group.schedule(t0 + ms(offset), async move {
            order.lock().unwrap().push(id);
        });
    }
    // Everything is overdue by the time the monitor first looks.
    tokio::time::advance(ms(100)).await;
    bounded(group.wait()).await.unwrap();
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn past_deadline_and_zero_delay_run_as_soon_as_possible() {
    let group = Group::new();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let t0 = Instant::now();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let r = ran.clone();
    group.schedule(t0 - Duration::from_secs(3), async move {
        r.lock().unwrap().push("past");
    });
    let r = ran.clone();
    group.delay(Duration::ZERO, async move {
        r.lock().unwrap().push("zero");
    });
    settle().await;
    assert_eq!(Instant::now(), t0, "the clock did not move");
    assert_eq!(*ran.lock().unwrap(), ["past", "zero"]);
}

#[tokio::test(start_paused = true)]
async fn past_deadlines_keep_their_order() {
    let group = Group::builder().max_concurrent(1).build();
    tokio::time::sleep(Duration::from_secs(100)).await;
    let now = Instant::now();
    let order = Arc::new(Mutex::new(Vec::new()));
    for back in [10u64, 50, 30, 90] {
        let order = order.clone();
        group.schedule(now - Duration::from_secs(back), async move {
            order.lock().unwrap().push(back);
        });
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(*order.lock().unwrap(), [90, 50, 30, 10]);
}

#[tokio::test(start_paused = true)]
async fn huge_delays_never_panic_and_simply_wait() {
    let group = Group::new();
    let decades = Instant::now() + Duration::from_secs(86_400 * 365 * 50);
    let a = group.delay(Duration::MAX, async {
        unreachable!("Duration::MAX never fires")
    });
    let b = group.schedule(decades, async { unreachable!("fifty years") });
    let c = group.delay(Duration::from_secs(u64::MAX), async { unreachable!() });
    tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
    settle().await;
    assert!(a.is_pending() && b.is_pending() && c.is_pending());
    assert_eq!(group.stats().pending, 3);
    // Rescheduling to the far future is fine too; then they can still be cancelled.
    assert!(a.reschedule(decades));
    assert!(group.cancel());
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_huge_batch_runs_completely() {
    let group = Group::builder().max_concurrent(64).build();
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for n in 0..100_000u64 {
        let done = done.clone();
        group.delay(ms(n % 1000), async move {
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(done.load(std::sync::atomic::Ordering::Relaxed), 100_000);
    assert_eq!(group.stats().completed, 100_000);
}

#[tokio::test(start_paused = true)]
async fn an_earlier_task_scheduled_later_wakes_the_monitor() {
    let group = Group::new();
    let t0 = Instant::now();
    let first = Arc::new(Mutex::new(None));
    group.delay(Duration::from_secs(60), async {});
    // The monitor is asleep until t0 + 60 s; this must wake it.
    let f = first.clone();
    group.delay(ms(10), async move {
        *f.lock().unwrap() = Some(Instant::now());
    });
    tokio::time::sleep(ms(20)).await;
    let started = first.lock().unwrap().expect("the earlier task ran");
    assert!(started - t0 >= ms(10) && started - t0 <= ms(11));
    group.cancel();
}
