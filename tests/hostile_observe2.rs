//! Second hostile review of issue 12's `tracing` and `metrics` features (after the fixes of
//! b3b6e3d), from outside: series that outlive or do not outlive their groups, recorders at
//! the same address, recorders and subscribers that panic or call back where the first review
//! did not look (registration, descriptions, span close), and history of starts whose time
//! the pool could not know.
//!
//! Run with `cargo test --all-features --test hostile_observe2`. Attacks that may poison the
//! whole process (a poisoned `Once`, a lock held forever) run in a child process.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use schedgroup::{Group, Limiter, Registry};
use tokio::time::timeout;

use common::metrics::{Rec, key};

fn build(rec: &dyn Recorder, builder: schedgroup::Builder) -> Group {
    metrics::with_local_recorder(rec, || builder.build())
}

fn quiet() {
    common::outputs::quiet_hook(|p| {
        p.downcast_ref::<&str>()
            .is_some_and(|s| s.starts_with("hostile"))
    });
}

/// Runs `name` of this binary alone in a child process (ignored tests included), with `env`
/// set; kills it after `bound`. `true` if it exited successfully and printed `CHILD-OK`.
fn child(name: &str, env: &str, bound: Duration) -> Result<(), String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(env, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + bound;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let _ = child.wait();
            return Err(format!("the child hung for {bound:?}"));
        }
        std::thread::sleep(common::ms(10));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() && stdout.contains("CHILD-OK") {
        Ok(())
    } else {
        Err(format!(
            "child: {:?}\nstderr (last lines): {}",
            out.status,
            stderr.lines().rev().take(8).collect::<Vec<_>>().join("\n")
        ))
    }
}

/// Drives `rt` until `registry` lists nothing alive (the groups' monitors and runners, which
/// hold them, have let go), within a bound.
fn until_gone(rt: &tokio::runtime::Runtime, registry: &Registry) {
    for _ in 0..1000 {
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
        if registry.snapshot().is_empty() {
            return;
        }
    }
    panic!("the group never went");
}

// ===== 1. a series that dies with its last group =====

/// Claimed (crate docs, "Seeing inside"): "a group that is dropped takes its gauges out and
/// leaves its counts in ... a counter never goes back". The series of a name lives only while
/// some group of that name does (`Shared` removes its map entry on drop): drop the last group
/// named "phoenix" and build another, and the counter starts again from 0. A recorder that
/// takes `absolute` as given sees `_scheduled_total` go 3 -> 1; one that keeps the maximum
/// (metrics-util's atomics, the Prometheus exporter) stays at 3 and loses the new group's
/// counts until it passes 3. Every short-lived unnamed group (`"unnamed"`) is in this case.
#[test]
fn a_counter_never_goes_back_when_the_last_group_of_a_name_is_rebuilt() {
    let rec = Rec::default();
    let rt = common::current_thread(true);
    let registry = Registry::new();
    let mut scheduled = 0;
    for round in 0..2 {
        let group = build(
            &rec,
            Group::builder()
                .name("phoenix")
                .registry(&registry)
                .runtime(rt.handle().clone()),
        );
        let n = 3 - 2 * round; // 3, then 1
        rt.block_on(async {
            for _ in 0..n {
                group.delay(Duration::from_secs(1), async {});
            }
            timeout(Duration::from_secs(60), group.wait())
                .await
                .unwrap()
                .unwrap();
        });
        scheduled += group.stats().scheduled;
        drop(group);
        until_gone(&rt, &registry);
    }
    let values = rec.values(&key("schedgroup_tasks_scheduled_total", "phoenix"));
    let backwards = values.windows(2).any(|w| w[1] < w[0]);
    assert!(
        !backwards && values.last() == Some(&(scheduled as f64)),
        "schedgroup_tasks_scheduled_total{{group=\"phoenix\"}} went {values:?}; the two groups \
         of that name scheduled {scheduled} in all"
    );
}

// ===== 2. two recorders at one address =====

