//! [`Adaptive`]: a limit that follows what the tasks measure. The configuration, what it shows
//! ([`AdaptiveState`]), and the controller: a plain state machine fed each task's run time and
//! outcome under the pool's lock, with no clock and no runtime, that says when to change the
//! limit.
//!
//! # The model the controller assumes
//!
//! Tasks share a backend with some capacity `C` it does not know. While fewer than `C` run,
//! each takes the backend's no-load time `b`; beyond `C` they queue, and each takes about
//! `b * running / C`; far beyond, the backend fails them. So the run time over its no-load
//! value, `r`, is 1 up to the knee at `C` and grows in proportion beyond it. The controller
//! keeps the limit a little past the knee: enough that the backend never idles, little
//! enough that tasks barely queue.
//!
//! # The no-load estimate
//!
//! `b` is not what the tasks measure once the limit is past the knee, and the backend may get
//! slower (or faster) at any time. The estimate moves down towards any window's mean run time
//! below it (plus three standard errors, so that noise does not drag it down), and is
//! re-measured after cuts for latency that add up to a tenth, over a window twice as long:
//! past the knee the run time falls in proportion to the limit; if it fell clearly less (by
//! [`ABOVE`]), the limit is now at or below the knee, so what the tasks take now *is* the
//! no-load time. The estimate is replaced
//! by it if the old one would cut again (the backend got slower), and lowered to it if it is
//! lower (faster). Cuts happen on their own under load, and a *probe* (a cut by a fifth) is
//! made when no tested cut happened for `probe_every` (and 50 mean run times) while the limit
//! was reached; after it, unless the run time says the backend queues, the limit goes back to
//! where it was. After an overload, ten mean run times pass before a probe or a test: the
//! backend's line is still moving.

use std::time::Duration;

use crate::throttle::Throttle;

/// The ceiling of an [`Adaptive`] limit unless one is set.
const DEFAULT_CEILING: usize = 1000;

/// Cuts that took the limit to this share of where they started, or less, are tested.
const TEST_CUT: f64 = 0.9;

/// After a cut, a run time above the proportional drop (what a backend past its knee gives)
/// by more than this share of the cut, and by more than [`NOISE`] standard errors, says the
/// limit is now at or below the knee.
const ABOVE: f64 = 0.5;

/// See [`ABOVE`].
const NOISE: f64 = 4.0;

/// The least an AIMD cut for latency takes off, and the most.
const AIMD_CUT: (f64, f64) = (0.9, 0.8);

/// How many standard errors above its mean a window's run time counts for the no-load
/// estimate, which takes the least of these: the least of many plain means would be the
/// luckiest draw, well below the real no-load time.
const MARGIN: f64 = 3.0;

/// How many mean run times after an overload cut the run times are left untested.
const UNSETTLED_RUNS: u64 = 10;

/// Probes are at least this many mean run times apart: a probe and the way back take a few
/// decisions, each at least a run time long.
const PROBE_RUNS: u64 = 50;

/// The share of the limit a probe keeps.
const PROBE_CUT: f64 = 0.8;

/// A cut for latency to this share of the limit or less counts as a probe: it is tested, as
/// a probe's cut is.
const DEEP_CUT: f64 = TEST_CUT;

/// The most a gradient step cuts for latency alone (overload cuts by `backoff`).
const GRADIENT_MAX_CUT: f64 = 0.8;

