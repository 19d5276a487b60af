//! The monitor: one tokio task per busy group that sleeps on a single timer until the earliest
//! deadline and starts due tasks, as many as the cap allows.
//!
//! # Why no wake-up is lost
//!
//! The monitor decides what to wait for under the group's lock and records it as
//! `Monitor::Parked { until }`. Anything that makes it necessary to act sooner (an earlier
//! deadline, a freed slot, a higher cap, an emptied queue) is done under the same lock, sees that
//! record, flips it to `Active` and calls `notify_one` after unlocking. `notify_one` stores a
//! permit when the monitor is not yet waiting, so a notification that lands between the
//! monitor's unlock and its `.await` completes the next `notified()` at once. Cancellation
//! sets the group's flag and then notifies the monitor the same way (see `crate::cancel`), and
//! the earliest deadline is on the timer. So at any moment either the monitor is awake and will
//! re-read the state, or everything that could need it has a way to wake it.
//!
//! When it parks with due tasks left but no free slot, it sets no timer: every running task has
//! a runner, and a runner that frees its slot wakes the monitor if the earliest task is then
//! startable (`State::wake_for_top`).
//!
//! The monitor ends when the queue is empty, so an idle group holds no tokio task; the next
//! insert spawns a new one (invariant 4).

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use crate::runner;
use crate::shared::{Shared, Step};

/// Spawns the group's monitor on the group's runtime.
pub(crate) fn spawn(shared: Arc<Shared>) {
    let runtime = shared.runtime().clone();
    // Built outside the task so that a runtime that drops the task unpolled still drops the
    // guard.
    let guard = Guard {
        shared,
        armed: true,
    };
    drop(runtime.spawn(run(guard)));
}

/// Cancels the group if the runtime drops the monitor before it exits on its own.
struct Guard {
    shared: Arc<Shared>,
    armed: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.armed {
            self.shared.monitor_dropped();
        }
    }
}

async fn run(mut guard: Guard) {
    let shared = guard.shared.clone();
    // One timer for the monitor's whole life, reset to each new earliest deadline.
    let mut sleep = pin!(sleep_until(Instant::now() + Duration::from_secs(86_400)));
    let mut batch = Vec::new();
    loop {
        match shared.monitor_step(shared.clock.now(), &mut batch) {
            Step::Start => {
                for task in batch.drain(..) {
                    runner::spawn(&shared, task);
                }
                // A burst of due tasks must not hold this worker thread for long.
                tokio::task::coop::consume_budget().await;
            }
            Step::Park(until) => {
                if let Some(deadline) = until {
                    sleep.as_mut().reset(shared.clock.instant(deadline));
                }
                let mut notified = pin!(shared.monitor_notify().notified());
                poll_fn(|cx| {
                    if notified.as_mut().poll(cx).is_ready()
                        || (until.is_some() && sleep.as_mut().poll(cx).is_ready())
                    {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
            }
            Step::Exit => {
                guard.armed = false;
                return;
            }
        }
    }
}
