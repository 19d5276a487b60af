//! How a row steers its limiter: [`configure`] sets the limiter up once, before the first
//! request, and every request reports to the [`Hook`] it returns.
//!
//! This is the one place a new kind of row plugs in. The crate's own adaptive controller is a
//! row whose `configure` arm calls `limiter.set_adaptive(..)` once, with a hook that calls
//! `limiter.overloaded()` after each refused request and does nothing else: the limiter
//! steers itself from the run times its group measures.

use std::sync::Mutex;

use schedgroup::Limiter;

use crate::published::{Gradient2, Vector, Vegas};
use crate::{Row, RowKind};

/// One request as a controller sees it when it comes back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// When it started, in seconds from the start of the run.
    pub(crate) start: f64,
    /// From the call to the answer, in seconds: the wait in the backend's line and the service,
    /// or the refusal.
    pub(crate) latency: f64,
    /// `false` if the backend refused it.
    pub(crate) ok: bool,
    /// `limiter.running()` as it started, itself included.
    pub(crate) in_flight: usize,
}

impl Outcome {
    /// When it came back, in seconds from the start of the run.
    pub(crate) fn end(&self) -> f64 {
        self.start + self.latency
    }
}

/// A controller outside the crate, fed by the tasks themselves.
pub(crate) trait Controller: Send {
    /// The limit it starts with.
    fn initial_limit(&self) -> usize;

    /// A request is starting with `in_flight` slots of the limiter taken, its own included.
    fn on_start(&mut self, in_flight: usize) {
        let _ = in_flight;
    }

    /// A request came back. Returns the new limit when it changed.
    fn on_end(&mut self, outcome: &Outcome) -> Option<usize>;
}

/// What every request of a row reports to.
pub(crate) enum Hook {
    /// Nothing: the limit stays where [`configure`] put it.
    Fixed,
    /// A controller that sees every request and moves the limit itself.
    External(Mutex<Box<dyn Controller>>),
    /// The limiter's own adaptive controller: a refusal is an overload signal.
    Signal,
}

impl Hook {
    /// Called by a task before it sends its request, with `limiter.running()`.
    pub(crate) fn before(&self, in_flight: usize) {
        match self {
            Self::Fixed | Self::Signal => {}
            Self::External(controller) => lock(controller).on_start(in_flight),
        }
    }

    /// Called by a task after its request came back.
    pub(crate) fn after(&self, limiter: &Limiter, outcome: &Outcome) {
        match self {
            Self::Fixed => {}
            Self::Signal => {
                if !outcome.ok {
                    limiter.overloaded();
                }
            }
            Self::External(controller) => {
                let decision = lock(controller).on_end(outcome);
                if let Some(limit) = decision {
                    limiter.set_limit(limit);
                }
            }
        }
    }
}

fn lock(controller: &Mutex<Box<dyn Controller>>) -> std::sync::MutexGuard<'_, Box<dyn Controller>> {
    // A controller does arithmetic only; nothing panics while it is locked.
    controller.lock().expect("controller lock poisoned")
}

/// The row's limiter, set up for its first request, and the hook its requests report to.
/// `seed` is for a controller that draws random numbers.
pub(crate) fn configure(row: &Row, seed: u64) -> (Limiter, Hook) {
    match row.kind {
        RowKind::Static(limit) => (Limiter::new(limit), Hook::Fixed),
        RowKind::Crate(adaptive) => {
            let limiter = Limiter::new(10);
            limiter.set_adaptive(adaptive);
            (limiter, Hook::Signal)
        }
        RowKind::Gradient2 => external(Gradient2::new()),
        RowKind::Vegas => external(Vegas::new(seed)),
        RowKind::Vector => external(Vector::new()),
    }
}

fn external(controller: impl Controller + 'static) -> (Limiter, Hook) {
    let limiter = Limiter::new(controller.initial_limit());
    (limiter, Hook::External(Mutex::new(Box::new(controller))))
}
