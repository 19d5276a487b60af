//! The state a group's clones, task handles, monitor and runners share, and every transition
//! of it.
//!
//! # Invariants
//!
//! These hold whenever `Shared::state` is unlocked:
//!
//! 1. `scheduled == pending + running + completed + cancelled + panicked`.
//! 2. Every task in the queue is counted in `pending`; so is every cancelled task whose future is
//!    still being dropped outside the lock. A task leaves `pending` only after its future is
//!    gone or it has started.
//! 3. A running task is owned by exactly one runner, and each runner holds exactly one slot of
//!    the cap, so `running == cap.running()`.
//! 4. If the queue is not empty, `monitor != Stopped`: a monitor task exists, or the thread that
//!    set `Active` is about to spawn one.
//! 5. `monitor == Parked { until }` means the monitor is waiting (or about to wait) for a
//!    notification, the token, or, if `until != NO_TIMER`, its timer at `until`. Whoever makes
//!    it necessary to act sooner (an earlier deadline, a freed slot, a higher cap, an emptied
//!    queue, whether by a handle's cancel or a runner taking the last task) sets `Active` and
//!    notifies it after unlocking.
//! 6. Once the queue has been drained for cancellation, nothing is inserted again: the
//!    cancellation flag is set before the drain, and inserts check it under the lock.
//! 7. `pending == 0 && running == 0` ("idle") is announced on `idle` by whoever makes it true,
//!    after unlocking.
//!
//! # Lock ordering
//!
//! `state` is the crate's only lock on a hot path (the cancellation hook's lock is taken only
//! to arm it). While holding `state`, code never touches the token, spawns, notifies, or polls
//! or drops a user future: a user `Drop` may call back into the group, and a notification may
//! run a waker.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cancel::{self, CancelWatch};
use crate::clock::Clock;
use crate::error::WaitError;
use crate::history::{Activity, History};
use crate::limit::Cap;
use crate::limiter::Limiter;
use crate::queue::{DeadlineQueue, Drained, Key};
use crate::stats::{Counters, Stats};
use crate::task::{BoxTask, Outcome, drop_catching};
use crate::throttle::{Throttle, ThrottleOutcome, ThrottleState};
use crate::{monitor, runner};
use tokio::time::Instant;

/// `Monitor::Parked::until` when the monitor has no timer set.
pub(crate) const NO_TIMER: u64 = u64::MAX;

/// How many due tasks the monitor takes out of the queue per lock.
const START_BATCH: usize = 256;

/// What a group's monitor task is doing, as far as the rest of the group needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Monitor {
    /// No monitor task exists. The next insert spawns one.
    Stopped,
    /// The monitor is awake, or has been notified, and will re-read the state before it parks.
    Active,
    /// The monitor is parked until notified, or until the deadline key `until`.
    Parked { until: u64 },
}

/// What the caller must do after unlocking to keep invariants 4 and 5.
#[must_use]
pub(crate) enum Wake {
    Nothing,
    Notify,
    Spawn,
}

/// What the monitor does next, decided under the lock.
pub(crate) enum Step {
    /// Spawn runners for the tasks put in the batch, then step again.
    Start,
    /// Park until notified or until the deadline key, if any.
    Park(Option<u64>),
    /// Nothing is left (or the group is cancelled): the monitor ends.
    Exit,
}

/// Everything that must change together. Guarded by `Shared::state`.
pub(crate) struct State {
    /// Pending tasks by deadline.
    queue: DeadlineQueue<BoxTask>,
    /// The group's own cap and the number of running tasks.
    cap: Cap,
    /// All counters but `running`.
    counters: Counters,
    /// The monitor's state, for invariants 4 and 5.
    monitor: Monitor,
    /// How `throttle_down`/`throttle_up` move the cap.
    throttle: ThrottleState,
    /// Starts and ends of tasks, for `history()`.
    activity: Activity,
}

/// One group's shared state. Reached through `Arc`s held by `Group` clones, task handles, the
/// monitor and the runners.
pub(crate) struct Shared {
    /// See the module docs.
    state: Mutex<State>,
    /// Wakes the monitor. `notify_one` stores a permit when the monitor is not waiting yet.
    monitor_wake: Notify,
    /// Wakes `wait()` callers when the group becomes idle.
    idle: Notify,
    /// The group's own token (a child of the caller's, if one was given) and its lock-free
    /// mirror.
    pub(crate) cancel: CancelWatch,
    /// Deadline keys.
    pub(crate) clock: Clock,
    /// Where the monitor and runners are spawned.
    runtime: Handle,
    /// For `Debug`.
    pub(crate) name: Option<Box<str>>,
    /// The shared limiter this group's tasks also need a slot of, if any.
    limiter: Option<Limiter>,
    /// Unique per group, for the limiter's line.
    id: u64,
}