/// How a limit adapts: an algorithm, its floor and ceiling, and how it reads the tasks.
///
/// Set on a [`Limiter`](crate::Limiter) ([`set_adaptive`](crate::Limiter::set_adaptive)) or a
/// group's own cap ([`Builder::adaptive`](crate::Builder::adaptive),
/// [`Group::set_adaptive`](crate::Group::set_adaptive)). From then on, every task that ends is
/// a sample: its run time (from leaving the queue to the end, timed by the group, nothing for
/// the task to do) and whether it signals overload, which it does by panicking, by returning
/// an output that a [`Results::overload_when`](crate::Results::overload_when) classifier
/// picks, or by calling [`Group::overloaded`](crate::Group::overloaded) (or
/// [`Limiter::overloaded`](crate::Limiter::overloaded)), say on an HTTP 429 or 503. A task
/// cancelled while it ran is no sample.
///
/// # What it does
///
/// - **Overload**: the limit is cut at once by [`backoff`](Adaptive::backoff) (0.8 by
///   default). Only a task that started after the last change counts: the tasks started
///   under the old limit tell of the old limit, and cutting again for each of them would
///   collapse it.
/// - **Latency**: after [`min_samples`](Adaptive::min_samples) tasks that started under the
///   current limit, their mean run time over the no-load estimate, `r`, decides. Above
///   [`tolerance`](Adaptive::tolerance) (1.1 for AIMD, 1.15 for the gradient, by default)
///   the backend is queueing: the limit goes down. Below it, the limit goes up, **but only if the limit was reached while work
///   was due and waiting for a slot**: a group with room to spare, or with nothing due, never
///   raises it (no probing while idle).
/// - [`Algorithm::Aimd`] adds 1, or multiplies by `tolerance / r` kept between 0.8 and 0.9;
///   [`Algorithm::Gradient`] multiplies by `1 + 1/r - 1/r*`, with `r* = (1 + tolerance) / 2`,
///   which heads for the limit where the backend queues `1 - 1/r*` of it (about 7% by
///   default) in one or two steps, and cuts by at most 20% at a time for latency.
/// - The no-load estimate is measured, not configured (see the module source for the
///   details): it follows a backend that got faster at once, and one that got slower after
///   the next cut, made for latency or, every [`probe_every`](Adaptive::probe_every) under
///   load, as a probe by a fifth.
/// - Every change stays within [`floor`](Adaptive::floor) and [`ceiling`](Adaptive::ceiling),
///   and none is made within [`hold`](Adaptive::hold) of the last. A cut never raises and a
///   raise never cuts: a limit set by hand below the floor (or to 0, paused) stays there until
///   the controller has room to raise it, and one above the ceiling until it cuts.
/// - Under steady load it stays near the knee: on the simulated backend of
///   `examples/adaptive`, within 2-10% above the capacity on average, every one-second mean
///   within 20% of it, for every seed tried (`BENCHMARKS.md`, "Adaptive limits").
///
/// # Lateness and latency
///
/// A deadline-scheduled task can be late for two reasons: the limit is too low for the work,
/// or the backend is saturated and a higher limit would only make every task slower. The
/// controller tells them apart with the run time: lateness (work due and waiting while the
/// limit is reached) is what allows a raise, and the run time is what permits it. Work that
/// is late while the run time says the backend queues does not raise the limit; it lowers it.
/// [`Window::start_lateness`](crate::Window::start_lateness) shows how late tasks start.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::{Adaptive, Group, Limiter};
/// use std::time::Duration;
///
/// let backend = Limiter::named("backend", 4);
/// backend.set_adaptive(Adaptive::aimd().floor(2).ceiling(64));
/// let group = Group::builder().limiter(&backend).build();
/// for _ in 0..200 {
///     // A backend that takes 10 ms whatever the load: the limit climbs while work waits.
///     group.delay(Duration::ZERO, async {
///         tokio::time::sleep(Duration::from_millis(10)).await;
///     });
/// }
/// group.wait().await.unwrap();
/// assert!(backend.limit() > 4);
/// let state = backend.history().adaptive.unwrap();
/// assert_eq!(state.no_load_latency, Some(Duration::from_millis(10)));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptive {
    algorithm: Algorithm,
    floor: usize,
    ceiling: Option<usize>,
    hold: Duration,
    tolerance: f64,
    backoff: f64,
    min_samples: u32,
    probe_every: Duration,
}

