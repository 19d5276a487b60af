//! A scheduled future as the queue stores it (inline, or boxed if large) and as a runner
//! polls it (boxed), and the panic-catching wrappers the runner polls and drops it through.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker, ready};

use crate::error::CancelledBy;
use crate::queue::Pending;

/// Futures larger than this are boxed when scheduled rather than stored in their type's slab:
/// a slab slot is as large as the future, and a vacant slot in the middle of a slab keeps its
/// size until the slab is trimmed, while a boxed future's slot is 24 bytes.
pub(crate) const INLINE_MAX: usize = 256;

/// A caught panic's payload.
pub(crate) type Payload = Box<dyn Any + Send>;

/// How a task ended, as its runner or its canceller saw it: what its requester is told.
pub(crate) enum End {
    /// The future returned.
    Completed,
    /// The future panicked in `poll`.
    Panicked(Payload),
    /// It was cancelled before it started, or stopped while it ran.
    Cancelled(CancelledBy),
}

pin_project_lite::pin_project! {
    /// A started future, and then what it returned: the future is dropped in place, inside
    /// the poll that returned (or when the task ends another way), so that nothing it holds
    /// outlives the task's end, while the task's box lives on until its result is delivered.
    #[project = StageProj]
    #[project_replace = StageOwn]
    pub(crate) enum Stage<F: Future> {
        Running {
            #[pin]
            future: F,
        },
        Ended {
            output: Option<F::Output>,
        },
    }
}

impl<F: Future> Stage<F> {
    /// Polls the future; once it returns, drops it and keeps the output if `keep`, else drops
    /// that too. Both drops happen here, inside the runner's `catch_unwind`: a panic in either
    /// makes the task a panicked one. `Ready` at once if it has ended.
    pub(crate) fn poll_stage(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        keep: bool,
    ) -> Poll<()> {
        let StageProj::Running { future } = self.as_mut().project() else {
            return Poll::Ready(());
        };
        let output = ready!(future.poll(cx));
        if keep {
            // On a panic in the future's `Drop`, the output is in place all the same.
            self.project_replace(Stage::Ended {
                output: Some(output),
            });
        } else {
            self.project_replace(Stage::Ended { output: None });
            drop(output);
        }
        Poll::Ready(())
    }

    /// Drops the future if it is still there, catching a panic from its `Drop`, and takes
    /// the output, if it was kept.
    pub(crate) fn finish(mut self: Pin<&mut Self>) -> (Result<(), Payload>, Option<F::Output>) {
        let dropped = match self.as_mut().project() {
            StageProj::Running { .. } => catch_unwind(AssertUnwindSafe(|| {
                self.as_mut().project_replace(Stage::Ended { output: None });
            })),
            StageProj::Ended { .. } => Ok(()),
        };
        let output = match self.project() {
            StageProj::Ended { output } => output.take(),
            StageProj::Running { .. } => None,
        };
        (dropped, output)
    }
}

pin_project_lite::pin_project! {
    /// A started task whose output nobody awaits: the output is dropped as it ends.
    struct Run<F: Future> {
        #[pin]
        stage: Stage<F>,
    }
}

/// The object-safe face of a started task.
///
/// A task ends in two steps, so that whoever awaits it hears of the end only once the group
/// has counted it (its `stats()`, `is_finished()` and `cancel()` agree with what the requester
/// was told) and before `wait()` can return: [`end`](Task::end) drops the future and settles
/// the result; the caller records the end under the group's lock, unlocks, and then calls
/// [`deliver`](Task::deliver).
pub(crate) trait Task: Send {
    fn poll_task(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;

    /// Drops the future (a panic in its `Drop` is caught) and settles the result of task `id`,
    /// which ended as `end`. Returns how the task counts.
    fn end(self: Pin<&mut Self>, id: u64, end: End) -> Outcome;

    /// Whether the result is to be delivered (someone may await it); if not, `deliver` only
    /// frees the task.
    fn awaited(&self) -> bool {
        false
    }

    /// Whether the result settled by `end` is a panic on its way to a requester: counted as
    /// panicked, and reported by `wait()` only if the delivery shows nobody took it. Asked
    /// after `end`.
    fn hands_panic(&self) -> bool {
        false
    }

    /// Whether the output settled by `end` was classified as overload (see
    /// [`Results::overload_when`](crate::Results::overload_when)). Asked after `end`.
    fn overloaded(&self) -> bool {
        false
    }

    /// Hands the result settled by `end` to whoever awaits the task. Returns what the group
    /// must correct in how it counted the task, now that it knows whether the requester took
    /// the result.
    fn deliver(self: Pin<Box<Self>>, id: u64) -> Handed;
}

/// What delivering a result showed, for the group's counters (`Pool::handed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handed {
    /// Nothing to correct.
    Nothing,
    /// The requester took the panic the task ended with: reported there, not by `wait()`.
    PanicTaken,
    /// Nobody took the panic the task ended with (its requester was gone): `wait()` reports
    /// it, as it does a panic nobody waited for.
    PanicUntaken,
}

