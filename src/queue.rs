//! The deadline queue: two min-heaps of `(deadline, schedule order)` over a slab of tasks, one
//! for the values due at the latest time the queue was told of, one for the rest.
//!
//! This is a plain data structure with no runtime, no lock and no clock: deadlines are `u64`
//! keys (see [`crate::clock`]) and "now" is passed in. The group keeps one of these behind its
//! mutex.
//!
//! # Layout and cost
//!
//! A pending task costs one heap [`Entry`] (16 bytes), one slab [`Slot`] (16 bytes) and whatever
//! the value `T` owns. The value carries its own [`Stamp`] (the low half of its id and its
//! schedule order), so the slab slot needs no room for it: for a boxed future the stamp rides in
//! the same allocation.
//!
//! # Due and later
//!
//! The queue remembers the latest `now` its due count was asked at (`frontier`). Values due by
//! then have their live entry in the `due` heap, the rest in `later`; a value's stamp says
//! which (the top bit of its `seq`), so the queue knows how many values are due without looking
//! at them: [`DeadlineQueue::count_due`] is O(1), plus O(log n) for each value that fell due
//! since the last count, which happens once in the value's life. Popping moves nothing: every
//! `due` deadline is at or before every `later` one, so the earliest value is the top of `due`
//! if it has an entry, else the top of `later`. A queue whose count nobody asks for keeps
//! everything in `later` and costs what a single heap does.
//!
//! # Removal and rescheduling
//!
//! A heap cannot remove from the middle, so [`DeadlineQueue::remove`] and
//! [`DeadlineQueue::reschedule`] leave the old heap entry behind as *stale*: an entry is live
//! only while its slot holds a value whose stamp has the entry's `seq`. Stale entries are
//! skipped when they reach the top and swept out in one pass once they outnumber the live ones,
//! so the heap never holds more than about twice the live entries plus a small constant.
//!
//! # Handles and slot reuse
//!
//! A [`Key`] names a slot and the id of the value in it. Every insert takes the next id from a
//! `u64` counter, so no two values of a queue ever share an id (2^64 inserts would take
//! centuries at a billion a second), and a key kept after its value left can never reach a later
//! value in the same slot. Slots are never retired: any vacant slot can be reused and the vacant
//! tail of the slab can be dropped, whatever happened to it before.
//!
//! The stamp keeps only the low 32 bits of the id. Ids are told apart by a window: every value
//! not in `elders` has an id in `floor..floor + 2^32`, where the low 32 bits name it exactly.
//! When the next id would leave the window, a census (one pass over the slab, once per 2^31
//! inserts) moves the window up by 2^31 and writes the full id of each value left below it into
//! `elders`, a map that holds only values still pending after 2^31 later inserts.
//!
//! # Invariants
//!
//! 1. Ids are handed out in increasing order, once each: `next_id` only goes up.
//! 2. `next_id <= floor + 2^32` after every insert, and every occupied slot either is in
//!    `elders` with its value's full id, or holds a value whose id is in `floor..next_id`.
//! 3. `elders` has an entry for occupied slots only.
//! 4. Every entry in `due` has a deadline at or before `frontier`, every entry in `later` one
//!    after it.
//! 5. A live value's stamp has the [`DUE`] bit if and only if its live entry is in `due`, and
//!    `due_live` counts those values.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

/// Marks the end of the free list.
const NIL: u32 = u32::MAX;

/// How far the id window moves at a census: half its width, so that a census follows at least
/// this many inserts after the previous one.
const CENSUS_STEP: u64 = 1 << 31;

/// The width of the id window: the ids the stamp's 32 bits can tell apart.
const WINDOW: u64 = 1 << 32;

/// The top bit of a stamp's `seq`: the value's live entry is in the `due` heap (invariant 5).
/// Schedule orders themselves stay below it.
const DUE: u32 = 1 << 31;

/// Below this many stale entries the heaps are never swept: a sweep is O(heap length).
const MIN_SWEEP: usize = 1024;

