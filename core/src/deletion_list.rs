//! On-disk formats of the deletion queue: sequence-numbered deletion lists and the
//! header recording the highest validated sequence.
//!
//! - List file `deletion/{seq:016x}-01.list` (JSON): `version`, `sequence`, `tenants`
//!   (tenant → the tenant's generation when the deletion was pushed, and timeline →
//!   remote file names relative to the timeline prefix, generation suffix included;
//!   the reader rejects a name that is not one plain path component),
//!   `validated` (only written when true).
//! - Header `deletion/header-01` (JSON): `version`, `validated_sequence`: every list
//!   with a sequence at or below it has passed validation.
//!
//! One generation per tenant per list: a push with another generation for the same
//! tenant starts a new list.

use crate::error::ParseError;
use crate::generation::Generation;
use crate::id::{TenantId, TimelineId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const DELETION_LIST_VERSION: u32 = 1;
pub const DELETION_HEADER_FILE_NAME: &str = "header-01";
const LIST_NAME_SUFFIX: &str = "-01.list";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantDeletions {
    pub generation: Generation,
    pub timelines: BTreeMap<TimelineId, Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionList {
    pub version: u32,
    pub sequence: u64,
    pub tenants: BTreeMap<TenantId, TenantDeletions>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub validated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionHeader {
    pub version: u32,
    pub validated_sequence: u64,
}

fn check_version(what: &'static str, version: u32) -> Result<(), ParseError> {
    if version != DELETION_LIST_VERSION {
        return Err(ParseError::UnsupportedVersion {
            what,
            version,
            accepted: &[DELETION_LIST_VERSION],
        });
    }
    Ok(())
}

impl DeletionList {
    pub fn new(sequence: u64) -> Self {
        DeletionList {
            version: DELETION_LIST_VERSION,
            sequence,
            tenants: BTreeMap::new(),
            validated: false,
        }
    }

    /// Number of object keys in the list.
    pub fn len(&self) -> usize {
        self.tenants.values().flat_map(|t| t.timelines.values()).map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file name of list `sequence`: `{seq:016x}-01.list`.
    pub fn file_name(sequence: u64) -> String {
        format!("{sequence:016x}{LIST_NAME_SUFFIX}")
    }

    /// The sequence of a list file name; `None` if the name is not a list's.
    pub fn parse_file_name(name: &str) -> Option<u64> {
        let hex = name.strip_suffix(LIST_NAME_SUFFIX)?;
        if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self)
            .unwrap_or_else(|e| unreachable!("DeletionList always serializes: {e}"))
    }

    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ParseError> {
        const WHAT: &str = "deletion list";
        let list: DeletionList =
            serde_json::from_slice(bytes).map_err(|e| ParseError::invalid(WHAT, e.to_string()))?;
        check_version(WHAT, list.version)?;
        // Names are joined to a timeline prefix to make the keys to delete: a name
        // that is not one plain path component could reach outside that timeline.
        for name in list.tenants.values().flat_map(|t| t.timelines.values()).flatten() {
            if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                return Err(ParseError::malformed(
                    WHAT,
                    "file names of one path component each",
                    name,
                ));
            }
        }
        Ok(list)
    }
}

impl DeletionHeader {
    pub fn new(validated_sequence: u64) -> Self {
        DeletionHeader { version: DELETION_LIST_VERSION, validated_sequence }
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self)
            .unwrap_or_else(|e| unreachable!("DeletionHeader always serializes: {e}"))
    }

    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ParseError> {
        const WHAT: &str = "deletion header";
        let header: DeletionHeader =
            serde_json::from_slice(bytes).map_err(|e| ParseError::invalid(WHAT, e.to_string()))?;
        check_version(WHAT, header.version)?;
        Ok(header)
    }
}
