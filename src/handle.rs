//! [`TaskHandle`]: cancel one task whatever its state, move it while it is pending, and tell
//! its id, deadline and state.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use crate::clock::{NEVER, far_future};
use crate::id::TaskId;
use crate::queue::Key;
use crate::shared::Shared;

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
/// Clones refer to the same task.
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
    shared: Arc<Shared>,
    key: Key,
}

impl TaskHandle {
    pub(crate) fn new(shared: Arc<Shared>, key: Key) -> Self {
        Self { shared, key }
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
        self.shared.cancel_task(self.key, true)
    }

    /// Moves the pending task to `deadline` (a [`tokio::time::Instant`] or a
    /// [`std::time::Instant`]). Among tasks due at the same instant, a rescheduled task runs
    /// after those scheduled or rescheduled before it.
    ///
    /// Returns `true` if the task was pending and now waits for `deadline`; `false` if it had
    /// already started, finished or been cancelled.
    pub fn reschedule(&self, deadline: impl Into<Instant>) -> bool {
        let deadline = self.shared.clock.key(deadline.into());
        self.shared.reschedule(self.key, deadline)
    }

    /// Whether the task is still pending: scheduled, not started, not cancelled.
    #[must_use]
    pub fn is_pending(&self) -> bool {
        self.shared.is_pending(self.key)
    }

    /// Whether the task has ended: returned, panicked, or cancelled (before it started, or
    /// stopped while it ran). `false` while it is pending or running. Once it is `true` the
    /// task never runs again; a cancel on another thread may still be dropping its future,
    /// and its result, if someone awaits it, follows.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.shared.is_finished(self.key)
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
        let key = self.shared.deadline(self.key)?;
        if key == NEVER {
            return Some(far_future(Instant::now()));
        }
        Some(self.shared.clock.instant(key))
    }
}

impl fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("group", &self.shared.name)
            .field("id", &self.id())
            .field("pending", &self.is_pending())
            .field("finished", &self.is_finished())
            .finish()
    }
}
