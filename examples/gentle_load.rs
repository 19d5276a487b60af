//! A gentle load tester: several endpoints, each with its own cap (k), all sharing one pool of
//! N requests in flight, with a controller that turns the pool down at 4 s and back up from 7 s.
//!
//! Endpoints are simulated (each request is a sleep of 50-300 ms; nothing touches the
//! network) on tokio's paused clock with a seeded RNG, so the run's simulated seconds pass in
//! a blink and print the same every time for a given seed. Once a second it prints the pool's
//! running / waiting / limit, how well the pool was used over the last second, and per endpoint
//! running / waiting / k; at the end a summary from each group's history, the utilisation over
//! the whole run, and when the drain ended against the earliest end the limits allow.
//!
//! Utilisation is sampled every 1 ms (requests start and end on whole milliseconds, so that is
//! exact): with `R` requests running, a limit `L`, and `D` the requests that are due and that
//! their endpoint's k would let start, a sample with `D > 0` counts `min(R, L)` slots used and
//! `min(L - R, D)` idle; utilisation is used ÷ (used + idle) over those samples (`-` when no
//! request waited). A free slot that no endpoint can use, because every endpoint with due
//! requests is at its k, is not counted as idle.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example gentle_load         # seed 1
//! cargo run --example gentle_load -- 7    # another seed
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schedgroup::{Group, Limiter, Throttle};
use tokio::time::{Instant, sleep_until};

const POOL: usize = 8;
const ENDPOINTS: [(&str, usize); 4] = [("auth", 2), ("search", 3), ("images", 4), ("orders", 6)];
const REQUESTS: usize = 100;

/// One simulated request, in milliseconds from the start.
struct Request {
    endpoint: usize,
    at: u64,
    latency: u64,
}

/// Requests of one endpoint, counted by the requests themselves. (Relaxed: one thread runs
/// everything.)
#[derive(Default)]
struct Counts {
    started: AtomicUsize,
    running: AtomicUsize,
    completed: AtomicUsize,
}

/// Slot-milliseconds used, and left idle while a request was due and allowed by its k.
#[derive(Default, Clone, Copy)]
struct Util {
    used: u64,
    idle: u64,
}

