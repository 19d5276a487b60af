//! The heaps of the deadline queue: a min-heap of [`Entry`]s per lane, and [`Heads`], the small
//! heap that orders the lanes by their earliest entry.

use std::cmp::Ordering;

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
    /// Reversed, so that the standard max-heap pops the smallest `(deadline, seq)` first.
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

/// How many children a heap node has. Four halves the levels a pop walks down against a binary
/// heap, and a node's children sit side by side (64 bytes of entries); `BENCHMARKS.md` has the
/// measurements against the standard `BinaryHeap` (`cargo bench --bench heap`).
const ARITY: usize = 4;

/// A min-heap of entries by `(deadline, seq)`: a 4-ary heap in a `Vec`, the children of node
/// `i` at `ARITY * i + 1 ..= ARITY * i + ARITY`. A pop moves the hole at the root down to a leaf
/// along the least children, one level at a time, then puts the last entry in it and sifts that
/// up (usually not at all): fewer comparisons than sifting the last entry down. It keeps room
/// for `reserve` entries however few it holds.
#[derive(Debug, Default)]
pub(super) struct Heap {
    entries: Vec<Entry>,
    reserve: usize,
}

impl Heap {
    /// An empty heap with room for `reserve` entries, written once now so that the pages are
    /// faulted in before the first push rather than during it.
    pub(super) fn with_reserve(reserve: usize) -> Self {
        let blank = Entry {
            deadline: 0,
            seq: 0,
            slot: 0,
        };
        let mut entries = vec![blank; reserve];
        entries.clear();
        Self { entries, reserve }
    }

    /// A heap of `entries`, which are sorted by `(deadline, seq)`: a sorted array is a heap.
    pub(super) fn from_sorted(entries: Vec<Entry>, reserve: usize) -> Self {
        debug_assert!(entries.is_sorted_by_key(Entry::key));
        let mut entries = entries;
        entries.reserve(reserve.saturating_sub(entries.len()));
        Self { entries, reserve }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries, in no particular order.
    pub(super) fn as_slice(&self) -> &[Entry] {
        &self.entries
    }

    pub(super) fn peek(&self) -> Option<&Entry> {
        self.entries.first()
    }

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
            let end = (first + ARITY).min(len);
            let mut least = first;
            for child in first + 1..end {
                if self.entries[child].key() < self.entries[least].key() {
                    least = child;
                }
            }
            self.entries[hole] = self.entries[least];
            hole = least;
        }
        self.entries[hole] = last;
        self.sift_up(hole);
        Some(top)
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

    /// Empties the heap and gives back all room but the reserve.
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.entries.shrink_to(self.reserve);
    }

    /// Keeps the entries `keep` accepts, rebuilds the heap in O(n) and gives back spare room.
    pub(super) fn retain(&mut self, keep: impl FnMut(&Entry) -> bool) {
        self.entries.retain(keep);
        // Floyd's construction: sift each parent down, from the last one to the root.
        let len = self.entries.len();
        for at in (0..len.div_ceil(ARITY)).rev() {
            self.sift_down(at);
        }
        if self.entries.capacity() > 4 * len.max(self.reserve) {
            self.entries.shrink_to((2 * len).max(self.reserve));
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
            let end = (first + ARITY).min(len);
            let mut least = first;
            for child in first + 1..end {
                if self.entries[child].key() < self.entries[least].key() {
                    least = child;
                }
            }
            if entry.key() <= self.entries[least].key() {
                break;
            }
            self.entries[at] = self.entries[least];
            at = least;
        }
        self.entries[at] = entry;
    }

    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.entries.capacity()
    }
}

// ===== impl Heads =====

/// The lanes ordered by their top entries (live or stale), smallest first, so that the
/// queue's earliest value is found in O(1) and each change of a lane's top costs O(log lanes),
/// however many lanes (future types) a queue has. A lane with no entries has no key and sorts
/// last.
#[derive(Debug, Default)]
pub(super) struct Heads {
    /// Lanes in heap order.
    order: Vec<u32>,
    /// Each lane's index in `order`.
    at: Vec<u32>,
    /// Each lane's top key.
    keys: Vec<Option<(u64, u32)>>,
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
        let lane = u32::try_from(self.keys.len()).expect("fewer than 2^32 future types");
        self.keys.push(None);
        self.at.push(lane);
        self.order.push(lane);
        lane
    }

    /// The lane with the earliest top entry, with that entry's key, if any lane has one.
    pub(super) fn first(&self) -> Option<(u32, (u64, u32))> {
        let lane = *self.order.first()?;
        self.keys[lane as usize].map(|key| (lane, key))
    }

    /// Records `lane`'s new top key and moves it to its place.
    pub(super) fn set(&mut self, lane: u32, key: Option<(u64, u32)>) {
        let old = std::mem::replace(&mut self.keys[lane as usize], key);
        if old == key {
            return;
        }
        let at = self.at[lane as usize] as usize;
        if before(key, old) {
            self.sift_up(at);
        } else {
            self.sift_down(at);
        }
    }

    fn key_at(&self, at: usize) -> Option<(u64, u32)> {
        self.keys[self.order[at] as usize]
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.order.swap(a, b);
        // Positions are below the number of lanes, which fits in a u32 (see `add`).
        self.at[self.order[a] as usize] = a as u32;
        self.at[self.order[b] as usize] = b as u32;
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
                if child < self.order.len() && before(self.key_at(child), self.key_at(least)) {
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
    pub(super) fn keys(&self) -> &[Option<(u64, u32)>] {
        &self.keys
    }
}
