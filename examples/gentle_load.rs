//! A gentle load tester: several endpoints, each with its own cap (k), all sharing one pool of
//! N requests in flight, with a controller that turns the pool down halfway and back up later.
//!
//! Endpoints are simulated (each request is a sleep of 50-300 ms; nothing touches the
//! network). Once a second it prints one line per endpoint: running / waiting / k, and the
//! pool's running / waiting / limit; at the end a summary from each group's history.
//! Run it with:
//!
//! ```text
//! cargo run --example gentle_load
//! ```

use std::time::Duration;

use rand::Rng;
use schedgroup::{Group, Limiter, Throttle};
use tokio::time::Instant;

const POOL: usize = 8;

#[tokio::main]
async fn main() {
    let pool = Limiter::new(POOL);
    pool.set_throttle(Throttle {
        step_down: 4,
        step_up: 2,
        hold: Duration::from_secs(1),
        ..Throttle::default()
    });
    let endpoints: Vec<(&str, Group)> = [("auth", 2), ("search", 3), ("images", 4), ("orders", 6)]
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

    // 100 requests per endpoint, arriving over the first 8 seconds.
    let start = Instant::now();
    let mut rng = rand::rng();
    for (_, group) in &endpoints {
        for _ in 0..100 {
            let at = start + Duration::from_millis(rng.random_range(0..8_000));
            let latency = Duration::from_millis(rng.random_range(50..300));
            group.schedule(at, async move { tokio::time::sleep(latency).await });
        }
    }

    // The controller: the machine is "overloaded" at 4 s, fine again from 7 s.
    let controller = {
        let pool = pool.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(start + Duration::from_secs(4)).await;
            println!("controller: overloaded, {:?}", pool.throttle_down());
            tokio::time::sleep_until(start + Duration::from_secs(7)).await;
            for _ in 0..2 {
                println!("controller: room again, {:?}", pool.throttle_up());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let p = pool.history();
        let mut line = format!(
            "{:>3}s  pool {:>2}/{:<2} limit {:>2} |",
            start.elapsed().as_secs(),
            p.running,
            p.waiting,
            p.limit
        );
        for (name, group) in &endpoints {
            let h = group.history();
            line += &format!(" {name} {}/{:<2} k{} |", h.running, h.waiting, h.limit);
        }
        println!("{line}   (running/waiting)");
        let pending: u64 = endpoints.iter().map(|(_, g)| g.stats().pending).sum();
        if pending == 0 && p.running == 0 {
            break;
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
}