#[test]
fn a_recorder_panicking_on_register_does_not_stop_a_build() {
    quiet();
    struct Refuses;
    impl Recorder for Refuses {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            std::panic::panic_any("hostile register")
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            std::panic::panic_any("hostile register")
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            std::panic::panic_any("hostile register")
        }
    }
    let rt = common::current_thread(true);
    let recorder = Refuses;
    let built = catch_unwind(AssertUnwindSafe(|| {
        build(
            &recorder,
            Group::builder()
                .name("refused")
                .runtime(rt.handle().clone()),
        )
    }));
    let limiter = catch_unwind(AssertUnwindSafe(|| {
        metrics::with_local_recorder(&recorder, || Limiter::named("refused", 1))
    }));
    assert!(
        built.is_ok() && limiter.is_ok(),
        "a recorder's panic while registering came out of build ({}) / Limiter::named ({})",
        built.is_err(),
        limiter.is_err()
    );
    let group = built.unwrap();
    rt.block_on(async {
        group.delay(Duration::from_secs(1), async {});
        timeout(Duration::from_secs(60), group.wait())
            .await
            .unwrap()
            .unwrap();
    });
}

const DESCRIBE_CHILD: &str = "SCHEDGROUP_HOSTILE_DESCRIBE_CHILD";

/// The help texts are given to the recorder once per process, in a `std::sync::Once`, outside
/// `quietly`. A recorder whose `describe_*` panics, installed when the first group of the
/// process is built, poisons that `Once`: that build panics, and so does every later
/// `Builder::build` and `Limiter::new` in the process, under any recorder ("Once instance has
/// previously been poisoned").
#[test]
fn a_recorder_panicking_on_describe_poisons_no_later_build() {
    if std::env::var_os(DESCRIBE_CHILD).is_some() {
        quiet();
        struct Undescribable(Rec);
        impl Recorder for Undescribable {
            fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
                std::panic::panic_any("hostile describe")
            }
            fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn register_counter(&self, key: &Key, m: &Metadata<'_>) -> Counter {
                self.0.register_counter(key, m)
            }
            fn register_gauge(&self, key: &Key, m: &Metadata<'_>) -> Gauge {
                self.0.register_gauge(key, m)
            }
            fn register_histogram(&self, key: &Key, m: &Metadata<'_>) -> Histogram {
                self.0.register_histogram(key, m)
            }
        }
        let rt = common::current_thread(true);
        let hostile = Undescribable(Rec::default());
        let first = catch_unwind(AssertUnwindSafe(|| {
            build(&hostile, Group::builder().runtime(rt.handle().clone()))
        }));
        // A later build, under a well-behaved recorder.
        let rec = Rec::default();
        let later = catch_unwind(AssertUnwindSafe(|| {
            build(&rec, Group::builder().runtime(rt.handle().clone()))
        }));
        let limiter = catch_unwind(AssertUnwindSafe(|| {
            metrics::with_local_recorder(&rec, || Limiter::new(1))
        }));
        assert!(
            first.is_ok() && later.is_ok() && limiter.is_ok(),
            "builds panicked: under the describing-panicking recorder {}, later under a good \
             one {}, a later limiter {}",
            first.is_err(),
            later.is_err(),
            limiter.is_err()
        );
        println!("CHILD-OK");
        return;
    }
    child(
        "a_recorder_panicking_on_describe_poisons_no_later_build",
        DESCRIBE_CHILD,
        Duration::from_secs(20),
    )
    .unwrap();
}

const REENTER_CHILD: &str = "SCHEDGROUP_HOSTILE_REENTER_CHILD";

