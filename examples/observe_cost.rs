//! What a task costs with and without the `tracing` and `metrics` features, and with a
//! subscriber or a recorder installed.
//!
//! Schedules `N` tasks (default 200,000) due at once into a group capped at 16, runs them all,
//! and prints the time per task. On one thread and tokio's paused clock, so that
//! `valgrind --tool=callgrind` can count the instructions, which do not depend on what else
//! the machine is doing (`BENCHMARKS.md` has the commands and the counts):
//!
//! ```text
//! cargo run --release --example observe_cost                              # default build
//! cargo run --release --all-features --example observe_cost               # features, nothing installed
//! cargo run --release --all-features --example observe_cost -- --recorder # a Prometheus recorder
//! cargo run --release --all-features --example observe_cost -- --subscriber # a tracing registry
//! cargo run --release --example observe_cost -- --adaptive               # an adaptive cap
//! ```
//!
//! With `--adaptive` the group's cap of 16 is an [`Adaptive`](schedgroup::Adaptive) one
//! (AIMD, ceiling 16): every end is a sample, every 32 a decision.

use std::time::{Duration, Instant};

use schedgroup::{Adaptive, Group};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(200_000);
    let recorder = args.iter().any(|a| a == "--recorder");
    let subscriber = args.iter().any(|a| a == "--subscriber");
    let adaptive = args.iter().any(|a| a == "--adaptive");
    if recorder {
        #[cfg(feature = "metrics")]
        {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("a Prometheus recorder");
        }
        #[cfg(not(feature = "metrics"))]
        panic!("--recorder needs the `metrics` feature");
    }
    #[cfg(feature = "tracing")]
    let _default =
        subscriber.then(|| tracing::subscriber::set_default(tracing_subscriber::registry()));
    #[cfg(not(feature = "tracing"))]
    assert!(!subscriber, "--subscriber needs the `tracing` feature");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let elapsed = runtime.block_on(async {
        let mut builder = Group::builder().name("cost").max_concurrent(16);
        if adaptive {
            builder = builder.adaptive(Adaptive::aimd().ceiling(16));
        }
        let group = builder.build();
        let start = Instant::now();
        for i in 0..count {
            group.delay(Duration::from_millis(i % 100), async {
                tokio::task::yield_now().await;
            });
        }
        group.wait().await.expect("no task panics");
        start.elapsed()
    });
    let installed = match (recorder, subscriber) {
        (false, false) => "nothing installed",
        (true, false) => "a Prometheus recorder",
        (false, true) => "a tracing registry",
        (true, true) => "a Prometheus recorder and a tracing registry",
    };
    let features = match (cfg!(feature = "tracing"), cfg!(feature = "metrics")) {
        (false, false) => "no features",
        (true, false) => "tracing",
        (false, true) => "metrics",
        (true, true) => "tracing + metrics",
    };
    let cap = if adaptive { "adaptive cap" } else { "cap" };
    println!(
        "{count} tasks, {features}, {installed}, {cap}: {:.0} ns a task (schedule, run, end)",
        elapsed.as_nanos() as f64 / count as f64
    );
}
