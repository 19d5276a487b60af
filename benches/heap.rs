//! The queue's heap (an ascending run plus a 4-ary heap) against the standard library's
//! `BinaryHeap`, on the same 16-byte entries, in the same run: a million pushes and a million
//! pops, with equal deadlines (a burst scheduled for one instant) and with random ones. Each
//! heap is filled and emptied again and again in the same memory, so the numbers are the
//! heaps' own, not the kernel's first touch of fresh pages.
//!
//! ```text
//! cargo bench --bench heap
//! ```
//!
//! The heap is the crate's own source file, compiled into this bench (it has no dependencies),
//! so the bench measures exactly what the queue runs.

use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
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

/// What the bench needs of a heap.
trait Bench {
    fn push(&mut self, entry: Entry);
    fn pop(&mut self) -> Option<Entry>;
}

impl Bench for Heap {
    fn push(&mut self, entry: Entry) {
        Heap::push(self, entry);
    }
    fn pop(&mut self) -> Option<Entry> {
        Heap::pop(self)
    }
}

impl Bench for BinaryHeap<Entry> {
    fn push(&mut self, entry: Entry) {
        BinaryHeap::push(self, entry);
    }
    fn pop(&mut self) -> Option<Entry> {
        BinaryHeap::pop(self)
    }
}

/// Times pushing every entry into `heap`, then popping them all, `iters` times, into the same
/// heap (its memory is warm after the first round, so page faults stay out of it).
fn time(heap: &mut impl Bench, input: &[Entry], iters: u64, pop: bool) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        for &entry in input {
            heap.push(entry);
        }
        if !pop {
            total += start.elapsed();
        }
        let start = Instant::now();
        while let Some(entry) = heap.pop() {
            black_box(entry);
        }
        if pop {
            total += start.elapsed();
        }
    }
    total
}

fn heaps(c: &mut Criterion) {
    let mut g = c.benchmark_group("heap");
    g.sample_size(20);
    g.throughput(Throughput::Elements(u64::from(N)));
    for (name, random) in [("equal", false), ("random", true)] {
        let input = entries(random);
        for (op, pop) in [("push", false), ("pop", true)] {
            let mut ours = Heap::reserved(input.len(), true).unwrap();
            time(&mut ours, &input, 1, pop);
            g.bench_with_input(
                BenchmarkId::new(format!("{op}/ours"), name),
                &input,
                |b, input| {
                    b.iter_custom(|iters| time(&mut ours, input, iters, pop));
                },
            );
            let mut binary = BinaryHeap::with_capacity(input.len());
            time(&mut binary, &input, 1, pop);
            g.bench_with_input(
                BenchmarkId::new(format!("{op}/binary"), name),
                &input,
                |b, input| {
                    b.iter_custom(|iters| time(&mut binary, input, iters, pop));
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, heaps);
criterion_main!(benches);
