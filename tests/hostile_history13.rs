//! Hostile review of issue 13's history (every event counted once, in the 10 s window's ring,
//! and folded into the 1 min and 5 min rings when its step ends), from outside: a group and a
//! limiter on tokio's paused clock, run for hours with events far apart, near together and at
//! exactly a step's boundary (and a nanosecond either side), read at random times, at
//! boundaries and twice in a row. Every window field is checked against a model that keeps
//! every event (the same model as `history::tests`), so the counts, peaks and both means must
//! be exactly equal, and each percentile in the exact one's bin. (These pass: see the report
//! in the commit message; the differential test against the code before the fold is
//! `history::tests::windows_agree_with_the_history_before_the_fold`.)

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use schedgroup::{Group, Limiter, LimiterPermit, Percentiles, TaskHandle, Window};
use tokio::sync::oneshot;
use tokio::time::Instant;

const SECOND: u64 = 1_000_000_000;
const WINDOWS: [u64; 3] = [10, 60, 300];
/// The 5 min window's step: every ring's grid divides it.
const GRID: u64 = 30 * SECOND;

// ===== a model that keeps every event =====

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Completed,
    Panicked,
    Cancelled,
}

#[derive(Debug, Clone, Copy)]
enum Event {
    /// A start, with its lateness if it has a deadline.
    Start(Option<u64>),
    /// A group's task ended, after running so long.
    End(Outcome, u64),
    /// A limiter's permit given back.
    Free,
}

/// What a window should say: as `history::tests::model`, on times that are congruent to the
/// crate's keys modulo [`GRID`] (so on the same step grid).
fn expect(events: &[(u64, Event)], now: u64, span: u64) -> Expected {
    let width = span * SECOND / 10;
    let start = (now / width).saturating_sub(10) * width;
    let mut m = Expected::default();
    let mut running = 0usize;
    let mut t = start;
    for &(at, event) in events {
        let before = at < start;
        if !before {
            m.busy += running as u128 * u128::from(at - t);
            t = at;
        }
        match event {
            Event::Start(_) => running += 1,
            Event::End(..) | Event::Free => running = running.saturating_sub(1),
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
                    let deadline = (at - lateness).max(start);
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
            Event::Free => m.freed += 1,
        }
    }
    m.busy += running as u128 * u128::from(now - t);
    m.covered = now - start;
    m
}

#[derive(Debug, Default)]
struct Expected {
    started: u64,
    freed: u64,
    completed: u64,
    panicked: u64,
    cancelled: u64,
    peak: usize,
    busy: u128,
    waited: u128,
    lateness: Vec<u64>,
    run: Vec<u64>,
    covered: u64,
}

/// The histogram's bin of `nanos` (two a power of two from 2^10 to 2^40 ns, one below, one
/// above), as `Percentiles` documents it.
fn bin(nanos: u64) -> usize {
    if nanos < 1 << 10 {
        return 0;
    }
    let power = nanos.ilog2();
    if power >= 40 {
        return 61;
    }
    1 + (power - 10) as usize * 2 + ((nanos >> (power - 1)) & 1) as usize
}