// ===== impl State =====

impl State {
    fn is_idle(&self) -> bool {
        self.counters.pending == 0 && self.cap.running() == 0
    }

    /// Invariants 4 and 5 after a task became due at `deadline`.
    fn wake_for(&mut self, deadline: u64) -> Wake {
        match self.monitor {
            Monitor::Stopped => {
                self.monitor = Monitor::Active;
                Wake::Spawn
            }
            Monitor::Parked { until } if deadline < until && self.cap.has_room() => {
                self.monitor = Monitor::Active;
                Wake::Notify
            }
            _ => Wake::Nothing,
        }
    }

    /// Invariant 5 after a slot was freed or the cap raised: the earliest task may now start.
    fn wake_for_top(&mut self) -> Wake {
        match self.queue.peek_deadline() {
            Some(deadline) => self.wake_for(deadline),
            None => Wake::Nothing,
        }
    }

    /// Invariant 5 after the queue emptied: let a parked monitor exit instead of sleeping on.
    fn wake_if_empty(&mut self) -> Wake {
        match self.monitor {
            Monitor::Parked { .. } if self.queue.is_empty() => {
                self.monitor = Monitor::Active;
                Wake::Notify
            }
            _ => Wake::Nothing,
        }
    }

    /// Starts the earliest task if it is due at `now`, the cap has room, and `slot` (asked with
    /// its deadline) provides whatever else it needs, such as a limiter slot: takes it out of
    /// the queue with a slot of the cap. The caller checked that the group is not cancelled.
    fn start_head(&mut self, now: u64, slot: impl FnOnce(u64) -> bool) -> Option<BoxTask> {
        if !self.cap.has_room() {
            return None;
        }
        let head = self.queue.peek_deadline()?;
        if head > now || !slot(head) {
            return None;
        }
        // The head was just peeked as due under this lock, so it is there: a limiter slot
        // taken for it is never left unused.
        let task = self
            .queue
            .pop_due(now)
            .expect("the head was just peeked as due");
        self.cap.acquire();
        self.activity.start(now);
        self.counters.pending -= 1;
        Some(task)
    }

    /// Starts the earliest due task if both the cap and the group's limiter, if any, have a
    /// slot; else the group waits in the limiter's line.
    fn start_due(&mut self, now: u64, shared: &Arc<Shared>) -> Option<BoxTask> {
        self.start_head(now, |head| {
            shared
                .limiter
                .as_ref()
                .is_none_or(|limiter| limiter.take_or_wait(shared.id, head, shared))
        })
    }
}

// ===== impl Shared =====

