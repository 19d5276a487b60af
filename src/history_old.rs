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

use crate::adaptive::AdaptiveState;

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
    /// What the adaptive controller of the limit is doing, if there is one
    /// ([`Adaptive`](crate::Adaptive)).
    pub adaptive: Option<AdaptiveState>,
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
    /// How late the tasks that started in the window started: from their deadline to the
    /// moment the group took them from its queue. `None` if none started. For a limiter: the
    /// tasks of its groups (a permit has no deadline).
    pub start_lateness: Option<Percentiles>,
    /// How long the tasks that ended in the window ran: from the moment they were taken from
    /// the queue until their future was dropped (completed, panicked or cancelled). `None` if
    /// none ended. For a limiter: the tasks of its groups (a permit's holding time is not
    /// counted).
    pub run_time: Option<Percentiles>,
    /// Tasks waiting for a slot, averaged over the window like `mean_running`: each task that
    /// started counts as waiting from its deadline until it started (for a slot, or for the
    /// timer and the runtime to get to it). A task still waiting counts once it starts, so
    /// a stall shows in [`History::waiting`] first and here when it ends.
    pub mean_waiting: f64,
}

/// The 50th and 99th percentiles and the maximum of a set of durations, from a histogram.
///
/// The histogram has two bins per power of two from 1.024 µs to 2^40 ns (18.3 minutes), one
/// bin below and one above. A percentile is placed within its bin by its rank, between the
/// observed minimum and maximum, so it is always in the same bin as the exact percentile
/// (within a factor of 1.5 of it), exact when all durations are equal, and the maximum when
/// its rank is the last; `max` is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Percentiles {
    /// Half of the durations were at most about this.
    pub p50: Duration,
    /// 99 in 100 of the durations were at most about this.
    pub p99: Duration,
    /// The longest.
    pub max: Duration,
    /// How many durations.
    pub count: u64,
}

/// One step's counts. The counts are `u32`s, which keeps a bucket at 40 bytes. They saturate: it takes 4.29 billion
/// events in one bucket, 143 million a second through a 30 s bucket, while each event takes
/// the group's (or limiter's) one lock.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Running integrated over the time covered so far, in task-nanoseconds. Saturates, which
    /// takes some 600 million tasks running through a whole 30 s bucket.
    busy: u64,
    /// Tasks waiting (from their deadline until they started) integrated over this bucket's
    /// time, in task-nanoseconds, for the tasks that have started. Saturates.
    waited: u64,
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
    /// Beside each bucket, its durations, once it has one: a step in which no task started or
    /// ended holds no histogram. A step's histogram goes when its bucket is reused or rolls
    /// off, which happens at the next event or read: a group that falls silent keeps at most
    /// `3 * SLOTS` of them (17 KB) until then.
    detail: [Option<Box<Detail>>; SLOTS],
}

/// One step's durations.
#[derive(Debug, Clone)]
struct Detail {
    /// Start lateness of the tasks that started in the step.
    lateness: Histogram,
    /// Run time of the tasks that ended in the step.
    run: Histogram,
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

    /// A task started (a limiter: a slot was taken) at `now`; `deadline`: the task's, if it
    /// has one (a limiter's permit has none). A task's wait, from its deadline to `now`, is
    /// spread over the steps it covers: at most [`SLOTS`] buckets a ring.
    pub(crate) fn start(&mut self, now: u64, deadline: Option<u64>) {
        let log = self.log_at(now);
        log.running += 1;
        let peak = peak_of(log.running);
        for ring in &mut log.rings {
            let bucket = ring.newest();
            bucket.started = bucket.started.saturating_add(1);
            bucket.peak = bucket.peak.max(peak);
        }
        if let Some(deadline) = deadline {
            log.late(now, deadline);
        }
    }

    /// A running task of a group ended with `outcome` at `now`, having run for `run`
    /// nanoseconds.
    pub(crate) fn end(&mut self, now: u64, outcome: &Outcome, run: u64) {
        self.free_with(now, Some(run), |bucket| match outcome {
            Outcome::Completed => bump(&mut bucket.completed),
            Outcome::Panicked => bump(&mut bucket.panicked),
            Outcome::Cancelled => bump(&mut bucket.cancelled),
        });
    }

