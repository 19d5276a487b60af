//! The deadline queue: pending values by `(deadline, schedule order)`, each stored inline in a
//! slab of its own type, with no allocation per value.
//!
//! This is a plain data structure with no runtime, no lock and no clock: deadlines are `u64`
//! keys (see [`crate::clock`]) and "now" is passed in. The group keeps one of these behind its
//! mutex.
//!
//! # Lanes
//!
//! Values of one type `V` (one future type, for a group) live in a [`Lane`]: a slab of slots
//! holding the values themselves, and two heaps ([`heap::Heap`]: a run of ascending entries
//! and a 4-ary heap) of 16-byte entries that point into it (see [`lane`] for due and later).
//! The queue finds a value's lane by its `TypeId`, keeps the
//! lanes ordered by their earliest entry in [`Heads`], and hands out what every lane shares:
//! ids, schedule orders (so that equal deadlines come out in insertion order across types) and
//! the frontier. Choosing the earliest value is O(1), and a change of a lane's earliest entry
//! costs O(log lanes): a program with many future types does not pay per type.
//!
//! A value leaves the queue turned into the caller's `T` ([`Pending::start`]): a group boxes a
//! future only when it starts, is cancelled or is drained.
//!
//! # Layout and cost
//!
//! A pending value costs one heap entry (16 bytes) and one slot: the value and an 8-byte
//! [`Stamp`] (the low half of its id and its schedule order), with no tag, since the order is
//! never zero. For a future that captures one `Arc` (16 bytes) that is 40 bytes in all.
//!
//! # Due and later
//!
//! The queue remembers the latest `now` its due count was asked at (`frontier`). Values due by
//! then have their live entry in their lane's `due` heap, the rest in `later`; a value's stamp
//! says which (the top bit of its `seq`), so [`DeadlineQueue::count_due`] is O(lanes), plus
//! O(log n) for each value that fell due since the last count, which happens once in the
//! value's life. Popping moves nothing. A queue whose count nobody asks for keeps everything in
//! `later` and costs what one heap a lane does.
//!
//! # Removal and rescheduling
//!
//! A heap cannot remove from the middle, so [`DeadlineQueue::remove`] and
//! [`DeadlineQueue::reschedule`] leave the old heap entry behind as *stale*: an entry is live
//! only while its slot holds a value whose stamp has the entry's `seq`. Stale entries are
//! skipped when they reach the top and swept out in one pass once they outnumber the live ones,
//! so a heap never holds more than about twice its live entries plus a small constant.
//!
//! # Handles and slot reuse
//!
//! A [`Key`] names a lane, a slot and the id of the value in it. Every insert takes the next id
//! from a `u64` counter, so no two values of a queue ever share an id (2^64 inserts would take
//! centuries at a billion a second), and a key kept after its value left can never reach a
//! later value in the same slot. Slots are never retired: any vacant slot can be reused and the
//! vacant tail of a slab can be dropped, whatever happened to it before.
//!
//! The stamp keeps only the low 32 bits of the id. Ids are told apart by a window: every value
//! not in `elders` has an id in `floor..floor + 2^32`, where the low 32 bits name it exactly.
//! When the next id would leave the window, a census (one pass over the slabs, once per 2^31
//! inserts) moves the window up by 2^31 and writes the full id of each value left below it into
//! `elders`, a map that holds only values still pending after 2^31 later inserts.
//!
//! # Invariants
//!
//! 1. Ids are handed out in increasing order, once each: `next_id` only goes up.
//! 2. `next_id <= floor + 2^32` after every insert, and every occupied slot either is in
//!    `elders` with its value's full id, or holds a value whose id is in `floor..next_id`.
//! 3. `elders` has an entry for occupied slots only.
//! 4. `heads` holds each lane's top entry (live or stale), and `len` is the sum of the lanes'.
//! 5. Schedule orders are unique in the queue and below [`DUE`]; `next_seq` is above all.
//! 6. `head`, if set, is the earliest live entry of the queue and the top entry of its lane.
//!
//! Each lane keeps its own (see [`lane`]).

