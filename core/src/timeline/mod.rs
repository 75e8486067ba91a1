//! The timeline data path: ingest, in-memory layers, flush to layer files, and reads
//! through redo. One [`Timeline`] per (tenant, timeline); sans-IO like every machine.
//!
//! **Purpose.** Store values keyed by `(key, lsn)`: ingest batches of
//! [`IngestRecord`]s, keep them in memory, write them out as L0 delta layer files,
//! and answer `get(key, lsn)` by collecting the newest image at or below `lsn` plus
//! the deltas above it and asking for reconstruction.
//!
//! **States.**
//! - In-memory layers (`in_memory.rs`): one open layer and a queue of frozen ones.
//! - The flush pipeline ([`FlushState`] in `flush.rs`): `Idle → WritingLayer →
//!   WritingMetadata → Idle`, with `LayerBackoff` / `MetadataBackoff` after a failed
//!   write. One frozen layer at a time, oldest first.
//! - Reads (`read.rs`): `WaitingForLsn → (ReadingLayer | Downloading)* → Redoing`,
//!   each ending in [`TimelineEffect::ReadDone`].
//! - The layer map (`layer_map.rs`): every layer file with its [`LayerMeta`] and
//!   [`Residence`].
//! - Value sizes (`value_sizes.rs`): the size of each key's value at the last
//!   ingested LSN, so ingest refuses what redo would refuse
//!   ([`IngestError::ValueTooLarge`]); a key of unknown size (after a restart) is
//!   learned by a size read, its append refused with [`IngestError::SizeUnknown`]
//!   (retry) meanwhile.
//!
//! **Files.** Besides the states' files above: `config.rs` (the tunables),
//! `ingest.rs` (a batch validated whole, then applied), `info.rs` (getters),
//! `invariants.rs` (`check_invariants`).
//!
//! **Inputs.** [`Timeline::handle_ingest`], [`Timeline::handle_read`],
//! [`Timeline::handle_flush`], [`Timeline::handle_backpressure`],
//! [`Timeline::handle_completion`] (by [`OpId`]), [`Timeline::handle_timeout`],
//! [`Timeline::handle_mode`], [`Timeline::handle_layers_uploaded`],
//! [`Timeline::handle_job_granted`]; each is also one [`TimelineInput`] for the one
//! entry point [`Timeline::handle`] (`input.rs`), which answers an illegal input
//! with a typed [`TimelineInputError`].
//!
//! **Timers** ([`TimelineTimer`], a closed set; [`Timeline::next_timer`] names the
//! earliest, [`Timeline::handle_timeout`] fires one): `Checkpoint` (the open layer
//! is `checkpoint_timeout_ms` old: freeze it), `FlushRetry`, `CompactionRetry`,
//! `GcRetry` (a failed write's backoff ended), `ReadWait` (a read waited
//! `read_wait_timeout_ms` for its LSN), and two wake-ups whose work is the
//! scheduling pass every input runs: `Eviction` (the least recently used layer
//! has been idle `eviction_idle_ms`) and `GcRetention` (the next `(ingest time,
//! LSN)` sample is `gc_retention_ms` old). Every time is monotonic ([`Instant`]);
//! the timeline never sees wall-clock time.
//!
//! **Effects.** [`TimelineEffect`]: world effects (`WriteLayer`, `WriteMetadata`,
//! `ReadLayer`, `DownloadLayer`, `Redo`) carry an [`OpId`]; `LayerFlushed` and
//! `MetadataDurable` are addressed to the upload queue (the node routes them);
//! `ReadDone` and `FlushDone` answer callers; `JobWanted` / `JobFinished` are
//! addressed to the node's background-job scheduler (`jobs.rs`): compaction, GC
//! and eviction start only with its grant and always report their end;
//! `OutOfSpace` tells the node the disk-full budget ran out (`disk_full.rs`).
//!
//! **Invariants.**
//! - S1 / S-IDX-REF (#5635): a flushed layer is inserted into the layer map in the
//!   same transition that emits `LayerFlushed`, so the upload queue's set contains
//!   every layer the map shows.
//! - S-PROJECTED (our part): `disk_consistent_lsn ≤ last_ingested_lsn`, and
//!   `disk_consistent_lsn` advances only after the layer file *and* the metadata
//!   recording it are durable.
//! - S-LOCAL-TRUTH: [`Timeline::recover`] keeps only local files the remote index
//!   lists with the same size; the caller removes the rest.
//! - Never wrong bytes: a layer file that fails any check is treated as missing and
//!   downloaded again; if that fails too, the read fails.
//!
//! **Ordering.** Layers are flushed strictly in LSN order, and the metadata write
//! for a layer starts only after the layer write completed. A read searches open,
//! then frozen, then file layers, newest first.
//!
//! **Crash at each step.** Before a layer write completes: nothing durable changed;
//! the records are re-sent by the client from `disk_consistent_lsn`. After the layer
//! write, before metadata: a local file not in the index; start-up removes it (the
//! remote index is the truth). If the upload queue already uploaded an index naming
//! that layer, the index lists a layer above its `disk_consistent_lsn`: a *future
//! layer*, which start-up leaves out of the layer map and reports
//! ([`Timeline::future_layers`]) for the node to unlink; its records come again from
//! the client. After metadata: the local state is consistent; what the remote index
//! holds is the upload queue's business.
//!
//! **A failed write** (`Written(Err)`, e.g. a failed fsync) means the file's
//! contents are unknown: the file is never read back (a layer enters the layer map
//! only with a successful write), and it is written again from memory after a
//! backoff (`flush_retry_base_ms`, doubling up to `flush_retry_max_ms`). The frozen
//! layer stays readable in memory meanwhile. A write failing with `NoSpace` also
//! follows the disk-full policy (`disk_full.rs`): ingest refused, reads served,
//! retried within `no_space_budget_ms`, then the flush stops and the node holds
//! the timeline Broken `no_space`.

