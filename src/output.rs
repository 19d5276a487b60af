//! Outputs back to the requester: a [`JoinHandle`] awaits one task's, [`Results`] collects
//! many in the order they end, each with its task's id.
//!
//! Why these shapes, and what they cost, is in the crate docs (`# Outputs`).
//!

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::{CancelledBy, JoinError};
use crate::handle::TaskHandle;
use crate::id::TaskId;
use crate::queue::Pending;
use crate::shared::Shared;
use crate::task::{
    BoxTask, End, Handed, Outcome, Payload, Stage, Stored, Task, counted, drop_catching,
    drop_caught, drop_payload, wake_catching,
};

/// Where an awaited task's result goes.
pub(crate) trait Sink<T>: Send + 'static {
    /// Hands over the result of task `id`. Runs no user code of the requester's but its waker,
    /// whose panic is caught; an output nobody will receive is dropped here, catching a panic
    /// from its `Drop`.
    fn send(self, id: u64, result: Result<T, JoinError>) -> Sent;

    /// Whether the requester is still there to receive what is sent.
    fn receiving(&self) -> bool;

    /// Whether `output` signals overload to an adaptive limit (a requester's classifier;
    /// none by default). A panicking classifier says no.
    fn overload(&self, output: &T) -> bool {
        let _ = output;
        false
    }
}

/// What became of a result a [`Sink`] was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The requester has it.
    Taken,
    /// The requester was gone: the result was dropped.
    Refused,
}

/// Drops a result nobody took, catching a panic from its `Drop`. The task was counted already
/// (an output whose requester went away between the count and the delivery), so such a panic
/// changes no count: the panic hook has reported it.
fn refuse<T>(result: Result<T, JoinError>) -> Sent {
    drop_catching(result);
    Sent::Refused
}

/// A pending task whose output is awaited: its future and where its result goes, stored
/// inline like any other pending future.
pub(crate) struct Awaited<F, S> {
    pub(crate) future: F,
    pub(crate) sink: S,
}

impl<F, S> Awaited<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Sink<F::Output>,
{
    /// The task boxed, for a runner.
    pub(crate) fn boxed(self) -> BoxTask {
        Box::pin(Joined {
            stage: Stage::Running {
                future: self.future,
            },
            sink: Some(self.sink),
            result: None,
            overload: false,
        })
    }
}

impl<F, S> Pending<BoxTask> for Awaited<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Sink<F::Output>,
{
    fn start(self) -> BoxTask {
        self.boxed()
    }
}

impl<F, S> Stored for Awaited<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Sink<F::Output>,
{
}

pin_project_lite::pin_project! {
    /// A started task whose output is awaited: the output waits here from the poll that
    /// returned it (which dropped the future) until the task is delivered.
    struct Joined<F: Future, S> {
        #[pin]
        stage: Stage<F>,
        sink: Option<S>,
        // Settled by `end`, sent by `deliver`.
        result: Option<Result<F::Output, JoinError>>,
        // The output was classified as overload (`Sink::overload`), by `end`.
        overload: bool,
    }
}

