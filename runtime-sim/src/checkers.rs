//! Checkers that look at the world, not at the node: they see what storage saw,
//! so a run that breaks a promise fails even with the node's own assertions
//! compiled out. Each failure message starts with the invariant id.

use crate::sim_remote::{HistoryEntry, HistoryOp, SimRemote};
use crate::world::World;
use std::collections::BTreeMap;
use strata_core::index_part::{IndexPart, IndexVersion};
use strata_core::layer_file::LayerFile;
use strata_core::layer_name::LayerName;
use strata_core::location_conf::{LOCATION_CONF_FILE_NAME, LocationConf};
use strata_core::metadata::TimelineMetadata;
use strata_core::remote_path::{self, RemoteKey};
use strata_core::{TenantId, TimelineId};

/// The tenant and timeline of a key under `tenants/{t}/timelines/{tl}/`.
pub(crate) fn timeline_of(key: &RemoteKey) -> Option<(TenantId, TimelineId)> {
    let mut parts = key.as_str().split('/');
    if parts.next()? != "tenants" {
        return None;
    }
    let tenant: TenantId = parts.next()?.parse().ok()?;
    if parts.next()? != "timelines" {
        return None;
    }
    let timeline: TimelineId = parts.next()?.parse().ok()?;
    Some((tenant, timeline))
}

/// S-IDX-ORDER and S-IDX-REF over the object store's history, replayed in the
/// order the store applied it.
///
/// - S-IDX-ORDER: when an index PUT is applied (on time: not a late, given-up
///   request), every layer it references is there with the recorded size.
/// - S-IDX-REF: after every applied request, the newest index of each timeline
///   (highest generation, then sequence) that is not a tombstone references only
///   layers that exist with the recorded size.
pub fn storage(world: &World) -> Result<(), String> {
    check_history(&world.remote.history())
}

pub fn check_history(history: &[HistoryEntry]) -> Result<(), String> {
    let mut objects: BTreeMap<RemoteKey, u64> = BTreeMap::new();
    let mut indexes: BTreeMap<(TenantId, TimelineId), BTreeMap<IndexVersion, Indexed>> =
        BTreeMap::new();
    // Per timeline, the newest index version found whole after some entry, while
    // nothing since could have changed that: every entry of the timeline since then
    // touched neither an index nor a layer that index lists. The check after such
    // an entry would see what it saw then, so it is skipped (re-checking the newest
    // index after every entry made this checker quadratic).
    let mut whole: BTreeMap<(TenantId, TimelineId), IndexVersion> = BTreeMap::new();
    for e in history {
        match &e.op {
            HistoryOp::Put { size_bytes } => {
                objects.insert(e.key.clone(), *size_bytes);
            }
            HistoryOp::Delete { .. } => {
                objects.remove(&e.key);
            }
        }
        let Some((t, tl)) = timeline_of(&e.key) else { continue };
        let index_version = match remote_path::parse_index_key(t, tl, &e.key) {
            Some(Ok(v)) => Some(v),
            Some(Err(err)) => {
                return Err(format!("S-IDX-REF: unparsable index key {} ({err})", e.key));
            }
            None => None,
        };
        let versions = indexes.entry((t, tl)).or_default();
        match (&e.op, index_version) {
            (HistoryOp::Put { .. }, Some(version)) => {
                let body = e
                    .body
                    .as_deref()
                    .ok_or_else(|| format!("history lacks the body of index {}", e.key))?;
                let index = IndexPart::from_json_bytes(body)
                    .map_err(|err| format!("S-IDX-REF: index {} unreadable: {err}", e.key))?;
                let index = Indexed::new(t, tl, index);
                // A late PUT (one its writer gave up on, applied after newer requests)
                // may land after its layers were legitimately deleted; it can never be
                // the newest index (sequence numbers), which S-IDX-REF below checks.
                match missing_layer(t, tl, &index, &objects).filter(|_| !e.late) {
                    Some(Missing::Relabelled(what)) => {
                        let (key, seq) = (&e.key, e.seq);
                        return Err(format!(
                            "S-GEN-SUFFIX: index {key} (history #{seq}) lists {what}"
                        ));
                    }
                    Some(Missing::Layer(missing)) => {
                        return Err(format!(
                            "S-IDX-ORDER: index {} applied (history #{}) before its layer {missing}",
                            e.key, e.seq
                        ));
                    }
                    None => {}
                }
                versions.insert(version, index);
            }
            (HistoryOp::Delete { .. }, Some(version)) => {
                versions.remove(&version);
            }
            _ => {}
        }
        let newest = versions.last_key_value().filter(|(_, newest)| newest.deleted_at().is_none());
        let Some((version, newest)) = newest else {
            whole.remove(&(t, tl));
            continue;
        };
        let unchanged = index_version.is_none()
            && whole.get(&(t, tl)) == Some(version)
            && !newest.layer_keys.contains(&e.key);
        if unchanged {
            continue;
        }
        whole.remove(&(t, tl));
        if let Some(missing) = missing_layer(t, tl, newest, &objects) {
            return Err(match missing {
                Missing::Relabelled(what) => {
                    format!("S-GEN-SUFFIX: the newest index {version:?} of {t}/{tl} lists {what}")
                }
                Missing::Layer(missing) => format!(
                    "S-IDX-REF: after history #{} ({:?} {}), the newest index {version:?} of {t}/{tl} references {missing}, which is not in storage",
                    e.seq, e.op, e.key
                ),
            });
        }
        whole.insert((t, tl), *version);
    }
    Ok(())
}

