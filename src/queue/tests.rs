//! The queue's invariants, one test each, and a property test against a list model.

use super::heap::{Heap, KEEP_BYTES};
use super::lane::{MIN_SWEEP, MIN_TRIM, Slot};
use super::*;
/// A value as the tests store it: a name.
#[derive(Debug, PartialEq, Eq)]
struct Item(&'static str);

impl Pending<Item> for Item {
    fn start(self) -> Item {
        self
    }
}

/// A second value type, which leaves the queue as an `Item` too.
#[derive(Debug)]
struct Other(&'static str);

impl Pending<Item> for Other {
    fn start(self) -> Item {
        Item(self.0)
    }
}

fn item(name: &'static str) -> Item {
    Item(name)
}

/// The lane of `Item`s.
fn lane(q: &DeadlineQueue<Item>) -> &Lane<Item> {
    let erased: &dyn Any =
        &*q.lanes[q.find(TypeId::of::<Item>()).expect("items were inserted") as usize];
    erased.downcast_ref().expect("the lane of items")
}

fn drain_due(q: &mut DeadlineQueue<Item>, now: u64) -> Vec<&'static str> {
    std::iter::from_fn(|| q.pop_due(now).map(|(_, i)| i.0)).collect()
}

#[test]
fn a_future_holding_an_arc_costs_forty_bytes_entry_and_slot() {
    assert_eq!(std::mem::size_of::<Entry>(), 16);
    let arc = std::sync::Arc::new(0u8);
    let future = async move {
        std::future::ready(()).await;
        drop(arc);
    };
    fn slot_size<V>(_: &V) -> usize {
        std::mem::size_of::<Slot<V>>()
    }
    assert_eq!(std::mem::size_of_val(&future), 16);
    assert_eq!(slot_size(&future), 24, "no tag beside the 8-byte stamp");
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
    assert_eq!(q.remove(a).map(|i| i.0), Some("a"));
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
        let entries = lane(&q).due.len() + lane(&q).later.len();
        assert!(
            entries <= 2 * q.len() + MIN_SWEEP + 1,
            "heaps {entries} len {}",
            q.len()
        );
    }
    assert_eq!(q.len(), 1);
    // The survivor sits at the end of the slab, so only the free list can shrink; once it
    // leaves, the whole slab goes.
    assert_eq!(q.remove(keep).map(|i| i.0), Some("keep"));
    assert!(lane(&q).due.len() == 0 && lane(&q).later.len() == 0);
    assert!(lane(&q).slots.is_empty(), "slab trimmed to nothing");
    assert!(lane(&q).slots.capacity() <= 4 * MIN_TRIM);
}

#[test]
fn popping_everything_gives_the_memory_back() {
    let mut q = DeadlineQueue::new();
    let keys: Vec<Key> = (0..100_000).map(|_| q.insert(7, item("x"))).collect();
    assert_eq!(drain_due(&mut q, 7).len(), 100_000);
    let keep = KEEP_BYTES / size_of::<Entry>();
    let (due, later) = (lane(&q).due.capacity(), lane(&q).later.capacity());
    assert!(
        due.0 <= keep && due.1 <= keep && later.0 <= keep && later.1 <= keep,
        "heap buffers freed but for {KEEP_BYTES} bytes each: {due:?} {later:?}"
    );
    let slots = lane(&q).slots.capacity();
    assert!(lane(&q).slots.is_empty() && slots * size_of::<Slot<Item>>() <= KEEP_BYTES);
    let fresh = q.insert(0, item("fresh"));
    assert!(!q.contains(keys[fresh.slot as usize]));
}

#[test]
fn trimmed_slots_come_back_with_new_ids() {
    let mut q = DeadlineQueue::new();
    let keys: Vec<Key> = (0..200).map(|i| q.insert(i, item("x"))).collect();
    let values: Vec<(u64, Item)> = q.drain().collect();
    assert_eq!(values.len(), 200);
    assert!(lane(&q).slots.is_empty());
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
    assert_eq!((lane(&q).due.len(), lane(&q).later.len()), (4, 1));
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
        assert!(lane(&q).slots.is_empty(), "the slab does not grow");
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
    assert_eq!(q.remove(live).map(|i| i.0), Some("live"));
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
        assert_eq!(lane(&q).slots.len(), 2, "the slab does not grow");
        assert!(q.elders.len() <= 1);
        stale.push(key);
    }
    assert!(q.reschedule(elder, 5), "the elder's key still works");
    assert_eq!(q.deadline(elder), Some(5));
    assert_eq!(drain_due(&mut q, 5), ["elder"]);
    assert!(lane(&q).slots.is_empty() && q.elders.is_empty());
    for old in stale.iter().chain([&elder]) {
        assert!(!q.contains(*old));
    }
}

