//! The tunables of one timeline ([`TimelineConfig`]) and their defaults.

use crate::generation::Generation;

/// Tunables of one timeline. Every bound is named with its unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineConfig {
    /// Freeze the open layer once its records take this many bytes.
    pub checkpoint_distance_bytes: u64,
    /// Freeze the open layer this long after its first record.
    pub checkpoint_timeout_ms: u64,
    /// A read above the last ingested LSN waits this long, then fails.
    pub read_wait_timeout_ms: u64,
    /// Refuse ingest (backpressure) while open + frozen layers hold this many bytes.
    pub max_in_memory_bytes: u64,
    /// First retry delay after a failed layer or metadata write; doubles per failure.
    pub flush_retry_base_ms: u64,
    pub flush_retry_max_ms: u64,
    /// The Retry-After a refused ingest suggests.
    pub backpressure_retry_after_ms: u64,
    /// Parsed layer files kept in memory for reads (least recently used evicted);
    /// 0 disables the cache.
    pub layer_cache_bytes: u64,
    /// The generation this attachment runs in: layers flushed here are recorded
    /// with it (S-GEN-SUFFIX), so a bad local copy can be downloaded again.
    pub generation: Generation,
    /// Compact once this many L0 layers are durable locally (at least 2).
    pub compaction_threshold_layers: usize,
    /// Compaction cuts its L1 outputs at about this many record bytes (a key is
    /// never split, so one key's history may exceed it).
    pub compaction_target_file_bytes: u64,
    /// Create an image layer set once this many delta layer levels (distinct LSN
    /// ranges) lie above the newest one.
    pub image_creation_threshold_layers: usize,
    /// GC keeps what reads at `disk_consistent_lsn` minus this need (`u64::MAX`:
    /// no GC).
    pub gc_horizon_lsn_distance: u64,
    /// GC also keeps what reads at any LSN ingested less than this long ago need
    /// (time retention, on the monotonic clock, never the wall clock; 0: only the LSN distance counts). See `gc.rs`.
    pub gc_retention_ms: u64,
    /// Evict a remotely durable layer not read for this long (`u64::MAX`: never).
    pub eviction_idle_ms: u64,
    /// Evict least recently used durable layers while resident layer files take
    /// more than this (`u64::MAX`: no budget).
    pub local_layer_budget_bytes: u64,
    /// Keys whose value size ingest keeps (about 16 bytes each); past it the
    /// smallest key is dropped and read again when next appended to
    /// (`value_sizes.rs`).
    pub value_sizes_max_keys: usize,
    /// How long flush writes may keep failing with `NoSpace` (ingest refused, reads
    /// served) before the timeline stops retrying and goes Broken `no_space`
    /// (`disk_full.rs`).
    pub no_space_budget_ms: u64,
}

impl Default for TimelineConfig {
    fn default() -> Self {
        TimelineConfig {
            checkpoint_distance_bytes: 16 * 1024 * 1024,
            checkpoint_timeout_ms: 60_000,
            read_wait_timeout_ms: 5_000,
            max_in_memory_bytes: 256 * 1024 * 1024,
            flush_retry_base_ms: 100,
            flush_retry_max_ms: 10_000,
            backpressure_retry_after_ms: 1_000,
            layer_cache_bytes: 64 * 1024 * 1024,
            generation: Generation::FIRST,
            compaction_threshold_layers: 10,
            compaction_target_file_bytes: 128 * 1024 * 1024,
            image_creation_threshold_layers: 3,
            gc_horizon_lsn_distance: 64 * 1024 * 1024,
            gc_retention_ms: DEFAULT_GC_RETENTION_MS,
            eviction_idle_ms: 24 * 3600 * 1000,
            local_layer_budget_bytes: u64::MAX,
            value_sizes_max_keys: 1 << 20,
            no_space_budget_ms: super::DEFAULT_NO_SPACE_BUDGET_MS,
        }
    }
}

/// Default of [`TimelineConfig::gc_retention_ms`]: seven days.
pub const DEFAULT_GC_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;
