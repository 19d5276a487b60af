//! The pool's side of an adaptive limit ([`crate::adaptive`]): a controller on a group's own
//! cap (kept by its member) or on a limiter's limit (kept by the pool), fed under the pool's
//! lock by each task's end and by overload signals. A change is applied to the limit at once,
//! like `set_limit`, and reported after unlocking ([`Effects::adapted`]).

use std::sync::Arc;

use crate::adaptive::{Adapted, Adaptive, AdaptiveState, Change, Controller, Sample};
use crate::task::Outcome;

use super::{Ctx, Fx, MemberId, ONE, Pool};

/// A controller with the name its reports carry.
#[derive(Debug)]
pub(crate) struct Adapter {
    controller: Controller,
    name: Option<Arc<str>>,
}

impl Adapter {
    /// What the controller shows at `now`.
    pub(super) fn state(&self, now: u64) -> AdaptiveState {
        self.controller.state(now)
    }

    fn adapted(&self, limiter: bool, change: Change) -> Box<Adapted> {
        Box::new(Adapted {
            limiter,
            name: self.name.clone(),
            algorithm: self.controller.algorithm(),
            change,
        })
    }
}

/// A task's end as the pool hands it to the controllers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct End {
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

    /// Feeds the end of a task of member `id` to the controllers, before its slots are freed
    /// (so `reached` sees the limit as the task saw it), and applies their changes. Returns
    /// the report of the change, if any, and whether a limit went up.
    pub(super) fn adapt_on_end(&mut self, id: MemberId, end: End) -> (Option<Box<Adapted>>, bool) {
        let Some(started) = end.started else {
            return (None, false);
        };
        if end.outcome == super::Outcome::Cancelled {
            // A task stopped from outside says nothing of the backend.
            return (None, false);
        }
        let overload = end.overload || end.outcome == super::Outcome::Panicked;
        let sample = |reached| Sample {
            now: end.now,
            started,
            run: end.run,
            overload,
            reached,
        };
        let mut report = None;
        let mut raised = false;
        let member = self.member(id);
        let frontier = member.frontier;
        let due = member.queue.peek_deadline().is_some_and(|d| d <= frontier);
        let reached = member.cap.running() >= member.cap.limit() && due;
        if let Some(adapter) = member.adaptive.as_mut() {
            if let Some(change) = adapter
                .controller
                .sample(member.cap.limit(), sample(reached))
            {
                member.cap.set_limit(change.to);
                raised |= change.to > change.from;
                report = Some(adapter.adapted(false, change));
            }
        }
        let reached = self.taken >= self.limit && !self.line.is_empty() || reached;
        if let Some(adapter) = self.adaptive.as_mut() {
            if let Some(change) = adapter.controller.sample(self.limit, sample(reached)) {
                self.limit = change.to;
                raised |= change.to > change.from;
                // A limiter's change is the one worth reporting if both changed.
                report = Some(adapter.adapted(true, change));
            }
        }
        (report, raised)
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
            member.cap.set_limit(limit);
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
        (from, self.limit, self.hand_out(self.budget, now))
    }

    /// Overload was signalled for member `id` at `now` (its clock): its own cap's controller
    /// and its limiter's hear of it. Cuts start nothing; the effects only report.
    pub(crate) fn overloaded(&mut self, id: MemberId, now: u64, at: u64) -> Fx<T, G, A> {
        let member = self.member(id);
        let mut report = None;
        if let Some(adapter) = member.adaptive.as_mut() {
            if let Some(change) = adapter.controller.signal(member.cap.limit(), now) {
                member.cap.set_limit(change.to);
                report = Some(adapter.adapted(false, change));
            }
        }
        let mut fx = self.settle(id, Some(id), at, ONE);
        if let Some(limiter) = self.limiter_overloaded(now) {
            report = Some(limiter);
        }
        fx.adapted = report;
        fx
    }

    /// Overload was signalled to the pool's controller at `now`.
    pub(crate) fn limiter_overloaded(&mut self, now: u64) -> Option<Box<Adapted>> {
        let adapter = self.adaptive.as_mut()?;
        let change = adapter.controller.signal(self.limit, now)?;
        self.limit = change.to;
        Some(adapter.adapted(true, change))
    }
}
