//! The walk against in-memory stores: fixtures built with core's formats for every
//! finding (snapshots of the report), a million keys served page by page, and the
//! purge's safety over random histories.

use super::*;
use crate::remote::{
    DownloadCheck, ListPage, ListedEntry, ListedObject, RemoteError, RemoteErrorKind, TransferError,
};
use camino::Utf8Path;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use strata_core::index_part::LayerMeta;
use strata_core::key::Key;
use strata_core::layer_name::{KeyRange, LayerName};
use strata_core::lsn::Lsn;
use strata_core::metadata::TimelineMetadata;
use strata_core::redo::Record;
use strata_core::remote_path::{layer_key, tenant_deletion_mark_key};
use strata_core::scrub::purge::PurgeRules;
use strata_core::scrub::{FindingKind, MIN_PURGE_AGE_MS};

pub(super) const NOW: WallTime = WallTime(10 * MIN_PURGE_AGE_MS);
const OLD: Option<WallTime> = Some(WallTime(NOW.0 - 2 * MIN_PURGE_AGE_MS));
const YOUNG: Option<WallTime> = Some(WallTime(NOW.0 - 1000));

/// Each key's body and modification time.
type Objects = BTreeMap<RemoteKey, (Vec<u8>, Option<WallTime>)>;

/// An object store in memory that pages like S3 and reports modification times.
#[derive(Clone, Default)]
pub(super) struct MemRemote {
    objects: Arc<Mutex<Objects>>,
    /// Keys deleted between the walk's listing and its read of them: a get
    /// removes the object and answers NotFound.
    vanishing: Arc<Mutex<std::collections::BTreeSet<RemoteKey>>>,
}

impl MemRemote {
    fn insert(&self, key: RemoteKey, body: Vec<u8>, written: Option<WallTime>) {
        self.objects.lock().unwrap().insert(key, (body, written));
    }

    fn remove(&self, key: &RemoteKey) {
        self.objects.lock().unwrap().remove(key);
    }

    fn contains(&self, key: &RemoteKey) -> bool {
        self.objects.lock().unwrap().contains_key(key)
    }

    fn keys(&self) -> Vec<RemoteKey> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }
}

fn unsupported(op: &'static str) -> RemoteError {
    RemoteError::new(RemoteErrorKind::Permanent, op, "", "not in this double")
}

impl RemoteStorage for MemRemote {
    async fn put(&self, key: &RemoteKey, body: Vec<u8>) -> Result<(), RemoteError> {
        self.insert(key.clone(), body, Some(NOW));
        Ok(())
    }

    async fn get(&self, key: &RemoteKey) -> Result<Vec<u8>, RemoteError> {
        if self.vanishing.lock().unwrap().remove(key) {
            self.remove(key);
        }
        let objects = self.objects.lock().unwrap();
        objects.get(key).map(|(b, _)| b.clone()).ok_or_else(|| {
            RemoteError::new(RemoteErrorKind::NotFound, "get", key.as_str(), "no such key")
        })
    }

    async fn list(&self, _prefix: &str) -> Result<Vec<ListedObject>, RemoteError> {
        Err(unsupported("list: the walk pages"))
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&RemoteKey>,
        max_keys: usize,
    ) -> Result<ListPage, RemoteError> {
        let objects = self.objects.lock().unwrap();
        let mut matching = objects
            .iter()
            .filter(|(k, _)| k.as_str().starts_with(prefix) && start_after.is_none_or(|a| *k > a));
        let page: Vec<ListedEntry> = matching
            .by_ref()
            .take(max_keys)
            .map(|(k, (b, t))| ListedEntry {
                key: k.clone(),
                size_bytes: b.len() as u64,
                last_modified: *t,
            })
            .collect();
        let more = matching.next().is_some();
        Ok(ListPage {
            next_start_after: if more { page.last().map(|o| o.key.clone()) } else { None },
            objects: page,
        })
    }

    async fn delete_objects(&self, keys: &[RemoteKey]) -> Result<(), RemoteError> {
        assert!(keys.len() <= crate::remote::MAX_KEYS_PER_DELETE);
        for key in keys {
            self.remove(key);
        }
        Ok(())
    }

    async fn put_file<C: DownloadCheck>(
        &self,
        _key: &RemoteKey,
        _path: &Utf8Path,
        _check: C,
    ) -> Result<u64, TransferError> {
        Err(unsupported("put_file").into())
    }

