//! Start-up: from what the world holds to an active node.
//!
//! Phases, in order (each a [`StartupPhase`]; the time spent in each is a getter):
//! 1. `ListTenants`, `ReadConfigs`: list `tenants/` and read every `config-v1`. A
//!    tenant directory whose config is missing or unreadable gets a `Broken` slot in
//!    the tenant manager with the reason: it is not loaded, its config is not
//!    rewritten, nothing is guessed (not even when re-attach names it), until a
//!    location_config names its mode. A tenant re-attach names that has no local
//!    directory at all (a lost disk, a create that crashed after its grant), or an
//!    empty one (a write that crashed before its config landed), loads from remote
//!    storage as AttachedSingle.
//! 2. `Rebuild`: local tenants the control plane does not know mean its store is
//!    fresh or lost. Without `rebuild_generations` the node refuses to start
//!    (`Failed`, with the tenant ids); with it, each is attached with a generation
//!    above the highest in its remote storage and its local config (S-GEN-MONO).
//! 3. `CheckGenerations`: every tenant the control plane attaches here has its
//!    remote storage listed; objects above the latest generation the control plane
//!    granted for it (to any node) were granted by another control plane (two
//!    stores on one bucket). That tenant is held back from re-attach (its record
//!    unchanged, so the next start finds the conflict again) and Broken, naming the
//!    generation (S-GEN-MONO).
//!    `ReAttach`: every other tenant of this node gets a new generation, durably,
//!    before anything is written; each `config-v1` is rewritten with it
//!    (`WriteConfigs`).
//! 4. `LoadDeletionQueue`: read `deletion/` and recover the deletion queue with the
//!    re-attach answer (lists of this node's immediately preceding generation are
//!    kept; others are dropped).
//! 5. `LoadTimelines`: per tenant, list its remote timelines (an object at or above
//!    the generation just granted, under which nothing is written yet, is another
//!    control plane's: the tenant goes Broken naming it, S-GEN-MONO), choose each
//!    index with `select_index`,
//!    load it, list the local timeline directory, and reconcile: remote is the
//!    truth, local-only and wrong-size layer files are removed (S-LOCAL-TRUTH),
//!    layers missing locally are remote-only and downloaded on demand.
//!
//! Every start-up I/O (and that of tenants loaded later by the tenant manager) goes
//! through one queue bounded by `NodeConfig::startup_concurrency` (S3, S7):
//! thousands of tenants do not mean thousands of simultaneous reads.
//!
//! A crash anywhere here leaves nothing half-done that the next start cannot redo:
//! configs are rewritten atomically, and generations only grow.

use super::io::{self, Entry, Io, IoFailure, IoResult};
use super::routing::{CpWaiter, Route};
use super::{BrokenReason, Machine, Node, NodeEffect, NodePhase, SlotState, Tenant, TimelineSlot};
use crate::control_plane::{ControlPlaneError, ControlPlaneReply, ReAttachedTenant};
use crate::deletion_list::{DELETION_HEADER_FILE_NAME, DeletionHeader, DeletionList};
use crate::deletion_queue::DeletionQueue;
use crate::id::{TenantId, TimelineId};
use crate::index_part::{IndexPart, IndexVersion, select_index};
use crate::layer_name::LayerName;
use crate::location_conf::{LocationConf, LocationMode};
use crate::remote_path::{self, RemoteKey, TimelinesEntry};
use crate::tenant::{Slot, TenantEvent, TenantManager, TenantState};
use crate::time::Instant;
use crate::timeline::Timeline;
use crate::upload_queue::UploadQueue;
use std::collections::BTreeMap;

/// A config file's bytes; shown by length only, so trace lines stay short.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigBytes(pub Vec<u8>);

impl std::fmt::Debug for ConfigBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

/// How often start-up writes a tenant's config before giving up on the tenant.
pub const STARTUP_WRITE_ATTEMPTS: u32 = 10;
/// Backoff of start-up reads of remote storage after a transient failure: doubles
/// from the base per failure, capped; start-up waits for remote storage, it does not
/// start without a tenant's timelines.
pub const STARTUP_RETRY_BASE_MS: u64 = 50;
pub const STARTUP_RETRY_MAX_MS: u64 = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StartupPhase {
    ListTenants,
    ReadConfigs,
    Rebuild,
    CheckGenerations,
    ReAttach,
    WriteConfigs,
    LoadDeletionQueue,
    LoadTimelines,
}

