//! Single transitions of the protocol, one rule each.

use super::*;

/// A task as the tests store it and start it: a name (or an id).
#[derive(Debug)]
pub(super) struct Job<N>(pub(super) N);

impl<N> Job<N> {
    pub(super) fn new(name: N) -> Self {
        Self(name)
    }
}

impl<N: Send + 'static> Pending<Job<N>> for Job<N> {
    fn start(self) -> Self {
        self
    }
}

/// A second task type, stored in a lane of its own, that starts as a [`Job`].
#[derive(Debug)]
pub(super) struct Other<N>(pub(super) N);

impl<N: Send + 'static> Pending<Job<N>> for Other<N> {
    fn start(self) -> Job<N> {
        Job(self.0)
    }
}

/// A group as effects name it: its id.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tag(pub(super) MemberId);

impl Ctx for Tag {
    type Strong = MemberId;
    fn strong(&self) -> Option<MemberId> {
        Some(self.0)
    }
    fn tag(&self) -> usize {
        self.0 + 1
    }
}

type P = Pool<Job<&'static str>, Tag, &'static str>;
type E = Fx<Job<&'static str>, Tag, &'static str>;

/// A pool of `limit` with groups of the given caps, every group's clock at `now`.
fn pool(limit: usize, ks: &[usize], now: u64) -> P {
    let mut p = P::new(limit, true);
    for (i, &k) in ks.iter().enumerate() {
        assert_eq!(p.join(Tag(i), k, 0), i);
        let (_, fx) = p.step(i, now);
        assert!(fx.is_empty());
    }
    p
}

fn schedule(p: &mut P, g: MemberId, deadline: u64, name: &'static str) -> (Key, E) {
    let (key, fx) = p
        .schedule(g, deadline, Job::new(name), false, 0)
        .ok()
        .unwrap();
    (key, fx.unwrap_or_else(Effects::new))
}

/// Names of every task started by `fx`, the caller's first.
fn started(fx: &E) -> Vec<&'static str> {
    let own = fx.starts.iter().map(|j| j.task.0);
    let others = fx.others.iter().filter_map(|(_, a)| match a {
        Action::Start(j) => Some(j.task.0),
        Action::Wake(_) => None,
    });
    own.chain(others).collect()
}

#[test]
fn a_freed_slot_goes_to_the_earliest_due_head_among_groups() {
    let mut p = pool(1, &[2, 2, 2], 100);
    let (_, fx) = schedule(&mut p, 0, 50, "a1");
    assert_eq!(started(&fx), ["a1"]);
    for (g, d, name) in [(1, 30, "b"), (2, 10, "c"), (0, 40, "a2")] {
        let (_, fx) = schedule(&mut p, g, d, name);
        assert!(started(&fx).is_empty());
    }
    assert_eq!(p.waiting(), 3);
    let fx = p.finish(
        0,
        Ran {
            id: 0,
            at: None,
            overload: false,
        },
        Outcome::Completed,
        false,
        Some(100),
        0,
    );
    assert_eq!(started(&fx), ["c"], "10 before 30 and 40");
    let fx = p.finish(
        2,
        Ran {
            id: 0,
            at: None,
            overload: false,
        },
        Outcome::Completed,
        false,
        Some(100),
        0,
    );
    assert_eq!(started(&fx), ["b"]);
    let fx = p.finish(
        1,
        Ran {
            id: 0,
            at: None,
            overload: false,
        },
        Outcome::Completed,
        false,
        Some(100),
        0,
    );
    assert_eq!(started(&fx), ["a2"]);
    assert_eq!((p.taken(), p.waiting()), (1, 0));
}

#[test]
fn a_group_that_keeps_its_slot_stays_in_line_for_its_other_due_tasks() {
    // Defect 1: 2 groups of k = 3 on a pool of 4, all due.
    let mut p = pool(4, &[3, 3], 100);
    for n in 0..6 {
        let _ = schedule(&mut p, 0, 10 + n, "a");
        let _ = schedule(&mut p, 1, 10 + n, "b");
    }
    assert_eq!(p.taken(), 4);
    let fx = p.finish(
        0,
        Ran {
            id: 0,
            at: None,
            overload: false,
        },
        Outcome::Completed,
        false,
        Some(100),
        0,
    );
    assert_eq!(started(&fx).len(), 1);
    assert_eq!(p.taken(), 4, "the slot went straight to due work");
    let (_, fx) = p.set_limit(6, 0);
    assert_eq!(started(&fx).len(), 2);
    assert_eq!(p.taken(), 6, "both groups at k = 3");
    assert_eq!(p.waiting(), 0, "at their own caps, neither waits");
}

