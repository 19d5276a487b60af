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

// The other rings' steps are whole multiples of the first ring's, on the same grid (keys
// divided by the width): what `Log::fold` relies on.
const _: () = {
    let first = WINDOWS[0] * SECOND / (SLOTS as u64 - 1);
    assert!((WINDOWS[1] * SECOND / (SLOTS as u64 - 1)) % first == 0);
    assert!((WINDOWS[2] * SECOND / (SLOTS as u64 - 1)) % first == 0);
};

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

/// The first ring's newest step as the other rings take it in: its events, its whole waits
/// not yet carried, and its durations.
struct Unfolded<'a> {
    /// Its counts (its `busy` is not read: see `busy`).
    events: Bucket,
    waited: u64,
    /// The running count integrated over it so far.
    busy: u64,
    detail: Option<&'a Detail>,
}

impl<'a> Unfolded<'a> {
    /// `ring`'s newest step, with the waits and running integral carried beside it.
    fn newest(ring: &'a Ring, waited: u64, busy: u64) -> Self {
        let slot = ring.newest_slot();
        Self {
            events: ring.buckets[slot],
            waited,
            busy,
            detail: ring.detail[slot].as_deref(),
        }
    }

    /// Adds the step's events, carried waits and carried running integral to `bucket` (not
    /// waits that each ring spread itself).
    fn add_to(&self, bucket: &mut Bucket) {
        let e = &self.events;
        bucket.busy = bucket.busy.saturating_add(self.busy);
        bucket.waited = bucket.waited.saturating_add(self.waited);
        bucket.peak = bucket.peak.max(e.peak);
        bucket.started = bucket.started.saturating_add(e.started);
        bucket.freed = bucket.freed.saturating_add(e.freed);
        bucket.completed = bucket.completed.saturating_add(e.completed);
        bucket.panicked = bucket.panicked.saturating_add(e.panicked);
        bucket.cancelled = bucket.cancelled.saturating_add(e.cancelled);
    }
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
    /// The first key after the newest bucket's step, `(current + 1) * width` (saturated): an
    /// event before it is in the same step, which needs no division to tell.
    edge: u64,
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

impl Detail {
    const EMPTY: Self = Self {
        lateness: Histogram::EMPTY,
        run: Histogram::EMPTY,
    };

    fn merge(&mut self, other: &Detail) {
        self.lateness.merge(&other.lateness);
        self.run.merge(&other.run);
    }
}

/// What an [`Activity`] keeps once it has seen an event.
#[derive(Debug, Clone)]
struct Log {
    /// The 10 s window's ring (1 s steps) first: every event is counted there, in its newest
    /// step, and that step's counts and durations are added to the other rings' newest steps
    /// when it ends ([`Log::fold`]), or to a window read before then. A step of the others
    /// (6 s, 30 s) holds whole steps of the first, so each event is counted once in each
    /// window, at a third of the cost of counting it in all three rings as it happens (issue
    /// 13: the history was an eighth of a capped burst's time). The running integral and long
    /// waits are kept by each ring itself.
    rings: [Ring; 3],
    running: usize,
    /// Up to when `busy` has been integrated: the latest time seen.
    last: u64,
    /// Waits counted in the first ring's newest step, whole (the common case), and not yet in
    /// the others; a wait that began in an earlier step is spread in every ring at once.
    carry_waited: u64,
    /// The running count integrated since the first ring's newest step began, in no ring yet
    /// (every ring's newest step holds that time).
    carry_busy: u64,
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
        let bucket = log.rings[0].newest();
        bucket.started = bucket.started.saturating_add(1);
        bucket.peak = bucket.peak.max(peak);
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
        let ring = &mut log.rings[0];
        let slot = ring.newest_slot();
        let bucket = &mut ring.buckets[slot];
        bump(&mut bucket.freed);
        count(bucket);
        if let Some(run) = run {
            ring.detail(slot).run.record_in(bin(run), run);
        }
    }

