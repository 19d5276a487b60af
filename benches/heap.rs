//! The queue's 4-ary heap against the standard library's `BinaryHeap`, on the same 16-byte
//! entries, in the same run: a million pushes and a million pops, with equal deadlines (a burst
//! scheduled for one instant) and with random ones.
//!
//! ```text
//! cargo bench --bench heap
//! ```
//!
//! The heap is the crate's own source file, compiled into this bench (it has no dependencies),
//! so the bench measures exactly what the queue runs.

use std::collections::BinaryHeap;
use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};

#[allow(dead_code)]
#[path = "../src/queue/heap.rs"]
mod heap;

use heap::{Entry, Heap};

const N: u32 = 1_000_000;

/// `N` entries in schedule order: all due at one instant, or at random instants.
fn entries(random: bool) -> Vec<Entry> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    (1..=N)
        .map(|seq| Entry {
            deadline: if random {
                rng.random_range(0..1_000_000_000)
            } else {
                5_000_000_000
            },
            seq,
            slot: seq,
        })
        .collect()
}

fn heaps(c: &mut Criterion) {
    let mut g = c.benchmark_group("heap");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(N)));
    for (name, random) in [("equal", false), ("random", true)] {
        let input = entries(random);
        g.bench_with_input(BenchmarkId::new("push/4-ary", name), &input, |b, input| {
            b.iter_batched(
                || Heap::reserved(input.len(), false).unwrap(),
                |mut heap| {
                    for &entry in input {
                        heap.push(entry);
                    }
                    heap
                },
                BatchSize::PerIteration,
            );
        });
        g.bench_with_input(BenchmarkId::new("push/binary", name), &input, |b, input| {
            b.iter_batched(
                || BinaryHeap::with_capacity(input.len()),
                |mut heap| {
                    for &entry in input {
                        heap.push(entry);
                    }
                    heap
                },
                BatchSize::PerIteration,
            );
        });
        g.bench_with_input(BenchmarkId::new("pop/4-ary", name), &input, |b, input| {
            b.iter_batched(
                || {
                    let mut heap = Heap::reserved(input.len(), false).unwrap();
                    for &entry in input {
                        heap.push(entry);
                    }
                    heap
                },
                |mut heap| {
                    while let Some(entry) = heap.pop() {
                        black_box(entry);
                    }
                    heap
                },
                BatchSize::PerIteration,
            );
        });
        g.bench_with_input(BenchmarkId::new("pop/binary", name), &input, |b, input| {
            b.iter_batched(
                || input.iter().copied().collect::<BinaryHeap<Entry>>(),
                |mut heap| {
                    while let Some(entry) = heap.pop() {
                        black_box(entry);
                    }
                    heap
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, heaps);
criterion_main!(benches);
