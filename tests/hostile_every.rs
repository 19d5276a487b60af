//! Hostile tests of repeating tasks (`Group::every`, `Group::every_at`, `Every`), from outside.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use common::{Concurrency, ConcurrencyGuard, bounded, iterations, join_bounded, ms, settle};
use schedgroup::{Every, Group, Limiter};
use tokio::time::{Instant, MissedTickBehavior};

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn assert_idle(group: &Group) {
    let s = group.stats();
    assert_eq!(s.pending + s.running, 0, "{s:?}");
    common::assert_adds_up(s);
}

// ===== leaks =====

#[tokio::test(start_paused = true)]
async fn h01_stopped_series_frees_its_closure_and_group() {
    let drops = Arc::new(AtomicUsize::new(0));
    let group = Group::new();
    let c = Counted(drops.clone());
    let g2 = group.clone(); // the closure holds its own group: a would-be cycle
    let series = group.every(ms(10), move || {
        let _ = (&c, &g2);
        async {}
    });
    tokio::time::sleep(ms(35)).await;
    assert!(series.stop());
    bounded(group.wait()).await.unwrap();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "closure dropped once stopped"
    );
    drop(series);
    drop(group);
    settle().await;
    assert_eq!(common::alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn h01b_detached_series_freed_by_group_cancel_even_if_closure_holds_group() {
    let drops = Arc::new(AtomicUsize::new(0));
    let group = Group::new();
    for _ in 0..10 {
        let c = Counted(drops.clone());
        let g2 = group.clone();
        drop(group.every(ms(3), move || {
            let _ = (&c, &g2);
            async { tokio::time::sleep(ms(2)).await }
        }));
    }
    tokio::time::sleep(ms(20)).await;
    assert!(group.cancel());
    let err = bounded(group.wait()).await.unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(drops.load(Ordering::SeqCst), 10);
    assert_idle(&group);
}

#[test]
fn h02_runtime_shutdown_with_live_detached_series_drops_everything() {
    for multi in [false, true] {
        let drops = Arc::new(AtomicUsize::new(0));
        let runtime = if multi {
            common::multi_thread(2)
        } else {
            common::current_thread(false)
        };
        runtime.block_on(async {
            let group = Group::builder().max_concurrent(3).build();
            for i in 0..2000u64 {
                let c = Counted(drops.clone());
                let g2 = group.clone();
                drop(group.every_at(
                    Instant::now() + Duration::from_micros(i % 7),
                    Duration::from_micros(50 + i % 13),
                    move || {
                        let _ = (&c, &g2);
                        async { tokio::time::sleep(Duration::from_micros(30)).await }
                    },
                ));
            }
            tokio::time::sleep(ms(5)).await;
        });
        let t = std::thread::spawn(move || drop(runtime));
        join_bounded(t);
        assert_eq!(drops.load(Ordering::SeqCst), 2000, "multi={multi}");
    }
}

// ===== overlap: a future that panics in poll, whose fields outlive the panic =====

struct SlowDrop;
impl Drop for SlowDrop {
    fn drop(&mut self) {
        std::thread::sleep(ms(5));
    }
}

/// A hand-written future (as a library might hand out) that panics when polled: its fields
/// are not dropped by the unwind, only when the group drops the future.
struct PanicsOnPoll {
    _slow: SlowDrop, // dropped first, slowly
    _guard: ConcurrencyGuard,
}
impl Future for PanicsOnPoll {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        panic!("hostile: future panics in poll");
    }
}

