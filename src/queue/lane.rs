//! One lane of the deadline queue: the values of one type, stored inline in a slab, with their
//! two heaps of entries. The queue above keeps ids, schedule orders and the frontier, and
//! chooses between lanes; a lane knows nothing of other lanes.
//!
//! # Invariants
//!
//! 1. Every entry in `due` has a deadline at or before the queue's frontier, every entry in
//!    `later` one after it.
//! 2. A live value's stamp has the [`DUE`] bit if and only if its live entry is in `due`, and
//!    `due_live` counts those values.
//! 3. An entry is live if and only if its slot is occupied by a value whose stamp has the
//!    entry's `seq` (the `DUE` bit aside); a value has exactly one live entry.
//! 4. `free` links every vacant slot once; `len` counts the occupied ones.

use std::any::Any;
use std::collections::btree_map::Entry::Vacant as Vacancy;
use std::collections::{BTreeMap, TryReserveError};
use std::num::NonZeroU32;

use super::heap::{Entry, Heap, KEEP_BYTES, shrunk};
use super::{DUE, NIL, Pending, widen};

/// Below this many stale entries the heaps are never swept: a sweep is O(heap length).
pub(super) const MIN_SWEEP: usize = 1024;

/// Below this many slots the slab is never trimmed.
pub(super) const MIN_TRIM: usize = 64;

/// What the queue keeps about a value beside it: the low 32 bits of its id, and its position
/// in schedule order with, in the top bit, whether it is due ([`DUE`]). Orders start at 1, so
/// the slot needs no tag of its own: a vacant slot is told apart by the zero `seq` cannot hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) id: u32,
    pub(super) seq: NonZeroU32,
}

impl Stamp {
    /// The schedule order without the `DUE` bit.
    fn order(self) -> u32 {
        self.seq.get() & !DUE
    }

    fn is_due(self) -> bool {
        self.seq.get() & DUE != 0
    }

    /// The same stamp with `seq` (an order, with or without the `DUE` bit) in place of its own.
    fn with_seq(self, seq: u32) -> Self {
        Self {
            seq: NonZeroU32::new(seq).expect("schedule orders start at 1"),
            ..self
        }
    }
}

/// One slab slot: 8 bytes of stamp beside the value, no tag (the stamp's `NonZeroU32` is the
/// niche the vacant variant's link fits around). A 16-byte future makes a 24-byte slot.
#[derive(Debug)]
pub(super) enum Slot<V> {
    Occupied {
        stamp: Stamp,
        value: V,
    },
    /// `next` links the free list.
    Vacant {
        next: u32,
    },
}

/// The values of one type and their entries.
#[derive(Debug)]
pub(super) struct Lane<V> {
    /// Entries due at the frontier (invariant 1).
    pub(super) due: Heap,
    /// Entries due after the frontier.
    pub(super) later: Heap,
    /// Live values whose entry is in `due` (invariant 2).
    due_live: usize,
    pub(super) slots: Vec<Slot<V>>,
    /// Head of the free list of vacant slots (invariant 4).
    free: u32,
    /// Occupied slots; also the number of live entries.
    len: usize,
    /// Slots vacated since the last trim; a trim waits for half the slab's length of these.
    vacated: usize,
    /// Slots (and heap entries) the lane keeps however few values it holds.
    reserve: usize,
}

impl<V> Lane<V> {
    /// An empty lane that keeps room for `reserve` values (see [`Heap::reserved`] for what is
    /// written now), or, if the allocator cannot give that much, none: a reserve is a request
    /// for speed, not a condition of working.
    pub(super) fn new(reserve: usize) -> Self {
        Self::reserved(reserve)
            .unwrap_or_else(|_| Self::reserved(0).expect("no room, no allocation"))
    }

    fn reserved(reserve: usize) -> Result<Self, TryReserveError> {
        let mut slots = Vec::new();
        slots.try_reserve_exact(reserve)?;
        slots.resize_with(reserve, || Slot::Vacant { next: NIL });
        slots.clear();
        Ok(Self {
            due: Heap::reserved(reserve, false)?,
            later: Heap::reserved(reserve, true)?,
            due_live: 0,
            slots,
            free: NIL,
            len: 0,
            vacated: 0,
            reserve,
        })
    }

