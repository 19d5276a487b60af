//! The controller alone, against a model backend: `C` servers of no-load time `base`, so a
//! task started with `n` in flight takes `base * max(1, n / C)` times lognormal noise, and
//! fails fast (in a millisecond) beyond `2C`. Time is a plain number: no runtime.

use super::*;

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;

/// A seeded xorshift and Box-Muller: noise that is the same on every run.
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// `exp(sigma * N(0, 1))`.
    fn lognormal(&mut self, sigma: f64) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
        (sigma * z).exp()
    }
}

/// A closed loop: `limit` tasks always in flight (a backlog that never empties), each
/// replaced as it ends. Returns the limit over time, one reading per end.
struct Loop {
    ctl: Controller,
    limit: usize,
    now: u64,
    /// Ends to come: (end, started, run, failed).
    flight: std::collections::BinaryHeap<std::cmp::Reverse<(u64, u64, u64, bool)>>,
    noise: Noise,
    changes: Vec<Change>,
    times: Vec<(u64, Change)>,
}

impl Loop {
    fn new(config: Adaptive, limit: usize) -> Self {
        let (limit, ctl) = Controller::start(config, limit, 0);
        Self {
            ctl,
            limit,
            now: 0,
            flight: Default::default(),
            noise: Noise(0x9e37_79b9_7f4a_7c15),
            changes: Vec::new(),
            times: Vec::new(),
        }
    }

    fn start(&mut self, c: f64, base: f64) {
        let n = self.flight.len() as f64 + 1.0;
        let (end, failed) = if n > 2.0 * c {
            (self.now + MS, true)
        } else {
            let run = base * (n / c).max(1.0) * self.noise.lognormal(0.1);
            (self.now + run as u64, false)
        };
        self.flight
            .push(std::cmp::Reverse((end, self.now, end - self.now, failed)));
    }

    /// Runs until `until` against `C = c` and no-load time `base` (ns); `f` sees the limit
    /// after each end.
    fn run(&mut self, until: u64, c: f64, base: f64, mut f: impl FnMut(u64, usize)) {
        loop {
            while self.flight.len() < self.limit {
                self.start(c, base);
            }
            let Some(&std::cmp::Reverse((end, started, run, failed))) = self.flight.peek() else {
                // A limit of 0 is impossible: the floor is at least 1.
                unreachable!("nothing in flight");
            };
            if end > until {
                self.now = until;
                return;
            }
            self.flight.pop();
            self.now = end;
            let reached = self.flight.len() + 1 >= self.limit;
            let sample = Sample {
                now: end,
                current: started >= self.ctl.epoch,
                run,
                overload: failed,
                reached,
                epoch: None,
            };
            if let Some(change) = self.ctl.sample(self.limit, sample) {
                assert_eq!(change.from, self.limit);
                self.limit = change.to;
                self.changes.push(change);
                self.times.push((end, change));
            }
            f(self.now, self.limit);
        }
    }

    /// The time-weighted mean of the limit over `[from, until)`, and its lowest and highest.
    fn stats(&mut self, from: u64, until: u64, c: f64, base: f64) -> (f64, usize, usize) {
        let (mut sum, mut last, mut lo, mut hi) = (0.0, from, usize::MAX, 0);
        let mut limit = self.limit;
        self.run(from, c, base, |_, _| {});
        self.run(until, c, base, |now, l| {
            sum += limit as f64 * (now - last) as f64;
            last = now;
            limit = l;
            lo = lo.min(l);
            hi = hi.max(l);
        });
        sum += limit as f64 * (until - last) as f64;
        (sum / (until - from) as f64, lo, hi)
    }
}

fn base(ms: u64) -> f64 {
    (ms * MS) as f64
}

