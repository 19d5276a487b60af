//! Side by side: `schedgroup::Group` against what you would write instead, on the same
//! workloads, in one run.
//!
//! Variants:
//! - `group`: a `schedgroup::Group` (with `max_concurrent` when the scenario has a cap).
//! - `group+reserve`: the same, built with `Builder::reserve` for the scenario's task count, so
//!   that its storage is allocated and written before the timing starts.
//! - `naive`: `tokio::spawn(async { sleep_until(deadline).await; work })`, with a `Semaphore`
//!   acquired inside the task when capped.
//! - `joinset`: the same futures spawned into one `JoinSet` (behind a mutex, so any thread can
//!   add to it).
//! - `delayqueue`: one driver task owning a `tokio_util::time::DelayQueue` of boxed futures
//!   (behind a mutex, so any thread can insert), spawning each as it expires; when capped, the
//!   driver takes a semaphore permit before taking the next expired entry, so due work waits in
//!   the queue.
//!
//! The `outputs` scenario has tasks whose outputs go back to the requester, and variants of its
//! own: `group` (outputs dropped, for reference; done is `wait()`), `group:join`
//! (`Group::schedule_join`, each `JoinHandle` awaited), `group:results` (`Results::schedule`,
//! `join_next` until `None`), `naive` (`tokio::spawn` of a sleep then the output, each
//! `JoinHandle` awaited) and `joinset` (the same spawned into a `JoinSet`, `join_next_with_id`
//! until `None`). `delayqueue` and `group+reserve` do not run there.
//!
//! Every (scenario, variant) runs in a fresh child process of this same binary, so resident
//! memory and runtime state start clean, on a 2-worker multi-thread runtime. Each is run
//! `--runs` times (default 3), interleaved; the table shows the median and the min-max.
//!
//! ```text
//! cargo run --release --example compare                          # everything, 3 runs
//! cargo run --release --example compare -- --markdown out.md     # also write Markdown
//! cargo run --release --example compare -- --scenario burst --runs 1
//! cargo run --release --example compare -- --scenario outputs --variant group:results
//! cargo run --release --example compare -- --skip-10m           # small machines
//! ```
//!
//! The scenarios and the meaning of every column are in `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::Poll;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use schedgroup::Group;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::time::DelayQueue;

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

const VARIANTS: [&str; 5] = ["group", "group+reserve", "naive", "joinset", "delayqueue"];
/// The variants of the `outputs` scenario: ways to have each task's output back.
const OUTPUT_VARIANTS: [&str; 5] = ["group", "group:join", "group:results", "naive", "joinset"];
const FAR: Duration = Duration::from_secs(3600);

// ===== what each variant does =====

/// One of the four ways to run futures later.
enum Sched {
    Group(Group),
    Naive {
        rt: Handle,
        sem: Option<Arc<Semaphore>>,
    },
    JoinSet {
        rt: Handle,
        sem: Option<Arc<Semaphore>>,
        set: Mutex<JoinSet<()>>,
    },
    DelayQueue(Arc<Mutex<DelayQueue<BoxFut>>>),
}

impl Sched {
    /// The variant's scheduler; `tasks`: how many the scenario schedules (for the reserve).
    fn new(variant: &str, rt: &Handle, cap: Option<usize>, tasks: u64) -> Self {
        let sem = cap.map(|c| Arc::new(Semaphore::new(c)));
        match variant {
            "group" | "group+reserve" => {
                let reserve = if variant == "group" {
                    0
                } else {
                    tasks as usize
                };
                let group = Group::builder()
                    .runtime(rt.clone())
                    .max_concurrent(cap.unwrap_or(usize::MAX))
                    .reserve(reserve)
                    .build();
                Sched::Group(group)
            }
            "naive" => Sched::Naive {
                rt: rt.clone(),
                sem,
            },
            "joinset" => Sched::JoinSet {
                rt: rt.clone(),
                sem,
                set: Mutex::new(JoinSet::new()),
            },
            "delayqueue" => {
                let queue = Arc::new(Mutex::new(DelayQueue::new()));
                rt.spawn(drive(queue.clone(), sem));
                Sched::DelayQueue(queue)
            }
            other => panic!("unknown variant {other}"),
        }
    }

