//! [`Every`]: a repeating series of runs, one ordinary task of the group at a time.
//!
//! A series is one small shared allocation ([`Series`]: the group, the period and a little
//! state behind a mutex) and, at any moment, one task in the group's queue or running: a
//! [`Run`], which owns the user's `make` closure. A run calls `make()` when it starts, drives
//! its future to the end, and then schedules the next run into the group before it returns, so
//! the series never has a tokio task or a timer of its own, and the group never looks idle
//! between two runs. Cancelling a run (by [`Every::stop`] or by the group's cancellation) drops
//! the closure with it, and with it the series.
//!
//! # Invariants
//!
//! 1. Runs are numbered 1, 2, ...; run `n + 1` is scheduled only by run `n`, after run `n`'s
//!    future has ended (or panicked), so runs of one series never overlap.
//! 2. `State::started` is the number of the latest run that began; `State::pending` names a run
//!    numbered above it, or is `None`. A run that ended records its successor only if the
//!    successor has not begun yet, so a late record never hides a later pending run.
//! 3. Once `State::stopped` is set, no run calls `make()`: a run checks the flag under the lock
//!    as it begins, and a run that ends schedules nothing (or cancels what it just scheduled).
//!
//! # Lock ordering
//!
//! The series' mutex is a leaf: nothing else is locked, scheduled, cancelled or dropped while
//! it is held (scheduling may spawn, and a cancel drops a user closure, whose `Drop` may call
//! [`Every::stop`]).

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::queue::Key;
use crate::shared::Shared;
use crate::task;

/// A handle to a repeating series of runs, returned by [`Group::every`] and
/// [`Group::every_at`].
///
/// Each run is one ordinary task of the group: it counts in [`Stats`], waits for the group's
/// cap and limiter like any other task, and is cancelled with the group. Runs of one series
/// never overlap: the next run is scheduled when the current one ends, on the series' grid of
/// ticks (`start`, `start + period`, ...). A tick that passes while the previous run has not
/// ended is *missed*; [`set_missed_tick_behavior`](Every::set_missed_tick_behavior) says what
/// happens then.
///
/// The series runs until [`stop`](Every::stop) is called on a handle or the group is
/// cancelled. **Dropping the handle detaches the series** (as dropping a tokio `JoinHandle`
/// detaches its task, and dropping a [`TaskHandle`] changes nothing): it goes on until the
/// group is cancelled. A series keeps its group busy, so [`Group::wait`] does not resolve while
/// a series is live; stop the series first (see [`Group::every`]).
///
/// Clones control the same series.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::Group;
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
///
/// let group = Group::new();
/// let runs = Arc::new(AtomicUsize::new(0));
/// let counter = runs.clone();
/// let refresh = group.every(Duration::from_secs(10), move || {
///     let counter = counter.clone();
///     async move {
///         counter.fetch_add(1, Ordering::SeqCst);
///     }
/// });
///
/// tokio::time::sleep(Duration::from_secs(35)).await; // runs at 10 s, 20 s and 30 s
/// assert!(refresh.stop());
/// group.wait().await.unwrap();
/// assert_eq!(runs.load(Ordering::SeqCst), 3);
/// # }
/// ```
///
/// [`Group::every`]: crate::Group::every
/// [`Group::every_at`]: crate::Group::every_at
/// [`Group::wait`]: crate::Group::wait
/// [`Stats`]: crate::Stats
/// [`TaskHandle`]: crate::TaskHandle
#[derive(Clone)]
#[must_use = "dropping the handle detaches the series: it runs until the group is cancelled"]
pub struct Every {
    series: Arc<Series>,
}

/// What a series' handles and its run share.
pub(crate) struct Series {
    shared: Arc<Shared>,
    /// The period in deadline-key units (nanoseconds), saturating.
    period: u64,
    /// As given, for `period()` and `Debug`.
    period_given: Duration,
    /// Guarded by its own mutex, a leaf (see the module docs).
    state: Mutex<State>,
}

