//! [`TaskId`]: what names a task of a group, and [`task_id`]: the id of the task being run.

use std::cell::Cell;
use std::fmt;

/// Names one task of a [`Group`](crate::Group), from [`TaskHandle::id`](crate::TaskHandle::id),
/// from [`task_id`] inside the task, and in [`WaitError::panicked_ids`](crate::WaitError).
///
/// Ids are unique within their group for its whole life: a group never hands out the same id
/// twice, whatever happened to the task that had it. Tasks of *different* groups may have the
/// same id, so a map that mixes groups should key by the group too. Ids of one group grow in
/// the order its tasks were scheduled.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::{Group, task_id};
/// use std::time::Duration;
///
/// let group = Group::new();
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// let handle = group.delay(Duration::from_secs(1), async move {
///     tx.send(task_id()).ok();
/// });
/// group.wait().await.unwrap();
/// assert_eq!(rx.await.unwrap(), Some(handle.id()));
/// assert_eq!(task_id(), None, "not inside a group's task");
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(u64);

impl TaskId {
    pub(crate) fn new(id: u64) -> Self {
        Self(id)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", self.0)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

thread_local! {
    /// The task a runner is polling on this thread: its id, and its group's tag (never 0;
    /// 0: no task), for an overload signal from inside it (`Group::overloaded`). The same
    /// size as an `Option<TaskId>`, so that setting it around every poll costs no more.
    static CURRENT: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
}

/// The id of the group task a runner is polling or ending on this thread: `Some` inside the
/// task's future, in the `Drop` of its output and of the future itself when it ends, and in
/// anything run on this thread meanwhile (what the future polls itself, or an executor it
/// drives in `block_in_place`). `None` anywhere else: in a tokio task the group's task spawned
/// onto a runtime's workers, and in the `Drop` of a task cancelled before it started (even when
/// another task's poll cancelled it).
#[must_use]
pub fn task_id() -> Option<TaskId> {
    current().map(|(id, _)| TaskId(id))
}

/// Marks `id` as the task being polled until the guard is dropped.
pub(crate) fn enter(id: TaskId, tag: usize) -> Entered {
    set((id.0, tag))
}

/// The task this thread polls, as its id and its group's tag, if any.
pub(crate) fn current() -> Option<(u64, usize)> {
    CURRENT
        .try_with(Cell::get)
        .ok()
        .filter(|&(_, tag)| tag != 0)
}

/// Marks no task as being polled until the guard is dropped: for dropping the future of a task
/// that never started, which may happen inside another task's poll.
pub(crate) fn outside() -> Entered {
    set((0, 0))
}

fn set(task: (u64, usize)) -> Entered {
    let previous = CURRENT
        .try_with(|current| current.replace(task))
        .unwrap_or((0, 0));
    Entered { previous }
}

/// Restores the task that was being polled before, if any.
pub(crate) struct Entered {
    previous: (u64, usize),
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|current| current.set(self.previous));
    }
}