    async fn get_to_file<C: DownloadCheck>(
        &self,
        _key: &RemoteKey,
        _path: &Utf8Path,
        _check: C,
    ) -> Result<u64, TransferError> {
        Err(unsupported("get_to_file").into())
    }
}

/// The control plane as a table the test sets.
#[derive(Default)]
pub(super) struct Table(pub Mutex<BTreeMap<TenantId, Generation>>);

impl GenerationOracle for Table {
    async fn latest_generation(&self, tenant: TenantId) -> Result<Option<Generation>, String> {
        Ok(self.0.lock().unwrap().get(&tenant).copied())
    }
}

pub(super) fn tenant(n: u8) -> TenantId {
    TenantId::from_bytes([n; 16])
}

pub(super) fn timeline(n: u8) -> TimelineId {
    TimelineId::from_bytes([0xa0 | n; 16])
}

pub(super) fn g(n: u32) -> Generation {
    Generation::new(n).unwrap()
}

/// An image layer at `lsn` holding one record, encoded by core's writer.
pub(super) fn layer(lsn: u64) -> (LayerName, Vec<u8>) {
    let name = LayerName::Image { keys: KeyRange::new(Key(0), Key(0x100)).unwrap(), lsn: Lsn(lsn) };
    let record = Record::Image(format!("value at {lsn:x}").into_bytes());
    let enc = strata_core::layer_file::encode(&name, [(Key(1), Lsn(lsn), &record)]).unwrap();
    (name, enc.bytes)
}

/// A timeline written with core's formats.
pub(super) struct Writer<'a> {
    pub remote: &'a MemRemote,
    pub tenant: TenantId,
    pub timeline: TimelineId,
}

impl Writer<'_> {
    /// Uploads a layer of `generation`; returns its name, index entry and key.
    pub fn layer(
        &self,
        lsn: u64,
        generation: Generation,
        written: Option<WallTime>,
    ) -> (LayerName, LayerMeta, RemoteKey) {
        let (name, bytes) = layer(lsn);
        let meta = LayerMeta {
            file_size: bytes.len() as u64,
            generation,
            crc32c: strata_core::layer_file::file_crc32c(&bytes),
        };
        let key = layer_key(self.tenant, self.timeline, &name, generation);
        self.remote.insert(key.clone(), bytes, written);
        (name, meta, key)
    }

    /// Uploads an index naming `layers`.
    pub fn index(
        &self,
        version: IndexVersion,
        layers: &[(LayerName, LayerMeta)],
        deleted_at: Option<WallTime>,
    ) -> RemoteKey {
        self.index_at(version, layers, deleted_at, OLD)
    }

    /// [`Writer::index`] written at `written`.
    pub fn index_at(
        &self,
        version: IndexVersion,
        layers: &[(LayerName, LayerMeta)],
        deleted_at: Option<WallTime>,
        written: Option<WallTime>,
    ) -> RemoteKey {
        let lsn = Lsn(0x1000);
        let metadata = TimelineMetadata {
            disk_consistent_lsn: lsn,
            gc_cutoff_lsn: Lsn(0),
            initdb_lsn: Lsn(0x10),
            ancestor: None,
        };
        let mut part = IndexPart::empty(metadata);
        part.seq = version.seq;
        part.deleted_at = deleted_at;
        part.layer_metadata = layers.iter().cloned().collect();
        let key = index_key(self.tenant, self.timeline, version);
        self.remote.insert(key.clone(), part.to_json_bytes(), written);
        key
    }
}

pub(super) fn v(generation: u32, seq: u64) -> IndexVersion {
    IndexVersion { generation: g(generation), seq }
}

pub(super) fn run<G: GenerationOracle>(
    remote: &MemRemote,
    options: &ScrubOptions,
    oracle: &G,
) -> ScrubOutcome {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(scrub(remote, options, oracle, NOW, &mut |_| {})).unwrap()
}

fn clean_timeline(remote: &MemRemote, t: TenantId, tl: TimelineId) -> Vec<RemoteKey> {
    let w = Writer { remote, tenant: t, timeline: tl };
    let (n1, m1, k1) = w.layer(0x100, g(1), OLD);
    let (n2, m2, k2) = w.layer(0x200, g(2), OLD);
    w.index(v(1, 1), &[(n1.clone(), m1)], None);
    w.index(v(2, 1), &[(n1, m1), (n2, m2)], None);
    vec![k1, k2]
}