impl<F, S> Task for Joined<F, S>
where
    F: Future + Send,
    F::Output: Send,
    S: Sink<F::Output>,
{
    fn poll_task(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().stage.poll_stage(cx, true)
    }

    fn end(self: Pin<&mut Self>, id: u64, end: End) -> Outcome {
        let this = self.project();
        let (dropped, output) = this.stage.finish();
        let outcome = counted(&end, dropped.is_ok());
        // Classified before anything else can drop it, and only if the task completed.
        *this.overload = outcome == Outcome::Completed
            && matches!((&output, this.sink.as_ref()), (Some(output), Some(sink)) if sink.overload(output));
        let task = TaskId::new(id);
        // An output nobody will receive (the handle or the `Results` is gone) is dropped now,
        // so that a panic in its `Drop` counts as it would for a task whose output nobody asked
        // for: dropping the handle changes nothing for the task.
        let receiving = this.sink.as_ref().is_some_and(Sink::receiving);
        let (outcome, output) = match output {
            Some(output) if !receiving => match drop_caught(output) {
                Ok(()) => (outcome, None),
                Err(payload) => {
                    drop_payload(payload);
                    (Outcome::Panicked, None)
                }
            },
            output => (outcome, output),
        };
        // What the task ends with, for its requester; `None`: nobody to tell (the output was
        // dropped above). A second panic's payload, and an output nobody gets, go here.
        let result = match end {
            End::Completed => match dropped {
                Ok(()) => output.map(Ok),
                // The future returned, then its `Drop` panicked: a panicked task.
                Err(payload) => {
                    drop_catching(output);
                    Some(Err(JoinError::panic(task, payload)))
                }
            },
            End::Panicked(payload) => {
                discard(dropped, output);
                Some(Err(JoinError::panic(task, payload)))
            }
            End::Cancelled(by) => {
                discard(dropped, output);
                Some(Err(JoinError::cancelled(task, by)))
            }
        };
        *this.result = result;
        outcome
    }

    fn awaited(&self) -> bool {
        true
    }

    fn hands_panic(&self) -> bool {
        matches!(&self.result, Some(Err(err)) if err.is_panic())
    }

    fn overloaded(&self) -> bool {
        self.overload
    }

    fn deliver(mut self: Pin<Box<Self>>, id: u64) -> Handed {
        let this = self.as_mut().project();
        let (Some(sink), Some(result)) = (this.sink.take(), this.result.take()) else {
            return Handed::Nothing;
        };
        let panic = matches!(&result, Err(err) if err.is_panic());
        match sink.send(id, result) {
            Sent::Taken if panic => Handed::PanicTaken,
            Sent::Refused if panic => Handed::PanicUntaken,
            Sent::Taken | Sent::Refused => Handed::Nothing,
        }
    }
}

/// Drops what a task that gave no output left: the payload of a panic in its future's `Drop`
/// (the first panic is the one reported) and an output, each catching a panic of its own.
fn discard<O>(dropped: Result<(), Payload>, output: Option<O>) {
    if let Err(payload) = dropped {
        drop_payload(payload);
    }
    drop_catching(output);
}

// ===== one task: JoinHandle =====

/// The channel of one awaited task.
type Channel<T> = oneshot::Sender<Result<T, JoinError>>;

impl<T: Send + 'static> Sink<T> for Channel<T> {
    fn send(self, _id: u64, result: Result<T, JoinError>) -> Sent {
        // `send` wakes the receiving task, whose waker may panic (caught: the result is in).
        match catch_unwind(AssertUnwindSafe(|| oneshot::Sender::send(self, result))) {
            Ok(Ok(())) => Sent::Taken,
            // The `JoinHandle` is gone.
            Ok(Err(unsent)) => refuse(unsent),
            Err(payload) => {
                drop_payload(payload);
                Sent::Taken
            }
        }
    }

    fn receiving(&self) -> bool {
        !self.is_closed()
    }
}

/// Awaits one task's output: returned by [`Group::delay_join`](crate::Group::delay_join) and
/// [`Group::schedule_join`](crate::Group::schedule_join).
///
/// It is a future of `Result<T, JoinError>`, like tokio's `JoinHandle`: `Ok(output)` once the
/// task returned and its future was dropped, or a [`JoinError`] if it was cancelled (by its
/// handle or with its group) or panicked (with the payload). It also does what a
/// [`TaskHandle`] does ([`handle`](JoinHandle::handle)): cancel the task whatever its state,
/// move it while it is pending, tell its id and deadline. Dropping it changes nothing for the
/// task, whose output is then dropped when it ends: a panic in that output's `Drop` makes the
/// task a panicked one, as for [`Group::delay`](crate::Group::delay), unless the handle went
/// while the task was being counted (then the count stands, completed, and the panic hook
/// reports the panic: the group's counts never go back).
///
/// By the time it returns, the group has counted the task: [`is_finished`](JoinHandle::is_finished)
/// is `true`, [`cancel`](JoinHandle::cancel) returns `false`, and [`Group::stats`](crate::Group::stats)
/// has moved it out of `running`. A panic it returns is not reported again by
/// [`Group::wait`](crate::Group::wait) (see [`WaitError`](crate::WaitError)).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::Group;
/// use std::time::Duration;
///
/// let group = Group::builder().max_concurrent(4).build();
/// let answer = group.delay_join(Duration::from_millis(300), async { 6 * 7 });
/// assert!(answer.deadline().is_some(), "pending");
/// assert_eq!(answer.await.unwrap(), 42);
/// # }
/// ```
#[must_use = "a JoinHandle does nothing unless awaited; drop it to detach the task"]
pub struct JoinHandle<T> {
    handle: TaskHandle,
    output: oneshot::Receiver<Result<T, JoinError>>,
    /// It returned its result: polling again is a bug of the caller's.
    done: bool,
}

