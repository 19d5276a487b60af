//! The errors [`Group::wait`](crate::Group::wait) and an awaited task return.

use std::any::Any;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use crate::id::TaskId;

/// Why [`Group::wait`](crate::Group::wait) did not return `Ok(())`: the group was cancelled, or
/// tasks panicked since the last `wait()` that reported panics, or both.
///
/// # Each panic is reported once
///
/// A panic is reported by the first `wait()` to return after the task ended, and not again: a
/// later `wait()` returns `Ok(())` (unless the group was cancelled) once the group is idle
/// again. So a long-lived group used in rounds (schedule, wait, schedule, wait) reports each
/// round's panics in that round, not for ever after. If several `wait()`s return at once, one
/// of them reports the panics. [`Group::stats`](crate::Group::stats) keeps the lifetime total.
///
/// A panic that goes to a requester waiting for it (a [`JoinHandle`](crate::JoinHandle) still
/// held, or a [`Results`](crate::Results) not dropped, as the task ends) is reported there, as a
/// [`JoinError`], and not by `wait()`: as with tokio's `JoinSet`, whoever takes a task's result
/// hears of its panic. A panic nobody waits for (a task scheduled with `delay` or `schedule`, or
/// whose handle was dropped) is reported by `wait()`.
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
/// let boom = group.delay(Duration::from_millis(10), async { panic!("boom") });
/// let err = group.wait().await.unwrap_err();
/// assert!(err.is_panicked() && !err.is_cancelled());
/// assert_eq!(err.panicked(), 1);
/// assert_eq!(err.panicked_ids(), [boom.id()]);
/// assert_eq!(err.to_string(), format!("1 task panicked (task {})", boom.id()));
/// // Reported once: the next round starts clean.
/// group.delay(Duration::from_millis(10), async {});
/// assert!(group.wait().await.is_ok());
/// assert_eq!(group.stats().panicked, 1);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitError {
    cancelled: bool,
    panicked: u64,
    ids: Vec<TaskId>,
}

impl WaitError {
    pub(crate) fn new(cancelled: bool, panicked: u64, ids: Vec<TaskId>) -> Option<Self> {
        (cancelled || panicked > 0).then_some(Self {
            cancelled,
            panicked,
            ids,
        })
    }

    /// Whether the group was cancelled.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// Whether any task panicked since the last report.
    #[must_use]
    pub fn is_panicked(&self) -> bool {
        self.panicked > 0
    }

    /// How many tasks panicked since the last report.
    #[must_use]
    pub fn panicked(&self) -> u64 {
        self.panicked
    }

    /// The ids of the first of those tasks (up to 8), in the order they ended.
    #[must_use]
    pub fn panicked_ids(&self) -> &[TaskId] {
        &self.ids
    }
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.panicked == 1 { "" } else { "s" };
        if self.cancelled {
            f.write_str("group was cancelled")?;
            if self.panicked > 0 {
                f.write_str("; ")?;
            }
        }
        if self.panicked > 0 {
            write!(f, "{} task{plural} panicked", self.panicked)?;
            let tasks = if self.ids.len() == 1 { "task" } else { "tasks" };
            write!(f, " ({tasks} ")?;
            for (n, id) in self.ids.iter().enumerate() {
                let sep = if n == 0 { "" } else { ", " };
                write!(f, "{sep}{id}")?;
            }
            if self.panicked > self.ids.len() as u64 {
                f.write_str(", ...")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for WaitError {}

/// Who cancelled a task, as a [`JoinError`] tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CancelledBy {
    /// [`TaskHandle::cancel`](crate::TaskHandle::cancel), before the task started or while it
    /// ran.
    Handle,
    /// The group: [`Group::cancel`](crate::Group::cancel), its cancellation token (or a
    /// parent's), the group's runtime shutting down, or a task scheduled into a group that was
    /// cancelled already.
    Group,
}

/// Why an awaited task gave no output: it was cancelled, or it panicked.
///
/// Returned by a [`JoinHandle`](crate::JoinHandle) and collected by
/// [`Results`](crate::Results), like tokio's `JoinError`: [`is_cancelled`](JoinError::is_cancelled)
/// and [`cancelled_by`](JoinError::cancelled_by) tell a cancellation and who did it;
/// [`into_panic`](JoinError::into_panic) hands the payload back so that
/// [`std::panic::resume_unwind`] can go on with the panic.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::{CancelledBy, Group};
/// use std::time::Duration;
///
/// let group = Group::new();
/// let boom = group.delay_join(Duration::from_secs(1), async { panic!("boom") });
/// let never = group.delay_join(Duration::from_secs(2), async { 7 });
/// never.cancel();
///
/// let err = boom.await.unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.into_panic().downcast_ref::<&str>(), Some(&"boom"));
/// let err = never.await.unwrap_err();
/// assert_eq!(err.cancelled_by(), Some(CancelledBy::Handle));
/// # let _ = group.wait().await;
/// # }
/// ```
pub struct JoinError {
    id: TaskId,
    repr: Repr,
}

enum Repr {
    Cancelled(CancelledBy),
    /// Behind a mutex only so that the error is `Sync`, as error types are expected to be; it
    /// is never contended (the payload is reached through `&mut self` or by value).
    Panic(Mutex<Box<dyn Any + Send>>),
}

impl JoinError {
    pub(crate) fn cancelled(id: TaskId, by: CancelledBy) -> Self {
        Self {
            id,
            repr: Repr::Cancelled(by),
        }
    }

    pub(crate) fn panic(id: TaskId, payload: Box<dyn Any + Send>) -> Self {
        Self {
            id,
            repr: Repr::Panic(Mutex::new(payload)),
        }
    }

    /// The task's id.
    #[must_use]
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Whether the task was cancelled (before it started, or while it ran).
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled(_))
    }

