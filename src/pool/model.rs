//! The protocol against a model, with many groups and `acquire()` callers, no runtime.
//!
//! A harness plays the runtime: it carries out effects (a start makes a task run; a wake or
//! spawn makes a monitor step at the next settle; a grant hands an `acquire()` its slot), keeps
//! a clock, and lets monitors step when woken or when their timer is due. Random steps:
//! schedule (past, due now, or later), cancel or reschedule a pending task, end a running task,
//! change N, throttle N, change a group's k, cancel a group, drop a group, `acquire()`, claim a
//! granted slot, drop a waiting `acquire()` (granted or not), drop a permit, advance time.
//!
//! After every step the harness settles (runs every monitor that is awake) and checks:
//!
//! - never: a start beyond k or N, a start before the deadline on the group's own clock (the
//!   harness passes slot-freeing events a timestamp an hour ahead, so a pool that judged due-ness
//!   by it would start early), a task started twice or after it was cancelled, a start while
//!   another group that could take the slot had an earlier due task, or an `acquire()` that
//!   called earlier was waiting (earliest deadline first by *current* heads);
//! - always: if a slot of N is free, no group has a due task (on the real clock) while running
//!   fewer than its k, and no `acquire()` waits (work conservation); every group with a future
//!   task has a monitor that will wake for it; slots taken = tasks running + permits + grants
//!   not yet claimed; `waiting()` = groups that want a slot + `acquire()`s in line; counters
//!   match and add up;
//! - at the end, with time moved on and caps opened: every task runs or is cancelled, every
//!   slot comes back, no one waits.
//!
//! Adaptive limits (issue 11) take part: random steps set or remove a controller on N or on a
//! group's k (either algorithm, 2 samples a decision, so they decide often), and signal
//! overload; every end is a sample (its run time from its start on the model's clock, a
//! panic an overload). The model takes the limits the controllers set as they are (the
//! controller's own tests judge its choices) and checks everything above against them: a cut
//! must stop starts at once, a raise must hand the new slots to due work at once.
//!
//! A group's runtime can also stall: its monitor stops stepping and its runners stop ending,
//! while other threads still schedule into it and change its cap. Work conservation is then
//! judged on its own clock (the last time it read one), and the rest of the pool must not wait
//! for it. Batches are 1 or 2 slots, so transitions stop at their budget all the time.
//!
//! Mutants killed by hand, each made this test fail in 128 cases (a default run has 512): a
//! declined grant ignored (an `acquire()` dropped after its grant keeps the slot), no serve
//! after a runner's end (the wake after a kept slot), a group's place keyed by a stale
//! deadline, due-ness judged by the clock of whoever freed the slot, no timer re-armed after a
//! due head is cancelled, a group's own cap ignored when it lines up. (All six were killed
//! before stalls and small batches were added; the second and sixth again after.) A burst's continuation handed to the first group's monitor instead of kept by the
//! caller failed 6 of 6 default runs, and always fails the unit test
//! `a_shared_burst_is_continued_by_the_caller_not_by_the_first_group_in_line`; a non-monitor
//! caller that drops its continuation failed 6 of 6 default runs. An adaptive change applied
//! after the end's settle instead of before it (a raise that hands out nothing) failed 2 of 2
//! default runs.

use proptest::prelude::*;
use tokio::time::Instant;

use super::tests::{Job, Other, Tag};
use super::*;

const HOUR: u64 = 3_600_000;

type TestPool = Pool<Job<usize>, Tag, usize>;
type TestFx = Fx<Job<usize>, Tag, usize>;

