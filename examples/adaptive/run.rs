//! One row's run: a fresh current-thread runtime on the paused clock, the backend, a group on
//! the row's limiter with a backlog that never empties, and the record of what happened.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use schedgroup::{Group, Limiter};
use tokio::time::{Instant, MissedTickBehavior, interval};

use crate::PHASES;
use crate::Row;
use crate::backend::Backend;
use crate::control::{Hook, Outcome, configure};

/// The feeder's period, and the step of the run's main loop.
const TICK: Duration = Duration::from_millis(1);

/// The limit is sampled every this many ticks (10 ms).
const SAMPLE_EVERY: u64 = 10;

/// What a run leaves behind.
#[derive(Debug)]
pub(crate) struct Trace {
    /// The limiter's limit every 10 ms: seconds from the start, limit.
    pub(crate) limits: Vec<(f64, usize)>,
    /// Every request that came back, in the order they did.
    pub(crate) requests: Vec<Outcome>,
}

/// What every task of the run shares.
struct Shared {
    origin: Instant,
    backend: Backend,
    limiter: Limiter,
    hook: Hook,
    requests: Mutex<Vec<Outcome>>,
}

/// Runs `row` for [`crate::RUN`] of simulated time on a runtime of its own.
pub(crate) fn run(row: &Row, seed: u64) -> Trace {
    // A fresh runtime per row: a clock of its own, and nothing left from another row.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(simulate(row, seed))
}

async fn simulate(row: &Row, seed: u64) -> Trace {
    let (limiter, hook) = configure(row, seed);
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        backend: Backend::new(PHASES[0], seed),
        limiter,
        hook,
        requests: Mutex::new(Vec::new()),
    });
    let group = Group::builder().limiter(&shared.limiter).build();
    let ticks = crate::RUN.as_millis() as u64;
    let mut limits = Vec::with_capacity((ticks / SAMPLE_EVERY) as usize);
    let mut clock = interval(TICK);
    // The paused clock never falls behind; this only says what a late tick would do.
    clock.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for tick in 0..ticks {
        clock.tick().await;
        let now = shared.origin.elapsed();
        // The backend changes phase exactly on the phase's first tick.
        if tick > 0 && tick % crate::PHASE.as_millis() as u64 == 0 {
            let phase = (tick / crate::PHASE.as_millis() as u64) as usize;
            shared.backend.set_phase(PHASES[phase]);
        }
        let limit = shared.limiter.limit();
        if tick % SAMPLE_EVERY == 0 {
            limits.push((now.as_secs_f64(), limit));
        }
        // Top the due backlog up. Every request takes at least 1 ms (a refusal too), so a slot
        // starts at most two tasks between two top-ups, and the backlog holds more than that.
        let target = 2 * limit as u64 + 100;
        let pending = group.stats().pending;
        for _ in pending..target {
            group.delay(Duration::ZERO, request(shared.clone()));
        }
    }
    group.cancel();
    let requests = std::mem::take(&mut *shared.requests.lock().expect("log lock poisoned"));
    Trace { limits, requests }
}

/// One task of the backlog: a request to the backend, recorded and reported to the hook.
async fn request(shared: Arc<Shared>) {
    let started = Instant::now();
    let in_flight = shared.limiter.running();
    shared.hook.before(in_flight);
    let result = shared.backend.call().await;
    let outcome = Outcome {
        start: started.duration_since(shared.origin).as_secs_f64(),
        latency: started.elapsed().as_secs_f64(),
        ok: result.is_ok(),
        in_flight,
    };
    // Nothing panics while holding it.
    shared
        .requests
        .lock()
        .expect("log lock poisoned")
        .push(outcome);
    shared.hook.after(&shared.limiter, &outcome);
}