    /// A limiter's slot was freed at `now`: a task of one of its groups ended, after running
    /// for `run` nanoseconds, or a permit was given back (`None`). Counts no outcome.
    pub(crate) fn finish(&mut self, now: u64, run: Option<u64>) {
        self.free_with(now, run, |_| {});
    }

    /// One fewer running at `now`; `count` records why in each ring's newest bucket, and
    /// `run` how long the task ran, if that counts.
    fn free_with(&mut self, now: u64, run: Option<u64>, count: impl Fn(&mut Bucket)) {
        let log = self.log_at(now);
        log.running = log.running.saturating_sub(1);
        let run = run.map(|run| (run, bin(run)));
        for ring in &mut log.rings {
            let slot = ring.newest_slot();
            let bucket = &mut ring.buckets[slot];
            bump(&mut bucket.freed);
            count(bucket);
            if let Some((run, bin)) = run {
                ring.detail(slot).run.record_in(bin, run);
            }
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
            start_lateness: None,
            run_time: None,
            mean_waiting: 0.0,
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

    /// A task due at `deadline` began at `now`: its lateness and its wait, spread over the
    /// steps it covers (at most [`SLOTS`] buckets a ring).
    fn late(&mut self, now: u64, deadline: u64) {
        let lateness = now.saturating_sub(deadline);
        let bin = bin(lateness);
        for ring in &mut self.rings {
            ring.wait(deadline, now);
            let slot = ring.newest_slot();
            ring.detail(slot).lateness.record_in(bin, lateness);
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
            detail: Default::default(),
        }
    }

    /// The durations of the step at `slot`, made empty if it had none.
    fn detail(&mut self, slot: usize) -> &mut Detail {
        self.detail[slot].get_or_insert_with(|| {
            Box::new(Detail {
                lateness: Histogram::EMPTY,
                run: Histogram::EMPTY,
            })
        })
    }

    fn newest_slot(&self) -> usize {
        self.current as usize % SLOTS
    }

    fn newest(&mut self) -> &mut Bucket {
        &mut self.buckets[self.newest_slot()]
    }

    /// A task waited from `deadline` to `now`: adds what of that lies in the steps kept to
    /// each step's `waited`.
    fn wait(&mut self, deadline: u64, now: u64) {
        if deadline >= self.current.saturating_mul(self.width) {
            // The whole wait is in the current step (the common case): no division.
            let bucket = self.newest();
            bucket.waited = bucket.waited.saturating_add(now.saturating_sub(deadline));
            return;
        }
        let first = self.current.saturating_sub(SLOTS as u64 - 1);
        let from = (deadline / self.width).max(first);
        let to = (now / self.width).min(self.current);
        for step in from..=to {
            let start = deadline.max(step * self.width);
            let end = now.min((step + 1).saturating_mul(self.width));
            if end > start {
                let bucket = &mut self.buckets[step as usize % SLOTS];
                bucket.waited = bucket.waited.saturating_add(end - start);
            }
        }
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
            let slot = step as usize % SLOTS;
            self.buckets[slot] = Bucket {
                peak,
                busy: running.saturating_mul(covered),
                ..Bucket::default()
            };
            self.detail[slot] = None;
        }
        self.current = target;
    }

    /// The window of `span` seconds as of `now`, no earlier than the newest bucket.
    fn window(&self, span: u64, now: u64) -> Window {
        let mut window = Window::empty(Duration::from_secs(span));
        let mut peak = 0;
        let mut busy = 0u128;
        let mut waited = 0u128;
        let mut lateness = Histogram::EMPTY;
        let mut run = Histogram::EMPTY;
        for (b, detail) in self.buckets.iter().zip(&self.detail) {
            if let Some(detail) = detail {
                lateness.merge(&detail.lateness);
                run.merge(&detail.run);
            }
            waited += u128::from(b.waited);
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
            window.mean_waiting = waited as f64 / covered as f64;
        }
        window.start_lateness = lateness.percentiles();
        window.run_time = run.percentiles();
        window
    }
}

// ===== Histogram =====

/// Bins of a [`Histogram`]: one below 2^10 ns, two for each power of two up to 2^40 ns, and one
/// above.
const BINS: usize = 62;

/// The lowest power of two with bins of its own, and the first above them.
const LOW: u32 = 10;
const HIGH: u32 = 40;

/// Durations in nanoseconds, counted in [`BINS`] bins, with the least and the greatest.
#[derive(Debug, Clone)]
struct Histogram {
    counts: [u32; BINS],
    min: u64,
    max: u64,
}

/// The bin of `nanos`.
fn bin(nanos: u64) -> usize {
    if nanos < 1 << LOW {
        return 0;
    }
    let power = nanos.ilog2();
    if power >= HIGH {
        return BINS - 1;
    }
    let half = ((nanos >> (power - 1)) & 1) as usize;
    1 + (power - LOW) as usize * 2 + half
}

/// The durations bin `b` holds: `[low, high)`, the last one up to `u64::MAX`.
fn bin_range(b: usize) -> (u64, u64) {
    match b {
        0 => (0, 1 << LOW),
        b if b == BINS - 1 => (1 << HIGH, u64::MAX),
        b => {
            let power = LOW + (b as u32 - 1) / 2;
            let half = 1u64 << (power - 1);
            let low = (1u64 << power) + (b as u64 - 1) % 2 * half;
            (low, low + half)
        }
    }
}

impl Histogram {
    const EMPTY: Self = Self {
        counts: [0; BINS],
        min: u64::MAX,
        max: 0,
    };

