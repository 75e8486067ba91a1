//! Creating a timeline: look in remote storage first, never write over what is there.
//!
//! A create must not hide data: an empty index written in a newer generation would
//! shadow an older generation's index for good (issue 15, item 2). So a create that
//! finds nothing in this node's slots first lists the timeline's remote prefix
//! (an [`Io`], routed back here with what it is waiting for in its
//! [`Route::CreateTimelineCheck`]), then reads the newest index it may load:
//!
//! | remote storage holds | answer |
//! |---|---|
//! | nothing | the timeline is made: its first index is uploaded; 201 once durable |
//! | an index exactly as a create makes it (no layers, every LSN at 0/0, no ancestor, not deleted) and no layer object | that index is adopted (a create that crashed before its answer, retried: item 5); 201 once our generation's index is durable |
//! | anything else (layers, a higher LSN, a tombstone, a newer generation's index, objects but no index, an unreadable index) | 409 naming the generation of the index, its `disk_consistent_lsn` and the highest LSN of any layer |
//!
//! The same rule holds for a timeline this node already runs: an empty one that a
//! create made (no layers, nothing ingested) is what this create would make: 201;
//! anything else is 409. A failed listing or read answers 503 (retry); nothing is
//! created.
//! A tenant attached stale here refuses a new timeline (409): it uploads nothing
//! in that mode, so the first index could never become durable. A create still
//! waiting for its first index when its tenant goes stale is answered 503 then
//! (`answer_creates_that_cannot_finish`); the timeline becomes Active if uploads
//! resume and the index lands, and a retried create gets 201.
//!
//! Ordering: the timeline's machines exist only once the check is done, so nothing
//! of it can be written before. While the check runs, another create of the same
//! timeline gets 503 (its tenant counts the checks in flight). The check is no
//! machine's I/O, so a tenant being stopped does not wait for it: when its answer
//! comes back to a tenant that changed meanwhile (stopping, gone, broken, a new
//! generation), the create is answered 503 and nothing is made.
//!
//! Crash: the check writes nothing. A crash after the first index PUT was sent but
//! before the answer leaves an empty index: the retried create adopts it.

use super::api::{ApiError, RequestId, Response};
use super::io::{Entry, Io, IoError, IoErrorKind, IoResult};
use super::routing::Route;
use super::{Machine, Node, SlotState, TimelineSlot};
use crate::control_plane::{RemoteTenantFound, summarize_tenant_listing};
use crate::generation::Generation;
use crate::id::{TenantId, TimelineId};
use crate::index_part::{IndexPart, IndexVersion, select_index};
use crate::location_conf::LocationMode;
use crate::lsn::Lsn;
use crate::metadata::TimelineMetadata;
use crate::remote_path::{self, RemoteKey};
use crate::timeline::Timeline;
use crate::upload_queue::UploadQueue;

/// Where a timeline create's remote check stands; carried by its route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateCheck {
    /// Listing `tenants/{t}/timelines/{tl}/`.
    List,
    /// Reading the index the listing chose; `found` is what the listing said.
    GetIndex { version: IndexVersion, found: Box<RemoteTenantFound> },
}

/// The LSN every new timeline starts at.
const INITDB_LSN: Lsn = Lsn::ZERO;

impl Node {
    pub(crate) fn create_timeline(
        &mut self,
        req: RequestId,
        tenant: TenantId,
        timeline: TimelineId,
    ) {
        let Some(t) = self.tenants.get(&tenant) else {
            return self.reply(req, Err(ApiError::NotFound(format!("tenant {tenant}"))));
        };
        let generation = t.generation;
        if let Some(reason) = t.unloadable.get(&timeline) {
            let why = format!(
                "timeline {tenant}/{timeline} exists in remote storage but is broken: {reason}"
            );
            return self.reply(req, Err(ApiError::Conflict(why)));
        }
        if t.timelines.contains_key(&timeline) {
            let result = self.existing_timeline(tenant, timeline);
            return self.reply(req, result);
        }
        if t.create_checks.contains(&timeline) {
            let why = format!("timeline {tenant}/{timeline} is being created; retry");
            return self.reply(req, Err(ApiError::unavailable(why)));
        }
        if let LocationMode::AttachedStale { .. } = t.mode {
            // A stale attachment uploads nothing (S-SINGLE-WRITER): the new timeline's
            // first index could never become durable, and the create would wait for
            // it for as long as the tenant stays stale.
            let why = format!(
                "tenant {tenant} is attached stale here (a newer generation holds it \
                 elsewhere); create timeline {timeline} where it is attached"
            );
            return self.reply(req, Err(ApiError::Conflict(why)));
        }
        self.emit_io(
            Route::CreateTimelineCheck {
                req,
                tenant,
                timeline,
                generation,
                check: CreateCheck::List,
            },
            Io::RemoteList { prefix: remote_path::timeline_prefix(tenant, timeline) },
        );
    }

