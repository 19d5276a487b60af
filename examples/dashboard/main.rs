//! A live dashboard of a running workload: every group and limiter of a
//! [`Registry`](schedgroup::Registry), what runs, waits and limits them now, charts of the last
//! 10 s, 1 min and 5 min, start lateness and run time, the throttle decisions of a
//! hand-written controller and those of an adaptive limit, on one page at
//! `http://127.0.0.1:3000/` that updates every second.
//!
//! The workload runs until you stop it (Ctrl-C), on the real clock, and touches no network
//! but the dashboard's own port:
//!
//! - `backend`, a limiter of 8 requests in flight shared by two crawlers, `crawler-a` (at most
//!   3 of them) and `crawler-b` (at most 6), which schedule fake requests (a sleep of 20-200
//!   ms; 3% fail, 1 in 200 panics) at a random 0-1.5 s from now, in waves of a minute;
//! - `responder`, an uncapped group that answers a few router solicitations a second, each
//!   reply delayed by a random 0-500 ms (RFC 4861);
//! - `cache-expiry`, a group of cap 4 evicting cache entries 5-30 s after they are inserted,
//!   some of them refreshed (rescheduled) or removed (cancelled) before then;
//! - a controller that every 2 s reads the backend's history of the last 10 s and steps its
//!   limit up by 2 when it was full and requests started late (start lateness p99 over 200
//!   ms), down by 1 when they started on time (p99 under 100 ms), within a floor of 2 and a
//!   ceiling of 10, holding 4 s after each change. Each applied change is listed on the page
//!   with its reason;
//! - `search`, a limiter with an [`Adaptive`](schedgroup::Adaptive) gradient limit (from 4,
//!   at most 64) serving `search-queries`, a group of queries to a simulated search backend
//!   that takes 20 ms (±10%) while 12 or fewer run, longer in proportion beyond (it queues),
//!   and refuses at once beyond 24 (the task then calls `Group::overloaded`). Queries come
//!   in waves of a minute, 190-570 a second (the backend manages 600), each due a random
//!   0-100 ms from now. The page shows the controller's limit, no-load estimate and run time,
//!   and lists its changes with the throttle's.
//!
//! The first line printed is the address. Run it with:
//!
//! ```text
//! cargo run --example dashboard                 # http://127.0.0.1:3000/
//! cargo run --example dashboard -- --port 0     # a free port, printed
//! ```
//!
//! `scripts/dashboard-screenshot.sh` renders the page with headless Chromium to
//! `docs/dashboard.png`.

mod server;

use std::collections::VecDeque;
use std::f64::consts::TAU;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;
use schedgroup::{Adaptive, Group, Limiter, Registry, TaskHandle, Throttle, ThrottleOutcome};
use server::Dashboard;
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep};

/// The payload of a request that "crashes": the panic hook keeps it off stderr.
struct FakeCrash;

#[tokio::main]
async fn main() {
    let port = port_from_args();
    quiet_fake_crashes();

    let registry = Registry::new();
    let dashboard = Dashboard::new(registry.clone());

    let backend = Limiter::named("backend", 8);
    backend.set_throttle(Throttle {
        step_down: 1,
        step_up: 2,
        floor: 2,
        ceiling: Some(10),
        hold: Duration::from_secs(4),
    });
    registry.add_limiter(&backend);
    let crawler = |name: &str, k: usize| {
        Group::builder()
            .name(name)
            .max_concurrent(k)
            .limiter(&backend)
            .registry(&registry)
            .build()
    };
    let crawler_a = crawler("crawler-a", 3);
    let crawler_b = crawler("crawler-b", 6);
    let responder = Group::builder()
        .name("responder")
        .registry(&registry)
        .build();
    let expiry = Group::builder()
        .name("cache-expiry")
        .max_concurrent(4)
        .registry(&registry)
        .build();
    let search = Limiter::named("search", 4);
    search.set_adaptive(Adaptive::gradient().ceiling(64));
    registry.add_limiter(&search);
    let queries = Group::builder()
        .name("search-queries")
        .limiter(&search)
        .registry(&registry)
        .build();

    tokio::spawn(crawl(crawler_a, 14.0, 0.0));
    tokio::spawn(crawl(crawler_b, 32.0, 0.1));
    tokio::spawn(respond(responder));
    tokio::spawn(expire(expiry));
    tokio::spawn(query(queries, SearchBackend::default()));
    tokio::spawn(control(backend, dashboard.clone()));
    dashboard.spawn_sampler();

    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on 127.0.0.1:{port}: {e}")));
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    println!("dashboard: http://{addr}/");
    if let Err(e) = server::serve(listener, dashboard).await {
        fail(&format!("server stopped: {e}"));
    }
}

