//! [`TaskHandle`]: cancel one task whatever its state, move it while it is pending, and tell
//! its id, deadline and state.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use crate::clock::{NEVER, far_future};
use crate::directory::Seat;
use crate::id::TaskId;
use crate::queue::Key;
use crate::shared::{GROUPS, Shared};

/// A handle to one task of a [`Group`](crate::Group), returned by
/// [`Group::delay`](crate::Group::delay) and [`Group::schedule`](crate::Group::schedule).
///
/// It cancels the task whatever its state ([`cancel`](TaskHandle::cancel): a pending task never
/// starts, a running one stops at its next `.await`), moves it while it is pending
/// ([`reschedule`](TaskHandle::reschedule)), and tells its id, its deadline while it is
/// pending, and whether it has ended. Dropping the handle changes nothing. A handle whose task
/// has ended is inert: `cancel` and `reschedule` return `false`. It can never reach another
/// task, even one that took over its place in the group's storage.
///
/// Clones refer to the same task. A handle is plain data (its group's place in a table of live
/// groups, and the task's key): making or dropping one touches no reference count, and it does
/// not keep its group alive. Once the group is gone (no `Group` handle left, nothing pending or
/// running), every task of it has ended, and the handle says so.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::Group;
/// use std::time::Duration;
/// use tokio::time::Instant;
///
/// let group = Group::new();
/// let expire = group.delay(Duration::from_secs(30), async { /* evict the entry */ });
///
/// // The entry was read again: push its expiry back.
/// assert!(expire.reschedule(Instant::now() + Duration::from_secs(60)));
///
/// // The entry was removed: the expiry will never run.
/// assert!(expire.cancel());
/// assert!(!expire.is_pending());
/// group.wait().await.unwrap();
/// assert_eq!(group.stats().cancelled, 1);
/// # }
/// ```
#[derive(Clone)]
pub struct TaskHandle {
    seat: Seat,
    key: Key,
}

impl TaskHandle {
    pub(crate) fn new(seat: Seat, key: Key) -> Self {
        Self { seat, key }
    }

    /// The task's group, unless it is gone.
    fn group(&self) -> Option<Arc<Shared>> {
        GROUPS.find(self.seat)
    }

    /// The task's id, unique within its group; inside the task, [`task_id`](crate::task_id)
    /// returns the same.
    ///
    /// A task scheduled into a group that was already cancelled never entered it, and has an
    /// id no other task of the group has either.
    #[must_use]
    pub fn id(&self) -> TaskId {
        TaskId::new(self.key.id())
    }

    /// Cancels the task, whatever its state: the one way to stop a task.
    ///
    /// - **Pending**: it never starts; its future is dropped before this returns.
    /// - **Running**: it stops at its next `.await`: its runner is woken, drops the future
    ///   instead of polling it again, and frees its slot. If the task is inside a poll at that
    ///   moment and returns from it, it completed; otherwise it counts as cancelled. Like
    ///   tokio's `JoinHandle::abort`, this does not wait for the task to stop: await its
    ///   [`JoinHandle`](crate::JoinHandle), or [`Group::wait`](crate::Group::wait), for that.
    ///   Every running task of the group is polled once more (a spurious wake-up, which the
    ///   `Future` contract allows), since runners share one wake-up.
    ///
    /// Whoever awaits the task's output is told [`CancelledBy::Handle`](crate::CancelledBy).
    /// Returns `true` if the task was pending or running (and not asked to stop before);
    /// `false` if it had ended, or its group was cancelled (which stops it already: it then
    /// reports [`CancelledBy::Group`](crate::CancelledBy)).
    pub fn cancel(&self) -> bool {
        self.group()
            .is_some_and(|group| group.cancel_task(self.key, true))
    }

    /// Moves the pending task to `deadline` (a [`tokio::time::Instant`] or a
    /// [`std::time::Instant`]). Among tasks due at the same instant, a rescheduled task runs
    /// after those scheduled or rescheduled before it.
    ///
    /// Returns `true` if the task was pending and now waits for `deadline`; `false` if it had
    /// already started, finished or been cancelled.
    pub fn reschedule(&self, deadline: impl Into<Instant>) -> bool {
        let Some(group) = self.group() else {
            return false;
        };
        let deadline = group.clock.key(deadline.into());
        group.reschedule(self.key, deadline)
    }

    /// Whether the task is still pending: scheduled, not started, not cancelled.
    #[must_use]
    pub fn is_pending(&self) -> bool {
        self.group().is_some_and(|group| group.is_pending(self.key))
    }

    /// Whether the task has ended: returned, panicked, or cancelled (before it started, or
    /// stopped while it ran). `false` while it is pending or running. Once it is `true` the
    /// task never runs again; a cancel on another thread may still be dropping its future,
    /// and its result, if someone awaits it, follows.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.group().is_none_or(|group| group.is_finished(self.key))
    }

    /// When the task is due, as last scheduled or rescheduled; `None` once it has started or
    /// ended.
    ///
    /// A task that never falls due (a delay of `Duration::MAX`) reports an instant 30 years
    /// on, as tokio's `sleep(Duration::MAX)` does.
    ///
    /// Cost: O(1) for the group's earliest task. For the others, the group keeps no deadline
    /// per task (that would cost 8 bytes on every pending task), so it looks the task's entry
    /// up among the pending tasks of the same future type, under the group's lock: about
    /// 0.3 ns per such task, 27 µs among 100,000 (`cargo bench --bench group --
    /// handle/deadline`; see `BENCHMARKS.md`). Keep your own copy if you ask often in a large
    /// group.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        let group = self.group()?;
        let key = group.deadline(self.key)?;
        if key == NEVER {
            return Some(far_future(Instant::now()));
        }
        Some(group.clock.instant(key))
    }
}

impl fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = self.group();
        let (pending, finished) = match &group {
            Some(group) => (group.is_pending(self.key), group.is_finished(self.key)),
            None => (false, true),
        };
        f.debug_struct("TaskHandle")
            .field(
                "group",
                &group.as_ref().and_then(|group| group.name.as_deref()),
            )
            .field("id", &self.id())
            .field("pending", &pending)
            .field("finished", &finished)
            .finish()
    }
}
