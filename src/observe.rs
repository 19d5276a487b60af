//! What the optional `tracing` and `metrics` features report, in one place. With neither
//! feature every type here is empty and every function does nothing, so the default build
//! carries none of it.
//!
//! Nothing here runs under a lock: a subscriber or a recorder is the user's code. Values that
//! live under a pool's lock (counters, gauges) are read under it by a closure the caller
//! passes, and reported after it is released, by one thread at a time per group or limiter
//! (`Publisher`), so a gauge never stays at an older reading than the latest.

use tokio::time::Instant;

#[cfg(feature = "tracing")]
use crate::error::CancelledBy;
use crate::task::End;
use crate::throttle::ThrottleOutcome;

/// A group's counters and gauges, read under its pool's lock.
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct GroupReading {
    pub(crate) scheduled: u64,
    pub(crate) started: u64,
    pub(crate) completed: u64,
    pub(crate) cancelled: u64,
    pub(crate) panicked: u64,
    pub(crate) pending: u64,
    pub(crate) running: u64,
    pub(crate) waiting: usize,
    pub(crate) limit: usize,
}

/// A limiter's gauges, read under its lock.
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct LimiterReading {
    pub(crate) limit: usize,
    pub(crate) running: usize,
    pub(crate) waiting: usize,
}

/// The name a group or limiter is reported under: its own, or `"unnamed"`.
#[cfg(any(feature = "tracing", feature = "metrics"))]
fn label(name: Option<&str>) -> &str {
    name.unwrap_or("unnamed")
}

// ===== a task's run =====

/// One run of a task, as reported: a span entered while the task is polled and dropped.
pub(crate) struct TaskSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// A task's span, entered for as long as this lives.
pub(crate) struct Entered<'a> {
    #[cfg(feature = "tracing")]
    _entered: tracing::span::Entered<'a>,
    #[cfg(not(feature = "tracing"))]
    _span: std::marker::PhantomData<&'a TaskSpan>,
}

impl TaskSpan {
    /// Reports the start of task `id` of the group `name`, due at `deadline` and taken from
    /// the queue at `started` (keys; `instant` turns a key into an instant, if a span wants
    /// it).
    #[cfg_attr(
        not(all(feature = "tracing", feature = "metrics")),
        allow(unused_variables)
    )]
    #[inline]
    pub(crate) fn start(
        name: Option<&str>,
        metrics: &GroupMetrics,
        id: u64,
        (deadline, started): (u64, u64),
        instant: impl FnOnce(u64) -> Instant,
    ) -> Self {
        let lateness = started.saturating_sub(deadline);
        #[cfg(feature = "metrics")]
        metrics.inner.lateness.record(lateness as f64 / 1e9);
        #[cfg(feature = "tracing")]
        {
            let span = tracing::info_span!(
                target: "schedgroup",
                "task",
                group = label(name),
                task_id = id,
                deadline = ?instant(deadline),
                lateness_us = lateness / 1_000,
            );
            tracing::debug!(target: "schedgroup", parent: &span, "task started");
            Self { span }
        }
        #[cfg(not(feature = "tracing"))]
        Self {}
    }

    #[inline]
    pub(crate) fn enter(&self) -> Entered<'_> {
        Entered {
            #[cfg(feature = "tracing")]
            _entered: self.span.enter(),
            #[cfg(not(feature = "tracing"))]
            _span: std::marker::PhantomData,
        }
    }

    /// Reports that the task ended as `how` after `run` nanoseconds (before its future is
    /// dropped).
    #[cfg_attr(
        not(all(feature = "tracing", feature = "metrics")),
        allow(unused_variables)
    )]
    #[inline]
    pub(crate) fn end(&self, metrics: &GroupMetrics, how: &End, run: u64) {
        #[cfg(feature = "metrics")]
        metrics.inner.run_time.record(run as f64 / 1e9);
        #[cfg(feature = "tracing")]
        {
            let run_us = run / 1_000;
            let parent = &self.span;
            match how {
                End::Completed => tracing::debug!(
                    target: "schedgroup",
                    parent: parent,
                    run_us,
                    outcome = "completed",
                    "task ended"
                ),
                End::Cancelled(by) => tracing::debug!(
                    target: "schedgroup",
                    parent: parent,
                    run_us,
                    outcome = "cancelled",
                    by = match by {
                        CancelledBy::Handle => "handle",
                        _ => "group",
                    },
                    "task ended"
                ),
                End::Panicked(payload) => {
                    let message = payload
                        .downcast_ref::<&str>()
                        .copied()
                        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
                    tracing::warn!(
                        target: "schedgroup",
                        parent: parent,
                        run_us,
                        outcome = "panicked",
                        payload = message,
                        "task panicked"
                    );
                }
            }
        }
    }
}

