//! [`History`]: what a group or limiter did over the last 10 s, 1 min and 5 min, for a
//! dashboard.
//!
//! Kept from events as they happen (a task starts, a task ends), with no sampling task: the
//! running count is integrated over time into one-second buckets, of which the last 300 are
//! kept, so memory is bounded however long the program runs. Times are the crate's deadline
//! keys (nanoseconds on one process-wide clock).

use std::collections::VecDeque;
use std::time::Duration;

const SECOND: u64 = 1_000_000_000;

/// How many one-second buckets are kept: the longest window, and the current second.
const BUCKETS: u64 = 301;

/// The trailing windows a [`History`] reports, in seconds.
const WINDOWS: [u64; 3] = [10, 60, 300];

/// A snapshot of a group's or limiter's activity.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::Group;
/// use std::time::Duration;
///
/// let group = Group::builder().max_concurrent(2).build();
/// for _ in 0..4 {
///     group.delay(Duration::ZERO, async {
///         tokio::time::sleep(Duration::from_secs(5)).await;
///     });
/// }
/// group.wait().await.unwrap(); // two run 0-5 s, two 5-10 s
/// let h = group.history();
/// assert_eq!((h.running, h.limit), (0, 2));
/// let last_10s = &h.windows[0];
/// assert_eq!(last_10s.span, Duration::from_secs(10));
/// assert_eq!((last_10s.started, last_10s.completed, last_10s.peak_running), (4, 4, 2));
/// // 20 task-seconds over 10 to 11 seconds (one-second resolution).
/// assert!(last_10s.mean_running > 1.8 && last_10s.mean_running <= 2.0);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct History {
    /// Running now.
    pub running: usize,
    /// Waiting for a slot now. For a group: pending tasks that are due. For a limiter: groups
    /// (once each) and `acquire()` callers in line.
    pub waiting: usize,
    /// The limit now (`usize::MAX` for an uncapped group).
    pub limit: usize,
    /// The last 10 seconds, 1 minute and 5 minutes, in that order.
    pub windows: [Window; 3],
}

/// Activity over one trailing window, at one-second resolution: the window covers the
/// current second so far and the `span` whole seconds before it, so at least `span`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Window {
    /// How far back the window reaches.
    pub span: Duration,
    /// The most tasks running at once.
    pub peak_running: usize,
    /// Tasks running, averaged over time.
    pub mean_running: f64,
    /// Tasks started.
    pub started: u64,
    /// Tasks that ended (completed, panicked or cancelled while running).
    pub completed: u64,
}

#[derive(Debug, Clone)]
struct Bucket {
    /// Which second (the key divided by a second).
    second: u64,
    started: u64,
    completed: u64,
    /// The most running at any moment of this second.
    peak: usize,
    /// Running integrated over the time covered so far, in task-nanoseconds.
    busy: u128,
}