#[test]
fn a_consistent_bucket_is_clean_and_every_referenced_layer_is_checked() {
    let remote = MemRemote::default();
    clean_timeline(&remote, tenant(1), timeline(1));
    clean_timeline(&remote, tenant(1), timeline(2));
    let out = run(&remote, &ScrubOptions { deep: true, ..ScrubOptions::default() }, &NoOracle);
    let r = &out.report;
    assert_eq!((r.problems(), r.orphans()), (0, 0), "{}", r.human());
    assert_eq!((r.tenants, r.timelines, r.objects, r.layers_checked), (1, 2, 8, 4));
    assert_eq!(r.exit_code(), 0);
}

/// Swarm seed 1570: a referenced layer deleted between the listing and the deep
/// check's read of it (a node's GC, racing the walk) is no failure of the walk.
#[test]
fn a_layer_deleted_during_the_walk_does_not_stop_a_deep_scrub() {
    let remote = MemRemote::default();
    let keys = clean_timeline(&remote, tenant(1), timeline(1));
    remote.vanishing.lock().unwrap().insert(keys[0].clone());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let options = ScrubOptions { deep: true, ..ScrubOptions::default() };
    let out = rt.block_on(scrub(&remote, &options, &NoOracle, NOW, &mut |_| {}));
    let r = out.expect("the walk goes on past a vanished layer").report;
    assert_eq!((r.problems(), r.orphans()), (0, 0), "{}", r.human());
    assert!(!remote.contains(&keys[0]));
}

/// One bucket holding every finding, each built with core's formats. The human
/// summary and the JSON are snapshots.
fn every_finding() -> MemRemote {
    let remote = MemRemote::default();
    let w = Writer { remote: &remote, tenant: tenant(1), timeline: timeline(1) };
    // missing_layer: named, never uploaded.
    let (missing, missing_meta, missing_key) = w.layer(0x100, g(2), OLD);
    remote.remove(&missing_key);
    // wrong_size: named with one size, stored with another.
    let (short, mut short_meta, _) = w.layer(0x200, g(2), OLD);
    short_meta.file_size += 7;
    // corrupt_layer (--deep): the right size, one flipped byte.
    let (bad, bad_meta, bad_key) = w.layer(0x300, g(2), OLD);
    let mut bytes = layer(0x300).1;
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    remote.insert(bad_key, bytes, OLD);
    // orphan: written in generation 1, named by no index of generation 2.
    w.layer(0x400, g(1), OLD);
    // newer_than_any_index: a layer of generation 3 while the newest index is 2.
    w.layer(0x500, g(3), YOUNG);
    w.index(v(2, 4), &[(missing, missing_meta), (short, short_meta), (bad, bad_meta)], None);
    // unknown_index_version: generation 1's newest index, written by a newer build.
    let old = w.index(v(1, 9), &[], None);
    let text = String::from_utf8(remote.objects.lock().unwrap()[&old].0.clone()).unwrap();
    remote.insert(old, text.replacen("\"version\": 1", "\"version\": 7", 1).into_bytes(), OLD);
    // unreadable_index: a key that starts like an index and does not parse.
    let bad_index = RemoteKey::from_listing(&format!(
        "{}index_part.json.garbage",
        strata_core::remote_path::timeline_prefix(tenant(1), timeline(1))
    ))
    .unwrap();
    remote.insert(bad_index, b"{}".to_vec(), OLD);
    // unknown_object
    remote.insert(RemoteKey::from_listing("stray/file").unwrap(), vec![1], OLD);
    // tombstone_holds_objects: a deleted timeline with a layer left…
    let dead = Writer { remote: &remote, tenant: tenant(1), timeline: timeline(2) };
    dead.layer(0x100, g(1), OLD);
    dead.index(v(1, 2), &[], Some(WallTime(1_764_320_000_000)));
    // … and a deleted tenant whose timeline is still there.
    let gone = Writer { remote: &remote, tenant: tenant(2), timeline: timeline(1) };
    clean_timeline(&remote, tenant(2), timeline(1));
    remote.insert(tenant_deletion_mark_key(gone.tenant), Vec::new(), OLD);
    remote
}

