//! [`Throttle`]: how a controller steps a limit down when the machine is loaded and back up
//! when there is room, with a floor, a ceiling and a hold time between changes.

use std::time::Duration;

use tokio::time::Instant;

use crate::clock::far_future;

/// How [`Limiter::throttle_down`](crate::Limiter::throttle_down) and
/// [`throttle_up`](crate::Limiter::throttle_up) (and the same methods on a
/// [`Group`](crate::Group)) move a limit.
///
/// Down subtracts `step_down` but never goes below `floor`; up adds `step_up` but never goes
/// above `ceiling` (by default the limit when the throttle was set). A change requested less
/// than `hold` after the last change a throttle call *applied* is refused; a manual
/// `set_limit` (or `Group::set_max_concurrent`) does not start a hold. A limit of
/// `usize::MAX` means no cap, and a throttle never moves it
/// ([`ThrottleOutcome::Uncapped`]).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::{Limiter, Throttle, ThrottleOutcome};
/// use std::time::Duration;
///
/// let limiter = Limiter::new(10);
/// limiter.set_throttle(Throttle { step_down: 4, hold: Duration::from_secs(5), ..Throttle::default() });
/// assert_eq!(limiter.throttle_down(), ThrottleOutcome::Applied { from: 10, to: 6 });
/// assert!(matches!(limiter.throttle_down(), ThrottleOutcome::Holding { .. }));
/// tokio::time::advance(Duration::from_secs(5)).await;
/// assert_eq!(limiter.throttle_up(), ThrottleOutcome::Applied { from: 6, to: 7 });
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// How much a step down subtracts. Default 2.
    pub step_down: usize,
    /// How much a step up adds. Default 1.
    pub step_up: usize,
    /// Down never goes below this. Default 1.
    pub floor: usize,
    /// Up never goes above this; `None` means the limit when the throttle was set. Default
    /// `None`.
    pub ceiling: Option<usize>,
    /// How long after an applied change the next one is refused. Default 30 s.
    ///
    /// A hold longer than an [`Instant`] can reach (`Duration::MAX`, say) never ends: after the
    /// first applied change every change is refused, until a throttle is set again
    /// ([`Limiter::set_throttle`](crate::Limiter::set_throttle),
    /// [`Group::set_throttle`](crate::Group::set_throttle)).
    pub hold: Duration,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            step_down: 2,
            step_up: 1,
            floor: 1,
            ceiling: None,
            hold: Duration::from_secs(30),
        }
    }
}

/// What a throttle call did.
///
/// Non-exhaustive: a later release may add a reason to refuse, so a `match` needs a `_` arm
/// (or use [`is_applied`](ThrottleOutcome::is_applied)).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::{Limiter, ThrottleOutcome};
///
/// let limiter = Limiter::new(4);
/// let said = match limiter.throttle_down() {
///     ThrottleOutcome::Applied { from, to } => format!("{from} -> {to}"),
///     ThrottleOutcome::Holding { until } => format!("held for {:?}", until - tokio::time::Instant::now()),
///     refused => format!("refused: {refused:?}"),
/// };
/// assert_eq!(said, "4 -> 2");
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThrottleOutcome {
    /// The limit changed.
    Applied {
        /// The limit before.
        from: usize,
        /// The limit now.
        to: usize,
    },
    /// Refused: the limit is at (or below) the floor already.
    AtFloor {
        /// The limit, unchanged.
        limit: usize,
    },
    /// Refused: the limit is at (or above) the ceiling already.
    AtCeiling {
        /// The limit, unchanged.
        limit: usize,
    },
    /// Refused: the limit is `usize::MAX`, which means no cap (an uncapped [`Group`], a
    /// [`Limiter`] of `usize::MAX`), so there is no number to step from or to. Checked before
    /// the floor, the ceiling and the hold. Set a finite limit first
    /// ([`Group::set_max_concurrent`], [`Limiter::set_limit`]) for a throttle to move it.
    ///
    /// [`Group`]: crate::Group
    /// [`Limiter`]: crate::Limiter
    /// [`Group::set_max_concurrent`]: crate::Group::set_max_concurrent
    /// [`Limiter::set_limit`]: crate::Limiter::set_limit
    Uncapped,
    /// Refused: too soon after the last applied change.
    Holding {
        /// When a change will next be accepted; for a hold that never ends, an instant 30
        /// years from now (as tokio's `sleep(Duration::MAX)` uses), which a timer can be
        /// set to.
        until: Instant,
    },
}