#[test]
fn h03_runs_never_overlap_when_a_future_panics_in_poll() {
    let runtime = common::multi_thread(4);
    let conc = Arc::new(Concurrency::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let (c, r) = (conc.clone(), runs.clone());
    let _in = runtime.enter();
    let group = Group::new();
    // Far in the past, Burst: every successor is due at once.
    let series = group.every_at(Instant::now() - Duration::from_secs(10), ms(1), move || {
        r.fetch_add(1, Ordering::SeqCst);
        PanicsOnPoll {
            _slow: SlowDrop,
            _guard: c.enter(),
        }
    });
    let start = std::time::Instant::now();
    while runs.load(Ordering::SeqCst) < 20 && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(ms(1));
    }
    series.stop();
    let res = runtime
        .block_on(tokio::time::timeout(common::REAL_BOUND, group.wait()))
        .expect("wait hung");
    assert!(res.unwrap_err().panicked() >= 1);
    assert_eq!(
        conc.max(),
        1,
        "two runs of one series alive at once ({} runs)",
        runs.load(Ordering::SeqCst)
    );
}

// ===== missed ticks against a tokio Interval loop =====

/// Start times (ms after t0) of a series at `t0 + start` (ms, may be negative), with run `i`
/// working `work(i)` ms; at `jump_at` the clock is advanced by `jump` ms.
async fn series_starts(
    start: i64,
    period: u64,
    behavior: MissedTickBehavior,
    work: fn(usize) -> u64,
    jump: Option<(u64, u64)>,
    horizon: u64,
) -> Vec<u64> {
    let t0 = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let group = Group::new();
    let s = starts.clone();
    let at = if start >= 0 {
        t0 + ms(start as u64)
    } else {
        t0 - ms((-start) as u64)
    };
    let series = group.every_at(at, ms(period), move || {
        let s = s.clone();
        async move {
            let i = {
                let mut s = s.lock().unwrap();
                s.push((Instant::now() - t0).as_millis() as u64);
                s.len() - 1
            };
            tokio::time::sleep(ms(work(i))).await;
        }
    });
    series.set_missed_tick_behavior(behavior);
    drive(t0, jump, horizon).await;
    series.stop();
    bounded(group.wait()).await.unwrap();
    starts.lock().unwrap().clone()
}

async fn interval_starts(
    start: i64,
    period: u64,
    behavior: MissedTickBehavior,
    work: fn(usize) -> u64,
    jump: Option<(u64, u64)>,
    horizon: u64,
) -> Vec<u64> {
    let t0 = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s = starts.clone();
    let at = if start >= 0 {
        t0 + ms(start as u64)
    } else {
        t0 - ms((-start) as u64)
    };
    let task = tokio::spawn(async move {
        let mut interval = tokio::time::interval_at(at, ms(period));
        interval.set_missed_tick_behavior(behavior);
        loop {
            interval.tick().await;
            let i = {
                let mut s = s.lock().unwrap();
                s.push((Instant::now() - t0).as_millis() as u64);
                s.len() - 1
            };
            tokio::time::sleep(ms(work(i))).await;
        }
    });
    drive(t0, jump, horizon).await;
    task.abort();
    let _ = task.await;
    starts.lock().unwrap().clone()
}

async fn drive(t0: Instant, jump: Option<(u64, u64)>, horizon: u64) {
    if let Some((at, by)) = jump {
        tokio::time::sleep_until(t0 + ms(at)).await;
        settle().await;
        tokio::time::advance(ms(by)).await;
        settle().await;
    }
    tokio::time::sleep_until(t0 + ms(horizon)).await;
    settle().await;
}

const BEHAVIORS: [MissedTickBehavior; 3] = [
    MissedTickBehavior::Burst,
    MissedTickBehavior::Delay,
    MissedTickBehavior::Skip,
];

