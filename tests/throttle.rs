//! Throttling a limiter or a group's own cap: steps, floor, ceiling and hold, on the paused
//! clock, and what a step does to running and waiting tasks.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Concurrency, bounded, ms, settle};
use schedgroup::{Group, Limiter, Throttle, ThrottleOutcome};
use tokio::time::Instant;

const HOLD: Duration = Duration::from_secs(30);

#[tokio::test(start_paused = true)]
async fn limiter_throttle_follows_its_rules_and_says_why_it_refuses() {
    let limiter = Limiter::new(5);
    let t0 = Instant::now();
    assert_eq!(
        limiter.throttle_down(),
        ThrottleOutcome::Applied { from: 5, to: 3 }
    );
    assert_eq!(limiter.limit(), 3);
    tokio::time::advance(HOLD - ms(1)).await;
    assert_eq!(
        limiter.throttle_down(),
        ThrottleOutcome::Holding { until: t0 + HOLD }
    );
    assert_eq!(
        limiter.throttle_up(),
        ThrottleOutcome::Holding { until: t0 + HOLD }
    );
    tokio::time::advance(ms(1)).await;
    assert_eq!(
        limiter.throttle_down(),
        ThrottleOutcome::Applied { from: 3, to: 1 }
    );
    assert_eq!(
        limiter.throttle_down(),
        ThrottleOutcome::AtFloor { limit: 1 }
    );
    for to in 2..=5 {
        tokio::time::advance(HOLD).await;
        assert_eq!(
            limiter.throttle_up(),
            ThrottleOutcome::Applied { from: to - 1, to }
        );
    }
    tokio::time::advance(HOLD).await;
    assert_eq!(
        limiter.throttle_up(),
        ThrottleOutcome::AtCeiling { limit: 5 },
        "ceiling: the initial limit"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_call_does_not_restart_the_hold_but_a_manual_set_limit_is_free() {
    let limiter = Limiter::new(10);
    limiter.set_throttle(Throttle {
        hold: Duration::from_secs(10),
        ..Throttle::default()
    });
    let t0 = Instant::now();
    assert!(limiter.throttle_down().is_applied());
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(!limiter.throttle_down().is_applied());
    assert!(limiter.set_limit(4), "set_limit is not throttled");
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(Instant::now(), t0 + Duration::from_secs(10));
    assert_eq!(
        limiter.throttle_down(),
        ThrottleOutcome::Applied { from: 4, to: 2 }
    );
}

#[tokio::test(start_paused = true)]
async fn throttling_down_aborts_nothing_and_up_starts_waiting_tasks_at_once() {
    let limiter = Limiter::new(6);
    limiter.set_throttle(Throttle {
        step_down: 4,
        step_up: 4,
        hold: Duration::ZERO,
        ..Throttle::default()
    });
    let group = Group::builder().limiter(&limiter).build();
    let c = Arc::new(Concurrency::default());
    for _ in 0..20 {
        let c = c.clone();
        group.delay(Duration::ZERO, async move {
            let _in = c.enter();
            tokio::time::sleep(ms(100)).await;
        });
    }
    settle().await;
    assert_eq!(c.now(), 6);
    assert_eq!(
        limiter.throttle_down(),
        ThrottleOutcome::Applied { from: 6, to: 2 }
    );
    assert_eq!(c.now(), 6, "running tasks keep going");
    tokio::time::sleep(ms(150)).await;
    assert_eq!(c.now(), 2, "after they finish, only 2 run");
    let t = Instant::now();
    assert_eq!(
        limiter.throttle_up(),
        ThrottleOutcome::Applied { from: 2, to: 6 }
    );
    settle().await;
    assert_eq!((c.now(), Instant::now()), (6, t), "four more at once");
    bounded(group.wait()).await.unwrap();
    assert!(c.max() <= 6);
}

#[tokio::test(start_paused = true)]
async fn a_groups_own_cap_throttles_the_same_way() {
    let group = Group::builder().max_concurrent(4).build();
    group.set_throttle(Throttle {
        floor: 2,
        hold: Duration::from_secs(1),
        ..Throttle::default()
    });
    let c = Arc::new(Concurrency::default());
    for _ in 0..12 {
        let c = c.clone();
        group.delay(Duration::ZERO, async move {
            let _in = c.enter();
            tokio::time::sleep(ms(100)).await;
        });
    }
    settle().await;
    assert_eq!(
        group.throttle_down(),
        ThrottleOutcome::Applied { from: 4, to: 2 }
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(group.throttle_down(), ThrottleOutcome::AtFloor { limit: 2 });
    assert_eq!(
        group.throttle_up(),
        ThrottleOutcome::Applied { from: 2, to: 3 }
    );
    assert_eq!(group.max_concurrent(), 3);
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.stats().completed, 12);
}
