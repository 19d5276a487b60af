//! Issue 9, item 8: no lock is held while user code runs. `Debug` for `Group` and `Limiter`
//! takes a snapshot, unlocks, then writes into the caller's formatter, so a sink that calls
//! back into the group or limiter carries on instead of deadlocking.
//!
//! (The other half of item 8, counting due tasks without walking every pending one, is pinned
//! by a unit test next to the queue: `locks_held_while_user_code_runs_due_count_skips_tasks_not_yet_due`.)

use std::fmt::{self, Write};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use schedgroup::{Group, Limiter};

/// A `fmt::Write` sink that runs `probe` on every write: user code inside `Debug`.
struct Reentrant<F: FnMut()> {
    out: String,
    probe: F,
}

impl<F: FnMut()> Write for Reentrant<F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        (self.probe)();
        self.out.push_str(s);
        Ok(())
    }
}

fn format_reentrant(value: &dyn fmt::Debug, probe: impl FnMut()) -> String {
    let mut sink = Reentrant {
        out: String::new(),
        probe,
    };
    write!(sink, "{value:?}").unwrap();
    sink.out
}

/// Runs `f` on its own thread and fails within seconds if it deadlocks (or panics: a
/// `std::sync::Mutex` locked again by its holder may do either).
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("Debug did not finish: a lock is held while the formatter runs")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

#[test]
fn locks_held_while_user_code_runs_group_debug_formats_after_unlocking() {
    let out = bounded(|| {
        let rt = runtime();
        let _enter = rt.enter();
        let group = Group::builder().name("g").max_concurrent(2).build();
        let _task = group.delay(Duration::from_secs(3600), async {});
        let probe = group.clone();
        format_reentrant(&group, move || {
            let _ = (probe.stats(), probe.history(), probe.max_concurrent());
        })
    });
    assert!(out.contains("pending: 1"), "{out}");
    assert!(out.contains("max_concurrent: Some(2)"), "{out}");
}

#[test]
fn locks_held_while_user_code_runs_limiter_debug_formats_after_unlocking() {
    let out = bounded(|| {
        let rt = runtime();
        let _enter = rt.enter();
        let limiter = Limiter::new(3);
        let group = Group::builder().limiter(&limiter).build();
        let _task = group.delay(Duration::from_secs(3600), async {});
        // The limiter and its groups share one lock: probe both from either's `Debug`.
        let (l, g) = (limiter.clone(), group.clone());
        let of_limiter = format_reentrant(&limiter, move || {
            let _ = (l.running(), l.waiting(), l.history(), g.stats());
        });
        let (l, g) = (limiter.clone(), group.clone());
        let of_group = format_reentrant(&group, move || {
            let _ = (l.running(), l.history(), g.history());
        });
        (of_limiter, of_group)
    });
    assert!(out.0.contains("limit: 3"), "{}", out.0);
    assert!(out.1.contains("pending: 1"), "{}", out.1);
}
