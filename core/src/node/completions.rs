//! Completions: where each finished [`Io`] returns, by its [`Route`], to the
//! machine that asked (the table in `routing.rs`). [`Node::on_io_done`] dispatches
//! on the route; each handler below serves one route, grouped by family: a
//! timeline's own I/O, downloads, uploads, the deletion queue, the control plane,
//! local removals that are only logged.

use super::io::{self, Entry, Io, IoError, IoErrorKind, IoResult};
use super::routing::Route;
use super::{Machine, Node, RefusingMachine};
use crate::control_plane::max_generation_in_listing;
use crate::id::{OpId, TenantId, TimelineId};
use crate::index_part::LayerMeta;
use crate::layer_name::LayerName;
use crate::page_cache::{FillId, RequestKind, ValueKey};
use crate::remote_path::{self, RemoteKey};
use crate::timeline::{TimelineCompletion, TimelineInput};

/// How many times a layer download is tried while the size and CRC32C check
/// refuses it, before the object is taken to be corrupt in remote storage (the
/// timeline goes Broken naming it). A corruption on the way (a flipped bit the
/// transport's own checks missed; the simulator's `remote.get_to_file.corrupt`)
/// does not repeat; one seen this many times in a row is the stored object. The
/// retries are immediate: nothing is written locally by a refused download, and
/// a read waits on it.
pub(crate) const CORRUPT_DOWNLOAD_ATTEMPTS: u32 = 4;

impl Node {
    /// Routes a completed [`Io`] to whoever asked.
    pub(crate) fn on_io_done(&mut self, route: Route, result: IoResult) {
        match route {
            Route::Timeline { tenant, timeline, inner, redo } => {
                self.on_timeline_io(tenant, timeline, inner, redo, result)
            }
            Route::LayerFill { tenant: _, fill } => self.on_layer_fill(fill, result),
            Route::Redo { tenant, timeline, inner, kind, key } => {
                self.on_redo_done(tenant, timeline, inner, kind, key, result)
            }
            Route::Download { tenant, timeline, inner, name, meta, attempt } => {
                self.on_download(tenant, timeline, inner, name, meta, attempt, result)
            }
            Route::UploadPut { tenant, timeline, inner, layer } => {
                self.on_upload_put(tenant, timeline, inner, layer, result)
            }
            Route::UploadList { tenant, timeline, inner } => {
                self.on_upload_list(tenant, timeline, inner, result)
            }
            Route::Deletion { inner } => self.on_deletion_io(inner, result),
            Route::ControlPlanePersist { inner } => self.on_cp_persisted(inner, result),
            Route::ControlPlaneCall { attempt } => self.on_cp_sent(attempt, result),
            Route::ControlPlaneList { inner, tenant } => self.on_cp_listing(inner, tenant, result),
            Route::Startup(step) => self.on_startup_io(step, result),
            Route::Manager { tenant } => self.on_manager_io(tenant, result),
            Route::GenerationCheck { tenant, at_least } => {
                self.on_generation_check(tenant, at_least, result)
            }
            Route::CreateTimelineCheck { req, tenant, timeline, generation, check } => {
                self.on_create_timeline_check(req, tenant, timeline, generation, check, result)
            }
            Route::EvictLocal { tenant, timeline, layer } => {
                on_evict_local(tenant, timeline, &layer, &result)
            }
            Route::DetachedRemoved => on_detached_removed(&result),
            Route::Secondary { tenant, incarnation, inner } => {
                self.on_secondary_io(tenant, incarnation, inner, result)
            }
        }
    }

    // A timeline's own I/O.

    /// A timeline's write, read or redo, done by the driver.
    fn on_timeline_io(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
        inner: OpId,
        redo: bool,
        result: IoResult,
    ) {
        let completion = match result {
            IoResult::Done(r) => TimelineCompletion::Written(r),
            IoResult::Bytes(r) if redo => TimelineCompletion::Redone(r),
            IoResult::Bytes(r) => TimelineCompletion::Read(r),
            IoResult::Listing(_) | IoResult::CpReply(_) => {
                return self.bug("listing or control-plane result for a timeline op");
            }
        };
        self.complete_timeline(tenant, timeline, inner, completion);
    }

    /// A page-cache miss read: its bytes go to every waiter of the fill.
    fn on_layer_fill(&mut self, fill: FillId, result: IoResult) {
        let IoResult::Bytes(r) = result else {
            return self.bug("unexpected result for a layer read");
        };
        let Some((key, waiters)) =
            self.page_cache.complete_layer_fill(fill, r.as_ref().ok().map(Vec::as_slice))
        else {
            return self.bug("completion of an unknown page-cache fill");
        };
        // S16: every waiter is handed the bytes with the completion; none
        // looks the cache up again.
        for op in waiters {
            let c = TimelineCompletion::Read(r.clone());
            self.complete_timeline(key.tenant, key.timeline, op, c);
        }
    }