    /// A create of a timeline this node runs: 201 if it is what a create makes.
    fn existing_timeline(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
    ) -> Result<Response, ApiError> {
        let info = self.timeline_info(tenant, timeline)?;
        let Some(slot) = self.slot_mut(tenant, timeline) else {
            return Err(ApiError::NotFound(format!("timeline {tenant}/{timeline}")));
        };
        let exists = |what: String| {
            Err(ApiError::Conflict(format!("timeline {tenant}/{timeline} already exists: {what}")))
        };
        match &slot.state {
            SlotState::Creating { .. } => Err(ApiError::unavailable(format!(
                "timeline {tenant}/{timeline} is being created; retry"
            ))),
            SlotState::Deleting => exists("it is being deleted".to_string()),
            SlotState::Broken(reason) => exists(format!("it is broken: {reason}")),
            SlotState::Active => {
                let empty = slot.upload.remote_layers().is_empty()
                    && slot.timeline.last_ingested_lsn() == INITDB_LSN
                    && slot.timeline.disk_consistent_lsn() == INITDB_LSN;
                if empty {
                    // What this create would make: the same answer as the first time.
                    Ok(Response::TimelineCreated(info))
                } else {
                    exists(format!(
                        "generation {}, disk_consistent_lsn {}, last ingested LSN {}, {} layers",
                        info.generation,
                        info.disk_consistent_lsn,
                        info.last_ingested_lsn,
                        info.layers
                    ))
                }
            }
        }
    }

    /// The remote check of a create answered: a listing, then the index it chose,
    /// each taken by its own step; a failed look answers 503.
    pub(crate) fn on_create_timeline_check(
        &mut self,
        req: RequestId,
        tenant: TenantId,
        timeline: TimelineId,
        generation: Generation,
        check: CreateCheck,
        result: IoResult,
    ) {
        if !self.create_check_still_applies(tenant, timeline, generation) {
            let why = format!(
                "tenant {tenant} changed while timeline {timeline} was being created; retry"
            );
            return self.reply(req, Err(ApiError::unavailable(why)));
        }
        match (check, result) {
            (CreateCheck::List, IoResult::Listing(Ok(entries))) => {
                self.on_create_listing(req, tenant, timeline, generation, &entries)
            }
            (CreateCheck::GetIndex { version, found }, IoResult::Bytes(Ok(bytes))) => {
                self.on_create_index(req, tenant, timeline, version, &found, &bytes)
            }
            (_, IoResult::Listing(Err(e)) | IoResult::Bytes(Err(e))) => {
                let what = match &e {
                    IoError { kind: IoErrorKind::NotFound, .. } => {
                        "the index went while being read".to_string()
                    }
                    other => other.to_string(),
                };
                self.reply(req, look_failed(tenant, timeline, what));
            }
            (check, other) => {
                self.bug(&format!("unexpected result {other:?} for a create check {check:?}"));
                self.reply(req, look_failed(tenant, timeline, "unexpected I/O result".to_string()));
            }
        }
    }

    /// The tenant must still be as the check began: attached, settled, same
    /// generation, and no such timeline.
    fn create_check_still_applies(
        &self,
        tenant: TenantId,
        timeline: TimelineId,
        generation: Generation,
    ) -> bool {
        self.tenant_busy(tenant).is_none()
            && self.tenants.get(&tenant).is_some_and(|t| {
                t.generation == generation
                    && t.state() == crate::tenant::TenantState::Active
                    && !t.timelines.contains_key(&timeline)
                    && !t.unloadable.contains_key(&timeline)
            })
    }

    /// The timeline's remote prefix listed: nothing there makes the timeline; an
    /// index we may load is read next; anything else is 409.
    fn on_create_listing(
        &mut self,
        req: RequestId,
        tenant: TenantId,
        timeline: TimelineId,
        generation: Generation,
        entries: &[Entry],
    ) {
        let keys: Vec<RemoteKey> =
            entries.iter().filter_map(|e| RemoteKey::from_listing(&e.name).ok()).collect();
        let found = summarize_tenant_listing(tenant, &keys);
        if found.is_empty() {
            return self.start_created_timeline(req, tenant, timeline, None);
        }
        let versions: Vec<IndexVersion> = keys
            .iter()
            .filter_map(|k| remote_path::parse_index_key(tenant, timeline, k))
            .filter_map(Result::ok)
            .collect();
        let selection = select_index(generation, &versions);
        if let Some(newer) = selection.newer.last() {
            let what = format!(
                "an index of generation {} above ours ({generation}); {found}",
                newer.generation
            );
            return self.reply(req, exists_remotely(tenant, timeline, what));
        }
        let Some(version) = selection.chosen else {
            return self
                .reply(req, exists_remotely(tenant, timeline, format!("no index; {found}")));
        };
        let check = CreateCheck::GetIndex { version, found: Box::new(found) };
        self.emit_io(
            Route::CreateTimelineCheck { req, tenant, timeline, generation, check },
            Io::RemoteGet { key: remote_path::index_key(tenant, timeline, version) },
        );
    }

