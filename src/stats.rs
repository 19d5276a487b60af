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
    /// Tasks taken from the queue to run, ever (for the `metrics` feature's counter).
    pub(crate) started: u64,
    pub(crate) completed: u64,
    pub(crate) cancelled: u64,
    pub(crate) panicked: u64,
    /// Panics no `wait()` has reported yet.
    unreported: u64,
    /// The ids of the first [`PANIC_IDS`] of them, in the order they ended, among which panics
    /// on their way to a requester hold a *tentative* place (`true`) in their turn: the
    /// delivery either takes the panic (its place goes) or not (its place is confirmed). A
    /// tentative place takes no room from the others, so whatever the deliveries show, the
    /// list ends up naming the first unreported panics in the order they ended. `wait()` reads
    /// it only when no delivery is in flight, so no tentative place is left then.
    unreported_ids: Vec<(u64, bool)>,
}

impl Counters {
    /// Task `task` ended with `outcome`. `deferred`: a panic goes to a requester first, and
    /// is reported by `wait()` only if the requester does not take it
    /// ([`untaken_panic`](Counters::untaken_panic), [`panic_taken`](Counters::panic_taken)).
    pub(crate) fn record(&mut self, task: u64, outcome: Outcome, deferred: bool) {
        match outcome {
            Outcome::Completed => self.completed += 1,
            Outcome::Panicked => {
                self.panicked += 1;
                if !deferred {
                    self.unreported += 1;
                }
                let tentative = self.unreported_ids.iter().filter(|e| e.1).count();
                if self.unreported_ids.len() < PANIC_IDS + tentative {
                    self.unreported_ids.push((task, deferred));
                }
            }
            Outcome::Cancelled => self.cancelled += 1,
        }
    }

    /// Task `task`'s panic, which went to a requester, was not taken (the requester was
    /// gone): `wait()` reports it. Its tentative place, if it had one, is confirmed; the last
    /// place beyond the first [`PANIC_IDS`] confirmed ones then goes.
    pub(crate) fn untaken_panic(&mut self, task: u64) {
        self.unreported += 1;
        let Some(at) = self.unreported_ids.iter().position(|&e| e == (task, true)) else {
            return;
        };
        self.unreported_ids[at].1 = false;
        let confirmed: Vec<usize> = (0..self.unreported_ids.len())
            .filter(|&i| !self.unreported_ids[i].1)
            .collect();
        if let Some(&extra) = confirmed.get(PANIC_IDS) {
            self.unreported_ids.remove(extra);
        }
    }

    /// Task `task`'s panic, which went to a requester, was taken there: its tentative place
    /// goes.
    pub(crate) fn panic_taken(&mut self, task: u64) {
        self.unreported_ids.retain(|&e| e != (task, true));
    }

    /// The panics not reported yet, and the first ids among them; from now on they count as
    /// reported.
    pub(crate) fn take_panics(&mut self) -> (u64, Vec<u64>) {
        let count = std::mem::take(&mut self.unreported);
        let ids = std::mem::take(&mut self.unreported_ids);
        debug_assert!(ids.iter().all(|e| !e.1), "a delivery is in flight");
        (count, ids.into_iter().map(|(id, _)| id).collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    proptest! {
        /// Panics end plain or on their way to a requester, whose deliveries then settle in
        /// any order, taken or not: once all have settled, `take_panics` names the first
        /// [`PANIC_IDS`] panics nobody took, in the order they ended, and counts them all.
        #[test]
        fn the_reported_ids_are_the_first_untaken_panics_in_the_order_they_ended(
            ends in proptest::collection::vec(any::<bool>(), 0..40),
            settle in proptest::collection::vec((any::<usize>(), any::<bool>()), 0..40),
        ) {
            let mut counters = Counters::default();
            // Each panic's id is its turn; `true`: deferred, settled below.
            let mut open: Vec<u64> = Vec::new();
            let mut taken = std::collections::BTreeSet::new();
            for (id, &deferred) in (0u64..).zip(&ends) {
                counters.record(id, Outcome::Panicked, deferred);
                if deferred {
                    open.push(id);
                }
            }
            let mut choices = settle.into_iter();
            while !open.is_empty() {
                let (at, take) = choices.next().unwrap_or((0, false));
                let id = open.remove(at % open.len());
                if take {
                    counters.panic_taken(id);
                    taken.insert(id);
                } else {
                    counters.untaken_panic(id);
                }
            }
            let untaken: Vec<u64> = (0..ends.len() as u64).filter(|id| !taken.contains(id)).collect();
            let (count, ids) = counters.take_panics();
            prop_assert_eq!(count, untaken.len() as u64);
            prop_assert_eq!(ids, untaken.into_iter().take(PANIC_IDS).collect::<Vec<_>>());
        }
    }
}
