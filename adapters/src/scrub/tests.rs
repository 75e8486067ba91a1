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

/// An object store in memory that pages like S3 and reports modification times.
#[derive(Clone, Default)]
pub(super) struct MemRemote {
    objects: Arc<Mutex<BTreeMap<RemoteKey, (Vec<u8>, Option<WallTime>)>>>,
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
        self.remote.insert(key.clone(), part.to_json_bytes(), OLD);
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
