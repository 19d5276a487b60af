//! [`Limiter`]: a cap on running tasks shared by several groups, and by plain work.
//!
//! A limiter is a shared [`Pool`](crate::pool): the groups that join it are its members and
//! `acquire()` callers wait in the same line. Every rule of who gets a slot lives in the pool;
//! this file is the public face and the permits.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::adaptive::Adaptive;
use crate::clock::Clock;
use crate::driver::apply_limiter;
use crate::history::History;
use crate::observe::{self, LimiterMetrics, Owner};
use crate::pool::{Place, Pool};
use crate::shared::{Domain, Effects, Ticket, lock};
use crate::throttle::{Throttle, ThrottleOutcome, ThrottleState};

/// A cap of `N` running tasks shared by every [`Group`](crate::Group) that joins it with
/// [`Builder::limiter`](crate::Builder::limiter), and by plain work through
/// [`acquire`](Limiter::acquire).
///
/// A group's task starts only when both its group (its own `max_concurrent`, the `k` of "k of
/// N") and the limiter have a free slot.
///
/// # Fairness
///
/// When a slot frees, it goes to the waiter with the earliest deadline: among all groups that
/// have a due task waiting for this limiter, the one whose earliest due task has the earliest
/// deadline *now* (a cancelled or rescheduled head moves its group's place at once), and
/// [`acquire`](Limiter::acquire) callers, whose deadline is the moment they called. Equal
/// deadlines go to whoever was waiting first, and a group that has just started a task goes
/// behind those it tied with, so groups with equal deadlines take turns. A group waits in
/// line only while it could use a slot: it has a due task, runs fewer than its own cap, and
/// is not cancelled. A runner whose task ends hands its slot to the head of the line, which
/// is its own group's next task only if nothing in line comes before it.
///
/// What this guarantees: a waiting task is overtaken only by tasks with an earlier deadline
/// (or an equal one that was waiting first). So no group starves another as long as deadlines
/// are not set in the past: a task that is due waits at most for the tasks that were due
/// before it and the slots to work through them. (A stream of tasks scheduled with deadlines
/// in the past, earlier than a waiting task's, does go first, by design.)
///
/// # Guarantees
///
/// Each is checked after every step of a property model with several groups, random caps and
/// `acquire()` callers (`pool::model` in the source, and `tests/model_limiter.rs` on a real
/// runtime), by a multi-thread stress with limit storms (`tests/limiter_stress.rs`), and by a
/// regression test of its own (`tests/limiter_defects.rs`):
///
/// - **Work conservation.** Whenever every task has yielded, if the limiter has a free slot
///   then no group on it has a due task while running fewer than its own cap, and no
///   `acquire()` waits. The same holds for a group's own cap without a limiter.
/// - **Earliest deadline first**, by each group's current due head, never a stale one.
/// - **No slot leaks.** [`running`](Limiter::running) and [`waiting`](Limiter::waiting)
///   return to 0 once every group is idle, cancelled or dropped, whatever mix of cancels,
///   drops, limit changes and throttles came before.
/// - **Never early.** A task starts at or after its deadline on its own group's clock,
///   whoever frees the slot.
/// - **`wait()` means done**: after a group's [`wait`](crate::Group::wait) returns, the group
///   holds no slot of the limiter.
/// - **Shutdown.** Dropping a runtime with any number of groups in line neither recurses nor
///   aborts: slots their tasks held go on to groups on other runtimes.
/// - **A runtime that is not running holds back only its own group.** Its started tasks keep
///   their slots until they end or the runtime is dropped, but free slots never wait for it:
///   whoever frees or adds slots (a runner, a `set_limit`, a schedule, a dropped permit) hands
///   them all out before returning, a batch per lock, rather than leaving the rest to the
///   monitor of the group first in line.
///
/// # Cost
///
/// A limiter is one mutex over the state of every group that joins it: their queues, caps and
/// the line. A group's schedule, cancel, start and end lock it, so groups sharing a limiter
/// also share that lock (a group without a limiter has a lock of its own). A call that frees
/// or adds many slots at once (raising a limit or a group's cap, a burst falling due) starts
/// the due tasks it makes room for before it returns, 256 per lock: on the calling thread,
/// without yielding.
///
/// Clones share the limiter.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::{Group, Limiter};
/// use std::time::Duration;
///
/// // At most 4 requests in flight in all; at most 2 to each endpoint.
/// let shared = Limiter::new(4);
/// let endpoints: Vec<Group> = (0..3)
///     .map(|_| Group::builder().max_concurrent(2).limiter(&shared).build())
///     .collect();
/// for group in &endpoints {
///     for _ in 0..10 {
///         group.delay(Duration::ZERO, async {
///             tokio::time::sleep(Duration::from_millis(100)).await;
///         });
///     }
/// }
/// tokio::task::yield_now().await;
/// assert_eq!(shared.running(), 4);
/// for group in &endpoints {
///     group.wait().await.unwrap();
/// }
/// assert_eq!(shared.running(), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct Limiter {
    domain: Arc<Domain>,
    name: Option<Arc<str>>,
    /// The `metrics` feature's handles (nothing without it).
    metrics: Arc<LimiterMetrics>,
}

