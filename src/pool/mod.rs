//! The slot protocol: who may start a task, who holds a slot, and who must be woken. One plain
//! data structure for a group's own cap and for a [`Limiter`](crate::Limiter) shared by many
//! groups, with no runtime, no lock and no clock.
//!
//! A *pool* hands out `limit` slots. Its *members* are groups; each has a deadline queue, its
//! own cap (`k`) and a monitor. A group without a limiter is the only member of a private pool
//! whose limit is `usize::MAX`; a [`Limiter`](crate::Limiter) is a pool shared by the groups
//! that join it, and by `acquire()` callers, whose slots the pool counts as `held`.
//!
//! Callers keep a pool behind one mutex, feed it events (a task was scheduled, fell due,
//! ended; a limit changed; a group was cancelled or left; a permit was dropped), and get back
//! [`Effects`]: tasks to run, monitors to wake or spawn, `acquire()` callers to hand a slot,
//! and whether the group became idle. They carry the effects out after unlocking.
//!
//! # Time
//!
//! The pool reads no clock. Each member has a `frontier`: the latest time its own monitor or
//! runners read on the group's own runtime. A task is *due* when its deadline is at or before
//! its member's frontier, so a task never starts early on its own group's clock, whoever's
//! event hands it a slot. Other timestamps (`at`) only feed the history.
//!
//! # Invariants
//!
//! These hold whenever a transition has returned (checked by `Pool::check` in the tests):
//!
//! 1. Every slot is accounted for: `taken == Σ member.running + held`, where `held` counts
//!    permits and slots granted to `acquire()` callers that have not claimed them yet.
//! 2. Work conservation: `taken < limit` implies the line is empty, unless a transition stopped
//!    handing out slots at its budget. Then, in a limiter's pool, its caller continues
//!    (`Effects::more`: it calls [`Pool::resume`] until that is false, without waiting for
//!    anything in between), whoever the caller is: never another group's monitor, which may
//!    be on a runtime that is not running. In a group's private pool, the group is not in
//!    line and its own monitor continues (it steps again, or is woken).
//! 3. The line is exact: a member is in line if and only if it *wants* a slot (not cancelled,
//!    `running < k`, and its earliest task is due), under the key `(deadline of its earliest
//!    task, the order in which it joined the line)`. So a slot always goes to the earliest
//!    current due head, never a stale one, ties to whoever waited first. An `acquire()` caller
//!    waits under `(the time it called, its order)`.
//! 4. A member whose queue is not empty has a monitor (`monitor != Stopped`), and if its
//!    earliest task is not due yet the monitor is awake or parked with a timer at or before
//!    that task's deadline. (A due task needs no timer: it is in line, or its group is at its
//!    own cap and a runner's end serves it.)
//! 5. Counters add up: `scheduled == pending + running + completed + cancelled + panicked`.
//! 6. A member's `running` map holds exactly the ids of its running tasks
//!    (`running.len() == cap.running()`).
//!
//! A task starts only when its member has room (`running < k`) and the pool has a free slot;
//! lowering either aborts nothing.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::num::NonZeroU64;

use tokio::time::Instant;

use crate::history::{Activity, History};
use crate::limit::Cap;
use crate::observe::{GroupReading, LimiterReading};
use crate::queue::{DeadlineQueue, Drained, Key, Pending, Prepared};
use crate::stats::{Counters, Stats};
use crate::task::{Handed, Outcome};
use crate::throttle::{Throttle, ThrottleOutcome, ThrottleState};

mod adapt;
#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

/// A member's index in its pool.
pub(crate) type MemberId = usize;

/// A place in line: (deadline key, the order in which the waiter joined the line).
pub(crate) type Place = (u64, u64);

/// `Monitor::Parked::until` when the monitor has no timer set.
pub(crate) const NO_TIMER: u64 = u64::MAX;

/// How many tasks a monitor's step or a change of limit starts under one lock: bounds how long
/// the lock is held, and how long a burst holds a worker thread before the monitor yields.
pub(crate) const BUDGET: usize = 256;

/// How many tasks an event that frees or adds at most one unit of work starts: one. A slot
/// freed by a runner goes to one task, so runners keep running tasks back to back; if more
/// could start (a burst is under way), the rest is started in batches: by the group's monitor
/// in a private pool, by the caller in a limiter's (invariant 2).
const ONE: usize = 1;

/// What a member's monitor task is doing, as far as the protocol needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Monitor {
    /// No monitor task exists; the next insert spawns one.
    Stopped,
    /// The monitor is awake, or has been woken, and will step again before it parks.
    Active,
    /// The monitor is parked until woken, or until the deadline key `until`.
    Parked { until: u64 },
}

/// What to do for a member's monitor after unlocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Wake {
    Nothing,
    /// `notify_one` it.
    Notify,
    /// Spawn it.
    Spawn,
}

/// What a monitor does after its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Carry out the effects, then step again at once: a burst in a private pool stopped at
    /// the budget (in a limiter's pool the caller continues through `Effects::more`).
    Again,
    /// Carry out the effects, then park until woken or until the deadline key, if any.
    Park(Option<u64>),
    /// The queue is empty (or the group is cancelled): the monitor ends.
    Exit,
}

/// The caller's tasks to start: usually one (a runner's next task), which needs no
/// allocation.
#[derive(Debug)]
pub(crate) struct Starts<T> {
    first: Option<T>,
    rest: Vec<T>,
}

