//! The tenants-per-node bound: a node holds at most `max_tenants` tenants (one
//! slot each: attached, secondary, broken or with an operation in progress). A
//! create, or a location_config that would place a tenant the node does not hold,
//! is refused with [`ManagerError::TooManyTenants`] (HTTP 503 + Retry-After: the
//! control plane places the tenant elsewhere, or retries once one left) and counted
//! ([`TenantManager::tenant_limit_refusals`]). Requests about tenants already held,
//! and detaches, are never refused by it. No bound when `None` (the default).

use super::{ManagerError, TenantManager};
use crate::id::TenantId;

impl TenantManager {
    /// Sets the bound (`None`: none). Tenants already held stay.
    pub fn set_max_tenants(&mut self, max_tenants: Option<usize>) {
        self.max_tenants = max_tenants;
    }

    pub fn max_tenants(&self) -> Option<usize> {
        self.max_tenants
    }

    /// Requests refused by the bound since start.
    pub fn tenant_limit_refusals(&self) -> u64 {
        self.tenant_limit_refusals
    }

    /// The refusal of placing `tenant`, which this node does not hold, when it
    /// already holds its bound of tenants (counted).
    pub(super) fn refuse_beyond_limit(&mut self, tenant: TenantId) -> Option<ManagerError> {
        let limit = self.max_tenants?;
        let held = self.slots.len();
        if self.slots.contains_key(&tenant) || held < limit {
            return None;
        }
        self.tenant_limit_refusals += 1;
        Some(ManagerError::TooManyTenants { tenant, held, limit })
    }
}
