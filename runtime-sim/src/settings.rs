//! The node settings a seed runs with (issue 18 item 2): a workload that reaches
//! every machine needs more than one configuration. With
//! [`NodeSettings::FromSeed`] (the swarms) each seed draws its own: checkpoint
//! distance, compaction thresholds, image creation, GC horizons small enough that
//! GC deletes, eviction budgets that force on-demand downloads, caches down to
//! almost nothing, and concurrency bounds from 1 to 8. Each knob keeps the
//! standard value for about half the seeds, so most seeds change several knobs and
//! few change none.
//!
//! The draw comes from [`mix`] of the seed (nothing is taken from the run's random
//! stream), so a seed's faults, kills and workload are what they were before the
//! draw existed, and a replay of the seed draws the same settings. The swarm
//! prints them with a failing seed. [`NodeSettings::Standard`] is the one fixed
//! configuration every seed ran with before: the corpus keeps it (each corpus seed
//! was found and fixed under it) and so do the deliberate-break tests.

use crate::world::mix;
use strata_core::node::NodeConfig;

/// Which settings a run's pageservers get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeSettings {
    /// The fixed configuration of [`crate::scenario::node_config`].
    #[default]
    Standard,
    /// Drawn from the seed ([`Drawn::from_seed`]).
    FromSeed,
}

impl NodeSettings {
    /// The settings of `seed`.
    pub fn for_seed(self, seed: u64) -> Drawn {
        match self {
            NodeSettings::Standard => Drawn::standard(),
            NodeSettings::FromSeed => Drawn::from_seed(seed),
        }
    }

    /// `STRATA_SIM_SETTINGS=standard` makes a replay run as the corpus does; anything
    /// else (or nothing) draws from the seed, as the swarm does.
    pub fn from_env() -> Self {
        match std::env::var("STRATA_SIM_SETTINGS").as_deref() {
            Ok("standard") => NodeSettings::Standard,
            _ => NodeSettings::FromSeed,
        }
    }
}

/// The knobs a seed may turn; every other setting is the standard one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drawn {
    pub checkpoint_distance_bytes: u64,
    pub compaction_threshold_layers: usize,
    pub compaction_target_file_bytes: u64,
    pub image_creation_threshold_layers: usize,
    /// `None`: the standard horizons, far beyond the workload's LSNs (GC removes
    /// nothing).
    pub gc: Option<Gc>,
    pub eviction_idle_ms: u64,
    pub local_layer_budget_bytes: u64,
    pub page_cache_bytes: u64,
    pub layer_cache_bytes: u64,
    pub layer_upload_concurrency: usize,
    pub max_concurrent_jobs: usize,
    pub startup_concurrency: usize,
}

/// GC horizons small enough that GC removes layers in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gc {
    pub horizon_lsn_distance: u64,
    pub retention_ms: u64,
}

/// The first knob's number in [`mix`]; fault sites use the numbers from 0.
const FIRST_KNOB: u64 = 0x5E77_0000;

impl Drawn {
    /// The standard configuration's knobs.
    pub fn standard() -> Self {
        let c = crate::scenario::node_config();
        Drawn {
            checkpoint_distance_bytes: c.timeline.checkpoint_distance_bytes,
            compaction_threshold_layers: c.timeline.compaction_threshold_layers,
            compaction_target_file_bytes: c.timeline.compaction_target_file_bytes,
            image_creation_threshold_layers: c.timeline.image_creation_threshold_layers,
            gc: None,
            eviction_idle_ms: c.timeline.eviction_idle_ms,
            local_layer_budget_bytes: c.timeline.local_layer_budget_bytes,
            page_cache_bytes: c.page_cache.capacity_bytes,
            layer_cache_bytes: c.timeline.layer_cache_bytes,
            layer_upload_concurrency: c.upload.layer_upload_concurrency,
            max_concurrent_jobs: c.scheduler.max_concurrent_jobs,
            startup_concurrency: c.startup_concurrency,
        }
    }

    /// Each knob: the standard value when its draw's low bit is 0, else one of its
    /// alternatives, picked by the next bits.
    pub fn from_seed(seed: u64) -> Self {
        let s = Drawn::standard();
        let mut knob = 0;
        let mut pick = |standard: u64, alternatives: &[u64]| {
            let bits = mix(seed, FIRST_KNOB + knob);
            knob += 1;
            if bits & 1 == 0 {
                standard
            } else {
                alternatives[((bits >> 1) % alternatives.len() as u64) as usize]
            }
        };
        let as_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let checkpoint_distance_bytes = pick(s.checkpoint_distance_bytes, &[512, 1_024, 8_192]);
        let compaction_threshold_layers =
            as_usize(pick(s.compaction_threshold_layers as u64, &[2, 3, 6, 8]));
        let compaction_target_file_bytes =
            pick(s.compaction_target_file_bytes, &[1_024, 2_048, 64 * 1024]);
        let image_creation_threshold_layers =
            as_usize(pick(s.image_creation_threshold_layers as u64, &[1, 2, 5]));
        // The workload's LSNs grow by 1–15 per record, a few thousand in a run.
        let horizon = pick(0, &[64, 256, 1_024]);
        let retention_ms = pick(0, &[0, 0, 2_000, 10_000]);
        let gc = (horizon > 0).then_some(Gc { horizon_lsn_distance: horizon, retention_ms });
        let eviction_idle_ms = pick(s.eviction_idle_ms, &[500, 1_000, 30_000]);
        let local_layer_budget_bytes = pick(s.local_layer_budget_bytes, &[1_024, 4_096, 32_768]);
        let page_cache_bytes = pick(s.page_cache_bytes, &[1, 1_024, 1024 * 1024]);
        let layer_cache_bytes = pick(s.layer_cache_bytes, &[0, 1_024, 16 * 1024]);
        let mut bound = |standard: usize| as_usize(pick(standard as u64, &[1, 2, 3, 4, 8]));
        Drawn {
            checkpoint_distance_bytes,
            compaction_threshold_layers: compaction_threshold_layers.max(2),
            compaction_target_file_bytes,
            image_creation_threshold_layers: image_creation_threshold_layers.max(1),
            gc,
            eviction_idle_ms,
            local_layer_budget_bytes,
            page_cache_bytes,
            layer_cache_bytes,
            layer_upload_concurrency: bound(s.layer_upload_concurrency),
            max_concurrent_jobs: bound(s.max_concurrent_jobs),
            startup_concurrency: bound(s.startup_concurrency),
        }
    }

