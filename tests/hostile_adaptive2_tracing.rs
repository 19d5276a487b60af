//! Second hostile review of issue 11 through the `adaptive decision` tracing event: decisions
//! made concurrently by four groups on one limiter on a multi-thread runtime, and by a group
//! whose runtime is gone, are each reported once: no event lost, none doubled.

mod common;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::outputs::{quiet_hook, quiet_panic};
use common::{bounded, ms};
use schedgroup::{Adaptive, Group, Limiter};
use tracing::Event;
use tracing::field::{Field, Visit};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// The owner's label ("limiter=NAME" or "group=NAME") of each decision event, from every
/// thread of the process (the runtime's workers included).
fn events() -> &'static Mutex<HashMap<String, u64>> {
    static EVENTS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Count);
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        Mutex::default()
    })
}

#[derive(Default)]
struct Owner(Option<String>, bool);

impl Visit for Owner {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "limiter" | "group" => self.0 = Some(format!("{}={value}", field.name())),
            "message" => self.1 = value == "adaptive decision",
            _ => {}
        }
    }
}

struct Count;

impl Layer<Registry> for Count {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, Registry>) {
        let mut owner = Owner::default();
        event.record(&mut owner);
        if let Owner(Some(who), true) = owner {
            *events().lock().unwrap().entry(who).or_default() += 1;
        }
    }
}

fn seen(who: &str) -> u64 {
    events().lock().unwrap().get(who).copied().unwrap_or(0)
}

/// Guard: four groups (two with adaptive caps) on one adaptive limiter, on a multi-thread
/// runtime, decide concurrently (panics, classified outputs, signals, latency): each owner's
/// events match its `decisions`, exactly. Then the runtime is dropped mid-run, and a signal
/// from outside any runtime decides once more: one more event.
#[test]
fn concurrent_decisions_are_each_reported_once() {
    quiet_hook(|_| false);
    events();
    let rt = common::multi_thread(2);
    let limiter = Limiter::named("lim2", 40);
    limiter.set_adaptive(Adaptive::gradient().min_samples(2).probe_every(ms(20)));
    let groups: Vec<Group> = rt.block_on(async {
        (0..4)
            .map(|k| {
                let b = Group::builder().name(format!("g{k}")).limiter(&limiter);
                if k % 2 == 0 {
                    b.max_concurrent(20)
                        .adaptive(Adaptive::aimd().min_samples(1))
                        .build()
                } else {
                    b.build()
                }
            })
            .collect()
    });
    rt.block_on(async {
        for round in 0..common::iterations(3000) / 250 {
            let mut all = Vec::new();
            for (k, group) in groups.iter().enumerate() {
                let results = group.results::<u64>();
                results.overload_when(|&x| x % 19 == 0);
                for j in 0..40u64 {
                    let g = group.clone();
                    let x = j + k as u64 * 7 + round as u64;
                    results.delay(Duration::ZERO, async move {
                        tokio::time::sleep(Duration::from_micros(100 + x % 5 * 300)).await;
                        match x % 29 {
                            0 => g.overloaded(),
                            1 => {
                                quiet_panic();
                            }
                            _ => {}
                        }
                        x
                    });
                }
                all.push(results);
            }
            for group in &groups {
                let _ = bounded(group.wait()).await;
            }
            drop(all);
        }
    });
    let check = |when: &str| {
        let state = limiter.history().adaptive.unwrap();
        assert_eq!(seen("limiter=lim2"), state.decisions, "{when}: the limiter");
        for (k, group) in groups.iter().enumerate() {
            let decisions = group.history().adaptive.map_or(0, |s| s.decisions);
            assert_eq!(
                seen(&format!("group=g{k}")),
                decisions,
                "{when}: group g{k}"
            );
        }
        state.decisions
    };
    let before = check("after the rounds");
    assert!(before > 5, "few decisions: {before}");
    // Tasks in flight when the runtime goes: cancelled, no samples, no decisions.
    rt.block_on(async {
        for group in &groups {
            for _ in 0..10 {
                group.delay(Duration::ZERO, async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                });
            }
        }
        tokio::time::sleep(ms(5)).await;
    });
    drop(rt);
    check("after the runtime was dropped");
    // Outside any runtime, long after the last change: a decision, reported once.
    limiter.set_limit(30);
    groups[0].set_max_concurrent(30);
    std::thread::sleep(ms(50));
    groups[1].overloaded();
    groups[0].overloaded();
    limiter.overloaded();
    let after = check("after signals from outside");
    assert!(
        after > before,
        "no decision from the signals: {:?}",
        limiter.history().adaptive
    );
    assert!(seen("group=g0") >= 1);
}