// ===== a group's and a limiter's decisions =====

/// What a limit belongs to, for reports.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) enum Owner<'a> {
    Group(Option<&'a str>),
    Limiter(Option<&'a str>),
}

/// Reports that the group `name` was cancelled (once, by whoever cancelled it).
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
#[inline]
pub(crate) fn group_cancelled(name: Option<&str>) {
    #[cfg(feature = "tracing")]
    tracing::info!(target: "schedgroup", group = label(name), "group cancelled");
}

/// Reports a limit set by hand from `from` to `to` (only if it changed).
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
#[inline]
pub(crate) fn limit_set(owner: Owner<'_>, from: usize, to: usize) {
    #[cfg(feature = "tracing")]
    if from != to {
        match owner {
            Owner::Group(name) => {
                tracing::info!(target: "schedgroup", group = label(name), from, to, "limit changed");
            }
            Owner::Limiter(name) => {
                tracing::info!(target: "schedgroup", limiter = label(name), from, to, "limit changed");
            }
        }
    }
}

/// Reports a throttle's decision, applied or refused.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
#[inline]
pub(crate) fn throttled(owner: Owner<'_>, up: bool, outcome: &ThrottleOutcome) {
    #[cfg(feature = "tracing")]
    {
        let direction = if up { "up" } else { "down" };
        match owner {
            Owner::Group(name) => tracing::info!(
                target: "schedgroup",
                group = label(name),
                direction,
                outcome = ?outcome,
                "throttle"
            ),
            Owner::Limiter(name) => tracing::info!(
                target: "schedgroup",
                limiter = label(name),
                direction,
                outcome = ?outcome,
                "throttle"
            ),
        }
    }
}

// ===== metrics =====

/// A group's metrics: handles made once, when the group is built, from the recorder installed
/// then.
pub(crate) struct GroupMetrics {
    #[cfg(feature = "metrics")]
    inner: metrics_impl::Group,
}

/// A limiter's metrics, shared by the limiter's handles and the groups that use it.
pub(crate) struct LimiterMetrics {
    #[cfg(feature = "metrics")]
    inner: metrics_impl::Limiter,
}

// A panic while a recorder records leaves nothing of ours half-changed: the handles keep no
// state of the crate's. Without these, the `metrics` feature would take `UnwindSafe` away from
// `Group` and `Limiter`, and enabling a feature must not break code that compiled without it.
impl std::panic::RefUnwindSafe for GroupMetrics {}
impl std::panic::UnwindSafe for GroupMetrics {}
impl std::panic::RefUnwindSafe for LimiterMetrics {}
impl std::panic::UnwindSafe for LimiterMetrics {}

impl GroupMetrics {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(name: Option<&str>) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            inner: metrics_impl::Group::new(label(name)),
        }
    }

    /// Reports what `read` reads (under the group's lock) now. Call after any change, with no
    /// lock held. Without the `metrics` feature, `read` is never called.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    #[inline]
    pub(crate) fn publish(&self, read: impl FnMut() -> GroupReading) {
        #[cfg(feature = "metrics")]
        self.inner.publish(read);
    }
}

impl LimiterMetrics {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(name: Option<&str>) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            inner: metrics_impl::Limiter::new(label(name)),
        }
    }

    /// Reports what `read` reads (under the limiter's lock) now; as [`GroupMetrics::publish`].
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    #[inline]
    pub(crate) fn publish(&self, read: impl FnMut() -> LimiterReading) {
        #[cfg(feature = "metrics")]
        self.inner.publish(read);
    }
}

#[cfg(feature = "metrics")]
mod metrics_impl {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Once;
    use std::sync::atomic::{AtomicBool, Ordering};

    use metrics::{Counter, Gauge, Histogram, Unit};

    use super::{GroupReading, LimiterReading};

    /// Runs reports one thread at a time, the latest reading last: whoever finds another
    /// thread reporting leaves it a note (`dirty`) and goes on; the reporter reads again while
    /// a note is left. No thread waits for another, and no lock is held while the recorder
    /// runs.
    #[derive(Default)]
    struct Publisher {
        dirty: AtomicBool,
        busy: AtomicBool,
    }

    impl Publisher {
        fn run(&self, mut report: impl FnMut()) {
            self.dirty.store(true, Ordering::SeqCst);
            loop {
                if self.busy.swap(true, Ordering::SeqCst) {
                    // The reporter clears `busy` and then looks for a note: it sees ours.
                    return;
                }
                while self.dirty.swap(false, Ordering::SeqCst) {
                    // A recorder that panics loses one report, not the next ones.
                    let _ = catch_unwind(AssertUnwindSafe(&mut report));
                }
                self.busy.store(false, Ordering::SeqCst);
                if !self.dirty.load(Ordering::SeqCst) {
                    return;
                }
            }
        }
    }