impl Util {
    fn percent(self) -> String {
        match self.used + self.idle {
            0 => "-".to_string(),
            all => format!("{:.0}%", 100.0 * self.used as f64 / all as f64),
        }
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let seed = std::env::args().nth(1).map_or(1, |s| {
        s.parse().expect("the only argument is a seed (an integer)")
    });
    let pool = Limiter::new(POOL);
    pool.set_throttle(Throttle {
        step_down: 4,
        step_up: 2,
        hold: Duration::from_secs(1),
        ..Throttle::default()
    });
    let endpoints: Vec<(&str, Group)> = ENDPOINTS
        .into_iter()
        .map(|(name, k)| {
            let group = Group::builder()
                .name(name)
                .max_concurrent(k)
                .limiter(&pool)
                .build();
            (name, group)
        })
        .collect();
    let counts: Arc<Vec<Counts>> = Arc::new(endpoints.iter().map(|_| Counts::default()).collect());

    // 100 requests per endpoint, arriving over the first 8 seconds.
    let start = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut requests = Vec::new();
    for endpoint in 0..endpoints.len() {
        for _ in 0..REQUESTS {
            requests.push(Request {
                endpoint,
                at: rng.random_range(0..8_000),
                latency: rng.random_range(50..300),
            });
        }
    }
    for r in &requests {
        let (counts, endpoint, latency) = (counts.clone(), r.endpoint, r.latency);
        endpoints[endpoint]
            .1
            .schedule(start + ms(r.at), async move {
                let mine = &counts[endpoint];
                mine.started.fetch_add(1, Ordering::Relaxed);
                mine.running.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(ms(latency)).await;
                mine.running.fetch_sub(1, Ordering::Relaxed);
                mine.completed.fetch_add(1, Ordering::Relaxed);
            });
    }
    // Each endpoint's arrival times in order, to count its due requests at any moment.
    let mut arrivals: Vec<Vec<u64>> = vec![Vec::new(); endpoints.len()];
    for r in &requests {
        arrivals[r.endpoint].push(r.at);
    }
    for a in &mut arrivals {
        a.sort_unstable();
    }

    // The controller: the machine is "overloaded" at 4 s, fine again from 7 s.
    let controller = {
        let pool = pool.clone();
        tokio::spawn(async move {
            sleep_until(start + Duration::from_secs(4)).await;
            println!("controller: overloaded, {:?}", pool.throttle_down());
            sleep_until(start + Duration::from_secs(7)).await;
            for _ in 0..2 {
                println!("controller: room again, {:?}", pool.throttle_up());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let (mut this_second, mut overall) = (Util::default(), Util::default());
    let mut limits = Vec::new(); // the pool's limit in each millisecond
    let mut due_by = vec![0usize; endpoints.len()];
    let mut drained_at = None;
    for now in 0u64.. {
        sleep_until(start + ms(now)).await;
        // Let everything due at this instant start (the paused clock does not move meanwhile).
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
        if now % 1000 == 0 {
            let p = pool.history();
            let mut line = format!(
                "{:>3}s  pool {:>2}/{:<2} limit {:>2}  util {:>4} |",
                now / 1000,
                p.running,
                p.waiting,
                p.limit,
                this_second.percent(),
            );
            for (name, group) in &endpoints {
                let h = group.history();
                line += &format!(" {name} {}/{:<2} k{} |", h.running, h.waiting, h.limit);
            }
            println!("{line}   (running/waiting)");
            this_second = Util::default();
            if drained_at.is_some() {
                break;
            }
        }

        let (mut running, mut due_and_allowed, mut completed) = (0, 0, 0);
        for (i, (_, group)) in endpoints.iter().enumerate() {
            let c = &counts[i];
            let mine = c.running.load(Ordering::Relaxed);
            completed += c.completed.load(Ordering::Relaxed);
            while due_by[i] < arrivals[i].len() && arrivals[i][due_by[i]] <= now {
                due_by[i] += 1;
            }
            let due = due_by[i] - c.started.load(Ordering::Relaxed);
            running += mine;
            due_and_allowed += group.max_concurrent().saturating_sub(mine).min(due);
        }
        let limit = pool.limit();
        limits.push(limit);
        if due_and_allowed > 0 {
            let sample = Util {
                used: running.min(limit) as u64,
                idle: limit.saturating_sub(running).min(due_and_allowed) as u64,
            };
            for u in [&mut this_second, &mut overall] {
                u.used += sample.used;
                u.idle += sample.idle;
            }
        }
        if drained_at.is_none() && completed == requests.len() {
            drained_at = Some(now);
        }
    }
    controller.await.unwrap();

    println!("\nsummary over the last minute:");
    for (name, group) in &endpoints {
        group.wait().await.expect("no request panicked");
        let w = &group.history().windows[1];
        println!(
            "  {name:>6}: {} requests, peak {} in flight, {:.2} on average",
            w.completed, w.peak_running, w.mean_running
        );
    }
    let w = &pool.history().windows[1];
    println!(
        "  {:>6}: peak {} of {POOL} in flight, {:.2} on average",
        "pool", w.peak_running, w.mean_running
    );

    println!(
        "\nutilisation while requests waited: {} ({:.2} slot-seconds used, {:.2} idle while a \
         request was due and its k allowed it)",
        overall.percent(),
        overall.used as f64 / 1000.0,
        overall.idle as f64 / 1000.0,
    );
    let drained_at = drained_at.expect("the loop ends only once drained");
    let ks: Vec<usize> = ENDPOINTS.iter().map(|&(_, k)| k).collect();
    let earliest = earliest_end(&requests, &ks, &limits);
    println!(
        "drain ended at {:.3} s; no order of the same requests under the same limits ends \
         before {:.3} s (+{:.3} s)",
        drained_at as f64 / 1000.0,
        earliest as f64 / 1000.0,
        drained_at.saturating_sub(earliest) as f64 / 1000.0,
    );
}

/// A lower bound on when the last request can end, in ms, whatever order and timing the
/// requests start in, given each endpoint's k and the pool's limit in each millisecond
/// (`limits`, the last one holding afterwards).
///
/// A request running during millisecond `t` started at most `max_latency` before, when the
/// requests running (itself included) were at most the limit then; so at most
/// `cap(t) = max(limit over [t - max_latency, t])` run during `t` (a lowered limit aborts
/// nothing). Work that arrives at or after `s` cannot start before `s`, so for every arrival
/// time `s`, the end is at least the first `T` with `Σ_{t=s}^{T-1} rate(t)` ≥ that work, where
/// the rate is `min(cap(t), Σ k of the endpoints with work arriving from s on)` for the whole
/// pool and `min(cap(t), k)` for one endpoint's own work. And no request ends before its
/// arrival plus its latency.
fn earliest_end(requests: &[Request], ks: &[usize], limits: &[usize]) -> u64 {
    let max_latency = requests.iter().map(|r| r.latency).max().unwrap_or(0) as usize;
    let last = limits.last().copied().unwrap_or(0);
    // cap(t) for every t up to where it settles at `last` for good.
    let cap: Vec<u64> = (0..limits.len() + max_latency)
        .map(|t| {
            let from = t.saturating_sub(max_latency);
            (from..=t)
                .map(|s| limits.get(s).copied().unwrap_or(last))
                .max()
                .unwrap_or(last) as u64
        })
        .collect();
    let cap_at = |t: u64| cap.get(t as usize).copied().unwrap_or(last as u64);
    // The first T with Σ_{t=from}^{T-1} min(cap(t), k) ≥ work.
    let finish = |from: u64, work: u64, k: u64| {
        let (mut t, mut done) = (from, 0);
        while done < work {
            let rate = cap_at(t).min(k);
            assert!(
                rate > 0 || (t as usize) < cap.len(),
                "the pool ends at a limit of 0: the requests can never drain"
            );
            done += rate;
            t += 1;
        }
        t
    };

    let mut bound = requests.iter().map(|r| r.at + r.latency).max().unwrap_or(0);
    let mut by_arrival: Vec<&Request> = requests.iter().collect();
    by_arrival.sort_by_key(|r| std::cmp::Reverse(r.at));
    // Walking back from the last arrival: work arriving from `s` on, in all and per endpoint.
    let (mut work, mut own) = (0, vec![0u64; ks.len()]);
    for (i, r) in by_arrival.iter().enumerate() {
        work += r.latency;
        own[r.endpoint] += r.latency;
        if by_arrival.get(i + 1).is_some_and(|next| next.at == r.at) {
            continue; // not all the work arriving at `r.at` counted yet
        }
        let k_sum = (0..ks.len())
            .filter(|&e| own[e] > 0)
            .map(|e| ks[e] as u64)
            .sum();
        bound = bound.max(finish(r.at, work, k_sum));
        for (e, &w) in own.iter().enumerate() {
            if w > 0 {
                bound = bound.max(finish(r.at, w, ks[e] as u64));
            }
        }
    }
    bound
}
