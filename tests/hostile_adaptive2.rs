//! Second hostile review of issue 11 (adaptive limits), after the fixes of the first
//! (tests/hostile_adaptive.rs): the fixes themselves (per-member limiter epochs, probe
//! restores, "a cut never raises"), overload signals before any sample, odd numbers, user code
//! near the lock, and liveness of several groups on one adaptive limiter. Found, and fixed: a
//! floor of `usize::MAX` panicked; a burst of `overloaded()` calls from tasks started under
//! one limit cut it again and again (a signal from inside a task is now judged by when the
//! task started); a limiter's other groups judged by their last clock reading, not by the
//! change's time; a signal from outside a runtime ignored after a change on a paused clock; a
//! hold across runtimes, and a probe's way back refused by the hold and never retried; an
//! overload right after a probe that left its way back in place.

mod common;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::outputs::{quiet_hook, quiet_panic};
use common::{assert_adds_up, bounded, join_bounded, ms};
use schedgroup::{Adaptive, Group, Limiter, Reason};

/// Schedules `n` due tasks on `group` that each sleep `run`.
fn backlog(group: &Group, n: usize, run: Duration) {
    for _ in 0..n {
        group.delay(Duration::ZERO, async move {
            tokio::time::sleep(run).await;
        });
    }
}

// ===== odd numbers =====

/// `Adaptive::floor(usize::MAX)` is accepted by the builder, but setting it panics: the
/// controller clamps the ceiling to `floor..=usize::MAX - 1`, and `Ord::clamp` panics when
/// the minimum is above the maximum.
#[test]
fn a_floor_of_usize_max_is_accepted_or_refused_but_does_not_panic() {
    quiet_hook(|_| false);
    let limiter = Limiter::new(4);
    let set = std::panic::catch_unwind(AssertUnwindSafe(|| {
        limiter.set_adaptive(Adaptive::aimd().floor(usize::MAX));
    }));
    // Whatever happened, the limiter must still work.
    assert!(limiter.set_limit(3) || limiter.limit() == 3);
    let _ = limiter.history();
    let built = common::current_thread(true).block_on(async {
        std::panic::catch_unwind(|| {
            let group = Group::builder()
                .max_concurrent(4)
                .adaptive(Adaptive::gradient().floor(usize::MAX).ceiling(10))
                .build();
            group.max_concurrent()
        })
    });
    assert!(
        set.is_ok() && built.is_ok(),
        "Limiter::set_adaptive panicked: {}, Builder::adaptive(..).build() panicked: {}",
        set.is_err(),
        built.is_err()
    );
}

/// Guard: floors and ceilings at the top of the range that do not panic keep the limit
/// within them; `min_samples(u32::MAX)` never decides on latency, only on overload.
#[tokio::test(start_paused = true)]
async fn limits_at_the_top_of_the_range() {
    quiet_hook(|_| false);
    for (floor, ceiling) in [
        (usize::MAX - 1, usize::MAX),
        (1, usize::MAX - 1),
        (usize::MAX / 2, usize::MAX / 2 + 1),
    ] {
        let group = Group::builder()
            .max_concurrent(4)
            .adaptive(
                Adaptive::gradient()
                    .floor(floor)
                    .ceiling(ceiling)
                    .min_samples(1),
            )
            .build();
        let cap = group.max_concurrent();
        assert!(cap >= floor.min(usize::MAX - 1), "{floor} {ceiling}: {cap}");
        backlog(&group, 50, ms(3));
        group.delay(Duration::ZERO, async {
            quiet_panic();
        });
        let _ = bounded(group.wait()).await;
        let after = group.max_concurrent();
        assert!(
            after >= floor.min(usize::MAX - 1) && after <= ceiling.max(floor),
            "{floor} {ceiling}: {after}"
        );
        assert_adds_up(group.stats());
    }
    let group = Group::builder()
        .max_concurrent(4)
        .adaptive(Adaptive::aimd().min_samples(u32::MAX))
        .build();
    backlog(&group, 500, ms(1));
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.history().adaptive.unwrap().decisions, 0);
    group.overloaded();
    assert_eq!(group.max_concurrent(), 3);
}

