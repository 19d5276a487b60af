//! Issue 12, the `metrics` feature: a real Prometheus exporter on a loopback port, scraped
//! over HTTP, shows each group's counters, gauges and histograms and each limiter's gauges,
//! labelled by name, equal to what `stats()` and the limiter say.
//!
//! Run with `cargo test --features metrics --test observe_metrics` (or `--all-features`). The
//! recorder is global: this file is one test.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use schedgroup::{Group, Limiter};

/// A free loopback port: bound, read, and let go for the exporter to bind.
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.local_addr().expect("its address")
}

/// `GET /metrics`: the body, once the exporter answers (it binds on its own thread).
fn scrape(addr: SocketAddr) -> String {
    let start = std::time::Instant::now();
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                stream,
                "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        })();
        match attempt {
            Ok(response) => {
                assert!(response.starts_with("HTTP/1.1 200"), "{response}");
                let (_, body) = response.split_once("\r\n\r\n").expect("a body");
                return body.to_owned();
            }
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "the exporter never answered: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Samples by name and labels, e.g. `schedgroup_tasks_pending{group="jobs"}`. Chunked bodies
/// are read as lines too: the chunk sizes are not valid samples and are skipped.
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn sample(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
}

#[test]
fn a_prometheus_scrape_shows_what_stats_say() {
    let addr = free_port();
    // Installed before any group or limiter is built: they take their handles from it.
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .expect("the exporter starts on its own thread");
    common::outputs::quiet_hook(|p| p.downcast_ref::<&str>() == Some(&"meant"));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let limiter = Limiter::named("backend", 3);
    let (group, permit) = runtime.block_on(async {
        let group = Group::builder()
            .name("jobs")
            .max_concurrent(2)
            .limiter(&limiter)
            .build();
        // Five complete (200 ms each, two at a time), one panics, one is cancelled pending,
        // one waits a day.
        for _ in 0..5 {
            group.delay(Duration::from_millis(100), async {
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
        group.delay(Duration::from_millis(100), async {
            std::panic::panic_any("meant");
        });
        group.delay(Duration::from_secs(5), async {}).cancel();
        group.delay(Duration::from_secs(86_400), async {});
        tokio::time::sleep(Duration::from_secs(2)).await;
        let permit = limiter.try_acquire().expect("a free slot");
        (group, permit)
    });
    let stats = group.stats();
    assert_eq!(
        (
            stats.completed,
            stats.panicked,
            stats.cancelled,
            stats.pending
        ),
        (5, 1, 1, 1)
    );

    let body = scrape(addr);
    let s = samples(&body);
    let g = |name: &str| sample(&s, &format!("{name}{{group=\"jobs\"}}"));
    assert_eq!(
        g("schedgroup_tasks_scheduled_total"),
        stats.scheduled as f64
    );
    assert_eq!(g("schedgroup_tasks_started_total"), 6.0);
    assert_eq!(
        g("schedgroup_tasks_completed_total"),
        stats.completed as f64
    );
    assert_eq!(
        g("schedgroup_tasks_cancelled_total"),
        stats.cancelled as f64
    );
    assert_eq!(g("schedgroup_tasks_panicked_total"), stats.panicked as f64);
    assert_eq!(g("schedgroup_tasks_pending"), stats.pending as f64);
    assert_eq!(g("schedgroup_tasks_running"), stats.running as f64);
    assert_eq!(g("schedgroup_tasks_waiting"), 0.0);
    assert_eq!(g("schedgroup_group_limit"), 2.0);
    // Six runs: five of 200 ms, one of none; started 0, 0, 200, 200, 400 and 400 ms late.
    assert_eq!(g("schedgroup_task_run_seconds_count"), 6.0);
    assert!(
        (g("schedgroup_task_run_seconds_sum") - 1.0).abs() < 1e-9,
        "{body}"
    );
    assert_eq!(g("schedgroup_task_start_lateness_seconds_count"), 6.0);
    assert!(
        (g("schedgroup_task_start_lateness_seconds_sum") - 1.2).abs() < 1e-9,
        "{body}"
    );
    let l = |name: &str| sample(&s, &format!("{name}{{limiter=\"backend\"}}"));
    assert_eq!(l("schedgroup_limiter_limit"), 3.0);
    assert_eq!(l("schedgroup_limiter_running"), limiter.running() as f64);
    assert_eq!(l("schedgroup_limiter_running"), 1.0, "the permit");
    assert_eq!(l("schedgroup_limiter_waiting"), 0.0);
    assert!(
        body.contains("# HELP schedgroup_tasks_started_total Tasks that started."),
        "{body}"
    );

    // Changes show at the next scrape: a limit, a permit given back, a cancel.
    limiter.set_limit(5);
    drop(permit);
    group.set_max_concurrent(usize::MAX);
    group.cancel();
    let s = samples(&scrape(addr));
    let g = |name: &str| sample(&s, &format!("{name}{{group=\"jobs\"}}"));
    let l = |name: &str| sample(&s, &format!("{name}{{limiter=\"backend\"}}"));
    assert_eq!(
        (
            l("schedgroup_limiter_limit"),
            l("schedgroup_limiter_running")
        ),
        (5.0, 0.0)
    );
    assert_eq!(g("schedgroup_group_limit"), f64::INFINITY);
    assert_eq!(
        (
            g("schedgroup_tasks_pending"),
            g("schedgroup_tasks_cancelled_total")
        ),
        (0.0, 2.0)
    );
}
