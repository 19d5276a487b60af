//! A scheduled future as the queue stores it (inline, or boxed if large) and as a runner
//! polls it (boxed), and the panic-catching wrappers the runner polls and drops it through.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

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
    /// A started future whose output nobody awaits: the output is dropped as it ends.
    struct Run<F> {
        #[pin]
        future: F,
    }
}

/// The object-safe face of a started task.
pub(crate) trait Task: Send {
    fn poll_task(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;

    /// Drops the future (a panic in its `Drop` is caught), then tells whoever awaits task `id`
    /// how it ended. Returns how the task counts.
    fn end(self: Pin<Box<Self>>, id: u64, end: End) -> Outcome;
}

impl<F: Future + Send> Task for Run<F> {
    /// Polls the future; its output, if any, is dropped here, inside the runner's
    /// `catch_unwind` (a panicking `Drop` of the output makes the task a panicked one).
    fn poll_task(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().future.poll(cx).map(drop)
    }

    fn end(self: Pin<Box<Self>>, _id: u64, end: End) -> Outcome {
        let dropped = drop_caught(self);
        let outcome = counted(&end, dropped.is_ok());
        if let Err(payload) = dropped {
            drop_payload(payload);
        }
        if let End::Panicked(payload) = end {
            drop_payload(payload);
        }
        outcome
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
{
    Box::pin(Run { future })
}

/// A value the group's queue stores for a task.
pub(crate) trait Stored: Pending<BoxTask> + Sized {
    /// Drops the task, scheduled into a cancelled group as task `id`, and tells whoever awaits
    /// it; outside any task, as far as [`task_id`](crate::task_id) says.
    fn refuse(self, id: u64) {
        end_unstarted(id, self.start(), CancelledBy::Group);
    }
}

/// A pending future stored in its type's slab; boxed only when it leaves the queue.
pub(crate) struct Inline<F>(pub(crate) F);

impl<F: Future + Send + 'static> Pending<BoxTask> for Inline<F> {
    fn start(self) -> BoxTask {
        boxed(self.0)
    }
}

impl<F: Future + Send + 'static> Stored for Inline<F> {
    /// Nobody awaits it: dropped as stored, not boxed only to be dropped.
    fn refuse(self, _id: u64) {
        let _outside = crate::id::outside();
        drop_catching(self);
    }
}

/// A pending task too large to store inline ([`INLINE_MAX`]), boxed when scheduled.
pub(crate) struct Boxed(BoxTask);

impl Boxed {
    pub(crate) fn new<F: Future + Send + 'static>(future: F) -> Self {
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
/// cancelled it), and whoever awaits it is told `by`.
pub(crate) fn end_unstarted(id: u64, task: BoxTask, by: CancelledBy) {
    let _outside = crate::id::outside();
    task.end(id, End::Cancelled(by));
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
