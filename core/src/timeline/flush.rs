//! Flush: frozen in-memory layer → L0 delta layer file → metadata → disk_consistent.
//!
//! One frozen layer at a time, oldest first:
//! 1. `WriteLayer` (the driver writes a temp file, fsyncs, renames, fsyncs the
//!    directory). On success, in this one transition: the layer enters the layer map,
//!    `LayerFlushed` goes to the upload queue (S1), and the frozen layer leaves
//!    memory (reads now go to the file). If more frozen layers wait, the next one is
//!    written first, up to [`MAX_LAYERS_PER_METADATA_WRITE`] layers.
//! 2. `WriteMetadata` with `disk_consistent_lsn` = the last written layer's last
//!    LSN. On success `disk_consistent_lsn` advances, `MetadataDurable` goes to the
//!    upload queue, and every flush request it covers gets `FlushDone`. One metadata
//!    write covers a batch of layers: a crash-safe write costs two fsyncs, and one per
//!    layer halved ingest throughput. A crash before it leaves layers above
//!    `disk_consistent_lsn`, which start-up removes as it always did.
//!
//! A failed write is retried after a backoff; for a layer the bytes are encoded
//! again from memory (the frozen layer stays until its file is durable).

use super::in_memory::InMemoryLayer;
use super::layer_map::{LayerEntry, Residence};
use super::{OpKind, Timeline, TimelineEffect};
use crate::id::OpId;
use crate::index_part::LayerMeta;
use crate::io_error::IoError;
use crate::key::Key;
use crate::layer_file;
use crate::layer_name::{KeyRange, LayerName, LsnRange};
use crate::lsn::Lsn;
use crate::metadata::TimelineMetadata;
use crate::time::Instant;

/// How many flushed layers one metadata write may cover.
pub const MAX_LAYERS_PER_METADATA_WRITE: u32 = 8;

/// Layers written whose end is not yet in the durable metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Unrecorded {
    pub layers: u32,
    /// The `disk_consistent_lsn` the metadata will record for them.
    pub disk_consistent_lsn: Option<Lsn>,
}

/// Where the flush pipeline is. Works on the oldest frozen layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlushState {
    Idle,
    /// `file_size` and `crc32c` describe the bytes being written.
    WritingLayer {
        op: OpId,
        failures: u32,
        file_size: u64,
        crc32c: u32,
        unrecorded: Unrecorded,
    },
    LayerBackoff {
        until: Instant,
        failures: u32,
        unrecorded: Unrecorded,
    },
    WritingMetadata {
        op: OpId,
        metadata: TimelineMetadata,
        failures: u32,
    },
    MetadataBackoff {
        until: Instant,
        metadata: TimelineMetadata,
        failures: u32,
    },
}

impl FlushState {
    pub(crate) fn timer(&self) -> Option<Instant> {
        match self {
            FlushState::LayerBackoff { until, .. } | FlushState::MetadataBackoff { until, .. } => {
                Some(*until)
            }
            FlushState::Idle
            | FlushState::WritingLayer { .. }
            | FlushState::WritingMetadata { .. } => None,
        }
    }

    pub(crate) fn op(&self) -> Option<OpId> {
        match self {
            FlushState::WritingLayer { op, .. } | FlushState::WritingMetadata { op, .. } => {
                Some(*op)
            }
            FlushState::Idle
            | FlushState::LayerBackoff { .. }
            | FlushState::MetadataBackoff { .. } => None,
        }
    }
}

/// The L0 name of a frozen layer: every key, its LSN range.
pub(crate) fn l0_name(layer: &InMemoryLayer) -> Option<LayerName> {
    let end = layer.end?;
    let keys = KeyRange { start: Key::full_range().start, end: Key::full_range().end };
    let lsns = LsnRange::new(layer.start, end).ok()?;
    Some(LayerName::Delta { keys, lsns })
}

impl Timeline {
    pub(super) fn pump_flush(&mut self, now: Instant) {
        if self.flush == FlushState::Idle && !self.frozen.is_empty() && !self.gc_writing() {
            self.start_layer_write(0, Unrecorded::default());
        }
        let _ = now;
        self.answer_flush_requests();
    }

    fn start_layer_write(&mut self, failures: u32, unrecorded: Unrecorded) {
        let Some(front) = self.frozen.front() else {
            // Nothing left to write: record what was written.
            match unrecorded.disk_consistent_lsn {
                Some(lsn) => {
                    let metadata = TimelineMetadata { disk_consistent_lsn: lsn, ..self.metadata };
                    self.start_metadata_write(metadata, 0);
                }
                None => self.flush = FlushState::Idle,
            }
            return;
        };
        let name = l0_name(front).expect("frozen layers are non-empty with a valid range");
        let encoded = layer_file::encode(&name, front.sorted())
            .expect("in-memory records are sorted and inside the layer's ranges");
        let op = self.new_op(OpKind::WriteLayer);
        let (file_size, crc32c) = (encoded.bytes.len() as u64, encoded.crc32c);
        self.flush = FlushState::WritingLayer { op, failures, file_size, crc32c, unrecorded };
        self.effects.push_back(TimelineEffect::WriteLayer { op, name, bytes: encoded.bytes });
    }