    /// Adds `value` with order `seq` and the low bits `id` of its id; returns its slot.
    #[inline]
    pub(super) fn insert(
        &mut self,
        deadline: u64,
        seq: u32,
        id: u32,
        frontier: u64,
        value: V,
    ) -> u32 {
        let slot = if self.free != NIL {
            self.free
        } else {
            u32::try_from(self.slots.len())
                .ok()
                .filter(|&slot| slot != NIL)
                .expect("a schedgroup queue holds at most u32::MAX - 1 tasks of one type")
        };
        let seq = self.push(
            Entry {
                deadline,
                seq,
                slot,
            },
            frontier,
        );
        let occupied = Slot::Occupied {
            stamp: Stamp {
                id,
                seq: NonZeroU32::new(seq).expect("schedule orders start at 1"),
            },
            value,
        };
        if slot as usize == self.slots.len() {
            self.slots.push(occupied);
        } else {
            match std::mem::replace(&mut self.slots[slot as usize], occupied) {
                Slot::Vacant { next } => self.free = next,
                Slot::Occupied { .. } => unreachable!("free list points at an occupied slot"),
            }
        }
        self.len += 1;
        slot
    }

    /// The earliest entry, live or stale: the top of `due` if it has one, else of `later`
    /// (invariant 1).
    pub(super) fn top(&self) -> Option<Entry> {
        self.due.peek().or(self.later.peek()).copied()
    }

    fn top_heap(&mut self) -> &mut Heap {
        if self.due.peek().is_some() {
            &mut self.due
        } else {
            &mut self.later
        }
    }

    /// The earliest live entry, after discarding the stale entries above it.
    pub(super) fn live_top(&mut self) -> Option<Entry> {
        loop {
            let top = self.top()?;
            if self.is_live(&top) {
                return Some(top);
            }
            self.top_heap().pop();
        }
    }

    pub(super) fn stamp(&self, slot: u32) -> Option<Stamp> {
        match self.slots.get(slot as usize) {
            Some(Slot::Occupied { stamp, .. }) => Some(*stamp),
            _ => None,
        }
    }

    /// The deadline of the value in `slot` (occupied): a scan of the one heap its stamp says
    /// holds its live entry, O(entries there). Nothing else keeps a value's deadline: a slot
    /// has no room for it (see the queue's "Layout and cost").
    pub(super) fn deadline(&self, slot: u32) -> Option<u64> {
        let stamp = self.stamp(slot)?;
        let heap = if stamp.is_due() {
            &self.due
        } else {
            &self.later
        };
        heap.iter()
            .find(|entry| entry.slot == slot && entry.seq == stamp.order())
            .map(|entry| entry.deadline)
    }

    /// Removes the top entry, which must be live, and its value.
    pub(super) fn pop_top(&mut self) -> (Stamp, V) {
        let top = self.top_heap().pop().expect("pop_top on an empty lane");
        self.vacate(top.slot)
    }

    /// Removes the value in `slot`, which must be occupied; its entry goes stale. The flag
    /// says whether the heaps were swept or emptied, which may change the lane's top (a stale
    /// entry left behind does not).
    pub(super) fn remove(&mut self, slot: u32) -> (Stamp, V, bool) {
        let (stamp, value) = self.vacate(slot);
        let swept = self.sweep_if_stale();
        (stamp, value, swept || self.len == 0)
    }

    /// Gives the value in `slot` (occupied) a new entry at `deadline` with order `seq`; the
    /// old one goes stale. Returns whether the heaps were swept: if not, the lane's top is the
    /// lesser of the old top and the new entry.
    pub(super) fn reschedule(&mut self, slot: u32, deadline: u64, seq: u32, frontier: u64) -> bool {
        let seq = self.push(
            Entry {
                deadline,
                seq,
                slot,
            },
            frontier,
        );
        let Slot::Occupied { stamp, .. } = &mut self.slots[slot as usize] else {
            unreachable!("the queue checked the slot");
        };
        if stamp.is_due() {
            // Its old entry, in `due`, is stale now.
            self.due_live -= 1;
        }
        *stamp = stamp.with_seq(seq);
        self.sweep_if_stale()
    }

    /// How many values are due at the frontier.
    pub(super) fn due_live(&self) -> usize {
        self.due_live
    }

    /// Moves the entries due by `now` (the new frontier) from `later` to `due`, marking their
    /// values (invariants 1 and 2). Stale entries are dropped on the way.
    pub(super) fn advance(&mut self, now: u64) {
        while let Some(&entry) = self.later.peek() {
            if entry.deadline > now {
                break;
            }
            self.later.pop();
            if let Some(Slot::Occupied { stamp, .. }) = self.slots.get_mut(entry.slot as usize) {
                if stamp.seq.get() == entry.seq {
                    *stamp = stamp.with_seq(entry.seq | DUE);
                    self.due_live += 1;
                    self.due.push(entry);
                }
            }
        }
    }