mod heap;
mod lane;
#[cfg(test)]
mod tests;

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use heap::{Entry, Heads};
use lane::{Erased, Lane, Stamp};

/// Marks the end of a free list, and the lane and slot of a key that names nothing.
const NIL: u32 = u32::MAX;

/// How far the id window moves at a census: half its width, so that a census follows at least
/// this many inserts after the previous one.
const CENSUS_STEP: u64 = 1 << 31;

/// The width of the id window: the ids the stamp's 32 bits can tell apart.
const WINDOW: u64 = 1 << 32;

/// The top bit of a stamp's `seq`: the value's live entry is in its lane's `due` heap. Schedule
/// orders themselves stay below it.
const DUE: u32 = 1 << 31;

/// Up to this many lanes, a type's lane is found by scanning `types`.
const SCAN: usize = 8;

/// A value the queue can store: what it becomes when it leaves the queue.
pub(crate) trait Pending<T>: Send + 'static {
    /// Turns the stored value into what the caller runs or drops.
    fn start(self) -> T;
}

/// Names one value in a [`DeadlineQueue`]: its lane, its slot and its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    id: u64,
    lane: u32,
    slot: u32,
}

impl Key {
    /// The id it names, whether or not its value is still in the queue.
    pub(crate) fn id(self) -> u64 {
        self.id
    }
}

/// One lane's drained values, each with its slot and the low half of its id.
type LaneDrain<T> = Box<dyn Iterator<Item = (u32, u32, T)> + Send>;

/// The values [`DeadlineQueue::drain`] took out, each with its id, turned into `T` as they are
/// iterated.
pub(crate) struct Drained<T> {
    /// Each lane's values, with the lane's index.
    lanes: Vec<(u32, LaneDrain<T>)>,
    len: usize,
    /// The id window and the elders as they were at the drain, to widen the stamps' ids.
    floor: u64,
    elders: BTreeMap<u64, u64>,
}

impl<T> Drained<T> {
    /// How many values there are.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl<T> fmt::Debug for Drained<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drained").field("len", &self.len).finish()
    }
}

impl<T> Iterator for Drained<T> {
    /// A value's id and the value.
    type Item = (u64, T);

    fn next(&mut self) -> Option<(u64, T)> {
        loop {
            let (lane, values) = self.lanes.last_mut()?;
            match values.next() {
                Some((slot, low, value)) => {
                    let id = match self.elders.get(&elder_key(*lane, slot)) {
                        Some(&id) => id,
                        None => widen(self.floor, low),
                    };
                    return Some((id, value));
                }
                None => drop(self.lanes.pop()),
            }
        }
    }
}

/// A lane for one value type, made before it is added to a queue.
pub(crate) struct Prepared<T> {
    ty: TypeId,
    lane: Box<dyn Erased<T>>,
}

impl<T: 'static> Prepared<T> {
    /// A lane for values of type `V` that keeps room for `reserve` of them (none if the
    /// allocator cannot give that much).
    pub(crate) fn new<V: Pending<T>>(reserve: usize) -> Self {
        Self {
            ty: TypeId::of::<V>(),
            lane: Box::new(Lane::<V>::new(reserve)),
        }
    }
}

impl<T> fmt::Debug for Prepared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared").finish_non_exhaustive()
    }
}