/// Below this many slots the slab is never trimmed.
const MIN_TRIM: usize = 64;

/// Names one value in a [`DeadlineQueue`]: its slot and its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    id: u64,
    slot: u32,
}

impl Key {
    /// The id it names, whether or not its value is still in the queue.
    pub(crate) fn id(self) -> u64 {
        self.id
    }
}

/// What a value stores about itself for the queue: the low 32 bits of its id, and its current
/// position in schedule order with, in the top bit, whether it is due ([`DUE`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) id: u32,
    pub(crate) seq: u32,
}

/// A value that carries its own [`Stamp`].
pub(crate) trait Stamped {
    fn stamp(&self) -> Stamp;
    fn set_stamp(&mut self, stamp: Stamp);
}

/// One heap entry. The heap pops the smallest `(deadline, seq)` first.
#[derive(Clone, Copy, Debug)]
struct Entry {
    deadline: u64,
    seq: u32,
    slot: u32,
}

impl Entry {
    /// Whether `self` comes out of the heap before `other`.
    fn before(&self, other: &Entry) -> bool {
        (self.deadline, self.seq) < (other.deadline, other.seq)
    }
}

/// One slab slot. Two variants keep it at 16 bytes for a fat-pointer `T`: the free-list link
/// fits beside the pointer's niche.
#[derive(Debug)]
enum Slot<T> {
    Occupied(T),
    /// `next` links the free list.
    Vacant {
        next: u32,
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
    /// Entries due at `frontier` (invariant 4).
    due: Heap,
    /// Entries due after `frontier`.
    later: Heap,
    /// The latest `now` the queue was given.
    frontier: u64,
    /// Live values whose entry is in `due` (invariant 5).
    due_live: usize,
    slots: Vec<Slot<T>>,
    /// Head of the free list of vacant slots.
    free: u32,
    /// Occupied slots; also the number of live heap entries.
    len: usize,
    /// The `seq` the next insert or reschedule gets. Renumbered before it would wrap.
    next_seq: u32,
    /// The id the next insert gets (invariant 1).
    next_id: u64,
    /// The bottom of the id window (invariant 2).
    floor: u64,
    /// The full ids of values whose id is below `floor`, by slot (invariants 2 and 3). Empty
    /// unless a value stayed pending across 2^31 later inserts.
    elders: BTreeMap<u32, u64>,
    /// Slots vacated since the last trim; a trim waits for half the slab's length of these.
    vacated: usize,
}

impl<T: Stamped> Default for DeadlineQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

// ===== impl DeadlineQueue =====

impl<T: Stamped> DeadlineQueue<T> {
    pub(crate) fn new() -> Self {
        Self {
            due: Heap::default(),
            later: Heap::default(),
            frontier: 0,
            due_live: 0,
            slots: Vec::new(),
            free: NIL,
            len: 0,
            next_seq: 0,
            next_id: 0,
            floor: 0,
            elders: BTreeMap::new(),
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
        match self.slots.get(key.slot as usize) {
            Some(Slot::Occupied(value)) => self.id_of(key.slot, value) == key.id,
            _ => false,
        }
    }

    /// The full id of `value`, which occupies `slot`.
    fn id_of(&self, slot: u32, value: &T) -> u64 {
        if let Some(&id) = self.elders.get(&slot) {
            return id;
        }
        widen(self.floor, value.stamp().id)
    }

    /// Adds `value`, due at `deadline`. Among equal deadlines, earlier inserts come out first.
    pub(crate) fn insert(&mut self, deadline: u64, mut value: T) -> Key {
        let id = self.take_id();
        let seq = self.take_seq();
        let slot = if self.free != NIL {
            let slot = self.free;
            match self.slots[slot as usize] {
                Slot::Vacant { next } => self.free = next,
                Slot::Occupied(_) => unreachable!("free list points at an occupied slot"),
            }
            slot
        } else {
            let slot = u32::try_from(self.slots.len())
                .ok()
                .filter(|&slot| slot != NIL)
                .expect("a schedgroup queue holds at most u32::MAX - 1 tasks");
            self.slots.push(Slot::Vacant { next: NIL });
            slot
        };
        // The low 32 bits; `widen` restores the rest (invariant 2).
        let seq = self.push(Entry {
            deadline,
            seq,
            slot,
        });
        value.set_stamp(Stamp { id: id as u32, seq });
        self.slots[slot as usize] = Slot::Occupied(value);
        self.len += 1;
        Key { id, slot }
    }

    /// Moves the value named by `key` to `deadline`, behind every value already due then.
    /// Returns `false` if `key` names nothing.
    pub(crate) fn reschedule(&mut self, key: Key, deadline: u64) -> bool {
        if !self.contains(key) {
            return false;
        }
        // Take the seq first: a renumbering rewrites the stamps, including this value's.
        let seq = self.take_seq();
        let seq = self.push(Entry {
            deadline,
            seq,
            slot: key.slot,
        });
        let Slot::Occupied(value) = &mut self.slots[key.slot as usize] else {
            unreachable!("contains() checked the slot");
        };
        let stamp = value.stamp();
        if stamp.seq & DUE != 0 {
            // Its old entry, in `due`, is stale now.
            self.due_live -= 1;
        }
        value.set_stamp(Stamp { seq, ..stamp });
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
        self.live_top().map(|entry| entry.deadline)
    }

    /// A lower bound of the earliest deadline, exact unless the top of a heap is stale (left
    /// behind by a removal). O(1) and never discards anything, so a caller that only needs to
    /// know that nothing is due before some time pays nothing after a removal.
    pub(crate) fn peek_bound(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        self.top().map(|entry| entry.deadline)
    }

    /// Removes and returns the earliest value, with its id, if its deadline is at or before
    /// `now`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<(u64, T)> {
        // No `advance`: the earliest value is one of the two tops, and moving every due entry
        // across would cost a burst two heap operations per task, all under one lock.
        let top = self.live_top()?;
        if top.deadline > now {
            return None;
        }
        self.top_heap().pop();
        let Slot::Occupied(value) = &self.slots[top.slot as usize] else {
            unreachable!("a live entry points at an occupied slot");
        };
        let id = self.id_of(top.slot, value);
        Some((id, self.vacate(top.slot)))
    }