    /// Takes every value out, leaving the lane empty, with no room kept.
    pub(super) fn take_all(&mut self) -> Vec<Slot<V>> {
        let slots = std::mem::take(&mut self.slots);
        self.free = NIL;
        self.len = 0;
        self.vacated = 0;
        self.reserve = 0;
        self.due = Heap::default();
        self.later = Heap::default();
        self.due_live = 0;
        slots
    }

    /// Writes into `elders` the full id of every value whose id falls below `floor` as the
    /// window moves up from `old`, unless it is there already. `lane` names this lane there.
    pub(super) fn census(&self, lane: u32, old: u64, floor: u64, elders: &mut BTreeMap<u64, u64>) {
        for (slot, entry) in (0u32..).zip(&self.slots) {
            if let Slot::Occupied { stamp, .. } = entry {
                if let Vacancy(vacant) = elders.entry(super::elder_key(lane, slot)) {
                    let id = widen(old, stamp.id);
                    if id < floor {
                        vacant.insert(id);
                    }
                }
            }
        }
    }

    /// The live entries, each with `lane`, in no particular order.
    pub(super) fn live_entries(&self, lane: u32, out: &mut Vec<(Entry, u32)>) {
        for entry in self.due.iter().chain(self.later.iter()) {
            if self.is_live(entry) {
                out.push((*entry, lane));
            }
        }
    }

    /// Replaces the entries with `entries`, the live ones renumbered in their order (sorted by
    /// `(deadline, seq)`), and gives each value its new order.
    pub(super) fn renumbered(&mut self, mut entries: Vec<Entry>, frontier: u64) {
        for entry in &entries {
            let Slot::Occupied { stamp, .. } = &mut self.slots[entry.slot as usize] else {
                unreachable!("a live entry points at an occupied slot");
            };
            // Keeps the `DUE` bit: the entry stays in the heap it was in.
            *stamp = stamp.with_seq(entry.seq | (stamp.seq.get() & DUE));
        }
        // Sorted by deadline, so the due ones come first (invariant 1).
        let split = entries.partition_point(|entry| entry.deadline <= frontier);
        let later = entries.split_off(split);
        self.due = Heap::from_sorted(entries, self.reserve);
        self.later = Heap::from_sorted(later, self.reserve);
    }

    fn is_live(&self, entry: &Entry) -> bool {
        is_live(&self.slots, entry)
    }

    /// Puts `entry` in the heap its deadline belongs to (invariant 1) and returns the `seq` its
    /// value's stamp must carry (invariant 2).
    #[inline]
    fn push(&mut self, entry: Entry, frontier: u64) -> u32 {
        if entry.deadline <= frontier {
            self.due.push(entry);
            self.due_live += 1;
            entry.seq | DUE
        } else {
            self.later.push(entry);
            entry.seq
        }
    }

    fn clear_heaps(&mut self) {
        self.due.clear();
        self.later.clear();
        self.due_live = 0;
    }

    /// Sweeps stale entries out once they outnumber live ones (and `MIN_SWEEP`). Each sweep
    /// costs O(heap length) and follows at least `MIN_SWEEP` + live removals, so it is O(1)
    /// amortized per removal.
    /// Returns whether it swept (or emptied) the heaps.
    fn sweep_if_stale(&mut self) -> bool {
        let stale = self.due.len() + self.later.len() - self.len;
        if self.len == 0 {
            self.clear_heaps();
            true
        } else if stale > self.len && stale >= MIN_SWEEP {
            let slots = &self.slots;
            self.due.retain(|entry| is_live(slots, entry));
            self.later.retain(|entry| is_live(slots, entry));
            true
        } else {
            false
        }
    }

    fn vacate(&mut self, slot: u32) -> (Stamp, V) {
        let removed = self.vacate_raw(slot);
        self.vacated += 1;
        if self.len == 0 {
            // Empty: give everything back but the reserve. Costs O(slab length), which is at
            // most the inserts since the lane was last empty, so O(1) amortized.
            self.clear_heaps();
            self.trim();
        } else if self.vacated >= self.slots.len() / 2
            && self.slots.len() >= MIN_TRIM
            && self.len * 2 < self.slots.len()
        {
            self.trim();
        }
        removed
    }

