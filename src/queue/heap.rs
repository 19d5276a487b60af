//! The heaps of the deadline queue: a min-heap of [`Entry`]s per lane, and [`Heads`], the small
//! heap that orders the lanes by their earliest entry.

use std::cmp::Ordering;
use std::collections::{TryReserveError, VecDeque};

/// One heap entry: a value's deadline, its schedule order and its slot in the lane. The heap
/// pops the smallest `(deadline, seq)` first.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub(super) deadline: u64,
    pub(super) seq: u32,
    pub(super) slot: u32,
}

impl Entry {
    /// What orders entries, and lanes by their top entries.
    pub(super) fn key(&self) -> (u64, u32) {
        (self.deadline, self.seq)
    }
}

impl Ord for Entry {
    /// Reversed, so that the standard max-heap pops the smallest `(deadline, seq)` first: the
    /// queue's own heaps compare keys; this order is for `benches/heap.rs`, which runs the
    /// standard `BinaryHeap` beside them on the same entries.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

/// Equal when `(deadline, seq)` are, as the order says: no two entries share a `seq`.
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// ===== impl Heap =====

/// The room each vector of a heap (or slab) keeps when it empties, beyond any reserve, in
/// bytes: a queue that empties and fills again with a few entries does not allocate each time.
pub(super) const KEEP_BYTES: usize = 256;

/// The room a vector of `len` elements and `capacity` should shrink to, if it holds more than
/// four times what it needs, where it needs `len` and at least `room`: to twice `len` (so that
/// a few pushes after a shrink do not grow it again at once), or `room`.
pub(super) fn shrunk(capacity: usize, len: usize, room: usize) -> Option<usize> {
    (capacity > (4 * len).max(room)).then(|| (2 * len).max(room))
}

/// [`KEEP_BYTES`] in entries.
const KEEP: usize = KEEP_BYTES / size_of::<Entry>();

/// How many children a node of the 4-ary part has. Four halves the levels a pop walks down
/// against a binary heap, and a node's children sit side by side (64 bytes of entries);
/// `BENCHMARKS.md` has the measurements against the standard `BinaryHeap`
/// (`cargo bench --bench heap`).
const ARITY: usize = 4;

/// A min-heap of entries by `(deadline, seq)`, in two parts: `run`, entries that came in
/// ascending order, in a queue; and `quad`, the rest, in a 4-ary heap. The least entry is the
/// front of `run` or the top of `quad`.
///
/// Most schedules come in ascending order (a burst scheduled for one instant, each task with
/// the same delay, a retry loop's growing deadlines): for them a push is an append and a pop a
/// pop from the front, O(1), with no walk down a tree through cold memory. An entry that comes
/// before the end of the run goes to `quad`, which costs what any heap does.
///
/// It keeps room for `reserve` entries in each part however few it holds.
#[derive(Debug, Default)]
pub(super) struct Heap {
    /// Ascending by `(deadline, seq)`.
    run: VecDeque<Entry>,
    quad: Quad,
    reserve: usize,
}

impl Heap {
    /// An empty heap with room for `reserve` entries in each part. If `touch`, the run's room
    /// is written once now, so that its pages are faulted in before the first push rather than
    /// during it (schedules in ascending order use only the run); the heap's is only reserved.
    pub(super) fn reserved(reserve: usize, touch: bool) -> Result<Self, TryReserveError> {
        let mut run = Vec::new();
        run.try_reserve_exact(reserve)?;
        if touch {
            let blank = Entry {
                deadline: 0,
                seq: 0,
                slot: 0,
            };
            run.resize(reserve, blank);
            run.clear();
        }
        let mut quad = Vec::new();
        quad.try_reserve_exact(reserve)?;
        Ok(Self {
            run: VecDeque::from(run),
            quad: Quad { entries: quad },
            reserve,
        })
    }

