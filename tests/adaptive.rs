//! Issue 11: adaptive limits on real groups and limiters, on tokio's paused clock. A model
//! backend of capacity `C` and no-load time `base`: a call made with `n` calls in flight takes
//! `base * max(1, n / C)` (so tasks queue past the knee), and one beyond `2C` fails after a
//! millisecond. (`src/adaptive/tests.rs` checks the controller alone, with noise; the
//! simulation `examples/adaptive` measures the targets.)

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::outputs::{quiet_hook, quiet_panic};
use common::{bounded, ms};
use schedgroup::{Adaptive, Algorithm, Group, Limiter, Reason, Throttle};

/// The model backend.
struct Backend {
    capacity: AtomicUsize,
    base_ms: AtomicU64,
    in_flight: AtomicUsize,
    failed: AtomicU64,
    served: AtomicU64,
}

impl Backend {
    fn new(capacity: usize, base_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            capacity: AtomicUsize::new(capacity),
            base_ms: AtomicU64::new(base_ms),
            in_flight: AtomicUsize::new(0),
            failed: AtomicU64::new(0),
            served: AtomicU64::new(0),
        })
    }

    async fn call(&self) -> Result<(), ()> {
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let c = self.capacity.load(Ordering::SeqCst);
        let result = if n > 2 * c {
            tokio::time::sleep(ms(1)).await;
            self.failed.fetch_add(1, Ordering::SeqCst);
            Err(())
        } else {
            let base = self.base_ms.load(Ordering::SeqCst) * 1_000;
            let us = base * (n.max(c) as u64) / c as u64;
            tokio::time::sleep(Duration::from_micros(us)).await;
            self.served.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

/// Keeps `group` supplied with due calls to `backend` (a backlog that never empties) for
/// `secs` seconds of the paused clock; a failed call signals overload. Samples the limit
/// (`limit()`) every 10 ms. Returns the samples.
async fn drive(
    group: &Group,
    backend: &Arc<Backend>,
    secs: u64,
    limit: impl Fn() -> usize,
) -> Vec<usize> {
    let mut samples = Vec::new();
    for _ in 0..secs * 100 {
        while group.stats().pending < 2 * limit() as u64 + 50 {
            let (g, b) = (group.clone(), backend.clone());
            group.delay(Duration::ZERO, async move {
                if b.call().await.is_err() {
                    g.overloaded();
                }
            });
        }
        tokio::time::sleep(ms(10)).await;
        samples.push(limit());
    }
    samples
}

fn mean(samples: &[usize]) -> f64 {
    samples.iter().sum::<usize>() as f64 / samples.len() as f64
}

#[tokio::test(start_paused = true)]
async fn a_shared_limiter_finds_the_backends_capacity_and_follows_it_down_and_up() {
    for adaptive in [Adaptive::aimd(), Adaptive::gradient()] {
        let name = adaptive.algorithm().name();
        let limiter = Limiter::new(5);
        limiter.set_adaptive(adaptive);
        let group = Group::builder().limiter(&limiter).build();
        let backend = Backend::new(40, 20);
        let l = || limiter.limit();
        // Up from 5 to 40 within 5 s, then steady in a band.
        let up = drive(&group, &backend, 20, l).await;
        let steady = mean(&up[500..]);
        assert!((40.0..=48.0).contains(&steady), "{name}: {steady}");
        assert!(
            up[500..].iter().all(|&l| (32..=52).contains(&l)),
            "{name}: {up:?}"
        );
        // The backend shrinks: down within 2 s, with few failures.
        backend.capacity.store(10, Ordering::SeqCst);
        let failed = backend.failed.load(Ordering::SeqCst);
        let down = drive(&group, &backend, 10, l).await;
        assert!(
            down[200..].iter().all(|&l| (8..=14).contains(&l)),
            "{name}: {down:?}"
        );
        // A limit that stayed at 41 would have 21 calls failing every millisecond: 210,000.
        // Each cut waits for a failure of a call made under the limit before it, so the limit
        // is below 2C within a few milliseconds.
        let failures = backend.failed.load(Ordering::SeqCst) - failed;
        assert!(
            failures <= 300,
            "{name}: {failures} calls failed: {:?}",
            &down[..60]
        );
        // It grows again.
        backend.capacity.store(60, Ordering::SeqCst);
        let up = drive(&group, &backend, 10, l).await;
        let steady = mean(&up[500..]);
        assert!((60.0..=72.0).contains(&steady), "{name}: {steady}");
        // The state says what it did.
        let state = limiter.history().adaptive.expect("adaptive");
        assert_eq!(state.algorithm, adaptive.algorithm());
        assert_eq!(state.limit, limiter.limit());
        assert_eq!(state.no_load_latency, Some(ms(20)), "{name}");
        assert!(state.decisions > 10);
        group.cancel();
        bounded(group.wait()).await.ok();
    }
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_got_slower_keeps_its_limit() {
    for adaptive in [Adaptive::aimd(), Adaptive::gradient()] {
        let name = adaptive.algorithm().name();
        let group = Group::builder()
            .max_concurrent(60)
            .adaptive(adaptive)
            .build();
        let backend = Backend::new(60, 20);
        let l = || group.max_concurrent();
        drive(&group, &backend, 10, l).await;
        backend.base_ms.store(30, Ordering::SeqCst);
        let after = drive(&group, &backend, 20, l).await;
        assert!(after.iter().all(|&l| l >= 48), "{name}: {after:?}");
        assert!((60.0..=72.0).contains(&mean(&after[500..])), "{name}");
        let state = group.history().adaptive.unwrap();
        assert_eq!(state.no_load_latency, Some(ms(30)), "{name}: re-measured");
        group.cancel();
        bounded(group.wait()).await.ok();
    }
}

#[tokio::test(start_paused = true)]
async fn panics_cut_the_cap_by_the_backoff_down_to_the_floor() {
    quiet_hook(|_| false);
    let group = Group::builder()
        .max_concurrent(100)
        .adaptive(Adaptive::aimd().floor(7).backoff(0.5))
        .build();
    for round in 0..10 {
        // One panic at a time, each started under the current cap.
        let h = group.delay(Duration::ZERO, async { quiet_panic() });
        bounded(async {
            while !h.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        let expected = [50, 25, 13, 7, 7, 7, 7, 7, 7, 7][round];
        assert_eq!(
            group.max_concurrent(),
            expected,
            "after {} panics",
            round + 1
        );
    }
    let last = group.history().adaptive.unwrap().last.unwrap();
    assert_eq!((last.from, last.to, last.reason), (13, 7, Reason::Overload));
    let _ = bounded(group.wait()).await;
}

#[tokio::test(start_paused = true)]
async fn outputs_a_classifier_picks_and_signals_cut_the_limit_other_outputs_do_not() {
    let limiter = Limiter::new(40);
    limiter.set_adaptive(Adaptive::gradient().probe_every(Duration::MAX));
    let group = Group::builder().limiter(&limiter).build();
    let mut results = group.results::<Result<u32, u16>>();
    results.overload_when(|r| matches!(r, Err(429 | 503)));
    // A plain error and successes: no cut.
    results.delay(Duration::ZERO, async { Err(404) });
    results.delay(Duration::ZERO, async { Ok(1) });
    for _ in 0..2 {
        let (_, r) = bounded(results.join_next()).await.unwrap();
        assert!(r.is_ok(), "completed");
    }
    assert_eq!(limiter.limit(), 40);
    // A 503 after 5 ms: cut by 0.8.
    results.delay(ms(1), async {
        tokio::time::sleep(ms(5)).await;
        Err(503)
    });
    let (_, r) = bounded(results.join_next()).await.unwrap();
    assert_eq!(r.unwrap(), Err(503));
    assert_eq!(limiter.limit(), 32);
    // A signal from outside any task, right after: ignored (it tells of the limit before);
    // one a run time later is not.
    limiter.overloaded();
    assert_eq!(limiter.limit(), 32);
    tokio::time::sleep(ms(5)).await;
    limiter.overloaded();
    assert_eq!(limiter.limit(), 26);
    // A classifier that panics says no.
    results.overload_when(|_| panic!("classifier bug"));
    quiet_hook(|p| p.downcast_ref::<&str>() == Some(&"classifier bug"));
    results.delay(ms(1), async { Err(503) });
    let (_, r) = bounded(results.join_next()).await.unwrap();
    assert_eq!(r.unwrap(), Err(503), "the output still arrives");
    assert_eq!(limiter.limit(), 26);
    // A dropped `Results` still classifies its tasks' outputs.
    results.overload_when(|r| r.is_err());
    results.delay(ms(1), async { Err(429) });
    drop(results);
    bounded(group.wait()).await.unwrap();
    assert_eq!(
        limiter.limit(),
        20,
        "0.8 of 25.6, the limit before rounding"
    );
}

#[tokio::test(start_paused = true)]
async fn no_raise_while_the_limit_is_not_reached_or_nothing_waits() {
    for adaptive in [Adaptive::aimd(), Adaptive::gradient()] {
        let limiter = Limiter::new(8);
        limiter.set_adaptive(adaptive.min_samples(4).probe_every(Duration::MAX));
        let group = Group::builder().limiter(&limiter).build();
        // 5 000 fast tasks, never more than 4 at once: the limit of 8 is never reached.
        for i in 0..5_000u64 {
            group.delay(ms(i * 10 / 4), async {
                tokio::time::sleep(ms(5)).await;
            });
        }
        bounded(group.wait()).await.unwrap();
        assert_eq!(limiter.limit(), 8, "{:?}", adaptive.algorithm());
        assert_eq!(limiter.history().adaptive.unwrap().decisions, 0);
        // Idle for an hour: nothing changes either.
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        assert_eq!(limiter.limit(), 8);
    }
}

#[tokio::test(start_paused = true)]
async fn floor_ceiling_and_hold_from_a_throttle_bound_every_change() {
    let within = Throttle {
        floor: 20,
        ceiling: Some(30),
        hold: Duration::from_secs(1),
        ..Throttle::default()
    };
    let limiter = Limiter::new(100);
    limiter.set_adaptive(Adaptive::aimd().within(within));
    assert_eq!(limiter.limit(), 30, "brought within the ceiling at once");
    let group = Group::builder().limiter(&limiter).build();
    let backend = Backend::new(10, 20);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let l = || {
        let limit = limiter.limit();
        s.lock().unwrap().push((tokio::time::Instant::now(), limit));
        limit
    };
    drive(&group, &backend, 10, l).await;
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().all(|&(_, l)| (20..=30).contains(&l)));
    assert!(
        seen.iter().any(|&(_, l)| l == 20),
        "overloaded all along: at the floor"
    );
    // The hold: changes at least a second apart (as sampled every 10 ms of the paused clock,
    // so a sampled gap may be 10 ms shorter than the real one).
    let mut changes = seen.windows(2).filter(|w| w[0].1 != w[1].1).map(|w| w[1].0);
    let mut last = changes.next().unwrap();
    for at in changes {
        assert!(at - last >= Duration::from_millis(990), "{:?}", at - last);
        last = at;
    }
    // A ceiling of `None` is the limit when set, as for a throttle.
    let other = Limiter::new(12);
    other.set_adaptive(Adaptive::gradient().within(Throttle {
        ceiling: None,
        ..within
    }));
    assert_eq!(other.limit(), 20, "the floor wins over a ceiling below it");
    group.cancel();
    let _ = bounded(group.wait()).await;
}

#[tokio::test(start_paused = true)]
async fn a_limit_set_by_hand_is_where_the_controller_goes_on_from_and_none_removes_it() {
    let group = Group::builder()
        .max_concurrent(10)
        .adaptive(Adaptive::aimd().ceiling(50))
        .build();
    assert!(group.set_max_concurrent(30));
    group.overloaded();
    assert_eq!(group.max_concurrent(), 24, "0.8 of the limit set by hand");
    group.set_adaptive(None);
    assert!(group.history().adaptive.is_none());
    group.overloaded();
    assert_eq!(group.max_concurrent(), 24, "no controller: nothing");
    // Set again on an uncapped group: it starts at the ceiling.
    let uncapped = Group::new();
    uncapped.set_adaptive(Adaptive::new(Algorithm::Gradient).ceiling(64));
    assert_eq!(uncapped.max_concurrent(), 64);
}
