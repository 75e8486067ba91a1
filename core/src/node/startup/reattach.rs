//! Phase 3 from re-attach on, `ReAttach` and `WriteConfigs`: every tenant of this
//! node not held back gets a new generation, durably, before anything is written,
//! and its `config-v1` is rewritten with it. Without an answer the node enters
//! emergency mode on the generations it last had.

use super::{ConfigBytes, STARTUP_WRITE_ATTEMPTS, StartupIo, StartupPhase};
use crate::control_plane::CpRequest;
use crate::control_plane::{CallFailure, ReAttachedTenant};
use crate::id::TenantId;
use crate::location_conf::{LocationConf, LocationMode};
use crate::node::Node;
use crate::node::io::{self, Io, IoResult};
use crate::node::routing::CpWaiter;
use crate::tenant::Slot;

impl Node {
    pub(super) fn re_attach(&mut self) {
        self.enter(StartupPhase::ReAttach);
        let (node, held_back) = (self.config.node_id, self.startup.held_back.clone());
        self.cp_call(CpWaiter::Startup, CpRequest::ReAttach { node, held_back });
        self.startup.outstanding += 1;
    }

    /// The control plane re-attached `tenants` with new generations: each config is
    /// rewritten with its own (`WriteConfigs`).
    pub(super) fn on_re_attached(&mut self, tenants: Vec<ReAttachedTenant>) {
        self.enter(StartupPhase::WriteConfigs);
        for rt in tenants {
            self.startup.reattached.insert(rt.tenant, rt.clone());
            self.write_new_generation(&rt);
        }
        self.warn_not_attached_any_more();
        self.startup_step_done();
    }

    /// `rt`'s tenant loads on its new generation, which its config is rewritten
    /// with first.
    fn write_new_generation(&mut self, rt: &ReAttachedTenant) {
        if let Some(Slot::Broken { .. }) = self.manager.slot(rt.tenant) {
            // Its config is unreadable: not loaded, not rewritten.
            return;
        }
        let mode = match self.startup.configs.get(&rt.tenant).map(|c| c.mode) {
            // A migration's destination never loads AttachedSingle on its own, whatever
            // its config says (a kill before the attach wrote it leaves Secondary):
            // the reconciler makes it Single once the origin is demoted.
            _ if rt.migration_destination => {
                LocationMode::AttachedMulti { generation: rt.generation }
            }
            Some(LocationMode::AttachedMulti { .. }) => {
                LocationMode::AttachedMulti { generation: rt.generation }
            }
            Some(LocationMode::AttachedStale { .. }) => {
                LocationMode::AttachedStale { generation: rt.generation }
            }
            Some(_) => LocationMode::AttachedSingle { generation: rt.generation },
            None => LocationMode::AttachedSingle { generation: rt.generation },
        };
        let tenant_conf =
            self.startup.configs.get(&rt.tenant).map(|c| c.tenant_conf.clone()).unwrap_or_default();
        let conf = LocationConf { mode, tenant_conf };
        self.startup.to_load.insert(rt.tenant, mode);
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

    /// An attached tenant on disk that re-attach did not name (nor held back) is
    /// another node's now: not loaded, and said so.
    fn warn_not_attached_any_more(&mut self) {
        for (tenant, conf) in &self.startup.configs {
            let secondary = matches!(conf.mode, LocationMode::Secondary { .. });
            let held_back = self.startup.held_back.contains(tenant);
            if !secondary && !held_back && !self.startup.reattached.contains_key(tenant) {
                let message =
                    format!("tenant {tenant} is not attached to this node any more; not loaded");
                tracing::warn!("{message}");
                self.startup.warnings.push(message);
            }
        }
    }

    /// Re-attach failed: emergency mode, every tenant (not held back) on the
    /// generation its config names.
    pub(super) fn on_re_attach_failed(&mut self, error: CallFailure) {
        self.enter_emergency(&error);
        for (tenant, conf) in &self.startup.configs {
            if conf.mode.generation().is_none() || self.startup.held_back.contains(tenant) {
                continue;
            }
            self.startup.to_load.insert(*tenant, conf.mode);
        }
        // No new generation: no config rewrite, and the deletion queue is not
        // loaded (nothing may be deleted); timelines load read-only.
        self.load_timelines();
    }

    /// A tenant's config rewritten: a failed write is written again, whole, after
    /// the start-up backoff (a full disk is not freed in the milliseconds between
    /// two writes), up to [`STARTUP_WRITE_ATTEMPTS`] times; then the tenant is not
    /// loaded.
    pub(super) fn on_config_written(
        &mut self,
        tenant: TenantId,
        bytes: ConfigBytes,
        attempt: u32,
        result: IoResult,
    ) {
        if !matches!(result, IoResult::Done(Ok(()))) {
            if attempt < STARTUP_WRITE_ATTEMPTS {
                // A failed write (e.g. a failed fsync) leaves the file unknown:
                // write it again, whole.
                self.warn(format!(
                    "tenant {tenant}: writing its config failed ({result:?}); retrying"
                ));
                let path = io::location_conf_path(tenant);
                let attempt = attempt + 1;
                self.retry_later(
                    StartupIo::WriteConfig { tenant, bytes: bytes.clone(), attempt },
                    Io::DiskWrite { path, bytes: bytes.0 },
                    "writing a config failed",
                );
            } else {
                // Without its new generation on disk the tenant must not run.
                self.startup.to_load.remove(&tenant);
                self.warn(format!(
                    "tenant {tenant} not loaded: writing its config failed {attempt} times: {result:?}"
                ));
            }
        }
    }
}