    /// `config` with these knobs.
    pub fn apply(&self, config: &mut NodeConfig) {
        let t = &mut config.timeline;
        t.checkpoint_distance_bytes = self.checkpoint_distance_bytes;
        t.compaction_threshold_layers = self.compaction_threshold_layers;
        t.compaction_target_file_bytes = self.compaction_target_file_bytes;
        t.image_creation_threshold_layers = self.image_creation_threshold_layers;
        if let Some(gc) = self.gc {
            t.gc_horizon_lsn_distance = gc.horizon_lsn_distance;
            t.gc_retention_ms = gc.retention_ms;
        }
        t.eviction_idle_ms = self.eviction_idle_ms;
        t.local_layer_budget_bytes = self.local_layer_budget_bytes;
        t.layer_cache_bytes = self.layer_cache_bytes;
        config.page_cache.capacity_bytes = self.page_cache_bytes;
        config.upload.layer_upload_concurrency = self.layer_upload_concurrency;
        config.scheduler.max_concurrent_jobs = self.max_concurrent_jobs;
        config.startup_concurrency = self.startup_concurrency;
    }

    /// The knobs that differ from the standard configuration, as `name=value`
    /// pairs (`standard` when none does): what the swarm prints with a seed.
    pub fn describe(&self) -> String {
        let s = Drawn::standard();
        let budget = |v: u64| if v == u64::MAX { "none".to_string() } else { v.to_string() };
        let gc = |g: Option<Gc>| {
            g.map_or("off".to_string(), |g| {
                format!("{}/{}ms", g.horizon_lsn_distance, g.retention_ms)
            })
        };
        let knobs: [(&str, String, String); 12] = [
            (
                "checkpoint_distance_bytes",
                self.checkpoint_distance_bytes.to_string(),
                s.checkpoint_distance_bytes.to_string(),
            ),
            (
                "compaction_threshold_layers",
                self.compaction_threshold_layers.to_string(),
                s.compaction_threshold_layers.to_string(),
            ),
            (
                "compaction_target_file_bytes",
                self.compaction_target_file_bytes.to_string(),
                s.compaction_target_file_bytes.to_string(),
            ),
            (
                "image_creation_threshold_layers",
                self.image_creation_threshold_layers.to_string(),
                s.image_creation_threshold_layers.to_string(),
            ),
            ("gc_horizon_lsn/retention", gc(self.gc), gc(s.gc)),
            ("eviction_idle_ms", self.eviction_idle_ms.to_string(), s.eviction_idle_ms.to_string()),
            (
                "local_layer_budget_bytes",
                budget(self.local_layer_budget_bytes),
                budget(s.local_layer_budget_bytes),
            ),
            ("page_cache_bytes", self.page_cache_bytes.to_string(), s.page_cache_bytes.to_string()),
            (
                "layer_cache_bytes",
                self.layer_cache_bytes.to_string(),
                s.layer_cache_bytes.to_string(),
            ),
            (
                "layer_upload_concurrency",
                self.layer_upload_concurrency.to_string(),
                s.layer_upload_concurrency.to_string(),
            ),
            (
                "max_concurrent_jobs",
                self.max_concurrent_jobs.to_string(),
                s.max_concurrent_jobs.to_string(),
            ),
            (
                "startup_concurrency",
                self.startup_concurrency.to_string(),
                s.startup_concurrency.to_string(),
            ),
        ];
        let changed: Vec<String> = knobs
            .iter()
            .filter(|(_, value, standard)| value != standard)
            .map(|(name, value, _)| format!("{name}={value}"))
            .collect();
        if changed.is_empty() { "standard".to_string() } else { changed.join(" ") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seed draws the same settings every time; the standard ones describe as
    /// `standard`; across seeds every knob takes more than one value, and GC is on
    /// for some seeds and off for others.
    #[test]
    fn draws_are_deterministic_and_reach_every_knob() {
        assert_eq!(Drawn::from_seed(42), Drawn::from_seed(42));
        assert_eq!(Drawn::standard().describe(), "standard");
        let draws: Vec<Drawn> = (0..200).map(Drawn::from_seed).collect();
        let distinct = |f: &dyn Fn(&Drawn) -> u64| {
            draws.iter().map(f).collect::<std::collections::BTreeSet<_>>().len()
        };
        assert!(distinct(&|d| d.checkpoint_distance_bytes) > 2);
        assert!(distinct(&|d| d.compaction_threshold_layers as u64) > 2);
        assert!(distinct(&|d| d.local_layer_budget_bytes) > 2);
        assert!(distinct(&|d| d.page_cache_bytes) > 2);
        assert!(distinct(&|d| d.startup_concurrency as u64) > 2);
        assert!(draws.iter().any(|d| d.gc.is_some()) && draws.iter().any(|d| d.gc.is_none()));
        let standard = draws.iter().filter(|d| d.describe() == "standard").count();
        assert!(standard < 10, "{standard} of 200 seeds drew nothing");
    }
}