/// A drain names each value by its full id, an elder's too (one pending across a move of the
/// id window, whose stamp alone no longer tells its id).
#[test]
fn a_drain_names_every_value_by_its_full_id() {
    let mut q = DeadlineQueue::new();
    q.next_id = WINDOW - 3;
    let elder = q.insert(u64::MAX, item("elder"));
    q.next_id += WINDOW - 1;
    let young = q.insert(9, item("young"));
    assert!(
        !q.elders.is_empty(),
        "the census moved the window past the elder"
    );
    let mut ids: Vec<u64> = q.drain().map(|(id, _)| id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [elder.id(), young.id()]);
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
        assert_eq!(
            (lane(&q).due.len(), lane(&q).later.len()),
            (10, later as usize)
        );
        // Counting again, or at an earlier `now`, moves nothing.
        assert_eq!(q.count_due(5), 10);
        assert_eq!(q.count_due(2), 10, "counts at the latest now it was given");
        assert_eq!(
            (lane(&q).due.len(), lane(&q).later.len()),
            (10, later as usize)
        );
        // Against a count of every entry, as time goes on.
        for now in (5..=2_000).step_by(97) {
            let mut live = Vec::new();
            lane(&q).live_entries(0, &mut live);
            let brute = live.iter().filter(|(e, _)| e.deadline <= now).count();
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
    /// An insert `offset` after now, of an `Other` if the flag is set.
    Insert(u64, bool),
    Remove(usize),
    Reschedule(usize, u64),
    Pop,
    Count,
    Advance(u64),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0u64..60, any::<bool>()).prop_map(|(offset, other)| Op::Insert(offset, other)),
        2 => any::<usize>().prop_map(Op::Remove),
        2 => (any::<usize>(), 0u64..60).prop_map(|(i, d)| Op::Reschedule(i, d)),
        3 => Just(Op::Pop),
        2 => Just(Op::Count),
        2 => (0u64..15).prop_map(Op::Advance),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The queue against a list of `(deadline, order, key)`, with values of two types in two
    /// lanes: pops come out earliest deadline first, then schedule order across types (a
    /// reschedule goes behind); the lanes' heads agree with their tops; the due count, the
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
                Op::Insert(offset, other) => {
                    let key = if other {
                        q.insert(now + offset, Other("x"))
                    } else {
                        q.insert(now + offset, item("x"))
                    };
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
                let held = model.iter().find(|m| m.2 == *key).map(|m| m.0);
                proptest::prop_assert_eq!(q.contains(*key), held.is_some());
                proptest::prop_assert_eq!(q.deadline(*key), held, "deadline of {:?}", key);
            }
            let tops: Vec<_> = q.lanes.iter().map(|lane| lane.top().map(|e| e.key())).collect();
            proptest::prop_assert_eq!(q.heads.keys(), tops, "heads follow the lanes' tops");
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
    let mut drained: Vec<_> = q.drain().map(|(id, i)| (id, i.0)).collect();
    drained.sort_unstable();
    assert_eq!(drained, [(a.id(), "a"), (b.id(), "b")]);
    assert!(q.is_empty());
    assert!(!q.contains(a) && !q.contains(b));
    assert_eq!(q.peek_deadline(), None);
}

#[test]
fn values_of_several_types_come_out_by_deadline_then_insertion_order_across_types() {
    let mut q = DeadlineQueue::new();
    q.insert(10, Other("o1"));
    q.insert(10, item("i1"));
    q.insert(5, item("i0"));
    q.insert(10, Other("o2"));
    let moved = q.insert(1, item("moved"));
    q.insert(10, item("i2"));
    assert!(q.reschedule(moved, 10), "goes behind every value due at 10");
    assert_eq!(q.lanes.len(), 2);
    assert_eq!(q.count_due(10), 6);
    assert_eq!(
        drain_due(&mut q, 10),
        ["i0", "o1", "i1", "o2", "i2", "moved"]
    );
}

/// A value type per const parameter, all leaving the queue as `Item`s.
struct Typed<const N: usize>;