    /// A heap of `entries`, which are sorted by `(deadline, seq)`: they make the run. Room for
    /// `reserve` entries in each part is asked for, and gone without if the allocator refuses.
    pub(super) fn from_sorted(entries: Vec<Entry>, reserve: usize) -> Self {
        debug_assert!(entries.is_sorted_by_key(Entry::key));
        let mut run = VecDeque::from(entries);
        // A refusal leaves the heap working, without the room: a reserve is for speed.
        let _ = run.try_reserve_exact(reserve.saturating_sub(run.len()));
        let mut quad = Vec::new();
        let _ = quad.try_reserve_exact(reserve);
        Self {
            run,
            quad: Quad { entries: quad },
            reserve,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.run.len() + self.quad.entries.len()
    }

    /// The entries, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.run.iter().chain(&self.quad.entries)
    }

    /// Whether the least entry is the top of `quad` rather than the front of `run`.
    fn least_in_quad(&self) -> bool {
        match (self.run.front(), self.quad.entries.first()) {
            (Some(run), Some(quad)) => quad.key() < run.key(),
            (None, quad) => quad.is_some(),
            (Some(_), None) => false,
        }
    }

    pub(super) fn peek(&self) -> Option<&Entry> {
        if self.least_in_quad() {
            self.quad.entries.first()
        } else {
            self.run.front()
        }
    }

    #[inline]
    pub(super) fn push(&mut self, entry: Entry) {
        match self.run.back() {
            Some(last) if entry.key() < last.key() => self.quad.push(entry),
            _ => self.run.push_back(entry),
        }
    }

    pub(super) fn pop(&mut self) -> Option<Entry> {
        if self.least_in_quad() {
            self.quad.pop()
        } else {
            self.run.pop_front()
        }
    }

    /// Empties the heap and gives back all room but the reserve (or [`KEEP_BYTES`]).
    pub(super) fn clear(&mut self) {
        let keep = self.reserve.max(KEEP);
        self.run.clear();
        self.run.shrink_to(keep);
        self.quad.entries.clear();
        self.quad.entries.shrink_to(keep);
    }

    /// Keeps the entries `keep` accepts, rebuilds the heap in O(n) and gives back spare room.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        // A subsequence of an ascending run is ascending.
        self.run.retain(&mut keep);
        let room = self.reserve.max(KEEP);
        if let Some(to) = shrunk(self.run.capacity(), self.run.len(), room) {
            self.run.shrink_to(to);
        }
        self.quad.retain(keep, room);
    }

    /// The room of each part.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> (usize, usize) {
        (self.run.capacity(), self.quad.entries.capacity())
    }
}

/// A 4-ary min-heap in a `Vec`: the children of node `i` at `ARITY * i + 1 ..= ARITY * i +
/// ARITY`. A pop moves the hole at the root down to a leaf along the least children, one level
/// at a time, then puts the last entry in it and sifts that up (usually not at all): fewer
/// comparisons than sifting the last entry down.
#[derive(Debug, Default)]
pub(super) struct Quad {
    entries: Vec<Entry>,
}

impl Quad {
    pub(super) fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
        self.sift_up(self.entries.len() - 1);
    }

    pub(super) fn pop(&mut self) -> Option<Entry> {
        let last = self.entries.pop()?;
        if self.entries.is_empty() {
            return Some(last);
        }
        let top = self.entries[0];
        let len = self.entries.len();
        let mut hole = 0;
        loop {
            let first = ARITY * hole + 1;
            if first >= len {
                break;
            }
            let least = self.least_child(first, len);
            self.entries[hole] = self.entries[least];
            hole = least;
        }
        self.entries[hole] = last;
        self.sift_up(hole);
        Some(top)
    }

    /// The least of the children from `first` on (at most `ARITY` of them, below `len`).
    fn least_child(&self, first: usize, len: usize) -> usize {
        let end = (first + ARITY).min(len);
        let mut least = first;
        for child in first + 1..end {
            if self.entries[child].key() < self.entries[least].key() {
                least = child;
            }
        }
        least
    }

    /// Moves the entry at `at` up past every parent it comes before.
    fn sift_up(&mut self, mut at: usize) {
        let entry = self.entries[at];
        while at > 0 {
            let parent = (at - 1) / ARITY;
            if entry.key() >= self.entries[parent].key() {
                break;
            }
            self.entries[at] = self.entries[parent];
            at = parent;
        }
        self.entries[at] = entry;
    }

    /// Keeps the entries `keep` accepts and rebuilds the heap in O(n) (Floyd: each parent sifted
    /// down, from the last one to the root); gives back room beyond twice the length or
    /// `room`.
    fn retain(&mut self, keep: impl FnMut(&Entry) -> bool, room: usize) {
        self.entries.retain(keep);
        let len = self.entries.len();
        for at in (0..len.div_ceil(ARITY)).rev() {
            self.sift_down(at);
        }
        if let Some(to) = shrunk(self.entries.capacity(), len, room) {
            self.entries.shrink_to(to);
        }
    }

    /// Moves the entry at `at` down below every child that comes before it.
    fn sift_down(&mut self, mut at: usize) {
        let len = self.entries.len();
        let entry = self.entries[at];
        loop {
            let first = ARITY * at + 1;
            if first >= len {
                break;
            }
            let least = self.least_child(first, len);
            if entry.key() <= self.entries[least].key() {
                break;
            }
            self.entries[at] = self.entries[least];
            at = least;
        }
        self.entries[at] = entry;
    }
}