impl Shared {
    /// Creates the shared state and starts watching `token`.
    pub(crate) fn new(
        token: CancellationToken,
        clock: Clock,
        runtime: Handle,
        limit: usize,
        name: Option<Box<str>>,
        limiter: Option<Limiter>,
    ) -> Arc<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let shared = Arc::new(Self {
            state: Mutex::new(State {
                queue: DeadlineQueue::new(),
                cap: Cap::new(limit),
                counters: Counters::default(),
                monitor: Monitor::Stopped,
                throttle: ThrottleState::new(Throttle::default(), limit),
                activity: Activity::new(),
            }),
            monitor_wake: Notify::new(),
            idle: Notify::new(),
            cancel: CancelWatch::new(token),
            clock,
            runtime,
            name,
            limiter,
            // Relaxed: only uniqueness matters.
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        });
        cancel::watch(&shared);
        shared
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under the lock, so a poisoned lock means a bug of ours panicked
        // mid-update; the counters may be off but the structures are sound.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn runtime(&self) -> &Handle {
        &self.runtime
    }

    fn wake(self: &Arc<Self>, wake: Wake) {
        match wake {
            Wake::Nothing => {}
            Wake::Notify => self.monitor_wake.notify_one(),
            Wake::Spawn => monitor::spawn(self.clone()),
        }
    }

    fn announce_if_idle(&self, idle: bool) {
        if idle {
            self.idle.notify_waiters();
        }
    }

    /// Adds `task` at `deadline`; drops it instead if the group is cancelled.
    pub(crate) fn schedule(self: &Arc<Self>, deadline: u64, task: BoxTask) -> Key {
        let mut state = self.lock();
        state.counters.scheduled += 1;
        state.counters.pending += 1;
        if self.cancel.is_cancelled() {
            drop(state);
            drop_catching(task);
            self.settle_cancelled(1);
            return Key::DETACHED;
        }
        let key = state.queue.insert(deadline, task);
        let wake = state.wake_for(deadline);
        drop(state);
        self.wake(wake);
        key
    }

    /// Removes the pending task `key` and drops its future. `false` if it was not pending.
    pub(crate) fn cancel_task(self: &Arc<Self>, key: Key) -> bool {
        let mut state = self.lock();
        let Some(task) = state.queue.remove(key) else {
            return false;
        };
        let wake = state.wake_if_empty();
        drop(state);
        self.wake(wake);
        drop_catching(task);
        self.settle_cancelled(1);
        true
    }

    /// Moves the pending task `key` to `deadline`. `false` if it was not pending.
    pub(crate) fn reschedule(self: &Arc<Self>, key: Key, deadline: u64) -> bool {
        let mut state = self.lock();
        if !state.queue.reschedule(key, deadline) {
            return false;
        }
        let wake = state.wake_for(deadline);
        drop(state);
        self.wake(wake);
        true
    }

    pub(crate) fn is_pending(&self, key: Key) -> bool {
        self.lock().queue.contains(key)
    }

    /// Cancels the group. `true` if it was not cancelled before this call.
    pub(crate) fn cancel(&self) -> bool {
        self.cancel_and_drain(false)
    }

    /// The one cancellation sequence: the flag first (invariant 6), then the drain, then the
    /// token (which tells everyone else), then the drained futures are dropped outside the
    /// lock. `monitor_exits`: the caller is the monitor, exiting or dropped by the runtime, so
    /// it is marked stopped in the drain's critical section; otherwise it is notified so that it
    /// can exit. Returns `true` if this call set the flag.
    fn cancel_and_drain(&self, monitor_exits: bool) -> bool {
        let first = self.cancel.mark();
        let tasks = {
            let mut state = self.lock();
            if monitor_exits {
                state.monitor = Monitor::Stopped;
            }
            state.queue.drain()
        };
        self.cancel.token().cancel();
        if !monitor_exits {
            self.monitor_wake.notify_one();
        }
        self.drop_cancelled(tasks);
        first
    }

    /// The cancellation hook saw the token cancelled (by a parent, or through
    /// `cancellation_token()`): the monitor drains the queue.
    pub(crate) fn on_cancelled(&self) {
        self.monitor_wake.notify_one();
    }

    /// Drops futures drained for cancellation and moves them from pending to cancelled.
    fn drop_cancelled(&self, tasks: Drained<BoxTask>) {
        let count = tasks.len() as u64;
        for task in tasks {
            drop_catching(task);
        }
        if count > 0 {
            self.settle_cancelled(count);
        }
    }

    fn settle_cancelled(&self, count: u64) {
        let mut state = self.lock();
        state.counters.pending -= count;
        state.counters.cancelled += count;
        let idle = state.is_idle();
        drop(state);
        self.announce_if_idle(idle);
    }

    /// Sets the cap. Returns `true` if it changed.
    pub(crate) fn set_limit(self: &Arc<Self>, limit: usize) -> bool {
        let mut state = self.lock();
        let old = state.cap.set_limit(limit);
        let wake = if limit > old {
            state.wake_for_top()
        } else {
            Wake::Nothing
        };
        drop(state);
        self.wake(wake);
        old != limit
    }

    /// Replaces the throttle; `ceiling: None` means the cap now.
    pub(crate) fn set_throttle(&self, throttle: Throttle) {
        let mut state = self.lock();
        state.throttle = ThrottleState::new(throttle, state.cap.limit());
    }

    /// Steps the cap with the throttle; raising it starts waiting due tasks.
    pub(crate) fn throttle(
        self: &Arc<Self>,
        step: fn(&mut ThrottleState, usize, Instant) -> ThrottleOutcome,
    ) -> ThrottleOutcome {
        let now = Instant::now();
        let mut state = self.lock();
        let limit = state.cap.limit();
        let outcome = step(&mut state.throttle, limit, now);
        let wake = match outcome {
            ThrottleOutcome::Applied { to, .. } => {
                state.cap.set_limit(to);
                if to > limit {
                    state.wake_for_top()
                } else {
                    Wake::Nothing
                }
            }
            _ => Wake::Nothing,
        };
        drop(state);
        self.wake(wake);
        outcome
    }

    pub(crate) fn limit(&self) -> usize {
        self.lock().cap.limit()
    }

    pub(crate) fn history(&self) -> History {
        let now = self.clock.now();
        let mut state = self.lock();
        History {
            running: state.cap.running(),
            waiting: state.queue.count_due(now),
            limit: state.cap.limit(),
            windows: state.activity.windows(now),
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let state = self.lock();
        state.counters.snapshot(state.cap.running())
    }

    /// `Some(result)` once the group is idle; `None` while tasks remain.
    pub(crate) fn poll_idle(&self) -> Option<Result<(), WaitError>> {
        let state = self.lock();
        if !state.is_idle() {
            return None;
        }
        let cancelled = self.cancel.is_cancelled();
        Some(WaitError::new(cancelled, state.counters.panicked).map_or(Ok(()), Err))
    }

    pub(crate) fn idle_notify(&self) -> &Notify {
        &self.idle
    }

    pub(crate) fn monitor_notify(&self) -> &Notify {
        &self.monitor_wake
    }

    // ----- the monitor's side -----

    /// One step of the monitor: start what is due (up to `START_BATCH`, into `batch`), or say
    /// how long to park, or that it is done.
    pub(crate) fn monitor_step(self: &Arc<Self>, now: u64, batch: &mut Vec<BoxTask>) -> Step {
        if self.cancel.is_cancelled() {
            self.cancel_and_drain(true);
            return Step::Exit;
        }
        let mut state = self.lock();
        while batch.len() < START_BATCH {
            match state.start_due(now, self) {
                Some(task) => batch.push(task),
                None => break,
            }
        }
        if !batch.is_empty() {
            state.monitor = Monitor::Active;
            return Step::Start;
        }
        match state.queue.peek_deadline() {
            None => {
                state.monitor = Monitor::Stopped;
                Step::Exit
            }
            Some(deadline) if !state.cap.has_room() || deadline <= now => {
                // Cap full: runners free slots and wake us (invariant 5). Due but no limiter
                // slot: the group is in the limiter's line, and a grant starts the task.
                // Either way, no timer.
                state.monitor = Monitor::Parked { until: NO_TIMER };
                Step::Park(None)
            }
            Some(deadline) => {
                state.monitor = Monitor::Parked { until: deadline };
                Step::Park(Some(deadline))
            }
        }
    }

    /// The runtime dropped the monitor without letting it finish: it is shutting down, so
    /// nothing pending can ever run. Cancel the group rather than leave `wait()` hanging.
    pub(crate) fn monitor_dropped(&self) {
        self.cancel_and_drain(true);
    }

    // ----- a runner's side -----

    /// A runner's task ended with `outcome` and its future is gone. With `now`, hands the
    /// runner the next task due by then, keeping the slot; otherwise (or if none is due) frees
    /// the slot and returns `None`.
    pub(crate) fn finish(self: &Arc<Self>, outcome: Outcome, now: Option<u64>) -> Option<BoxTask> {
        let ended = now.unwrap_or_else(|| self.clock.now());
        let mut state = self.lock();
        state.counters.record(outcome);
        state.cap.release();
        state.activity.finish(ended);
        // With a limiter, the runner keeps its limiter slot only for a task no one in the
        // limiter's line comes before; otherwise it frees the slot (below) for whoever is first.
        let next = match now {
            Some(now) if !self.cancel.is_cancelled() => match &self.limiter {
                None => state.start_due(now, self),
                Some(limiter) => state.start_head(now, |head| limiter.keep_for(self.id, head)),
            },
            _ => None,
        };
        // A monitor parked without a timer (cap full) learns of an emptied queue only here:
        // runners, not it, took the last tasks.
        let wake = if state.queue.is_empty() {
            state.wake_if_empty()
        } else if next.is_none() {
            state.wake_for_top()
        } else {
            Wake::Nothing
        };
        let idle = next.is_none() && state.is_idle();
        drop(state);
        self.wake(wake);
        if let (None, Some(limiter)) = (&next, &self.limiter) {
            limiter.release(1);
        }
        self.announce_if_idle(idle);
        next
    }

    /// The limiter granted this group a slot (it was waiting in line). Starts the earliest due
    /// task with it, or returns `false` if there is none it may start (the caller hands the
    /// slot on). Called with no lock held.
    pub(crate) fn on_grant(self: &Arc<Self>) -> bool {
        let now = self.clock.now();
        let mut state = self.lock();
        if self.cancel.is_cancelled() {
            return false;
        }
        // The limiter slot is already ours.
        let Some(task) = state.start_head(now, |_| true) else {
            return false;
        };
        let wake = if state.queue.is_empty() {
            state.wake_if_empty()
        } else {
            // The next due task, if any, must get back in line: the monitor does that.
            state.wake_for_top()
        };
        drop(state);
        self.wake(wake);
        runner::spawn(self, task);
        true
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        let limit = state.cap.limit();
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("pending", &state.counters.pending)
            .field("running", &state.cap.running())
            .field("max_concurrent", &(limit != usize::MAX).then_some(limit))
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}
