//! The history as it was before issue 13's fold (commit `9d94f99`): every event counted in all
//! three rings at once, each ring integrating the running count itself. Kept, test-only, as
//! the oracle of a differential proptest (`history::tests`): the new code must give the same
//! windows for any events and times. Only what changed is here; the buckets, histograms and
//! windows are the current module's.

use super::{Bucket, Detail, Histogram, SECOND, SLOTS, WINDOWS, Window, bin, bump, peak_of};
use crate::task::Outcome;
use std::time::Duration;

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