impl<T> Default for Starts<T> {
    fn default() -> Self {
        Self {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<T> Starts<T> {
    fn push(&mut self, task: T) {
        if self.first.is_none() {
            self.first = Some(task);
        } else {
            self.rest.push(task);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.first.iter().chain(&self.rest)
    }

    /// The first task, for a runner to run itself.
    pub(crate) fn take_first(&mut self) -> Option<T> {
        let first = self.first.take();
        if !self.rest.is_empty() {
            self.first = Some(self.rest.remove(0));
        }
        first
    }

    /// Takes every task, in start order.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.first.take().into_iter().chain(self.rest.drain(..))
    }
}

/// A task taken out of its queue to run, with its id in the group.
#[derive(Debug)]
pub(crate) struct Started<T> {
    pub(crate) id: u64,
    pub(crate) task: T,
    /// Its deadline key.
    pub(crate) deadline: u64,
    /// When it was taken from the queue, on the group's own clock (a key), if the transition
    /// had just read that clock (its monitor's step, its runner's end); otherwise `None`, and
    /// its runner reads the clock when it begins and reports it ([`Pool::late_start`]): a
    /// frontier may be stale, and another group's clock may be a different one. (Key 0, 292
    /// years before the process's base, is no time a clock reads: a `NonZeroU64` keeps this
    /// at 8 bytes, and a `Started` small enough for the effects that carry it to move
    /// without a `memcpy` call.)
    pub(crate) at: Option<NonZeroU64>,
    /// The group's count of aborts asked for when it started: a runner that sees the count
    /// move looks up whether its task is the one (see [`Pool::abort`]).
    pub(crate) aborts: u64,
}

/// A task that ran: its id, when it began ([`Started::at`]; `None` if it never did), and
/// whether its output was classified as overload (for an adaptive limit).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ran {
    pub(crate) id: u64,
    pub(crate) at: Option<u64>,
    pub(crate) overload: bool,
}

/// Hashes task ids, which are distinct and mostly consecutive: a multiply spreads them over
/// the table's buckets and control bytes without SipHash's cost on every start and end.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// How many running tasks' room a member's `running` table keeps when few run: 14 fit in a
/// table of 16 buckets, under 300 bytes.
const RUNNING_KEEP: usize = 14;

/// Running tasks by id (invariant 6).
type Running = HashMap<u64, Run, BuildHasherDefault<IdHasher>>;

/// A running task, as its member keeps it.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// The generations of its group's cap and of the pool's limit it started under: an
    /// adaptive controller hears of a task's end, or its overload, only if it tells of the
    /// limit now (see `adapt`). They wrap: a task that runs through 2^32 changes of its
    /// limit would be taken for one of the last.
    k_gen: u32,
    limit_gen: u32,
    /// Its handle asked it to stop.
    aborted: bool,
}

/// An effect on a member other than the caller.
#[derive(Debug)]
pub(crate) enum Action<T> {
    /// Run this task: it already holds a slot of its member and of the pool.
    Start(Started<T>),
    /// Wake or spawn the member's monitor.
    Wake(Wake),
}

/// What the caller must carry out after unlocking. "Own" effects are for the member the
/// transition was called for (`caller`), which the caller can reach without a handle.
#[derive(Debug)]
#[must_use]
pub(crate) struct Effects<T, G, A> {
    /// The caller's monitor.
    pub(crate) wake: Wake,
    /// Tasks of the caller's group to run, each holding its slots.
    pub(crate) starts: Starts<Started<T>>,
    /// The caller's group became idle: announce it.
    pub(crate) idle: bool,
    /// Effects on other members, with their handles.
    pub(crate) others: Vec<(G, Action<T>)>,
    /// `acquire()` callers handed a slot, to be told.
    pub(crate) grants: Vec<A>,
    /// Handing out a limiter's slots stopped at the budget with slots free and work in line:
    /// whoever called the transition unlocks, carries out these effects, and calls
    /// [`Pool::resume`], again while it says `more` (invariant 2). Never set by a private
    /// pool, whose monitor continues instead.
    pub(crate) more: bool,
    /// An adaptive limit changed, and the pool keeps a report of it: the caller takes the
    /// reports ([`Pool::take_reports`]) after carrying out the effects.
    pub(crate) adapted: bool,
}

impl<T, G, A> Effects<T, G, A> {
    fn new() -> Self {
        Self {
            wake: Wake::Nothing,
            starts: Starts::default(),
            idle: false,
            others: Vec::new(),
            grants: Vec::new(),
            more: false,
            adapted: false,
        }
    }

    /// Whether there is nothing to do.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.wake == Wake::Nothing
            && self.starts.is_empty()
            && !self.idle
            && self.others.is_empty()
            && self.grants.is_empty()
            && !self.more
    }
}

/// How effects reach a member: the pool keeps a weak handle, and hands out a strong one with
/// each effect, taken under the lock, so the group cannot go away before the effect is carried
/// out.
pub(crate) trait Ctx {
    type Strong;
    fn strong(&self) -> Option<Self::Strong>;
    /// Who the member is, as a number never 0: how a task running in it names its group to
    /// an overload signal (`crate::id`).
    fn tag(&self) -> usize;
}

impl<S> Ctx for std::sync::Weak<S> {
    type Strong = std::sync::Arc<S>;
    fn strong(&self) -> Option<Self::Strong> {
        self.upgrade()
    }
    fn tag(&self) -> usize {
        // The address of the shared state: the same for every handle to it, never 0.
        self.as_ptr().cast::<()>() as usize
    }
}

/// The effects of a pool whose members are reached through `G`.
pub(crate) type Fx<T, G, A> = Effects<T, <G as Ctx>::Strong, A>;

/// Effects where there are often none: `None` costs the hot paths (a schedule or reschedule
/// for later, a cancel) nothing to build, move or carry out.
pub(crate) type MaybeFx<T, G, A> = Option<Fx<T, G, A>>;

/// What [`Pool::schedule`] returns: the task's key and the effects, or, if the group is
/// cancelled, a key that names nothing and the task back.
pub(crate) type Scheduled<V, T, G, A> = Result<(Key, MaybeFx<T, G, A>), (Key, V)>;

