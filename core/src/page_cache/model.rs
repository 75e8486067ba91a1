//! The page cache's reference model and the step language its property test and
//! fuzz target share: layer lookups (get or background), fills completed in any
//! order (with the bytes or failed), values looked up and inserted, invalidations
//! of a layer, a timeline or a tenant, and crashes (the cache is memory only: a
//! new one starts empty, and the reads in flight die with the node).
//!
//! The model is the current content of every layer file: a version per layer,
//! bumped by an invalidation (a file changes only with one, as the node
//! guarantees), and a read returns the version of when it was issued. After every
//! step `check_invariants`; [`run`] checks that a layer hit returns the file's
//! current bytes, a value hit returns the value of its request (redo is pure), and
//! every waiter is answered exactly once.
//!
//! Compiled for tests (`tests.rs` draws steps with proptest) and under the
//! `fuzzing` feature (the `page_cache` fuzz target draws them with `arbitrary`).

use super::*;
use crate::key::Key;
use crate::layer_name::{KeyRange, LsnRange};
use crate::lsn::Lsn;
use std::collections::BTreeSet;

/// Layer files and value requests the steps use (indexes are taken modulo).
pub const LAYERS: u8 = 6;
pub const VALUES: u8 = 4;

#[derive(Clone, Debug)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Step {
    /// Look layer `l` up, for a get (true) or background work.
    Lookup(u8, bool),
    /// Complete the open fill at this index (mod the count), with the bytes or failed.
    Complete(usize, bool),
    Invalidate(u8),
    /// Invalidate every layer of the timeline / tenant of layer `l`.
    InvalidateTimeline(u8),
    InvalidateTenant(u8),
    /// Look value `v` up, for a get (true) or background work.
    LookupValue(u8, bool),
    /// Insert value `v` (as redo answered it), for a get (true) or background work.
    InsertValue(u8, bool),
    /// The node restarts: a new, empty cache; the reads in flight are gone.
    Crash,
}

/// Layer `l` (modulo [`LAYERS`]): two tenants of two timelines each.
pub fn layer(l: u8) -> LayerKey {
    let l = l % LAYERS;
    let keys = KeyRange::new(Key(0), Key(100)).expect("valid range");
    let lsns = LsnRange::new(Lsn(u64::from(l) * 10 + 1), Lsn(u64::from(l) * 10 + 11))
        .expect("valid range");
    LayerKey {
        tenant: TenantId([1 + l % 2; 16]),
        timeline: TimelineId([1 + (l / 2) % 2; 16]),
        name: LayerName::Delta { keys, lsns },
    }
}

/// The redo request of value `v` (modulo [`VALUES`]) and what redo answers.
fn value(v: u8) -> (ValueKey, Vec<u8>) {
    let v = v % VALUES;
    let request = RedoRequest { base: Some(vec![v; usize::from(v) * 7]), deltas: vec![] };
    let value = request.execute().expect("an image alone");
    (ValueKey::of(&request), value)
}

/// Runs the steps against a cache of `capacity_bytes`; panics on a stale hit, a
/// waiter answered twice or never, or a broken invariant.
pub fn run(capacity_bytes: u64, steps: Vec<Step>) {
    let new = || PageCache::new(&PageCacheConfig { capacity_bytes });
    let mut c: PageCache<u32> = new();
    // Layer l's current content version; a read returns the version of when it
    // was issued.
    let mut version: BTreeMap<u8, u32> = BTreeMap::new();
    let mut open: Vec<(FillId, u8, u32)> = Vec::new();
    let mut waiting: BTreeSet<u32> = BTreeSet::new();
    let mut next_waiter = 0u32;
    // The file's bytes at a version: the version's bytes over and over.
    let bytes = |l: u8, v: u32| -> Vec<u8> {
        v.to_le_bytes().into_iter().cycle().take(20 + usize::from(l) * 30).collect()
    };
    let kind = |get: bool| if get { RequestKind::Get } else { RequestKind::Background };
    for step in steps {
        match step {
            Step::Lookup(l, get) => {
                let l = l % LAYERS;
                let v = *version.get(&l).unwrap_or(&0);
                next_waiter += 1;
                match c.lookup_layer(layer(l), kind(get), next_waiter) {
                    LayerLookup::Hit(hit) => assert_eq!(hit, bytes(l, v), "stale hit"),
                    LayerLookup::Miss(f) => {
                        waiting.insert(next_waiter);
                        open.push((f, l, v));
                    }
                    LayerLookup::Joined(_) => {
                        waiting.insert(next_waiter);
                    }
                }
            }
            Step::Complete(i, ok) if !open.is_empty() => {
                let (f, l, v) = open.remove(i % open.len());
                let read = bytes(l, v);
                let (_, ws) = c.complete_layer_fill(f, ok.then_some(&read[..])).unwrap();
                for w in ws {
                    assert!(waiting.remove(&w), "waiter {w} answered twice");
                }
            }
            Step::Complete(..) => {}
            Step::Invalidate(l) => {
                let l = l % LAYERS;
                *version.entry(l).or_default() += 1;
                c.invalidate_layer(&layer(l));
            }
            Step::InvalidateTimeline(l) => {
                let k = layer(l);
                for m in (0..LAYERS).filter(|m| {
                    let o = layer(*m);
                    (o.tenant, o.timeline) == (k.tenant, k.timeline)
                }) {
                    *version.entry(m).or_default() += 1;
                }
                c.invalidate_timeline(k.tenant, k.timeline);
            }
            Step::InvalidateTenant(l) => {
                let t = layer(l).tenant;
                for m in (0..LAYERS).filter(|m| layer(*m).tenant == t) {
                    *version.entry(m).or_default() += 1;
                }
                c.invalidate_tenant(t);
            }
            Step::LookupValue(v, get) => {
                let (key, value) = value(v);
                if let Some(hit) = c.lookup_value(&key, kind(get)) {
                    assert_eq!(hit, value, "a value hit differs from redo's answer");
                }
            }
            Step::InsertValue(v, get) => {
                let (key, value) = value(v);
                c.insert_value(key, kind(get), value);
            }
            Step::Crash => {
                c = new();
                (open, waiting) = Default::default();
            }
        }
        c.check_invariants();
    }
    for (f, _, _) in open {
        for w in c.complete_layer_fill(f, None).unwrap().1 {
            assert!(waiting.remove(&w), "waiter {w} answered twice");
        }
    }
    assert!(waiting.is_empty(), "waiters never answered: {waiting:?}");
}
