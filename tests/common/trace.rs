//! One process-wide `tracing` subscriber for a test binary, which hands each thread's events
//! and spans to the layer that thread registered ([`traced`]).
//!
//! `tracing::subscriber::with_default` in tests that run in parallel can lose events: a
//! callsite's interest is cached for every subscriber at once, and one first reached while
//! another thread had no subscriber can stay disabled. With one global subscriber whose
//! interest is always on, nothing is cached away; each test still sees only its own thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use tracing::Event;
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

type Routed = Arc<dyn Layer<Registry> + Send + Sync>;

fn routes() -> &'static Mutex<HashMap<ThreadId, Routed>> {
    static ROUTES: OnceLock<Mutex<HashMap<ThreadId, Routed>>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Router);
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in a test binary that uses this module");
        Mutex::new(HashMap::new())
    })
}

/// This thread's layer, if it registered one.
fn route() -> Option<Routed> {
    let routes = routes().lock().unwrap_or_else(|e| e.into_inner());
    routes.get(&std::thread::current().id()).cloned()
}

struct Router;

impl Layer<Registry> for Router {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, Registry>) {
        if let Some(layer) = route() {
            layer.on_new_span(attrs, id, ctx);
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, Registry>) {
        if let Some(layer) = route() {
            layer.on_record(id, values, ctx);
        }
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, Registry>) {
        if let Some(layer) = route() {
            layer.on_event(event, ctx);
        }
    }
    fn on_enter(&self, id: &Id, ctx: Context<'_, Registry>) {
        if let Some(layer) = route() {
            layer.on_enter(id, ctx);
        }
    }
    fn on_exit(&self, id: &Id, ctx: Context<'_, Registry>) {
        if let Some(layer) = route() {
            layer.on_exit(id, ctx);
        }
    }
    fn on_close(&self, id: Id, ctx: Context<'_, Registry>) {
        if let Some(layer) = route() {
            layer.on_close(id, ctx);
        }
    }
}

/// Runs `f` with `layer` seeing what this thread reports, and only that.
pub fn traced<L, T>(layer: L, f: impl FnOnce() -> T) -> T
where
    L: Layer<Registry> + Send + Sync + 'static,
{
    struct Unroute;
    impl Drop for Unroute {
        fn drop(&mut self) {
            let mut routes = routes().lock().unwrap_or_else(|e| e.into_inner());
            routes.remove(&std::thread::current().id());
        }
    }
    routes()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(std::thread::current().id(), Arc::new(layer));
    let _unroute = Unroute;
    f()
}
