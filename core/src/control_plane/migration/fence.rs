//! The attach fence: what the control plane's `/attach` refuses before the
//! generation table sees the request. Both drivers (`strata control` and the
//! simulated control-plane node) and the reconciler's model world call
//! [`MigrationReconciler::attach_fence`], so the rule is written once.
//!
//! Two refusals:
//! - **Migrating**: while a tenant migrates, only its destination may take a
//!   generation of it (an origin restarted mid-migration must not take the tenant
//!   back; the reconciler observes it again and goes on).
//! - **Stale**: an attach that reports a generation (a node asking for a
//!   generation *at least* one above it, as a location_config naming a generation
//!   does) below the table's, while the table gives the tenant to another node, was
//!   decided before that node's grant: a call of a finished migration delivered late,
//!   or an operator's request that predates a move. Granting it would take the tenant
//!   from its holder. An attach reporting nothing is not fenced (a plain attach asks
//!   for the next generation on purpose), and neither is the migration's destination
//!   while its migration runs (its `at_least` was read before an origin restart
//!   that may have bumped the table).

use super::MigrationReconciler;
use crate::control_plane::TenantRecord;
use crate::generation::Generation;
use crate::id::{NodeId, TenantId};

/// Why the fence refused an attach (the drivers answer 409 with its text).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FenceRefusal {
    #[error("tenant {tenant} is migrating to node {to}; node {node} may not attach it")]
    Migrating { tenant: TenantId, to: NodeId, node: NodeId },
    #[error(
        "tenant {tenant}: node {node} reported generation {reported}, but the table is at {generation} on node {holder}: the request is older than that grant"
    )]
    Stale {
        tenant: TenantId,
        node: NodeId,
        reported: Generation,
        generation: Generation,
        holder: NodeId,
    },
}

impl MigrationReconciler {
    /// Whether `/attach` of `tenant` by `node`, reporting `reported`, may go to the
    /// generation table, whose record for the tenant is `table` (module doc above).
    pub fn attach_fence(
        &self,
        table: Option<&TenantRecord>,
        tenant: TenantId,
        node: NodeId,
        reported: Option<Generation>,
    ) -> Result<(), FenceRefusal> {
        match self.migrating_to(tenant) {
            Some(to) if to != node => return Err(FenceRefusal::Migrating { tenant, to, node }),
            Some(_) => return Ok(()),
            None => {}
        }
        if let (Some(record), Some(reported)) = (table, reported)
            && let Some(holder) = record.attached_to
            && holder != node
            && reported < record.generation
        {
            let generation = record.generation;
            return Err(FenceRefusal::Stale { tenant, node, reported, generation, holder });
        }
        Ok(())
    }
}