    /// Who cancelled the task; `None` if it panicked.
    #[must_use]
    pub fn cancelled_by(&self) -> Option<CancelledBy> {
        match self.repr {
            Repr::Cancelled(by) => Some(by),
            Repr::Panic(_) => None,
        }
    }

    /// Whether the task panicked (in its future's `poll`, or in the `Drop` of the future or of
    /// its output).
    #[must_use]
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// The panic's payload, for [`std::panic::resume_unwind`].
    ///
    /// # Panics
    ///
    /// If the task did not panic: see [`try_into_panic`](JoinError::try_into_panic).
    #[must_use]
    pub fn into_panic(self) -> Box<dyn Any + Send> {
        self.try_into_panic()
            .expect("JoinError::into_panic on a task that was cancelled, not panicked")
    }

    /// The panic's payload, or the error itself if the task was cancelled.
    ///
    /// # Errors
    ///
    /// `Err(self)` if the task did not panic.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send>, JoinError> {
        match self.repr {
            Repr::Panic(payload) => {
                Ok(payload.into_inner().unwrap_or_else(PoisonError::into_inner))
            }
            Repr::Cancelled(_) => Err(self),
        }
    }

    /// The panic message, if the payload is a string (as `panic!` makes it).
    fn message(&self) -> Option<String> {
        let Repr::Panic(payload) = &self.repr else {
            return None;
        };
        let payload = payload.lock().unwrap_or_else(PoisonError::into_inner);
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled(CancelledBy::Handle) => {
                write!(f, "task {} was cancelled by its handle", self.id)
            }
            Repr::Cancelled(CancelledBy::Group) => {
                write!(f, "task {} was cancelled with its group", self.id)
            }
            Repr::Panic(_) => match self.message() {
                Some(message) => write!(f, "task {} panicked: {message}", self.id),
                None => write!(f, "task {} panicked", self.id),
            },
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("JoinError");
        d.field("id", &self.id);
        match &self.repr {
            Repr::Cancelled(by) => d.field("cancelled_by", by),
            Repr::Panic(_) => d.field("panic", &self.message()),
        };
        d.finish()
    }
}

impl std::error::Error for JoinError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_counted() {
        assert!(WaitError::new(false, 0, Vec::new()).is_none());
        let ids = |n: u64| (0..n).map(TaskId::new).collect::<Vec<_>>();
        let e = |c, p, n| WaitError::new(c, p, ids(n)).unwrap().to_string();
        assert_eq!(e(true, 0, 0), "group was cancelled");
        assert_eq!(e(false, 2, 2), "2 tasks panicked (tasks 0, 1)");
        assert_eq!(
            e(true, 1, 1),
            "group was cancelled; 1 task panicked (task 0)"
        );
        assert_eq!(
            e(false, 9, 8),
            "9 tasks panicked (tasks 0, 1, 2, 3, 4, 5, 6, 7, ...)"
        );
    }
}