impl<const N: usize> Pending<Item> for Typed<N> {
    fn start(self) -> Item {
        Item(["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"][N % 8])
    }
}

#[test]
fn many_lanes_are_ordered_by_their_heads() {
    let mut q = DeadlineQueue::new();
    // Deadlines that interleave the types, inserted type by type.
    macro_rules! fill {
        ($($n:literal)*) => {$(
            for i in 0..4u64 {
                q.insert(100 - 12 * i - $n, Typed::<$n>);
            }
        )*};
    }
    // More types than `SCAN`: found through the map.
    fill!(0 1 2 3 4 5 6 7 8 9 10 11);
    assert_eq!((q.lanes.len(), q.index.len()), (12, 12));
    let mut deadlines = Vec::new();
    while let Some(deadline) = q.peek_deadline() {
        let (_, value) = q
            .pop_due(deadline)
            .expect("the head is due at its deadline");
        deadlines.push((deadline, value.0));
    }
    assert_eq!(deadlines.len(), 48);
    assert!(
        deadlines.windows(2).all(|w| w[0].0 < w[1].0),
        "{deadlines:?}"
    );
    assert_eq!(deadlines[0], (53, "t3"));
    assert!(q.heads.keys().iter().all(Option::is_none));
}

#[test]
fn a_reserved_lane_keeps_its_room_when_it_empties_and_gives_back_the_rest() {
    let mut q = DeadlineQueue::with_reserve(1_000);
    q.insert(0, item("first"));
    let (run, quad) = lane(&q).later.capacity();
    assert!(lane(&q).slots.capacity() >= 1_000 && run >= 1_000 && quad >= 1_000);
    for i in 0..20_000 {
        q.insert(i, item("x"));
    }
    assert_eq!(drain_due(&mut q, u64::MAX).len(), 20_001);
    let (slots, (run, quad)) = (lane(&q).slots.capacity(), lane(&q).later.capacity());
    assert!((1_000..2_000).contains(&slots), "slab room {slots}");
    assert!((1_000..2_000).contains(&run), "run room {run}");
    assert!((1_000..2_000).contains(&quad), "heap room {quad}");
    // Without a reserve, at most `KEEP_BYTES` a vector is kept.
    let mut q = DeadlineQueue::new();
    for i in 0..20_000 {
        q.insert(i, item("x"));
    }
    assert_eq!(drain_due(&mut q, u64::MAX).len(), 20_000);
    let (slots, (run, quad)) = (lane(&q).slots.capacity(), lane(&q).later.capacity());
    assert!(slots * size_of::<Slot<Item>>() <= KEEP_BYTES);
    assert!((run + quad) * size_of::<Entry>() <= 2 * KEEP_BYTES);
}

#[derive(Debug, Clone)]
enum HeapOp {
    Push(u64),
    Pop,
    /// Keeps the entries whose slot is not a multiple of the value.
    Retain(u32),
}

fn heap_op() -> impl proptest::strategy::Strategy<Value = HeapOp> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0u64..20).prop_map(HeapOp::Push),
        4 => Just(HeapOp::Pop),
        1 => (2u32..5).prop_map(HeapOp::Retain),
    ]
}

proptest::proptest! {
    /// The 4-ary heap against a sorted list: every pop is the least `(deadline, seq)`,
    /// through pushes with many equal deadlines and rebuilds after `retain`.
    #[test]
    fn the_heap_pops_what_a_sorted_list_would(ops in proptest::collection::vec(heap_op(), 1..400)) {
        let mut heap = Heap::default();
        let mut model: Vec<Entry> = Vec::new();
        for (seq, op) in (1u32..).zip(ops) {
            match op {
                HeapOp::Push(deadline) => {
                    let entry = Entry { deadline, seq, slot: seq };
                    heap.push(entry);
                    model.push(entry);
                }
                HeapOp::Pop => {
                    model.sort_by_key(Entry::key);
                    let expected = (!model.is_empty()).then(|| model.remove(0));
                    proptest::prop_assert_eq!(heap.pop().map(|e| e.key()), expected.map(|e| e.key()));
                }
                HeapOp::Retain(m) => {
                    heap.retain(|e| e.slot % m != 0);
                    model.retain(|e| e.slot % m != 0);
                }
            }
            proptest::prop_assert_eq!(heap.len(), model.len());
            let least = model.iter().map(Entry::key).min();
            proptest::prop_assert_eq!(heap.peek().map(Entry::key), least);
        }
    }
}
