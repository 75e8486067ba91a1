//! `IndexPart`: the remote index of one timeline, the source of truth for which
//! layers make it up.
//!
//! Stored as JSON under [`crate::remote_path::index_key`]: one key per (generation,
//! sequence). A node writes only keys of its own generation, and every index upload
//! of a generation gets the next sequence number, so a late PUT that the caller gave
//! up on lands under its own older key and can never roll back a newer index (the
//! reader picks the highest sequence). See [`select_index`].
//!
//! Fields: `version` (format version; the reader accepts [`ACCEPTED_VERSIONS`]),
//! `seq` (the upload sequence within the generation), `layer_metadata` (layer name →
//! file size, the generation the layer was written in, CRC32C of the whole file),
//! `disk_consistent_lsn`, `metadata` (the timeline metadata blob, hex), and
//! `deleted_at` (set on the tombstone written when the timeline is deleted; a
//! tombstone references no layers).

use crate::error::ParseError;
use crate::generation::Generation;
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use crate::metadata::TimelineMetadata;
use crate::time::WallTime;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const INDEX_PART_VERSION: u32 = 1;
pub const ACCEPTED_VERSIONS: &[u32] = &[1];

/// What the index records about one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerMeta {
    pub file_size: u64,
    /// The generation the layer was written (and uploaded) in; part of its key.
    pub generation: Generation,
    /// CRC32C of the whole layer file.
    pub crc32c: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPart {
    pub seq: u64,
    pub layer_metadata: BTreeMap<LayerName, LayerMeta>,
    pub disk_consistent_lsn: Lsn,
    pub metadata: TimelineMetadata,
    pub deleted_at: Option<WallTime>,
}

/// The JSON shape, kept apart so the in-memory type can hold parsed metadata.
#[derive(Serialize, Deserialize)]
struct IndexPartJson {
    version: u32,
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deleted_at: Option<WallTime>,
    layer_metadata: BTreeMap<LayerName, LayerMeta>,
    disk_consistent_lsn: Lsn,
    metadata: String,
}

impl IndexPart {
    /// An empty index for a timeline created at `metadata.initdb_lsn`.
    pub fn empty(metadata: TimelineMetadata) -> Self {
        IndexPart {
            seq: 0,
            layer_metadata: BTreeMap::new(),
            disk_consistent_lsn: metadata.disk_consistent_lsn,
            metadata,
            deleted_at: None,
        }
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        let json = IndexPartJson {
            version: INDEX_PART_VERSION,
            seq: self.seq,
            deleted_at: self.deleted_at,
            layer_metadata: self.layer_metadata.clone(),
            disk_consistent_lsn: self.disk_consistent_lsn,
            metadata: hex::encode(self.metadata.to_bytes()),
        };
        serde_json::to_vec_pretty(&json)
            .unwrap_or_else(|e| unreachable!("IndexPart always serializes: {e}"))
    }

    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ParseError> {
        const WHAT: &str = "index_part.json";
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version =
            serde_json::from_slice(bytes).map_err(|e| ParseError::invalid(WHAT, e.to_string()))?;
        if !ACCEPTED_VERSIONS.contains(&v.version) {
            return Err(ParseError::UnsupportedVersion {
                what: WHAT,
                version: v.version,
                accepted: ACCEPTED_VERSIONS,
            });
        }
        let json: IndexPartJson =
            serde_json::from_slice(bytes).map_err(|e| ParseError::invalid(WHAT, e.to_string()))?;
        let raw = hex::decode(&json.metadata)
            .map_err(|_| ParseError::malformed(WHAT, "metadata as hex", &json.metadata))?;
        let metadata = TimelineMetadata::from_bytes(&raw)?;
        if metadata.disk_consistent_lsn != json.disk_consistent_lsn {
            return Err(ParseError::invalid(
                WHAT,
                format!(
                    "disk_consistent_lsn {} disagrees with the metadata's {}",
                    json.disk_consistent_lsn, metadata.disk_consistent_lsn
                ),
            ));
        }
        if json.deleted_at.is_some() && !json.layer_metadata.is_empty() {
            return Err(ParseError::invalid(
                WHAT,
                "a tombstone (deleted_at set) must reference no layers",
            ));
        }
        Ok(IndexPart {
            seq: json.seq,
            layer_metadata: json.layer_metadata,
            disk_consistent_lsn: json.disk_consistent_lsn,
            metadata,
            deleted_at: json.deleted_at,
        })
    }
}

/// Where an index sits: its generation and its sequence within that generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexVersion {
    pub generation: Generation,
    pub seq: u64,
}

/// The outcome of [`select_index`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSelection {
    /// The index to load: `None` when no index at or below our generation exists.
    pub chosen: Option<IndexVersion>,
    /// Indexes of a newer generation than ours: never loaded, reported (another node
    /// holds a newer attachment, or our generation is stale).
    pub newer: Vec<IndexVersion>,
}

/// Picks the index to load: the highest sequence of our own generation, else of the
/// highest generation below ours. An index from a newer generation is never chosen.
pub fn select_index(own: Generation, listed: &[IndexVersion]) -> IndexSelection {
    let chosen = listed.iter().filter(|v| v.generation <= own).max().copied();
    let mut newer: Vec<IndexVersion> =
        listed.iter().filter(|v| v.generation > own).copied().collect();
    newer.sort();
    IndexSelection { chosen, newer }
}