    /// A redo the page cache did not answer: its value is cached, then returned.
    fn on_redo_done(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
        inner: OpId,
        kind: RequestKind,
        key: ValueKey,
        result: IoResult,
    ) {
        let IoResult::Bytes(r) = result else {
            return self.bug("unexpected result for a redo");
        };
        if let Ok(value) = &r {
            self.page_cache.insert_value(key, kind, value.clone());
        }
        self.complete_timeline(tenant, timeline, inner, TimelineCompletion::Redone(r));
    }

    // Downloads.

    /// A download into the layer's local file: done, refused by the size and
    /// CRC32C check (tried again up to [`CORRUPT_DOWNLOAD_ATTEMPTS`], then the
    /// object is corrupt and breaks the timeline), or failed.
    #[allow(clippy::too_many_arguments)]
    fn on_download(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
        inner: OpId,
        name: LayerName,
        meta: LayerMeta,
        attempt: u32,
        result: IoResult,
    ) {
        // The local file may have changed under the layer's name.
        self.invalidate_layer(tenant, timeline, &name);
        let r = match result {
            IoResult::Done(r) => r,
            other => return self.bug(&format!("unexpected result for a download: {other:?}")),
        };
        match r {
            Err(e) if e.kind == IoErrorKind::Corrupt => {
                let object = remote_path::layer_key(tenant, timeline, &name, meta.generation);
                if attempt + 1 < CORRUPT_DOWNLOAD_ATTEMPTS {
                    tracing::warn!(%object, attempt, error = %e, "downloaded layer refused by its check; downloading again");
                    self.download_layer(tenant, timeline, inner, name, meta, attempt + 1);
                } else {
                    self.on_corrupt_download(tenant, timeline, inner, object, e.message);
                }
            }
            r => self.complete_timeline(tenant, timeline, inner, TimelineCompletion::Downloaded(r)),
        }
    }

    /// The object is what remote storage holds: no retry can fix it. The read
    /// fails with the typed error and the timeline goes Broken naming the object
    /// (issue 15 item 7).
    fn on_corrupt_download(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
        inner: OpId,
        object: RemoteKey,
        why: String,
    ) {
        let error = IoError::remote(IoErrorKind::Corrupt, object.as_str(), why.clone());
        self.complete_timeline(tenant, timeline, inner, TimelineCompletion::Downloaded(Err(error)));
        let reason = super::BrokenReason::Corrupt { object, reason: why };
        self.break_timeline(tenant, timeline, reason);
        self.dirty.insert(Machine::Timeline(tenant, timeline));
    }

    // Uploads.

    /// The upload of a layer or an index; a layer now durable remotely may be
    /// evicted.
    fn on_upload_put(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
        inner: OpId,
        layer: Option<LayerName>,
        result: IoResult,
    ) {
        let now = self.now;
        let r = match result {
            IoResult::Done(Ok(())) => Ok(()),
            // The local copy of a layer the queue must upload is gone or
            // unreadable (the adapter names the local path): nothing a retry
            // can fix.
            // A corrupt local copy (the adapter's check against the layer map's size
            // and CRC32C refused it) keeps its kind: it is never uploaded, and the
            // queue (and its timeline) goes Broken naming it.
            IoResult::Done(Err(e))
                if matches!(e.target, io::IoTarget::Local(_)) && e.kind != IoErrorKind::Corrupt =>
            {
                Err(IoError {
                    kind: IoErrorKind::Permanent,
                    message: format!("reading the local layer for upload: {}", e.message),
                    ..e
                })
            }
            IoResult::Done(Err(e)) => Err(e),
            _ => return self.bug("unexpected result for an upload"),
        };
        // A layer durable remotely may be evicted locally from now on.
        if r.is_ok()
            && let Some(layer) = layer
            && self
                .with_machines(tenant, timeline, |slot| {
                    slot.timeline.handle_layers_uploaded(now, std::slice::from_ref(&layer))
                })
                .is_some()
        {
            self.dirty.insert(Machine::Timeline(tenant, timeline));
        }
        self.complete_upload(tenant, timeline, inner, r);
    }

    /// The listing of a timeline being deleted.
    fn on_upload_list(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
        inner: OpId,
        result: IoResult,
    ) {
        let now = self.now;
        let r = match result {
            IoResult::Listing(Ok(entries)) => {
                Ok(entries.iter().filter_map(|e| RemoteKey::from_listing(&e.name).ok()).collect())
            }
            IoResult::Listing(Err(e)) => Err(e),
            _ => return self.bug("unexpected result for a timeline listing"),
        };
        if let Some(listed) =
            self.with_machines(tenant, timeline, |slot| slot.upload.handle_listing(now, inner, r))
        {
            if let Err(e) = listed {
                self.refused(RefusingMachine::UploadQueue, "a timeline listing", &e);
            }
            self.dirty.insert(Machine::Upload(tenant, timeline));
        }
    }

