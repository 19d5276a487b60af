//! The shared limiter: how well it keeps its slots busy under a random multi-group load, and
//! what it costs per task start.
//!
//! ```text
//! cargo bench --bench limiter                    # both parts
//! cargo bench --bench limiter -- utilisation     # only the utilisation table (a few seconds)
//! cargo bench --bench limiter -- limiter_cost    # only the criterion part
//! ```
//!
//! **Utilisation** runs on a paused-clock, current-thread runtime, so the result depends only on
//! the seed and the code, not on the machine. Per seed: 8 groups, each with a random cap `k` in
//! 1..=6, share a `Limiter` of N = 16; 3,000 tasks arrive over 30 s of virtual time, half due
//! at once and half up to 3 s later, each running 5-400 ms (each group gets a random share, so
//! some are overloaded while others idle). Until the load has drained, a controller changes the
//! limit (`set_limit` to 1..=16, `throttle_down` by 4, `throttle_up` by 2, held 0.5 s) or a
//! group's cap (`set_max_concurrent` to 1..=6) every 0.2-2 s.
//!
//! Every 1 ms of virtual time, after letting everything that can run at that instant run (16
//! `yield_now`s; 1 or 64 give the same numbers), the bench reads the limiter's `limit()` and
//! `running()`, every group's `max_concurrent()`, and its own count of each group's running
//! tasks and of its due, not yet started tasks (it knows every deadline it scheduled). That state
//! holds until the next millisecond, because every arrival, deadline, run time and change falls
//! on a whole millisecond. With, for group `g`, cap `k_g`, `running_g` and `due_g`, and the limit
//! `L`, and `R = Σ_g running_g`:
//!
//! - **work waits** when `D = Σ_g min(k_g - running_g, due_g) > 0` (terms below 0 count as 0):
//!   some group has a due task it could start under its own cap.
//! - **idle** = `min(L - R, D)` (0 if `R ≥ L`): free slots some group could have used. A free
//!   slot that no group can use (every group with due work is at its own cap) is not counted
//!   against the limiter.
//! - **used** = `min(R, L)`: after a lowered limit, tasks above it still run; they count as
//!   full use, no more.
//! - **utilisation** = `Σ used ÷ Σ (used + idle)` over the milliseconds in which work waits. A
//!   limiter that hands every free slot to due work at once scores 100%; each slot left idle for
//!   1 ms while a group could have used it costs 1 slot-ms. **Target: at least 99%.** The table
//!   shows `used + idle` as "usable".
//!
//! The table also shows `Σ running ÷ Σ L` over the same milliseconds ("busy ÷ limit"), which
//! counts slots the groups' caps make unusable as idle (and can pass 100% after the limit is
//! lowered). Under the table: how many of the milliseconds with an idle usable slot had nobody
//! in the limiter's line, and warnings if a task started early, if `limiter.running()` ever
//! differed from the tasks running, or if a load did not drain.
//!
//! **Cost** (criterion): 10,000 due tasks drained by one group capped at 16, without and with a
//! limiter of 16; the difference per task is what the limiter adds to a task start (and end).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant as StdInstant};

use criterion::{Criterion, Throughput, criterion_group};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schedgroup::{Group, Limiter, Throttle};
use tokio::runtime::Runtime;
use tokio::time::{Instant, sleep_until};

// ===== utilisation =====

const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];
const GROUPS: usize = 8;
const POOL: usize = 16;
const TASKS: usize = 3_000;
/// Tasks arrive over this many ms of virtual time.
const ARRIVALS_MS: u64 = 30_000;
/// Give up (and say so) if the load has not drained after this many ms of virtual time.
const STALL_MS: u64 = 3_600_000;

/// One task of the load: which group, when it is scheduled, its deadline, how long it runs.
struct Task {
    group: usize,
    arrival: u64,
    deadline: u64,
    run: u64,
}

/// A change the controller makes at a moment of virtual time.
enum Change {
    SetLimit(usize),
    ThrottleDown,
    ThrottleUp,
    SetK { group: usize, k: usize },
}

/// A random load, a pure function of the seed.
struct Load {
    seed: u64,
    ks: Vec<usize>,
    tasks: Vec<Task>,
}

