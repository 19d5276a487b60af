//! What a group's clones, task handles, monitor and runners share: the group's place in its
//! pool (a private one, or a limiter's), its notifications, its cancellation watch and its
//! runtime.
//!
//! The protocol itself (queue, caps, line, monitor state, counters) is [`Pool`], behind the
//! pool's one mutex; `crate::ops` and `crate::driver` call its transitions and carry out the
//! effects after unlocking.
//!
//! # Invariants
//!
//! Beyond the pool's own:
//!
//! 1. Once the group's queue has been drained for cancellation, nothing is inserted again: the
//!    cancellation flag is set before the drain, and the pool refuses inserts into a cancelled
//!    member under its lock.
//! 2. Idleness (`pending == 0 && running == 0`) is announced on `idle` by whoever makes it
//!    true, after unlocking. A cancelled task counts as pending until its future is dropped.
//! 3. An awaited task's result reaches its requester after the pool counted the task's end
//!    (so `stats()`, `is_finished()` and `cancel()` agree with it) and before `wait()` can
//!    return: `delivering` is raised before the lock that counts the end and lowered after the
//!    delivery, which then announces on `idle`; `wait()` reads it under the pool's lock, so it
//!    sees any raise made before an end it sees counted.
//!
//! # Lock ordering
//!
//! The pool's mutex is the only lock on a hot path (the cancellation hook's lock is taken only
//! to arm it). While holding it, code never touches the token, spawns, notifies, or polls or
//! drops a user future or a group handle: a user `Drop` may call back into the group, and
//! dropping the last handle to a group locks the pool to leave it. The table of live groups
//! ([`GROUPS`], where task handles find their group) has a lock per shard that is never held
//! with the pool's: a group enters it while being built and leaves it in `Drop`, after leaving
//! its pool and unlocking.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cancel::{self, CancelWatch, Watched};
use crate::clock::Clock;
use crate::directory::{Directory, Seat};
use crate::error::{CancelledBy, WaitError};
use crate::history::History;
use crate::id::TaskId;
use crate::observe::{self, GroupMetrics, LimiterMetrics};
use crate::pool::{Fx, MemberId, Pool, Wake};
use crate::queue::{Drained, Key};
use crate::stats::Stats;
use crate::task::{BoxTask, deliver_unstarted, end_unstarted, wake_catching};

/// A pool as groups and limiters share it.
pub(crate) type Domain = Mutex<Pool<BoxTask, Weak<Shared>, Arc<Ticket>>>;

/// The effects of a transition of a [`Domain`].
pub(crate) type Effects = Fx<BoxTask, Weak<Shared>, Arc<Ticket>>;

/// Locks a domain. No user code runs under the lock, so a poisoned lock means a bug of ours
/// panicked mid-update; the structures are still sound.
#[inline]
pub(crate) fn lock(domain: &Domain) -> MutexGuard<'_, Pool<BoxTask, Weak<Shared>, Arc<Ticket>>> {
    domain.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An `acquire()` caller's place in line, as the pool hands its grant out.
#[derive(Debug, Default)]
pub(crate) struct Ticket {
    /// Set (with `Release`) when the pool granted a slot; read with `Acquire`.
    pub(crate) granted: AtomicBool,
    /// Wakes the waiting `acquire()`.
    pub(crate) notify: Notify,
}

/// Every live group, for its task handles (which hold a [`Seat`], not a reference count).
pub(crate) static GROUPS: Directory<Shared> = Directory::new();

/// One group's shared state. Reached through `Arc`s held by `Group` clones, task handles, the
/// monitor, the runners, and effects in flight.
pub(crate) struct Shared {
    /// The pool the group is a member of: its own, or its limiter's.
    pub(crate) domain: Arc<Domain>,
    /// The group's index in `domain`.
    pub(crate) id: MemberId,
    /// Where its task handles find it in [`GROUPS`].
    pub(crate) seat: Seat,
    /// Whether its queue keeps a reserve (`Builder::reserve`): only then may a schedule have
    /// to make a future type's lane outside the lock.
    pub(crate) reserves: bool,
    /// Whether `domain` is a limiter's (its history wants timestamps).
    limited: bool,
    /// Wakes the monitor. `notify_one` stores a permit when the monitor is not waiting yet.
    pub(crate) monitor_wake: Notify,
    /// The pool's count of aborts of this group's running tasks, published under the pool's
    /// lock by whoever asks for one (see `Pool::abort`); runners read it on every poll.
    pub(crate) aborts: AtomicU64,
    /// Results of ended tasks counted by the pool and not yet delivered to their requesters
    /// (`Task::deliver`): raised before the lock that counts the end, lowered after the
    /// delivery. The group is not idle for `wait()` while it is above zero (invariant 3).
    delivering: AtomicUsize,
    /// Wakes `wait()` callers when the group becomes idle.
    idle: Notify,
    /// The group's own token (a child of the caller's, if one was given) and its lock-free
    /// mirror.
    pub(crate) cancel: CancelWatch,
    /// Deadline keys.
    pub(crate) clock: Clock,
    /// Where the monitor and runners are spawned.
    pub(crate) runtime: Handle,
    /// For `Debug`, a registry and reports.
    pub(crate) name: Option<Box<str>>,
    /// The `metrics` feature's handles (nothing without it).
    pub(crate) metrics: GroupMetrics,
    /// The limiter's, if the group uses one.
    limiter_metrics: Option<Arc<LimiterMetrics>>,
}

