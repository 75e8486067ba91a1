//! The node-wide page cache: layer file bytes and reconstructed values, bounded in
//! bytes, shared by every timeline of a node.
//!
//! # Purpose
//! A timeline reads whole layer files (`TimelineEffect::ReadLayer`) and asks for
//! reconstruction (`TimelineEffect::Redo`). The node owns one [`PageCache`] and
//! puts it on that path (`node/reads.rs`): a `ReadLayer` whose bytes are cached is
//! answered within the same input, without an [`Io`](crate::node::io::Io); a miss
//! issues the Io and inserts the bytes when it completes. A `Redo` whose request
//! was answered before is answered from the cache as well. It is a pure data
//! structure, not a machine: it emits no effects and has no timers; the node calls
//! it and executes what it says.
//!
//! # What is cached, and why a cached entry is never wrong
//! - [`ContentKind::LayerFile`]: the bytes of `tenants/{t}/timelines/{tl}/{name}`,
//!   keyed by [`LayerKey`] (tenant, timeline, layer name). A layer file is
//!   immutable while its name is mapped; the node invalidates the key whenever the
//!   local file may change or go: `WriteLayer` (a re-flush may reuse a name),
//!   `DownloadLayer` and the download's local write (a new copy), `EvictLayer`,
//!   `UnlinkLayers` (compaction/GC replaced it), and timeline removal. The timeline
//!   still verifies every file it parses against the CRC32C its layer map records,
//!   so even a stale entry could only cause a re-download, never wrong bytes.
//! - [`ContentKind::Value`]: a reconstructed value keyed by the **exact redo
//!   request** (its binary encoding, [`RedoRequest::encode`]: base image and every
//!   delta). Redo is a pure function of its request, so the value for a key is
//!   right forever: no GC, compaction, eviction or timeline removal can make it
//!   wrong, and no invalidation is needed. (Keying by `(tenant, timeline, key,
//!   lsn)` would also be sound — the history at or below an ingested LSN never
//!   changes, and reads below the GC cutoff are refused before they reach redo —
//!   but its soundness would rest on those rules of other machines; the request
//!   key rests on nothing.) The price: the key's bytes count against the budget,
//!   and a hit saves the redo, not the layer reads that built the request.
//!
//! # Bound and eviction
//! Every entry costs its bytes (value entries: key + value). The total never
//! exceeds `capacity_bytes`: an insert evicts least-recently-used entries first
//! (LRU by a logical clock, one tick per lookup or insert; `BTreeMap`s only, so
//! eviction is deterministic). An entry larger than the whole capacity is not
//! inserted. Capacity 0 disables caching (every lookup misses).
//!
//! # S16: progress under contention
//! A reader whose miss fills the cache is handed the bytes with the completion of
//! its Io ([`PageCache::complete_layer_fill`] returns them with the waiters); it
//! never has to look the entry up again. So a read makes progress even when the
//! entry is evicted at once, or the cache is smaller than one entry.
//!
//! # Coalescing
//! Concurrent misses for the same layer share one Io: the first miss opens a
//! [`FillId`] ([`LayerLookup::Miss`]: issue the read), later ones join it
//! ([`LayerLookup::Joined`]: wait). The completion goes to every waiter. An
//! invalidation while a fill is in flight detaches it: its waiters still get what
//! the read returned (the timeline verifies it), but the bytes are not inserted,
//! and a new miss starts a new read.
//!
//! # Inputs
//! [`PageCache::lookup_layer`], [`PageCache::complete_layer_fill`],
//! [`PageCache::lookup_value`], [`PageCache::insert_value`] and the three
//! invalidations. The same inputs as data: [`PageCacheInput`], fed by
//! [`PageCache::handle`], which answers with a [`PageCacheOutput`]. No input is
//! illegal (a completion for an unknown fill is answered with nothing), so there is
//! no error type; no timers.
//!
//! # Request kinds
//! [`RequestKind::Get`] (a page read) or [`RequestKind::Background`] (compaction
//! inputs, image creation): hits and misses are counted per (request kind,
//! content kind) (S24/S25). Background misses do not insert (compaction reads
//! layers it is about to replace; a scan must not flush the readers' working
//! set) unless a get waits on the same fill.
//!
//! # Invariants (checked by [`PageCache::check_invariants`])
//! - `bytes` is the sum of entry sizes and `bytes ≤ capacity_bytes`.
//! - The LRU index and the entries name the same set, one tick per entry.
//! - Every open fill has at least one waiter; `filling` names only open,
//!   attached fills, and a fill is attached iff `filling` names it.
//!
//! # Crash
//! Memory only: a crash loses the cache, and nothing depends on it being warm.

