//! Issue 9, item 3: panic payloads whose `Drop` panics. A task (or a future's `Drop`) may panic
//! with a payload that panics again when dropped, with a payload that panics again... The
//! group must catch every one of them: the task is counted once, `cancel()` returns, `wait()`
//! ends.
//!
//! Every test runs on its own thread with a bound (a payload chain that never ends would spin
//! a runtime's only thread, where a `timeout` cannot fire), and every `wait()` has a timeout.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{assert_adds_up, settle};
use schedgroup::{Group, WaitError};
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(10);

/// A panic payload whose `Drop` panics with another `Bomb`, `depth` more times (for ever with
/// `u32::MAX`, as far as anyone will look). `drops` counts the payloads dropped.
struct Bomb {
    depth: u32,
    drops: Arc<AtomicUsize>,
}

impl Bomb {
    fn new(depth: u32) -> (Self, Arc<AtomicUsize>) {
        let drops = Arc::new(AtomicUsize::new(0));
        let bomb = Bomb {
            depth,
            drops: drops.clone(),
        };
        (bomb, drops)
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if self.depth > 0 {
            std::panic::panic_any(Bomb {
                depth: self.depth - 1,
                drops: self.drops.clone(),
            });
        }
    }
}

/// A future's part whose `Drop` panics with a [`Bomb`].
struct PanicsOnDrop(Option<Bomb>);

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if let Some(bomb) = self.0.take() {
            std::panic::panic_any(bomb);
        }
    }
}

/// Runs `f` on a fresh paused current-thread runtime on its own thread; fails the test if it
/// does not finish within `PATIENCE` (the thread is left behind: that is the hang).
fn bounded<T: Send + 'static>(f: impl AsyncFnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(f())
        }));
        // A payload that escaped may be a `Bomb`: dropping it here would panic again.
        let _ = tx.send(run.map_err(std::mem::forget));
    });
    match rx.recv_timeout(PATIENCE + Duration::from_secs(5)) {
        Ok(Ok(value)) => value,
        Ok(Err(())) => panic!("the test panicked (see above)"),
        Err(_) => panic!("hung"),
    }
}

/// Runs one task that panics with `bomb` in a new group, and checks that it counts once, as
/// panicked and not cancelled. Returns the group and the error `wait()` gave.
async fn panic_with(bomb: Bomb) -> (Group, WaitError) {
    let group = Group::new();
    group.delay(Duration::ZERO, async move {
        std::panic::panic_any(bomb);
    });
    let err = timeout(PATIENCE, group.wait())
        .await
        .expect("wait() hung")
        .expect_err("the task panicked");
    assert_eq!(err.panicked(), 1, "{err}");
    let stats = group.stats();
    assert_eq!((stats.panicked, stats.cancelled), (1, 0), "{stats:?}");
    assert_adds_up(stats);
    (group, err)
}

#[test]
fn item3_a_task_panicking_with_a_payload_whose_drop_panics_is_counted_as_panicked() {
    bounded(async || {
        let (bomb, drops) = Bomb::new(3);
        let (group, err) = panic_with(bomb).await;
        assert!(!err.is_cancelled(), "{err}");
        assert_eq!(
            drops.load(Ordering::SeqCst),
            4,
            "every payload in the chain dropped"
        );
        // The group carries on.
        assert!(!group.is_cancelled());
        group.delay(Duration::ZERO, async {});
        timeout(PATIENCE, group.wait())
            .await
            .expect("wait() hung")
            .expect("the panic was reported once, by the first wait()");
        assert_eq!(group.stats().completed, 1);
    });
}

#[test]
fn item3_a_payload_chain_that_never_ends_is_cut_off_and_counted_once() {
    bounded(async || {
        let (bomb, drops) = Bomb::new(u32::MAX);
        let _ = panic_with(bomb).await;
        let drops = drops.load(Ordering::SeqCst);
        assert!((2..=64).contains(&drops), "{drops} payloads dropped");
    });
}

#[test]
fn item3_a_completed_future_whose_drop_panics_with_such_a_payload_is_counted_as_panicked() {
    bounded(async || {
        let group = Group::new();
        let (bomb, drops) = Bomb::new(2);
        let part = PanicsOnDrop(Some(bomb));
        group.delay(Duration::ZERO, async move {
            let _part = &part;
        });
        let err = timeout(PATIENCE, group.wait())
            .await
            .expect("wait() hung")
            .expect_err("the future's Drop panicked");
        assert_eq!(err.panicked(), 1, "{err}");
        let stats = group.stats();
        assert_eq!((stats.panicked, stats.completed), (1, 0), "{stats:?}");
        assert_adds_up(stats);
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn item3_cancel_returns_and_wait_ends_when_dropped_futures_panic_with_such_payloads() {
    bounded(async || {
        let group = Group::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let bomb = |depth| {
            PanicsOnDrop(Some(Bomb {
                depth,
                drops: drops.clone(),
            }))
        };
        // Two running (dropped by their runners), three pending (dropped inside cancel()),
        // one pending and cancelled by its handle first.
        for depth in [1, u32::MAX] {
            let part = bomb(depth);
            group.delay(Duration::ZERO, async move {
                let _part = part;
                std::future::pending::<()>().await;
            });
        }
        for depth in [0, 1, u32::MAX] {
            let part = bomb(depth);
            group.delay(Duration::from_secs(60), async move {
                let _part = part;
            });
        }
        let part = bomb(1);
        let handle = group.delay(Duration::from_secs(60), async move {
            let _part = part;
        });
        settle().await;
        assert_eq!(group.stats().running, 2);
        assert!(handle.cancel(), "a pending task's panicking Drop is caught");
        assert!(group.cancel(), "cancel() returns");
        let err = timeout(PATIENCE, group.wait())
            .await
            .expect("wait() hung")
            .expect_err("cancelled");
        assert!(err.is_cancelled(), "{err}");
        let stats = group.stats();
        assert_eq!((stats.pending, stats.running), (0, 0), "{stats:?}");
        // A future dropped because of the cancellation is cancelled, whatever its Drop did.
        assert_eq!((stats.cancelled, stats.panicked), (6, 0), "{stats:?}");
        assert_adds_up(stats);
        // The finite chains in full (2 + 1 + 2 + 2), the endless ones at least once each.
        let drops = drops.load(Ordering::SeqCst);
        assert!(drops >= 9, "{drops} payloads dropped");
    });
}