/// A min-heap of values by `(deadline, insertion order)` with O(log n) insert and pop, and
/// O(1) amortized removal and rescheduling by [`Key`].
pub(crate) struct DeadlineQueue<T> {
    /// One lane per value type, by number.
    lanes: Vec<Box<dyn Erased<T>>>,
    /// Each lane's value type, by lane number.
    types: Vec<TypeId>,
    /// Lane numbers by value type, once there are more than [`SCAN`] lanes (below that,
    /// `types` is scanned, and a queue with few types allocates no map).
    index: HashMap<TypeId, u32>,
    /// The lane of the latest insert: most inserts go where the last one went.
    recent: u32,
    /// The lanes by their top entries (invariant 4).
    heads: Heads,
    /// The earliest live entry and its lane, when known (invariant 6): a group asks for its
    /// head several times per start (whether it wants a slot, then to pop it), and each look
    /// would otherwise go through the lane's trait object and its slab.
    head: Option<(u32, Entry)>,
    /// The latest `now` the queue was given.
    frontier: u64,
    /// Occupied slots in all lanes; also the number of live heap entries.
    len: usize,
    /// The `seq` the next insert or reschedule gets (invariant 5). Renumbered before it would
    /// reach `DUE`.
    next_seq: u32,
    /// The id the next insert gets (invariant 1).
    next_id: u64,
    /// The bottom of the id window (invariant 2).
    floor: u64,
    /// The full ids of values whose id is below `floor`, by lane and slot ([`elder_key`];
    /// invariants 2 and 3). Empty unless a value stayed pending across 2^31 later inserts.
    elders: BTreeMap<u64, u64>,
    /// Room each lane keeps for this many values however few it holds.
    reserve: usize,
}

impl<T> fmt::Debug for DeadlineQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineQueue")
            .field("len", &self.len)
            .field("lanes", &self.lanes.len())
            .field("reserve", &self.reserve)
            .finish_non_exhaustive()
    }
}

impl<T: 'static> Default for DeadlineQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

// ===== impl DeadlineQueue =====