    fn start_metadata_write(&mut self, metadata: TimelineMetadata, failures: u32) {
        let op = self.new_op(OpKind::WriteMetadata);
        self.flush = FlushState::WritingMetadata { op, metadata, failures };
        self.effects.push_back(TimelineEffect::WriteMetadata { op, metadata });
    }

    pub(super) fn layer_written(&mut self, now: Instant, op: OpId, result: Result<(), IoError>) {
        let FlushState::WritingLayer { op: current, failures, file_size, crc32c, unrecorded } =
            self.flush.clone()
        else {
            unreachable!("a WriteLayer op exists only while WritingLayer")
        };
        debug_assert_eq!(op, current);
        // A full disk refuses ingest, then stops the flush (`disk_full.rs`).
        self.note_flush_write(now, &result);
        if result.is_err() {
            let until = now.plus_millis(self.backoff_ms(failures + 1));
            self.flush = FlushState::LayerBackoff { until, failures: failures + 1, unrecorded };
            return;
        }
        let frozen = self.frozen.pop_front().expect("WritingLayer works on the front layer");
        let name = l0_name(&frozen).expect("frozen layers have a valid range");
        let meta = LayerMeta { file_size, generation: self.config.generation, crc32c };
        // S1 (#5635): into the layer map and to the upload queue in one transition.
        self.layers
            .layers
            .insert(name.clone(), LayerEntry { meta, residence: Residence::Resident });
        self.effects.push_back(TimelineEffect::LayerFlushed {
            name,
            file_size: meta.file_size,
            crc32c: meta.crc32c,
        });
        let end = frozen.end.expect("frozen");
        let unrecorded =
            Unrecorded { layers: unrecorded.layers + 1, disk_consistent_lsn: Some(Lsn(end.0 - 1)) };
        if unrecorded.layers < MAX_LAYERS_PER_METADATA_WRITE && !self.frozen.is_empty() {
            // More are waiting: write them first; one metadata write covers them all.
            self.start_layer_write(0, unrecorded);
        } else {
            let metadata =
                TimelineMetadata { disk_consistent_lsn: Lsn(end.0 - 1), ..self.metadata };
            self.start_metadata_write(metadata, 0);
        }
    }

    pub(super) fn metadata_written(&mut self, now: Instant, op: OpId, result: Result<(), IoError>) {
        let FlushState::WritingMetadata { op: current, metadata, failures } = self.flush.clone()
        else {
            unreachable!("a WriteMetadata op exists only while WritingMetadata")
        };
        debug_assert_eq!(op, current);
        self.note_flush_write(now, &result);
        if result.is_err() {
            let until = now.plus_millis(self.backoff_ms(failures + 1));
            self.flush = FlushState::MetadataBackoff { until, metadata, failures: failures + 1 };
            return;
        }
        self.metadata = metadata;
        self.effects.push_back(TimelineEffect::MetadataDurable { metadata });
        self.flush = FlushState::Idle;
    }

    pub(super) fn flush_timeout(&mut self, now: Instant) {
        if self.out_of_space() {
            return;
        }
        match self.flush.clone() {
            FlushState::LayerBackoff { until, failures, unrecorded } if until <= now => {
                self.start_layer_write(failures, unrecorded);
            }
            FlushState::MetadataBackoff { until, metadata, failures } if until <= now => {
                self.start_metadata_write(metadata, failures);
            }
            _ => {}
        }
    }

    fn answer_flush_requests(&mut self) {
        let dc = self.metadata.disk_consistent_lsn;
        let done: Vec<_> =
            self.flush_requests.iter().filter(|(_, t)| **t <= dc).map(|(id, _)| *id).collect();
        for id in done {
            self.flush_requests.remove(&id);
            self.effects.push_back(TimelineEffect::FlushDone { id, disk_consistent_lsn: dc });
        }
    }

    /// `flush_retry_base_ms · 2^(failures-1)`, capped at `flush_retry_max_ms`.
    pub(super) fn backoff_ms(&self, failures: u32) -> u64 {
        let factor = 1u64.checked_shl(failures.saturating_sub(1)).unwrap_or(u64::MAX);
        self.config.flush_retry_base_ms.saturating_mul(factor).min(self.config.flush_retry_max_ms)
    }

    pub(super) fn check_flush_invariants(&self) {
        match &self.flush {
            FlushState::WritingLayer { op, .. } => {
                assert!(!self.frozen.is_empty(), "writing a layer with nothing frozen");
                assert_eq!(self.ops.get(op), Some(&OpKind::WriteLayer), "layer write op untracked");
            }
            FlushState::LayerBackoff { .. } => {
                assert!(!self.frozen.is_empty(), "a layer backoff with nothing frozen");
            }
            FlushState::WritingMetadata { op, metadata, .. } => {
                assert_eq!(self.ops.get(op), Some(&OpKind::WriteMetadata), "metadata op untracked");
                let dc = metadata.disk_consistent_lsn;
                assert!(dc > self.metadata.disk_consistent_lsn, "metadata write at {dc} not ahead");
            }
            FlushState::MetadataBackoff { metadata, .. } => {
                let dc = metadata.disk_consistent_lsn;
                assert!(dc > self.metadata.disk_consistent_lsn, "metadata retry at {dc} not ahead");
            }
            FlushState::Idle => {}
        }
    }
}
