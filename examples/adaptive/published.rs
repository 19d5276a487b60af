//! Published adaptive concurrency limits with their published defaults, written here from
//! their descriptions and run outside the crate: each sees every request through
//! [`Controller`] and sets the limiter's limit itself.
//!
//! - [`Gradient2`]: Netflix concurrency-limits' `Gradient2Limit`, inside its `WindowedLimit`.
//! - [`Vegas`]: Netflix concurrency-limits' `VegasLimit`, per request, as its `SimpleLimiter`
//!   uses it by default.
//! - [`Vector`]: Vector's adaptive request concurrency (`sinks::util::adaptive_concurrency`).
//!
//! Times are seconds as `f64` (Netflix counts nanoseconds; only ratios and sums of them enter
//! the formulas, so the unit changes nothing). A Netflix limit is a `double` reported as its
//! integer part (`AbstractLimit` casts it), and so is it here.
//!
//! A refused request is a *drop* to Netflix's limiters (`onDropped`, with the time it took)
//! and *back pressure* to Vector's (a retriable error, whose time it ignores). So the backend's
//! fast refusals (1 ms) pull Gradient2's window average and Vegas's least RTT down, as they
//! would in Netflix's code: an open question there (concurrency-limits issue 176, "Why does
//! gradient2 ignore the effect of didDrop on latency") describes the same. `WindowedLimit`'s
//! `minRttThreshold` (100 µs by default) does not filter them out.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::control::{Controller, Outcome};

// ===== Gradient2 =====

/// `Gradient2Limit.Builder` defaults.
mod gradient2 {
    /// `initialLimit`.
    pub(super) const INITIAL: f64 = 20.0;
    /// `minLimit`: the limit never goes below it.
    pub(super) const MIN: f64 = 20.0;
    /// `maxConcurrency`.
    pub(super) const MAX: f64 = 200.0;
    /// `smoothing`: the weight of each new estimate.
    pub(super) const SMOOTHING: f64 = 0.2;
    /// `rttTolerance`: how much slower than the long-term RTT counts as no queueing.
    pub(super) const TOLERANCE: f64 = 1.5;
    /// `longWindow`: the long-term RTT is an exponential average over this many samples.
    pub(super) const LONG_WINDOW: f64 = 600.0;
    /// The long-term RTT's warm-up: a plain mean of the first samples (`ExpAvgMeasurement`'s
    /// second argument, 10 in `Gradient2Limit`'s constructor).
    pub(super) const WARMUP: u32 = 10;
    /// `queueSize`: how much the limit may grow per update while latency is steady.
    pub(super) const QUEUE: f64 = 4.0;
    /// The long-term RTT shrinks by this factor at each update where it is more than twice
    /// the short-term one (recovery after a long overload).
    pub(super) const DECAY: f64 = 0.95;
}

/// Netflix's `Gradient2Limit`: the limit follows `long-term RTT / current RTT`, and grows by
/// a fixed queue allowance while that ratio (times the tolerance) is at least 1.
///
/// Each update:
///
/// ```text
/// gradient = max(0.5, min(1, tolerance * longRtt / shortRtt))
/// new      = limit * gradient + queueSize
/// limit    = clamp(limit * (1 - smoothing) + new * smoothing, minLimit, maxLimit)
/// ```
///
/// skipped (the limit stays) while fewer than half the limit are in flight.
///
/// It runs inside Netflix's `WindowedLimit` with its defaults ([`Window`]): an update per
/// window of 1 s with at least 10 samples, whose `shortRtt` is the window's average RTT and
/// whose in-flight count is the window's largest.
#[derive(Debug)]
pub(crate) struct Gradient2 {
    /// `estimatedLimit`.
    limit: f64,
    long_rtt: ExpAverage,
    window: Window,
}

impl Gradient2 {
    pub(crate) fn new() -> Self {
        Self {
            limit: gradient2::INITIAL,
            long_rtt: ExpAverage::new(gradient2::LONG_WINDOW, gradient2::WARMUP),
            window: Window::new(),
        }
    }

