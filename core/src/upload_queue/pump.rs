//! Every scheduling decision of the upload queue, in one place: `pump()` runs after
//! every input and starts whatever the ordering rules and the mode allow.

use super::machine::{Handback, IndexFlight, IndexState, JobState, ListState, Ticket, UploadQueue};
use super::types::*;
use crate::index_part::{IndexPart, IndexVersion};
use crate::layer_name::LayerName;
use crate::remote_path::{RemoteKey, index_key, layer_key, timeline_prefix};
use std::collections::BTreeSet;

/// What changed since the previous snapshot (see `schedule_index`).
pub(super) enum Change<'a> {
    Metadata,
    Added(&'a LayerName),
    Removed(&'a [LayerName]),
}

impl UploadQueue {
    pub(super) fn is_running(&self) -> bool {
        match self.state {
            QueueState::Active | QueueState::Deleting(_) => true,
            QueueState::Stopped
            | QueueState::Broken { .. }
            | QueueState::Tombstoned
            | QueueState::Deleted => false,
        }
    }

    /// Takes an index snapshot of the desired state and returns its ticket. The
    /// snapshot replaces the newest queued one if both wait for the same layers
    /// (neither could start before the other); `change` says what differs from it,
    /// so the update is applied in place instead of copying the layer set again.
    pub(super) fn schedule_index(&mut self, change: Change<'_>) -> u64 {
        let needs: BTreeSet<LayerName> =
            self.jobs.iter().filter(|(_, j)| j.wanted).map(|(n, _)| n.clone()).collect();
        if let Some(last) = self.tickets.back_mut().filter(|t| t.needs == needs) {
            let index = &mut last.index;
            index.metadata = self.metadata;
            index.disk_consistent_lsn = self.metadata.disk_consistent_lsn;
            match change {
                Change::Metadata => {}
                Change::Added(name) => {
                    if let Some(meta) = self.layers.get(name) {
                        index.layer_metadata.insert(name.clone(), *meta);
                    }
                }
                Change::Removed(names) => {
                    for name in names {
                        index.layer_metadata.remove(name);
                    }
                }
            }
            debug_assert_eq!(index.layer_metadata, self.layers, "snapshot diverged");
            return last.ticket;
        }
        let index = IndexPart {
            seq: 0,
            layer_metadata: self.layers.clone(),
            disk_consistent_lsn: self.metadata.disk_consistent_lsn,
            metadata: self.metadata,
            deleted_at: None,
        };
        self.last_ticket += 1;
        self.tickets.push_back(Ticket { ticket: self.last_ticket, index, needs });
        self.last_ticket
    }

    /// Drops everything not yet started: layer uploads, index snapshots, an index
    /// waiting for a retry; fails waiting barriers. In-flight work may still complete.
    pub(super) fn drop_queued_work(&mut self, barrier_error: BarrierError) {
        let before = self.jobs.len() + self.tickets.len();
        self.jobs.retain(|_, j| matches!(j.state, JobState::InFlight(_)));
        for job in self.jobs.values_mut() {
            job.wanted = false;
        }
        self.held_bytes = 0;
        self.tickets.clear();
        let mut dropped = before - self.jobs.len();
        if self.index_flight.as_ref().is_some_and(|f| !matches!(f.state, IndexState::InFlight(_))) {
            self.index_flight = None;
            dropped += 1;
        }
        self.dropped_on_stop += dropped as u64;
        for (id, _) in std::mem::take(&mut self.barriers) {
            let result = Err(barrier_error.clone());
            self.effects.push_back(UploadEffect::BarrierReached { id, result });
        }
    }

    pub(super) fn go_broken(&mut self, reason: String) {
        if !self.is_running() {
            return;
        }
        self.stop_with(BarrierError::Broken(reason.clone()));
        self.state = QueueState::Broken { reason: reason.clone() };
        self.effects.push_back(UploadEffect::Broken { reason });
    }

    /// Own-generation index keys older than the newest durable one, not yet handed.
    pub(super) fn pending_index_deletions(&self) -> impl Iterator<Item = IndexVersion> + '_ {
        let newest = self.durable.as_ref().map(|d| d.version);
        self.index_keys
            .iter()
            .copied()
            .filter(move |v| v.generation == self.generation && newest.is_some_and(|n| *v < n))
    }

    pub(super) fn pump(&mut self) {
        if self.is_running() {
            if self.mode.may_upload() {
                self.start_layers();
                self.start_index();
            }
            match self.state {
                QueueState::Active if self.mode.may_delete() => self.hand_deletions(),
                QueueState::Deleting(_) => self.deletion_progress(),
                _ => {}
            }
            self.release_barriers();
        }
        self.update_backpressure();
        self.release_local_removals();
    }

    /// Leaves for `Stopped`: queued work and deletions not yet handed are dropped.
    pub(super) fn stop_with(&mut self, barrier_error: BarrierError) {
        self.drop_queued_work(barrier_error);
        self.dropped_on_stop += self.waiting_deletions.len() as u64;
        self.waiting_deletions.clear();
        self.state = QueueState::Stopped;
    }

    fn start_layers(&mut self) {
        let limit = self.config.layer_upload_concurrency.max(1);
        if self.layers_in_flight >= limit {
            return;
        }
        let mut started = Vec::new();
        for (name, job) in &mut self.jobs {
            if self.layers_in_flight >= limit {
                break;
            }
            if job.state == JobState::Queued {
                let op = self.ops.next_id();
                job.state = JobState::InFlight(op);
                self.layers_in_flight += 1;
                started.push(UploadEffect::UploadLayer { op, name: name.clone(), meta: job.meta });
            }
        }
        self.effects.extend(started);
    }

    fn start_index(&mut self) {
        if let Some(flight) = &mut self.index_flight {
            if flight.state == IndexState::Ready {
                let op = self.ops.next_id();
                flight.state = IndexState::InFlight(op);
                let (version, index) = (flight.version, flight.index.clone());
                self.effects.push_back(UploadEffect::UploadIndex { op, version, index });
            }
            return;
        }
        // The newest snapshot whose layers are all uploaded; older ones are skipped.
        let Some(pos) = self.tickets.iter().rposition(|t| t.needs.is_empty()) else { return };
        // Older snapshots are covered by this one.
        self.tickets.drain(..pos);
        let Some(mut ticket) = self.tickets.pop_front() else { return };
        let version = IndexVersion { generation: self.generation, seq: self.next_seq };
        self.next_seq += 1;
        ticket.index.seq = version.seq;
        self.index_keys.insert(version);
        let op = self.ops.next_id();
        let index = ticket.index.clone();
        self.index_flight = Some(IndexFlight {
            ticket: ticket.ticket,
            version,
            index: ticket.index,
            state: IndexState::InFlight(op),
            failures: 0,
        });
        self.effects.push_back(UploadEffect::UploadIndex { op, version, index });
    }

    /// S-DEL-AFTER-INDEX: an unlinked key goes once an index without it is durable,
    /// no upload of it is in flight and no earlier deletion of it is unreported.
    fn hand_deletions(&mut self) {
        let mut keys = Vec::new();
        let mut origins = Vec::new();
        let durable_ticket = self.durable_ticket;
        let (tenant, timeline) = (self.tenant, self.timeline);
        let jobs = &self.jobs;
        let handed = &mut self.handed;
        self.waiting_deletions.retain(|(name, generation), ticket| {
            let uploading = jobs.get(name).is_some_and(|j| {
                j.meta.generation == *generation && matches!(j.state, JobState::InFlight(_))
            });
            let key = layer_key(tenant, timeline, name, *generation);
            let ready = *ticket <= durable_ticket && !uploading && !handed.contains(&key);
            if ready {
                handed.insert(key.clone());
                origins.push((key.clone(), Handback::Layer(name.clone(), *generation)));
                keys.push(key);
            }
            !ready
        });
        let old_indexes: Vec<IndexVersion> = self.pending_index_deletions().collect();
        for v in old_indexes {
            self.index_keys.remove(&v);
            let key = index_key(tenant, timeline, v);
            self.handed.insert(key.clone());
            origins.push((key.clone(), Handback::Index(v)));
            keys.push(key);
        }
        self.handed_origin.extend(origins);
        if !keys.is_empty() {
            self.effects
                .push_back(UploadEffect::HandDeletions { generation: self.generation, keys });
        }
    }

    /// Timeline deletion: tombstone durable → layers, then older indexes, then what a
    /// listing of the prefix finds → deleted, with the tombstone kept.
    fn deletion_progress(&mut self) {
        let QueueState::Deleting(phase) = &self.state else { return };
        match phase {
            DeletionPhase::Tombstone => {}
            DeletionPhase::Objects => {
                if !self.deletion_handed && self.jobs.is_empty() {
                    self.deletion_handed = true;
                    let (tenant, timeline) = (self.tenant, self.timeline);
                    let mut keys: Vec<RemoteKey> = Vec::new();
                    for (name, generation) in
                        std::mem::take(&mut self.waiting_deletions).into_keys()
                    {
                        keys.push(layer_key(tenant, timeline, &name, generation));
                    }
                    let tombstone = self.durable.as_ref().map(|d| d.version);
                    let indexes: Vec<RemoteKey> = self
                        .index_keys
                        .iter()
                        .filter(|v| Some(**v) != tombstone)
                        .map(|v| index_key(tenant, timeline, *v))
                        .collect();
                    self.index_keys.retain(|v| Some(*v) == tombstone);
                    for batch in [keys, indexes] {
                        let fresh: Vec<RemoteKey> =
                            batch.into_iter().filter(|k| self.handed.insert(k.clone())).collect();
                        if !fresh.is_empty() {
                            let generation = self.generation;
                            let keys = fresh;
                            self.effects
                                .push_back(UploadEffect::HandDeletions { generation, keys });
                        }
                    }
                }
                // Then list the prefix: objects of earlier runs this queue never knew.
                if self.deletion_handed && self.listing == ListState::Idle {
                    let op = self.ops.next_id();
                    self.listing = ListState::InFlight(op);
                    let prefix = timeline_prefix(self.tenant, self.timeline);
                    self.effects.push_back(UploadEffect::ListTimeline { op, prefix });
                }
                if self.listing == ListState::Done && self.handed.is_empty() {
                    // The tombstone stays. A PUT the store applies late (an index of
                    // this or an older generation that was given up on) can land
                    // after everything else is gone; with the tombstone in place it
                    // never becomes the newest index, so it can neither bring the
                    // timeline back nor name deleted layers (S-IDX-REF). And as long
                    // as any object of the timeline exists, an index exists.
                    self.index_keys.clear();
                    self.state = QueueState::Deleted;
                    self.effects.push_back(UploadEffect::TimelineDeleted);
                }
            }
        }
    }

    fn release_barriers(&mut self) {
        let durable = self.durable_ticket;
        let mut reached = Vec::new();
        self.barriers.retain(|(id, ticket)| {
            let done = *ticket <= durable;
            if done {
                reached.push(*id);
            }
            !done
        });
        for id in reached {
            self.effects.push_back(UploadEffect::BarrierReached { id, result: Ok(()) });
        }
    }

    fn update_backpressure(&mut self) {
        let on = self.state == QueueState::Active
            && !self.mode.may_upload()
            && self.held_bytes > self.config.stale_hold_max_bytes;
        if on != self.backpressure_on {
            self.backpressure_on = on;
            self.effects.push_back(UploadEffect::Backpressure { on });
        }
    }
}