#[test]
fn cancelling_a_waiting_head_moves_its_group_to_its_next_head_or_out_of_line() {
    // Defects 3 and 4.
    let mut p = pool(1, &[1, 1, 1], 100);
    let _ = schedule(&mut p, 2, 0, "running");
    let (head, _) = schedule(&mut p, 0, 5, "a-head");
    let _ = schedule(&mut p, 0, 50, "a-next");
    let _ = schedule(&mut p, 1, 10, "b");
    let (job, fx) = p.cancel_task(0, head, 0).unwrap();
    assert_eq!(job.0, "a-head");
    assert!(fx.is_none_or(|fx| fx.is_empty()));
    let fx = p.finish(
        2,
        Ran {
            id: 0,
            at: None,
            overload: false,
        },
        Outcome::Completed,
        false,
        Some(100),
        0,
    );
    assert_eq!(started(&fx), ["b"], "10 before the next head, 50");
    let fx = p.finish(
        1,
        Ran {
            id: 0,
            at: None,
            overload: false,
        },
        Outcome::Completed,
        false,
        Some(100),
        0,
    );
    assert_eq!(started(&fx), ["a-next"]);

    // A head cancelled with nothing else due: the group leaves the line, and its monitor is
    // woken to set a timer for what is left.
    let mut p = pool(1, &[1, 1], 100);
    let _ = schedule(&mut p, 1, 0, "running");
    let (head, _) = schedule(&mut p, 0, 5, "due");
    let _ = schedule(&mut p, 0, 500, "later");
    let _ = p.step(0, 100);
    assert_eq!(p.waiting(), 1);
    let (_, fx) = p.cancel_task(0, head, 0).unwrap();
    assert_eq!(p.waiting(), 0);
    assert_eq!(fx.unwrap().wake, Wake::Notify);
    assert_eq!(p.step(0, 100).0, Step::Park(Some(500)));
}

#[test]
fn due_is_judged_on_the_groups_own_clock_whoever_frees_the_slot() {
    // Defect 5: group 1's clock reads 100; a task due at 150 must not start when group 0,
    // whose clock reads 1_000, frees the slot.
    let mut p = pool(1, &[1, 1], 100);
    let _ = schedule(&mut p, 0, 0, "running");
    let _ = schedule(&mut p, 1, 150, "later");
    let fx = p.finish(
        0,
        Ran {
            id: 0,
            at: None,
            overload: false,
        },
        Outcome::Completed,
        false,
        Some(1_000),
        1_000,
    );
    assert!(started(&fx).is_empty());
    assert_eq!(p.taken(), 0);
    let (step, fx) = p.step(1, 150);
    assert_eq!((step, started(&fx)), (Step::Exit, vec!["later"]));
}

#[test]
fn equal_deadlines_take_turns_between_groups() {
    let mut p = pool(1, &[1, 1], 100);
    let _ = schedule(&mut p, 0, 10, "a1");
    let _ = schedule(&mut p, 0, 10, "a2");
    let _ = schedule(&mut p, 1, 10, "b1");
    let _ = schedule(&mut p, 1, 10, "b2");
    let mut order = vec!["a1"];
    let mut g = 0;
    for _ in 0..3 {
        let fx = p.finish(
            g,
            Ran {
                id: 0,
                at: None,
                overload: false,
            },
            Outcome::Completed,
            false,
            Some(100),
            0,
        );
        let name = started(&fx)[0];
        g = usize::from(name.starts_with('b'));
        order.push(name);
    }
    assert_eq!(order, ["a1", "b1", "a2", "b2"]);
}

#[test]
fn acquire_waits_in_the_same_line_by_the_time_it_called() {
    let mut p = pool(1, &[2], 100);
    let _ = schedule(&mut p, 0, 0, "running");
    let _ = schedule(&mut p, 0, 60, "due-60");
    let _ = p.step(0, 100);
    assert_eq!(p.acquire("early", 50), Err((50, 1)));
    let fx = p.finish(
        0,
        Ran {
            id: 0,
            at: None,
            overload: false,
        },
        Outcome::Completed,
        false,
        Some(100),
        0,
    );
    assert_eq!(fx.grants, ["early"]);
    assert!(started(&fx).is_empty());
    // Dropped before it woke: the slot is handed on, not lost.
    let fx = p.abandon((50, 1), 0).unwrap();
    assert_eq!(started(&fx), ["due-60"]);
    assert_eq!(p.taken(), 1);
}