/// `--port N` (default 3000; 0 picks a free port).
fn port_from_args() -> u16 {
    let mut args = std::env::args().skip(1);
    let mut port = 3000;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| fail("--port takes a number, 0-65535"));
            }
            _ => fail(&format!(
                "unknown argument {arg:?}; usage: dashboard [--port N]"
            )),
        }
    }
    port
}

fn fail(message: &str) -> ! {
    eprintln!("dashboard: {message}");
    std::process::exit(2)
}

/// Keeps the demo's own crashes off stderr; any other panic is reported as usual.
fn quiet_fake_crashes() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload().is::<FakeCrash>() {
            previous(info);
        }
    }));
}

/// A fake request: a sleep of 20-200 ms; 3% fail, one in 200 panics.
async fn request() -> Result<(), &'static str> {
    let (latency, roll) = {
        let mut rng = rand::rng();
        (rng.random_range(20..=200), rng.random_range(0..1000))
    };
    sleep(Duration::from_millis(latency)).await;
    match roll {
        0..5 => std::panic::panic_any(FakeCrash),
        5..35 => Err("backend said 503"),
        _ => Ok(()),
    }
}

/// Schedules requests at `rate` a second on average, in waves of a minute (from 0.4 to 1.6
/// times it; `phase`, in turns, shifts the wave), each at a random 0-1.5 s from now.
async fn crawl(group: Group, rate: f64, phase: f64) {
    let start = Instant::now();
    loop {
        let t = start.elapsed().as_secs_f64();
        let now_rate = rate * (1.0 + 0.6 * (TAU * (t / 60.0 + phase)).sin());
        let (gap, delay) = {
            let mut rng = rand::rng();
            // Exponential gaps: a Poisson stream at `now_rate`.
            let u: f64 = rng.random_range(f64::EPSILON..1.0);
            (-u.ln() / now_rate, rng.random_range(0..1500))
        };
        sleep(Duration::from_secs_f64(gap.min(1.0))).await;
        group.delay(Duration::from_millis(delay), async {
            let _ = request().await;
        });
    }
}

/// Replies to router solicitations after a random 0-500 ms, a few a second.
async fn respond(group: Group) {
    loop {
        let (gap, delay) = {
            let mut rng = rand::rng();
            (rng.random_range(50..400), rng.random_range(0..=500))
        };
        sleep(Duration::from_millis(gap)).await;
        group.delay(Duration::from_millis(delay), async {
            // Send the advertisement.
            sleep(Duration::from_millis(2)).await;
        });
    }
}

/// Inserts cache entries that expire 5-30 s later; now and then refreshes one (reschedules
/// its expiry) or removes one (cancels it).
async fn expire(group: Group) {
    let mut entries: VecDeque<TaskHandle> = VecDeque::new();
    loop {
        let (gap, ttl, roll) = {
            let mut rng = rand::rng();
            (
                rng.random_range(50..300),
                rng.random_range(5_000..30_000),
                rng.random_range(0..10),
            )
        };
        sleep(Duration::from_millis(gap)).await;
        entries.retain(TaskHandle::is_pending);
        match roll {
            0 => {
                if let Some(entry) = entries.pop_front() {
                    entry.reschedule(Instant::now() + Duration::from_millis(ttl));
                    entries.push_back(entry);
                }
            }
            1 => {
                if let Some(entry) = entries.pop_back() {
                    entry.cancel();
                }
            }
            _ => {
                let entry = group.delay(Duration::from_millis(ttl), async {
                    // Evict the entry.
                    sleep(Duration::from_millis(5)).await;
                });
                entries.push_back(entry);
            }
        }
    }
}