/// The reference model and the step language of the property test and the
/// `page_cache` fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub mod model;
#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod tests;

mod input;

pub use input::{PageCacheInput, PageCacheOutput};

use crate::id::{TenantId, TimelineId};
use crate::layer_name::LayerName;
use crate::redo::RedoRequest;
use std::collections::BTreeMap;

/// The default capacity of a node's page cache.
pub const DEFAULT_PAGE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageCacheConfig {
    /// Bytes of cached content (layer files, value keys and values) at most.
    pub capacity_bytes: u64,
}

impl Default for PageCacheConfig {
    fn default() -> Self {
        PageCacheConfig { capacity_bytes: DEFAULT_PAGE_CACHE_BYTES }
    }
}

/// Who asked: a page read, or background work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestKind {
    Get,
    Background,
}

impl RequestKind {
    pub const ALL: [RequestKind; 2] = [RequestKind::Get, RequestKind::Background];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Get => "get",
            RequestKind::Background => "background",
        }
    }
}

/// What an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContentKind {
    LayerFile,
    Value,
}

impl ContentKind {
    pub const ALL: [ContentKind; 2] = [ContentKind::LayerFile, ContentKind::Value];

    pub fn as_str(self) -> &'static str {
        match self {
            ContentKind::LayerFile => "layer_file",
            ContentKind::Value => "value",
        }
    }
}

/// One local layer file of one timeline.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LayerKey {
    pub tenant: TenantId,
    pub timeline: TimelineId,
    pub name: LayerName,
}

/// The key of a cached reconstructed value: the encoded redo request.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ValueKey(Vec<u8>);

impl std::fmt::Debug for ValueKey {
    // Traces print routes: a digest, not the whole request.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ValueKey({} bytes, crc32c {:08x})", self.0.len(), crc32c::crc32c(&self.0))
    }
}

impl ValueKey {
    pub fn of(request: &RedoRequest) -> Self {
        ValueKey(request.encode())
    }

    pub fn len_bytes(&self) -> u64 {
        self.0.len() as u64
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum EntryKey {
    Layer(LayerKey),
    Value(ValueKey),
}

impl EntryKey {
    fn key_bytes(&self) -> u64 {
        match self {
            // Layer keys are small and fixed-size; their bytes are the file.
            EntryKey::Layer(_) => 0,
            EntryKey::Value(v) => v.len_bytes(),
        }
    }
}

#[derive(Debug)]
struct Slot {
    bytes: Vec<u8>,
    size: u64,
    tick: u64,
}

/// One read of a layer file in flight, shared by every reader waiting for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FillId(pub u64);

#[derive(Debug)]
struct Fill<W> {
    key: LayerKey,
    waiters: Vec<W>,
    /// Insert the bytes when the read completes: a get waits, and no invalidation
    /// came meanwhile.
    insert: bool,
    /// Still named by `filling` (not invalidated).
    attached: bool,
}

/// The answer to a layer lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerLookup {
    /// The bytes, copied out: the caller needs nothing else.
    Hit(Vec<u8>),
    /// A miss; the caller issues the read and reports it to
    /// [`PageCache::complete_layer_fill`] with this id.
    Miss(FillId),
    /// A read of the same layer is in flight; its completion serves this waiter too.
    Joined(FillId),
}

/// Hit and miss counts of one (request kind, content kind).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HitMiss {
    pub hits: u64,
    pub misses: u64,
}

/// A snapshot of the counters, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageCacheStats {
    pub capacity_bytes: u64,
    pub bytes: u64,
    pub entries: usize,
    pub evictions: u64,
    /// Misses that joined a read already in flight (also counted as misses).
    pub coalesced: u64,
    pub counts: BTreeMap<(RequestKind, ContentKind), HitMiss>,
}

impl PageCacheStats {
    pub fn get(&self, request: RequestKind, content: ContentKind) -> HitMiss {
        self.counts.get(&(request, content)).copied().unwrap_or_default()
    }
}

