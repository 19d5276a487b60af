//! A `metrics` recorder for tests that keeps every value handed to it, in order, per
//! `name{labels}`; a counter's increments are logged as its new value, as a recorder keeps one
//! counter per name.

use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

pub type Hook = Arc<dyn Fn(&str, f64) + Send + Sync>;

/// Every value handed to a handle, in order, per `name{labels}`; `hook` runs on each, after
/// it is logged (it may panic, or call back into a group).
#[derive(Clone)]
pub struct Rec {
    log: Arc<Mutex<Vec<(String, f64)>>>,
    hook: Hook,
}

impl Rec {
    pub fn new() -> Self {
        Self::with_hook(|_, _| {})
    }

    pub fn with_hook(hook: impl Fn(&str, f64) + Send + Sync + 'static) -> Self {
        Self {
            log: Arc::default(),
            hook: Arc::new(hook),
        }
    }

    /// The values of `key`, in the order they were handed over.
    pub fn values(&self, key: &str) -> Vec<f64> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == key)
            .map(|&(_, v)| v)
            .collect()
    }

    pub fn last(&self, key: &str) -> Option<f64> {
        self.values(key).last().copied()
    }

    fn handle(&self, key: &Key) -> Arc<Handle> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
            .collect();
        Arc::new(Handle {
            key: format!("{}{{{}}}", key.name(), labels.join(",")),
            rec: self.clone(),
        })
    }
}

struct Handle {
    key: String,
    rec: Rec,
}

impl Handle {
    fn push(&self, value: f64) {
        self.rec.log.lock().unwrap().push((self.key.clone(), value));
        (self.rec.hook)(&self.key, value);
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        // A recorder's counter: one per name, which increments add to (the crate reports
        // what its counters grew by). Logged as the counter's new value.
        let last = {
            let log = self.rec.log.lock().unwrap();
            log.iter()
                .rev()
                .find(|(k, _)| *k == self.key)
                .map_or(0.0, |&(_, v)| v)
        };
        self.push(last + value as f64);
    }
    fn absolute(&self, value: u64) {
        self.push(value as f64);
    }
}

impl GaugeFn for Handle {
    fn increment(&self, _: f64) {
        unreachable!("the crate sets gauges")
    }
    fn decrement(&self, _: f64) {
        unreachable!("the crate sets gauges")
    }
    fn set(&self, value: f64) {
        self.push(value);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.push(value);
    }
}

impl Recorder for Rec {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

impl Default for Rec {
    fn default() -> Self {
        Self::new()
    }
}

/// The key a group's metric is logged under.
pub fn key(name: &str, group: &str) -> String {
    format!("{name}{{group=\"{group}\"}}")
}
