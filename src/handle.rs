//! [`TaskHandle`]: cancel or move one pending task.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use crate::id::TaskId;
use crate::queue::Key;
use crate::shared::Shared;

/// A handle to one task of a [`Group`](crate::Group), returned by
/// [`Group::delay`](crate::Group::delay) and [`Group::schedule`](crate::Group::schedule).
///
/// It can cancel or reschedule the task while the task is pending (not yet started). Dropping
/// the handle changes nothing. A handle whose task has started, finished or been cancelled is
/// inert: every method returns `false`. It can never reach another task, even one that took
/// over its place in the group's storage.
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

    /// Cancels the task if it has not started: its future is dropped before this returns.
    ///
    /// Returns `true` if the task was pending and now never runs; `false` if it had already
    /// started, finished or been cancelled.
    pub fn cancel(&self) -> bool {
        self.shared.cancel_task(self.key)
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
}

impl fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("group", &self.shared.name)
            .field("id", &self.id())
            .field("pending", &self.is_pending())
            .finish()
    }
}
