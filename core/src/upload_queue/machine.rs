//! The machine's state, its constructors, the timeline's inputs and the getters. The
//! world's inputs are in `completions.rs`; scheduling decisions live in `pump.rs`.

use super::pump::Change;
use super::types::*;
use crate::generation::Generation;
use crate::id::{OpId, OpIds, TenantId, TimelineId};
use crate::index_part::{IndexPart, IndexVersion, LayerMeta};
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use crate::metadata::TimelineMetadata;
use crate::remote_path::{RemoteKey, index_key, layer_key};
use crate::time::{Instant, WallTime};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Where one layer upload stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JobState {
    Queued,
    /// Its key was handed to the deletion queue; waiting for that key's report.
    HeldForDeletion,
    InFlight(OpId),
    Backoff {
        until: Instant,
    },
}

#[derive(Clone, Debug)]
pub(super) struct LayerJob {
    pub(super) meta: LayerMeta,
    pub(super) state: JobState,
    pub(super) failures: u32,
    /// False once the layer was unlinked while this upload was in flight: the upload
    /// finishes, and the key's deletion waits for it.
    pub(super) wanted: bool,
}

/// An index snapshot taken when a change was made; `ticket` orders them.
#[derive(Clone, Debug)]
pub(super) struct Ticket {
    pub(super) ticket: u64,
    pub(super) index: IndexPart,
    /// Layers this snapshot names whose upload has not finished.
    pub(super) needs: BTreeSet<LayerName>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IndexState {
    /// Ready to (re)start once the mode allows it.
    Ready,
    InFlight(OpId),
    Backoff {
        until: Instant,
    },
}

#[derive(Clone, Debug)]
pub(super) struct IndexFlight {
    pub(super) ticket: u64,
    pub(super) version: IndexVersion,
    pub(super) index: IndexPart,
    pub(super) state: IndexState,
    pub(super) failures: u32,
}

/// The listing timeline deletion makes once the tombstone is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListState {
    Idle,
    InFlight(OpId),
    Backoff { until: Instant },
    Done,
}

/// Where a handed key came from, to put it back if its deletion is cancelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Handback {
    Layer(LayerName, Generation),
    Index(IndexVersion),
}

#[derive(Clone, Debug)]
pub(super) struct Durable {
    pub(super) version: IndexVersion,
    pub(super) index: IndexPart,
}

#[derive(Debug)]
pub struct UploadQueue {
    pub(super) tenant: TenantId,
    pub(super) timeline: TimelineId,
    pub(super) generation: Generation,
    pub(super) mode: AttachMode,
    pub(super) config: UploadQueueConfig,
    pub(super) state: QueueState,
    pub(super) ops: OpIds,

    /// The desired remote layer set, and the desired metadata.
    pub(super) layers: BTreeMap<LayerName, LayerMeta>,
    pub(super) metadata: TimelineMetadata,

    pub(super) jobs: BTreeMap<LayerName, LayerJob>,
    pub(super) layers_in_flight: usize,
    /// Bytes of wanted layers not yet uploaded.
    pub(super) held_bytes: u64,

    /// The last ticket handed out (0: none).
    pub(super) last_ticket: u64,
    pub(super) tickets: VecDeque<Ticket>,
    pub(super) index_flight: Option<IndexFlight>,
    pub(super) next_seq: u64,
    pub(super) durable: Option<Durable>,
    /// The ticket the newest durable index covers (0: the recovered or empty state).
    pub(super) durable_ticket: u64,
    /// Index keys that may exist (written, attempted or loaded) and are not yet handed
    /// for deletion. Includes the newest durable one, which is kept.
    pub(super) index_keys: BTreeSet<IndexVersion>,

    /// Unlinked layer keys → the ticket whose index no longer names them.
    pub(super) waiting_deletions: BTreeMap<(LayerName, Generation), u64>,
    /// Keys handed to the deletion queue whose report has not come back.
    pub(super) handed: BTreeSet<RemoteKey>,
    /// What each key handed while Active was, so that a deletion cancelled by a mode
    /// change can wait again (S-SINGLE-WRITER without losing it: L-DELETE).
    pub(super) handed_origin: BTreeMap<RemoteKey, Handback>,
    /// Keys whose cancellation this queue asked for because the mode stopped
    /// allowing deletions; a `Cancelled` report puts them back to wait.
    pub(super) cancelled_for_mode: BTreeSet<RemoteKey>,