#[tokio::test(start_paused = true)]
async fn h04_every_at_a_past_start_matches_a_tokio_interval_loop() {
    let mut bad = Vec::new();
    for b in BEHAVIORS {
        let ours = series_starts(-10_000, 4_000, b, |_| 0, None, 9_000).await;
        let tokio = interval_starts(-10_000, 4_000, b, |_| 0, None, 9_000).await;
        if ours != tokio {
            bad.push(format!("{b:?}: series {ours:?} vs interval {tokio:?}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[tokio::test(start_paused = true)]
async fn h05_a_clock_jump_matches_a_tokio_interval_loop() {
    let mut bad = Vec::new();
    for b in BEHAVIORS {
        // Period 4 s from 4 s; at 5 s the clock jumps by 10 s (a stalled runtime, a suspend).
        let ours = series_starts(4_000, 4_000, b, |_| 0, Some((5_000, 10_000)), 25_000).await;
        let tokio = interval_starts(4_000, 4_000, b, |_| 0, Some((5_000, 10_000)), 25_000).await;
        if ours != tokio {
            bad.push(format!("{b:?}: series {ours:?} vs interval {tokio:?}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[tokio::test(start_paused = true)]
async fn h06_random_overruns_match_a_tokio_interval_loop() {
    // Work in multiples of 10 ms with a 100 ms period: never within tokio's 5 ms leniency.
    fn w1(i: usize) -> u64 {
        [30, 250, 0, 10, 170, 90, 100, 400, 20, 0, 130][i % 11]
    }
    fn w2(i: usize) -> u64 {
        ((i as u64 * 7919) % 23) * 10
    }
    let mut bad = Vec::new();
    for b in BEHAVIORS {
        for w in [w1 as fn(usize) -> u64, w2] {
            let ours = series_starts(100, 100, b, w, None, 5_000).await;
            let tokio = interval_starts(100, 100, b, w, None, 5_000).await;
            if ours != tokio {
                bad.push(format!("{b:?}: series {ours:?}\n  vs interval {tokio:?}"));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// ===== runs never early =====

#[tokio::test(start_paused = true)]
async fn h07_no_run_starts_before_its_tick_with_odd_periods() {
    for period in [
        Duration::from_nanos(1_000_001),
        Duration::from_micros(1500),
        Duration::from_nanos(999_999),
    ] {
        let group = Group::new();
        let t0 = Instant::now();
        let early = Arc::new(AtomicUsize::new(0));
        let n = Arc::new(AtomicUsize::new(0));
        let (e, nn) = (early.clone(), n.clone());
        let series = group.every_at(t0, period, move || {
            let k = nn.fetch_add(1, Ordering::SeqCst) as u32;
            if Instant::now() < t0 + period * k {
                e.fetch_add(1, Ordering::SeqCst);
            }
            async {}
        });
        tokio::time::sleep(ms(50)).await;
        series.stop();
        bounded(group.wait()).await.unwrap();
        assert_eq!(early.load(Ordering::SeqCst), 0, "{period:?}");
        assert!(
            n.load(Ordering::SeqCst) >= 30,
            "{period:?}: {}",
            n.load(Ordering::SeqCst)
        );
    }
}

// ===== tiny and huge periods =====

#[tokio::test(start_paused = true)]
async fn h08_one_nanosecond_period_delay_and_skip_do_not_spin() {
    for b in [MissedTickBehavior::Delay, MissedTickBehavior::Skip] {
        let group = Group::new();
        let n = Arc::new(AtomicUsize::new(0));
        let nn = n.clone();
        let series = group.every(Duration::from_nanos(1), move || {
            nn.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        series.set_missed_tick_behavior(b);
        let real = std::time::Instant::now();
        tokio::time::timeout(ms(20), std::future::pending::<()>())
            .await
            .unwrap_err();
        let runs = n.load(Ordering::SeqCst);
        assert!(series.stop());
        bounded(group.wait()).await.unwrap();
        assert!(
            real.elapsed() < Duration::from_secs(2),
            "{b:?} took {:?}",
            real.elapsed()
        );
        // tokio's timer has 1 ms granularity: about 2 runs a ms (one on the grid, one missed).
        assert!(runs <= 100, "{b:?}: {runs} runs in 20 ms of paused time");
    }
}

#[tokio::test(start_paused = true)]
async fn h09_duration_max_period() {
    let group = Group::new();
    let n = Arc::new(AtomicUsize::new(0));
    let nn = n.clone();
    let a = group.every(Duration::MAX, || async {});
    let b = group.every_at(Instant::now(), Duration::MAX, move || {
        nn.fetch_add(1, Ordering::SeqCst);
        async {}
    });
    assert_eq!(a.period(), Duration::MAX);
    tokio::time::sleep(Duration::from_secs(86_400 * 365 * 10)).await;
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert_eq!(group.stats().pending, 2);
    assert!(a.stop() && b.stop());
    bounded(group.wait()).await.unwrap();
    assert_idle(&group);
}

/// A 300-year period (past the 292-year key range, below u64 ns) and a 1 s period on a clock
/// moved past 292 years: the series goes quiet, as `Group::every` documents, and still stops.
#[tokio::test(start_paused = true)]
async fn h10_past_the_292_years_deadlines_are_kept_to_a_series_goes_quiet_and_still_stops() {
    const YEAR: u64 = 86_400 * 365;
    let group = Group::new();
    let n = Arc::new(AtomicUsize::new(0));
    let nn = n.clone();
    let long = group.every_at(Instant::now(), Duration::from_secs(300 * YEAR), move || {
        nn.fetch_add(1, Ordering::SeqCst);
        async {}
    });
    settle().await;
    assert_eq!(n.load(Ordering::SeqCst), 1);
    let m = Arc::new(AtomicUsize::new(0));
    let mm = m.clone();
    let short = group.every(Duration::from_secs(1), move || {
        mm.fetch_add(1, Ordering::SeqCst);
        async {}
    });
    short.set_missed_tick_behavior(MissedTickBehavior::Skip);
    tokio::time::advance(Duration::from_secs(301 * YEAR)).await;
    settle().await;
    let after_jump = m.load(Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    let long_runs = n.load(Ordering::SeqCst);
    let short_runs = m.load(Ordering::SeqCst);
    assert!(long.stop() && short.stop());
    bounded(group.wait()).await.unwrap();
    // Documented on `Group::every`: a tick past the 292 years deadline keys hold is never
    // due, so the series goes quiet rather than run on a clock whose keys stopped moving. (A
    // hostile review first read this as a defect; it is the documented limit.)
    assert_eq!(
        (long_runs, short_runs, after_jump),
        (1, 1, 1),
        "300-year series ran {long_runs} times in 301 years; 1 s Skip series ran {after_jump} \
         times up to the jump and {short_runs} after 5 s more"
    );
}

#[tokio::test(start_paused = true)]
async fn h11_every_at_far_past_instant() {
    let group = Group::new();
    let far = Instant::now()
        .checked_sub(Duration::from_secs(86_400 * 365 * 500))
        .or_else(|| Instant::now().checked_sub(Duration::from_secs(3600)))
        .unwrap();
    for b in [MissedTickBehavior::Delay, MissedTickBehavior::Skip] {
        let n = Arc::new(AtomicUsize::new(0));
        let nn = n.clone();
        let s = group.every_at(far, Duration::from_secs(1), move || {
            nn.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        s.set_missed_tick_behavior(b);
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let runs = n.load(Ordering::SeqCst);
        assert!(s.stop());
        assert!((3..=5).contains(&runs), "{b:?}: {runs}");
    }
    bounded(group.wait()).await.unwrap();
}

// ===== limiter at 0, cap 1 =====

#[tokio::test(start_paused = true)]
async fn h12_series_on_a_limiter_at_zero_then_raised() {
    let limiter = Limiter::new(0);
    let group = Group::builder().limiter(&limiter).build();
    let conc = Arc::new(Concurrency::default());
    let n = Arc::new(AtomicUsize::new(0));
    let (c, nn) = (conc.clone(), n.clone());
    let series = group.every(ms(10), move || {
        let g = c.enter();
        nn.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(ms(1)).await;
            drop(g);
        }
    });
    tokio::time::sleep(ms(100)).await;
    assert_eq!(n.load(Ordering::SeqCst), 0);
    assert_eq!(group.stats().pending, 1);
    limiter.set_limit(1);
    tokio::time::sleep(ms(50)).await;
    let runs = n.load(Ordering::SeqCst);
    assert!(runs >= 10, "{runs}");
    limiter.set_limit(0);
    tokio::time::sleep(ms(50)).await;
    assert!(series.stop());
    bounded(group.wait()).await.unwrap();
    assert_eq!(conc.max(), 1);
    assert_eq!(limiter.running(), 0);
    assert_idle(&group);
}

#[tokio::test(start_paused = true)]
async fn h13_cap_one_shared_by_a_series_and_one_offs() {
    let group = Group::builder().max_concurrent(1).build();
    let conc = Arc::new(Concurrency::default());
    let c = conc.clone();
    let series = group.every(ms(10), move || {
        let g = c.enter();
        async move {
            tokio::time::sleep(ms(4)).await;
            drop(g);
        }
    });
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..20u64 {
        let (c, d) = (conc.clone(), done.clone());
        group.delay(ms(3 + i * 7), async move {
            let _g = c.enter();
            tokio::time::sleep(ms(3)).await;
            d.fetch_add(1, Ordering::SeqCst);
        });
    }
    tokio::time::sleep(ms(400)).await;
    assert_eq!(done.load(Ordering::SeqCst), 20);
    assert!(series.stop());
    bounded(group.wait()).await.unwrap();
    assert_eq!(conc.max(), 1);
    assert_idle(&group);
}

// ===== re-entrancy and panics =====

#[tokio::test(start_paused = true)]
async fn h14_make_stops_its_own_series() {
    let group = Group::new();
    let me: Arc<OnceLock<Every>> = Arc::default();
    let drops = Arc::new(AtomicUsize::new(0));
    let n = Arc::new(AtomicUsize::new(0));
    let (m, c, nn) = (me.clone(), Counted(drops.clone()), n.clone());
    let series = group.every(ms(10), move || {
        let _ = &c;
        if nn.fetch_add(1, Ordering::SeqCst) == 2 {
            assert!(m.get().unwrap().stop());
        }
        async {}
    });
    me.set(series.clone()).ok().unwrap();
    bounded(group.wait()).await.unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 3);
    assert!(series.is_stopped());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_idle(&group);
}

#[tokio::test(start_paused = true)]
async fn h15_make_cancels_its_group_and_spawns_series() {
    let group = Group::new();
    let g = group.clone();
    let n = Arc::new(AtomicUsize::new(0));
    let nn = n.clone();
    let series = group.every(ms(10), move || {
        let k = nn.fetch_add(1, Ordering::SeqCst);
        drop(g.every(ms(1), || async {})); // a detached series per run
        if k == 3 {
            g.cancel();
        }
        async {}
    });
    let err = bounded(group.wait()).await.unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(n.load(Ordering::SeqCst), 4);
    assert!(series.is_stopped());
    assert!(!series.stop());
    assert_idle(&group);
}

struct DropHook(Box<dyn FnMut() + Send>);
impl Drop for DropHook {
    fn drop(&mut self) {
        (self.0)();
    }
}

#[tokio::test(start_paused = true)]
async fn h16_closure_drop_that_stops_cancels_and_panics() {
    // Dropped by stop(): its Drop calls stop() again, cancels the group, then panics.
    let group = Group::new();
    let me: Arc<OnceLock<Every>> = Arc::default();
    let (m, g) = (me.clone(), group.clone());
    let hook = DropHook(Box::new(move || {
        if let Some(e) = m.get() {
            assert!(!e.stop());
        }
        g.cancel();
        panic!("hostile: closure drop");
    }));
    let series = group.every(ms(10), move || {
        let _ = &hook;
        async {}
    });
    me.set(series.clone()).ok().unwrap();
    tokio::time::sleep(ms(25)).await;
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| series.stop()));
    assert!(
        matches!(out, Ok(true)),
        "stop() let the closure's panic out or said false"
    );
    assert!(group.is_cancelled());
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
    assert_idle(&group);
    drop(me); // the closure held a clone of series; it is gone
}

#[tokio::test(start_paused = true)]
async fn h17_make_panics_future_panics_future_drop_panics() {
    struct PanicDrop;
    impl Drop for PanicDrop {
        fn drop(&mut self) {
            panic!("hostile: future drop");
        }
    }
    let group = Group::new();
    let n = Arc::new(AtomicUsize::new(0));
    let nn = n.clone();
    let series = group.every(ms(10), move || {
        let k = nn.fetch_add(1, Ordering::SeqCst);
        if k % 3 == 0 {
            panic!("hostile: make");
        }
        async move {
            let _d = (k % 3 == 2).then_some(PanicDrop);
            tokio::task::yield_now().await;
            if k % 3 == 1 {
                panic!("hostile: future");
            }
        }
    });
    tokio::time::sleep(ms(95)).await;
    assert_eq!(n.load(Ordering::SeqCst), 9);
    assert!(series.stop());
    let err = bounded(group.wait()).await.unwrap_err();
    assert_eq!(err.panicked(), 9);
    assert_idle(&group);
}

// ===== races on the multi-thread runtime =====

#[test]
fn h18_stop_races_group_cancel_and_runs() {
    let runtime = common::multi_thread(3);
    for i in 0..iterations(200) {
        let _in = runtime.enter();
        let group = Group::builder().max_concurrent(1 + i % 3).build();
        let drops = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let late = Arc::new(AtomicUsize::new(0));
        let conc = Arc::new(Concurrency::default());
        let mut handles = Vec::new();
        for k in 0..4 {
            let (c, s, l, cc) = (
                Counted(drops.clone()),
                stopped.clone(),
                late.clone(),
                conc.clone(),
            );
            let _ = k;
            let series = group.every_at(Instant::now(), Duration::from_micros(50), move || {
                let _ = &c;
                if s.load(Ordering::SeqCst) {
                    l.fetch_add(1, Ordering::SeqCst);
                }
                let g = cc.enter();
                async move {
                    tokio::task::yield_now().await;
                    drop(g);
                }
            });
            handles.push(series);
        }
        // One-off tasks beside them.
        for _ in 0..5 {
            group.delay(Duration::from_micros(30), async {});
        }
        let g = group.clone();
        let delay = Duration::from_micros(20 * (i as u64 % 25));
        let (h1, h2) = (handles.clone(), handles.clone());
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(delay);
            for h in &h1 {
                h.stop();
            }
        });
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(delay);
            if i % 2 == 0 {
                g.cancel();
            }
        });
        join_bounded(stopper);
        stopped.store(true, Ordering::SeqCst);
        join_bounded(canceller);
        let _ = runtime
            .block_on(tokio::time::timeout(common::REAL_BOUND, group.wait()))
            .expect("wait() hung");
        assert!(h2.iter().all(Every::is_stopped));
        assert_idle(&group);
        assert!(
            late.load(Ordering::SeqCst) <= 4,
            "iteration {i}: {} make() calls after every stop returned",
            late.load(Ordering::SeqCst)
        );
        assert!(conc.max() <= 1 + i % 3);
        drop(h2);
        drop(handles);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            4,
            "iteration {i}: closures not dropped"
        );
    }
}

#[test]
fn h19_many_series_one_ns_period_runtime_shutdown_no_stack_overflow() {
    let drops = Arc::new(AtomicUsize::new(0));
    let runtime = common::current_thread(false);
    runtime.block_on(async {
        let limiter = Limiter::new(1);
        for _ in 0..50 {
            let group = Group::builder().limiter(&limiter).build();
            for _ in 0..200 {
                let c = Counted(drops.clone());
                drop(group.every(Duration::from_nanos(1), move || {
                    let _ = &c;
                    async {}
                }));
            }
        }
        tokio::time::sleep(ms(20)).await;
    });
    let t = std::thread::spawn(move || drop(runtime));
    join_bounded(t);
    assert_eq!(drops.load(Ordering::SeqCst), 10_000);
}
