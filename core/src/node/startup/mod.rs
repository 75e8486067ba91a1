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
//!    storage as AttachedSingle, or AttachedMulti when re-attach says a migration
//!    to this node is under way (`ReAttachedTenant::migration_destination`: the
//!    crash came between a destination's grant and its config).
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
//!    kept for tenants loading AttachedSingle; others are dropped: an AttachedMulti
//!    or AttachedStale tenant deletes nothing).
//! 5. `LoadTimelines`: each tenant to load is handed to the tenant manager as a
//!    load (`TenantManager::handle_load`, an operation whose one step is
//!    `LoadTenant`, as an attach's last), so the manager is the only way a tenant
//!    gets machines, at start-up too; the node is active once every load ended, and
//!    a failed load leaves the tenant Broken with the reason. Per tenant, the load
//!    lists its remote timelines (an object at or above
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
//!
//! Files, one concern each: `queue.rs` (the bounded start-up I/O queue, what is
//! outstanding, retries), `configs.rs` (phase 1), `generations.rs` (phases 2 and 3
//! up to re-attach), `reattach.rs` (re-attach and the config rewrite), `deletion.rs`
//! (phase 4), `timelines.rs` (phase 5). This file holds start-up's state, its two
//! inputs (`on_startup_io`, `on_startup_cp_reply`), each dispatching to one handler
//! per phase, and the step from one phase to the next.

mod configs;
mod deletion;
mod generations;
mod queue;
mod reattach;
mod timelines;

use super::io::{self, Io, IoError, IoErrorKind, IoResult};
use super::{Machine, Node, NodeEffect, NodePhase, RefusingMachine};
use crate::control_plane::{CallFailure, ControlPlaneReply, ReAttachedTenant};
use crate::deletion_list::{DeletionHeader, DeletionList};
use crate::id::{TenantId, TimelineId};
use crate::index_part::{IndexPart, IndexVersion};
use crate::location_conf::{LocationConf, LocationMode};
use crate::tenant::{Slot, TenantManager};
use crate::time::Instant;
use std::collections::BTreeMap;

/// A config file's bytes; shown by length only, so trace lines stay short.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigBytes(pub Vec<u8>);

impl std::fmt::Debug for ConfigBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