/// Guard: tasks that run for a decade of paused time (sums of squares near 1e37 ns²), mixed
/// with tasks of a nanosecond: the estimates stay finite, the limit within bounds.
#[tokio::test(start_paused = true)]
async fn decade_long_tasks_keep_the_estimates_finite() {
    let group = Group::builder()
        .max_concurrent(3)
        .adaptive(
            Adaptive::gradient()
                .min_samples(2)
                .ceiling(8)
                .probe_every(Duration::MAX),
        )
        .build();
    let decade = Duration::from_secs(10 * 365 * 86_400);
    for i in 0..40u32 {
        let run = if i % 2 == 0 {
            decade
        } else {
            Duration::from_nanos(1)
        };
        group.delay(Duration::ZERO, async move {
            tokio::time::sleep(run).await;
        });
    }
    tokio::time::timeout(decade * 40, group.wait())
        .await
        .expect("the decade-long tasks ended")
        .unwrap();
    let state = group.history().adaptive.unwrap();
    assert!((1..=8).contains(&group.max_concurrent()), "{state:?}");
    let latency = state.latency.unwrap();
    assert!(latency <= decade, "{state:?}");
}

// ===== overload signals =====

/// Tasks started together under one limit, which all meet a 429 and call
/// `Group::overloaded()` before any of them has ended: the docs say only tasks started after
/// the last change count ("cutting again for each of them would collapse it"), and that a
/// signal within one mean run time of the last change is ignored. With no run time known yet,
/// that window is zero, and tasks ended after the cut are no samples, so it stays zero: every
/// signal cuts again, down to the floor. (The same tasks panicking cut once: guard below.)
#[tokio::test(start_paused = true)]
async fn a_burst_of_signals_from_tasks_of_one_limit_cuts_once() {
    let group = Group::builder()
        .max_concurrent(20)
        .adaptive(Adaptive::aimd())
        .build();
    for _ in 0..20 {
        let g = group.clone();
        group.delay(Duration::ZERO, async move {
            tokio::time::sleep(ms(5)).await;
            g.overloaded();
        });
    }
    bounded(group.wait()).await.unwrap();
    let state = group.history().adaptive.unwrap();
    assert_eq!(
        group.max_concurrent(),
        16,
        "20 signals from tasks started under one limit: {state:?}"
    );
}