/// The start-up I/O a completion belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartupIo {
    ListTenants,
    ReadConfig(TenantId),
    /// Listing a tenant directory whose config is missing: an empty one (a create or
    /// an attach that crashed before its config landed) is as good as none.
    ListTenantDir(TenantId),
    /// Listing a tenant's remote storage before re-attach: objects above the
    /// generation the control plane last granted mean another control plane granted
    /// them (S-GEN-MONO).
    CheckGenerations(TenantId),
    /// Rewriting a tenant's config with its new generation; `attempt` counts from 1.
    WriteConfig {
        tenant: TenantId,
        bytes: ConfigBytes,
        attempt: u32,
    },
    ListDeletion,
    ReadDeletion(String),
    ListRemoteTimelines(TenantId),
    GetIndex {
        tenant: TenantId,
        timeline: TimelineId,
        version: IndexVersion,
    },
    ListLocalTimeline {
        tenant: TenantId,
        timeline: TimelineId,
        version: IndexVersion,
        index: Box<IndexPart>,
    },
    /// Removing a leftover local file or directory (of `tenant`, when it is loading).
    RemoveLocal {
        tenant: Option<TenantId>,
    },
}

impl StartupIo {
    /// The tenant this I/O loads, if it belongs to one.
    fn tenant(&self) -> Option<TenantId> {
        match self {
            StartupIo::ListRemoteTimelines(t)
            | StartupIo::GetIndex { tenant: t, .. }
            | StartupIo::ListLocalTimeline { tenant: t, .. } => Some(*t),
            StartupIo::RemoveLocal { tenant } => *tenant,
            StartupIo::ListTenants
            | StartupIo::ReadConfig(_)
            | StartupIo::ListTenantDir(_)
            | StartupIo::CheckGenerations(_)
            | StartupIo::WriteConfig { .. }
            | StartupIo::ListDeletion
            | StartupIo::ReadDeletion(_) => None,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Startup {
    /// Every tenant's config as last read or written (kept after start-up: the tenant
    /// manager rewrites configs with the tenant-level settings kept).
    pub(crate) configs: BTreeMap<TenantId, LocationConf>,
    /// Tenants loaded after start-up by the tenant manager (`LoadTenant`), with their
    /// outstanding I/O; start-up's own I/O counts in `outstanding`.
    pub(crate) loading: BTreeMap<TenantId, usize>,
    reattached: BTreeMap<TenantId, ReAttachedTenant>,
    /// Tenants whose remote storage holds generations the control plane never
    /// granted (`CheckGenerations`): not re-attached, not loaded; their slot says
    /// Broken with the generation found.
    pub(crate) held_back: std::collections::BTreeSet<TenantId>,
    header: Option<DeletionHeader>,
    lists: Vec<DeletionList>,
    pub(crate) outstanding: usize,
    /// Start-up I/O waiting out a backoff after a transient remote failure.
    retries: Vec<(Instant, StartupIo, Io)>,
    /// Start-up I/O waiting for a free slot under `startup_concurrency` (S3, S7).
    waiting: std::collections::VecDeque<(StartupIo, Io)>,
    /// Start-up I/O issued and not completed yet (≤ `startup_concurrency`).
    pub(crate) in_flight: usize,
    retry_failures: u32,
    phase_started: Option<Instant>,
    /// Milliseconds spent in each finished phase, for metrics.
    pub(crate) phase_ms: BTreeMap<StartupPhase, u64>,
    /// Problems that did not stop the start (unreadable configs, newer indexes, …).
    pub(crate) warnings: Vec<String>,
}

impl Node {
    pub(crate) fn begin_startup(&mut self) {
        self.startup.phase_started = Some(self.now);
        self.startup_io(StartupIo::ListTenants, Io::DiskList { path: io::TENANTS_DIR.into() });
    }

    /// Start-up phases finished so far and their duration.
    pub fn startup_phase_ms(&self) -> &BTreeMap<StartupPhase, u64> {
        &self.startup.phase_ms
    }

    pub fn startup_warnings(&self) -> &[String] {
        &self.startup.warnings
    }

    pub(crate) fn startup_io(&mut self, step: StartupIo, io: Io) {
        self.count_start(&step);
        self.dispatch_startup_io(step, io);
    }

    /// Issues start-up I/O under the `startup_concurrency` bound: reading thousands
    /// of configs and indexes at once would swamp the disk and remote storage.
    fn dispatch_startup_io(&mut self, step: StartupIo, io: Io) {
        if self.startup.in_flight < self.config.startup_concurrency.max(1) {
            self.startup.in_flight += 1;
            self.emit_io(Route::Startup(step), io);
        } else {
            self.startup.waiting.push_back((step, io));
        }
    }

    /// A start-up I/O completed: the next waiting one takes its slot.
    fn startup_slot_freed(&mut self) {
        self.startup.in_flight = self.startup.in_flight.saturating_sub(1);
        if let Some((step, io)) = self.startup.waiting.pop_front() {
            self.dispatch_startup_io(step, io);
        }
    }

    /// Counts `step` as outstanding: for its tenant when that tenant is loading after
    /// start-up, else for start-up itself.
    fn count_start(&mut self, step: &StartupIo) {
        match step.tenant().and_then(|t| self.startup.loading.get_mut(&t)) {
            Some(n) => *n += 1,
            None => self.startup.outstanding += 1,
        }
    }

    fn count_done(&mut self, step: &StartupIo) {
        match step.tenant().and_then(|t| self.startup.loading.get_mut(&t)) {
            Some(n) => *n -= 1,
            None => self.startup.outstanding -= 1,
        }
    }

    /// Schedules `step` again after a backoff; it stays outstanding meanwhile.
    fn retry_later(&mut self, step: StartupIo, io: Io, why: &str) {
        self.startup.retry_failures += 1;
        let exponent = self.startup.retry_failures.min(16);
        let delay_ms =
            STARTUP_RETRY_BASE_MS.saturating_mul(1 << exponent).min(STARTUP_RETRY_MAX_MS);
        tracing::warn!(?step, delay_ms, why, "start-up: remote storage failed; retrying");
        self.count_start(&step);
        self.startup.retries.push((self.now.plus_millis(delay_ms), step, io));
    }

    /// The earliest start-up retry.
    pub(crate) fn startup_deadline(&self) -> Option<Instant> {
        self.startup.retries.iter().map(|(at, _, _)| *at).min()
    }

    /// Re-issues the start-up I/O whose backoff has passed.
    pub(crate) fn fire_startup_retries(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.startup.retries)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.startup.retries = later;
        for (_, step, io) in due {
            self.dispatch_startup_io(step, io);
        }
    }

    fn enter(&mut self, phase: StartupPhase) {
        if let NodePhase::Starting(previous) = self.phase {
            let started = self.startup.phase_started.unwrap_or(self.now);
            self.startup.phase_ms.insert(previous, self.now.millis_since(started));
        }
        self.startup.phase_started = Some(self.now);
        tracing::info!(?phase, "start-up phase");
        self.phase = NodePhase::Starting(phase);
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.startup.warnings.push(message);
    }

    /// Nothing is guessed: the tenant stays out, broken with the reason, until a
    /// location_config names its mode; its config is neither read again nor rewritten.
    fn config_broken(&mut self, tenant: TenantId, reason: String) {
        self.warn(format!("tenant {tenant} not loaded: {reason}"));
        let slot = Slot::Broken { reason };
        if let Err(e) = self.manager.handle_settled(self.now, tenant, slot) {
            self.bug(&format!("tenant manager refused a start-up slot: {e}"));
        }
    }

    fn fail_startup(&mut self, reason: String) {
        tracing::error!(%reason, "node refuses to start");
        self.phase = NodePhase::Failed(reason.clone());
        self.effects.push_back(NodeEffect::Stopped { clean: false, reason });
    }

    pub(crate) fn on_startup_io(&mut self, step: StartupIo, result: IoResult) {
        self.count_done(&step);
        self.startup_slot_freed();
        match step {
            StartupIo::ListTenants => {
                let entries = match result {
                    IoResult::Listing(Ok(entries)) => entries,
                    IoResult::Listing(Err(super::io::IoFailure::NotFound(_))) => Vec::new(),
                    other => {
                        return self
                            .fail_startup(format!("listing local tenants failed: {other:?}"));
                    }
                };
                self.enter(super::StartupPhase::ReadConfigs);
                for entry in entries.into_iter().filter(|e| e.is_dir) {
                    if entry.name.contains(io::DETACHED_DIR_MARKER) {
                        // A detach renamed it and crashed before removing it.
                        let path = camino::Utf8PathBuf::from(io::TENANTS_DIR).join(&entry.name);
                        self.startup_io(
                            StartupIo::RemoveLocal { tenant: None },
                            Io::DiskRemoveDir { path },
                        );
                        continue;
                    }
                    match entry.name.parse::<TenantId>() {
                        Ok(tenant) => self.startup_io(
                            StartupIo::ReadConfig(tenant),
                            Io::DiskRead { path: io::location_conf_path(tenant) },
                        ),
                        Err(_) => self.warn(format!(
                            "ignoring {}/{}: not a tenant id",
                            io::TENANTS_DIR,
                            entry.name
                        )),
                    }
                }
            }
            StartupIo::ReadConfig(tenant) => {
                let parsed = match result {
                    IoResult::Bytes(Ok(bytes)) => String::from_utf8(bytes)
                        .map_err(|e| format!("its config-v1 is unreadable: {e}"))
                        .and_then(|text| {
                            LocationConf::from_toml(&text)
                                .map_err(|e| format!("its config-v1 is unreadable: {e}"))
                        }),
                    IoResult::Bytes(Err(IoFailure::NotFound(_))) => {
                        // Empty (only a crashed write's temp file), or holding data?
                        self.startup_io(
                            StartupIo::ListTenantDir(tenant),
                            Io::DiskList { path: io::tenant_dir(tenant) },
                        );
                        return self.startup_step_done();
                    }
                    other => Err(format!("its config-v1 is unreadable: {other:?}")),
                };
                match parsed {
                    Ok(conf) => {
                        self.startup.configs.insert(tenant, conf);
                    }
                    Err(reason) => self.config_broken(tenant, reason),
                }
            }
            StartupIo::CheckGenerations(tenant) => {
                let entries = match result {
                    IoResult::Listing(Ok(entries)) => entries,
                    IoResult::Listing(Err(
                        IoFailure::Transient(why) | IoFailure::OperatorFixable { message: why, .. },
                    )) => {
                        let io = Io::RemoteList { prefix: remote_path::timelines_prefix(tenant) };
                        self.retry_later(StartupIo::CheckGenerations(tenant), io, &why);
                        return self.startup_step_done();
                    }
                    IoResult::Listing(Err(IoFailure::NotFound(_))) => Vec::new(),
                    other => {
                        // Loading lists it again and reports the failure.
                        self.warn(format!(
                            "tenant {tenant}: listing its remote storage before re-attach failed: {other:?}"
                        ));
                        Vec::new()
                    }
                };
                let keys: Vec<RemoteKey> =
                    entries.iter().filter_map(|e| RemoteKey::from_listing(&e.name).ok()).collect();
                let found = crate::control_plane::max_generation_in_listing(tenant, &keys);
                let latest = self.cp.record(tenant).map(|r| r.generation);
                if let (Some(found), Some(latest)) = (found, latest)
                    && found > latest
                {
                    let ceiling =
                        format!("{latest}, the latest this node's control plane granted for it");
                    let reason = self.generation_conflict(tenant, found, ceiling);
                    let mode = match self.startup.configs.get(&tenant).map(|c| c.mode) {
                        Some(m @ (LocationMode::AttachedMulti { .. } | LocationMode::AttachedStale { .. })) => {
                            with_generation_of(m, latest)
                        }
                        _ => LocationMode::AttachedSingle { generation: latest },
                    };
                    self.startup.held_back.insert(tenant);
                    self.break_at_startup(tenant, mode, reason);
                }
            }
            StartupIo::ListTenantDir(tenant) => match result {
                IoResult::Listing(Ok(entries)) if !entries.is_empty() => {
                    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
                    let reason = format!(
                        "its directory exists (holding {}) but its config-v1 is missing",
                        names.join(", ")
                    );
                    self.config_broken(tenant, reason);
                }
                IoResult::Listing(Ok(_) | Err(IoFailure::NotFound(_))) => self.warn(format!(
                    "tenant {tenant}: its directory is empty (a write crashed before its config-v1 landed): treated as absent"
                )),
                other => self.config_broken(
                    tenant,
                    format!("its config-v1 is missing and listing its directory failed: {other:?}"),
                ),
            },
            StartupIo::WriteConfig { tenant, bytes, attempt } => {
                if !matches!(result, IoResult::Done(Ok(()))) {
                    if attempt < STARTUP_WRITE_ATTEMPTS {
                        // A failed write (e.g. a failed fsync) leaves the file unknown:
                        // write it again, whole.
                        self.warn(format!(
                            "tenant {tenant}: writing its config failed ({result:?}); retrying"
                        ));
                        let path = io::location_conf_path(tenant);
                        let attempt = attempt + 1;
                        self.startup_io(
                            StartupIo::WriteConfig { tenant, bytes: bytes.clone(), attempt },
                            Io::DiskWrite { path, bytes: bytes.0 },
                        );
                    } else {
                        // Without its new generation on disk the tenant must not run.
                        self.tenants.remove(&tenant);
                        self.warn(format!(
                            "tenant {tenant} not loaded: writing its config failed {attempt} times: {result:?}"
                        ));
                    }
                }
            }
            StartupIo::ListDeletion => {
                if let IoResult::Listing(Ok(entries)) = result {
                    for entry in entries.into_iter().filter(|e| !e.is_dir) {
                        if entry.name == DELETION_HEADER_FILE_NAME
                            || DeletionList::parse_file_name(&entry.name).is_some()
                        {
                            let path = io::deletion_path(&entry.name);
                            self.startup_io(
                                StartupIo::ReadDeletion(entry.name),
                                Io::DiskRead { path },
                            );
                        }
                    }
                }
            }
            StartupIo::ReadDeletion(name) => {
                let IoResult::Bytes(Ok(bytes)) = result else {
                    self.warn(format!("deletion file {name} unreadable: {result:?}; skipped"));
                    return self.startup_step_done();
                };
                if name == DELETION_HEADER_FILE_NAME {
                    match DeletionHeader::from_json_bytes(&bytes) {
                        Ok(h) => self.startup.header = Some(h),
                        Err(e) => self
                            .warn(format!("deletion header unreadable ({e}); treating as empty")),
                    }
                } else {
                    match DeletionList::from_json_bytes(&bytes) {
                        Ok(list) => self.startup.lists.push(list),
                        Err(e) => self
                            .warn(format!("deletion list {name} unreadable ({e}); left in place")),
                    }
                }
            }
            StartupIo::ListRemoteTimelines(tenant) => {
                let entries = match result {
                    IoResult::Listing(Ok(entries)) => entries,
                    IoResult::Listing(Err(
                        IoFailure::Transient(why) | IoFailure::OperatorFixable { message: why, .. },
                    )) => {
                        // Remote storage is the truth: wait for it (or for an operator
                        // to fix access to it) rather than start without the tenant.
                        let io = Io::RemoteList { prefix: remote_path::timelines_prefix(tenant) };
                        self.retry_later(StartupIo::ListRemoteTimelines(tenant), io, &why);
                        return self.startup_step_done();
                    }
                    other => {
                        self.tenants.remove(&tenant);
                        self.warn(format!("tenant {tenant} not loaded: listing its remote timelines failed: {other:?}"));
                        return self.startup_step_done();
                    }
                };
                self.load_remote_timelines(tenant, &entries);
            }
            StartupIo::GetIndex { tenant, timeline, version } => {
                if let IoResult::Bytes(Err(
                    IoFailure::Transient(why) | IoFailure::OperatorFixable { message: why, .. },
                )) = &result
                {
                    let io =
                        Io::RemoteGet { key: remote_path::index_key(tenant, timeline, version) };
                    let why = why.clone();
                    self.retry_later(StartupIo::GetIndex { tenant, timeline, version }, io, &why);
                    return self.startup_step_done();
                }
                let object = remote_path::index_key(tenant, timeline, version);
                let parsed = match result {
                    // Corrupt: no retry can fix it (issue 15 item 7: this was a 404).
                    IoResult::Bytes(Ok(bytes)) => IndexPart::from_json_bytes(&bytes)
                        .map_err(|e| BrokenReason::Corrupt { object, reason: e.to_string() }),
                    // Listed a moment ago, gone now: a newer index replaced it.
                    IoResult::Bytes(Err(IoFailure::NotFound(why))) => {
                        self.warn(format!(
                            "timeline {tenant}/{timeline} not loaded: its index {object} vanished: {why}"
                        ));
                        return self.startup_step_done();
                    }
                    other => Err(BrokenReason::Failed(format!(
                        "reading its index {object} failed: {other:?}"
                    ))),
                };
                let single = self
                    .tenants
                    .get(&tenant)
                    .is_some_and(|t| matches!(t.mode, LocationMode::AttachedSingle { .. }));
                match parsed {
                    Ok(index) if index.deleted_at.is_some() && !single => self.warn(format!(
                        "timeline {tenant}/{timeline} is being deleted (tombstone); not loaded: only the single attached node resumes a deletion"
                    )),
                    Ok(index) => self.startup_io(
                        StartupIo::ListLocalTimeline {
                            tenant,
                            timeline,
                            version,
                            index: Box::new(index),
                        },
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
            StartupIo::ListLocalTimeline { tenant, timeline, version, index } => {
                let entries = match result {
                    IoResult::Listing(Ok(entries)) => entries,
                    _ => Vec::new(),
                };
                self.start_timeline(tenant, timeline, version, *index, &entries);
            }
            StartupIo::RemoveLocal { .. } => {
                if !matches!(
                    result,
                    IoResult::Done(Ok(()) | Err(super::io::IoFailure::NotFound(_)))
                ) {
                    self.warn(format!("removing a local file failed: {result:?}"));
                }
            }
        }
        self.startup_step_done();
    }

    /// Moves to the next phase once the current one has no I/O outstanding.
    fn startup_step_done(&mut self) {
        if !self.startup.loading.is_empty() {
            // A tenant loading after start-up: `finish_tenant_loads` (from the pump)
            // notices when its count reaches zero.
            self.dirty.insert(Machine::Manager);
        }
        if self.startup.outstanding > 0 {
            return;
        }
        let NodePhase::Starting(phase) = self.phase else { return };
        match phase {
            StartupPhase::ListTenants => {}
            StartupPhase::ReadConfigs => self.after_configs(),
            StartupPhase::CheckGenerations => self.re_attach(),
            StartupPhase::Rebuild | StartupPhase::ReAttach => {}
            StartupPhase::WriteConfigs => {
                self.enter(StartupPhase::LoadDeletionQueue);
                self.startup_io(
                    StartupIo::ListDeletion,
                    Io::DiskList { path: io::DELETION_DIR.into() },
                );
            }
            StartupPhase::LoadDeletionQueue => {
                let header = self.startup.header.take();
                let lists = std::mem::take(&mut self.startup.lists);
                let dq = DeletionQueue::recover(
                    self.config.deletion.clone(),
                    header,
                    lists,
                    &self.startup.reattached,
                );
                self.dq = Some(dq);
                self.dirty.insert(Machine::DeletionQueue);
                self.load_timelines();
            }
            StartupPhase::LoadTimelines => {
                self.enter(StartupPhase::LoadTimelines);
                self.phase = NodePhase::Active;
                self.settle_slots();
                tracing::info!(tenants = self.tenants.len(), "node active");
            }
        }
    }

    /// `LoadTimelines`: every tenant's remote timelines are listed, then each index
    /// is read and its timeline started.
    fn load_timelines(&mut self) {
        self.enter(StartupPhase::LoadTimelines);
        let tenants: Vec<TenantId> = self.tenants.keys().copied().collect();
        for tenant in tenants {
            self.startup_io(
                StartupIo::ListRemoteTimelines(tenant),
                Io::RemoteList { prefix: remote_path::timelines_prefix(tenant) },
            );
        }
        self.startup_step_done();
    }

    /// Start-up is over: every loaded tenant is active, and the tenant manager's slots
    /// are what disk and the control plane said (attached ones loaded, secondary
    /// configs kept).
    fn settle_slots(&mut self) {
        // Broken slots without machines (configs unreadable, generation conflicts)
        // stay as start-up found them.
        let mut slots: BTreeMap<TenantId, Slot> = self
            .manager
            .slots()
            .filter(|(_, slot)| {
                matches!(
                    slot,
                    Slot::Broken { .. } | Slot::Attached { state: TenantState::Broken { .. }, .. }
                )
            })
            .map(|(id, slot)| (*id, slot.clone()))
            .collect();
        for (id, t) in &mut self.tenants {
            // A tenant whose handler panicked while it loaded stays Broken.
            if !matches!(t.state, crate::tenant::TenantState::Broken { .. }) {
                t.transition(TenantEvent::Loaded);
                t.transition(TenantEvent::Activated);
            }
            slots.insert(*id, Slot::Attached { mode: t.mode, state: t.state.clone() });
        }
        for (id, conf) in &self.startup.configs {
            if let LocationMode::Secondary { warm } = conf.mode {
                slots.entry(*id).or_insert(Slot::Secondary { warm });
            }
        }
        self.manager = TenantManager::recover(slots);
    }

    fn after_configs(&mut self) {
        let known: std::collections::BTreeSet<TenantId> =
            self.cp.records().map(|r| r.tenant).collect();
        let unknown: Vec<(TenantId, Option<crate::Generation>)> = self
            .startup
            .configs
            .iter()
            .filter(|(t, c)| !known.contains(t) && c.mode.generation().is_some())
            .map(|(t, c)| (*t, c.mode.generation()))
            .collect();
        if unknown.is_empty() {
            return self.check_generations();
        }
        let ids: Vec<String> = unknown.iter().map(|(t, _)| t.to_string()).collect();
        if !self.config.rebuild_generations {
            return self.fail_startup(format!(
                "the control-plane store does not know {} local tenant(s) ({}): it is fresh or was lost, and \
                 granting generations from 1 again could let this node overwrite newer data. Start with \
                 --rebuild-generations to set each tenant's generation above the highest found in remote storage.",
                ids.len(),
                ids.join(", ")
            ));
        }
        self.enter(StartupPhase::Rebuild);
        tracing::warn!(tenants = %ids.join(", "), "rebuilding generations from remote storage");
        let node = self.config.node_id;
        for (tenant, reported) in unknown {
            let req = self.cp_request(CpWaiter::Startup);
            self.cp.handle_attach(self.now, req, tenant, node, reported);
            self.startup.outstanding += 1;
        }
    }

    /// `CheckGenerations`: every tenant the control plane attaches here has its
    /// remote storage listed before re-attach grants it anything.
    fn check_generations(&mut self) {
        self.enter(StartupPhase::CheckGenerations);
        let node = self.config.node_id;
        let tenants: Vec<TenantId> =
            self.cp.records().filter(|r| r.attached_to == Some(node)).map(|r| r.tenant).collect();
        for tenant in tenants {
            self.startup_io(
                StartupIo::CheckGenerations(tenant),
                Io::RemoteList { prefix: remote_path::timelines_prefix(tenant) },
            );
        }
        self.startup_step_done();
    }

    fn re_attach(&mut self) {
        self.enter(StartupPhase::ReAttach);
        let req = self.cp_request(CpWaiter::Startup);
        let held_back = self.startup.held_back.clone();
        self.cp.handle_re_attach_holding_back(self.now, req, self.config.node_id, held_back);
        self.startup.outstanding += 1;
    }

    /// S-GEN-MONO: `found`, the highest generation in `tenant`'s remote storage, is
    /// above `ceiling`, the highest any writer of this control plane may have used.
    /// Another control plane granted it: loading would serve (or overwrite) that
    /// attachment's data under a generation this node believes its own. The tenant
    /// goes Broken naming both, and is counted.
    pub(crate) fn generation_conflict(
        &mut self,
        tenant: TenantId,
        found: crate::Generation,
        ceiling: String,
    ) -> String {
        self.generation_conflicts_total += 1;
        let reason = format!(
            "generation conflict: remote storage holds objects of generation {} (found {found}), above {ceiling}: another control plane granted it (S-GEN-MONO); not loaded",
            found.get()
        );
        self.warn(format!("tenant {tenant}: {reason}"));
        reason
    }

    /// A Broken attached slot for `tenant`, outside any operation (start-up).
    fn break_at_startup(&mut self, tenant: TenantId, mode: LocationMode, reason: String) {
        let slot = match self.manager.slot(tenant) {
            // Its config is unreadable too: it stays placed nowhere.
            Some(Slot::Broken { .. }) => return,
            _ => Slot::Attached { mode, state: TenantState::Broken { reason } },
        };
        if let Err(e) = self.manager.handle_settled(self.now, tenant, slot) {
            self.bug(&format!("tenant manager refused a start-up slot: {e}"));
        }
    }

    pub(crate) fn on_startup_cp_reply(
        &mut self,
        reply: Result<ControlPlaneReply, ControlPlaneError>,
    ) {
        self.startup.outstanding -= 1;
        match (self.phase.clone(), reply) {
            (
                NodePhase::Starting(StartupPhase::Rebuild),
                Ok(ControlPlaneReply::Attached { .. }),
            ) => {
                if self.startup.outstanding == 0 {
                    self.check_generations();
                }
            }
            (
                NodePhase::Starting(StartupPhase::ReAttach),
                Ok(ControlPlaneReply::ReAttached { tenants }),
            ) => {
                self.enter(StartupPhase::WriteConfigs);
                for rt in tenants {
                    self.startup.reattached.insert(rt.tenant, rt.clone());
                    if let Some(Slot::Broken { .. }) = self.manager.slot(rt.tenant) {
                        // Its config is unreadable: not loaded, not rewritten.
                        continue;
                    }
                    let mode = match self.startup.configs.get(&rt.tenant).map(|c| c.mode) {
                        Some(LocationMode::AttachedMulti { .. }) => {
                            LocationMode::AttachedMulti { generation: rt.generation }
                        }
                        Some(LocationMode::AttachedStale { .. }) => {
                            LocationMode::AttachedStale { generation: rt.generation }
                        }
                        _ => LocationMode::AttachedSingle { generation: rt.generation },
                    };
                    let tenant_conf = self
                        .startup
                        .configs
                        .get(&rt.tenant)
                        .map(|c| c.tenant_conf.clone())
                        .unwrap_or_default();
                    let conf = LocationConf { mode, tenant_conf };
                    self.tenants.insert(
                        rt.tenant,
                        Tenant {
                            generation: rt.generation,
                            mode,
                            state: TenantState::Loading,
                            timelines: BTreeMap::new(),
                            unloadable: BTreeMap::new(),
                        },
                    );
                    let bytes = conf.to_toml().into_bytes();
                    self.startup_io(
                        StartupIo::WriteConfig {
                            tenant: rt.tenant,
                            bytes: ConfigBytes(bytes.clone()),
                            attempt: 1,
                        },
                        Io::DiskWrite { path: io::location_conf_path(rt.tenant), bytes },
                    );
                }
                for (tenant, conf) in &self.startup.configs {
                    let secondary = matches!(conf.mode, LocationMode::Secondary { .. });
                    let held_back = self.startup.held_back.contains(tenant);
                    if !secondary && !held_back && !self.startup.reattached.contains_key(tenant) {
                        let message = format!(
                            "tenant {tenant} is not attached to this node any more; not loaded"
                        );
                        tracing::warn!("{message}");
                        self.startup.warnings.push(message);
                    }
                }
                self.startup_step_done();
            }
            (NodePhase::Starting(StartupPhase::ReAttach), Err(error)) => {
                self.enter_emergency(&error);
                for (tenant, conf) in &self.startup.configs {
                    let Some(generation) = conf.mode.generation() else { continue };
                    if self.startup.held_back.contains(tenant) {
                        continue;
                    }
                    self.tenants.insert(
                        *tenant,
                        Tenant {
                            generation,
                            mode: conf.mode,
                            state: TenantState::Loading,
                            timelines: BTreeMap::new(),
                            unloadable: BTreeMap::new(),
                        },
                    );
                }
                // No new generation: no config rewrite, and the deletion queue is not
                // loaded (nothing may be deleted); timelines load read-only.
                self.load_timelines();
            }
            (phase, reply) => {
                self.fail_startup(format!("control plane answered {reply:?} during {phase:?}"))
            }
        }
    }

    fn load_remote_timelines(&mut self, tenant: TenantId, entries: &[Entry]) {
        let Some((generation, mode)) = self.tenants.get(&tenant).map(|t| (t.generation, t.mode))
        else {
            return;
        };
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
            self.tenants.remove(&tenant);
            if matches!(self.phase, NodePhase::Starting(_)) {
                self.break_at_startup(tenant, mode, reason);
            }
            return;
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
                    self.marked_for_deletion.insert(tenant);
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
            (t.generation, super::requests::attach_mode(&t.mode), t.mode);
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
            Timeline::recover(tenant, timeline, &index, &local, timeline_config);
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
            super::requests::background_gates(&mode_of_tenant)
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
            && !matches!(t.state, crate::tenant::TenantState::Broken { .. })
        {
            t.timelines.insert(timeline, TimelineSlot { state, timeline: machine, upload });
        }
        self.dirty.insert(Machine::Timeline(tenant, timeline));
        self.dirty.insert(Machine::Upload(tenant, timeline));
    }
}

/// `mode` (an attached one) on `generation`.
fn with_generation_of(mode: LocationMode, generation: crate::Generation) -> LocationMode {
    match mode {
        LocationMode::AttachedMulti { .. } => LocationMode::AttachedMulti { generation },
        LocationMode::AttachedStale { .. } => LocationMode::AttachedStale { generation },
        LocationMode::AttachedSingle { .. } | LocationMode::Secondary { .. } => {
            LocationMode::AttachedSingle { generation }
        }
    }
}