impl<T: Send + 'static> JoinHandle<T> {
    /// A handle whose task will send on the returned channel.
    pub(crate) fn channel() -> (Channel<T>, impl FnOnce(TaskHandle) -> Self) {
        let (tx, output) = oneshot::channel();
        (tx, move |handle| Self {
            handle,
            output,
            done: false,
        })
    }
}

impl<T> JoinHandle<T> {
    /// The task's [`TaskHandle`], for what it does beyond awaiting (a clone outlives this
    /// handle).
    #[must_use]
    pub fn handle(&self) -> &TaskHandle {
        &self.handle
    }

    /// The task's id: see [`TaskHandle::id`].
    #[must_use]
    pub fn id(&self) -> TaskId {
        self.handle.id()
    }

    /// Cancels the task, pending or running: see [`TaskHandle::cancel`]. Awaiting this handle
    /// then returns a [`JoinError`] cancelled by [`CancelledBy::Handle`], unless the task
    /// returned first.
    pub fn cancel(&self) -> bool {
        self.handle.cancel()
    }

    /// Moves the pending task: see [`TaskHandle::reschedule`].
    pub fn reschedule(&self, deadline: impl Into<Instant>) -> bool {
        self.handle.reschedule(deadline)
    }

    /// The pending task's deadline: see [`TaskHandle::deadline`].
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.handle.deadline()
    }

    /// Whether the task has ended: see [`TaskHandle::is_finished`]. Its result may still be
    /// on its way (a cancel on another thread may be dropping the future): awaiting returns
    /// once it has arrived.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    /// # Panics
    ///
    /// If polled again after it returned.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "JoinHandle polled after it returned its result");
        let result = ready!(Pin::new(&mut self.output).poll(cx));
        self.done = true;
        Poll::Ready(result.unwrap_or_else(|_| {
            // Every way a task ends sends its result; a task dropped without ending can only
            // have gone with its group.
            Err(JoinError::cancelled(self.handle.id(), CancelledBy::Group))
        }))
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("task", &self.handle)
            .finish_non_exhaustive()
    }
}

// ===== many tasks: Results =====

/// What a [`Results`] and its tasks' deliveries share.
struct Collector<T> {
    state: Mutex<Collected<T>>,
    /// Picks outputs that signal overload ([`Results::overload_when`]); cloned out of the
    /// lock before it is called.
    classify: Mutex<Option<Classifier<T>>>,
    /// Whether the `Results` is still there to take results: written under `state`'s lock,
    /// read without it by `receiving`.
    open: AtomicBool,
}

/// A [`Results::overload_when`] classifier.
type Classifier<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

struct Collected<T> {
    /// Results not taken yet, in the order the tasks ended.
    done: VecDeque<(TaskId, Result<T, JoinError>)>,
    /// Tasks scheduled through the `Results` that have not delivered yet.
    outstanding: usize,
    /// The `join_next` waiting, if any.
    waker: Option<Waker>,
}

impl<T> Collector<T> {
    fn lock(&self) -> MutexGuard<'_, Collected<T>> {
        // Nothing of the user's runs under this lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A task's way to its [`Results`]: counts as outstanding until it delivers or is dropped, so
/// `join_next` never waits for a task that can no longer deliver.
pub(crate) struct Delivery<T>(Option<Arc<Collector<T>>>);

impl<T> Delivery<T> {
    /// Counts one task out, queueing `result` if given and the `Results` is still there, and
    /// wakes its `join_next`. A result nobody will take is dropped, after unlocking.
    fn deliver(&mut self, result: Option<(TaskId, Result<T, JoinError>)>) -> Sent {
        let Some(collector) = self.0.take() else {
            return Sent::Refused;
        };
        let (waker, unsent) = {
            let mut state = collector.lock();
            state.outstanding -= 1;
            let unsent = match result {
                Some(result) if collector.open.load(Ordering::Acquire) => {
                    state.done.push_back(result);
                    None
                }
                other => other,
            };
            (state.waker.take(), unsent)
        };
        let sent = match unsent {
            Some((_, result)) => refuse(result),
            None => Sent::Taken,
        };
        if let Some(waker) = waker {
            wake_catching(|| waker.wake());
        }
        sent
    }
}

impl<T: Send + 'static> Sink<T> for Delivery<T> {
    fn send(mut self, id: u64, result: Result<T, JoinError>) -> Sent {
        self.deliver(Some((TaskId::new(id), result)))
    }

