//! A scheduled future in its box, with the queue stamp in the same allocation, and the
//! panic-catching wrappers the runner polls and drops it through.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

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

impl<F: Future<Output = ()> + Send> Task for TaskCell<F> {
    fn poll_task(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().future.poll(cx)
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
    F: Future<Output = ()> + Send + 'static,
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
    catch_unwind(AssertUnwindSafe(|| task.as_mut().poll_task(cx))).map_err(drop)
}

/// Drops `value`, catching a panic from its `Drop`. Returns `false` if it panicked. The panic
/// hook has already reported the panic; the group goes on.
pub(crate) fn drop_catching<T>(value: T) -> bool {
    catch_unwind(AssertUnwindSafe(move || drop(value))).is_ok()
}

/// Wakes someone through `wake`, which may call a user's waker (an `acquire()`, a `wait()` or
/// a `cancelled()` polled by another executor): a waker that panics is that executor's bug,
/// and must not cut short the bookkeeping around the call. The panic is caught (the panic
/// hook has reported it) and dropped; everyone else is still woken.
pub(crate) fn wake_catching(wake: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(wake)) {
        drop_catching(payload);
    }
}
