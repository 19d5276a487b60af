//! The runtime side of the protocol: carrying out [`Effects`], the monitor task and the runner
//! tasks.
//!
//! # Carrying out effects
//!
//! [`apply`] runs after the pool's lock is released. Notifications and grants are done at once.
//! Spawns go through a per-thread trampoline: a spawn on a runtime that is shutting down drops
//! the task at once, and a dropped runner ends its task, which frees a slot, which may start
//! another group's task, which is spawned on the same closing runtime... Nested calls only queue
//! their spawns, and the outermost call carries them out in a loop, so the stack stays flat
//! however many groups wait in a line.
//!
//! A transition that stops handing out a limiter's slots at its budget says `more`, and
//! `apply` goes on (`Pool::resume`, a batch per lock) before it returns. Nothing in between
//! waits: the free slots may be wanted by groups on other runtimes, and the only other party
//! that could continue, the first group's monitor, may be on a runtime that is not running.
//!
//! # The monitor, and why no wake-up is lost
//!
//! One tokio task per busy group sleeps on a single timer until the earliest deadline not yet
//! due. Each step reads the clock on the group's runtime and hands it to the pool
//! ([`Pool::step`](crate::pool::Pool::step)), which starts what is due (or puts the group in
//! line) and records under the lock how the monitor will park (`Monitor::Parked { until }`).
//! Anything that makes it necessary to act sooner (an earlier deadline, an emptied queue, a
//! due head started by someone else) is done under the same lock, sees that record, flips it
//! to `Active` and notifies after unlocking. `notify_one` stores a permit when the monitor is
//! not yet waiting, so a notification between the step and the `.await` completes the next
//! `notified()` at once. Cancellation sets the group's flag and then notifies the monitor the
//! same way (see `crate::cancel`). So at any moment either the monitor is awake and will step
//! again, or everything that could need it has a way to wake it. It ends when the queue is
//! empty, so an idle group holds no tokio task.
//!
//! # Runners
//!
//! A runner is spawned with one task that already holds its slots. When the task ends, the
//! pool hands the slots on; if it hands them to the runner's own group, the runner runs that
//! task itself rather than spawning another, so a burst of due tasks under a cap of `k` runs on
//! at most `k` tokio tasks. Before each poll of its task a runner keeps its registration on the
//! group's abort `Notify` current (`crate::cancel::Registration`: a waker comparison) and checks
//! for cancellation (one atomic load: see `crate::cancel` for when it is more).
//!
//! The runner that ends a group's last task makes the group idle under the lock and announces
//! it while carrying out the effects, from inside its last poll: a `wait()` can return while
//! that runner is still handing its slot on and returning. The task's future was dropped
//! before, and nothing after polls a future of the group (see `Group::wait`).

use std::cell::RefCell;
use std::future::poll_fn;
use std::num::NonZeroU64;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use crate::clock::Clock;
use crate::error::CancelledBy;
use crate::id::{self, TaskId};
use crate::observe::{self, TaskSpan};
use crate::pool::{Action, Ran, Started, Step, Wake};
use crate::shared::{Domain, Effects, Shared, lock};
use crate::task::{BoxTask, End, Handed, poll_catching, wake_catching};

/// A spawn to carry out: a runner for a task that holds its slots, or a monitor.
enum Spawn {
    Runner(Arc<Shared>, Started<BoxTask>),
    Monitor(Arc<Shared>),
}

impl Spawn {
    fn run(self) {
        match self {
            Spawn::Runner(shared, task) => {
                let runtime = shared.runtime.clone();
                // Built outside the task, so a runtime that drops the task unpolled still drops
                // the runner, which ends its task and frees its slots.
                let runner = Runner {
                    shared,
                    task: Some(task),
                    span: None,
                };
                drop(runtime.spawn(runner.run()));
            }
            Spawn::Monitor(shared) => {
                let runtime = shared.runtime.clone();
                let guard = Guard {
                    shared,
                    armed: true,
                };
                drop(runtime.spawn(monitor(guard)));
            }
        }
    }
}

thread_local! {
    /// Spawns queued by nested `apply` calls while an outer one carries spawns out.
    static DEFERRED: RefCell<Option<Vec<Spawn>>> = const { RefCell::new(None) };
}

/// Carries out `fx`, the effects of a transition called for the group `own`, and continues
/// handing out slots while they say `more`.
pub(crate) fn apply(own: &Arc<Shared>, fx: Effects) {
    carry_out(&own.domain, Some(own), fx);
}

