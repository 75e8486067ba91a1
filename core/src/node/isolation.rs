//! Panic isolation: a panic inside one timeline's or upload queue's handler breaks
//! that tenant only, not the node.
//!
//! # What is caught
//! Every call the node makes into a [`Timeline`](crate::timeline::Timeline) or an
//! [`UploadQueue`](crate::upload_queue::UploadQueue) (`handle_*`, `poll_effect`)
//! goes through [`Node::with_machines`]. With
//! [`NodeConfig::isolate_tenant_panics`](super::NodeConfig::isolate_tenant_panics)
//! on (the tokio binary only), a panic there is caught and:
//! - the tenant's lifecycle state becomes `Broken { reason }`, the reason naming the
//!   timeline and the panic message (in the node's [`Tenant`] and in the tenant
//!   manager's slot);
//! - every machine of the tenant (all its timelines, not only the one that
//!   panicked) is dropped, with its timers and background jobs;
//! - its waiting requests are answered with an error (reads, a timeline create,
//!   timeline deletions);
//! - completions of its I/O still in flight are ignored (a page-cache fill is
//!   released, nothing else happens: a layer upload in flight lands, no index
//!   follows it);
//! - requests for it are refused (500, naming the reason) until a
//!   `location_config` re-attaches it under a new generation or the node restarts.
//!
//! A panic anywhere else (the node's own routing, the control plane, the deletion
//! queue, the tenant manager, the scheduler) is not caught: it stops the node.
//! With the switch off (tests, the simulator) nothing is caught at all, so a panic
//! fails the run that found it.
//!
//! # Crash argument: why dropping the machines mid-operation is safe
//! The node never promised more than what remote storage holds. A client is told
//! an LSN is *visible* only once an index covering it is durable in remote storage
//! under the tenant's generation and that generation was validated; everything
//! above it is acknowledged but may be lost by any crash (docs/FAULT_MODEL.md).
//! Dropping a tenant's machines is exactly what `kill -9` does to that tenant,
//! with the rest of the node still running:
//! - Nothing visible is lost: the durable index and the layers it names are not
//!   touched by dropping machines. The objects in flight are a layer PUT (not in any
//!   index yet: unreferenced until an index names it) or an index PUT (a complete
//!   object or none; its layers were uploaded before it, upload-queue ordering).
//! - Nothing is written remotely for the tenant afterwards: its upload queues are
//!   gone, so no new PUT is emitted, and the completion of a layer upload in flight
//!   (one effect, `RemotePutFile`: it may land, unreferenced) is dropped by the
//!   guard in [`Node::handle_io`], so no index follows it. Deletions the
//!   queue handed to the deletion queue *before* the panic still run: each was
//!   decided by an index already durable without that object and is validated
//!   against the generation (S-DEL-AFTER-INDEX, S-DEL-GEN), so it cannot remove
//!   anything a durable index names.
//! - A broken tenant is never revived in place: the only ways back are a restart
//!   (re-attach: every tenant gets a new generation and loads from remote storage)
//!   or a `location_config` (the manager restarts a Broken tenant on a new
//!   generation). Either reloads from the remote index, the truth, so a half-done
//!   operation of the dropped machines can never be continued or reported.
//!
//! The kill test `a_panicking_timeline_breaks_only_its_tenant_and_a_restart_reads_back_what_was_visible`
//! (core/src/node/tests/isolation.rs) checks each point: other tenants keep
//! serving, remote storage of the broken tenant is unchanged from the panic until
//! the restart but for the layer uploads in flight at it (no index follows them),
//! and the restart reads back what was visible.
//! `a_refused_download_in_flight_at_a_panic_is_not_downloaded_again` checks the
//! guard: without it, a download in flight that the check refuses is issued again.

use super::api::ApiError;
use super::routing::Route;
use super::{Machine, Node, SlotState, TimelineSlot};
use crate::id::{TenantId, TimelineId};
use crate::node::io::IoResult;
use crate::tenant::TenantEvent;
use crate::trace::Direction;
use std::panic::{AssertUnwindSafe, catch_unwind};

