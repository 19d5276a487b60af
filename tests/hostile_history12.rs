//! Hostile review of issue 12's history additions (start lateness, run time, mean waiting),
//! the registry, and feature additivity, from outside and without features. Also run with
//! `--all-features`: the auto-trait checks must hold in both builds.

mod common;

use std::panic::{RefUnwindSafe, UnwindSafe};
use std::time::Duration;

use schedgroup::{
    Builder, Component, Every, Group, History, JoinHandle, Limiter, LimiterPermit, Percentiles,
    Registry, Results, TaskHandle,
};
use tokio::time::{Instant, timeout};

#[global_allocator]
static ALLOCATOR: common::counting::Counting = common::counting::Counting;

// ===== feature additivity =====

fn auto<T: Send + Sync + UnwindSafe + RefUnwindSafe + Unpin>() {}

/// Code that compiles without features compiles with them: every public type keeps its auto
/// traits (`Send`, `Sync`, `UnwindSafe`, `RefUnwindSafe`, `Unpin`) in both builds. (Passes.)
#[test]
fn public_types_keep_their_auto_traits_with_or_without_features() {
    auto::<Group>();
    auto::<Builder>();
    auto::<Limiter>();
    auto::<LimiterPermit>();
    auto::<Registry>();
    auto::<Component>();
    auto::<History>();
    auto::<Percentiles>();
    auto::<TaskHandle>();
    auto::<Every>();
    // (A `JoinHandle` is not `RefUnwindSafe` in either build: tokio's oneshot inside.)
    fn send<T: Send + Sync + Unpin>() {}
    send::<JoinHandle<u32>>();
    send::<Results<u32>>();
    // A group used across `catch_unwind` by reference and by value.
    let rt = common::current_thread(true);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    let _ = std::panic::catch_unwind(|| group.stats());
    let _ = std::panic::catch_unwind(move || drop(group));
}

// ===== clocks =====