/// Claimed: "Neither feature runs the subscriber or the recorder under a lock". `Part::new`
/// registers the series' handles (`S::new`, the recorder's `register_*`) while it holds the
/// process-wide map of series (`S::all()`). A recorder that builds a group (or drops the last
/// group of a name) while it registers, e.g. a recorder that makes its own flushing group on
/// first use, locks that map again on the same thread: a deadlock (std's `Mutex` is not
/// reentrant), and every group built afterwards in the process hangs.
#[test]
fn a_recorder_that_builds_a_group_while_registering_does_not_deadlock() {
    if std::env::var_os(REENTER_CHILD).is_some() {
        struct Builds {
            rec: Rec,
            inner: Mutex<Option<Group>>,
            once: AtomicBool,
            handle: tokio::runtime::Handle,
        }
        impl Recorder for Builds {
            fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn register_counter(&self, key: &Key, m: &Metadata<'_>) -> Counter {
                if !self.once.swap(true, Ordering::SeqCst) {
                    // Its own group, under no recorder of its own.
                    let g = Group::builder()
                        .name("flusher")
                        .runtime(self.handle.clone())
                        .build();
                    *self.inner.lock().unwrap() = Some(g);
                }
                self.rec.register_counter(key, m)
            }
            fn register_gauge(&self, key: &Key, m: &Metadata<'_>) -> Gauge {
                self.rec.register_gauge(key, m)
            }
            fn register_histogram(&self, key: &Key, m: &Metadata<'_>) -> Histogram {
                self.rec.register_histogram(key, m)
            }
        }
        let rt = common::current_thread(true);
        let recorder = Builds {
            rec: Rec::default(),
            inner: Mutex::new(None),
            once: AtomicBool::new(false),
            handle: rt.handle().clone(),
        };
        let group = build(
            &recorder,
            Group::builder().name("outer").runtime(rt.handle().clone()),
        );
        assert!(recorder.inner.lock().unwrap().is_some());
        drop(group);
        println!("CHILD-OK");
        return;
    }
    child(
        "a_recorder_that_builds_a_group_while_registering_does_not_deadlock",
        REENTER_CHILD,
        Duration::from_secs(10),
    )
    .unwrap();
}

// ===== 4. a subscriber that panics when a task's span closes =====

/// A layer whose `on_close` panics (once), the one subscriber call the first review's
/// hostile layers did not make panic. Claimed: "one that panics loses that one report: the
/// task, its slot and the group carry on". Every call into the subscriber is wrapped in
/// `quietly` except the span's own drop: `Runner::end` drops its `TaskSpan` (tracing's
/// `Span::drop` -> `try_close` -> `on_close`) after `close` has returned the effects that hold
/// the group's next task, started with its slot taken; the panic unwinds through them and
/// the next task is dropped unrun, its slot never given back: `wait()` never returns.
#[test]
fn a_subscriber_panicking_on_span_close_loses_no_slot() {
    use tracing::span::Id;
    use tracing_subscriber::layer::{Context, Layer};
    quiet();
    struct ClosePanics(Arc<AtomicUsize>);
    impl<S: tracing::Subscriber> Layer<S> for ClosePanics {
        fn on_close(&self, _: Id, _: Context<'_, S>) {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                std::panic::panic_any("hostile close");
            }
        }
    }
    let closes = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let rt = common::current_thread(true);
    let stuck = common::trace::traced(ClosePanics(closes.clone()), || {
        rt.block_on(async {
            let group = Group::builder().max_concurrent(1).build();
            for _ in 0..3 {
                let ran = ran.clone();
                group.delay(Duration::from_secs(1), async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                });
            }
            let waited = timeout(Duration::from_secs(60), group.wait()).await;
            (waited.is_err(), group.stats())
        })
    });
    let runs = ran.load(Ordering::SeqCst);
    if stuck.0 || runs != 3 {
        // Dropping the runtime now drops the lost task's group while the pool still counts
        // it running: a debug assertion ("a group left while running") would panic inside
        // this test's unwind and abort the binary. Leak it instead.
        std::mem::forget(rt);
    }
    assert!(
        closes.load(Ordering::SeqCst) >= 1,
        "the layer's on_close never ran"
    );
    assert!(
        !stuck.0 && ran.load(Ordering::SeqCst) == 3,
        "after one panicking on_close: wait() hung: {}, {} of 3 tasks ran, stats {:?}",
        stuck.0,
        runs,
        stuck.1
    );
}

// ===== 5. history of a start whose time the pool did not know =====

/// A group at cap 0 whose task fell due at 1 s; nothing reads its clock for 30 s; then the
/// cap is raised (not a monitor step nor a runner's end: `Started::at` is `None`). The pool
/// counts the start in the group's history at the member's stale frontier (`Activity::start(
/// member.frontier, None)` in `Pool::start_one`), 30 s before it happened, and the runner's
/// `late_start` then integrates "running = 1" over those 30 s: the 10 s window ends a task it
/// never started, and the 1 min window's mean running is 0.5 for a task that ran for no time.
#[test]
fn a_start_by_a_cap_raise_after_a_quiet_spell_is_counted_when_it_happened() {
    let rt = common::current_thread(true);
    rt.block_on(async {
        let group = Group::builder().max_concurrent(0).build();
        group.delay(Duration::from_secs(1), async {});
        tokio::time::sleep(Duration::from_secs(31)).await;
        group.set_max_concurrent(1);
        common::bounded(group.wait()).await.unwrap();
        let h = group.history();
        let (w10, w60) = (&h.windows[0], &h.windows[1]);
        let late = w10.start_lateness.map(|p| p.max);
        assert!(
            w10.started == 1
                && w10.ended == 1
                && w60.mean_running < 0.05
                && late.is_some_and(|l| l >= Duration::from_secs(29)),
            "a task due at 1 s that started and ended at 31 s: 10 s window started {} ended {} \
             lateness max {late:?}; 1 min window mean running {} (peak {})",
            w10.started,
            w10.ended,
            w60.mean_running,
            w60.peak_running
        );
    });
}