    /// Empties `slot` (which must be occupied) and links it into the free list.
    fn vacate_raw(&mut self, slot: u32) -> (Stamp, V) {
        let next = std::mem::replace(&mut self.free, slot);
        let old = std::mem::replace(&mut self.slots[slot as usize], Slot::Vacant { next });
        self.len -= 1;
        match old {
            Slot::Occupied { stamp, value } => {
                if stamp.is_due() {
                    self.due_live -= 1;
                }
                (stamp, value)
            }
            Slot::Vacant { .. } => unreachable!("vacating a vacant slot"),
        }
    }

    /// Drops vacant slots from the end of the slab and rebuilds the free list in ascending
    /// order, so new values fill the lowest holes and the tail can empty out. O(slab length).
    /// Spare room beyond the reserve (or [`KEEP_BYTES`]) goes back to the allocator.
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
        let room = (KEEP_BYTES / size_of::<Slot<V>>()).max(self.reserve);
        if let Some(to) = shrunk(self.slots.capacity(), self.slots.len(), room) {
            self.slots.shrink_to(to);
        }
    }
}

/// Whether `entry` is its value's live entry (invariant 3).
fn is_live<V>(slots: &[Slot<V>], entry: &Entry) -> bool {
    matches!(slots.get(entry.slot as usize), Some(Slot::Occupied { stamp, .. }) if stamp.order() == entry.seq)
}

// ===== impl Erased =====

/// The object-safe face of a [`Lane`], for the queue's choices between lanes. Values leave
/// through it already turned into `T` ([`Pending::start`]).
pub(super) trait Erased<T>: Any + Send {
    fn top(&self) -> Option<Entry>;
    fn live_top(&mut self) -> Option<Entry>;
    fn stamp(&self, slot: u32) -> Option<Stamp>;
    fn deadline(&self, slot: u32) -> Option<u64>;
    fn pop_top(&mut self) -> (Stamp, T);
    fn remove(&mut self, slot: u32) -> (Stamp, T, bool);
    fn reschedule(&mut self, slot: u32, deadline: u64, seq: u32, frontier: u64) -> bool;
    fn due_live(&self) -> usize;
    fn advance(&mut self, now: u64);
    /// Every value, with its slot and the low half of its id, turned into `T` one at a time as
    /// the iterator is consumed (outside the caller's lock).
    fn drain(&mut self) -> Box<dyn Iterator<Item = (u32, u32, T)> + Send>;
    fn census(&self, lane: u32, old: u64, floor: u64, elders: &mut BTreeMap<u64, u64>);
    fn live_entries(&self, lane: u32, out: &mut Vec<(Entry, u32)>);
    fn renumbered(&mut self, entries: Vec<Entry>, frontier: u64);
}

impl<T: 'static, V: Pending<T>> Erased<T> for Lane<V> {
    fn top(&self) -> Option<Entry> {
        Lane::top(self)
    }

    fn live_top(&mut self) -> Option<Entry> {
        Lane::live_top(self)
    }

    fn stamp(&self, slot: u32) -> Option<Stamp> {
        Lane::stamp(self, slot)
    }

    fn deadline(&self, slot: u32) -> Option<u64> {
        Lane::deadline(self, slot)
    }

    fn pop_top(&mut self) -> (Stamp, T) {
        let (stamp, value) = Lane::pop_top(self);
        (stamp, value.start())
    }

    fn remove(&mut self, slot: u32) -> (Stamp, T, bool) {
        let (stamp, value, changed) = Lane::remove(self, slot);
        (stamp, value.start(), changed)
    }

    fn reschedule(&mut self, slot: u32, deadline: u64, seq: u32, frontier: u64) -> bool {
        Lane::reschedule(self, slot, deadline, seq, frontier)
    }

    fn due_live(&self) -> usize {
        Lane::due_live(self)
    }

    fn advance(&mut self, now: u64) {
        Lane::advance(self, now);
    }

    fn drain(&mut self) -> Box<dyn Iterator<Item = (u32, u32, T)> + Send> {
        Box::new(
            (0u32..)
                .zip(self.take_all())
                .filter_map(|(slot, entry)| match entry {
                    Slot::Occupied { stamp, value } => Some((slot, stamp.id, value.start())),
                    Slot::Vacant { .. } => None,
                }),
        )
    }

    fn census(&self, lane: u32, old: u64, floor: u64, elders: &mut BTreeMap<u64, u64>) {
        Lane::census(self, lane, old, floor, elders);
    }

    fn live_entries(&self, lane: u32, out: &mut Vec<(Entry, u32)>) {
        Lane::live_entries(self, lane, out);
    }

    fn renumbered(&mut self, entries: Vec<Entry>, frontier: u64) {
        Lane::renumbered(self, entries, frontier);
    }
}
