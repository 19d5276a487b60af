//! The group's counters and the public snapshot of them.

use crate::task::Outcome;

/// A snapshot of a group's counters, taken at one instant under the group's lock.
///
/// The counters always add up:
///
/// ```text
/// scheduled == pending + running + completed + cancelled + panicked
/// ```
///
/// A task is *pending* from the moment it is scheduled until it starts (or, if it is cancelled
/// first, until its future has been dropped); *running* from the moment it is taken from the
/// queue until its future has returned or been dropped. A running task that is aborted by group
/// cancellation counts as *cancelled*; a task whose future (or its `Drop`) panics counts as
/// *panicked*.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::Group;
/// use std::time::Duration;
///
/// let group = Group::new();
/// group.delay(Duration::from_secs(1), async {});
/// let handle = group.delay(Duration::from_secs(2), async {});
/// handle.cancel();
///
/// let stats = group.stats();
/// assert_eq!((stats.scheduled, stats.pending, stats.cancelled), (2, 1, 1));
///
/// group.wait().await.unwrap();
/// let stats = group.stats();
/// assert_eq!((stats.pending, stats.completed), (0, 1));
/// assert_eq!(stats.scheduled, stats.pending + stats.running + stats.completed + stats.cancelled + stats.panicked);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Tasks handed to the group, including those dropped at once because it was cancelled.
    pub scheduled: u64,
    /// Tasks waiting for their deadline or for a free slot.
    pub pending: u64,
    /// Tasks started and not yet finished.
    pub running: u64,
    /// Tasks whose future returned.
    pub completed: u64,
    /// Tasks cancelled by handle or by the group, before or while running.
    pub cancelled: u64,
    /// Tasks whose future panicked.
    pub panicked: u64,
}

/// How many ids of unreported panics a group keeps for `wait()`'s error.
pub(crate) const PANIC_IDS: usize = 8;

/// The counters the group keeps. `running` lives in the cap, which owns it.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) scheduled: u64,
    pub(crate) pending: u64,
    pub(crate) completed: u64,
    pub(crate) cancelled: u64,
    pub(crate) panicked: u64,
    /// Panics no `wait()` has reported yet.
    unreported: u64,
    /// The ids of the first [`PANIC_IDS`] of them, in the order they ended.
    unreported_ids: Vec<u64>,
}

impl Counters {
    /// Task `task` ended with `outcome`. `deferred`: a panic goes to a requester first, and
    /// is reported by `wait()` only if the requester does not take it
    /// ([`untaken_panic`](Counters::untaken_panic)).
    pub(crate) fn record(&mut self, task: u64, outcome: Outcome, deferred: bool) {
        match outcome {
            Outcome::Completed => self.completed += 1,
            Outcome::Panicked if deferred => self.panicked += 1,
            Outcome::Panicked => {
                self.panicked += 1;
                self.untaken_panic(task);
            }
            Outcome::Cancelled => self.cancelled += 1,
        }
    }

    /// Task `task` panicked, and its panic, which went to a requester, was not taken (the
    /// requester was gone): `wait()` reports it (see `record`'s `deferred`).
    pub(crate) fn untaken_panic(&mut self, task: u64) {
        self.unreported += 1;
        if self.unreported_ids.len() < PANIC_IDS {
            self.unreported_ids.push(task);
        }
    }

    /// The panics not reported yet, and the first ids among them; from now on they count as
    /// reported.
    pub(crate) fn take_panics(&mut self) -> (u64, Vec<u64>) {
        let count = std::mem::take(&mut self.unreported);
        (count, std::mem::take(&mut self.unreported_ids))
    }

    pub(crate) fn snapshot(&self, running: usize) -> Stats {
        Stats {
            scheduled: self.scheduled,
            pending: self.pending,
            running: running as u64,
            completed: self.completed,
            cancelled: self.cancelled,
            panicked: self.panicked,
        }
    }
}