/// The same through the limiter: its groups' tasks signal `Group::overloaded()` together.
#[tokio::test(start_paused = true)]
async fn a_burst_of_signals_cuts_a_limiter_once() {
    let limiter = Limiter::new(20);
    limiter.set_adaptive(Adaptive::aimd());
    let group = Group::builder().limiter(&limiter).build();
    for _ in 0..20 {
        let g = group.clone();
        group.delay(Duration::ZERO, async move {
            tokio::time::sleep(ms(5)).await;
            g.overloaded();
        });
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(
        limiter.limit(),
        16,
        "{:?}",
        limiter.history().adaptive.unwrap()
    );
}

/// Guard: the same 20 tasks panicking instead cut once.
#[tokio::test(start_paused = true)]
async fn a_burst_of_panics_from_tasks_of_one_limit_cuts_once() {
    quiet_hook(|_| false);
    let group = Group::builder()
        .max_concurrent(20)
        .adaptive(Adaptive::aimd())
        .build();
    for _ in 0..20 {
        group.delay(Duration::ZERO, async move {
            tokio::time::sleep(ms(5)).await;
            quiet_panic();
        });
    }
    let _ = bounded(group.wait()).await;
    assert_eq!(group.max_concurrent(), 16);
}

// ===== per-member limiter epochs =====

/// Two groups on one adaptive limiter, on one runtime (one clock). All 16 tasks start at
/// t = 0 under a limit of 16; group `a`'s fail at 10 ms (one cut: 16 -> 8), group `b`'s at
/// 12 ms. `b`'s tasks started under the old limit and must not cut again; but the epoch the
/// limiter keeps for `b` is `b`'s frontier when the limit changed, the last time `b` read its
/// clock (t = 0, when its monitor started them), and a task started at its epoch counts.
#[tokio::test(start_paused = true)]
async fn a_limiter_cut_is_not_repeated_by_another_groups_older_tasks() {
    quiet_hook(|_| false);
    let limiter = Limiter::new(16);
    limiter.set_adaptive(Adaptive::aimd().backoff(0.5));
    let a = Group::builder().limiter(&limiter).build();
    let b = Group::builder().limiter(&limiter).build();
    for _ in 0..8 {
        a.delay(Duration::ZERO, async {
            tokio::time::sleep(ms(10)).await;
            quiet_panic();
        });
        b.delay(Duration::ZERO, async {
            tokio::time::sleep(ms(12)).await;
            quiet_panic();
        });
    }
    let _ = bounded(a.wait()).await;
    let _ = bounded(b.wait()).await;
    assert_eq!(
        limiter.limit(),
        8,
        "tasks started under 16 cut twice: {:?}",
        limiter.history().adaptive.unwrap()
    );
}

/// The same with a group whose task began after its last clock reading: the slot of `b`'s
/// first task (ended at 2 ms) goes to `a`'s waiting task, which begins at 2 ms without `a`
/// reading its clock; `b`'s second task fails at 5 ms and cuts (4 -> 2); `a`'s task, started at
/// 2 ms under the old limit, fails at 7 ms and cuts again.
#[tokio::test(start_paused = true)]
async fn a_task_begun_by_another_groups_end_is_judged_by_when_it_began() {
    quiet_hook(|_| false);
    let limiter = Limiter::new(4);
    limiter.set_adaptive(Adaptive::aimd().backoff(0.5));
    let a = Group::builder().limiter(&limiter).build();
    let b = Group::builder().limiter(&limiter).build();
    b.delay(Duration::ZERO, async {
        tokio::time::sleep(ms(2)).await;
    });
    b.delay(Duration::ZERO, async {
        tokio::time::sleep(ms(5)).await;
        quiet_panic();
    });
    backlog(&b, 2, ms(100));
    common::settle().await;
    a.delay(Duration::ZERO, async {
        tokio::time::sleep(ms(5)).await;
        quiet_panic();
    });
    let _ = bounded(a.wait()).await;
    let _ = bounded(b.wait()).await;
    assert_eq!(
        limiter.limit(),
        2,
        "a task started under 4 cut again: {:?}",
        limiter.history().adaptive.unwrap()
    );
}

/// `Limiter::overloaded()` reads the process clock where it is called and compares it with
/// the controller's own epoch, which is on the clock of whichever group last fed a change. A
/// group on a paused runtime a day ahead cut the limit; a signal from a plain thread (real
/// clock), seconds later in real time, is "within one mean run time" of that change for a day.
#[test]
fn limiter_overloaded_from_outside_a_runtime_after_a_paused_groups_cut() {
    quiet_hook(|_| false);
    let limiter = Limiter::new(20);
    limiter.set_adaptive(Adaptive::aimd());
    common::current_thread(true).block_on(async {
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        let ahead = Group::builder().limiter(&limiter).build();
        ahead.delay(Duration::ZERO, async {
            tokio::time::sleep(ms(5)).await;
            quiet_panic();
        });
        let _ = bounded(ahead.wait()).await;
    });
    assert_eq!(limiter.limit(), 16, "the panic cut");
    // Far more than one mean run time (5 ms) later, in real time.
    std::thread::sleep(ms(50));
    limiter.overloaded();
    assert!(
        limiter.limit() < 16,
        "a signal 50 ms after a change whose tasks ran 5 ms was ignored: {:?}",
        limiter.history().adaptive
    );
}

/// The first review fixed a zero hold across clocks; a hold of 1 ms is still kept on the
/// clock of the group that made the last change: a group a day behind changes nothing for a
/// day.
#[test]
fn a_short_hold_across_two_runtimes() {
    let limiter = common::adaptive::panics_on_two_clocks(Adaptive::aimd().hold(ms(1)));
    assert!(
        limiter.limit() < 16,
        "a panic 5 ms after the change, with a hold of 1 ms, was held for a day: {:?}",
        limiter.history().adaptive
    );
}

/// Guard: a group that joins a limiter after its limit changed, and a group that reuses the
/// member slot of a dropped one, are judged from when they joined: their first failure cuts.
#[tokio::test(start_paused = true)]
async fn late_joiners_and_reused_members_are_heard() {
    quiet_hook(|_| false);
    let limiter = Limiter::new(32);
    limiter.set_adaptive(Adaptive::aimd().backoff(0.5));
    let mut expected = 32;
    for round in 0..4 {
        tokio::time::sleep(ms(100)).await;
        let group = Group::builder().limiter(&limiter).build();
        group.delay(Duration::ZERO, async {
            tokio::time::sleep(ms(5)).await;
            quiet_panic();
        });
        let _ = bounded(group.wait()).await;
        drop(group);
        expected /= 2;
        assert_eq!(limiter.limit(), expected, "round {round}");
    }
}

// ===== probes and the hand =====

/// Runs a group with cap `start` on a backend that never queues (100 ms a task whatever the
/// load), with a due backlog that never empties, for `secs` of paused time: the cap, read
/// every 100 ms.
async fn never_queues(adaptive: Adaptive, start: usize, secs: u64) -> (Group, Vec<usize>) {
    let group = Group::builder()
        .max_concurrent(start)
        .adaptive(adaptive)
        .build();
    let mut caps = Vec::new();
    for _ in 0..secs * 10 {
        let pending = group.stats().pending as usize;
        let want = 2 * group.max_concurrent() + 10;
        if pending < want {
            backlog(&group, want - pending, ms(100));
        }
        tokio::time::sleep(ms(100)).await;
        caps.push(group.max_concurrent());
    }
    group.cancel();
    let _ = bounded(group.wait()).await;
    (group, caps)
}

fn mean(caps: &[usize]) -> f64 {
    caps.iter().sum::<usize>() as f64 / caps.len() as f64
}

/// A probe cuts by a fifth and, "unless the run time says the backend queues, the limit goes
/// back to where it was". With a hold, the way back is a change within the hold of the probe:
/// it is dropped (the test is taken, the change refused), never retried, and AIMD climbs back
/// by 1 a hold; a probe every 10 s takes a fifth each time, so on a backend that never queues
/// the cap sinks towards `10 s / hold / 0.2` (50 here, from 100).
#[tokio::test(start_paused = true)]
async fn a_probe_goes_back_even_with_a_hold() {
    let (group, caps) = never_queues(
        Adaptive::aimd().ceiling(100).hold(Duration::from_secs(1)),
        100,
        60,
    )
    .await;
    let late = mean(&caps[300..]);
    assert!(
        late >= 90.0,
        "a backend that never queues, mean cap over the last 30 s: {late:.1}; {:?}",
        group.history().adaptive
    );
}

/// Guard: without a hold the probe goes back at once.
#[tokio::test(start_paused = true)]
async fn a_probe_goes_back() {
    let (group, caps) = never_queues(Adaptive::aimd().ceiling(100), 100, 60).await;
    let late = mean(&caps[300..]);
    assert!(late >= 95.0, "{late:.1}; {:?}", group.history().adaptive);
}

/// Guard: a limit set by hand above the ceiling stays there while the backend never queues
/// (a raise never cuts), and is brought to the ceiling by the first overload (a cut), as the
/// docs say; set by hand below the floor, it stays there until a raise.
#[tokio::test(start_paused = true)]
async fn a_limit_set_by_hand_outside_the_bounds() {
    let group = Group::builder()
        .max_concurrent(10)
        .adaptive(Adaptive::aimd().floor(4).ceiling(10).min_samples(4))
        .build();
    group.set_max_concurrent(50);
    backlog(&group, 2000, ms(10));
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.max_concurrent(), 50, "{:?}", group.history().adaptive);
    group.overloaded();
    assert_eq!(group.max_concurrent(), 10);
    group.set_max_concurrent(1);
    group.overloaded();
    assert_eq!(group.max_concurrent(), 1, "a cut raised");
    backlog(&group, 100, ms(10));
    bounded(group.wait()).await.unwrap();
    assert!(
        group.max_concurrent() >= 4,
        "{:?}",
        group.history().adaptive
    );
}

