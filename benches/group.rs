//! Criterion benches of the group's own operations: schedule, cancel and reschedule by handle,
//! draining due tasks with and without a cap, scheduling cost as the queue grows, and the cost
//! a shared limiter adds per task start.
//!
//! ```text
//! cargo bench --bench group
//! ```
//!
//! Each measurement schedules into a group built for it, so memory does not pile up across
//! samples; set-up and tear-down are outside the timed section.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant as StdInstant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use schedgroup::{Group, Limiter, TaskHandle};
use tokio::runtime::Runtime;

const HOUR: Duration = Duration::from_secs(3600);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn group_on(rt: &Runtime) -> Group {
    Group::builder().runtime(rt.handle().clone()).build()
}

/// Schedules `n` far-future tasks that capture one `Arc`, returning their handles.
fn fill(group: &Group, n: u64, counter: &Arc<AtomicU64>) -> Vec<TaskHandle> {
    (0..n)
        .map(|_| {
            let counter = counter.clone();
            group.delay(HOUR, async move {
                counter.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect()
}

fn schedule(c: &mut Criterion) {
    let rt = runtime();
    let counter = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("schedule");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_thread", |b| {
        b.iter_custom(|iters| {
            let group = group_on(&rt);
            let start = StdInstant::now();
            for _ in 0..iters {
                let counter = counter.clone();
                black_box(group.delay(HOUR, async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                }));
            }
            let elapsed = start.elapsed();
            group.cancel();
            elapsed
        });
    });
    g.bench_function("two_threads_one_group", |b| {
        b.iter_custom(|iters| {
            let group = group_on(&rt);
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let start = StdInstant::now();
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (group, counter, barrier) =
                        (group.clone(), counter.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        for _ in 0..iters / 2 {
                            let counter = counter.clone();
                            black_box(group.delay(HOUR, async move {
                                counter.fetch_add(1, Ordering::Relaxed);
                            }));
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let elapsed = start.elapsed();
            group.cancel();
            elapsed
        });
    });
    g.finish();
}

fn handles(c: &mut Criterion) {
    let rt = runtime();
    let counter = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("handle");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cancel", |b| {
        b.iter_custom(|iters| {
            let group = group_on(&rt);
            let handles = fill(&group, iters, &counter);
            let start = StdInstant::now();
            for h in &handles {
                black_box(h.cancel());
            }
            start.elapsed()
        });
    });
    g.bench_function("reschedule", |b| {
        b.iter_custom(|iters| {
            let group = group_on(&rt);
            let handles = fill(&group, iters, &counter);
            let later = tokio::time::Instant::now() + 2 * HOUR;
            let start = StdInstant::now();
            for h in &handles {
                black_box(h.reschedule(later));
            }
            let elapsed = start.elapsed();
            group.cancel();
            elapsed
        });
    });
    g.finish();
    // `TaskHandle::deadline` of a task that is not the earliest: a scan of the pending tasks
    // of its future type, so the cost per pending task is what this reports (Throughput
    // counts the pending tasks scanned).
    let mut g = c.benchmark_group("handle/deadline");
    for n in [1_000u64, 100_000] {
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let group = group_on(&rt);
            // Ascending deadlines; the last one is found at the end of its lane's heap.
            let handles: Vec<TaskHandle> = (0..n)
                .map(|i| {
                    let counter = counter.clone();
                    group.delay(HOUR + Duration::from_nanos(i), async move {
                        counter.fetch_add(1, Ordering::Relaxed);
                    })
                })
                .collect();
            let last = handles.last().unwrap();
            b.iter(|| black_box(last.deadline()));
            group.cancel();
        });
    }
    g.finish();
}

fn drain(c: &mut Criterion) {
    let rt = runtime();
    let counter = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("drain_due");
    g.sample_size(10);
    for n in [10_000u64, 100_000] {
        g.throughput(Throughput::Elements(n));
        for cap in [None, Some(16)] {
            let name = cap.map_or("uncapped".to_string(), |c| format!("cap_{c}"));
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let mut builder = Group::builder().runtime(rt.handle().clone());
                        if let Some(cap) = cap {
                            builder = builder.max_concurrent(cap);
                        }
                        // Paused, so the tasks are queued before the timing starts.
                        let group = builder.max_concurrent(0).build();
                        for _ in 0..n {
                            let counter = counter.clone();
                            group.delay(Duration::ZERO, async move {
                                counter.fetch_add(1, Ordering::Relaxed);
                            });
                        }
                        let start = StdInstant::now();
                        group.set_max_concurrent(cap.unwrap_or(usize::MAX));
                        rt.block_on(group.wait()).unwrap();
                        total += start.elapsed();
                    }
                    total
                });
            });
        }
    }
    g.finish();
}

fn growth(c: &mut Criterion) {
    let rt = runtime();
    let counter = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("schedule_with_pending");
    g.throughput(Throughput::Elements(1));
    for pending in [1_000u64, 100_000, 1_000_000] {
        let group = group_on(&rt);
        drop(fill(&group, pending, &counter));
        g.bench_with_input(BenchmarkId::from_parameter(pending), &pending, |b, _| {
            b.iter_custom(|iters| {
                let mut handles = Vec::with_capacity(iters as usize);
                let start = StdInstant::now();
                for _ in 0..iters {
                    let counter = counter.clone();
                    handles.push(group.delay(HOUR, async move {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }));
                }
                let elapsed = start.elapsed();
                // Back to `pending` for the next sample.
                for h in handles {
                    h.cancel();
                }
                elapsed
            });
        });
        group.cancel();
    }
    g.finish();
}

/// The cost a shared limiter adds per task start: 10,000 due tasks drained by one group capped
/// at 16, then the same with a limiter of 16 as well, then spread over 4 groups sharing it.
fn limiter(c: &mut Criterion) {
    const N: u64 = 10_000;
    let rt = runtime();
    let counter = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("drain_due_limiter");
    g.sample_size(20);
    g.throughput(Throughput::Elements(N));
    for (name, groups, with_limiter) in [
        ("one_group_cap_16", 1u64, false),
        ("one_group_cap_16_limiter_16", 1, true),
        ("four_groups_cap_16_limiter_16", 4, true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Paused (limit 0) while the tasks are queued, so only the drain is timed.
                    let shared = Limiter::new(0);
                    let members: Vec<Group> = (0..groups)
                        .map(|_| {
                            let mut builder = Group::builder().runtime(rt.handle().clone());
                            if with_limiter {
                                builder = builder.limiter(&shared);
                            }
                            builder
                                .max_concurrent(if with_limiter { 16 } else { 0 })
                                .build()
                        })
                        .collect();
                    for i in 0..N {
                        let counter = counter.clone();
                        members[(i % groups) as usize].delay(Duration::ZERO, async move {
                            counter.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                    let start = StdInstant::now();
                    if with_limiter {
                        shared.set_limit(16);
                    } else {
                        members[0].set_max_concurrent(16);
                    }
                    rt.block_on(async {
                        for m in &members {
                            m.wait().await.unwrap();
                        }
                    });
                    total += start.elapsed();
                }
                total
            });
        });
    }
    g.finish();
}

criterion_group!(benches, schedule, handles, drain, growth, limiter);
criterion_main!(benches);
