//! [`Limiter`]: a cap on running tasks shared by several groups, and by plain work.
//!
//! # Invariants
//!
//! Guarded by `Inner::state`:
//!
//! 1. `running` counts slots taken: by a group's running task, by a [`LimiterPermit`], or
//!    granted to a waiter and on their way to it.
//! 2. `running < limit` implies no waiter: a slot that frees is granted to the earliest waiter
//!    in the same critical section.
//! 3. A group has at most one waiter entry, keyed by its earliest due task's deadline and the
//!    order in which it started waiting; `groups` maps the group to that key.
//!
//! # Lock ordering
//!
//! A group may lock the limiter while holding its own lock (group → limiter), never the other
//! way. Grants are therefore delivered after the limiter's lock is released, to a group whose
//! lock the deliverer does not hold: [`Limiter::release`] is never called under a group's lock.
//! A grant a group cannot use (nothing due any more, its own cap full, cancelled, dropped) is
//! handed straight back and goes to the next waiter.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::history::{Activity, History};
use crate::shared::Shared;
use crate::throttle::{Throttle, ThrottleOutcome, ThrottleState};
use tokio::time::Instant;

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
/// deadline, and [`acquire`](Limiter::acquire) callers, whose deadline is the moment they called.
/// Equal deadlines go to whoever started waiting first. A group that is at its own cap does not
/// wait on the limiter (it could not use a slot), so it holds no slot back from others. A
/// runner whose task ends keeps its slot for its own group's next due task only when no one in
/// line comes before that task.
///
/// What this guarantees: a waiting task is overtaken only by tasks with an earlier deadline
/// (or an equal one that was waiting first). So no group starves another as long as deadlines
/// are not set in the past: a task that is due waits at most for the tasks that were due
/// before it and the slots to work through them. (A stream of tasks scheduled with deadlines
/// in the past, earlier than a waiting task's, does go first, by design.)
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
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
}

struct State {
    limit: usize,
    /// How `throttle_down`/`throttle_up` move `limit`.
    throttle: ThrottleState,
    /// Slots taken and freed, for `history()`.
    activity: Activity,
    running: usize,
    /// Waiters by (deadline key, order of waiting).
    waiters: BTreeMap<(u64, u64), Waiter>,
    /// Each waiting group's key in `waiters`, by group id.
    groups: HashMap<u64, (u64, u64)>,
    next_seq: u64,
}

enum Waiter {
    Group { id: u64, shared: Weak<Shared> },
    Acquire(Arc<Ticket>),
}

/// An `acquire()` caller's place in line.
struct Ticket {
    granted: AtomicBool,
    notify: Notify,
}

/// A slot of a [`Limiter`], taken by [`Limiter::acquire`] or [`Limiter::try_acquire`];
/// dropping it frees the slot.
#[must_use = "the slot is freed as soon as the permit is dropped"]
pub struct LimiterPermit {
    limiter: Limiter,
}

impl Drop for LimiterPermit {
    fn drop(&mut self) {
        self.limiter.release(1);
    }
}

impl fmt::Debug for LimiterPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterPermit").finish_non_exhaustive()
    }
}

/// What to do after unlocking: deliver these grants.
type Grants = Vec<Waiter>;

impl State {
    fn remove_group(&mut self, id: u64) {
        if let Some(key) = self.groups.remove(&id) {
            self.waiters.remove(&key);
        }
    }

    /// Takes a slot (the caller checked there is one).
    fn take(&mut self) {
        self.running += 1;
        self.activity.start(Clock::process().now());
    }

