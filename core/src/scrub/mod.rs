//! The scrubber's decisions: what a walk of remote storage found, and what a purge
//! may delete. No I/O: the walk (`strata_adapters::scrub`) lists and reads through
//! the remote-storage trait and hands every object to this module.
//!
//! # What goes in, what comes out
//!
//! The walk lists remote storage in key order, page by page. For every timeline it
//! first lists the timeline's indexes and asks [`plan_timeline`] which to read:
//! the index the node would load ([`select_index`](crate::index_part::select_index),
//! the node's own rule, with the generation the control plane granted when one
//! was asked, else above every generation) and every other index at or below it
//! (an attachment in AttachedMulti or AttachedStale, or a warm Secondary, may
//! still read those). It reads them, builds a [`TimelineScrub`] and
//! hands it the timeline's objects one by one ([`TimelineScrub::handle_object`]),
//! then [`TimelineScrub::finish`]. Every finding goes into a [`Report`].
//!
//! # Findings ([`Finding`])
//!
//! | kind | what | fails a checker run |
//! |---|---|---|
//! | `missing_layer` | the chosen index names a layer that is not there | yes |
//! | `wrong_size` | … that has another size than the index records | yes |
//! | `corrupt_layer` | (`--deep`) … whose bytes fail the CRC32C or do not parse as a layer | yes |
//! | `unknown_index_version` | an index whose `version` this build does not read | yes |
//! | `unreadable_index` | an index (or index key) that does not parse otherwise | yes |
//! | `tombstone_holds_objects` | a deleted timeline (tombstone index) or tenant (deletion mark) that still holds objects | yes |
//! | `newer_than_any_index` | an object whose generation is newer than every index of its timeline (or than the control plane's grant) | yes |
//! | `unknown_object` | a key that is no layer, index or mark | yes |
//! | `orphan` | a layer no index of the latest generation references; with its generation and age | no (counted) |
//!
//! # Bounds
//!
//! [`Report`] keeps the first [`MAX_HELD_FINDINGS`] findings and counts the rest.
//! A [`TimelineScrub`] holds its timeline's loaded indexes (what the node holds to
//! serve it), never the listing. The walk holds one page of keys, one purge batch
//! and the report: [`held_keys_bound`] names the total for a page size.
//!
//! # Purge ([`purge`])
//!
//! An orphan is deleted only if every rule in [`purge::orphan_verdict`] allows it
//! and, right before the delete, [`purge::confirm_batch`] sees the control plane
//! grant no newer generation and the timeline's index listing unchanged. See the
//! crash and race argument there.

pub mod purge;
mod report;
mod timeline;

#[cfg(test)]
mod tests;

pub use report::{Finding, FindingKind, PurgeSummary, Report};
pub use timeline::{
    LoadedIndex, ObjectVerdict, TenantScrub, TimelinePlan, TimelineScrub, plan_timeline,
};

use crate::file_check::{ExpectedFile, check_bytes};
use crate::generation::Generation;
use crate::id::{TenantId, TimelineId};
use crate::index_part::{IndexVersion, LayerMeta};
use crate::layer_file::LayerFile;
use crate::layer_name::LayerName;
use crate::remote_path::{INDEX_PART_FILE_NAME, RemoteKey, TENANT_DELETION_MARK};
use crate::time::WallTime;

/// Findings a [`Report`] keeps with their details; later ones are only counted.
/// 1000: enough to act on, and a bucket full of garbage cannot make the report
/// (or its JSON) grow with it.
pub const MAX_HELD_FINDINGS: usize = 1000;

/// The youngest age `--purge --older-than` accepts: 24 h. An upload in flight leaves
/// a layer that no index names yet; the node names it in the next index upload,
/// seconds to minutes later. A day is far beyond any upload queue's retry horizon.
pub const MIN_PURGE_AGE_MS: u64 = 24 * 60 * 60 * 1000;

/// Most keys one purge batch holds before it is confirmed and deleted: one
/// `DeleteObjects` call.
pub const PURGE_BATCH_KEYS: usize = 1000;

/// The most keys a walk holds at once for a listing page of `page_keys`: the page,
/// one purge batch and the findings the report keeps.
pub fn held_keys_bound(page_keys: usize) -> usize {
    page_keys + PURGE_BATCH_KEYS + MAX_HELD_FINDINGS
}

/// One listed object, as the walk hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrubObject {
    pub key: RemoteKey,
    pub size_bytes: u64,
    /// When the store last wrote it; `None` when the store does not say (such an
    /// object is never purged).
    pub last_modified: Option<WallTime>,
}