    fn receiving(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|collector| collector.open.load(Ordering::Acquire))
    }

    fn overload(&self, output: &T) -> bool {
        let Some(collector) = &self.0 else {
            return false;
        };
        let classify = collector
            .classify
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        classify.is_some_and(|classify| {
            catch_unwind(AssertUnwindSafe(|| classify(output))).unwrap_or(false)
        })
    }
}

impl<T> Drop for Delivery<T> {
    fn drop(&mut self) {
        self.deliver(None);
    }
}

/// Collects the outputs of tasks scheduled through it, in the order they end, each with its
/// task's id: a group's counterpart of tokio's `JoinSet::join_next_with_id`. Made by
/// [`Group::results`](crate::Group::results).
///
/// Tasks scheduled through it are tasks of its group like any other: they count in the
/// group's stats, run under its cap and limiter, are cancelled with it, and keep `wait()`
/// waiting. Each ends in exactly one result here: `Ok(output)`, or a [`JoinError`] if it was
/// cancelled or panicked, so that `received == scheduled` once every task has ended (the
/// audit `examples/results.rs` prints).
///
/// Dropping the `Results` drops the results it holds and detaches its tasks (they still run,
/// unlike a `JoinSet`'s, since they belong to the group; cancel the group or the tasks'
/// handles to stop them); their outputs are dropped as they end.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::Group;
/// use std::time::Duration;
///
/// let group = Group::builder().max_concurrent(2).build();
/// let mut results = group.results::<u64>();
/// for n in [3u64, 1, 2] {
///     results.delay(Duration::from_secs(n), async move { n * 10 });
/// }
/// let mut order = Vec::new();
/// while let Some((_id, result)) = results.join_next().await {
///     order.push(result.unwrap());
/// }
/// assert_eq!(order, [10, 20, 30]);
/// # }
/// ```
pub struct Results<T> {
    shared: Arc<Shared>,
    collector: Arc<Collector<T>>,
}

