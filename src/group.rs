//! [`Group`] and its [`Builder`].

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::adaptive::Adaptive;
use crate::clock::Clock;
use crate::error::WaitError;
use crate::every::Every;
use crate::handle::TaskHandle;
use crate::history::History;
use crate::limiter::Limiter;
use crate::output::{JoinHandle, Results};
use crate::registry::Registry;
use crate::shared::Shared;
use crate::stats::Stats;
use crate::task::catching;
use crate::throttle::{Throttle, ThrottleOutcome};

/// A group of futures that run at or after their deadlines, at most
/// [`max_concurrent`](Builder::max_concurrent) at a time.
///
/// A group keeps its pending tasks in one deadline-ordered queue and runs one monitor task that
/// sleeps on a single timer until the earliest deadline. A pending task is its future, stored
/// inline in the queue beside 24 bytes of bookkeeping, with no allocation of its own (futures
/// over 256 bytes are boxed); it is not a tokio task and has no timer of its own. When tasks
/// fall due, the monitor starts them in deadline order (ties in the order they were
/// scheduled), as many as the cap allows; the rest stay queued until a slot frees.
///
/// # Semantics
///
/// - **Never early.** A task starts at or after its deadline on tokio's clock (the timer has
///   millisecond resolution). A deadline in the past, or a zero delay, starts as soon as
///   possible.
/// - **Order.** Due tasks start in deadline order; equal deadlines start in the order they were
///   scheduled. With a cap of 1 the run order is exactly that order.
/// - **Any input.** `Duration::MAX` or an `Instant` decades away never panics: the task waits
///   (until cancelled).
/// - **Cancellation.** After [`cancel`](Group::cancel) (or the parent token's cancellation) no
///   pending task starts: their futures are dropped promptly, running tasks are dropped at their
///   next `.await`, and a task scheduled afterwards is dropped at once and counted as cancelled.
///   The caller's parent token is never cancelled by the group.
/// - **Panics.** A panicking task is caught and counted; its slot is freed and the rest of the
///   group carries on. [`wait`](Group::wait) reports it.
/// - **Dropping the group** (every clone) cancels nothing: scheduled tasks still run, and the
///   monitor exits once none is pending. To stop the work, call [`cancel`](Group::cancel).
/// - **Runtime shutdown.** If the runtime the group spawns on shuts down, the group cancels
///   itself: nothing pending could run, and `wait()` must not hang.
/// - **Threads.** [`delay`](Group::delay), [`schedule`](Group::schedule), [`cancel`](Group::cancel)
///   and the [`TaskHandle`] methods work from any thread, with or without a runtime context.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::Group;
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// let group = Group::new();
/// let order = Arc::new(Mutex::new(Vec::new()));
/// for n in [3, 1, 2] {
///     let order = order.clone();
///     group.delay(Duration::from_millis(100 * n), async move {
///         order.lock().unwrap().push(n);
///     });
/// }
/// group.wait().await.unwrap();
/// assert_eq!(*order.lock().unwrap(), [1, 2, 3]);
/// # }
/// ```
///
/// Clones share the group: they schedule into the same queue and wait on the same tasks.
#[derive(Clone)]
pub struct Group {
    shared: Arc<Shared>,
}

impl Group {
    /// Creates a group with no cap on concurrency, on the current tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let group = schedgroup::Group::new();
    /// assert_eq!(group.max_concurrent(), usize::MAX);
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime. Use [`Builder::runtime`] to create a group
    /// elsewhere.
    #[track_caller]
    #[must_use]
    pub fn new() -> Self {
        Builder::new().build()
    }