/// See the module doc. `W` is what a waiter of a layer read is (the node uses the
/// timeline's op id).
#[derive(Debug)]
pub struct PageCache<W> {
    capacity_bytes: u64,
    entries: BTreeMap<EntryKey, Slot>,
    /// tick → entry: the least recently used entry is the first.
    lru: BTreeMap<u64, EntryKey>,
    bytes: u64,
    tick: u64,
    fills: BTreeMap<FillId, Fill<W>>,
    filling: BTreeMap<LayerKey, FillId>,
    next_fill: u64,
    counts: BTreeMap<(RequestKind, ContentKind), HitMiss>,
    evictions: u64,
    coalesced: u64,
}

impl<W> PageCache<W> {
    pub fn new(config: &PageCacheConfig) -> Self {
        PageCache {
            capacity_bytes: config.capacity_bytes,
            entries: BTreeMap::new(),
            lru: BTreeMap::new(),
            bytes: 0,
            tick: 0,
            fills: BTreeMap::new(),
            filling: BTreeMap::new(),
            next_fill: 0,
            counts: BTreeMap::new(),
            evictions: 0,
            coalesced: 0,
        }
    }

    /// Looks a layer file up for `waiter`. On a hit the bytes come back at once; on
    /// a miss the waiter is registered with a fill (new, or one in flight).
    pub fn lookup_layer(&mut self, key: LayerKey, kind: RequestKind, waiter: W) -> LayerLookup {
        let entry = EntryKey::Layer(key);
        if let Some(bytes) = self.touch(&entry) {
            self.count(kind, ContentKind::LayerFile, true);
            return LayerLookup::Hit(bytes);
        }
        self.count(kind, ContentKind::LayerFile, false);
        let EntryKey::Layer(key) = entry else { unreachable!("built above") };
        if let Some(fill) = self.filling.get(&key).copied() {
            let f = self.fills.get_mut(&fill).expect("filling names open fills");
            f.waiters.push(waiter);
            f.insert |= kind == RequestKind::Get;
            self.coalesced += 1;
            return LayerLookup::Joined(fill);
        }
        let fill = FillId(self.next_fill);
        self.next_fill += 1;
        self.filling.insert(key.clone(), fill);
        let insert = kind == RequestKind::Get;
        self.fills.insert(fill, Fill { key, waiters: vec![waiter], insert, attached: true });
        LayerLookup::Miss(fill)
    }

    /// The read of `fill` completed (`Some(bytes)`) or failed (`None`). Inserts the
    /// bytes if the fill is still attached and a get waits. Returns the layer and
    /// every waiter, each to be handed the result (S16); `None` for an unknown fill.
    pub fn complete_layer_fill(
        &mut self,
        fill: FillId,
        bytes: Option<&[u8]>,
    ) -> Option<(LayerKey, Vec<W>)> {
        let f = self.fills.remove(&fill)?;
        if f.attached {
            self.filling.remove(&f.key);
        }
        if let Some(bytes) = bytes
            && f.attached
            && f.insert
        {
            self.insert(EntryKey::Layer(f.key.clone()), bytes.to_vec());
        }
        Some((f.key, f.waiters))
    }

    /// Looks a reconstructed value up.
    pub fn lookup_value(&mut self, key: &ValueKey, kind: RequestKind) -> Option<Vec<u8>> {
        let found = self.touch(&EntryKey::Value(key.clone()));
        self.count(kind, ContentKind::Value, found.is_some());
        found
    }

    /// Inserts a reconstructed value (after a redo completed). Background values
    /// are not inserted (see the module doc).
    pub fn insert_value(&mut self, key: ValueKey, kind: RequestKind, value: Vec<u8>) {
        if kind == RequestKind::Get {
            self.insert(EntryKey::Value(key), value);
        }
    }

    /// The local file of `key` may change or be gone: drop it, and detach a read
    /// of it in flight.
    pub fn invalidate_layer(&mut self, key: &LayerKey) {
        self.remove(&EntryKey::Layer(key.clone()));
        if let Some(fill) = self.filling.remove(key)
            && let Some(f) = self.fills.get_mut(&fill)
        {
            f.attached = false;
            f.insert = false;
        }
    }

    /// A timeline is gone: drop its layer files and detach its reads in flight.
    /// (Values need no invalidation: see the module doc.)
    pub fn invalidate_timeline(&mut self, tenant: TenantId, timeline: TimelineId) {
        let mine = |k: &LayerKey| k.tenant == tenant && k.timeline == timeline;
        let entries: Vec<LayerKey> = self
            .entries
            .keys()
            .filter_map(|e| match e {
                EntryKey::Layer(k) if mine(k) => Some(k.clone()),
                _ => None,
            })
            .collect();
        let fills: Vec<LayerKey> = self.filling.keys().filter(|k| mine(k)).cloned().collect();
        for k in entries.iter().chain(&fills) {
            self.invalidate_layer(k);
        }
    }