    /// One update from a closed window.
    fn update(&mut self, short_rtt: f64, in_flight: usize) {
        let long_rtt = self.long_rtt.add(short_rtt);
        if long_rtt / short_rtt > 2.0 {
            self.long_rtt.value *= gradient2::DECAY;
        }
        // Don't grow when the application, not the limit, keeps the load low.
        if (in_flight as f64) < self.limit / 2.0 {
            return;
        }
        // As published, this uses the long-term RTT from before the decay above.
        let gradient = (gradient2::TOLERANCE * long_rtt / short_rtt).clamp(0.5, 1.0);
        let estimate = self.limit * gradient + gradient2::QUEUE;
        let smoothed = self.limit * (1.0 - gradient2::SMOOTHING) + estimate * gradient2::SMOOTHING;
        self.limit = smoothed.clamp(gradient2::MIN, gradient2::MAX);
    }
}

impl Controller for Gradient2 {
    fn initial_limit(&self) -> usize {
        self.limit as usize
    }

    fn on_end(&mut self, outcome: &Outcome) -> Option<usize> {
        let window = self.window.add(outcome)?;
        let before = self.limit as usize;
        self.update(window.average_rtt, window.max_in_flight);
        let after = self.limit as usize;
        (after != before).then_some(after)
    }
}

/// Netflix's `ExpAvgMeasurement`: the plain mean of the first `warmup` samples, then an
/// exponential average with factor `2 / (window + 1)`.
#[derive(Debug)]
struct ExpAverage {
    value: f64,
    factor: f64,
    warmup: u32,
    count: u32,
    sum: f64,
}

impl ExpAverage {
    fn new(window: f64, warmup: u32) -> Self {
        Self {
            value: 0.0,
            factor: 2.0 / (window + 1.0),
            warmup,
            count: 0,
            sum: 0.0,
        }
    }

    fn add(&mut self, sample: f64) -> f64 {
        if self.count < self.warmup {
            self.count += 1;
            self.sum += sample;
            self.value = self.sum / f64::from(self.count);
        } else {
            self.value = self.value * (1.0 - self.factor) + sample * self.factor;
        }
        self.value
    }
}

/// `WindowedLimit` defaults.
mod window {
    /// `minWindowTime` and `maxWindowTime`, both 1 s: every window lasts 1 s.
    pub(super) const MIN_TIME: f64 = 1.0;
    pub(super) const MAX_TIME: f64 = 1.0;
    /// `windowSize`: a window with fewer samples is thrown away.
    pub(super) const MIN_SAMPLES: usize = 10;
    /// `minRttThreshold`: faster samples are ignored.
    pub(super) const MIN_RTT: f64 = 100e-6;
}

/// Netflix's `WindowedLimit` with its default `AverageSampleWindow`: collects samples until
/// one ends after the window's end, then reports the window if it is big enough.
#[derive(Debug)]
struct Window {
    /// When the current window closes (0 at first, so the first sample closes a window of
    /// one sample, which is too small to report).
    closes: f64,
    count: usize,
    sum: f64,
    min_rtt: f64,
    max_in_flight: usize,
}

/// What a closed window reports to the limit it wraps. (`WindowedLimit` also passes on
/// whether the window saw a drop; `Gradient2Limit` ignores it.)
#[derive(Debug)]
struct ClosedWindow {
    average_rtt: f64,
    max_in_flight: usize,
}

impl Window {
    fn new() -> Self {
        Self {
            closes: 0.0,
            count: 0,
            sum: 0.0,
            min_rtt: f64::INFINITY,
            max_in_flight: 0,
        }
    }

