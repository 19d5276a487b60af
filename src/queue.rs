//! The deadline queue: a min-heap of `(deadline, schedule order)` over a slab of tasks.
//!
//! This is a plain data structure with no runtime, no lock and no clock: deadlines are `u64`
//! keys (see [`crate::clock`]) and "now" is passed in. The group keeps one of these behind its
//! mutex.
//!
//! # Layout and cost
//!
//! A pending task costs one heap [`Entry`] (16 bytes), one slab [`Slot`] (16 bytes) and whatever
//! the value `T` owns. The value carries its own [`Stamp`] (generation and schedule order), so
//! the slab slot needs no room for it: for a boxed future the stamp rides in the same allocation.
//!
//! # Removal and rescheduling
//!
//! `BinaryHeap` cannot remove from the middle, so [`DeadlineQueue::remove`] and
//! [`DeadlineQueue::reschedule`] leave the old heap entry behind as *stale*: an entry is live
//! only while its slot holds a value whose stamp has the entry's `seq`. Stale entries are
//! skipped when they reach the top and swept out in one pass once they outnumber the live ones,
//! so the heap never holds more than about twice the live entries plus a small constant.
//!
//! # Handles and slot reuse
//!
//! A [`Key`] names a slot and the generation of the value in it. A slot's generation goes up
//! each time it is reused, so a key kept after its value left can never reach a later value in
//! the same slot. A slot whose generation reached `u32::MAX` is retired rather than wrapped.
//! Vacant slots at the end of the slab are trimmed; `gen_floor` remembers a generation above
//! every one a trimmed slot ever held, and fresh slots start there.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Marks the end of the free list.
const NIL: u32 = u32::MAX;

/// The generation at which a slot is retired instead of reused.
const RETIRED: u32 = u32::MAX;

/// Below this many stale entries the heap is never swept: a sweep is O(heap length).
const MIN_SWEEP: usize = 1024;

/// Below this many slots the slab is never trimmed.
const MIN_TRIM: usize = 64;

/// Names one value in a [`DeadlineQueue`]: its slot and the generation it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    slot: u32,
    generation: u32,
}

impl Key {
    /// A key that names nothing, for a task that never entered the queue.
    pub(crate) const DETACHED: Key = Key {
        slot: NIL,
        generation: 0,
    };
}

/// What a value stores about itself for the queue: its slot generation and its current
/// position in schedule order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) generation: u32,
    pub(crate) seq: u32,
}

/// A value that carries its own [`Stamp`].
pub(crate) trait Stamped {
    fn stamp(&self) -> Stamp;
    fn set_stamp(&mut self, stamp: Stamp);
}

/// One heap entry. Ordered so that `BinaryHeap` (a max-heap) pops the smallest
/// `(deadline, seq)` first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    deadline: u64,
    seq: u32,
    slot: u32,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One slab slot. Two variants keep it at 16 bytes for a fat-pointer `T`: the vacant fields fit
/// beside the pointer's niche.
#[derive(Debug)]
enum Slot<T> {
    Occupied(T),
    /// `generation` is the last occupant's; `next` links the free list. A slot with
    /// `generation == RETIRED` is in no list and is never reused.
    Vacant {
        next: u32,
        generation: u32,
    },
}

/// The values [`DeadlineQueue::drain`] took out.
#[derive(Debug)]
pub(crate) struct Drained<T> {
    slots: std::vec::IntoIter<Slot<T>>,
    len: usize,
}

impl<T> Drained<T> {
    /// How many values there are.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl<T> Iterator for Drained<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.slots.find_map(|slot| match slot {
            Slot::Occupied(value) => Some(value),
            Slot::Vacant { .. } => None,
        })
    }
}

/// A min-heap of values by `(deadline, insertion order)` with O(log n) insert and pop, and
/// O(1) amortized removal and rescheduling by [`Key`].
#[derive(Debug)]
pub(crate) struct DeadlineQueue<T> {
    heap: BinaryHeap<Entry>,
    slots: Vec<Slot<T>>,
    /// Head of the free list of vacant, unretired slots.
    free: u32,
    /// Occupied slots; also the number of live heap entries.
    len: usize,
    /// The `seq` the next insert or reschedule gets. Renumbered before it would wrap.
    next_seq: u32,
    /// The generation a slot appended to the slab starts at.
    gen_floor: u32,
    /// Slots vacated since the last trim; a trim waits for half the slab's length of these.
    vacated: usize,
}