/// An index [`check_history`] holds: parsed, with the key of every layer it lists
/// (in `layer_metadata` order), formatted once.
struct Indexed {
    index: IndexPart,
    layer_keys: Vec<RemoteKey>,
}

impl Indexed {
    fn new(t: TenantId, tl: TimelineId, index: IndexPart) -> Indexed {
        let layers = index.layer_metadata.iter();
        let layer_keys =
            layers.map(|(name, meta)| remote_path::layer_key(t, tl, name, meta.generation));
        Indexed { layer_keys: layer_keys.collect(), index }
    }

    fn deleted_at(&self) -> Option<&strata_core::time::WallTime> {
        self.index.deleted_at.as_ref()
    }
}

/// The first layer `index` lists that storage does not hold as listed.
fn missing_layer(
    t: TenantId,
    tl: TimelineId,
    index: &Indexed,
    objects: &BTreeMap<RemoteKey, u64>,
) -> Option<Missing> {
    let layers = index.index.layer_metadata.iter().zip(&index.layer_keys);
    layers.into_iter().find_map(|((name, meta), key)| match objects.get(key) {
        Some(size) if *size == meta.file_size => None,
        Some(size) => {
            Some(Missing::Layer(format!("{key} (size {size}, index says {})", meta.file_size)))
        }
        None => Some(
            relabelled(t, tl, name, meta.generation, objects)
                .unwrap_or_else(|| Missing::Layer(key.to_string())),
        ),
    })
}

/// Why a listed layer is not in storage as listed.
enum Missing {
    /// Not there (or not at the recorded size).
    Layer(String),
    /// S-GEN-SUFFIX: listed at a generation it was not written in, while storage
    /// holds it under another generation's suffix (eviction or re-download rebuilt
    /// its metadata from the current generation: #5538).
    Relabelled(String),
}

fn relabelled(
    t: TenantId,
    tl: TimelineId,
    name: &LayerName,
    generation: strata_core::Generation,
    objects: &BTreeMap<RemoteKey, u64>,
) -> Option<Missing> {
    let stem = format!("{}{name}-", remote_path::timeline_prefix(t, tl));
    let (written, _) = objects.range(RemoteKey::from_listing(&stem).ok()?..).next()?;
    written.as_str().starts_with(&stem).then(|| {
        Missing::Relabelled(format!(
            "{name} at generation {generation:?}, but it was written as {written}"
        ))
    })
}

