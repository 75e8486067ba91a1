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
    /// The sites of [`site::ALL`] are drawn from `rng` (the run's stream), in order,
    /// except those of [`site::MIXED`]: they come from [`mix`] of `seed`, which draws
    /// nothing from the stream, so that a seed whose mixed sites are off runs
    /// exactly as before they existed.
    pub fn from_seed(rng: &mut impl Rng, seed: u64) -> Self {
        let mut probabilities = Vec::new();
        for s in site::ALL.iter().filter(|s| !site::MIXED.contains(s)) {
            if rng.gen_bool(0.5) {
                probabilities.push((*s, rng.gen_range(0.01..0.10)));
            }
        }
        for (i, s) in site::MIXED.iter().enumerate() {
            let bits = mix(seed, i as u64);
            if bits & 1 == 1 {
                // 1–10%, from the next 16 bits.
                let unit = ((bits >> 1) & 0xFFFF) as f64 / 65_536.0;
                probabilities.push((*s, 0.01 + 0.09 * unit));
            }
        }
        FaultPlan { probabilities }
    }
}

/// A 64-bit mix (splitmix64) of the seed and a site's number: the setting of a
/// site of [`site::MIXED`].
pub fn mix(seed: u64, site: u64) -> u64 {
    let mut z = seed ^ site.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Clone, Debug)]
pub struct World {
    pub faults: Faults,
    /// The pageserver's clock (skewed and jumped by the clock nemesis).
    pub clock: crate::clock::SimClock,
    pub disk: SimDisk,
    pub remote: SimRemote,
    pub store: SimStore,
    /// Machine inputs of every pageserver life (`crate::inputs`).
    pub inputs: crate::inputs::InputTally,
    /// The operator's side of a lost control-plane store (`cp.store.lost`).
    pub operator: std::sync::Arc<std::sync::Mutex<Operator>>,
    /// Every request the pageserver's request layer holds (S-NO-DEADLOCK).
    pub requests: crate::deadlock::RequestWatch,
    /// What the pageserver's request layer changes: a test-only break
    /// (`cluster::NodeBreak`), [`crate::rpc::UNCHANGED`] in the swarm.
    pub rewrite: crate::rpc::Rewrite,
}

/// What the simulated operator saw and will do at the pageserver's next start.
#[derive(Clone, Debug, Default)]
pub struct Operator {
    /// The last life refused to start, naming `--rebuild-generations`.
    pub refused: bool,
    /// The next life starts with `--rebuild-generations`.
    pub rebuild_next: bool,
    /// The nemesis killed the node and has not restarted it yet: the operator
    /// leaves it alone.
    pub down: bool,
}

impl World {
    pub fn new(plan: FaultPlan) -> Self {
        let faults = Faults::new();
        for (s, p) in &plan.probabilities {
            faults.set(s, *p);
        }
        let disk = SimDisk::with_faults(faults.clone(), SimDiskConfig::default());
        World {
            remote: SimRemote::with_faults(faults.clone(), SimRemoteConfig::default())
                .with_local_disk(disk.clone()),
            disk,
            store: SimStore::with_faults(faults.clone()),
            clock: crate::clock::SimClock::new(),
            inputs: crate::inputs::InputTally::new(),
            operator: Default::default(),
            requests: crate::deadlock::RequestWatch::new(),
            rewrite: crate::rpc::UNCHANGED,
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
