//! Random operation sequences against a reference model, on tokio's paused clock.
//!
//! Each case builds a group on a fresh paused runtime and applies up to 60 random operations:
//! schedule (past, near or far deadlines), delay, each with its output dropped, awaited through
//! a `JoinHandle` or collected by a `Results`; cancel (a pending task, or a running one: an
//! abort) or reschedule a handle; start a repeating series or stop one; change the cap, cancel
//! the group, advance time, `wait()` under a timeout, clone or drop a clone. After every
//! operation the runtime is allowed to settle (without moving the clock), and then:
//!
//! - handle results match the model: `reschedule` succeeds exactly on pending tasks, `cancel`
//!   on pending and running ones (once), `Every::stop` on live series;
//! - every counter equals the model's count (pending, running, completed, cancelled), series'
//!   runs included;
//! - each handle's `is_pending`, `is_finished` and `deadline` agree with the model;
//! - liveness: if fewer tasks run than the cap allows, no due task is still pending; an
//!   aborted task has stopped; `wait()` returns once nothing is pending, running or repeating;
//! - cancelled and aborted futures have been dropped.
//!
//! And every task checks, as it starts: it has not started before, it was not cancelled, it is
//! not early, the group is not cancelled, running tasks do not exceed the cap, and (when it is
//! the only running task, so no other task can be between its pop and its first poll) no
//! pending task that was due had an earlier (deadline, schedule order). Every run of a series
//! checks that its series is live and has no other run going.
//!
//! At the end every awaited task's `JoinHandle`, and the `Results`, must say exactly how the
//! model says the task ended (its output, or cancelled by its handle or with the group), once
//! each.
//!
//! On failure proptest shrinks to a short, readable list of `Op`s.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::DropFlag;
use proptest::prelude::*;
use schedgroup::{CancelledBy, Every, Group, JoinHandle, Results, TaskHandle};
use tokio::time::{Instant, timeout};

/// Where a task's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Dropped,
    Joined,
    Collected,
}

#[derive(Debug, Clone)]
enum Op {
    /// A task due `offset_ms` from now (negative: already past) that runs for `run_ms`.
    Schedule {
        offset_ms: i64,
        run_ms: u64,
        output: Output,
    },
    /// The same through `delay`.
    Delay {
        delay_ms: u64,
        run_ms: u64,
        output: Output,
    },
    /// Cancel the handle of task `index % tasks`.
    Cancel(usize),
    /// Reschedule task `index % tasks` to `offset_ms` from now.
    Reschedule(usize, i64),
    /// A series every `period_ms` whose runs last `run_ms`.
    Every {
        period_ms: u64,
        run_ms: u64,
    },
    /// Stop series `index % series`.
    Stop(usize),
    SetCap(usize),
    CancelGroup,
    Advance(u64),
    /// `timeout(ms, group.wait())`.
    Wait(u64),
    CloneGroup,
    DropClone,
}

