//! Deadlines as `u64` keys: nanoseconds from a process-wide base, order-preserving, saturating.
//!
//! One base for the whole process makes keys from different groups comparable, which a
//! limiter shared by several groups needs to pick the earliest deadline among them.
//!
//! The heap stores these instead of `Instant` (16 bytes) to keep an entry at 16 bytes. A key is
//! an `i64` offset from `base` with the sign bit flipped, so deadlines before the base still
//! sort before later ones, and `u64` comparison is time order. Offsets saturate at about
//! ±292 years: a deadline further out than that waits for 292 years, which is the same thing.
//! Only the paused clock gets there: once it is moved past 292 years from the base, every
//! deadline is due at once (the keys have stopped moving), however far it was, and only a
//! delay of `Duration::MAX`, which is [`NEVER`], still never falls due.

use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;

const SIGN: u64 = 1 << 63;

/// The latest key: a deadline at it never falls due (see [`Clock::now`]).
pub(crate) const NEVER: u64 = u64::MAX;

/// Converts between `Instant`s and queue keys.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base: Instant,
}

impl Clock {
    pub(crate) fn new(base: Instant) -> Self {
        Self { base }
    }

    /// The clock every group and limiter uses: based on the first instant the crate read.
    pub(crate) fn process() -> Self {
        static BASE: OnceLock<std::time::Instant> = OnceLock::new();
        Self::new(Instant::from_std(
            *BASE.get_or_init(std::time::Instant::now),
        ))
    }

    /// The key of `at`. Never [`NEVER`]: an instant, however late, is a time that comes.
    #[inline]
    pub(crate) fn key(&self, at: Instant) -> u64 {
        let offset = match at.checked_duration_since(self.base) {
            Some(after) => saturating_nanos(after),
            None => -saturating_nanos(self.base.duration_since(at)),
        };
        encode(offset).min(NEVER - 1)
    }

    /// The key of tokio's now. It stays short of [`NEVER`], so that a task at it (a delay of
    /// `Duration::MAX`) never falls due: it waits until it is moved or cancelled, as
    /// `Group::delay` says.
    pub(crate) fn now(&self) -> u64 {
        self.key(Instant::now())
    }

    /// The key of `delay` after now; never overflows.
    pub(crate) fn after(&self, delay: Duration) -> u64 {
        if delay == Duration::MAX {
            return NEVER;
        }
        // A finite delay is a time that comes, if only when the keys run out (292 years).
        encode(decode(self.now()).saturating_add(saturating_nanos(delay))).min(NEVER - 1)
    }

    /// The instant of `key`, for the monitor's timer. A key later than `Instant` can hold maps
    /// to [`far_future`] (the monitor re-checks the key when it wakes); one earlier than it can
    /// hold maps to the base, which is in the past too.
    pub(crate) fn instant(&self, key: u64) -> Instant {
        let offset = decode(key);
        let magnitude = Duration::from_nanos(offset.unsigned_abs());
        if offset >= 0 {
            self.base
                .checked_add(magnitude)
                .unwrap_or_else(|| far_future(self.base))
        } else {
            self.base.checked_sub(magnitude).unwrap_or(self.base)
        }
    }
}

/// What stands for "never" where an `Instant` is needed and the real one is beyond what
/// `Instant` can hold: 30 years after `from`, the stand-in tokio's own `sleep(Duration::MAX)`
/// uses. Far enough that no timer or test reaches it; near enough that tokio can still round it
/// up to its next millisecond (an instant at the very end of the range makes tokio's timer
/// panic). `from` itself if even that is not representable.
pub(crate) fn far_future(from: Instant) -> Instant {
    const THIRTY_YEARS: Duration = Duration::from_secs(86_400 * 365 * 30);
    from.checked_add(THIRTY_YEARS).unwrap_or(from)
}

