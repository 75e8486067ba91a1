//! The simulated world one run happens in: the pageserver's disk and
//! control-plane store and the object store, all owned here, outliving any node
//! life. The node's init code captures clones of these handles only; a crash
//! applies the disk's and the store's crash rules in the same step as the kill.

use crate::faults::{Faults, site};
use crate::sim_disk::{SimDisk, SimDiskConfig};
use crate::sim_remote::{SimRemote, SimRemoteConfig};
use crate::sim_store::SimStore;
use madsim::rand::Rng;

/// Which fault sites are on and how often they fire, chosen by the seed.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    pub probabilities: Vec<(&'static str, f64)>,
}

impl FaultPlan {
    pub fn none() -> Self {
        FaultPlan::default()
    }

    /// Each site is on with probability 1/2, firing on 1–10% of its operations.
    pub fn from_seed(rng: &mut impl Rng) -> Self {
        let mut probabilities = Vec::new();
        for s in site::ALL {
            if rng.gen_bool(0.5) {
                probabilities.push((*s, rng.gen_range(0.01..0.10)));
            }
        }
        FaultPlan { probabilities }
    }
}

#[derive(Clone, Debug)]
pub struct World {
    pub faults: Faults,
    pub disk: SimDisk,
    pub remote: SimRemote,
    pub store: SimStore,
}

impl World {
    pub fn new(plan: FaultPlan) -> Self {
        let faults = Faults::new();
        for (s, p) in &plan.probabilities {
            faults.set(s, *p);
        }
        World {
            disk: SimDisk::with_faults(faults.clone(), SimDiskConfig::default()),
            remote: SimRemote::with_faults(faults.clone(), SimRemoteConfig::default()),
            store: SimStore::new(),
            faults,
        }
    }

    /// The pageserver died: unsynced disk state and uncommitted store changes go.
    pub fn crash(&self) {
        self.disk.crash();
        self.store.crash();
        self.remote.crash();
    }

    /// Faults stop (liveness is checked after this).
    pub fn heal(&self) {
        self.faults.heal();
    }

    /// How often each fault site fired, every site listed (zeros included).
    pub fn fired(&self) -> Vec<(String, u64)> {
        let fired = self.faults.fired();
        site::ALL.iter().map(|s| ((*s).to_string(), fired.get(s).copied().unwrap_or(0))).collect()
    }
}
