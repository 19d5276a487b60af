//! Issue 12, the `tracing` feature: a span per task run (group, task id, deadline, lateness),
//! entered while the task is polled and dropped, so the task's own events nest under it; and
//! events for starts and ends, panics (with a string payload), group cancellation, limit
//! changes and throttle decisions. A layer records every span and event, with the fields of
//! the span each event happened in.
//!
//! Run with `cargo test --features tracing --test observe_tracing` (or `--all-features`).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schedgroup::{Adaptive, Group, Limiter, ThrottleOutcome};
use tokio::time::timeout;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Field names and values, as text.
#[derive(Debug, Clone, Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// An event as recorded: its target, level, fields, and its span's name and fields.
#[derive(Debug, Clone)]
struct Recorded {
    target: String,
    level: tracing::Level,
    fields: Fields,
    span: Option<(String, Fields)>,
}

#[derive(Clone, Default)]
struct Capture {
    events: Arc<Mutex<Vec<Recorded>>>,
    spans: Arc<Mutex<Vec<(String, Fields)>>>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let name = attrs.metadata().name().to_owned();
        self.spans
            .lock()
            .unwrap()
            .push((name.clone(), fields.clone()));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert((name, fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = ctx
            .event_span(event)
            .and_then(|span| span.extensions().get::<(String, Fields)>().cloned());
        self.events.lock().unwrap().push(Recorded {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
            span,
        });
    }
}

/// Runs `test` on a paused runtime on this thread with the capturing layer (routed to this
/// thread by the binary's one subscriber: see `common::trace`), and returns what it recorded.
fn captured(test: impl AsyncFnOnce()) -> Capture {
    let capture = Capture::default();
    common::trace::traced(capture.clone(), || {
        common::current_thread(true).block_on(test())
    });
    capture
}

fn message(event: &Recorded) -> &str {
    event.fields.get("message").unwrap_or("")
}

#[test]
fn a_tasks_events_nest_in_its_span_with_group_id_deadline_and_lateness() {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let capture = captured(async || {
        let group = Group::builder().name("replies").max_concurrent(1).build();
        for n in 0..2u64 {
            let ids = ids.clone();
            group.delay(Duration::from_millis(100), async move {
                ids.lock().unwrap().push(schedgroup::task_id().unwrap());
                tracing::info!(n, "sending the reply");
                tokio::time::sleep(Duration::from_millis(30)).await;
                tracing::info!(n, "sent");
            });
        }
        timeout(Duration::from_secs(10), group.wait())
            .await
            .expect("two tasks end")
            .expect("no panic");
    });
    let ids = ids.lock().unwrap().clone();
    let events = capture.events.lock().unwrap().clone();
    for (n, id) in ids.iter().enumerate() {
        let mine: Vec<&Recorded> = events
            .iter()
            .filter(|e| {
                e.span.as_ref().is_some_and(|(name, fields)| {
                    name == "task" && fields.get("task_id") == Some(&id.to_string())
                })
            })
            .collect();
        let messages: Vec<&str> = mine.iter().map(|e| message(e)).collect();
        assert_eq!(
            messages,
            ["task started", "sending the reply", "sent", "task ended"],
            "task {n}'s events, in its span, in order"
        );
        let (_, span) = mine[0].span.as_ref().unwrap();
        assert_eq!(span.get("group"), Some("replies"));
        assert!(span.get("deadline").is_some_and(|d| d.contains("Instant")));
        // Cap 1: the first starts at its deadline, the second 30 ms later.
        let lateness = if n == 0 { "0" } else { "30000" };
        assert_eq!(span.get("lateness_us"), Some(lateness), "task {n}");
        let ended = mine[3];
        assert_eq!(ended.fields.get("outcome"), Some("completed"));
        assert_eq!(ended.fields.get("run_us"), Some("30000"));
        assert_eq!(ended.target, "schedgroup");
        assert_eq!(ended.level, tracing::Level::DEBUG);
    }
    let spans = capture.spans.lock().unwrap();
    assert_eq!(
        spans.iter().filter(|(name, _)| name == "task").count(),
        2,
        "one span per run"
    );
}

#[test]
fn panics_cancellation_limits_and_throttles_are_events() {
    // These two panics are meant: keep them off stderr.
    common::outputs::quiet_hook(|p| {
        p.downcast_ref::<&str>() == Some(&"the backend said no")
            || p.downcast_ref::<String>().is_some_and(|s| s == "error 503")
    });
    let capture = captured(async || {
        let group = Group::builder().name("jobs").max_concurrent(4).build();
        group.delay(Duration::ZERO, async {
            std::panic::panic_any("the backend said no");
        });
        group.delay(Duration::ZERO, async {
            std::panic::panic_any(format!("error {}", 503));
        });
        let _ = timeout(Duration::from_secs(10), group.wait())
            .await
            .expect("both end");
        assert!(group.set_max_concurrent(8));
        assert!(!group.set_max_concurrent(8), "unchanged: no event");
        assert!(matches!(
            group.throttle_down(),
            ThrottleOutcome::Applied { .. }
        ));
        let limiter = Limiter::named("backend", 10);
        limiter.set_limit(20);
        assert_eq!(
            limiter.throttle_up(),
            ThrottleOutcome::AtCeiling { limit: 20 }
        );
        group.delay(Duration::from_secs(60), async {});
        group.cancel();
        group.cancel();
    });
    let events = capture.events.lock().unwrap().clone();
    let ours: Vec<&Recorded> = events.iter().filter(|e| e.target == "schedgroup").collect();
    let panics: Vec<&str> = ours
        .iter()
        .filter(|e| message(e) == "task panicked")
        .map(|e| {
            assert_eq!(e.level, tracing::Level::WARN);
            assert_eq!(e.span.as_ref().unwrap().1.get("group"), Some("jobs"));
            e.fields.get("payload").unwrap_or("none")
        })
        .collect();
    assert_eq!(
        panics,
        ["the backend said no", "error 503"],
        "a &str and a String payload"
    );
    let limits: Vec<(Option<&str>, Option<&str>, &str, &str)> = ours
        .iter()
        .filter(|e| message(e) == "limit changed")
        .map(|e| {
            (
                e.fields.get("group"),
                e.fields.get("limiter"),
                e.fields.get("from").unwrap(),
                e.fields.get("to").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        limits,
        [
            (Some("jobs"), None, "4", "8"),
            (None, Some("backend"), "10", "20")
        ]
    );
    let throttles: Vec<(&str, &str)> = ours
        .iter()
        .filter(|e| message(e) == "throttle")
        .map(|e| {
            (
                e.fields.get("direction").unwrap(),
                e.fields.get("outcome").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        throttles,
        [
            ("down", "Applied { from: 8, to: 6 }"),
            ("up", "AtCeiling { limit: 20 }")
        ]
    );
    let cancelled: Vec<&&Recorded> = ours
        .iter()
        .filter(|e| message(e) == "group cancelled")
        .collect();
    assert_eq!(cancelled.len(), 1, "once, by the cancel that cancelled it");
    assert_eq!(cancelled[0].fields.get("group"), Some("jobs"));
    assert_eq!(cancelled[0].level, tracing::Level::INFO);
}

#[test]
fn an_unnamed_groups_span_says_unnamed_and_a_cancelled_run_says_by_whom() {
    let capture = captured(async || {
        let group = Group::new();
        let handle = group.delay(Duration::ZERO, std::future::pending::<()>());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(handle.cancel());
        timeout(Duration::from_secs(10), group.wait())
            .await
            .expect("the task stops")
            .expect("no panic");
    });
    let events = capture.events.lock().unwrap().clone();
    let ended = events
        .iter()
        .find(|e| message(e) == "task ended")
        .expect("the task ended");
    assert_eq!(ended.fields.get("outcome"), Some("cancelled"));
    assert_eq!(ended.fields.get("by"), Some("handle"));
    assert_eq!(ended.fields.get("run_us"), Some("5000"));
    assert_eq!(ended.span.as_ref().unwrap().1.get("group"), Some("unnamed"));
}

#[test]
fn adaptive_decisions_are_events_with_their_reason_and_estimates() {
    let capture = captured(async || {
        let group = Group::builder()
            .name("crawler")
            .max_concurrent(10)
            .adaptive(Adaptive::aimd())
            .build();
        group.overloaded();
        let backend = Limiter::named("backend", 20);
        backend.set_adaptive(Adaptive::gradient());
        backend.overloaded();
    });
    let events = capture.events.lock().unwrap().clone();
    let decisions: Vec<_> = events
        .iter()
        .filter(|e| message(e) == "adaptive decision")
        .map(|e| {
            assert_eq!(
                (e.target.as_str(), e.level),
                ("schedgroup", tracing::Level::INFO)
            );
            let f = |name| e.fields.get(name).unwrap_or("-").to_owned();
            [
                f("group"),
                f("limiter"),
                f("algorithm"),
                f("from"),
                f("to"),
                f("reason"),
                f("latency_us"),
                f("no_load_us"),
            ]
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ["crawler", "-", "aimd", "10", "8", "overload", "0", "0"],
            ["-", "backend", "gradient", "20", "16", "overload", "0", "0"],
        ]
    );
}