    pub(super) projected: Lsn,
    pub(super) visible: Lsn,
    /// The highest LSN this queue asked the deletion queue to validate.
    pub(super) validation_requested: Lsn,
    pub(super) barriers: Vec<(BarrierId, u64)>,
    pub(super) next_barrier: u64,
    pub(super) backpressure_on: bool,
    /// In `Deleting(Objects)`: layers and older indexes were handed on.
    pub(super) deletion_handed: bool,
    /// In `Deleting(Objects)`: the listing of the timeline's prefix.
    pub(super) listing: ListState,
    pub(super) listing_failures: u32,
    pub(super) dropped_on_stop: u64,
    /// Local files to remove once no upload of theirs is left (`local_files.rs`).
    pub(super) local_removals: BTreeSet<LayerName>,
    pub(super) effects: VecDeque<UploadEffect>,
}

impl UploadQueue {
    fn blank(
        tenant: TenantId,
        timeline: TimelineId,
        generation: Generation,
        mode: AttachMode,
        metadata: TimelineMetadata,
        config: UploadQueueConfig,
    ) -> Self {
        UploadQueue {
            tenant,
            timeline,
            generation,
            mode,
            config,
            state: QueueState::Active,
            ops: OpIds::default(),
            layers: BTreeMap::new(),
            metadata,
            jobs: BTreeMap::new(),
            layers_in_flight: 0,
            held_bytes: 0,
            last_ticket: 0,
            tickets: VecDeque::new(),
            index_flight: None,
            next_seq: 1,
            durable: None,
            durable_ticket: 0,
            index_keys: BTreeSet::new(),
            waiting_deletions: BTreeMap::new(),
            handed: BTreeSet::new(),
            handed_origin: BTreeMap::new(),
            cancelled_for_mode: BTreeSet::new(),
            projected: Lsn(0),
            visible: Lsn(0),
            validation_requested: Lsn(0),
            barriers: Vec::new(),
            next_barrier: 0,
            backpressure_on: false,
            deletion_handed: false,
            listing: ListState::Idle,
            listing_failures: 0,
            dropped_on_stop: 0,
            local_removals: BTreeSet::new(),
            effects: VecDeque::new(),
        }
    }

    /// A brand-new timeline: nothing remote yet; schedules the first index upload
    /// (seq 1) at once.
    pub fn new_timeline(
        tenant: TenantId,
        timeline: TimelineId,
        generation: Generation,
        mode: AttachMode,
        metadata: TimelineMetadata,
        config: UploadQueueConfig,
    ) -> Self {
        let mut q = Self::blank(tenant, timeline, generation, mode, metadata, config);
        q.schedule_index(Change::Metadata);
        q.pump();
        q
    }

    /// Recovers from the index loaded at start-up (`loaded_from`: where it was read).
    /// `projected` starts at its `disk_consistent_lsn`; `visible` starts at 0. The
    /// loaded index is uploaded again under this generation at once (the next
    /// sequence: `loaded_from.seq + 1` in the same generation, else 1); when that is
    /// durable a `ValidateLsn` goes out, and visible reaches projected after the
    /// first validation in this generation. Why not validate at once: a PUT of an
    /// older generation that was given up on may still land and outrank the loaded
    /// index until this generation has an index of its own. A tombstone recovers
    /// into `Tombstoned`.
    pub fn recover(
        tenant: TenantId,
        timeline: TimelineId,
        generation: Generation,
        mode: AttachMode,
        loaded: IndexPart,
        loaded_from: IndexVersion,
        config: UploadQueueConfig,
    ) -> Self {
        let mut q = Self::blank(tenant, timeline, generation, mode, loaded.metadata, config);
        if loaded.deleted_at.is_some() {
            q.state = QueueState::Tombstoned;
        }
        q.layers = loaded.layer_metadata.clone();
        q.projected = loaded.disk_consistent_lsn;
        q.next_seq = if loaded_from.generation == generation { loaded_from.seq + 1 } else { 1 };
        q.index_keys.insert(loaded_from);
        q.durable = Some(Durable { version: loaded_from, index: loaded });
        if q.state == QueueState::Active {
            // Re-publish the loaded index under this generation at once: an index of
            // an older generation that lands late can then never outrank what this
            // node loaded, and visible is validated against an index of its own.
            q.schedule_index(Change::Metadata);
            q.pump();
        }
        q
    }

