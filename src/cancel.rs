//! Watching the group's cancellation token without a task, and without its lock on hot paths.
//!
//! `CancellationToken::is_cancelled` takes the token's mutex, and polling its `cancelled()`
//! future takes that and a `Notify`'s. Every schedule checking the token, and every runner
//! polling it beside its task, would make all of a group's threads contend on the token's locks.
//!
//! Instead the group keeps an [`AtomicBool`] that mirrors the token, and a `Notify` on which
//! runners register once. The mirror is set by a *hook*: the token's `cancelled_owned()`
//! future, polled once when the group is built with a waker of our own and then kept. When the
//! token is cancelled (directly, or through a parent), tokio-util calls `notify_waiters` after
//! marking it cancelled and releasing its lock, which calls our waker on the cancelling thread,
//! before `cancel()` returns. The waker sets the mirror and wakes the runners and the monitor.
//!
//! So `flag == true` exactly from the moment the token's cancellation is visible to the thread
//! that cancelled it, and every runner that reads `false` is registered to be woken afterwards.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Wake, Waker};

use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The group's view of its token.
#[derive(Debug)]
pub(crate) struct CancelWatch {
    token: CancellationToken,
    /// Mirrors `token.is_cancelled()`, without its lock. Written with `Release` after the token
    /// is marked, read with `Acquire`, so a reader that sees `true` also sees what the canceller
    /// did before cancelling.
    flag: AtomicBool,
    /// Runners register here once, and are woken when the flag is set.
    abort: Notify,
    /// The registered `cancelled_owned()` future; `None` once it fired. Locked only to arm it.
    hook: Mutex<Option<Pin<Box<WaitForCancellationFutureOwned>>>>,
}

impl CancelWatch {
    pub(crate) fn new(token: CancellationToken) -> Self {
        Self {
            token,
            flag: AtomicBool::new(false),
            abort: Notify::new(),
            hook: Mutex::new(None),
        }
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Whether the group is cancelled. One atomic load.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Where runners register to be woken on cancellation.
    pub(crate) fn abort(&self) -> &Notify {
        &self.abort
    }

    /// Sets the flag and wakes the runners. Returns `true` the first time. The caller cancels
    /// the token after whatever must follow the flag.
    pub(crate) fn mark(&self) -> bool {
        let first = !self.flag.swap(true, Ordering::AcqRel);
        if first {
            self.abort.notify_waiters();
        }
        first
    }
}

/// What the hook needs of the group it watches for.
pub(crate) trait Watched: Send + Sync + 'static {
    fn watch(&self) -> &CancelWatch;
    /// The token was cancelled and the flag is set: called once, on the cancelling thread.
    fn on_cancelled(&self);
}

/// The waker the token wakes.
pub(crate) struct Hook<S>(Weak<S>);

impl<S: Watched> Wake for Hook<S> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(shared) = self.0.upgrade() {
            arm(&shared, self.clone());
        }
    }
}

/// Registers the hook on the group's token, or, if the token is cancelled, marks the group.
/// Called once when the group is built, and again by the hook itself each time it is woken (a
/// wake without cancellation only re-registers).
pub(crate) fn arm<S: Watched>(shared: &Arc<S>, hook: Arc<Hook<S>>) {
    let watch = shared.watch();
    let mut slot = watch.hook.lock().unwrap_or_else(PoisonError::into_inner);
    if slot.is_none() && !watch.is_cancelled() {
        *slot = Some(Box::pin(watch.token.clone().cancelled_owned()));
    }
    let fired = match slot.as_mut() {
        Some(future) => {
            let waker = Waker::from(hook);
            future
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
        }
        None => false,
    };
    if fired {
        *slot = None;
    }
    drop(slot);
    if fired && watch.mark() {
        shared.on_cancelled();
    }
}

/// Arms a new group's hook.
pub(crate) fn watch<S: Watched>(shared: &Arc<S>) {
    arm(shared, Arc::new(Hook(Arc::downgrade(shared))));
}