struct State {
    /// Set by [`Every::stop`]; never cleared (invariant 3).
    stopped: bool,
    /// Read by a run as it ends, to place its successor.
    behavior: MissedTickBehavior,
    /// The number and key of the pending run, if it has been recorded (invariant 2).
    pending: Option<(u64, Key)>,
    /// The number of the latest run that began.
    started: u64,
}

// ===== impl Every =====

impl Every {
    /// Starts a series in `shared`: run 1 at the deadline key `first`.
    pub(crate) fn start<F, Fut>(shared: Arc<Shared>, first: u64, period: Duration, make: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
    {
        let series = Arc::new(Series {
            shared,
            period: u64::try_from(period.as_nanos()).unwrap_or(u64::MAX),
            period_given: period,
            state: Mutex::new(State {
                stopped: false,
                behavior: MissedTickBehavior::Burst,
                pending: None,
                started: 0,
            }),
        });
        series.schedule(1, first, first, make);
        Self { series }
    }

    /// Stops the series: the pending run is cancelled (its closure dropped) and no run starts
    /// after this returns. A run that has already started is not aborted: it finishes, and no
    /// run follows it. "Started" includes a run that, on another thread, began just before and
    /// is calling `make()` as this returns: at most that one call can come after `stop`
    /// returns (runs never overlap), and never another.
    ///
    /// Returns `true` if this call stopped a live series; `false` if it was already stopped,
    /// or the group was cancelled (which stops every series).
    ///
    /// The pending run is dropped before this returns, except in one race: a run that is
    /// ending at the same moment on another thread cancels its successor itself as it
    /// returns, and that successor never calls `make()`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::Group;
    /// use std::time::Duration;
    ///
    /// let group = Group::new();
    /// let tick = group.every(Duration::from_secs(1), || async {});
    /// assert_eq!(group.stats().pending, 1);
    /// assert!(tick.stop());
    /// assert!(!tick.stop(), "already stopped");
    /// assert_eq!(group.stats().pending, 0);
    /// assert_eq!(group.stats().cancelled, 1);
    /// # }
    /// ```
    pub fn stop(&self) -> bool {
        let live = !self.series.shared.catch_up_on_token();
        let (first, pending) = {
            let mut state = self.series.lock();
            let first = !state.stopped;
            state.stopped = true;
            (first, state.pending.take())
        };
        if let Some((_, key)) = pending {
            self.series.shared.cancel_task(key, false);
        }
        first && live
    }

    /// Whether the series is over: stopped by a handle, or its group cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::Group;
    /// use std::time::Duration;
    ///
    /// let group = Group::new();
    /// let tick = group.every(Duration::from_secs(1), || async {});
    /// assert!(!tick.is_stopped());
    /// group.cancel();
    /// assert!(tick.is_stopped());
    /// assert!(!tick.stop(), "the group's cancellation stopped it");
    /// # }
    /// ```
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.series.lock().stopped || self.series.shared.catch_up_on_token()
    }