    // The deletion queue.

    /// A deletion-queue list, header or object deletion.
    fn on_deletion_io(&mut self, inner: OpId, result: IoResult) {
        let now = self.now;
        let r = match result {
            // A missing object or list file counts as done.
            IoResult::Done(Ok(()) | Err(IoError { kind: IoErrorKind::NotFound, .. })) => Ok(()),
            IoResult::Done(Err(e)) => Err(e),
            _ => return self.bug("unexpected result for a deletion-queue op"),
        };
        if let Some(dq) = &mut self.dq {
            let refused = dq.handle_completion(now, inner, r).err();
            self.dirty.insert(Machine::DeletionQueue);
            if let Some(e) = refused {
                self.refused(RefusingMachine::DeletionQueue, "a completion", &e);
            }
        }
    }

    // The control plane.

    /// A control-plane store change.
    fn on_cp_persisted(&mut self, inner: OpId, result: IoResult) {
        let now = self.now;
        let r = match result {
            IoResult::Done(r) => r,
            other => Err(IoError::new(
                IoErrorKind::Permanent,
                io::IoTarget::Store,
                format!("unexpected result for a store change: {other:?}"),
            )),
        };
        if let Err(e) = self.cp.handle_persisted(now, inner, r) {
            self.refused(RefusingMachine::ControlPlane, "a store completion", &e);
        }
        self.dirty.insert(Machine::ControlPlane);
    }

    /// The listing of a tenant's remote generations; a failed one is retried.
    fn on_cp_listing(&mut self, inner: OpId, tenant: TenantId, result: IoResult) {
        let now = self.now;
        match result {
            IoResult::Listing(Ok(entries)) => {
                let keys: Vec<RemoteKey> = entries
                    .iter()
                    .filter_map(|e: &Entry| RemoteKey::from_listing(&e.name).ok())
                    .collect();
                let max = max_generation_in_listing(tenant, &keys);
                if let Err(e) = self.cp.handle_remote_generations(now, inner, max) {
                    self.refused(RefusingMachine::ControlPlane, "a generations listing", &e);
                }
                self.dirty.insert(Machine::ControlPlane);
            }
            IoResult::Listing(Err(e)) => {
                // The control plane must not guess: retry the listing.
                tracing::warn!(%tenant, error = %e, "listing remote generations failed; retrying");
                self.emit_io(
                    Route::ControlPlaneList { inner, tenant },
                    Io::RemoteList { prefix: remote_path::tenant_prefix(tenant) },
                );
            }
            _ => self.bug("unexpected result for a remote listing"),
        }
    }

    // Returning completions to a timeline's machines.

    pub(super) fn complete_timeline(
        &mut self,
        t: TenantId,
        tl: TimelineId,
        inner: OpId,
        c: TimelineCompletion,
    ) {
        let now = self.now;
        let input = TimelineInput::Completion { op: inner, completion: c };
        let Some(r) = self.with_machines(t, tl, |slot| slot.timeline.handle(now, input)) else {
            return;
        };
        if let Err(e) = r {
            self.refused(RefusingMachine::Timeline, &format!("a completion ({t}/{tl})"), &e);
        }
        self.dirty.insert(Machine::Timeline(t, tl));
    }

    fn complete_upload(
        &mut self,
        t: TenantId,
        tl: TimelineId,
        inner: OpId,
        r: Result<(), IoError>,
    ) {
        let now = self.now;
        let Some(r) =
            self.with_machines(t, tl, |slot| slot.upload.handle_completion(now, inner, r))
        else {
            return;
        };
        if let Err(e) = r {
            self.refused(RefusingMachine::UploadQueue, &format!("a completion ({t}/{tl})"), &e);
        }
        self.dirty.insert(Machine::Upload(t, tl));
    }
}

// Local removals: their outcome only matters for logs.

/// Removing the local file of an evicted or unlinked layer (a missing file is fine).
fn on_evict_local(tenant: TenantId, timeline: TimelineId, layer: &LayerName, result: &IoResult) {
    if !matches!(result, IoResult::Done(Ok(()) | Err(IoError { kind: IoErrorKind::NotFound, .. })))
    {
        tracing::warn!(%tenant, %timeline, %layer, ?result, "removing a local layer file failed");
    }
}

/// The background removal of a detached tenant's or deleted timeline's directory.
/// A directory already gone is fine: start-up finishes the deletion of every
/// timeline it finds tombstoned, and removes its directory again each time.
fn on_detached_removed(result: &IoResult) {
    if !matches!(result, IoResult::Done(Ok(()) | Err(IoError { kind: IoErrorKind::NotFound, .. })))
    {
        tracing::warn!(
            ?result,
            "removing a detached tenant's or deleted timeline's directory failed; start-up retries"
        );
    }
}