#[test]
fn every_finding_is_found_and_reported() {
    let remote = every_finding();
    let out = run(&remote, &ScrubOptions { deep: true, ..ScrubOptions::default() }, &NoOracle);
    let r = &out.report;
    for kind in [
        FindingKind::MissingLayer,
        FindingKind::WrongSize,
        FindingKind::CorruptLayer,
        FindingKind::Orphan,
        FindingKind::UnknownIndexVersion,
        FindingKind::UnreadableIndex,
        FindingKind::TombstoneHoldsObjects,
        FindingKind::NewerThanAnyIndex,
        FindingKind::UnknownObject,
    ] {
        assert!(r.count(kind) >= 1, "{} not found:\n{}", kind.label(), r.human());
    }
    assert_eq!(r.count(FindingKind::TombstoneHoldsObjects), 2, "{}", r.human());
    assert_eq!(r.exit_code(), 1);
    insta::assert_snapshot!("every_finding_human", r.human());
    insta::assert_json_snapshot!("every_finding_json", r);
}

#[test]
fn without_deep_the_bytes_are_not_read() {
    let out = run(&every_finding(), &ScrubOptions::default(), &NoOracle);
    assert_eq!(out.report.count(FindingKind::CorruptLayer), 0, "{}", out.report.human());
}

#[test]
fn orphans_alone_leave_the_exit_code_clean() {
    let remote = MemRemote::default();
    let w = Writer { remote: &remote, tenant: tenant(1), timeline: timeline(1) };
    w.layer(0x100, g(1), OLD);
    w.index(v(1, 1), &[], None);
    let r = run(&remote, &ScrubOptions::default(), &NoOracle).report;
    assert_eq!((r.orphans(), r.problems(), r.exit_code()), (1, 0, 0));
}

/// A store of one timeline with `n` layer keys and one index, generated on the fly
/// and served page by page: nothing but the page is ever materialised.
#[derive(Clone)]
struct Million {
    n: u64,
    largest_page: Arc<Mutex<usize>>,
}

impl Million {
    fn layer_name(i: u64) -> LayerName {
        LayerName::Image { keys: KeyRange::new(Key(0), Key(0x100)).unwrap(), lsn: Lsn(i + 1) }
    }

    /// Key `i` (`0..n` layers, `n` the index): sorted in `i`.
    fn key(&self, i: u64) -> RemoteKey {
        if i == self.n {
            index_key(tenant(1), timeline(1), v(1, 1))
        } else {
            layer_key(tenant(1), timeline(1), &Self::layer_name(i), g(1))
        }
    }

    fn index_bytes() -> Vec<u8> {
        let mut part = IndexPart::empty(TimelineMetadata {
            disk_consistent_lsn: Lsn(0x1000),
            initdb_lsn: Lsn(0x10),
            ..TimelineMetadata::default()
        });
        part.seq = 1;
        for i in 0..3 {
            let meta = LayerMeta { file_size: 4096, generation: g(1), crc32c: 0 };
            part.layer_metadata.insert(Self::layer_name(i), meta);
        }
        part.to_json_bytes()
    }
}

impl RemoteStorage for Million {
    async fn put(&self, _: &RemoteKey, _: Vec<u8>) -> Result<(), RemoteError> {
        Err(unsupported("put"))
    }

    async fn get(&self, key: &RemoteKey) -> Result<Vec<u8>, RemoteError> {
        assert_eq!(*key, self.key(self.n), "only the index is read");
        Ok(Self::index_bytes())
    }

    async fn list(&self, _prefix: &str) -> Result<Vec<ListedObject>, RemoteError> {
        Err(unsupported("list: a million keys are listed by page only"))
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&RemoteKey>,
        max_keys: usize,
    ) -> Result<ListPage, RemoteError> {
        // The first key after `start_after`, by binary search over the order.
        let (mut lo, mut hi) = (0, self.n + 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if start_after.is_some_and(|a| self.key(mid) <= *a) { lo = mid + 1 } else { hi = mid }
        }
        let objects: Vec<ListedEntry> = (lo..=self.n)
            .map(|i| self.key(i))
            .filter(|k| k.as_str().starts_with(prefix))
            .take(max_keys)
            .map(|key| ListedEntry { key, size_bytes: 4096, last_modified: OLD })
            .collect();
        let mut largest = self.largest_page.lock().unwrap();
        *largest = (*largest).max(objects.len());
        let last = objects.last().map(|o| o.key.clone());
        let more =
            last.as_ref().is_some_and(|l| *l != self.key(self.n)) && objects.len() == max_keys;
        Ok(ListPage { objects, next_start_after: if more { last } else { None } })
    }