    /// A key that names no value, with an id no value of this queue ever has: for a value that
    /// was refused rather than inserted.
    pub(crate) fn detached_key(&mut self) -> Key {
        Key {
            id: self.take_id(),
            slot: NIL,
        }
    }

    /// How many values are due at `now` (or at the latest `now` it was asked with, if that is
    /// later). O(1), plus O(log n) for each value that fell due since the last count: once in
    /// each value's life, and only for queues whose count is asked for.
    pub(crate) fn count_due(&mut self, now: u64) -> usize {
        self.advance(now);
        self.due_live
    }

    /// Moves `frontier` to `now` if that is later, and the entries due by then from `later` to
    /// `due`, marking their values (invariants 4 and 5). Stale entries are dropped on the way.
    fn advance(&mut self, now: u64) {
        if now <= self.frontier {
            return;
        }
        self.frontier = now;
        while let Some(&entry) = self.later.peek() {
            if entry.deadline > now {
                break;
            }
            self.later.pop();
            if let Some(Slot::Occupied(value)) = self.slots.get_mut(entry.slot as usize) {
                let stamp = value.stamp();
                if stamp.seq == entry.seq {
                    value.set_stamp(Stamp {
                        seq: stamp.seq | DUE,
                        ..stamp
                    });
                    self.due_live += 1;
                    self.due.push(entry);
                }
            }
        }
    }

    /// Puts `entry` in the heap its deadline belongs to (invariant 4) and returns the stamp
    /// `seq` its value must carry (invariant 5).
    fn push(&mut self, entry: Entry) -> u32 {
        if entry.deadline <= self.frontier {
            self.due.push(entry);
            self.due_live += 1;
            entry.seq | DUE
        } else {
            self.later.push(entry);
            entry.seq
        }
    }

