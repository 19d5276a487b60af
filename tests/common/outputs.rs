//! Helpers of the tests of outputs and aborts (issue 10).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use schedgroup::{CancelledBy, JoinError};
use tokio::sync::mpsc;

/// Polls `fut` once with a waker that does nothing.
pub fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

/// A future that tells `started` it runs, then never ends.
pub async fn forever(started: mpsc::UnboundedSender<()>) -> u32 {
    let _ = started.send(());
    std::future::pending::<()>().await;
    unreachable!()
}

pub fn cause<T>(result: &Result<T, JoinError>) -> Option<CancelledBy> {
    result.as_ref().err().and_then(JoinError::cancelled_by)
}

/// Spins (real time, bounded) until `cond` holds.
#[track_caller]
pub fn spin_until(mut cond: impl FnMut() -> bool) {
    let at = std::panic::Location::caller();
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < super::REAL_BOUND,
            "{at}: a condition did not hold within {:?}",
            super::REAL_BOUND
        );
        std::thread::yield_now();
    }
}

/// A panic payload that the hook [`quiet_hook`] installs says nothing about.
pub struct Quiet;

/// Installs, once per test binary, a panic hook that says nothing for [`Quiet`] panics and
/// those whose payload `also` picks, and passes every other panic to the hook before it.
pub fn quiet_hook(also: fn(&(dyn std::any::Any + Send)) -> bool) {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            if p.is::<Quiet>() || also(p) {
                return;
            }
            previous(info);
        }));
    });
}

/// Busy-waits `nanos` of real time.
pub fn spin_for(nanos: u64) {
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_nanos(nanos) {
        std::hint::spin_loop();
    }
}

/// The next number of a xorshift sequence: cheap, seeded jitter for race tests.
pub fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// A waker whose `wake` runs `hook` (clones run nothing).
pub fn waking_waker(hook: impl Fn() + Send + Sync + 'static) -> Waker {
    struct Hook(Box<dyn Fn() + Send + Sync>);
    impl std::task::Wake for Hook {
        fn wake(self: std::sync::Arc<Self>) {
            (self.0)();
        }
    }
    Waker::from(std::sync::Arc::new(Hook(Box::new(hook))))
}

/// Panics with [`Quiet`], which [`quiet_hook`] keeps off stderr.
pub fn quiet_panic() -> u32 {
    std::panic::panic_any(Quiet)
}