#[test]
fn both_algorithms_climb_to_the_knee_and_stay_in_a_band_around_it() {
    for config in [Adaptive::aimd(), Adaptive::gradient()] {
        for c in [10.0, 40.0, 60.0] {
            let mut l = Loop::new(config, 5);
            // 5 s to get there, then 30 s that must stay near the knee.
            let (mean, lo, hi) = l.stats(5 * S, 35 * S, c, base(20));
            let name = config.algorithm.name();
            assert!(
                mean >= c && mean <= 1.2 * c,
                "{name} at C = {c}: mean {mean}, {lo}..={hi}"
            );
            assert!(
                lo as f64 >= 0.75 * c && hi as f64 <= 1.3 * c,
                "{name} at C = {c}: mean {mean}, {lo}..={hi}"
            );
        }
    }
}

#[test]
fn a_backend_that_got_slower_does_not_collapse_the_limit() {
    for config in [Adaptive::aimd(), Adaptive::gradient()] {
        let mut l = Loop::new(config, 60);
        l.run(30 * S, 60.0, base(20), |_, _| {});
        let name = config.algorithm.name();
        let mut lowest = usize::MAX;
        l.run(90 * S, 60.0, base(30), |_, limit| {
            lowest = lowest.min(limit)
        });
        assert!(lowest >= 48, "{name}: fell to {lowest}");
        let state = l.ctl.state(l.now, l.limit);
        let no_load = state.no_load_latency.unwrap();
        assert!(
            no_load >= Duration::from_millis(28) && no_load <= Duration::from_millis(32),
            "{name}: {no_load:?}"
        );
    }
}

#[test]
fn a_smaller_backend_brings_the_limit_down_fast_with_few_failures() {
    for config in [Adaptive::aimd(), Adaptive::gradient()] {
        let mut l = Loop::new(config, 10);
        l.run(30 * S, 40.0, base(20), |_, _| {});
        let before = l.changes.len();
        let mut at_2s = 0;
        l.run(32 * S, 10.0, base(20), |now, limit| {
            if now < 32 * S {
                at_2s = limit;
            }
        });
        let overloads = l.changes[before..]
            .iter()
            .filter(|c| c.reason == Reason::Overload)
            .count();
        let name = config.algorithm.name();
        assert!(
            at_2s <= 13,
            "{name}: {at_2s} two seconds after C fell to 10"
        );
        assert!((1..=10).contains(&overloads), "{name}: {overloads} cuts");
    }
}

#[test]
fn an_overload_cuts_at_once_but_only_once_per_limit() {
    let (limit, mut ctl) = Controller::start(Adaptive::aimd(), 50, 0);
    let failed = |now, started: u64, epoch: u64| Sample {
        now,
        current: started >= epoch,
        run: MS,
        overload: true,
        reached: true,
        epoch: None,
    };
    let change = ctl
        .sample(limit, failed(10 * MS, 5 * MS, ctl.epoch))
        .unwrap();
    assert_eq!(
        (change.from, change.to, change.reason),
        (50, 40, Reason::Overload)
    );
    // Tasks started under 50 fail too: they tell of 50, not of 40.
    assert_eq!(ctl.sample(40, failed(11 * MS, 6 * MS, ctl.epoch)), None);
    // One started under 40 cuts again.
    let change = ctl.sample(40, failed(12 * MS, 11 * MS, ctl.epoch)).unwrap();
    assert_eq!((change.from, change.to), (40, 32));
}

fn ok(now: u64, run: u64, reached: bool) -> Sample {
    Sample {
        now,
        current: true,
        run,
        overload: false,
        reached,
        epoch: None,
    }
}

#[test]
fn no_raise_unless_the_limit_was_reached_with_work_waiting() {
    for config in [Adaptive::aimd(), Adaptive::gradient()] {
        let config = config.min_samples(4).probe_every(Duration::MAX);
        let (limit, mut ctl) = Controller::start(config, 8, 0);
        let mut now = 0;
        for _ in 0..1_000 {
            now += 10 * MS;
            assert_eq!(ctl.sample(limit, ok(now, 10 * MS, false)), None);
        }
        // The same run times with the limit reached raise it.
        let raised = (0..4).find_map(|_| {
            now += 10 * MS;
            ctl.sample(limit, ok(now, 10 * MS, true))
        });
        assert_eq!(raised.map(|c| c.reason), Some(Reason::Room));
    }
}