    fn add(&mut self, outcome: &Outcome) -> Option<ClosedWindow> {
        if outcome.latency < window::MIN_RTT {
            return None;
        }
        self.count += 1;
        self.sum += outcome.latency;
        self.min_rtt = self.min_rtt.min(outcome.latency);
        self.max_in_flight = self.max_in_flight.max(outcome.in_flight);
        let end = outcome.end();
        if end <= self.closes {
            return None;
        }
        let closed = std::mem::replace(self, Self::new());
        self.closes = end + (closed.min_rtt * 2.0).clamp(window::MIN_TIME, window::MAX_TIME);
        (closed.count >= window::MIN_SAMPLES).then(|| ClosedWindow {
            average_rtt: closed.sum / closed.count as f64,
            max_in_flight: closed.max_in_flight,
        })
    }
}

// ===== Vegas =====

/// `VegasLimit.Builder` defaults.
mod vegas {
    /// `initialLimit`.
    pub(super) const INITIAL: f64 = 20.0;
    /// `maxConcurrency`.
    pub(super) const MAX: f64 = 1000.0;
    /// `smoothing`: 1 means each new limit replaces the old one.
    pub(super) const SMOOTHING: f64 = 1.0;
    /// `probeMultiplier`: the no-load RTT is probed again every `probeMultiplier * limit`
    /// samples, times a jitter drawn in `0.5..1`.
    pub(super) const PROBE_MULTIPLIER: f64 = 30.0;
}

/// Netflix's `Log10RootFunction`: `max(1, floor(log10(n)))` below 1000, `floor(sqrt(n))` from
/// there. Alpha, beta, the threshold and the steps are all multiples of it.
fn log10_root(n: usize) -> f64 {
    if n < 1000 {
        (n as f64).log10().floor().max(1.0)
    } else {
        (n as f64).sqrt().floor()
    }
}

/// Netflix's `VegasLimit`: TCP Vegas' estimate of the requests queued at the backend,
/// `queue = ceil(limit * (1 - rtt_noload / rtt))`, with `rtt_noload` the least RTT seen.
///
/// Each sample, with `L = log10_root(limit)`: a drop decreases the limit by `L`; otherwise,
/// unless fewer than half the limit are in flight, `queue <= L` increases it by `6L` (beta),
/// `queue < 3L` (alpha) by `L`, and `queue > 6L` decreases it by `L`. Every `30 * limit`
/// samples (times a jitter in `0.5..1`) the sample at hand becomes `rtt_noload` (a probe), so
/// that a backend that got slower is not seen as queueing forever.
#[derive(Debug)]
pub(crate) struct Vegas {
    /// `estimatedLimit`.
    limit: f64,
    /// The least RTT seen since the last probe (`None` before the first sample).
    rtt_noload: Option<f64>,
    probe_count: f64,
    probe_jitter: f64,
    /// In place of Java's `ThreadLocalRandom`, seeded so a run repeats.
    rng: StdRng,
}

impl Vegas {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        Self {
            limit: vegas::INITIAL,
            rtt_noload: None,
            probe_count: 0.0,
            probe_jitter: rng.random_range(0.5..1.0),
            rng,
        }
    }

    fn update(&mut self, rtt: f64, in_flight: usize, drop: bool) {
        self.probe_count += 1.0;
        if self.probe_jitter * vegas::PROBE_MULTIPLIER * self.limit <= self.probe_count {
            self.probe_jitter = self.rng.random_range(0.5..1.0);
            self.probe_count = 0.0;
            self.rtt_noload = Some(rtt);
            return;
        }
        let rtt_noload = match self.rtt_noload {
            Some(least) if rtt >= least => least,
            // A new least RTT: recorded, no update.
            _ => {
                self.rtt_noload = Some(rtt);
                return;
            }
        };
        let queue = (self.limit * (1.0 - rtt_noload / rtt)).ceil();
        let step = log10_root(self.limit as usize);
        let estimate = if drop {
            self.limit - step
        } else if (in_flight as f64) * 2.0 < self.limit {
            // Too few in flight to learn anything about the limit.
            return;
        } else {
            let (alpha, beta, threshold) = (3.0 * step, 6.0 * step, step);
            if queue <= threshold {
                self.limit + beta
            } else if queue < alpha {
                self.limit + step
            } else if queue > beta {
                self.limit - step
            } else {
                return;
            }
        };
        let estimate = estimate.clamp(1.0, vegas::MAX);
        self.limit = (1.0 - vegas::SMOOTHING) * self.limit + vegas::SMOOTHING * estimate;
    }
}

