//! What the upload queues and the deletion queue say to each other. The node
//! composite routes these: an upload queue's effect becomes a deletion-queue input,
//! and a deletion-queue effect becomes an upload-queue input.
//!
//! Upload queue → deletion queue:
//! - push: `(tenant, timeline, generation, keys)`: delete these objects once the
//!   generation is validated (`DeletionQueue::handle_push`).
//! - cancel: `(tenant, timeline, key)`: a key re-added while its deletion is queued
//!   (`DeletionQueue::handle_cancel`); answered by a [`DeletionOutcome`].
//! - LSN update: `(tenant, timeline, generation, lsn)`: an index covering `lsn`
//!   finished uploading; validate the generation and report back.
//!
//! Deletion queue → upload queue:
//! - [`DeletionReport`] per key: what finally happened to it.
//! - [`LsnValidation`]: the generation was (or was not) current in a validation
//!   requested after the LSN update arrived.

use crate::generation::Generation;
use crate::id::{TenantId, TimelineId};
use crate::lsn::Lsn;
use crate::remote_path::RemoteKey;

/// What finally happened to one key handed to the deletion queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletionOutcome {
    /// The object was deleted (or was already gone).
    Executed,
    /// The delete failed in a way a retry will not fix.
    FailedPermanently(String),
    /// The generation failed validation: the key was dropped, never deleted.
    DroppedStale,
    /// Cancelled before its list started executing; the object was not deleted.
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionReport {
    pub tenant: TenantId,
    pub timeline: TimelineId,
    pub key: RemoteKey,
    pub outcome: DeletionOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LsnValidation {
    pub tenant: TenantId,
    pub timeline: TimelineId,
    pub generation: Generation,
    pub lsn: Lsn,
    pub valid: bool,
}