    /// The earliest entry: the top of `due` if it has one, else of `later` (invariant 4).
    fn top(&self) -> Option<&Entry> {
        self.due.peek().or(self.later.peek())
    }

    /// The heap [`top`](Self::top) is taken from.
    fn top_heap(&mut self) -> &mut Heap {
        if self.due.peek().is_some() {
            &mut self.due
        } else {
            &mut self.later
        }
    }

    /// The earliest live entry, after discarding the stale entries above it.
    fn live_top(&mut self) -> Option<Entry> {
        loop {
            let top = *self.top()?;
            if Self::is_live(&self.slots, &top) {
                return Some(top);
            }
            self.top_heap().pop();
        }
    }

    /// Removes every value, in no particular order, and leaves the queue empty. Keys handed out
    /// before stay dead: their ids are never handed out again.
    ///
    /// The slab itself is handed out (no copy, no new allocation), so the caller can drop the
    /// values outside its lock.
    pub(crate) fn drain(&mut self) -> Drained<T> {
        let len = self.len;
        let slots = std::mem::take(&mut self.slots);
        self.free = NIL;
        self.elders.clear();
        self.len = 0;
        self.vacated = 0;
        self.clear_heaps();
        Drained {
            slots: slots.into_iter(),
            len,
        }
    }

    /// The next id, after a census if it would leave the window (invariant 2).
    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        if id - self.floor >= WINDOW {
            self.census(id - CENSUS_STEP);
        }
        // 2^64 inserts cannot happen: at a billion a second they would take 584 years.
        self.next_id = id
            .checked_add(1)
            .expect("a schedgroup queue ran out of task ids");
        id
    }

    /// Moves the id window up to start at `floor`, first recording in `elders` the full id of
    /// every value that falls below it. O(slab length), once per `CENSUS_STEP` inserts.
    #[cold]
    fn census(&mut self, floor: u64) {
        for (slot, entry) in (0u32..).zip(&self.slots) {
            if let Slot::Occupied(value) = entry {
                if !self.elders.contains_key(&slot) {
                    let id = widen(self.floor, value.stamp().id);
                    if id < floor {
                        self.elders.insert(slot, id);
                    }
                }
            }
        }
        self.floor = floor;
    }