/// Waits (on the paused clock) until a group with cap 50, ceiling 50 and a probe every second
/// on a backend that never queues (10 ms a task) has just probed down to 40.
async fn probed_group() -> Group {
    let group = Group::builder()
        .max_concurrent(50)
        .adaptive(
            Adaptive::aimd()
                .ceiling(50)
                .min_samples(8)
                .probe_every(Duration::from_secs(1)),
        )
        .build();
    for _ in 0..4000 {
        let pending = group.stats().pending as usize;
        if pending < 120 {
            backlog(&group, 120 - pending, ms(10));
        }
        tokio::time::sleep(ms(1)).await;
        let last = group.history().adaptive.unwrap().last;
        if last.is_some_and(|d| d.reason == Reason::Probe && d.ago < ms(5))
            && group.max_concurrent() == 40
        {
            return group;
        }
    }
    panic!("no probe seen: {:?}", group.history().adaptive);
}

/// Guard: a probe followed by a hand, `set_max_concurrent` to another value or
/// `set_adaptive(None)`: the probe's way back never overrides them.
#[tokio::test(start_paused = true)]
async fn a_probe_does_not_fight_the_hand() {
    for hand in 0..2 {
        let group = probed_group().await;
        if hand == 0 {
            group.set_max_concurrent(7);
        } else {
            group.set_adaptive(None);
        }
        let after = group.max_concurrent();
        tokio::time::sleep(ms(100)).await;
        let now = group.max_concurrent();
        if hand == 0 {
            // The controller goes on from 7: AIMD adds 1 a decision, never back to 50 at once.
            assert!(now < 40, "hand 7, then {now}");
        } else {
            assert_eq!(now, after, "no controller, yet the cap moved");
        }
        group.cancel();
        let _ = bounded(group.wait()).await;
    }
}