#[derive(Debug, Clone)]
enum Op {
    /// Group `g % groups` schedules a task due `offset` ms from now.
    Schedule(usize, i64),
    CancelTask(usize),
    Reschedule(usize, i64),
    /// End running task `i % running` (panicked if `true`).
    End(usize, bool),
    SetLimit(usize),
    Throttle(bool),
    SetK(usize, usize),
    CancelGroup(usize),
    DropGroup(usize),
    Acquire,
    Claim(usize),
    DropWaiting(usize),
    DropPermit(usize),
    Advance(u64),
    /// Group `g`'s runtime stops running (`true`: its monitor and runners are frozen, though
    /// other threads still schedule, cancel and change caps) or runs again.
    Stall(usize, bool),
    /// An adaptive controller on N: AIMD (`Some(false)`), gradient (`Some(true)`), or none.
    Adapt(Option<bool>),
    /// The same on group `g`'s k.
    AdaptGroup(usize, Option<bool>),
    /// Group `g` signals overload.
    Overloaded(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let offset = prop_oneof![(-30i64..0), Just(0i64), (1i64..60)];
    prop_oneof![
        8 => (any::<usize>(), offset.clone()).prop_map(|(g, o)| Op::Schedule(g, o)),
        2 => any::<usize>().prop_map(Op::CancelTask),
        2 => (any::<usize>(), offset).prop_map(|(i, o)| Op::Reschedule(i, o)),
        8 => (any::<usize>(), prop::bool::weighted(0.1)).prop_map(|(i, p)| Op::End(i, p)),
        2 => (0usize..8).prop_map(Op::SetLimit),
        1 => any::<bool>().prop_map(Op::Throttle),
        4 => (any::<usize>(), 0usize..5).prop_map(|(g, k)| Op::SetK(g, k)),
        1 => any::<usize>().prop_map(Op::CancelGroup),
        1 => any::<usize>().prop_map(Op::DropGroup),
        2 => Just(Op::Acquire),
        2 => any::<usize>().prop_map(Op::Claim),
        1 => any::<usize>().prop_map(Op::DropWaiting),
        2 => any::<usize>().prop_map(Op::DropPermit),
        4 => (1u64..40).prop_map(Op::Advance),
        6 => (any::<usize>(), prop::bool::weighted(0.7)).prop_map(|(g, s)| Op::Stall(g, s)),
        1 => prop::option::of(any::<bool>()).prop_map(Op::Adapt),
        1 => (any::<usize>(), prop::option::of(any::<bool>())).prop_map(|(g, a)| Op::AdaptGroup(g, a)),
        2 => any::<usize>().prop_map(Op::Overloaded),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Pending,
    Running,
    Done,
    Cancelled,
}

#[derive(Debug)]
struct Task {
    group: MemberId,
    deadline: u64,
    /// When it was last scheduled or rescheduled: among equal deadlines, earlier goes first.
    order: usize,
    key: Key,
    state: TaskState,
    /// When it started, on the model's clock.
    started: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MonitorModel {
    None,
    Awake,
    Parked(Option<u64>),
}

#[derive(Debug)]
struct GroupModel {
    k: usize,
    /// The latest time handed to the pool from this group's own runtime.
    seen: u64,
    monitor: MonitorModel,
    cancelled: bool,
    dropped: bool,
    left: bool,
    /// Its runtime is not running: the monitor does not step and runners do not end.
    stalled: bool,
    scheduled: u64,
    completed: u64,
    cancelled_tasks: u64,
    panicked: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TicketState {
    Waiting(Place),
    Granted(Place),
    Permit,
    Gone,
}

struct Harness {
    pool: TestPool,
    now: u64,
    limit: usize,
    groups: Vec<GroupModel>,
    tasks: Vec<Task>,
    tickets: Vec<(u64, TicketState)>,
    violations: Vec<String>,
    /// The order the next schedule or reschedule gets.
    next_order: usize,
}

impl Harness {
    fn new(limit: usize, ks: &[usize], budget: usize) -> Self {
        let mut pool = TestPool::new(limit, true).with_budget(budget);
        pool.set_throttle(Throttle {
            step_down: 2,
            step_up: 1,
            floor: 0,
            ceiling: Some(6),
            hold: std::time::Duration::ZERO,
        });
        let groups = ks
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                assert_eq!(pool.join(Tag(i), k, 0), i);
                GroupModel {
                    k,
                    seen: 0,
                    monitor: MonitorModel::None,
                    cancelled: false,
                    dropped: false,
                    left: false,
                    stalled: false,
                    scheduled: 0,
                    completed: 0,
                    cancelled_tasks: 0,
                    panicked: 0,
                }
            })
            .collect();
        Self {
            pool,
            now: 1_000,
            limit,
            groups,
            tasks: Vec::new(),
            tickets: Vec::new(),
            violations: Vec::new(),
            next_order: 0,
        }
    }

    /// A timestamp from "another thread" whose clock is an hour ahead: only history may use it.
    fn elsewhere(&self) -> u64 {
        self.now + HOUR
    }

    fn live_groups(&self) -> Vec<MemberId> {
        (0..self.groups.len())
            .filter(|&g| !self.groups[g].left && !self.groups[g].dropped)
            .collect()
    }

    fn pick<T: Copy>(items: &[T], i: usize) -> Option<T> {
        (!items.is_empty()).then(|| items[i % items.len()])
    }

    fn tasks_in(&self, state: TaskState) -> Vec<usize> {
        (0..self.tasks.len())
            .filter(|&t| self.tasks[t].state == state)
            .collect()
    }

    fn running_of(&self, g: MemberId) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.group == g && t.state == TaskState::Running)
            .count()
    }

