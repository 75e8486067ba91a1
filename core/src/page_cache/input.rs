//! Inputs as data: every call that changes the page cache as one
//! [`PageCacheInput`] value, and one entry point, [`PageCache::handle`], that
//! dispatches to the named methods (they stay: the node calls them by name). A fuzz
//! target or a property test drives the cache through `handle` alone.
//!
//! The cache has no illegal input and no typed error: a completion for an unknown
//! fill is answered `Filled(None)`, exactly as `complete_layer_fill` answers it, so
//! `handle` returns its output without a `Result`.

use super::{FillId, LayerKey, LayerLookup, PageCache, RequestKind, ValueKey};
use crate::id::{TenantId, TimelineId};
use crate::time::Instant;

/// One input of the page cache; each variant names the method it stands for.
/// `W` is a layer read's waiter, as in [`PageCache`]. No `Arbitrary` derive:
/// `TenantId`, `TimelineId` and `LayerName` do not implement it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageCacheInput<W> {
    /// `lookup_layer`: answered with [`PageCacheOutput::Layer`].
    LookupLayer { key: LayerKey, kind: RequestKind, waiter: W },
    /// `complete_layer_fill` (`None`: the read failed): answered with
    /// [`PageCacheOutput::Filled`].
    CompleteLayerFill { fill: FillId, bytes: Option<Vec<u8>> },
    /// `lookup_value`: answered with [`PageCacheOutput::Value`].
    LookupValue { key: ValueKey, kind: RequestKind },
    /// `insert_value`.
    InsertValue { key: ValueKey, kind: RequestKind, value: Vec<u8> },
    /// `invalidate_layer`.
    InvalidateLayer(LayerKey),
    /// `invalidate_timeline`.
    InvalidateTimeline { tenant: TenantId, timeline: TimelineId },
    /// `invalidate_tenant`.
    InvalidateTenant(TenantId),
}

/// What [`PageCache::handle`] answers: the return value of the method the input
/// stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageCacheOutput<W> {
    /// The input was taken; the method returns nothing.
    Done,
    /// `lookup_layer`'s answer.
    Layer(LayerLookup),
    /// `complete_layer_fill`'s answer: the layer and its waiters, `None` for an
    /// unknown fill.
    Filled(Option<(LayerKey, Vec<W>)>),
    /// `lookup_value`'s answer.
    Value(Option<Vec<u8>>),
}

impl<W> PageCache<W> {
    /// Feeds one input. The cache keeps no clock: `now` is taken only so that every
    /// machine has the same entry point.
    pub fn handle(&mut self, _now: Instant, input: PageCacheInput<W>) -> PageCacheOutput<W> {
        match input {
            PageCacheInput::LookupLayer { key, kind, waiter } => {
                return PageCacheOutput::Layer(self.lookup_layer(key, kind, waiter));
            }
            PageCacheInput::CompleteLayerFill { fill, bytes } => {
                return PageCacheOutput::Filled(self.complete_layer_fill(fill, bytes.as_deref()));
            }
            PageCacheInput::LookupValue { key, kind } => {
                return PageCacheOutput::Value(self.lookup_value(&key, kind));
            }
            PageCacheInput::InsertValue { key, kind, value } => self.insert_value(key, kind, value),
            PageCacheInput::InvalidateLayer(key) => self.invalidate_layer(&key),
            PageCacheInput::InvalidateTimeline { tenant, timeline } => {
                self.invalidate_timeline(tenant, timeline)
            }
            PageCacheInput::InvalidateTenant(tenant) => self.invalidate_tenant(tenant),
        }
        PageCacheOutput::Done
    }
}