/// How an [`Adaptive`] limit moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// Additive increase (1 a decision), multiplicative decrease (0.9 for latency,
    /// [`backoff`](Adaptive::backoff) for overload).
    Aimd,
    /// Multiplies the limit by how far the run time is from where the backend queues a few
    /// percent of it: fast to the knee, smooth there.
    Gradient,
}

impl Algorithm {
    /// Its name: `"aimd"`, `"gradient"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Aimd => "aimd",
            Algorithm::Gradient => "gradient",
        }
    }
}

impl Adaptive {
    /// AIMD with the defaults: floor 1, ceiling 1000, no hold, tolerance 1.1, backoff 0.8,
    /// 32 samples a decision, a probe every 10 s under load.
    #[must_use]
    pub fn aimd() -> Self {
        Self::new(Algorithm::Aimd)
    }

    /// The gradient algorithm with the same defaults as [`aimd`](Adaptive::aimd) but a
    /// tolerance of 1.15 (it aims at the middle, 1.075). AIMD's steps of 1 overshoot a small
    /// limit by a larger share, which its lower tolerance makes up for.
    #[must_use]
    pub fn gradient() -> Self {
        Self::new(Algorithm::Gradient)
    }

    /// `algorithm` with the defaults.
    #[must_use]
    pub fn new(algorithm: Algorithm) -> Self {
        Self {
            algorithm,
            floor: 1,
            ceiling: Some(DEFAULT_CEILING),
            hold: Duration::ZERO,
            tolerance: match algorithm {
                Algorithm::Aimd => 1.1,
                Algorithm::Gradient => 1.15,
            },
            backoff: 0.8,
            min_samples: 32,
            probe_every: Duration::from_secs(10),
        }
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The limit never goes below this. At least 1 (a limit of 0 would start nothing, and so
    /// never measure anything to raise it again): 0 counts as 1.
    #[must_use]
    pub fn floor(mut self, floor: usize) -> Self {
        // `usize::MAX` is no limit at all: the highest floor is one below it.
        self.floor = floor.clamp(1, usize::MAX - 1);
        self
    }

    /// The limit never goes above this (default 1000). Below the floor, it counts as the
    /// floor.
    #[must_use]
    pub fn ceiling(mut self, ceiling: usize) -> Self {
        self.ceiling = Some(ceiling);
        self
    }

    /// No change is made within `hold` of the last one (default none).
    #[must_use]
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// The floor, ceiling and hold of a [`Throttle`]: the same bounds for the controller as
    /// for manual steps. A `ceiling` of `None` means, as for a throttle, the limit when the
    /// controller is set. The steps are not used.
    #[must_use]
    pub fn within(self, throttle: Throttle) -> Self {
        let mut this = self.floor(throttle.floor).hold(throttle.hold);
        this.ceiling = throttle.ceiling;
        this
    }

    /// The run time over its no-load estimate above which the backend counts as queueing,
    /// and the limit goes down (default 1.1 for AIMD, 1.15 for the gradient). Values are kept between 1.02 and 10; a value
    /// that is not a number keeps the default.
    #[must_use]
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        if !tolerance.is_nan() {
            self.tolerance = tolerance.clamp(1.02, 10.0);
        }
        self
    }

    /// What an overload multiplies the limit by (default 0.8). Kept between 0.1 and 0.99; a
    /// value that is not a number keeps the default.
    #[must_use]
    pub fn backoff(mut self, backoff: f64) -> Self {
        if !backoff.is_nan() {
            self.backoff = backoff.clamp(0.1, 0.99);
        }
        self
    }

    /// How many tasks, started under the current limit, each decision on latency waits for
    /// (default 32; at least 1). More is steadier and slower.
    #[must_use]
    pub fn min_samples(mut self, samples: u32) -> Self {
        self.min_samples = samples.max(1);
        self
    }

    /// How long the limit may stay reached with no tested cut before a probe re-measures the
    /// no-load estimate (default 10 s). Probes are also at least 50 mean run times apart, so
    /// that long tasks (or `Duration::ZERO`) do not make every decision a probe.
    /// `Duration::MAX` never probes.
    #[must_use]
    pub fn probe_every(mut self, every: Duration) -> Self {
        self.probe_every = every;
        self
    }
}

impl Default for Adaptive {
    /// [`Adaptive::aimd`].
    fn default() -> Self {
        Self::aimd()
    }
}

/// What an adaptive limit is doing: part of a [`History`](crate::History).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AdaptiveState {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The limit now (as [`History::limit`](crate::History::limit)).
    pub limit: usize,
    /// The estimated run time without load; `None` until the first decision.
    pub no_load_latency: Option<Duration>,
    /// The mean run time of the last decision's tasks; `None` until the first decision.
    pub latency: Option<Duration>,
    /// The last change it made, if any.
    pub last: Option<Decision>,
    /// How many changes it made.
    pub decisions: u64,
}