    fn schedule<F>(&self, at: Instant, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self {
            Sched::Group(group) => {
                group.schedule(at, work);
            }
            Sched::Naive { rt, sem } => {
                rt.spawn(sleep_then(at, sem.clone(), work));
            }
            Sched::JoinSet { rt, sem, set } => {
                set.lock()
                    .unwrap()
                    .spawn_on(sleep_then(at, sem.clone(), work), rt);
            }
            Sched::DelayQueue(queue) => {
                queue.lock().unwrap().insert_at(Box::pin(work), at);
            }
        }
    }
}

// ===== the tasks =====
//
// `async fn`s, so that every call site of a scenario schedules the same future type: a group
// keeps its storage, and its reserve, per future type. Each scenario schedules its first task
// before its clock starts, for every variant: that is where a group makes the type's storage
// (and writes its reserve), a `DelayQueue` its slab, tokio its first task.

/// One shared counter's increment.
async fn bump(counter: Arc<AtomicU64>) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// One task done.
async fn hit(done: Arc<Done>) {
    done.hit();
}

/// Yields once, then one task done.
async fn yield_then_hit(done: Arc<Done>) {
    tokio::task::yield_now().await;
    done.hit();
}

/// An output for the requester.
async fn answer(i: u64) -> u64 {
    i
}

/// The tokio task body of the `outputs` scenario: sleep, then the output.
async fn sleep_answer(at: Instant, i: u64) -> u64 {
    sleep_until(at).await;
    i
}

/// The naive task body: sleep, then (if capped) take a permit, then work.
async fn sleep_then<F: Future<Output = ()>>(at: Instant, sem: Option<Arc<Semaphore>>, work: F) {
    sleep_until(at).await;
    let _permit = match &sem {
        Some(sem) => Some(sem.acquire().await.unwrap()),
        None => None,
    };
    work.await;
}

/// The `DelayQueue` driver: take a permit (if capped), then the next expired future, spawn it.
async fn drive(queue: Arc<Mutex<DelayQueue<BoxFut>>>, sem: Option<Arc<Semaphore>>) {
    loop {
        let permit = match &sem {
            Some(sem) => Some(sem.clone().acquire_owned().await.unwrap()),
            None => None,
        };
        // An empty queue returns Ready(None) with our waker kept; an insert wakes us.
        let work = poll_fn(|cx| match queue.lock().unwrap().poll_expired(cx) {
            Poll::Ready(Some(expired)) => Poll::Ready(expired.into_inner()),
            _ => Poll::Pending,
        })
        .await;
        tokio::spawn(async move {
            let _permit = permit;
            work.await;
        });
    }
}

/// Counts finished tasks; `wait` returns once `target` have.
struct Done {
    count: AtomicU64,
    target: u64,
    notify: Notify,
}

impl Done {
    fn new(target: u64) -> Arc<Self> {
        Arc::new(Self {
            count: AtomicU64::new(0),
            target,
            notify: Notify::new(),
        })
    }

    fn hit(&self) {
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.target {
            self.notify.notify_one();
        }
    }

    async fn wait(&self) {
        while self.count.load(Ordering::Acquire) < self.target {
            self.notify.notified().await;
        }
    }
}

// ===== measurements =====

fn proc_status(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib * 1024.0)
}

/// Minor page faults of this process so far (from /proc/self/stat).
fn minor_faults() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // `minflt` is field 10 of stat; the rest starts at field 3.
    rest.split_whitespace()
        .nth(7)
        .and_then(|n| n.parse().ok())
        .unwrap_or(f64::NAN)
}

fn rss() -> f64 {
    proc_status("VmRSS:")
}

fn peak_rss() -> f64 {
    proc_status("VmHWM:")
}

/// CPU time of every thread of this process so far, in ns (from schedstat).
fn cpu_ns() -> f64 {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    total
}

fn alive() -> usize {
    Handle::current().metrics().num_alive_tasks()
}

/// Samples the live tokio task count every millisecond from a plain thread; the maximum.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Sampler {
    fn start() -> Self {
        let metrics = Handle::current().metrics();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max = 0;
            while !s.load(Ordering::Relaxed) {
                max = max.max(metrics.num_alive_tasks());
                std::thread::sleep(Duration::from_millis(1));
            }
            max
        });
        Self { stop, thread }
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

// ===== scenarios (child side) =====

