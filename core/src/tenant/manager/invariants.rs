//! `check_invariants`: the tenant manager's rules (S-NO-DEADLOCK, attached slots
//! carry a generation), asserted on its slot table.

use super::{ManagerEffect, Slot, TenantManager};

impl TenantManager {
    /// Panics if a rule is broken.
    pub fn check_invariants(&self) {
        let load =
            |s: &&Slot| matches!(s, Slot::InProgress(op) if op.kind == super::OperationKind::Load);
        let loads = self.slots.values().filter(load).count();
        assert_eq!(self.loads, loads, "start-up loads counted {}, in progress {loads}", self.loads);
        for (tenant, slot) in &self.slots {
            match slot {
                Slot::InProgress(op) => {
                    // S-NO-DEADLOCK: an operation always has a step in flight or queued
                    // in the effects, so it cannot wait forever for nothing.
                    let pending = self
                        .effects
                        .iter()
                        .any(|e| matches!(e, ManagerEffect::Step { tenant: t, .. } if t == tenant));
                    assert!(
                        op.current.is_some() || pending,
                        "tenant {tenant}: operation {:?} has no step in flight",
                        op.kind
                    );
                }
                Slot::Attached { mode, .. } => assert!(
                    mode.generation().is_some(),
                    "tenant {tenant}: attached slot without a generation"
                ),
                Slot::Secondary { warm, downloads } => {
                    assert!(
                        *warm || downloads.is_none(),
                        "tenant {tenant}: a cold secondary downloads"
                    );
                    if let Some(m) = downloads {
                        m.check_invariants();
                    }
                }
                Slot::Broken { .. } => {}
            }
        }
    }
}
