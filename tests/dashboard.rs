//! The dashboard example's server (issue 12): on a loopback port, `/` serves the page and
//! `/api/snapshot` says of every registered group and limiter what their own `stats()`,
//! `history()`, `limit()` and `running()` say (adaptive controllers included), with the
//! sampler's series, the decisions recorded and those adaptive controllers made. Real clock
//! and real sockets; every wait bounded.

mod common;

#[allow(dead_code)]
#[path = "../examples/dashboard/server.rs"]
mod server;

use std::net::SocketAddr;
use std::time::Duration;

use common::outputs::{quiet_hook, quiet_panic};
use schedgroup::{Adaptive, AdaptiveState, Group, Limiter, Registry, Stats};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// How long any one step may take before the test fails: a hang fails in seconds.
const BOUND: Duration = Duration::from_secs(5);

/// A response: status, headers (lowercase names), body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` over a plain HTTP/1.1 connection, read to its close.
async fn get(addr: SocketAddr, path: &str) -> Response {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = timeout(BOUND, exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no full response within {BOUND:?}"));
    let raw = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: a status line, not {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let response = Response {
        status,
        headers,
        body: body.to_owned(),
    };
    // The body is read as it came: it must not be chunked.
    assert_eq!(
        response.header("content-length"),
        Some(response.body.len().to_string().as_str()),
        "GET {path}: a body of its stated length"
    );
    response
}

/// The `stats` object the snapshot must show for `s`, written out field by field.
fn expected_stats(s: Stats) -> Value {
    json!({
        "scheduled": s.scheduled,
        "pending": s.pending,
        "running": s.running,
        "completed": s.completed,
        "cancelled": s.cancelled,
        "panicked": s.panicked,
    })
}

/// A duration as the snapshot writes it: milliseconds, to a microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The `adaptive` object the snapshot must show for `a`, written out field by field.
fn expected_adaptive(a: &AdaptiveState) -> Value {
    json!({
        "algorithm": a.algorithm.name(),
        "limit": a.limit,
        "no_load_ms": a.no_load_latency.map(ms),
        "latency_ms": a.latency.map(ms),
        "decisions": a.decisions,
        "last": a.last.map(|d| json!({
            "ago_ms": ms(d.ago),
            "from": d.from,
            "to": d.to,
            "reason": d.reason.name(),
        })),
    })
}

/// The component of the snapshot with this name (`None`: the unnamed one).
fn component<'a>(snapshot: &'a Value, name: Option<&str>) -> &'a Value {
    let name = name.map_or(Value::Null, |n| json!(n));
    let found: Vec<&Value> = snapshot["components"]
        .as_array()
        .expect("components is a list")
        .iter()
        .filter(|c| c["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "one component named {name}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_a_snapshot_that_agrees_with_stats_history_and_the_limiter() {
    quiet_hook(|_| false);
    let registry = Registry::new();
    let dashboard = server::Dashboard::new(registry.clone());
    let backend = Limiter::named("backend", 8);
    registry.add_limiter(&backend);
    let crawler = Group::builder()
        .name("crawler-a")
        .max_concurrent(5)
        .limiter(&backend)
        .registry(&registry)
        .build();
    let responder = Group::builder()
        .name("responder")
        .registry(&registry)
        .build();
    let unnamed = Group::builder()
        .max_concurrent(2)
        .registry(&registry)
        .build();
    // Adaptive: a limiter's limit and a group's own cap.
    let search = Limiter::named("search", 20);
    search.set_adaptive(Adaptive::gradient().ceiling(20));
    registry.add_limiter(&search);
    let ranker = Group::builder()
        .name("ranker")
        .max_concurrent(8)
        .adaptive(Adaptive::aimd().min_samples(4))
        .registry(&registry)
        .build();

    // The crawler: 20 complete, 2 are cancelled by handle, 1 panics; then 3 run until the
    // end and 4 wait an hour.
    let hour = Duration::from_secs(3600);
    for _ in 0..20 {
        crawler.delay(Duration::ZERO, async {});
    }
    for _ in 0..2 {
        assert!(crawler.delay(hour, async {}).cancel());
    }
    crawler.delay(Duration::ZERO, async {
        quiet_panic();
    });
    let ended = timeout(BOUND, crawler.wait())
        .await
        .expect("the crawler drained");
    assert!(ended.unwrap_err().is_panicked());
    let (started, mut started_rx) = mpsc::unbounded_channel();
    for _ in 0..3 {
        let started = started.clone();
        crawler.delay(Duration::ZERO, async move {
            started.send(()).unwrap();
            std::future::pending::<()>().await;
        });
    }
    for _ in 0..4 {
        crawler.delay(hour, async {});
    }
    for _ in 0..3 {
        timeout(BOUND, started_rx.recv())
            .await
            .expect("a long task started")
            .unwrap();
    }
    // The responder: 7 complete.
    for _ in 0..7 {
        responder.delay(Duration::ZERO, async {});
    }
    timeout(BOUND, responder.wait())
        .await
        .expect("the responder drained")
        .unwrap();
    // A controller's decision.
    assert!(backend.set_limit(6));
    dashboard.record_decision("backend", 8, 6, "a test's reason");
    // The ranker: 4 tasks, one decision on their run time, which changes nothing (its cap
    // was never reached), but measures.
    for _ in 0..4 {
        ranker.delay(Duration::ZERO, async {});
    }
    timeout(BOUND, ranker.wait())
        .await
        .expect("the ranker drained")
        .unwrap();
    // Search: overload cuts 20 -> 16 before the sample, which logs it, and 16 -> 13 after.
    search.overloaded();
    assert_eq!(search.limit(), 16);

    let crawler_stats = crawler.stats();
    assert_eq!(
        (
            crawler_stats.scheduled,
            crawler_stats.pending,
            crawler_stats.running,
            crawler_stats.completed,
            crawler_stats.cancelled,
            crawler_stats.panicked
        ),
        (30, 4, 3, 20, 2, 1),
        "the scenario gives every counter a different value"
    );

    dashboard.sample();
    search.overloaded();
    assert_eq!(search.limit(), 13);
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(server::serve(listener, dashboard.clone()));

    let page = get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.body.contains("<title>schedgroup dashboard</title>"));
    assert!(
        page.body.contains("/api/snapshot"),
        "the page polls the API"
    );
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "the page loads nothing from elsewhere: it renders offline"
    );

    let response = get(addr, "/api/snapshot").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let snapshot: Value = serde_json::from_str(&response.body).expect("JSON");
    assert!(snapshot["time_ms"].is_u64());

    // Every component, in registration order, with its id and kind.
    let listed: Vec<(u64, &str, Value)> = snapshot["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_u64().unwrap(),
                c["kind"].as_str().unwrap(),
                c["name"].clone(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (0, "limiter", json!("backend")),
            (1, "group", json!("crawler-a")),
            (2, "group", json!("responder")),
            (3, "group", Value::Null),
            (4, "limiter", json!("search")),
            (5, "group", json!("ranker")),
        ]
    );

    // Adaptive controllers as `History::adaptive` says; `null` without one. Nothing ran on
    // search and nothing ends on the ranker any more: their states stand still but for the
    // last change's age.
    for (name, history) in [("search", search.history()), ("ranker", ranker.history())] {
        let state = history.adaptive.expect("a controller");
        let shown = &component(&snapshot, Some(name))["adaptive"];
        let mut want = expected_adaptive(&state);
        if let Some(ago) = shown["last"]["ago_ms"].as_f64() {
            assert!(ago <= ms(state.last.unwrap().ago), "{name}: ago {ago}");
            want["last"]["ago_ms"] = json!(ago);
        }
        assert_eq!(shown, &want, "{name} adaptive");
    }
    let search_c = component(&snapshot, Some("search"));
    assert_eq!(
        (
            &search_c["limit"],
            &search_c["adaptive"]["algorithm"],
            &search_c["adaptive"]["limit"],
            &search_c["adaptive"]["decisions"],
            &search_c["adaptive"]["last"]["from"],
            &search_c["adaptive"]["last"]["to"],
            &search_c["adaptive"]["last"]["reason"],
            &search_c["adaptive"]["latency_ms"],
        ),
        (
            &json!(13),
            &json!("gradient"),
            &json!(13),
            &json!(2),
            &json!(16),
            &json!(13),
            &json!("overload"),
            &Value::Null,
        ),
        "two overload cuts, no run time measured"
    );
    let ranker_c = component(&snapshot, Some("ranker"));
    assert_eq!(
        (
            &ranker_c["adaptive"]["algorithm"],
            &ranker_c["adaptive"]["limit"],
            &ranker_c["adaptive"]["decisions"],
            &ranker_c["adaptive"]["last"],
        ),
        (&json!("aimd"), &json!(8), &json!(0), &Value::Null),
        "measured, never changed"
    );
    assert!(ranker_c["adaptive"]["latency_ms"].is_f64());
    assert!(ranker_c["adaptive"]["no_load_ms"].is_f64());
    for name in [Some("backend"), Some("crawler-a"), Some("responder"), None] {
        assert_eq!(
            component(&snapshot, name)["adaptive"],
            Value::Null,
            "{name:?} has no controller"
        );
    }

    // Groups: stats as stats() says, now as history() says, every window's counts.
    for (group, name) in [
        (&crawler, Some("crawler-a")),
        (&responder, Some("responder")),
        (&unnamed, None),
    ] {
        let c = component(&snapshot, name);
        let history = group.history();
        assert_eq!(c["stats"], expected_stats(group.stats()), "{name:?} stats");
        assert_eq!(c["running"], json!(history.running), "{name:?} running");
        assert_eq!(c["waiting"], json!(history.waiting), "{name:?} waiting");
        let windows = c["windows"].as_array().unwrap();
        assert_eq!(windows.len(), 3);
        for (w, want) in windows.iter().zip(&history.windows) {
            let got = (
                &w["span_s"],
                &w["peak_running"],
                &w["started"],
                &w["ended"],
                &w["completed"],
                &w["panicked"],
                &w["cancelled"],
                &w["freed"],
            );
            let want = (
                &json!(want.span.as_secs()),
                &json!(want.peak_running),
                &json!(want.started),
                &json!(want.ended),
                &json!(want.completed),
                &json!(want.panicked),
                &json!(want.cancelled),
                &json!(want.freed),
            );
            assert_eq!(got, want, "{name:?} window");
        }
    }
    let crawler_c = component(&snapshot, Some("crawler-a"));
    assert_eq!(
        (&crawler_c["running"], &crawler_c["limit"]),
        (&json!(3), &json!(5))
    );
    let w10 = &crawler_c["windows"][0];
    assert_eq!(
        (&w10["started"], &w10["completed"]),
        (&json!(24), &json!(20))
    );
    let late = &w10["start_lateness"];
    assert_eq!(late["count"], json!(24), "a lateness for every start");
    assert!(late["p50_ms"].as_f64().unwrap() <= late["p99_ms"].as_f64().unwrap());
    assert!(late["p99_ms"].as_f64().unwrap() <= late["max_ms"].as_f64().unwrap());
    assert_eq!(
        w10["run_time"]["count"],
        json!(21),
        "20 completed and 1 panicked"
    );
    assert_eq!(
        component(&snapshot, Some("responder"))["limit"],
        Value::Null,
        "no cap"
    );
    assert_eq!(component(&snapshot, None)["limit"], json!(2));

    // The limiter: its own limit, running and waiting; no stats.
    let b = component(&snapshot, Some("backend"));
    assert_eq!(
        (&b["limit"], &b["running"], &b["waiting"], &b["stats"]),
        (
            &json!(backend.limit()),
            &json!(backend.running()),
            &json!(backend.waiting()),
            &Value::Null
        )
    );
    assert_eq!((backend.limit(), backend.running()), (6, 3));
    assert_eq!(b["windows"][0]["started"], json!(24), "slots taken");

    // The sample taken: one per component, as things were.
    let series = &b["series"];
    assert_eq!(series.as_array().unwrap().len(), 1);
    assert_eq!(
        (&series[0]["running"], &series[0]["limit"]),
        (&json!(3), &json!(6))
    );
    let responder_series = &component(&snapshot, Some("responder"))["series"];
    assert_eq!(responder_series[0]["limit"], Value::Null);

    // The decisions: the one recorded, and search's first cut, which the sample saw (the
    // second came after it). Their order is by time, which the test does not pin: they were
    // made within a millisecond or so.
    let decisions = snapshot["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    let by = |source: &str| {
        decisions
            .iter()
            .find(|d| d["source"] == source)
            .unwrap_or_else(|| panic!("a {source} decision in {decisions:?}"))
    };
    let recorded = by("workload");
    assert_eq!(
        recorded,
        &json!({
            "t_ms": recorded["t_ms"],
            "limiter": "backend",
            "from": 8,
            "to": 6,
            "why": "a test's reason",
            "source": "workload",
            "id": null,
        })
    );
    let adapted = by("adaptive");
    assert_eq!(
        adapted,
        &json!({
            "t_ms": adapted["t_ms"],
            "limiter": "search",
            "from": 20,
            "to": 16,
            "why": "overload (gradient): no run time measured yet",
            "source": "adaptive",
            "id": 4,
        })
    );
    for d in decisions {
        assert!(d["t_ms"].as_u64().unwrap() <= snapshot["time_ms"].as_u64().unwrap());
    }
    assert!(decisions[0]["t_ms"].as_u64() <= decisions[1]["t_ms"].as_u64());

    assert_eq!(get(addr, "/nothing-here").await.status, 404);
    serving.abort();
    crawler.cancel();
}

/// The sampler logs an adaptive controller's changes once each time it sees the count grow
/// (the last change, saying how many more it skipped), by the component's name (`#id` if it
/// has none) and id, and starts counting again when the controller is set afresh.
#[tokio::test]
async fn the_sampler_logs_adaptive_decisions_once() {
    let registry = Registry::new();
    let dashboard = server::Dashboard::new(registry.clone());
    let api = Limiter::named("api", 10);
    api.set_adaptive(Adaptive::aimd());
    registry.add_limiter(&api);
    let capped = Group::builder()
        .max_concurrent(10)
        .adaptive(Adaptive::aimd())
        .registry(&registry)
        .build();
    let logged = |dashboard: &server::Dashboard| {
        let snapshot = dashboard.snapshot();
        let decisions = snapshot["decisions"].as_array().unwrap().clone();
        let t: Vec<u64> = decisions
            .iter()
            .map(|d| d["t_ms"].as_u64().unwrap())
            .collect();
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "in time order: {t:?}");
        decisions
            .iter()
            .map(|d| {
                assert_eq!(d["source"], "adaptive");
                let why = d["why"].as_str().unwrap().to_owned();
                (
                    d["limiter"].clone(),
                    d["id"].clone(),
                    d["from"].clone(),
                    d["to"].clone(),
                    why,
                )
            })
            .collect::<Vec<_>>()
    };
    let entry = |name: &str, id: u64, from: usize, to: usize, why: &str| {
        (
            json!(name),
            json!(id),
            json!(from),
            json!(to),
            why.to_owned(),
        )
    };

    dashboard.sample();
    assert_eq!(logged(&dashboard), [], "no change yet");

    // One cut (10 -> 8), seen by two samples: logged once.
    api.overloaded();
    dashboard.sample();
    dashboard.sample();
    let one = entry("api", 0, 10, 8, "overload (aimd): no run time measured yet");
    assert_eq!(logged(&dashboard), std::slice::from_ref(&one));

    // Two cuts between samples (8 -> 6 -> 5): the last is logged, the other counted.
    api.overloaded();
    api.overloaded();
    assert_eq!(api.history().adaptive.unwrap().decisions, 3);
    dashboard.sample();
    let two = entry(
        "api",
        0,
        6,
        5,
        "overload (aimd): no run time measured yet; 1 more not listed",
    );
    assert_eq!(logged(&dashboard), [one.clone(), two.clone()]);

    // Set again, the controller counts from 0: its first cut (5 -> 4) is still new. And a
    // group's own cap, unnamed (10 -> 8).
    api.set_adaptive(Adaptive::aimd());
    api.overloaded();
    capped.overloaded();
    assert_eq!((api.limit(), capped.max_concurrent()), (4, 8));
    dashboard.sample();
    let log = logged(&dashboard);
    assert_eq!(log.len(), 4, "{log:?}");
    assert_eq!(log[..2], [one, two]);
    let three = entry("api", 0, 5, 4, "overload (aimd): no run time measured yet");
    let four = entry("#1", 1, 10, 8, "overload (aimd): no run time measured yet");
    assert!(
        log[2..].contains(&three) && log[2..].contains(&four),
        "{log:?}"
    );
    dashboard.sample();
    assert_eq!(logged(&dashboard).len(), 4, "nothing new");
}