#[test]
fn lowering_a_limit_aborts_nothing_and_raising_it_serves_the_line() {
    let mut p = pool(3, &[5], 100);
    for _ in 0..6 {
        let _ = schedule(&mut p, 0, 0, "t");
    }
    assert_eq!(p.taken(), 3);
    let (old, fx) = p.set_limit(1, 0);
    assert_eq!((old, fx.is_empty()), (3, true));
    let fx = p.finish(
        0,
        Ran {
            id: 0,
            at: None,
            overload: false,
        },
        Outcome::Completed,
        false,
        Some(100),
        0,
    );
    assert!(started(&fx).is_empty(), "2 of 1 still run");
    let fx = p.finish(
        0,
        Ran {
            id: 0,
            at: None,
            overload: false,
        },
        Outcome::Completed,
        false,
        Some(100),
        0,
    );
    assert!(started(&fx).is_empty(), "1 of 1 runs");
    let (_, fx) = p.set_limit(4, 0);
    assert_eq!(started(&fx).len(), 3);
    assert_eq!((p.taken(), p.waiting()), (4, 0));
}

#[test]
fn a_cancelled_group_leaves_the_line_and_its_running_tasks_hand_their_slots_on() {
    // Defect 7.
    let mut p = pool(1, &[2, 1], 100);
    let _ = schedule(&mut p, 0, 0, "a-running");
    let _ = schedule(&mut p, 0, 0, "a-due");
    let _ = schedule(&mut p, 1, 5, "b");
    assert_eq!(p.waiting(), 2);
    let (drained, wake) = p.cancel_group(0, false);
    assert_eq!((drained.len(), wake), (1, Wake::Notify));
    assert_eq!(p.waiting(), 1);
    let fx = p.finish(
        0,
        Ran {
            id: 0,
            at: None,
            overload: false,
        },
        Outcome::Cancelled,
        false,
        Some(100),
        0,
    );
    assert_eq!(started(&fx), ["b"]);
    assert!(p.schedule(0, 0, Job::new("late"), false, 0).is_err());
}

#[test]
fn a_private_burst_is_started_a_budget_at_a_time_by_the_monitor() {
    let mut p = P::new(usize::MAX, false);
    assert_eq!(p.join(Tag(0), 0, 0), 0);
    for _ in 0..2 * BUDGET + 10 {
        let _ = schedule(&mut p, 0, 0, "t");
    }
    let (step, fx) = p.step(0, 100);
    assert_eq!((step, fx.starts.len()), (Step::Park(None), 0), "k = 0");
    let (_, fx) = p.set_group_limit(0, usize::MAX, 0);
    assert_eq!(
        (fx.starts.len(), fx.wake, fx.more),
        (BUDGET, Wake::Notify, false)
    );
    let (step, fx) = p.step(0, 100);
    assert_eq!((step, fx.starts.len()), (Step::Again, BUDGET));
    let (step, fx) = p.step(0, 100);
    assert_eq!((step, fx.starts.len()), (Step::Exit, 10));
    assert_eq!(p.waiting(), 0, "a private pool has no line");
}

#[test]
fn a_shared_burst_is_continued_by_the_caller_not_by_the_first_group_in_line() {
    // Group 0 is first in line with more due work than a batch; its runtime may not be
    // running, so whoever raised its cap continues, and group 1 is served without it.
    let mut p = pool(100, &[0, 5], 100).with_budget(2);
    for _ in 0..5 {
        let _ = schedule(&mut p, 0, 10, "a");
    }
    let (step, _) = p.step(0, 100);
    assert_eq!(step, Step::Park(None), "due, at its own cap of 0");
    let (_, fx) = p.set_group_limit(0, usize::MAX, 0);
    assert_eq!(started(&fx), ["a", "a"]);
    assert!(fx.more, "the caller continues");
    assert_eq!(fx.wake, Wake::Nothing, "group 0's monitor is not asked to");
    assert!(fx.others.is_empty());
    // Meanwhile group 1 lines up behind it: its schedule serves the first in line, a batch
    // of one, and continues too.
    let (_, fx) = schedule(&mut p, 1, 20, "b");
    assert_eq!((started(&fx), fx.more), (vec!["a"], true));
    let fx = p.resume(0);
    assert_eq!((started(&fx), fx.more), (vec!["a", "a"], true));
    let fx = p.resume(0);
    assert_eq!((started(&fx), fx.more), (vec!["b"], false));
    assert_eq!((p.taken(), p.waiting()), (6, 0));
}
