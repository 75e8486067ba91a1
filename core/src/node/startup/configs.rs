//! Phase 1, `ListTenants` and `ReadConfigs`: list `tenants/`, read every
//! `config-v1`, and give a tenant whose config is missing or unreadable a `Broken`
//! slot with the reason (nothing is guessed).

use super::{StartupIo, StartupPhase};
use crate::id::TenantId;
use crate::location_conf::LocationConf;
use crate::node::Node;
use crate::node::io::{self, Io, IoError, IoErrorKind, IoResult};
use crate::tenant::Slot;

/// Why start-up's listing of `tenants/` stops the start (the node does not start
/// without knowing which tenants it holds).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ListTenantsError {
    /// The disk refused the listing (other than "no such directory": none yet).
    #[error("listing local tenants failed: {0}")]
    Io(IoError),
    /// A completion that is no listing (a driver bug), as seen.
    #[error("listing local tenants failed: unexpected completion {0}")]
    Unexpected(String),
}

impl Node {
    /// Nothing is guessed: the tenant stays out, broken with the reason, until a
    /// location_config names its mode; its config is neither read again nor rewritten.
    fn config_broken(&mut self, tenant: TenantId, reason: String) {
        self.warn(format!("tenant {tenant} not loaded: {reason}"));
        let slot = Slot::Broken { reason };
        if let Err(e) = self.manager.handle_settled(self.now, tenant, slot) {
            self.refused(crate::node::RefusingMachine::TenantManager, "a start-up slot", &e);
        }
    }

    /// `tenants/` listed: every tenant directory's config is read, and a directory a
    /// detach left behind is removed. A failed listing is the reason the node does
    /// not start.
    pub(super) fn on_tenants_listed(&mut self, result: IoResult) -> Result<(), ListTenantsError> {
        let entries = match result {
            IoResult::Listing(Ok(entries)) => entries,
            IoResult::Listing(Err(IoError { kind: IoErrorKind::NotFound, .. })) => Vec::new(),
            IoResult::Listing(Err(e)) => return Err(ListTenantsError::Io(e)),
            other => return Err(ListTenantsError::Unexpected(format!("{other:?}"))),
        };
        self.enter(StartupPhase::ReadConfigs);
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
        Ok(())
    }

    /// A tenant's `config-v1` read: kept, or the tenant is Broken with the reason; a
    /// missing one has its directory listed.
    pub(super) fn on_config_read(&mut self, tenant: TenantId, result: IoResult) {
        let parsed = match result {
            IoResult::Bytes(Ok(bytes)) => String::from_utf8(bytes)
                .map_err(|e| format!("its config-v1 is unreadable: {e}"))
                .and_then(|text| {
                    LocationConf::from_toml(&text)
                        .map_err(|e| format!("its config-v1 is unreadable: {e}"))
                }),
            IoResult::Bytes(Err(IoError { kind: IoErrorKind::NotFound, .. })) => {
                // Empty (only a crashed write's temp file), or holding data?
                return self.startup_io(
                    StartupIo::ListTenantDir(tenant),
                    Io::DiskList { path: io::tenant_dir(tenant) },
                );
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

    /// The directory of a tenant without `config-v1` listed: an empty one is as good
    /// as none; one holding anything is Broken.
    pub(super) fn on_tenant_dir_listed(&mut self, tenant: TenantId, result: IoResult) {
        match result {
            IoResult::Listing(Ok(entries)) if !entries.is_empty() => {
                let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
                let reason = format!(
                    "its directory exists (holding {}) but its config-v1 is missing",
                    names.join(", ")
                );
                self.config_broken(tenant, reason);
            }
            IoResult::Listing(Ok(_) | Err(IoError { kind: IoErrorKind::NotFound, .. })) => self.warn(format!(
                "tenant {tenant}: its directory is empty (a write crashed before its config-v1 landed): treated as absent"
            )),
            other => self.config_broken(
                tenant,
                format!("its config-v1 is missing and listing its directory failed: {other:?}"),
            ),
        }
    }
}
