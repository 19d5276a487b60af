//! Hostile review of issue 12's `tracing` and `metrics` features, from outside: recorders and
//! subscribers that panic or call back into the group, metrics labels that collide, gauges
//! that must end at the latest reading, and spans on the runtime-shutdown path.
//!
//! Run with `cargo test --all-features --test hostile_observe`. No global recorder or
//! subscriber is installed: each test builds its groups under `metrics::with_local_recorder`
//! (a group takes its handles when it is built) and runs a current-thread runtime under
//! a per-thread layer of the binary's one subscriber (`common::trace`), so the tests stay
//! independent.

mod common;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use schedgroup::{Group, Limiter, Registry};
use tokio::time::timeout;

use common::metrics::{Rec, key};

/// A recorder panic that the quiet hook keeps off stderr.
fn quiet_panic() -> ! {
    std::panic::panic_any(common::outputs::Quiet)
}

fn quiet() {
    common::outputs::quiet_hook(|p| {
        p.downcast_ref::<&str>()
            .is_some_and(|s| s.starts_with("hostile"))
    });
}

fn build(rec: &Rec, builder: schedgroup::Builder) -> Group {
    metrics::with_local_recorder(rec, || builder.build())
}

/// A paused current-thread runtime and a group built for it under `rec`.
fn paused_group(rec: &Rec, builder: schedgroup::Builder) -> (tokio::runtime::Runtime, Group) {
    let rt = common::current_thread(true);
    let group = build(rec, builder.runtime(rt.handle().clone()));
    (rt, group)
}

// ===== a panicking recorder =====

/// Claimed: "a panicking recorder loses one report only". A recorder whose run-time
/// histogram panics: the runner has already taken the task out (`self.task.take()`) when it
/// records the run time (`TaskSpan::end`), so the unwind drops the task without `close`:
/// its slot and its `running` count are never given back and `wait()` never returns.
#[test]
fn a_recorder_panicking_on_the_run_time_histogram_loses_no_slot() {
    quiet();
    let rec = Rec::with_hook(|key, _| {
        if key.starts_with("schedgroup_task_run_seconds") {
            quiet_panic();
        }
    });
    let (rt, group) = paused_group(&rec, Group::builder().name("runs").max_concurrent(1));
    rt.block_on(async {
        for _ in 0..3 {
            group.delay(Duration::ZERO, async {});
        }
        let waited = timeout(Duration::from_secs(3600), group.wait()).await;
        let stats = group.stats();
        assert!(
            waited.is_ok(),
            "wait() hung: a slot was lost to the recorder's panic, {stats:?}"
        );
        assert_eq!((stats.completed, stats.running), (3, 0), "{stats:?}");
    });
}

/// The same recorder panicking on the start-lateness histogram (`TaskSpan::start`, before the
/// first poll): the runner unwinds with the task still in it, and `Runner::drop`, meant for
/// a runtime shutting down, cancels the whole group.
#[test]
fn a_recorder_panicking_on_the_lateness_histogram_cancels_nothing() {
    quiet();
    let rec = Rec::with_hook(|key, _| {
        if key.starts_with("schedgroup_task_start_lateness_seconds") {
            quiet_panic();
        }
    });
    let (rt, group) = paused_group(&rec, Group::builder().name("late").max_concurrent(1));
    rt.block_on(async {
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let ran = ran.clone();
            group.delay(Duration::ZERO, async move {
                ran.fetch_add(1, Ordering::SeqCst);
            });
        }
        let waited = timeout(Duration::from_secs(3600), group.wait())
            .await
            .expect("wait() returns");
        assert!(
            !group.is_cancelled(),
            "a recorder panic cancelled the group: {waited:?}, {:?}",
            group.stats()
        );
        assert_eq!(ran.load(Ordering::SeqCst), 3);
    });
}

