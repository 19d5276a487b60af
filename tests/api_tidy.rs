//! The 0.x API tidy-up (issue 10): one name per knob, one meaning per word, a clear outcome for
//! throttling what has no cap. On the paused clock.

mod common;

use std::time::Duration;

use common::{bounded, settle};
use schedgroup::{Group, Limiter, ThrottleOutcome};

/// `Group::set_limit`/`limit` are deprecated in favour of `set_max_concurrent`/`max_concurrent`
/// but keep working, on the same cap.
#[tokio::test(start_paused = true)]
#[allow(deprecated)]
async fn deprecated_group_set_limit_and_limit_still_name_the_max_concurrent_cap() {
    let group = Group::builder().max_concurrent(0).build();
    assert_eq!(group.limit(), 0);
    group.delay(Duration::ZERO, async {});
    settle().await;
    assert_eq!(group.stats().pending, 1, "a cap of 0 holds the task back");

    assert!(group.set_limit(3), "the cap changed");
    assert!(!group.set_limit(3), "the same cap again changes nothing");
    assert_eq!((group.limit(), group.max_concurrent()), (3, 3));
    bounded(group.wait()).await.unwrap();
    assert_eq!(
        group.stats().completed,
        1,
        "raising it through set_limit started the task"
    );

    assert!(group.set_max_concurrent(5));
    assert_eq!(
        group.limit(),
        5,
        "limit() reads the cap set_max_concurrent set"
    );
}

/// `throttle_down()`/`throttle_up()` on a group without a cap say so (`Uncapped`) instead of
/// "stepping" `usize::MAX` to `usize::MAX - 2`, change nothing and start no hold.
#[tokio::test(start_paused = true)]
async fn throttling_an_uncapped_group_is_refused_as_uncapped_and_changes_nothing() {
    let group = Group::new();
    assert_eq!(group.throttle_down(), ThrottleOutcome::Uncapped);
    assert_eq!(group.throttle_up(), ThrottleOutcome::Uncapped);
    assert_eq!(group.max_concurrent(), usize::MAX, "still uncapped");
    assert!(!group.throttle_down().is_applied());

    // Once it has a cap, the throttle steps it at once: the refusals started no hold.
    group.set_max_concurrent(8);
    assert_eq!(
        group.throttle_down(),
        ThrottleOutcome::Applied { from: 8, to: 6 }
    );
    // Uncapped again: refused even while the hold runs.
    group.set_max_concurrent(usize::MAX);
    assert_eq!(group.throttle_down(), ThrottleOutcome::Uncapped);

    for _ in 0..3 {
        group.delay(Duration::from_secs(1), async {});
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.stats().completed, 3);
}

/// The same for a limiter of `usize::MAX`.
#[tokio::test(start_paused = true)]
async fn throttling_a_limiter_of_usize_max_is_refused_as_uncapped_and_changes_nothing() {
    let limiter = Limiter::new(usize::MAX);
    assert_eq!(limiter.throttle_down(), ThrottleOutcome::Uncapped);
    assert_eq!(limiter.throttle_up(), ThrottleOutcome::Uncapped);
    assert_eq!(limiter.limit(), usize::MAX);

    limiter.set_limit(4);
    assert_eq!(
        limiter.throttle_down(),
        ThrottleOutcome::Applied { from: 4, to: 2 }
    );
    assert_eq!(limiter.limit(), 2);
}