fn output() -> impl Strategy<Value = Output> {
    prop_oneof![2 => Just(Output::Dropped), 1 => Just(Output::Joined), 1 => Just(Output::Collected)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (common::offset_ms(), 0u64..30, output()).prop_map(|(offset_ms, run_ms, output)| Op::Schedule { offset_ms, run_ms, output }),
        2 => (0u64..80, 0u64..30, output()).prop_map(|(delay_ms, run_ms, output)| Op::Delay { delay_ms, run_ms, output }),
        4 => any::<usize>().prop_map(Op::Cancel),
        3 => (any::<usize>(), common::offset_ms()).prop_map(|(i, o)| Op::Reschedule(i, o)),
        1 => (1u64..40, 0u64..50).prop_map(|(period_ms, run_ms)| Op::Every { period_ms, run_ms }),
        1 => any::<usize>().prop_map(Op::Stop),
        2 => (0usize..4).prop_map(Op::SetCap),
        1 => Just(Op::CancelGroup),
        4 => (0u64..60).prop_map(Op::Advance),
        2 => (0u64..200).prop_map(Op::Wait),
        1 => Just(Op::CloneGroup),
        1 => Just(Op::DropClone),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Started,
    Finished,
    /// Cancelled before it started.
    Cancelled(CancelledBy),
    /// Started, then stopped: by its handle or by group cancellation.
    Aborted(CancelledBy),
}

impl State {
    fn ended(self) -> bool {
        matches!(
            self,
            State::Finished | State::Cancelled(_) | State::Aborted(_)
        )
    }

    fn cancelled_by(self) -> Option<CancelledBy> {
        match self {
            State::Cancelled(by) | State::Aborted(by) => Some(by),
            _ => None,
        }
    }
}

struct Task {
    deadline: Instant,
    seq: u64,
    state: State,
    dropped: Arc<AtomicBool>,
    handle: TaskHandle,
    output: Output,
    join: Option<JoinHandle<usize>>,
}

/// A repeating series as the model sees it.
struct Series {
    every: Every,
    /// `stop()` returned `true`, or the group was cancelled.
    stopped: bool,
    /// A run is inside its body (between its start and its end).
    running: bool,
    /// Runs that began, and those that ran to their end.
    begun: u64,
    completed: u64,
    /// Runs stopped while running (by the group's cancellation).
    aborted: u64,
    /// Pending runs cancelled (by `stop()` or by the group's cancellation).
    cancelled: u64,
}

impl Series {
    /// Whether a run of it is pending: live, and no run in its body.
    fn has_pending(&self) -> bool {
        !self.stopped && !self.running
    }
}

#[derive(Default)]
struct Model {
    tasks: Vec<Task>,
    series: Vec<Series>,
    next_seq: u64,
    cap: usize,
    group_cancelled: bool,
    violations: Vec<String>,
}

impl Model {
    fn count(&self, state: State) -> u64 {
        self.tasks.iter().filter(|t| t.state == state).count() as u64
    }

    fn count_where(&self, f: impl Fn(State) -> bool) -> u64 {
        self.tasks.iter().filter(|t| f(t.state)).count() as u64
    }

    fn series_sum(&self, f: impl Fn(&Series) -> u64) -> u64 {
        self.series.iter().map(f).sum()
    }

    /// Called by task `id` as it starts; `running` is the group's running count then.
    fn on_start(&mut self, id: usize, now: Instant, running: u64) {
        let (deadline, seq, state) = {
            let t = &self.tasks[id];
            (t.deadline, t.seq, t.state)
        };
        let mut bad = Vec::new();
        if state != State::Pending {
            bad.push(format!("task {id} started while {state:?}"));
        }
        if now < deadline {
            bad.push(format!("task {id} started {:?} early", deadline - now));
        }
        if self.group_cancelled {
            bad.push(format!("task {id} started after the group was cancelled"));
        }
        if running as usize > self.cap {
            bad.push(format!("{running} running with a cap of {}", self.cap));
        }
        if running == 1 {
            for (other, t) in self.tasks.iter().enumerate() {
                if other != id
                    && t.state == State::Pending
                    && t.deadline <= now
                    && (t.deadline, t.seq) < (deadline, seq)
                {
                    bad.push(format!(
                        "task {id} started before due task {other}, which comes first"
                    ));
                }
            }
        }
        self.violations.extend(bad);
        self.tasks[id].state = State::Started;
    }

    /// The group is about to be cancelled: pending tasks and series' pending runs are
    /// cancelled with it, running tasks stopped, every series over.
    fn on_group_cancel(&mut self) {
        self.group_cancelled = true;
        for t in &mut self.tasks {
            t.state = match t.state {
                State::Pending => State::Cancelled(CancelledBy::Group),
                State::Started => State::Aborted(CancelledBy::Group),
                other => other,
            };
        }
        for x in &mut self.series {
            if x.has_pending() {
                x.cancelled += 1;
            }
            x.stopped = true;
        }
    }

    /// Called by a run of series `s` as its body begins.
    fn on_run(&mut self, s: usize, running: u64) {
        let mut bad = Vec::new();
        let series = &self.series[s];
        if series.stopped {
            bad.push(format!("series {s} ran after it was stopped"));
        }
        if series.running {
            bad.push(format!("series {s} has two runs at once"));
        }
        if running as usize > self.cap {
            bad.push(format!("{running} running with a cap of {}", self.cap));
        }
        self.violations.extend(bad);
        let series = &mut self.series[s];
        series.running = true;
        series.begun += 1;
    }
}

/// Lets everything that is ready run, and the timer driver fire what is due, without moving
/// the paused clock.
async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

fn check(model: &Model, group: &Group, now: Instant) -> Result<(), TestCaseError> {
    prop_assert!(model.violations.is_empty(), "{:?}", model.violations);
    let s = group.stats();
    let series_pending = model.series.iter().filter(|x| x.has_pending()).count() as u64;
    let series_running = model.series.iter().filter(|x| x.running).count() as u64;
    prop_assert_eq!(
        s.scheduled,
        model.tasks.len() as u64 + model.series_sum(|x| x.begun + x.cancelled) + series_pending
    );
    prop_assert_eq!(
        s.pending,
        model.count(State::Pending) + series_pending,
        "pending"
    );
    prop_assert_eq!(
        s.running,
        model.count(State::Started) + series_running,
        "running"
    );
    prop_assert_eq!(
        s.completed,
        model.count(State::Finished) + model.series_sum(|x| x.completed),
        "completed"
    );
    prop_assert_eq!(
        s.cancelled,
        model.count_where(|st| st.cancelled_by().is_some())
            + model.series_sum(|x| x.cancelled + x.aborted),
        "cancelled"
    );
    prop_assert_eq!(s.panicked, 0);
    if (s.running as usize) < model.cap {
        for (id, t) in model.tasks.iter().enumerate() {
            prop_assert!(
                !(t.state == State::Pending && t.deadline <= now),
                "task {} is due and a slot is free, but it has not started",
                id
            );
        }
    }
    for (id, t) in model.tasks.iter().enumerate() {
        if t.state.ended() {
            prop_assert!(
                t.dropped.load(Ordering::SeqCst),
                "task {}'s future was not dropped",
                id
            );
        }
        prop_assert_eq!(
            t.handle.is_pending(),
            t.state == State::Pending,
            "is_pending of task {}",
            id
        );
        prop_assert_eq!(
            t.handle.is_finished(),
            t.state.ended(),
            "is_finished of task {}",
            id
        );
        let deadline = (t.state == State::Pending).then_some(t.deadline);
        prop_assert_eq!(t.handle.deadline(), deadline, "deadline of task {}", id);
    }
    for (i, x) in model.series.iter().enumerate() {
        prop_assert_eq!(
            x.every.is_stopped(),
            x.stopped,
            "is_stopped of series {}",
            i
        );
    }
    Ok(())
}

fn schedule(
    group: &Group,
    results: &Results<usize>,
    model: &Arc<Mutex<Model>>,
    deadline: Instant,
    run_ms: u64,
    use_delay: Option<Duration>,
    output: Output,
) {
    let mut m = model.lock().unwrap();
    let id = m.tasks.len();
    let (guard, dropped) = DropFlag::new();
    let (model2, group2) = (model.clone(), group.clone());
    let body = async move {
        let _guard = guard;
        let running = group2.stats().running;
        model2.lock().unwrap().on_start(id, Instant::now(), running);
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
        model2.lock().unwrap().tasks[id].state = State::Finished;
        id
    };
    // The model is locked while scheduling: a future dropped at once (cancelled group) does not
    // touch it, and nothing runs inside `schedule`.
    let seq = m.next_seq;
    m.next_seq += 1;
    let cancelled = m.group_cancelled;
    drop(m);
    let (handle, join) = match (output, use_delay) {
        (Output::Dropped, Some(d)) => (group.delay(d, body), None),
        (Output::Dropped, None) => (group.schedule(deadline, body), None),
        (Output::Joined, Some(d)) => {
            let join = group.delay_join(d, body);
            (join.handle().clone(), Some(join))
        }
        (Output::Joined, None) => {
            let join = group.schedule_join(deadline, body);
            (join.handle().clone(), Some(join))
        }
        (Output::Collected, Some(d)) => (results.delay(d, body), None),
        (Output::Collected, None) => (results.schedule(deadline, body), None),
    };
    let mut m = model.lock().unwrap();
    m.tasks.push(Task {
        deadline,
        seq,
        state: if cancelled {
            State::Cancelled(CancelledBy::Group)
        } else {
            State::Pending
        },
        dropped,
        handle,
        output,
        join,
    });
}

/// Ends a series' run in the model when its body's future is dropped, whether it ran to its
/// end or was stopped.
struct RunGuard {
    model: Arc<Mutex<Model>>,
    series: usize,
    completed: bool,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let mut m = self.model.lock().unwrap();
        let cancelled = m.group_cancelled;
        let series = &mut m.series[self.series];
        series.running = false;
        if self.completed {
            series.completed += 1;
        } else if cancelled {
            series.aborted += 1;
        } else {
            m.violations.push(format!(
                "a run of series {} was stopped while the group was not cancelled",
                self.series
            ));
        }
    }
}