mod compaction;
mod config;
mod disk_full;
mod eviction;
mod flush;
mod gc;
mod images;
mod in_memory;
mod info;
mod ingest;
mod input;
mod invariants;
mod jobs;
mod layer_cache;
mod layer_map;
mod read;
mod timers;
mod value_sizes;

/// The test harness (a synchronous world around one timeline), for tests and,
/// with the `fuzzing` feature, for the fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub mod harness;
/// The BTreeMap reference model and the step language of the property test and
/// the fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub mod model;
#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
pub(crate) use compaction::is_l0;
pub use compaction::{CompactionState, Job, JobKind, Output};
pub use config::{DEFAULT_GC_RETENTION_MS, TimelineConfig};
pub use disk_full::{DEFAULT_NO_SPACE_BUDGET_MS, DiskFull};
pub use flush::FlushState;
pub use gc::{GcState, MAX_LSN_TIME_SAMPLES};
pub use info::LayerInfo;
pub use ingest::{IngestError, IngestOutcome};
pub use input::{TimelineInput, TimelineInputError, TimelineOutput};
pub use jobs::JobGate;
pub use layer_map::{LayerEntry, Residence};
pub use value_sizes::SIZE_READ_RETRY_AFTER_MS;

use crate::id::{OpId, OpIds, TenantId, TimelineId};
use crate::index_part::{IndexPart, LayerMeta};
use crate::io_error::IoError;
use crate::key::Key;
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use crate::metadata::TimelineMetadata;
use crate::redo::RedoRequest;
use crate::scheduler::JobKind as BackgroundJob;
use crate::time::Instant;
use in_memory::InMemoryLayer;
use layer_cache::LayerCache;
use layer_map::LayerMap;
use read::{Read, Reader};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use value_sizes::ValueSizes;

/// Why the timeline wants to be woken: the closed set of its timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum TimelineTimer {
    /// The open in-memory layer is `checkpoint_timeout_ms` old: freeze it.
    Checkpoint,
    /// A failed layer or metadata write of the flush may be retried.
    FlushRetry,
    /// A read has waited `read_wait_timeout_ms` for its LSN: answer `WaitTimeout`.
    ReadWait,
    /// A failed compaction output write may be retried.
    CompactionRetry,
    /// A failed GC metadata write may be retried.
    GcRetry,
    /// A resident layer has been idle `eviction_idle_ms`: ask for an eviction pass.
    Eviction,
    /// The next `(ingest time, LSN)` sample is `gc_retention_ms` old: GC may go further.
    GcRetention,
}

/// A caller-chosen id for one read; answered by exactly one `ReadDone`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub struct ReadId(pub u64);

/// The id of one `handle_flush` call; answered by exactly one `FlushDone`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlushId(pub u64);