/// An overload signalled right after a probe (40, from 50) is ignored as telling of the
/// limit before, 50; then the probe's way back, which only the run time can stop, goes back to
/// that very limit. The signal said 50 is too many: the way back should not be taken.
#[tokio::test(start_paused = true)]
async fn an_overload_during_a_probe_stops_its_way_back() {
    let group = probed_group().await;
    group.overloaded();
    let after = group.max_concurrent();
    tokio::time::sleep(ms(100)).await;
    let now = group.max_concurrent();
    let state = group.history().adaptive.unwrap();
    group.cancel();
    let _ = bounded(group.wait()).await;
    // AIMD may add 1 a decision from 40 (the backend never queues); what it must not do is
    // jump back to 50.
    assert!(
        now <= 45,
        "overload signalled at {after}, just after the probe from 50; then {now}: {state:?}"
    );
}

// ===== user code near the lock =====

/// Guard: a future whose `Drop` panics after it returned is a panicked task, and cuts as a
/// panic does; an output whose `Drop` panics is a panic (and a cut) when nobody is there to
/// receive it, and is the receiver's business otherwise.
#[tokio::test(start_paused = true)]
async fn panics_in_drops_after_the_task_returned() {
    quiet_hook(|_| false);
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                quiet_panic();
            }
        }
    }
    let group = Group::builder()
        .max_concurrent(10)
        .adaptive(Adaptive::aimd().backoff(0.5))
        .build();
    let bomb = PanicOnDrop;
    group.delay(Duration::ZERO, async move {
        tokio::time::sleep(ms(1)).await;
        let _keep = &bomb;
    });
    let _ = bounded(group.wait()).await;
    assert_eq!(group.stats().panicked, 1);
    assert_eq!(group.max_concurrent(), 5, "a future's Drop panic cut");

    let group = Group::builder()
        .max_concurrent(10)
        .adaptive(Adaptive::aimd().backoff(0.5))
        .build();
    let mut results = group.results::<PanicOnDrop>();
    results.delay(Duration::ZERO, async {
        tokio::time::sleep(ms(1)).await;
        PanicOnDrop
    });
    let got = bounded(results.join_next()).await.unwrap();
    assert!(got.1.is_ok());
    std::mem::forget(got);
    assert_eq!(
        group.max_concurrent(),
        10,
        "a delivered output is no overload"
    );
    results.delay(ms(10), async {
        tokio::time::sleep(ms(1)).await;
        PanicOnDrop
    });
    drop(results);
    let _ = bounded(group.wait()).await;
    assert_eq!(group.stats().panicked, 1, "{:?}", group.stats());
    assert_eq!(
        group.max_concurrent(),
        5,
        "an undelivered output's panic cut"
    );
}

