//! The dashboard example's server (issue 12): on a loopback port, `/` serves the page and
//! `/api/snapshot` says of every registered group and limiter what their own `stats()`,
//! `history()`, `limit()` and `running()` say, with the sampler's series and the decisions
//! recorded. Real clock and real sockets; every wait bounded.

mod common;

#[allow(dead_code)]
#[path = "../examples/dashboard/server.rs"]
mod server;

use std::net::SocketAddr;
use std::time::Duration;

use common::outputs::{quiet_hook, quiet_panic};
use schedgroup::{Group, Limiter, Registry, Stats};
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
        ]
    );

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

    // The decision.
    assert_eq!(
        snapshot["decisions"],
        json!([{
            "t_ms": snapshot["decisions"][0]["t_ms"],
            "limiter": "backend",
            "from": 8,
            "to": 6,
            "why": "a test's reason",
        }])
    );
    assert!(
        snapshot["decisions"][0]["t_ms"].as_u64().unwrap() <= snapshot["time_ms"].as_u64().unwrap()
    );

    assert_eq!(get(addr, "/nothing-here").await.status, 404);
    serving.abort();
    crawler.cancel();
}
