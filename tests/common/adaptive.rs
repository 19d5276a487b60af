//! Helpers of the tests of adaptive limits (issue 11).

use std::time::Duration;

use schedgroup::{Adaptive, Group, Limiter};

use super::outputs::{quiet_hook, quiet_panic};
use super::{bounded, current_thread, ms};

/// A limiter with `adaptive` (from 20), shared by a group on a paused runtime moved a day
/// ahead, whose task panics at once (the first cut, to 16), then by a group on another paused
/// runtime, whose task panics 5 ms after it started: a task that started after the cut, on
/// its own clock. Returns the limiter.
pub fn panics_on_two_clocks(adaptive: Adaptive) -> Limiter {
    quiet_hook(|_| false);
    let limiter = Limiter::new(20);
    limiter.set_adaptive(adaptive);
    current_thread(true).block_on(async {
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        let ahead = Group::builder().limiter(&limiter).build();
        ahead.delay(Duration::ZERO, async {
            quiet_panic();
        });
        let _ = bounded(ahead.wait()).await;
    });
    assert_eq!(limiter.limit(), 16, "the first panic cut");
    current_thread(true).block_on(async {
        let behind = Group::builder().limiter(&limiter).build();
        behind.delay(Duration::ZERO, async {
            tokio::time::sleep(ms(5)).await;
            quiet_panic();
        });
        let _ = bounded(behind.wait()).await;
    });
    limiter
}