impl ThrottleOutcome {
    /// Whether the limit changed.
    #[must_use]
    pub fn is_applied(&self) -> bool {
        matches!(self, ThrottleOutcome::Applied { .. })
    }
}

/// A `match` on [`ThrottleOutcome`] outside this crate that names every variant and has no `_`
/// arm does not compile: the enum is `#[non_exhaustive]`. The second example, the same match
/// with a `_` arm, compiles, so the first fails for that reason alone.
///
/// ```compile_fail,E0004
/// fn said(outcome: schedgroup::ThrottleOutcome) -> &'static str {
///     use schedgroup::ThrottleOutcome::*;
///     match outcome {
///         Applied { .. } => "applied",
///         AtFloor { .. } | AtCeiling { .. } | Uncapped | Holding { .. } => "refused",
///     }
/// }
/// ```
///
/// ```
/// fn said(outcome: schedgroup::ThrottleOutcome) -> &'static str {
///     use schedgroup::ThrottleOutcome::*;
///     match outcome {
///         Applied { .. } => "applied",
///         AtFloor { .. } | AtCeiling { .. } | Uncapped | Holding { .. } => "refused",
///         _ => "refused, for a reason added later",
///     }
/// }
/// ```
#[cfg(doctest)]
struct NonExhaustiveDoctests;

/// A throttle's configuration and memory.
#[derive(Debug, Clone)]
pub(crate) struct ThrottleState {
    config: Throttle,
    ceiling: usize,
    last_applied: Option<Instant>,
}

impl ThrottleState {
    /// A throttle for a limit that is `limit` now (the default ceiling).
    pub(crate) fn new(config: Throttle, limit: usize) -> Self {
        Self {
            config,
            ceiling: config.ceiling.unwrap_or(limit),
            last_applied: None,
        }
    }

    /// Steps `limit` down at `now`.
    pub(crate) fn down(&mut self, limit: usize, now: Instant) -> ThrottleOutcome {
        if limit == usize::MAX {
            return ThrottleOutcome::Uncapped;
        }
        if limit <= self.config.floor {
            return ThrottleOutcome::AtFloor { limit };
        }
        let to = limit
            .saturating_sub(self.config.step_down)
            .max(self.config.floor);
        self.apply(limit, to, now)
    }

    /// Steps `limit` up at `now`.
    pub(crate) fn up(&mut self, limit: usize, now: Instant) -> ThrottleOutcome {
        if limit == usize::MAX {
            return ThrottleOutcome::Uncapped;
        }
        if limit >= self.ceiling.min(usize::MAX - 1) {
            return ThrottleOutcome::AtCeiling { limit };
        }
        // A throttle steps between caps: it never lifts the cap altogether (`usize::MAX`), from
        // where no step down would be taken.
        let to = limit
            .saturating_add(self.config.step_up)
            .min(self.ceiling)
            .min(usize::MAX - 1);
        self.apply(limit, to, now)
    }