impl<T: 'static> DeadlineQueue<T> {
    pub(crate) fn new() -> Self {
        Self::with_reserve(0)
    }

    /// A queue whose lanes each keep room for `reserve` values from the start (written once,
    /// when the lane is made) to the end.
    pub(crate) fn with_reserve(reserve: usize) -> Self {
        Self {
            lanes: Vec::new(),
            types: Vec::new(),
            index: HashMap::new(),
            recent: 0,
            heads: Heads::default(),
            head: None,
            frontier: 0,
            len: 0,
            next_seq: 1,
            next_id: 0,
            floor: 0,
            elders: BTreeMap::new(),
            reserve,
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
        let Some(lane) = self.lanes.get(key.lane as usize) else {
            return false;
        };
        match lane.stamp(key.slot) {
            Some(stamp) => self.id_of(key.lane, key.slot, stamp) == key.id,
            None => false,
        }
    }

    /// The full id of the value in `slot` of `lane`, whose stamp is `stamp`.
    fn id_of(&self, lane: u32, slot: u32, stamp: Stamp) -> u64 {
        if !self.elders.is_empty() {
            if let Some(&id) = self.elders.get(&elder_key(lane, slot)) {
                return id;
            }
        }
        widen(self.floor, stamp.id)
    }

    /// Adds `value`, due at `deadline`. Among equal deadlines, earlier inserts come out first,
    /// whatever their types.
    #[inline]
    pub(crate) fn insert<V: Pending<T>>(&mut self, deadline: u64, value: V) -> Key {
        let id = self.take_id();
        let seq = self.take_seq();
        let lane = self.lane_of::<V>();
        let frontier = self.frontier;
        // The lane as `Any` (an upcast: no call), then one look at its type.
        let erased: &mut dyn Any = &mut *self.lanes[lane as usize];
        let typed = erased
            .downcast_mut::<Lane<V>>()
            .expect("a lane holds the type it was made for");
        // The low 32 bits; `widen` restores the rest (invariant 2).
        let slot = typed.insert(deadline, seq, id as u32, frontier, value);
        self.entered(
            lane,
            Entry {
                deadline,
                seq,
                slot,
            },
        );
        self.len += 1;
        Key { id, lane, slot }
    }

    /// `entry`, live, was just pushed into `lane`: brings the lanes' order and the known head
    /// up to date without looking into the lane.
    #[inline]
    fn entered(&mut self, lane: u32, entry: Entry) {
        // The lane's top is the least of its entries (the due ones come first), so the new
        // entry is its top if it comes before the old one, and nothing changes otherwise.
        let key = entry.key();
        if self.heads.key(lane).is_none_or(|top| key < top) {
            self.heads.set(lane, Some(key));
        }
        // While the head is known, no lane's top comes before it (a removal forgets it), so
        // an entry before the head is its lane's top and the new head (invariant 6).
        if self.head.is_some_and(|(_, head)| key < head.key()) {
            self.head = Some((lane, entry));
        }
    }

    /// Records `lane`'s top after a change that may have moved it (invariant 4).
    fn retop(&mut self, lane: u32) {
        let top = self.lanes[lane as usize].top();
        self.heads.set(lane, top.map(|entry| entry.key()));
    }

    /// The value in `slot` of `lane` lost its live entry: if it was the head, the head is not
    /// known any more (invariant 6).
    fn forget_head(&mut self, lane: u32, slot: u32) {
        if self
            .head
            .is_some_and(|(at, head)| at == lane && head.slot == slot)
        {
            self.head = None;
        }
    }

    /// The lane for values of type `V`, made on first use.
    #[inline]
    fn lane_of<V: Pending<T>>(&mut self) -> u32 {
        let lane = match self.find(TypeId::of::<V>()) {
            Some(lane) => lane,
            None => self.add_lane(Prepared::new::<V>(self.reserve)),
        };
        self.recent = lane;
        lane
    }

    /// The lane of values of type `ty`, if it has one: the latest insert's, most often.
    #[inline]
    fn find(&self, ty: TypeId) -> Option<u32> {
        if self.types.get(self.recent as usize) == Some(&ty) {
            Some(self.recent)
        } else if self.types.len() <= SCAN {
            let at = self.types.iter().position(|&t| t == ty)?;
            // Fewer than 2^32 lanes: `Heads::add` numbers them.
            Some(at as u32)
        } else {
            self.index.get(&ty).copied()
        }
    }

    /// Adds a lane for a type that has none.
    fn add_lane(&mut self, prepared: Prepared<T>) -> u32 {
        let lane = self.heads.add();
        self.lanes.push(prepared.lane);
        self.types.push(prepared.ty);
        if self.types.len() > SCAN {
            if self.index.is_empty() {
                self.index
                    .extend((0u32..).zip(&self.types).map(|(lane, &ty)| (ty, lane)));
            } else {
                self.index.insert(prepared.ty, lane);
            }
        }
        lane
    }

    /// The reserve a lane for `V` would be made with, if `V` has no lane yet and the queue
    /// keeps a reserve: such a lane is better made (and its room written) outside the caller's
    /// lock, with [`Prepared::new`], and [`install`](Self::install)ed.
    #[inline]
    pub(crate) fn lane_wanted<V: 'static>(&self) -> Option<usize> {
        (self.reserve > 0 && self.find(TypeId::of::<V>()).is_none()).then_some(self.reserve)
    }

    /// Adds `prepared` as the lane of its type, or hands it back, for the caller to drop after
    /// unlocking, if the type has one already (another caller got there first) or the queue
    /// keeps no reserve any more (it was drained, for a cancelled group, since the caller
    /// asked [`lane_wanted`](Self::lane_wanted)).
    pub(crate) fn install(&mut self, prepared: Prepared<T>) -> Option<Prepared<T>> {
        if self.reserve == 0 || self.find(prepared.ty).is_some() {
            return Some(prepared);
        }
        self.add_lane(prepared);
        None
    }

    /// Moves the value named by `key` to `deadline`, behind every value already due then.
    /// Returns `false` if `key` names nothing.
    pub(crate) fn reschedule(&mut self, key: Key, deadline: u64) -> bool {
        if !self.contains(key) {
            return false;
        }
        // Take the seq first: a renumbering rewrites the stamps, including this value's.
        let seq = self.take_seq();
        let swept =
            self.lanes[key.lane as usize].reschedule(key.slot, deadline, seq, self.frontier);
        if swept {
            self.retop(key.lane);
        }
        // Its old entry is stale; the new one is entered as an insert's is.
        self.forget_head(key.lane, key.slot);
        self.entered(
            key.lane,
            Entry {
                deadline,
                seq,
                slot: key.slot,
            },
        );
        true
    }

    /// The deadline of the value named by `key`, or `None` if it is gone: O(1) for the
    /// earliest value, otherwise a scan of the entries of its lane (see `Lane::deadline`).
    pub(crate) fn deadline(&self, key: Key) -> Option<u64> {
        if !self.contains(key) {
            return None;
        }
        if let Some((lane, entry)) = self.head {
            if lane == key.lane && entry.slot == key.slot {
                return Some(entry.deadline);
            }
        }
        self.lanes[key.lane as usize].deadline(key.slot)
    }

    /// Removes and returns the value named by `key`, or `None` if it is gone.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        if !self.contains(key) {
            return None;
        }
        let (_, value, changed) = self.lanes[key.lane as usize].remove(key.slot);
        if changed {
            self.retop(key.lane);
        }
        self.forget(key.lane, key.slot);
        Some(value)
    }

    /// The earliest deadline in the queue.
    pub(crate) fn peek_deadline(&mut self) -> Option<u64> {
        self.live_head().map(|(_, entry)| entry.deadline)
    }

    /// A lower bound of the earliest deadline, exact unless the top of a heap is stale (left
    /// behind by a removal). O(1) and never discards anything, so a caller that only needs to
    /// know that nothing is due before some time pays nothing after a removal.
    pub(crate) fn peek_bound(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        self.heads.first().map(|(_, (deadline, _))| deadline)
    }

    /// Removes and returns the earliest value, with its id, if its deadline is at or before
    /// `now`.
    #[cfg(test)]
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<(u64, T)> {
        self.pop_due_with_deadline(now)
            .map(|(id, _, value)| (id, value))
    }

    /// [`pop_due`](Self::pop_due), with the value's deadline: `(id, deadline, value)`.
    pub(crate) fn pop_due_with_deadline(&mut self, now: u64) -> Option<(u64, u64, T)> {
        let (lane, top) = self.live_head()?;
        if top.deadline > now {
            return None;
        }
        let typed = &mut self.lanes[lane as usize];
        debug_assert_eq!(typed.top().map(|entry| entry.key()), Some(top.key()));
        let (stamp, value) = typed.pop_top();
        // The lane's next live entry, found now rather than by the next look for the head.
        let next = typed.live_top();
        self.heads.set(lane, next.map(|entry| entry.key()));
        let id = self.id_of(lane, top.slot, stamp);
        self.forget(lane, top.slot);
        // If its lane still comes first, it is the earliest live entry of the queue: every
        // other lane's recorded top is at or before its live one (invariant 6).
        if let Some(entry) = next {
            if self.heads.first().is_some_and(|(first, _)| first == lane) {
                self.head = Some((lane, entry));
            }
        }
        Some((id, top.deadline, value))
    }

    /// The lane with the earliest live entry, and that entry, after discarding stale entries
    /// from the tops of the lanes in the way.
    fn live_head(&mut self) -> Option<(u32, Entry)> {
        if self.head.is_some() {
            return self.head;
        }
        loop {
            let (lane, key) = self.heads.first()?;
            let top = self.lanes[lane as usize].live_top();
            match top {
                Some(entry) if entry.key() == key => {
                    self.head = Some((lane, entry));
                    return self.head;
                }
                // Stale entries left the lane's top: put it back in its place and look again.
                _ => self.heads.set(lane, top.map(|entry| entry.key())),
            }
        }
    }

    /// A key that names no value, with an id no value of this queue ever has: for a value that
    /// was refused rather than inserted.
    pub(crate) fn detached_key(&mut self) -> Key {
        Key {
            id: self.take_id(),
            lane: NIL,
            slot: NIL,
        }
    }

    /// How many values are due at `now` (or at the latest `now` it was asked with, if that is
    /// later). O(lanes), plus O(log n) for each value that fell due since the last count: once
    /// in each value's life, and only for queues whose count is asked for.
    pub(crate) fn count_due(&mut self, now: u64) -> usize {
        if now > self.frontier {
            self.frontier = now;
            self.head = None;
            for lane in 0..self.lanes.len() {
                self.lanes[lane].advance(now);
                // Fewer than 2^32 lanes (see `Heads::add`).
                self.retop(lane as u32);
            }
        }
        self.lanes.iter().map(|lane| lane.due_live()).sum()
    }

    /// Removes every value, in no particular order, and leaves the queue empty, with no room
    /// kept. Keys handed out before stay dead: their ids are never handed out again.
    ///
    /// The slabs themselves are handed out (no copy), and each value is turned into `T` only as
    /// the caller iterates, so the caller can do that and drop the values outside its lock.
    pub(crate) fn drain(&mut self) -> Drained<T> {
        let len = self.len;
        let lanes = (0u32..)
            .zip(&mut self.lanes)
            .map(|(lane, typed)| {
                self.heads.set(lane, None);
                (lane, typed.drain())
            })
            .collect();
        let elders = std::mem::take(&mut self.elders);
        self.head = None;
        self.len = 0;
        self.reserve = 0;
        Drained {
            lanes,
            len,
            floor: self.floor,
            elders,
        }
    }

    /// The value in `slot` of `lane` left: its id is forgotten, and so is the head if it was.
    fn forget(&mut self, lane: u32, slot: u32) {
        self.forget_head(lane, slot);
        if !self.elders.is_empty() {
            self.elders.remove(&elder_key(lane, slot));
        }
        self.len -= 1;
    }

    /// The next id, after a census if it would leave the window (invariant 2).
    #[inline]
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
    /// every value that falls below it. O(slab lengths), once per `CENSUS_STEP` inserts.
    #[cold]
    fn census(&mut self, floor: u64) {
        for (lane, typed) in (0u32..).zip(&self.lanes) {
            typed.census(lane, self.floor, floor, &mut self.elders);
        }
        self.floor = floor;
    }

    #[inline]
    fn take_seq(&mut self) -> u32 {
        // Schedule orders stay below the `DUE` bit (invariant 5).
        if self.next_seq == DUE - 1 {
            self.renumber();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Gives every live entry of every lane a new `seq` in its current order, from 1, so
    /// `next_seq` can start again low. Runs once per 2^31 inserts and reschedules.
    #[cold]
    fn renumber(&mut self) {
        self.head = None;
        let mut entries = Vec::with_capacity(self.len);
        for (lane, typed) in (0u32..).zip(&self.lanes) {
            typed.live_entries(lane, &mut entries);
        }
        entries.sort_unstable_by_key(|(entry, _)| entry.key());
        let mut by_lane: Vec<Vec<Entry>> = self.lanes.iter().map(|_| Vec::new()).collect();
        let mut seq = 1;
        for (mut entry, lane) in entries {
            entry.seq = seq;
            seq += 1;
            by_lane[lane as usize].push(entry);
        }
        self.next_seq = seq;
        for (lane, entries) in (0u32..).zip(by_lane) {
            self.lanes[lane as usize].renumbered(entries, self.frontier);
            self.retop(lane);
        }
    }
}

/// Where `elders` keeps the id of the value in `slot` of `lane`.
fn elder_key(lane: u32, slot: u32) -> u64 {
    (u64::from(lane) << 32) | u64::from(slot)
}

/// The id in `floor..floor + 2^32` whose low 32 bits are `low`.
fn widen(floor: u64, low: u32) -> u64 {
    // Truncating: only the low 32 bits of `floor` take part.
    let offset = low.wrapping_sub(floor as u32);
    floor + u64::from(offset)
}