    fn check_open(&self) -> Result<(), UploadQueueError> {
        match &self.state {
            QueueState::Active => Ok(()),
            QueueState::Deleting(_) | QueueState::Tombstoned | QueueState::Deleted => {
                Err(UploadQueueError::Deleted)
            }
            QueueState::Stopped => Err(UploadQueueError::Stopped),
            QueueState::Broken { reason } => Err(UploadQueueError::Broken(reason.clone())),
        }
    }

    /// Adds a layer written in this queue's generation and schedules its upload (and
    /// an index naming it).
    pub fn handle_add_layer(
        &mut self,
        _now: Instant,
        name: LayerName,
        file_size: u64,
        crc32c: u32,
    ) -> Result<(), UploadQueueError> {
        self.check_open()?;
        if self.layers.contains_key(&name) {
            return Err(UploadQueueError::LayerAlreadyPresent(name));
        }
        let meta = LayerMeta { file_size, generation: self.generation, crc32c };
        if self.names_other_content(&name, meta) {
            return Err(UploadQueueError::ContentChanged(name));
        }
        self.layers.insert(name.clone(), meta);
        self.held_bytes += file_size;
        // Its file was written again: a removal still waiting was for the old copy.
        self.local_removals.remove(&name);
        // A deletion of this very key that has not left the machine is taken back.
        self.waiting_deletions.remove(&(name.clone(), self.generation));
        let key = layer_key(self.tenant, self.timeline, &name, self.generation);
        match self.jobs.get_mut(&name) {
            // Unlinked while in flight, now wanted again: that upload serves.
            Some(job) => job.wanted = true,
            None => {
                let state = if self.handed.contains(&key) {
                    self.effects.push_back(UploadEffect::CancelDeletion { key });
                    JobState::HeldForDeletion
                } else {
                    JobState::Queued
                };
                self.jobs.insert(name.clone(), LayerJob { meta, state, failures: 0, wanted: true });
            }
        }
        self.schedule_index(Change::Added(&name));
        self.pump();
        Ok(())
    }

    /// Removes layers from the remote set (compaction or GC replaced them). Schedules an
    /// index without them; their deletion waits until that index is durable. All or
    /// nothing: an unknown name changes nothing.
    pub fn handle_unlink_layers(
        &mut self,
        _now: Instant,
        names: &[LayerName],
    ) -> Result<(), UploadQueueError> {
        self.check_open()?;
        if let Some(missing) = names.iter().find(|n| !self.layers.contains_key(*n)) {
            return Err(UploadQueueError::UnknownLayer(missing.clone()));
        }
        let mut unlinked = Vec::with_capacity(names.len());
        for name in names {
            let Some(meta) = self.layers.remove(name) else { continue };
            if let Some(job) = self.jobs.get_mut(name) {
                self.held_bytes -= job.meta.file_size;
                match job.state {
                    JobState::InFlight(_) => job.wanted = false,
                    JobState::Queued | JobState::HeldForDeletion | JobState::Backoff { .. } => {
                        self.jobs.remove(name);
                    }
                }
            }
            unlinked.push((name.clone(), meta.generation));
        }
        let ticket = self.schedule_index(Change::Removed(names));
        for key in unlinked {
            self.waiting_deletions.insert(key, ticket);
        }
        self.pump();
        Ok(())
    }

    /// New metadata after a flush (or a GC cutoff change); schedules an index upload.
    pub fn handle_set_metadata(
        &mut self,
        _now: Instant,
        metadata: TimelineMetadata,
    ) -> Result<(), UploadQueueError> {
        self.check_open()?;
        let (current, new) = (self.metadata.disk_consistent_lsn, metadata.disk_consistent_lsn);
        if new < current {
            return Err(UploadQueueError::LsnWentBack { current, new });
        }
        self.metadata = metadata;
        self.schedule_index(Change::Metadata);
        self.pump();
        Ok(())
    }

