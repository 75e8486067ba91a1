//! `check_invariants`: the rules of the module doc, asserted on the machine's state.

use super::machine::{IndexState, JobState, UploadQueue};
use super::types::*;
use crate::generation::Generation;
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use crate::remote_path::{RemoteKey, layer_key, timeline_prefix};
use std::collections::BTreeSet;

impl UploadQueue {
    /// Panics if a rule is broken. Tests run it after every input.
    pub fn check_invariants(&self) {
        self.check_jobs();
        self.check_index_order();
        self.check_handed_keys();
        self.check_lsns_and_state();
        self.check_local_removals();
        self.check_progress();
    }

    /// Bookkeeping of the layer jobs, and S-GEN-SUFFIX for what they upload.
    fn check_jobs(&self) {
        let in_flight = self.jobs.values().filter(|j| matches!(j.state, JobState::InFlight(_)));
        assert_eq!(in_flight.count(), self.layers_in_flight, "layers_in_flight drifted");
        assert!(
            self.layers_in_flight <= self.config.layer_upload_concurrency.max(1),
            "{} layer uploads in flight",
            self.layers_in_flight
        );
        let held: u64 = self.jobs.values().filter(|j| j.wanted).map(|j| j.meta.file_size).sum();
        assert_eq!(held, self.held_bytes, "held_bytes drifted");
        for (name, job) in &self.jobs {
            // S-GEN-SUFFIX: what this queue uploads was written in its generation.
            assert_eq!(job.meta.generation, self.generation, "S-GEN-SUFFIX: job {name}");
            if job.wanted {
                assert_eq!(self.layers.get(name), Some(&job.meta), "wanted job {name} not in set");
            } else {
                assert!(
                    matches!(job.state, JobState::InFlight(_)),
                    "unwanted {name} not in flight"
                );
            }
        }
    }

    /// Index order: tickets ascend and are newer than what is in flight or durable;
    /// S-IDX-ORDER for the newest snapshot.
    fn check_index_order(&self) {
        let mut prev = self.durable_ticket;
        if let Some(f) = &self.index_flight {
            assert!(f.ticket > prev || self.durable_ticket == 0, "index ticket not newer");
            assert_eq!(f.index.seq, f.version.seq, "IndexPart.seq must equal the key's seq");
            assert_eq!(f.version.generation, self.generation, "index of a foreign generation");
            assert!(f.version.seq < self.next_seq, "seq handed out twice");
            prev = prev.max(f.ticket);
        }
        for t in &self.tickets {
            assert!(t.ticket > prev, "S-IDX-ORDER: ticket {} out of order", t.ticket);
            prev = t.ticket;
        }
        assert!(self.last_ticket >= prev, "ticket beyond last_ticket");
        if let (Some(d), Some(f)) = (&self.durable, &self.index_flight)
            && d.version.generation == self.generation
        {
            assert!(f.version.seq > d.version.seq, "index flight older than durable");
        }
        // S-IDX-ORDER for the newest snapshot: its pending layers are live uploads.
        if let Some(t) = self.tickets.back() {
            for name in &t.needs {
                assert!(self.jobs.get(name).is_some_and(|j| j.wanted), "need {name} has no job");
            }
        }
    }

    /// S-DEL-AFTER-INDEX: nothing durable or uploading names a handed-on layer
    /// key, and a re-added one is held for its deletion's report.
    fn check_handed_keys(&self) {
        let (tenant, timeline) = (self.tenant, self.timeline);
        // (Each layer is looked up among the handed layer keys, parsed once, rather
        // than formatting every named layer's key: the same test, `handed_layers`.)
        let handed = self.handed_layers();
        let named =
            self.durable.iter().map(|d| &d.index).chain(self.index_flight.iter().map(|f| &f.index));
        for index in named.filter(|_| !handed.is_empty()) {
            for (name, meta) in &index.layer_metadata {
                assert!(
                    !handed.contains(&(name.clone(), meta.generation)),
                    "S-DEL-AFTER-INDEX: {} handed while named",
                    layer_key(tenant, timeline, name, meta.generation)
                );
            }
        }
        // (A stopped queue dropped its held uploads; its layer set is history.)
        let layers = self.layers.iter().filter(|_| self.is_running() && !handed.is_empty());
        for (name, meta) in layers {
            let held = self.jobs.get(name).is_some_and(|j| j.state == JobState::HeldForDeletion);
            assert!(
                !handed.contains(&(name.clone(), meta.generation)) || held,
                "re-added {} not held for its report",
                layer_key(tenant, timeline, name, meta.generation)
            );
        }
    }