/// A change an adaptive controller made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// How long before the snapshot it was made.
    pub ago: Duration,
    /// The limit before.
    pub from: usize,
    /// The limit after.
    pub to: usize,
    /// Why.
    pub reason: Reason,
}

/// Why an adaptive controller changed a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// A task panicked, returned an output its classifier calls overload, or overload was
    /// signalled.
    Overload,
    /// The run time said the backend queues.
    Latency,
    /// The limit was reached, work was waiting, and the run time had room.
    Room,
    /// A probe: a cut to re-measure the no-load run time.
    Probe,
}

impl Reason {
    /// Its name: `"overload"`, `"latency"`, `"room"`, `"probe"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Reason::Overload => "overload",
            Reason::Latency => "latency",
            Reason::Room => "room",
            Reason::Probe => "probe",
        }
    }
}

// ===== the controller =====

/// One task's end, as the controller reads it. Times are clock keys (nanoseconds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) now: u64,
    /// The task started under the limit now: a task started under an older limit tells of
    /// that one, and is no sample.
    pub(crate) current: bool,
    /// How long it ran, in nanoseconds.
    pub(crate) run: u64,
    pub(crate) overload: bool,
    /// The limit was reached while work was due and waiting for a slot.
    pub(crate) reached: bool,
    /// When the limit last changed, on this sample's clock, if the caller knows it better
    /// than the controller, whose own epoch is on the clock of whoever fed the change (a
    /// limiter's groups may be on runtimes whose clocks differ): for the hold.
    pub(crate) epoch: Option<u64>,
}

/// A change to apply to the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) reason: Reason,
    /// The mean run time and the no-load estimate it was decided on (ns), for reports.
    pub(crate) latency: u64,
    pub(crate) no_load: u64,
}

/// An adaptive change, to report after unlocking.
#[derive(Debug)]
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) struct Adapted {
    /// A limiter's limit (`true`) or a group's own cap.
    pub(crate) limiter: bool,
    pub(crate) name: Option<std::sync::Arc<str>>,
    pub(crate) algorithm: Algorithm,
    pub(crate) change: Change,
}

/// Samples since the last decision.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    count: u32,
    sum: f64,
    /// Of the squares, for the standard error.
    squares: f64,
    reached: bool,
}

/// A cut for latency, whose effect on the run time the next decision checks.
#[derive(Debug, Clone, Copy)]
struct Test {
    /// The limit before it.
    from: usize,
    /// The mean run time before it, and its relative standard error.
    latency: f64,
    error: f64,
    /// If a probe made it: the limit to go back to, if the run time allows.
    probe: Option<f64>,
}