/// A simulated search backend: up to [`SearchBackend::KNEE`] queries at once take 20 ms
/// (±10%); beyond, each takes longer in proportion to how many are in flight; beyond
/// [`SearchBackend::REFUSE`] it refuses at once. Clones share the backend.
#[derive(Clone, Default)]
struct SearchBackend {
    in_flight: Arc<AtomicUsize>,
}

/// Counts a query in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // A plain counter: nothing else is published through it.
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SearchBackend {
    /// How many queries it serves at once without slowing down.
    const KNEE: usize = 12;
    /// Above this many in flight, it refuses.
    const REFUSE: usize = 24;

    /// One query; `Err` when refused.
    async fn query(&self) -> Result<(), &'static str> {
        // A plain counter: nothing else is published through it.
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let _in_flight = InFlight(&self.in_flight);
        if n > Self::REFUSE {
            sleep(Duration::from_millis(1)).await;
            return Err("search said 503");
        }
        let base = rand::rng().random_range(18.0..22.0);
        let ms = base * n.max(Self::KNEE) as f64 / Self::KNEE as f64;
        sleep(Duration::from_secs_f64(ms / 1000.0)).await;
        Ok(())
    }
}

/// Every 10 ms, schedules queries at 380 a second on average, in waves of a minute (from 0.5
/// to 1.5 times it), each due a random 0-100 ms from now. A refused query tells the
/// group's adaptive limit (its limiter's) that the backend is overloaded.
async fn query(group: Group, backend: SearchBackend) {
    let start = Instant::now();
    let mut every = tokio::time::interval(Duration::from_millis(10));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let t = start.elapsed().as_secs_f64();
        let rate = 380.0 * (1.0 + 0.5 * (TAU * t / 60.0).sin());
        let delays: Vec<u64> = {
            let mut rng = rand::rng();
            // Whole queries per tick, with the fraction carried by chance: `rate` on average.
            let count = (rate * 0.01 + rng.random_range(0.0..1.0)).floor() as usize;
            (0..count).map(|_| rng.random_range(0..=100)).collect()
        };
        for delay in delays {
            let (task_group, backend) = (group.clone(), backend.clone());
            group.delay(Duration::from_millis(delay), async move {
                if backend.query().await.is_err() {
                    task_group.overloaded();
                }
            });
        }
    }
}

/// Every 2 s: the backend was full and requests started late -> more slots; they started on
/// time -> fewer. Each change the throttle applies goes in the dashboard's log.
async fn control(backend: Limiter, dashboard: Dashboard) {
    let name = backend.name().unwrap_or("limiter").to_owned();
    loop {
        sleep(Duration::from_secs(2)).await;
        let history = backend.history();
        let last_10s = &history.windows[0];
        let Some(p99) = last_10s.start_lateness.map(|p| p.p99) else {
            continue;
        };
        let full = last_10s.peak_running >= history.limit;
        let (outcome, why) = if full && p99 > Duration::from_millis(200) {
            let why = format!(
                "full (peak {} at limit {}), start lateness p99 {} ms > 200",
                last_10s.peak_running,
                history.limit,
                p99.as_millis()
            );
            (backend.throttle_up(), why)
        } else if p99 < Duration::from_millis(100) {
            let why = format!(
                "start lateness p99 {} ms < 100, mean running {:.1}",
                p99.as_millis(),
                last_10s.mean_running
            );
            (backend.throttle_down(), why)
        } else {
            continue;
        };
        if let ThrottleOutcome::Applied { from, to } = outcome {
            dashboard.record_decision(&name, from, to, why);
        }
    }
}