/// A slot of a [`Limiter`], taken by [`Limiter::acquire`] or [`Limiter::try_acquire`];
/// dropping it frees the slot.
#[must_use = "the slot is freed as soon as the permit is dropped"]
pub struct LimiterPermit {
    limiter: Limiter,
}

impl Drop for LimiterPermit {
    fn drop(&mut self) {
        self.limiter.release();
    }
}

impl fmt::Debug for LimiterPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterPermit").finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter of `limit` running tasks. `0` pauses everything that uses it until
    /// [`set_limit`](Limiter::set_limit) raises it.
    ///
    /// # Examples
    ///
    /// ```
    /// let limiter = schedgroup::Limiter::new(8);
    /// assert_eq!((limiter.limit(), limiter.running()), (8, 0));
    /// ```
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self::with_name(limit, None)
    }

    fn with_name(limit: usize, name: Option<Arc<str>>) -> Self {
        let limiter = Self {
            domain: Arc::new(Mutex::new(Pool::new(limit, true))),
            metrics: Arc::new(LimiterMetrics::new(name.as_deref())),
            name,
        };
        // Its limit counts in its name's gauge from the start (`metrics` feature).
        limiter.publish();
        limiter
    }

    /// A limiter of `limit` running tasks with a name, shown by its `Debug` and a
    /// [`Registry`](crate::Registry)'s snapshots.
    ///
    /// # Examples
    ///
    /// ```
    /// let limiter = schedgroup::Limiter::named("db", 8);
    /// assert_eq!((limiter.name(), limiter.limit()), (Some("db"), 8));
    /// ```
    #[must_use]
    pub fn named(name: impl Into<String>, limit: usize) -> Self {
        Self::with_name(limit, Some(name.into().into()))
    }

    /// The name given to [`Limiter::named`], if any.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub(crate) fn shared_name(&self) -> Option<Arc<str>> {
        self.name.clone()
    }

    pub(crate) fn metrics(&self) -> &Arc<LimiterMetrics> {
        &self.metrics
    }

    /// Reports the gauges to the `metrics` feature's recorder (nothing without it).
    #[inline]
    fn publish(&self) {
        if !LimiterMetrics::ON {
            return;
        }
        let changed = self.metrics.store(lock(&self.domain).limiter_reading());
        if changed {
            self.metrics.report();
        }
    }

    /// The pool groups join.
    pub(crate) fn domain(&self) -> &Arc<Domain> {
        &self.domain
    }

    /// The limit.
    #[must_use]
    pub fn limit(&self) -> usize {
        lock(&self.domain).limit()
    }

    /// Slots taken now: running tasks of every group that uses the limiter, permits, and slots
    /// granted to `acquire()` callers that have not woken up yet.
    #[must_use]
    pub fn running(&self) -> usize {
        lock(&self.domain).taken()
    }

    /// Groups and `acquire()` callers waiting for a slot now (a group counts once, however
    /// many of its tasks are due). A group waits only while it has a due task, room under its
    /// own cap, and is not cancelled.
    #[must_use]
    pub fn waiting(&self) -> usize {
        lock(&self.domain).waiting()
    }

    /// Changes the limit. Raising it hands the new slots to waiters at once; lowering it aborts
    /// nothing, and no slot is handed out until fewer than `limit` are taken. `0` pauses.
    /// Returns `true` if the limit changed.
    ///
    /// # Examples
    ///
    /// ```
    /// let limiter = schedgroup::Limiter::new(1);
    /// let permit = limiter.try_acquire().unwrap();
    /// assert!(limiter.try_acquire().is_none());
    /// assert!(limiter.set_limit(2));
    /// let second = limiter.try_acquire().unwrap();
    /// assert!(limiter.set_limit(0));
    /// assert_eq!(limiter.running(), 2, "lowering aborts nothing");
    /// drop((permit, second));
    /// assert!(limiter.try_acquire().is_none(), "paused");
    /// ```
    pub fn set_limit(&self, limit: usize) -> bool {
        let at = Clock::process().now();
        let (old, fx) = lock(&self.domain).set_limit(limit, at);
        self.carry_out(fx);
        observe::limit_set(Owner::Limiter(self.name()), old, limit);
        old != limit
    }

    /// Sets (or, with `None`, removes) an adaptive controller of the limit, fed by the tasks of
    /// every group that uses this limiter: see [`Adaptive`]. The limit is brought within the
    /// controller's floor and ceiling at once, and goes on from there; a limit set by hand
    /// later (or by a throttle) is where the controller goes on from. Permits
    /// ([`acquire`](Limiter::acquire)) hold slots but are no samples.
    ///
    /// Groups on runtimes whose clocks differ (tokio's paused clock, in tests) may share an
    /// adaptive limiter: which tasks started under the current limit is known exactly (each
    /// running task carries the generation of the limit it started under), and the
    /// [`hold`](Adaptive::hold) is measured on each group's own clock, as far as the pool
    /// can tell it apart (a group whose last reading of its clock is more than a minute
    /// behind the change, or ahead of it, is taken to be on another clock). The time between
    /// probes is measured on the clock of whichever group's task fed the controller last.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::{Adaptive, Algorithm, Limiter};
    ///
    /// let limiter = Limiter::named("api", 5000);
    /// limiter.set_adaptive(Adaptive::gradient().ceiling(200));
    /// assert_eq!(limiter.limit(), 200, "brought within the ceiling");
    /// let state = limiter.history().adaptive.unwrap();
    /// assert_eq!(state.algorithm, Algorithm::Gradient);
    /// assert_eq!(state.no_load_latency, None, "nothing measured yet");
    /// limiter.set_adaptive(None);
    /// assert!(limiter.history().adaptive.is_none());
    /// # }
    /// ```
    pub fn set_adaptive(&self, adaptive: impl Into<Option<Adaptive>>) {
        let now = Clock::process().now();
        let adaptive = adaptive.into().map(|a| (a, self.shared_name()));
        let (from, to, fx) = lock(&self.domain).set_adaptive(adaptive, now);
        self.carry_out(fx);
        observe::limit_set(Owner::Limiter(self.name()), from, to);
    }

    /// Signals overload to the limit's adaptive controller, if it has one (see [`Adaptive`]).
    /// A signal that tells of the limit before the controller's last change is ignored: from
    /// inside a task of a group on this limiter, one whose task started under an older limit
    /// (so a burst from tasks started under one limit cuts it once); from anywhere else, one
    /// within a mean run time of the change. From inside a task,
    /// [`Group::overloaded`](crate::Group::overloaded) tells the group's own controller too.
    pub fn overloaded(&self) {
        let now = Clock::process().now();
        let reports = {
            let mut pool = lock(&self.domain);
            pool.limiter_overloaded(now, crate::id::current());
            pool.take_reports()
        };
        reports.iter().for_each(observe::adapted);
    }

    /// Replaces the throttle [`throttle_down`](Limiter::throttle_down) and
    /// [`throttle_up`](Limiter::throttle_up) use (by default [`Throttle::default`], with the
    /// initial limit as the ceiling). A `ceiling` of `None` means the limit now. The hold
    /// starts afresh.
    pub fn set_throttle(&self, throttle: Throttle) {
        lock(&self.domain).set_throttle(throttle);
    }

    /// Steps the limit down, as the throttle allows: for a controller that sees the machine
    /// overloaded. Running tasks are not aborted. See [`Throttle`].
    ///
    /// A limit of `usize::MAX` is no cap and has nothing to step from: the call is refused
    /// with [`ThrottleOutcome::Uncapped`] and changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::{Limiter, ThrottleOutcome};
    ///
    /// assert_eq!(Limiter::new(8).throttle_down(), ThrottleOutcome::Applied { from: 8, to: 6 });
    /// assert_eq!(Limiter::new(usize::MAX).throttle_down(), ThrottleOutcome::Uncapped);
    /// # }
    /// ```
    pub fn throttle_down(&self) -> ThrottleOutcome {
        self.throttle(false)
    }

    /// Steps the limit up, as the throttle allows; waiters get the new slots at once. See
    /// [`Throttle`]. A limit of `usize::MAX` is refused with [`ThrottleOutcome::Uncapped`].
    pub fn throttle_up(&self) -> ThrottleOutcome {
        self.throttle(true)
    }

    fn throttle(&self, up: bool) -> ThrottleOutcome {
        let step = if up {
            ThrottleState::up
        } else {
            ThrottleState::down
        };
        let now = Instant::now();
        let at = Clock::process().now();
        let (outcome, fx) = lock(&self.domain).throttle(step, now, at);
        self.carry_out(fx);
        observe::throttled(Owner::Limiter(self.name()), up, &outcome);
        outcome
    }

    /// Takes a slot if one is free now. (If one is free, no one is waiting for it.)
    pub fn try_acquire(&self) -> Option<LimiterPermit> {
        let at = Clock::process().now();
        let taken = lock(&self.domain).try_acquire(at);
        self.publish();
        taken.then(|| LimiterPermit {
            limiter: self.clone(),
        })
    }

    /// Waits for a slot, in line with the groups that use this limiter (see the type's docs on
    /// fairness), and takes it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = schedgroup::Limiter::new(1);
    /// let first = limiter.acquire().await;
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let l = limiter.clone();
    /// tokio::spawn(async move { tx.send(l.acquire().await).ok() });
    /// tokio::task::yield_now().await;
    /// assert_eq!(limiter.waiting(), 1);
    /// drop(first);
    /// let _second = rx.await.unwrap();
    /// assert_eq!(limiter.running(), 1);
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future gives up its place in line, or, if a slot was already
    /// granted to it, frees the slot and hands it on.
    pub async fn acquire(&self) -> LimiterPermit {
        let ticket = Arc::new(Ticket::default());
        let at = Clock::process().now();
        let place = lock(&self.domain).acquire(ticket.clone(), at);
        self.publish();
        let Err(place) = place else {
            return LimiterPermit {
                limiter: self.clone(),
            };
        };
        let mut waiting = Waiting {
            limiter: self,
            place,
            claimed: false,
        };
        loop {
            let notified = ticket.notify.notified();
            // Acquire: pairs with the Release in `driver::apply`.
            if ticket.granted.load(Ordering::Acquire) {
                waiting.claimed = true;
                return LimiterPermit {
                    limiter: self.clone(),
                };
            }
            notified.await;
        }
    }

    /// Carries out a transition's effects, and goes on handing out slots a batch at a time
    /// while it stopped at its budget.
    fn carry_out(&self, fx: Effects) {
        apply_limiter(&self.domain, fx);
        self.publish();
    }

    /// Gives a permit's slot back and hands it on.
    fn release(&self) {
        let at = Clock::process().now();
        let fx = lock(&self.domain).release(at);
        self.carry_out(fx);
    }

    /// What the limiter is doing now and did over the last 10 s, 1 min and 5 min: slots taken,
    /// waiters in line, the limit, and per window the peak and time-weighted mean of slots
    /// taken, slots taken and freed. See [`History`].
    #[must_use]
    pub fn history(&self) -> History {
        let history = Self::history_of(&self.domain);
        self.publish();
        history
    }

    pub(crate) fn history_of(domain: &Domain) -> History {
        let at = Clock::process().now();
        lock(domain).history(at)
    }
}

/// An `acquire()` in line; dropping it before it claimed its slot leaves the line, or frees the
/// slot if it was granted meanwhile.
struct Waiting<'a> {
    limiter: &'a Limiter,
    place: Place,
    claimed: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.claimed {
            return;
        }
        let at = Clock::process().now();
        let fx = lock(&self.limiter.domain).abandon(self.place, at);
        if let Some(fx) = fx {
            self.limiter.carry_out(fx);
        }
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Snapshot, then unlock before writing: the formatter is the caller's code and may
        // call back into this pool (issue 9, item 8).
        let (limit, running, waiting) = {
            let pool = lock(&self.domain);
            (pool.limit(), pool.taken(), pool.waiting())
        };
        f.debug_struct("Limiter")
            .field("name", &self.name)
            .field("limit", &limit)
            .field("running", &running)
            .field("waiting", &waiting)
            .finish()
    }
}