impl<T: Send + 'static> Results<T> {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            collector: Arc::new(Collector {
                state: Mutex::new(Collected {
                    done: VecDeque::new(),
                    outstanding: 0,
                    waker: None,
                }),
                open: AtomicBool::new(true),
                classify: Mutex::new(None),
            }),
        }
    }

    /// Makes outputs that `classify` picks count as overload for an adaptive limit on the
    /// group or its limiter (see [`Adaptive`](crate::Adaptive)): say `Err` of an HTTP 429 or
    /// 503. It runs on the task's runner as the task ends, for each task of this `Results`
    /// that completes, whether or not the `Results` is still there to take the output; it
    /// replaces the classifier set before, if any. A classifier that panics says no.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use schedgroup::{Adaptive, Group, Reason};
    /// use std::time::Duration;
    ///
    /// let group = Group::builder().max_concurrent(10).adaptive(Adaptive::aimd()).build();
    /// let mut results = group.results::<Result<(), u16>>();
    /// results.overload_when(|r| matches!(r, Err(429 | 503)));
    /// results.delay(Duration::ZERO, async { Err(503) });
    /// results.join_next().await;
    /// assert_eq!(group.max_concurrent(), 8, "cut by the default backoff, 0.8");
    /// let last = group.history().adaptive.unwrap().last.unwrap();
    /// assert_eq!(last.reason, Reason::Overload);
    /// # }
    /// ```
    pub fn overload_when<F>(&self, classify: F)
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        let old = self
            .collector
            .classify
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(Arc::new(classify));
        // The old one's `Drop` is the user's: after unlocking.
        drop(old);
    }

    /// Runs `future` after `delay`, as [`Group::delay`](crate::Group::delay) does, and collects its output here.
    pub fn delay<F>(&self, delay: Duration, future: F) -> TaskHandle
    where
        F: Future<Output = T> + Send + 'static,
    {
        let deadline = self.shared.clock.after(delay);
        self.schedule_key(deadline, future)
    }

    /// Runs `future` at or after `deadline`, as [`Group::schedule`](crate::Group::schedule) does, and collects its
    /// output here.
    pub fn schedule<F>(&self, deadline: impl Into<Instant>, future: F) -> TaskHandle
    where
        F: Future<Output = T> + Send + 'static,
    {
        let deadline = self.shared.clock.key(deadline.into());
        self.schedule_key(deadline, future)
    }

    fn schedule_key<F>(&self, deadline: u64, future: F) -> TaskHandle
    where
        F: Future<Output = T> + Send + 'static,
    {
        self.collector.lock().outstanding += 1;
        let delivery = Delivery(Some(self.collector.clone()));
        let key = self.shared.schedule_awaited(deadline, future, delivery);
        TaskHandle::new(self.shared.seat, key)
    }

    /// The next task to end, with its id and how it ended, waiting for one if none has;
    /// `None` once every task scheduled through this `Results` has ended and been taken.
    ///
    /// Cancel safe: a result is taken only when this returns it.
    pub async fn join_next(&mut self) -> Option<(TaskId, Result<T, JoinError>)> {
        poll_fn(|cx| self.poll_join_next(cx)).await
    }

    /// [`join_next`](Results::join_next) as a poll, for hand-written futures.
    pub fn poll_join_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(TaskId, Result<T, JoinError>)>> {
        {
            let mut state = self.collector.lock();
            if let Some(result) = state.done.pop_front() {
                return Poll::Ready(Some(result));
            }
            if state.outstanding == 0 {
                return Poll::Ready(None);
            }
            // `will_wake` compares pointers: none of the caller's code.
            if state
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                return Poll::Pending;
            }
        }
        // Cloning a waker, and dropping one, is the caller's code: done unlocked, and the
        // state looked at again.
        let waker = cx.waker().clone();
        let (ready, unused) = {
            let mut state = self.collector.lock();
            match state.done.pop_front() {
                Some(result) => (Poll::Ready(Some(result)), Some(waker)),
                None if state.outstanding == 0 => (Poll::Ready(None), Some(waker)),
                None => (Poll::Pending, state.waker.replace(waker)),
            }
        };
        // The caller's waker: a panic in its `Drop` must not lose the result popped above.
        drop_catching(unused);
        ready
    }

    /// The next result if a task has ended, without waiting.
    pub fn try_join_next(&mut self) -> Option<(TaskId, Result<T, JoinError>)> {
        self.collector.lock().done.pop_front()
    }

    /// Tasks scheduled through this `Results` whose result has not been taken yet: pending,
    /// running, or ended and waiting in the queue.
    #[must_use]
    pub fn len(&self) -> usize {
        let state = self.collector.lock();
        state.outstanding + state.done.len()
    }

    /// Whether [`len`](Results::len) is zero: `join_next` would return `None`.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Results<T> {
    /// Drops the results it holds one by one, each under `catch_unwind`, as the group drops
    /// anything of the user's it owns: a panicking `Drop` (an output's, a panic payload's, the
    /// waker's) is caught and reported by the panic hook, never passed on, and never a second
    /// panic during unwinding, which would abort.
    fn drop(&mut self) {
        let (done, waker) = {
            let mut state = self.collector.lock();
            self.collector.open.store(false, Ordering::Release);
            (std::mem::take(&mut state.done), state.waker.take())
        };
        drop_catching(waker);
        for result in done {
            drop_catching(result);
        }
    }
}

impl<T> fmt::Debug for Results<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (outstanding, ready) = {
            let state = self.collector.lock();
            (state.outstanding, state.done.len())
        };
        f.debug_struct("Results")
            .field("group", &self.shared.name)
            .field("outstanding", &outstanding)
            .field("ready", &ready)
            .finish()
    }
}
