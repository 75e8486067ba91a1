//! Warm secondaries on the node: the machine of each `Secondary { warm: true }`
//! slot (`crate::secondary`), started when the slot is settled, its effects
//! turned into [`Io`], its completions and its `Refresh` timer routed back.
//!
//! | effect | [`Io`] |
//! |---|---|
//! | `ListTimelines` | `RemoteList` of `tenants/{t}/timelines/` |
//! | `GetIndex` | `RemoteGet` of the index key |
//! | `ListLocal` | `DiskList` of the timeline's directory |
//! | `Download` | `RemoteGetFile` into the layer's local file (size + CRC32C check, temp file, rename) |
//! | `ReadLocal` | `DiskRead` of a local layer file it did not download (checked against the index's CRC32C before it is kept) |
//! | `RemoveLocal` | `DiskRemove` |
//!
//! Nothing here writes to remote storage or deletes a remote object.
//!
//! Identity: each machine started gets a node op id as its incarnation, carried by
//! every route; a completion for an incarnation that is not the slot's machine (the
//! slot was replaced, the node started over) is dropped.
//!
//! A location_config that would replace a warm secondary's slot (an attach, a
//! detach, a change of warmth) while its downloads or removals are in flight is
//! answered 503 and the machine stops starting new ones; once they completed the
//! retried request runs. So no download lands after a detach renamed the
//! directory away (the adapters create the parent directories) or after an
//! attach listed the directory it adopts files from.

use super::api::ApiError;
use super::io::{self, Entry, Io, IoResult};
use super::routing::Route;
use super::{Machine, Node, NodePhase, RefusingMachine};
use crate::file_check::ExpectedFile;
use crate::id::{OpId, TenantId};
use crate::location_conf::LocationMode;
use crate::remote_path;
use crate::secondary::{
    Listed, SecondaryCompletion, SecondaryEffect, SecondaryStats, WarmSecondary,
};
use crate::tenant::manager::Plan;
use crate::tenant::{DetachedDir, LocationRequest, Placement, Slot, plan};
use crate::trace::Direction;

impl Node {
    /// Starts the machine of every settled warm Secondary slot that has none (the
    /// end of start-up).
    pub(crate) fn start_secondaries(&mut self) {
        let waiting: Vec<TenantId> = self.manager.secondaries_to_start().collect();
        for tenant in waiting {
            self.start_secondary_adopting(tenant, true);
        }
    }

    /// Starts `tenant`'s warm secondary machine if its slot is a settled warm
    /// Secondary without one, after an operation answered: the layer files it finds
    /// may be this process's own from an attached run, one of which may have failed
    /// its fsync, so it downloads what it did not download itself
    /// (`WarmSecondary::with_adopt`; cluster seeds 455, 604 and 652 of the swarm
    /// with drawn settings read such a file back: FSYNC-TRUST).
    pub(crate) fn start_secondary(&mut self, tenant: TenantId) {
        self.start_secondary_adopting(tenant, false);
    }

    fn start_secondary_adopting(&mut self, tenant: TenantId, adopt: bool) {
        if self.phase != NodePhase::Active {
            return;
        }
        let incarnation = self.ops.next_id();
        let machine = WarmSecondary::new(tenant, self.config.secondary.clone(), self.now)
            .with_incarnation(incarnation)
            .with_adopt(adopt);
        if self.manager.start_secondary(tenant, machine) {
            let what = format!("warm secondary {tenant} started ({incarnation})");
            self.trace_line("secondary", None, Direction::Effect, what);
            self.dirty.insert(Machine::Secondary(tenant));
        }
    }

    pub(crate) fn drain_secondary(&mut self, tenant: TenantId) {
        loop {
            let Some(machine) = self.manager.secondary_mut(tenant) else { return };
            let incarnation = machine.incarnation();
            let Some(effect) = machine.poll_effect() else { return };
            self.trace_line(
                "secondary",
                Some(effect.op()),
                Direction::Effect,
                format!("{effect:?}"),
            );
            let inner = effect.op();
            let io = match effect {
                SecondaryEffect::ListTimelines { .. } => {
                    Io::RemoteList { prefix: remote_path::timelines_prefix(tenant) }
                }
                SecondaryEffect::GetIndex { timeline, version, .. } => {
                    Io::RemoteGet { key: remote_path::index_key(tenant, timeline, version) }
                }
                SecondaryEffect::ListLocal { timeline, .. } => {
                    Io::DiskList { path: io::timeline_dir(tenant, timeline) }
                }
                SecondaryEffect::Download { timeline, name, meta, .. } => Io::RemoteGetFile {
                    key: remote_path::layer_key(tenant, timeline, &name, meta.generation),
                    path: io::layer_path(tenant, timeline, &name),
                    expected: ExpectedFile::from(&meta),
                },
                SecondaryEffect::ReadLocal { timeline, name, .. } => {
                    Io::DiskRead { path: io::layer_path(tenant, timeline, &name) }
                }
                SecondaryEffect::RemoveLocal { timeline, file, .. } => {
                    Io::DiskRemove { path: io::timeline_dir(tenant, timeline).join(file) }
                }
            };
            self.emit_io(Route::Secondary { tenant, incarnation, inner }, io);
        }
    }