    /// Invariant 2: hands free slots to the earliest waiters.
    fn grant(&mut self) -> Grants {
        let mut grants = Vec::new();
        while self.running < self.limit {
            let Some((_, waiter)) = self.waiters.pop_first() else {
                break;
            };
            if let Waiter::Group { id, .. } = &waiter {
                self.groups.remove(id);
            }
            self.take();
            grants.push(waiter);
        }
        grants
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
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    limit,
                    throttle: ThrottleState::new(Throttle::default(), limit),
                    activity: Activity::new(),
                    running: 0,
                    waiters: BTreeMap::new(),
                    groups: HashMap::new(),
                    next_seq: 0,
                }),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under this lock.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The limit.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Slots taken now: running tasks of every group that uses the limiter, and permits.
    #[must_use]
    pub fn running(&self) -> usize {
        self.lock().running
    }

    /// Groups and `acquire()` callers waiting for a slot now (a group counts once, however
    /// many of its tasks are due).
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.lock().waiters.len()
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
        let mut state = self.lock();
        let old = std::mem::replace(&mut state.limit, limit);
        let grants = state.grant();
        drop(state);
        self.deliver(grants);
        old != limit
    }

    /// Replaces the throttle [`throttle_down`](Limiter::throttle_down) and
    /// [`throttle_up`](Limiter::throttle_up) use (by default [`Throttle::default`], with the
    /// initial limit as the ceiling). A `ceiling` of `None` means the limit now. The hold
    /// starts afresh.
    pub fn set_throttle(&self, throttle: Throttle) {
        let mut state = self.lock();
        state.throttle = ThrottleState::new(throttle, state.limit);
    }

    /// Steps the limit down, as the throttle allows: for a controller that sees the machine
    /// overloaded. Running tasks are not aborted. See [`Throttle`].
    pub fn throttle_down(&self) -> ThrottleOutcome {
        self.throttle(ThrottleState::down)
    }

    /// Steps the limit up, as the throttle allows; waiters get the new slots at once. See
    /// [`Throttle`].
    pub fn throttle_up(&self) -> ThrottleOutcome {
        self.throttle(ThrottleState::up)
    }

    fn throttle(
        &self,
        step: fn(&mut ThrottleState, usize, Instant) -> ThrottleOutcome,
    ) -> ThrottleOutcome {
        let now = Instant::now();
        let mut state = self.lock();
        let limit = state.limit;
        let outcome = step(&mut state.throttle, limit, now);
        let grants = match outcome {
            ThrottleOutcome::Applied { to, .. } => {
                state.limit = to;
                state.grant()
            }
            _ => Vec::new(),
        };
        drop(state);
        self.deliver(grants);
        outcome
    }

    /// Takes a slot if one is free now.
    pub fn try_acquire(&self) -> Option<LimiterPermit> {
        let mut state = self.lock();
        (state.running < state.limit).then(|| {
            state.take();
            LimiterPermit {
                limiter: self.clone(),
            }
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
    /// granted to it, frees the slot.
    pub async fn acquire(&self) -> LimiterPermit {
        let ticket = {
            let mut state = self.lock();
            if state.running < state.limit {
                state.take();
                return LimiterPermit {
                    limiter: self.clone(),
                };
            }
            let ticket = Arc::new(Ticket {
                granted: AtomicBool::new(false),
                notify: Notify::new(),
            });
            let key = (Clock::process().now(), state.next_seq);
            state.next_seq += 1;
            state.waiters.insert(key, Waiter::Acquire(ticket.clone()));
            (ticket, key)
        };
        let mut waiting = WaitingTicket {
            limiter: self,
            ticket: ticket.0,
            key: ticket.1,
            done: false,
        };
        loop {
            let notified = waiting.ticket.notify.notified();
            // Acquire: pairs with the Release in `deliver`.
            if waiting.ticket.granted.load(Ordering::Acquire) {
                waiting.done = true;
                return LimiterPermit {
                    limiter: self.clone(),
                };
            }
            notified.await;
        }
    }

    // ----- the groups' side -----

    /// A group with a due task at `deadline` asks for a slot: takes one if free, else waits in
    /// line (replacing its earlier place, which keeps its order if the deadline is the same).
    /// Called under the group's lock (group → limiter).
    pub(crate) fn take_or_wait(&self, id: u64, deadline: u64, shared: &Arc<Shared>) -> bool {
        let mut state = self.lock();
        if state.running < state.limit {
            state.take();
            state.remove_group(id);
            return true;
        }
        match state.groups.get(&id) {
            Some(&(old, _)) if old == deadline => {}
            _ => {
                state.remove_group(id);
                let key = (deadline, state.next_seq);
                state.next_seq += 1;
                state.groups.insert(id, key);
                state.waiters.insert(
                    key,
                    Waiter::Group {
                        id,
                        shared: Arc::downgrade(shared),
                    },
                );
            }
        }
        false
    }

    /// A group's runner finished a task and its group's next task is due at `deadline`: keeps
    /// the runner's slot for it if no one in line comes first (an earlier deadline, or an equal
    /// one that has been waiting). Called under the group's lock (group → limiter).
    pub(crate) fn keep_for(&self, id: u64, deadline: u64) -> bool {
        let mut state = self.lock();
        // `running` includes this runner's slot: keeping it must not exceed a lowered limit.
        let keep = state.running <= state.limit
            && match state.waiters.first_key_value() {
                None => true,
                Some((_, Waiter::Group { id: first, .. })) if *first == id => true,
                Some((&(first, _), _)) => first > deadline,
            };
        if keep {
            state.remove_group(id);
            let now = Clock::process().now();
            state.activity.finish(now);
            state.activity.start(now);
        }
        keep
    }

    /// Frees `count` slots and delivers them to waiters. Never called under a group's lock.
    pub(crate) fn release(&self, count: usize) {
        let mut count = count;
        // The first round frees slots that were used; later rounds hand back grants nobody
        // could use, which history should not count as tasks.
        let mut used = true;
        while count > 0 {
            let now = Clock::process().now();
            let mut state = self.lock();
            state.running = state
                .running
                .checked_sub(count)
                .expect("released more limiter slots than were taken");
            for _ in 0..count {
                if used {
                    state.activity.finish(now);
                } else {
                    state.activity.unstart(now);
                }
            }
            let grants = state.grant();
            drop(state);
            count = self.deliver(grants);
            used = false;
        }
    }

    /// What the limiter is doing now and did over the last 10 s, 1 min and 5 min: slots taken,
    /// waiters in line, the limit, and per window the peak and time-weighted mean of slots
    /// taken, slots taken and freed. See [`History`].
    #[must_use]
    pub fn history(&self) -> History {
        let now = Clock::process().now();
        let mut state = self.lock();
        History {
            running: state.running,
            waiting: state.waiters.len(),
            limit: state.limit,
            windows: state.activity.windows(now),
        }
    }

    /// Hands granted slots to their waiters; returns how many were declined (to release again).
    fn deliver(&self, grants: Grants) -> usize {
        let mut declined = 0;
        for waiter in grants {
            match waiter {
                Waiter::Acquire(ticket) => {
                    ticket.granted.store(true, Ordering::Release);
                    ticket.notify.notify_one();
                }
                Waiter::Group { shared, .. } => {
                    let used = shared.upgrade().is_some_and(|shared| shared.on_grant());
                    declined += usize::from(!used);
                }
            }
        }
        declined
    }
}

/// An `acquire()` in line; dropping it before it got its slot leaves the line, or frees the
/// slot if it was granted meanwhile.
struct WaitingTicket<'a> {
    limiter: &'a Limiter,
    ticket: Arc<Ticket>,
    /// Its key in `waiters` while in line.
    key: (u64, u64),
    done: bool,
}

impl Drop for WaitingTicket<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.limiter.lock();
        // Keys are never reused, so the entry under our key, if any, is ours.
        if state.waiters.remove(&self.key).is_none() {
            // Not in line any more: it was granted a slot, which nobody will use.
            drop(state);
            self.limiter.release(1);
        }
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Limiter")
            .field("limit", &state.limit)
            .field("running", &state.running)
            .field("waiting", &state.waiters.len())
            .finish()
    }
}
