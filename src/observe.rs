//! What the optional `tracing` and `metrics` features report, in one place. With neither
//! feature every type here is empty and every function does nothing, so the default build
//! carries none of it.
//!
//! Nothing here runs under a lock: a subscriber or a recorder is the user's code. Values that
//! live under a pool's lock (counters, gauges) are stored under it (`GroupMetrics::store`,
//! which takes only a lock of this module's, never user code) and reported after it is
//! released (`report`), by one thread at a time per name (`Publisher`), so a gauge never stays
//! at an older reading than the latest.
//!
//! A subscriber or recorder that panics loses that one report: every call into one is caught
//! here, so it can neither unwind through a runner (losing a task's slot) nor stop a
//! cancellation halfway.

#[cfg(any(feature = "tracing", feature = "metrics"))]
use std::panic::{AssertUnwindSafe, catch_unwind};

use tokio::time::Instant;

use crate::adaptive::Adapted;
#[cfg(feature = "tracing")]
use crate::error::CancelledBy;
use crate::task::End;
use crate::throttle::ThrottleOutcome;

/// A group's counters and gauges, read under its pool's lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct LimiterReading {
    pub(crate) limit: usize,
    pub(crate) running: usize,
    pub(crate) waiting: usize,
}

/// Runs `report`, which calls a subscriber or a recorder; a panic there loses this report only.
#[cfg(any(feature = "tracing", feature = "metrics"))]
#[inline]
fn quietly<T>(report: impl FnOnce() -> T) -> Option<T> {
    catch_unwind(AssertUnwindSafe(report)).ok()
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
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    span: &'a TaskSpan,
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
        quietly(|| metrics.inner.series.lateness.record(lateness as f64 / 1e9));
        #[cfg(feature = "tracing")]
        {
            let span = quietly(|| {
                let span = tracing::info_span!(
                    target: "schedgroup",
                    "task",
                    group = label(name),
                    task_id = id,
                    deadline = ?instant(deadline),
                    lateness_us = lateness / 1_000,
                );
                tracing::debug!(target: "schedgroup", parent: &span, "task started");
                span
            });
            Self {
                span: span.unwrap_or_else(tracing::Span::none),
            }
        }
        #[cfg(not(feature = "tracing"))]
        Self {}
    }

    /// Enters the span until the guard is dropped. (By hand rather than with `Span::enter`,
    /// so that a subscriber that panics on entering or leaving is caught each time.)
    #[inline]
    pub(crate) fn enter(&self) -> Entered<'_> {
        #[cfg(feature = "tracing")]
        quietly(|| {
            self.span
                .with_subscriber(|(id, dispatch)| dispatch.enter(id))
        });
        Entered { span: self }
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
        quietly(|| metrics.inner.series.run_time.record(run as f64 / 1e9));
        #[cfg(feature = "tracing")]
        quietly(|| self.trace_end(how, run));
    }

    #[cfg(feature = "tracing")]
    fn trace_end(&self, how: &End, run: u64) {
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

impl Drop for TaskSpan {
    /// Closing the span calls the subscriber (`on_close`): caught like every other call.
    #[inline]
    fn drop(&mut self) {
        #[cfg(feature = "tracing")]
        {
            let span = std::mem::replace(&mut self.span, tracing::Span::none());
            quietly(move || drop(span));
        }
    }
}

impl Drop for Entered<'_> {
    #[inline]
    fn drop(&mut self) {
        #[cfg(feature = "tracing")]
        quietly(|| {
            self.span
                .span
                .with_subscriber(|(id, dispatch)| dispatch.exit(id))
        });
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
    quietly(|| tracing::info!(target: "schedgroup", group = label(name), "group cancelled"));
}

/// Reports a limit set by hand from `from` to `to` (only if it changed).
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
#[inline]
pub(crate) fn limit_set(owner: Owner<'_>, from: usize, to: usize) {
    #[cfg(feature = "tracing")]
    if from != to {
        quietly(|| match owner {
            Owner::Group(name) => {
                tracing::info!(target: "schedgroup", group = label(name), from, to, "limit changed");
            }
            Owner::Limiter(name) => {
                tracing::info!(target: "schedgroup", limiter = label(name), from, to, "limit changed");
            }
        });
    }
}

/// Whether adaptive changes are reported at all: the pool keeps no reports otherwise.
pub(crate) const REPORTS_ADAPTED: bool = cfg!(feature = "tracing");

/// Reports a change an adaptive controller made.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
#[inline]
pub(crate) fn adapted(adapted: &Adapted) {
    #[cfg(feature = "tracing")]
    {
        let Adapted {
            limiter,
            name,
            algorithm,
            change,
        } = adapted;
        let (algorithm, reason) = (algorithm.name(), change.reason.name());
        let (from, to) = (change.from, change.to);
        let latency_us = change.latency / 1_000;
        let no_load_us = change.no_load / 1_000;
        quietly(|| {
            if *limiter {
                tracing::info!(
                    target: "schedgroup",
                    limiter = label(name.as_deref()),
                    algorithm, from, to, reason, latency_us, no_load_us,
                    "adaptive decision"
                );
            } else {
                tracing::info!(
                    target: "schedgroup",
                    group = label(name.as_deref()),
                    algorithm, from, to, reason, latency_us, no_load_us,
                    "adaptive decision"
                );
            }
        });
    }
}

/// Reports a throttle's decision, applied or refused.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
#[inline]
pub(crate) fn throttled(owner: Owner<'_>, up: bool, outcome: &ThrottleOutcome) {
    #[cfg(feature = "tracing")]
    {
        let direction = if up { "up" } else { "down" };
        quietly(|| match owner {
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
        });
    }
}

// ===== metrics =====

/// What a group or limiter reads for the `metrics` feature, and the series it sums into.
pub(crate) trait Reading: Copy {
    #[cfg(feature = "metrics")]
    type Series: metrics_impl::Series<Reading = Self>;
}

impl Reading for GroupReading {
    #[cfg(feature = "metrics")]
    type Series = metrics_impl::GroupSeries;
}

impl Reading for LimiterReading {
    #[cfg(feature = "metrics")]
    type Series = metrics_impl::LimiterSeries;
}

/// A group's or limiter's metrics: its part of the series of its name, made when it is
/// built, from the recorder installed then. Groups (or limiters) with the same name (every
/// unnamed group, say) report into one series: counters and gauges are their sums.
pub(crate) struct Metrics<R: Reading> {
    #[cfg(feature = "metrics")]
    inner: metrics_impl::Part<R::Series>,
    #[cfg(not(feature = "metrics"))]
    _reading: std::marker::PhantomData<R>,
}

/// A group's metrics.
pub(crate) type GroupMetrics = Metrics<GroupReading>;

/// A limiter's metrics, shared by the limiter's handles and the groups that use it.
pub(crate) type LimiterMetrics = Metrics<LimiterReading>;

// A panic while a recorder records is caught and leaves nothing of ours half-changed. Without
// these, the `metrics` feature would take `UnwindSafe` away from `Group` and `Limiter`, and
// enabling a feature must not break code that compiled without it.
impl<R: Reading> std::panic::RefUnwindSafe for Metrics<R> {}
impl<R: Reading> std::panic::UnwindSafe for Metrics<R> {}

impl<R: Reading> Metrics<R> {
    /// Whether there is anything to report: without the `metrics` feature, callers skip the
    /// reading.
    pub(crate) const ON: bool = cfg!(feature = "metrics");

    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(name: Option<&str>) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            inner: metrics_impl::Part::new(label(name)),
            #[cfg(not(feature = "metrics"))]
            _reading: std::marker::PhantomData,
        }
    }

    /// Keeps `reading` as the latest; `true` if it changed, and the series wants a
    /// [`report`](Self::report). Called under the group's (or limiter's) lock, so that two
    /// readings are stored in the order they were read; takes only this module's lock.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    #[inline]
    pub(crate) fn store(&self, reading: R) -> bool {
        #[cfg(feature = "metrics")]
        return self.inner.store(reading);
        #[cfg(not(feature = "metrics"))]
        false
    }

    /// Hands the series' sums to the recorder. Call after `store`, with no lock held.
    #[inline]
    pub(crate) fn report(&self) {
        #[cfg(feature = "metrics")]
        self.inner.report();
    }
}

