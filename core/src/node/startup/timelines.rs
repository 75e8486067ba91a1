//! Phase 5, `LoadTimelines`: per tenant, list its remote timelines (S-GEN-MONO at
//! every index load), choose each index with `select_index`, load it, list the local
//! timeline directory, and reconcile: remote is the truth, local-only and wrong-size
//! layer files are removed (S-LOCAL-TRUTH), layers missing locally are remote-only.

use super::StartupIo;
use super::StartupPhase;
use crate::id::{TenantId, TimelineId};
use crate::index_part::{IndexPart, IndexVersion, select_index};
use crate::layer_name::LayerName;
use crate::location_conf::LocationMode;
use crate::node::io::{self, Entry, Io, IoError, IoErrorKind, IoResult};
use crate::node::{BrokenReason, Machine, Node, SlotState, TimelineSlot};
use crate::remote_path::{self, RemoteKey, TimelinesEntry};
use crate::tenant::StepError;
use crate::timeline::Timeline;
use crate::upload_queue::UploadQueue;
use std::collections::BTreeMap;

impl Node {
    /// `LoadTimelines`: every tenant's remote timelines are listed, then each index
    /// is read and its timeline started. The listing `CheckGenerations` took is not
    /// reused: it came before re-attach, and an index the previous attachment had
    /// validated between that listing and re-attach must be the one loaded.
    pub(super) fn load_timelines(&mut self) {
        self.enter(StartupPhase::LoadTimelines);
        // Each load starts with `LoadTenant` (`Node::begin_load_tenant`), as an
        // attach's does.
        self.hand_loads_to_manager();
        self.startup_step_done();
    }

    /// `tenant`'s remote timelines listed: each one's index is chosen and read. A
    /// listing that failed for good leaves the tenant out.
    pub(super) fn on_remote_timelines_listed(&mut self, tenant: TenantId, result: IoResult) {
        let Some(result) =
            self.retry_failed_listing(tenant, StartupIo::ListRemoteTimelines, result)
        else {
            return;
        };
        match result {
            IoResult::Listing(Ok(entries)) => self.load_remote_timelines(tenant, &entries),
            other => {
                let reason = format!("listing its remote timelines failed: {other:?}");
                self.warn(format!("tenant {tenant} not loaded: {reason}"));
                self.load_failed(tenant, reason)
            }
        }
    }

    fn load_remote_timelines(&mut self, tenant: TenantId, entries: &[Entry]) {
        let Some(generation) = self.tenants.get(&tenant).map(|t| t.generation) else { return };
        // S-GEN-MONO at every index load: `generation` was just granted (nothing is
        // written under it yet), so an object at or above it is another control
        // plane's; in emergency mode it is this node's last grant, so one above it is.
        let keys: Vec<RemoteKey> =
            entries.iter().filter_map(|e| RemoteKey::from_listing(&e.name).ok()).collect();
        let found = crate::control_plane::max_generation_in_listing(tenant, &keys);
        let fresh = self.emergency.is_none();
        if let Some(found) = found
            && (found > generation || (fresh && found == generation))
        {
            let ceiling = if fresh {
                format!(
                    "{generation}'s predecessors ({generation} was just granted to this node and nothing is written under it yet)"
                )
            } else {
                format!("{generation}, this node's last grant")
            };
            let reason = self.generation_conflict(tenant, found, ceiling);
            return self.load_failed(tenant, reason);
        }
        let mut versions: BTreeMap<TimelineId, Vec<IndexVersion>> = BTreeMap::new();
        for entry in entries {
            let Ok(key) = RemoteKey::from_listing(&entry.name) else { continue };
            match remote_path::classify_timelines_entry(tenant, &key) {
                Some(TimelinesEntry::Timeline(timeline)) => {
                    let list = versions.entry(timeline).or_default();
                    match remote_path::parse_index_key(tenant, timeline, &key) {
                        Some(Ok(v)) => list.push(v),
                        Some(Err(e)) => {
                            self.warn(format!("ignoring unparsable index key {key}: {e}"))
                        }
                        None => {}
                    }
                }
                Some(TimelinesEntry::DeletionMark) => {
                    // Its deletion was interrupted: it resumes once the tenant is up.
                    self.warn(format!(
                        "tenant {tenant} carries a deletion mark: its deletion resumes"
                    ));
                    if let Some(t) = self.tenants.get_mut(&tenant) {
                        t.deletion_marked = true;
                    }
                }
                Some(TimelinesEntry::Unknown(name)) => {
                    self.warn(format!("ignoring unknown remote entry {name}"))
                }
                None => {}
            }
        }
        for (timeline, listed) in versions {
            let selection = select_index(generation, &listed);
            if !selection.newer.is_empty() {
                self.warn(format!(
                    "timeline {tenant}/{timeline} has indexes of newer generations {:?} than ours ({generation}): not loaded from them",
                    selection.newer
                ));
            }
            match selection.chosen {
                Some(version) => self.startup_io(
                    StartupIo::GetIndex { tenant, timeline, version },
                    Io::RemoteGet { key: remote_path::index_key(tenant, timeline, version) },
                ),
                None => self.warn(format!(
                    "timeline {tenant}/{timeline} has no index at or below {generation}; skipped"
                )),
            }
        }
    }