    fn held(&self) -> usize {
        self.tickets
            .iter()
            .filter(|(_, s)| matches!(s, TicketState::Granted(_) | TicketState::Permit))
            .count()
    }

    /// The earliest pending deadline of `g`.
    fn head(&self, g: MemberId) -> Option<u64> {
        self.tasks
            .iter()
            .filter(|t| t.group == g && t.state == TaskState::Pending)
            .map(|t| t.deadline)
            .min()
    }

    /// Whether `g` could use a slot for a task due: on the real clock, or on its own if its
    /// runtime is stalled (nothing there reads the clock, so the pool cannot know more).
    fn wants_now(&self, g: MemberId) -> Option<u64> {
        let model = &self.groups[g];
        if model.left || model.cancelled || self.running_of(g) >= model.k {
            return None;
        }
        let now = if model.stalled { model.seen } else { self.now };
        self.head(g).filter(|&d| d <= now)
    }

    /// Running tasks whose runners can end them: not on a stalled runtime.
    fn endable(&self) -> Vec<usize> {
        (0..self.tasks.len())
            .filter(|&t| {
                self.tasks[t].state == TaskState::Running
                    && !self.groups[self.tasks[t].group].stalled
            })
            .collect()
    }

    /// Carries out `fx` as the driver does, continuing while it says `more`.
    fn apply(&mut self, caller: Option<MemberId>, fx: TestFx) {
        let more = fx.more;
        self.apply_once(caller, fx);
        if more {
            let fx = self.pool.resume(self.elsewhere());
            self.apply(None, fx);
        }
    }

    fn apply_once(&mut self, caller: Option<MemberId>, mut fx: TestFx) {
        let mut started = Vec::new();
        if let Some(g) = caller {
            self.wake(g, fx.wake);
            started.extend(fx.starts.drain().map(|job| (g, job)));
        }
        for (g, action) in fx.others.drain(..) {
            match action {
                Action::Start(job) => started.push((g, job)),
                Action::Wake(wake) => self.wake(g, wake),
            }
        }
        for ticket in fx.grants.drain(..) {
            match self.tickets[ticket].1 {
                TicketState::Waiting(place) => {
                    self.tickets[ticket].1 = TicketState::Granted(place);
                }
                other => self
                    .violations
                    .push(format!("ticket {ticket} granted while {other:?}")),
            }
        }
        for (g, job) in &started {
            let key = self.tasks[job.task.0].key;
            if job.id != key.id() {
                self.violations.push(format!(
                    "task {} started with id {}, its key says {:?}",
                    job.task.0, job.id, key
                ));
            }
            self.on_start(*g, job.task.0);
        }
        let started: Vec<(MemberId, Job<usize>)> =
            started.into_iter().map(|(g, s)| (g, s.task)).collect();
        self.check_edf(&started);
    }

    fn wake(&mut self, g: MemberId, wake: Wake) {
        let monitor = &mut self.groups[g].monitor;
        match wake {
            Wake::Nothing => {}
            Wake::Spawn => {
                if *monitor != MonitorModel::None {
                    self.violations
                        .push(format!("group {g}: a second monitor spawned"));
                }
                *monitor = MonitorModel::Awake;
            }
            Wake::Notify => {
                if *monitor == MonitorModel::None {
                    self.violations
                        .push(format!("group {g}: notified a monitor that does not exist"));
                }
                *monitor = MonitorModel::Awake;
            }
        }
    }