impl Node {
    /// Calls `f` on the machines of `tenant/timeline`. `None` if there is no such
    /// slot, or if `f` panicked with panic isolation on (the tenant is then broken
    /// and its machines are gone). With isolation off a panic propagates.
    pub(crate) fn with_machines<R>(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
        f: impl FnOnce(&mut TimelineSlot) -> R,
    ) -> Option<R> {
        let isolate = self.config.isolate_tenant_panics;
        let slot = self.slot_mut(tenant, timeline)?;
        if !isolate {
            return Some(f(slot));
        }
        // Unwind safety: after a panic nothing of the slot is used again; the whole
        // tenant's machines are dropped below.
        match catch_unwind(AssertUnwindSafe(|| f(slot))) {
            Ok(r) => Some(r),
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                self.break_tenant_after_panic(tenant, timeline, &message);
                None
            }
        }
    }

    /// Every timeline of every attached tenant, for loops that call into machines.
    pub(crate) fn all_timelines(&self) -> Vec<(TenantId, TimelineId)> {
        self.tenants.iter().flat_map(|(t, x)| x.timelines.keys().map(|tl| (*t, *tl))).collect()
    }

    /// The timelines of one tenant.
    pub(crate) fn timelines_of(&self, tenant: TenantId) -> Vec<TimelineId> {
        self.tenants.get(&tenant).map(|t| t.timelines.keys().copied().collect()).unwrap_or_default()
    }

    /// Tenants broken by a panic (a shutdown with one is not clean).
    pub(crate) fn broken_tenants(&self) -> Vec<TenantId> {
        self.tenants.iter().filter(|(_, t)| t.is_broken()).map(|(id, _)| *id).collect()
    }

    /// Whether completions for `tenant` must be ignored: its machines were dropped
    /// after a panic.
    pub(crate) fn machines_dropped(&self, tenant: Option<TenantId>) -> bool {
        tenant.and_then(|t| self.tenants.get(&t)).is_some_and(|t| t.is_broken())
    }

    /// The completion of an I/O issued by machines that are gone: only a page-cache
    /// fill is finished (its waiters are the dropped timeline's ops); nothing is
    /// routed further, so nothing is written for the tenant.
    pub(crate) fn on_io_of_dropped_tenant(&mut self, route: Route, result: IoResult, whose: &str) {
        self.trace_line(
            "node",
            None,
            Direction::Input,
            format!("ignored: completion for {route:?} of {whose}"),
        );
        if let (Route::LayerFill { fill, .. }, IoResult::Bytes(r)) = (route, result) {
            let _ = self.page_cache.complete_layer_fill(fill, r.as_ref().ok().map(Vec::as_slice));
        }
    }

    fn break_tenant_after_panic(&mut self, t: TenantId, tl: TimelineId, message: &str) {
        let reason = format!("a handler of timeline {tl} panicked: {message}");
        tracing::error!(tenant = %t, %reason, "tenant broken: its machines are dropped and nothing more is written for it until it is re-attached or the node restarts");
        self.trace_line("node", None, Direction::Effect, format!("tenant {t} broken: {reason}"));
        self.uncount_tenant_memory(t);
        let Some(tenant) = self.tenants.get_mut(&t) else { return };
        // Every state with machines running has a Fail transition (a stopping tenant's
        // stop then fails: `end_step_of_broken`).
        tenant.transition(TenantEvent::Fail(reason.clone()));
        let dropped = std::mem::take(&mut tenant.timelines);
        let reads = std::mem::take(&mut tenant.reads);
        self.touch_tenant(t);
        for (timeline, slot) in dropped {
            self.timers.set(Machine::Timeline(t, timeline), None);
            self.timers.set(Machine::Upload(t, timeline), None);
            self.page_cache.invalidate_timeline(t, timeline);
            if let SlotState::Creating { req: Some(req) } = slot.state {
                let why =
                    format!("timeline {timeline} was being created: tenant {t} broke: {reason}");
                self.reply(req, Err(ApiError::Internal(why)));
            }
            for req in slot.deletion_waiters {
                let why = format!("tenant {t} broke during the deletion: {reason}");
                self.reply(req, Err(ApiError::Internal(why)));
            }
        }
        for req in reads.into_keys() {
            self.reply(req, Err(ApiError::Internal(format!("tenant {t} is broken: {reason}"))));
        }
        self.forget_background_jobs(t, None);
    }
}

/// The message of a panic payload (`panic!` with a literal or a formatted string).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}