impl Load {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let ks: Vec<usize> = (0..GROUPS).map(|_| rng.random_range(1..=6)).collect();
        // Uneven shares: some groups have far more work than their k, others little.
        let weights: Vec<u32> = (0..GROUPS).map(|_| rng.random_range(1..=10)).collect();
        let total: u32 = weights.iter().sum();
        let mut tasks: Vec<Task> = (0..TASKS)
            .map(|_| {
                let mut pick = rng.random_range(0..total);
                let group = weights
                    .iter()
                    .position(|&w| {
                        let hit = pick < w;
                        pick = pick.saturating_sub(w);
                        hit
                    })
                    .expect("pick < total");
                let arrival = rng.random_range(0..ARRIVALS_MS);
                // Half are due at once, half up to 3 s later.
                let deadline = if rng.random_bool(0.5) {
                    arrival
                } else {
                    arrival + rng.random_range(1..3_000)
                };
                Task {
                    group,
                    arrival,
                    deadline,
                    run: rng.random_range(5..=400),
                }
            })
            .collect();
        tasks.sort_by_key(|t| t.arrival);
        Self { seed, ks, tasks }
    }

    /// The controller's changes, at random moments 0.2-2 s apart for as long as the load runs.
    fn changes(&self) -> impl Iterator<Item = (u64, Change)> + Send + 'static {
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0xC0_47_20_11);
        let mut at = 0;
        std::iter::from_fn(move || {
            at += rng.random_range(200..2_000);
            let change = match rng.random_range(0..10) {
                0..=3 => Change::SetLimit(rng.random_range(1..=POOL)),
                4 | 5 => Change::ThrottleDown,
                6 | 7 => Change::ThrottleUp,
                _ => Change::SetK {
                    group: rng.random_range(0..GROUPS),
                    k: rng.random_range(1..=6),
                },
            };
            Some((at, change))
        })
    }
}

/// What the bench itself counts for one group; tasks update it as they start and end.
#[derive(Default)]
struct Counts {
    started: AtomicUsize,
    running: AtomicUsize,
    completed: AtomicUsize,
}

/// What one run measured. Slot-ms are slots × milliseconds of virtual time.
#[derive(Default)]
struct Measured {
    /// Milliseconds in which work waited.
    waited_ms: u64,
    /// Slot-ms used, and left idle while a group could have used them.
    used: u64,
    idle: u64,
    /// `Σ running` and `Σ L` over the same milliseconds.
    busy: u64,
    limit: u64,
    /// When the last task ended, in ms from the start.
    end_ms: u64,
    /// Samples in which `limiter.running()` differed from the tasks actually running.
    mismatched: u64,
    /// Milliseconds with a usable slot idle, and of those, the ones with nobody in the
    /// limiter's line (`limiter.waiting() == 0`).
    idle_ms: u64,
    idle_unqueued_ms: u64,
    /// Tasks that started before their deadline.
    early: u64,
    /// Changes the controller made before the load drained.
    changes: u64,
    stalled: bool,
}

impl Measured {
    fn add(&mut self, other: &Measured) {
        self.waited_ms += other.waited_ms;
        self.idle += other.idle;
        self.used += other.used;
        self.busy += other.busy;
        self.limit += other.limit;
        self.mismatched += other.mismatched;
        self.idle_ms += other.idle_ms;
        self.idle_unqueued_ms += other.idle_unqueued_ms;
        self.early += other.early;
        self.stalled |= other.stalled;
    }
}

/// Lets everything runnable at this instant run; a paused clock does not move meanwhile.
async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_string()
    } else {
        format!("{:.2}%", 100.0 * part as f64 / whole as f64)
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.1}", ms as f64 / 1000.0)
}