    /// Says what happens when a tick is missed: when the run before it has not ended by then
    /// (it overran, or waited for a slot). The default is [`MissedTickBehavior::Burst`], as for
    /// tokio's [`interval`]. It applies from the end of the current (or next) run.
    ///
    /// A series behaves like a loop that awaits a tokio [`Interval`] and then runs `make()`'s
    /// future to its end, except that a tick counts as missed as soon as it has passed (tokio
    /// allows 5 ms). With a period of 10 s and a run at 10 s that lasts 25 s (until 35 s):
    ///
    /// - [`Burst`](MissedTickBehavior::Burst): the missed ticks run back to back, then the
    ///   grid goes on: runs at 10, 35 (tick 20), 35 (tick 30, once the run for tick 20 has
    ///   ended), 40, 50 s.
    /// - [`Delay`](MissedTickBehavior::Delay): one run at once, then a period after it: runs at
    ///   10, 35, 45, 55 s.
    /// - [`Skip`](MissedTickBehavior::Skip): one run at once, then the grid from the next tick
    ///   after it: runs at 10, 35, 40, 50 s.
    ///
    /// A run that merely starts late (the cap was full) but ends before the next tick misses
    /// nothing: the next run is on the grid. A run that could not even begin before the tick
    /// after its own (a clock jump, a stalled runtime, [`every_at`](crate::Group::every_at) a
    /// start in the past) counts those missed ticks as it begins, as tokio's `Interval` does
    /// when such a late tick fires: Delay goes on a period after it began, Skip from the next
    /// tick of the grid after that, and it does not count them again when it ends.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::Group;
    /// use std::time::Duration;
    /// use tokio::time::MissedTickBehavior;
    ///
    /// let group = Group::new();
    /// let poll = group.every(Duration::from_secs(10), || async {
    ///     tokio::time::sleep(Duration::from_secs(25)).await; // a slow upstream
    /// });
    /// poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    /// assert_eq!(poll.missed_tick_behavior(), MissedTickBehavior::Delay);
    /// poll.stop();
    /// # }
    /// ```
    ///
    /// [`interval`]: tokio::time::interval
    /// [`Interval`]: tokio::time::Interval
    pub fn set_missed_tick_behavior(&self, behavior: MissedTickBehavior) {
        self.series.lock().behavior = behavior;
    }

    /// What the series does when a tick is missed; see
    /// [`set_missed_tick_behavior`](Every::set_missed_tick_behavior).
    #[must_use]
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.series.lock().behavior
    }

    /// The period between ticks.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    ///
    /// let group = schedgroup::Group::new();
    /// let tick = group.every(Duration::from_secs(4), || async {});
    /// assert_eq!(tick.period(), Duration::from_secs(4));
    /// tick.stop();
    /// # }
    /// ```
    #[must_use]
    pub fn period(&self) -> Duration {
        self.series.period_given
    }
}

impl fmt::Debug for Every {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (stopped, behavior) = {
            let state = self.series.lock();
            (state.stopped, state.behavior)
        };
        f.debug_struct("Every")
            .field("group", &self.series.shared.name)
            .field("period", &self.series.period_given)
            .field("missed_tick_behavior", &behavior)
            .field("stopped", &stopped)
            .finish()
    }
}

// ===== impl Series =====