    fn apply(&mut self, from: usize, to: usize, now: Instant) -> ThrottleOutcome {
        if let Some(last) = self.last_applied {
            match last.checked_add(self.config.hold) {
                Some(until) if now < until => return ThrottleOutcome::Holding { until },
                Some(_) => {}
                // Beyond what an `Instant` can hold (a hold of `Duration::MAX`): for ever.
                None => {
                    return ThrottleOutcome::Holding {
                        until: far_future(now),
                    };
                }
            }
        }
        self.last_applied = Some(now);
        ThrottleOutcome::Applied { from, to }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn steps_respect_floor_ceiling_and_hold() {
        let t0 = Instant::now();
        let mut t = ThrottleState::new(Throttle::default(), 5);
        assert_eq!(t.down(5, t0), ThrottleOutcome::Applied { from: 5, to: 3 });
        assert_eq!(
            t.down(3, t0 + 29 * S),
            ThrottleOutcome::Holding { until: t0 + 30 * S }
        );
        assert_eq!(
            t.down(3, t0 + 30 * S),
            ThrottleOutcome::Applied { from: 3, to: 1 }
        );
        // At the floor, it says so even while holding.
        assert_eq!(
            t.down(1, t0 + 31 * S),
            ThrottleOutcome::AtFloor { limit: 1 }
        );
        assert_eq!(
            t.up(1, t0 + 59 * S),
            ThrottleOutcome::Holding { until: t0 + 60 * S }
        );
        let mut at = t0 + 60 * S;
        let mut limit = 1;
        for expected in 2..=5 {
            assert_eq!(
                t.up(limit, at),
                ThrottleOutcome::Applied {
                    from: limit,
                    to: expected
                }
            );
            limit = expected;
            at += 30 * S;
        }
        assert_eq!(
            t.up(5, at),
            ThrottleOutcome::AtCeiling { limit: 5 },
            "default ceiling: 5"
        );
    }

    #[test]
    fn a_step_down_never_passes_the_floor_and_up_never_the_ceiling() {
        let t0 = Instant::now();
        let config = Throttle {
            step_down: 10,
            step_up: 10,
            floor: 3,
            ceiling: Some(12),
            hold: Duration::ZERO,
        };
        let mut t = ThrottleState::new(config, 8);
        assert_eq!(t.down(8, t0), ThrottleOutcome::Applied { from: 8, to: 3 });
        assert_eq!(t.up(3, t0), ThrottleOutcome::Applied { from: 3, to: 12 });
        assert_eq!(t.up(12, t0), ThrottleOutcome::AtCeiling { limit: 12 });
        assert_eq!(t.down(2, t0), ThrottleOutcome::AtFloor { limit: 2 });
    }

    #[test]
    fn a_limit_of_usize_max_is_uncapped_and_never_stepped_or_held() {
        let t0 = Instant::now();
        let mut t = ThrottleState::new(Throttle::default(), usize::MAX);
        assert_eq!(t.down(usize::MAX, t0), ThrottleOutcome::Uncapped);
        assert_eq!(t.up(usize::MAX, t0), ThrottleOutcome::Uncapped);
        // Refusing started no hold: a finite limit steps at once.
        assert_eq!(t.down(8, t0), ThrottleOutcome::Applied { from: 8, to: 6 });
        // Even while holding, a limit of usize::MAX says it is uncapped.
        assert_eq!(t.down(usize::MAX, t0), ThrottleOutcome::Uncapped);
        // One below is a cap like any other.
        let mut t = ThrottleState::new(Throttle::default(), usize::MAX - 1);
        assert_eq!(
            t.down(usize::MAX - 1, t0),
            ThrottleOutcome::Applied {
                from: usize::MAX - 1,
                to: usize::MAX - 3
            }
        );
    }

    #[test]
    fn item2_a_hold_beyond_what_an_instant_can_hold_never_ends() {
        let t0 = Instant::now();
        let year = 86_400 * 365 * S;
        let hold = Throttle {
            hold: Duration::MAX,
            ..Throttle::default()
        };
        let mut t = ThrottleState::new(hold, 8);
        assert_eq!(t.down(8, t0), ThrottleOutcome::Applied { from: 8, to: 6 });
        for at in [t0, t0 + S, t0 + 100 * year] {
            match t.up(6, at) {
                ThrottleOutcome::Holding { until } => assert!(until >= at + 29 * year),
                outcome => panic!("{outcome:?} at {:?}", at - t0),
            }
        }
        // A hold that fits is still measured exactly.
        let mut t = ThrottleState::new(
            Throttle {
                hold: 200 * year,
                ..hold
            },
            8,
        );
        assert!(t.down(8, t0).is_applied());
        assert_eq!(
            t.down(6, t0 + 199 * year),
            ThrottleOutcome::Holding {
                until: t0 + 200 * year
            }
        );
        assert!(t.down(6, t0 + 200 * year).is_applied());
    }
}
