//! The cache alone: bounds, LRU order, coalescing, invalidation, counters. The
//! node-level tests (S16 through the node, eviction then download) are in
//! `node_tests.rs`.

use super::model::{Step, run};
use super::*;
use crate::key::Key;
use crate::layer_name::{KeyRange, LsnRange};
use crate::lsn::Lsn;
use crate::redo::DeltaOp;
use proptest::prelude::*;

const T: TenantId = TenantId([1; 16]);
const TL: TimelineId = TimelineId([2; 16]);

fn layer(i: u64) -> LayerKey {
    let keys = KeyRange::new(Key(0), Key(100)).unwrap();
    let lsns = LsnRange::new(Lsn(i * 10 + 1), Lsn(i * 10 + 11)).unwrap();
    LayerKey { tenant: T, timeline: TL, name: LayerName::Delta { keys, lsns } }
}

fn cache(capacity_bytes: u64) -> PageCache<u32> {
    PageCache::new(&PageCacheConfig { capacity_bytes })
}

/// Misses, fills and completes one layer read for waiter 0.
fn fill(c: &mut PageCache<u32>, i: u64, bytes: &[u8]) {
    let LayerLookup::Miss(f) = c.lookup_layer(layer(i), RequestKind::Get, 0) else {
        panic!("expected a miss for layer {i}")
    };
    c.complete_layer_fill(f, Some(bytes)).unwrap();
    c.check_invariants();
}

#[test]
fn a_filled_layer_hits_and_counts_by_kind() {
    let mut c = cache(1000);
    fill(&mut c, 1, &[7; 100]);
    assert_eq!(c.lookup_layer(layer(1), RequestKind::Get, 1), LayerLookup::Hit(vec![7; 100]));
    assert_eq!(
        c.lookup_layer(layer(1), RequestKind::Background, 2),
        LayerLookup::Hit(vec![7; 100])
    );
    assert_eq!(c.hits(RequestKind::Get, ContentKind::LayerFile), 1);
    assert_eq!(c.misses(RequestKind::Get, ContentKind::LayerFile), 1);
    assert_eq!(c.hits(RequestKind::Background, ContentKind::LayerFile), 1);
    assert_eq!(c.misses(RequestKind::Background, ContentKind::LayerFile), 0);
    assert_eq!(c.hits(RequestKind::Get, ContentKind::Value), 0);
    assert_eq!((c.bytes(), c.entries()), (100, 1));
}

#[test]
fn least_recently_used_goes_first_and_the_bound_holds() {
    let mut c = cache(300);
    fill(&mut c, 1, &[1; 100]);
    fill(&mut c, 2, &[2; 100]);
    fill(&mut c, 3, &[3; 100]);
    // Touch 1: now 2 is the oldest.
    assert!(matches!(c.lookup_layer(layer(1), RequestKind::Get, 0), LayerLookup::Hit(_)));
    fill(&mut c, 4, &[4; 100]);
    assert!(c.contains_layer(&layer(1)));
    assert!(!c.contains_layer(&layer(2)), "the least recently used entry stayed");
    assert!(c.contains_layer(&layer(3)) && c.contains_layer(&layer(4)));
    assert_eq!(c.bytes(), 300);
    assert_eq!(c.stats().evictions, 1);
}

/// S16: the miss that fills the cache gets the bytes with its completion, even when
/// they are never inserted (the cache is smaller than one entry).
#[test]
fn a_cache_smaller_than_one_entry_still_hands_the_bytes_to_every_waiter() {
    let mut c = cache(10);
    let LayerLookup::Miss(f) = c.lookup_layer(layer(1), RequestKind::Get, 1) else { panic!() };
    assert_eq!(c.lookup_layer(layer(1), RequestKind::Get, 2), LayerLookup::Joined(f));
    let (key, waiters) = c.complete_layer_fill(f, Some(&[9; 100])).unwrap();
    assert_eq!((key, waiters), (layer(1), vec![1, 2]));
    assert_eq!((c.bytes(), c.entries()), (0, 0));
    c.check_invariants();
}

#[test]
fn concurrent_misses_share_one_fill() {
    let mut c = cache(1000);
    let LayerLookup::Miss(f) = c.lookup_layer(layer(1), RequestKind::Background, 1) else {
        panic!()
    };
    assert_eq!(c.lookup_layer(layer(1), RequestKind::Get, 2), LayerLookup::Joined(f));
    assert_eq!(c.lookup_layer(layer(1), RequestKind::Get, 3), LayerLookup::Joined(f));
    // Another layer gets its own fill.
    assert!(
        matches!(c.lookup_layer(layer(2), RequestKind::Get, 4), LayerLookup::Miss(g) if g != f)
    );
    assert_eq!(c.fills_in_flight(), 2);
    c.check_invariants();
    let (_, waiters) = c.complete_layer_fill(f, Some(&[1; 50])).unwrap();
    assert_eq!(waiters, vec![1, 2, 3]);
    // A get joined the background read, so the bytes were inserted.
    assert!(c.contains_layer(&layer(1)));
    assert_eq!(c.stats().coalesced, 2);
    assert_eq!(c.complete_layer_fill(f, None), None, "a fill completes once");
}