    /// Returns a [`Builder`] to set a cap, a parent token, a name or a runtime.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Runs `future` once `delay` has passed (measured from tokio's now, on the calling thread).
    ///
    /// A zero delay runs as soon as possible; `Duration::MAX` waits until the task is moved or
    /// cancelled. Deadlines are kept to about 292 years from the process's first use of the
    /// crate: a later one waits that long, which only the paused clock can tell apart.
    /// See [`schedule`](Group::schedule) for the rest.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::Group;
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    ///
    /// let group = Group::new();
    /// let start = Instant::now();
    /// group.delay(Duration::from_millis(500), async move {
    ///     assert!(start.elapsed() >= Duration::from_millis(500));
    /// });
    /// group.wait().await.unwrap();
    /// # }
    /// ```
    pub fn delay<F>(&self, delay: Duration, future: F) -> TaskHandle
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let deadline = self.shared.clock.after(delay);
        self.schedule_key(deadline, future)
    }

    /// Runs `future` at or after `deadline` (a [`tokio::time::Instant`] or a
    /// [`std::time::Instant`]).
    ///
    /// The returned [`TaskHandle`] can cancel or move the task while it is pending; dropping
    /// it changes nothing. If the group is cancelled, `future` is dropped before this returns
    /// and counted as cancelled.
    ///
    /// Deadlines are kept to about 292 years from the process's first use of the crate (see
    /// [`delay`](Group::delay)).
    ///
    /// The future may have any output; it is dropped when the task ends (a task that returns
    /// `Err` still counts as completed: it returned). To have the output back, schedule with
    /// [`schedule_join`](Group::schedule_join), or through [`results`](Group::results).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::Group;
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    ///
    /// let group = Group::new();
    /// let deadline = Instant::now() + Duration::from_secs(1);
    /// group.schedule(deadline, async move {
    ///     assert!(Instant::now() >= deadline);
    /// });
    /// group.wait().await.unwrap();
    /// assert_eq!(group.stats().completed, 1);
    /// # }
    /// ```
    pub fn schedule<F>(&self, deadline: impl Into<Instant>, future: F) -> TaskHandle
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let deadline = self.shared.clock.key(deadline.into());
        self.schedule_key(deadline, future)
    }

    fn schedule_key<F>(&self, deadline: u64, future: F) -> TaskHandle
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let key = self.shared.schedule(deadline, future);
        TaskHandle::new(self.shared.seat, key)
    }

    /// Runs `future` after `delay`, as [`delay`](Group::delay) does, and returns a
    /// [`JoinHandle`] that resolves to its output: `Ok(output)`, or a [`JoinError`](crate::JoinError) if the task
    /// was cancelled (by its handle or with the group) or panicked.
    ///
    /// The task is stored as any other, with a pointer to its result's channel beside its
    /// future; the channel is one allocation (tokio's `oneshot`). For many outputs in the order
    /// their tasks end, without an allocation per task, use [`results`](Group::results).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::Group;
    /// use std::time::Duration;
    ///
    /// let group = Group::new();
    /// let retry = group.delay_join(Duration::from_millis(250), async { "200 OK" });
    /// assert_eq!(retry.await.unwrap(), "200 OK");
    /// # }
    /// ```
    pub fn delay_join<F>(&self, delay: Duration, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let deadline = self.shared.clock.after(delay);
        self.join_key(deadline, future)
    }

    /// Runs `future` at or after `deadline`, as [`schedule`](Group::schedule) does, and
    /// returns a [`JoinHandle`] that resolves to its output (see
    /// [`delay_join`](Group::delay_join)).
    pub fn schedule_join<F>(&self, deadline: impl Into<Instant>, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let deadline = self.shared.clock.key(deadline.into());
        self.join_key(deadline, future)
    }

    fn join_key<F>(&self, deadline: u64, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (sink, handle) = JoinHandle::channel();
        let key = self.shared.schedule_awaited(deadline, future, sink);
        handle(TaskHandle::new(self.shared.seat, key))
    }

    /// A collector of outputs: tasks scheduled through it ([`Results::delay`],
    /// [`Results::schedule`]) are tasks of this group, and [`Results::join_next`] returns their
    /// outputs in the order they end, each with its task's id, like tokio's
    /// `JoinSet::join_next_with_id`. One pointer per pending task, no allocation per task.
    pub fn results<T: Send + 'static>(&self) -> Results<T> {
        Results::new(self.shared.clone())
    }

    /// Runs `make()`'s future every `period`, the first time one period from now; stopped by
    /// the returned [`Every`] or the group's cancellation.
    ///
    /// The first run is one period away, as with [`delay`](Group::delay) (tokio's
    /// [`interval`] ticks at once instead): a periodic refresh usually follows work just done.
    /// To run at once, or at any other instant, use [`every_at`](Group::every_at).
    ///
    /// Each run is one ordinary task of the group: `make` is called when the run starts, and
    /// its future's output is dropped when it ends, as [`delay`](Group::delay) drops a task's.
    /// Runs count in [`stats`](Group::stats) (a pending run is one pending task) and take a
    /// slot of the cap and the limiter like any other task. Runs of one series never overlap:
    /// the next run is scheduled when the current one ends, at the next tick of the grid
    /// `start`, `start + period`, ...; see [`Every::set_missed_tick_behavior`] for a run that
    /// overruns a tick. A run that panics (in `make` or in its future) is counted and reported
    /// by [`wait`](Group::wait) like any task's panic, and the series goes on.
    ///
    /// A series costs one pending task at a time and one small allocation shared by its runs
    /// and handles: no tokio task and no timer of its own.
    ///
    /// Ticks are deadlines, kept to about 292 years from the process's first use of the crate
    /// (see [`delay`](Group::delay)): a series whose next tick lies beyond that (a period of
    /// centuries, or a paused clock moved past it) runs no more, until it is stopped.
    ///
    /// **`wait()` and series.** A live series keeps the group busy, like a task that never
    /// ends: [`wait`](Group::wait) resolves only once every series is stopped (and its last
    /// run ended) or the group is cancelled. Stop the series before waiting for the rest.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::Group;
    /// use std::time::Duration;
    ///
    /// let group = Group::new();
    /// let heartbeat = group.every(Duration::from_secs(5), || async {
    ///     // send a heartbeat
    /// });
    /// group.delay(Duration::from_secs(12), async { /* the real work */ });
    ///
    /// tokio::time::sleep(Duration::from_secs(12)).await;
    /// heartbeat.stop(); // or wait() would wait for ever
    /// group.wait().await.unwrap();
    /// assert_eq!(group.stats().completed, 3); // heartbeats at 5 s and 10 s, the work at 12 s
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if `period` is zero, as tokio's [`interval`] does: a series with no gap between
    /// runs would keep the group busy for ever.
    ///
    /// [`interval`]: tokio::time::interval
    #[track_caller]
    pub fn every<F, Fut>(&self, period: Duration, make: F) -> Every
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
    {
        assert!(
            !period.is_zero(),
            "Group::every: the period must be non-zero"
        );
        let first = self.shared.clock.after(period);
        Every::start(self.shared.clone(), first, period, make)
    }

    /// Runs `make()`'s future at `start` (a [`tokio::time::Instant`] or a
    /// [`std::time::Instant`]) and every `period` after it; see [`every`](Group::every).
    ///
    /// A `start` in the past runs at once; the ticks it implies that have already passed are
    /// missed (see [`Every::set_missed_tick_behavior`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::Group;
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    ///
    /// let group = Group::new();
    /// let advert = group.every_at(Instant::now(), Duration::from_secs(4), || async {
    ///     // multicast a router advertisement
    /// });
    /// tokio::time::sleep(Duration::from_secs(9)).await; // runs at 0 s, 4 s and 8 s
    /// advert.stop();
    /// group.wait().await.unwrap();
    /// assert_eq!(group.stats().completed, 3);
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if `period` is zero.
    #[track_caller]
    pub fn every_at<F, Fut>(&self, start: impl Into<Instant>, period: Duration, make: F) -> Every
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
    {
        assert!(
            !period.is_zero(),
            "Group::every_at: the period must be non-zero"
        );
        let first = self.shared.clock.key(start.into());
        Every::start(self.shared.clone(), first, period, make)
    }

    /// Waits until no task is pending or running.
    ///
    /// Resolves when the group is idle at that moment: at once if it has no tasks. Tasks may be
    /// scheduled while someone waits (a running task may schedule its own retry, and this
    /// `wait()` covers it) and after `wait()` returned (a later `wait()` covers them). Any
    /// number of `wait()`s, on any clones, may run at once; all resolve.
    ///
    /// When it returns, every future of the group has been dropped (its `Drop` has run), after
    /// cancellation too, and the group holds no slot, of its own cap or of a limiter's.
    ///
    /// The group's own tokio tasks may outlive it by a moment: the runner that ended the last
    /// task may still be carrying out what that caused (handing its slot on to another group or
    /// an `acquire()` caller) before it returns, and a monitor whose queue emptied has been woken
    /// to exit. Neither polls a future of the group again or waits for a timer, so the runtime's
    /// count of live tasks ([`RuntimeMetrics::num_alive_tasks`]) is back to its baseline as soon
    /// as the runtime has run them, without any time passing on its clock.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::Group;
    /// use std::time::Duration;
    ///
    /// let group = Group::new();
    /// let retry = group.clone();
    /// group.delay(Duration::from_secs(1), async move {
    ///     // The first attempt schedules a retry; wait() covers it.
    ///     retry.delay(Duration::from_secs(2), async {});
    /// });
    /// group.wait().await.unwrap();
    /// assert_eq!(group.stats().completed, 2);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`WaitError`] if the group was cancelled ([`WaitError::is_cancelled`]) or if any of its
    /// tasks ever panicked ([`WaitError::panicked`] says how many).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing, and a new `wait()` picks up where it
    /// left off.
    ///
    /// [`RuntimeMetrics::num_alive_tasks`]: tokio::runtime::RuntimeMetrics::num_alive_tasks
    pub async fn wait(&self) -> Result<(), WaitError> {
        loop {
            // Register before checking: an idle announcement after the check cannot be missed.
            let mut notified = pin!(self.shared.idle_notify().notified());
            notified.as_mut().enable();
            if let Some(result) = self.shared.poll_idle() {
                return result;
            }
            // Through a waker that catches a panic of the caller's: tokio wakes `wait()`ers in
            // batches, and one panicking waker would drop the rest of its batch unwoken.
            poll_fn(|cx| {
                let waker = catching(cx.waker());
                notified.as_mut().poll(&mut Context::from_waker(&waker))
            })
            .await;
        }
    }

    /// Cancels the group: see the type-level docs for what that does. Also cancels
    /// [`cancellation_token`](Group::cancellation_token), but never the parent token it was
    /// built with.
    ///
    /// Returns `true` if the group was not cancelled before this call. Pending futures are
    /// dropped before it returns.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::Group;
    /// use std::time::Duration;
    ///
    /// let group = Group::new();
    /// group.delay(Duration::from_secs(60), async { unreachable!() });
    /// assert!(group.cancel());
    /// assert!(!group.cancel());
    /// assert_eq!(group.stats().cancelled, 1);
    /// assert!(group.wait().await.unwrap_err().is_cancelled());
    /// # }
    /// ```
    pub fn cancel(&self) -> bool {
        self.shared.cancel()
    }

    /// Whether the group has been cancelled, by [`cancel`](Group::cancel) or through its token.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.shared.catch_up_on_token()
    }

    /// The group's own token: a child of the parent given to
    /// [`Builder::cancellation_token`], if any. Cancelling it cancels the group (pending futures
    /// are then dropped by the monitor, promptly rather than before `cancel` returns).
    #[must_use]
    pub fn cancellation_token(&self) -> CancellationToken {
        self.shared.cancel.token().clone()
    }

    /// Changes the cap on running tasks. `0` pauses starts; `usize::MAX` removes the cap.
    ///
    /// Raising it starts waiting due tasks at once. Lowering it aborts nothing: running tasks
    /// finish, and no task starts until fewer than `limit` run. Returns `true` if the cap
    /// changed.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::Group;
    /// use std::time::Duration;
    ///
    /// let group = Group::builder().max_concurrent(0).build(); // paused
    /// group.delay(Duration::ZERO, async {});
    /// tokio::time::sleep(Duration::from_secs(1)).await;
    /// assert_eq!(group.stats().pending, 1);
    ///
    /// assert!(group.set_max_concurrent(4));
    /// group.wait().await.unwrap();
    /// assert_eq!(group.stats().completed, 1);
    /// # }
    /// ```
    pub fn set_max_concurrent(&self, limit: usize) -> bool {
        self.shared.set_limit(limit)
    }

    /// The cap on running tasks (`usize::MAX` if none).
    #[must_use]
    pub fn max_concurrent(&self) -> usize {
        self.shared.limit()
    }

    /// Same as [`set_max_concurrent`](Group::set_max_concurrent), under the name
    /// [`Limiter::set_limit`](crate::Limiter::set_limit) uses.
    ///
    /// Deprecated: a group's cap has one name, the [`Builder`]'s (`max_concurrent`). This
    /// method still works, and will be removed in a later 0.x release.
    #[deprecated(since = "0.2.0", note = "use `Group::set_max_concurrent`")]
    pub fn set_limit(&self, limit: usize) -> bool {
        self.set_max_concurrent(limit)
    }

    /// Sets (or, with `None`, removes) an adaptive controller of the group's own cap: see
    /// [`Adaptive`] and [`Builder::adaptive`]. A controller set again starts afresh; the cap
    /// is brought within the new floor and ceiling at once. A cap set by hand afterwards
    /// ([`set_max_concurrent`](Group::set_max_concurrent), a throttle) is where the controller
    /// goes on from.
    pub fn set_adaptive(&self, adaptive: impl Into<Option<Adaptive>>) {
        self.shared.set_adaptive(adaptive.into());
    }

    /// Signals overload to the adaptive controllers of this group's cap and of its limiter,
    /// if they exist (see [`Adaptive`]): call it from a task that met an HTTP 429 or 503, say.
    /// A signal that tells of the limit before the controller's last change is ignored: from
    /// inside one of this group's tasks, one whose task started under an older limit, so that
    /// a burst of them from tasks of one limit cuts it once; from anywhere else (another
    /// group's task, another thread), one within a mean run time of the change. Without a
    /// controller it does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::{Adaptive, Group};
    ///
    /// let group = Group::builder().max_concurrent(20).adaptive(Adaptive::aimd()).build();
    /// group.overloaded();
    /// assert_eq!(group.max_concurrent(), 16);
    /// # }
    /// ```
    pub fn overloaded(&self) {
        self.shared.overloaded();
    }

    /// Replaces the throttle [`throttle_down`](Group::throttle_down) and
    /// [`throttle_up`](Group::throttle_up) use on this group's own cap (by default
    /// [`Throttle::default`], with the initial cap as the ceiling). A `ceiling` of `None` means
    /// the cap now.
    pub fn set_throttle(&self, throttle: Throttle) {
        self.shared.set_throttle(throttle);
    }

    /// Steps the group's own cap down as the throttle allows; running tasks are not aborted.
    /// See [`Throttle`].
    ///
    /// A group without a cap (the default, `max_concurrent() == usize::MAX`) has nothing to
    /// step from: the call is refused with [`ThrottleOutcome::Uncapped`] and changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::{Group, ThrottleOutcome};
    ///
    /// let group = Group::builder().max_concurrent(8).build();
    /// assert_eq!(group.throttle_down(), ThrottleOutcome::Applied { from: 8, to: 6 });
    /// assert!(!group.throttle_up().is_applied(), "held for 30 s by default");
    /// assert_eq!(group.max_concurrent(), 6);
    ///
    /// let uncapped = Group::new();
    /// assert_eq!(uncapped.throttle_down(), ThrottleOutcome::Uncapped);
    /// assert_eq!(uncapped.max_concurrent(), usize::MAX);
    /// # }
    /// ```
    pub fn throttle_down(&self) -> ThrottleOutcome {
        self.shared.throttle(false)
    }

    /// Steps the group's own cap up as the throttle allows; waiting due tasks start at once.
    /// See [`Throttle`]. A group without a cap is refused with [`ThrottleOutcome::Uncapped`].
    pub fn throttle_up(&self) -> ThrottleOutcome {
        self.shared.throttle(true)
    }

    /// Same as [`max_concurrent`](Group::max_concurrent), under the name
    /// [`Limiter::limit`](crate::Limiter::limit) uses.
    ///
    /// Deprecated: a group's cap has one name, the [`Builder`]'s (`max_concurrent`). This
    /// method still works, and will be removed in a later 0.x release.
    #[deprecated(since = "0.2.0", note = "use `Group::max_concurrent`")]
    #[must_use]
    pub fn limit(&self) -> usize {
        self.max_concurrent()
    }

    /// What the group is doing now and did over the last 10 s, 1 min and 5 min: running,
    /// waiting for a slot (due but not started; a counter, not a walk over the tasks), the
    /// cap, and per window the peak and time-weighted mean of running, tasks started and
    /// ended, how late they started and how long they ran (p50, p99), and how many waited on
    /// average. See [`History`].
    #[must_use]
    pub fn history(&self) -> History {
        self.shared.history()
    }

    /// The earliest deadline among the group's pending tasks (those not started yet), or
    /// `None` if none is pending. A task delayed by `Duration::MAX` reports an instant beyond
    /// any timer (it never falls due), and a deadline beyond the 292 years deadlines are kept
    /// to reports that limit.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::Group;
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    ///
    /// let group = Group::new();
    /// assert_eq!(group.next_deadline(), None);
    /// let soon = Instant::now() + Duration::from_secs(1);
    /// group.schedule(soon + Duration::from_secs(1), async {});
    /// let first = group.schedule(soon, async {});
    /// assert_eq!(group.next_deadline(), Some(soon));
    /// first.cancel();
    /// assert_eq!(group.next_deadline(), Some(soon + Duration::from_secs(1)));
    /// # }
    /// ```
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        let key = self.shared.next_deadline()?;
        Some(self.shared.clock.instant(key))
    }

    /// A consistent snapshot of the group's counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The name given to [`Builder::name`], if any.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.shared.name.as_deref()
    }
}

