//! The warm secondary machines that `Secondary { warm: true }` slots own
//! (`crate::secondary`). The node starts one for each such slot once it is
//! settled, feeds it its completions and timer, and waits for its downloads
//! before a location_config replaces the slot (`node/secondary.rs`); an operation
//! that replaces the slot drops the machine with it. A cold secondary has none.

use super::{Slot, TenantManager};
use crate::id::TenantId;
use crate::secondary::WarmSecondary;

impl Slot {
    /// A settled Secondary slot; a warm one's machine is started by the node.
    pub fn secondary(warm: bool) -> Slot {
        Slot::Secondary { warm, downloads: None }
    }
}

impl TenantManager {
    /// The warm secondary machine of `tenant`, if its slot has one.
    pub fn secondary(&self, tenant: TenantId) -> Option<&WarmSecondary> {
        match self.slots.get(&tenant) {
            Some(Slot::Secondary { downloads: Some(m), .. }) => Some(m),
            _ => None,
        }
    }

    pub fn secondary_mut(&mut self, tenant: TenantId) -> Option<&mut WarmSecondary> {
        match self.slots.get_mut(&tenant) {
            Some(Slot::Secondary { downloads: Some(m), .. }) => Some(m),
            _ => None,
        }
    }

    /// Gives a settled `Secondary { warm: true }` slot without a machine its
    /// machine; `false` (and nothing changes) for any other slot.
    pub fn start_secondary(&mut self, tenant: TenantId, machine: WarmSecondary) -> bool {
        match self.slots.get_mut(&tenant) {
            Some(Slot::Secondary { warm: true, downloads: d @ None }) => {
                *d = Some(Box::new(machine));
                true
            }
            _ => false,
        }
    }

    /// Settled warm Secondary slots whose machine is not started yet.
    pub fn secondaries_to_start(&self) -> impl Iterator<Item = TenantId> + '_ {
        self.slots.iter().filter_map(|(t, s)| match s {
            Slot::Secondary { warm: true, downloads: None } => Some(*t),
            _ => None,
        })
    }

    /// Every warm secondary machine.
    pub fn secondaries(&self) -> impl Iterator<Item = (&TenantId, &WarmSecondary)> {
        self.slots.iter().filter_map(|(t, s)| match s {
            Slot::Secondary { downloads: Some(m), .. } => Some((t, m.as_ref())),
            _ => None,
        })
    }
}
