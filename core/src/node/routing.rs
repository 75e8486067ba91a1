//! Routing: where each machine's effects go, and where each I/O completion returns.
//!
//! | effect of | kind | goes to |
//! |---|---|---|
//! | timeline | `LayerFlushed`, `MetadataDurable` | its upload queue (same input) |
//! | timeline | `WriteLayer`/`WriteMetadata` | [`Io`] (a layer write invalidates its page-cache entry) |
//! | timeline | `ReadLayer`/`Redo` | the page cache: a hit completes at once; a miss is an [`Io`] (one per layer however many wait) |
//! | timeline | `EvictLayer`/`UnlinkLayers` | invalidate the page cache, then as below (`EvictLayer`: the upload queue's `handle_remove_local`) |
//! | timeline | `DownloadLayer` | `RemoteGetFile` (the adapter writes the local file through core's size + CRC32C check; refused: tried again up to `CORRUPT_DOWNLOAD_ATTEMPTS`, then Broken) |
//! | timeline | `ReadDone` | reply to the read request |
//! | upload queue | `UploadLayer` | `RemotePutFile` (the adapter reads the local file) |
//! | upload queue | `UploadIndex` | `RemotePut` |
//! | upload queue | `RemoveLocal` | `DiskRemove` of the layer's local file (once no upload of it reads it) |
//! | upload queue | `HandDeletions`/`CancelDeletion`/`ValidateLsn` | deletion queue |
//! | upload queue | `Backpressure` | its timeline |
//! | deletion queue | `Validate` | a control-plane client call (`cp_link.rs`) |
//! | deletion queue | `Report`/`LsnValidated` | the upload queue of that timeline |
//! | deletion queue | lists, header, `DeleteObjects` | [`Io`] |
//! | control plane | `Persist` | `StoreApply`; `ListRemoteGenerations`: `RemoteList` |
//! | control plane | `Reply` | the control-plane client (by attempt id) |
//! | control-plane client | `Send` | [`Io`] `ControlPlaneSend`; delivered: the in-process control plane |
//! | control-plane client | `Done` | whoever asked (start-up, a tenant manager step, validation) |
//! | timeline | `JobWanted` / `JobFinished` | the scheduler (same input) |
//! | scheduler | `Grant` | that timeline's `handle_job_granted` (gone: handed back) |
//! | warm secondary | lists, index reads, `Download`, `RemoveLocal` | [`Io`] (`secondary.rs`) |
//!
//! This file holds the table and the addresses: [`Route`] (where an [`Io`]'s
//! completion returns) and [`CpWaiter`] (who waits for a control-plane reply).
//! The work is beside it: `pump.rs` drains effects, `completions.rs` returns
//! completions, `reads.rs` the page-cache paths, `jobs.rs` the scheduler,
//! `timers.rs` the deadlines.
//!
//! [`Io`]: super::io::Io

use super::Node;
use super::api::RequestId;
use crate::id::{OpId, TenantId, TimelineId};
use crate::index_part::LayerMeta;
use crate::layer_name::LayerName;
use crate::page_cache::{FillId, RequestKind, ValueKey};

