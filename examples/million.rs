//! A million pending tasks on one monitor and one timer.
//!
//! Schedules 1,000,000 tasks due in 2 s, each incrementing a shared counter, then prints the
//! resident memory they take, the live tokio task count while they wait, how long they take to
//! run once due, and the live tokio tasks when `wait()` returns and once its last runner has
//! returned. Run it in release mode (Linux, for the memory figures):
//!
//! ```text
//! cargo run --release --example million
//! ```
//!
//! Pass a count to change the size, e.g. `-- 100000`, and `--reserve` to build the group with
//! `Builder::reserve(count)`: the first schedule then writes the reserve, and the rest neither
//! allocate nor fault a page in. The first schedule's time is printed apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use schedgroup::Group;
use tokio::time::Instant;

/// Resident memory in bytes, from /proc (Linux); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

async fn bump(done: Arc<AtomicU64>) {
    done.fetch_add(1, Ordering::Relaxed);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reserve = args.iter().any(|a| a == "--reserve");
    let count: u64 = args
        .iter()
        .find(|a| *a != "--reserve")
        .map(|n| n.parse().expect("the argument is a task count"))
        .unwrap_or(1_000_000);
    let metrics = tokio::runtime::Handle::current().metrics();
    let done = Arc::new(AtomicU64::new(0));
    let reserved = if reserve { count as usize } else { 0 };
    let group = Group::builder().reserve(reserved).build();

    let before = resident_bytes();
    let first = Instant::now();
    let deadline = first + Duration::from_secs(2);
    // One `async fn`, so every task is of one future type (the reserve is per type).
    group.schedule(deadline, bump(done.clone()));
    let first = first.elapsed();
    let start = Instant::now();
    for _ in 1..count {
        group.schedule(deadline, bump(done.clone()));
    }
    let scheduling = start.elapsed();
    let after = resident_bytes();

    println!(
        "scheduled {count} tasks: the first in {first:?}{}, the rest in {scheduling:?} ({:.0} ns each)",
        if reserve {
            " (it wrote the reserve)"
        } else {
            ""
        },
        scheduling.as_nanos() as f64 / (count - 1).max(1) as f64
    );
    if let (Some(before), Some(after)) = (before, after) {
        println!(
            "resident memory: {} -> {} (+{}, {:.1} bytes per pending task)",
            mib(before),
            mib(after),
            mib(after.saturating_sub(before)),
            after.saturating_sub(before) as f64 / count as f64
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "while pending: {} live tokio tasks, {} pending, {} done",
        metrics.num_alive_tasks(),
        group.stats().pending,
        done.load(Ordering::Relaxed)
    );

    group.wait().await.expect("no task panicked");
    let drained = deadline.elapsed();
    println!(
        "all {} ran; the last finished {drained:?} after the deadline",
        done.load(Ordering::Relaxed)
    );
    // wait() returns once every future has been dropped; the runner that ended the last one
    // may still be returning on a worker thread, so the count is read again once it has.
    let right_after = metrics.num_alive_tasks();
    let returned = Instant::now();
    while metrics.num_alive_tasks() > 0 && returned.elapsed() < Duration::from_secs(1) {
        tokio::task::yield_now().await;
    }
    println!(
        "after wait: {right_after} live tokio tasks (a runner may still be returning), \
         {} after {:?} more",
        metrics.num_alive_tasks(),
        returned.elapsed()
    );
}