/// A limiter shared by a group on a paused runtime whose clock ran an hour ahead, and a group
/// on a real-time runtime. When the paused group's task frees the slot, the real group's
/// task starts at once (in real time), but the pool stamps its start with the *freeing
/// caller's* clock (`start_head`: `now = member.frontier.max(at)`), an hour ahead of the
/// group's own: its history then reports an hour of start lateness, a run time of 0 (its end,
/// on its own clock, is "before" its start), and the tracing span and metrics histogram get
/// the same numbers from `Started::at`. Guarantee: "a task starts at or after its deadline on
/// its own group's clock, whoever frees the slot": its lateness should be measured on that
/// clock too.
#[test]
fn a_slot_freed_on_a_clock_that_is_ahead_does_not_make_a_prompt_task_late() {
    let limiter = Limiter::new(1);
    let paused = common::current_thread(true);
    let real = common::multi_thread(1);
    let ahead = Group::builder()
        .limiter(&limiter)
        .runtime(paused.handle().clone())
        .build();
    let prompt = Group::builder()
        .limiter(&limiter)
        .runtime(real.handle().clone())
        .build();
    // The paused group's task takes the one slot and sleeps an hour (of paused time).
    paused.block_on(async {
        ahead.delay(Duration::ZERO, async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        common::settle().await;
    });
    assert_eq!(limiter.running(), 1);
    // The real group's task is due now and waits in line.
    prompt.delay(Duration::ZERO, async {
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    common::outputs::spin_until(|| limiter.waiting() == 1);
    // The paused runtime idles: its clock jumps an hour and its task frees the slot.
    paused.block_on(async {
        timeout(Duration::from_secs(7200), ahead.wait())
            .await
            .unwrap()
            .unwrap();
    });
    let h = real.block_on(async {
        timeout(Duration::from_secs(10), prompt.wait())
            .await
            .expect("the real group's task ran")
            .unwrap();
        prompt.history()
    });
    let late = h.windows[0].start_lateness.expect("one start");
    let run = h.windows[0].run_time.expect("one end");
    assert!(
        late.max < Duration::from_secs(10) && run.max >= Duration::from_millis(50),
        "a task that started within real milliseconds of its deadline and ran 50 ms: \
         lateness {late:?}, run time {run:?}"
    );
}

/// On the paused clock, with a cap of 1 and three 1 s tasks due at once, the waits are 0, 1
/// and 2 s and the runs 1 s each: `mean_waiting` over each window is 3 task-seconds over the
/// time the window covers, lateness p50 = 1 s and max = 2 s exactly (max is exact; the p50 is
/// in the bin of 1 s), run time exact. (Passes.)
#[test]
fn mean_waiting_lateness_and_run_time_match_a_hand_calculation() {
    let rt = common::current_thread(true);
    let group = Group::builder()
        .max_concurrent(1)
        .runtime(rt.handle().clone())
        .build();
    let h = rt.block_on(async {
        // Step boundaries are multiples of the width on the process clock, which the paused
        // clock does not align to: wait at the end for a whole step past the last event.
        let t0 = Instant::now();
        for _ in 0..3 {
            group.schedule(t0 + Duration::from_millis(500), async {
                tokio::time::sleep(Duration::from_secs(1)).await;
            });
        }
        timeout(Duration::from_secs(60), group.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(Instant::now() - t0, Duration::from_millis(3500));
        group.history()
    });
    let w = &h.windows[0];
    let late = w.start_lateness.unwrap();
    assert_eq!((late.count, late.max), (3, Duration::from_secs(2)));
    assert!(
        late.p50 >= Duration::from_millis(768) && late.p50 < Duration::from_millis(1536),
        "{late:?}"
    );
    let run = w.run_time.unwrap();
    assert_eq!(
        (run.p50, run.p99, run.max, run.count),
        (
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(1),
            3
        )
    );
    // Covered: ten whole 1 s steps and the part of the current one gone by, so between 10
    // and 11 s: 3 task-seconds of waiting in all.
    assert!(
        w.mean_waiting > 3.0 / 11.0 && w.mean_waiting <= 3.0 / 10.0,
        "{}",
        w.mean_waiting
    );
    // Busy: 3 task-seconds too.
    assert!(w.mean_running > 3.0 / 11.0 && w.mean_running <= 3.0 / 10.0);
}

/// Distinct run times 1..=200 ms through a real group on the paused clock: p50 and p99 lie
/// in the bins of the exact percentiles (100 ms and 198 ms), max is exact. (Passes.)
#[test]
fn percentiles_of_distinct_run_times_stay_in_the_exact_percentiles_bins() {
    let rt = common::current_thread(true);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    let h = rt.block_on(async {
        for ms in 1..=200u64 {
            group.delay(Duration::ZERO, async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            });
        }
        timeout(Duration::from_secs(60), group.wait())
            .await
            .unwrap()
            .unwrap();
        group.history()
    });
    let run = h.windows[0].run_time.unwrap();
    assert_eq!((run.count, run.max), (200, Duration::from_millis(200)));
    // Bins: two per power of two, so the bin of x is [2^k, 1.5 * 2^k) or [1.5 * 2^k, 2^(k+1)).
    let bin = |d: Duration| {
        let n = d.as_nanos() as u64;
        let p = n.ilog2();
        (p, (n >> (p - 1)) & 1)
    };
    assert_eq!(bin(run.p50), bin(Duration::from_millis(100)), "{run:?}");
    assert_eq!(bin(run.p99), bin(Duration::from_millis(198)), "{run:?}");
}

/// A deadline a day in the past (when the clock allows one): the task starts at once, its
/// lateness is a day (max exact), and it counts as waiting through every window: a
/// `mean_waiting` of about 1 in each. Nothing panics or overflows. (Passes.)
#[test]
fn a_deadline_far_in_the_past_is_a_day_late_and_waited_through_every_window() {
    let rt = common::current_thread(true);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    rt.block_on(async {
        let now = Instant::now();
        let Some(past) = now.checked_sub(Duration::from_secs(86_400)) else {
            return;
        };
        group.schedule(past, async {});
        timeout(Duration::from_secs(60), group.wait())
            .await
            .unwrap()
            .unwrap();
        let h = group.history();
        for w in &h.windows {
            let late = w.start_lateness.unwrap();
            assert_eq!(late.max, Duration::from_secs(86_400), "{late:?}");
            assert_eq!(late.p50, late.max, "one value: exact");
            assert!(
                w.mean_waiting > 0.9 && w.mean_waiting <= 1.0,
                "{:?}: {}",
                w.span,
                w.mean_waiting
            );
        }
    });
}

// ===== memory =====

/// Heap bytes the current thread holds after `f`.
fn held(f: impl FnOnce()) -> isize {
    let before = common::counting::live_bytes();
    f();
    common::counting::live_bytes() - before
}

/// A group busy for five minutes (a task every second) and then silent for ten: every step
/// it kept has rolled off all three windows. Steps roll off only when the history is advanced
/// by an event or a read, so until then it holds a 528-byte histogram for each of at most 33
/// steps (17 KB); the first `history()` read gives them all back. (The hostile review found
/// the docs promising more, "a quiet group holds few"; they now say this.)
#[test]
fn a_quiet_groups_step_histograms_are_bounded_and_a_read_gives_them_back() {
    let rt = common::current_thread(true);
    let group = Group::builder().runtime(rt.handle().clone()).build();
    rt.block_on(async {
        for s in 0..300u64 {
            group.delay(Duration::from_secs(s), async {});
        }
        timeout(Duration::from_secs(600), group.wait())
            .await
            .unwrap()
            .unwrap();
        // Ten minutes of silence: nothing in any window any more.
        tokio::time::sleep(Duration::from_secs(600)).await;
        common::settle().await;
    });
    let mut history = None;
    let freed_by_a_read = -held(|| {
        rt.block_on(async { history = Some(group.history()) });
    });
    let h = history.unwrap();
    assert!(
        h.windows
            .iter()
            .all(|w| w.started == 0 && w.run_time.is_none())
    );
    assert!(
        (1..=33 * 528).contains(&freed_by_a_read),
        "a read after ten minutes of silence freed {freed_by_a_read} bytes; at most 33 steps \
         of 528 were held"
    );
    let freed_again = -held(|| {
        rt.block_on(async { group.history() });
    });
    assert!(freed_again <= 0, "a second read freed {freed_again} more");
}

// ===== registry =====

/// Groups registered and dropped without a snapshot in between: the review found each dead
/// entry kept its group's whole `Shared` allocation alive through the `Weak` until the next
/// snapshot, and `add_group` scanned them all. Registering now drops dead entries first, so
/// churn leaves at most the last one.
#[test]
fn registry_churn_without_snapshots_leaves_at_most_the_last_dead_entry() {
    let rt = common::current_thread(true);
    let registry = Registry::new();
    let n = 2_000;
    let bytes = held(|| {
        for _ in 0..n {
            let group = Group::builder()
                .registry(&registry)
                .runtime(rt.handle().clone())
                .build();
            drop(group);
        }
    });
    assert_eq!(
        registry.len(),
        1,
        "only the last, dropped after its registration"
    );
    assert!(
        bytes < 8_192,
        "{n} registered and dropped groups hold {bytes} bytes"
    );
    assert!(registry.snapshot().is_empty());
    assert_eq!(registry.len(), 0);
}