impl Shared {
    /// Creates the group as a member of `domain` (a new private pool if `None`), with room for
    /// `reserve` pending tasks of each future type, and starts watching `token`.
    pub(crate) fn new(
        token: CancellationToken,
        clock: Clock,
        runtime: Handle,
        limit: usize,
        name: Option<Box<str>>,
        domain: Option<(Arc<Domain>, Arc<LimiterMetrics>)>,
        reserve: usize,
    ) -> Arc<Self> {
        let limited = domain.is_some();
        let (domain, limiter_metrics) = domain.unzip();
        let domain = domain.unwrap_or_else(|| Arc::new(Mutex::new(Pool::new(usize::MAX, false))));
        let shared = Arc::new_cyclic(|me| {
            let id = lock(&domain).join(me.clone(), limit, reserve);
            Self {
                domain,
                id,
                seat: GROUPS.enter(me.clone()),
                reserves: reserve > 0,
                limited,
                monitor_wake: Notify::new(),
                aborts: AtomicU64::new(0),
                delivering: AtomicUsize::new(0),
                idle: Notify::new(),
                cancel: CancelWatch::new(token),
                clock,
                runtime,
                metrics: GroupMetrics::new(name.as_deref()),
                name,
                limiter_metrics,
            }
        });
        cancel::watch(&shared);
        shared
    }

    /// The group's tag, as its pool's `Ctx::tag` gives it: the address of this state.
    pub(crate) fn tag(&self) -> usize {
        std::ptr::from_ref(self).cast::<()>() as usize
    }

    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, Pool<BoxTask, Weak<Shared>, Arc<Ticket>>> {
        lock(&self.domain)
    }

    /// A timestamp for the limiter's history; a private pool keeps none, so it reads no clock.
    #[inline]
    pub(crate) fn at(&self) -> u64 {
        if self.limited { self.clock.now() } else { 0 }
    }

    /// Reports the group's counters and gauges, and its limiter's, to the `metrics` feature's
    /// recorder (nothing without it). Call after a change, with no lock held.
    #[inline]
    pub(crate) fn publish(&self) {
        if !GroupMetrics::ON {
            return;
        }
        let now = self.clock.now();
        let (group, limiter) = {
            let mut pool = self.lock();
            let group = self.metrics.store(pool.reading(self.id, now));
            let limiter = self
                .limiter_metrics
                .as_ref()
                .filter(|limiter| limiter.store(pool.limiter_reading()));
            (group, limiter)
        };
        if group {
            self.metrics.report();
        }
        if let Some(limiter) = limiter {
            limiter.report();
        }
    }

    /// Wakes the monitor if `wake` says so; `Spawn` is the driver's.
    pub(crate) fn notify_monitor(&self, wake: Wake) {
        if wake == Wake::Notify {
            self.monitor_wake.notify_one();
        }
    }

    /// Wakes `wait()` callers if `idle`; a panicking waker is caught.
    pub(crate) fn announce_if_idle(&self, idle: bool) {
        if idle {
            wake_catching(|| self.idle.notify_waiters());
        }
    }

    /// Cancels the group. `true` if it was not cancelled before this call.
    pub(crate) fn cancel(&self) -> bool {
        self.cancel_and_drain(false)
    }

    /// The one cancellation sequence: the flag first (invariant 1), then the drain, then the
    /// token (which tells everyone else), then the drained futures are dropped outside the
    /// lock. `monitor_exits`: the caller is the monitor, exiting or dropped by the runtime, so
    /// it is marked stopped in the drain's critical section; otherwise it is woken so that it
    /// can exit. Returns `true` if this call set the flag.
    ///
    /// Cancelling frees no slot by itself: running tasks hold theirs until their runners see
    /// the flag and end them.
    pub(crate) fn cancel_and_drain(&self, monitor_exits: bool) -> bool {
        let first = self.cancel.mark();
        let (tasks, wake) = self.lock().cancel_group(self.id, monitor_exits);
        // The token wakes users' `cancelled()` futures: their wakers must not stop the rest.
        wake_catching(|| self.cancel.token().cancel());
        self.notify_monitor(wake);
        self.drop_cancelled(tasks);
        // Reported once the cancellation is done (a subscriber cannot stop it halfway).
        if first {
            observe::group_cancelled(self.name.as_deref());
        }
        first
    }

