//! The group's operations that change the protocol: each calls one transition of the pool
//! under its lock and carries out the effects after unlocking.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use crate::adaptive::Adaptive;
use crate::driver::apply;
use crate::error::CancelledBy;
use crate::observe::{self, Owner};
use crate::output::{Awaited, Sink};
use crate::queue::{Key, Prepared};
use crate::shared::Shared;
use crate::task::{Boxed, INLINE_MAX, Inline, Stored, end_unstarted, wake_catching};
use crate::throttle::{Throttle, ThrottleOutcome, ThrottleState};

impl Shared {
    /// Adds `future` at `deadline`, stored inline unless it is larger than [`INLINE_MAX`];
    /// drops it instead if the group is cancelled.
    pub(crate) fn schedule<F>(self: &Arc<Self>, deadline: u64, future: F) -> Key
    where
        F: Future + Send + 'static,
        F::Output: Send,
    {
        // Constant for each `F`: the compiler keeps one branch.
        if std::mem::size_of::<F>() <= INLINE_MAX {
            self.store(deadline, Inline(future))
        } else {
            self.store(deadline, Boxed::new(future))
        }
    }

    /// Adds `future` at `deadline`, its result to go to `sink`; stored inline unless it is
    /// larger than [`INLINE_MAX`]. If the group is cancelled, the future is dropped and
    /// `sink` told so.
    pub(crate) fn schedule_awaited<F, S>(self: &Arc<Self>, deadline: u64, future: F, sink: S) -> Key
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
        S: Sink<F::Output>,
    {
        let task = Awaited { future, sink };
        if std::mem::size_of::<F>() <= INLINE_MAX {
            self.store(deadline, task)
        } else {
            self.store(deadline, Boxed::task(task.boxed()))
        }
    }

    /// Adds `task` at `deadline`; refuses it instead if the group is cancelled.
    fn store<V: Stored>(self: &Arc<Self>, deadline: u64, task: V) -> Key {
        let at = self.at();
        let mut pool = self.lock();
        let mut spare = None;
        // (A group without a reserve makes a lane under the lock, in `schedule`.)
        let wanted = if self.reserves {
            pool.lane_wanted::<V>(self.id)
        } else {
            None
        };
        if let Some(reserve) = wanted {
            // The first task of its type in a group with a reserve: the type's lane, whose
            // room is written now, is made outside the lock (which a limiter shares).
            drop(pool);
            let lane = Prepared::new::<V>(reserve);
            pool = self.lock();
            spare = pool.install(self.id, lane);
        }
        let result = pool.schedule(self.id, deadline, task, self.cancel.is_cancelled(), at);
        drop(pool);
        drop(spare);
        match result {
            Ok((key, fx)) => {
                match fx {
                    Some(fx) => apply(self, fx),
                    None => self.publish(),
                }
                key
            }
            Err((key, task)) => {
                let ended = task.refuse(key.id());
                self.settle_cancelled(1, ended.map(|task| (key.id(), task)));
                key
            }
        }
    }

    /// Cancels the task `key`: if it is pending, removes it and drops its future; if it is
    /// running and `running` is set, asks it to stop and wakes the runners. `false` if it had
    /// ended (or started, without `running`), or was asked to stop before.
    pub(crate) fn cancel_task(self: &Arc<Self>, key: Key, running: bool) -> bool {
        let at = self.at();
        let mut pool = self.lock();
        let removed = pool.cancel_task(self.id, key, at);
        let Some((task, fx)) = removed else {
            let aborted = if running {
                pool.abort(self.id, key.id())
            } else {
                None
            };
            let Some(aborts) = aborted else {
                return false;
            };
            // (Counted when the runner ends it: nothing to publish yet.)
            // Published under the lock, so that the count a runner reads never runs ahead
            // of the requests it stands for (see `cancel::Registration::keep`).
            self.aborts.store(aborts, Ordering::Release);
            drop(pool);
            wake_catching(|| self.cancel.wake_runners());
            return true;
        };
        drop(pool);
        if let Some(fx) = fx {
            apply(self, fx);
        }
        let ended = end_unstarted(key.id(), task, CancelledBy::Handle);
        self.settle_cancelled(1, ended.map(|task| (key.id(), task)));
        true
    }

    /// Moves the pending task `key` to `deadline`. `false` if it was not pending.
    pub(crate) fn reschedule(self: &Arc<Self>, key: Key, deadline: u64) -> bool {
        let at = self.at();
        let moved = self.lock().reschedule(self.id, key, deadline, at);
        match moved {
            None => false,
            Some(fx) => {
                if let Some(fx) = fx {
                    apply(self, fx);
                }
                true
            }
        }
    }

    /// Sets the cap. Returns `true` if it changed.
    pub(crate) fn set_limit(self: &Arc<Self>, limit: usize) -> bool {
        let at = self.at();
        let (old, fx) = self.lock().set_group_limit(self.id, limit, at);
        apply(self, fx);
        observe::limit_set(Owner::Group(self.name.as_deref()), old, limit);
        old != limit
    }

    /// Sets or removes the controller of the cap.
    pub(crate) fn set_adaptive(self: &Arc<Self>, adaptive: Option<Adaptive>) {
        let now = self.clock.now();
        let at = self.at();
        let name = self.name.as_deref().map(Arc::from);
        let (from, to, fx) =
            self.lock()
                .set_group_adaptive(self.id, adaptive.map(|a| (a, name)), now, at);
        apply(self, fx);
        observe::limit_set(Owner::Group(self.name.as_deref()), from, to);
    }

    /// Overload was signalled: the cap's controller and the limiter's hear of it.
    pub(crate) fn overloaded(self: &Arc<Self>) {
        let now = self.clock.now();
        let at = self.at();
        // From inside a task, under which limits it started tells which it speaks of.
        let caller = crate::id::current();
        let fx = self.lock().overloaded(self.id, now, at, caller);
        apply(self, fx);
    }

    /// Replaces the throttle; `ceiling: None` means the cap now.
    pub(crate) fn set_throttle(&self, throttle: Throttle) {
        self.lock().set_group_throttle(self.id, throttle);
    }

    /// Steps the cap with the throttle, `up` or down; raising it starts waiting due tasks.
    pub(crate) fn throttle(self: &Arc<Self>, up: bool) -> ThrottleOutcome {
        let step = if up {
            ThrottleState::up
        } else {
            ThrottleState::down
        };
        let now = Instant::now();
        let at = self.at();
        let (outcome, fx) = self.lock().throttle_group(self.id, step, now, at);
        apply(self, fx);
        observe::throttled(Owner::Group(self.name.as_deref()), up, &outcome);
        outcome
    }
}
