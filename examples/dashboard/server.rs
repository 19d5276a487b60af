//! The dashboard's server: one page, one JSON endpoint, and a sampler that keeps five minutes
//! of one-second samples per component so the page can draw its charts on first load, and
//! logs the changes adaptive controllers make.
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
//!     "adaptive": {                   // History::adaptive; null without a controller
//!       "algorithm": "aimd" | "gradient",
//!       "limit": 13 | null,           // AdaptiveState::limit; null: usize::MAX
//!       "no_load_ms": 20.1 | null,    // the no-load run time estimate; null until measured
//!       "latency_ms": 22.4 | null,    // the last decision's mean run time; null until then
//!       "decisions": 57,              // changes made since the controller was set
//!       "last": {"ago_ms": 2013.2,    // AdaptiveState::last, the last change
//!                "from": 14, "to": 13, // limits, null for usize::MAX
//!                "reason": "overload" | "latency" | "room" | "probe"} | null
//!     } | null,
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
//!   "decisions": [{                   // the latest 100 limit changes, oldest first
//!     "t_ms": 64000,
//!     "limiter": "backend",           // the name of what changed: a limiter, or a group's cap
//!     "from": 8, "to": 9,
//!     "why": "3 waiting, start lateness p99 412 ms",
//!     "source": "workload" | "adaptive",
//!     "id": 0 | null                  // the component's id; null for "workload"
//!   }, ...]
//! }
//! ```
//!
//! The "now" fields (running, waiting, limit, stats, adaptive, windows) are read when the
//! request comes in; `series` holds what the sampler saw. A component that leaves the registry
//! (its last handle dropped) leaves the snapshot and its series at the next sample.
//!
//! Decisions come from two places. The workload's own controller records its changes
//! ([`Dashboard::record_decision`], `"source": "workload"`). An adaptive controller's changes
//! are noticed by the sampler (`"source": "adaptive"`): when a component's
//! `AdaptiveState::decisions` has grown since the last sample, it logs the `last` decision, at
//! the time it was made, with its reason and the run time figures of the sample; `why` says
//! how many more were made since the previous sample and are not listed (a controller can
//! change its limit several times a second). A component first seen with decisions already
//! made logs its last one the same way.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use schedgroup::{AdaptiveState, Component, Kind, Percentiles, Registry, Window};
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
    /// Per component id, what the sampler saw of it. Guarded by its mutex, never held across
    /// an `.await`, and never held while `decisions` is locked.
    tracks: Mutex<HashMap<u64, Track>>,
    /// The latest decisions, oldest first (by `t_ms`).
    decisions: Mutex<VecDeque<Decision>>,
}

/// What the sampler saw of one component.
struct Track {
    /// Its samples, oldest first.
    samples: VecDeque<Sample>,
    /// Its adaptive controller's `decisions` at the last sample (0 without one).
    decisions: u64,
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
    /// The adaptive controller of this component made it; `None`: the workload recorded it.
    adaptive: Option<u64>,
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
                tracks: Mutex::new(HashMap::new()),
                decisions: Mutex::new(VecDeque::new()),
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records that the workload's controller moved `limiter`'s limit `from` -> `to`, and
    /// why.
    pub fn record_decision(&self, limiter: &str, from: usize, to: usize, why: impl Into<String>) {
        self.log(Decision {
            t_ms: self.now_ms(),
            limiter: limiter.to_owned(),
            from,
            to,
            why: why.into(),
            adaptive: None,
        });
    }

    /// Puts `decision` in the log in time order (an adaptive one is logged after it was made),
    /// dropping the oldest beyond [`DECISIONS`].
    fn log(&self, decision: Decision) {
        let mut decisions = lock(&self.inner.decisions);
        let at = decisions
            .iter()
            .rposition(|d| d.t_ms <= decision.t_ms)
            .map_or(0, |i| i + 1);
        decisions.insert(at, decision);
        if decisions.len() > DECISIONS {
            decisions.pop_front();
        }
    }

    /// Takes one sample of every registered component, logs the adaptive decisions made since
    /// the last one, and forgets the series of those that are gone.
    pub fn sample(&self) {
        let components = self.inner.registry.snapshot();
        let t_ms = self.now_ms();
        let mut adaptive = Vec::new();
        let mut tracks = lock(&self.inner.tracks);
        tracks.retain(|id, _| components.iter().any(|c| c.id == *id));
        for c in &components {
            let h = &c.history;
            let w10 = &h.windows[0];
            let secs = w10.span.as_secs_f64();
            let track = tracks.entry(c.id).or_insert_with(|| Track {
                samples: VecDeque::with_capacity(SAMPLES),
                decisions: 0,
            });
            let decisions = h.adaptive.as_ref().map_or(0, |a| a.decisions);
            // Fewer than last time: the controller was set again and counts afresh.
            let new = decisions.checked_sub(track.decisions).unwrap_or(decisions);
            track.decisions = decisions;
            if let Some(decision) = h
                .adaptive
                .as_ref()
                .filter(|_| new > 0)
                .and_then(|a| adaptive_decision(c, a, new, t_ms))
            {
                adaptive.push(decision);
            }
            let ring = &mut track.samples;
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
        drop(tracks);
        for decision in adaptive {
            self.log(decision);
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
        let tracks = lock(&self.inner.tracks);
        let components: Vec<Value> = components
            .iter()
            .map(|c| component(c, tracks.get(&c.id).map(|t| &t.samples)))
            .collect();
        drop(tracks);
        let decisions: Vec<Value> = lock(&self.inner.decisions)
            .iter()
            .map(|d| {
                json!({
                    "t_ms": d.t_ms,
                    "limiter": d.limiter,
                    "from": d.from,
                    "to": d.to,
                    "why": d.why,
                    "source": if d.adaptive.is_some() { "adaptive" } else { "workload" },
                    "id": d.adaptive,
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

/// The last decision of `c`'s adaptive controller `a`, as the sample at `t_ms` logs it; `new`
/// decisions were made since the previous sample.
fn adaptive_decision(c: &Component, a: &AdaptiveState, new: u64, t_ms: u64) -> Option<Decision> {
    let last = a.last?;
    let ago = u64::try_from(last.ago.as_millis()).unwrap_or(u64::MAX);
    let mut why = format!("{} ({})", last.reason.name(), a.algorithm.name());
    match (a.latency, a.no_load_latency) {
        (Some(now), Some(no_load)) => {
            why += &format!(
                ": run time {:.1} ms, no-load {:.1} ms",
                ms(now),
                ms(no_load)
            );
        }
        _ => why += ": no run time measured yet",
    }
    if new > 1 {
        why += &format!("; {} more not listed", new - 1);
    }
    Some(Decision {
        t_ms: t_ms.saturating_sub(ago),
        limiter: c
            .name
            .as_deref()
            .map_or_else(|| format!("#{}", c.id), str::to_owned),
        from: last.from,
        to: last.to,
        why,
        adaptive: Some(c.id),
    })
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

fn adaptive(a: Option<&AdaptiveState>) -> Value {
    a.map_or(Value::Null, |a| {
        let last = a.last.map_or(Value::Null, |d| {
            json!({
                "ago_ms": ms(d.ago),
                "from": limit(d.from),
                "to": limit(d.to),
                "reason": d.reason.name(),
            })
        });
        json!({
            "algorithm": a.algorithm.name(),
            "limit": limit(a.limit),
            "no_load_ms": a.no_load_latency.map(ms),
            "latency_ms": a.latency.map(ms),
            "decisions": a.decisions,
            "last": last,
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
        "adaptive": adaptive(h.adaptive.as_ref()),
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