impl<F> Task for Run<F>
where
    F: Future + Send,
    F::Output: Send,
{
    fn poll_task(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().stage.poll_stage(cx, false)
    }

    fn end(self: Pin<&mut Self>, _id: u64, end: End) -> Outcome {
        let (dropped, _) = self.project().stage.finish();
        let outcome = counted(&end, dropped.is_ok());
        if let Err(payload) = dropped {
            drop_payload(payload);
        }
        if let End::Panicked(payload) = end {
            drop_payload(payload);
        }
        outcome
    }

    /// Nothing is left but the box: the future and its output are gone.
    fn deliver(self: Pin<Box<Self>>, _id: u64) -> Handed {
        Handed::Nothing
    }
}

/// How a task counts, given how it ended and whether its future's `Drop` returned: a panic in
/// the `Drop` of a future that had returned makes the task a panicked one.
pub(crate) fn counted(end: &End, dropped: bool) -> Outcome {
    match end {
        End::Completed if dropped => Outcome::Completed,
        End::Completed | End::Panicked(_) => Outcome::Panicked,
        End::Cancelled(_) => Outcome::Cancelled,
    }
}

/// A type-erased, boxed task as a runner polls it.
pub(crate) type BoxTask = Pin<Box<dyn Task>>;

/// Boxes `future` for a runner.
fn boxed<F>(future: F) -> BoxTask
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    Box::pin(Run {
        stage: Stage::Running { future },
    })
}

/// A value the group's queue stores for a task.
pub(crate) trait Stored: Pending<BoxTask> + Sized {
    /// Drops the task, scheduled into a cancelled group as task `id` (outside any task, as far
    /// as [`task_id`](crate::task_id) says). Returns it if its result is to be delivered once
    /// the group has counted it.
    fn refuse(self, id: u64) -> Option<BoxTask> {
        end_unstarted(id, self.start(), CancelledBy::Group)
    }
}

/// A pending future stored in its type's slab; boxed only when it leaves the queue.
pub(crate) struct Inline<F>(pub(crate) F);

impl<F> Pending<BoxTask> for Inline<F>
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    fn start(self) -> BoxTask {
        boxed(self.0)
    }
}

impl<F> Stored for Inline<F>
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    /// Nobody awaits it: dropped as stored, not boxed only to be dropped.
    fn refuse(self, _id: u64) -> Option<BoxTask> {
        let _outside = crate::id::outside();
        drop_catching(self);
        None
    }
}

/// A pending task too large to store inline ([`INLINE_MAX`]), boxed when scheduled.
pub(crate) struct Boxed(BoxTask);

impl Boxed {
    pub(crate) fn new<F>(future: F) -> Self
    where
        F: Future + Send + 'static,
        F::Output: Send,
    {
        Self(boxed(future))
    }

    /// Any task, boxed already.
    pub(crate) fn task(task: BoxTask) -> Self {
        Self(task)
    }
}

impl Pending<BoxTask> for Boxed {
    fn start(self) -> BoxTask {
        self.0
    }
}

impl Stored for Boxed {}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Panicked,
    Cancelled,
}

/// Polls `task` once, turning a panic into `Err(payload)`.
pub(crate) fn poll_catching(task: &mut BoxTask, cx: &mut Context<'_>) -> Result<Poll<()>, Payload> {
    catch_unwind(AssertUnwindSafe(|| task.as_mut().poll_task(cx)))
}