/// A panicking gauge or counter loses one report: the Publisher catches it. (Passes.)
#[test]
fn a_recorder_panicking_on_gauges_loses_only_that_report() {
    quiet();
    let armed = Arc::new(AtomicBool::new(true));
    let a = armed.clone();
    let rec = Rec::with_hook(move |key, _| {
        if key.starts_with("schedgroup_tasks_running") && a.swap(false, Ordering::SeqCst) {
            quiet_panic();
        }
    });
    let (rt, group) = paused_group(&rec, Group::builder().name("gauges").max_concurrent(2));
    rt.block_on(async {
        for i in 0..10 {
            group.delay(common::ms(i), async {
                tokio::time::sleep(common::ms(5)).await;
            });
        }
        timeout(Duration::from_secs(3600), group.wait())
            .await
            .unwrap()
            .unwrap();
    });
    assert!(!armed.load(Ordering::SeqCst));
    let s = group.stats();
    assert_eq!(
        rec.last(&key("schedgroup_tasks_completed_total", "gauges")),
        Some(s.completed as f64)
    );
    assert_eq!(
        rec.last(&key("schedgroup_tasks_running", "gauges")),
        Some(0.0)
    );
}

// ===== labels that collide =====

/// Every unnamed group reports under `group="unnamed"`, and every group reports its own
/// totals with `Counter::absolute`: two unnamed groups (the default) overwrite each other's
/// counters and gauges. A recorder that takes `absolute` as given sees the counter go
/// backwards; one that keeps the maximum (the `metrics` crate's atomics, the Prometheus
/// exporter) shows the larger group's total, not the sum; the gauges show whichever group
/// published last.
#[test]
fn two_unnamed_groups_never_make_a_counter_go_backwards_or_lie() {
    let rec = Rec::new();
    let rt = common::current_thread(true);
    let a = build(&rec, Group::builder().runtime(rt.handle().clone()));
    let b = build(&rec, Group::builder().runtime(rt.handle().clone()));
    rt.block_on(async {
        for _ in 0..5 {
            a.delay(Duration::from_secs(1), async {});
        }
        b.delay(Duration::from_secs(1), async {});
        timeout(Duration::from_secs(3600), async {
            a.wait().await.unwrap();
            b.wait().await.unwrap();
        })
        .await
        .unwrap();
    });
    let scheduled = rec.values(&key("schedgroup_tasks_scheduled_total", "unnamed"));
    let backwards: Vec<_> = scheduled.windows(2).filter(|w| w[1] < w[0]).collect();
    let total = (a.stats().scheduled + b.stats().scheduled) as f64;
    assert!(
        backwards.is_empty() && scheduled.last() == Some(&total),
        "schedgroup_tasks_scheduled_total{{group=\"unnamed\"}} went {scheduled:?}; the groups \
         scheduled {total} in all"
    );
}

// ===== gauges after quiescence =====