#[test]
fn background_misses_do_not_insert() {
    let mut c = cache(1000);
    let LayerLookup::Miss(f) = c.lookup_layer(layer(1), RequestKind::Background, 1) else {
        panic!()
    };
    c.complete_layer_fill(f, Some(&[1; 50])).unwrap();
    assert!(!c.contains_layer(&layer(1)));
    let v = ValueKey::of(&RedoRequest { base: None, deltas: vec![vec![DeltaOp::Clear]] });
    c.insert_value(v.clone(), RequestKind::Background, vec![]);
    assert_eq!(c.lookup_value(&v, RequestKind::Get), None);
}

#[test]
fn a_failed_read_inserts_nothing_and_the_next_miss_reads_again() {
    let mut c = cache(1000);
    let LayerLookup::Miss(f) = c.lookup_layer(layer(1), RequestKind::Get, 1) else { panic!() };
    assert_eq!(c.complete_layer_fill(f, None).unwrap().1, vec![1]);
    assert!(matches!(c.lookup_layer(layer(1), RequestKind::Get, 2), LayerLookup::Miss(_)));
}

#[test]
fn invalidation_drops_the_entry_and_detaches_a_read_in_flight() {
    let mut c = cache(1000);
    fill(&mut c, 1, &[1; 50]);
    c.invalidate_layer(&layer(1));
    assert!(!c.contains_layer(&layer(1)));
    // A read in flight when the file changes: its waiters are served, its bytes
    // (maybe the old file) are not kept, and a new miss reads again.
    let LayerLookup::Miss(old) = c.lookup_layer(layer(1), RequestKind::Get, 1) else { panic!() };
    c.invalidate_layer(&layer(1));
    c.check_invariants();
    let LayerLookup::Miss(new) = c.lookup_layer(layer(1), RequestKind::Get, 2) else {
        panic!("a miss after invalidation must not join the stale read")
    };
    assert_ne!(old, new);
    assert_eq!(c.complete_layer_fill(old, Some(&[1; 50])).unwrap().1, vec![1]);
    assert!(!c.contains_layer(&layer(1)), "stale bytes were inserted");
    c.check_invariants();
    assert_eq!(c.complete_layer_fill(new, Some(&[2; 50])).unwrap().1, vec![2]);
    assert_eq!(c.lookup_layer(layer(1), RequestKind::Get, 3), LayerLookup::Hit(vec![2; 50]));
    c.check_invariants();
}

#[test]
fn timeline_and_tenant_invalidation_touch_only_their_layers() {
    let mut c = cache(10_000);
    fill(&mut c, 1, &[1; 10]);
    let other = LayerKey { timeline: TimelineId([3; 16]), ..layer(1) };
    let LayerLookup::Miss(f) = c.lookup_layer(other.clone(), RequestKind::Get, 0) else { panic!() };
    c.complete_layer_fill(f, Some(&[3; 10])).unwrap();
    let v = ValueKey::of(&RedoRequest { base: Some(vec![1]), deltas: vec![] });
    c.insert_value(v.clone(), RequestKind::Get, vec![1]);
    c.invalidate_timeline(T, TL);
    assert!(!c.contains_layer(&layer(1)));
    assert!(c.contains_layer(&other));
    assert_eq!(c.lookup_value(&v, RequestKind::Get), Some(vec![1]), "values stay valid");
    c.invalidate_tenant(T);
    assert!(!c.contains_layer(&other));
    c.check_invariants();
}

#[test]
fn values_are_keyed_by_the_exact_request_and_cost_key_plus_value() {
    let mut c = cache(10_000);
    let r1 = RedoRequest { base: Some(vec![1, 2]), deltas: vec![vec![DeltaOp::Append(vec![3])]] };
    let r2 = RedoRequest { base: Some(vec![1, 2]), deltas: vec![vec![DeltaOp::Append(vec![4])]] };
    let (k1, k2) = (ValueKey::of(&r1), ValueKey::of(&r2));
    assert_eq!(c.lookup_value(&k1, RequestKind::Get), None);
    c.insert_value(k1.clone(), RequestKind::Get, r1.execute().unwrap());
    assert_eq!(c.lookup_value(&k1, RequestKind::Get), Some(vec![1, 2, 3]));
    assert_eq!(c.lookup_value(&k2, RequestKind::Get), None);
    assert_eq!(c.bytes(), k1.len_bytes() + 3);
    assert_eq!(c.hits(RequestKind::Get, ContentKind::Value), 1);
    assert_eq!(c.misses(RequestKind::Get, ContentKind::Value), 2);
    c.check_invariants();
}