/// Carries out `fx`, the effects of a limiter's own transition (a change of limit, a freed
/// permit), and continues handing out slots while they say `more`.
pub(crate) fn apply_limiter(domain: &Domain, fx: Effects) {
    carry_out(domain, None, fx);
}

/// The caller of a transition that stopped at its budget goes on, a batch per lock, until the
/// free slots are handed out: without a yield or anything else in between to wait for, so a
/// free slot never waits for a task that may not run again (pool invariant 2).
fn carry_out(domain: &Domain, mut own: Option<&Arc<Shared>>, mut fx: Effects) {
    // Reported once the effects are carried out: a subscriber's time delays no start.
    let adapted = std::mem::take(&mut fx.adapted);
    loop {
        let more = fx.more;
        apply_once(own, fx);
        if !more {
            break;
        }
        // What `resume` starts or wakes is named in `others`, the caller's group included.
        own = None;
        let at = Clock::process().now();
        fx = lock(domain).resume(at);
    }
    if adapted {
        let reports = lock(domain).take_reports();
        reports.iter().for_each(observe::adapted);
    }
}

/// Carries out `fx` once; `own` is the group the transition was called for, if any.
fn apply_once(own: Option<&Arc<Shared>>, mut fx: Effects) {
    // Most schedules, cancels and ends have nothing to do, or only a monitor to wake.
    if fx.starts.is_empty() && fx.others.is_empty() && fx.grants.is_empty() {
        if let Some(shared) = own {
            match fx.wake {
                Wake::Nothing => {}
                Wake::Notify => shared.monitor_wake.notify_one(),
                Wake::Spawn => spawn_all(vec![Spawn::Monitor(shared.clone())]),
            }
            shared.publish();
            shared.announce_if_idle(fx.idle);
        }
        return;
    }
    let mut spawns = Vec::new();
    if let Some(shared) = own {
        match fx.wake {
            Wake::Nothing => {}
            Wake::Notify => shared.monitor_wake.notify_one(),
            Wake::Spawn => spawns.push(Spawn::Monitor(shared.clone())),
        }
        if !fx.starts.is_empty() {
            spawns.extend(
                fx.starts
                    .drain()
                    .map(|task| Spawn::Runner(shared.clone(), task)),
            );
        }
    }
    if !fx.others.is_empty() {
        for (shared, action) in fx.others.drain(..) {
            shared.publish();
            match action {
                Action::Start(task) => spawns.push(Spawn::Runner(shared, task)),
                Action::Wake(Wake::Notify) => shared.monitor_wake.notify_one(),
                Action::Wake(Wake::Spawn) => spawns.push(Spawn::Monitor(shared)),
                Action::Wake(Wake::Nothing) => {}
            }
        }
    }
    // Spawns first: the tasks hold their slots, and must reach a runner whatever a user's
    // waker does below.
    spawn_all(spawns);
    for ticket in std::mem::take(&mut fx.grants) {
        // Release: pairs with the Acquire in `Limiter::acquire`.
        ticket.granted.store(true, Ordering::Release);
        wake_catching(|| ticket.notify.notify_one());
    }
    if let Some(shared) = own {
        shared.publish();
        shared.announce_if_idle(fx.idle);
    }
}

/// Carries out spawns without nesting: see the module docs.
fn spawn_all(mut spawns: Vec<Spawn>) {
    if spawns.is_empty() {
        return;
    }
    let outer = DEFERRED.try_with(|deferred| {
        let mut deferred = deferred.borrow_mut();
        match deferred.as_mut() {
            Some(queue) => {
                queue.append(&mut spawns);
                false
            }
            None => {
                *deferred = Some(Vec::new());
                true
            }
        }
    });
    match outer {
        Ok(false) => return,
        Ok(true) => {}
        // The thread is exiting and its locals are gone (a runtime kept in a thread local is
        // being dropped): the same loop, over a queue shared by such threads.
        Err(_) => return spawn_all_exiting(spawns),
    }
    let _outer = Outer;
    while !spawns.is_empty() {
        spawns.drain(..).for_each(Spawn::run);
        spawns = DEFERRED.with(|deferred| {
            deferred
                .borrow_mut()
                .as_mut()
                .map(std::mem::take)
                .unwrap_or_default()
        });
    }
}

/// Spawns queued by threads whose locals are gone, while one of them carries spawns out.
static EXITING: Mutex<Option<Vec<Spawn>>> = Mutex::new(None);

