//! Where a [`TaskHandle`](crate::TaskHandle) finds its group: a process-wide table of live
//! groups by [`Seat`], so that a handle holds no reference count.
//!
//! A handle used to own a clone of its group's `Arc`: an atomic increment for every schedule
//! and a decrement when the handle was dropped, most often at once. Those two locked
//! instructions were 12 of a schedule's 55 ns (issue 13). A handle now holds its group's seat,
//! plain data, and looks the group up when it is used: a lock of one of [`SHARDS`] shards and a
//! `Weak::upgrade`. Using a handle costs those instead; scheduling costs nothing for it.
//!
//! A group that is gone (its last `Arc` dropped: no handle of the caller's, nothing pending or
//! running) is not found, which is what the handle's methods would have said of it anyway: its
//! tasks have all ended.
//!
//! # Invariants
//!
//! 1. Serials are handed out once each, in increasing order (a `u64`: centuries at a billion
//!    groups a second), so a seat whose group left can never reach the group that takes its
//!    place: the slot's serial differs.
//! 2. A slot holds a group's `Weak` from [`enter`] to [`leave`], with the group's serial; a
//!    vacant slot holds serial 0 and is on its shard's free list.
//!
//! # Lock ordering
//!
//! A shard's lock is a leaf: nothing else is locked while it is held, and no user code runs
//! under it (an upgraded `Arc` is dropped by the caller, after the lock).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// How many shards the table has: handles of groups in different shards never share a lock.
const SHARDS: usize = 16;

/// Where one group sits in the table: a handle's way back to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seat {
    /// The group's serial, unique in the process (invariant 1); its shard is `serial % SHARDS`.
    serial: u64,
    /// Its slot in the shard.
    slot: u32,
}

/// A table of `T`s held weakly, by seat.
pub(crate) struct Directory<T> {
    shards: [Mutex<Shard<T>>; SHARDS],
    /// The next serial (invariant 1); 0 is never handed out, it marks a vacant slot.
    next: AtomicU64,
}

struct Shard<T> {
    slots: Vec<(u64, Weak<T>)>,
    /// Vacant slots (invariant 2).
    free: Vec<u32>,
}

impl<T> Directory<T> {
    pub(crate) const fn new() -> Self {
        Self {
            shards: [const {
                Mutex::new(Shard {
                    slots: Vec::new(),
                    free: Vec::new(),
                })
            }; SHARDS],
            next: AtomicU64::new(1),
        }
    }

    fn shard(&self, serial: u64) -> std::sync::MutexGuard<'_, Shard<T>> {
        // A panic under a shard's lock leaves it consistent: every change is one push, pop or
        // assignment.
        self.shards[(serial % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Seats `value` and returns its seat.
    pub(crate) fn enter(&self, value: Weak<T>) -> Seat {
        // Relaxed: only uniqueness matters, which the atomic increment gives.
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        let mut shard = self.shard(serial);
        let slot = match shard.free.pop() {
            Some(slot) => {
                shard.slots[slot as usize] = (serial, value);
                slot
            }
            None => {
                let slot = u32::try_from(shard.slots.len())
                    .expect("fewer than 2^32 live groups per shard: each takes hundreds of bytes");
                shard.slots.push((serial, value));
                slot
            }
        };
        Seat { serial, slot }
    }

    /// Empties `seat`; its value is not found any more. Returns the `Weak` it held, to drop
    /// after the lock.
    pub(crate) fn leave(&self, seat: Seat) -> Option<Weak<T>> {
        let mut shard = self.shard(seat.serial);
        let entry = shard.slots.get_mut(seat.slot as usize)?;
        if entry.0 != seat.serial {
            return None;
        }
        let (_, value) = std::mem::replace(entry, (0, Weak::new()));
        shard.free.push(seat.slot);
        Some(value)
    }

    /// The value at `seat`, if it is still seated and alive.
    pub(crate) fn find(&self, seat: Seat) -> Option<Arc<T>> {
        let shard = self.shard(seat.serial);
        let (serial, value) = shard.slots.get(seat.slot as usize)?;
        if *serial != seat.serial {
            return None;
        }
        value.upgrade()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seat_finds_its_value_until_it_leaves_and_never_its_successor() {
        let table = Directory::new();
        let first = Arc::new(1);
        let seat = table.enter(Arc::downgrade(&first));
        assert_eq!(table.find(seat).as_deref(), Some(&1));
        assert!(table.leave(seat).is_some());
        assert_eq!(table.find(seat), None);
        assert!(
            table.leave(seat).is_none(),
            "a second leave empties nothing"
        );
        // Fill every shard so that the vacated slot is taken again.
        let others: Vec<_> = (0..4 * SHARDS as i32).map(Arc::new).collect();
        let seats: Vec<_> = others
            .iter()
            .map(|v| table.enter(Arc::downgrade(v)))
            .collect();
        assert!(seats.iter().any(
            |s| s.slot == seat.slot && s.serial % SHARDS as u64 == seat.serial % SHARDS as u64
        ));
        assert_eq!(table.find(seat), None, "a stale seat reaches nothing");
        for (s, v) in seats.iter().zip(&others) {
            assert_eq!(table.find(*s).as_deref(), Some(&**v));
        }
    }

    #[test]
    fn a_dropped_value_is_not_found() {
        let table = Directory::new();
        let value = Arc::new("x");
        let seat = table.enter(Arc::downgrade(&value));
        drop(value);
        assert_eq!(table.find(seat), None);
    }
}
