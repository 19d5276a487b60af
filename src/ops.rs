//! The group's operations that change the protocol: each calls one transition of the pool
//! under its lock and carries out the effects after unlocking.

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use crate::driver::apply;
use crate::queue::{Key, Pending, Prepared};
use crate::shared::Shared;
use crate::task::{BoxTask, Boxed, INLINE_MAX, Inline, drop_unstarted};
use crate::throttle::{Throttle, ThrottleOutcome, ThrottleState};

impl Shared {
    /// Adds `future` at `deadline`, stored inline unless it is larger than [`INLINE_MAX`];
    /// drops it instead if the group is cancelled.
    pub(crate) fn schedule<F: Future + Send + 'static>(
        self: &Arc<Self>,
        deadline: u64,
        future: F,
    ) -> Key {
        // Constant for each `F`: the compiler keeps one branch.
        if std::mem::size_of::<F>() <= INLINE_MAX {
            self.store(deadline, Inline(future))
        } else {
            self.store(deadline, Boxed::new(future))
        }
    }

    /// Adds `task` at `deadline`; drops it instead if the group is cancelled.
    fn store<V: Pending<BoxTask>>(self: &Arc<Self>, deadline: u64, task: V) -> Key {
        let at = self.at();
        let mut pool = self.lock();
        let mut spare = None;
        if let Some(reserve) = pool.lane_wanted::<V>(self.id) {
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
                if let Some(fx) = fx {
                    apply(self, fx);
                }
                key
            }
            Err((key, task)) => {
                self.reject(task);
                key
            }
        }
    }

    /// Removes the pending task `key` and drops its future. `false` if it was not pending.
    pub(crate) fn cancel_task(self: &Arc<Self>, key: Key) -> bool {
        let at = self.at();
        let removed = self.lock().cancel_task(self.id, key, at);
        let Some((task, fx)) = removed else {
            return false;
        };
        if let Some(fx) = fx {
            apply(self, fx);
        }
        drop_unstarted(task);
        self.settle_cancelled(1);
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
        old != limit
    }

    /// Replaces the throttle; `ceiling: None` means the cap now.
    pub(crate) fn set_throttle(&self, throttle: Throttle) {
        self.lock().set_group_throttle(self.id, throttle);
    }

    /// Steps the cap with the throttle; raising it starts waiting due tasks.
    pub(crate) fn throttle(
        self: &Arc<Self>,
        step: fn(&mut ThrottleState, usize, Instant) -> ThrottleOutcome,
    ) -> ThrottleOutcome {
        let now = Instant::now();
        let at = self.at();
        let (outcome, fx) = self.lock().throttle_group(self.id, step, now, at);
        apply(self, fx);
        outcome
    }
}