impl Series {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics under this lock; poisoning would be a bug of ours, the state is sound.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Schedules run `number` for the tick `tick` at `deadline` (both keys), unless the series
    /// is stopped or the group cancelled. Called outside every lock.
    fn schedule<F, Fut>(self: &Arc<Self>, number: u64, tick: u64, deadline: u64, make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
    {
        if self.lock().stopped || self.shared.cancel.is_cancelled() {
            return; // `make` is dropped here, outside the lock.
        }
        let run = Run {
            series: self.clone(),
            number,
            tick,
            make: Some(make),
            begun: false,
            future: None,
        };
        let key = self.shared.schedule(deadline, run);
        let cancel = {
            let mut state = self.lock();
            if state.stopped {
                true
            } else {
                // Invariant 2: a successor that already began is not pending any more.
                if state.started < number {
                    state.pending = Some((number, key));
                }
                false
            }
        };
        if cancel {
            // `stop` ran meanwhile and could not see this run: cancel it here. If it already
            // began, it saw `stopped` and calls no `make()`; it is left to end so.
            self.shared.cancel_task(key, false);
        }
    }

    /// Run `number`, for `tick`, begins at `now` (keys): `None` if the series was stopped
    /// (invariant 3), else the tick it runs for. That is `tick`, unless the tick after it had
    /// passed too before this run could begin (a clock jump, a stalled runtime, a start in the
    /// past): then Delay and Skip rebase the grid here, as tokio's `Interval` does when such a
    /// late tick fires, so that the run's end does not count the same missed ticks again.
    fn begin(&self, number: u64, tick: u64, now: u64) -> Option<u64> {
        let mut state = self.lock();
        if state.stopped {
            return None;
        }
        state.started = number;
        if state.pending.is_some_and(|(pending, _)| pending <= number) {
            state.pending = None;
        }
        if now <= tick.saturating_add(self.period) {
            return Some(tick);
        }
        Some(match state.behavior {
            MissedTickBehavior::Delay => now,
            // The latest tick of the grid at or before now.
            MissedTickBehavior::Skip => now - (now - tick) % self.period.max(1),
            _ => tick,
        })
    }

    /// The tick and deadline of the run after one for `tick` that ended at `now` (keys).
    fn next(&self, tick: u64, now: u64) -> (u64, u64) {
        let next = tick.saturating_add(self.period);
        if now <= next {
            return (next, next);
        }
        // Missed: the previous run had not ended by `next`.
        match self.lock().behavior {
            MissedTickBehavior::Delay => (now, now),
            MissedTickBehavior::Skip => {
                // The latest tick of the grid at or before now; the one after is the next
                // tick that has not passed. `period` is not 0 here: `now > tick + period`.
                let behind = (now - tick) % self.period.max(1);
                (now - behind, now)
            }
            // Burst, and any behaviour tokio adds later: keep the grid.
            _ => (next, next),
        }
    }
}

// ===== impl Run =====

pin_project_lite::pin_project! {
    /// One run of a series, as a task of the group. `make` is called when the run begins; the
    /// run then drives its future and, when it ends (or panics), schedules the next run.
    struct Run<F, Fut> {
        series: Arc<Series>,
        number: u64,
        // The run's tick on the series' grid (a deadline key).
        tick: u64,
        make: Option<F>,
        begun: bool,
        #[pin]
        future: Option<Fut>,
    }
}

impl<F, Fut> Future for Run<F, Fut>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if !*this.begun {
            *this.begun = true;
            let now = this.series.shared.clock.now();
            let Some(tick) = this.series.begin(*this.number, *this.tick, now) else {
                return Poll::Ready(()); // stopped: `make` is dropped with the task.
            };
            *this.tick = tick;
            let Some(make) = this.make.as_mut() else {
                return Poll::Ready(());
            };
            match catch_unwind(AssertUnwindSafe(make)) {
                Ok(future) => this.future.set(Some(future)),
                Err(payload) => {
                    end(this.series, this.make, *this.number, *this.tick);
                    resume_unwind(payload);
                }
            }
        }
        let mut future = this.future;
        // Set just before the future is dropped: a panic after it came from that drop.
        let mut dropping = false;
        let polled = catch_unwind(AssertUnwindSafe(|| {
            let Some(running) = future.as_mut().as_pin_mut() else {
                return Poll::Ready(());
            };
            let Poll::Ready(output) = running.poll(cx) else {
                return Poll::Pending;
            };
            // The output and the future are dropped here, caught: a panic in their `Drop`
            // makes this run a panicked one, and the series goes on.
            drop(output);
            dropping = true;
            future.set(None);
            Poll::Ready(())
        }));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                end(this.series, this.make, *this.number, *this.tick);
                Poll::Ready(())
            }
            Err(payload) => {
                // What is left of a future that panicked goes before its successor can start
                // (invariant 1): a hand-written future keeps its fields through the unwind.
                if !dropping {
                    if let Err(more) = catch_unwind(AssertUnwindSafe(|| future.set(None))) {
                        task::drop_payload(more);
                    }
                }
                end(this.series, this.make, *this.number, *this.tick);
                // The group's runner catches this and counts the run as panicked.
                resume_unwind(payload);
            }
        }
    }
}

/// Run `number`, for `tick`, ended: schedules its successor with `make`.
fn end<F, Fut>(series: &Arc<Series>, make: &mut Option<F>, number: u64, tick: u64)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
{
    let Some(make) = make.take() else {
        return;
    };
    let now = series.shared.clock.now();
    let (tick, deadline) = series.next(tick, now);
    series.schedule(number + 1, tick, deadline, make);
}
