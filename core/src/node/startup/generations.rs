//! Phases 2 and 3 up to re-attach, `Rebuild` and `CheckGenerations`: local tenants
//! the control plane does not know get generations rebuilt from remote storage (or
//! the node refuses to start), and every tenant attached here has its remote storage
//! listed for generations another control plane granted (S-GEN-MONO).

use super::{StartupIo, StartupPhase};
use crate::control_plane::CpRequest;
use crate::id::TenantId;
use crate::location_conf::LocationMode;
use crate::node::Node;
use crate::node::io::{Entry, Io, IoError, IoErrorKind, IoResult};
use crate::node::routing::CpWaiter;
use crate::remote_path::{self, RemoteKey};
use crate::tenant::Slot;

impl Node {
    pub(super) fn after_configs(&mut self) {
        if self.config.remote_control_plane {
            // The table lives in `strata control`, not here: there is nothing to
            // rebuild from this node (a lost control-plane database is that
            // service's to recover), and `check_generations` finds no tenant in the
            // empty in-process table, so re-attach follows at once.
            return self.check_generations();
        }
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
            self.cp_call(CpWaiter::Startup, CpRequest::Attach { tenant, node, reported });
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

    /// The control plane attached a tenant `Rebuild` asked for: once all have been,
    /// generations are checked.
    pub(super) fn on_rebuild_attached(&mut self) {
        if self.startup.outstanding == 0 {
            self.check_generations();
        }
    }

    /// `tenant`'s remote storage listed before re-attach: a generation above the
    /// latest the control plane granted for it holds the tenant back, Broken.
    pub(super) fn on_generations_listed(&mut self, tenant: TenantId, result: IoResult) {
        let Some(result) = self.retry_failed_listing(tenant, StartupIo::CheckGenerations, result)
        else {
            return;
        };
        let entries = match result {
            IoResult::Listing(Ok(entries)) => entries,
            IoResult::Listing(Err(IoError { kind: IoErrorKind::NotFound, .. })) => Vec::new(),
            other => {
                // Loading lists it again and reports the failure.
                self.warn(format!(
                    "tenant {tenant}: listing its remote storage before re-attach failed: {other:?}"
                ));
                Vec::new()
            }
        };
        if let Some((latest, reason)) = self.conflict_above_latest_grant(tenant, &entries) {
            let mode = match self.startup.configs.get(&tenant).map(|c| c.mode) {
                Some(
                    m @ (LocationMode::AttachedMulti { .. } | LocationMode::AttachedStale { .. }),
                ) => with_generation_of(m, latest),
                _ => LocationMode::AttachedSingle { generation: latest },
            };
            self.startup.held_back.insert(tenant);
            self.break_at_startup(tenant, mode, reason);
        }
    }

    /// S-GEN-MONO before a grant (start-up's re-attach, an attach): if `entries`, a
    /// listing of `tenant`'s remote storage, hold a generation above the latest this
    /// node's control plane granted for it (to any node), another control plane
    /// granted it. Returns that latest grant and the conflict's reason (counted).
    pub(crate) fn conflict_above_latest_grant(
        &mut self,
        tenant: TenantId,
        entries: &[Entry],
    ) -> Option<(crate::Generation, String)> {
        let keys: Vec<RemoteKey> =
            entries.iter().filter_map(|e| RemoteKey::from_listing(&e.name).ok()).collect();
        let found = crate::control_plane::max_generation_in_listing(tenant, &keys)?;
        let latest = self.cp.record(tenant)?.generation;
        if found <= latest {
            return None;
        }
        let ceiling = format!("{latest}, the latest this node's control plane granted for it");
        Some((latest, self.generation_conflict(tenant, found, ceiling)))
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
    pub(super) fn break_at_startup(
        &mut self,
        tenant: TenantId,
        mode: LocationMode,
        reason: String,
    ) {
        let slot = match self.manager.slot(tenant) {
            // Its config is unreadable too: it stays placed nowhere.
            Some(Slot::Broken { .. }) => return,
            _ => Slot::Attached { mode, broken: Some(reason) },
        };
        if let Err(e) = self.manager.handle_settled(self.now, tenant, slot) {
            self.refused(crate::node::RefusingMachine::TenantManager, "a start-up slot", &e);
        }
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