/// The outcome of a world effect, by the effect's kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimelineCompletion {
    /// `WriteLayer` / `WriteMetadata`: the file is durable (written, fsynced,
    /// renamed, directory fsynced), or its contents are unknown (see "A failed
    /// write" above).
    Written(Result<(), IoError>),
    /// `ReadLayer`: the whole file.
    Read(Result<Vec<u8>, IoError>),
    /// `DownloadLayer`: the verified file is durable locally. `Corrupt`: the remote
    /// object does not match the size and checksum the index records (no retry can
    /// fix it: reads needing it fail with [`ReadError::LayerCorrupt`]); any other
    /// kind: fetching or writing failed, a later read tries again.
    Downloaded(Result<(), IoError>),
    /// `Redo`: the reconstructed value.
    Redone(Result<Vec<u8>, IoError>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimelineEffect {
    /// Crash-safe write of `tenants/{t}/timelines/{tl}/{name}`.
    WriteLayer { op: OpId, name: LayerName, bytes: Vec<u8> },
    /// Crash-safe write of `tenants/{t}/timelines/{tl}/metadata` (`to_bytes`).
    WriteMetadata { op: OpId, metadata: TimelineMetadata },
    /// Read the whole local layer file.
    ReadLayer { op: OpId, name: LayerName },
    /// Remote get, verify size and CRC32C against `meta`, crash-safe local write.
    DownloadLayer { op: OpId, name: LayerName, meta: LayerMeta },
    /// Reconstruct a value (walredo process, or the pure function).
    Redo { op: OpId, request: RedoRequest },
    /// The answer to a read: `Ok(None)` when the key has no value at that LSN.
    ReadDone { req: ReadId, result: Result<Option<Vec<u8>>, ReadError> },
    /// For the upload queue (`handle_add_layer`): emitted in the same transition
    /// that puts the layer into the layer map (S1), by a flush or a compaction.
    LayerFlushed { name: LayerName, file_size: u64, crc32c: u32 },
    /// For the upload queue (`handle_unlink_layers`): these layers left the layer map
    /// (replaced by compaction, or collected). Always after the `LayerFlushed` of
    /// their replacements; the upload queue deletes them only after an index
    /// without them is durable (S-DEL-AFTER-INDEX).
    UnlinkLayers { names: Vec<LayerName> },
    /// Remove the local file of `name` (fire and forget: a missing file is fine).
    /// The layer is either remote-only now (eviction; it keeps its meta and
    /// generation, S-GEN-SUFFIX) or gone from the map (after `UnlinkLayers`). For
    /// the upload queue (`handle_remove_local`): the file goes once no upload of
    /// it reads it (LOCAL-READ).
    EvictLayer { name: LayerName },
    /// For the upload queue (`handle_set_metadata`): metadata is durable locally.
    MetadataDurable { metadata: TimelineMetadata },
    /// Everything ingested before the flush call is in durable layer files.
    FlushDone { id: FlushId, disk_consistent_lsn: Lsn },
    /// For the node's scheduler (`handle_request`): this timeline has a background
    /// job of `kind` to run and waits for [`Timeline::handle_job_granted`].
    JobWanted { kind: BackgroundJob },
    /// For the node's scheduler (`handle_finished`): the granted job of `kind`
    /// ended (done, failed, abandoned, or the grant was not needed any more).
    JobFinished { kind: BackgroundJob },
    /// For the node: flush writes failed with `NoSpace` for longer than
    /// `no_space_budget_ms` (since `since`); the flush stopped, ingest is refused,
    /// reads are served. The node holds the timeline Broken (`no_space`).
    OutOfSpace { since: Instant },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("lsn {lsn} not ingested within {waited_ms} ms (last ingested {last_ingested})")]
    WaitTimeout { lsn: Lsn, last_ingested: Lsn, waited_ms: u64 },
    #[error("lsn {lsn} is below the gc cutoff {gc_cutoff}: history there is gone")]
    BelowGcCutoff { lsn: Lsn, gc_cutoff: Lsn },
    #[error("layer {name} unavailable: {reason}")]
    LayerUnavailable { name: LayerName, reason: String },
    /// The layer in remote storage does not match its index: retrying cannot help.
    #[error("layer {name} is corrupt in remote storage: {reason}")]
    LayerCorrupt { name: LayerName, reason: String },
    #[error("redo failed: {0}")]
    Redo(String),
    #[error("read id {0:?} is already in use")]
    DuplicateReadId(ReadId),
    /// The key is [`Key::MAX`], which no layer can hold (key ranges are half-open):
    /// refused like at ingest, so a client learns the key is invalid rather than
    /// reading "no value".
    #[error("key {key} is not storable (key ranges are half-open; {key} is only a range end)")]
    KeyOutOfRange { key: Key },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimelineError {
    #[error("bug in the caller: {0} is not an operation in flight")]
    UnknownOp(OpId),
    #[error("bug in the caller: {op} expects a {expected} completion")]
    WrongCompletion { op: OpId, expected: &'static str },
    #[error("bug in the caller: a {0:?} job was granted but not asked for")]
    UnexpectedGrant(BackgroundJob),
}

/// What an in-flight op is for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum OpKind {
    WriteLayer,
    WriteMetadata,
    ReadLayer { read: Reader, name: LayerName },
    Download { name: LayerName },
    Redo { read: Reader },
    CompactRead { name: LayerName },
    CompactWrite,
    ImageRedo,
    GcMetadata,
}

#[derive(Debug)]
pub struct Timeline {
    tenant: TenantId,
    timeline: TimelineId,
    config: TimelineConfig,
    metadata: TimelineMetadata,
    last_ingested: Lsn,
    open: InMemoryLayer,
    frozen: VecDeque<InMemoryLayer>,
    layers: LayerMap,
    cache: LayerCache,
    flush: FlushState,
    flush_requests: BTreeMap<FlushId, Lsn>,
    next_flush_id: u64,
    reads: BTreeMap<Reader, Read>,
    /// What ingest checks values against (`value_sizes.rs`).
    sizes: ValueSizes,
    ops: BTreeMap<OpId, OpKind>,
    op_ids: OpIds,
    backpressure: bool,
    /// Layers of the recovered index above its disk_consistent_lsn (see `recover`).
    future_layers: Vec<LayerName>,
    compaction: CompactionState,
    gc: GcState,
    /// `handle_mode`: background work allowed.
    may_compact: bool,
    may_delete: bool,
    /// Layers known durable in remote storage (recovered from the index, or
    /// reported by `handle_layers_uploaded`): the only ones eviction may drop.
    remote_durable: BTreeSet<LayerName>,
    /// When a read last used each layer file.
    last_access: BTreeMap<LayerName, Instant>,
    /// The latest `now` seen (reads stamp layer accesses with it).
    clock: Instant,
    /// Background jobs asked of, granted by, or running under the scheduler.
    jobs: BTreeMap<BackgroundJob, JobGate>,
    /// `(t, lsn)`: every LSN up to `lsn` was ingested at or before `t`; oldest
    /// first, at most [`MAX_LSN_TIME_SAMPLES`] (GC's time retention, on the monotonic clock).
    lsn_times: VecDeque<(Instant, Lsn)>,
    /// A disk-full episode (`disk_full.rs`).
    disk_full: Option<DiskFull>,
    effects: VecDeque<TimelineEffect>,
}

impl Timeline {
    /// A new, empty timeline: nothing ingested, `disk_consistent_lsn = initdb_lsn`.
    /// `now` is the driver's time of the creation (the machine's clock starts there).
    pub fn create(
        tenant: TenantId,
        timeline: TimelineId,
        initdb_lsn: Lsn,
        config: TimelineConfig,
        now: Instant,
    ) -> Self {
        let metadata = TimelineMetadata {
            disk_consistent_lsn: initdb_lsn,
            gc_cutoff_lsn: Lsn::ZERO,
            initdb_lsn,
            ancestor: None,
        };
        Self::new(tenant, timeline, metadata, LayerMap::default(), config, now)
    }

    /// Start-up: the remote index is the truth. `local` holds the layer files found
    /// on disk with their sizes. Returns the machine and the local files to remove
    /// (not in the index, or a size that differs from it: those layers become
    /// remote-only and are downloaded on demand).
    ///
    /// **Future layers**: an index may list layers holding records above its
    /// `disk_consistent_lsn` (flushed and uploaded, but the metadata recording them
    /// was not). Those records are re-sent by the client and ingested again, so the
    /// layers are left out of the layer map, their local files are in the removal
    /// list, and [`Timeline::future_layers`] names them: the node must unlink them from
    /// the upload queue's set (`handle_unlink_layers`) before the timeline flushes,
    /// since a re-flush may produce the same name.
    pub fn recover(
        tenant: TenantId,
        timeline: TimelineId,
        index: &IndexPart,
        local: &BTreeMap<LayerName, u64>,
        config: TimelineConfig,
        now: Instant,
    ) -> (Self, Vec<LayerName>) {
        let dc = index.disk_consistent_lsn;
        let mut map = LayerMap::default();
        let mut future = Vec::new();
        for (name, meta) in &index.layer_metadata {
            if layer_map::lsn_range(name).end > dc.next() {
                future.push(name.clone());
                continue;
            }
            let residence = match local.get(name) {
                Some(size) if *size == meta.file_size => Residence::Resident,
                Some(_) | None => Residence::RemoteOnly,
            };
            map.layers.insert(name.clone(), LayerEntry { meta: *meta, residence });
        }
        let remove = local
            .iter()
            .filter(|(name, size)| map.layers.get(*name).is_none_or(|e| e.meta.file_size != **size))
            .map(|(name, _)| name.clone())
            .collect();
        let mut metadata = index.metadata;
        metadata.disk_consistent_lsn = dc;
        let mut tl = Self::new(tenant, timeline, metadata, map, config, now);
        tl.remote_durable = tl.layers.layers.keys().cloned().collect();
        tl.future_layers = future;
        (tl, remove)
    }

    fn new(
        tenant: TenantId,
        timeline: TimelineId,
        metadata: TimelineMetadata,
        layers: LayerMap,
        config: TimelineConfig,
        now: Instant,
    ) -> Self {
        let dc = metadata.disk_consistent_lsn;
        let cache = LayerCache::new(config.layer_cache_bytes);
        // Without layers nothing was ingested below `dc`: every untracked key is empty.
        let sizes = ValueSizes::new(layers.layers.is_empty(), config.value_sizes_max_keys);
        Timeline {
            tenant,
            timeline,
            config,
            metadata,
            last_ingested: dc,
            open: InMemoryLayer::open(dc.next()),
            frozen: VecDeque::new(),
            layers,
            cache,
            flush: FlushState::Idle,
            flush_requests: BTreeMap::new(),
            next_flush_id: 0,
            reads: BTreeMap::new(),
            sizes,
            ops: BTreeMap::new(),
            op_ids: OpIds::default(),
            backpressure: false,
            future_layers: Vec::new(),
            compaction: CompactionState::Idle,
            gc: GcState::Idle,
            may_compact: true,
            may_delete: true,
            remote_durable: BTreeSet::new(),
            last_access: BTreeMap::new(),
            clock: now,
            jobs: BTreeMap::new(),
            lsn_times: VecDeque::new(),
            disk_full: None,
            effects: VecDeque::new(),
        }
    }

    /// Starts a read of `key` at `lsn`; the answer comes as [`TimelineEffect::ReadDone`].
    /// A `req` already in use is answered at once with [`ReadError::DuplicateReadId`].
    pub fn handle_read(&mut self, now: Instant, req: ReadId, key: Key, lsn: Lsn) {
        if self.reads.contains_key(&Reader::Caller(req)) {
            let result = Err(ReadError::DuplicateReadId(req));
            self.effects.push_back(TimelineEffect::ReadDone { req, result });
            return;
        }
        if !key.is_storable() {
            let result = Err(ReadError::KeyOutOfRange { key });
            self.effects.push_back(TimelineEffect::ReadDone { req, result });
            return;
        }
        if lsn < self.metadata.gc_cutoff_lsn {
            let result =
                Err(ReadError::BelowGcCutoff { lsn, gc_cutoff: self.metadata.gc_cutoff_lsn });
            self.effects.push_back(TimelineEffect::ReadDone { req, result });
            return;
        }
        let deadline = now.plus_millis(self.config.read_wait_timeout_ms);
        self.reads.insert(Reader::Caller(req), Read::new(key, lsn, now, deadline));
        self.pump(now);
    }

    /// Freezes the open layer and flushes everything frozen. `FlushDone` comes once
    /// `disk_consistent_lsn` covers everything ingested before this call.
    pub fn handle_flush(&mut self, now: Instant) -> FlushId {
        let id = FlushId(self.next_flush_id);
        self.next_flush_id += 1;
        self.freeze_open();
        self.flush_requests.insert(id, self.last_ingested);
        self.pump(now);
        id
    }

    /// The upload queue says it holds too much (a stale or emergency node): refuse
    /// ingest while `on`.
    pub fn handle_backpressure(&mut self, now: Instant, on: bool) {
        self.backpressure = on;
        self.pump(now);
    }

    pub fn handle_completion(
        &mut self,
        now: Instant,
        op: OpId,
        c: TimelineCompletion,
    ) -> Result<(), TimelineError> {
        let kind = self.ops.get(&op).ok_or(TimelineError::UnknownOp(op))?.clone();
        self.clock = self.clock.max(now);
        let expected = match (&kind, &c) {
            (
                OpKind::WriteLayer
                | OpKind::WriteMetadata
                | OpKind::CompactWrite
                | OpKind::GcMetadata,
                TimelineCompletion::Written(_),
            )
            | (OpKind::CompactRead { .. }, TimelineCompletion::Read(_))
            | (OpKind::ReadLayer { .. }, TimelineCompletion::Read(_))
            | (OpKind::Download { .. }, TimelineCompletion::Downloaded(_))
            | (OpKind::Redo { .. } | OpKind::ImageRedo, TimelineCompletion::Redone(_)) => None,
            (
                OpKind::WriteLayer
                | OpKind::WriteMetadata
                | OpKind::CompactWrite
                | OpKind::GcMetadata,
                _,
            ) => Some("Written"),
            (OpKind::ReadLayer { .. } | OpKind::CompactRead { .. }, _) => Some("Read"),
            (OpKind::Download { .. }, _) => Some("Downloaded"),
            (OpKind::Redo { .. } | OpKind::ImageRedo, _) => Some("Redone"),
        };
        if let Some(expected) = expected {
            return Err(TimelineError::WrongCompletion { op, expected });
        }
        self.ops.remove(&op);
        match (kind, c) {
            (OpKind::WriteLayer, TimelineCompletion::Written(r)) => self.layer_written(now, op, r),
            (OpKind::WriteMetadata, TimelineCompletion::Written(r)) => {
                self.metadata_written(now, op, r)
            }
            (OpKind::ReadLayer { read, name }, TimelineCompletion::Read(r)) => {
                self.layer_read(now, read, name, r)
            }
            (OpKind::Download { name }, TimelineCompletion::Downloaded(r)) => {
                self.layer_downloaded(now, name, r)
            }
            (OpKind::Redo { read }, TimelineCompletion::Redone(r)) => self.redone(read, r),
            (OpKind::CompactRead { name }, TimelineCompletion::Read(r)) => {
                self.compaction_read_done(now, op, name, r)
            }
            (OpKind::ImageRedo, TimelineCompletion::Redone(r)) => self.image_redone(now, op, r),
            (OpKind::GcMetadata, TimelineCompletion::Written(r)) => {
                self.gc_metadata_written(now, op, r)
            }
            (OpKind::CompactWrite, TimelineCompletion::Written(r)) => {
                self.compaction_write_done(now, op, r)
            }
            _ => unreachable!("checked above"),
        }
        self.pump(now);
        Ok(())
    }

    pub fn poll_effect(&mut self) -> Option<TimelineEffect> {
        self.effects.pop_front()
    }

    /// Attachment mode gate (the node calls it on every mode change):
    /// `may_compact` allows compaction (and eviction), `may_delete` allows GC.
    /// `AttachedSingle`: (true, true). `AttachedMulti`: (true, false) — its unlinks
    /// are kept by the upload queue anyway. `AttachedStale`, emergency mode,
    /// `Secondary`: (false, false). Disallowing drops a job at its next step.
    pub fn handle_mode(&mut self, now: Instant, may_compact: bool, may_delete: bool) {
        self.may_compact = may_compact;
        self.may_delete = may_delete;
        self.pump(now);
    }

    fn new_op(&mut self, kind: OpKind) -> OpId {
        let op = self.op_ids.next_id();
        self.ops.insert(op, kind);
        op
    }

    /// Moves the open layer (if it holds anything) to the frozen queue.
    fn freeze_open(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let next = InMemoryLayer::open(self.last_ingested.next());
        let open = std::mem::replace(&mut self.open, next);
        if let Some(frozen) = open.freeze() {
            self.frozen.push_back(frozen);
        }
    }

    /// The one place that starts work: flushes, waiting reads, answered flushes,
    /// and background jobs (each asked of the scheduler first, see `jobs.rs`).
    fn pump(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        self.record_lsn_time(now);
        self.settle_jobs();
        // A job that ended in this pass is finished, then asked for again: at most
        // one more pass per kind.
        for _ in 0..=BackgroundJob::ALL.len() {
            self.pump_flush(now);
            self.pump_reads(now);
            self.pump_compaction(now);
            self.pump_eviction(now);
            self.pump_gc(now);
            if !self.settle_jobs() {
                return;
            }
        }
    }
}
