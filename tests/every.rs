//! Repeating tasks (`Group::every`, `Group::every_at`, `Every`): when runs happen, what a
//! missed tick does, how a series stops, and what it costs. On the paused clock unless a test
//! races threads.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{DropFlag, alive, assert_adds_up, bounded, iterations, join_bounded, ms, settle};
use schedgroup::{Every, Group};
use tokio::time::{Instant, MissedTickBehavior};

/// When each run started, in ms after `t0`.
#[derive(Clone)]
struct Log {
    t0: Instant,
    starts: Arc<Mutex<Vec<u64>>>,
}

impl Log {
    fn new() -> Self {
        Self {
            t0: Instant::now(),
            starts: Arc::default(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from((Instant::now() - self.t0).as_millis()).unwrap()
    }

    fn record(&self) -> usize {
        let mut starts = self.starts.lock().unwrap();
        starts.push(self.now());
        starts.len() - 1
    }

    fn starts(&self) -> Vec<u64> {
        self.starts.lock().unwrap().clone()
    }

    /// A `make` that logs each run's start and then works for `work(run index)` ms.
    fn maker(
        &self,
        work: fn(usize) -> u64,
    ) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static {
        let log = self.clone();
        move || {
            let log = log.clone();
            Box::pin(async move {
                let run = log.record();
                tokio::time::sleep(ms(work(run))).await;
            })
        }
    }
}

/// Sleeps until `at` ms after `t0`, then lets due work run.
async fn until(log: &Log, at: u64) {
    tokio::time::sleep_until(log.t0 + ms(at)).await;
    settle().await;
}

#[tokio::test(start_paused = true)]
async fn runs_happen_exactly_at_start_and_every_period_after() {
    let group = Group::new();
    let log = Log::new();
    let series = group.every_at(log.t0 + ms(100), ms(250), log.maker(|_| 0));
    until(&log, 1000).await;
    assert_eq!(log.starts(), [100, 350, 600, 850]);
    assert!(series.stop());
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.stats().completed, 4);
}

#[tokio::test(start_paused = true)]
async fn every_starts_one_period_from_now_and_every_at_a_past_instant_runs_at_once() {
    let group = Group::new();
    let log = Log::new();
    let later = group.every(ms(300), log.maker(|_| 0));
    until(&log, 299).await;
    assert_eq!(
        log.starts(),
        [] as [u64; 0],
        "every() ran before one period"
    );
    until(&log, 700).await;
    assert_eq!(log.starts(), [300, 600]);
    later.stop();

    let log = Log::new();
    let past = log.t0.checked_sub(ms(50)).unwrap_or(log.t0);
    let now = group.every_at(past, ms(1000), log.maker(|_| 0));
    settle().await;
    assert_eq!(log.starts(), [0]);
    now.stop();
    bounded(group.wait()).await.unwrap();
}

/// Runs a series with `behavior`, period 100 ms from 100 ms, whose first run lasts 350 ms
/// (until 450 ms, past the ticks at 200, 300 and 400 ms), and returns the run starts up to
/// 720 ms. Also runs the same work in a loop over tokio's `Interval` and checks that the two
/// agree.
async fn overrun(behavior: MissedTickBehavior) -> Vec<u64> {
    fn work(run: usize) -> u64 {
        if run == 0 { 350 } else { 0 }
    }
    let group = Group::new();
    let log = Log::new();
    let series = group.every_at(log.t0 + ms(100), ms(100), log.maker(work));
    series.set_missed_tick_behavior(behavior);
    assert_eq!(series.missed_tick_behavior(), behavior);

    let tokio_log = Log::new();
    let reference = {
        let mut make = tokio_log.maker(work);
        let mut interval = tokio::time::interval_at(tokio_log.t0 + ms(100), ms(100));
        interval.set_missed_tick_behavior(behavior);
        tokio::spawn(async move {
            loop {
                interval.tick().await;
                make().await;
            }
        })
    };

    until(&log, 720).await;
    reference.abort();
    assert!(series.stop());
    bounded(group.wait()).await.unwrap();
    let starts = log.starts();
    assert_eq!(starts, tokio_log.starts(), "differs from tokio's Interval");
    starts
}

#[tokio::test(start_paused = true)]
async fn missed_ticks_burst_runs_every_missed_tick_back_to_back_then_keeps_the_grid() {
    assert_eq!(
        overrun(MissedTickBehavior::Burst).await,
        [100, 450, 450, 450, 500, 600, 700]
    );
}

#[tokio::test(start_paused = true)]
async fn missed_ticks_delay_runs_once_at_once_then_a_period_after_it() {
    assert_eq!(
        overrun(MissedTickBehavior::Delay).await,
        [100, 450, 550, 650]
    );
}

#[tokio::test(start_paused = true)]
async fn missed_ticks_skip_runs_once_at_once_then_the_next_tick_of_the_grid() {
    assert_eq!(
        overrun(MissedTickBehavior::Skip).await,
        [100, 450, 500, 600, 700]
    );
}

#[tokio::test(start_paused = true)]
async fn burst_is_the_default() {
    let group = Group::new();
    let series = group.every(ms(100), || async {});
    assert_eq!(series.missed_tick_behavior(), MissedTickBehavior::Burst);
    series.stop();
}

#[tokio::test(start_paused = true)]
async fn stop_between_runs_cancels_the_pending_run_and_drops_the_closure() {
    let group = Group::new();
    let log = Log::new();
    let (flag, dropped) = DropFlag::new();
    let mut make = log.maker(|_| 0);
    let series = group.every_at(log.t0 + ms(100), ms(100), move || {
        let _keep = &flag;
        make()
    });
    until(&log, 250).await;
    assert_eq!(group.stats().pending, 1);
    assert!(series.stop());
    assert!(
        dropped.load(Ordering::SeqCst),
        "closure not dropped by stop"
    );
    assert!(series.is_stopped());
    assert!(!series.stop(), "a second stop changes nothing");
    let stats = group.stats();
    assert_eq!((stats.pending, stats.completed, stats.cancelled), (0, 2, 1));
    until(&log, 10_000).await;
    assert_eq!(log.starts(), [100, 200]);
    bounded(group.wait()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stop_during_a_run_lets_it_finish_and_starts_no_other() {
    let group = Group::new();
    let log = Log::new();
    let finished = Arc::new(AtomicUsize::new(0));
    let done = finished.clone();
    let t0 = log.t0;
    let series = group.every_at(t0 + ms(100), ms(100), move || {
        let done = done.clone();
        async move {
            tokio::time::sleep(ms(250)).await;
            done.fetch_add(1, Ordering::SeqCst);
        }
    });
    until(&log, 200).await;
    assert_eq!(group.stats().running, 1);
    assert!(series.stop());
    assert_eq!(group.stats().running, 1, "a started run is not aborted");
    bounded(group.wait()).await.unwrap();
    assert_eq!(
        Instant::now() - t0,
        ms(350),
        "wait() waited for the run to finish"
    );
    assert_eq!(finished.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stats = group.stats();
    assert_eq!(
        (stats.scheduled, stats.completed, stats.cancelled),
        (1, 1, 0)
    );
}

/// A task due at the same instant as a run, and scheduled before it, stops the series: both
/// have left the queue by then, so `stop()` cannot cancel the run, and the run must see that it
/// was stopped before it calls `make()`.
#[tokio::test(start_paused = true)]
async fn a_run_the_group_already_took_from_the_queue_calls_no_make_after_stop() {
    let group = Group::new();
    let log = Log::new();
    let series = group.every_at(log.t0 + ms(100), ms(100), log.maker(|_| 0));
    let stopper = series.clone();
    group.schedule(log.t0 + ms(200), async move {
        assert!(stopper.stop());
    });
    until(&log, 1000).await;
    assert_eq!(
        log.starts(),
        [100],
        "make() was called after stop() returned"
    );
    bounded(group.wait()).await.unwrap();
    assert!(series.is_stopped());
}

#[tokio::test(start_paused = true)]
async fn cap_one_is_shared_with_other_tasks_and_a_run_waits_for_its_slot() {
    let group = Group::builder().max_concurrent(1).build();
    let log = Log::new();
    let running = Arc::new(common::Concurrency::default());
    let (r, l) = (running.clone(), log.clone());
    let series = group.every_at(log.t0 + ms(100), ms(100), move || {
        let (r, l) = (r.clone(), l.clone());
        async move {
            let _in = r.enter();
            l.record();
            tokio::time::sleep(ms(30)).await;
        }
    });
    // Another task holds the only slot from 90 to 140 ms: the run due at 100 waits for it,
    // ends at 170, and the next is back on the grid at 200.
    let other = running.clone();
    group.schedule(log.t0 + ms(90), async move {
        let _in = other.enter();
        tokio::time::sleep(ms(50)).await;
    });
    until(&log, 450).await;
    assert_eq!(log.starts(), [140, 200, 300, 400]);
    assert_eq!(running.max(), 1);
    series.stop();
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.stats().completed, 5);
}

#[tokio::test(start_paused = true)]
async fn group_cancel_stops_the_series_pending_or_running() {
    for during_a_run in [false, true] {
        let group = Group::new();
        let log = Log::new();
        let (flag, dropped) = DropFlag::new();
        let mut make = log.maker(|_| 50);
        let series = group.every_at(log.t0 + ms(100), ms(100), move || {
            let _keep = &flag;
            make()
        });
        until(&log, if during_a_run { 220 } else { 180 }).await;
        assert!(group.cancel());
        assert!(series.is_stopped());
        assert!(
            !series.stop(),
            "the group's cancellation already stopped it"
        );
        let err = bounded(group.wait()).await.unwrap_err();
        assert!(err.is_cancelled());
        assert!(dropped.load(Ordering::SeqCst), "closure still alive");
        until(&log, 10_000).await;
        let expected: &[u64] = if during_a_run { &[100, 200] } else { &[100] };
        assert_eq!(log.starts(), expected);
        assert_eq!(group.stats().pending, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn wait_waits_while_a_series_is_live_and_resolves_once_it_is_stopped() {
    let group = Group::new();
    let log = Log::new();
    let series = group.every(ms(100), log.maker(|_| 10));
    group.delay(ms(150), async {});

    // The one-off task is long done, but the series keeps the group busy.
    let waited = tokio::time::timeout(Duration::from_secs(60), group.wait()).await;
    assert!(waited.is_err(), "wait() resolved while a series was live");
    assert!(log.starts().len() >= 599, "the series kept running");

    let stopper = series.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        stopper.stop();
    });
    let before = Instant::now();
    bounded(group.wait()).await.unwrap();
    let waited = Instant::now() - before;
    assert!(
        waited >= Duration::from_secs(5) && waited <= Duration::from_secs(5) + ms(10),
        "wait() resolved {waited:?} after it began, not when the series was stopped (5 s)"
    );
    assert_adds_up(group.stats());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_detaches_the_series_until_the_group_is_cancelled() {
    let group = Group::new();
    let log = Log::new();
    drop(group.every_at(log.t0 + ms(100), ms(100), log.maker(|_| 0)));
    until(&log, 550).await;
    assert_eq!(log.starts(), [100, 200, 300, 400, 500]);
    assert_eq!(group.stats().pending, 1);
    group.cancel();
    until(&log, 10_000).await;
    assert_eq!(log.starts().len(), 5);
    assert!(bounded(group.wait()).await.unwrap_err().is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn many_series_cost_one_pending_task_each_and_no_tokio_task() {
    const SERIES: usize = 1000;
    let group = Group::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let baseline = alive();
    let handles: Vec<Every> = (0..SERIES)
        .map(|i| {
            let runs = runs.clone();
            let period = ms(100 + (i as u64 % 7) * 10);
            group.every(period, move || {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for at in [0, 95, 1_005, 5_555] {
        tokio::time::sleep_until(t0 + ms(at)).await;
        settle().await;
        let stats = group.stats();
        assert_eq!(stats.pending, SERIES as u64, "at {at} ms: {stats:?}");
        assert_eq!(stats.running, 0);
        assert!(
            alive() <= baseline + 1,
            "at {at} ms: {} tokio tasks alive, baseline {baseline} + the monitor",
            alive()
        );
    }
    assert!(runs.load(Ordering::SeqCst) >= SERIES * 30);
    for handle in &handles {
        assert!(handle.stop());
    }
    assert_eq!(group.stats().pending, 0);
    bounded(group.wait()).await.unwrap();
    assert_adds_up(group.stats());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_run_is_reported_and_the_series_goes_on() {
    let group = Group::new();
    let log = Log::new();
    let l = log.clone();
    let series = group.every_at(log.t0 + ms(100), ms(100), move || {
        let run = l.record();
        assert_ne!(run, 1, "make() panics on the second run");
        async move {
            assert_ne!(run, 2, "the third run's future panics");
        }
    });
    until(&log, 550).await;
    assert_eq!(log.starts(), [100, 200, 300, 400, 500]);
    series.stop();
    let err = bounded(group.wait()).await.unwrap_err();
    assert_eq!(err.panicked(), 2);
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "period must be non-zero")]
async fn a_zero_period_panics_like_tokios_interval() {
    let _ = Group::new().every(Duration::ZERO, || async {});
}

/// `stop()` from another thread while runs fire every millisecond on other workers: once
/// `stop()` has returned, `make()` is called at most once more (by a run that had already
/// begun on another thread, as documented; a busy CI run saw it), and `wait()` resolves (nothing is
/// left pending).
#[test]
fn stop_racing_with_runs_on_other_threads_starts_no_run_after_it_returns() {
    let runtime = common::multi_thread(2);
    for i in 0..iterations(100) {
        let _in = runtime.enter();
        let group = Group::new();
        let stopped = Arc::new(AtomicBool::new(false));
        let late = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let (s, l, r) = (stopped.clone(), late.clone(), runs.clone());
        let series = group.every_at(Instant::now(), Duration::from_micros(100), move || {
            if s.load(Ordering::SeqCst) {
                l.fetch_add(1, Ordering::SeqCst);
            }
            r.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros(50 * (i as u64 % 40)));
            assert!(series.stop());
            stopped.store(true, Ordering::SeqCst);
        });
        join_bounded(stopper);
        runtime
            .block_on(tokio::time::timeout(common::REAL_BOUND, group.wait()))
            .expect("wait() hung after stop")
            .unwrap();
        let late = late.load(Ordering::SeqCst);
        assert!(late <= 1, "make() called {late} times after stop returned");
        let stats = group.stats();
        assert_eq!(stats.pending + stats.running, 0);
        assert_adds_up(stats);
    }
}