/// `d` in nanoseconds, saturating at `i64::MAX` (292 years). Integer math rather than
/// `as_nanos()`'s `u128`: this is on the schedule path.
#[inline]
fn saturating_nanos(d: Duration) -> i64 {
    const MAX_SECS: u64 = (i64::MAX as u64) / 1_000_000_000;
    if d.as_secs() >= MAX_SECS {
        return i64::MAX;
    }
    // Both terms fit: secs < 9.2e9, so secs * 1e9 + 1e9 < i64::MAX.
    (d.as_secs() * 1_000_000_000 + u64::from(d.subsec_nanos())) as i64
}

#[inline]
fn encode(offset: i64) -> u64 {
    (offset as u64) ^ SIGN
}

fn decode(key: u64) -> i64 {
    (key ^ SIGN) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_preserve_time_order_around_the_base() {
        let base = Instant::now();
        let clock = Clock::new(base);
        let before = base.checked_sub(Duration::from_secs(5)).unwrap();
        let keys = [
            clock.key(before),
            clock.key(base),
            clock.key(base + Duration::from_nanos(1)),
            clock.key(base + Duration::from_secs(3600)),
        ];
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(clock.instant(keys[0]), before);
        assert_eq!(clock.instant(keys[3]), base + Duration::from_secs(3600));
    }

    #[test]
    fn nanosecond_conversion_is_exact_below_the_cap_and_saturates_above() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::new(1, 999_999_999),
            Duration::new(9_223_372_035, 999_999_999),
        ] {
            assert_eq!(saturating_nanos(d) as u128, d.as_nanos());
        }
        assert_eq!(saturating_nanos(Duration::new(9_223_372_036, 0)), i64::MAX);
        assert_eq!(saturating_nanos(Duration::MAX), i64::MAX);
    }

    #[test]
    fn huge_delays_saturate_instead_of_panicking() {
        let clock = Clock::new(Instant::now());
        let max = clock.after(Duration::MAX);
        assert_eq!(max, u64::MAX);
        assert!(clock.after(Duration::from_secs(86_400 * 365 * 100)) < max);
        // A representable instant comes back for the timer.
        let _ = clock.instant(max);
        let _ = clock.instant(0);
    }

    /// The end of the range an `Instant` can hold, found from `from` by steps of `step`
    /// (`checked_add` or `checked_sub`), within a second.
    fn edge(from: Instant, step: fn(Instant, Duration) -> Option<Instant>) -> Instant {
        let mut at = from;
        let mut chunk = Duration::MAX;
        while chunk >= Duration::from_secs(1) {
            match step(at, chunk) {
                Some(next) => at = next,
                None => chunk /= 2,
            }
        }
        at
    }

    #[test]
    fn item2_keys_beyond_what_an_instant_can_hold_map_to_the_right_side_of_now() {
        let ten = Duration::from_secs(10);
        // Ten seconds after the earliest instant there is: a key 20 s before the base is
        // in the past, and so must be its instant.
        let earliest = edge(Instant::now(), |at, d| at.checked_sub(d));
        let clock = Clock::new(earliest + ten);
        assert_eq!(clock.instant(clock.key(earliest)), earliest);
        assert!(clock.instant(encode(-20_000_000_000)) <= clock.base);
        assert!(clock.instant(0) <= clock.base);
        // Ten seconds before the latest: a key 20 s after the base is not in the past.
        let latest = edge(Instant::now(), |at, d| at.checked_add(d));
        let clock = Clock::new(latest.checked_sub(ten).unwrap());
        assert_eq!(clock.instant(clock.key(latest)), latest);
        assert!(clock.instant(encode(20_000_000_000)) >= clock.base);
        assert!(clock.instant(u64::MAX) >= clock.base);
        // Where there is room, "never" is 30 years out.
        let now = Instant::now();
        assert_eq!(
            far_future(now),
            now + Duration::from_secs(86_400 * 365 * 30)
        );
        assert_eq!(far_future(latest), latest);
    }
}
