//! The dashboard's server: one page, one JSON endpoint, and a sampler that keeps five minutes
//! of one-second samples per component so the page can draw its charts on first load.
//!
//! Routes:
//!
//! - `GET /`: the page (`page.html`, vanilla JS, no external resources).
//! - `GET /api/snapshot`: everything the page shows, as below. The page polls it once a
//!   second.
//!
//! `/api/snapshot` returns (times in milliseconds since the dashboard was created, durations
//! in milliseconds as floats):
//!
//! ```text
//! {
//!   "time_ms": 81234,                 // now
//!   "interval_ms": 1000,              // one sample every
//!   "components": [{                  // Registry::snapshot(), in registration order
//!     "id": 0,                        // Component::id
//!     "kind": "group" | "limiter",
//!     "name": "backend" | null,
//!     "running": 7, "waiting": 2,     // now (History)
//!     "limit": 8 | null,              // null: no cap (usize::MAX, an uncapped group)
//!     "stats": {"scheduled", "pending", "running", "completed", "cancelled", "panicked"}
//!              | null,                // Group::stats(); null for a limiter
//!     "windows": [{                   // History::windows: 10 s, 1 min, 5 min
//!       "span_s": 10, "peak_running": 8, "mean_running": 6.4, "mean_waiting": 1.2,
//!       "started": 512, "ended": 510, "completed": 500, "panicked": 3, "cancelled": 7,
//!       "freed": 510,
//!       "start_lateness": {"p50_ms", "p99_ms", "max_ms", "count"} | null,
//!       "run_time": {"p50_ms", "p99_ms", "max_ms", "count"} | null
//!     }, ...],
//!     "series": [{                    // one sample a second, oldest first, up to 300
//!       "t_ms": 80000,
//!       "running": 6, "waiting": 1, "limit": 8 | null,   // at that moment
//!       "started_per_s": 51.2,        // the 10 s window's started / 10
//!       "ended_per_s": 51.0,          // the 10 s window's freed / 10
//!       "late_p50_ms": 3.1 | null,    // the 10 s window's start lateness
//!       "late_p99_ms": 180.0 | null
//!     }, ...]
//!   }, ...],
//!   "decisions": [{                   // recorded by the workload's controller, oldest first
//!     "t_ms": 64000, "limiter": "backend", "from": 8, "to": 9,
//!     "why": "3 waiting, start lateness p99 412 ms"
//!   }, ...]
//! }
//! ```
//!
//! The "now" fields (running, waiting, limit, stats, windows) are read when the request comes
//! in; `series` holds what the sampler saw. A component that leaves the registry (its last
//! handle dropped) leaves the snapshot and its series at the next sample.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use schedgroup::{Component, Kind, Percentiles, Registry, Window};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::{Instant, MissedTickBehavior};

/// The page, served as is.
pub const PAGE: &str = include_str!("page.html");

/// How often the sampler samples.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Samples kept per component: five minutes at one a second.
pub const SAMPLES: usize = 300;

/// Decisions kept: the page lists the latest.
const DECISIONS: usize = 100;

/// What the server shows: a registry, the samples taken of it, and a log of the decisions a
/// controller made. Clones share all three.
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    /// Time zero of every `t_ms`.
    start: Instant,
    /// Per component id, its samples, oldest first. Guarded by its mutex, never held across
    /// an `.await`.
    series: Mutex<HashMap<u64, VecDeque<Sample>>>,
    /// The latest decisions, oldest first.
    decisions: Mutex<VecDeque<Decision>>,
}

/// One component at one moment.
#[derive(Clone, Copy)]
struct Sample {
    t_ms: u64,
    running: usize,
    waiting: usize,
    limit: usize,
    started_per_s: f64,
    ended_per_s: f64,
    late_p50_ms: Option<f64>,
    late_p99_ms: Option<f64>,
}

