//! The error [`Group::wait`](crate::Group::wait) returns.

use std::fmt;

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