impl Controller for Vegas {
    fn initial_limit(&self) -> usize {
        self.limit as usize
    }

    fn on_end(&mut self, outcome: &Outcome) -> Option<usize> {
        let before = self.limit as usize;
        self.update(outcome.latency, outcome.in_flight, !outcome.ok);
        let after = self.limit as usize;
        (after != before).then_some(after)
    }
}

// ===== Vector =====

/// Vector's `AdaptiveConcurrencySettings` defaults.
mod vector {
    /// `initial_concurrency`.
    pub(super) const INITIAL: usize = 1;
    /// `max_concurrency_limit`.
    pub(super) const MAX: usize = 200;
    /// `decrease_ratio`: the multiplicative decrease.
    pub(super) const DECREASE_RATIO: f64 = 0.9;
    /// `ewma_alpha`: the weight of each window's RTT in the past RTT and its variance.
    pub(super) const EWMA_ALPHA: f64 = 0.4;
    /// `rtt_deviation_scale`: how many deviations above the past RTT count as back pressure.
    pub(super) const RTT_DEVIATION_SCALE: f64 = 2.5;
}

/// Vector's adaptive request concurrency: additive increase, multiplicative decrease, one
/// decision per window as long as the past RTT.
///
/// At the first response after the window ends, with `current` the mean RTT of the window's
/// successful responses and `past` an exponentially weighted mean (and variance) of earlier
/// windows' `current`:
///
/// - the limit was reached in the window, no back pressure, and `current <= past.mean`:
///   `limit + 1`;
/// - otherwise, back pressure (a refused request) or `current >= past.mean + 2.5 *
///   past.deviation`: `max(1, floor(limit * 0.9))`.
///
/// Then `current` goes into `past` and the next window lasts `past.mean`.
#[derive(Debug)]
pub(crate) struct Vector {
    limit: usize,
    /// Mean and variance of past windows' RTT (`None` before the first response).
    past: Option<(f64, f64)>,
    /// When the current window ends.
    next_update: f64,
    /// Sum and count of this window's successful RTTs.
    current: (f64, u32),
    back_pressure: bool,
    reached_limit: bool,
}

impl Vector {
    pub(crate) fn new() -> Self {
        Self {
            limit: vector::INITIAL,
            past: None,
            next_update: 0.0,
            current: (0.0, 0),
            back_pressure: false,
            reached_limit: false,
        }
    }

    /// The published exponentially weighted mean and variance (West's recurrence).
    fn update_past(&mut self, sample: f64) -> f64 {
        let (mean, variance) = match self.past {
            None => (sample, 0.0),
            Some((mean, variance)) => {
                let difference = sample - mean;
                let increment = vector::EWMA_ALPHA * difference;
                (
                    mean + increment,
                    (1.0 - vector::EWMA_ALPHA) * (variance + difference * increment),
                )
            }
        };
        self.past = Some((mean, variance));
        mean
    }

    fn decide(&mut self, (past_mean, past_variance): (f64, f64), current: Option<f64>) {
        let threshold = past_variance.sqrt() * vector::RTT_DEVIATION_SCALE;
        if self.limit < vector::MAX
            && self.reached_limit
            && !self.back_pressure
            && current.is_some_and(|current| current <= past_mean)
        {
            self.limit += 1;
        } else if self.limit > 1
            && (self.back_pressure || current.unwrap_or(0.0) >= past_mean + threshold)
        {
            self.limit = ((self.limit as f64 * vector::DECREASE_RATIO) as usize).max(1);
        }
    }
}