/// S-ACTIVE-UPLOADED: the node answered that it created `timeline` (it reports it
/// Active), so an index of the timeline is in remote storage now.
pub fn active_uploaded(
    remote: &crate::sim_remote::SimRemote,
    tenant: TenantId,
    timeline: TimelineId,
) -> Result<(), String> {
    let prefix = remote_path::timeline_prefix(tenant, timeline);
    let objects = remote.objects();
    let indexed = objects.keys().any(|k| {
        k.as_str().starts_with(&prefix)
            && matches!(remote_path::parse_index_key(tenant, timeline, k), Some(Ok(_)))
    });
    if indexed {
        return Ok(());
    }
    Err(format!(
        "S-ACTIVE-UPLOADED: {tenant}/{timeline} was answered created (Active) while remote storage held no index of it"
    ))
}

/// FSYNC-TRUST: the node never read back a file whose last write failed its fsync
/// before rewriting it (or a crash settled it): after a failed fsync a file's
/// contents are unknown (`strata_core::io_error`, `docs/FAULT_MODEL.md`).
pub fn fsync_trust(world: &World) -> Result<(), String> {
    fsync_trust_of(&world.disk)
}

/// [`fsync_trust`] of one node's disk.
pub fn fsync_trust_of(disk: &crate::sim_disk::SimDisk) -> Result<(), String> {
    match disk.untrusted_reads().into_iter().next() {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// S-CRASHSAFE: every config and metadata file on the (crashed) disk parses: old
/// or new, never torn; and every layer file under its layer's name parses and
/// verifies (its own checksums): a flush's write and a download's rename only
/// ever give a whole, checked file that name (a download the size and CRC32C
/// check refused, or one cut by the crash, leaves at most a temp file).
pub fn crash_safe(world: &World) -> Result<(), String> {
    crash_safe_of(&world.disk)
}

/// [`crash_safe`] of one node's disk.
pub fn crash_safe_of(disk: &crate::sim_disk::SimDisk) -> Result<(), String> {
    for (path, _size) in disk.files_now() {
        let Some(name) = path.file_name() else { continue };
        let Some(bytes) = disk.read_now(&path) else { continue };
        if name == LOCATION_CONF_FILE_NAME {
            let text = String::from_utf8(bytes)
                .map_err(|e| format!("S-CRASHSAFE: {path} is not UTF-8: {e}"))?;
            LocationConf::from_toml(&text)
                .map_err(|e| format!("S-CRASHSAFE: {path} is torn or corrupt: {e}"))?;
        } else if name == strata_core::node::io::METADATA_FILE_NAME {
            TimelineMetadata::from_bytes(&bytes)
                .map_err(|e| format!("S-CRASHSAFE: {path} is torn or corrupt: {e}"))?;
        } else if let Ok(layer) = name.parse::<LayerName>() {
            LayerFile::parse(&layer, bytes, None)
                .map_err(|e| format!("S-CRASHSAFE: layer file {path} is torn or corrupt: {e}"))?;
        }
    }
    Ok(())
}

/// S-LOCAL-TRUTH, once a restarted node answers (start-up's reconciliation is
/// over) and before anything is re-sent: every layer file an earlier life left on
/// `disk`, in a tenant the node holds attached (its `config-v1` says so), is listed
/// with the same size by an index of its timeline in storage; local-only and
/// wrong-size files must have been removed. Timelines whose newest index is a
/// tombstone, and tenants marked deleted, are left to L-DELETE. Any index of the
/// timeline still in storage counts (not only the one the node loaded), so that
/// a compaction since the start, which drops a layer from the newest index before
/// its local file goes, is no violation.
pub fn local_truth(
    disk: &crate::sim_disk::SimDisk,
    remote: &SimRemote,
    newest_grants: &BTreeMap<TenantId, strata_core::Generation>,
) -> Result<(), String> {
    let mut listed: BTreeMap<(TenantId, TimelineId), Option<LayerSizes>> = BTreeMap::new();
    for (path, size) in disk.layers_of_earlier_lives() {
        let parts: Vec<&str> = path.as_str().split('/').collect();
        let ["tenants", tenant, "timelines", timeline, name] = parts[..] else { continue };
        let (Ok(t), Ok(tl), Ok(layer)) =
            (tenant.parse::<TenantId>(), timeline.parse::<TimelineId>(), name.parse::<LayerName>())
        else {
            continue;
        };
        let layers = listed
            .entry((t, tl))
            .or_insert_with(|| indexed_layers(disk, remote, newest_grants.get(&t), (t, tl)));
        let Some(layers) = layers else { continue };
        match layers.get(&layer) {
            Some(sizes) if sizes.contains(&size) => {}
            Some(sizes) => {
                return Err(format!(
                    "S-LOCAL-TRUTH: {path} ({size} bytes, left by an earlier life) survived \
                     start-up, but its timeline's indexes list it with {sizes:?} bytes"
                ));
            }
            None => {
                return Err(format!(
                    "S-LOCAL-TRUTH: {path} ({size} bytes, left by an earlier life) survived \
                     start-up, but no index of its timeline in storage lists it"
                ));
            }
        }
    }
    Ok(())
}

/// Per layer name, the sizes indexes list it with (one per generation it was
/// written in, usually one).
type LayerSizes = BTreeMap<LayerName, std::collections::BTreeSet<u64>>;

/// The layers (with sizes) any index of `t`/`tl` in storage lists, or `None` when
/// the timeline is not S-LOCAL-TRUTH's to check: its tenant is not attached here
/// (per the local `config-v1`), or attached on a generation below the newest
/// granted (moved away: not loaded), or its `config-v1` could not be read since
/// the last crash (`disk.read.meta_eio`: Broken, not loaded), or marked deleted,
/// or its newest index is a tombstone or missing.
fn indexed_layers(
    disk: &crate::sim_disk::SimDisk,
    remote: &SimRemote,
    newest_grant: Option<&strata_core::Generation>,
    (t, tl): (TenantId, TimelineId),
) -> Option<LayerSizes> {
    let conf_path = strata_core::node::io::location_conf_path(t);
    if disk.meta_eio_since_crash(&conf_path) {
        return None; // The node could not read it: the tenant is Broken, not loaded.
    }
    let conf = disk.read_now(&conf_path)?;
    let conf = LocationConf::from_toml(std::str::from_utf8(&conf).ok()?).ok()?;
    // A config on an older generation than the newest granted is a tenant the
    // control plane moved away: start-up leaves it unloaded (and unreconciled).
    if !conf.mode.is_attached()
        || conf.mode.generation().as_ref() != newest_grant
        || remote.get_now(&remote_path::tenant_deletion_mark_key(t)).is_some()
    {
        return None;
    }
    let mut indexes = BTreeMap::new();
    for (key, body) in remote.objects_under(&remote_path::timeline_prefix(t, tl)) {
        if let Some(Ok(version)) = remote_path::parse_index_key(t, tl, &key) {
            indexes.insert(version, IndexPart::from_json_bytes(&body).ok()?);
        }
    }
    let (_, newest) = indexes.last_key_value()?;
    if newest.deleted_at.is_some() {
        return None;
    }
    let mut layers = LayerSizes::new();
    for index in indexes.values() {
        for (name, meta) in &index.layer_metadata {
            layers.entry(name.clone()).or_default().insert(meta.file_size);
        }
    }
    Some(layers)
}

/// S-GEN-MONO (a node writes only under generations granted to its current run):
/// every object applied on time (not a late, given-up request) under
/// `tenants/{t}/timelines/` whose key ends in a generation suffix was written in a
/// run (between two crashes) in which the control plane's store committed that
/// generation for `t` to this node. Emergency mode, which runs on the previous
/// run's generation, must therefore write nothing.
///
/// And no generation committed for a tenant is below one its objects carried in an
/// earlier run, across a lost store (`cp.store.lost`) too: a store rebuilt from
/// remote storage grants above the highest generation found there. (A generation
/// that left no object behind cannot be recovered by anyone; it is not checked.)
pub fn generations(world: &World) -> Result<(), String> {
    let grants = world.store.grants();
    let history = world.remote.history();
    for (epoch, r) in &grants {
        let g = r.generation.get();
        let written_before = history.iter().filter(|e| {
            !e.late
                && e.epoch < *epoch
                && matches!(e.op, HistoryOp::Put { .. })
                && timeline_of(&e.key).is_some_and(|(t, _)| t == r.tenant)
        });
        for e in written_before {
            if let Some(s) = generation_suffix(e.key.as_str())
                && s > g
            {
                return Err(format!(
                    "S-GEN-MONO: tenant {} was granted generation {g:08x} in run {epoch}, below {s:08x}, which {} (history #{}) carried in run {}",
                    r.tenant, e.key, e.seq, e.epoch
                ));
            }
        }
    }
    for e in world.remote.history() {
        if e.late || !matches!(e.op, HistoryOp::Put { .. }) {
            continue;
        }
        let Some((tenant, _)) = timeline_of(&e.key) else { continue };
        let Some(generation) = generation_suffix(e.key.as_str()) else { continue };
        let granted = grants.iter().any(|(epoch, r)| {
            *epoch == e.epoch && r.tenant == tenant && r.generation.get() == generation
        });
        if !granted {
            return Err(format!(
                "S-GEN-MONO: {} (history #{}) was written in run {} under generation {generation:08x}, which the control plane did not grant in that run",
                e.key, e.seq, e.epoch
            ));
        }
    }
    Ok(())
}

/// The `-{generation:08x}` a layer or index key ends with.
pub(crate) fn generation_suffix(key: &str) -> Option<u32> {
    let (_, suffix) = key.rsplit_once('-')?;
    if suffix.len() != 8 {
        return None;
    }
    u32::from_str_radix(suffix, 16).ok()
}

/// S-DEL-GEN, as the object store and the control plane's link saw it: every
/// layer DELETE applied on time was preceded by a validation that reached the
/// control plane after the index that dropped the layer landed (the deletion
/// cannot have been queued before that index: S-DEL-AFTER-INDEX), naming the
/// layer's tenant with a generation the control plane granted in that run.
///
/// And S-DEL-AFTER-INDEX itself: no layer is deleted while the newest on-time
/// index of its timeline still references it.
///
/// A deletion executed on a failed validation (the control plane unreachable, or
/// the answer past its deadline) has no such validation and fails here. A layer no
/// on-time index ever referenced is not checked (no index says when it was
/// dropped); nor are index objects.
pub fn deletions(world: &World) -> Result<(), String> {
    check_deletions(&world.remote.history(), &world.store.validations(), &world.store.grants())
}

pub fn check_deletions(
    history: &[HistoryEntry],
    validations: &[crate::sim_store::DeliveredValidation],
    grants: &[(u64, strata_core::control_plane::TenantRecord)],
) -> Result<(), String> {
    use std::collections::BTreeSet;
    // Per timeline, the layers the last on-time index referenced; per layer, when an
    // index first left it out after one had referenced it.
    let mut referenced: BTreeMap<(TenantId, TimelineId), BTreeSet<RemoteKey>> = BTreeMap::new();
    let mut dropped_at: BTreeMap<RemoteKey, std::time::Duration> = BTreeMap::new();
    for e in history {
        if e.late {
            continue;
        }
        let Some((t, tl)) = timeline_of(&e.key) else { continue };
        let is_index = remote_path::parse_index_key(t, tl, &e.key).is_some();
        match (&e.op, is_index) {
            (HistoryOp::Put { .. }, true) => {
                let Some(index) =
                    e.body.as_deref().and_then(|b| IndexPart::from_json_bytes(b).ok())
                else {
                    continue; // S-IDX-REF reports an unreadable index
                };
                let now: BTreeSet<RemoteKey> = if index.deleted_at.is_some() {
                    BTreeSet::new()
                } else {
                    let layers = index.layer_metadata.iter();
                    layers.map(|(n, m)| remote_path::layer_key(t, tl, n, m.generation)).collect()
                };
                let before = referenced.insert((t, tl), now.clone()).unwrap_or_default();
                for key in before.difference(&now) {
                    dropped_at.entry(key.clone()).or_insert(e.at);
                }
                for key in &now {
                    dropped_at.remove(key);
                }
            }
            (HistoryOp::Delete { .. }, false) => {
                if referenced.get(&(t, tl)).is_some_and(|now| now.contains(&e.key)) {
                    return Err(format!(
                        "S-DEL-AFTER-INDEX: {} deleted (history #{}, run {}, at {:?}) while the newest index of {t}/{tl} still references it",
                        e.key, e.seq, e.epoch, e.at
                    ));
                }
                let Some(since) = dropped_at.get(&e.key) else { continue };
                let granted = |epoch: u64, g: strata_core::Generation| {
                    grants.iter().any(|(ep, r)| *ep == epoch && r.tenant == t && r.generation == g)
                };
                let validated = validations.iter().any(|v| {
                    v.at >= *since
                        && v.at <= e.at
                        && v.tenants.iter().any(|(vt, g)| *vt == t && granted(v.epoch, *g))
                });
                if !validated {
                    return Err(format!(
                        "S-DEL-GEN: {} deleted (history #{}, run {}, at {:?}) with no validation of {t} reaching the control plane since the index that dropped it landed (at {since:?})",
                        e.key, e.seq, e.epoch, e.at
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The end-of-run scrub (`strata scrub --deep` through the remote-storage trait):
/// every finding but an orphan fails the run; the orphans are counted. A deleted
/// timeline or tenant that still holds objects is garbage like an orphan, not a
/// failure, when every object it holds besides its indexes was put by a delayed
/// request (`remote.put.delayed`: the caller was told the PUT failed and it landed
/// up to 30 s later, after the deletion had listed and deleted what was there).
/// Such objects are counted with the orphans (swarm seed 832).
pub async fn scrub(world: &World) -> Result<u64, String> {
    use strata_adapters::scrub::{NoOracle, ScrubOptions};
    use strata_core::scrub::Finding;
    let options = ScrubOptions { deep: true, ..ScrubOptions::default() };
    let now = strata_core::time::WallTime(0);
    let out = strata_adapters::scrub::scrub(&world.remote, &options, &NoOracle, now, &mut |_| {})
        .await
        .map_err(|e| format!("scrub: the walk failed: {e}"))?;
    // Findings past the held ones are only counted: nothing to forgive them by.
    let held_all = out.report.findings_not_held == 0;
    let (mut forgiven, mut explained) = (0, 0);
    for finding in &out.report.findings {
        if let Finding::TombstoneHoldsObjects { prefix, objects } = finding
            && held_all
            && put_late_only(world, prefix)
        {
            forgiven += 1;
            explained += objects;
        }
    }
    if out.report.problems() > forgiven {
        return Err(format!("scrub: {}", out.report.human()));
    }
    Ok(out.report.orphans() + explained)
}

/// Whether every object under `prefix` that the scrub counts as held (all but the
/// indexes and the tenant deletion mark, which stay after a deletion) was last
/// written by a delayed PUT.
fn put_late_only(world: &World, prefix: &str) -> bool {
    let objects = world.remote.objects();
    late_only(&world.remote.history(), objects.keys(), prefix)
}

/// [`put_late_only`] over a history and the keys in the store.
fn late_only<'a>(
    history: &[HistoryEntry],
    objects: impl Iterator<Item = &'a RemoteKey>,
    prefix: &str,
) -> bool {
    let mut last: BTreeMap<&RemoteKey, bool> = BTreeMap::new();
    for entry in history.iter().filter(|e| e.key.as_str().starts_with(prefix)) {
        last.insert(&entry.key, entry.late && matches!(entry.op, HistoryOp::Put { .. }));
    }
    let kept_after_deletion = |k: &RemoteKey| {
        use strata_core::scrub::{KeyClass, classify_key};
        matches!(classify_key(k), KeyClass::Index { .. } | KeyClass::TenantDeletionMark { .. })
    };
    objects
        .filter(|k| k.as_str().starts_with(prefix) && !kept_after_deletion(k))
        .all(|k| last.get(k).copied().unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim_store::DeliveredValidation;
    use std::time::Duration;
    use strata_core::Generation;
    use strata_core::control_plane::TenantRecord;
    use strata_core::id::NodeId;
    use strata_core::index_part::LayerMeta;
    use strata_core::layer_name::LayerName;
    use strata_core::metadata::TimelineMetadata;

    const T: TenantId = TenantId([1; 16]);
    const TL: TimelineId = TimelineId([2; 16]);

    fn layer() -> (LayerName, RemoteKey) {
        let name: LayerName =
            "0000000000000000-FFFFFFFFFFFFFFFF__0000000000000001-0000000000000131"
                .parse()
                .expect("a layer name");
        let key = remote_path::layer_key(T, TL, &name, Generation::FIRST);
        (name, key)
    }

    fn entry(
        seq: u64,
        at_ms: u64,
        key: RemoteKey,
        op: HistoryOp,
        body: Option<Vec<u8>>,
    ) -> HistoryEntry {
        let at = Duration::from_millis(at_ms);
        HistoryEntry { seq, at, key, op, late: false, epoch: 0, writer: 0, issued: at, body }
    }

    fn index_put(seq: u64, at_ms: u64, layers: &[(LayerName, RemoteKey)]) -> HistoryEntry {
        let mut index = IndexPart::empty(TimelineMetadata::default());
        index.seq = seq;
        for (name, _) in layers {
            let meta = LayerMeta { file_size: 10, generation: Generation::FIRST, crc32c: 0 };
            index.layer_metadata.insert(name.clone(), meta);
        }
        let version = IndexVersion { generation: Generation::FIRST, seq };
        let key = remote_path::index_key(T, TL, version);
        entry(seq, at_ms, key, HistoryOp::Put { size_bytes: 1 }, Some(index.to_json_bytes()))
    }

    /// A layer referenced by index 1, dropped by index 2 (at 200 ms), deleted at 500 ms.
    fn history() -> Vec<HistoryEntry> {
        let (name, key) = layer();
        vec![
            entry(0, 50, key.clone(), HistoryOp::Put { size_bytes: 10 }, None),
            index_put(1, 100, &[(name, key.clone())]),
            index_put(2, 200, &[]),
            entry(3, 500, key, HistoryOp::Delete { existed: true }, None),
        ]
    }

    /// The end-of-run scrub forgives a deleted timeline's leftover only when a
    /// delayed PUT wrote it (seed 832); an on-time PUT under a tombstone still
    /// fails the run.
    #[test]
    fn only_delayed_puts_explain_what_a_tombstone_holds() {
        let (_, key) = layer();
        let prefix = remote_path::timeline_prefix(T, TL);
        let index = index_put(1, 100, &[]);
        let mut late = entry(5, 900, key.clone(), HistoryOp::Put { size_bytes: 10 }, None);
        late.late = true;
        let keys = [key.clone(), index.key.clone()];
        assert!(late_only(&[index.clone(), late.clone()], keys.iter(), &prefix));
        let on_time = entry(6, 950, key.clone(), HistoryOp::Put { size_bytes: 10 }, None);
        assert!(!late_only(&[index.clone(), late, on_time], keys.iter(), &prefix));
        assert!(!late_only(&[index], keys.iter(), &prefix), "no write on record");
    }

    /// A deleted tenant's prefix holds its deletion mark, written on time, which
    /// the scrub does not count as held: a delayed PUT's layer under it is still
    /// forgiven (swarm seed 1321).
    #[test]
    fn a_tenant_deletion_mark_is_not_what_a_tombstone_holds() {
        let (_, key) = layer();
        let prefix = remote_path::tenant_prefix(T);
        let mark = remote_path::tenant_deletion_mark_key(T);
        let mark_put = entry(4, 800, mark.clone(), HistoryOp::Put { size_bytes: 0 }, None);
        let mut late = entry(5, 900, key.clone(), HistoryOp::Put { size_bytes: 10 }, None);
        late.late = true;
        let keys = [key, mark];
        assert!(late_only(&[mark_put, late], keys.iter(), &prefix));
    }

    /// A second layer of the timeline that no index lists.
    fn other_layer() -> RemoteKey {
        let name: LayerName =
            "0000000000000000-FFFFFFFFFFFFFFFF__0000000000000131-0000000000000200"
                .parse()
                .expect("a layer name");
        remote_path::layer_key(T, TL, &name, Generation::FIRST)
    }

    /// S-IDX-REF is checked after every entry, also once the newest index was found
    /// whole and entries that cannot change that followed (the checker skips those):
    /// a later delete of a layer it lists fails, directly or once a tombstone over it
    /// is gone again; an unlisted layer's delete does not.
    #[test]
    fn s_idx_ref_sees_a_listed_layer_deleted_after_unrelated_entries() {
        let (name, key) = layer();
        let other = other_layer();
        let put = |seq, key: &RemoteKey| {
            entry(seq, 0, key.clone(), HistoryOp::Put { size_bytes: 10 }, None)
        };
        let delete = |seq, key: &RemoteKey| {
            entry(seq, 0, key.clone(), HistoryOp::Delete { existed: true }, None)
        };
        let base = vec![put(0, &key), index_put(1, 100, &[(name, key.clone())]), put(2, &other)];
        let mut fine = base.clone();
        fine.push(delete(3, &other));
        assert_eq!(check_history(&fine), Ok(()));
        let mut listed_gone = base.clone();
        listed_gone.extend([put(3, &other), delete(4, &key)]);
        let err = check_history(&listed_gone).unwrap_err();
        assert!(err.starts_with("S-IDX-REF: after history #4"), "{err}");
        // A tombstone (index 2) hides index 1 while its layer goes; deleting the
        // tombstone makes index 1 the newest again, with its layer missing.
        let mut tombstone = IndexPart::empty(TimelineMetadata::default());
        tombstone.seq = 2;
        tombstone.deleted_at = Some(strata_core::time::WallTime(1));
        let version = IndexVersion { generation: Generation::FIRST, seq: 2 };
        let tomb_key = remote_path::index_key(T, TL, version);
        let mut back = base;
        back.extend([
            entry(
                3,
                0,
                tomb_key.clone(),
                HistoryOp::Put { size_bytes: 1 },
                Some(tombstone.to_json_bytes()),
            ),
            delete(4, &key),
            delete(5, &tomb_key),
        ]);
        let err = check_history(&back).unwrap_err();
        assert!(err.starts_with("S-IDX-REF: after history #5"), "{err}");
    }

    fn grants() -> Vec<(u64, TenantRecord)> {
        vec![(
            0,
            TenantRecord { tenant: T, generation: Generation::FIRST, attached_to: Some(NodeId(1)) },
        )]
    }

    fn validation(at_ms: u64, generation: Generation) -> DeliveredValidation {
        DeliveredValidation {
            at: Duration::from_millis(at_ms),
            epoch: 0,
            tenants: vec![(T, generation)],
        }
    }

    #[test]
    fn s_del_gen_wants_a_validation_between_the_dropping_index_and_the_delete() {
        let ok = [validation(300, Generation::FIRST)];
        assert_eq!(check_deletions(&history(), &ok, &grants()), Ok(()));
        // None at all, only one before the index dropped the layer, or one naming a
        // generation never granted: the deletion had no validation after it was queued.
        let g2 = Generation::FIRST.next().unwrap();
        for validations in
            [vec![], vec![validation(150, Generation::FIRST)], vec![validation(300, g2)]]
        {
            let err = check_deletions(&history(), &validations, &grants()).unwrap_err();
            assert!(err.starts_with("S-DEL-GEN"), "{err}");
        }
    }
}
