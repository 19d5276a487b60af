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

use crate::task::Outcome;

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
/// assert_eq!((last_10s.started, last_10s.ended, last_10s.peak_running), (4, 4, 2));
/// assert_eq!((last_10s.completed, last_10s.panicked, last_10s.cancelled), (4, 0, 0));
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
///
/// The words mean what they mean in [`Stats`](crate::Stats): a task *completed* when its future
/// returned, and *ended* however it ended, so in a group's window
/// `ended == completed + panicked + cancelled`. A window counts only tasks that started: a
/// task cancelled while pending never ran, and counts in [`Stats::cancelled`] but in no
/// window.
///
/// A [`Limiter`](crate::Limiter)'s history counts slots rather than tasks (a slot may be held
/// by a permit): its windows count slots taken in `started` and slots freed in
/// [`freed`](Window::freed), and leave `ended`, `completed`, `panicked` and `cancelled` at 0.
///
/// [`Stats::cancelled`]: crate::Stats::cancelled
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Window {
    /// How far back the window reaches: at least this far, and less than a tenth further.
    pub span: Duration,
    /// The most tasks running at once (for a limiter: slots taken at once).
    pub peak_running: usize,
    /// Tasks running, averaged over time (for a limiter: slots taken).
    pub mean_running: f64,
    /// Tasks started. For a limiter: slots taken, by tasks of its groups and by permits.
    pub started: u64,
    /// Tasks that ended, however they ended: `completed + panicked + cancelled`. 0 for a
    /// limiter, which counts slots ([`freed`](Window::freed)).
    pub ended: u64,
    /// Tasks whose future returned, as in [`Stats::completed`](crate::Stats::completed).
    pub completed: u64,
    /// Tasks whose future (or its `Drop`) panicked, as in
    /// [`Stats::panicked`](crate::Stats::panicked).
    pub panicked: u64,
    /// Tasks cancelled while running (by the group, or by their handle), as in
    /// [`Stats::cancelled`](crate::Stats::cancelled) less the tasks cancelled before they
    /// started.
    pub cancelled: u64,
    /// Slots freed. For a group, each task that ended frees its slot of the group's cap, so
    /// this equals `ended`. For a limiter: slots freed, by tasks of its groups that ended and
    /// by permits given back.
    pub freed: u64,
}

/// One step's counts. The counts are `u32`s, which keeps a bucket at 32 bytes (and a group's
/// history at its size before outcomes were counted). They saturate: it takes 4.29 billion
/// events in one bucket, 143 million a second through a 30 s bucket, while each event takes
/// the group's (or limiter's) one lock.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Running integrated over the time covered so far, in task-nanoseconds. Saturates, which
    /// takes some 600 million tasks running through a whole 30 s bucket.
    busy: u64,
    /// The most running at any moment of this bucket (saturates at `u32::MAX`).
    peak: u32,
    started: u32,
    /// Slots freed: every end of a task, and for a limiter every permit given back.
    freed: u32,
    completed: u32,
    panicked: u32,
    cancelled: u32,
}

/// `n` plus one, saturating.
fn bump(n: &mut u32) {
    *n = n.saturating_add(1);
}