/// Where a key sits in the layout of [`crate::remote_path`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyClass {
    Layer {
        tenant: TenantId,
        timeline: TimelineId,
        name: LayerName,
        generation: Generation,
    },
    Index {
        tenant: TenantId,
        timeline: TimelineId,
        version: IndexVersion,
    },
    /// Starts like an index key of the timeline but its suffix does not parse.
    BadIndexKey {
        tenant: TenantId,
        timeline: TimelineId,
        why: String,
    },
    /// Inside a timeline's prefix, but no layer or index name.
    OtherInTimeline {
        tenant: TenantId,
        timeline: TimelineId,
    },
    TenantDeletionMark {
        tenant: TenantId,
    },
    /// Under a tenant, outside every timeline.
    OtherInTenant {
        tenant: TenantId,
    },
    /// Outside `tenants/{tenant}/`.
    Unknown,
}

impl KeyClass {
    pub fn tenant(&self) -> Option<TenantId> {
        match self {
            KeyClass::Layer { tenant, .. }
            | KeyClass::Index { tenant, .. }
            | KeyClass::BadIndexKey { tenant, .. }
            | KeyClass::OtherInTimeline { tenant, .. }
            | KeyClass::TenantDeletionMark { tenant }
            | KeyClass::OtherInTenant { tenant } => Some(*tenant),
            KeyClass::Unknown => None,
        }
    }

    pub fn timeline(&self) -> Option<TimelineId> {
        match self {
            KeyClass::Layer { timeline, .. }
            | KeyClass::Index { timeline, .. }
            | KeyClass::BadIndexKey { timeline, .. }
            | KeyClass::OtherInTimeline { timeline, .. } => Some(*timeline),
            _ => None,
        }
    }
}

/// Classifies a listed key by the layout in [`crate::remote_path`].
pub fn classify_key(key: &RemoteKey) -> KeyClass {
    let Some(rest) = key.as_str().strip_prefix("tenants/") else {
        return KeyClass::Unknown;
    };
    let Some((tenant, rest)) = rest.split_once('/') else {
        return KeyClass::Unknown;
    };
    let Ok(tenant) = tenant.parse::<TenantId>() else {
        return KeyClass::Unknown;
    };
    let Some(rest) = rest.strip_prefix("timelines/") else {
        return KeyClass::OtherInTenant { tenant };
    };
    if rest == TENANT_DELETION_MARK {
        return KeyClass::TenantDeletionMark { tenant };
    }
    let Some((timeline, file)) = rest.split_once('/') else {
        return KeyClass::OtherInTenant { tenant };
    };
    let Ok(timeline) = timeline.parse::<TimelineId>() else {
        return KeyClass::OtherInTenant { tenant };
    };
    if file.starts_with(INDEX_PART_FILE_NAME) {
        return match crate::remote_path::parse_index_key(tenant, timeline, key) {
            Some(Ok(version)) => KeyClass::Index { tenant, timeline, version },
            Some(Err(e)) => KeyClass::BadIndexKey { tenant, timeline, why: e.to_string() },
            None => KeyClass::OtherInTimeline { tenant, timeline },
        };
    }
    match parse_layer_file_name(file) {
        Some((name, generation)) => KeyClass::Layer { tenant, timeline, name, generation },
        None => KeyClass::OtherInTimeline { tenant, timeline },
    }
}

/// The inverse of [`LayerName::remote_file_name`]: the name and the generation
/// suffix (always the last 9 characters, `-` and 8 hex digits).
fn parse_layer_file_name(file: &str) -> Option<(LayerName, Generation)> {
    let split = file.len().checked_sub(9)?;
    let (name, suffix) = (file.get(..split)?, file.get(split..)?);
    let generation = Generation::parse_suffix(suffix).ok()?;
    let name: LayerName = name.parse().ok()?;
    // Canonical form only: a name that prints differently is not the node's key.
    (name.remote_file_name(generation) == file).then_some((name, generation))
}

/// `--deep`: whether the bytes of a referenced layer are the file its index
/// records (size and CRC32C, core's download check) and parse as a layer file
/// (core's reader). `Err(why)` otherwise.
pub fn check_layer_bytes(name: &LayerName, meta: &LayerMeta, bytes: Vec<u8>) -> Result<(), String> {
    check_bytes(&bytes, ExpectedFile::from(meta)).map_err(|e| e.to_string())?;
    LayerFile::parse(name, bytes, Some(meta.crc32c)).map(|_| ()).map_err(|e| e.to_string())
}