    /// The chosen index read: one exactly as a create makes it is adopted; any other
    /// is 409, described.
    fn on_create_index(
        &mut self,
        req: RequestId,
        tenant: TenantId,
        timeline: TimelineId,
        version: IndexVersion,
        found: &RemoteTenantFound,
        bytes: &[u8],
    ) {
        let index = match IndexPart::from_json_bytes(bytes) {
            Ok(index) => index,
            Err(e) => {
                let what =
                    format!("index of generation {} unreadable ({e}); {found}", version.generation);
                return self.reply(req, exists_remotely(tenant, timeline, what));
            }
        };
        if made_by_a_create(&index, found) {
            return self.start_created_timeline(req, tenant, timeline, Some((version, index)));
        }
        let highest = found.highest_lsn.map_or("none".to_string(), |l| l.to_string());
        let what = format!(
            "index of generation {} (seq {}), disk_consistent_lsn {}, {} layers, highest LSN of any layer {highest}{}",
            version.generation,
            version.seq,
            index.disk_consistent_lsn,
            index.layer_metadata.len(),
            if index.deleted_at.is_some() { ", deleted (tombstone)" } else { "" }
        );
        self.reply(req, exists_remotely(tenant, timeline, what));
    }

    /// Starts the timeline's machines: new (nothing remote), or from the empty index
    /// a create made earlier. Answered once an index of our generation is durable
    /// (S-ACTIVE-UPLOADED), by `on_barrier`.
    fn start_created_timeline(
        &mut self,
        req: RequestId,
        tenant: TenantId,
        timeline: TimelineId,
        adopt: Option<(IndexVersion, IndexPart)>,
    ) {
        let now = self.now;
        let (upload_config, mut timeline_config) =
            (self.config.upload.clone(), self.config.timeline.clone());
        let Some(t) = self.tenants.get_mut(&tenant) else {
            return self.reply(req, Err(ApiError::NotFound(format!("tenant {tenant}"))));
        };
        timeline_config.generation = t.generation;
        let mode = super::requests::attach_mode(&t.mode);
        let mut upload = match adopt {
            None => {
                let metadata = TimelineMetadata {
                    disk_consistent_lsn: INITDB_LSN,
                    gc_cutoff_lsn: INITDB_LSN,
                    initdb_lsn: INITDB_LSN,
                    ancestor: None,
                };
                UploadQueue::new_timeline(
                    tenant,
                    timeline,
                    t.generation,
                    mode,
                    metadata,
                    upload_config,
                )
            }
            Some((version, index)) => UploadQueue::recover(
                tenant,
                timeline,
                t.generation,
                mode,
                index,
                version,
                upload_config,
            ),
        };
        upload.handle_barrier(now);
        let mut machine = Timeline::create(tenant, timeline, INITDB_LSN, timeline_config, now);
        let (may_compact, may_delete) = super::requests::background_gates(&t.mode);
        machine.handle_mode(now, may_compact, may_delete);
        t.timelines.insert(
            timeline,
            TimelineSlot::new(SlotState::Creating { req: Some(req) }, machine, upload),
        );
        self.dirty.insert(Machine::Upload(tenant, timeline));
        self.dirty.insert(Machine::Timeline(tenant, timeline));
    }
}

/// An index exactly as a create makes it (no layers, every LSN at 0/0, no ancestor,
/// not deleted), with no layer object beside it.
fn made_by_a_create(index: &IndexPart, found: &RemoteTenantFound) -> bool {
    index.layer_metadata.is_empty()
        && index.deleted_at.is_none()
        && index.disk_consistent_lsn == INITDB_LSN
        && index.metadata.initdb_lsn == INITDB_LSN
        && index.metadata.ancestor.is_none()
        && found.highest_lsn.is_none()
}

/// 409: remote storage holds `what` for the timeline; a create would hide it.
fn exists_remotely(
    tenant: TenantId,
    timeline: TimelineId,
    what: String,
) -> Result<Response, ApiError> {
    Err(ApiError::Conflict(format!(
        "timeline {tenant}/{timeline} exists in remote storage: {what}; a create would hide it"
    )))
}

/// 503: looking in remote storage failed; nothing is created, the create may retry.
fn look_failed(tenant: TenantId, timeline: TimelineId, what: String) -> Result<Response, ApiError> {
    Err(ApiError::unavailable(format!(
        "timeline {tenant}/{timeline}: looking in remote storage failed ({what}); retry"
    )))
}