/// `spawn_all` for a thread whose locals are gone: the queue is shared, so whichever thread
/// got there first carries out the others' spawns too.
fn spawn_all_exiting(mut spawns: Vec<Spawn>) {
    let exiting = || EXITING.lock().unwrap_or_else(PoisonError::into_inner);
    {
        let mut queue = exiting();
        match queue.as_mut() {
            Some(queue) => return queue.append(&mut spawns),
            None => *queue = Some(Vec::new()),
        }
    }
    while !spawns.is_empty() {
        spawns.drain(..).for_each(Spawn::run);
        let mut queue = exiting();
        spawns = queue.as_mut().map(std::mem::take).unwrap_or_default();
        if spawns.is_empty() {
            *queue = None;
        }
    }
}

/// Ends the outermost `spawn_all`, even on unwind.
struct Outer;

impl Drop for Outer {
    fn drop(&mut self) {
        let left = DEFERRED.try_with(|deferred| deferred.borrow_mut().take());
        // Only on unwind is anything left; carry it out rather than lose its slots.
        if let Ok(Some(left)) = left {
            left.into_iter().for_each(Spawn::run);
        }
    }
}

// ===== the monitor =====

/// Cancels the group if the runtime drops the monitor before it exits on its own: the runtime
/// is shutting down, nothing pending can ever run, and `wait()` must not hang.
struct Guard {
    shared: Arc<Shared>,
    armed: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.armed {
            self.shared.cancel_and_drain(true);
        }
    }
}

