//! A scheduled future in its box, with the queue stamp in the same allocation, and the
//! panic-catching wrappers the runner polls and drops it through.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::queue::{Stamp, Stamped};

pin_project_lite::pin_project! {
    /// A user future and its queue stamp. Keeping the stamp here rather than in the slab slot
    /// keeps the slot at 16 bytes; for small futures the box stays in the same allocator size
    /// class either way.
    struct TaskCell<F> {
        stamp: Stamp,
        #[pin]
        future: F,
    }
}

/// The object-safe face of a [`TaskCell`].
pub(crate) trait Task: Send {
    fn poll_task(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
    fn stamp(&self) -> Stamp;
    fn set_stamp(self: Pin<&mut Self>, stamp: Stamp);
}

impl<F: Future + Send> Task for TaskCell<F> {
    /// Polls the future; its output, if any, is dropped here, inside the runner's
    /// `catch_unwind` (a panicking `Drop` of the output makes the task a panicked one).
    fn poll_task(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().future.poll(cx).map(drop)
    }

    fn stamp(&self) -> Stamp {
        self.stamp
    }

    fn set_stamp(self: Pin<&mut Self>, stamp: Stamp) {
        *self.project().stamp = stamp;
    }
}

/// A type-erased, boxed task as the queue stores it.
pub(crate) type BoxTask = Pin<Box<dyn Task>>;

/// Boxes `future` for the queue.
pub(crate) fn boxed<F>(future: F) -> BoxTask
where
    F: Future + Send + 'static,
{
    Box::pin(TaskCell {
        stamp: Stamp::default(),
        future,
    })
}

impl Stamped for BoxTask {
    fn stamp(&self) -> Stamp {
        (**self).stamp()
    }

    fn set_stamp(&mut self, stamp: Stamp) {
        self.as_mut().set_stamp(stamp);
    }
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Panicked,
    Cancelled,
}

/// Polls `task` once, turning a panic into `Err(())`.
pub(crate) fn poll_catching(task: &mut BoxTask, cx: &mut Context<'_>) -> Result<Poll<()>, ()> {
    catch_unwind(AssertUnwindSafe(|| task.as_mut().poll_task(cx))).map_err(drop_payload)
}

/// Drops the future of a task cancelled before it started (by its handle, by a cancelled
/// group's drain, or refused by a cancelled group), catching a panic from its `Drop`; outside
/// any task, as far as [`task_id`](crate::task_id) says, even when another task's poll
/// cancelled it. Returns `false` if it panicked.
pub(crate) fn drop_unstarted(task: BoxTask) -> bool {
    let _outside = crate::id::outside();
    drop_catching(task)
}

/// Drops `value`, catching a panic from its `Drop`. Returns `false` if it panicked. The panic
/// hook has already reported the panic; the group goes on.
pub(crate) fn drop_catching<T>(value: T) -> bool {
    catch_unwind(AssertUnwindSafe(move || drop(value)))
        .map_err(drop_payload)
        .is_ok()
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