    /// S-PROJECTED, and what each queue state and mode allows.
    fn check_lsns_and_state(&self) {
        assert!(self.visible <= self.projected, "S-PROJECTED: visible > projected");
        assert!(self.visible <= self.validation_requested.max(Lsn(0)), "visible never validated");
        assert!(
            self.projected <= self.metadata.disk_consistent_lsn,
            "S-PROJECTED: projected {} > disk_consistent {}",
            self.projected,
            self.metadata.disk_consistent_lsn
        );
        // Backpressure only in the modes that hold uploads.
        assert!(!self.backpressure_on || !self.mode.may_upload(), "backpressure while uploading");
        if self.is_running() {
            for (_, ticket) in &self.barriers {
                assert!(*ticket > self.durable_ticket, "a reached barrier still waits");
            }
        } else {
            assert!(self.barriers.is_empty(), "barrier waits on a stopped queue");
            assert!(self.tickets.is_empty(), "index queued on a stopped queue");
            assert!(self.waiting_deletions.is_empty(), "deletions kept on a stopped queue");
        }
        if matches!(self.state, QueueState::Deleting(_)) {
            assert_eq!(self.mode, AttachMode::Single, "deleting outside Single");
            assert!(self.layers.is_empty(), "deleting with a layer set");
        }
    }

    /// The handed keys that are layer keys of this timeline, as (name, generation):
    /// a key is in it exactly when it equals `layer_key` of its pair (checked on the
    /// parsed pair), so a lookup here answers `handed.contains(&layer_key(..))`.
    fn handed_layers(&self) -> BTreeSet<(LayerName, Generation)> {
        let prefix = timeline_prefix(self.tenant, self.timeline);
        let parse = |key: &RemoteKey| -> Option<(LayerName, Generation)> {
            let file = key.as_str().strip_prefix(prefix.as_str())?;
            let (name, suffix) = file.split_at_checked(file.len().checked_sub(9)?)?;
            let pair = (name.parse().ok()?, Generation::parse_suffix(suffix).ok()?);
            (layer_key(self.tenant, self.timeline, &pair.0, pair.1) == *key).then_some(pair)
        };
        self.handed.iter().filter_map(parse).collect()
    }

    /// Queued work ⇒ something in flight, a timer set, a deletion report awaited, or
    /// a mode that holds the work.
    fn check_progress(&self) {
        if !self.is_running() || !self.mode.may_upload() {
            return;
        }
        let external = self.in_flight_count() > 0
            || self.poll_timeout().is_some()
            || !self.handed.is_empty()
            || self.effects.iter().any(|e| matches!(e, UploadEffect::CancelDeletion { .. }));
        if self.queued_count() > 0 {
            assert!(external, "queued work with nothing in flight, no timer, no report awaited");
        }
        if let Some(f) = &self.index_flight {
            assert!(f.state != IndexState::Ready, "a ready index was not started");
        }
        if self.state == QueueState::Active && self.mode.may_delete() {
            for ((name, generation), ticket) in &self.waiting_deletions {
                let covered = *ticket > self.durable_ticket
                    && (self.index_flight.is_some() || !self.tickets.is_empty());
                let uploading = self.jobs.get(name).is_some_and(|j| !j.wanted);
                if covered || uploading {
                    continue;
                }
                let key = layer_key(self.tenant, self.timeline, name, *generation);
                assert!(self.handed.contains(&key), "deletion of {key} is stuck");
            }
            assert!(self.pending_index_deletions().next().is_none(), "old index not handed");
        }
    }
}