#[test]
fn floor_ceiling_and_hold_bound_every_change() {
    let config = Adaptive::aimd()
        .floor(3)
        .ceiling(6)
        .hold(Duration::from_secs(1))
        .min_samples(1)
        .probe_every(Duration::MAX);
    let (limit, mut ctl) = Controller::start(config, 100, 0);
    assert_eq!(limit, 6, "brought within the ceiling");
    let mut limit = limit;
    let mut now = 0;
    let mut last_change: Option<u64> = None;
    let mut seen = Vec::new();
    for i in 0..10_000u64 {
        now += 10 * MS;
        // Overload every fifth end, fast ends otherwise.
        let mut s = ok(now, MS, true);
        s.overload = i % 5 == 0;
        if let Some(c) = ctl.sample(limit, s) {
            assert!((3..=6).contains(&c.to), "{c:?}");
            if let Some(last) = last_change {
                assert!(
                    now - last >= S,
                    "held: {c:?} {}ms after the last",
                    (now - last) / MS
                );
            }
            last_change = Some(now);
            limit = c.to;
            seen.push(c.to);
        }
    }
    assert!(seen.contains(&3) && seen.contains(&6), "{seen:?}");
    // The floor is at least 1, whatever it is set to.
    let (limit, _) = Controller::start(Adaptive::aimd().floor(0), 0, 0);
    assert_eq!(limit, 1);
}

#[test]
fn a_probe_comes_after_probe_every_under_load_and_not_before() {
    let config = Adaptive::aimd().min_samples(4).ceiling(10);
    let (mut limit, mut ctl) = Controller::start(config, 10, 0);
    let mut now = 0;
    let mut probes = Vec::new();
    while now < 25 * S {
        now += 10 * MS;
        if let Some(c) = ctl.sample(limit, ok(now, 10 * MS, true)) {
            if c.reason == Reason::Probe {
                probes.push(now / S);
            }
            limit = c.to;
        }
    }
    assert_eq!(probes, [10, 20], "at the ceiling, only probes cut");
}

#[test]
fn odd_configurations_are_kept_sane() {
    let a = Adaptive::gradient()
        .tolerance(f64::NAN)
        .backoff(7.0)
        .min_samples(0);
    assert_eq!(a.tolerance, 1.15);
    assert_eq!(a.backoff, 0.99);
    assert_eq!(a.min_samples, 1);
    let a = Adaptive::aimd().tolerance(0.5).backoff(f64::NEG_INFINITY);
    assert_eq!((a.tolerance, a.backoff), (1.02, 0.1));
    // A ceiling below the floor is the floor.
    let (limit, _) = Controller::start(Adaptive::aimd().floor(9).ceiling(2), 50, 0);
    assert_eq!(limit, 9);
    // A group without a cap starts at the ceiling.
    let (limit, _) = Controller::start(Adaptive::aimd(), usize::MAX, 0);
    assert_eq!(limit, 1000);
}

#[test]
#[ignore = "a tool: prints a run's changes"]
fn trace() {
    let algo = std::env::var("ALGO").unwrap_or_default();
    let config = if algo == "g" {
        Adaptive::gradient()
    } else {
        Adaptive::aimd()
    };
    // Phases "C:base_ms:seconds,..."
    let phases = std::env::var("PHASES").unwrap_or("40:20:60,10:20:60,60:20:60,60:30:60".into());
    let start = std::env::var("START").map_or(10, |s| s.parse().unwrap());
    let mut l = Loop::new(config, start);
    let mut until = 0;
    let mut shown = 0;
    for phase in phases.split(',') {
        let p: Vec<u64> = phase.split(':').map(|x| x.parse().unwrap()).collect();
        until += p[2] * S;
        l.run(until, p[0] as f64, base(p[1]), |_, _| {});
        println!("== phase {phase} ends at {}", until / S);
        for (at, ch) in &l.times[shown..] {
            println!("{:8.3} {:?}", *at as f64 / S as f64, ch);
        }
        shown = l.times.len();
    }
}
