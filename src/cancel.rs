//! Watching the group's cancellation token without a task, and without its lock on hot paths.
//!
//! `CancellationToken::is_cancelled` takes the token's mutex, and polling its `cancelled()`
//! future takes that and a `Notify`'s. Every schedule checking the token, and every runner
//! polling it beside its task, would make all of a group's threads contend on the token's locks.
//!
//! Instead the group keeps an [`AtomicBool`] that mirrors the token, and a `Notify` on which
//! runners register. The mirror is set by a *hook*: the token's `cancelled_owned()` future,
//! polled once when the group is built with a waker of our own and then kept. When the token is
//! cancelled (directly, or through a parent), the hook's waker sets the mirror and wakes the
//! runners and the monitor.
//!
//! # What is documented, and what is assumed
//!
//! tokio-util documents that once `cancel()` returns the token and all its children report
//! `is_cancelled()`, and the `Future` contract says the hook's waker is woken once the token is
//! cancelled. It does not say *when*: the mirror is exact only if the waker is called before
//! `cancel()` returns. tokio-util 0.7 does that (it marks the tokens, releases their locks and
//! calls `notify_waiters` on each, on the cancelling thread), but it is not a documented
//! promise.
//!
//! So the fast path is taken only where it is seen to hold: once per process,
//! [`wakes_inside_cancel`] cancels tokens of its own (directly, and through a grandparent) and
//! checks that their waiters were woken before `cancel()` returned. If so, `flag == true` from
//! the moment the cancellation is visible to the thread that cancelled, and
//! [`CancelWatch::is_cancelled`] is one atomic load. If not, it also asks the token whenever the
//! flag is `false`: correct, at the price of the token's lock; the hook still drains the group,
//! whenever tokio-util wakes it. The unit test
//! `item7_assumption_tokio_util_wakes_waiters_inside_cancel` fails when a tokio-util upgrade
//! changes this, so the slower path never comes in unnoticed.
//!
//! Runners register on the `Notify` through a [`Registration`], which follows the waker of
//! their latest poll, as the `Future` contract asks, without taking the `Notify`'s lock while
//! that waker stays the same.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::task::{Context, Wake, Waker};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The group's view of its token.
#[derive(Debug)]
pub(crate) struct CancelWatch {
    token: CancellationToken,
    /// Mirrors `token.is_cancelled()`, without its lock. Written with `Release` after the token
    /// is marked, read with `Acquire`, so a reader that sees `true` also sees what the canceller
    /// did before cancelling.
    flag: AtomicBool,
    /// Whether `flag` alone answers `is_cancelled`: [`wakes_inside_cancel`], read once.
    fast: bool,
    /// Runners register here, and are woken when the flag is set.
    abort: Notify,
    /// The registered `cancelled_owned()` future; `None` once it fired. Locked only to arm it.
    hook: Mutex<Option<Pin<Box<WaitForCancellationFutureOwned>>>>,
}

impl CancelWatch {
    pub(crate) fn new(token: CancellationToken) -> Self {
        Self::with_fast_path(token, wakes_inside_cancel())
    }

    fn with_fast_path(token: CancellationToken, fast: bool) -> Self {
        Self {
            token,
            flag: AtomicBool::new(false),
            fast,
            abort: Notify::new(),
            hook: Mutex::new(None),
        }
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Whether the group is cancelled: by `mark`, or through its token. One atomic load where
    /// tokio-util is seen to wake inside `cancel()`; otherwise the token is asked too.
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire) || (!self.fast && self.token.is_cancelled())
    }

    /// Whether the token is cancelled but the flag was never set: the hook was not woken. That
    /// happens if a waker elsewhere in the token's tree panics inside tokio-util's `cancel()`,
    /// which then stops waking the rest. Asks the token (its lock): for the slow points that
    /// catch up (a monitor's step, `wait()`, `is_cancelled()`), not for every poll.
    pub(crate) fn missed(&self) -> bool {
        !self.flag.load(Ordering::Acquire) && self.token.is_cancelled()
    }

    /// A registration for a runner: see [`Registration`].
    pub(crate) fn register(&self) -> Registration<'_> {
        Registration {
            notified: self.abort.notified(),
            notify: &self.abort,
            relay: None,
        }
    }

    /// Wakes every runner, so that the one whose task a handle asked to stop sees it (see
    /// [`Registration::keep`]); the others poll their tasks once more, as a spurious wake-up.
    pub(crate) fn wake_runners(&self) {
        self.abort.notify_waiters();
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

pin_project_lite::pin_project! {
    /// A runner's registration on its group's abort `Notify`: being woken through it is only a
    /// reason to look at [`CancelWatch::is_cancelled`], and at whether its task was asked to
    /// stop.
    pub(crate) struct Registration<'a> {
        #[pin]
        notified: Notified<'a>,
        notify: &'a Notify,
        // The waker `notified` is registered with, around the runner's own.
        relay: Option<Arc<Relay>>,
    }
}

