//! Third hostile review of issue 11 (adaptive limits), on the last fixes only: an overload
//! signal from inside a task judged by the task's start in the group's running table, the
//! per-member limiter epochs' "other clock" rule (a reading more than a minute behind), the
//! probe's way back, and `Limiter::overloaded()`'s run-time window. Found, and fixed (a
//! task now names its group along with its id to an overload signal, and whether a task
//! started under the current cap or limit is a generation it carries, not a time): a task of group `a` calling `b.overloaded()` is judged by the start of `b`'s task
//! of the same id (ids are per group), so its signal is lost or cuts again; a group that read
//! its clock more than a minute before a change (one long task) counts as on another clock,
//! and its task started under the old limit cuts again (after an adaptive or a hand change);
//! the same on a paused clock ahead of a hand `set_limit` from a plain thread; a burst of
//! `Limiter::overloaded()` before any task ended cut to the floor. The other attacks (drops,
//! aborts, late-recorded starts, spawned sub-tasks, `Results`, bursts across groups, the
//! probe's way back on a limiter) failed, and are kept as guards.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::outputs::{quiet_hook, quiet_panic};
use common::{bounded, ms};
use schedgroup::{Adaptive, Group, Limiter};

/// A group with a cap of 20 that `adaptive` moves.
fn capped_20(adaptive: Adaptive) -> Group {
    Group::builder()
        .max_concurrent(20)
        .adaptive(adaptive)
        .build()
}

/// Signals overload to its group when dropped (with the task's future that holds it).
struct OnDrop(Group);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.overloaded();
    }
}

// ===== a signal from inside a task: the running table =====