    /// A barrier: reached (`BarrierReached`) once an index covering every change made
    /// before it is durable. Fails if the queue stops, breaks or starts deleting first.
    pub fn handle_barrier(&mut self, _now: Instant) -> BarrierId {
        let id = BarrierId(self.next_barrier);
        self.next_barrier += 1;
        match self.check_open() {
            Ok(()) => self.barriers.push((id, self.last_ticket)),
            Err(e) => {
                let error = match e {
                    UploadQueueError::Broken(reason) => BarrierError::Broken(reason),
                    UploadQueueError::Deleted => BarrierError::Deleting,
                    _ => BarrierError::Stopped,
                };
                self.effects.push_back(UploadEffect::BarrierReached { id, result: Err(error) });
            }
        }
        self.pump();
        id
    }

    /// Deletes the timeline (only in `Single`): tombstone index, then every layer and
    /// older index, then the tombstone. Queued uploads are dropped.
    ///
    /// A queue recovered from a tombstone (`Tombstoned`: a deletion interrupted by a
    /// crash) resumes: a tombstone of this generation goes up first, then the listing
    /// of the timeline's prefix finds every object the earlier run left.
    pub fn handle_delete_timeline(
        &mut self,
        _now: Instant,
        at: WallTime,
    ) -> Result<(), UploadQueueError> {
        if self.state == QueueState::Tombstoned && self.mode == AttachMode::Single {
            self.state = QueueState::Active;
        }
        self.check_open()?;
        if self.mode != AttachMode::Single {
            return Err(UploadQueueError::NotSingle(self.mode));
        }
        self.drop_queued_work(BarrierError::Deleting);
        self.state = QueueState::Deleting(DeletionPhase::Tombstone);
        self.last_ticket += 1;
        let ticket = self.last_ticket;
        // Every layer goes once the tombstone is durable (it names none of them).
        for (name, meta) in std::mem::take(&mut self.layers) {
            self.waiting_deletions.insert((name, meta.generation), ticket);
        }
        let mut index = IndexPart::empty(self.metadata);
        index.deleted_at = Some(at);
        self.tickets.push_back(Ticket { ticket, index, needs: BTreeSet::new() });
        self.pump();
        Ok(())
    }

    pub fn handle_mode_changed(&mut self, _now: Instant, mode: AttachMode) {
        if mode == self.mode {
            return;
        }
        self.mode = mode;
        if !mode.may_delete() && self.state == QueueState::Active {
            // S-SINGLE-WRITER: deletions handed while Single but not executed yet
            // are cancelled; each comes back (a `Cancelled` report) and waits until
            // the mode allows deleting again. Only a delete already in flight
            // cannot be recalled: its report says `Executed` (or failed).
            for key in self.handed_origin.keys() {
                if self.cancelled_for_mode.insert(key.clone()) {
                    self.effects.push_back(UploadEffect::CancelDeletion { key: key.clone() });
                }
            }
        }
        if matches!(self.state, QueueState::Deleting(_)) && mode != AttachMode::Single {
            self.stop_with(BarrierError::Stopped);
            let error = UploadQueueError::ModeChangedDuringDeletion(mode);
            self.effects.push_back(UploadEffect::DeletionAborted { error });
        }
        self.pump();
    }

    /// Stops for good: queued work is dropped and counted, waiting barriers fail,
    /// in-flight operations may still complete.
    pub fn handle_stop(&mut self, _now: Instant) {
        match self.state {
            QueueState::Active | QueueState::Deleting(_) => self.stop_with(BarrierError::Stopped),
            QueueState::Stopped
            | QueueState::Broken { .. }
            | QueueState::Tombstoned
            | QueueState::Deleted => {}
        }
        self.pump();
    }

    /// True if an upload in flight or an index still around names this key with other
    /// metadata: one key must always hold one content.
    fn names_other_content(&self, name: &LayerName, meta: LayerMeta) -> bool {
        let differs = |m: &LayerMeta| m.generation == meta.generation && *m != meta;
        let indexes = self
            .tickets
            .iter()
            .map(|t| &t.index)
            .chain(self.index_flight.iter().map(|f| &f.index))
            .chain(self.durable.iter().map(|d| &d.index));
        self.jobs.get(name).is_some_and(|j| differs(&j.meta))
            || indexes.into_iter().any(|i| i.layer_metadata.get(name).is_some_and(differs))
    }