/// `running` as a bucket's peak.
fn peak_of(running: usize) -> u32 {
    u32::try_from(running).unwrap_or(u32::MAX)
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

    /// A task started (a limiter: a slot was taken) at `now`.
    pub(crate) fn start(&mut self, now: u64) {
        let log = self.log_at(now);
        log.running += 1;
        let peak = peak_of(log.running);
        for ring in &mut log.rings {
            let bucket = ring.newest();
            bucket.started = bucket.started.saturating_add(1);
            bucket.peak = bucket.peak.max(peak);
        }
    }

    /// A running task of a group ended with `outcome` at `now`.
    pub(crate) fn end(&mut self, now: u64, outcome: &Outcome) {
        self.free_with(now, |bucket| match outcome {
            Outcome::Completed => bump(&mut bucket.completed),
            Outcome::Panicked => bump(&mut bucket.panicked),
            Outcome::Cancelled => bump(&mut bucket.cancelled),
        });
    }

    /// A limiter's slot was freed at `now`: a task of one of its groups ended, or a permit
    /// was given back. Counts no outcome.
    pub(crate) fn finish(&mut self, now: u64) {
        self.free_with(now, |_| {});
    }

    /// One fewer running at `now`; `count` records why in each ring's newest bucket.
    fn free_with(&mut self, now: u64, count: impl Fn(&mut Bucket)) {
        let log = self.log_at(now);
        log.running = log.running.saturating_sub(1);
        for ring in &mut log.rings {
            let bucket = ring.newest();
            bump(&mut bucket.freed);
            count(bucket);
        }
    }

    /// The windows as of `now`.
    pub(crate) fn windows(&mut self, now: u64) -> [Window; 3] {
        match &mut self.log {
            Some(log) => {
                log.advance(now);
                std::array::from_fn(|i| log.rings[i].window(WINDOWS[i], log.last))
            }
            None => WINDOWS.map(|span| Window::empty(Duration::from_secs(span))),
        }
    }
}

// ===== impl Window =====

