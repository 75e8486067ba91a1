//! Eviction: drop the local file of a layer that is durable remotely; the layer
//! stays in the map as remote-only and is downloaded on demand by the next read.
//!
//! **Which layers are durable remotely.** The timeline cannot see the upload
//! queue, so it is told: every layer of the index it was recovered from is durable,
//! and the node calls [`Timeline::handle_layers_uploaded`] when the upload queue
//! reports a layer upload finished (the `UploadLayer` completion, by name). A layer
//! flushed or compacted here and not yet reported is never evicted. An uploaded
//! object is enough: it is deleted only after an unlink, and an unlink takes the
//! layer out of the map first.
//!
//! **When.** While background work is allowed (`handle_mode(.., may_compact = true,
//! ..)`), a resident, durable layer that no read used for `eviction_idle_ms` is
//! evicted; and while the resident layer files take more than
//! `local_layer_budget_bytes`, the least recently used durable ones are evicted.
//! Layers a compaction job holds or a `ReadLayer` is reading are skipped. Each pass
//! that has something to evict is one background job: it runs only once the
//! node's scheduler grants it (`jobs.rs`), and finishes in the same transition.
//!
//! **S-GEN-SUFFIX (#5538).** Eviction changes only the residence: the layer keeps
//! its [`LayerMeta`](crate::index_part::LayerMeta), generation included, so the
//! download fetches the object under the generation it was written in.
//!
//! `EvictLayer` is fire and forget. The node hands it to the upload queue, which
//! removes the file once no upload of the layer reads it (LOCAL-READ; for an
//! uploaded layer that is at once). If the removal lands after a later download of
//! the same layer, the next read finds the file missing, marks the layer
//! remote-only and downloads it again: never wrong bytes.

use super::layer_map::Residence;
use super::{OpKind, Timeline, TimelineEffect};
use crate::layer_name::LayerName;
use crate::scheduler::JobKind as BackgroundJob;
use crate::time::Instant;
use std::collections::BTreeSet;

impl Timeline {
    /// The node reports layer objects durable in remote storage (upload finished).
    /// Names not in the layer map are ignored.
    pub fn handle_layers_uploaded(&mut self, now: Instant, names: &[LayerName]) {
        for name in names {
            if self.layers.layers.contains_key(name) {
                self.remote_durable.insert(name.clone());
            }
        }
        self.pump(now);
    }

    /// Layers known durable remotely.
    pub fn remote_durable_layers(&self) -> &BTreeSet<LayerName> {
        &self.remote_durable
    }

    /// Resident, durable layers eviction may take now, with their last use.
    fn eviction_candidates(&self) -> Vec<(Instant, LayerName, u64)> {
        let mut out = Vec::new();
        self.for_each_eviction_candidate(|used, name, size| out.push((used, name.clone(), size)));
        out
    }

    /// Calls `f(last used, name, size)` for each candidate of [`Self::eviction_candidates`],
    /// without building the list (the timer, computed after every input, needs only
    /// the oldest use).
    fn for_each_eviction_candidate(&self, mut f: impl FnMut(Instant, &LayerName, u64)) {
        let busy: BTreeSet<&LayerName> = self
            .ops
            .values()
            .filter_map(|k| match k {
                OpKind::ReadLayer { name, .. } | OpKind::CompactRead { name } => Some(name),
                _ => None,
            })
            .chain(self.compaction.inputs())
            .collect();
        for name in &self.remote_durable {
            let Some(e) = self.layers.layers.get(name) else { continue };
            if e.residence != Residence::Resident || busy.contains(name) {
                continue;
            }
            let used = self.last_access.get(name).copied().unwrap_or(self.clock);
            f(used, name, e.meta.file_size);
        }
    }

    pub(super) fn resident_bytes(&self) -> u64 {
        let layers = self.layers.layers.values();
        layers.filter(|e| e.residence == Residence::Resident).map(|e| e.meta.file_size).sum()
    }

    pub(super) fn pump_eviction(&mut self, now: Instant) {
        if !self.may_compact {
            self.decline_grant(BackgroundJob::Eviction);
            return;
        }
        // A layer's idle time runs from when it became resident or was last read.
        let resident: Vec<LayerName> = self
            .layers
            .layers
            .iter()
            .filter(|(n, e)| {
                e.residence == Residence::Resident && !self.last_access.contains_key(*n)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in resident {
            self.last_access.insert(name, now);
        }
        let mut candidates = self.eviction_candidates();
        candidates.sort();
        let mut resident = self.resident_bytes();
        let mut victims = Vec::new();
        for (used, name, size) in candidates {
            let idle = now.millis_since(used) >= self.config.eviction_idle_ms;
            if idle || resident > self.config.local_layer_budget_bytes {
                victims.push(name);
                resident -= size;
            }
        }
        if victims.is_empty() {
            self.decline_grant(BackgroundJob::Eviction);
            return;
        }
        // One pass is one job: asked for, then run in full once granted.
        if !self.take_grant(BackgroundJob::Eviction) {
            return;
        }
        for name in victims {
            self.evict(&name);
        }
    }

    fn evict(&mut self, name: &LayerName) {
        let entry = self.layers.layers.get_mut(name).expect("candidates are mapped");
        entry.residence = Residence::RemoteOnly;
        self.cache.remove(name);
        self.last_access.remove(name);
        self.effects.push_back(TimelineEffect::EvictLayer { name: name.clone() });
    }

    pub(super) fn eviction_timer(&self) -> Option<Instant> {
        // While a pass is asked for, the grant (not a timer) wakes it.
        if !self.may_compact
            || self.config.eviction_idle_ms == u64::MAX
            || self.jobs.contains_key(&BackgroundJob::Eviction)
        {
            return None;
        }
        let mut oldest: Option<Instant> = None;
        self.for_each_eviction_candidate(|used, _, _| {
            oldest = Some(oldest.map_or(used, |o| o.min(used)));
        });
        Some(oldest?.plus_millis(self.config.eviction_idle_ms))
    }

    /// A read or a job used `name` now.
    pub(super) fn touch(&mut self, name: &LayerName) {
        self.last_access.insert(name.clone(), self.clock);
    }
}
