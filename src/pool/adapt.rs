//! The pool's side of an adaptive limit ([`crate::adaptive`]): a controller on a group's own
//! cap (kept by its member) or on a limiter's limit (kept by the pool), fed under the pool's
//! lock by each task's end and by overload signals. A change is applied to the limit at once,
//! like `set_limit`, and reported after unlocking: with the `tracing` feature, the pool keeps
//! the reports (`Pool::reports`) and the effects say so (`Effects::adapted`); whoever carries
//! them out takes the reports ([`Pool::take_reports`]) under one more lock. (A report in the
//! effects themselves would make them too large to move without a `memcpy` call, on every
//! task's end.)

use std::sync::Arc;

use crate::adaptive::{Adapted, Adaptive, AdaptiveState, Change, Controller, Sample};
use crate::task::Outcome;

use super::{Ctx, Fx, Member, MemberId, ONE, Pool};
use crate::observe;

/// How far behind a change a member's last reading of its clock must be for the member to
/// count as on another clock (see `Pool::limiter_changed`): a minute, in nanoseconds.
const OTHER_CLOCK: u64 = 60_000_000_000;

/// The most reports a pool keeps untaken.
const MAX_REPORTS: usize = 64;

/// A controller with the name its reports carry.
#[derive(Debug)]
pub(crate) struct Adapter {
    controller: Controller,
    name: Option<Arc<str>>,
}

impl Adapter {
    /// What the controller shows at `now`, when the limit is `limit`.
    pub(super) fn state(&self, now: u64, limit: usize) -> AdaptiveState {
        self.controller.state(now, limit)
    }

    fn report(&self, limiter: bool, change: Change) -> Adapted {
        Adapted {
            limiter,
            name: self.name.clone(),
            algorithm: self.controller.algorithm(),
            change,
        }
    }
}

impl<T: 'static, G> Member<T, G> {
    /// Lets the controller of its cap, if it has one, `decide` on the cap now; a change is
    /// applied at once (a new generation of the cap, as `set_cap` makes) and returned with
    /// its report.
    fn adapt_cap(
        &mut self,
        decide: impl FnOnce(&mut Controller, usize) -> Option<Change>,
    ) -> Option<(Change, Adapted)> {
        let adapter = self.adaptive.as_mut()?;
        let change = decide(&mut adapter.controller, self.cap.limit())?;
        let report = adapter.report(false, change);
        self.set_cap(change.to);
        Some((change, report))
    }
}

/// A task's end as the pool hands it to the controllers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct End {
    /// Its id in its group.
    pub(crate) task: u64,
    /// When it began, if it did (its group's clock).
    pub(crate) started: Option<u64>,
    /// When it ended (its group's clock).
    pub(crate) now: u64,
    pub(crate) run: u64,
    pub(crate) outcome: Outcome,
    /// Its output was classified as overload.
    pub(crate) overload: bool,
}