// `Registry`'s one method that names `Group`, here so that the registry's module does not
// depend on this one (which depends on it for `Builder::registry`).
impl Registry {
    /// Adds `group` (all its clones). Returns `false` if it was registered already.
    pub fn add_group(&self, group: &Group) -> bool {
        self.add_shared(&group.shared)
    }
}

impl Default for Group {
    /// Same as [`Group::new`].
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

/// Configures a [`Group`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::Group;
/// use tokio_util::sync::CancellationToken;
///
/// let shutdown = CancellationToken::new();
/// let group = Group::builder()
///     .max_concurrent(16)
///     .cancellation_token(shutdown.clone())
///     .name("ra-responses")
///     .build();
/// assert_eq!(group.max_concurrent(), 16);
///
/// shutdown.cancel();
/// assert!(group.is_cancelled());
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until build() is called"]
pub struct Builder {
    max_concurrent: usize,
    parent: Option<CancellationToken>,
    name: Option<Box<str>>,
    runtime: Option<Handle>,
    limiter: Option<Limiter>,
    reserve: usize,
    registry: Option<Registry>,
    adaptive: Option<Adaptive>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// A builder for a group with no cap, no parent token and no name.
    pub fn new() -> Self {
        Self {
            max_concurrent: usize::MAX,
            parent: None,
            name: None,
            runtime: None,
            limiter: None,
            reserve: 0,
            registry: None,
            adaptive: None,
        }
    }

