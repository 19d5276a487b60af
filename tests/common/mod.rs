//! Helpers shared by the behaviour tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Sets its flag when dropped: proves a future (which captured it) was dropped.
#[derive(Debug)]
pub struct DropFlag(pub Arc<AtomicBool>);

impl DropFlag {
    pub fn new() -> (Self, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (Self(flag.clone()), flag)
    }
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Tracks how many tasks run at once and the most that ever did.
#[derive(Debug, Default)]
pub struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Concurrency {
    pub fn enter(self: &Arc<Self>) -> ConcurrencyGuard {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        ConcurrencyGuard(self.clone())
    }

    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

pub struct ConcurrencyGuard(Arc<Concurrency>);

impl Drop for ConcurrencyGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Lets every ready task on a current-thread runtime run, without moving the paused clock.
pub async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

/// Live tokio tasks on the current runtime.
pub fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Asserts the counter identity on one snapshot.
pub fn assert_adds_up(s: schedgroup::Stats) {
    assert_eq!(
        s.scheduled,
        s.pending + s.running + s.completed + s.cancelled + s.panicked,
        "counters do not add up: {s:?}"
    );
}

/// Iterations for a race test: `SCHEDGROUP_STRESS_ITERS`, or `default`.
pub fn iterations(default: usize) -> usize {
    std::env::var("SCHEDGROUP_STRESS_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Deadline offsets in ms for property models, in coarse steps so that equal deadlines (and the
/// order among them) are common: a little in the past, due about now, or far ahead.
pub fn offset_ms() -> impl proptest::strategy::Strategy<Value = i64> {
    use proptest::prelude::*;
    prop_oneof![
        (-5i64..0).prop_map(|x| x * 10),
        (0i64..6).prop_map(|x| x * 10),
        1_000i64..100_000
    ]
}
