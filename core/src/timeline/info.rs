//! Getters: what a timeline tells about itself (ids, LSNs, layers, memory, caches).

use super::layer_map::{LayerEntry, Residence};
use super::read::Reader;
use super::{CompactionState, FlushState, Timeline, TimelineConfig};
use crate::id::{TenantId, TimelineId};
use crate::index_part::LayerMeta;
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use crate::metadata::TimelineMetadata;

/// A layer's description for getters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    pub name: LayerName,
    pub meta: LayerMeta,
    pub resident: bool,
}

impl Timeline {
    pub fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    pub fn timeline_id(&self) -> TimelineId {
        self.timeline
    }

    pub fn config(&self) -> &TimelineConfig {
        &self.config
    }

    pub fn last_ingested_lsn(&self) -> Lsn {
        self.last_ingested
    }

    pub fn disk_consistent_lsn(&self) -> Lsn {
        self.metadata.disk_consistent_lsn
    }

    pub fn metadata(&self) -> &TimelineMetadata {
        &self.metadata
    }

    pub fn layers(&self) -> impl Iterator<Item = LayerInfo> + '_ {
        self.layers.layers.iter().map(|(name, e)| LayerInfo {
            name: name.clone(),
            meta: e.meta,
            resident: e.residence == Residence::Resident,
        })
    }

    pub fn layer(&self, name: &LayerName) -> Option<&LayerEntry> {
        self.layers.layers.get(name)
    }

    pub fn open_layer_bytes(&self) -> u64 {
        self.open.size_bytes
    }

    pub fn frozen_layer_bytes(&self) -> u64 {
        self.frozen.iter().map(|l| l.size_bytes).sum()
    }

    pub fn frozen_layer_count(&self) -> usize {
        self.frozen.len()
    }

    pub fn in_memory_bytes(&self) -> u64 {
        self.open_layer_bytes() + self.frozen_layer_bytes()
    }

    pub fn flush_state(&self) -> &FlushState {
        &self.flush
    }

    /// Callers' reads in progress (size reads not counted).
    pub fn reads_in_progress(&self) -> usize {
        self.reads.keys().filter(|r| matches!(r, Reader::Caller(_))).count()
    }

    /// Keys whose value size ingest tracks (`value_sizes.rs`).
    pub fn tracked_value_sizes(&self) -> usize {
        self.sizes.tracked_keys()
    }

    /// Layer-file lookups answered from the parsed-file cache / needing a read.
    pub fn layer_cache_hits_misses(&self) -> (u64, u64) {
        (self.cache.hits, self.cache.misses)
    }

    pub fn layer_cache_bytes(&self) -> u64 {
        self.cache.bytes()
    }

    /// Layers the recovered index listed above its `disk_consistent_lsn`; not in
    /// the layer map. The node unlinks them from the upload queue (see `recover`).
    pub fn future_layers(&self) -> &[LayerName] {
        &self.future_layers
    }

    pub fn backpressure(&self) -> bool {
        self.backpressure
    }

    pub fn compaction_state(&self) -> &CompactionState {
        &self.compaction
    }
}