/// Runs `load` on the current (paused, current-thread) runtime and measures it.
async fn run(load: &Load) -> Measured {
    let start = Instant::now();
    let limiter = Limiter::new(POOL);
    limiter.set_throttle(Throttle {
        step_down: 4,
        step_up: 2,
        floor: 2,
        ceiling: Some(POOL),
        hold: Duration::from_millis(500),
    });
    let groups: Vec<Group> = load
        .ks
        .iter()
        .map(|&k| Group::builder().max_concurrent(k).limiter(&limiter).build())
        .collect();
    let counts: Arc<Vec<Counts>> = Arc::new((0..GROUPS).map(|_| Counts::default()).collect());
    let early = Arc::new(AtomicU64::new(0));
    let changes_made = Arc::new(AtomicU64::new(0));

    // Each group's deadlines in order, to count its due tasks at any moment.
    let mut deadlines: Vec<Vec<u64>> = vec![Vec::new(); GROUPS];
    for t in &load.tasks {
        deadlines[t.group].push(t.deadline);
    }
    for d in &mut deadlines {
        d.sort_unstable();
    }

    // The feeder schedules each task when it arrives. (Relaxed orderings throughout: one
    // thread runs everything.)
    let feeder = {
        let plan: Vec<(usize, u64, u64, u64)> = load
            .tasks
            .iter()
            .map(|t| (t.group, t.arrival, t.deadline, t.run))
            .collect();
        let (groups, counts, early) = (groups.clone(), counts.clone(), early.clone());
        tokio::spawn(async move {
            for (group, arrival, deadline, run) in plan {
                sleep_until(start + Duration::from_millis(arrival)).await;
                let deadline = start + Duration::from_millis(deadline);
                let (counts, early) = (counts.clone(), early.clone());
                groups[group].schedule(deadline, async move {
                    let mine = &counts[group];
                    if Instant::now() < deadline {
                        early.fetch_add(1, Ordering::Relaxed);
                    }
                    mine.started.fetch_add(1, Ordering::Relaxed);
                    mine.running.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(run)).await;
                    mine.running.fetch_sub(1, Ordering::Relaxed);
                    mine.completed.fetch_add(1, Ordering::Relaxed);
                });
            }
        })
    };
    let controller = {
        let plan = load.changes();
        let (limiter, groups, applied) = (limiter.clone(), groups.clone(), changes_made.clone());
        tokio::spawn(async move {
            for (at, change) in plan {
                sleep_until(start + Duration::from_millis(at)).await;
                // Whether each change applied (a throttle may refuse) is not needed: the
                // sampler reads the limits in force.
                match change {
                    Change::SetLimit(l) => {
                        limiter.set_limit(l);
                    }
                    Change::ThrottleDown => {
                        limiter.throttle_down();
                    }
                    Change::ThrottleUp => {
                        limiter.throttle_up();
                    }
                    Change::SetK { group, k } => {
                        groups[group].set_max_concurrent(k);
                    }
                }
                applied.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut m = Measured::default();
    let mut due_by = [0usize; GROUPS];
    for now in 0.. {
        sleep_until(start + Duration::from_millis(now)).await;
        settle().await;
        let (mut running_all, mut demand, mut completed) = (0, 0, 0);
        for (g, group) in groups.iter().enumerate() {
            let c = &counts[g];
            let (started, running) = (
                c.started.load(Ordering::Relaxed),
                c.running.load(Ordering::Relaxed),
            );
            completed += c.completed.load(Ordering::Relaxed);
            while due_by[g] < deadlines[g].len() && deadlines[g][due_by[g]] <= now {
                due_by[g] += 1;
            }
            let due = due_by[g] - started;
            running_all += running;
            demand += group.max_concurrent().saturating_sub(running).min(due);
        }
        let limit = limiter.limit();
        if limiter.running() != running_all {
            m.mismatched += 1;
        }
        if demand > 0 {
            let used = running_all.min(limit) as u64;
            let idle = limit.saturating_sub(running_all).min(demand) as u64;
            m.waited_ms += 1;
            m.used += used;
            m.idle += idle;
            if idle > 0 {
                m.idle_ms += 1;
                m.idle_unqueued_ms += u64::from(limiter.waiting() == 0);
            }
            m.busy += running_all as u64;
            m.limit += limit as u64;
        }
        if completed == TASKS {
            m.end_ms = now;
            break;
        }
        if now >= STALL_MS {
            m.stalled = true;
            m.end_ms = now;
            break;
        }
    }
    feeder.abort();
    controller.abort();
    for g in &groups {
        g.cancel();
    }
    m.early = early.load(Ordering::Relaxed);
    m.changes = changes_made.load(Ordering::Relaxed);
    m
}

/// Runs every seed and prints a Markdown table, one row per seed and one for all of them.
fn utilisation(seeds: &[u64]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let wall = StdInstant::now();
    println!(
        "### Limiter utilisation: {GROUPS} groups (k random in 1..=6), N = {POOL}, {TASKS} tasks \
         per seed, paused clock\n"
    );
    println!(
        "| seed | k at start | changes | work waited (s) | usable (slot-s) | idle while work \
         waited (slot-s) | utilisation | busy ÷ limit | drained at (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut all = Measured::default();
    let mut problems = Vec::new();
    for &seed in seeds {
        let load = Load::new(seed);
        let m = rt.block_on(run(&load));
        let ks: Vec<String> = load.ks.iter().map(ToString::to_string).collect();
        println!(
            "| {seed} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
            ks.join(" "),
            m.changes,
            seconds(m.waited_ms),
            seconds(m.used + m.idle),
            seconds(m.idle),
            pct(m.used, m.used + m.idle),
            pct(m.busy, m.limit),
            seconds(m.end_ms),
            if m.stalled { " (stalled)" } else { "" },
        );
        if m.stalled {
            problems.push(format!("seed {seed}: not drained after {STALL_MS} ms"));
        }
        if m.early > 0 {
            problems.push(format!("seed {seed}: {} tasks started early", m.early));
        }
        if m.mismatched > 0 {
            problems.push(format!(
                "seed {seed}: limiter.running() differed from the tasks running in {} of {} \
                 samples",
                m.mismatched,
                m.end_ms + 1
            ));
        }
        all.add(&m);
    }
    println!(
        "| all | | | {} | {} | {} | **{}** | {} | |",
        seconds(all.waited_ms),
        seconds(all.used + all.idle),
        seconds(all.idle),
        pct(all.used, all.used + all.idle),
        pct(all.busy, all.limit),
    );
    let verdict = if all.used + all.idle == 0 {
        "not measured (work never waited)"
    } else if 100 * all.used >= 99 * (all.used + all.idle) {
        "met"
    } else {
        "missed"
    };
    println!(
        "\nTarget: utilisation at least 99%: **{verdict}** ({}).",
        pct(all.used, all.used + all.idle)
    );
    if all.idle_ms > 0 {
        println!(
            "\nA usable slot sat idle in {} ms; in {} of them nobody was in the limiter's line \
             (`waiting() == 0`).",
            all.idle_ms, all.idle_unqueued_ms
        );
    }
    for p in &problems {
        println!("warning: {p}");
    }
    println!(
        "\n({} loads measured in {:.1} s of wall time)\n",
        seeds.len(),
        wall.elapsed().as_secs_f64()
    );
}

// ===== cost per task start (criterion) =====

/// 10,000 due tasks drained by one group capped at 16, then the same with a limiter of 16.
fn cost(c: &mut Criterion) {
    const N: u64 = 10_000;
    let rt: Runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("limiter_cost");
    g.sample_size(20);
    g.throughput(Throughput::Elements(N));
    for (name, with_limiter) in [
        ("one_group_cap_16", false),
        ("one_group_cap_16_limiter_16", true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Paused (a limit of 0) while the tasks are queued, so only the drain is
                    // timed.
                    let shared = Limiter::new(0);
                    let mut builder = Group::builder().runtime(rt.handle().clone());
                    if with_limiter {
                        builder = builder.limiter(&shared);
                    }
                    let group = builder
                        .max_concurrent(if with_limiter { 16 } else { 0 })
                        .build();
                    for _ in 0..N {
                        let counter = counter.clone();
                        group.delay(Duration::ZERO, async move {
                            counter.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                    let start = StdInstant::now();
                    if with_limiter {
                        shared.set_limit(16);
                    } else {
                        group.set_max_concurrent(16);
                    }
                    rt.block_on(group.wait()).unwrap();
                    total += start.elapsed();
                }
                total
            });
        });
    }
    g.finish();
}

criterion_group!(benches, cost);

/// criterion's options that take a value, so that value is not mistaken for a filter.
const VALUED: [&str; 16] = [
    "--save-baseline",
    "-s",
    "--baseline",
    "-b",
    "--baseline-lenient",
    "--load-baseline",
    "--color",
    "-c",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--profile-time",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args.iter().enumerate().find_map(|(i, a)| {
        let valued = i > 0 && VALUED.contains(&args[i - 1].as_str());
        (!a.starts_with('-') && !valued).then_some(a.as_str())
    });
    if filter.is_none_or(|f| "utilisation".contains(f)) {
        // Under `cargo test --benches` (no `--bench`), one seed shows it still runs.
        let bench = args.iter().any(|a| a == "--bench");
        utilisation(if bench { &SEEDS } else { &SEEDS[..1] });
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