impl Window {
    /// A window of `span` in which nothing happened.
    fn empty(span: Duration) -> Self {
        Self {
            span,
            peak_running: 0,
            mean_running: 0.0,
            started: 0,
            ended: 0,
            completed: 0,
            panicked: 0,
            cancelled: 0,
            freed: 0,
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
        let peak = peak_of(running);
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
                peak,
                busy: running.saturating_mul(covered),
                ..Bucket::default()
            };
        }
        self.current = target;
    }

    /// The window of `span` seconds as of `now`, no earlier than the newest bucket.
    fn window(&self, span: u64, now: u64) -> Window {
        let mut window = Window::empty(Duration::from_secs(span));
        let mut peak = 0;
        let mut busy = 0u128;
        for b in &self.buckets {
            peak = peak.max(b.peak);
            window.started += u64::from(b.started);
            window.freed += u64::from(b.freed);
            window.completed += u64::from(b.completed);
            window.panicked += u64::from(b.panicked);
            window.cancelled += u64::from(b.cancelled);
            busy += u128::from(b.busy);
        }
        window.peak_running = peak as usize;
        window.ended = window.completed + window.panicked + window.cancelled;
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
        a.end(T0 + 4 * SECOND, &Outcome::Completed);
        a.end(T0 + 4 * SECOND, &Outcome::Completed);
        let [w10, w60, _] = a.windows(T0 + 10 * SECOND);
        assert_eq!((w10.started, w10.completed, w10.peak_running), (2, 2, 2));
        assert_eq!((w10.ended, w10.freed), (2, 2));
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
        a.end(T0 + SECOND / 2, &Outcome::Completed);
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
        // Counting outcomes (issue 10) kept a bucket at the 32 bytes it had before.
        assert_eq!(size_of::<Bucket>(), 32);
    }

    #[test]
    fn times_that_run_backwards_count_in_the_newest_bucket() {
        let mut a = Activity::new();
        a.start(T0 + 20 * SECOND);
        a.start(T0 + 5 * SECOND);
        a.end(T0, &Outcome::Completed);
        let [w10, ..] = a.windows(T0);
        assert_eq!((w10.started, w10.completed, w10.peak_running), (2, 1, 2));
        assert_eq!(w10.mean_running, 0.0, "no time has gone by");
    }

    /// Issue 10: a group's window counts each outcome with the meaning `Stats` gives it, and
    /// `ended` is their sum; a limiter's (slots freed, no outcome) counts only `freed`.
    #[test]
    fn window_ended_is_every_end_and_completed_panicked_cancelled_mean_what_stats_say() {
        let mut group = Activity::new();
        for _ in 0..6 {
            group.start(T0);
        }
        for outcome in [
            Outcome::Completed,
            Outcome::Completed,
            Outcome::Completed,
            Outcome::Panicked,
            Outcome::Cancelled,
        ] {
            group.end(T0 + SECOND, &outcome);
        }
        for w in group.windows(T0 + 2 * SECOND) {
            assert_eq!(
                (w.started, w.ended, w.completed, w.panicked, w.cancelled),
                (6, 5, 3, 1, 1),
                "{:?}",
                w.span
            );
            assert_eq!(w.freed, w.ended, "a group frees a slot per task that ends");
        }

        let mut limiter = Activity::new();
        limiter.start(T0);
        limiter.start(T0);
        limiter.finish(T0 + SECOND);
        let [w10, ..] = limiter.windows(T0 + 2 * SECOND);
        assert_eq!((w10.started, w10.freed), (2, 1));
        assert_eq!(
            (w10.ended, w10.completed, w10.panicked, w10.cancelled),
            (0, 0, 0, 0),
            "a limiter counts slots, not tasks"
        );
    }

    // ===== against a model that keeps every event =====

    /// An event: a start, a group's task ending with an outcome, or a limiter's slot freed.
    #[derive(Debug, Clone, Copy)]
    enum Event {
        Start,
        End(Outcome),
        Free,
    }

    /// One window as a model computes it from every event.
    #[derive(Debug, Default, PartialEq)]
    struct Model {
        started: u64,
        freed: u64,
        completed: u64,
        panicked: u64,
        cancelled: u64,
        peak: usize,
        /// Task-nanoseconds.
        busy: u128,
        /// The time covered.
        covered: u64,
    }

    fn model(events: &[(u64, Event)], now: u64, span: u64) -> Model {
        let width = span * SECOND / 10;
        let start = (now / width).saturating_sub(10) * width;
        let mut m = Model::default();
        let mut running = 0usize;
        // Time integrated up to, once inside the window.
        let mut t = start;
        for &(at, event) in events {
            let before = at < start;
            if !before {
                m.busy += running as u128 * u128::from(at - t);
                t = at;
            }
            match event {
                Event::Start => running += 1,
                Event::End(_) | Event::Free => running = running.saturating_sub(1),
            }
            if before {
                m.peak = running;
                continue;
            }
            match event {
                Event::Start => {
                    m.started += 1;
                    m.peak = m.peak.max(running);
                }
                Event::End(outcome) => {
                    m.freed += 1;
                    match outcome {
                        Outcome::Completed => m.completed += 1,
                        Outcome::Panicked => m.panicked += 1,
                        Outcome::Cancelled => m.cancelled += 1,
                    }
                }
                Event::Free => m.freed += 1,
            }
        }
        m.busy += running as u128 * u128::from(now - t);
        m.covered = now - start;
        m
    }

    fn check(a: &mut Activity, events: &[(u64, Event)], now: u64) {
        let windows = a.windows(now);
        for (window, span) in windows.iter().zip(WINDOWS) {
            let m = model(events, now, span);
            let mean = m.busy as f64 / m.covered as f64;
            assert_eq!(
                (
                    window.started,
                    window.freed,
                    window.completed,
                    window.panicked,
                    window.cancelled,
                    window.peak_running
                ),
                (
                    m.started,
                    m.freed,
                    m.completed,
                    m.panicked,
                    m.cancelled,
                    m.peak
                ),
                "{span} s window at {now}"
            );
            assert_eq!(
                window.ended,
                m.completed + m.panicked + m.cancelled,
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
                    prop_oneof![
                        6 => Just(Event::Start),
                        2 => Just(Event::End(Outcome::Completed)),
                        1 => Just(Event::End(Outcome::Panicked)),
                        1 => Just(Event::End(Outcome::Cancelled)),
                        1 => Just(Event::Free),
                    ],
                ),
                0..60,
            ),
            last_gap in 0..700 * SECOND,
        ) {
            let mut a = Activity::new();
            let mut events = Vec::new();
            let mut now = T0;
            for (gap, event) in steps {
                now += gap;
                match event {
                    Event::Start => a.start(now),
                    Event::End(outcome) => a.end(now, &outcome),
                    Event::Free => a.finish(now),
                }
                events.push((now, event));
                check(&mut a, &events, now);
            }
            check(&mut a, &events, now + last_gap);
        }
    }
}