/// The same start, from a limiter's `set_limit` on a plain thread, on a real clock: a group
/// of a limiter at 0 whose task is due; 1.2 s later another thread raises the limit. The start
/// time, unknown to the pool, is the runner's; the 10 s window counts the start and its
/// lateness (about 1.2 s), and mean running stays near 0.
#[test]
fn a_start_by_a_limiter_raise_from_a_thread_counts_its_lateness() {
    let rt = common::multi_thread(2);
    let limiter = Limiter::new(0);
    let group = rt.block_on(async { Group::builder().limiter(&limiter).build() });
    rt.block_on(async {
        group.delay(Duration::from_millis(10), async {});
    });
    let raiser = std::thread::spawn({
        let limiter = limiter.clone();
        move || {
            std::thread::sleep(Duration::from_millis(1200));
            limiter.set_limit(1);
        }
    });
    common::join_bounded(raiser);
    rt.block_on(async { common::bounded(group.wait()).await.unwrap() });
    let h = group.history();
    let w10 = &h.windows[0];
    let late = w10.start_lateness.map(|p| p.max).unwrap_or_default();
    assert!(
        w10.started == 1 && w10.ended == 1 && late >= Duration::from_millis(1000),
        "10 s window: started {} ended {} lateness {late:?}",
        w10.started,
        w10.ended
    );
    let lh = limiter.history();
    assert_eq!((lh.windows[0].started, lh.windows[0].freed), (1, 1));
    drop(rt);
}

// ===== 6. limits at usize::MAX joining and leaving a name's sum =====

/// Two groups named "mix", one without a cap: the summed limit gauge is +Inf; the uncapped
/// one's cap set to 4 and back, then dropped: 7, +Inf, 3. Two limiters named "lim" likewise.
/// (Passes: `Gauges` counts the uncapped parts apart from the sum.)
#[test]
fn an_uncapped_part_makes_the_limit_infinite_and_leaves_it_finite() {
    let rec = Rec::default();
    let rt = common::current_thread(true);
    let registry = Registry::new();
    let b = build(
        &rec,
        Group::builder()
            .name("mix")
            .max_concurrent(3)
            .runtime(rt.handle().clone()),
    );
    let a = build(
        &rec,
        Group::builder()
            .name("mix")
            .registry(&registry)
            .runtime(rt.handle().clone()),
    );
    // Each group's reading in the sums (see the next test for a group with none yet).
    let _ = (a.history(), b.history());
    let k = key("schedgroup_group_limit", "mix");
    a.set_max_concurrent(4);
    assert_eq!(rec.last(&k), Some(7.0));
    a.set_max_concurrent(usize::MAX);
    assert_eq!(rec.last(&k), Some(f64::INFINITY));
    drop(a);
    until_gone(&rt, &registry);
    assert_eq!(rec.last(&k), Some(3.0));
    drop(b);

    let (inf, two) = metrics::with_local_recorder(&rec, || {
        (Limiter::named("lim", usize::MAX), Limiter::named("lim", 2))
    });
    let _ = (inf.history(), two.history());
    let lk = "schedgroup_limiter_limit{limiter=\"lim\"}";
    inf.set_limit(5);
    assert_eq!(rec.last(lk), Some(7.0));
    inf.set_limit(usize::MAX);
    assert_eq!(rec.last(lk), Some(f64::INFINITY));
    drop(inf);
    assert_eq!(rec.last(lk), Some(2.0));
    drop(two);
}