impl<T: 'static, G: Ctx, A> Pool<T, G, A> {
    /// Whether a task end of member `id` feeds a controller.
    pub(super) fn adapts(&self, id: MemberId) -> bool {
        self.adaptive.is_some()
            || self
                .members
                .get(id)
                .and_then(Option::as_ref)
                .is_some_and(|m| m.adaptive.is_some())
    }

    /// Keeps `report` for the caller to take after unlocking, if reports are made at all.
    fn keep(&mut self, report: Adapted) {
        if observe::REPORTS_ADAPTED {
            // Taken by whoever carries out the effects that say so; the bound is for a caller
            // that never does (none should), so that the list cannot grow for ever.
            if self.reports.len() >= MAX_REPORTS {
                self.reports.remove(0);
            }
            self.reports.push(report);
        }
    }

    /// The reports kept since they were last taken (see the module docs).
    pub(crate) fn take_reports(&mut self) -> Vec<Adapted> {
        std::mem::take(&mut self.reports)
    }

    /// Feeds the end of a task of member `id` to the controllers, before its slots are freed
    /// (so `reached` sees the limit as the task saw it), and applies their changes. Returns
    /// whether a change was kept to report, and whether a limit went up.
    pub(super) fn adapt_on_end(&mut self, id: MemberId, end: End) -> (bool, bool) {
        if end.started.is_none() {
            return (false, false);
        }
        if end.outcome == super::Outcome::Cancelled {
            // A task stopped from outside says nothing of the backend.
            return (false, false);
        }
        let overload = end.overload || end.outcome == super::Outcome::Panicked;
        let sample = |reached, current, epoch| Sample {
            now: end.now,
            run: end.run,
            overload,
            reached,
            current,
            epoch,
        };
        let (mut group_report, mut limiter_report) = (None, None);
        let mut raised = false;
        let limit_gen = self.limit_gen;
        let member = self.member(id);
        let limiter_epoch = member.limiter_epoch;
        // Under which cap and limit it started (a task not in the table tells of neither).
        let (k_current, current) = member.running.get(&end.task).map_or((false, false), |run| {
            (run.k_gen == member.k_gen, run.limit_gen == limit_gen)
        });
        if member.adaptive.is_some() {
            let frontier = member.frontier;
            let due = member.queue.peek_deadline().is_some_and(|d| d <= frontier);
            let reached = member.cap.running() >= member.cap.limit() && due;
            let sample = sample(reached, k_current, None);
            if let Some((change, report)) =
                member.adapt_cap(|controller, limit| controller.sample(limit, sample))
            {
                raised |= change.to > change.from;
                group_report = Some(report);
            }
        }
        // The limiter's own: all of its slots taken, and someone in line.
        let reached = self.taken >= self.limit && !self.line.is_empty();
        if let Some(adapter) = self.adaptive.as_mut() {
            let sample = sample(reached, current, Some(limiter_epoch));
            if let Some(change) = adapter.controller.sample(self.limit, sample) {
                self.limit = change.to;
                raised |= change.to > change.from;
                limiter_report = Some(adapter.report(true, change));
                self.limiter_changed(end.now);
            }
        }
        let reported = group_report.is_some() || limiter_report.is_some();
        group_report
            .into_iter()
            .chain(limiter_report)
            .for_each(|r| self.keep(r));
        (reported && observe::REPORTS_ADAPTED, raised)
    }

    /// Sets (or, with `None`, removes) the controller of member `id`'s own cap at `now` (its
    /// clock); `name` is the group's. A cap outside the controller's floor and ceiling is
    /// brought within them at once.
    pub(crate) fn set_group_adaptive(
        &mut self,
        id: MemberId,
        adaptive: Option<(Adaptive, Option<Arc<str>>)>,
        now: u64,
        at: u64,
    ) -> (usize, usize, Fx<T, G, A>) {
        let member = self.member(id);
        let from = member.cap.limit();
        member.adaptive = adaptive.map(|(config, name)| {
            let (limit, controller) = Controller::start(config, from, now);
            member.set_cap(limit);
            Box::new(Adapter { controller, name })
        });
        let to = member.cap.limit();
        (from, to, self.settle(id, Some(id), at, self.budget))
    }

    /// Sets (or removes) the controller of the pool's limit at `now`; `name` is the limiter's.
    pub(crate) fn set_adaptive(
        &mut self,
        adaptive: Option<(Adaptive, Option<Arc<str>>)>,
        now: u64,
    ) -> (usize, usize, Fx<T, G, A>) {
        let from = self.limit;
        self.adaptive = adaptive.map(|(config, name)| {
            let (limit, controller) = Controller::start(config, from, now);
            self.limit = limit;
            Box::new(Adapter { controller, name })
        });
        self.limiter_changed(now);
        (from, self.limit, self.hand_out(self.budget, now))
    }

    /// Overload was signalled for member `id` at `now` (its clock): its own cap's controller
    /// and its limiter's hear of it. Cuts start nothing; the effects only report.
    /// `caller`: the task that signals, if one does, as `crate::id::current` names it (its
    /// id and its group's tag): under which limits it started tells which it speaks of.
    pub(crate) fn overloaded(
        &mut self,
        id: MemberId,
        now: u64,
        at: u64,
        caller: Option<(u64, usize)>,
    ) -> Fx<T, G, A> {
        let limit_gen = self.limit_gen;
        let member = self.member(id);
        // Only a task of this very group is looked up: ids are per group.
        let run = caller
            .filter(|&(_, tag)| tag == member.ctx.tag())
            .and_then(|(task, _)| member.running.get(&task).copied());
        let k_current = run.map(|run| run.k_gen == member.k_gen);
        let limiter_epoch = member.limiter_epoch;
        let report = member
            .adapt_cap(|controller, limit| controller.signal(limit, now, None, k_current))
            .map(|(_, report)| report);
        // Before the settle, which sees both limits as they are now.
        let current = run.map(|run| run.limit_gen == limit_gen);
        let limiter = self.signal_limiter(now, Some(limiter_epoch), current);
        let mut fx = self.settle(id, Some(id), at, ONE);
        let reported = report.is_some() || limiter;
        if let Some(report) = report {
            self.keep(report);
        }
        fx.adapted = reported && observe::REPORTS_ADAPTED;
        fx
    }

    /// Overload was signalled to the pool's controller at `now` by `caller`, as in
    /// [`overloaded`](Pool::overloaded) (a task of any of its groups). Returns whether it
    /// changed the limit (and kept a report of it). A cut starts nothing.
    pub(crate) fn limiter_overloaded(&mut self, now: u64, caller: Option<(u64, usize)>) -> bool {
        // The caller's group, if it is one of this pool's: O(members), on a signal only.
        let limit_gen = self.limit_gen;
        let found = caller.and_then(|(task, tag)| {
            let member = self.members.iter().flatten().find(|m| m.ctx.tag() == tag)?;
            let run = member
                .running
                .get(&task)
                .map(|run| run.limit_gen == limit_gen);
            Some((member.limiter_epoch, run))
        });
        let (epoch, current) = found.map_or((None, None), |(epoch, run)| (Some(epoch), run));
        self.signal_limiter(now, epoch, current)
    }

    /// Overload was signalled to the pool's controller at `now`; `epoch`, when the limit last
    /// changed on the clock `now` was read on, if known; `current`, whether the signalling
    /// task started under the limit now, if that is known. Returns whether it changed the
    /// limit (and kept a report of it).
    fn signal_limiter(&mut self, now: u64, epoch: Option<u64>, current: Option<bool>) -> bool {
        let Some(adapter) = self.adaptive.as_mut() else {
            return false;
        };
        let Some(change) = adapter.controller.signal(self.limit, now, epoch, current) else {
            return false;
        };
        self.limit = change.to;
        let report = adapter.report(true, change);
        self.keep(report);
        self.limiter_changed(now);
        true
    }

    /// The limiter's limit changed at `now` (the clock of whoever changed it): a new
    /// generation, which tasks started from now on carry (`Run::limit_gen`); and, for the hold and
    /// for signals from outside any task, each member's time of the change on its own clock.
    /// Its groups share one clock, unless they are on runtimes whose clocks differ (tokio's
    /// paused clock, in tests): a member whose last reading of its clock is ahead of `now`, or
    /// more than [`OTHER_CLOCK`] behind it, is taken to be on another clock, and judged from
    /// that reading. O(members), on a change of limit only.
    pub(super) fn limiter_changed(&mut self, now: u64) {
        self.limit_gen = self.limit_gen.wrapping_add(1);
        if self.adaptive.is_some() {
            for member in self.members.iter_mut().flatten() {
                let other =
                    member.frontier > now || member.frontier.saturating_add(OTHER_CLOCK) < now;
                member.limiter_epoch = if other { member.frontier } else { now };
            }
        }
    }
}