type Metrics = Vec<(&'static str, f64)>;

async fn pending(variant: &str) -> Metrics {
    const N: u64 = 1_000_000;
    let done = Done::new(N);
    let sched = Sched::new(variant, &Handle::current(), None, N);
    let before = rss();
    let deadline = Instant::now() + Duration::from_secs(5);
    sched.schedule(deadline, hit(done.clone()));
    let faults = minor_faults();
    let start = Instant::now();
    for _ in 1..N {
        sched.schedule(deadline, hit(done.clone()));
    }
    let scheduling = start.elapsed();
    let faults = minor_faults() - faults;
    let after = rss();
    let live = alive();
    let cpu_before = cpu_ns();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_cpu = cpu_ns() - cpu_before;
    assert!(Instant::now() < deadline, "scheduling took too long");
    done.wait().await;
    let drain = deadline.elapsed();
    vec![
        (
            "ns_per_schedule",
            scheduling.as_nanos() as f64 / (N - 1) as f64,
        ),
        ("bytes_per_task", (after - before) / N as f64),
        ("faults_per_1000", faults * 1000.0 / (N - 1) as f64),
        ("live_tasks", live as f64),
        ("idle_cpu_ms", idle_cpu / 1e6),
        ("drain_ms", drain.as_secs_f64() * 1e3),
        ("peak_rss_mib", peak_rss() / (1 << 20) as f64),
    ]
}

async fn burst(variant: &str) -> Metrics {
    const N: u64 = 1_000_000;
    const CAP: usize = 16;
    let done = Done::new(N);
    let sched = Sched::new(variant, &Handle::current(), Some(CAP), N);
    let sampler = Sampler::start();
    let start = Instant::now();
    sched.schedule(start, yield_then_hit(done.clone()));
    let start = Instant::now();
    for _ in 1..N {
        sched.schedule(start, yield_then_hit(done.clone()));
    }
    done.wait().await;
    let total = start.elapsed();
    let max_live = sampler.stop();
    vec![
        ("total_ms", total.as_secs_f64() * 1e3),
        ("max_live_tasks", max_live as f64),
        ("peak_rss_mib", peak_rss() / (1 << 20) as f64),
    ]
}

async fn lateness(variant: &str) -> Metrics {
    const N: usize = 20_000;
    let done = Done::new(N as u64);
    let sched = Sched::new(variant, &Handle::current(), None, N as u64);
    let late: Arc<Vec<AtomicI64>> = Arc::new((0..N).map(|_| AtomicI64::new(0)).collect());
    // The same deadlines for every variant.
    let mut rng = rand::rngs::StdRng::seed_from_u64(4861);
    let start = Instant::now() + Duration::from_millis(100);
    for i in 0..N {
        let deadline = start + Duration::from_micros(rng.random_range(0..2_000_000));
        let (done, late) = (done.clone(), late.clone());
        sched.schedule(deadline, async move {
            let now = Instant::now();
            let ns = match now.checked_duration_since(deadline) {
                Some(after) => after.as_nanos() as i64,
                None => -((deadline - now).as_nanos() as i64),
            };
            late[i].store(ns, Ordering::Relaxed);
            done.hit();
        });
    }
    done.wait().await;
    let mut sorted: Vec<i64> = late.iter().map(|l| l.load(Ordering::Relaxed)).collect();
    sorted.sort_unstable();
    let us = |ns: f64| ns / 1e3;
    vec![
        ("p50_us", us(percentile(&sorted, 0.5))),
        ("p99_us", us(percentile(&sorted, 0.99))),
        ("p999_us", us(percentile(&sorted, 0.999))),
        ("max_us", us(*sorted.last().unwrap() as f64)),
        ("early", sorted.iter().filter(|&&l| l < 0).count() as f64),
    ]
}

async fn contention(variant: &str) -> Metrics {
    const PER_THREAD: u64 = 500_000;
    let rt = Handle::current();
    let sched = Arc::new(Sched::new(variant, &rt, None, 2 * PER_THREAD));
    let counter = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(3));
    let at = Instant::now() + FAR;
    sched.schedule(at, bump(counter.clone()));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (sched, counter, barrier, rt) =
                (sched.clone(), counter.clone(), barrier.clone(), rt.clone());
            std::thread::spawn(move || {
                // DelayQueue's insert needs a runtime context for its timer.
                let _entered = rt.enter();
                barrier.wait();
                for _ in 0..PER_THREAD {
                    sched.schedule(at, bump(counter.clone()));
                }
            })
        })
        .collect();
    barrier.wait();
    let start = std::time::Instant::now();
    for t in threads {
        t.join().unwrap();
    }
    let wall = start.elapsed();
    vec![(
        "ns_per_schedule",
        wall.as_nanos() as f64 / (2 * PER_THREAD) as f64,
    )]
}