/// The event log behind a [`History`].
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    buckets: VecDeque<Bucket>,
    running: usize,
    /// Up to when `busy` has been integrated.
    last: Option<u64>,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            buckets: VecDeque::new(),
            running: 0,
            last: None,
        }
    }

    /// Integrates the running count up to `now` and rolls old buckets off.
    fn advance(&mut self, now: u64) {
        let mut t = match self.last {
            Some(last) if now > last => last.max(now.saturating_sub(BUCKETS * SECOND)),
            Some(_) => return,
            None => now,
        };
        self.bucket(t / SECOND);
        while t < now {
            let second = t / SECOND;
            let end = now.min((second + 1).saturating_mul(SECOND));
            let running = self.running;
            let bucket = self.bucket(second);
            bucket.busy += running as u128 * u128::from(end - t);
            t = end;
        }
        self.bucket(now / SECOND);
        self.last = Some(now);
        let oldest = (now / SECOND).saturating_sub(BUCKETS - 1);
        while self.buckets.front().is_some_and(|b| b.second < oldest) {
            self.buckets.pop_front();
        }
    }

    /// The bucket for `second`, created (at the current level) if it is new.
    fn bucket(&mut self, second: u64) -> &mut Bucket {
        if self.buckets.back().is_none_or(|b| b.second < second) {
            self.buckets.push_back(Bucket {
                second,
                started: 0,
                completed: 0,
                peak: self.running,
                busy: 0,
            });
        }
        self.buckets.back_mut().expect("just ensured")
    }

    /// A task started at `now`.
    pub(crate) fn start(&mut self, now: u64) {
        self.advance(now);
        self.running += 1;
        let running = self.running;
        let bucket = self.bucket(now / SECOND);
        bucket.started += 1;
        bucket.peak = bucket.peak.max(running);
    }

    /// A running task ended at `now`.
    pub(crate) fn finish(&mut self, now: u64) {
        self.advance(now);
        self.running = self.running.saturating_sub(1);
        self.bucket(now / SECOND).completed += 1;
    }

    /// The windows as of `now`.
    pub(crate) fn windows(&mut self, now: u64) -> [Window; 3] {
        self.advance(now);
        let current = now / SECOND;
        WINDOWS.map(|span| {
            let first = current.saturating_sub(span);
            let mut window = Window {
                span: Duration::from_secs(span),
                peak_running: 0,
                mean_running: 0.0,
                started: 0,
                completed: 0,
            };
            let mut busy = 0u128;
            for b in self.buckets.iter().filter(|b| b.second >= first) {
                window.peak_running = window.peak_running.max(b.peak);
                window.started += b.started;
                window.completed += b.completed;
                busy += b.busy;
            }
            // Whole seconds before the current one, and the part of this one gone by.
            let covered = (current - first) * SECOND + now % SECOND;
            if covered > 0 {
                window.mean_running = busy as f64 / covered as f64;
            }
            window
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000 * SECOND;

    #[test]
    fn counts_peaks_and_time_weighted_means() {
        let mut a = Activity::new();
        // 0-4 s: one task; 2-4 s: a second one; both end at 4 s.
        a.start(T0);
        a.start(T0 + 2 * SECOND);
        a.finish(T0 + 4 * SECOND);
        a.finish(T0 + 4 * SECOND);
        let [w10, w60, _] = a.windows(T0 + 10 * SECOND);
        assert_eq!((w10.started, w10.completed, w10.peak_running), (2, 2, 2));
        // 1 * 4 s + 1 * 2 s = 6 task-seconds over 10 s.
        assert!(
            (w10.mean_running - 0.6).abs() < 1e-9,
            "{}",
            w10.mean_running
        );
        assert_eq!((w60.started, w60.peak_running), (2, 2));
    }

    #[test]
    fn windows_roll_off() {
        let mut a = Activity::new();
        a.start(T0);
        a.finish(T0 + SECOND / 2);
        let [w10, w60, w300] = a.windows(T0 + 30 * SECOND);
        assert_eq!((w10.started, w10.peak_running), (0, 0), "gone from 10 s");
        assert_eq!(w10.mean_running, 0.0);
        assert_eq!((w60.started, w60.completed, w60.peak_running), (1, 1, 1));
        assert_eq!(w300.started, 1);
        let [_, w60, w300] = a.windows(T0 + 100 * SECOND);
        assert_eq!(w60.started, 0, "gone from 1 min");
        assert_eq!(w300.started, 1);
        let [_, _, w300] = a.windows(T0 + 400 * SECOND);
        assert_eq!(w300.started, 0, "gone from 5 min");
    }

    #[test]
    fn a_task_running_across_the_window_counts_in_the_mean_and_peak() {
        let mut a = Activity::new();
        a.start(T0);
        let [w10, ..] = a.windows(T0 + 100 * SECOND);
        assert_eq!(
            (w10.started, w10.peak_running),
            (0, 1),
            "started long ago, still running"
        );
        assert!((w10.mean_running - 1.0).abs() < 1e-9);
    }

    #[test]
    fn memory_stays_bounded_however_long_the_run() {
        let mut a = Activity::new();
        for s in 0..10_000 {
            a.start(T0 + s * SECOND);
            a.finish(T0 + s * SECOND + SECOND / 2);
        }
        assert!(a.buckets.len() as u64 <= BUCKETS);
        // A long silence skips straight ahead.
        a.windows(T0 + 1_000_000 * SECOND);
        assert!(a.buckets.len() as u64 <= BUCKETS);
    }
}
