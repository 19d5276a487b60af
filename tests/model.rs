//! Random operation sequences against a reference model, on tokio's paused clock.
//!
//! Each case builds a group on a fresh paused runtime and applies up to 60 random operations:
//! schedule (past, near or far deadlines), delay, cancel or reschedule a handle, change the
//! cap, cancel the group, advance time, `wait()` under a timeout, clone or drop a clone. After
//! every operation the runtime is allowed to settle (without moving the clock), and then:
//!
//! - handle results match the model: `cancel`/`reschedule` succeed exactly on pending tasks;
//! - every counter equals the model's count (pending, running, completed, cancelled);
//! - liveness: if fewer tasks run than the cap allows, no due task is still pending;
//! - cancelled futures have been dropped.
//!
//! And every task checks, as it starts: it has not started before, it was not cancelled, it is
//! not early, the group is not cancelled, running tasks do not exceed the cap, and (when it is
//! the only running task, so no other task can be between its pop and its first poll) no
//! pending task that was due had an earlier (deadline, schedule order).
//!
//! On failure proptest shrinks to a short, readable list of `Op`s.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::DropFlag;
use proptest::prelude::*;
use schedgroup::{Group, TaskHandle};
use tokio::time::{Instant, timeout};

#[derive(Debug, Clone)]
enum Op {
    /// A task due `offset_ms` from now (negative: already past) that runs for `run_ms`.
    Schedule {
        offset_ms: i64,
        run_ms: u64,
    },
    /// The same through `delay`.
    Delay {
        delay_ms: u64,
        run_ms: u64,
    },
    /// Cancel the handle of task `index % tasks`.
    Cancel(usize),
    /// Reschedule task `index % tasks` to `offset_ms` from now.
    Reschedule(usize, i64),
    SetCap(usize),
    CancelGroup,
    Advance(u64),
    /// `timeout(ms, group.wait())`.
    Wait(u64),
    CloneGroup,
    DropClone,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (common::offset_ms(), 0u64..30).prop_map(|(offset_ms, run_ms)| Op::Schedule { offset_ms, run_ms }),
        2 => (0u64..80, 0u64..30).prop_map(|(delay_ms, run_ms)| Op::Delay { delay_ms, run_ms }),
        3 => any::<usize>().prop_map(Op::Cancel),
        3 => (any::<usize>(), common::offset_ms()).prop_map(|(i, o)| Op::Reschedule(i, o)),
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
    Cancelled,
    /// Started, then dropped by group cancellation.
    Aborted,
}

struct Task {
    deadline: Instant,
    seq: u64,
    state: State,
    dropped: Arc<AtomicBool>,
    handle: TaskHandle,
}

#[derive(Default)]
struct Model {
    tasks: Vec<Task>,
    next_seq: u64,
    cap: usize,
    group_cancelled: bool,
    violations: Vec<String>,
}

impl Model {
    fn count(&self, state: State) -> u64 {
        self.tasks.iter().filter(|t| t.state == state).count() as u64
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
    prop_assert_eq!(s.scheduled, model.tasks.len() as u64);
    prop_assert_eq!(s.pending, model.count(State::Pending), "pending");
    prop_assert_eq!(s.running, model.count(State::Started), "running");
    prop_assert_eq!(s.completed, model.count(State::Finished), "completed");
    prop_assert_eq!(
        s.cancelled,
        model.count(State::Cancelled) + model.count(State::Aborted),
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
        if matches!(t.state, State::Cancelled | State::Aborted | State::Finished) {
            prop_assert!(
                t.dropped.load(Ordering::SeqCst),
                "task {}'s future was not dropped",
                id
            );
        }
    }
    Ok(())
}

fn schedule(
    group: &Group,
    model: &Arc<Mutex<Model>>,
    deadline: Instant,
    run_ms: u64,
    use_delay: Option<Duration>,
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
    };
    // The model is locked while scheduling: a future dropped at once (cancelled group) does not
    // touch it, and nothing runs inside `schedule`.
    let seq = m.next_seq;
    m.next_seq += 1;
    let cancelled = m.group_cancelled;
    drop(m);
    let handle = match use_delay {
        Some(d) => group.delay(d, body),
        None => group.schedule(deadline, body),
    };
    let mut m = model.lock().unwrap();
    m.tasks.push(Task {
        deadline,
        seq,
        state: if cancelled {
            State::Cancelled
        } else {
            State::Pending
        },
        dropped,
        handle,
    });
}

async fn run_case(cap: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let group = Group::builder().max_concurrent(cap).build();
    let model = Arc::new(Mutex::new(Model {
        cap,
        ..Model::default()
    }));
    let mut clones = Vec::new();
    for op in ops {
        let now = Instant::now();
        match op {
            Op::Schedule { offset_ms, run_ms } => {
                let deadline = if offset_ms >= 0 {
                    now + Duration::from_millis(offset_ms as u64)
                } else {
                    now - Duration::from_millis(offset_ms.unsigned_abs())
                };
                schedule(&group, &model, deadline, run_ms, None);
            }
            Op::Delay { delay_ms, run_ms } => {
                let d = Duration::from_millis(delay_ms);
                schedule(&group, &model, now + d, run_ms, Some(d));
            }
            Op::Cancel(i) => {
                let m = model.lock().unwrap();
                if !m.tasks.is_empty() {
                    let i = i % m.tasks.len();
                    let handle = m.tasks[i].handle.clone();
                    let expected = m.tasks[i].state == State::Pending;
                    drop(m);
                    let got = handle.cancel();
                    prop_assert_eq!(got, expected, "cancel of task {}", i);
                    let mut m = model.lock().unwrap();
                    if got {
                        m.tasks[i].state = State::Cancelled;
                        prop_assert!(
                            m.tasks[i].dropped.load(Ordering::SeqCst),
                            "dropped before cancel returned"
                        );
                    }
                }
            }
            Op::Reschedule(i, offset_ms) => {
                let mut m = model.lock().unwrap();
                if !m.tasks.is_empty() {
                    let i = i % m.tasks.len();
                    let deadline = if offset_ms >= 0 {
                        now + Duration::from_millis(offset_ms as u64)
                    } else {
                        now - Duration::from_millis(offset_ms.unsigned_abs())
                    };
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
            Op::SetCap(cap) => {
                model.lock().unwrap().cap = cap;
                group.set_max_concurrent(cap);
            }
            Op::CancelGroup => {
                {
                    let mut m = model.lock().unwrap();
                    m.group_cancelled = true;
                    for t in &mut m.tasks {
                        t.state = match t.state {
                            State::Pending => State::Cancelled,
                            State::Started => State::Aborted,
                            other => other,
                        };
                    }
                }
                group.cancel();
                let m = model.lock().unwrap();
                for (id, t) in m.tasks.iter().enumerate() {
                    if t.state == State::Cancelled {
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
    group.cancel();
    settle().await;
    let m = model.lock().unwrap();
    for (id, t) in m.tasks.iter().enumerate() {
        prop_assert!(
            t.dropped.load(Ordering::SeqCst),
            "task {} leaked its future",
            id
        );
    }
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