/// Guard: a classifier that blocks for 200 ms holds no lock of the group's or the limiter's:
/// on a multi-thread runtime, another group on the limiter keeps running tasks, and history,
/// `set_limit`, `overloaded` and stats answer at once meanwhile.
#[test]
fn a_slow_classifier_holds_no_lock() {
    let rt = common::multi_thread(2);
    rt.block_on(async {
        let limiter = Limiter::new(4);
        limiter.set_adaptive(Adaptive::aimd().min_samples(1));
        let slow = Group::builder()
            .limiter(&limiter)
            .adaptive(Adaptive::gradient().min_samples(1))
            .build();
        let other = Group::builder().limiter(&limiter).build();
        let results = slow.results::<u32>();
        let inside = Arc::new(AtomicBool::new(false));
        let i = inside.clone();
        results.overload_when(move |&x| {
            if x == 7 {
                i.store(true, Ordering::SeqCst);
                std::thread::sleep(ms(200));
                i.store(false, Ordering::SeqCst);
            }
            false
        });
        results.delay(Duration::ZERO, async { 7 });
        let done = Arc::new(AtomicUsize::new(0));
        let watcher = {
            let (inside, limiter, slow, other, done) = (
                inside.clone(),
                limiter.clone(),
                slow.clone(),
                other.clone(),
                done.clone(),
            );
            std::thread::spawn(move || {
                common::outputs::spin_until(|| inside.load(Ordering::SeqCst));
                let start = std::time::Instant::now();
                let _ = slow.history();
                let _ = slow.stats();
                let _ = limiter.history();
                limiter.set_limit(4);
                limiter.overloaded();
                slow.overloaded();
                let _ = other.stats();
                let took = start.elapsed();
                assert!(
                    inside.load(Ordering::SeqCst),
                    "the classifier returned first"
                );
                assert!(took < ms(150), "blocked for {took:?} by the classifier");
                done.load(Ordering::SeqCst)
            })
        };
        // The other group keeps going while the classifier blocks one worker.
        let d = done.clone();
        for _ in 0..50 {
            let d = d.clone();
            other.delay(Duration::ZERO, async move {
                tokio::time::sleep(ms(1)).await;
                d.fetch_add(1, Ordering::SeqCst);
            });
        }
        bounded(other.wait()).await.unwrap();
        bounded(slow.wait()).await.unwrap();
        join_bounded(watcher);
        assert_eq!(done.load(Ordering::SeqCst), 50);
    });
}

