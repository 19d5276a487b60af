//! The error [`Group::wait`](crate::Group::wait) returns.

use std::fmt;

/// Why [`Group::wait`](crate::Group::wait) did not return `Ok(())`: the group was cancelled, or
/// at least one of its tasks panicked, or both.
///
/// The counts are the group's totals over its whole life, as in
/// [`Group::stats`](crate::Group::stats): once a task has panicked, every later `wait()` reports
/// it.
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
/// group.delay(Duration::from_millis(10), async { panic!("boom") });
/// let err = group.wait().await.unwrap_err();
/// assert!(err.is_panicked() && !err.is_cancelled());
/// assert_eq!(err.panicked(), 1);
/// assert_eq!(err.to_string(), "1 task panicked");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitError {
    cancelled: bool,
    panicked: u64,
}

impl WaitError {
    pub(crate) fn new(cancelled: bool, panicked: u64) -> Option<Self> {
        (cancelled || panicked > 0).then_some(Self {
            cancelled,
            panicked,
        })
    }

    /// Whether the group was cancelled.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// Whether any task panicked.
    #[must_use]
    pub fn is_panicked(&self) -> bool {
        self.panicked > 0
    }

    /// How many tasks panicked.
    #[must_use]
    pub fn panicked(&self) -> u64 {
        self.panicked
    }
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.panicked == 1 { "" } else { "s" };
        match (self.cancelled, self.panicked) {
            (true, 0) => f.write_str("group was cancelled"),
            (true, n) => write!(f, "group was cancelled; {n} task{plural} panicked"),
            (false, n) => write!(f, "{n} task{plural} panicked"),
        }
    }
}

impl std::error::Error for WaitError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_counted() {
        assert!(WaitError::new(false, 0).is_none());
        let e = |c, p| WaitError::new(c, p).unwrap().to_string();
        assert_eq!(e(true, 0), "group was cancelled");
        assert_eq!(e(false, 2), "2 tasks panicked");
        assert_eq!(e(true, 1), "group was cancelled; 1 task panicked");
    }
}