/// Who waits in line.
#[derive(Debug)]
enum Waiter<A> {
    Member(MemberId),
    Acquire(A),
}

/// One group's part of the protocol.
#[derive(Debug)]
struct Member<T, G> {
    /// How effects reach the group (a weak handle: the pool never keeps a group alive).
    ctx: G,
    /// Pending tasks by deadline.
    queue: DeadlineQueue<T>,
    /// The group's own cap (`k`) and its running tasks.
    cap: Cap,
    /// The ids of its running tasks, with whether each was asked to stop (invariant 6).
    running: Running,
    /// How many aborts of running tasks were asked for, ever.
    aborts: u64,
    /// The latest time the group's own runtime was seen at: tasks due by then may start.
    frontier: u64,
    /// All counters but `running`.
    counters: Counters,
    monitor: Monitor,
    cancelled: bool,
    /// Where it waits in line, if it does (invariant 3).
    place: Option<Place>,
    /// How `throttle_down`/`throttle_up` move the cap.
    throttle: ThrottleState,
    /// Starts and ends, for `history()`.
    activity: Activity,
    /// The controller of its own cap, if it adapts.
    adaptive: Option<Box<adapt::Adapter>>,
    /// When its limiter's limit last changed, on its own clock (see `Pool::limiter_changed`):
    /// for the hold, and for a signal from outside any task.
    limiter_epoch: u64,
    /// Bumped whenever its cap changes (see [`Run::k_gen`]).
    k_gen: u32,
}

impl<T: 'static, G> Member<T, G> {
    /// The deadline of the earliest task if the member wants a slot for it now (invariant 3).
    fn wants(&mut self) -> Option<u64> {
        if self.cancelled || !self.cap.has_room() {
            return None;
        }
        // Nothing due before the bound: no need to clear stale entries to find the head.
        if self.queue.peek_bound()? > self.frontier {
            return None;
        }
        self.queue.peek_deadline().filter(|&d| d <= self.frontier)
    }

    /// Whether a task just put at `deadline` changes nothing: the group waits in no line (so
    /// it wanted no slot, and a task that is not due does not make it want one), and its
    /// monitor is awake or has a timer no later than `deadline`. The common case of a schedule
    /// or a reschedule for later, settled without serving or dispatching.
    #[inline]
    fn is_quiet_after(&self, deadline: u64) -> bool {
        self.place.is_none()
            && deadline > self.frontier
            && match self.monitor {
                Monitor::Active => true,
                Monitor::Parked { until } => until <= deadline,
                Monitor::Stopped => false,
            }
    }

    /// Whether moving a pending task to `deadline` changes nothing. Unlike an insert, a move
    /// can take the head away from under the monitor's timer (or from being due, exposing a
    /// later head that needs a timer), so the timer is checked against the head after the
    /// move: the group waits in no line, the task moved to a time not due yet, and the
    /// monitor is awake, or the head is still due (it was before: a move to later cannot make
    /// one), or the timer is at or before the head.
    fn is_quiet_after_move(&mut self, deadline: u64) -> bool {
        if self.place.is_some() || deadline <= self.frontier {
            return false;
        }
        match self.monitor {
            Monitor::Active => true,
            Monitor::Stopped => false,
            Monitor::Parked { until } => match self.queue.peek_deadline() {
                Some(head) => head <= self.frontier || until <= head,
                None => false,
            },
        }
    }

    fn is_idle(&self) -> bool {
        self.counters.pending == 0 && self.cap.running() == 0
    }

    /// Sets its cap, starting a new generation of it. Returns the old cap.
    fn set_cap(&mut self, k: usize) -> usize {
        self.k_gen = self.k_gen.wrapping_add(1);
        self.cap.set_limit(k)
    }

    /// Invariant 4: what the monitor needs now that the queue may have changed.
    fn monitor_wake(&mut self) -> Wake {
        match self.monitor {
            Monitor::Parked { .. } if self.queue.is_empty() => {
                // Let it exit rather than sleep on.
                self.monitor = Monitor::Active;
                Wake::Notify
            }
            Monitor::Stopped if !self.queue.is_empty() => {
                self.monitor = Monitor::Active;
                Wake::Spawn
            }
            Monitor::Parked { until } => {
                // A head at or after the timer, or already due, needs nothing. The bound is
                // checked first: finding the exact head may mean clearing stale entries.
                let bound = self.queue.peek_bound().unwrap_or(u64::MAX);
                if bound >= until {
                    return Wake::Nothing;
                }
                match self.queue.peek_deadline() {
                    Some(head) if head > self.frontier && head < until => {
                        self.monitor = Monitor::Active;
                        Wake::Notify
                    }
                    _ => Wake::Nothing,
                }
            }
            _ => Wake::Nothing,
        }
    }
}

