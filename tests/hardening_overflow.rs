//! Issue 9, item 2: instant and duration arithmetic on user input saturates. A `Duration::MAX`
//! or an instant decades away or in the distant past keeps its documented meaning (a hold that
//! never ends, a task that waits until cancelled or moved, a task that is due at once) and
//! never panics, on the paused clock, even after it has been moved a century on.
//!
//! Every wait is bounded, so a hang fails in seconds.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{assert_adds_up, settle};
use schedgroup::{Group, Limiter, Throttle, ThrottleOutcome};
use tokio::time::{Instant, timeout};

const PATIENCE: Duration = Duration::from_secs(10);
const YEAR: Duration = Duration::from_secs(86_400 * 365);

fn never_again() -> Throttle {
    Throttle {
        hold: Duration::MAX,
        ..Throttle::default()
    }
}

/// `outcome` is a hold that lasts at least 29 more years.
fn assert_held_for_decades(outcome: ThrottleOutcome) {
    match outcome {
        ThrottleOutcome::Holding { until } => assert!(until >= Instant::now() + 29 * YEAR),
        outcome => panic!("a hold of Duration::MAX ended: {outcome:?}"),
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn item2_throttle_hold_of_duration_max_does_not_panic() {
    let limiter = Limiter::new(10);
    limiter.set_throttle(never_again());
    let group = Group::builder().max_concurrent(10).build();
    group.set_throttle(never_again());
    assert!(limiter.throttle_down().is_applied());
    assert!(group.throttle_down().is_applied());
    for jump in [Duration::ZERO, Duration::from_secs(1), 100 * YEAR] {
        tokio::time::advance(jump).await;
        assert_held_for_decades(limiter.throttle_down());
        assert_held_for_decades(limiter.throttle_up());
        assert_held_for_decades(group.throttle_down());
        assert_held_for_decades(group.throttle_up());
    }
    assert_eq!((limiter.limit(), group.max_concurrent()), (8, 8));
    // Setting a throttle again starts afresh; nothing was left poisoned.
    limiter.set_throttle(never_again());
    group.set_throttle(never_again());
    assert!(limiter.throttle_down().is_applied());
    assert!(group.throttle_down().is_applied());
    assert_eq!((limiter.limit(), group.max_concurrent()), (6, 6));
    group.delay(Duration::ZERO, async {});
    timeout(PATIENCE, group.wait())
        .await
        .expect("wait() hung")
        .unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn item2_a_delay_of_duration_max_waits_until_moved_even_a_century_on() {
    let limiter = Limiter::new(4);
    let group = Group::builder().limiter(&limiter).build();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let handle = group.delay(Duration::MAX, async move {
        r.store(true, Ordering::SeqCst);
    });
    tokio::time::advance(100 * YEAR).await;
    settle().await;
    assert!(!ran.load(Ordering::SeqCst), "a delay of Duration::MAX ran");
    // Past the 292 years a deadline key holds: still never.
    tokio::time::advance(200 * YEAR).await;
    settle().await;
    assert!(
        !ran.load(Ordering::SeqCst),
        "a delay of Duration::MAX ran 300 years on"
    );
    assert_eq!(group.stats().pending, 1);
    let _ = group.history();
    let _ = limiter.history();
    // Moved to a deadline in the distant past: due at once.
    let long_ago = Instant::now()
        .checked_sub(99 * YEAR)
        .expect("the paused clock is a century on");
    assert!(handle.reschedule(long_ago));
    timeout(PATIENCE, group.wait())
        .await
        .expect("wait() hung")
        .unwrap();
    assert!(ran.load(Ordering::SeqCst));
    let history = group.history();
    assert_eq!(history.windows[0].started, 1, "{history:?}");
    assert_adds_up(group.stats());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn item2_deadlines_past_what_a_key_holds_wait_until_cancelled_a_century_on() {
    let group = Group::new();
    // A century on, "now" is well after the process-wide base the keys count from.
    tokio::time::advance(100 * YEAR).await;
    let far = Instant::now() + 1_000 * YEAR;
    let handle = group.schedule(far, async { unreachable!("ran 1000 years early") });
    assert!(handle.reschedule(far + 1_000 * YEAR));
    group.delay(Duration::MAX, async { unreachable!() });
    // Keys saturate 292 years after the process-wide base (`src/clock.rs`): stay inside.
    tokio::time::advance(150 * YEAR).await;
    settle().await;
    assert_eq!(group.stats().pending, 2);
    assert!(group.cancel());
    timeout(PATIENCE, group.wait())
        .await
        .expect("wait() hung")
        .unwrap_err();
    assert_eq!(group.stats().cancelled, 2);
}
