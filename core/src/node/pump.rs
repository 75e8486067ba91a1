//! The pump: drains every dirty machine's effects and routes each to the machine
//! or [`Io`] it goes to (the table in `routing.rs`), within the same input.

use super::api::{ApiError, RequestId, Response};
use super::io::{self, Io};
use super::routing::{CpWaiter, Route};
use super::{Machine, Node};
use crate::control_plane::{ControlPlaneEffect, CpRequest};
use crate::deletion_list::{DELETION_HEADER_FILE_NAME, DeletionList};
use crate::deletion_queue::DeletionEffect;
use crate::file_check::ExpectedFile;
use crate::generation::Generation;
use crate::id::{OpId, TenantId, TimelineId};
use crate::index_part::LayerMeta;
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use crate::remote_path;
use crate::timeline::TimelineEffect;
use crate::trace::Direction;
use crate::upload_queue::{UploadEffect, UploadQueue, UploadQueueError};
use std::ops::ControlFlow;

impl Node {
    /// Drains every dirty machine's effects, routing each, until all are quiet.
    pub(crate) fn pump(&mut self) {
        // Bounded: routing only moves work between machines; a loop here would be a bug.
        for _ in 0..1_000_000 {
            let Some(machine) = self.dirty.pop_first() else {
                self.check_shutdown_progress();
                return;
            };
            match machine {
                Machine::ControlPlane => self.drain_cp(),
                Machine::ControlPlaneClient => self.drain_cp_client(),
                Machine::DeletionQueue => self.drain_dq(),
                Machine::Timeline(t, tl) => {
                    self.drain_timeline(t, tl);
                    self.recount_memory(t, tl);
                    self.touch_tenant(t);
                }
                Machine::Upload(t, tl) => {
                    self.drain_upload(t, tl);
                    self.touch_tenant(t);
                }
                Machine::Manager => self.drain_manager(),
                Machine::Scheduler => self.drain_scheduler(),
                Machine::Tenant(t) => self.advance_tenant(t),
                Machine::Secondary(t) => self.drain_secondary(t),
            }
            let next = self.machine_timer(machine);
            self.timers.set(machine, next);
        }
        unreachable!("node pump did not settle: a routing loop");
    }

    fn drain_cp(&mut self) {
        while let Some(effect) = self.cp.poll_effect() {
            self.trace_lazy("control_plane", None, Direction::Effect, || format!("{effect:?}"));
            match effect {
                ControlPlaneEffect::Persist { op, change } => self
                    .emit_io(Route::ControlPlanePersist { inner: op }, Io::StoreApply { change }),
                ControlPlaneEffect::ListRemoteGenerations { op, tenant } => self.emit_io(
                    Route::ControlPlaneList { inner: op, tenant },
                    Io::RemoteList { prefix: remote_path::tenant_prefix(tenant) },
                ),
                ControlPlaneEffect::Reply { req, reply } => self.on_cp_reply(req, reply),
            }
        }
    }

    fn drain_dq(&mut self) {
        loop {
            let Some(effect) = self.dq.as_mut().and_then(|dq| dq.poll_effect()) else {
                return;
            };
            self.trace_lazy("deletion_queue", None, Direction::Effect, || {
                super::trace::describe_dq(&effect)
            });
            match effect {
                DeletionEffect::WriteList { op, sequence, bytes } => self.emit_io(
                    Route::Deletion { inner: op },
                    Io::DiskWrite {
                        path: io::deletion_path(&DeletionList::file_name(sequence)),
                        bytes,
                    },
                ),
                DeletionEffect::WriteHeader { op, bytes } => self.emit_io(
                    Route::Deletion { inner: op },
                    Io::DiskWrite { path: io::deletion_path(DELETION_HEADER_FILE_NAME), bytes },
                ),
                DeletionEffect::RemoveList { op, sequence } => self.emit_io(
                    Route::Deletion { inner: op },
                    Io::DiskRemove { path: io::deletion_path(&DeletionList::file_name(sequence)) },
                ),
                DeletionEffect::DeleteObjects { op, keys } => {
                    self.emit_io(Route::Deletion { inner: op }, Io::RemoteDelete { keys })
                }
                DeletionEffect::Validate { op, tenants } => {
                    let waiter = CpWaiter::Validation { dq_op: op };
                    self.cp_call(waiter, CpRequest::Validate { tenants });
                }
                DeletionEffect::Report(report) => {
                    let (t, tl, now) = (report.tenant, report.timeline, self.now);
                    if self
                        .with_machines(t, tl, |slot| {
                            slot.upload.handle_deletion_report(now, report)
                        })
                        .is_some()
                    {
                        self.dirty.insert(Machine::Upload(t, tl));
                    }
                }
                DeletionEffect::LsnValidated(v) => {
                    let (t, tl, now) = (v.tenant, v.timeline, self.now);
                    if self
                        .with_machines(t, tl, |slot| slot.upload.handle_lsn_validation(now, v))
                        .is_some()
                    {
                        self.dirty.insert(Machine::Upload(t, tl));
                    }
                }
                DeletionEffect::FlushDone { .. } => {}
            }
        }
    }