    /// Counts `nanos`, whose bin is `bin`.
    fn record_in(&mut self, bin: usize, nanos: u64) {
        bump(&mut self.counts[bin]);
        self.min = self.min.min(nanos);
        self.max = self.max.max(nanos);
    }

    fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The duration of rank `ceil(q * count)`: placed in its bin by its rank among the bin's
    /// durations, within the part of the bin between `min` and `max`.
    fn quantile(&self, q: f64, count: u64) -> u64 {
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut below = 0u64;
        for (b, &n) in self.counts.iter().enumerate() {
            let n = u64::from(n);
            if n == 0 || below + n < rank {
                below += n;
                continue;
            }
            // The part of the bin the durations can be in, and the rank's share of it: the
            // last of the bin's durations at its top, so the greatest rank is the maximum.
            let (low, high) = bin_range(b);
            let (low, top) = (low.max(self.min), (high - 1).min(self.max));
            let share = (rank - below) as f64 / n as f64;
            let guess = low as f64 + top.saturating_sub(low) as f64 * share;
            return (guess as u64).clamp(low, top.max(low));
        }
        self.max
    }

    fn percentiles(&self) -> Option<Percentiles> {
        let count: u64 = self.counts.iter().map(|&n| u64::from(n)).sum();
        (count > 0).then(|| Percentiles {
            p50: Duration::from_nanos(self.quantile(0.50, count)),
            p99: Duration::from_nanos(self.quantile(0.99, count)),
            max: Duration::from_nanos(self.max),
            count,
        })
    }
}

/// `n` starts with no deadline at `now`, or `n` slots freed with no run time: what `n` calls
/// of [`Activity::start`] or [`Activity::finish`] do, in one (for the differential test's
/// saturation cases).
impl Activity {
    pub(crate) fn start_many(&mut self, now: u64, n: usize) {
        let log = self.log_at(now);
        log.running = log.running.saturating_add(n);
        let peak = peak_of(log.running);
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        for ring in &mut log.rings {
            let bucket = ring.newest();
            bucket.started = bucket.started.saturating_add(n);
            bucket.peak = bucket.peak.max(peak);
        }
    }

    pub(crate) fn finish_many(&mut self, now: u64, n: usize) {
        let log = self.log_at(now);
        log.running = log.running.saturating_sub(n);
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        for ring in &mut log.rings {
            let bucket = ring.newest();
            bucket.freed = bucket.freed.saturating_add(n);
        }
    }
}