/// Many threads schedule, cancel and change the cap of one group on a multi-thread runtime;
/// once everything settles, the last value of every gauge and counter is what `stats()` says,
/// and no counter ever went backwards. (Passes: the Publisher's dirty/busy protocol holds.)
#[test]
fn gauges_and_counters_end_at_stats_after_racing_threads() {
    let rec = Rec::new();
    let rt = common::multi_thread(2);
    let group = build(
        &rec,
        Group::builder()
            .name("race")
            .max_concurrent(3)
            .runtime(rt.handle().clone()),
    );
    let per_thread = common::iterations(2000) / 4;
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let group = group.clone();
            std::thread::spawn(move || {
                let mut seed = t * 7919 + 1;
                for i in 0..per_thread {
                    let r = common::outputs::next(&mut seed);
                    let h = group.delay(Duration::from_micros(r % 300), async move {
                        if r % 3 == 0 {
                            tokio::task::yield_now().await;
                        }
                    });
                    if r % 5 == 0 {
                        h.cancel();
                    }
                    if i % 97 == 0 {
                        group.set_max_concurrent((r % 4 + 1) as usize);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        common::join_bounded(t);
    }
    rt.block_on(async {
        timeout(Duration::from_secs(20), group.wait())
            .await
            .expect("wait() returns")
            .unwrap();
    });
    // Runners end after `wait()` can return (item 6): let them.
    std::thread::sleep(Duration::from_millis(50));
    let s = group.stats();
    for (name, want) in [
        ("schedgroup_tasks_scheduled_total", s.scheduled),
        ("schedgroup_tasks_completed_total", s.completed),
        ("schedgroup_tasks_cancelled_total", s.cancelled),
        ("schedgroup_tasks_panicked_total", s.panicked),
        ("schedgroup_tasks_pending", 0),
        ("schedgroup_tasks_running", 0),
        ("schedgroup_tasks_waiting", 0),
    ] {
        let values = rec.values(&key(name, "race"));
        assert_eq!(values.last().copied(), Some(want as f64), "{name}");
        if name.ends_with("_total") {
            assert!(
                values.windows(2).all(|w| w[0] <= w[1]),
                "{name} went backwards"
            );
        }
    }
    assert_eq!(
        rec.last(&key("schedgroup_group_limit", "race")),
        Some(group.max_concurrent() as f64)
    );
    rt.shutdown_timeout(Duration::from_secs(5));
}

/// Dropping an `acquire()` that waited in a limiter's line brings the limiter's waiting gauge
/// back to 0 (`Waiting::drop` publishes only when `abandon` returns effects: it does here).
/// (Passes.)
#[test]
fn a_dropped_acquire_brings_the_limiter_waiting_gauge_back() {
    let rec = Rec::new();
    let limiter = metrics::with_local_recorder(&rec, || Limiter::named("db", 1));
    common::current_thread(true).block_on(async {
        let held = limiter.acquire().await;
        let l = limiter.clone();
        let waiter = tokio::spawn(async move {
            let _p = l.acquire().await;
        });
        common::settle().await;
        assert_eq!(limiter.waiting(), 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(limiter.waiting(), 0);
        drop(held);
    });
    let key = "schedgroup_limiter_waiting{limiter=\"db\"}";
    assert_eq!(
        rec.last(key),
        Some(0.0),
        "{key} ended at {:?} ({:?}); the limiter says {} waiting",
        rec.last(key),
        rec.values(key),
        limiter.waiting()
    );
}

/// "The waiting gauge is the count History::waiting reads", read "after each change". Tasks
/// that fall due while the group is at its cap change that count with no event, and nothing
/// reads it again until something else happens: the gauge stays at what it read when the
/// first task fell due.
#[test]
fn the_waiting_gauge_follows_tasks_falling_due_at_the_cap() {
    let rec = Rec::new();
    let (rt, group) = paused_group(&rec, Group::builder().name("paused").max_concurrent(0));
    let h = rt.block_on(async {
        for s in 1..=5 {
            group.delay(Duration::from_secs(s), async {});
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        common::settle().await;
        // On the group's own (paused) clock.
        group.history()
    });
    assert_eq!(h.waiting, 5);
    let gauge = rec.last(&key("schedgroup_tasks_waiting", "paused"));
    assert_eq!(
        gauge,
        Some(5.0),
        "the waiting gauge says {gauge:?} after 10 s; history().waiting says {}",
        h.waiting
    );
}

/// Moving a due, waiting task into the future (`reschedule`) changes the waiting count.
#[test]
fn rescheduling_a_waiting_task_updates_the_waiting_gauge() {
    let rec = Rec::new();
    let (rt, group) = paused_group(&rec, Group::builder().name("moved").max_concurrent(0));
    rt.block_on(async {
        let h = group.delay(Duration::ZERO, async {});
        common::settle().await;
        assert_eq!(group.history().waiting, 1);
        assert!(h.reschedule(tokio::time::Instant::now() + Duration::from_secs(60)));
        common::settle().await;
        assert_eq!(group.history().waiting, 0);
    });
    let gauge = rec.last(&key("schedgroup_tasks_waiting", "moved"));
    assert_eq!(gauge, Some(0.0), "{gauge:?}");
}

// ===== recorders that call back into the group =====

/// A recorder whose every report reads the group (`stats`, `history`, `Debug`), and whose
/// reports of one gauge change the cap and schedule: if any report ran under the group's lock
/// this deadlocks. Run on a plain thread with a deadline.
#[test]
fn a_recorder_that_calls_back_into_its_group_does_not_deadlock() {
    static GROUP: OnceLock<Group> = OnceLock::new();
    static DEPTH: AtomicUsize = AtomicUsize::new(0);
    let rec = Rec::with_hook(|key, value| {
        let Some(group) = GROUP.get() else { return };
        let _ = group.stats();
        let _ = group.history();
        let _ = format!("{group:?}");
        if key.starts_with("schedgroup_tasks_completed_total") && value == 3.0 {
            // Once: a new cap and a new task, from inside a report.
            if DEPTH.fetch_add(1, Ordering::SeqCst) == 0 {
                group.set_max_concurrent(4);
                group.delay(Duration::ZERO, async {});
            }
        }
    });
    let thread = std::thread::spawn(move || {
        let rt = common::current_thread(true);
        let group = build(
            &rec,
            Group::builder()
                .name("callback")
                .max_concurrent(1)
                .runtime(rt.handle().clone()),
        );
        GROUP.set(group.clone()).unwrap();
        rt.block_on(async {
            for _ in 0..6 {
                group.delay(common::ms(1), async {
                    tokio::time::sleep(common::ms(1)).await;
                });
            }
            timeout(Duration::from_secs(3600), group.wait())
                .await
                .unwrap()
                .unwrap();
        });
        group.stats()
    });
    let stats = common::join_bounded(thread);
    assert_eq!(stats.completed, 7, "{stats:?}");
}

// ===== tracing: subscribers that panic or call back =====

mod capture {
    use super::*;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::layer::{Context, Layer};
    use tracing_subscriber::registry::LookupSpan;

    #[derive(Default)]
    pub struct Message(pub String);

    impl Visit for Message {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.0 = value.to_owned();
            }
        }
    }

    pub type OnEvent = Arc<dyn Fn(&str) + Send + Sync>;
    pub type OnEnter = Arc<dyn Fn(&str) + Send + Sync>;

    /// Records the messages of `schedgroup` events and runs `on_event` after each; runs
    /// `on_enter` with a span's name when it is entered.
    #[derive(Clone)]
    pub struct Hostile {
        pub messages: Arc<Mutex<Vec<String>>>,
        pub on_event: OnEvent,
        pub on_enter: OnEnter,
    }

    impl Hostile {
        pub fn new(
            on_event: impl Fn(&str) + Send + Sync + 'static,
            on_enter: impl Fn(&str) + Send + Sync + 'static,
        ) -> Self {
            Self {
                messages: Arc::default(),
                on_event: Arc::new(on_event),
                on_enter: Arc::new(on_enter),
            }
        }

        pub fn count(&self, message: &str) -> usize {
            self.messages
                .lock()
                .unwrap()
                .iter()
                .filter(|m| *m == message)
                .count()
        }
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Hostile {
        fn on_new_span(&self, _: &Attributes<'_>, _: &Id, _: Context<'_, S>) {}

        fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
            if let Some(span) = ctx.span(id) {
                (self.on_enter)(span.name());
            }
        }

        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            if event.metadata().target() != "schedgroup" {
                return;
            }
            let mut message = Message::default();
            event.record(&mut message);
            self.messages.lock().unwrap().push(message.0.clone());
            (self.on_event)(&message.0);
        }
    }
}

use capture::Hostile;

/// Runs `f` with `layer` seeing this thread's reports (see `common::trace`: one global
/// subscriber, so that parallel tests lose no event to tracing's interest cache).
fn traced<T>(layer: &Hostile, f: impl FnOnce() -> T) -> T {
    common::trace::traced(layer.clone(), f)
}

/// A subscriber that panics on `task ended`: that event is emitted after the runner took
/// the task out, before `close`. The unwind drops the task without counting its end: the
/// slot leaks, `running` stays 1, `wait()` never returns.
#[test]
fn a_subscriber_panicking_on_task_ended_loses_no_slot() {
    quiet();
    let layer = Hostile::new(
        |message| {
            if message == "task ended" {
                quiet_panic();
            }
        },
        |_| {},
    );
    traced(&layer, || {
        common::current_thread(true).block_on(async {
            let group = Group::builder().name("ended").max_concurrent(1).build();
            for _ in 0..3 {
                group.delay(Duration::ZERO, async {});
            }
            let waited = timeout(Duration::from_secs(3600), group.wait()).await;
            let stats = group.stats();
            assert!(waited.is_ok(), "wait() hung: {stats:?}");
            assert_eq!((stats.completed, stats.running), (3, 0), "{stats:?}");
        });
    });
}

/// A subscriber that panics when the task's span is entered (around each poll): the panic is
/// outside `poll_catching`, the runner unwinds with the task in it, and `Runner::drop`
/// cancels the whole group, though no task panicked and the runtime is not shutting down.
#[test]
fn a_subscriber_panicking_on_enter_cancels_nothing() {
    quiet();
    let armed = Arc::new(AtomicBool::new(true));
    let a = armed.clone();
    let layer = Hostile::new(
        |_| {},
        move |span| {
            if span == "task" && a.swap(false, Ordering::SeqCst) {
                quiet_panic();
            }
        },
    );
    traced(&layer, || {
        common::current_thread(true).block_on(async {
            let group = Group::builder().name("enter").max_concurrent(1).build();
            let later = group.delay(Duration::from_secs(10), async {});
            group.delay(Duration::ZERO, async {});
            let waited = timeout(Duration::from_secs(3600), group.wait())
                .await
                .expect("wait() returns");
            assert!(
                !group.is_cancelled(),
                "one panicking on_enter cancelled the group: {waited:?}, {:?}; the task due \
                 in 10 s is finished: {}",
                group.stats(),
                later.is_finished()
            );
        });
    });
}

/// A subscriber that panics on `group cancelled`: the event is emitted after the group is
/// marked cancelled and before anything is drained, so `cancel()` unwinds with the pending
/// futures still queued, the token not cancelled and the running task not told. The group
/// says it is cancelled; `wait()` hangs until the monitor happens to wake.
#[test]
fn a_subscriber_panicking_on_group_cancelled_still_leaves_a_drained_group() {
    quiet();
    let layer = Hostile::new(
        |message| {
            if message == "group cancelled" {
                quiet_panic();
            }
        },
        |_| {},
    );
    traced(&layer, || {
        common::current_thread(false).block_on(async {
            let group = Group::builder().name("cancel").build();
            let (flag, dropped) = common::DropFlag::new();
            group.delay(Duration::from_secs(3600), async move {
                let _flag = flag;
            });
            group.delay(Duration::ZERO, std::future::pending::<()>());
            common::settle().await;
            assert_eq!(group.stats().running, 1);
            let cancelled = catch_unwind(AssertUnwindSafe(|| group.cancel()));
            let panicked = cancelled.is_err();
            let waited = timeout(Duration::from_secs(2), group.wait()).await;
            assert!(
                waited.is_ok(),
                "wait() hung after cancel() (which panicked: {panicked}); pending future \
                 dropped: {}, {:?}",
                dropped.load(Ordering::SeqCst),
                group.stats()
            );
        });
    });
}

/// A subscriber whose events call back into the group: schedule from `task started`, read
/// stats and history from every event, cancel from `limit changed`. No deadlock. (Passes.)
#[test]
fn a_subscriber_that_calls_back_into_its_group_does_not_deadlock() {
    static GROUP: OnceLock<Group> = OnceLock::new();
    static MORE: AtomicUsize = AtomicUsize::new(0);
    let layer = Hostile::new(
        |message| {
            let Some(group) = GROUP.get() else { return };
            let _ = group.stats();
            let _ = group.history();
            match message {
                "task started" if MORE.fetch_add(1, Ordering::SeqCst) < 3 => {
                    group.delay(common::ms(1), async {});
                }
                "limit changed" => {
                    group.cancel();
                }
                _ => {}
            }
        },
        |_| {
            if let Some(group) = GROUP.get() {
                let _ = group.stats();
            }
        },
    );
    let thread = std::thread::spawn(move || {
        traced(&layer, || {
            common::current_thread(true).block_on(async {
                let group = Group::builder().name("calls").max_concurrent(1).build();
                GROUP.set(group.clone()).unwrap();
                group.delay(Duration::ZERO, async {});
                timeout(Duration::from_secs(3600), group.wait())
                    .await
                    .unwrap()
                    .unwrap();
                // (Events can be missed while other tests' threads register callsites with
                // no subscriber: count what the hook scheduled rather than assume 3.)
                let s = group.stats();
                assert_eq!(s.completed, s.scheduled);
                group.delay(Duration::from_secs(1), async {});
                group.set_max_concurrent(2);
                let cancelled = group.is_cancelled();
                let waited = timeout(Duration::from_secs(3600), group.wait())
                    .await
                    .unwrap();
                assert_eq!(waited.is_err(), cancelled);
            });
        });
    });
    common::join_bounded(thread);
}

/// Every task that got a `task started` event gets a `task ended` (or `task panicked`), and
/// the run-time histogram gets a value for each: also for tasks the runtime's shutdown ends
/// (`Runner::drop`), which closes them without the span and without `TaskSpan::end`.
#[test]
fn a_runtime_shutdown_ends_every_started_task_in_the_reports() {
    let layer = Hostile::new(|_| {}, |_| {});
    let rec = Rec::new();
    let group = traced(&layer, || {
        let rt = common::current_thread(false);
        let group = build(
            &rec,
            Group::builder()
                .name("shutdown")
                .runtime(rt.handle().clone()),
        );
        rt.block_on(async {
            for _ in 0..3 {
                group.delay(Duration::ZERO, std::future::pending::<()>());
            }
            common::settle().await;
            assert_eq!(group.stats().running, 3);
        });
        drop(rt);
        group
    });
    let s = group.stats();
    assert_eq!((s.running, s.cancelled), (0, 3), "{s:?}");
    let runs = rec
        .values(&key("schedgroup_task_run_seconds", "shutdown"))
        .len();
    let (started, ended) = (layer.count("task started"), layer.count("task ended"));
    let h = group.history();
    assert_eq!(
        h.windows[0].run_time.map(|p| p.count),
        Some(3),
        "the history counts 3 runs"
    );
    assert_eq!(
        (started, ended, runs),
        (3, 3, 3),
        "{started} 'task started', {ended} 'task ended', {runs} run-time values for 3 tasks \
         the shutdown ended (the history counts {:?})",
        h.windows[0].run_time
    );
}

/// The registry's snapshot, called from a future's `Drop` and from threads racing with
/// groups being dropped, never deadlocks and never lists a group twice. (Passes.)
#[test]
fn registry_snapshots_from_drops_and_racing_threads() {
    let registry = Registry::new();
    let rt = common::multi_thread(2);
    let stop = Arc::new(AtomicBool::new(false));
    let snapper = {
        let registry = registry.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let snap = registry.snapshot();
                let mut ids: Vec<u64> = snap.iter().map(|c| c.id).collect();
                ids.dedup();
                assert_eq!(ids.len(), snap.len());
                n += 1;
            }
            n
        })
    };
    struct SnapOnDrop(Registry);
    impl Drop for SnapOnDrop {
        fn drop(&mut self) {
            let _ = self.0.snapshot();
        }
    }
    let rounds = common::iterations(2000) / 10;
    for i in 0..rounds {
        let group = Group::builder()
            .name(format!("g{i}"))
            .registry(&registry)
            .runtime(rt.handle().clone())
            .build();
        let snap = SnapOnDrop(registry.clone());
        group.delay(Duration::ZERO, async move {
            let _snap = snap;
        });
        let pending = SnapOnDrop(registry.clone());
        let h = group.delay(Duration::from_secs(60), async move {
            let _snap = pending;
        });
        if i % 2 == 0 {
            h.cancel();
        } else {
            group.cancel();
        }
        rt.block_on(async {
            let _ = timeout(Duration::from_secs(10), group.wait())
                .await
                .expect("wait() returns");
        });
    }
    stop.store(true, Ordering::SeqCst);
    assert!(common::join_bounded(snapper) > 0);
    rt.shutdown_timeout(Duration::from_secs(5));
    let alive: HashMap<_, _> = registry
        .snapshot()
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    assert!(alive.is_empty(), "{alive:?}");
}