#[cfg(feature = "metrics")]
mod metrics_impl {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError, Weak};

    use metrics::{Counter, Gauge, Histogram, Unit};

    use super::{GroupReading, LimiterReading, quietly};

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
                    quietly(&mut report);
                }
                self.busy.store(false, Ordering::SeqCst);
                if !self.dirty.load(Ordering::SeqCst) {
                    return;
                }
            }
        }
    }

    fn guard<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        // Nothing under these locks can panic midway: the sums are sound.
        mutex.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The series of every name in use, by name and recorder.
    type Names<S> = BTreeMap<(String, usize), Weak<Shared<S>>>;

    /// What one name's series sums, and how it reports the sums. The sums are kept as parts
    /// change (O(1) a change, however many groups share the name).
    pub(crate) trait Series: Send + Sync + 'static {
        type Reading: Copy + Default + Send + PartialEq;
        type Total: Default + Send;
        /// The handles of `name`, from the recorder installed now.
        fn new(name: &str) -> Self;
        /// Handles that report nothing.
        fn noop() -> Self;
        /// Adds a part's reading to the total, or takes it away (`sign` false).
        fn add(total: &mut Self::Total, reading: &Self::Reading, sign: bool);
        /// A part that left: its gauges leave the total, its counters stay.
        fn retire(total: &mut Self::Total, left: &Self::Reading);
        /// The counters handed to the recorder (as growth).
        type Counts: Default + Send;
        /// What the counters of `total` grew by since `reported`, which becomes `total`'s.
        fn grown(reported: &mut Self::Counts, total: &Self::Total) -> Self::Counts;
        fn report(&self, total: &Self::Total, grown: &Self::Counts);
        /// A copy of the total, to report after the lock.
        fn snapshot(total: &Self::Total) -> Self::Total;
        /// The series of every name, per recorder.
        fn all() -> &'static Mutex<Names<Self>>
        where
            Self: Sized;
    }

    /// One name's series: its handles, and the latest reading of each group (or limiter) of
    /// that name.
    pub(crate) struct Shared<S: Series> {
        /// Its name and recorder: its key in [`Series::all`].
        key: (String, usize),
        publisher: Publisher,
        /// The counters as last handed to the recorder, which is given what they grew by:
        /// a recorder keeps one counter per name, which a series made later for the same name
        /// (after the last group of the name went) goes on adding to, and never takes back.
        reported: Mutex<S::Counts>,
        sums: Mutex<Sums<S>>,
        pub(super) handles: S,
    }

    struct Sums<S: Series> {
        next: u64,
        live: HashMap<u64, S::Reading>,
        total: S::Total,
    }

    /// A group's (or limiter's) part of its name's series.
    pub(super) struct Part<S: Series> {
        id: u64,
        pub(super) series: Arc<Shared<S>>,
    }

    impl<S: Series> std::ops::Deref for Shared<S> {
        type Target = S;
        fn deref(&self) -> &S {
            &self.handles
        }
    }

    impl<S: Series> Part<S> {
        pub(super) fn new(name: &str) -> Self {
            describe();
            // The recorder's address tells recorders apart (a local one in a test, say).
            let recorder = metrics::with_recorder(|r| std::ptr::from_ref(r).cast::<()>() as usize);
            let key = (name.to_owned(), recorder);
            let found = guard(S::all()).get(&key).and_then(Weak::upgrade);
            let series = match found {
                Some(series) => series,
                None => {
                    // The recorder registers the handles outside the map's lock (it may build
                    // a group itself); one that panics leaves this series without handles.
                    let handles = quietly(|| S::new(name)).unwrap_or_else(S::noop);
                    let made = Arc::new(Shared {
                        key: key.clone(),
                        publisher: Publisher::default(),
                        reported: Mutex::new(S::Counts::default()),
                        sums: Mutex::new(Sums {
                            next: 0,
                            live: HashMap::new(),
                            total: S::Total::default(),
                        }),
                        handles,
                    });
                    let mut all = guard(S::all());
                    match all.get(&key).and_then(Weak::upgrade) {
                        Some(first) => {
                            // Another thread made it meanwhile: ours goes, after the lock
                            // (dropping handles is the recorder's code).
                            drop(all);
                            drop(made);
                            first
                        }
                        None => {
                            all.insert(key, Arc::downgrade(&made));
                            made
                        }
                    }
                }
            };
            let id = {
                let mut sums = guard(&series.sums);
                let id = sums.next;
                sums.next += 1;
                sums.live.insert(id, S::Reading::default());
                id
            };
            Self { id, series }
        }

        /// `true` if the reading changed. (A reading that did not needs no report: a recorder
        /// that reads the group from inside a report does not set off another report.)
        pub(super) fn store(&self, reading: S::Reading) -> bool {
            let mut sums = guard(&self.series.sums);
            let old = sums.live.insert(self.id, reading).unwrap_or_default();
            if old == reading {
                return false;
            }
            S::add(&mut sums.total, &old, false);
            S::add(&mut sums.total, &reading, true);
            true
        }

        pub(super) fn report(&self) {
            let series = &self.series;
            series.publisher.run(|| {
                let total = {
                    let sums = guard(&series.sums);
                    S::snapshot(&sums.total)
                };
                // One reporter at a time: the growth is worked out against the last report.
                let grown = {
                    let mut reported = guard(&series.reported);
                    S::grown(&mut reported, &total)
                };
                series.handles.report(&total, &grown);
            });
        }
    }

    impl<S: Series> Drop for Shared<S> {
        /// The last part of the name is gone: so is its entry (unless a new series of the
        /// name took its place already). Dropping a `Weak` runs no user code.
        fn drop(&mut self) {
            let mut all = guard(S::all());
            let me: *const Self = self;
            if all.get(&self.key).is_some_and(|weak| weak.as_ptr() == me) {
                all.remove(&self.key);
            }
        }
    }

    impl<S: Series> Drop for Part<S> {
        /// The group (or limiter) is gone: its counters stay in the series' sums, its gauges
        /// leave them.
        fn drop(&mut self) {
            {
                let mut sums = guard(&self.series.sums);
                if let Some(left) = sums.live.remove(&self.id) {
                    S::retire(&mut sums.total, &left);
                }
            }
            self.report();
        }
    }

    /// Help texts, given to the recorder once per process.
    fn describe() {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        static ONCE: Once = Once::new();
        // A recorder that panics here loses its help texts, and the `Once` still completes.
        ONCE.call_once(|| {
            quietly(describe_all);
        });
        fn describe_all() {
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
        }
    }

    /// Gauges summed over the parts of a name: limits as the count of parts without one
    /// (`usize::MAX`) and the sum of the others, so that a part can be taken away again.
    #[derive(Debug, Default, Clone, Copy)]
    pub(crate) struct Gauges {
        waiting: u64,
        running: u64,
        limits: u128,
        uncapped: u64,
    }

    impl Gauges {
        fn add(&mut self, waiting: usize, limit: usize, sign: bool) {
            let (waiting, limit) = (waiting as u64, limit as u128);
            if sign {
                self.waiting = self.waiting.wrapping_add(waiting);
            } else {
                self.waiting = self.waiting.wrapping_sub(waiting);
            }
            match (limit == usize::MAX as u128, sign) {
                (true, true) => self.uncapped += 1,
                (true, false) => self.uncapped -= 1,
                (false, true) => self.limits += limit,
                (false, false) => self.limits -= limit,
            }
        }

        /// The sum of limits as a gauge: a part without one makes it +Inf.
        fn limit(&self) -> f64 {
            if self.uncapped > 0 {
                f64::INFINITY
            } else {
                self.limits as f64
            }
        }
    }

    /// A group series' sums.
    #[derive(Debug, Default)]
    pub(crate) struct GroupTotal {
        counts: GroupReading,
        gauges: Gauges,
    }

    pub(crate) struct GroupSeries {
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

    impl Series for GroupSeries {
        type Reading = GroupReading;
        type Total = GroupTotal;
        type Counts = [u64; 5];

        fn noop() -> Self {
            Self {
                scheduled: Counter::noop(),
                started: Counter::noop(),
                completed: Counter::noop(),
                cancelled: Counter::noop(),
                panicked: Counter::noop(),
                pending: Gauge::noop(),
                running: Gauge::noop(),
                waiting: Gauge::noop(),
                limit: Gauge::noop(),
                lateness: Histogram::noop(),
                run_time: Histogram::noop(),
            }
        }

        fn new(name: &str) -> Self {
            let counter = |key: &'static str| metrics::counter!(key, "group" => name.to_owned());
            let gauge = |key: &'static str| metrics::gauge!(key, "group" => name.to_owned());
            let histogram =
                |key: &'static str| metrics::histogram!(key, "group" => name.to_owned());
            Self {
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

        fn add(total: &mut GroupTotal, r: &GroupReading, sign: bool) {
            let t = &mut total.counts;
            let step = |sum: &mut u64, v: u64| {
                *sum = if sign {
                    sum.wrapping_add(v)
                } else {
                    sum.wrapping_sub(v)
                }
            };
            step(&mut t.scheduled, r.scheduled);
            step(&mut t.started, r.started);
            step(&mut t.completed, r.completed);
            step(&mut t.cancelled, r.cancelled);
            step(&mut t.panicked, r.panicked);
            step(&mut t.pending, r.pending);
            step(&mut t.running, r.running);
            total.gauges.add(r.waiting, r.limit, sign);
        }

        fn retire(total: &mut GroupTotal, left: &GroupReading) {
            let t = &mut total.counts;
            t.pending = t.pending.wrapping_sub(left.pending);
            t.running = t.running.wrapping_sub(left.running);
            total.gauges.add(left.waiting, left.limit, false);
        }

        fn snapshot(total: &GroupTotal) -> GroupTotal {
            GroupTotal {
                counts: total.counts,
                gauges: total.gauges,
            }
        }

        fn grown(reported: &mut [u64; 5], total: &GroupTotal) -> [u64; 5] {
            let t = &total.counts;
            let now = [t.scheduled, t.started, t.completed, t.cancelled, t.panicked];
            let grown = std::array::from_fn(|i| now[i].saturating_sub(reported[i]));
            *reported = now;
            grown
        }

        fn report(&self, total: &GroupTotal, grown: &[u64; 5]) {
            let now = &total.counts;
            let counters = [
                &self.scheduled,
                &self.started,
                &self.completed,
                &self.cancelled,
                &self.panicked,
            ];
            for (counter, &by) in counters.into_iter().zip(grown) {
                counter.increment(by);
            }
            self.pending.set(now.pending as f64);
            self.running.set(now.running as f64);
            self.waiting.set(total.gauges.waiting as f64);
            self.limit.set(total.gauges.limit());
        }

        fn all() -> &'static Mutex<Names<Self>> {
            static ALL: Mutex<Names<GroupSeries>> = Mutex::new(BTreeMap::new());
            &ALL
        }
    }

    pub(crate) struct LimiterSeries {
        limit: Gauge,
        running: Gauge,
        waiting: Gauge,
    }

    impl Series for LimiterSeries {
        type Reading = LimiterReading;
        type Total = Gauges;
        type Counts = ();

        fn noop() -> Self {
            Self {
                limit: Gauge::noop(),
                running: Gauge::noop(),
                waiting: Gauge::noop(),
            }
        }

        fn new(name: &str) -> Self {
            let gauge = |key: &'static str| metrics::gauge!(key, "limiter" => name.to_owned());
            Self {
                limit: gauge("schedgroup_limiter_limit"),
                running: gauge("schedgroup_limiter_running"),
                waiting: gauge("schedgroup_limiter_waiting"),
            }
        }

        fn add(total: &mut Gauges, r: &LimiterReading, sign: bool) {
            total.add(r.waiting, r.limit, sign);
            total.running = if sign {
                total.running.wrapping_add(r.running as u64)
            } else {
                total.running.wrapping_sub(r.running as u64)
            };
        }

        fn retire(total: &mut Gauges, left: &LimiterReading) {
            Self::add(total, left, false);
        }

        fn snapshot(total: &Gauges) -> Gauges {
            *total
        }

        fn grown(_: &mut (), _: &Gauges) {}

        fn report(&self, total: &Gauges, (): &()) {
            self.limit.set(total.limit());
            self.running.set(total.running as f64);
            self.waiting.set(total.waiting as f64);
        }

        fn all() -> &'static Mutex<Names<Self>> {
            static ALL: Mutex<Names<LimiterSeries>> = Mutex::new(BTreeMap::new());
            &ALL
        }
    }
}