    async fn delete_objects(&self, _: &[RemoteKey]) -> Result<(), RemoteError> {
        Err(unsupported("delete_objects"))
    }

    async fn put_file<C: DownloadCheck>(
        &self,
        _: &RemoteKey,
        _: &Utf8Path,
        _: C,
    ) -> Result<u64, TransferError> {
        Err(unsupported("put_file").into())
    }

    async fn get_to_file<C: DownloadCheck>(
        &self,
        _: &RemoteKey,
        _: &Utf8Path,
        _: C,
    ) -> Result<u64, TransferError> {
        Err(unsupported("get_to_file").into())
    }
}

/// A million keys, one page at a time: the walk counts every one and never holds
/// more than `held_keys_bound(page_keys)` keys.
#[test]
fn a_million_keys_are_walked_with_held_keys_under_the_bound() {
    const N: u64 = 1_000_000;
    let store = Million { n: N, largest_page: Arc::default() };
    let options = ScrubOptions::default();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut progress_calls = 0u64;
    let out =
        rt.block_on(scrub(&store, &options, &NoOracle, NOW, &mut |_| progress_calls += 1)).unwrap();
    let r = &out.report;
    assert_eq!(r.objects, N + 1);
    assert_eq!(r.layers_checked, 3);
    assert_eq!(r.orphans(), N - 3);
    assert_eq!(r.problems(), 0, "{}", r.human());
    assert_eq!(r.findings.len(), strata_core::scrub::MAX_HELD_FINDINGS);
    assert!(out.max_held_keys <= held_keys_bound(options.page_keys), "{}", out.max_held_keys);
    assert_eq!(*store.largest_page.lock().unwrap(), options.page_keys);
    assert!(out.pages >= N / options.page_keys as u64, "{} pages", out.pages);
    assert!(progress_calls >= N / options.page_keys as u64);
}

// ---------------------------------------------------------------------------
// The purge never deletes what an attachment still references.

/// What happens to the tenant, in order.
#[derive(Clone, Debug)]
enum Op {
    /// The control plane grants a new generation; its node loads the index the
    /// node's rule picks and holds its layers (AttachedMulti; the previous holder
    /// goes on as AttachedStale).
    Grant,
    /// One of the two newest attachments uploads a layer (not yet in an index:
    /// in flight).
    Upload { newer: bool },
    /// … uploads an index naming what it holds, after dropping some layers
    /// (compaction or GC: the dropped ones become orphans).
    Index { newer: bool, drop_mask: u8 },
    /// A day and more passes. Before it, every attachment names its uploads in an
    /// index (the assumption behind the minimum age: no upload waits a day for
    /// its index).
    DaysPass,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Grant),
        3 => any::<bool>().prop_map(|newer| Op::Upload { newer }),
        3 => (any::<bool>(), any::<u8>()).prop_map(|(newer, drop_mask)| Op::Index { newer, drop_mask }),
        1 => Just(Op::DaysPass),
    ]
}

struct Attachment {
    generation: Generation,
    holds: BTreeMap<LayerName, LayerMeta>,
    next_seq: u64,
}

/// The tenant's world: the store, its clock, the attachments, the control plane.
struct World {
    remote: MemRemote,
    clock: WallTime,
    next_lsn: u64,
    attachments: Vec<Attachment>,
    /// Applied one per control-plane question during the purge: work that runs
    /// concurrently with the scrubber.
    concurrent: Vec<Op>,
}