/// How often start-up writes a tenant's config before giving up on the tenant;
/// the attempts are [`STARTUP_RETRY_BASE_MS`]-backoff apart (doubling, capped at
/// [`STARTUP_RETRY_MAX_MS`]: some 20 s in all), so a disk full for seconds does
/// not drop the tenant.
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
    reattached: BTreeMap<TenantId, ReAttachedTenant>,
    /// The tenants start-up will load, in the mode each loads in (decided at
    /// re-attach, or from the configs in emergency mode): `LoadTimelines` hands each
    /// to the tenant manager as a load ([`TenantManager::handle_load`]), the one way
    /// a tenant gets machines.
    to_load: BTreeMap<TenantId, LocationMode>,
    /// Tenants whose remote storage holds generations the control plane never
    /// granted (`CheckGenerations`): not re-attached, not loaded; their slot says
    /// Broken with the generation found.
    pub(crate) held_back: std::collections::BTreeSet<TenantId>,
    header: Option<DeletionHeader>,
    lists: Vec<DeletionList>,
    /// Sequences of deletion lists that could not be read or parsed.
    unreadable_lists: Vec<u64>,
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

    fn fail_startup(&mut self, reason: String) {
        tracing::error!(%reason, "node refuses to start");
        self.phase = NodePhase::Failed(reason.clone());
        self.effects.push_back(NodeEffect::Stopped { clean: false, reason });
    }

    /// A start-up I/O completed: its phase's handler takes the result, then start-up
    /// moves on if nothing is outstanding.
    pub(crate) fn on_startup_io(&mut self, step: StartupIo, result: IoResult) {
        self.count_done(&step);
        let tenant = step.tenant();
        self.startup_slot_freed();
        match step {
            StartupIo::ListTenants => {
                if let Err(error) = self.on_tenants_listed(result) {
                    return self.fail_startup(error.to_string());
                }
            }
            StartupIo::ReadConfig(tenant) => self.on_config_read(tenant, result),
            StartupIo::ListTenantDir(tenant) => self.on_tenant_dir_listed(tenant, result),
            StartupIo::CheckGenerations(tenant) => self.on_generations_listed(tenant, result),
            StartupIo::WriteConfig { tenant, bytes, attempt } => {
                self.on_config_written(tenant, bytes, attempt, result)
            }
            StartupIo::ListDeletion => self.on_deletion_listed(result),
            StartupIo::ReadDeletion(name) => self.on_deletion_read(name, result),
            StartupIo::ListRemoteTimelines(tenant) => {
                self.on_remote_timelines_listed(tenant, result)
            }
            StartupIo::GetIndex { tenant, timeline, version } => {
                self.on_index_read(tenant, timeline, version, result)
            }
            StartupIo::ListLocalTimeline { tenant, timeline, version, index } => {
                self.on_local_timeline_listed(tenant, timeline, version, *index, result)
            }
            StartupIo::RemoveLocal { .. } => self.on_local_removed(result),
        }
        // A loading tenant whose last load I/O this was: it is advanced
        // (`finish_tenant_load`) once the machines it started are quiet.
        if let Some(tenant) = tenant
            && self.tenants.get(&tenant).is_some_and(|t| t.loading == Some(0))
        {
            self.touch_tenant(tenant);
        }
        self.startup_step_done();
    }

    /// The control plane answered start-up (`Rebuild`'s attaches, `ReAttach`): the
    /// handler of the phase it answers takes it; any other answer stops the start.
    pub(crate) fn on_startup_cp_reply(&mut self, reply: Result<ControlPlaneReply, CallFailure>) {
        self.startup.outstanding -= 1;
        match (self.phase.clone(), reply) {
            (
                NodePhase::Starting(StartupPhase::Rebuild),
                Ok(ControlPlaneReply::Attached { .. }),
            ) => self.on_rebuild_attached(),
            (
                NodePhase::Starting(StartupPhase::ReAttach),
                Ok(ControlPlaneReply::ReAttached { tenants }),
            ) => self.on_re_attached(tenants),
            (NodePhase::Starting(StartupPhase::ReAttach), Err(error)) => {
                self.on_re_attach_failed(error)
            }
            (phase, reply) => {
                self.fail_startup(format!("control plane answered {reply:?} during {phase:?}"))
            }
        }
    }

    /// A leftover local file or directory removed (or already gone).
    fn on_local_removed(&mut self, result: IoResult) {
        if !matches!(
            result,
            IoResult::Done(Ok(()) | Err(IoError { kind: IoErrorKind::NotFound, .. }))
        ) {
            self.warn(format!("removing a local file failed: {result:?}"));
        }
    }

    /// Moves to the next phase once the current one has no I/O outstanding (and, in
    /// `LoadTimelines`, once every tenant's load has ended).
    pub(crate) fn startup_step_done(&mut self) {
        if self.startup.outstanding > 0 {
            return;
        }
        let NodePhase::Starting(phase) = self.phase else { return };
        match phase {
            StartupPhase::ListTenants => {}
            StartupPhase::ReadConfigs => self.after_configs(),
            StartupPhase::CheckGenerations => self.re_attach(),
            StartupPhase::Rebuild | StartupPhase::ReAttach => {}
            StartupPhase::WriteConfigs => self.list_deletion_queue(),
            StartupPhase::LoadDeletionQueue => {
                self.recover_deletion_queue();
                self.load_timelines();
            }
            StartupPhase::LoadTimelines if self.manager.loads_in_progress() > 0 => {}
            StartupPhase::LoadTimelines => {
                self.enter(StartupPhase::LoadTimelines);
                self.phase = NodePhase::Active;
                self.settle_slots();
                self.start_secondaries();
                tracing::info!(tenants = self.tenants.len(), "node active");
            }
        }
    }

    /// Start-up is over: every tenant loaded is active and its slot says so (each
    /// load was an operation of the tenant manager); secondary configs get their
    /// slots.
    fn settle_slots(&mut self) {
        let secondary: Vec<(TenantId, bool)> = (self.startup.configs.iter())
            .filter_map(|(id, conf)| match conf.mode {
                LocationMode::Secondary { warm } => Some((*id, warm)),
                _ => None,
            })
            .collect();
        for (id, warm) in secondary {
            if self.manager.slot(id).is_none()
                && let Err(e) = self.manager.handle_settled(self.now, id, Slot::secondary(warm))
            {
                self.refused(RefusingMachine::TenantManager, "a secondary slot", &e);
            }
        }
        // Each tenant is looked at once settled (a deletion mark found while loading).
        let tenants: Vec<TenantId> = self.tenants.keys().copied().collect();
        for tenant in tenants {
            self.touch_tenant(tenant);
        }
    }

    /// `LoadTimelines`: every tenant start-up decided to load is handed to the tenant
    /// manager as a load. The slots a previous start left (this node leaving
    /// emergency mode starts over) are dropped first, but for those that run nothing:
    /// unreadable configs, generation conflicts, secondaries.
    fn hand_loads_to_manager(&mut self) {
        let kept: BTreeMap<TenantId, Slot> = self
            .manager
            .slots()
            .filter(|(_, slot)| {
                matches!(
                    slot,
                    Slot::Broken { .. }
                        | Slot::Attached { broken: Some(_), .. }
                        | Slot::Secondary { .. }
                )
            })
            .map(|(id, slot)| (*id, slot.clone()))
            .collect();
        self.manager = TenantManager::recover(kept);
        self.manager.set_max_tenants(self.config.max_tenants);
        for (tenant, mode) in std::mem::take(&mut self.startup.to_load) {
            if let Err(e) = self.manager.handle_load(self.now, tenant, mode) {
                self.refused(RefusingMachine::TenantManager, "a start-up load", &e);
            }
        }
        self.dirty.insert(Machine::Manager);
    }
}
