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

/// A group's `Window` uses `completed`, `panicked` and `cancelled` as `Stats` does, `ended` for
/// all three, and counts only tasks that started; a limiter's window counts slots `freed`.
#[tokio::test(start_paused = true)]
async fn window_completed_panicked_cancelled_mean_what_stats_say_and_ended_is_their_sum() {
    let limiter = Limiter::new(8);
    let group = Group::builder().limiter(&limiter).build();
    for _ in 0..3 {
        group.delay(Duration::ZERO, async {
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
    }
    group.delay(Duration::ZERO, async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        panic!("on purpose: counts as panicked");
    });
    // Cancelled before it starts: Stats counts it, no window does (it never ran).
    group.delay(Duration::from_secs(60), async {}).cancel();
    // Running when the group is cancelled at 5 s: cancelled while running.
    group.delay(Duration::ZERO, async {
        tokio::time::sleep(Duration::from_secs(3_600)).await;
    });
    let permit = limiter.try_acquire().expect("a free slot");
    drop(permit);

    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(group.cancel());
    let err = bounded(group.wait()).await.unwrap_err();
    assert!(err.is_cancelled());

    let stats = group.stats();
    assert_eq!(
        (stats.completed, stats.panicked, stats.cancelled),
        (3, 1, 2)
    );
    for w in group.history().windows {
        assert_eq!(w.started, 5, "{:?}", w.span);
        assert_eq!(
            (w.completed, w.panicked, w.cancelled),
            (stats.completed, stats.panicked, stats.cancelled - 1),
            "the same words as Stats, less the task cancelled before it started: {w:?}"
        );
        assert_eq!(w.ended, w.completed + w.panicked + w.cancelled, "{w:?}");
        assert_eq!(w.freed, w.ended, "{w:?}");
    }
    for w in limiter.history().windows {
        assert_eq!(
            (w.started, w.freed),
            (6, 6),
            "five tasks and a permit took and freed a slot: {w:?}"
        );
        assert_eq!(
            (w.ended, w.completed, w.panicked, w.cancelled),
            (0, 0, 0, 0),
            "a limiter counts slots, not tasks: {w:?}"
        );
    }
}