async fn monitor(mut guard: Guard) {
    let shared = guard.shared.clone();
    // One timer for the monitor's whole life, reset to each new earliest deadline.
    let mut sleep = pin!(sleep_until(Instant::now() + Duration::from_secs(86_400)));
    loop {
        // The token is asked too (its lock, once a step): a panicking waker elsewhere in its
        // tree can keep the hook from hearing of a cancel (`CancelWatch::missed`).
        if shared.cancel.is_cancelled() || shared.cancel.missed() {
            guard.armed = false;
            shared.cancel_and_drain(true);
            return;
        }
        let now = shared.clock.now();
        let (step, fx) = shared.lock().step(shared.id, now);
        apply(&shared, fx);
        match step {
            // A private burst: the next batch after a yield, so it does not hold this worker
            // thread. (A limiter's burst was continued in `apply`, without a yield: groups on
            // other runtimes may be waiting for it.)
            Step::Again => tokio::task::coop::consume_budget().await,
            Step::Park(until) => {
                if let Some(deadline) = until {
                    sleep.as_mut().reset(shared.clock.instant(deadline));
                }
                let mut notified = pin!(shared.monitor_wake.notified());
                poll_fn(|cx| {
                    if notified.as_mut().poll(cx).is_ready()
                        || (until.is_some() && sleep.as_mut().poll(cx).is_ready())
                    {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
            }
            Step::Exit => {
                guard.armed = false;
                return;
            }
        }
    }
}

// ===== runners =====

struct Runner {
    shared: Arc<Shared>,
    /// The task being run, with its id. `Some` except between tasks.
    task: Option<Started<BoxTask>>,
    /// The task's run as reported (see `crate::observe`): `Some` while `task` is, once begun.
    span: Option<TaskSpan>,
}

impl Runner {
    /// Begins the run of the task held: its start time, if the transition that started it had
    /// no fresh reading of the group's clock (`Started::at`), is read now and given to the
    /// history; then the start is reported. Returns its id and the abort count it started at.
    fn begin(&mut self) -> (u64, u64) {
        let shared = &self.shared;
        let started = self
            .task
            .as_mut()
            .expect("a runner always holds a task here");
        let at = match started.at {
            Some(at) => at.get(),
            None => {
                let now = shared.clock.now();
                shared.lock().late_start(shared.id, started.deadline, now);
                started.at = NonZeroU64::new(now);
                now
            }
        };
        self.span = Some(TaskSpan::start(
            shared.name.as_deref(),
            &shared.metrics,
            started.id,
            (started.deadline, at),
            |key| shared.clock.instant(key),
        ));
        (started.id, started.aborts)
    }

    /// Reports the end of the task's run as `how` at `now`, and ends it inside its span (see
    /// [`close`]).
    fn end(&mut self, started: Started<BoxTask>, how: End, now: Option<u64>) -> Effects {
        let shared = &self.shared;
        let Some(span) = self.span.take() else {
            return close(shared, started, how, now);
        };
        let end = now.unwrap_or_else(|| shared.clock.now());
        let run = started.at.map_or(0, |at| end.saturating_sub(at.get()));
        span.end(&shared.metrics, &how, run);
        // The future's `Drop` runs in the span too.
        let _entered = span.enter();
        close(shared, started, how, now)
    }

    async fn run(mut self) {
        let shared = self.shared.clone();
        let tag = shared.tag();
        // Woken on cancellation and on aborts; kept registered with the waker of each poll (in
        // a tokio task that is the same waker, registered once, and again after each abort).
        let mut abort = pin!(shared.cancel.register());
        loop {
            let (id, mut checked) = self.begin();
            let how = poll_fn(|cx| {
                abort.as_mut().keep(cx);
                // Both looked at after registering, so a cancellation or an abort that comes
                // later wakes us. An abort asked for by the handle wins over the group's
                // cancellation that followed it.
                let aborts = shared.aborts.load(Ordering::Acquire);
                if aborts != checked || shared.cancel.is_cancelled() {
                    checked = aborts;
                    if shared.lock().is_aborted(shared.id, id) {
                        return Poll::Ready(End::Cancelled(CancelledBy::Handle));
                    }
                    if shared.cancel.is_cancelled() {
                        return Poll::Ready(End::Cancelled(CancelledBy::Group));
                    }
                }
                let started = self
                    .task
                    .as_mut()
                    .expect("a runner always holds a task here");
                // `task_id()` inside the task, and its span around it.
                let _span = self.span.as_ref().map(TaskSpan::enter);
                let _entered = id::enter(TaskId::new(id), tag);
                match poll_catching(&mut started.task, cx) {
                    Ok(Poll::Ready(())) => Poll::Ready(End::Completed),
                    Ok(Poll::Pending) => Poll::Pending,
                    Err(payload) => Poll::Ready(End::Panicked(payload)),
                }
            })
            .await;
            let started = self.task.take().expect("a runner always holds a task here");
            let now = shared.clock.now();
            let mut fx = self.end(started, how, Some(now));
            // The slots went to this group's next task: run it here.
            let next = fx.starts.take_first();
            apply(&shared, fx);
            match next {
                Some(task) => {
                    self.task = Some(task);
                    // Back-to-back tasks that never yield must not starve the worker thread.
                    tokio::task::coop::consume_budget().await;
                }
                None => return,
            }
        }
    }
}

/// Ends a task that ran (or was about to) as `how`: drops its future, which sees its own id in
/// `task_id()`, and settles its result (`Task::end`); counts the end, which frees its slots
/// (the effects, to carry out, are returned); and then tells whoever awaits it, and corrects
/// the count by what that showed (`Task::deliver`, `Pool::handed`). The requester hears after
/// the group counted the end, and before `wait()` can return (`Shared`'s invariant 3); `now`,
/// if known, was read on the group's runtime.
fn close(
    shared: &Arc<Shared>,
    mut started: Started<BoxTask>,
    how: End,
    now: Option<u64>,
) -> Effects {
    let _entered = id::enter(TaskId::new(started.id), shared.tag());
    let outcome = started.task.as_mut().end(started.id, how);
    let awaited = started.task.awaited();
    let deferred = started.task.hands_panic();
    if awaited {
        shared.delivering();
    }
    let at = now.unwrap_or_else(|| shared.at());
    let ran = Ran {
        id: started.id,
        at: started.at.map(NonZeroU64::get),
        overload: started.task.overloaded(),
    };
    let fx = shared
        .lock()
        .finish(shared.id, ran, outcome, deferred, now, at);
    if awaited {
        let handed = started.task.deliver(started.id);
        if handed != Handed::Nothing {
            shared.lock().handed(shared.id, started.id, handed);
        }
        shared.delivered(1);
    }
    fx
}

impl Drop for Runner {
    /// The runtime dropped the runner mid-task, or never ran it: it is shutting down, so
    /// nothing of this group can run any more. The group is cancelled first, as when the
    /// runtime drops its monitor, so that a task whose `Drop` schedules a retry is refused
    /// rather than started and dropped again for ever; then the task is cancelled and its
    /// slots handed on.
    fn drop(&mut self) {
        if let Some(started) = self.task.take() {
            self.shared.cancel_and_drain(false);
            // A task its handle asked to stop says so, whoever stopped it first.
            let by = if self.shared.lock().is_aborted(self.shared.id, started.id) {
                CancelledBy::Handle
            } else {
                CancelledBy::Group
            };
            let fx = self.end(started, End::Cancelled(by), None);
            apply(&self.shared, fx);
        }
    }
}