/// Guard: a classifier that drops the `Results` (and the last handle of the group) from
/// inside: the task ends, nothing deadlocks, the count adds up.
#[test]
fn a_classifier_that_drops_its_results_and_group() {
    quiet_hook(|_| false);
    let rt = common::multi_thread(2);
    rt.block_on(async {
        let group = Group::builder()
            .max_concurrent(3)
            .adaptive(Adaptive::aimd().min_samples(1))
            .build();
        let watch = group.clone();
        let results = Arc::new(Mutex::new(Some(group.results::<u32>())));
        let holder: Arc<Mutex<Option<Group>>> = Arc::new(Mutex::new(Some(group)));
        let (r, h) = (results.clone(), holder.clone());
        results
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .overload_when(move |&x| {
                if x == 5 {
                    let taken = r.lock().unwrap().take();
                    drop(taken);
                    let g = h.lock().unwrap().take();
                    drop(g);
                }
                x % 2 == 0
            });
        for i in 0..20u32 {
            if let Some(results) = results.lock().unwrap().as_ref() {
                results.delay(Duration::ZERO, async move {
                    tokio::time::sleep(Duration::from_micros(u64::from(i) * 100)).await;
                    i
                });
            }
        }
        let _ = bounded(watch.wait()).await;
        assert_adds_up(watch.stats());
        assert_eq!(watch.stats().pending + watch.stats().running, 0);
        assert!(results.lock().unwrap().is_none());
    });
}

// ===== liveness =====

/// Guard: four groups on one adaptive limiter (two with adaptive caps) on a multi-thread
/// runtime, through bursts of raises, cuts, probes and overloads; then, with the controllers
/// frozen, every free slot goes to due work: the limiter runs exactly its limit of long tasks.
#[test]
fn after_adaptive_bursts_every_free_slot_serves_due_work() {
    quiet_hook(|_| false);
    let rt = common::multi_thread(2);
    rt.block_on(async {
        for round in 0..common::iterations(3000) / 500 {
            let limiter = Limiter::new(8);
            limiter.set_adaptive(
                Adaptive::gradient()
                    .min_samples(2)
                    .ceiling(24)
                    .probe_every(ms(20)),
            );
            let groups: Vec<Group> = (0..4)
                .map(|k| {
                    let b = Group::builder().limiter(&limiter);
                    if k % 2 == 0 {
                        b.max_concurrent(12)
                            .adaptive(Adaptive::aimd().min_samples(1).ceiling(12))
                            .build()
                    } else {
                        b.build()
                    }
                })
                .collect();
            for (k, group) in groups.iter().enumerate() {
                for j in 0..150u64 {
                    let g = group.clone();
                    let l = limiter.clone();
                    group.delay(Duration::from_micros(j * 50), async move {
                        tokio::time::sleep(Duration::from_micros(200 + (j * 37 + k as u64) % 900))
                            .await;
                        match (j + k as u64 + round as u64) % 23 {
                            0 => g.overloaded(),
                            1 => l.overloaded(),
                            2 => {
                                quiet_panic();
                            }
                            _ => {}
                        }
                    });
                }
            }
            for group in &groups {
                let _ = bounded(group.wait()).await;
                assert_adds_up(group.stats());
            }
            // Freeze and fill: each group gets more long tasks than the limit.
            limiter.set_adaptive(None);
            for group in &groups {
                group.set_adaptive(None);
            }
            let limit = limiter.limit();
            let caps: usize = groups.iter().map(|g| g.max_concurrent().min(limit)).sum();
            for group in &groups {
                backlog(group, limit + 2, Duration::from_secs(3600));
            }
            let expect = limit.min(caps);
            let start = std::time::Instant::now();
            while limiter.running() < expect && start.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(ms(2)).await;
            }
            assert_eq!(
                limiter.running(),
                expect,
                "round {round}: limit {limit}, caps {:?}, waiting {}",
                groups.iter().map(Group::max_concurrent).collect::<Vec<_>>(),
                limiter.waiting()
            );
            for group in &groups {
                group.cancel();
                let _ = bounded(group.wait()).await;
            }
            assert_eq!(limiter.running(), 0);
        }
    });
}
