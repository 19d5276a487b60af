//! Hostile review of the dashboard example's server (issue 12): names JSON must carry as
//! they are, limits at `usize::MAX`, components that come and go while snapshots and samples
//! are taken, the sampler's ring bound, and many clients at once. Every wait bounded.

mod common;

#[allow(dead_code)]
#[path = "../examples/dashboard/server.rs"]
mod server;

use std::time::Duration;

use schedgroup::{Group, Limiter, Registry};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(5);

/// Every number in `v`, with its path; a non-finite float would have become `null` in
/// `json!`, so the fields that must be numbers are checked by name below.
fn walk<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                walk(v, format!("{path}.{k}"), out);
            }
        }
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                walk(v, format!("{path}[{i}]"), out);
            }
        }
        _ => out.push((path, v)),
    }
}

/// Names with quotes, backslashes, control characters, markup, emoji and nothing at all come
/// back from the JSON exactly; a limiter without a limit (`usize::MAX`) and an uncapped group
/// show `null`, a cap one below it a number; every mean is a number (no NaN turned `null`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_names_and_extreme_limits_survive_the_json() {
    let registry = Registry::new();
    let dashboard = server::Dashboard::new(registry.clone());
    let names = [
        "",
        "quo\"te\\back",
        "line\nbreak\u{0}nul",
        "</script><img src=x onerror=alert(1)>",
        "ünïcødé 😀 \u{202e}rtl",
    ];
    let groups: Vec<Group> = names
        .iter()
        .map(|n| {
            Group::builder()
                .name(*n)
                .registry(&registry)
                .max_concurrent(usize::MAX - 1)
                .build()
        })
        .collect();
    let inf = Limiter::named("inf", usize::MAX);
    registry.add_limiter(&inf);
    let uncapped = Group::builder()
        .name("uncapped")
        .limiter(&inf)
        .registry(&registry)
        .build();
    for g in groups.iter().chain([&uncapped]) {
        g.delay(Duration::ZERO, async {});
    }
    for g in groups.iter().chain([&uncapped]) {
        timeout(BOUND, g.wait()).await.unwrap().unwrap();
    }
    dashboard.sample();
    dashboard.record_decision("\"inf\"", usize::MAX, 0, "why: \u{0}\"</li>");
    let text = dashboard.snapshot().to_string();
    let snap: Value = serde_json::from_str(&text).expect("the snapshot is valid JSON");
    let components = snap["components"].as_array().unwrap();
    for n in names {
        let found: Vec<&Value> = components.iter().filter(|c| c["name"] == n).collect();
        assert_eq!(found.len(), 1, "the group named {n:?} in {text}");
        assert_eq!(found[0]["limit"], Value::from(usize::MAX - 1));
    }
    let by = |n: &str| components.iter().find(|c| c["name"] == n).unwrap();
    assert_eq!(by("inf")["limit"], Value::Null);
    assert_eq!(by("inf")["series"][0]["limit"], Value::Null);
    assert_eq!(by("uncapped")["limit"], Value::Null);
    assert_eq!(snap["decisions"][0]["why"], "why: \u{0}\"</li>");
    assert_eq!(snap["decisions"][0]["from"], Value::from(usize::MAX));
    let mut leaves = Vec::new();
    walk(&snap, String::new(), &mut leaves);
    for (path, v) in leaves {
        let must_be_number = [
            "mean_running",
            "mean_waiting",
            "started_per_s",
            "ended_per_s",
        ]
        .iter()
        .any(|f| path.ends_with(f));
        if must_be_number {
            assert!(
                v.as_f64().is_some_and(f64::is_finite),
                "{path} is {v} in {text}"
            );
        }
    }
    drop((groups, uncapped, inf));
}

/// Groups registered and dropped on other threads while snapshots and samples are taken:
/// no panic, ids unique, and the series follow the components (no series of a component
/// gone two samples ago, at most `SAMPLES` per component).
#[test]
fn snapshots_and_samples_while_components_come_and_go() {
    let rt = common::multi_thread(2);
    let registry = Registry::new();
    let dashboard = server::Dashboard::new(registry.clone());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let registry = registry.clone();
        let handle = rt.handle().clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let g = Group::builder()
                    .name(format!("churn-{}", n % 7))
                    .registry(&registry)
                    .runtime(handle.clone())
                    .build();
                g.delay(Duration::ZERO, async {});
                let l = Limiter::named("churn", 1);
                registry.add_limiter(&l);
                drop((g, l));
                n += 1;
            }
        })
    };
    let keeper = rt.block_on(async { Group::builder().name("keeper").registry(&registry).build() });
    let rounds = common::iterations(400);
    for _ in 0..rounds {
        dashboard.sample();
        let snap = dashboard.snapshot();
        let ids: Vec<u64> = snap["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "ids repeat: {ids:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    common::join_bounded(churn);
    let snap = dashboard.snapshot();
    let keeper_series = snap["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "keeper")
        .unwrap()["series"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(keeper_series, rounds.min(server::SAMPLES));
    drop(keeper);
    drop(rt);
}

/// The sampler's ring keeps the latest `SAMPLES`, oldest first.
#[test]
fn the_series_ring_keeps_the_latest_samples_in_order() {
    let rt = common::current_thread(true);
    let registry = Registry::new();
    let (dashboard, _g) = rt.block_on(async {
        (
            server::Dashboard::new(registry.clone()),
            Group::builder().name("g").registry(&registry).build(),
        )
    });
    rt.block_on(async {
        for _ in 0..server::SAMPLES + 50 {
            dashboard.sample();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let snap = rt.block_on(async { dashboard.snapshot() });
    let series = snap["components"][0]["series"].as_array().unwrap();
    assert_eq!(series.len(), server::SAMPLES);
    let t: Vec<u64> = series.iter().map(|s| s["t_ms"].as_u64().unwrap()).collect();
    assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
    assert_eq!(t[0], 500, "the first 50 samples rolled off");
}

/// Many clients at once, some of which send half a request and stall: the others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_and_stalled_ones_are_all_served() {
    let registry = Registry::new();
    let dashboard = server::Dashboard::new(registry.clone());
    let _g = Group::builder().name("g").registry(&registry).build();
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(server::serve(listener, dashboard));
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /api/snapshot HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    let mut clients = Vec::new();
    for _ in 0..64 {
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /api/snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).await.unwrap();
            let raw = String::from_utf8(raw).unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            serde_json::from_str::<Value>(body).unwrap();
        }));
    }
    for c in clients {
        timeout(BOUND, c).await.expect("a client served").unwrap();
    }
    drop(stalled);
    serving.abort();
}