    fn take_seq(&mut self) -> u32 {
        // Schedule orders stay below the `DUE` bit.
        if self.next_seq == DUE - 1 {
            self.renumber();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn is_live(slots: &[Slot<T>], entry: &Entry) -> bool {
        matches!(slots.get(entry.slot as usize), Some(Slot::Occupied(value)) if value.stamp().seq & !DUE == entry.seq)
    }

    fn clear_heaps(&mut self) {
        self.due = Heap::default();
        self.later = Heap::default();
        self.due_live = 0;
    }

    /// Sweeps stale entries out once they outnumber live ones (and `MIN_SWEEP`). Each sweep
    /// costs O(heap length) and follows at least `MIN_SWEEP` + live removals, so it is O(1)
    /// amortized per removal.
    fn sweep_if_stale(&mut self) {
        let stale = self.due.len() + self.later.len() - self.len;
        if self.len == 0 {
            self.clear_heaps();
        } else if stale > self.len && stale >= MIN_SWEEP {
            let slots = &self.slots;
            self.due.retain(|entry| Self::is_live(slots, entry));
            self.later.retain(|entry| Self::is_live(slots, entry));
        }
    }

    /// Gives every live entry a new `seq` in its current order, so `next_seq` can start again
    /// low. Runs once per 2^31 inserts and reschedules.
    #[cold]
    fn renumber(&mut self) {
        let slots = &self.slots;
        let mut entries: Vec<Entry> = std::mem::take(&mut self.due)
            .into_vec()
            .into_iter()
            .chain(std::mem::take(&mut self.later).into_vec())
            .filter(|entry| Self::is_live(slots, entry))
            .collect();
        entries.sort_unstable_by_key(|entry| (entry.deadline, entry.seq));
        for (seq, entry) in (0u32..).zip(entries.iter_mut()) {
            entry.seq = seq;
            let Slot::Occupied(value) = &mut self.slots[entry.slot as usize] else {
                unreachable!("a live entry points at an occupied slot");
            };
            let stamp = value.stamp();
            // Keeps the `DUE` bit: the entry stays in the heap it was in.
            value.set_stamp(Stamp {
                seq: seq | (stamp.seq & DUE),
                ..stamp
            });
        }
        self.next_seq = u32::try_from(entries.len()).expect("fewer than 2^31 tasks");
        // Sorted by deadline, so the due ones come first (invariant 4).
        let split = entries.partition_point(|entry| entry.deadline <= self.frontier);
        let later = entries.split_off(split);
        self.due = Heap::from_sorted(entries);
        self.later = Heap::from_sorted(later);
    }

    fn vacate(&mut self, slot: u32) -> T {
        let value = self.vacate_raw(slot);
        self.vacated += 1;
        if self.len == 0 {
            // Empty: give everything back. Costs O(slab length), which is at most the inserts
            // since the last time the queue was empty, so O(1) amortized.
            self.clear_heaps();
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
        let next = std::mem::replace(&mut self.free, slot);
        let old = std::mem::replace(&mut self.slots[slot as usize], Slot::Vacant { next });
        if !self.elders.is_empty() {
            self.elders.remove(&slot);
        }
        self.len -= 1;
        match old {
            Slot::Occupied(value) => {
                if value.stamp().seq & DUE != 0 {
                    self.due_live -= 1;
                }
                value
            }
            Slot::Vacant { .. } => unreachable!("vacating a vacant slot"),
        }
    }

    /// Drops vacant slots from the end of the slab and rebuilds the free list in ascending
    /// order, so new values fill the lowest holes and the tail can empty out. O(slab length).
    fn trim(&mut self) {
        self.vacated = 0;
        while let Some(Slot::Vacant { .. }) = self.slots.last() {
            self.slots.pop();
        }
        self.free = NIL;
        for (slot, entry) in self.slots.iter_mut().enumerate().rev() {
            if let Slot::Vacant { next } = entry {
                *next = self.free;
                // The slab holds fewer than u32::MAX slots (see `insert`).
                self.free = slot as u32;
            }
        }
        if self.slots.capacity() > 4 * self.slots.len().max(MIN_TRIM) {
            self.slots.shrink_to(2 * self.slots.len());
        }
    }
}

/// The id in `floor..floor + 2^32` whose low 32 bits are `low`.
fn widen(floor: u64, low: u32) -> u64 {
    // Truncating: only the low 32 bits of `floor` take part.
    let offset = low.wrapping_sub(floor as u32);
    floor + u64::from(offset)
}

// ===== impl Heap =====

/// A min-heap of entries by `(deadline, seq)`: the standard binary heap, whose pop does one
/// comparison a level on the way down (it sifts the hole to the bottom, then the last entry up).
#[derive(Debug, Default)]
struct Heap {
    entries: BinaryHeap<Entry>,
}

impl Ord for Entry {
    /// Reversed, so that the standard max-heap pops the smallest `(deadline, seq)` first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

/// Equal when `(deadline, seq)` are, as the order says: no two entries share a `seq`.
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Heap {
    /// A heap of `entries`, which are sorted by `(deadline, seq)`.
    fn from_sorted(entries: Vec<Entry>) -> Self {
        debug_assert!(entries.is_sorted_by(|a, b| !b.before(a)));
        Self {
            entries: BinaryHeap::from(entries),
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries, in no particular order.
    #[cfg(test)]
    fn as_slice(&self) -> &[Entry] {
        self.entries.as_slice()
    }

    fn into_vec(self) -> Vec<Entry> {
        self.entries.into_vec()
    }

    fn peek(&self) -> Option<&Entry> {
        self.entries.peek()
    }

    fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    fn pop(&mut self) -> Option<Entry> {
        self.entries.pop()
    }

    /// Keeps the entries `keep` accepts, rebuilds the heap in O(n) and gives back spare room.
    fn retain(&mut self, keep: impl FnMut(&Entry) -> bool) {
        self.entries.retain(keep);
        if self.entries.capacity() > 4 * self.entries.len() {
            self.entries.shrink_to(2 * self.entries.len());
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
        std::iter::from_fn(|| q.pop_due(now).map(|(_, i)| i.name)).collect()
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
            let entries = q.due.len() + q.later.len();
            assert!(
                entries <= 2 * q.len() + MIN_SWEEP + 1,
                "heaps {entries} len {}",
                q.len()
            );
        }
        assert_eq!(q.len(), 1);
        // The survivor sits at the end of the slab, so only the free list can shrink; once it
        // leaves, the whole slab goes.
        assert_eq!(q.remove(keep).map(|i| i.name), Some("keep"));
        assert!(q.due.entries.is_empty() && q.later.entries.is_empty());
        assert!(q.slots.is_empty(), "slab trimmed to nothing");
        assert!(q.slots.capacity() <= 4 * MIN_TRIM);
    }

    #[test]
    fn popping_everything_gives_the_memory_back() {
        let mut q = DeadlineQueue::new();
        let keys: Vec<Key> = (0..100_000).map(|_| q.insert(7, item("x"))).collect();
        assert_eq!(drain_due(&mut q, 7).len(), 100_000);
        assert_eq!(
            (q.due.entries.capacity(), q.later.entries.capacity()),
            (0, 0),
            "heap buffers freed"
        );
        assert!(q.slots.is_empty() && q.slots.capacity() <= 4 * MIN_TRIM);
        let fresh = q.insert(0, item("fresh"));
        assert!(!q.contains(keys[fresh.slot as usize]));
    }

    #[test]
    fn trimmed_slots_come_back_with_new_ids() {
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
        assert!(keys.iter().all(|key| fresh.id > key.id));
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
    fn renumbering_keeps_the_order_and_the_keys() {
        let mut q = DeadlineQueue::new();
        q.next_seq = DUE - 6;
        let a = q.insert(7, item("a"));
        let b = q.insert(7, item("b"));
        let c = q.insert(7, item("c"));
        let e = q.insert(9, item("e"));
        // a, b and c are due, e is not: renumbering must keep each in its heap.
        assert_eq!(q.count_due(7), 3);
        let gone = q.insert(1, item("gone"));
        q.remove(gone);
        // This insert reaches the `DUE` bit and renumbers the live entries first.
        let d = q.insert(7, item("d"));
        assert!(q.next_seq < 10);
        assert_eq!(q.count_due(7), 4);
        assert_eq!((q.due.len(), q.later.len()), (4, 1));
        assert!(q.reschedule(a, 7), "keys survive renumbering");
        assert!(q.contains(b) && q.contains(c) && q.contains(d) && q.contains(e));
        assert_eq!(drain_due(&mut q, 7), ["b", "c", "d", "a"]);
        assert_eq!(drain_due(&mut q, 9), ["e"]);
    }

    /// Issue 9, item 1. Generations used to run out after 2^32 empty/non-empty cycles, after
    /// which every new slot was born retired and the slab grew for ever. Ids start here right
    /// below the point where their low 32 bits wrap and the first census falls due.
    #[test]
    fn generations_never_run_out_across_empty_cycles() {
        let mut q = DeadlineQueue::new();
        q.next_id = WINDOW - 1_000;
        let mut stale = Vec::new();
        for round in 0..20_000 {
            let key = q.insert(round, item("x"));
            assert_eq!(key.slot, 0, "the one slot is reused every round");
            assert!(q.contains(key));
            assert_eq!(drain_due(&mut q, round), ["x"]);
            assert!(q.slots.is_empty(), "the slab does not grow");
            stale.push(key);
        }
        assert!(
            q.next_id > WINDOW && q.floor > 0,
            "past the low-bit wrap and a census"
        );
        let live = q.insert(0, item("live"));
        for key in stale {
            assert!(!q.contains(key) && q.remove(key).is_none() && !q.reschedule(key, 0));
        }
        assert_eq!(q.remove(live).map(|i| i.name), Some("live"));
    }

    /// Issue 9, item 1, in a queue that never empties: one value stays pending for ever while
    /// another slot is reused. Before each insert the id counter jumps 2^32 - 1 ahead, as if
    /// that many other values had come and gone, so every new occupant of the reused slot
    /// carries exactly the same 32-bit stamp as the stale keys of the slot: only the full id
    /// tells them apart.
    #[test]
    fn generations_never_run_out_with_a_value_pending_for_ever() {
        let mut q = DeadlineQueue::new();
        q.next_id = WINDOW - 3;
        let elder = q.insert(u64::MAX, item("elder"));
        let mut stale: Vec<Key> = Vec::new();
        for round in 0..1_000 {
            q.next_id += WINDOW - 1;
            let key = q.insert(round, item("x"));
            assert_eq!(key.slot, 1, "the one free slot is reused every round");
            if let Some(last) = stale.last() {
                assert_eq!(key.id % WINDOW, last.id % WINDOW, "same 32-bit stamp");
            }
            assert!(q.contains(key) && q.contains(elder));
            for old in &stale {
                assert!(!q.contains(*old), "a stale key reached a later value");
                assert!(!q.reschedule(*old, 0) && q.remove(*old).is_none());
            }
            assert_eq!(drain_due(&mut q, round), ["x"]);
            assert_eq!(q.slots.len(), 2, "the slab does not grow");
            assert!(q.elders.len() <= 1);
            stale.push(key);
        }
        assert!(q.reschedule(elder, 5), "the elder's key still works");
        assert_eq!(drain_due(&mut q, 5), ["elder"]);
        assert!(q.slots.is_empty() && q.elders.is_empty());
        for old in stale.iter().chain([&elder]) {
            assert!(!q.contains(*old));
        }
    }

    /// Issue 9, item 8: `history()` counts due tasks under the group's lock, so the count must
    /// not cost O(pending), nor O(due): it reads a counter, after moving only the values that
    /// fell due since the last `now` (once each), however many values are due, or due later.
    #[test]
    fn locks_held_while_user_code_runs_due_count_is_a_counter() {
        for later in [0u64, 1_000, 100_000] {
            let mut q = DeadlineQueue::new();
            for i in 0..later {
                q.insert(1_000 + i % 977, item("later"));
            }
            for i in 0..10 {
                q.insert(i % 3, item("due"));
            }
            let gone = q.insert(5, item("gone"));
            assert!(q.remove(gone).is_some(), "leaves a stale entry");
            assert_eq!(q.count_due(5), 10);
            // Only the 11 entries due by 5 left `later`; the rest were not looked at.
            assert_eq!((q.due.len(), q.later.len()), (10, later as usize));
            // Counting again, or at an earlier `now`, moves nothing.
            assert_eq!(q.count_due(5), 10);
            assert_eq!(q.count_due(2), 10, "counts at the latest now it was given");
            assert_eq!((q.due.len(), q.later.len()), (10, later as usize));
            // Against a count of every entry, as time goes on.
            for now in (5..=2_000).step_by(97) {
                let brute = [&q.due, &q.later]
                    .into_iter()
                    .flat_map(Heap::as_slice)
                    .filter(|e| e.deadline <= now && DeadlineQueue::is_live(&q.slots, e))
                    .count();
                assert_eq!(q.count_due(now), brute, "at {now}");
            }
        }
    }

    #[test]
    fn the_due_count_follows_inserts_removals_reschedules_and_pops() {
        let mut q = DeadlineQueue::new();
        let a = q.insert(10, item("a"));
        let b = q.insert(20, item("b"));
        let c = q.insert(30, item("c"));
        assert_eq!(q.count_due(20), 2);
        // Due now, moved later: no longer due; a later one moved into the past: due.
        assert!(q.reschedule(a, 40));
        assert!(q.reschedule(c, 5));
        assert_eq!(q.count_due(20), 2, "b and c");
        // Inserted at or before the frontier: due at once.
        let d = q.insert(20, item("d"));
        assert_eq!(q.count_due(20), 3);
        assert!(q.remove(d).is_some());
        assert_eq!(q.count_due(20), 2);
        assert_eq!(drain_due(&mut q, 20), ["c", "b"]);
        assert_eq!(q.count_due(20), 0);
        assert_eq!(q.count_due(40), 1);
        assert!(q.contains(a) && !q.contains(b));
        assert_eq!(drain_due(&mut q, 40), ["a"]);
        assert_eq!(q.count_due(u64::MAX), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Remove(usize),
        Reschedule(usize, u64),
        Pop,
        Count,
        Advance(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0u64..60).prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Remove),
            2 => (any::<usize>(), 0u64..60).prop_map(|(i, d)| Op::Reschedule(i, d)),
            3 => Just(Op::Pop),
            2 => Just(Op::Count),
            2 => (0u64..15).prop_map(Op::Advance),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The queue against a list of `(deadline, order, key)`: pops come out earliest
        /// deadline first, then schedule order (a reschedule goes behind); the due count, the
        /// keys that still work, and the length agree after every step; and this holds across
        /// a renumbering of schedule orders and a move of the id window, which the test starts
        /// right before.
        #[test]
        fn the_queue_follows_a_model(ops in proptest::collection::vec(op(), 1..200)) {
            let mut q = DeadlineQueue::new();
            q.next_seq = DUE - 40;
            q.next_id = WINDOW - 40;
            let mut model: Vec<(u64, u64, Key)> = Vec::new();
            let mut keys: Vec<Key> = Vec::new();
            let (mut now, mut order) = (0u64, 0u64);
            for op in ops {
                match op {
                    Op::Insert(offset) => {
                        let key = q.insert(now + offset, item("x"));
                        model.push((now + offset, order, key));
                        keys.push(key);
                        order += 1;
                    }
                    Op::Remove(i) if !keys.is_empty() => {
                        let key = keys[i % keys.len()];
                        let held = model.iter().position(|m| m.2 == key);
                        proptest::prop_assert_eq!(q.remove(key).is_some(), held.is_some());
                        if let Some(at) = held {
                            model.remove(at);
                        }
                    }
                    Op::Reschedule(i, offset) if !keys.is_empty() => {
                        let key = keys[i % keys.len()];
                        let held = model.iter().position(|m| m.2 == key);
                        let moved = q.reschedule(key, now + offset);
                        proptest::prop_assert_eq!(moved, held.is_some());
                        if let Some(at) = held {
                            model[at] = (now + offset, order, key);
                            order += 1;
                        }
                    }
                    Op::Pop => {
                        let first = model
                            .iter()
                            .enumerate()
                            .filter(|(_, m)| m.0 <= now)
                            .min_by_key(|(_, m)| (m.0, m.1))
                            .map(|(at, _)| at);
                        let popped = q.pop_due(now);
                        proptest::prop_assert_eq!(popped.is_some(), first.is_some());
                        if let Some(at) = first {
                            let (_, _, key) = model.remove(at);
                            let (id, _) = popped.expect("checked above");
                            proptest::prop_assert_eq!(id, key.id());
                            proptest::prop_assert!(!q.contains(key), "popped {key:?} still held");
                        }
                    }
                    Op::Count => {
                        let due = model.iter().filter(|m| m.0 <= now).count();
                        proptest::prop_assert_eq!(q.count_due(now), due);
                    }
                    Op::Advance(by) => now += by,
                    Op::Remove(_) | Op::Reschedule(..) => {}
                }
                proptest::prop_assert_eq!(q.len(), model.len());
                for key in &keys {
                    let held = model.iter().any(|m| m.2 == *key);
                    proptest::prop_assert_eq!(q.contains(*key), held);
                }
                let earliest = model.iter().map(|m| m.0).min();
                proptest::prop_assert_eq!(q.peek_deadline(), earliest);
            }
        }
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
