//! Helpers shared by the behaviour tests.
#![allow(dead_code, unreachable_pub)]

pub mod adaptive;
pub mod counting;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod outputs;
#[cfg(feature = "tracing")]
pub mod trace;

use std::future::{Future, IntoFuture};
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

/// How long [`bounded`] lets a wait take on the real clock: generous for a debug build on two
/// busy cores, short enough that a hang fails CI in well under its time limit.
pub const REAL_BOUND: Duration = Duration::from_secs(30);

/// How long [`bounded`] lets a wait take on the paused clock: ten years, far beyond any test's
/// own horizon. A hang costs no real time: see [`bounded`].
pub const PAUSED_BOUND: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Awaits `fut`, and panics, naming the caller's line, if it has not finished within
/// [`REAL_BOUND`] on the real clock or [`PAUSED_BOUND`] on the paused clock. Every wait in
/// these tests (`wait()`, `acquire()`, a `JoinHandle`, a channel's `recv()`, `notified()`)
/// goes through it, so a liveness bug fails the test in seconds instead of hanging CI.
///
/// On the paused clock the bound costs no real time: when every task is idle, tokio advances
/// the clock straight to the next timer, and if the wait hangs, that is this bound's timer, so
/// the test fails at once. If other timers keep firing (an interval, a task that sleeps in a
/// loop), the clock steps through them to the bound instead, which can take a while.
///
/// Not for a wait that something outside the paused runtime ends (another thread, another
/// runtime): the runtime idles meanwhile, the clock jumps to the bound and the wait fails at
/// once. Bound those in real time instead.
///
/// What it cannot catch: a task that never yields. On a current-thread runtime it keeps the
/// timeout itself from being polled, so nothing fires; only the CI time limit ends that.
#[track_caller]
pub fn bounded<F: IntoFuture>(fut: F) -> impl Future<Output = F::Output> {
    let at = std::panic::Location::caller();
    async move {
        let paused = clock_is_paused();
        let bound = if paused { PAUSED_BOUND } else { REAL_BOUND };
        match tokio::time::timeout(bound, fut).await {
            Ok(out) => out,
            Err(_) => panic!(
                "{at}: a wait did not end within {bound:?} of {} time",
                if paused { "paused" } else { "real" }
            ),
        }
    }
}

/// Joins `thread`, and panics, naming the caller's line, if it has not finished within
/// [`REAL_BOUND`]; a panic in the thread is passed on. (`JoinHandle::join` has no timeout, so
/// this checks every 50 µs whether the thread has finished.)
#[track_caller]
pub fn join_bounded<T>(thread: std::thread::JoinHandle<T>) -> T {
    await_thread(std::panic::Location::caller(), || thread.is_finished());
    thread
        .join()
        .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

/// [`join_bounded`] for a thread of `std::thread::scope`.
#[track_caller]
pub fn join_scoped_bounded<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> T {
    await_thread(std::panic::Location::caller(), || thread.is_finished());
    thread
        .join()
        .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

/// Checks every 50 µs whether a thread has `finished`, and panics, naming `at`, if it has not
/// within [`REAL_BOUND`].
fn await_thread(at: &std::panic::Location<'_>, finished: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !finished() {
        assert!(
            start.elapsed() < REAL_BOUND,
            "{at}: a thread did not finish within {REAL_BOUND:?}"
        );
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Whether the current runtime's clock is paused: tokio's clock stands still while real time
/// moves on. (Exact, not a guess: a paused clock moves only by `advance` or when the runtime
/// idles, and neither can happen while this function runs on the runtime's thread; the real
/// clock has nanosecond resolution and is read again after it has certainly moved.)
pub fn clock_is_paused() -> bool {
    let tokio_then = tokio::time::Instant::now();
    let real_then = std::time::Instant::now();
    while real_then.elapsed() < Duration::from_micros(1) {
        std::hint::spin_loop();
    }
    tokio::time::Instant::now() == tokio_then
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

/// A waker that panics when woken: a hostile or buggy executor.
pub struct Bomb;

impl std::task::Wake for Bomb {
    fn wake(self: Arc<Self>) {
        panic!("hostile waker");
    }
    fn wake_by_ref(self: &Arc<Self>) {
        panic!("hostile waker");
    }
}

/// A [`Bomb`] as a `Waker`.
pub fn bomb() -> std::task::Waker {
    std::task::Waker::from(Arc::new(Bomb))
}

/// A multi-thread runtime with `workers` worker threads and every driver.
pub fn multi_thread(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a multi-thread runtime")
}

/// A current-thread runtime with every driver; `paused`: its clock starts paused.
pub fn current_thread(paused: bool) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(paused)
        .build()
        .expect("a current-thread runtime")
}

/// Runs test `name` of the current test binary alone in a child process, with `env` set to
/// `1` in its environment (so that the test knows it is the child), and waits at most
/// `bound` for it: its exit status, stdout and stderr. For attacks that may abort or hang
/// the process they run in.
pub fn run_child(
    name: &str,
    env: &str,
    bound: Duration,
) -> (std::process::ExitStatus, String, String) {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + bound;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the child hung for {bound:?}");
        }
        std::thread::sleep(ms(10));
    };
    (status, stdout.join().unwrap(), stderr.join().unwrap())
}
