//! One tenant of a re-attach answer.

use crate::generation::Generation;
use crate::id::TenantId;

/// A tenant the control plane re-attached to the asking node, on a new generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReAttachedTenant {
    pub tenant: TenantId,
    pub generation: Generation,
    /// The generation just superseded was this node's own: nobody held the tenant
    /// between it and `generation`.
    pub previous_was_own: bool,
    /// A migration of the tenant to this node is under way (the driver's
    /// reconciler says so: `MigrationReconciler::mark_destinations`). A node with
    /// no config of the tenant then loads it AttachedMulti, as the migration's
    /// location_config would have placed it, never AttachedSingle: a destination
    /// deletes nothing until the migration makes it the single holder
    /// (S-SINGLE-WRITER).
    pub migration_destination: bool,
}

impl ReAttachedTenant {
    /// Re-attached outside any migration.
    pub fn new(tenant: TenantId, generation: Generation, previous_was_own: bool) -> Self {
        ReAttachedTenant { tenant, generation, previous_was_own, migration_destination: false }
    }
}
