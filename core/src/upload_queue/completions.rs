//! Inputs from the world: completions of remote operations, timers, and what the
//! deletion queue reports back (deletion outcomes, LSN validations).

use super::machine::{
    Durable, Handback, IndexFlight, IndexState, JobState, ListState, UploadQueue,
};
use super::types::*;
use crate::deletion_queue::{DeletionOutcome, DeletionReport, LsnValidation};
use crate::id::OpId;
use crate::io_error::IoError;
use crate::layer_name::LayerName;
use crate::remote_path::{RemoteKey, layer_key};
use crate::time::Instant;

impl UploadQueue {
    pub fn handle_completion(
        &mut self,
        now: Instant,
        op: OpId,
        result: Result<(), IoError>,
    ) -> Result<(), UploadQueueError> {
        if let Some(name) = self.job_in_flight(op) {
            self.layers_in_flight -= 1;
            self.complete_layer(now, name, result);
        } else if self.index_flight.as_ref().is_some_and(|f| f.state == IndexState::InFlight(op)) {
            self.complete_index(now, result);
        } else {
            return Err(UploadQueueError::NotInFlight(op));
        }
        self.pump();
        Ok(())
    }

    fn job_in_flight(&self, op: OpId) -> Option<LayerName> {
        // Few jobs are in flight at once (bounded by the concurrency).
        self.jobs.iter().find(|(_, j)| j.state == JobState::InFlight(op)).map(|(n, _)| n.clone())
    }

    fn complete_layer(&mut self, now: Instant, name: LayerName, result: Result<(), IoError>) {
        let running = self.is_running();
        let Some(job) = self.jobs.get_mut(&name) else { return };
        // An unlinked upload is not retried: its key's deletion is waiting anyway.
        let open = running && job.wanted;
        match result {
            Ok(()) => {
                let job = self.jobs.remove(&name).expect("just found");
                if job.wanted {
                    self.held_bytes -= job.meta.file_size;
                }
                for t in &mut self.tickets {
                    t.needs.remove(&name);
                }
            }
            Err(e) if e.kind.is_retried_remotely() && open => {
                job.failures += 1;
                let until = now.plus_millis(self.config.backoff_ms(job.failures));
                job.state = JobState::Backoff { until };
            }
            Err(e) if e.kind.is_retried_remotely() => {
                // Stopped or broken: nothing retries. Drop it.
                let job = self.jobs.remove(&name).expect("just found");
                self.held_bytes -= if job.wanted { job.meta.file_size } else { 0 };
            }
            Err(cause) => {
                let job = self.jobs.remove(&name).expect("just found");
                self.held_bytes -= if job.wanted { job.meta.file_size } else { 0 };
                self.go_broken(format!("uploading layer {name}: {cause}"));
            }
        }
    }

    fn complete_index(&mut self, now: Instant, result: Result<(), IoError>) {
        let open = self.is_running();
        let flight = self.index_flight.as_mut().expect("checked by the caller");
        match result {
            Ok(()) => {
                let flight = self.index_flight.take().expect("checked");
                self.index_durable(flight);
            }
            Err(e) if e.kind.is_retried_remotely() && open => {
                flight.failures += 1;
                let until = now.plus_millis(self.config.backoff_ms(flight.failures));
                flight.state = IndexState::Backoff { until };
            }
            Err(e) if e.kind.is_retried_remotely() => self.index_flight = None,
            Err(cause) => {
                let version = self.index_flight.take().expect("checked").version;
                self.go_broken(format!("uploading index {version:?}: {cause}"));
            }
        }
    }

    fn index_durable(&mut self, flight: IndexFlight) {
        let IndexFlight { ticket, version, index, .. } = flight;
        self.durable_ticket = self.durable_ticket.max(ticket);
        let tombstone = index.deleted_at.is_some();
        let lsn = index.disk_consistent_lsn;
        self.durable = Some(Durable { version, index });
        if !self.is_running() {
            return;
        }
        if lsn > self.projected && !tombstone {
            self.projected = lsn;
            let (projected, visible) = (self.projected, self.visible);
            self.effects.push_back(UploadEffect::LsnAdvanced { projected, visible });
        }
        if self.projected > self.validation_requested && !tombstone {
            let lsn = self.projected;
            self.validation_requested = lsn;
            self.effects.push_back(UploadEffect::ValidateLsn { generation: self.generation, lsn });
        }
        if tombstone {
            self.effects.push_back(UploadEffect::TombstoneDurable);
            self.state = QueueState::Deleting(DeletionPhase::Objects);
            self.deletion_handed = false;
            self.listing = ListState::Idle;
            self.listing_failures = 0;
        }
    }