impl Controller for Vector {
    fn initial_limit(&self) -> usize {
        self.limit
    }

    fn on_start(&mut self, in_flight: usize) {
        if in_flight >= self.limit {
            self.reached_limit = true;
        }
    }

    fn on_end(&mut self, outcome: &Outcome) -> Option<usize> {
        let now = outcome.end();
        if outcome.ok {
            self.current.0 += outcome.latency;
            self.current.1 += 1;
        } else {
            self.back_pressure = true;
        }
        let current = (self.current.1 > 0).then(|| self.current.0 / f64::from(self.current.1));
        let before = self.limit;
        match self.past {
            None => {
                if let Some(current) = current {
                    self.update_past(current);
                    self.next_update = now + current;
                }
            }
            Some(past) => {
                if now >= self.next_update {
                    self.decide(past, current);
                    let mean = match current {
                        Some(current) => self.update_past(current),
                        None => past.0,
                    };
                    self.next_update = now + mean;
                    self.current = (0.0, 0);
                    self.back_pressure = false;
                    self.reached_limit = false;
                }
            }
        }
        (self.limit != before).then_some(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(start: f64, latency: f64, ok: bool, in_flight: usize) -> Outcome {
        Outcome {
            start,
            latency,
            ok,
            in_flight,
        }
    }

    #[test]
    fn log10_root_is_netflix_lookup() {
        let values: Vec<f64> = [0, 1, 9, 10, 99, 100, 999, 1000, 1024]
            .into_iter()
            .map(log10_root)
            .collect();
        assert_eq!(values, [1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 31.0, 32.0]);
    }

    #[test]
    fn gradient2_grows_by_the_smoothed_queue_allowance_once_per_full_window() {
        let mut limit = Gradient2::new();
        // The first sample closes a window of one, which is dropped.
        assert_eq!(limit.on_end(&outcome(0.0, 0.02, true, 20)), None);
        // Nine samples within the next second, then one that ends after it.
        for i in 0..9 {
            assert_eq!(
                limit.on_end(&outcome(0.1 * f64::from(i), 0.02, true, 20)),
                None
            );
        }
        assert_eq!(
            limit.on_end(&outcome(1.1, 0.02, true, 20)),
            None,
            "20.8 is still 20"
        );
        assert!((limit.limit - 20.8).abs() < 1e-9, "{}", limit.limit);
    }

    #[test]
    fn vegas_decreases_on_a_drop_and_takes_a_new_least_rtt_without_deciding() {
        let mut limit = Vegas::new(1);
        assert_eq!(limit.on_end(&outcome(0.0, 0.02, true, 20)), None);
        assert_eq!(limit.on_end(&outcome(0.0, 0.03, false, 20)), Some(19));
        assert_eq!(limit.on_end(&outcome(0.0, 0.01, true, 20)), None);
        assert_eq!(limit.rtt_noload, Some(0.01));
    }

    #[test]
    fn vector_adds_one_when_the_limit_was_reached_and_cuts_by_a_tenth_on_back_pressure() {
        let mut limit = Vector::new();
        limit.limit = 20;
        // The first response sets the past RTT and a window of 20 ms, to 40 ms.
        limit.on_start(20);
        assert_eq!(limit.on_end(&outcome(0.0, 0.02, true, 20)), None);
        limit.on_start(20);
        assert_eq!(
            limit.on_end(&outcome(0.01, 0.02, true, 20)),
            None,
            "in the window"
        );
        // The window ends: reached, no back pressure, no slower. The next ends at 70 ms.
        assert_eq!(limit.on_end(&outcome(0.03, 0.02, true, 20)), Some(21));
        limit.on_start(5);
        assert_eq!(
            limit.on_end(&outcome(0.05, 0.001, false, 5)),
            None,
            "in the window"
        );
        assert_eq!(limit.on_end(&outcome(0.07, 0.001, false, 5)), Some(18));
    }
}