/// Wakes a runner for its `Notified`, and notes that it did: a `notify_waiters` uses a
/// `Notified` up, and the runner, which cannot tell this wake-up from its task's own, must
/// know to register again (or the next abort, or the group's cancellation, would miss it).
struct Relay {
    fired: AtomicBool,
    runner: Waker,
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release: the runner's next poll, which this wake-up causes, sees it.
        self.fired.store(true, Ordering::Release);
        self.runner.wake_by_ref();
    }
}

impl Registration<'_> {
    /// Makes sure that the waker of `cx` is woken on the group's cancellation and on every
    /// abort asked for from now on; call it on every poll, before looking at the flag and the
    /// count of aborts (`Shared::aborts`), which whoever cancels or aborts changes before it
    /// notifies.
    ///
    /// Costs one atomic load while nothing happened and the waker stays the same (a tokio
    /// task's does): the `Notified` is made anew, and polled (the `Notify`'s lock), only when
    /// the last one fired or the waker changed, so once per runner plus once per abort in its
    /// group.
    pub(crate) fn keep(self: Pin<&mut Self>, cx: &mut Context<'_>) {
        let mut this = self.project();
        match this.relay.as_ref() {
            Some(relay) if relay.runner.will_wake(cx.waker()) => {
                // A load first: the swap, a locked instruction, only once it fired.
                if !relay.fired.load(Ordering::Acquire)
                    || !relay.fired.swap(false, Ordering::AcqRel)
                {
                    return;
                }
            }
            _ => {
                *this.relay = Some(Arc::new(Relay {
                    fired: AtomicBool::new(false),
                    runner: cx.waker().clone(),
                }));
            }
        }
        let relay = Waker::from(this.relay.clone().expect("set above"));
        let mut cx = Context::from_waker(&relay);
        // A `Notified` receives every `notify_waiters` from the moment it is made; one that
        // came before its first poll makes that poll `Ready` without registering the relay
        // (the second hostile review lost runners that way), so make another until one is
        // registered. Each `Ready` stands for a wake-up whose cause (the flag, or a count of
        // aborts) was published before it, which the caller looks at next.
        loop {
            this.notified.set(this.notify.notified());
            if this.notified.as_mut().poll(&mut cx).is_pending() {
                return;
            }
        }
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
    // The flag, not `is_cancelled`: a cancelled token whose hook has not fired yet must still
    // be polled, so that it fires now.
    if slot.is_none() && !watch.flag.load(Ordering::Acquire) {
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

/// Whether this build of tokio-util wakes a token's waiters before `cancel()` returns, when the
/// token is cancelled itself and when through a grandparent. Probed once per process, on tokens
/// of its own.
pub(crate) fn wakes_inside_cancel() -> bool {
    static PROBED: OnceLock<bool> = OnceLock::new();
    *PROBED.get_or_init(|| probe(false) && probe(true))
}

/// Cancels a token (or its grandparent) while a `cancelled_owned()` future is registered on
/// it; `true` if its waker was called before `cancel()` returned.
fn probe(through_grandparent: bool) -> bool {
    let root = CancellationToken::new();
    let parent = root.child_token();
    let token = if through_grandparent {
        parent.child_token()
    } else {
        root.clone()
    };
    let woken = Arc::new(Woken(AtomicBool::new(false)));
    let waker = Waker::from(woken.clone());
    let mut cancelled = pin!(token.cancelled_owned());
    if cancelled
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_ready()
    {
        return false;
    }
    root.cancel();
    // Acquire: pairs with the Release in `wake`, if another thread woke it.
    woken.0.load(Ordering::Acquire)
}

/// The probe's waker: records that it was woken.
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Count {
        fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A group reduced to its watch.
    struct Group {
        watch: CancelWatch,
        on_cancelled: AtomicUsize,
    }

    impl Watched for Group {
        fn watch(&self) -> &CancelWatch {
            &self.watch
        }

        fn on_cancelled(&self) {
            self.on_cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The fast path's assumption about tokio-util, which tokio-util does not document. If this
    /// fails after an upgrade, groups stay correct (the token is asked whenever the flag is
    /// `false`) but every cancellation check takes the token's lock: revisit this module.
    #[test]
    fn item7_assumption_tokio_util_wakes_waiters_inside_cancel() {
        assert!(
            probe(false),
            "tokio-util no longer wakes a token's waiters inside its own cancel()"
        );
        assert!(
            probe(true),
            "tokio-util no longer wakes a token's waiters inside a grandparent's cancel()"
        );
        assert!(wakes_inside_cancel());
        assert!(CancelWatch::new(CancellationToken::new()).fast);
    }

    /// What the assumption buys, end to end through the hook: the flag is set, and the group
    /// told, before a parent's `cancel()` returns.
    #[test]
    fn item7_assumption_the_flag_is_set_before_a_parents_cancel_returns() {
        let parent = CancellationToken::new();
        let group = Arc::new(Group {
            watch: CancelWatch::new(parent.child_token()),
            on_cancelled: AtomicUsize::new(0),
        });
        watch(&group);
        assert!(!group.watch.is_cancelled());
        parent.cancel();
        assert!(group.watch.flag.load(Ordering::Acquire));
        assert_eq!(group.on_cancelled.load(Ordering::SeqCst), 1);
        // Cancelling again, or the group's own token, tells nobody twice.
        parent.cancel();
        group.watch.token().cancel();
        assert!(!group.watch.mark());
        assert_eq!(group.on_cancelled.load(Ordering::SeqCst), 1);
    }

    /// Without the fast path, a cancelled token is seen even while the hook has not fired (here:
    /// was never armed), so correctness never waits for tokio-util's wake.
    #[test]
    fn item7_without_the_fast_path_a_cancelled_token_is_seen_before_the_hook_fires() {
        let token = CancellationToken::new();
        let slow = CancelWatch::with_fast_path(token.child_token(), false);
        let fast = CancelWatch::with_fast_path(token.child_token(), true);
        token.cancel();
        assert!(slow.is_cancelled(), "the token is asked");
        assert!(!slow.flag.load(Ordering::Acquire), "the hook never fired");
        // What the fast path relies on the hook for.
        assert!(!fast.is_cancelled());
    }

    /// The `Future` contract: only the waker of the latest poll need be woken. A registration
    /// kept with waker A, then B, wakes B on cancellation.
    #[test]
    fn item7_a_registration_wakes_the_waker_of_the_latest_poll() {
        let watch = CancelWatch::with_fast_path(CancellationToken::new(), true);
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (waker_a, waker_b) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let mut registration = pin!(watch.register());
        registration
            .as_mut()
            .keep(&mut Context::from_waker(&waker_a));
        registration
            .as_mut()
            .keep(&mut Context::from_waker(&waker_b));
        // The same waker again changes nothing.
        registration
            .as_mut()
            .keep(&mut Context::from_waker(&waker_b.clone()));
        assert!(watch.mark());
        assert_eq!((a.get(), b.get()), (0, 1));
    }

    /// Issue 10: a wake-up uses the registration up; the next `keep` registers again, so a
    /// second wake-up (an abort, or the group's cancellation) wakes again, however the first
    /// one and the polls interleave. The hostile review found the version before this one,
    /// which registered again only when a count of aborts had moved, losing every wake-up
    /// after one that came between the count's move and the runner's poll.
    #[test]
    fn a_registration_is_renewed_after_each_wake_up_and_wakes_for_the_next() {
        let watch = CancelWatch::with_fast_path(CancellationToken::new(), true);
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut registration = pin!(watch.register());
        let mut cx = Context::from_waker(&waker);
        registration.as_mut().keep(&mut cx);
        for n in 1..=3 {
            watch.wake_runners();
            assert_eq!(count.get(), n, "wake-up {n} reached the runner");
            // Polled twice after it: the second poll must not lose the registration.
            registration.as_mut().keep(&mut cx);
            registration.as_mut().keep(&mut cx);
        }
        assert!(watch.mark());
        assert_eq!(count.get(), 4, "the group's cancellation still wakes it");
    }
}