// ===== impl Heads =====

/// The lanes ordered by their top entries (live or stale), smallest first, so that the
/// queue's earliest value is found in O(1) and each change of a lane's top costs O(log lanes),
/// however many lanes (future types) a queue has. A lane with no entries has no key and sorts
/// last.
#[derive(Debug, Default)]
pub(super) struct Heads {
    /// One row per lane (or heap position, for `lane`): the lane at heap position `i` is
    /// `rows[i].lane`; lane `l` is at heap position `rows[l].at`, with top key `rows[l].key`.
    /// One vector rather than three: most queues have one or two lanes.
    rows: Vec<Row>,
}

#[derive(Debug)]
struct Row {
    lane: u32,
    at: u32,
    key: Option<(u64, u32)>,
}

/// Whether key `a` sorts before `b`: `None`, an empty lane, sorts after every key.
fn before(a: Option<(u64, u32)>, b: Option<(u64, u32)>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a < b,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

impl Heads {
    /// Adds an empty lane; returns its number.
    pub(super) fn add(&mut self) -> u32 {
        let lane = u32::try_from(self.rows.len()).expect("fewer than 2^32 future types");
        // Keyless, so last: it can go at the end of the heap.
        self.rows.push(Row {
            lane,
            at: lane,
            key: None,
        });
        lane
    }

    /// The lane with the earliest top entry, with that entry's key, if any lane has one.
    pub(super) fn first(&self) -> Option<(u32, (u64, u32))> {
        let lane = self.rows.first()?.lane;
        self.rows[lane as usize].key.map(|key| (lane, key))
    }

    /// `lane`'s top key as last recorded.
    pub(super) fn key(&self, lane: u32) -> Option<(u64, u32)> {
        self.rows[lane as usize].key
    }

    /// Records `lane`'s new top key and moves it to its place.
    pub(super) fn set(&mut self, lane: u32, key: Option<(u64, u32)>) {
        let old = std::mem::replace(&mut self.rows[lane as usize].key, key);
        if old == key {
            return;
        }
        let at = self.rows[lane as usize].at as usize;
        if before(key, old) {
            self.sift_up(at);
        } else {
            self.sift_down(at);
        }
    }

    fn key_at(&self, at: usize) -> Option<(u64, u32)> {
        self.rows[self.rows[at].lane as usize].key
    }

    fn swap(&mut self, a: usize, b: usize) {
        let (lane_a, lane_b) = (self.rows[a].lane, self.rows[b].lane);
        self.rows[a].lane = lane_b;
        self.rows[b].lane = lane_a;
        // Positions are below the number of lanes, which fits in a u32 (see `add`).
        self.rows[lane_b as usize].at = a as u32;
        self.rows[lane_a as usize].at = b as u32;
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if !before(self.key_at(at), self.key_at(parent)) {
                break;
            }
            self.swap(at, parent);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let mut least = at;
            for child in [2 * at + 1, 2 * at + 2] {
                if child < self.rows.len() && before(self.key_at(child), self.key_at(least)) {
                    least = child;
                }
            }
            if least == at {
                break;
            }
            self.swap(at, least);
            at = least;
        }
    }

    /// Each lane's recorded key, by lane.
    #[cfg(test)]
    pub(super) fn keys(&self) -> Vec<Option<(u64, u32)>> {
        self.rows.iter().map(|row| row.key).collect()
    }
}