/// Claimed: "Groups with the same name report into one series: counters and gauges are
/// their sums (a limit: `+Inf` if one of them has none)". A group's part enters the sums
/// with a default reading (limit 0, `Part::new`) and its real one only at its first change
/// or history read: a group built with a cap of 3 and not used yet adds nothing, so a second
/// group of the name with a cap of 4 reports a limit of 4, not 7; and an uncapped group
/// built beside a capped one does not make the limit +Inf. (A group alone of its name shows
/// no limit gauge at all until it is used.)
#[test]
fn a_group_just_built_counts_in_its_names_limit() {
    let rec = Rec::default();
    let rt = common::current_thread(true);
    let builder = |cap| {
        Group::builder()
            .name("fresh")
            .max_concurrent(cap)
            .runtime(rt.handle().clone())
    };
    let idle = build(&rec, builder(3));
    let busy = build(&rec, builder(4));
    busy.set_max_concurrent(4);
    let _ = busy.history();
    let k = key("schedgroup_group_limit", "fresh");
    let capped = rec.last(&k);
    let uncapped = build(&rec, builder(usize::MAX));
    let _ = busy.history();
    busy.set_max_concurrent(5);
    let with_uncapped = rec.last(&k);
    assert_eq!(
        (capped, with_uncapped),
        (Some(7.0), Some(f64::INFINITY)),
        "groups of \"fresh\" with caps 3 (idle) and 4, then with one more (uncapped, idle) \
         and the 4 made 5"
    );
    drop((idle, busy, uncapped));
}

/// A group dropped from inside its own series' report (the recorder holds the last handle of
/// another group of the same name and drops it when a gauge is set), while a second thread
/// publishes the same series: no deadlock, and the gauges end at the survivor's reading.
/// (Passes: the dropped part's report leaves a note for the reporter.)
#[test]
fn a_group_dropped_from_inside_a_report_of_its_own_name() {
    struct Dropper {
        rec: Rec,
        victim: Arc<Mutex<Option<Group>>>,
    }
    struct DropHandle {
        inner: Gauge,
        victim: Arc<Mutex<Option<Group>>>,
    }
    impl GaugeFn for DropHandle {
        fn increment(&self, _: f64) {}
        fn decrement(&self, _: f64) {}
        fn set(&self, value: f64) {
            self.inner.set(value);
            let victim = self.victim.lock().unwrap().take();
            drop(victim);
        }
    }
    impl Recorder for Dropper {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, m: &Metadata<'_>) -> Counter {
            self.rec.register_counter(key, m)
        }
        fn register_gauge(&self, key: &Key, m: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(DropHandle {
                inner: self.rec.register_gauge(key, m),
                victim: self.victim.clone(),
            }))
        }
        fn register_histogram(&self, key: &Key, m: &Metadata<'_>) -> Histogram {
            self.rec.register_histogram(key, m)
        }
    }
    let rt = common::multi_thread(2);
    let victim = Arc::new(Mutex::new(None));
    let recorder = Dropper {
        rec: Rec::default(),
        victim: victim.clone(),
    };
    let (survivor, doomed) = metrics::with_local_recorder(&recorder, || {
        let b = |cap| {
            Group::builder()
                .name("cannibal")
                .max_concurrent(cap)
                .runtime(rt.handle().clone())
                .build()
        };
        (b(2), b(5))
    });
    // Its reading (a cap of 5) in the sums; no task of its own keeps it alive once dropped.
    let _ = doomed.history();
    *victim.lock().unwrap() = Some(doomed);
    let other = {
        let survivor = survivor.clone();
        std::thread::spawn(move || {
            for _ in 0..200 {
                survivor.delay(Duration::from_secs(3600), async {});
            }
        })
    };
    for _ in 0..200 {
        survivor.delay(Duration::from_secs(3600), async {});
    }
    common::join_bounded(other);
    common::outputs::spin_until(|| victim.lock().unwrap().is_none());
    // One more change, so that the series reports after the victim's part left.
    survivor.set_max_concurrent(3);
    let s = survivor.stats();
    let rec = &recorder.rec;
    assert_eq!(
        (
            rec.last(&key("schedgroup_tasks_pending", "cannibal")),
            rec.last(&key("schedgroup_group_limit", "cannibal")),
        ),
        (Some(s.pending as f64), Some(3.0)),
    );
    survivor.cancel();
    drop(survivor);
    drop(rt);
}
