//! The layer map: which layer files make up a timeline, and where each is.
//!
//! Every layer covers a key range and an LSN range: a delta layer `[start, end)`, an
//! image layer at `lsn` the single LSN `[lsn, lsn + 1)` (its values include every
//! record at or below `lsn`). For a read of `key` that still needs records below
//! `cont` (exclusive), [`LayerMap::next_layer`] picks, among layers holding `key`
//! and starting below `cont`, the one reaching highest (its end capped at `cont`),
//! preferring an image layer on a tie; the read then continues below that layer's
//! start. In-memory layers are newer than every file and are searched first by the
//! timeline. A lookup scans the map linearly: fine for the layer counts of one
//! timeline today; an interval structure can replace it without changing callers.

use crate::id::OpId;
use crate::index_part::LayerMeta;
use crate::key::Key;
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use std::collections::BTreeMap;
use std::ops::Range;

/// Where a layer's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residence {
    /// A verified local copy exists (as far as we know: a read may still find it bad).
    Resident,
    /// Only in remote storage; downloaded on demand.
    RemoteOnly,
    /// A download is in flight.
    Downloading { op: OpId },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerEntry {
    pub meta: LayerMeta,
    pub residence: Residence,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct LayerMap {
    pub(crate) layers: BTreeMap<LayerName, LayerEntry>,
}

/// The LSN range a layer name covers.
pub(crate) fn lsn_range(name: &LayerName) -> Range<Lsn> {
    match name {
        LayerName::Delta { lsns, .. } => lsns.start..lsns.end,
        LayerName::Image { lsn, .. } => *lsn..lsn.next(),
    }
}

impl LayerMap {
    /// The next layer to search for `key` below `cont`, and the LSN range to read
    /// from it.
    pub(crate) fn next_layer(&self, key: Key, cont: Lsn) -> Option<(LayerName, Range<Lsn>)> {
        self.layers
            .keys()
            .filter(|name| name.key_range().contains(key))
            .filter_map(|name| {
                let r = lsn_range(name);
                (r.start < cont).then(|| (name, r.start..r.end.min(cont)))
            })
            .max_by_key(|(name, r)| (r.end, !name.is_delta(), r.start))
            .map(|(name, r)| (name.clone(), r))
    }
}