/// The controller's state. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Controller {
    config: Adaptive,
    /// The ceiling, resolved (`None` in the config: the limit when set).
    ceiling: usize,
    /// The limit as a real number: steps smaller than 1 add up.
    limit: f64,
    /// The limit last applied or seen.
    applied: usize,
    /// Samples of tasks that started before this are ignored: they tell of an older limit.
    epoch: u64,
    tally: Tally,
    /// The no-load run time estimate, ns.
    baseline: Option<f64>,
    /// The last decision's mean run time, ns.
    latency: Option<f64>,
    /// Every counted run time, smoothed (ns): how long a change takes to show.
    run: Option<f64>,
    /// The relative standard error of `latency`.
    error: f64,
    /// A cut to check.
    test: Option<Test>,
    /// Where a probe found the limit can go back to, once the hold allows.
    restore: Option<f64>,
    /// When the last probe was made, or the controller set.
    last_probe: u64,
    /// After an overload the backend's line is still moving: no probe and no test of a cut
    /// until then.
    unsettled_until: u64,
    /// The last change it made, and when (its hold counts from then).
    last: Option<(u64, Change)>,
    decisions: u64,
}

impl Controller {
    /// A controller for a limit that is `limit` at `now`.
    fn new(config: Adaptive, limit: usize, now: u64) -> Self {
        let floor = config.floor;
        // The floor is at most `usize::MAX - 1` (`Adaptive::floor`): never above this.
        let ceiling = config
            .ceiling
            .unwrap_or(limit)
            .min(usize::MAX - 1)
            .max(floor);
        Self {
            config,
            ceiling,
            limit: limit as f64,
            applied: limit,
            epoch: now,
            tally: Tally::default(),
            baseline: None,
            latency: None,
            test: None,
            restore: None,
            last_probe: now,
            unsettled_until: now,
            error: 0.0,
            run: None,
            last: None,
            decisions: 0,
        }
    }

    /// A controller set at `now` on a limit that is `limit`: the limit to apply (`limit`
    /// brought within the floor and the ceiling), and the controller.
    pub(crate) fn start(config: Adaptive, limit: usize, now: u64) -> (usize, Self) {
        let controller = Self::new(config, limit, now);
        let limit = limit.clamp(config.floor, controller.ceiling);
        let mut controller = controller;
        controller.applied = limit;
        controller.limit = limit as f64;
        (limit, controller)
    }

    /// Takes in a limit set by someone else (by hand, by a throttle): it starts a new epoch.
    fn sync(&mut self, limit: usize, now: u64) {
        if limit != self.applied {
            self.applied = limit;
            self.limit = limit as f64;
            self.test = None;
            self.restore = None;
            self.restart(now);
        }
    }

    fn restart(&mut self, now: u64) {
        self.epoch = now;
        self.tally = Tally::default();
    }