/// Cancel and reschedule by handle: a million far-future tasks are each moved later once, then
/// each cancelled, through what a user keeps for that: a `TaskHandle`, a `DelayQueue` key (with
/// the queue behind its mutex, as a scheduler shared between threads needs), a tokio
/// `JoinHandle` or `AbortHandle` (`abort()`; a spawned sleep cannot be moved).
async fn handles(variant: &str) -> Metrics {
    const N: usize = 1_000_000;
    let rt = Handle::current();
    let counter = Arc::new(AtomicU64::new(0));
    let at = Instant::now() + FAR;
    let later = at + FAR;
    let work = || bump(counter.clone());
    let per_task = |start: std::time::Instant| start.elapsed().as_nanos() as f64 / N as f64;
    match variant {
        "group" | "group+reserve" => {
            let Sched::Group(group) = Sched::new(variant, &rt, None, N as u64) else {
                unreachable!("a group variant makes a group");
            };
            let handles: Vec<_> = (0..N).map(|_| group.schedule(at, work())).collect();
            let start = std::time::Instant::now();
            for handle in &handles {
                assert!(handle.reschedule(later));
            }
            let reschedule = per_task(start);
            let start = std::time::Instant::now();
            for handle in &handles {
                assert!(handle.cancel());
            }
            vec![
                ("ns_per_reschedule", reschedule),
                ("ns_per_cancel", per_task(start)),
            ]
        }
        "delayqueue" => {
            let queue: Mutex<DelayQueue<BoxFut>> = Mutex::new(DelayQueue::new());
            let keys: Vec<_> = (0..N)
                .map(|_| queue.lock().unwrap().insert_at(Box::pin(work()), at))
                .collect();
            let start = std::time::Instant::now();
            for key in &keys {
                queue.lock().unwrap().reset_at(key, later);
            }
            let reschedule = per_task(start);
            let start = std::time::Instant::now();
            for key in &keys {
                let removed = queue.lock().unwrap().remove(key);
                drop(removed);
            }
            vec![
                ("ns_per_reschedule", reschedule),
                ("ns_per_cancel", per_task(start)),
            ]
        }
        "naive" => {
            let handles: Vec<_> = (0..N)
                .map(|_| rt.spawn(sleep_then(at, None, work())))
                .collect();
            let start = std::time::Instant::now();
            for handle in &handles {
                handle.abort();
            }
            vec![("ns_per_cancel", per_task(start))]
        }
        "joinset" => {
            let mut set = JoinSet::new();
            let handles: Vec<_> = (0..N)
                .map(|_| set.spawn_on(sleep_then(at, None, work()), &rt))
                .collect();
            let start = std::time::Instant::now();
            for handle in &handles {
                handle.abort();
            }
            vec![("ns_per_cancel", per_task(start))]
        }
        other => panic!("unknown variant {other}"),
    }
}

/// Measures an `outputs` run: started after the first task is scheduled, `scheduled` once all
/// are, `done` once every output is in.
struct Probe {
    rss: f64,
    cpu: f64,
    start: std::time::Instant,
    scheduling: Duration,
    bytes: f64,
}

impl Probe {
    fn start() -> Self {
        Self {
            rss: rss(),
            cpu: cpu_ns(),
            start: std::time::Instant::now(),
            scheduling: Duration::ZERO,
            bytes: 0.0,
        }
    }

    fn scheduled(mut self, deadline: Instant) -> Self {
        self.scheduling = self.start.elapsed();
        assert!(Instant::now() < deadline, "scheduling took too long");
        self.bytes = rss() - self.rss;
        self
    }