    /// Every timeline of a tenant is gone.
    pub fn invalidate_tenant(&mut self, tenant: TenantId) {
        let timelines: std::collections::BTreeSet<TimelineId> = self
            .entries
            .keys()
            .filter_map(|e| match e {
                EntryKey::Layer(k) if k.tenant == tenant => Some(k.timeline),
                _ => None,
            })
            .chain(self.filling.keys().filter(|k| k.tenant == tenant).map(|k| k.timeline))
            .collect();
        for tl in timelines {
            self.invalidate_timeline(tenant, tl);
        }
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn entries(&self) -> usize {
        self.entries.len()
    }

    pub fn fills_in_flight(&self) -> usize {
        self.fills.len()
    }

    pub fn contains_layer(&self, key: &LayerKey) -> bool {
        self.entries.contains_key(&EntryKey::Layer(key.clone()))
    }

    pub fn hits(&self, request: RequestKind, content: ContentKind) -> u64 {
        self.counts.get(&(request, content)).map_or(0, |c| c.hits)
    }

    pub fn misses(&self, request: RequestKind, content: ContentKind) -> u64 {
        self.counts.get(&(request, content)).map_or(0, |c| c.misses)
    }

    pub fn stats(&self) -> PageCacheStats {
        PageCacheStats {
            capacity_bytes: self.capacity_bytes,
            bytes: self.bytes,
            entries: self.entries.len(),
            evictions: self.evictions,
            coalesced: self.coalesced,
            counts: self.counts.clone(),
        }
    }

    /// Panics if a rule of the module doc is broken.
    pub fn check_invariants(&self) {
        let sum: u64 = self.entries.values().map(|s| s.size).sum();
        assert_eq!(sum, self.bytes, "page cache byte count drifted");
        assert!(
            self.bytes <= self.capacity_bytes,
            "page cache holds {} bytes, capacity {}",
            self.bytes,
            self.capacity_bytes
        );
        assert_eq!(self.lru.len(), self.entries.len(), "LRU index and entries differ");
        for (tick, key) in &self.lru {
            let slot = self.entries.get(key).expect("LRU names a missing entry");
            assert_eq!(slot.tick, *tick, "LRU tick differs from the entry's");
            let size = slot.bytes.len() as u64 + key.key_bytes();
            assert_eq!(slot.size, size, "entry size is not its bytes plus its key");
        }
        for (key, fill) in &self.filling {
            let f = self.fills.get(fill).expect("filling names a closed fill");
            assert!(f.attached && f.key == *key, "filling names a detached or other fill");
        }
        for (id, f) in &self.fills {
            assert!(!f.waiters.is_empty(), "fill {id:?} has no waiter");
            let named = self.filling.get(&f.key) == Some(id);
            assert_eq!(f.attached, named, "fill {id:?} attached but not named by filling");
        }
    }

    fn count(&mut self, request: RequestKind, content: ContentKind, hit: bool) {
        let c = self.counts.entry((request, content)).or_default();
        if hit {
            c.hits += 1;
        } else {
            c.misses += 1;
        }
    }

    /// A hit: a copy of the bytes, and the entry becomes the most recently used.
    fn touch(&mut self, key: &EntryKey) -> Option<Vec<u8>> {
        let slot = self.entries.get_mut(key)?;
        self.tick += 1;
        self.lru.remove(&slot.tick);
        slot.tick = self.tick;
        self.lru.insert(self.tick, key.clone());
        Some(slot.bytes.clone())
    }

    fn insert(&mut self, key: EntryKey, bytes: Vec<u8>) {
        let size = bytes.len() as u64 + key.key_bytes();
        self.remove(&key);
        if size > self.capacity_bytes {
            return;
        }
        while self.bytes + size > self.capacity_bytes {
            let Some((_, oldest)) = self.lru.pop_first() else { break };
            let slot = self.entries.remove(&oldest).expect("LRU names entries");
            self.bytes -= slot.size;
            self.evictions += 1;
        }
        self.tick += 1;
        self.bytes += size;
        self.lru.insert(self.tick, key.clone());
        self.entries.insert(key, Slot { bytes, size, tick: self.tick });
    }

    fn remove(&mut self, key: &EntryKey) {
        if let Some(slot) = self.entries.remove(key) {
            self.lru.remove(&slot.tick);
            self.bytes -= slot.size;
        }
    }
}