fn check_percentiles(got: Option<Percentiles>, mut values: Vec<u64>, what: &str) {
    let Some(got) = got else {
        assert!(values.is_empty(), "{what}: None for {values:?}");
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
}

fn check(windows: &[Window; 3], events: &[(u64, Event)], now: u64, what: &str) {
    for (w, span) in windows.iter().zip(WINDOWS) {
        let m = expect(events, now, span);
        let at = format!("{what}: {span} s window at {now}");
        assert_eq!(w.span, Duration::from_secs(span), "{at}");
        assert_eq!(
            (
                w.started,
                w.freed,
                w.completed,
                w.panicked,
                w.cancelled,
                w.ended,
                w.peak_running
            ),
            (
                m.started,
                m.freed,
                m.completed,
                m.panicked,
                m.cancelled,
                m.completed + m.panicked + m.cancelled,
                m.peak
            ),
            "{at}"
        );
        assert_eq!(
            w.mean_running.to_bits(),
            (m.busy as f64 / m.covered as f64).to_bits(),
            "{at}: mean_running {} for {} / {}",
            w.mean_running,
            m.busy,
            m.covered
        );
        assert_eq!(
            w.mean_waiting.to_bits(),
            (m.waited as f64 / m.covered as f64).to_bits(),
            "{at}: mean_waiting {} for {} / {}",
            w.mean_waiting,
            m.waited,
            m.covered
        );
        check_percentiles(w.start_lateness, m.lateness, &format!("lateness, {at}"));
        check_percentiles(w.run_time, m.run, &format!("run time, {at}"));
    }
}

// ===== time =====

/// Model times: congruent to the crate's keys modulo [`GRID`], found from a window's mean.
struct Times {
    /// An instant and its model time.
    origin: Instant,
    at_origin: u64,
}

impl Times {
    /// `windows` were read `held` after one slot was taken (the history's first event) and
    /// held since: the 5 min window's mean is `held / covered`, and `covered` is ten 30 s steps
    /// and the part of the current one gone by.
    fn find(windows: &[Window; 3], held: u64) -> Self {
        let covered = (held as f64 / windows[2].mean_running).round() as u64;
        let phase = covered - 10 * GRID;
        assert!(phase < GRID, "covered {covered}");
        Self {
            origin: Instant::now(),
            at_origin: 1_000 * GRID + phase,
        }
    }

    fn of(&self, at: Instant) -> u64 {
        self.at_origin + (at - self.origin).as_nanos() as u64
    }

    fn now(&self) -> u64 {
        self.of(Instant::now())
    }
}

/// xorshift64: a fixed sequence per seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A gap to move the clock by: none, a nanosecond, up to a millisecond, 2 s, 40 s, 700 s, an
/// hour, or to the next boundary of one of the rings' steps, exactly or a nanosecond either
/// side.
fn gap(rng: &mut Rng, now: u64) -> u64 {
    match rng.below(10) {
        0 => 0,
        1 => 1,
        2 => rng.below(1_000_000),
        3 => rng.below(2 * SECOND),
        4 => rng.below(40 * SECOND),
        5 => rng.below(700 * SECOND),
        6 => 3_600 * SECOND,
        _ => {
            let width = WINDOWS[rng.below(3) as usize] * SECOND / 10;
            let edge = (now / width + 1) * width - now;
            match rng.below(3) {
                0 => edge - 1,
                1 => edge,
                _ => edge + 1,
            }
        }
    }
}

// ===== the tests =====

/// A limiter's slots taken and given back by permits (no deadline, no run time) over hours of
/// paused time, with reads anywhere: every window equals the model's.
#[tokio::test(start_paused = true)]
async fn a_limiters_windows_equal_a_model_over_hours_with_reads_at_every_boundary() {
    for seed in [1u64, 0x9e37_79b9_7f4a_7c15, 42, 7_777_777] {
        let limiter = Limiter::new(1_000);
        let mut held: Vec<LimiterPermit> = vec![limiter.try_acquire().unwrap()];
        tokio::time::advance(Duration::from_secs(100)).await;
        let times = Times::find(&limiter.history().windows, 100 * SECOND);
        let mut events = vec![(times.now() - 100 * SECOND, Event::Start(None))];
        check(&limiter.history().windows, &events, times.now(), "found");
        let mut rng = Rng(seed);
        let mut op = 0;
        while times.now() - times.at_origin < 400 * 3_600 * SECOND && op < 3_000 {
            op += 1;
            let by = gap(&mut rng, times.now());
            tokio::time::advance(Duration::from_nanos(by)).await;
            let now = times.now();
            match rng.below(5) {
                0 | 1 if held.len() < 900 => {
                    for _ in 0..=rng.below(3) {
                        held.push(limiter.try_acquire().unwrap());
                        events.push((now, Event::Start(None)));
                    }
                }
                2 if !held.is_empty() => {
                    let i = rng.below(held.len() as u64) as usize;
                    drop(held.swap_remove(i));
                    events.push((now, Event::Free));
                }
                _ => {}
            }
            let what = format!("seed {seed}, op {op}");
            check(&limiter.history().windows, &events, now, &what);
            // A read changes nothing: a second one at the same time says the same.
            check(&limiter.history().windows, &events, now, &what);
        }
        assert!(op >= 1_000, "{op} operations");
    }
}

/// A task of the group: when it first ran, and how to end it.
struct Task {
    handle: TaskHandle,
    /// Sends 0 to return, 1 to panic.
    end: Option<oneshot::Sender<u8>>,
    deadline: u64,
}

/// A capped group's tasks scheduled with delays (so they start late, waiting for the timer or
/// a slot), ended by completing, panicking or being cancelled, over hours of paused time with
/// reads anywhere: every window equals the model's, lateness and run time included.
#[tokio::test(start_paused = true)]
async fn a_groups_windows_equal_a_model_over_hours_with_reads_at_every_boundary() {
    for seed in [3u64, 0xdead_beef, 99, 123_456_789] {
        let group = Group::builder().max_concurrent(4).build();
        // Which task first ran when (first polls, in order).
        let polled: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::default();
        let mut tasks: Vec<Task> = Vec::new();
        let mut running: Vec<usize> = Vec::new();
        let spawn = |tasks: &mut Vec<Task>, delay: Duration, deadline: u64| {
            let id = tasks.len();
            let (tx, rx) = oneshot::channel::<u8>();
            let polled = polled.clone();
            let handle = group.delay(delay, async move {
                polled.lock().unwrap().push((id, Instant::now()));
                if rx.await == Ok(1) {
                    panic!("task {id} panics, as asked");
                }
            });
            tasks.push(Task {
                handle,
                end: Some(tx),
                deadline,
            });
        };
        // The first task runs 100 s: the times are found from the windows' means.
        spawn(&mut tasks, Duration::ZERO, 0);
        common::settle().await;
        tokio::time::advance(Duration::from_secs(100)).await;
        let times = Times::find(&group.history().windows, 100 * SECOND);
        let first = times.now() - 100 * SECOND;
        tasks[0].deadline = first;
        let mut starts = vec![first];
        let mut events = vec![(first, Event::Start(Some(0)))];
        running.push(0);
        polled.lock().unwrap().clear();
        let mut rng = Rng(seed);
        let mut op = 0;
        while times.now() - times.at_origin < 400 * 3_600 * SECOND && op < 2_000 {
            op += 1;
            let by = gap(&mut rng, times.now());
            tokio::time::advance(Duration::from_nanos(by)).await;
            common::settle().await;
            let now = times.now();
            // Tasks whose timer fired during the advance started at its end.
            let record_starts = |events: &mut Vec<(u64, Event)>,
                                 starts: &mut Vec<u64>,
                                 tasks: &[Task],
                                 running: &mut Vec<usize>| {
                for (id, at) in polled.lock().unwrap().drain(..) {
                    let at = times.of(at);
                    starts.resize(starts.len().max(id + 1), 0);
                    starts[id] = at;
                    let lateness = at.saturating_sub(tasks[id].deadline);
                    events.push((at, Event::Start(Some(lateness))));
                    running.push(id);
                }
            };
            record_starts(&mut events, &mut starts, &tasks, &mut running);
            match rng.below(6) {
                0 | 1 if tasks.len() < 400 => {
                    let delay = match rng.below(4) {
                        0 => 0,
                        1 => rng.below(5_000_000),
                        2 => rng.below(3 * SECOND),
                        _ => rng.below(40 * SECOND),
                    };
                    spawn(&mut tasks, Duration::from_nanos(delay), now + delay);
                }
                2 | 3 if !running.is_empty() => {
                    let i = rng.below(running.len() as u64) as usize;
                    let id = running.swap_remove(i);
                    let outcome = match rng.below(3) {
                        0 => {
                            let _ = tasks[id].end.take().unwrap().send(0);
                            Outcome::Completed
                        }
                        1 => {
                            let _ = tasks[id].end.take().unwrap().send(1);
                            Outcome::Panicked
                        }
                        _ => {
                            assert!(tasks[id].handle.cancel());
                            Outcome::Cancelled
                        }
                    };
                    events.push((now, Event::End(outcome, now - starts[id])));
                }
                _ => {}
            }
            common::settle().await;
            assert_eq!(times.now(), now, "no time passes while the tasks settle");
            record_starts(&mut events, &mut starts, &tasks, &mut running);
            let history = group.history();
            assert_eq!(history.running, running.len(), "seed {seed}, op {op}");
            let what = format!("seed {seed}, op {op}");
            check(&history.windows, &events, now, &what);
            check(&group.history().windows, &events, now, &what);
        }
        assert!(op >= 1_000, "{op} operations");
        group.cancel();
        common::settle().await;
    }
}