    /// The windows as of `now`.
    pub(crate) fn windows(&mut self, now: u64) -> [Window; 3] {
        match &mut self.log {
            Some(log) => {
                log.advance(now);
                // What is not in the rings yet: the first ring's newest step for the others,
                // and the running count integrated since it began for all three.
                let unfolded = Unfolded::newest(&log.rings[0], log.carry_waited, log.carry_busy);
                let busy_only = Unfolded {
                    events: Bucket::default(),
                    waited: 0,
                    busy: log.carry_busy,
                    detail: None,
                };
                std::array::from_fn(|i| {
                    let extra = if i == 0 { &busy_only } else { &unfolded };
                    log.rings[i].window(WINDOWS[i], log.last, extra)
                })
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
            carry_waited: 0,
            carry_busy: 0,
        }
    }

    /// A task due at `deadline` began at `now`: its lateness and its wait, spread over the
    /// steps it covers (at most [`SLOTS`] buckets a ring).
    fn late(&mut self, now: u64, deadline: u64) {
        let lateness = now.saturating_sub(deadline);
        let first = &mut self.rings[0];
        if first.holds(deadline) {
            // The whole wait is in the newest step of every ring: counted in the first, and
            // carried to the others at the fold.
            let bucket = first.newest();
            bucket.waited = bucket.waited.saturating_add(lateness);
            self.carry_waited = self.carry_waited.saturating_add(lateness);
        } else {
            for ring in &mut self.rings {
                ring.wait(deadline, now);
            }
        }
        let first = &mut self.rings[0];
        let slot = first.newest_slot();
        first
            .detail(slot)
            .lateness
            .record_in(bin(lateness), lateness);
    }

    /// Adds the first ring's newest step, about to end, to the other rings' newest steps,
    /// which hold it (their steps are whole multiples of it, on the same grid).
    fn fold(&mut self) {
        let [first, others @ ..] = &mut self.rings;
        let slot = first.newest_slot();
        let unfolded = Unfolded::newest(first, self.carry_waited, self.carry_busy);
        for ring in others {
            ring.absorb(&unfolded);
        }
        let bucket = &mut first.buckets[slot];
        bucket.busy = bucket.busy.saturating_add(self.carry_busy);
        self.carry_waited = 0;
        self.carry_busy = 0;
    }

    /// Integrates the running count up to `now` and rolls old buckets off. At most `SLOTS`
    /// buckets per ring, however far `now` is.
    fn advance(&mut self, now: u64) {
        if now <= self.last {
            return;
        }
        let running = self.running as u64;
        if !self.rings[0].ends_before(now) {
            // Within the first ring's newest step: one sum, not one per ring.
            self.carry_busy = self
                .carry_busy
                .saturating_add(running.saturating_mul(now - self.last));
            self.last = now;
            return;
        }
        // The newest step ends before `now` (so `edge` is exact, and after `last`): the gap up
        // to its end is in every ring's newest step; the rings integrate the rest themselves.
        let edge = self.rings[0].edge;
        self.carry_busy = self
            .carry_busy
            .saturating_add(running.saturating_mul(edge - self.last));
        self.fold();
        for ring in &mut self.rings {
            ring.advance(edge, now, self.running);
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
            edge: (now / width + 1).saturating_mul(width),
            buckets: [Bucket::default(); SLOTS],
            detail: Default::default(),
        }
    }

    /// The durations of the step at `slot`, made empty if it had none.
    fn detail(&mut self, slot: usize) -> &mut Detail {
        self.detail[slot].get_or_insert_with(|| Box::new(Detail::EMPTY))
    }

    fn newest_slot(&self) -> usize {
        self.current as usize % SLOTS
    }

    fn newest(&mut self) -> &mut Bucket {
        &mut self.buckets[self.newest_slot()]
    }

    /// Whether `at` is in the newest step or later.
    fn holds(&self, at: u64) -> bool {
        at >= self.current.saturating_mul(self.width)
    }

    /// Whether the newest step ends by `now`: the next [`advance`](Ring::advance) to `now`
    /// starts another.
    fn ends_before(&self, now: u64) -> bool {
        now >= self.edge && now / self.width != self.current
    }

    /// Adds another ring's step, which lies in this ring's newest step, to it: its events,
    /// carried waits and running integral, and durations.
    fn absorb(&mut self, step: &Unfolded<'_>) {
        let slot = self.newest_slot();
        step.add_to(&mut self.buckets[slot]);
        if let Some(durations) = step.detail {
            self.detail(slot).merge(durations);
        }
    }

    /// A task waited from `deadline` to `now`: adds what of that lies in the steps kept to
    /// each step's `waited`.
    fn wait(&mut self, deadline: u64, now: u64) {
        if self.holds(deadline) {
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
        let end = now.min(self.edge);
        let bucket = self.newest();
        bucket.busy = bucket
            .busy
            .saturating_add(running.saturating_mul(end - from));
        if !self.ends_before(now) {
            return;
        }
        let target = now / self.width;
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
        self.edge = (target + 1).saturating_mul(self.width);
    }

    /// The window of `span` seconds as of `now`, no earlier than the newest bucket.
    /// `extra`: what of the newest step is not in this ring yet (see [`Log::fold`]).
    fn window(&self, span: u64, now: u64, extra: &Unfolded<'_>) -> Window {
        let mut window = Window::empty(Duration::from_secs(span));
        let mut peak = 0;
        let mut busy = 0u128;
        let mut waited = 0u128;
        let mut durations = Detail::EMPTY;
        let newest_slot = self.newest_slot();
        let mut newest = self.buckets[newest_slot];
        extra.add_to(&mut newest);
        if let Some(detail) = extra.detail {
            durations.merge(detail);
        }
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(slot, b)| if slot == newest_slot { &newest } else { b });
        for (b, detail) in buckets.zip(&self.detail) {
            if let Some(detail) = detail {
                durations.merge(detail);
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
        window.start_lateness = durations.lateness.percentiles();
        window.run_time = durations.run.percentiles();
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

/// The history before issue 13's fold, for a differential test.
#[cfg(test)]
mod old;

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000 * SECOND;

    #[test]
    fn counts_peaks_and_time_weighted_means() {
        let mut a = Activity::new();
        // 0-4 s: one task; 2-4 s: a second one; both end at 4 s.
        a.start(T0, None);
        a.start(T0 + 2 * SECOND, None);
        a.end(T0 + 4 * SECOND, &Outcome::Completed, 0);
        a.end(T0 + 4 * SECOND, &Outcome::Completed, 0);
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
        a.start(T0, None);
        a.end(T0 + SECOND / 2, &Outcome::Completed, 0);
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
        a.start(T0, None);
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
            a.start(T0 + s * SECOND, None);
            a.finish(T0 + s * SECOND + SECOND / 2, None);
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
        a.start(T0, None);
        a.finish(T0 + 1, None);
        a.start(T0 + 300 * SECOND, None);
        a.finish(T0 + 3_600 * SECOND, None);
        a.windows(u64::MAX);
        // The heap holds exactly one `Log`: fixed arrays, no collection that could grow.
        // Issue 12: a pointer to a step's histograms beside each 40-byte bucket; the
        // histograms (528 bytes a step) only for steps in which a task started or ended.
        assert!(
            size_of::<Log>() <= 1_700,
            "a history holds {} bytes",
            size_of::<Log>()
        );
        assert_eq!(size_of::<Activity>(), size_of::<usize>());
        assert_eq!(size_of::<Bucket>(), 40);
        assert_eq!(size_of::<Detail>(), 528);
    }

    #[test]
    fn times_that_run_backwards_count_in_the_newest_bucket() {
        let mut a = Activity::new();
        a.start(T0 + 20 * SECOND, None);
        a.start(T0 + 5 * SECOND, None);
        a.end(T0, &Outcome::Completed, 0);
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
            group.start(T0, None);
        }
        for outcome in [
            Outcome::Completed,
            Outcome::Completed,
            Outcome::Completed,
            Outcome::Panicked,
            Outcome::Cancelled,
        ] {
            group.end(T0 + SECOND, &outcome, 0);
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
        limiter.start(T0, None);
        limiter.start(T0, None);
        limiter.finish(T0 + SECOND, None);
        let [w10, ..] = limiter.windows(T0 + 2 * SECOND);
        assert_eq!((w10.started, w10.freed), (2, 1));
        assert_eq!(
            (w10.ended, w10.completed, w10.panicked, w10.cancelled),
            (0, 0, 0, 0),
            "a limiter counts slots, not tasks"
        );
    }

    // ===== against a model that keeps every event =====

    /// An event: a start (with its lateness, if it has a deadline), a group's task ending with
    /// an outcome after running for a time, or a limiter's slot freed (a task's run time, or a
    /// permit).
    #[derive(Debug, Clone, Copy)]
    enum Event {
        Start(Option<u64>),
        End(Outcome, u64),
        Free(Option<u64>),
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
        /// Task-nanoseconds spent between a deadline and the start, within the window.
        waited: u128,
        /// Every lateness and run time that counts in the window.
        lateness: Vec<u64>,
        run: Vec<u64>,
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
                Event::Start(_) => running += 1,
                Event::End(..) | Event::Free(_) => running = running.saturating_sub(1),
            }
            if before {
                m.peak = running;
                continue;
            }
            match event {
                Event::Start(lateness) => {
                    m.started += 1;
                    m.peak = m.peak.max(running);
                    if let Some(lateness) = lateness {
                        m.lateness.push(lateness);
                        let deadline = at.saturating_sub(lateness).max(start);
                        m.waited += u128::from(at - deadline);
                    }
                }
                Event::End(outcome, run) => {
                    m.freed += 1;
                    m.run.push(run);
                    match outcome {
                        Outcome::Completed => m.completed += 1,
                        Outcome::Panicked => m.panicked += 1,
                        Outcome::Cancelled => m.cancelled += 1,
                    }
                }
                Event::Free(run) => {
                    m.freed += 1;
                    m.run.extend(run);
                }
            }
        }
        m.busy += running as u128 * u128::from(now - t);
        m.covered = now - start;
        m
    }

    /// `got` is what the histogram says of `values`: the count and maximum exactly, each
    /// percentile in the bin of the exact one and within the values' range.
    fn check_percentiles(got: Option<Percentiles>, mut values: Vec<u64>, what: &str) {
        let Some(got) = got else {
            assert!(
                values.is_empty(),
                "{what}: None for {} values",
                values.len()
            );
            return;
        };
        values.sort_unstable();
        let n = values.len() as u64;
        assert_eq!(got.count, n, "{what}");
        let (min, max) = (values[0], values[values.len() - 1]);
        assert_eq!(got.max, Duration::from_nanos(max), "{what}");
        for (q, estimate) in [(0.50, got.p50), (0.99, got.p99)] {
            let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
            let exact = values[rank as usize - 1];
            let estimate = estimate.as_nanos() as u64;
            assert_eq!(
                bin(estimate),
                bin(exact),
                "{what} p{q}: {estimate} for {exact}"
            );
            assert!((min..=max).contains(&estimate), "{what} p{q}: {estimate}");
        }
        assert!(got.p50 <= got.p99 && got.p99 <= got.max, "{what}: {got:?}");
    }

    fn check(a: &mut Activity, events: &[(u64, Event)], now: u64) {
        let windows = a.windows(now);
        for (window, span) in windows.iter().zip(WINDOWS) {
            let m = model(events, now, span);
            let mean = m.busy as f64 / m.covered as f64;
            let waiting = m.waited as f64 / m.covered as f64;
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
            assert_eq!(window.mean_waiting, waiting, "{span} s window at {now}");
            let at = format!("{span} s window at {now}");
            check_percentiles(
                window.start_lateness,
                m.lateness,
                &format!("lateness, {at}"),
            );
            check_percentiles(window.run_time, m.run, &format!("run time, {at}"));
        }
    }

    #[test]
    fn bins_cover_every_duration_in_order() {
        let mut last = 0;
        for b in 0..BINS {
            let (low, high) = bin_range(b);
            assert_eq!(low, last, "bin {b} starts where the last ended");
            assert!(high > low);
            assert_eq!((bin(low), bin(high - 1)), (b, b));
            last = high;
        }
        assert_eq!(last, u64::MAX);
        assert_eq!(bin(u64::MAX), BINS - 1);
    }

    #[test]
    fn equal_durations_give_exact_percentiles() {
        let mut a = Activity::new();
        for i in 0..100 {
            a.start(T0 + i, Some(T0 + i - 7 * SECOND / 1000));
            a.end(
                T0 + 10 * SECOND / 1000 + i,
                &Outcome::Completed,
                10 * SECOND / 1000,
            );
        }
        let [w10, ..] = a.windows(T0 + SECOND);
        let late = w10.start_lateness.unwrap();
        let run = w10.run_time.unwrap();
        assert_eq!(
            (late.p50, late.p99, late.count),
            (Duration::from_millis(7), Duration::from_millis(7), 100)
        );
        assert_eq!(
            (run.p50, run.p99, run.max),
            (
                Duration::from_millis(10),
                Duration::from_millis(10),
                Duration::from_millis(10)
            )
        );
    }

    fn lateness() -> impl Strategy<Value = u64> {
        prop_oneof![0..2_000u64, 0..SECOND, 0..100 * SECOND, Just(u64::MAX / 4)]
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
                        3 => Just(Event::Start(None)),
                        3 => lateness().prop_map(|l| Event::Start(Some(l))),
                        2 => lateness().prop_map(|r| Event::End(Outcome::Completed, r)),
                        1 => lateness().prop_map(|r| Event::End(Outcome::Panicked, r)),
                        1 => lateness().prop_map(|r| Event::End(Outcome::Cancelled, r)),
                        1 => prop::option::of(lateness()).prop_map(Event::Free),
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
                // A deadline is a key: no earlier than 0.
                let event = match event {
                    Event::Start(Some(lateness)) => Event::Start(Some(lateness.min(now))),
                    event => event,
                };
                match event {
                    Event::Start(lateness) => {
                        a.start(now, lateness.map(|l| now.saturating_sub(l)));
                    }
                    Event::End(outcome, run) => a.end(now, &outcome, run),
                    Event::Free(run) => a.finish(now, run),
                }
                events.push((now, event));
                check(&mut a, &events, now);
            }
            check(&mut a, &events, now + last_gap);
        }
    }