impl<T: Stamped> Default for DeadlineQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Stamped> DeadlineQueue<T> {
    pub(crate) fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: NIL,
            len: 0,
            next_seq: 0,
            gen_floor: 0,
            vacated: 0,
        }
    }

    /// The number of values in the queue.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `key` still names a value in the queue.
    pub(crate) fn contains(&self, key: Key) -> bool {
        self.get(key).is_some()
    }

    fn get(&self, key: Key) -> Option<&T> {
        match self.slots.get(key.slot as usize) {
            Some(Slot::Occupied(value)) if value.stamp().generation == key.generation => {
                Some(value)
            }
            _ => None,
        }
    }

    /// Adds `value`, due at `deadline`. Among equal deadlines, earlier inserts come out first.
    pub(crate) fn insert(&mut self, deadline: u64, mut value: T) -> Key {
        let seq = self.take_seq();
        let (slot, generation) = if self.free != NIL {
            let slot = self.free;
            match self.slots[slot as usize] {
                Slot::Vacant { next, generation } => {
                    self.free = next;
                    // A retired slot is never on the free list, so this cannot overflow.
                    (slot, generation + 1)
                }
                Slot::Occupied(_) => unreachable!("free list points at an occupied slot"),
            }
        } else {
            let slot = u32::try_from(self.slots.len())
                .ok()
                .filter(|&slot| slot != NIL)
                .expect("a schedgroup queue holds at most u32::MAX - 1 tasks");
            self.slots.push(Slot::Vacant {
                next: NIL,
                generation: self.gen_floor,
            });
            (slot, self.gen_floor)
        };
        value.set_stamp(Stamp { generation, seq });
        self.slots[slot as usize] = Slot::Occupied(value);
        self.heap.push(Entry {
            deadline,
            seq,
            slot,
        });
        self.len += 1;
        Key { slot, generation }
    }

    /// Moves the value named by `key` to `deadline`, behind every value already due then.
    /// Returns `false` if `key` names nothing.
    pub(crate) fn reschedule(&mut self, key: Key, deadline: u64) -> bool {
        if !self.contains(key) {
            return false;
        }
        // Take the seq first: a renumbering rewrites the stamps, including this value's.
        let seq = self.take_seq();
        let Slot::Occupied(value) = &mut self.slots[key.slot as usize] else {
            unreachable!("contains() checked the slot");
        };
        value.set_stamp(Stamp {
            generation: key.generation,
            seq,
        });
        self.heap.push(Entry {
            deadline,
            seq,
            slot: key.slot,
        });
        self.sweep_if_stale();
        true
    }

    /// Removes and returns the value named by `key`, or `None` if it is gone.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        if !self.contains(key) {
            return None;
        }
        let value = self.vacate(key.slot);
        self.sweep_if_stale();
        Some(value)
    }

    /// The earliest deadline in the queue.
    pub(crate) fn peek_deadline(&mut self) -> Option<u64> {
        self.discard_stale_top();
        self.heap.peek().map(|entry| entry.deadline)
    }

    /// A lower bound of the earliest deadline, exact unless the top of the heap is stale (left
    /// behind by a removal). O(1) and never discards anything, so a caller that only needs to
    /// know that nothing is due before some time pays nothing after a removal.
    pub(crate) fn peek_bound(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        self.heap.peek().map(|entry| entry.deadline)
    }

    /// Removes and returns the earliest value if its deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<T> {
        self.discard_stale_top();
        let top = self.heap.peek()?;
        if top.deadline > now {
            return None;
        }
        let slot = top.slot;
        self.heap.pop();
        Some(self.vacate(slot))
    }

    /// How many values are due at `now`. O(heap length): for snapshots, not hot paths.
    pub(crate) fn count_due(&self, now: u64) -> usize {
        self.heap
            .iter()
            .filter(|entry| entry.deadline <= now && Self::is_live(&self.slots, entry))
            .count()
    }

    /// Removes every value, in no particular order, and leaves the queue empty. Keys handed out
    /// before stay dead.
    ///
    /// The slab itself is handed out (no copy, no new allocation), so the caller can drop the
    /// values outside its lock; `gen_floor` is raised past every generation in it first.
    pub(crate) fn drain(&mut self) -> Drained<T> {
        let len = self.len;
        let floor = self.slots.iter().try_fold(self.gen_floor, |floor, slot| {
            let generation = match slot {
                Slot::Occupied(value) => value.stamp().generation,
                Slot::Vacant { generation, .. } => *generation,
            };
            generation.checked_add(1).map(|next| floor.max(next))
        });
        let slots = match floor {
            Some(floor) => {
                self.gen_floor = floor;
                self.free = NIL;
                std::mem::take(&mut self.slots)
            }
            // A slot reached the last generation: it must stay, retired, so keep the slab
            // and move the values out one by one (this happens once per 2^32 reuses of a slot).
            None => {
                let mut values = Vec::with_capacity(len);
                for slot in 0..self.slots.len() {
                    if matches!(self.slots[slot], Slot::Occupied(_)) {
                        values.push(Slot::Occupied(self.vacate_raw(slot as u32)));
                    }
                }
                values
            }
        };
        self.len = 0;
        self.vacated = 0;
        self.heap = BinaryHeap::new();
        Drained {
            slots: slots.into_iter(),
            len,
        }
    }

    fn take_seq(&mut self) -> u32 {
        if self.next_seq == u32::MAX {
            self.renumber();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn is_live(slots: &[Slot<T>], entry: &Entry) -> bool {
        matches!(slots.get(entry.slot as usize), Some(Slot::Occupied(value)) if value.stamp().seq == entry.seq)
    }

    fn discard_stale_top(&mut self) {
        while let Some(top) = self.heap.peek() {
            if Self::is_live(&self.slots, top) {
                return;
            }
            self.heap.pop();
        }
    }

    /// Sweeps stale entries out once they outnumber live ones (and `MIN_SWEEP`). Each sweep
    /// costs O(heap length) and follows at least `MIN_SWEEP` + live removals, so it is O(1)
    /// amortized per removal.
    fn sweep_if_stale(&mut self) {
        let stale = self.heap.len() - self.len;
        if self.len == 0 {
            self.heap = BinaryHeap::new();
        } else if stale > self.len && stale >= MIN_SWEEP {
            let slots = &self.slots;
            self.heap.retain(|entry| Self::is_live(slots, entry));
            if self.heap.capacity() > 4 * self.heap.len() {
                self.heap.shrink_to(2 * self.heap.len());
            }
        }
    }

    /// Gives every live entry a new `seq` in its current order, so `next_seq` can start again
    /// low. Runs once per `u32::MAX` inserts and reschedules.
    #[cold]
    fn renumber(&mut self) {
        let slots = &self.slots;
        let mut entries: Vec<Entry> = std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .filter(|entry| Self::is_live(slots, entry))
            .collect();
        entries.sort_unstable_by_key(|entry| (entry.deadline, entry.seq));
        for (seq, entry) in (0u32..).zip(entries.iter_mut()) {
            entry.seq = seq;
            let Slot::Occupied(value) = &mut self.slots[entry.slot as usize] else {
                unreachable!("a live entry points at an occupied slot");
            };
            let stamp = value.stamp();
            value.set_stamp(Stamp { seq, ..stamp });
        }
        self.next_seq = u32::try_from(entries.len()).expect("fewer than u32::MAX tasks");
        self.heap = BinaryHeap::from(entries);
    }

    fn vacate(&mut self, slot: u32) -> T {
        let value = self.vacate_raw(slot);
        self.vacated += 1;
        if self.len == 0 {
            // Empty: give everything back. Costs O(slab length), which is at most the inserts
            // since the last time the queue was empty, so O(1) amortized.
            self.heap = BinaryHeap::new();
            self.trim();
        } else if self.vacated >= self.slots.len() / 2
            && self.slots.len() >= MIN_TRIM
            && self.len * 2 < self.slots.len()
        {
            self.trim();
        }
        value
    }

    /// Empties `slot` (which must be occupied) and links it into the free list.
    fn vacate_raw(&mut self, slot: u32) -> T {
        let generation = match &self.slots[slot as usize] {
            Slot::Occupied(value) => value.stamp().generation,
            Slot::Vacant { .. } => unreachable!("vacating a vacant slot"),
        };
        let next = if generation == RETIRED {
            NIL
        } else {
            std::mem::replace(&mut self.free, slot)
        };
        let old = std::mem::replace(
            &mut self.slots[slot as usize],
            Slot::Vacant { next, generation },
        );
        self.len -= 1;
        match old {
            Slot::Occupied(value) => value,
            Slot::Vacant { .. } => unreachable!("checked above"),
        }
    }

    /// Drops vacant slots from the end of the slab and rebuilds the free list in ascending
    /// order, so new values fill the lowest holes and the tail can empty out. O(slab length).
    fn trim(&mut self) {
        self.vacated = 0;
        while let Some(Slot::Vacant { generation, .. }) = self.slots.last() {
            if *generation == RETIRED {
                break;
            }
            self.gen_floor = self.gen_floor.max(generation + 1);
            self.slots.pop();
        }
        self.free = NIL;
        for (slot, entry) in self.slots.iter_mut().enumerate().rev() {
            if let Slot::Vacant { next, generation } = entry {
                if *generation != RETIRED {
                    *next = self.free;
                    self.free = slot as u32;
                }
            }
        }
        if self.slots.capacity() > 4 * self.slots.len().max(MIN_TRIM) {
            self.slots.shrink_to(2 * self.slots.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    struct Item {
        name: &'static str,
        stamp: Stamp,
    }

    impl Stamped for Item {
        fn stamp(&self) -> Stamp {
            self.stamp
        }
        fn set_stamp(&mut self, stamp: Stamp) {
            self.stamp = stamp;
        }
    }

    fn item(name: &'static str) -> Item {
        Item {
            name,
            stamp: Stamp::default(),
        }
    }

    fn drain_due(q: &mut DeadlineQueue<Item>, now: u64) -> Vec<&'static str> {
        std::iter::from_fn(|| q.pop_due(now).map(|i| i.name)).collect()
    }

    #[test]
    fn entries_and_slots_are_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        type Boxed = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
        assert_eq!(std::mem::size_of::<Slot<Boxed>>(), 16);
    }

    #[test]
    fn pops_in_deadline_order_then_insertion_order() {
        let mut q = DeadlineQueue::new();
        q.insert(30, item("c"));
        q.insert(10, item("a1"));
        q.insert(20, item("b"));
        q.insert(10, item("a2"));
        q.insert(10, item("a3"));
        assert_eq!(q.peek_deadline(), Some(10));
        assert_eq!(drain_due(&mut q, 25), ["a1", "a2", "a3", "b"]);
        assert_eq!(q.len(), 1);
        assert_eq!(drain_due(&mut q, 29), Vec::<&str>::new());
        assert_eq!(drain_due(&mut q, 30), ["c"]);
        assert!(q.is_empty());
        assert_eq!(q.peek_deadline(), None);
    }

    #[test]
    fn remove_returns_the_value_once() {
        let mut q = DeadlineQueue::new();
        let a = q.insert(10, item("a"));
        let b = q.insert(20, item("b"));
        assert_eq!(q.remove(a).map(|i| i.name), Some("a"));
        assert_eq!(q.remove(a), None);
        assert!(!q.contains(a));
        assert!(q.contains(b));
        assert_eq!(q.peek_deadline(), Some(20));
        assert_eq!(drain_due(&mut q, 100), ["b"]);
    }

    #[test]
    fn stale_key_never_reaches_a_value_that_reused_its_slot() {
        let mut q = DeadlineQueue::new();
        let old = q.insert(10, item("old"));
        assert!(q.remove(old).is_some());
        let new = q.insert(5, item("new"));
        assert_eq!(old.slot, new.slot, "the slot is reused");
        assert!(q.remove(old).is_none());
        assert!(!q.reschedule(old, 1));
        assert_eq!(drain_due(&mut q, 5), ["new"]);
    }

    #[test]
    fn reschedule_moves_a_value_and_orders_it_after_equal_deadlines() {
        let mut q = DeadlineQueue::new();
        let a = q.insert(10, item("a"));
        q.insert(50, item("b"));
        q.insert(50, item("c"));
        assert!(q.reschedule(a, 50));
        assert_eq!(q.peek_deadline(), Some(50));
        assert_eq!(drain_due(&mut q, 49), Vec::<&str>::new());
        assert_eq!(drain_due(&mut q, 50), ["b", "c", "a"]);
        assert!(!q.reschedule(a, 60), "a popped value cannot be rescheduled");
    }

    #[test]
    fn reschedule_earlier_moves_to_the_front() {
        let mut q = DeadlineQueue::new();
        q.insert(10, item("a"));
        let b = q.insert(20, item("b"));
        assert!(q.reschedule(b, 5));
        assert_eq!(drain_due(&mut q, 100), ["b", "a"]);
    }

    #[test]
    fn removing_most_values_sweeps_the_heap_and_trims_the_slab() {
        let mut q = DeadlineQueue::new();
        let keys: Vec<Key> = (0..10_000).map(|i| q.insert(i, item("x"))).collect();
        let keep = q.insert(u64::MAX, item("keep"));
        for key in &keys {
            assert!(q.remove(*key).is_some());
            assert!(
                q.heap.len() <= 2 * q.len() + MIN_SWEEP + 1,
                "heap {} len {}",
                q.heap.len(),
                q.len()
            );
        }
        assert_eq!(q.len(), 1);
        // The survivor sits at the end of the slab, so only the free list can shrink; once it
        // leaves, the whole slab goes.
        assert_eq!(q.remove(keep).map(|i| i.name), Some("keep"));
        assert!(q.heap.is_empty());
        assert!(q.slots.is_empty(), "slab trimmed to nothing");
        assert!(q.slots.capacity() <= 4 * MIN_TRIM);
    }

    #[test]
    fn popping_everything_gives_the_memory_back() {
        let mut q = DeadlineQueue::new();
        let keys: Vec<Key> = (0..100_000).map(|_| q.insert(7, item("x"))).collect();
        assert_eq!(drain_due(&mut q, 7).len(), 100_000);
        assert_eq!(q.heap.capacity(), 0, "heap buffer freed");
        assert!(q.slots.is_empty() && q.slots.capacity() <= 4 * MIN_TRIM);
        let fresh = q.insert(0, item("fresh"));
        assert!(!q.contains(keys[fresh.slot as usize]));
    }

    #[test]
    fn trimmed_slots_come_back_with_higher_generations() {
        let mut q = DeadlineQueue::new();
        let keys: Vec<Key> = (0..200).map(|i| q.insert(i, item("x"))).collect();
        let values: Vec<Item> = q.drain().collect();
        assert_eq!(values.len(), 200);
        assert!(q.slots.is_empty());
        let fresh = q.insert(0, item("fresh"));
        assert_eq!(fresh.slot, keys[0].slot);
        for key in &keys {
            assert!(!q.contains(*key));
            assert!(q.remove(*key).is_none());
        }
        assert!(fresh.generation > keys[0].generation);
    }

    #[test]
    fn lowest_free_slots_are_reused_first_after_a_trim() {
        let mut q = DeadlineQueue::new();
        let keys: Vec<Key> = (0..100).map(|i| q.insert(i, item("x"))).collect();
        // Removing more than half (in order, so the free list's head is the highest slot)
        // triggers a trim, which rebuilds the free list from the bottom.
        for key in &keys[..51] {
            q.remove(*key);
        }
        let next = q.insert(0, item("y"));
        assert_eq!(next.slot, 0);
    }

    #[test]
    fn a_slot_at_the_last_generation_is_retired_not_wrapped() {
        let mut q = DeadlineQueue::new();
        q.gen_floor = RETIRED - 1;
        let a = q.insert(0, item("a"));
        assert_eq!(a.generation, RETIRED - 1);
        q.remove(a);
        let b = q.insert(0, item("b"));
        assert_eq!((b.slot, b.generation), (a.slot, RETIRED));
        q.remove(b);
        let c = q.insert(0, item("c"));
        assert_ne!(c.slot, b.slot, "a retired slot is not reused");
        assert!(!q.contains(a) && !q.contains(b) && q.contains(c));
    }

    #[test]
    fn renumbering_keeps_the_order_and_the_keys() {
        let mut q = DeadlineQueue::new();
        q.next_seq = u32::MAX - 3;
        let a = q.insert(7, item("a"));
        let b = q.insert(7, item("b"));
        let c = q.insert(7, item("c"));
        let gone = q.insert(1, item("gone"));
        q.remove(gone);
        // This insert wraps next_seq and renumbers the three live entries first.
        let d = q.insert(7, item("d"));
        assert!(q.next_seq < 10);
        assert!(q.reschedule(a, 7), "keys survive renumbering");
        assert!(q.contains(b) && q.contains(c) && q.contains(d));
        assert_eq!(drain_due(&mut q, 7), ["b", "c", "d", "a"]);
    }

    #[test]
    fn drain_keeps_a_retired_slot_and_still_returns_everything() {
        let mut q = DeadlineQueue::new();
        q.gen_floor = RETIRED;
        let a = q.insert(1, item("a"));
        assert_eq!(a.generation, RETIRED);
        let b = q.insert(2, item("b"));
        let drained = q.drain();
        assert_eq!(drained.len(), 2);
        assert_eq!(drained.count(), 2);
        assert!(!q.contains(a) && !q.contains(b));
        let c = q.insert(3, item("c"));
        assert_ne!(c.slot, a.slot, "the retired slot stayed retired");
        assert!(!q.contains(a));
    }

    #[test]
    fn drain_returns_everything_and_kills_every_key() {
        let mut q = DeadlineQueue::new();
        let a = q.insert(1, item("a"));
        let b = q.insert(2, item("b"));
        let mut names: Vec<_> = q.drain().map(|i| i.name).collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "b"]);
        assert!(q.is_empty());
        assert!(!q.contains(a) && !q.contains(b));
        assert_eq!(q.peek_deadline(), None);
    }
}