    /// Help texts, given to the recorder once per process.
    fn describe() {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            describe_counter!(
                "schedgroup_tasks_scheduled_total",
                "Tasks handed to the group."
            );
            describe_counter!("schedgroup_tasks_started_total", "Tasks that started.");
            describe_counter!(
                "schedgroup_tasks_completed_total",
                "Tasks whose future returned."
            );
            describe_counter!(
                "schedgroup_tasks_cancelled_total",
                "Tasks cancelled, before or while running."
            );
            describe_counter!(
                "schedgroup_tasks_panicked_total",
                "Tasks whose future panicked."
            );
            describe_gauge!("schedgroup_tasks_pending", "Tasks not started yet.");
            describe_gauge!("schedgroup_tasks_running", "Tasks running now.");
            describe_gauge!(
                "schedgroup_tasks_waiting",
                "Tasks due and waiting for a slot."
            );
            describe_gauge!(
                "schedgroup_group_limit",
                "The group's cap on running tasks (+Inf: none)."
            );
            describe_histogram!(
                "schedgroup_task_start_lateness_seconds",
                Unit::Seconds,
                "From a task's deadline to its start."
            );
            describe_histogram!(
                "schedgroup_task_run_seconds",
                Unit::Seconds,
                "From a task's start to its end."
            );
            describe_gauge!(
                "schedgroup_limiter_limit",
                "The limiter's limit (+Inf: none)."
            );
            describe_gauge!(
                "schedgroup_limiter_running",
                "Slots taken: running tasks and permits."
            );
            describe_gauge!(
                "schedgroup_limiter_waiting",
                "Groups and acquire() callers waiting for a slot."
            );
        });
    }

    /// A limit as a gauge: no cap is +Inf.
    fn limit(limit: usize) -> f64 {
        if limit == usize::MAX {
            f64::INFINITY
        } else {
            limit as f64
        }
    }

    pub(super) struct Group {
        publisher: Publisher,
        scheduled: Counter,
        started: Counter,
        completed: Counter,
        cancelled: Counter,
        panicked: Counter,
        pending: Gauge,
        running: Gauge,
        waiting: Gauge,
        limit: Gauge,
        pub(super) lateness: Histogram,
        pub(super) run_time: Histogram,
    }

    impl Group {
        pub(super) fn new(name: &str) -> Self {
            describe();
            let counter = |key: &'static str| metrics::counter!(key, "group" => name.to_owned());
            let gauge = |key: &'static str| metrics::gauge!(key, "group" => name.to_owned());
            let histogram =
                |key: &'static str| metrics::histogram!(key, "group" => name.to_owned());
            Self {
                publisher: Publisher::default(),
                scheduled: counter("schedgroup_tasks_scheduled_total"),
                started: counter("schedgroup_tasks_started_total"),
                completed: counter("schedgroup_tasks_completed_total"),
                cancelled: counter("schedgroup_tasks_cancelled_total"),
                panicked: counter("schedgroup_tasks_panicked_total"),
                pending: gauge("schedgroup_tasks_pending"),
                running: gauge("schedgroup_tasks_running"),
                waiting: gauge("schedgroup_tasks_waiting"),
                limit: gauge("schedgroup_group_limit"),
                lateness: histogram("schedgroup_task_start_lateness_seconds"),
                run_time: histogram("schedgroup_task_run_seconds"),
            }
        }

        pub(super) fn publish(&self, mut read: impl FnMut() -> GroupReading) {
            self.publisher.run(|| {
                let now = read();
                self.scheduled.absolute(now.scheduled);
                self.started.absolute(now.started);
                self.completed.absolute(now.completed);
                self.cancelled.absolute(now.cancelled);
                self.panicked.absolute(now.panicked);
                self.pending.set(now.pending as f64);
                self.running.set(now.running as f64);
                self.waiting.set(now.waiting as f64);
                self.limit.set(limit(now.limit));
            });
        }
    }

    pub(super) struct Limiter {
        publisher: Publisher,
        limit: Gauge,
        running: Gauge,
        waiting: Gauge,
    }

    impl Limiter {
        pub(super) fn new(name: &str) -> Self {
            describe();
            let gauge = |key: &'static str| metrics::gauge!(key, "limiter" => name.to_owned());
            Self {
                publisher: Publisher::default(),
                limit: gauge("schedgroup_limiter_limit"),
                running: gauge("schedgroup_limiter_running"),
                waiting: gauge("schedgroup_limiter_waiting"),
            }
        }

        pub(super) fn publish(&self, mut read: impl FnMut() -> LimiterReading) {
            self.publisher.run(|| {
                let now = read();
                self.limit.set(limit(now.limit));
                self.running.set(now.running as f64);
                self.waiting.set(now.waiting as f64);
            });
        }
    }
}
