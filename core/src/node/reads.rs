//! Reads through the node's page cache: a timeline's `ReadLayer` and `Redo`
//! answered from the cache or by one [`Io`], invalidation of a layer's cached
//! bytes, and the reply to a read request.

use super::Node;
use super::api::{ApiError, RequestId, Response};
use super::io::{self, Io};
use super::routing::Route;
use crate::id::{OpId, TenantId, TimelineId};
use crate::layer_name::LayerName;
use crate::page_cache::{LayerKey, LayerLookup, ValueKey};
use crate::timeline::TimelineCompletion;
use crate::trace::Direction;

impl Node {
    /// A timeline's `ReadLayer`: answered from the page cache within this input,
    /// or by one disk read shared by every reader of the layer.
    pub(super) fn read_layer(&mut self, t: TenantId, tl: TimelineId, op: OpId, name: LayerName) {
        let Some(slot) = self.slot_mut(t, tl) else { return };
        let kind = slot.timeline.op_request_kind(op);
        let path = io::layer_path(t, tl, &name);
        let key = LayerKey { tenant: t, timeline: tl, name };
        match self.page_cache.lookup_layer(key, kind, op) {
            LayerLookup::Hit(bytes) => {
                let what = format!("page cache hit: layer file {path} for {}", kind.as_str());
                self.trace_line("page_cache", Some(op), Direction::Effect, what);
                self.complete_timeline(t, tl, op, TimelineCompletion::Read(Ok(bytes)));
            }
            LayerLookup::Miss(fill) => {
                self.emit_io(Route::LayerFill { tenant: t, fill }, Io::DiskRead { path })
            }
            LayerLookup::Joined(fill) => {
                let what = format!("page cache: {op} joins read {fill:?} of {path}");
                self.trace_line("page_cache", Some(op), Direction::Effect, what);
            }
        }
    }

    /// A timeline's `Redo`: answered from the page cache if this exact request was
    /// answered before (redo is a pure function of its request), else by the driver.
    pub(super) fn redo(
        &mut self,
        t: TenantId,
        tl: TimelineId,
        op: OpId,
        request: crate::redo::RedoRequest,
    ) {
        let Some(slot) = self.slot_mut(t, tl) else { return };
        let kind = slot.timeline.op_request_kind(op);
        let key = ValueKey::of(&request);
        match self.page_cache.lookup_value(&key, kind) {
            Some(value) => {
                let what = format!("page cache hit: value for {}", kind.as_str());
                self.trace_line("page_cache", Some(op), Direction::Effect, what);
                self.complete_timeline(t, tl, op, TimelineCompletion::Redone(Ok(value)));
            }
            None => self.emit_io(
                Route::Redo { tenant: t, timeline: tl, inner: op, kind, key },
                Io::Redo { request },
            ),
        }
    }

    /// The local file of a layer may change or go: its cached bytes must not be used.
    pub(super) fn invalidate_layer(&mut self, t: TenantId, tl: TimelineId, name: &LayerName) {
        self.page_cache.invalidate_layer(&LayerKey { tenant: t, timeline: tl, name: name.clone() });
    }

    pub(crate) fn on_read_done(
        &mut self,
        t: TenantId,
        req: RequestId,
        result: Result<Option<Vec<u8>>, ApiError>,
    ) {
        // Answered either way: a read left waiting would be answered again when its
        // tenant stops. A read no longer waiting was answered already (its tenant's
        // stop answered it while the layer read it waited for was in flight).
        let Some(asked) = self.tenants.get_mut(&t).and_then(|x| x.reads.remove(&req)) else {
            return;
        };
        let (key, lsn) = asked;
        let result = result.map(|value| Response::Value { key, lsn, value });
        self.reply(req, result);
    }
}