    /// A timeline's index read: a transient failure is retried; otherwise the index
    /// is parsed and the timeline loaded, or listed as unloadable with the reason.
    pub(super) fn on_index_read(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
        version: IndexVersion,
        result: IoResult,
    ) {
        if let IoResult::Bytes(Err(IoError {
            kind: IoErrorKind::Transient | IoErrorKind::OperatorFixable(_),
            message: why,
            ..
        })) = &result
        {
            let io = Io::RemoteGet { key: remote_path::index_key(tenant, timeline, version) };
            let why = why.clone();
            return self.retry_later(StartupIo::GetIndex { tenant, timeline, version }, io, &why);
        }
        let object = remote_path::index_key(tenant, timeline, version);
        let parsed = match result {
            // Corrupt: no retry can fix it (issue 15 item 7: this was a 404).
            IoResult::Bytes(Ok(bytes)) => IndexPart::from_json_bytes(&bytes)
                .map_err(|e| BrokenReason::Corrupt { object, reason: e.to_string() }),
            // Listed a moment ago, gone now: a newer index replaced it.
            IoResult::Bytes(Err(IoError { kind: IoErrorKind::NotFound, message: why, .. })) => {
                return self.warn(format!(
                    "timeline {tenant}/{timeline} not loaded: its index {object} vanished: {why}"
                ));
            }
            other => {
                Err(BrokenReason::Failed(format!("reading its index {object} failed: {other:?}")))
            }
        };
        self.on_index_parsed(tenant, timeline, version, parsed);
    }

    /// A timeline's index parsed: its local directory is listed next (a tombstone
    /// only on the single attached node); an unreadable one is listed as broken with
    /// the reason, answered with it (500).
    fn on_index_parsed(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
        version: IndexVersion,
        parsed: Result<IndexPart, BrokenReason>,
    ) {
        let single = self
            .tenants
            .get(&tenant)
            .is_some_and(|t| matches!(t.mode, LocationMode::AttachedSingle { .. }));
        match parsed {
            Ok(index) if index.deleted_at.is_some() && !single => self.warn(format!(
                "timeline {tenant}/{timeline} is being deleted (tombstone); not loaded: only the single attached node resumes a deletion"
            )),
            Ok(index) => self.startup_io(
                StartupIo::ListLocalTimeline { tenant, timeline, version, index: Box::new(index) },
                Io::DiskList { path: io::timeline_dir(tenant, timeline) },
            ),
            Err(reason) => {
                // Listed as broken with the reason, answered with it (500).
                self.warn(format!("timeline {tenant}/{timeline} not loaded: {reason}"));
                if let Some(t) = self.tenants.get_mut(&tenant) {
                    t.unloadable.insert(timeline, reason);
                }
            }
        }
    }

    /// A timeline's local directory listed: the timeline starts from its index and
    /// what is on disk (an unlistable directory counts as empty).
    pub(super) fn on_local_timeline_listed(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
        version: IndexVersion,
        index: IndexPart,
        result: IoResult,
    ) {
        let entries = match result {
            IoResult::Listing(Ok(entries)) => entries,
            _ => Vec::new(),
        };
        self.start_timeline(tenant, timeline, version, index, &entries);
    }