/// A member taken out of its pool; dropped by the caller after unlocking.
#[derive(Debug)]
pub(crate) struct Left<T, G>(#[allow(dead_code)] Member<T, G>);

/// The protocol's state. See the module docs.
#[derive(Debug)]
pub(crate) struct Pool<T, G, A> {
    /// Slots the pool hands out (`N`); `usize::MAX` for a group's private pool.
    limit: usize,
    /// Slots taken: members' running tasks and `held` (invariant 1).
    taken: usize,
    /// Permits, and slots granted to `acquire()` callers and not yet claimed.
    held: usize,
    /// Who waits for a slot, earliest place first (invariant 3).
    line: BTreeMap<Place, Waiter<A>>,
    /// The order the next waiter joins the line in.
    next_order: u64,
    members: Vec<Option<Member<T, G>>>,
    /// Vacant indices of `members`.
    vacant: Vec<MemberId>,
    /// How `throttle_down`/`throttle_up` move `limit`.
    throttle: ThrottleState,
    /// Slots taken and freed, for a limiter's `history()`; `None` in a private pool.
    activity: Option<Activity>,
    /// How many tasks a batch starts under one lock: [`BUDGET`], smaller in tests.
    budget: usize,
    /// The member whose clock the transition under way has just read (its monitor's step or
    /// its runner's end): its starts know their time ([`Started::at`]).
    fresh: Option<MemberId>,
    /// The controller of `limit`, if it adapts (a limiter's).
    adaptive: Option<Box<adapt::Adapter>>,
    /// Adaptive changes not reported yet (see `adapt`'s module docs).
    reports: Vec<crate::adaptive::Adapted>,
    /// Bumped whenever `limit` changes (see [`Run::limit_gen`]).
    limit_gen: u32,
}

// ===== impl Pool: members and their tasks =====

impl<T: 'static, G: Ctx, A> Pool<T, G, A> {
    /// A pool of `limit` slots: `shared`, a limiter's (its members compete for slots, and it
    /// keeps a history); otherwise a group's private one.
    pub(crate) fn new(limit: usize, shared: bool) -> Self {
        Self {
            limit,
            taken: 0,
            held: 0,
            line: BTreeMap::new(),
            next_order: 0,
            members: Vec::new(),
            vacant: Vec::new(),
            throttle: ThrottleState::new(Throttle::default(), limit),
            activity: shared.then(Activity::new),
            budget: BUDGET,
            fresh: None,
            adaptive: None,
            reports: Vec::new(),
            limit_gen: 0,
        }
    }

    /// The same pool with batches of `budget` (at least 1), so that small tests reach the end
    /// of a batch.
    #[cfg(test)]
    pub(crate) fn with_budget(mut self, budget: usize) -> Self {
        self.budget = budget.max(1);
        self
    }

    /// Adds a group with its own cap `k`, whose queue keeps room for `reserve` tasks of each
    /// type; `ctx` is how effects reach it.
    pub(crate) fn join(&mut self, ctx: G, k: usize, reserve: usize) -> MemberId {
        let member = Member {
            ctx,
            queue: DeadlineQueue::with_reserve(reserve),
            cap: Cap::new(k),
            running: Running::default(),
            aborts: 0,
            frontier: 0,
            counters: Counters::default(),
            monitor: Monitor::Stopped,
            cancelled: false,
            place: None,
            throttle: ThrottleState::new(Throttle::default(), k),
            activity: Activity::new(),
            adaptive: None,
            limiter_epoch: 0,
            k_gen: 0,
        };
        match self.vacant.pop() {
            Some(id) => {
                self.members[id] = Some(member);
                id
            }
            None => {
                self.members.push(Some(member));
                self.members.len() - 1
            }
        }
    }

    /// Takes a group out of the pool (its last handle is gone). It holds no slot then: its
    /// runners and monitor held handles.
    pub(crate) fn leave(&mut self, id: MemberId) -> Option<Left<T, G>> {
        let mut member = self.members.get_mut(id)?.take()?;
        if let Some(place) = member.place.take() {
            self.line.remove(&place);
        }
        debug_assert_eq!(member.cap.running(), 0, "a group left while running");
        self.vacant.push(id);
        Some(Left(member))
    }

    #[inline]
    fn member(&mut self, id: MemberId) -> &mut Member<T, G> {
        self.members[id]
            .as_mut()
            .expect("a group's id names it until it leaves")
    }

    /// Adds `task` at `deadline`, with the effects to carry out (`None`: nothing to do, the
    /// common case). `Err((key, task))` if the group is cancelled (here, or by the caller's
    /// flag, which is set before the pool hears of it): the key names nothing but has an id of
    /// its own, and the task is counted as pending until the caller has dropped it and called
    /// [`settle_cancelled`](Pool::settle_cancelled).
    #[inline]
    pub(crate) fn schedule<V: Pending<T>>(
        &mut self,
        id: MemberId,
        deadline: u64,
        task: V,
        cancelled: bool,
        at: u64,
    ) -> Scheduled<V, T, G, A> {
        let member = self.member(id);
        if member.cancelled || cancelled {
            member.counters.scheduled += 1;
            member.counters.pending += 1;
            return Err((member.queue.detached_key(), task));
        }
        let key = member.queue.insert(deadline, task);
        member.counters.scheduled += 1;
        member.counters.pending += 1;
        if member.is_quiet_after(deadline) {
            return Ok((key, None));
        }
        Ok((key, Some(self.settle(id, Some(id), at, ONE))))
    }

    /// The reserve to make a lane for task type `V` with, outside the lock, if group `id` keeps
    /// a reserve and has no lane for `V` yet (see [`DeadlineQueue::lane_wanted`]).
    #[inline]
    pub(crate) fn lane_wanted<V: 'static>(&mut self, id: MemberId) -> Option<usize> {
        self.member(id).queue.lane_wanted::<V>()
    }

    /// Adds a lane made outside the lock to group `id`'s queue; hands it back if the group has
    /// one for that type already.
    pub(crate) fn install(&mut self, id: MemberId, lane: Prepared<T>) -> Option<Prepared<T>> {
        self.member(id).queue.install(lane)
    }

    /// Removes the pending task `key`, with the effects to carry out (`None`: nothing to do);
    /// the caller drops it, then calls [`settle_cancelled`](Pool::settle_cancelled). `None` if
    /// it is not pending.
    pub(crate) fn cancel_task(
        &mut self,
        id: MemberId,
        key: Key,
        at: u64,
    ) -> Option<(T, MaybeFx<T, G, A>)> {
        let member = self.member(id);
        let task = member.queue.remove(key)?;
        // Out of line, a group wanted no slot before and wants none now: at most its monitor
        // needs a timer for a head that is no longer due. A place in line, or an emptied
        // queue, needs settling.
        if member.place.is_none() && !member.queue.is_empty() {
            let fx = match member.monitor_wake() {
                Wake::Nothing => None,
                wake => Some(Effects {
                    wake,
                    ..Effects::new()
                }),
            };
            return Some((task, fx));
        }
        Some((task, Some(self.settle(id, Some(id), at, ONE))))
    }

    /// Moves the pending task `key` to `deadline`: `Some` with the effects to carry out
    /// (`Some(None)`: nothing to do, the common case), or `None` if it is not pending.
    pub(crate) fn reschedule(
        &mut self,
        id: MemberId,
        key: Key,
        deadline: u64,
        at: u64,
    ) -> Option<MaybeFx<T, G, A>> {
        let member = self.member(id);
        if !member.queue.reschedule(key, deadline) {
            return None;
        }
        if member.is_quiet_after_move(deadline) {
            return Some(None);
        }
        Some(Some(self.settle(id, Some(id), at, ONE)))
    }

    pub(crate) fn is_pending(&mut self, id: MemberId, key: Key) -> bool {
        self.member(id).queue.contains(key)
    }

    /// Whether the task `key` has ended: neither pending nor running. (A task cancelled
    /// before it started has ended once it left the queue; its future is being dropped.)
    pub(crate) fn is_finished(&mut self, id: MemberId, key: Key) -> bool {
        let member = self.member(id);
        !member.queue.contains(key) && !member.running.contains_key(&key.id())
    }

    /// The deadline of the pending task `key`; `None` if it is not pending.
    pub(crate) fn deadline(&mut self, id: MemberId, key: Key) -> Option<u64> {
        self.member(id).queue.deadline(key)
    }

    /// Asks the running task `task` to stop. Returns the group's new count of aborts, which
    /// the caller publishes to the runners (`Started::aborts`) and then wakes them; `None` if
    /// the task is not running, was asked before, or its group is cancelled (which stops it
    /// already). It stops at its runner's next look: the runner ends it as cancelled, unless
    /// it returned first.
    pub(crate) fn abort(&mut self, id: MemberId, task: u64) -> Option<u64> {
        let member = self.member(id);
        if member.cancelled {
            return None;
        }
        let run = member.running.get_mut(&task)?;
        if run.aborted {
            return None;
        }
        run.aborted = true;
        member.aborts = member.aborts.wrapping_add(1);
        Some(member.aborts)
    }

    /// What the delivery of the ended task `task`'s result showed (see [`Handed`]): a panic
    /// nobody took joins `wait()`'s report, in its turn. Changes no count.
    pub(crate) fn handed(&mut self, id: MemberId, task: u64, handed: Handed) {
        let counters = &mut self.member(id).counters;
        match handed {
            Handed::Nothing => {}
            Handed::PanicTaken => counters.panic_taken(task),
            Handed::PanicUntaken => counters.untaken_panic(task),
        }
    }

    /// Whether the running task `task` was asked to stop.
    pub(crate) fn is_aborted(&mut self, id: MemberId, task: u64) -> bool {
        self.member(id)
            .running
            .get(&task)
            .is_some_and(|run| run.aborted)
    }

    /// `count` cancelled tasks' futures are gone: moves them from pending to cancelled.
    /// Returns `true` if the group became idle.
    pub(crate) fn settle_cancelled(&mut self, id: MemberId, count: u64) -> bool {
        let member = self.member(id);
        member.counters.pending -= count;
        member.counters.cancelled += count;
        member.is_idle()
    }

    /// Cancels the group: nothing of it starts again. Returns the pending tasks, which stay
    /// counted as pending until the caller has dropped them and called
    /// [`settle_cancelled`](Pool::settle_cancelled), and whether to wake the monitor (not if
    /// `monitor_exits`: the caller is the monitor, which ends).
    pub(crate) fn cancel_group(&mut self, id: MemberId, monitor_exits: bool) -> (Drained<T>, Wake) {
        let place = {
            let member = self.member(id);
            member.cancelled = true;
            member.place.take()
        };
        if let Some(place) = place {
            self.line.remove(&place);
        }
        let member = self.member(id);
        let wake = if monitor_exits {
            member.monitor = Monitor::Stopped;
            Wake::Nothing
        } else if member.monitor == Monitor::Stopped {
            Wake::Nothing
        } else {
            member.monitor = Monitor::Active;
            Wake::Notify
        };
        (member.queue.drain(), wake)
    }

    /// The monitor's step at `now`, read on the group's runtime: what fell due joins the line
    /// or starts; then the monitor parks until the earliest task not yet due, or with no timer
    /// if the earliest task is due (a freed slot serves it), or exits if nothing is queued.
    pub(crate) fn step(&mut self, id: MemberId, now: u64) -> (Step, Fx<T, G, A>) {
        let member = self.member(id);
        member.frontier = member.frontier.max(now);
        member.monitor = Monitor::Active;
        self.fresh = Some(id);
        let mut fx = self.settle(id, Some(id), now, self.budget);
        self.fresh = None;
        // The monitor is awake: nothing needs waking for it.
        fx.wake = Wake::Nothing;
        let shared = self.is_shared();
        let free = self.taken < self.limit;
        let member = self.member(id);
        // A private pool's burst stopped at the budget: this monitor continues. (In a
        // limiter's pool the group waits in line, and `fx.more` tells the caller to continue.)
        if !shared && free && member.wants().is_some() {
            return (Step::Again, fx);
        }
        let step = match member.queue.peek_deadline() {
            None => {
                member.monitor = Monitor::Stopped;
                Step::Exit
            }
            Some(head) if head <= member.frontier => {
                member.monitor = Monitor::Parked { until: NO_TIMER };
                Step::Park(None)
            }
            Some(head) => {
                member.monitor = Monitor::Parked { until: head };
                // The latest key never falls due (`crate::clock::NEVER`): no timer for it.
                Step::Park((head != NO_TIMER).then_some(head))
            }
        };
        (step, fx)
    }

    /// A task of the group ended with `outcome` and its future is gone; `deferred`: its panic
    /// goes to a requester first (see [`Counters::record`]); `now`, if known, was read on the
    /// group's runtime. Frees its slots and hands them on.
    pub(crate) fn finish(
        &mut self,
        id: MemberId,
        ran: Ran,
        outcome: Outcome,
        deferred: bool,
        now: Option<u64>,
        at: u64,
    ) -> Fx<T, G, A> {
        let Ran {
            id: task,
            at: started,
            overload,
        } = ran;
        self.fresh = now.map(|_| id);
        let member = self.member(id);
        if let Some(now) = now {
            member.frontier = member.frontier.max(now);
        }
        let end = now.unwrap_or(member.frontier);
        let run = started.map_or(0, |started| end.saturating_sub(started));
        if started.is_none() {
            // Never begun (a runtime shutting down dropped its runner first): the history
            // counts its start and end together.
            member.activity.start(end, None);
            if let Some(activity) = &mut self.activity {
                activity.start(at, None);
            }
        }
        let (adapted, raised) = if self.adapts(id) {
            let end = adapt::End {
                task,
                started,
                now: end,
                run,
                outcome,
                overload,
            };
            self.adapt_on_end(id, end)
        } else {
            (false, false)
        };
        let member = self.member(id);
        member.counters.record(task, outcome, deferred);
        member.running.remove(&task);
        let room = member.running.capacity();
        // A burst's table is given back as it ends (amortized O(1): a shrink halves the room
        // at least, after as many ends as it moved), down to a small table kept for reuse.
        if room > RUNNING_KEEP && member.running.len() * 4 <= room {
            member.running.shrink_to(member.running.len() * 2);
        }
        member.cap.release();
        member.activity.end(end, &outcome, run);
        self.free(at, Some(run));
        // A raised limit frees more than this task's slot: a batch, as `set_limit` hands out.
        let budget = if raised { self.budget } else { ONE };
        let mut fx = self.settle(id, Some(id), at, budget);
        fx.idle = self.member(id).is_idle();
        fx.adapted = adapted;
        self.fresh = None;
        fx
    }

    /// Sets the group's own cap. Returns the old one.
    pub(crate) fn set_group_limit(
        &mut self,
        id: MemberId,
        k: usize,
        at: u64,
    ) -> (usize, Fx<T, G, A>) {
        let old = self.member(id).set_cap(k);
        (old, self.settle(id, Some(id), at, self.budget))
    }

    /// Replaces the throttle of the group's own cap; `ceiling: None` means the cap now.
    pub(crate) fn set_group_throttle(&mut self, id: MemberId, throttle: Throttle) {
        let member = self.member(id);
        member.throttle = ThrottleState::new(throttle, member.cap.limit());
    }

    /// Steps the group's own cap with its throttle at `now`.
    pub(crate) fn throttle_group(
        &mut self,
        id: MemberId,
        step: fn(&mut ThrottleState, usize, Instant) -> ThrottleOutcome,
        now: Instant,
        at: u64,
    ) -> (ThrottleOutcome, Fx<T, G, A>) {
        let member = self.member(id);
        let outcome = step(&mut member.throttle, member.cap.limit(), now);
        if let ThrottleOutcome::Applied { to, .. } = outcome {
            member.set_cap(to);
        }
        (outcome, self.settle(id, Some(id), at, self.budget))
    }

    pub(crate) fn group_limit(&mut self, id: MemberId) -> usize {
        self.member(id).cap.limit()
    }

    /// The earliest deadline among the group's pending tasks.
    pub(crate) fn next_deadline(&mut self, id: MemberId) -> Option<u64> {
        self.member(id).queue.peek_deadline()
    }

    /// `None` while the group has tasks pending or running. Once it is idle, the panics not
    /// reported yet, which count as reported from then on: how many, and the ids of the first
    /// few (see [`Counters`]). One lock for both, so no task can start and panic between them.
    pub(crate) fn idle_report(&mut self, id: MemberId) -> Option<(u64, Vec<u64>)> {
        let member = self.member(id);
        member.is_idle().then(|| member.counters.take_panics())
    }

    pub(crate) fn stats(&mut self, id: MemberId) -> Stats {
        let member = self.member(id);
        member.counters.snapshot(member.cap.running())
    }

    /// Task `deadline`'s runner began it at `now` (its group's clock), which the transition
    /// that started it could not know (`Started::at` was `None`): the history counts its start,
    /// lateness and wait now.
    pub(crate) fn late_start(&mut self, id: MemberId, deadline: u64, now: u64) {
        self.member(id).activity.start(now, Some(deadline));
        if let Some(activity) = &mut self.activity {
            activity.start(now, Some(deadline));
        }
    }

    /// The group's counters and gauges at `now` (its own clock), for the `metrics` feature.
    /// The due count costs what it costs in [`group_history`](Pool::group_history).
    pub(crate) fn reading(&mut self, id: MemberId, now: u64) -> GroupReading {
        let member = self.member(id);
        let c = &member.counters;
        GroupReading {
            scheduled: c.scheduled,
            started: c.started,
            completed: c.completed,
            cancelled: c.cancelled,
            panicked: c.panicked,
            pending: c.pending,
            running: member.cap.running() as u64,
            waiting: member.queue.count_due(now),
            limit: member.cap.limit(),
        }
    }

    /// The limiter's gauges, for the `metrics` feature.
    pub(crate) fn limiter_reading(&self) -> LimiterReading {
        LimiterReading {
            limit: self.limit,
            running: self.taken,
            waiting: self.line.len(),
        }
    }

    /// The group's history at `now` (its own clock). The due count is a counter the queue
    /// keeps (`DeadlineQueue::count_due`): O(1) under the pool's lock, plus O(log n) for each
    /// task that fell due since the group last read the clock, once in each task's life.
    pub(crate) fn group_history(&mut self, id: MemberId, now: u64) -> History {
        let member = self.member(id);
        History {
            running: member.cap.running(),
            waiting: member.queue.count_due(now),
            limit: member.cap.limit(),
            windows: member.activity.windows(now),
            adaptive: member
                .adaptive
                .as_ref()
                .map(|a| a.state(now, member.cap.limit())),
        }
    }

    // ----- the core: serving members and handing out slots -----

    /// After any change to member `id`: brings its place in line and its monitor up to date,
    /// and hands out free slots (invariants 2 to 4).
    fn settle(
        &mut self,
        id: MemberId,
        caller: Option<MemberId>,
        at: u64,
        budget: usize,
    ) -> Fx<T, G, A> {
        let mut fx = Effects::new();
        let mut budget = budget;
        self.serve(id, caller, at, &mut budget, &mut fx);
        if self.taken < self.limit && !self.line.is_empty() {
            self.dispatch(caller, at, &mut budget, &mut fx);
        }
        fx
    }

    /// Member `id` starts its due tasks while it may (a free slot, room under its own cap, and
    /// no one in line before it), then waits in line under its current head if it still wants
    /// a slot, or leaves the line if not; then its monitor is brought up to date.
    fn serve(
        &mut self,
        id: MemberId,
        caller: Option<MemberId>,
        at: u64,
        budget: &mut usize,
        fx: &mut Fx<T, G, A>,
    ) {
        // Out of line while deciding: its old place must not stand in its own way.
        let mut old = self.member(id).place.take();
        if let Some(place) = old {
            self.line.remove(&place);
        }
        while let Some(head) = self.member(id).wants() {
            // Keeps its order if it was waiting: ties go to whoever waited first.
            let order = old.map_or(self.next_order, |(_, order)| order);
            let place = (head, order);
            let first = self.line.first_key_value().is_none_or(|(f, _)| place < *f);
            let free = self.taken < self.limit && first;
            if free && *budget > 0 {
                *budget -= 1;
                self.start_head(id, caller, at, fx);
                // Its next task joins the line afresh: among equal deadlines, others that were
                // waiting go first.
                old = None;
                continue;
            }
            if free {
                // Stopped at the budget with a slot free. In a private pool nobody else
                // competes for the slots, so the group needs no place in line.
                self.continue_with(id, fx);
                if !self.is_shared() {
                    break;
                }
            }
            if old.is_none() {
                self.next_order += 1;
            }
            self.line.insert(place, Waiter::Member(id));
            self.member(id).place = Some(place);
            break;
        }
        let member = self.member(id);
        let wake = member.monitor_wake();
        if wake != Wake::Nothing {
            if caller == Some(id) {
                fx.wake = wake;
            } else if let Some(ctx) = member.ctx.strong() {
                fx.others.push((ctx, Action::Wake(wake)));
            } else {
                debug_assert!(
                    false,
                    "a group with a monitor to wake is alive: the monitor holds it"
                );
            }
        }
    }

    /// Takes member `id`'s earliest task out of the queue with a slot of its cap and of the
    /// pool. The caller checked that it wants one and that the pool has one.
    fn start_head(
        &mut self,
        id: MemberId,
        caller: Option<MemberId>,
        at: u64,
        fx: &mut Fx<T, G, A>,
    ) {
        // The group's clock was just read (its step, its runner's end): the start is known now.
        let fresh = self.fresh == Some(id);
        let limit_gen = self.limit_gen;
        let member = self.member(id);
        // A group with a queued task is alive: its monitor holds it (invariant 4), and so does
        // whoever is about to spawn the monitor.
        let ctx = if caller == Some(id) {
            None
        } else {
            Some(
                member
                    .ctx
                    .strong()
                    .expect("a group with queued tasks is alive"),
            )
        };
        let (id, deadline, task) = member
            .queue
            .pop_due_with_deadline(member.frontier)
            .expect("a member that wants a slot has a due task");
        let started = fresh.then_some(member.frontier);
        let run = Run {
            k_gen: member.k_gen,
            limit_gen,
            aborted: false,
        };
        member.running.insert(id, run);
        let task = Started {
            id,
            task,
            aborts: member.aborts,
            deadline,
            at: started.and_then(NonZeroU64::new),
        };
        member.cap.acquire();
        member.counters.pending -= 1;
        member.counters.started += 1;
        // The history counts the start now if its time is known, else when the runner
        // reports it (`late_start`), so that it counts at its own time.
        if fresh {
            member.activity.start(member.frontier, Some(deadline));
        }
        match ctx {
            None => fx.starts.push(task),
            Some(ctx) => fx.others.push((ctx, Action::Start(task))),
        }
        self.take(started.unwrap_or(at), Some(deadline), fresh);
    }

    /// Hands free slots to the line, earliest place first (invariant 2).
    fn dispatch(
        &mut self,
        caller: Option<MemberId>,
        at: u64,
        budget: &mut usize,
        fx: &mut Fx<T, G, A>,
    ) {
        while self.taken < self.limit {
            let Some(entry) = self.line.first_entry() else {
                break;
            };
            match entry.get() {
                Waiter::Member(id) if *budget == 0 => {
                    let id = *id;
                    self.continue_with(id, fx);
                    break;
                }
                Waiter::Member(id) => {
                    let id = *id;
                    self.serve(id, caller, at, budget, fx);
                }
                // A grant spawns nothing, and there are at most `limit` of them: no budget.
                Waiter::Acquire(_) => {
                    let Waiter::Acquire(ticket) = entry.remove() else {
                        unreachable!("matched above");
                    };
                    self.held += 1;
                    self.take(at, None, true);
                    fx.grants.push(ticket);
                }
            }
        }
    }

    /// Handing out slots stopped at its budget with slots free and member `id` first in line
    /// (invariant 2). In a limiter's pool the caller continues, whoever it is: the first
    /// group's monitor may be on a runtime that is not running, and the groups behind it must
    /// not wait for that. In a private pool `id` is the caller's own group: its monitor
    /// continues; a parked one is woken, and an active one steps again anyway (if it is the
    /// caller, [`step`](Pool::step) sees the due work and says so).
    fn continue_with(&mut self, id: MemberId, fx: &mut Fx<T, G, A>) {
        if self.is_shared() {
            fx.more = true;
            return;
        }
        let member = self.member(id);
        let wake = match member.monitor {
            Monitor::Parked { .. } => Wake::Notify,
            // A group that wants a slot has a queued task, so a monitor (invariant 4).
            Monitor::Stopped => Wake::Spawn,
            Monitor::Active => return,
        };
        member.monitor = Monitor::Active;
        fx.wake = wake;
    }

    /// Hands free slots to the line after a change of limit or a freed permit.
    fn hand_out(&mut self, budget: usize, at: u64) -> Fx<T, G, A> {
        let mut fx = Effects::new();
        let mut budget = budget;
        self.dispatch(None, at, &mut budget, &mut fx);
        fx
    }

    /// Goes on handing out free slots after a transition stopped at its budget
    /// (`Effects::more`). Its effects are all for members other than the caller's.
    pub(crate) fn resume(&mut self, at: u64) -> Fx<T, G, A> {
        self.hand_out(self.budget, at)
    }

    /// A limiter's pool, as opposed to a group's private one.
    fn is_shared(&self) -> bool {
        self.activity.is_some()
    }

    /// A slot is taken at `at`: by a task due at `deadline`, or for a permit (`None`). The
    /// history counts it now if it `begun`, else when its runner reports it (`late_start`).
    fn take(&mut self, at: u64, deadline: Option<u64>, begun: bool) {
        self.taken += 1;
        if let Some(activity) = self.activity.as_mut().filter(|_| begun) {
            activity.start(at, deadline);
        }
    }

    /// A slot is freed at `at`: by a task that ran for `run` nanoseconds, or a permit (`None`).
    fn free(&mut self, at: u64, run: Option<u64>) {
        self.taken = self
            .taken
            .checked_sub(1)
            .expect("freed a slot that was not taken");
        if let Some(activity) = &mut self.activity {
            activity.finish(at, run);
        }
    }

    // ----- the limiter's side -----

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Slots taken: running tasks of every member, permits and unclaimed grants.
    pub(crate) fn taken(&self) -> usize {
        self.taken
    }

    /// Members and `acquire()` callers in line.
    pub(crate) fn waiting(&self) -> usize {
        self.line.len()
    }

    /// Sets the limit; returns the old one. Raising it hands the new slots out at once.
    pub(crate) fn set_limit(&mut self, limit: usize, at: u64) -> (usize, Fx<T, G, A>) {
        let old = std::mem::replace(&mut self.limit, limit);
        self.limiter_changed(at);
        (old, self.hand_out(self.budget, at))
    }

    /// Replaces the limit's throttle; `ceiling: None` means the limit now.
    pub(crate) fn set_throttle(&mut self, throttle: Throttle) {
        self.throttle = ThrottleState::new(throttle, self.limit);
    }

    /// Steps the limit with its throttle at `now`.
    pub(crate) fn throttle(
        &mut self,
        step: fn(&mut ThrottleState, usize, Instant) -> ThrottleOutcome,
        now: Instant,
        at: u64,
    ) -> (ThrottleOutcome, Fx<T, G, A>) {
        let outcome = step(&mut self.throttle, self.limit, now);
        if let ThrottleOutcome::Applied { to, .. } = outcome {
            self.limit = to;
            self.limiter_changed(at);
        }
        (outcome, self.hand_out(self.budget, at))
    }

    /// Takes a slot for a permit if one is free now.
    pub(crate) fn try_acquire(&mut self, at: u64) -> bool {
        // A free slot with someone in line is being handed out a batch at a time (invariant
        // 2): it is theirs, not this caller's.
        if self.taken < self.limit && self.line.is_empty() {
            self.held += 1;
            self.take(at, None, true);
            true
        } else {
            false
        }
    }

    /// Takes a slot for a permit, or puts `ticket` in line under the deadline `at`:
    /// `Err(place)`. A grant comes back in some transition's `Effects::grants`.
    pub(crate) fn acquire(&mut self, ticket: A, at: u64) -> Result<(), Place> {
        if self.try_acquire(at) {
            return Ok(());
        }
        let place = (at, self.next_order);
        self.next_order += 1;
        self.line.insert(place, Waiter::Acquire(ticket));
        Err(place)
    }

    /// The `acquire()` waiting at `place` was dropped. `None` if it was still in line (it
    /// leaves it); otherwise its slot had been granted, and is freed and handed on.
    pub(crate) fn abandon(&mut self, place: Place, at: u64) -> Option<Fx<T, G, A>> {
        // Places are never reused, so an entry there is this caller's.
        if self.line.remove(&place).is_some() {
            return None;
        }
        Some(self.release(at))
    }

    /// A permit (or a granted slot nobody will claim) is given back.
    pub(crate) fn release(&mut self, at: u64) -> Fx<T, G, A> {
        self.held = self
            .held
            .checked_sub(1)
            .expect("released a permit that was not held");
        self.free(at, None);
        self.hand_out(ONE, at)
    }

    /// The limiter's history at `at`.
    pub(crate) fn history(&mut self, at: u64) -> History {
        let activity = self.activity.get_or_insert_with(Activity::new);
        History {
            running: self.taken,
            waiting: self.line.len(),
            limit: self.limit,
            windows: activity.windows(at),
            adaptive: self.adaptive.as_ref().map(|a| a.state(at, self.limit)),
        }
    }
}