    /// The driver listed `ListTimeline`'s prefix. Every key found, except the
    /// tombstone, is handed to the deletion queue before the tombstone itself.
    pub fn handle_listing(
        &mut self,
        now: Instant,
        op: OpId,
        result: Result<Vec<RemoteKey>, IoError>,
    ) -> Result<(), UploadQueueError> {
        if self.listing != ListState::InFlight(op) {
            return Err(UploadQueueError::NotInFlight(op));
        }
        self.listing = ListState::Done;
        if !matches!(self.state, QueueState::Deleting(DeletionPhase::Objects)) {
            return Ok(());
        }
        match result {
            Ok(keys) => {
                let tombstone = self.latest_durable_key();
                let prefix = crate::remote_path::timeline_prefix(self.tenant, self.timeline);
                let fresh: Vec<RemoteKey> = keys
                    .into_iter()
                    .filter(|k| Some(k) != tombstone.as_ref() && k.as_str().starts_with(&prefix))
                    .filter(|k| self.handed.insert(k.clone()))
                    .collect();
                if !fresh.is_empty() {
                    let generation = self.generation;
                    self.effects.push_back(UploadEffect::HandDeletions { generation, keys: fresh });
                }
            }
            Err(e) if e.kind.is_retried_remotely() => {
                self.listing_failures += 1;
                let until = now.plus_millis(self.config.backoff_ms(self.listing_failures));
                self.listing = ListState::Backoff { until };
            }
            Err(cause) => {
                self.go_broken(format!("listing the timeline for deletion: {cause}"));
            }
        }
        self.pump();
        Ok(())
    }

    /// Fires one timer, named by the caller ([`UploadQueue::next_timer`] says which
    /// and when): that retry becomes ready, nothing else changes before the pump.
    /// A timer that is not set, or not yet due at `now`, does nothing (a caller that
    /// fired it late after the machine moved on).
    pub fn handle_timeout(&mut self, now: Instant, timer: TimerReason) {
        match timer {
            TimerReason::ListingRetry => {
                if let ListState::Backoff { until } = self.listing
                    && until <= now
                {
                    self.listing = ListState::Idle;
                }
            }
            TimerReason::LayerRetry(name) => {
                if let Some(job) = self.jobs.get_mut(&name)
                    && let JobState::Backoff { until } = job.state
                    && until <= now
                {
                    job.state = JobState::Queued;
                }
            }
            TimerReason::IndexRetry(version) => {
                if let Some(f) = &mut self.index_flight
                    && f.version == version
                    && let IndexState::Backoff { until } = f.state
                    && until <= now
                {
                    f.state = IndexState::Ready;
                }
            }
        }
        self.pump();
    }

    pub fn handle_deletion_report(&mut self, _now: Instant, report: DeletionReport) {
        if report.tenant != self.tenant || report.timeline != self.timeline {
            return;
        }
        if !self.handed.remove(&report.key) {
            return;
        }
        let origin = self.handed_origin.remove(&report.key);
        let for_mode = self.cancelled_for_mode.remove(&report.key);
        // A re-added layer's upload waits for this key's report whatever its
        // outcome; once released, the key is wanted again and must not wait for
        // deletion, even if the mode asked for the cancellation too.
        let re_added = self.release_upload_held_for(&report.key);
        if for_mode
            && !re_added
            && report.outcome == DeletionOutcome::Cancelled
            && self.state == QueueState::Active
        {
            // Cancelled because the mode stopped allowing deletions: wait again.
            match origin {
                Some(Handback::Layer(name, generation)) => {
                    let ticket = self.durable_ticket;
                    self.waiting_deletions.insert((name, generation), ticket);
                }
                Some(Handback::Index(version)) => {
                    self.index_keys.insert(version);
                }
                None => {}
            }
            self.pump();
            return;
        }
        if let QueueState::Deleting(_) = self.state {
            match report.outcome {
                DeletionOutcome::Executed => {}
                DeletionOutcome::Cancelled => {
                    // Not deleted: hand it on again so it goes before the tombstone.
                    self.handed.insert(report.key.clone());
                    let keys = vec![report.key];
                    self.effects.push_back(UploadEffect::HandDeletions {
                        generation: self.generation,
                        keys,
                    });
                }
                DeletionOutcome::FailedPermanently(cause) => {
                    self.go_broken(format!("deleting {} failed: {cause}", report.key));
                }
                DeletionOutcome::DroppedStale => {
                    self.go_broken(format!(
                        "deleting {}: generation {} is no longer current",
                        report.key, self.generation
                    ));
                }
            }
        }
        self.pump();
    }

    /// Releases the upload of a re-added layer held until `key`'s deletion report;
    /// whether there was one.
    fn release_upload_held_for(&mut self, key: &RemoteKey) -> bool {
        let mut released = false;
        for (name, job) in &mut self.jobs {
            if job.state == JobState::HeldForDeletion
                && layer_key(self.tenant, self.timeline, name, job.meta.generation) == *key
            {
                job.state = JobState::Queued;
                released = true;
            }
        }
        released
    }

    pub fn handle_lsn_validation(&mut self, _now: Instant, v: LsnValidation) {
        let ours = v.tenant == self.tenant && v.timeline == self.timeline;
        if ours
            && v.valid
            && v.generation == self.generation
            && v.lsn <= self.projected
            && v.lsn <= self.validation_requested
            && v.lsn > self.visible
            && self.is_running()
        {
            self.visible = v.lsn;
            let (projected, visible) = (self.projected, self.visible);
            self.effects.push_back(UploadEffect::LsnAdvanced { projected, visible });
        }
    }
}