impl World {
    fn writer(&self) -> Writer<'_> {
        Writer { remote: &self.remote, tenant: tenant(1), timeline: timeline(1) }
    }

    fn who(&mut self, newer: bool) -> Option<&mut Attachment> {
        let n = self.attachments.len();
        let i = if newer || n < 2 { n.checked_sub(1)? } else { n - 2 };
        self.attachments.get_mut(i)
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Grant => self.grant(),
            Op::Upload { newer } => {
                self.next_lsn += 1;
                let (lsn, clock) = (self.next_lsn, Some(self.clock));
                let Some(generation) = self.who(*newer).map(|a| a.generation) else { return };
                let (name, meta, _) = self.writer().layer(lsn, generation, clock);
                self.who(*newer).unwrap().holds.insert(name, meta);
            }
            Op::Index { newer, drop_mask } => self.upload_index(*newer, *drop_mask),
            Op::DaysPass => {
                for newer in [false, true] {
                    self.upload_index(newer, 0);
                }
                self.clock = WallTime(self.clock.0 + 2 * MIN_PURGE_AGE_MS);
            }
        }
    }

    fn grant(&mut self) {
        let generation = self.attachments.last().map_or(g(1), |a| a.generation.next().unwrap());
        let listed: Vec<IndexVersion> = self
            .remote
            .keys()
            .iter()
            .filter_map(|k| match classify_key(k) {
                KeyClass::Index { version, .. } => Some(version),
                _ => None,
            })
            .collect();
        let holds = match strata_core::index_part::select_index(generation, &listed).chosen {
            Some(v) => {
                let key = index_key(tenant(1), timeline(1), v);
                let bytes = self.remote.objects.lock().unwrap()[&key].0.clone();
                IndexPart::from_json_bytes(&bytes).unwrap().layer_metadata
            }
            None => BTreeMap::new(),
        };
        self.attachments.push(Attachment { generation, holds, next_seq: 1 });
    }

    fn upload_index(&mut self, newer: bool, drop_mask: u8) {
        let clock = self.clock;
        let Some(a) = self.who(newer) else { return };
        let names: Vec<LayerName> = a.holds.keys().cloned().collect();
        for (i, name) in names.iter().enumerate() {
            if drop_mask & (1 << (i % 8)) != 0 {
                a.holds.remove(name);
            }
        }
        let version = IndexVersion { generation: a.generation, seq: a.next_seq };
        a.next_seq += 1;
        let layers: Vec<(LayerName, LayerMeta)> =
            a.holds.iter().map(|(n, m)| (n.clone(), *m)).collect();
        self.writer().index_at(version, &layers, None, Some(clock));
    }

    /// Every layer key an attached node (the two newest: Multi and Stale) holds.
    fn held_keys(&self) -> Vec<RemoteKey> {
        let n = self.attachments.len();
        self.attachments[n.saturating_sub(2)..]
            .iter()
            .flat_map(|a| {
                a.holds
                    .iter()
                    .map(|(name, m)| layer_key(tenant(1), timeline(1), name, m.generation))
            })
            .collect()
    }
}

/// The control plane of the model: each question first lets one piece of
/// concurrent work happen.
struct ModelOracle(Mutex<World>);