fn start_series(group: &Group, model: &Arc<Mutex<Model>>, period_ms: u64, run_ms: u64) {
    let m = model.lock().unwrap();
    let s = m.series.len();
    let cancelled = m.group_cancelled;
    drop(m);
    let (model2, group2) = (model.clone(), group.clone());
    let every = group.every(Duration::from_millis(period_ms), move || {
        let (model, group) = (model2.clone(), group2.clone());
        async move {
            let running = group.stats().running;
            model.lock().unwrap().on_run(s, running);
            let mut guard = RunGuard {
                model,
                series: s,
                completed: false,
            };
            tokio::time::sleep(Duration::from_millis(run_ms)).await;
            guard.completed = true;
        }
    });
    let mut m = model.lock().unwrap();
    m.series.push(Series {
        every,
        stopped: cancelled,
        running: false,
        begun: 0,
        completed: 0,
        aborted: 0,
        // A series started in a cancelled group schedules nothing.
        cancelled: 0,
    });
}

fn at(now: Instant, offset_ms: i64) -> Instant {
    if offset_ms >= 0 {
        now + Duration::from_millis(offset_ms as u64)
    } else {
        now - Duration::from_millis(offset_ms.unsigned_abs())
    }
}

async fn run_case(cap: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let group = Group::builder().max_concurrent(cap).build();
    let mut results = group.results::<usize>();
    let model = Arc::new(Mutex::new(Model {
        cap,
        ..Model::default()
    }));
    let mut clones = Vec::new();
    for op in ops {
        let now = Instant::now();
        match op {
            Op::Schedule {
                offset_ms,
                run_ms,
                output,
            } => {
                let deadline = at(now, offset_ms);
                schedule(&group, &results, &model, deadline, run_ms, None, output);
            }
            Op::Delay {
                delay_ms,
                run_ms,
                output,
            } => {
                let d = Duration::from_millis(delay_ms);
                schedule(&group, &results, &model, now + d, run_ms, Some(d), output);
            }
            Op::Cancel(i) => {
                let m = model.lock().unwrap();
                if !m.tasks.is_empty() {
                    let i = i % m.tasks.len();
                    let handle = m.tasks[i].handle.clone();
                    let state = m.tasks[i].state;
                    drop(m);
                    let got = handle.cancel();
                    let expected = matches!(state, State::Pending | State::Started);
                    prop_assert_eq!(got, expected, "cancel of task {} while {:?}", i, state);
                    let mut m = model.lock().unwrap();
                    match state {
                        State::Pending => {
                            m.tasks[i].state = State::Cancelled(CancelledBy::Handle);
                            prop_assert!(
                                m.tasks[i].dropped.load(Ordering::SeqCst),
                                "dropped before cancel returned"
                            );
                        }
                        // Its body is at an `.await` (this test's task runs alone): it stops
                        // there, which the next check sees.
                        State::Started => {
                            m.tasks[i].state = State::Aborted(CancelledBy::Handle);
                        }
                        _ => {}
                    }
                }
            }
            Op::Reschedule(i, offset_ms) => {
                let mut m = model.lock().unwrap();
                if !m.tasks.is_empty() {
                    let i = i % m.tasks.len();
                    let deadline = at(now, offset_ms);
                    let expected = m.tasks[i].state == State::Pending;
                    let handle = m.tasks[i].handle.clone();
                    // Update the model first: the task may start during the call's wake-up.
                    let seq = m.next_seq;
                    m.next_seq += 1;
                    let old = (m.tasks[i].deadline, m.tasks[i].seq);
                    if expected {
                        m.tasks[i].deadline = deadline;
                        m.tasks[i].seq = seq;
                    }
                    drop(m);
                    let got = handle.reschedule(deadline);
                    prop_assert_eq!(got, expected, "reschedule of task {}", i);
                    if !got {
                        let mut m = model.lock().unwrap();
                        (m.tasks[i].deadline, m.tasks[i].seq) = old;
                    }
                }
            }
            Op::Every { period_ms, run_ms } => start_series(&group, &model, period_ms, run_ms),
            Op::Stop(i) => {
                let mut m = model.lock().unwrap();
                if !m.series.is_empty() {
                    let i = i % m.series.len();
                    let every = m.series[i].every.clone();
                    let live = !m.series[i].stopped;
                    let pending = m.series[i].has_pending();
                    // Before the call: a stopped series must not run again.
                    m.series[i].stopped = true;
                    if pending {
                        m.series[i].cancelled += 1;
                    }
                    drop(m);
                    prop_assert_eq!(every.stop(), live, "stop of series {}", i);
                }
            }
            Op::SetCap(cap) => {
                model.lock().unwrap().cap = cap;
                group.set_max_concurrent(cap);
            }
            Op::CancelGroup => {
                model.lock().unwrap().on_group_cancel();
                group.cancel();
                let m = model.lock().unwrap();
                for (id, t) in m.tasks.iter().enumerate() {
                    if matches!(t.state, State::Cancelled(_)) {
                        prop_assert!(
                            t.dropped.load(Ordering::SeqCst),
                            "pending task {} dropped by cancel()",
                            id
                        );
                    }
                }
            }
            Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
            Op::Wait(ms) => {
                let idle = {
                    let m = model.lock().unwrap();
                    m.count(State::Pending) + m.count(State::Started) == 0
                        && m.series.iter().all(|x| x.stopped && !x.running)
                };
                let start = Instant::now();
                match timeout(Duration::from_millis(ms), group.wait()).await {
                    Ok(result) => {
                        let s = group.stats();
                        prop_assert_eq!(
                            (s.pending, s.running),
                            (0, 0),
                            "wait() returned with work left"
                        );
                        let cancelled = model.lock().unwrap().group_cancelled;
                        prop_assert_eq!(result.is_err(), cancelled);
                        if idle {
                            prop_assert_eq!(
                                Instant::now(),
                                start,
                                "idle group: wait() is immediate"
                            );
                        }
                    }
                    Err(_) => {
                        prop_assert!(!idle, "wait() on an idle group timed out");
                        let s = group.stats();
                        prop_assert!(
                            s.pending + s.running > 0,
                            "the group went idle but wait() did not return"
                        );
                    }
                }
            }
            Op::CloneGroup => clones.push(group.clone()),
            Op::DropClone => drop(clones.pop()),
        }
        settle().await;
        check(&model.lock().unwrap(), &group, Instant::now())?;
    }
    // Whatever is left goes, and every future is dropped.
    model.lock().unwrap().on_group_cancel();
    group.cancel();
    settle().await;
    let tasks = std::mem::take(&mut model.lock().unwrap().tasks);
    for (id, t) in tasks.iter().enumerate() {
        prop_assert!(
            t.dropped.load(Ordering::SeqCst),
            "task {} leaked its future",
            id
        );
    }
    // Every awaited task says how it ended, exactly as the model does, once.
    let expected = |id: usize, state: State| match state {
        State::Finished => Ok(id),
        other => Err(other.cancelled_by().expect("every task has ended")),
    };
    let mut collected = HashMap::new();
    while let Some((task, result)) = results.try_join_next() {
        let result = result.map_err(|e| {
            assert_eq!(e.id(), task);
            e.cancelled_by().expect("no task panics")
        });
        prop_assert!(
            collected.insert(task, result).is_none(),
            "task {} collected twice",
            task
        );
    }
    prop_assert!(
        results.is_empty(),
        "results outstanding after the end: {:?}",
        results
    );
    for (id, t) in tasks.into_iter().enumerate() {
        let want = expected(id, t.state);
        match t.output {
            Output::Dropped => {}
            Output::Joined => {
                let join = t.join.expect("a joined task has its JoinHandle");
                prop_assert!(join.is_finished());
                let got = timeout(Duration::from_secs(1), join)
                    .await
                    .expect("an ended task's JoinHandle is ready")
                    .map_err(|e| e.cancelled_by().expect("no task panics"));
                prop_assert_eq!(got, want, "JoinHandle of task {}", id);
            }
            Output::Collected => {
                let got = collected.remove(&t.handle.id());
                prop_assert_eq!(got, Some(want), "Results of task {}", id);
            }
        }
    }
    prop_assert!(
        collected.is_empty(),
        "results of unknown tasks: {:?}",
        collected
    );
    Ok(())
}

fn cases() -> u32 {
    std::env::var("SCHEDGROUP_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn on_paused_runtime(cap: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(run_case(cap, ops))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model(cap in 0usize..4, ops in prop::collection::vec(op(), 1..60)) {
        on_paused_runtime(cap, ops)?;
    }

    #[test]
    fn with_cap_one_and_no_cap_changes_starts_follow_deadline_then_schedule_order(
        ops in prop::collection::vec(op().prop_filter("keep the cap at 1", |o| !matches!(o, Op::SetCap(_))), 1..60)
    ) {
        on_paused_runtime(1, ops)?;
    }
}