    /// At most `limit` tasks run at once; due tasks beyond it wait in the queue. `0` starts the
    /// group paused (see [`Group::set_max_concurrent`]). Default: no cap.
    pub fn max_concurrent(mut self, limit: usize) -> Self {
        self.max_concurrent = limit;
        self
    }

    /// Cancels the group when `parent` is cancelled. The group uses a child token, so
    /// cancelling the group never cancels `parent`.
    pub fn cancellation_token(mut self, parent: CancellationToken) -> Self {
        self.parent = Some(parent);
        self
    }

    /// A name shown by the group's `Debug` and a [`Registry`]'s snapshots.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into().into_boxed_str());
        self
    }

    /// Joins `limiter`: a task starts only when both this group (its own
    /// [`max_concurrent`](Builder::max_concurrent)) and the limiter have a free slot. Several
    /// groups may share one limiter; see [`Limiter`] for how a freed slot is shared out.
    pub fn limiter(mut self, limiter: &Limiter) -> Self {
        self.limiter = Some(limiter.clone());
        self
    }

    /// The group's own cap adapts to its tasks' run times and overload (see [`Adaptive`]),
    /// starting from [`max_concurrent`](Builder::max_concurrent) brought within the
    /// controller's floor and ceiling (a group without a cap starts at the ceiling). To adapt
    /// a limit shared by several groups, set it on their [`Limiter`] instead
    /// ([`Limiter::set_adaptive`]).
    pub fn adaptive(mut self, adaptive: Adaptive) -> Self {
        self.adaptive = Some(adaptive);
        self
    }