    /// A task ended; `limit` is the limit now. Returns the change to apply, if any.
    pub(crate) fn sample(&mut self, limit: usize, s: Sample) -> Option<Change> {
        self.sync(limit, s.now);
        // Every run time tells how long a change takes to show, old limit or new.
        let run = s.run as f64;
        self.run = Some(self.run.map_or(run, |r| r + 0.2 * (run - r)));
        if s.overload {
            self.forget_way_back();
        }
        if !s.current {
            return None;
        }
        if s.overload {
            let to = self.limit * self.config.backoff;
            let (latency, baseline) = (self.latency, self.baseline);
            return self.change(to, Reason::Overload, s.now, s.epoch, latency, baseline);
        }
        let tally = &mut self.tally;
        tally.count += 1;
        tally.sum += s.run as f64;
        tally.squares += (s.run as f64) * (s.run as f64);
        tally.reached |= s.reached;
        let testing = self
            .test
            .is_some_and(|t| self.applied as f64 <= t.from as f64 * TEST_CUT);
        let needed = if testing {
            self.config.min_samples.saturating_mul(2)
        } else {
            self.config.min_samples
        };
        if tally.count < needed {
            return None;
        }
        let Tally {
            count,
            sum,
            squares,
            reached,
        } = std::mem::take(tally);
        let n = f64::from(count);
        let mean = sum / n;
        let error = ((squares / n - mean * mean).max(0.0) / n).sqrt();
        self.latency = Some(mean);
        self.error = error / mean.max(1.0);
        let high = mean + MARGIN * error;
        let mut baseline = self.baseline.map_or(high, |b| b.min(high));
        if let Some(test) = self.test.take_if(|_| testing) {
            self.restore = test.probe;
            // Past the knee, the run time falls in proportion to the limit; at or below it,
            // it stays at the no-load time. Only an estimate that would cut again is replaced.
            let ratio = self.applied as f64 / test.from as f64;
            let above = mean / (test.latency * ratio) - 1.0;
            let noise = NOISE * test.error.hypot(self.error);
            if above > (ABOVE * (1.0 - ratio)).max(noise) && mean > baseline * self.cuts_above() {
                baseline = mean;
            }
        }
        let baseline = baseline.max(1.0);
        self.baseline = Some(baseline);
        let r = mean / baseline;
        let tolerance = self.config.tolerance;
        let probe_gap = duration_ns(self.config.probe_every)
            .max(self.run.map_or(0, |r| r as u64).saturating_mul(PROBE_RUNS));
        let probe_due = self.config.probe_every != Duration::MAX
            && s.now.saturating_sub(self.last_probe) >= probe_gap
            && s.now >= self.unsettled_until;
        // A probe measured; unless it found the backend queueing, the limit goes back, as
        // soon as the hold allows.
        if let Some(before) = self.restore {
            if !(reached && r <= self.cuts_above()) {
                self.restore = None;
            } else if self.held(s.now, s.epoch) {
                return None;
            } else {
                self.restore = None;
                let (latency, baseline) = (Some(mean), Some(baseline));
                return self.change(before, Reason::Room, s.now, s.epoch, latency, baseline);
            }
        }
        let (to, reason) = if reached && probe_due {
            self.last_probe = s.now;
            (self.limit * PROBE_CUT, Reason::Probe)
        } else {
            match self.config.algorithm {
                Algorithm::Aimd if r > tolerance => {
                    let factor = (tolerance / r).clamp(AIMD_CUT.1, AIMD_CUT.0);
                    (self.limit * factor, Reason::Latency)
                }
                Algorithm::Aimd if reached => (self.limit + 1.0, Reason::Room),
                Algorithm::Aimd => return None,
                Algorithm::Gradient => {
                    let aim = self.cuts_above();
                    let factor = (1.0 + 1.0 / r - 1.0 / aim).max(GRADIENT_MAX_CUT);
                    if factor > 1.0 && !reached {
                        return None;
                    }
                    let reason = if factor > 1.0 {
                        Reason::Room
                    } else {
                        Reason::Latency
                    };
                    (self.limit * factor, reason)
                }
            }
        };
        self.change(to, reason, s.now, s.epoch, Some(mean), Some(baseline))
    }

    /// The ratio of run time to the no-load estimate above which the algorithm cuts: the
    /// tolerance for AIMD, the gradient's aim `(1 + tolerance) / 2`.
    fn cuts_above(&self) -> f64 {
        match self.config.algorithm {
            Algorithm::Aimd => self.config.tolerance,
            Algorithm::Gradient => f64::midpoint(1.0, self.config.tolerance),
        }
    }

    /// Overload was signalled outside any task's end; `limit` is the limit now. A signal from
    /// a task that started under an older limit (`current` is `Some(false)`) tells of that
    /// one, and is ignored; from a task not known to be either, one within a mean run time of
    /// the last change is. `epoch`: as in [`Sample::epoch`].
    pub(crate) fn signal(
        &mut self,
        limit: usize,
        now: u64,
        epoch: Option<u64>,
        current: Option<bool>,
    ) -> Option<Change> {
        self.sync(limit, now);
        self.forget_way_back();
        let last = epoch.unwrap_or(self.epoch);
        let old = match current {
            Some(current) => !current,
            None => {
                let settling = self.run.map_or(0, |r| r as u64);
                // A clock behind the last change's is another runtime's: it tells nothing.
                self.last.is_some() && now >= last && now < last.saturating_add(settling)
            }
        };
        if old {
            return None;
        }
        let (latency, baseline) = (self.latency, self.baseline);
        let to = self.limit * self.config.backoff;
        self.change(to, Reason::Overload, now, epoch, latency, baseline)
    }

