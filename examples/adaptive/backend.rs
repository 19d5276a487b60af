//! The synthetic backend: `C` servers behind one first-come-first-served line, whose capacity
//! and service time change while it runs.
//!
//! Not tokio's `Semaphore`: the capacity also drops while servers are busy, and then a busy
//! server finishes its request and is not reused while more than `C` are busy.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;
use tokio::time::sleep;

/// How long a refused request takes to come back. Not zero, so that a fixed limit far above
/// the capacity cannot refuse requests forever at one instant of the paused clock.
const REFUSAL: Duration = Duration::from_millis(1);

/// The spread of service times: `base * exp(SIGMA * N(0, 1))`.
const SIGMA: f64 = 0.1;

/// The backend refused a request: `2C` were already in flight there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overloaded;

/// What the backend is during one phase of the run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phase {
    /// Servers, `C`.
    pub(crate) capacity: usize,
    /// The median service time.
    pub(crate) base: Duration,
}

/// The backend. It lives on one runtime: requests only await a sleep and a channel.
#[derive(Debug)]
pub(crate) struct Backend {
    state: Mutex<State>,
}

/// Everything under the backend's one lock.
#[derive(Debug)]
struct State {
    phase: Phase,
    /// Requests being served. Above `phase.capacity` only after the capacity dropped, until
    /// enough of them finish.
    busy: usize,
    /// Requests waiting for a server, oldest first. Sending on a request's channel hands it a
    /// server (counted in `busy` already).
    line: VecDeque<oneshot::Sender<()>>,
    /// Service times come from here, so a run with the same seed is the same run.
    rng: StdRng,
}

/// What a request finds when it arrives.
enum Arrival {
    /// A free server: it is served at once.
    Served,
    /// Every server is busy: it waits for the channel.
    Queued(oneshot::Receiver<()>),
    /// `2C` in flight: refused.
    Refused,
}

impl Backend {
    pub(crate) fn new(phase: Phase, seed: u64) -> Self {
        Self {
            state: Mutex::new(State {
                phase,
                busy: 0,
                line: VecDeque::new(),
                rng: StdRng::seed_from_u64(seed),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it.
        self.state.lock().expect("backend lock poisoned")
    }

    /// Changes the capacity and the base service time. More servers take from the line at
    /// once; fewer stop taking from it until fewer than the new capacity are busy. Requests
    /// in service keep the service time they drew.
    pub(crate) fn set_phase(&self, phase: Phase) {
        let mut state = self.lock();
        state.phase = phase;
        while state.busy < state.phase.capacity && state.hand_over() {
            state.busy += 1;
        }
    }

    /// Sends one request and waits for its answer: a wait in line if every server is busy,
    /// then the service time, drawn when a server takes it.
    ///
    /// # Errors
    ///
    /// [`Overloaded`] after 1 ms when `2C` requests were in flight (waiting or served) as it
    /// arrived.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a request dropped while it is served keeps its server busy for good.
    /// The simulation drops requests only with the runtime, at the end of a run.
    pub(crate) async fn call(&self) -> Result<(), Overloaded> {
        let arrival = {
            let mut state = self.lock();
            if state.busy + state.line.len() >= 2 * state.phase.capacity {
                Arrival::Refused
            } else if state.busy < state.phase.capacity {
                state.busy += 1;
                Arrival::Served
            } else {
                let (turn, wait) = oneshot::channel();
                state.line.push_back(turn);
                Arrival::Queued(wait)
            }
        };
        match arrival {
            Arrival::Refused => {
                sleep(REFUSAL).await;
                return Err(Overloaded);
            }
            Arrival::Queued(wait) => {
                // The sender is dropped unsent only with the backend.
                wait.await.expect("the backend outlives its requests");
            }
            Arrival::Served => {}
        }
        let service = self.lock().service_time();
        sleep(service).await;
        let mut state = self.lock();
        // This server takes the next request only if it is one of the first `C`.
        if state.busy > state.phase.capacity || !state.hand_over() {
            state.busy -= 1;
        }
        Ok(())
    }
}

impl State {
    /// Wakes the oldest waiting request that is still there; `false` if none is.
    fn hand_over(&mut self) -> bool {
        while let Some(turn) = self.line.pop_front() {
            if turn.send(()).is_ok() {
                return true;
            }
        }
        false
    }

    /// `base * exp(SIGMA * z)` for a standard normal `z`, rounded to whole milliseconds.
    ///
    /// Tokio's timer counts whole milliseconds and rounds a sleep's deadline up, which would
    /// add half a millisecond to every request on average (2.5% of a 20 ms base). Every
    /// request starts on a millisecond (every timer of the run fires on one), so a sleep of
    /// whole milliseconds ends exactly when drawn, and rounding to the nearest keeps the mean.
    fn service_time(&mut self) -> Duration {
        let millis = self.phase.base.as_secs_f64() * 1e3 * (SIGMA * self.standard_normal()).exp();
        Duration::from_millis(millis.round().max(1.0) as u64)
    }

    /// A standard normal draw (Box-Muller).
    fn standard_normal(&mut self) -> f64 {
        // In (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.rng.random::<f64>();
        let u2 = self.rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::time::Instant;

    use super::*;

    fn phase(capacity: usize) -> Phase {
        Phase {
            capacity,
            base: Duration::from_millis(10),
        }
    }

    /// Sends `count` requests at once; returns each one's outcome and latency in ms, sorted by
    /// latency. `change`, if any, is applied right after they are sent.
    async fn burst(start: Phase, count: usize, change: Option<Phase>) -> Vec<(bool, u128)> {
        let backend = Arc::new(Backend::new(start, 7));
        let calls: Vec<_> = (0..count)
            .map(|_| {
                let backend = backend.clone();
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let result = backend.call().await;
                    (result.is_ok(), sent.elapsed().as_millis())
                })
            })
            .collect();
        tokio::task::yield_now().await;
        if let Some(phase) = change {
            backend.set_phase(phase);
        }
        let mut outcomes = Vec::new();
        for call in calls {
            outcomes.push(call.await.unwrap());
        }
        outcomes.sort_by_key(|&(_, latency)| latency);
        outcomes
    }

    #[tokio::test(start_paused = true)]
    async fn serves_c_queues_up_to_2c_and_refuses_the_rest_after_1_ms() {
        let outcomes = burst(phase(2), 5, None).await;
        assert_eq!(outcomes[0], (false, 1), "{outcomes:?}");
        assert!(outcomes[1..].iter().all(|&(ok, _)| ok), "{outcomes:?}");
        let served = [outcomes[1].1, outcomes[2].1];
        let queued = [outcomes[3].1, outcomes[4].1];
        assert!(
            served.iter().all(|ms| (7..=13).contains(ms)),
            "{outcomes:?}"
        );
        assert!(
            queued.iter().all(|ms| (15..=26).contains(ms)),
            "{outcomes:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lower_capacity_is_not_exceeded_by_the_busy_servers_that_remain() {
        // Two served, two waiting; then one server. The waiting ones go one after the other.
        let outcomes = burst(phase(2), 4, Some(phase(1))).await;
        assert!(outcomes.iter().all(|&(ok, _)| ok), "{outcomes:?}");
        assert!(outcomes[3].1 >= 24, "served two at a time: {outcomes:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_higher_capacity_takes_from_the_line_at_once() {
        let outcomes = burst(phase(1), 2, Some(phase(2))).await;
        assert!(
            outcomes.iter().all(|&(ok, ms)| ok && ms <= 13),
            "{outcomes:?}"
        );
    }
}