#[test]
fn capacity_zero_caches_nothing() {
    let mut c = cache(0);
    fill(&mut c, 1, &[1]);
    assert!(matches!(c.lookup_layer(layer(1), RequestKind::Get, 0), LayerLookup::Miss(_)));
    assert_eq!(c.bytes(), 0);
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..6u8, any::<bool>()).prop_map(|(l, g)| Step::Lookup(l, g)),
        (0..8usize, any::<bool>()).prop_map(|(i, ok)| Step::Complete(i, ok)),
        (0..6u8).prop_map(Step::Invalidate),
    ]
}

/// Those plus values, wider invalidations and crashes.
fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => step(),
        1 => (0..6u8).prop_map(Step::InvalidateTimeline),
        1 => (0..6u8).prop_map(Step::InvalidateTenant),
        2 => (0..4u8, any::<bool>()).prop_map(|(v, g)| Step::LookupValue(v, g)),
        2 => (0..4u8, any::<bool>()).prop_map(|(v, g)| Step::InsertValue(v, g)),
        1 => Just(Step::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Against a model of the files (`model::run`): a hit always returns the
    /// file's current bytes (files change only with an invalidation, as the node
    /// guarantees), the bound holds, and every waiter is answered exactly once.
    #[test]
    fn hits_are_never_stale_and_every_waiter_is_answered(
        capacity in 0..400u64,
        steps in proptest::collection::vec(step(), 1..200),
    ) {
        run(capacity, steps);
    }

    /// The same with values, timeline and tenant invalidations and crashes.
    #[test]
    fn values_invalidations_and_crashes_keep_every_hit_right(
        capacity in 0..400u64,
        steps in proptest::collection::vec(any_step(), 1..200),
    ) {
        run(capacity, steps);
    }
}

/// `a_cache_smaller_than_one_entry_still_hands_the_bytes_to_every_waiter`,
/// `a_filled_layer_hits_and_counts_by_kind`, values and invalidations, driven
/// through `handle` alone.
#[test]
fn handle_dispatches_every_input() {
    use PageCacheInput as In;
    use PageCacheOutput as Out;
    let now = crate::time::Instant::ZERO;
    let mut c = cache(1000);
    let lookup = |waiter| In::LookupLayer { key: layer(1), kind: RequestKind::Get, waiter };
    let Out::Layer(LayerLookup::Miss(f)) = c.handle(now, lookup(1)) else { panic!("a miss") };
    assert_eq!(c.handle(now, lookup(2)), Out::Layer(LayerLookup::Joined(f)));
    let complete = In::CompleteLayerFill { fill: f, bytes: Some(vec![7; 100]) };
    assert_eq!(c.handle(now, complete.clone()), Out::Filled(Some((layer(1), vec![1, 2]))));
    assert_eq!(c.handle(now, complete), Out::Filled(None), "an unknown fill: nothing");
    assert_eq!(c.handle(now, lookup(3)), Out::Layer(LayerLookup::Hit(vec![7; 100])));
    assert_eq!(c.hits(RequestKind::Get, ContentKind::LayerFile), 1);
    assert_eq!(c.misses(RequestKind::Get, ContentKind::LayerFile), 2);
    c.check_invariants();
    // Values: a get inserts, a background value does not.
    let v = ValueKey::of(&RedoRequest { base: Some(vec![1]), deltas: vec![] });
    let get_v = |kind| In::LookupValue { key: v.clone(), kind };
    assert_eq!(c.handle(now, get_v(RequestKind::Get)), Out::Value(None));
    let insert = In::InsertValue { key: v.clone(), kind: RequestKind::Get, value: vec![5; 10] };
    assert_eq!(c.handle(now, insert), Out::Done);
    assert_eq!(c.handle(now, get_v(RequestKind::Background)), Out::Value(Some(vec![5; 10])));
    // Invalidations drop the layer, never the value.
    assert_eq!(c.handle(now, In::InvalidateLayer(layer(1))), Out::Done);
    assert!(!c.contains_layer(&layer(1)));
    let Out::Layer(LayerLookup::Miss(f)) = c.handle(now, lookup(4)) else { panic!("a miss") };
    let complete = In::CompleteLayerFill { fill: f, bytes: Some(vec![8; 100]) };
    assert_eq!(c.handle(now, complete), Out::Filled(Some((layer(1), vec![4]))));
    c.handle(now, In::InvalidateTimeline { tenant: T, timeline: TL });
    assert!(!c.contains_layer(&layer(1)));
    fill(&mut c, 2, &[2; 100]);
    c.handle(now, In::InvalidateTenant(T));
    assert!(!c.contains_layer(&layer(2)));
    assert_eq!(c.handle(now, get_v(RequestKind::Get)), Out::Value(Some(vec![5; 10])));
    c.check_invariants();
}