/// Where the completion of one [`Io`] goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A timeline's own effect (write/read layer or metadata, or a redo).
    Timeline {
        tenant: TenantId,
        timeline: TimelineId,
        inner: OpId,
        redo: bool,
    },
    /// A page-cache miss reading a layer file: the completion goes to every waiter
    /// of the fill.
    LayerFill {
        tenant: TenantId,
        fill: FillId,
    },
    /// A redo the page cache did not answer; its value is inserted on completion.
    Redo {
        tenant: TenantId,
        timeline: TimelineId,
        inner: OpId,
        kind: RequestKind,
        key: ValueKey,
    },
    /// An on-demand download of a layer into its local file, verified on the
    /// way (`attempt` counts the downloads the check refused, from 0).
    Download {
        tenant: TenantId,
        timeline: TimelineId,
        inner: OpId,
        name: LayerName,
        meta: LayerMeta,
        attempt: u32,
    },
    /// The upload of a layer from its local file (`layer` set) or the PUT of an
    /// index.
    UploadPut {
        tenant: TenantId,
        timeline: TimelineId,
        inner: OpId,
        layer: Option<LayerName>,
    },
    /// Removing the local file of an evicted or unlinked layer; the outcome only
    /// matters for logs.
    EvictLocal {
        tenant: TenantId,
        timeline: TimelineId,
        layer: LayerName,
    },
    /// The listing of a timeline being deleted.
    UploadList {
        tenant: TenantId,
        timeline: TimelineId,
        inner: OpId,
    },
    Deletion {
        inner: OpId,
    },
    ControlPlanePersist {
        inner: OpId,
    },
    /// One attempt of a control-plane call, on its way (see `cp_link.rs`).
    ControlPlaneCall {
        attempt: OpId,
    },
    ControlPlaneList {
        inner: OpId,
        tenant: TenantId,
    },
    Startup(super::startup::StartupIo),
    /// A timeline create's look at remote storage (see `create.rs`).
    CreateTimelineCheck {
        req: RequestId,
        tenant: TenantId,
        timeline: TimelineId,
        generation: crate::generation::Generation,
        check: super::create::CreateCheck,
    },
    /// The I/O of a tenant manager step (listing, config write, rename, mark).
    Manager {
        tenant: TenantId,
    },
    /// `AcquireGeneration`'s listing of the tenant's remote storage before the
    /// control plane is asked (S-GEN-MONO, `location.rs`).
    GenerationCheck {
        tenant: TenantId,
        at_least: Option<crate::generation::Generation>,
    },
    /// The background removal of a detached tenant's or deleted timeline's local
    /// directory; only logged.
    DetachedRemoved,
    /// A warm secondary's I/O (`secondary.rs`); `incarnation` names its machine.
    Secondary {
        tenant: TenantId,
        incarnation: OpId,
        inner: OpId,
    },
}

impl Route {
    /// The tenant whose machines wait for this completion, if any: a tenant is not
    /// dropped while one is in flight.
    pub(crate) fn tenant(&self) -> Option<TenantId> {
        match self {
            Route::Timeline { tenant, .. }
            | Route::LayerFill { tenant, .. }
            | Route::Redo { tenant, .. }
            | Route::Download { tenant, .. }
            | Route::UploadPut { tenant, .. }
            | Route::EvictLocal { tenant, .. }
            | Route::UploadList { tenant, .. } => Some(*tenant),
            Route::Deletion { .. }
            | Route::ControlPlanePersist { .. }
            | Route::ControlPlaneCall { .. }
            | Route::ControlPlaneList { .. }
            // No machine waits for it: its completion checks the tenant again.
            | Route::CreateTimelineCheck { .. }
            | Route::Startup(_)
            | Route::Manager { .. }
            | Route::GenerationCheck { .. }
            | Route::DetachedRemoved
            // No tenant machine: the secondary's own machine checks its identity.
            | Route::Secondary { .. } => None,
        }
    }
}

/// Who waits for a control-plane reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CpWaiter {
    Startup,
    Validation {
        dq_op: OpId,
    },
    /// Re-attach retried in emergency mode.
    EmergencyReAttach,
    /// A tenant manager step (acquire or release a generation).
    Manager {
        tenant: TenantId,
    },
}

impl Node {
    /// Where the completion of the I/O `op` (one still in flight) will go: what
    /// asked for it. A driver reads it to name a failpoint site for the I/O (an
    /// index PUT, a deletion's execution, a deleted timeline's listing).
    pub fn route_of(&self, op: OpId) -> Option<&Route> {
        self.routes.get(&op)
    }

    pub(crate) fn bug(&mut self, what: &str) {
        debug_assert!(false, "routing bug: {what}");
        tracing::error!(what, "routing bug");
    }
}