    /// A warm secondary's I/O completed: back to its machine, if it is still the
    /// slot's (by incarnation).
    pub(crate) fn on_secondary_io(
        &mut self,
        tenant: TenantId,
        incarnation: OpId,
        inner: OpId,
        result: IoResult,
    ) {
        let now = self.now;
        let completion = match result {
            IoResult::Listing(r) => SecondaryCompletion::Listing(r.map(|v| {
                v.into_iter()
                    .map(|Entry { name, is_dir, size_bytes }| Listed { name, is_dir, size_bytes })
                    .collect()
            })),
            IoResult::Bytes(r) => SecondaryCompletion::Bytes(r),
            IoResult::Done(r) => SecondaryCompletion::Done(r),
            IoResult::CpReply(_) => return self.bug("a control-plane reply for a secondary op"),
        };
        let Some(machine) =
            self.manager.secondary_mut(tenant).filter(|m| m.incarnation() == incarnation)
        else {
            let what = format!("ignored: completion of {inner} of a dropped warm secondary");
            return self.trace_line("secondary", Some(inner), Direction::Input, what);
        };
        let before = machine.stats();
        let handled = machine.handle_completion(now, inner, completion);
        let after = machine.stats();
        self.secondary_totals.downloaded_layers +=
            after.downloaded_layers - before.downloaded_layers;
        self.secondary_totals.downloaded_bytes += after.downloaded_bytes - before.downloaded_bytes;
        self.secondary_totals.failed_downloads += after.failed_downloads - before.failed_downloads;
        self.secondary_totals.removed_files += after.removed_files - before.removed_files;
        if let Err(e) = handled {
            self.refused(RefusingMachine::WarmSecondary, "a completion", &e);
        }
        self.dirty.insert(Machine::Secondary(tenant));
    }

    /// The answer to a location_config that would replace a warm secondary's slot
    /// while its I/O is in flight: 503, and the machine starts nothing new (module
    /// doc). `None`: the request goes on to the tenant manager.
    pub(crate) fn secondary_busy(
        &mut self,
        tenant: TenantId,
        request: LocationRequest,
    ) -> Option<ApiError> {
        let Some(Slot::Secondary { warm, downloads: Some(machine) }) = self.manager.slot(tenant)
        else {
            return None;
        };
        let in_flight = machine.in_flight();
        let current = Placement::Located(LocationMode::Secondary { warm: *warm });
        let replaces =
            matches!(plan(tenant, current, true, request, DetachedDir(0)), Ok(Plan::Run { .. }));
        if in_flight == 0 || !replaces {
            return None;
        }
        let now = self.now;
        if let Some(machine) = self.manager.secondary_mut(tenant) {
            machine.handle_stop(now);
        }
        self.dirty.insert(Machine::Secondary(tenant));
        Some(ApiError::unavailable(format!(
            "tenant {tenant}: the warm secondary is finishing {in_flight} downloads; retry"
        )))
    }

    /// Warm secondaries' downloads since start (the metrics), summed over every
    /// machine this node ran.
    pub fn secondary_stats(&self) -> SecondaryStats {
        self.secondary_totals
    }

    /// Warm secondary machines running now.
    pub fn warm_secondaries(&self) -> usize {
        self.manager.secondaries().count()
    }

    /// Each machine's timer is in the node's index; a settled warm slot has its
    /// machine once the node is active and the manager quiet.
    pub(crate) fn check_secondaries(&self) {
        for (tenant, _) in self.manager.secondaries() {
            let m = Machine::Secondary(*tenant);
            assert_eq!(
                self.timers.get(m),
                self.machine_timer(m).as_ref(),
                "timer index out of date for {m:?}"
            );
        }
        if self.phase == NodePhase::Active
            && self.dirty.is_empty()
            && let Some(t) = self.manager.secondaries_to_start().next()
        {
            panic!("tenant {t}: a warm secondary slot without its machine");
        }
    }
}