    fn start_timeline(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
        version: IndexVersion,
        index: IndexPart,
        entries: &[Entry],
    ) {
        let Some(t) = self.tenants.get(&tenant) else { return };
        let (generation, mut mode, mode_of_tenant) =
            (t.generation, crate::node::requests::attach_mode(&t.mode), t.mode);
        if self.emergency.is_some() {
            mode = crate::upload_queue::AttachMode::Emergency;
        }
        let local: BTreeMap<LayerName, u64> = entries
            .iter()
            .filter(|e| !e.is_dir)
            .filter_map(|e| e.name.parse::<LayerName>().ok().map(|name| (name, e.size_bytes)))
            .collect();
        // Anything else in the directory that is not the metadata file is a leftover.
        for e in entries.iter().filter(|e| !e.is_dir && e.name != io::METADATA_FILE_NAME) {
            if e.name.parse::<LayerName>().is_err() {
                self.warn(format!(
                    "removing unexpected local file {}/{}",
                    io::timeline_dir(tenant, timeline),
                    e.name
                ));
                let path = io::timeline_dir(tenant, timeline).join(&e.name);
                self.startup_io(
                    StartupIo::RemoveLocal { tenant: Some(tenant) },
                    Io::DiskRemove { path },
                );
            }
        }
        let mut timeline_config = self.config.timeline.clone();
        timeline_config.generation = generation;
        let (mut machine, remove) =
            Timeline::recover(tenant, timeline, &index, &local, timeline_config, self.now);
        for name in remove {
            // S-LOCAL-TRUTH: local-only or wrong-size files go; remote is the truth.
            let path = io::layer_path(tenant, timeline, &name);
            self.startup_io(
                StartupIo::RemoveLocal { tenant: Some(tenant) },
                Io::DiskRemove { path },
            );
        }
        let (may_compact, may_delete) = if self.emergency.is_some() {
            (false, false)
        } else {
            crate::node::requests::background_gates(&mode_of_tenant)
        };
        machine.handle_mode(self.now, may_compact, may_delete);
        let mut upload = UploadQueue::recover(
            tenant,
            timeline,
            generation,
            mode,
            index,
            version,
            self.config.upload.clone(),
        );
        // Layers above the index's disk_consistent_lsn (flushed and uploaded, but the
        // metadata never made it) leave the remote set too: a re-ingest will write
        // them again, under the same name, in this generation.
        let future: Vec<LayerName> = machine.future_layers().to_vec();
        if !future.is_empty()
            && let Err(e) = upload.handle_unlink_layers(self.now, &future)
        {
            self.warn(format!("timeline {tenant}/{timeline}: unlinking future layers failed: {e}"));
        }
        // A tombstone: the deletion was interrupted; it resumes (S14).
        let state = if upload.state() == &crate::upload_queue::QueueState::Tombstoned {
            match upload.handle_delete_timeline(self.now, self.wall) {
                Ok(()) => SlotState::Deleting,
                Err(e) => {
                    self.warn(format!(
                        "timeline {tenant}/{timeline}: resuming its deletion failed: {e}"
                    ));
                    SlotState::Broken(format!("resuming its deletion failed: {e}").into())
                }
            }
        } else {
            SlotState::Active
        };
        // A tenant broken by a panic gets no machines again (`isolation.rs`).
        if let Some(t) = self.tenants.get_mut(&tenant)
            && !t.is_broken()
        {
            t.timelines.insert(timeline, TimelineSlot::new(state, machine, upload));
        }
        self.dirty.insert(Machine::Timeline(tenant, timeline));
        self.dirty.insert(Machine::Upload(tenant, timeline));
    }

    /// `tenant`'s load failed before any of its timelines started (its first I/O,
    /// the listing, was its only one): the tenant is dropped and its load ends with
    /// `reason` (already warned of), so its slot says Broken with it.
    fn load_failed(&mut self, tenant: TenantId, reason: String) {
        self.uncount_tenant_memory(tenant);
        let loading = self.tenants.remove(&tenant).and_then(|t| t.loading);
        if loading.is_some() {
            self.step_done(tenant, Err(StepError::LoadFailed { tenant, reason }));
        }
    }
}