/// A limit a controller changed, and why.
struct Decision {
    t_ms: u64,
    limiter: String,
    from: usize,
    to: usize,
    why: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing under these locks panics halfway through a change.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Dashboard {
    /// A dashboard of what `registry` lists, with no samples yet.
    pub fn new(registry: Registry) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                start: Instant::now(),
                series: Mutex::new(HashMap::new()),
                decisions: Mutex::new(VecDeque::new()),
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records that a controller moved `limiter`'s limit `from` -> `to`, and why.
    pub fn record_decision(&self, limiter: &str, from: usize, to: usize, why: impl Into<String>) {
        let decision = Decision {
            t_ms: self.now_ms(),
            limiter: limiter.to_owned(),
            from,
            to,
            why: why.into(),
        };
        let mut decisions = lock(&self.inner.decisions);
        if decisions.len() == DECISIONS {
            decisions.pop_front();
        }
        decisions.push_back(decision);
    }

    /// Takes one sample of every registered component, and forgets the series of those that
    /// are gone.
    pub fn sample(&self) {
        let components = self.inner.registry.snapshot();
        let t_ms = self.now_ms();
        let mut series = lock(&self.inner.series);
        series.retain(|id, _| components.iter().any(|c| c.id == *id));
        for c in &components {
            let h = &c.history;
            let w10 = &h.windows[0];
            let secs = w10.span.as_secs_f64();
            let ring = series
                .entry(c.id)
                .or_insert_with(|| VecDeque::with_capacity(SAMPLES));
            if ring.len() == SAMPLES {
                ring.pop_front();
            }
            ring.push_back(Sample {
                t_ms,
                running: h.running,
                waiting: h.waiting,
                limit: h.limit,
                started_per_s: w10.started as f64 / secs,
                ended_per_s: w10.freed as f64 / secs,
                late_p50_ms: w10.start_lateness.map(|p| ms(p.p50)),
                late_p99_ms: w10.start_lateness.map(|p| ms(p.p99)),
            });
        }
    }

    /// Samples now and then every [`INTERVAL`], for as long as the runtime runs.
    pub fn spawn_sampler(&self) -> tokio::task::JoinHandle<()> {
        let dashboard = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(INTERVAL);
            every.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                dashboard.sample();
            }
        })
    }

    /// The `/api/snapshot` document (see the module docs).
    pub fn snapshot(&self) -> Value {
        let components = self.inner.registry.snapshot();
        let series = lock(&self.inner.series);
        let components: Vec<Value> = components
            .iter()
            .map(|c| component(c, series.get(&c.id)))
            .collect();
        drop(series);
        let decisions: Vec<Value> = lock(&self.inner.decisions)
            .iter()
            .map(|d| {
                json!({
                    "t_ms": d.t_ms,
                    "limiter": d.limiter,
                    "from": d.from,
                    "to": d.to,
                    "why": d.why,
                })
            })
            .collect();
        json!({
            "time_ms": self.now_ms(),
            "interval_ms": INTERVAL.as_millis() as u64,
            "components": components,
            "decisions": decisions,
        })
    }
}

/// A duration in milliseconds, to a microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A limit, `null` for no cap.
fn limit(limit: usize) -> Value {
    if limit == usize::MAX {
        Value::Null
    } else {
        json!(limit)
    }
}

fn percentiles(p: Option<Percentiles>) -> Value {
    p.map_or(Value::Null, |p| {
        json!({
            "p50_ms": ms(p.p50),
            "p99_ms": ms(p.p99),
            "max_ms": ms(p.max),
            "count": p.count,
        })
    })
}

fn window(w: &Window) -> Value {
    json!({
        "span_s": w.span.as_secs(),
        "peak_running": w.peak_running,
        "mean_running": w.mean_running,
        "mean_waiting": w.mean_waiting,
        "started": w.started,
        "ended": w.ended,
        "completed": w.completed,
        "panicked": w.panicked,
        "cancelled": w.cancelled,
        "freed": w.freed,
        "start_lateness": percentiles(w.start_lateness),
        "run_time": percentiles(w.run_time),
    })
}

fn component(c: &Component, series: Option<&VecDeque<Sample>>) -> Value {
    let h = &c.history;
    let stats = c.stats.map_or(Value::Null, |s| {
        json!({
            "scheduled": s.scheduled,
            "pending": s.pending,
            "running": s.running,
            "completed": s.completed,
            "cancelled": s.cancelled,
            "panicked": s.panicked,
        })
    });
    let series: Vec<Value> = series
        .into_iter()
        .flatten()
        .map(|s| {
            json!({
                "t_ms": s.t_ms,
                "running": s.running,
                "waiting": s.waiting,
                "limit": limit(s.limit),
                "started_per_s": s.started_per_s,
                "ended_per_s": s.ended_per_s,
                "late_p50_ms": s.late_p50_ms,
                "late_p99_ms": s.late_p99_ms,
            })
        })
        .collect();
    json!({
        "id": c.id,
        "kind": match c.kind {
            Kind::Group => "group",
            Kind::Limiter => "limiter",
            _ => "other",
        },
        "name": c.name,
        "running": h.running,
        "waiting": h.waiting,
        "limit": limit(h.limit),
        "stats": stats,
        "windows": h.windows.iter().map(window).collect::<Vec<_>>(),
        "series": series,
    })
}

/// The routes, over `dashboard`.
pub fn router(dashboard: Dashboard) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/snapshot", get(snapshot))
        .with_state(dashboard)
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE))
}

async fn snapshot(State(dashboard): State<Dashboard>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        dashboard.snapshot().to_string(),
    )
}

/// Serves `dashboard` on `listener` until the runtime stops.
///
/// # Errors
///
/// What `axum::serve` returns: an I/O error of the listener.
pub async fn serve(listener: TcpListener, dashboard: Dashboard) -> io::Result<()> {
    axum::serve(listener, router(dashboard)).await
}