    // ===== against the implementation before the fold (hostile review, issue 13) =====

    use super::old as history_old;

    /// One operation on both histories: an event or a read, at a time the strategy picks.
    #[derive(Debug, Clone, Copy)]
    enum Op {
        Start(Option<u64>),
        End(Outcome, u64),
        Free(Option<u64>),
        Read,
        /// `n` starts with no deadline, at once (saturation: 4.3 billion starts in a step,
        /// 600 million running through a 30 s step).
        StartMany(usize),
        /// `n` slots freed with no run time, at once.
        FreeMany(usize),
    }

    /// What `n` calls of [`Activity::start`] with no deadline at `now` do, in one.
    fn start_many(a: &mut Activity, now: u64, n: usize) {
        let log = a.log_at(now);
        log.running = log.running.saturating_add(n);
        let peak = peak_of(log.running);
        let bucket = log.rings[0].newest();
        bucket.started = bucket
            .started
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        bucket.peak = bucket.peak.max(peak);
    }

    /// What `n` calls of [`Activity::finish`] with no run time at `now` do, in one.
    fn finish_many(a: &mut Activity, now: u64, n: usize) {
        let log = a.log_at(now);
        log.running = log.running.saturating_sub(n);
        let bucket = log.rings[0].newest();
        bucket.freed = bucket
            .freed
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// How the next operation's time is chosen from the cursor (the latest time used).
    #[derive(Debug, Clone, Copy)]
    enum When {
        /// The cursor plus a gap.
        After(u64),
        /// The cursor less a gap (a clock read a moment before another thread's).
        Before(u64),
        /// The next boundary of a ring's steps (0, 1, 2) after the cursor, plus or minus a
        /// nanosecond or exactly.
        Boundary(usize, i8),
        /// An absolute time (0, near u64::MAX, ...).
        At(u64),
    }

    fn when() -> impl Strategy<Value = When> {
        prop_oneof![
            4 => prop_oneof![
                0..3u64,
                0..2 * SECOND,
                0..40 * SECOND,
                0..700 * SECOND,
                Just(1_000_000 * SECOND),
                Just(u64::MAX / 3),
            ]
            .prop_map(When::After),
            1 => prop_oneof![0..3u64, 0..2 * SECOND, 0..100 * SECOND, Just(u64::MAX)]
                .prop_map(When::Before),
            3 => (0..3usize, -1i8..=1).prop_map(|(r, d)| When::Boundary(r, d)),
            1 => prop_oneof![
                Just(0),
                Just(u64::MAX),
                (0..700 * SECOND).prop_map(|d| u64::MAX - d),
                (0..100u64).prop_map(|d| u64::MAX - d),
                (0..3u64).prop_map(|k| u64::MAX / (30 * SECOND) * (30 * SECOND) - 1 + k),
            ]
            .prop_map(When::At),
        ]
    }

    fn time(cursor: u64, when: When) -> u64 {
        match when {
            When::After(gap) => cursor.saturating_add(gap),
            When::Before(gap) => cursor.saturating_sub(gap),
            When::Boundary(ring, nudge) => {
                let width = WINDOWS[ring] * SECOND / (SLOTS as u64 - 1);
                let edge = (cursor / width + 1).saturating_mul(width);
                match nudge {
                    -1 => edge.saturating_sub(1),
                    0 => edge,
                    _ => edge.saturating_add(1),
                }
            }
            When::At(at) => at,
        }
    }

    fn deadline() -> impl Strategy<Value = Deadline> {
        prop_oneof![
            3 => lateness().prop_map(Deadline::Late),
            1 => prop_oneof![0..2 * SECOND, 0..100 * SECOND].prop_map(Deadline::Early),
            1 => prop_oneof![Just(0), Just(u64::MAX), any::<u64>()].prop_map(Deadline::At),
            1 => (0..3usize, -1i8..=1).prop_map(|(r, d)| Deadline::Boundary(r, d)),
        ]
    }

    /// A start's deadline, relative to its time.
    #[derive(Debug, Clone, Copy)]
    enum Deadline {
        Late(u64),
        Early(u64),
        At(u64),
        /// The start of the step (of ring 0, 1 or 2) holding the start's time, nudged.
        Boundary(usize, i8),
    }

    fn deadline_at(now: u64, d: Deadline) -> u64 {
        match d {
            Deadline::Late(l) => now.saturating_sub(l),
            Deadline::Early(e) => now.saturating_add(e),
            Deadline::At(at) => at,
            Deadline::Boundary(ring, nudge) => {
                let width = WINDOWS[ring] * SECOND / (SLOTS as u64 - 1);
                let start = now / width * width;
                match nudge {
                    -1 => start.saturating_sub(1),
                    0 => start,
                    _ => start.saturating_add(1),
                }
            }
        }
    }

    fn op() -> impl Strategy<Value = (When, OpKind)> {
        (
            when(),
            prop_oneof![
                3 => Just(OpKind::Start(None)),
                3 => deadline().prop_map(|d| OpKind::Start(Some(d))),
                2 => lateness().prop_map(|r| OpKind::Op(Op::End(Outcome::Completed, r))),
                1 => lateness().prop_map(|r| OpKind::Op(Op::End(Outcome::Panicked, r))),
                1 => lateness().prop_map(|r| OpKind::Op(Op::End(Outcome::Cancelled, r))),
                1 => prop::option::of(lateness()).prop_map(|r| OpKind::Op(Op::Free(r))),
                3 => Just(OpKind::Op(Op::Read)),
                1 => prop_oneof![
                    Just(u32::MAX as usize),
                    Just(700_000_000usize),
                    Just(1usize << 40),
                    0..1usize << 33,
                ]
                .prop_map(|n| OpKind::Op(Op::StartMany(n))),
                1 => prop_oneof![Just(u32::MAX as usize), 0..1usize << 33]
                    .prop_map(|n| OpKind::Op(Op::FreeMany(n))),
            ],
        )
    }

    #[derive(Debug, Clone, Copy)]
    enum OpKind {
        Start(Option<Deadline>),
        Op(Op),
    }

    fn same_window(new: &Window, old: &Window, what: &str) {
        // Every field, the means bit for bit.
        let fields = |w: &Window| {
            let p = |p: Option<Percentiles>| p.map(|p| (p.p50, p.p99, p.max, p.count));
            (
                (w.span, w.started, w.ended, w.completed, w.panicked),
                (w.cancelled, w.freed, w.peak_running),
                (w.mean_running.to_bits(), w.mean_waiting.to_bits()),
                (p(w.start_lateness), p(w.run_time)),
            )
        };
        assert_eq!(fields(new), fields(old), "{what}: new {new:?}, old {old:?}");
    }

    /// Runs `ops` on both, comparing every window after every operation (an event is
    /// followed by a read at its own time, which changes nothing, then the next operation).
    fn differ(start: u64, ops: &[(When, OpKind)], read_after_event: bool) {
        let mut new = Activity::new();
        let mut old = history_old::Activity::new();
        let mut cursor = start;
        for (i, &(when, kind)) in ops.iter().enumerate() {
            let now = time(cursor, when);
            cursor = now;
            let op = match kind {
                OpKind::Start(d) => Op::Start(d.map(|d| deadline_at(now, d))),
                OpKind::Op(op) => op,
            };
            match op {
                Op::Start(deadline) => {
                    new.start(now, deadline);
                    old.start(now, deadline);
                }
                Op::End(outcome, run) => {
                    new.end(now, &outcome, run);
                    old.end(now, &outcome, run);
                }
                Op::Free(run) => {
                    new.finish(now, run);
                    old.finish(now, run);
                }
                Op::StartMany(n) => {
                    start_many(&mut new, now, n);
                    old.start_many(now, n);
                }
                Op::FreeMany(n) => {
                    finish_many(&mut new, now, n);
                    old.finish_many(now, n);
                }
                Op::Read => {}
            }
            if read_after_event || matches!(op, Op::Read) {
                let (n, o) = (new.windows(now), old.windows(now));
                for (n, o) in n.iter().zip(&o) {
                    same_window(n, o, &format!("op {i} ({op:?} at {now})"));
                }
            }
        }
        for gap in [0, SECOND, 7 * SECOND, 100 * SECOND, 1_000 * SECOND] {
            let now = cursor.saturating_add(gap);
            let (n, o) = (new.windows(now), old.windows(now));
            for (n, o) in n.iter().zip(&o) {
                same_window(n, o, &format!("final read at {now}"));
            }
        }
    }

    fn origin() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0),
            Just(T0),
            0..T0,
            (0..3u64).prop_map(|k| 30 * SECOND * 1_000 - 1 + k),
            (0..700 * SECOND).prop_map(|d| u64::MAX - d),
            Just(u64::MAX),
            any::<u64>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("HIST13_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
        ))]

        /// The history after the fold gives every window exactly what the history before it
        /// gave (commit 9d94f99), whatever the events, their times (backwards, at a step's
        /// boundary, near 0 or u64::MAX) and the reads between them.
        #[test]
        fn windows_agree_with_the_history_before_the_fold(
            start in origin(),
            ops in prop::collection::vec(op(), 0..80),
            read_after_event in any::<bool>(),
        ) {
            differ(start, &ops, read_after_event);
        }
    }
}