impl GenerationOracle for ModelOracle {
    async fn latest_generation(&self, _tenant: TenantId) -> Result<Option<Generation>, String> {
        let mut world = self.0.lock().unwrap();
        if !world.concurrent.is_empty() {
            let op = world.concurrent.remove(0);
            world.apply(&op);
        }
        Ok(world.attachments.last().map(|a| a.generation))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random histories with several generations, layers in flight, and two
    /// attachments (Multi and Stale) writing, also while the purge runs: the purge
    /// deletes no layer an attached node holds, nothing younger than the minimum
    /// age, and no index.
    #[test]
    fn purge_never_deletes_a_referenced_or_young_layer(
        history in proptest::collection::vec(op(), 1..40),
        concurrent in proptest::collection::vec(op(), 0..4),
    ) {
        let mut world = World {
            remote: MemRemote::default(),
            clock: WallTime(MIN_PURGE_AGE_MS),
            next_lsn: 0,
            attachments: Vec::new(),
            concurrent,
        };
        world.apply(&Op::Grant);
        for op in &history {
            world.apply(op);
        }
        world.clock = WallTime(world.clock.0 + 1);
        let now = world.clock;
        let before: BTreeMap<RemoteKey, Option<WallTime>> = world
            .remote
            .objects
            .lock()
            .unwrap()
            .iter()
            .map(|(k, (_, t))| (k.clone(), *t))
            .collect();
        let remote = world.remote.clone();
        let oracle = ModelOracle(Mutex::new(world));
        let options = ScrubOptions {
            purge: Some(PurgeRequest { rules: PurgeRules::new(MIN_PURGE_AGE_MS).unwrap(), execute: true }),
            page_keys: 3,
            ..ScrubOptions::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let out = rt.block_on(scrub(&remote, &options, &oracle, now, &mut |_| {})).unwrap();
        let world = oracle.0.into_inner().unwrap();
        for key in world.held_keys() {
            prop_assert!(remote.contains(&key), "deleted {key}, which an attachment holds\n{}", out.report.human());
        }
        for (key, written) in &before {
            let young = written.is_none_or(|t| now.0 - t.0 < MIN_PURGE_AGE_MS);
            let is_layer = matches!(classify_key(key), KeyClass::Layer { .. });
            if young || !is_layer {
                prop_assert!(remote.contains(key), "deleted {key} (young or not a layer)");
            }
        }
        let deleted = before.keys().filter(|k| !remote.contains(k)).count() as u64;
        prop_assert_eq!(deleted, out.report.purge.as_ref().unwrap().deleted);
    }
}

fn purge_options(execute: bool) -> ScrubOptions {
    let rules = PurgeRules::new(MIN_PURGE_AGE_MS).unwrap();
    ScrubOptions { purge: Some(PurgeRequest { rules, execute }), ..ScrubOptions::default() }
}

/// An old orphan, a young orphan, an orphan an older index names, and the layers
/// of the chosen index.
fn purge_fixture() -> (MemRemote, [RemoteKey; 3]) {
    let remote = MemRemote::default();
    let w = Writer { remote: &remote, tenant: tenant(1), timeline: timeline(1) };
    let (kept_name, kept_meta, kept_by_old_index) = w.layer(0x100, g(1), OLD);
    let (_, _, old_orphan) = w.layer(0x200, g(1), OLD);
    let (_, _, young_orphan) = w.layer(0x300, g(2), YOUNG);
    let (n, m, _) = w.layer(0x400, g(2), OLD);
    w.index(v(1, 1), &[(kept_name, kept_meta)], None);
    w.index(v(2, 1), &[(n, m)], None);
    (remote, [old_orphan, young_orphan, kept_by_old_index])
}

#[test]
fn purge_deletes_only_old_unreferenced_orphans_and_a_dry_run_deletes_nothing() {
    let table = Table::default();
    table.0.lock().unwrap().insert(tenant(1), g(2));
    let (remote, [old_orphan, young_orphan, kept]) = purge_fixture();
    let before = remote.keys();
    let dry = run(&remote, &purge_options(false), &table).report;
    assert_eq!(remote.keys(), before, "a dry run deletes nothing");
    let p = dry.purge.as_ref().unwrap();
    assert_eq!((p.executed, p.deleted), (false, 1), "{}", dry.human());
    let r = run(&remote, &purge_options(true), &table).report;
    let p = r.purge.as_ref().unwrap();
    assert_eq!((p.executed, p.deleted), (true, 1), "{}", r.human());
    assert_eq!(p.kept.get(Keep::Young.label()), Some(&1));
    assert_eq!(p.kept.get(Keep::Referenced.label()), Some(&1));
    assert!(!remote.contains(&old_orphan));
    assert!(remote.contains(&young_orphan) && remote.contains(&kept));
    assert_eq!(remote.keys().len(), before.len() - 1);
}

#[test]
fn purge_without_a_control_plane_answer_deletes_nothing() {
    let (remote, _) = purge_fixture();
    let before = remote.keys();
    // No control plane at all, and one that does not know the tenant.
    let r = run(&remote, &purge_options(true), &NoOracle).report;
    assert_eq!(remote.keys(), before);
    let p = r.purge.as_ref().unwrap();
    assert_eq!((p.deleted, p.kept.get(Keep::NoControlPlane.label())), (0, Some(&1)));
    let r = run(&remote, &purge_options(true), &Table::default()).report;
    assert_eq!((r.purge.unwrap().deleted, remote.keys()), (0, before));
}

#[test]
fn purge_refuses_when_the_control_plane_granted_a_newer_generation_during_the_walk() {
    let (remote, _) = purge_fixture();
    let before = remote.keys();
    /// Answers g2 first, then g3: a new attachment arrived during the walk.
    struct Moving(Mutex<u32>);
    impl GenerationOracle for Moving {
        async fn latest_generation(&self, _: TenantId) -> Result<Option<Generation>, String> {
            let mut n = self.0.lock().unwrap();
            *n += 1;
            Ok(Some(g(1 + *n)))
        }
    }
    let r = run(&remote, &purge_options(true), &Moving(Mutex::new(0))).report;
    assert_eq!(remote.keys(), before, "{}", r.human());
    assert_eq!(r.purge.unwrap().kept.get(Keep::ControlPlaneMoved.label()), Some(&1));
}