    fn drain_timeline(&mut self, t: TenantId, tl: TimelineId) {
        loop {
            let Some(effect) =
                self.with_machines(t, tl, |slot| slot.timeline.poll_effect()).flatten()
            else {
                return;
            };
            if self.trace_on {
                let machine = format!("timeline[{t}/{tl}]");
                let what = super::trace::describe_timeline(&effect);
                self.trace_line(&machine, None, Direction::Effect, what);
            }
            if self.route_timeline_effect(t, tl, effect).is_break() {
                return;
            }
        }
    }

    /// Sends one timeline effect where it goes (the table in `routing.rs`).
    /// `Break`: the timeline's machines are gone; its draining stops.
    fn route_timeline_effect(
        &mut self,
        t: TenantId,
        tl: TimelineId,
        effect: TimelineEffect,
    ) -> ControlFlow<()> {
        let now = self.now;
        match effect {
            TimelineEffect::WriteLayer { op, name, bytes } => {
                self.write_layer(t, tl, op, name, bytes)
            }
            TimelineEffect::WriteMetadata { op, metadata } => self.emit_io(
                Route::Timeline { tenant: t, timeline: tl, inner: op, redo: false },
                Io::DiskWrite {
                    path: io::metadata_path(t, tl),
                    bytes: metadata.to_bytes().to_vec(),
                },
            ),
            TimelineEffect::ReadLayer { op, name } => self.read_layer(t, tl, op, name),
            TimelineEffect::DownloadLayer { op, name, meta } => {
                self.download_layer(t, tl, op, name, meta, 0)
            }
            TimelineEffect::Redo { op, request } => self.redo(t, tl, op, request),
            TimelineEffect::ReadDone { req, result } => {
                let result = result.map_err(|e| super::requests::read_error_to_api(&e));
                self.on_read_done(t, RequestId(req.0), result);
            }
            TimelineEffect::LayerFlushed { name, file_size, crc32c } => {
                // Same input as the layer-map insert: the layer is in the upload
                // queue's set before anything else can see it (#5635).
                return self.hand_to_upload_queue(t, tl, "a flushed layer", |upload| {
                    upload.handle_add_layer(now, name, file_size, crc32c)
                });
            }
            TimelineEffect::MetadataDurable { metadata } => {
                return self.hand_to_upload_queue(t, tl, "metadata", |upload| {
                    upload.handle_set_metadata(now, metadata)
                });
            }
            TimelineEffect::UnlinkLayers { names } => {
                // Compaction or GC replaced these: the upload queue uploads an index
                // without them and only then hands their deletion on (S-DEL-AFTER-INDEX).
                for name in &names {
                    self.invalidate_layer(t, tl, name);
                }
                return self.hand_to_upload_queue(t, tl, "an unlink", |upload| {
                    upload.handle_unlink_layers(now, &names)
                });
            }
            TimelineEffect::EvictLayer { name } => {
                // The upload queue says when the file goes: once no upload of it
                // reads it (LOCAL-READ, cluster seed 3636), with `RemoveLocal`.
                self.invalidate_layer(t, tl, &name);
                return self.hand_to_upload_queue(t, tl, "a local removal", |upload| {
                    upload.handle_remove_local(now, name);
                    Ok(())
                });
            }
            TimelineEffect::FlushDone { .. } => {}
            TimelineEffect::JobWanted { kind } => self.on_job_wanted(t, tl, kind),
            TimelineEffect::JobFinished { kind } => self.on_job_finished(t, tl, kind),
            TimelineEffect::OutOfSpace { since } => {
                // Reads are still served (`requests.rs`); see `timeline/disk_full.rs`.
                self.break_timeline(t, tl, super::BrokenReason::NoSpace { since });
            }
        }
        ControlFlow::Continue(())
    }