    /// Adds the group to `registry` (see [`Registry::add_group`]).
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Spawns the group's monitor and tasks on `runtime` instead of the current runtime, so the
    /// group can be built outside one.
    pub fn runtime(mut self, runtime: Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Keeps room for `tasks` pending tasks of each future type, for a group that knows its
    /// peak: scheduling up to that many costs no allocation, and, for schedules in ascending
    /// deadline order (a burst for one instant, a fixed delay), no page fault either.
    ///
    /// A group stores pending futures by type, each type in a slab of its own (every `async`
    /// block in the source is a type of its own), so the room is kept for each type the group
    /// is given, from the first time it is given that type. That first schedule makes the
    /// type's storage outside the group's lock (which a [`Limiter`] shares) and writes the slab
    /// and the queue of ascending deadlines once, so that the kernel maps their pages then
    /// rather than during the schedules: 40 bytes a task for a future of up to 16 bytes, about
    /// 1.6 ms per 100,000 tasks on the machine of `BENCHMARKS.md`. The heaps for deadlines out
    /// of order and for tasks already due are reserved (48 bytes a task of address space) but
    /// written only when used.
    ///
    /// A group that empties gives back the memory beyond the reserve (one without a reserve
    /// keeps at most a few hundred bytes per future type, so that emptying and refilling does
    /// not allocate every time); a cancelled group gives back all of it. If the allocator
    /// cannot give the room asked for, the type goes without a reserve: the group still works.
    /// Default: 0.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use schedgroup::Group;
    ///
    /// let group = Group::builder().reserve(10_000).build();
    /// for i in 0..10_000 {
    ///     group.delay(Duration::from_millis(i % 500), async {});
    /// }
    /// group.wait().await.unwrap();
    /// # }
    /// ```
    pub fn reserve(mut self, tasks: usize) -> Self {
        self.reserve = tasks;
        self
    }

    /// Creates the group.
    ///
    /// # Panics
    ///
    /// Panics if no [`runtime`](Builder::runtime) was given and this is called outside a tokio
    /// runtime.
    #[track_caller]
    #[must_use]
    pub fn build(self) -> Group {
        let runtime = match self.runtime {
            Some(runtime) => runtime,
            None => Handle::try_current().unwrap_or_else(|_| {
                panic!(
                    "schedgroup::Group must be created inside a tokio runtime, \
                     or given one with Builder::runtime"
                )
            }),
        };
        let token = self
            .parent
            .as_ref()
            .map_or_else(CancellationToken::new, CancellationToken::child_token);
        let shared = Shared::new(
            token,
            Clock::process(),
            runtime,
            self.max_concurrent,
            self.name,
            self.limiter
                .as_ref()
                .map(|limiter| (limiter.domain().clone(), limiter.metrics().clone())),
            self.reserve,
        );
        if let Some(registry) = &self.registry {
            registry.add_shared(&shared);
        }
        if let Some(adaptive) = self.adaptive {
            shared.set_adaptive(Some(adaptive));
        }
        // Its cap counts in its name's limit gauge from the start (`metrics` feature).
        shared.publish();
        Group { shared }
    }
}