    /// Cancels the group if its token was cancelled without the group hearing of it (see
    /// [`CancelWatch::missed`]). Returns whether the group is cancelled.
    pub(crate) fn catch_up_on_token(&self) -> bool {
        if self.cancel.missed() {
            self.cancel_and_drain(false);
        }
        self.cancel.is_cancelled()
    }

    /// Drops futures drained for cancellation and moves them from pending to cancelled; then
    /// tells those awaited.
    fn drop_cancelled(&self, tasks: Drained<BoxTask>) {
        let count = tasks.len() as u64;
        let mut awaited = Vec::new();
        for (id, task) in tasks {
            if let Some(task) = end_unstarted(id, task, CancelledBy::Group) {
                awaited.push((id, task));
            }
        }
        if count > 0 {
            self.settle_cancelled(count, awaited);
        }
    }

    /// `count` cancelled tasks' futures are gone: moves them from pending to cancelled, then
    /// tells whoever awaits those in `ended` (each ended by `task::end_unstarted`), and only
    /// then announces the group idle if it is (invariant 3).
    pub(crate) fn settle_cancelled<I>(&self, count: u64, ended: I)
    where
        I: IntoIterator<Item = (u64, BoxTask)>,
        I::IntoIter: ExactSizeIterator,
    {
        // An `Option` for one task: collecting it into a `Vec` would allocate even for `None`.
        let ended = ended.into_iter();
        let delivering = ended.len();
        if delivering > 0 {
            self.delivering.fetch_add(delivering, Ordering::AcqRel);
        }
        let idle = self.lock().settle_cancelled(self.id, count);
        for (id, task) in ended {
            deliver_unstarted(id, task);
        }
        self.publish();
        if delivering > 0 {
            self.delivered(delivering);
        } else {
            self.announce_if_idle(idle);
        }
    }

    /// A result is about to be counted and then delivered (invariant 3).
    pub(crate) fn delivering(&self) {
        self.delivering.fetch_add(1, Ordering::AcqRel);
    }

    /// `n` results were delivered: the group may have become idle for `wait()`, which looks
    /// again.
    pub(crate) fn delivered(&self, n: usize) {
        if self.delivering.fetch_sub(n, Ordering::AcqRel) == n {
            wake_catching(|| self.idle.notify_waiters());
        }
    }

    pub(crate) fn is_pending(&self, key: Key) -> bool {
        self.lock().is_pending(self.id, key)
    }

    pub(crate) fn is_finished(&self, key: Key) -> bool {
        self.lock().is_finished(self.id, key)
    }

    /// The pending task's deadline key.
    pub(crate) fn deadline(&self, key: Key) -> Option<u64> {
        self.lock().deadline(self.id, key)
    }

    pub(crate) fn limit(&self) -> usize {
        self.lock().group_limit(self.id)
    }

    pub(crate) fn history(&self) -> History {
        let now = self.clock.now();
        let history = self.lock().group_history(self.id, now);
        // Tasks that fell due with nothing else happening show in the waiting gauge now.
        self.publish();
        history
    }

    /// The earliest deadline among the pending tasks, as a deadline key.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.lock().next_deadline(self.id)
    }

    pub(crate) fn stats(&self) -> Stats {
        self.lock().stats(self.id)
    }

    /// `Some(result)` once the group is idle; `None` while tasks remain.
    pub(crate) fn poll_idle(&self) -> Option<Result<(), WaitError>> {
        self.catch_up_on_token();
        let (panicked, ids) = {
            let mut pool = self.lock();
            // Under the lock: see invariant 3.
            if self.delivering.load(Ordering::Acquire) > 0 {
                return None;
            }
            pool.idle_report(self.id)?
        };
        let cancelled = self.cancel.is_cancelled();
        let ids = ids.into_iter().map(TaskId::new).collect();
        Some(WaitError::new(cancelled, panicked, ids).map_or(Ok(()), Err))
    }

    pub(crate) fn idle_notify(&self) -> &Notify {
        &self.idle
    }
}

impl Watched for Shared {
    fn watch(&self) -> &CancelWatch {
        &self.cancel
    }

    /// The token was cancelled (by a parent, or through `cancellation_token()`): the monitor
    /// drains the queue.
    fn on_cancelled(&self) {
        self.monitor_wake.notify_one();
    }
}

impl Drop for Shared {
    /// The last handle is gone: the group leaves its pool. It is idle by then (its monitor and
    /// runners held handles), so it holds no slot and waits in no line.
    fn drop(&mut self) {
        let left = self.lock().leave(self.id);
        drop(left);
        // Its entry in the table of groups, a `Weak`, is dropped after the shard's lock.
        drop(GROUPS.leave(self.seat));
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Snapshot, then unlock before writing: the formatter is the caller's code and may
        // call back into this pool (issue 9, item 8).
        let (stats, limit) = {
            let mut pool = self.lock();
            (pool.stats(self.id), pool.group_limit(self.id))
        };
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("pending", &stats.pending)
            .field("running", &stats.running)
            .field("max_concurrent", &(limit != usize::MAX).then_some(limit))
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}
