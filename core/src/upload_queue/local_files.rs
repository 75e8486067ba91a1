//! The one local thing the upload queue governs: when a layer's local file may be
//! removed. A layer upload reads the local file when it runs (`UploadLayer` →
//! the driver's `RemotePutFile`), so whoever removes that file (eviction, or the
//! timeline after compaction or GC unlinked the layer) asks here first
//! ([`UploadQueue::handle_remove_local`]), and the removal itself is this queue's
//! effect ([`UploadEffect::RemoveLocal`]).
//!
//! **Rule (LOCAL-READ).** `RemoveLocal { name }` is emitted only while the queue
//! has no upload of `name`: none queued, held, in backoff or in flight. A removal
//! asked for while one exists waits for it to end — completed in any way, or
//! dropped by an unlink, a stop or a deletion — and goes out in the pump after
//! that. Cluster seed 3636: compaction unlinked a layer whose upload was still in
//! flight and removed its file at once; the upload then found no file, which the
//! node takes for a permanent error, and the queue (and the timeline) broke for
//! good.
//!
//! **A re-added layer** (the same name added again) was written again by the
//! timeline after the removal was asked for, so a removal still waiting is
//! dropped: it was meant for the old copy and must not take the new one.
//!
//! **Crash.** Nothing here is persisted. A removal lost with the process leaves a
//! local file: start-up keeps it if the loaded index names the layer (the file
//! is a correct copy) and removes it otherwise (S-LOCAL-TRUTH). A removal never
//! runs early: before its `RemoveLocal` the file stays.

use super::machine::UploadQueue;
use super::types::UploadEffect;
use crate::layer_name::LayerName;
use crate::time::Instant;

impl UploadQueue {
    /// The local file of `name` is to be removed (the layer was evicted, or left
    /// the timeline's map). `RemoveLocal { name }` follows, at once or when the
    /// upload of `name` this queue has ends. Taken in every state.
    pub fn handle_remove_local(&mut self, _now: Instant, name: LayerName) {
        self.local_removals.insert(name);
        self.pump();
    }

    /// Removals asked for that still wait for an upload (metric and tests).
    pub fn local_removals_waiting(&self) -> usize {
        self.local_removals.len()
    }

    /// Emits every waiting removal whose layer has no upload left (the pump's last
    /// step, in every state: a stopped queue still completes its uploads).
    pub(super) fn release_local_removals(&mut self) {
        let jobs = &self.jobs;
        let mut released = Vec::new();
        self.local_removals.retain(|name| {
            let free = !jobs.contains_key(name);
            if free {
                released.push(name.clone());
            }
            !free
        });
        for name in released {
            self.effects.push_back(UploadEffect::RemoveLocal { name });
        }
    }

    pub(super) fn check_local_removals(&self) {
        for name in &self.local_removals {
            assert!(
                self.jobs.contains_key(name),
                "LOCAL-READ: the removal of {name}'s local file waits for no upload"
            );
        }
    }
}
