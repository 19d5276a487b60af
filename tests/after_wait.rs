//! What holds when `wait()` returns (issue 9, item 6): every future of the group has been
//! dropped and the group holds no slot; its own tokio tasks may still be finishing, but they
//! have been woken already, so they exit without any time passing and without polling a future
//! of the group again.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{alive, ms, settle};
use schedgroup::{Group, Limiter};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(10);

/// Counts drops of the futures that captured it, and polls after the group's end.
#[derive(Default)]
struct Tally {
    dropped: AtomicUsize,
}

struct Counted(Arc<Tally>);

impl Drop for Counted {
    fn drop(&mut self) {
        // A slow `Drop` (longer than waking a thread), so that a `wait()` that returned before
        // it would be caught in the act on a multi-thread runtime.
        std::thread::sleep(Duration::from_micros(100));
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A task that holds `tally` and runs for `polls` polls, `step` apart on tokio's clock.
fn task(tally: &Arc<Tally>, polls: u32, step: Duration) -> impl Future<Output = ()> + use<> {
    let counted = Counted(tally.clone());
    async move {
        let _counted = counted;
        for _ in 0..polls {
            if step.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(step).await;
            }
        }
    }
}

/// The ways a group's last task can end, each ending with `wait()`.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Runners complete every task, under a cap.
    Completed,
    /// The last pending task is cancelled by handle while the monitor sleeps on its timer.
    HandleCancelled,
    /// The group is cancelled with tasks running and pending.
    GroupCancelled,
    /// The parent token is cancelled with tasks running and pending.
    ParentCancelled,
}

const ENDINGS: [Ending; 4] = [
    Ending::Completed,
    Ending::HandleCancelled,
    Ending::GroupCancelled,
    Ending::ParentCancelled,
];

/// Schedules `n` tasks into a fresh group on the current runtime and ends them `ending`'s way;
/// returns the group, once `wait()` has returned, and the tally.
async fn end(ending: Ending, n: usize, step: Duration) -> (Group, Arc<Tally>) {
    let tally = Arc::new(Tally::default());
    let parent = CancellationToken::new();
    let group = Group::builder()
        .max_concurrent(2)
        .cancellation_token(parent.clone())
        .build();
    for i in 0..n {
        group.delay(ms(i as u64 % 3), task(&tally, 3, step));
    }
    let far = group.delay(Duration::from_secs(3600), task(&tally, 1, step));
    match ending {
        Ending::Completed => {
            far.cancel();
        }
        Ending::HandleCancelled => {
            // Let the others run out first, so that the monitor is asleep on the far timer.
            let others = timeout(PATIENCE, async {
                while group.stats().completed < n as u64 {
                    tokio::time::sleep(ms(1)).await;
                }
            });
            others.await.expect("the other tasks ran out");
            far.cancel();
        }
        Ending::GroupCancelled => {
            tokio::time::sleep(ms(1)).await;
            group.cancel();
        }
        Ending::ParentCancelled => {
            tokio::time::sleep(ms(1)).await;
            parent.cancel();
        }
    }
    let result = timeout(PATIENCE, group.wait()).await.expect("wait() hung");
    assert_eq!(
        result.is_ok(),
        matches!(ending, Ending::Completed | Ending::HandleCancelled),
        "{ending:?}: {result:?}"
    );
    (group, tally)
}

#[tokio::test(start_paused = true)]
async fn item6_after_wait_every_future_is_dropped_and_the_groups_tasks_exit_without_time_passing() {
    let n = 6;
    for ending in ENDINGS {
        let base = alive();
        let (group, tally) = end(ending, n, ms(1)).await;
        // What wait() guarantees when it returns.
        assert_eq!(
            tally.dropped.load(Ordering::SeqCst),
            n + 1,
            "{ending:?}: every future was dropped before wait() returned"
        );
        let stats = group.stats();
        assert_eq!((stats.pending, stats.running), (0, 0), "{ending:?}");
        // What may still be alive has been woken already: it exits when the runtime runs what
        // is ready, with the clock standing still.
        let now = Instant::now();
        settle().await;
        assert_eq!(Instant::now(), now, "{ending:?}: no time passed");
        assert_eq!(alive(), base, "{ending:?}: the group's tokio tasks exited");
    }
}

#[test]
fn item6_on_a_multi_thread_runtime_wait_returns_after_every_drop_and_the_tasks_then_exit() {
    let rt = common::multi_thread(2);
    let metrics = rt.metrics();
    let base = metrics.num_alive_tasks();
    let n = 8;
    for i in 0..common::iterations(300) {
        let ending = ENDINGS[i % ENDINGS.len()];
        if matches!(ending, Ending::HandleCancelled) {
            continue; // Needs the monitor asleep on its timer: the paused-clock test's case.
        }
        let tally = rt.block_on(async {
            let (_group, tally) = end(ending, n, Duration::ZERO).await;
            tally
        });
        assert_eq!(
            tally.dropped.load(Ordering::SeqCst),
            n + 1,
            "iteration {i}, {ending:?}: every future was dropped before wait() returned"
        );
        // The last runner may still be returning on a worker thread; it must get there.
        let exited = rt.block_on(async {
            let exit = async {
                while metrics.num_alive_tasks() > base {
                    tokio::task::yield_now().await;
                }
            };
            timeout(PATIENCE, exit).await
        });
        assert!(
            exited.is_ok(),
            "iteration {i}, {ending:?}: {} tokio tasks still alive",
            metrics.num_alive_tasks() - base
        );
    }
}

/// The slot the last task held is free when `wait()` returns: it has been given back to the
/// limiter under the same lock that made the group idle.
#[tokio::test(start_paused = true)]
async fn item6_after_wait_the_group_holds_no_slot() {
    let limiter = Limiter::new(2);
    let group = Group::builder().limiter(&limiter).build();
    let tally = Arc::new(Tally::default());
    for _ in 0..5 {
        group.delay(ms(1), task(&tally, 2, ms(1)));
    }
    timeout(PATIENCE, group.wait()).await.unwrap().unwrap();
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
    assert!(limiter.try_acquire().is_some());
}
