//! Hostile review of issue 11 through the `adaptive decision` tracing event: one decision, one
//! event; a subscriber that panics or re-enters the group and limiter on it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::outputs::{quiet_hook, quiet_panic};
use common::{assert_adds_up, bounded, ms};
use schedgroup::{Adaptive, Group, Limiter};
use tracing::Event;
use tracing::field::{Field, Visit};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer};

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Calls `hook` with the fields of each `adaptive decision` event.
struct OnDecision<F>(F);

impl<F: Fn(&Fields) + Send + Sync + 'static> Layer<Registry> for OnDecision<F> {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, Registry>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.get("message") == Some("adaptive decision") {
            (self.0)(&fields);
        }
    }
}

/// A panic cuts both the group's own cap and its limiter's limit, and both changes are real,
/// but only the limiter's is reported: the group's decision has no event.
#[test]
fn both_decisions_of_one_end_are_traced() {
    quiet_hook(|_| false);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let layer = OnDecision(move |f: &Fields| {
        let who = if f.get("group").is_some() {
            "group"
        } else {
            "limiter"
        };
        s.lock().unwrap().push(who);
    });
    let (group_cut, limiter_cut) = common::trace::traced(layer, || {
        common::current_thread(true).block_on(async {
            let limiter = Limiter::named("backend", 20);
            limiter.set_adaptive(Adaptive::aimd());
            let group = Group::builder()
                .name("crawler")
                .limiter(&limiter)
                .max_concurrent(10)
                .adaptive(Adaptive::aimd())
                .build();
            group.delay(Duration::ZERO, async {
                quiet_panic();
            });
            let _ = bounded(group.wait()).await;
            (group.max_concurrent(), limiter.limit())
        })
    });
    assert_eq!((group_cut, limiter_cut), (8, 16), "both were cut");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, ["group", "limiter"], "one event per decision");
}

/// Guard: a subscriber that panics on the event, or re-enters the group and the limiter from
/// it (overloaded, set_adaptive, set_limit, history), deadlocks and poisons nothing.
#[test]
fn a_hostile_subscriber_on_the_decision_event() {
    quiet_hook(|_| false);
    let limiter = Limiter::named("backend", 8);
    let calls = Arc::new(AtomicUsize::new(0));
    let slot: Arc<Mutex<Option<Group>>> = Arc::default();
    let (l, c, g) = (limiter.clone(), calls.clone(), slot.clone());
    let layer = OnDecision(move |_: &Fields| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        let group = g.lock().unwrap().clone();
        let _ = l.history();
        match n % 4 {
            0 => quiet_panic(),
            1 => {
                l.overloaded();
                if let Some(group) = &group {
                    group.overloaded();
                }
                0
            }
            2 => {
                l.set_adaptive(Adaptive::gradient().min_samples(2));
                if let Some(group) = &group {
                    group.set_adaptive(Adaptive::aimd().min_samples(2));
                    let _ = group.history();
                }
                0
            }
            _ => {
                l.set_limit(1 + n % 6);
                0
            }
        };
    });
    common::trace::traced(layer, || {
        common::current_thread(true).block_on(async {
            limiter.set_adaptive(Adaptive::aimd().min_samples(2));
            let group = Group::builder()
                .limiter(&limiter)
                .max_concurrent(6)
                .adaptive(Adaptive::gradient().min_samples(2))
                .build();
            *slot.lock().unwrap() = Some(group.clone());
            for i in 0..300u64 {
                let g = group.clone();
                group.delay(Duration::ZERO, async move {
                    tokio::time::sleep(ms(1 + i % 4)).await;
                    if i % 9 == 0 {
                        g.overloaded();
                    }
                    if i % 23 == 0 {
                        quiet_panic();
                    }
                });
            }
            let _ = bounded(group.wait()).await;
            assert_adds_up(group.stats());
            assert_eq!(group.stats().completed + group.stats().panicked, 300);
            assert_eq!(limiter.running(), 0);
        });
    });
    *slot.lock().unwrap() = None;
    assert!(calls.load(Ordering::SeqCst) > 3, "the hook ran");
}