    /// Every output is in, and they add up to `sum`.
    fn done(self, deadline: Instant, n: u64, sum: u64) -> Metrics {
        let drain = deadline.elapsed();
        assert_eq!(sum, n * (n - 1) / 2, "every output, once");
        vec![
            (
                "ns_per_schedule",
                self.scheduling.as_nanos() as f64 / (n - 1) as f64,
            ),
            ("bytes_per_task", self.bytes / (n - 1) as f64),
            ("drain_ms", drain.as_secs_f64() * 1e3),
            ("cpu_ns_per_task", (cpu_ns() - self.cpu) / (n - 1) as f64),
        ]
    }
}

/// Outputs back to the requester: 100,000 tasks due at one deadline, uncapped (`JoinSet` and
/// spawn have no cap; `burst` measures one), each returning its number, which the requester
/// receives and adds up. The deadline is 500 ms on, so that all are pending when the resident
/// memory is read; that includes what the requester keeps to receive the outputs (its
/// `JoinHandle`s, the `JoinSet`, the `Results`).
///
/// The requester is a tokio task on a worker, as a client would be: on `block_on`'s thread,
/// each output that finds it parked would wake it through the OS (thousands of context
/// switches per run for `Results` and `JoinSet`), which is not what the variants cost.
async fn outputs(variant: &str) -> Metrics {
    tokio::spawn(requester(variant.to_owned())).await.unwrap()
}

/// The `outputs` scenario's requester.
async fn requester(variant: String) -> Metrics {
    const N: u64 = 100_000;
    let rt = Handle::current();
    let deadline = Instant::now() + Duration::from_millis(500);
    let group = || match Sched::new("group", &rt, None, N) {
        Sched::Group(group) => group,
        _ => unreachable!("a group variant makes a group"),
    };
    let metrics = match variant.as_str() {
        "group" => {
            let group = group();
            group.schedule(deadline, answer(0));
            let probe = Probe::start();
            for i in 1..N {
                group.schedule(deadline, answer(i));
            }
            let probe = probe.scheduled(deadline);
            group.wait().await.unwrap();
            // The outputs were dropped: only their count is known.
            assert_eq!(group.stats().completed, N);
            probe.done(deadline, N, N * (N - 1) / 2)
        }
        "group:join" => {
            let group = group();
            let mut handles = Vec::with_capacity(N as usize);
            handles.push(group.schedule_join(deadline, answer(0)));
            let probe = Probe::start();
            for i in 1..N {
                handles.push(group.schedule_join(deadline, answer(i)));
            }
            let probe = probe.scheduled(deadline);
            let mut sum = 0;
            for handle in handles {
                sum += handle.await.unwrap();
            }
            probe.done(deadline, N, sum)
        }
        "group:results" => {
            let group = group();
            let mut results = group.results();
            results.schedule(deadline, answer(0));
            let probe = Probe::start();
            for i in 1..N {
                results.schedule(deadline, answer(i));
            }
            let probe = probe.scheduled(deadline);
            let mut sum = 0;
            while let Some((_id, output)) = results.join_next().await {
                sum += output.unwrap();
            }
            probe.done(deadline, N, sum)
        }
        "naive" => {
            let mut handles = Vec::with_capacity(N as usize);
            handles.push(rt.spawn(sleep_answer(deadline, 0)));
            let probe = Probe::start();
            for i in 1..N {
                handles.push(rt.spawn(sleep_answer(deadline, i)));
            }
            let probe = probe.scheduled(deadline);
            let mut sum = 0;
            for handle in handles {
                sum += handle.await.unwrap();
            }
            probe.done(deadline, N, sum)
        }
        "joinset" => {
            let mut set = JoinSet::new();
            set.spawn_on(sleep_answer(deadline, 0), &rt);
            let probe = Probe::start();
            for i in 1..N {
                set.spawn_on(sleep_answer(deadline, i), &rt);
            }
            let probe = probe.scheduled(deadline);
            let mut sum = 0;
            while let Some(joined) = set.join_next_with_id().await {
                sum += joined.unwrap().1;
            }
            probe.done(deadline, N, sum)
        }
        other => panic!("unknown variant {other} for outputs"),
    };
    assert!(
        Instant::now() > deadline,
        "outputs came back before their deadline"
    );
    metrics
}