    /// An overload, whatever limit it tells of: no probe goes back to the limit before it.
    fn forget_way_back(&mut self) {
        self.restore = None;
        if let Some(test) = &mut self.test {
            test.probe = None;
        }
    }

    /// Whether a change at `now` would come within the hold of the last one: the last change
    /// of the limit on the caller's clock (`epoch`, as in [`Sample::epoch`]) if it knows it,
    /// else the controller's last change.
    fn held(&self, now: u64, epoch: Option<u64>) -> bool {
        let hold = duration_ns(self.config.hold);
        match self.last.map(|(at, _)| at).filter(|_| hold > 0) {
            Some(last) => now < epoch.unwrap_or(last).saturating_add(hold),
            None => false,
        }
    }

    /// Moves the limit to `to`, within the floor, the ceiling and the hold (`epoch`: see
    /// [`held`](Controller::held)).
    fn change(
        &mut self,
        to: f64,
        reason: Reason,
        now: u64,
        epoch: Option<u64>,
        latency: Option<f64>,
        baseline: Option<f64>,
    ) -> Option<Change> {
        if self.held(now, epoch) {
            return None;
        }
        let floor = self.config.floor as f64;
        let to = to.clamp(floor, self.ceiling as f64);
        // A cut never raises (a limit set by hand below the floor, or to 0, stays there until
        // there is room), and a raise never cuts (one set above the ceiling).
        let to = if reason == Reason::Room {
            to.max(self.limit)
        } else {
            to.min(self.limit)
        };
        let from = self.applied;
        let cut = to < self.limit;
        let before = self.limit;
        self.limit = to;
        // `to` is within [floor, ceiling], both `usize`: the cast is exact after rounding.
        let rounded = to.round() as usize;
        if rounded == from {
            return None;
        }
        self.applied = rounded;
        self.restart(now);
        if cut && reason != Reason::Overload {
            // A deep cut measures what a probe would: the next probe can wait.
            if rounded as f64 <= from as f64 * DEEP_CUT {
                self.last_probe = now;
            }
            // Cuts in a row are tested together, from the first, once they add up to a tenth.
            if self.test.is_none() && now >= self.unsettled_until {
                self.test = latency.map(|latency| Test {
                    from,
                    latency,
                    error: self.error,
                    probe: (reason == Reason::Probe).then_some(before),
                });
            }
        } else {
            self.test = None;
        }
        if reason == Reason::Overload {
            // Failures can be quick: the run time of the last decision, if longer.
            let run = self.run.unwrap_or(0.0).max(self.latency.unwrap_or(0.0)) as u64;
            self.unsettled_until = now.saturating_add(run.saturating_mul(UNSETTLED_RUNS));
        }
        let change = Change {
            from,
            to: rounded,
            reason,
            latency: latency.map_or(0, |l| l as u64),
            no_load: baseline.map_or(0, |b| b as u64),
        };
        self.last = Some((now, change));
        self.decisions += 1;
        Some(change)
    }

    /// What it shows at `now`, when the limit is `limit` (which a hand may have set since
    /// the controller last saw it).
    pub(crate) fn state(&self, now: u64, limit: usize) -> AdaptiveState {
        AdaptiveState {
            algorithm: self.config.algorithm,
            limit,
            no_load_latency: self.baseline.map(ns_duration),
            latency: self.latency.map(ns_duration),
            last: self.last.map(|(at, c)| Decision {
                ago: Duration::from_nanos(now.saturating_sub(at)),
                from: c.from,
                to: c.to,
                reason: c.reason,
            }),
            decisions: self.decisions,
        }
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        self.config.algorithm
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn ns_duration(ns: f64) -> Duration {
    // Run times are sums of u64 nanoseconds over counts: finite and non-negative.
    Duration::from_nanos(ns.round() as u64)
}

#[cfg(test)]
mod tests;