    /// A timeline's layer file written locally.
    fn write_layer(
        &mut self,
        t: TenantId,
        tl: TimelineId,
        op: OpId,
        name: LayerName,
        bytes: Vec<u8>,
    ) {
        // A re-flush may reuse the name of a layer dropped earlier.
        self.invalidate_layer(t, tl, &name);
        self.emit_io(
            Route::Timeline { tenant: t, timeline: tl, inner: op, redo: false },
            Io::DiskWrite { path: io::layer_path(t, tl, &name), bytes },
        )
    }

    /// An on-demand download, straight into the layer's local file through the
    /// size and CRC32C check (`completions.rs` goes on). `attempt`: downloads of
    /// it the check refused so far.
    pub(super) fn download_layer(
        &mut self,
        t: TenantId,
        tl: TimelineId,
        op: OpId,
        name: LayerName,
        meta: LayerMeta,
        attempt: u32,
    ) {
        self.invalidate_layer(t, tl, &name);
        let key = remote_path::layer_key(t, tl, &name, meta.generation);
        let path = io::layer_path(t, tl, &name);
        let expected = ExpectedFile::from(&meta);
        self.emit_io(
            Route::Download { tenant: t, timeline: tl, inner: op, name, meta, attempt },
            Io::RemoteGetFile { key, path, expected },
        )
    }

    /// An evicted or unlinked layer's local file is removed (the upload queue's
    /// `RemoveLocal`: no upload of it reads it any more).
    fn remove_local_layer(&mut self, t: TenantId, tl: TimelineId, name: LayerName) {
        self.invalidate_layer(t, tl, &name);
        let path = io::layer_path(t, tl, &name);
        self.emit_io(
            Route::EvictLocal { tenant: t, timeline: tl, layer: name },
            Io::DiskRemove { path },
        );
    }

    /// Hands a timeline's effect to its upload queue within the same input; a
    /// refusal breaks the timeline. `Break`: the timeline's machines are gone.
    fn hand_to_upload_queue(
        &mut self,
        t: TenantId,
        tl: TimelineId,
        what: &str,
        hand: impl FnOnce(&mut UploadQueue) -> Result<(), UploadQueueError>,
    ) -> ControlFlow<()> {
        let Some(handed) = self.with_machines(t, tl, |slot| hand(&mut slot.upload)) else {
            return ControlFlow::Break(());
        };
        if let Err(e) = handed {
            self.break_timeline(t, tl, format!("upload queue refused {what}: {e}"));
        }
        self.dirty.insert(Machine::Upload(t, tl));
        ControlFlow::Continue(())
    }

    fn drain_upload(&mut self, t: TenantId, tl: TimelineId) {
        loop {
            let Some(effect) =
                self.with_machines(t, tl, |slot| slot.upload.poll_effect()).flatten()
            else {
                return;
            };
            if self.trace_on {
                let machine = format!("upload_queue[{t}/{tl}]");
                let what = super::trace::describe_upload(&effect);
                self.trace_line(&machine, None, Direction::Effect, what);
            }
            self.route_upload_effect(t, tl, effect);
        }
    }