async fn growth(variant: &str, pending: u64) -> Metrics {
    // Many short batches, median: one batch is ~0.1 ms, so a hiccup spoils one, not the result.
    const BATCH: u64 = 1_000;
    const BATCHES: usize = 21;
    let sched = Sched::new(
        variant,
        &Handle::current(),
        None,
        pending + BATCH * BATCHES as u64,
    );
    let counter = Arc::new(AtomicU64::new(0));
    let at = Instant::now() + FAR;
    let add = |n: u64| {
        for _ in 0..n {
            sched.schedule(at, bump(counter.clone()));
        }
    };
    add(pending);
    let mut batches: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let start = std::time::Instant::now();
            add(BATCH);
            start.elapsed().as_nanos() as f64 / BATCH as f64
        })
        .collect();
    vec![("ns_per_schedule", median(&mut batches))]
}

fn child(scenario: &str, variant: &str) {
    let rt: Runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let metrics = rt.block_on(async {
        match scenario {
            "pending" => pending(variant).await,
            "burst" => burst(variant).await,
            "lateness" => lateness(variant).await,
            "contention" => contention(variant).await,
            "handles" => handles(variant).await,
            "outputs" => outputs(variant).await,
            s if s.starts_with("growth_") => {
                let n = s["growth_".len()..].parse().expect("growth_<pending>");
                growth(variant, n).await
            }
            other => panic!("unknown scenario {other}"),
        }
    });
    let mut line = String::from("RESULT");
    for (key, value) in metrics {
        write!(line, " {key}={value}").unwrap();
    }
    println!("{line}");
    // Skip tearing down millions of tasks: the numbers are out.
    std::process::exit(0);
}

// ===== the parent: run everything, print the table =====

/// Column labels for each scenario's metrics, in order.
fn labels(scenario: &str) -> &'static [(&'static str, &'static str)] {
    match scenario {
        "pending" => &[
            ("ns_per_schedule", "schedule (ns/task)"),
            ("bytes_per_task", "resident bytes per pending task"),
            ("faults_per_1000", "page faults per 1,000 schedules"),
            ("live_tasks", "live tokio tasks while pending"),
            ("idle_cpu_ms", "CPU during 2 s of waiting (ms)"),
            ("drain_ms", "drain after the deadline (ms)"),
            ("peak_rss_mib", "peak RSS (MiB)"),
        ],
        "burst" => &[
            ("total_ms", "total time (ms)"),
            ("max_live_tasks", "max live tokio tasks"),
            ("peak_rss_mib", "peak RSS (MiB)"),
        ],
        "lateness" => &[
            ("p50_us", "p50 late (µs)"),
            ("p99_us", "p99 late (µs)"),
            ("p999_us", "p99.9 late (µs)"),
            ("max_us", "max late (µs)"),
            ("early", "started early"),
        ],
        "handles" => &[
            ("ns_per_reschedule", "reschedule by handle (ns/task)"),
            ("ns_per_cancel", "cancel by handle (ns/task)"),
        ],
        "outputs" => &[
            ("ns_per_schedule", "schedule (ns/task)"),
            ("bytes_per_task", "resident bytes per pending task"),
            ("drain_ms", "all outputs in, after the deadline (ms)"),
            ("cpu_ns_per_task", "CPU, schedule to output (ns/task)"),
        ],
        _ => &[("ns_per_schedule", "schedule (ns/task)")],
    }
}