/// A task of group `a` calls group `b`'s `overloaded()` (a task that talks to `b`'s backend,
/// say). Ids are per group, so `a`'s task 0 has a namesake in `b`: `b`'s task 0, started
/// before `b`'s cut. `b` looks up the caller's id in its own table, finds its own task 0 and
/// judges `a`'s signal by *that* task's start: ignored as telling of the limit before. The
/// docs say a signal from anywhere but one of `b`'s tasks is judged by the run-time window,
/// which is zero here (no task of `b` has ended): it must cut.
#[tokio::test(start_paused = true)]
async fn a_task_of_another_group_is_not_judged_by_its_namesake() {
    let b = capped_20(Adaptive::aimd());
    let namesake = b.delay(Duration::ZERO, async {
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    common::settle().await;
    tokio::time::sleep(ms(1)).await;
    b.overloaded();
    assert_eq!(
        b.max_concurrent(),
        16,
        "the first signal, from outside, cut"
    );
    let a = Group::new();
    let b2 = b.clone();
    let caller = a.delay(Duration::ZERO, async move {
        b2.overloaded();
    });
    assert_eq!(caller.id(), namesake.id(), "the ids collide");
    bounded(a.wait()).await.unwrap();
    let cap = b.max_concurrent();
    b.cancel();
    let _ = bounded(b.wait()).await;
    assert!(
        cap < 16,
        "a's task (started after b's cut, no run time known) signalled b: cap {cap}"
    );
}

/// The same through a limiter: `a`'s task calls `b.overloaded()`, and the limiter's controller
/// judges it by `b`'s task 0, started before the limiter's cut.
#[tokio::test(start_paused = true)]
async fn a_limiter_signal_through_another_group_is_not_judged_by_a_namesake() {
    let limiter = Limiter::new(20);
    limiter.set_adaptive(Adaptive::aimd());
    let b = Group::builder().limiter(&limiter).build();
    let _namesake = b.delay(Duration::ZERO, async {
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    common::settle().await;
    tokio::time::sleep(ms(1)).await;
    limiter.overloaded();
    assert_eq!(limiter.limit(), 16);
    tokio::time::sleep(ms(1)).await;
    let a = Group::new();
    let b2 = b.clone();
    a.delay(Duration::ZERO, async move {
        b2.overloaded();
    });
    bounded(a.wait()).await.unwrap();
    let limit = limiter.limit();
    b.cancel();
    let _ = bounded(b.wait()).await;
    assert!(limit < 16, "a's task signalled b's limiter: limit {limit}");
}

/// Guard: 20 tasks that signal from their future's `Drop` (the task's id is set there) cut
/// once, as 20 signals from their bodies do.
#[tokio::test(start_paused = true)]
async fn a_burst_of_signals_from_drops_cuts_once() {
    let group = capped_20(Adaptive::aimd());
    for _ in 0..20 {
        let guard = OnDrop(group.clone());
        group.delay(Duration::ZERO, async move {
            let _guard = guard;
            tokio::time::sleep(ms(5)).await;
        });
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.max_concurrent(), 16, "{:?}", group.history().adaptive);
}

/// Guard: 20 running tasks aborted by their handles, whose futures signal from `Drop`: the
/// signals come from tasks started under one limit, and cut once.
#[tokio::test(start_paused = true)]
async fn a_burst_of_signals_from_aborted_tasks_cuts_once() {
    let group = capped_20(Adaptive::aimd());
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let guard = OnDrop(group.clone());
            group.delay(Duration::ZERO, async move {
                let _guard = guard;
                tokio::time::sleep(Duration::from_secs(60)).await;
            })
        })
        .collect();
    common::settle().await;
    tokio::time::sleep(ms(5)).await;
    for handle in &handles {
        handle.cancel();
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.max_concurrent(), 16, "{:?}", group.history().adaptive);
}

/// Guard: tasks begun by another group's ends (their start recorded late, by their runners)
/// signal together after a cut of the limiter by a third party: they started before it, and
/// cut nothing more... and tasks of the same kind begun after it cut once.
#[tokio::test(start_paused = true)]
async fn late_recorded_starts_are_judged_by_when_they_began() {
    let limiter = Limiter::new(4);
    limiter.set_adaptive(Adaptive::aimd().backoff(0.5).floor(1));
    let a = Group::builder().limiter(&limiter).build();
    let b = Group::builder().limiter(&limiter).build();
    // `b` holds the 4 slots for 2 ms; `a`'s 4 tasks wait, and begin on `b`'s ends.
    for _ in 0..4 {
        b.delay(Duration::ZERO, async {
            tokio::time::sleep(ms(2)).await;
        });
    }
    common::settle().await;
    let signalled = Arc::new(AtomicUsize::new(0));
    for _ in 0..4 {
        let a2 = a.clone();
        let signalled = signalled.clone();
        a.delay(Duration::ZERO, async move {
            tokio::time::sleep(ms(10)).await;
            a2.overloaded();
            signalled.fetch_add(1, Ordering::Relaxed);
        });
    }
    tokio::time::sleep(ms(5)).await;
    limiter.overloaded();
    assert_eq!(limiter.limit(), 2, "the cut from outside");
    bounded(a.wait()).await.unwrap();
    bounded(b.wait()).await.unwrap();
    assert_eq!(signalled.load(Ordering::Relaxed), 4);
    assert_eq!(
        limiter.limit(),
        2,
        "tasks begun at 2 ms cut the limit set at 5 ms: {:?}",
        limiter.history().adaptive
    );
}

/// Guard: a signal from a tokio task a group's task spawned has no task id, and falls to the
/// run-time window: once a run time is known (5 ms), a burst of 20 such signals at one instant
/// cuts once.
#[tokio::test(start_paused = true)]
async fn a_burst_from_spawned_sub_tasks_cuts_once_when_a_run_time_is_known() {
    let group = capped_20(Adaptive::aimd().min_samples(u32::MAX));
    for _ in 0..20 {
        group.delay(Duration::ZERO, async {
            tokio::time::sleep(ms(5)).await;
        });
    }
    bounded(group.wait()).await.unwrap();
    for _ in 0..20 {
        let g = group.clone();
        group.delay(Duration::ZERO, async move {
            tokio::time::sleep(ms(5)).await;
            tokio::spawn(async move { g.overloaded() }).await.unwrap();
        });
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(group.max_concurrent(), 16, "{:?}", group.history().adaptive);
}

// ===== `Limiter::overloaded()`: the run-time window =====

/// 20 tasks of a group on an adaptive limiter meet a 429 at once, each calls
/// `Limiter::overloaded()` (the limiter is what they hold) and backs off: no task has ended, so the
/// window is zero and each signal cuts again, 20 -> 1 (the floor). The docs say a signal within
/// one mean run time of the last change is ignored "since it tells of the limit before"; they
/// do not say that before any task ends every signal cuts.
#[tokio::test(start_paused = true)]
async fn a_burst_through_the_limiter_before_any_run_time_cuts_once() {
    let limiter = Limiter::new(20);
    limiter.set_adaptive(Adaptive::aimd());
    let group = Group::builder().limiter(&limiter).build();
    for _ in 0..20 {
        let l = limiter.clone();
        group.delay(Duration::ZERO, async move {
            tokio::time::sleep(ms(5)).await;
            l.overloaded();
            // A retry's back-off: no task ends before all have signalled.
            tokio::time::sleep(ms(1)).await;
        });
    }
    bounded(group.wait()).await.unwrap();
    let state = limiter.history().adaptive.unwrap();
    assert_eq!(limiter.limit(), 16, "20 signals at one instant: {state:?}");
}

/// Guard: the same once a run time is known: one cut.
#[tokio::test(start_paused = true)]
async fn a_burst_through_the_limiter_with_a_run_time_cuts_once() {
    let limiter = Limiter::new(20);
    limiter.set_adaptive(Adaptive::aimd().min_samples(u32::MAX));
    let group = Group::builder().limiter(&limiter).build();
    for _ in 0..20 {
        group.delay(Duration::ZERO, async {
            tokio::time::sleep(ms(5)).await;
        });
    }
    bounded(group.wait()).await.unwrap();
    for _ in 0..20 {
        let l = limiter.clone();
        group.delay(Duration::ZERO, async move {
            tokio::time::sleep(ms(5)).await;
            l.overloaded();
        });
    }
    bounded(group.wait()).await.unwrap();
    assert_eq!(limiter.limit(), 16, "{:?}", limiter.history().adaptive);
}

// ===== the "other clock" rule =====

/// A limiter of 16 (AIMD, backoff 0.5) whose group `b` runs one task that fails after
/// `fail_at`; `after` that, the limit is cut to 8: by the panic of a task of another group
/// `a` on the same clock, or `by_hand`. Returns the limit once `b`'s task has failed: 8 if
/// that task, started under 16, was heard as telling of 16.
async fn a_quiet_group_fails_after_a_cut(
    fail_at: Duration,
    after: Duration,
    by_hand: bool,
) -> usize {
    quiet_hook(|_| false);
    let limiter = Limiter::new(16);
    limiter.set_adaptive(Adaptive::aimd().backoff(0.5));
    let a = Group::builder().limiter(&limiter).build();
    let b = Group::builder().limiter(&limiter).build();
    b.delay(Duration::ZERO, async move {
        tokio::time::sleep(fail_at).await;
        quiet_panic();
    });
    common::settle().await;
    tokio::time::sleep(after).await;
    if by_hand {
        assert!(limiter.set_limit(8));
    } else {
        a.delay(Duration::ZERO, async {
            quiet_panic();
        });
        let _ = bounded(a.wait()).await;
    }
    assert_eq!(limiter.limit(), 8, "the cut");
    let _ = bounded(b.wait()).await;
    limiter.limit()
}

/// Two groups on one adaptive limiter and one clock. `b`'s task starts at 0 and runs two
/// minutes; `b` reads its clock no more meanwhile. `a`'s task fails at 90 s: a cut (16 -> 8).
/// `b`'s last reading (0) was more than a minute behind the change, so `b` counted as on
/// another clock and its epoch was that reading, 0: its task, started at 0 under the old
/// limit, failed at 120 s and counted as new, cutting again (8 -> 4).
#[tokio::test(start_paused = true)]
async fn a_long_task_of_a_quiet_group_does_not_cut_again() {
    let limit = a_quiet_group_fails_after_a_cut(secs(120), secs(90), false).await;
    assert_eq!(limit, 8, "b's task, started under 16, cut again");
}

/// The same with a hand instead of `a`: `Limiter::set_limit(8)` at 90 s (on the same paused
/// clock). `b`'s task, started under 16, failed at 120 s and cut the hand's 8.
#[tokio::test(start_paused = true)]
async fn a_long_task_of_a_quiet_group_does_not_cut_a_hand_limit() {
    let limit = a_quiet_group_fails_after_a_cut(secs(120), secs(90), true).await;
    assert_eq!(limit, 8, "b's task, started under 16, cut the hand's 8");
}

/// Guard: the same within the minute (the change at 30 s, the failure at 40 s): one cut.
#[tokio::test(start_paused = true)]
async fn a_long_task_within_the_minute_does_not_cut_again() {
    assert_eq!(
        a_quiet_group_fails_after_a_cut(secs(40), secs(30), false).await,
        8
    );
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The other way round: `a`'s task 20 started before `b`'s cut, and signals `b` 1 ms after
/// it, within `b`'s mean run time (10 ms): from outside `b`'s tasks, that is ignored. But `b`'s
/// own task 20 started after the cut, and `a`'s signal is judged by it: a second cut.
#[tokio::test(start_paused = true)]
async fn an_old_task_of_another_group_does_not_cut_again_through_a_namesake() {
    let b = capped_20(Adaptive::aimd().min_samples(u32::MAX));
    let a = Group::new();
    for _ in 0..20 {
        b.delay(Duration::ZERO, async {
            tokio::time::sleep(ms(10)).await;
        });
        a.delay(Duration::ZERO, async {});
    }
    bounded(b.wait()).await.unwrap();
    bounded(a.wait()).await.unwrap();
    let b2 = b.clone();
    let old = a.delay(Duration::ZERO, async move {
        tokio::time::sleep(ms(2)).await;
        b2.overloaded();
    });
    common::settle().await;
    tokio::time::sleep(ms(1)).await;
    b.overloaded();
    assert_eq!(b.max_concurrent(), 16, "the cut from outside");
    let namesake = b.delay(Duration::ZERO, async {
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    assert_eq!(old.id(), namesake.id(), "the ids collide");
    bounded(a.wait()).await.unwrap();
    let cap = b.max_concurrent();
    b.cancel();
    let _ = bounded(b.wait()).await;
    assert_eq!(
        cap, 16,
        "a signal 1 ms after the cut, 10 ms tasks, cut again"
    );
}

/// Guard: three groups on one adaptive limiter, ten tasks each, all signal
/// `Group::overloaded()` at one instant (and back off, so none has ended): one cut.
#[tokio::test(start_paused = true)]
async fn a_burst_across_groups_on_one_limiter_cuts_once() {
    let limiter = Limiter::new(30);
    limiter.set_adaptive(Adaptive::aimd());
    let groups: Vec<Group> = (0..3)
        .map(|_| Group::builder().limiter(&limiter).build())
        .collect();
    for group in &groups {
        for _ in 0..10 {
            let g = group.clone();
            group.delay(Duration::ZERO, async move {
                tokio::time::sleep(ms(5)).await;
                g.overloaded();
                tokio::time::sleep(ms(1)).await;
            });
        }
    }
    for group in &groups {
        bounded(group.wait()).await.unwrap();
    }
    assert_eq!(limiter.limit(), 24, "{:?}", limiter.history().adaptive);
}

/// Guard: tasks scheduled through a `Results` collector signal from inside, and cut once.
#[tokio::test(start_paused = true)]
async fn a_burst_from_results_tasks_cuts_once() {
    let group = capped_20(Adaptive::aimd());
    let mut results = group.results::<u32>();
    for i in 0..20 {
        let g = group.clone();
        results.delay(Duration::ZERO, async move {
            tokio::time::sleep(ms(5)).await;
            g.overloaded();
            tokio::time::sleep(ms(1)).await;
            i
        });
    }
    let mut n = 0;
    while let Some((_, out)) = bounded(results.join_next()).await {
        out.unwrap();
        n += 1;
    }
    assert_eq!(n, 20);
    assert_eq!(group.max_concurrent(), 16, "{:?}", group.history().adaptive);
}

// ===== the probe's way back, on a limiter =====

/// Waits (on the paused clock) until a limiter at 50, ceiling 50, probing every second, with
/// one group on a backend that never queues (10 ms a task), has just probed down to 40.
async fn probed_limiter() -> (Limiter, Group) {
    let limiter = Limiter::new(50);
    limiter.set_adaptive(
        Adaptive::aimd()
            .ceiling(50)
            .min_samples(8)
            .probe_every(Duration::from_secs(1)),
    );
    let group = Group::builder().limiter(&limiter).build();
    for _ in 0..4000 {
        let pending = group.stats().pending as usize;
        if pending < 120 {
            for _ in pending..120 {
                group.delay(Duration::ZERO, async {
                    tokio::time::sleep(ms(10)).await;
                });
            }
        }
        tokio::time::sleep(ms(1)).await;
        let last = limiter.history().adaptive.unwrap().last;
        if last.is_some_and(|d| d.reason == schedgroup::Reason::Probe && d.ago < ms(5))
            && limiter.limit() == 40
        {
            return (limiter, group);
        }
    }
    panic!("no probe seen: {:?}", limiter.history().adaptive);
}

/// Guard: between a limiter's probe and its way back, a hand `set_limit(7)`, a controller
/// removed and set again, or an overload signal: the way back (to 50) is never taken.
#[tokio::test(start_paused = true)]
async fn a_limiters_probe_does_not_go_back_over_the_hand() {
    for hand in 0..3 {
        let (limiter, group) = probed_limiter().await;
        match hand {
            0 => assert!(limiter.set_limit(7)),
            1 => {
                limiter.set_adaptive(None);
                limiter.set_adaptive(
                    Adaptive::aimd()
                        .ceiling(50)
                        .min_samples(8)
                        .probe_every(Duration::from_secs(1)),
                );
            }
            _ => limiter.overloaded(),
        }
        let after = limiter.limit();
        let mut top = after;
        for _ in 0..100 {
            tokio::time::sleep(ms(1)).await;
            top = top.max(limiter.limit());
        }
        group.cancel();
        let _ = bounded(group.wait()).await;
        let bound = if hand == 0 { 39 } else { 45 };
        assert!(
            top <= bound,
            "case {hand}: {after} after the hand, then up to {top}: {:?}",
            limiter.history().adaptive
        );
    }
}

/// A hand `Limiter::set_limit(8)` from a plain thread (the real clock) while a group on a
/// paused runtime a day ahead runs a task started under 16: the group's last reading is ahead
/// of the change, so it counts as on another clock and its epoch is that reading, the very
/// instant its task started. The task (started under 16, before the hand) then fails and cuts
/// the hand's 8 as if it told of it.
#[test]
fn a_hand_limit_from_another_clock_is_not_cut_by_an_older_task() {
    quiet_hook(|_| false);
    let limiter = Limiter::new(16);
    limiter.set_adaptive(Adaptive::aimd().backoff(0.5));
    common::current_thread(true).block_on(async {
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        let group = Group::builder().limiter(&limiter).build();
        group.delay(Duration::ZERO, async {
            tokio::time::sleep(ms(10)).await;
            quiet_panic();
        });
        common::settle().await;
        let hand = limiter.clone();
        common::join_bounded(std::thread::spawn(move || assert!(hand.set_limit(8))));
        let _ = bounded(group.wait()).await;
    });
    assert_eq!(
        limiter.limit(),
        8,
        "a task started under 16 cut the hand's 8: {:?}",
        limiter.history().adaptive
    );
}