    fn on_start(&mut self, g: MemberId, id: usize) {
        let running = self.running_of(g);
        let task = &self.tasks[id];
        let mut bad = Vec::new();
        if task.group != g {
            bad.push(format!("task {id} of group {} started for {g}", task.group));
        }
        if task.state != TaskState::Pending {
            bad.push(format!("task {id} started while {:?}", task.state));
        }
        let first = self
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.group == g && t.state == TaskState::Pending)
            .min_by_key(|(_, t)| (t.deadline, t.order))
            .map(|(first, _)| first);
        if first != Some(id) {
            bad.push(format!(
                "task {id} of group {g} started before {first:?}, earlier by (deadline, order)"
            ));
        }
        if task.deadline > self.groups[g].seen {
            bad.push(format!(
                "task {id} started early: due {}, group {g}'s clock at {}",
                task.deadline, self.groups[g].seen
            ));
        }
        if self.groups[g].cancelled {
            bad.push(format!("task {id} started in cancelled group {g}"));
        }
        if running >= self.groups[g].k {
            bad.push(format!(
                "task {id} started with {running} running in group {g} of k {}",
                self.groups[g].k
            ));
        }
        let taken: usize = (0..self.groups.len())
            .map(|h| self.running_of(h))
            .sum::<usize>()
            + self.held();
        if taken >= self.limit {
            bad.push(format!(
                "task {id} started with {taken} of N {} taken",
                self.limit
            ));
        }
        self.violations.extend(bad);
        self.tasks[id].state = TaskState::Running;
        self.tasks[id].started = self.now;
    }

    /// After a transition's starts: no group that still wants a slot has an earlier due head,
    /// and no `acquire()` that called earlier still waits.
    fn check_edf(&mut self, started: &[(MemberId, Job<usize>)]) {
        for &(g, ref job) in started {
            let deadline = self.tasks[job.0].deadline;
            for h in 0..self.groups.len() {
                if h == g {
                    continue;
                }
                if let Some(head) = self.wants_seen(h) {
                    if head < deadline {
                        self.violations.push(format!(
                            "group {g} started a task due {deadline} while group {h} waits \
                             with one due {head}"
                        ));
                    }
                }
            }
            for (i, (at, state)) in self.tickets.iter().enumerate() {
                if matches!(state, TicketState::Waiting(_)) && *at < deadline {
                    self.violations.push(format!(
                        "group {g} started a task due {deadline} while acquire {i} from {at} \
                         waits"
                    ));
                }
            }
        }
    }

    /// Whether `g` wants a slot for a task due on its own clock.
    fn wants_seen(&self, g: MemberId) -> Option<u64> {
        let model = &self.groups[g];
        if model.left || model.cancelled || self.running_of(g) >= model.k {
            return None;
        }
        self.head(g).filter(|&d| d <= model.seen)
    }

    fn schedule(&mut self, g: MemberId, offset: i64) {
        let deadline = self.now.saturating_add_signed(offset);
        let id = self.tasks.len();
        let at = self.elsewhere();
        // Two task types, stored in two lanes of the group's queue: the order across them is
        // checked at every start.
        let result = if self.tasks.len() % 3 == 0 {
            self.pool
                .schedule(g, deadline, Other(id), false, at)
                .map_err(|(key, other)| (key, other.start()))
        } else {
            self.pool.schedule(g, deadline, Job::new(id), false, at)
        };
        let order = self.next_order;
        self.next_order += 1;
        self.groups[g].scheduled += 1;
        match result {
            Ok((key, fx)) => {
                self.tasks.push(Task {
                    group: g,
                    deadline,
                    order,
                    key,
                    state: TaskState::Pending,
                    started: 0,
                });
                if let Some(fx) = fx {
                    self.apply(Some(g), fx);
                }
            }
            Err((key, job)) => {
                let taken = self.tasks.iter().any(|t| t.group == g && t.key == key);
                if taken {
                    self.violations.push(format!(
                        "group {g} refused a task with a key in use: {key:?}"
                    ));
                }
                self.tasks.push(Task {
                    group: g,
                    deadline,
                    order,
                    key,
                    state: TaskState::Cancelled,
                    started: 0,
                });
                if !self.groups[g].cancelled {
                    self.violations
                        .push(format!("group {g} refused task {}", job.0));
                }
                self.groups[g].cancelled_tasks += 1;
                let _idle = self.pool.settle_cancelled(g, 1);
            }
        }
    }

    fn cancel_group(&mut self, g: MemberId, monitor_exits: bool) {
        self.groups[g].cancelled = true;
        let (drained, wake) = self.pool.cancel_group(g, monitor_exits);
        let ids: Vec<usize> = drained.map(|(_, job)| job.0).collect();
        for &id in &ids {
            self.tasks[id].state = TaskState::Cancelled;
        }
        self.groups[g].cancelled_tasks += ids.len() as u64;
        if !ids.is_empty() {
            let _idle = self.pool.settle_cancelled(g, ids.len() as u64);
        }
        if monitor_exits {
            self.groups[g].monitor = MonitorModel::None;
        } else {
            self.wake(g, wake);
        }
    }

    fn end(&mut self, id: usize, outcome: Outcome) {
        let g = self.tasks[id].group;
        self.tasks[id].state = TaskState::Done;
        match outcome {
            Outcome::Completed => self.groups[g].completed += 1,
            Outcome::Panicked => self.groups[g].panicked += 1,
            Outcome::Cancelled => self.groups[g].cancelled_tasks += 1,
        }
        self.groups[g].seen = self.now;
        let at = self.elsewhere();
        let task = self.tasks[id].key.id();
        let fx = self.pool.finish(
            g,
            Ran {
                id: task,
                at: Some(self.tasks[id].started),
                overload: false,
            },
            outcome,
            false,
            Some(self.now),
            at,
        );
        self.adapted();
        self.apply(Some(g), fx);
    }

    /// Takes in the limits the controllers set in the transition just made, before its effects
    /// are checked against them.
    fn adapted(&mut self) {
        self.limit = self.pool.limit();
        for g in 0..self.groups.len() {
            if !self.groups[g].left {
                self.groups[g].k = self.pool.group_limit(g);
            }
        }
    }

    /// A controller for a model whose decisions come often.
    fn adaptive(gradient: bool) -> crate::adaptive::Adaptive {
        let adaptive = if gradient {
            crate::adaptive::Adaptive::gradient()
        } else {
            crate::adaptive::Adaptive::aimd()
        };
        adaptive.min_samples(2).ceiling(8)
    }

    fn run(&mut self, op: &Op) {
        let at = self.elsewhere();
        match *op {
            Op::Schedule(g, offset) => {
                if let Some(g) = Self::pick(&self.live_groups(), g) {
                    self.schedule(g, offset);
                }
            }
            Op::CancelTask(i) => {
                if let Some(id) = Self::pick(&self.tasks_in(TaskState::Pending), i) {
                    let (g, key) = (self.tasks[id].group, self.tasks[id].key);
                    match self.pool.cancel_task(g, key, at) {
                        Some((job, fx)) => {
                            assert_eq!(job.0, id);
                            self.tasks[id].state = TaskState::Cancelled;
                            self.groups[g].cancelled_tasks += 1;
                            if let Some(fx) = fx {
                                self.apply(Some(g), fx);
                            }
                            let _idle = self.pool.settle_cancelled(g, 1);
                        }
                        None => self.violations.push(format!("pending task {id} not found")),
                    }
                }
            }
            Op::Reschedule(i, offset) => {
                if let Some(id) = Self::pick(&self.tasks_in(TaskState::Pending), i) {
                    let (g, key) = (self.tasks[id].group, self.tasks[id].key);
                    let deadline = self.now.saturating_add_signed(offset);
                    match self.pool.reschedule(g, key, deadline, at) {
                        Some(fx) => {
                            self.tasks[id].deadline = deadline;
                            self.tasks[id].order = self.next_order;
                            self.next_order += 1;
                            if let Some(fx) = fx {
                                self.apply(Some(g), fx);
                            }
                        }
                        None => self.violations.push(format!("pending task {id} not found")),
                    }
                }
            }
            Op::End(i, panicked) => {
                if let Some(id) = Self::pick(&self.endable(), i) {
                    let outcome = if panicked {
                        Outcome::Panicked
                    } else {
                        Outcome::Completed
                    };
                    self.end(id, outcome);
                }
            }
            Op::SetLimit(limit) => {
                self.limit = limit;
                let (_, fx) = self.pool.set_limit(limit, at);
                self.apply(None, fx);
            }
            Op::Throttle(up) => {
                let step = if up {
                    ThrottleState::up
                } else {
                    ThrottleState::down
                };
                let (outcome, fx) = self.pool.throttle(step, Instant::now(), at);
                if let ThrottleOutcome::Applied { to, .. } = outcome {
                    self.limit = to;
                }
                self.apply(None, fx);
            }
            Op::SetK(g, k) => {
                if let Some(g) = Self::pick(&self.live_groups(), g) {
                    self.groups[g].k = k;
                    let (_, fx) = self.pool.set_group_limit(g, k, at);
                    self.apply(Some(g), fx);
                }
            }
            Op::CancelGroup(g) => {
                if let Some(g) = Self::pick(&self.live_groups(), g) {
                    self.cancel_group(g, false);
                }
            }
            Op::DropGroup(g) => {
                if let Some(g) = Self::pick(&self.live_groups(), g) {
                    self.groups[g].dropped = true;
                }
            }
            Op::Acquire => {
                let ticket = self.tickets.len();
                let state = match self.pool.acquire(ticket, self.now) {
                    Ok(()) => TicketState::Permit,
                    Err(place) => TicketState::Waiting(place),
                };
                self.tickets.push((self.now, state));
            }
            Op::Claim(i) => {
                let granted: Vec<usize> = (0..self.tickets.len())
                    .filter(|&t| matches!(self.tickets[t].1, TicketState::Granted(_)))
                    .collect();
                if let Some(t) = Self::pick(&granted, i) {
                    self.tickets[t].1 = TicketState::Permit;
                }
            }
            Op::DropWaiting(i) => {
                let waiting: Vec<usize> = (0..self.tickets.len())
                    .filter(|&t| {
                        matches!(
                            self.tickets[t].1,
                            TicketState::Waiting(_) | TicketState::Granted(_)
                        )
                    })
                    .collect();
                if let Some(t) = Self::pick(&waiting, i) {
                    let (TicketState::Waiting(place) | TicketState::Granted(place)) =
                        self.tickets[t].1
                    else {
                        unreachable!()
                    };
                    let was_granted = matches!(self.tickets[t].1, TicketState::Granted(_));
                    self.tickets[t].1 = TicketState::Gone;
                    match (self.pool.abandon(place, at), was_granted) {
                        (None, false) => {}
                        (Some(fx), true) => self.apply(None, fx),
                        (_, was_granted) => self.violations.push(format!(
                            "abandoning ticket {t} (granted: {was_granted}) disagreed"
                        )),
                    }
                }
            }
            Op::DropPermit(i) => {
                let permits: Vec<usize> = (0..self.tickets.len())
                    .filter(|&t| self.tickets[t].1 == TicketState::Permit)
                    .collect();
                if let Some(t) = Self::pick(&permits, i) {
                    self.tickets[t].1 = TicketState::Gone;
                    let fx = self.pool.release(at);
                    self.apply(None, fx);
                }
            }
            Op::Advance(ms) => self.now += ms,
            Op::Stall(g, stalled) => {
                if let Some(g) = Self::pick(&self.live_groups(), g) {
                    self.groups[g].stalled = stalled;
                }
            }
            Op::Adapt(algorithm) => {
                let adaptive = algorithm.map(|g| (Self::adaptive(g), None));
                let (_, _, fx) = self.pool.set_adaptive(adaptive, at);
                self.adapted();
                self.apply(None, fx);
            }
            Op::AdaptGroup(g, algorithm) => {
                if let Some(g) = Self::pick(&self.live_groups(), g) {
                    let adaptive = algorithm.map(|g| (Self::adaptive(g), None));
                    let now = self.now;
                    let (_, _, fx) = self.pool.set_group_adaptive(g, adaptive, now, at);
                    self.adapted();
                    self.apply(Some(g), fx);
                }
            }
            Op::Overloaded(g) => {
                if let Some(g) = Self::pick(&self.live_groups(), g) {
                    let now = self.now;
                    let fx = self.pool.overloaded(g, now, at, None);
                    self.adapted();
                    self.apply(Some(g), fx);
                }
            }
        }
    }

    /// Plays the runtime until nothing is left to do at this instant: due timers fire, woken
    /// monitors step, runners of cancelled groups end their tasks, idle dropped groups leave.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            for g in 0..self.groups.len() {
                if self.groups[g].left || self.groups[g].stalled {
                    continue;
                }
                let due = match self.groups[g].monitor {
                    MonitorModel::Awake => true,
                    MonitorModel::Parked(Some(t)) => t <= self.now,
                    _ => false,
                };
                if due {
                    busy = true;
                    self.step_monitor(g);
                }
                if self.groups[g].cancelled {
                    let running: Vec<usize> = (0..self.tasks.len())
                        .filter(|&t| {
                            self.tasks[t].group == g && self.tasks[t].state == TaskState::Running
                        })
                        .collect();
                    for id in running {
                        busy = true;
                        self.end(id, Outcome::Cancelled);
                    }
                }
                let model = &self.groups[g];
                if model.dropped
                    && model.monitor == MonitorModel::None
                    && self.running_of(g) == 0
                    && self.head(g).is_none()
                {
                    busy = true;
                    self.groups[g].left = true;
                    assert!(self.pool.leave(g).is_some());
                }
            }
            if !busy {
                return;
            }
        }
        self.violations.push("the runtime never settled".into());
    }

    fn step_monitor(&mut self, g: MemberId) {
        if self.groups[g].cancelled {
            self.cancel_group(g, true);
            return;
        }
        self.groups[g].seen = self.now;
        let (step, fx) = self.pool.step(g, self.now);
        self.groups[g].monitor = match step {
            Step::Again => MonitorModel::Awake,
            Step::Park(until) => MonitorModel::Parked(until),
            Step::Exit => MonitorModel::None,
        };
        self.apply(Some(g), fx);
    }

    /// What must hold whenever the runtime has settled.
    fn check(&mut self) {
        let mut bad = Vec::new();
        let running: usize = (0..self.groups.len()).map(|g| self.running_of(g)).sum();
        let held = self.held();
        if self.pool.taken() != running + held {
            bad.push(format!(
                "slots taken {} != {running} running + {held} held",
                self.pool.taken()
            ));
        }
        let waiting_tickets = self
            .tickets
            .iter()
            .filter(|(_, s)| matches!(s, TicketState::Waiting(_)))
            .count();
        let wanting: Vec<MemberId> = (0..self.groups.len())
            .filter(|&g| self.wants_now(g).is_some())
            .collect();
        if self.pool.taken() < self.limit && (!wanting.is_empty() || waiting_tickets > 0) {
            bad.push(format!(
                "{} of N {} taken while groups {wanting:?} have due work and {waiting_tickets} \
                 acquire()s wait",
                self.pool.taken(),
                self.limit
            ));
        }
        if self.pool.waiting() != wanting.len() + waiting_tickets {
            bad.push(format!(
                "waiting() {} != {} groups wanting + {waiting_tickets} acquire()s",
                self.pool.waiting(),
                wanting.len()
            ));
        }
        for g in 0..self.groups.len() {
            let model = &self.groups[g];
            if model.left {
                continue;
            }
            let head = self.head(g);
            let timer_ok = match (head, model.monitor) {
                (None, _) => true,
                (Some(_), MonitorModel::None) => false,
                // A stalled runtime's timers do not fire: that is its users' problem, not the
                // protocol's. Everything else is checked for it, work conservation too.
                (Some(_), _) if model.stalled => true,
                (Some(d), _) if d <= self.now => true,
                (Some(d), MonitorModel::Parked(Some(t))) => t <= d,
                (Some(_), _) => false,
            };
            if !timer_ok {
                bad.push(format!(
                    "group {g} has a task due {head:?} but its monitor is {:?}",
                    model.monitor
                ));
            }
            let stats = self.pool.stats(g);
            let pending = self
                .tasks
                .iter()
                .filter(|t| t.group == g && t.state == TaskState::Pending)
                .count() as u64;
            let expected = (
                model.scheduled,
                pending,
                self.running_of(g) as u64,
                model.completed,
                model.cancelled_tasks,
                model.panicked,
            );
            let actual = (
                stats.scheduled,
                stats.pending,
                stats.running,
                stats.completed,
                stats.cancelled,
                stats.panicked,
            );
            if expected != actual {
                bad.push(format!(
                    "group {g}: counters {actual:?}, model {expected:?}"
                ));
            }
        }
        // Invariant 6: every task's handle tells pending, running and ended apart.
        for t in 0..self.tasks.len() {
            let (g, key, state) = (self.tasks[t].group, self.tasks[t].key, self.tasks[t].state);
            if self.groups[g].left {
                continue;
            }
            let told = (self.pool.is_pending(g, key), self.pool.is_finished(g, key));
            let ended = matches!(state, TaskState::Done | TaskState::Cancelled);
            let expected = (state == TaskState::Pending, ended);
            if told != expected {
                bad.push(format!(
                    "task {t} of group {g} is {state:?}, but (pending, finished) = {told:?}"
                ));
            }
        }
        self.violations.extend(bad);
    }

    /// Opens every cap, moves time past every deadline and ends every task: all must finish,
    /// every slot come back, no one wait.
    fn drain(&mut self) {
        for model in &mut self.groups {
            model.stalled = false;
        }
        let at = self.elsewhere();
        self.limit = self.limit.max(1);
        let (_, fx) = self.pool.set_limit(self.limit, at);
        self.apply(None, fx);
        for g in 0..self.groups.len() {
            if !self.groups[g].left && self.groups[g].k == 0 {
                self.groups[g].k = 1;
                let (_, fx) = self.pool.set_group_limit(g, 1, at);
                self.apply(Some(g), fx);
            }
        }
        self.now += HOUR;
        for _ in 0..10_000 {
            self.settle();
            self.check();
            let permits: Vec<usize> = (0..self.tickets.len())
                .filter(|&t| self.tickets[t].1 != TicketState::Gone)
                .collect();
            let running = self.tasks_in(TaskState::Running);
            if running.is_empty() && permits.is_empty() {
                break;
            }
            for id in running {
                self.end(id, Outcome::Completed);
            }
            for t in permits {
                match self.tickets[t].1 {
                    TicketState::Permit => {
                        self.tickets[t].1 = TicketState::Gone;
                        let fx = self.pool.release(self.now);
                        self.apply(None, fx);
                    }
                    TicketState::Granted(_) => self.tickets[t].1 = TicketState::Permit,
                    _ => {}
                }
            }
        }
        self.settle();
        let pending = self.tasks_in(TaskState::Pending);
        if !pending.is_empty() {
            self.violations
                .push(format!("tasks {pending:?} never ran with caps open"));
        }
        if self.pool.taken() != 0 || self.pool.waiting() != 0 {
            self.violations.push(format!(
                "at the end {} slots taken, {} waiting",
                self.pool.taken(),
                self.pool.waiting()
            ));
        }
    }
}