fn format_value(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn cell(values: &[f64]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let mut sorted = values.to_vec();
    let mid = median(&mut sorted);
    if sorted.len() == 1 {
        return format_value(mid);
    }
    format!(
        "{} ({}-{})",
        format_value(mid),
        format_value(sorted[0]),
        format_value(sorted[sorted.len() - 1])
    )
}

fn run_child(scenario: &str, variant: &str) -> BTreeMap<String, f64> {
    let exe = std::env::current_exe().unwrap();
    let output = Command::new(exe)
        .args(["--child", scenario, variant])
        .output()
        .expect("spawn child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT"))
        .unwrap_or_else(|| {
            panic!(
                "{scenario}/{variant} printed no result: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".into(), |(_, m)| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or("?".into(), |kib| {
            format!("{:.0} GiB", kib / (1024.0 * 1024.0))
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{model}, {cores} cores, {memory}, Linux {}, {rustc}",
        kernel.trim()
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1], &args[2]);
        return;
    }
    let mut runs = 3;
    let mut markdown = None;
    let mut skip_10m = false;
    let mut only_scenarios = Vec::new();
    let mut only_variants = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => runs = it.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            "--markdown" => markdown = Some(it.next().expect("--markdown PATH")),
            "--skip-10m" => skip_10m = true,
            "--scenario" => only_scenarios.push(it.next().expect("--scenario NAME")),
            "--variant" => only_variants.push(it.next().expect("--variant NAME")),
            other => panic!("unknown argument {other}; see the example's docs"),
        }
    }
    let mut scenarios = vec![
        "pending",
        "burst",
        "lateness",
        "contention",
        "handles",
        "outputs",
        "growth_1000",
        "growth_100000",
        "growth_1000000",
        "growth_10000000",
    ];
    if skip_10m {
        scenarios.retain(|s| *s != "growth_10000000");
    }
    scenarios.retain(|s| {
        only_scenarios.is_empty() || only_scenarios.iter().any(|o| s.starts_with(o.as_str()))
    });
    // The variants a scenario runs: `outputs` has its own.
    let variants = |scenario: &str| -> Vec<&'static str> {
        let all: &[&'static str] = if scenario == "outputs" {
            &OUTPUT_VARIANTS
        } else {
            &VARIANTS
        };
        all.iter()
            .copied()
            .filter(|v| only_variants.is_empty() || only_variants.iter().any(|o| o == v))
            .collect()
    };

    // On a VM, the first touch of guest memory can cost a host-side fault on top of the
    // guest's own; touch (and free) more than any child uses once, so no variant pays that
    // just for running first.
    eprintln!("warming up 12 GiB of memory");
    drop(std::hint::black_box(vec![1u8; 12 << 30]));

    // results[scenario][variant][metric] = one value per run
    let mut results: BTreeMap<&str, BTreeMap<&str, BTreeMap<String, Vec<f64>>>> = BTreeMap::new();
    for run in 1..=runs {
        for &scenario in &scenarios {
            for variant in variants(scenario) {
                eprintln!("run {run}/{runs}: {scenario} / {variant}");
                for (k, v) in run_child(scenario, variant) {
                    results
                        .entry(scenario)
                        .or_default()
                        .entry(variant)
                        .or_default()
                        .entry(k)
                        .or_default()
                        .push(v);
                }
            }
        }
    }

    let mut out = String::new();
    writeln!(out, "Machine: {}", machine()).unwrap();
    writeln!(
        out,
        "Median of {runs} runs (min-max), each in its own process.\n"
    )
    .unwrap();
    // Growth is one table: a row per pending count.
    let growth: Vec<&str> = scenarios
        .iter()
        .copied()
        .filter(|s| s.starts_with("growth_"))
        .collect();
    let header = |out: &mut String, first: &str, variants: &[&str]| {
        write!(out, "| {first} |").unwrap();
        for v in variants {
            write!(out, " {v} |").unwrap();
        }
        write!(out, "\n|---|").unwrap();
        for _ in variants {
            write!(out, "---|").unwrap();
        }
        out.push('\n');
    };
    for &scenario in scenarios.iter().filter(|s| !s.starts_with("growth_")) {
        let variants = variants(scenario);
        writeln!(out, "### {scenario}\n").unwrap();
        header(&mut out, "metric", &variants);
        for (key, label) in labels(scenario) {
            write!(out, "| {label} |").unwrap();
            for v in &variants {
                let values = results[scenario][v].get(*key).cloned().unwrap_or_default();
                write!(out, " {} |", cell(&values)).unwrap();
            }
            out.push('\n');
        }
        out.push('\n');
    }
    if !growth.is_empty() {
        writeln!(
            out,
            "### growth: schedule cost (ns/task) with N already pending\n"
        )
        .unwrap();
        let variants = variants("growth");
        header(&mut out, "N pending", &variants);
        for &scenario in &growth {
            write!(out, "| {} |", &scenario["growth_".len()..]).unwrap();
            for v in &variants {
                let values = results[scenario][v]
                    .get("ns_per_schedule")
                    .cloned()
                    .unwrap_or_default();
                write!(out, " {} |", cell(&values)).unwrap();
            }
            out.push('\n');
        }
    }
    print!("{out}");
    if let Some(path) = markdown {
        std::fs::write(&path, &out).expect("write the Markdown table");
        eprintln!("wrote {path}");
    }
}
