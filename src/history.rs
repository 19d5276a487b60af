//! [`History`]: what a group or limiter did over the last 10 s, 1 min and 5 min, for a
//! dashboard.
//!
//! Kept from events as they happen (a task starts, a task ends), with no sampling task: the
//! running count is integrated over time into buckets. Each window keeps its own ring of
//! [`SLOTS`] buckets a tenth of its span wide (1 s, 6 s and 30 s), so a history holds 33
//! buckets whatever the load and however far apart its events are, and nothing at all until
//! its first event. Each event touches one bucket per ring; moving past a gap clears at most
//! a whole ring, however long the gap. Times are the crate's deadline keys (nanoseconds on one
//! process-wide clock); a bucket covers the keys `[k * width, (k + 1) * width)`.
//!
//! A time earlier than one already seen (another thread's clock read a moment before) counts
//! in the newest bucket: time never runs backwards here.

use std::time::Duration;

const SECOND: u64 = 1_000_000_000;

/// The trailing windows a [`History`] reports, in seconds.
const WINDOWS: [u64; 3] = [10, 60, 300];

/// How many buckets a window keeps: the ten whole tenths of its span before now, and the
/// current one.
const SLOTS: usize = 11;

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

/// Activity over one trailing window, at a resolution of a tenth of its `span`.
///
/// The clock is cut into steps of `span / 10` (1 s for the 10 s window, 6 s for the minute,
/// 30 s for the five minutes). A window covers the current step so far and the ten whole steps
/// before it: at least `span`, and less than `span` and a tenth. Counts and peaks are exact for
/// that stretch of time, and `mean_running` is the running count averaged over exactly that
/// stretch.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Window {
    /// How far back the window reaches: at least this far, and less than a tenth further.
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

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    started: u64,
    completed: u64,
    /// The most running at any moment of this bucket.
    peak: usize,
    /// Running integrated over the time covered so far, in task-nanoseconds. Saturates, which
    /// takes some 600 million tasks running through a whole 30 s bucket.
    busy: u64,
}

/// One window's buckets.
#[derive(Debug, Clone)]
struct Ring {
    /// How long a bucket is, in nanoseconds: a tenth of the window's span.
    width: u64,
    /// The step (key divided by `width`) of the newest bucket. The bucket of step `s` sits at
    /// `s % SLOTS`; the ring holds steps `current - SLOTS + 1 ..= current`, and the steps
    /// before the first event as empty buckets.
    current: u64,
    buckets: [Bucket; SLOTS],
}

/// What an [`Activity`] keeps once it has seen an event.
#[derive(Debug, Clone)]
struct Log {
    rings: [Ring; 3],
    running: usize,
    /// Up to when `busy` has been integrated: the latest time seen.
    last: u64,
}

/// The event log behind a [`History`]. Holds nothing until the first event, then a fixed
/// [`Log`].
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    log: Option<Box<Log>>,
}

// ===== impl Activity =====

impl Activity {
    pub(crate) fn new() -> Self {
        Self { log: None }
    }

    /// The log, brought up to `now`, started at `now` if this is the first event.
    fn log_at(&mut self, now: u64) -> &mut Log {
        let log = self.log.get_or_insert_with(|| Box::new(Log::new(now)));
        log.advance(now);
        log
    }

    /// A task started at `now`.
    pub(crate) fn start(&mut self, now: u64) {
        let log = self.log_at(now);
        log.running += 1;
        let running = log.running;
        for ring in &mut log.rings {
            let bucket = ring.newest();
            bucket.started += 1;
            bucket.peak = bucket.peak.max(running);
        }
    }

    /// A running task ended at `now`.
    pub(crate) fn finish(&mut self, now: u64) {
        let log = self.log_at(now);
        log.running = log.running.saturating_sub(1);
        for ring in &mut log.rings {
            ring.newest().completed += 1;
        }
    }

    /// The windows as of `now`.
    pub(crate) fn windows(&mut self, now: u64) -> [Window; 3] {
        match &mut self.log {
            Some(log) => {
                log.advance(now);
                std::array::from_fn(|i| log.rings[i].window(WINDOWS[i], log.last))
            }
            None => WINDOWS.map(|span| Window {
                span: Duration::from_secs(span),
                peak_running: 0,
                mean_running: 0.0,
                started: 0,
                completed: 0,
            }),
        }
    }
}

// ===== impl Log =====

impl Log {
    fn new(now: u64) -> Self {
        Self {
            rings: WINDOWS.map(|span| Ring::new(span * SECOND / (SLOTS as u64 - 1), now)),
            running: 0,
            last: now,
        }
    }

    /// Integrates the running count up to `now` and rolls old buckets off. At most `SLOTS`
    /// buckets per ring, however far `now` is.
    fn advance(&mut self, now: u64) {
        if now <= self.last {
            return;
        }
        for ring in &mut self.rings {
            ring.advance(self.last, now, self.running);
        }
        self.last = now;
    }
}

// ===== impl Ring =====

impl Ring {
    fn new(width: u64, now: u64) -> Self {
        Self {
            width,
            current: now / width,
            buckets: [Bucket::default(); SLOTS],
        }
    }

    fn newest(&mut self) -> &mut Bucket {
        &mut self.buckets[self.current as usize % SLOTS]
    }