/// Checks that can fail: each check of [`PageCache::check_invariants`] fires on a
/// state that breaks it. `busy()` passes every check; each test breaks one rule.
mod checks_fire {
    use super::*;

    /// Layers 1 and 2 cached; a read of layer 3 in flight (attached); a read of
    /// layer 4 in flight but invalidated (detached).
    fn busy() -> (PageCache<u32>, FillId, FillId) {
        let mut c = cache(1000);
        fill(&mut c, 1, &[1; 100]);
        fill(&mut c, 2, &[2; 100]);
        let LayerLookup::Miss(attached) = c.lookup_layer(layer(3), RequestKind::Get, 0) else {
            panic!("a miss")
        };
        let LayerLookup::Miss(detached) = c.lookup_layer(layer(4), RequestKind::Get, 1) else {
            panic!("a miss")
        };
        c.invalidate_layer(&layer(4));
        c.check_invariants();
        (c, attached, detached)
    }

    fn entry(i: u64) -> EntryKey {
        EntryKey::Layer(layer(i))
    }

    #[test]
    #[should_panic(expected = "page cache byte count drifted")]
    fn the_byte_count_drifts() {
        let (mut c, _, _) = busy();
        c.bytes += 1;
        c.check_invariants();
    }

    #[test]
    #[should_panic(expected = "bytes, capacity")]
    fn over_capacity() {
        let (mut c, _, _) = busy();
        c.capacity_bytes = c.bytes - 1;
        c.check_invariants();
    }

    #[test]
    #[should_panic(expected = "LRU index and entries differ")]
    fn an_entry_missing_from_the_lru() {
        let (mut c, _, _) = busy();
        c.lru.pop_first();
        c.check_invariants();
    }

    #[test]
    #[should_panic(expected = "LRU names a missing entry")]
    fn the_lru_naming_an_entry_gone() {
        let (mut c, _, _) = busy();
        let slot = c.entries.remove(&entry(1)).unwrap();
        c.entries.insert(entry(5), slot);
        c.check_invariants();
    }

    #[test]
    #[should_panic(expected = "LRU tick differs from the entry's")]
    fn an_lru_tick_differing() {
        let (mut c, _, _) = busy();
        c.entries.get_mut(&entry(1)).unwrap().tick += 100;
        c.check_invariants();
    }

    #[test]
    #[should_panic(expected = "entry size is not its bytes plus its key")]
    fn an_entry_size_wrong() {
        let (mut c, _, _) = busy();
        c.entries.get_mut(&entry(1)).unwrap().size += 1;
        c.bytes += 1;
        c.check_invariants();
    }

    #[test]
    #[should_panic(expected = "filling names a closed fill")]
    fn filling_naming_a_closed_fill() {
        let (mut c, _, _) = busy();
        c.filling.insert(layer(7), FillId(99));
        c.check_invariants();
    }

    #[test]
    #[should_panic(expected = "filling names a detached or other fill")]
    fn filling_naming_a_detached_fill() {
        let (mut c, attached, _) = busy();
        c.fills.get_mut(&attached).unwrap().attached = false;
        c.check_invariants();
    }

    #[test]
    #[should_panic(expected = "has no waiter")]
    fn a_fill_without_a_waiter() {
        let (mut c, attached, _) = busy();
        c.fills.get_mut(&attached).unwrap().waiters.clear();
        c.check_invariants();
    }

    #[test]
    #[should_panic(expected = "attached but not named by filling")]
    fn a_detached_fill_marked_attached() {
        let (mut c, _, detached) = busy();
        c.fills.get_mut(&detached).unwrap().attached = true;
        c.check_invariants();
    }
}

/// Found by the `page_cache` fuzz target: the model's version of a layer was a
/// byte, and the 256th invalidation of one layer overflowed it (a crash of the
/// model, not of the cache). Versions are now `u32`, and a stale hit after more
/// than 256 invalidations is still told apart.
#[test]
fn the_model_tells_versions_apart_past_256_invalidations() {
    let mut steps = vec![Step::Lookup(1, true), Step::Complete(0, true)];
    steps.extend(std::iter::repeat_n(Step::Invalidate(1), 300));
    steps.extend([Step::Lookup(1, true), Step::Complete(0, true), Step::Lookup(1, true)]);
    run(1000, steps);
}