fn cases() -> u32 {
    std::env::var("SCHEDGROUP_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256)
        .max(1)
        * 2
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn many_groups_and_acquirers_on_one_pool_follow_the_protocol(
        limit in 0usize..7,
        ks in prop::collection::vec(0usize..4, 2..5),
        budget in 1usize..3,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut h = Harness::new(limit, &ks, budget);
        for (n, op) in ops.iter().enumerate() {
            h.run(op);
            h.settle();
            h.check();
            prop_assert!(h.violations.is_empty(), "after step {n} ({op:?}): {:?}", h.violations);
        }
        h.drain();
        prop_assert!(h.violations.is_empty(), "at the end: {:?}", h.violations);
    }
}

/// A case the model found on a busy CI run (run 3 of 5 at `1bd1e18`): moving a group's due
/// head to later while the group is at its cap counted as "changes nothing", and left the
/// monitor's timer after the new head (invariant 4). No task started late (the runner whose end
/// frees the cap brings the timer up to date), but the invariant did not hold.
#[test]
fn regression_a_rescheduled_head_leaves_a_due_task_without_a_timer() {
    use Op::*;
    let ops = [
        Schedule(0, -2),
        Schedule(0, -2),
        Schedule(9751103642221716359, -2),
        Schedule(0, -2),
        SetK(4218774026021976113, 2),
        End(10345673061819765882, false),
        Schedule(1716044829527993084, 20),
        Schedule(265244415739883132, -2),
        Schedule(2128134352671368222, -2),
        Schedule(5241907808282956008, -2),
        Reschedule(4323668575012223633, 1),
        Reschedule(1047531754910116362, 20),
    ];
    let mut h = Harness::new(3, &[1, 0, 0], 1);
    for (n, op) in ops.iter().enumerate() {
        h.run(op);
        h.settle();
        h.check();
        assert!(
            h.violations.is_empty(),
            "after step {n} ({op:?}): {:?}",
            h.violations
        );
    }
}
