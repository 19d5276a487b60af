//! Runners: the tokio tasks that run started tasks.
//!
//! A runner is spawned with one task that already holds a slot of the cap. When that task ends
//! it takes the next due task from the queue itself, keeping the slot, and only exits (freeing
//! the slot) when nothing startable is due. So with a cap of `k`, a burst of due tasks runs on at
//! most `k` tokio tasks, and a due task beyond the cap waits in the queue, not as a parked tokio
//! task.
//!
//! A runner registers once on the group's abort `Notify` and then checks the group's
//! cancellation flag (one atomic load) before its task on every poll: a cancelled group's
//! running tasks are dropped at their next wake-up, and a task handed over just as the group
//! was cancelled is dropped without being polled.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use crate::shared::Shared;
use crate::task::{BoxTask, Outcome, drop_catching, poll_catching};

/// Spawns a runner for `task`, which holds a slot.
pub(crate) fn spawn(shared: &Arc<Shared>, task: BoxTask) {
    let runner = Runner {
        shared: shared.clone(),
        task: Some(task),
    };
    drop(shared.runtime().spawn(runner.run()));
}

struct Runner {
    shared: Arc<Shared>,
    /// The task being run. `Some` except between tasks.
    task: Option<BoxTask>,
}

impl Runner {
    async fn run(mut self) {
        let shared = self.shared.clone();
        // Registered with this task's waker on the first poll, and never re-polled: the waker
        // of one tokio task does not change, so the registration stays good for the runner's
        // life. Being woken by it is only a reason to look at the flag.
        let mut abort = pin!(shared.cancel.abort().notified());
        let mut registered = false;
        loop {
            let outcome = poll_fn(|cx| {
                if !registered {
                    let _ = abort.as_mut().poll(cx);
                    registered = true;
                }
                // Checked after registering, so a cancellation that comes later wakes us.
                if shared.cancel.is_cancelled() {
                    return Poll::Ready(Outcome::Cancelled);
                }
                let task = self
                    .task
                    .as_mut()
                    .expect("a runner always holds a task here");
                match poll_catching(task, cx) {
                    Ok(Poll::Ready(())) => Poll::Ready(Outcome::Completed),
                    Ok(Poll::Pending) => Poll::Pending,
                    Err(()) => Poll::Ready(Outcome::Panicked),
                }
            })
            .await;
            let outcome = end(self.task.take(), outcome);
            match shared.finish(outcome, Some(shared.clock.now())) {
                Some(next) => {
                    self.task = Some(next);
                    // Back-to-back tasks that never yield must not starve the worker thread.
                    tokio::task::coop::consume_budget().await;
                }
                None => return,
            }
        }
    }
}

/// Drops a finished task's future; a panic in its `Drop` makes a completed task a panicked one.
fn end(task: Option<BoxTask>, outcome: Outcome) -> Outcome {
    match (drop_catching(task), outcome) {
        (false, Outcome::Completed) => Outcome::Panicked,
        (_, outcome) => outcome,
    }
}

impl Drop for Runner {
    /// The runtime dropped the runner mid-task (it is shutting down): the task is cancelled.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            let outcome = end(Some(task), Outcome::Cancelled);
            self.shared.finish(outcome, None);
        }
    }
}