    /// Integrates `running` from `from` (in the current step) to `now`, later.
    fn advance(&mut self, from: u64, now: u64, running: usize) {
        let peak = running;
        let running = running as u64;
        let target = now / self.width;
        let end = now.min((self.current + 1).saturating_mul(self.width));
        let bucket = self.newest();
        bucket.busy = bucket
            .busy
            .saturating_add(running.saturating_mul(end - from));
        if target == self.current {
            return;
        }
        // Steps wholly inside a long gap are overwritten anyway: start at the oldest one kept.
        let first = (self.current + 1).max(target.saturating_sub(SLOTS as u64 - 1));
        for step in first..=target {
            let covered = if step == target {
                now - step * self.width
            } else {
                self.width
            };
            self.buckets[step as usize % SLOTS] = Bucket {
                started: 0,
                completed: 0,
                peak,
                busy: running.saturating_mul(covered),
            };
        }
        self.current = target;
    }

    /// The window of `span` seconds as of `now`, no earlier than the newest bucket.
    fn window(&self, span: u64, now: u64) -> Window {
        let mut window = Window {
            span: Duration::from_secs(span),
            peak_running: 0,
            mean_running: 0.0,
            started: 0,
            completed: 0,
        };
        let mut busy = 0u128;
        for b in &self.buckets {
            window.peak_running = window.peak_running.max(b.peak);
            window.started += b.started;
            window.completed += b.completed;
            busy += u128::from(b.busy);
        }
        // The whole steps kept before the current one, and the part of this one gone by.
        let covered = now - self.current.saturating_sub(SLOTS as u64 - 1) * self.width;
        if covered > 0 {
            window.mean_running = busy as f64 / covered as f64;
        }
        window
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
        // Ten whole steps and the current one: 10 + 0, 60 + 2 and 300 + 20 seconds back.
        let [w10, w60, w300] = a.windows(T0 + 10_000 * SECOND);
        assert_eq!((w10.started, w60.started, w300.started), (10, 62, 320));
        // A long silence skips straight ahead.
        let [w10, w60, w300] = a.windows(T0 + 1_000_000 * SECOND);
        assert_eq!((w10.started, w60.started, w300.started), (0, 0, 0));
    }

    /// Issue 9, item 4: what a history holds is one fixed `Log` from its first event on,
    /// whatever the gaps between events; nothing before.
    #[test]
    fn history_memory_per_group_is_fixed() {
        let mut a = Activity::new();
        a.windows(T0);
        assert!(a.log.is_none(), "reading an unused history keeps nothing");
        a.start(T0);
        a.finish(T0 + 1);
        a.start(T0 + 300 * SECOND);
        a.finish(T0 + 3_600 * SECOND);
        a.windows(u64::MAX);
        // The heap holds exactly one `Log`: fixed arrays, no collection that could grow.
        assert!(
            size_of::<Log>() <= 1_200,
            "a history holds {} bytes",
            size_of::<Log>()
        );
        assert_eq!(size_of::<Activity>(), size_of::<usize>());
    }

    #[test]
    fn times_that_run_backwards_count_in_the_newest_bucket() {
        let mut a = Activity::new();
        a.start(T0 + 20 * SECOND);
        a.start(T0 + 5 * SECOND);
        a.finish(T0);
        let [w10, ..] = a.windows(T0);
        assert_eq!((w10.started, w10.completed, w10.peak_running), (2, 1, 2));
        assert_eq!(w10.mean_running, 0.0, "no time has gone by");
    }

    // ===== against a model that keeps every event =====

    /// One window as a model computes it from every event: counts, peak, task-nanoseconds
    /// and the time covered.
    fn model(events: &[(u64, bool)], now: u64, span: u64) -> (u64, u64, usize, u128, u64) {
        let width = span * SECOND / 10;
        let start = (now / width).saturating_sub(10) * width;
        let (mut started, mut completed, mut busy) = (0, 0, 0u128);
        let mut running = 0usize;
        let mut peak = 0;
        // Time integrated up to, once inside the window.
        let mut t = start;
        for &(at, is_start) in events {
            if at < start {
                running = if is_start {
                    running + 1
                } else {
                    running.saturating_sub(1)
                };
                peak = running;
                continue;
            }
            busy += running as u128 * u128::from(at - t);
            t = at;
            if is_start {
                running += 1;
                started += 1;
                peak = peak.max(running);
            } else {
                running = running.saturating_sub(1);
                completed += 1;
            }
        }
        busy += running as u128 * u128::from(now - t);
        (started, completed, peak, busy, now - start)
    }

    fn check(a: &mut Activity, events: &[(u64, bool)], now: u64) {
        let windows = a.windows(now);
        for (window, span) in windows.iter().zip(WINDOWS) {
            let (started, completed, peak, busy, covered) = model(events, now, span);
            let mean = busy as f64 / covered as f64;
            assert_eq!(
                (window.started, window.completed, window.peak_running),
                (started, completed, peak),
                "{span} s window at {now}"
            );
            assert_eq!(window.mean_running, mean, "{span} s window at {now}");
        }
    }

    use proptest::prelude::*;

    proptest! {
        /// Every window, after every event and after a final gap, agrees with the model.
        #[test]
        fn windows_agree_with_a_model_that_keeps_every_event(
            steps in prop::collection::vec(
                (
                    prop_oneof![
                        0..2 * SECOND,
                        0..40 * SECOND,
                        0..700 * SECOND,
                        Just(1_000_000 * SECOND),
                    ],
                    prop::bool::weighted(0.6),
                ),
                0..60,
            ),
            last_gap in 0..700 * SECOND,
        ) {
            let mut a = Activity::new();
            let mut events = Vec::new();
            let mut now = T0;
            for (gap, is_start) in steps {
                now += gap;
                if is_start {
                    a.start(now);
                } else {
                    a.finish(now);
                }
                events.push((now, is_start));
                check(&mut a, &events, now);
            }
            check(&mut a, &events, now + last_gap);
        }
    }
}