/// Ends task `id`, cancelled before it started (by its handle, by a cancelled group's drain,
/// or refused by a cancelled group): its future is dropped, catching a panic from its `Drop`,
/// outside any task as far as [`task_id`](crate::task_id) says (even when another task's poll
/// cancelled it). Returns the task if whoever awaits it is to be told `by`, with
/// [`deliver_unstarted`], once the group has counted it; `None` if nobody awaits it (it is
/// gone).
pub(crate) fn end_unstarted(id: u64, mut task: BoxTask, by: CancelledBy) -> Option<BoxTask> {
    let _outside = crate::id::outside();
    if !task.awaited() {
        // Nobody to tell: the box goes with the future, in one drop.
        drop_catching(task);
        return None;
    }
    task.as_mut().end(id, End::Cancelled(by));
    Some(task)
}

/// Tells whoever awaits task `id`, ended by [`end_unstarted`], that it was cancelled (which
/// leaves nothing for the group to correct).
pub(crate) fn deliver_unstarted(id: u64, task: BoxTask) {
    let _outside = crate::id::outside();
    let _ = task.deliver(id);
}

/// Drops `value`, catching a panic from its `Drop`. Returns `false` if it panicked. The panic
/// hook has already reported the panic; the group goes on.
pub(crate) fn drop_catching<T>(value: T) -> bool {
    drop_caught(value).map_err(drop_payload).is_ok()
}

/// Drops `value`, catching a panic from its `Drop` and returning its payload.
pub(crate) fn drop_caught<T>(value: T) -> Result<(), Payload> {
    catch_unwind(AssertUnwindSafe(move || drop(value)))
}

/// How many panic payloads in a row [`drop_payload`] drops before it gives up on the chain.
const PAYLOAD_DROPS: usize = 16;

/// Drops a caught panic payload without letting a panic escape.
///
/// A payload is user data and its `Drop` may panic too, with a payload whose `Drop` may panic,
/// and so on: each is dropped under `catch_unwind` in turn, in a loop rather than by recursion.
/// A chain still going after [`PAYLOAD_DROPS`] payloads is cut off: the last payload is leaked
/// (`mem::forget`), since dropping it could panic for ever.
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    let mut payload = payload;
    for _ in 0..PAYLOAD_DROPS {
        match catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => payload = next,
        }
    }
    std::mem::forget(payload);
}

/// Wakes someone through `wake`, which may call a user's waker (an `acquire()`, a `wait()` or
/// a `cancelled()` polled by another executor): a waker that panics is that executor's bug,
/// and must not cut short the bookkeeping around the call. The panic is caught (the panic
/// hook has reported it) and dropped. (A batch wake, `notify_waiters`, would still drop the
/// rest of its batch at a panicking waker: `wait()` registers through [`catching`] for that.)
pub(crate) fn wake_catching(wake: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(wake)) {
        drop_payload(payload);
    }
}

/// A waker that wakes `waker` inside `catch_unwind`: for futures the crate polls on a caller's
/// behalf and that tokio may wake in a batch with others' (`Notify::notify_waiters`), so that a
/// caller whose waker panics cannot keep the rest of the batch from being woken.
pub(crate) fn catching(waker: &Waker) -> Waker {
    Waker::from(Arc::new(Catching(waker.clone())))
}

struct Catching(Waker);

impl Wake for Catching {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        wake_catching(|| self.0.wake_by_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Panics when dropped with another `Chain`, `depth` more times.
    struct Chain(usize, Arc<AtomicUsize>);

    impl Drop for Chain {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
            if self.0 > 0 {
                std::panic::panic_any(Chain(self.0 - 1, self.1.clone()));
            }
        }
    }

    #[test]
    fn item3_payload_chains_are_dropped_in_full_up_to_the_bound_and_cut_off_beyond() {
        let n = PAYLOAD_DROPS;
        for (depth, payloads) in [
            (0, 0),
            (1, 1),
            (n - 1, n - 1),
            (n, n),
            (n + 1, n),
            (usize::MAX, n),
        ] {
            let drops = Arc::new(AtomicUsize::new(0));
            assert_eq!(drop_catching(Chain(depth, drops.clone())), depth == 0);
            // The value itself, then the payloads its drop panicked with.
            assert_eq!(drops.load(Ordering::SeqCst), 1 + payloads, "depth {depth}");
        }
    }
}