    pub fn poll_effect(&mut self) -> Option<UploadEffect> {
        self.effects.pop_front()
    }

    /// The earliest deadline; [`UploadQueue::next_timer`] says which timer it is.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(at, _)| at)
    }

    /// The earliest timer and its reason: call `handle_timeout(at, reason)` then.
    /// Ties go to the first in [`UploadQueue::timers`] order (layers, index, listing).
    pub fn next_timer(&self) -> Option<(Instant, TimerReason)> {
        self.timers().min_by_key(|(at, _)| *at)
    }

    /// Every timer set, with why.
    pub fn timers(&self) -> impl Iterator<Item = (Instant, TimerReason)> + '_ {
        let jobs = self.jobs.iter().filter_map(|(name, j)| match j.state {
            JobState::Backoff { until } => Some((until, TimerReason::LayerRetry(name.clone()))),
            JobState::Queued | JobState::HeldForDeletion | JobState::InFlight(_) => None,
        });
        let index = self.index_flight.iter().filter_map(|f| match f.state {
            IndexState::Backoff { until } => Some((until, TimerReason::IndexRetry(f.version))),
            IndexState::Ready | IndexState::InFlight(_) => None,
        });
        let listing = match self.listing {
            ListState::Backoff { until } => Some((until, TimerReason::ListingRetry)),
            ListState::Idle | ListState::InFlight(_) | ListState::Done => None,
        };
        jobs.chain(index).chain(listing)
    }

    // ---- getters ----

    pub fn projected_lsn(&self) -> Lsn {
        self.projected
    }

    pub fn visible_lsn(&self) -> Lsn {
        self.visible
    }

    /// The desired remote layer set (what the next index names).
    pub fn remote_layers(&self) -> &BTreeMap<LayerName, LayerMeta> {
        &self.layers
    }

    pub fn metadata(&self) -> &TimelineMetadata {
        &self.metadata
    }

    pub fn state(&self) -> &QueueState {
        &self.state
    }

    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Where the newest durable index this queue knows of lives.
    pub fn latest_durable(&self) -> Option<IndexVersion> {
        self.durable.as_ref().map(|d| d.version)
    }

    /// The newest durable index and where it is: what a fresh queue recovers from.
    pub fn durable_index(&self) -> Option<(IndexVersion, &IndexPart)> {
        self.durable.as_ref().map(|d| (d.version, &d.index))
    }

    /// The key of the newest durable index.
    pub fn latest_durable_key(&self) -> Option<RemoteKey> {
        self.latest_durable().map(|v| index_key(self.tenant, self.timeline, v))
    }

    /// Nothing queued, in flight, waiting for a deletion report or in backoff.
    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty()
            && self.tickets.is_empty()
            && self.index_flight.is_none()
            && self.handed.is_empty()
            && self.waiting_deletions.is_empty()
            && self.pending_index_deletions().next().is_none()
    }

    /// True while a stale attachment holds more bytes than `stale_hold_max_bytes`:
    /// the timeline should refuse ingest.
    pub fn backpressure(&self) -> bool {
        self.backpressure_on
    }

    /// Layer uploads plus index snapshots waiting to start (metric).
    pub fn queued_count(&self) -> usize {
        let layers = self.jobs.values().filter(|j| !matches!(j.state, JobState::InFlight(_)));
        let index = usize::from(
            self.index_flight.as_ref().is_some_and(|f| !matches!(f.state, IndexState::InFlight(_))),
        );
        layers.count() + self.tickets.len() + index
    }

    /// Remote operations in flight (metric).
    pub fn in_flight_count(&self) -> usize {
        let index =
            self.index_flight.as_ref().is_some_and(|f| matches!(f.state, IndexState::InFlight(_)));
        let listing = matches!(self.listing, ListState::InFlight(_));
        self.layers_in_flight + usize::from(index) + usize::from(listing)
    }

    /// Operations dropped by stop, break or deletion (metric).
    pub fn dropped_count(&self) -> u64 {
        self.dropped_on_stop
    }

    /// Bytes of layers added but not yet uploaded.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }
}