    /// Sends one upload-queue effect where it goes (the table in `routing.rs`).
    fn route_upload_effect(&mut self, t: TenantId, tl: TimelineId, effect: UploadEffect) {
        let now = self.now;
        match effect {
            UploadEffect::UploadLayer { op, name, meta } => {
                let key = remote_path::layer_key(t, tl, &name, meta.generation);
                let path = io::layer_path(t, tl, &name);
                let expected = ExpectedFile::from(&meta);
                self.emit_io(
                    Route::UploadPut { tenant: t, timeline: tl, inner: op, layer: Some(name) },
                    Io::RemotePutFile { key, path, expected },
                )
            }
            UploadEffect::UploadIndex { op, version, index } => self.emit_io(
                Route::UploadPut { tenant: t, timeline: tl, inner: op, layer: None },
                Io::RemotePut {
                    key: remote_path::index_key(t, tl, version),
                    bytes: index.to_json_bytes(),
                },
            ),
            UploadEffect::HandDeletions { generation, keys } => {
                if let Some(dq) = &mut self.dq {
                    dq.handle_push(now, t, tl, generation, keys);
                    self.dirty.insert(Machine::DeletionQueue);
                }
            }
            UploadEffect::CancelDeletion { key } => {
                if let Some(dq) = &mut self.dq {
                    dq.handle_cancel(now, t, tl, key);
                    self.dirty.insert(Machine::DeletionQueue);
                }
            }
            UploadEffect::ValidateLsn { generation, lsn } => {
                self.validate_lsn(t, tl, generation, lsn)
            }
            UploadEffect::BarrierReached { id: _, result } => {
                self.on_barrier(t, tl, result.is_ok())
            }
            UploadEffect::LsnAdvanced { .. } => {
                // While shutting down, have each new projected LSN validated at once.
                if matches!(self.phase, super::NodePhase::ShuttingDown { .. }) {
                    self.nudge_validation();
                }
            }
            UploadEffect::Backpressure { on } => {
                self.with_machines(t, tl, |slot| slot.timeline.handle_backpressure(now, on));
                self.dirty.insert(Machine::Timeline(t, tl));
            }
            UploadEffect::ListTimeline { op, prefix } => self.emit_io(
                Route::UploadList { tenant: t, timeline: tl, inner: op },
                Io::RemoteList { prefix },
            ),
            UploadEffect::DeletionAborted { error } => self.on_deletion_aborted(t, tl, error),
            UploadEffect::Broken { reason } => self.break_timeline(t, tl, reason),
            UploadEffect::TombstoneDurable => {
                self.answer_deletion_waiters(t, tl, Ok(Response::TimelineDeleting));
            }
            UploadEffect::TimelineDeleted => self.on_timeline_deleted(t, tl),
            UploadEffect::RemoveLocal { name } => self.remove_local_layer(t, tl, name),
        }
    }

    /// The deletion queue is to validate a timeline's new LSN.
    fn validate_lsn(&mut self, t: TenantId, tl: TimelineId, generation: Generation, lsn: Lsn) {
        let now = self.now;
        if let Some(dq) = &mut self.dq {
            dq.handle_push_lsn_update(now, t, tl, generation, lsn);
            // While shutting down, validate at once instead of after the
            // deletion queue's usual delay.
            if matches!(self.phase, super::NodePhase::ShuttingDown { .. }) {
                dq.handle_flush_advisory(now);
            }
            self.dirty.insert(Machine::DeletionQueue);
        }
    }

    /// A timeline deletion stopped by a mode change: it resumes in AttachedSingle;
    /// its waiters are told to retry.
    fn on_deletion_aborted(&mut self, t: TenantId, tl: TimelineId, error: UploadQueueError) {
        tracing::warn!(tenant = %t, timeline = %tl, %error, "timeline deletion aborted; resumes in AttachedSingle");
        if let Some(slot) = self.slot_mut(t, tl) {
            slot.deletion_aborted = true;
        }
        let why = format!("timeline {tl}: deletion interrupted by a mode change ({error}); retry");
        self.answer_deletion_waiters(t, tl, Err(ApiError::unavailable(why)));
    }

    /// A deleted timeline leaves the node: its slot, cached pages, local directory
    /// and background jobs.
    fn on_timeline_deleted(&mut self, t: TenantId, tl: TimelineId) {
        self.page_cache.invalidate_timeline(t, tl);
        // Answered at `TombstoneDurable`; none is left unless that never came.
        self.answer_deletion_waiters(t, tl, Ok(Response::TimelineDeleting));
        self.uncount_timeline_memory(t, tl);
        if let Some(tenant) = self.tenants.get_mut(&t) {
            tenant.timelines.remove(&tl);
        }
        // Remote storage no longer has it; the local directory goes too
        // (a crash before this leaves a directory start-up never loads).
        let path = io::timeline_dir(t, tl);
        self.emit_io(Route::DetachedRemoved, Io::DiskRemoveDir { path });
        self.forget_background_jobs(t, Some(tl));
    }
}
