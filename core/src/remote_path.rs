//! The remote object key layout, as functions. Nothing else in strata formats a
//! remote key by hand.
//!
//! ```text
//! tenants/{tenant}/timelines/deleted                                  tenant deletion mark
//! tenants/{tenant}/timelines/{timeline}/index_part.json.{seq:016x}-{gen:08x}
//!                                                                     index: sequence `seq` of generation `gen`
//! tenants/{tenant}/timelines/{timeline}/{layer name}-{gen:08x}        layer file
//! ```

use crate::error::ParseError;
use crate::generation::Generation;
use crate::id::{TenantId, TimelineId};
use crate::index_part::IndexVersion;
use crate::layer_name::LayerName;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

pub const INDEX_PART_FILE_NAME: &str = "index_part.json";
pub const TENANT_DELETION_MARK: &str = "deleted";

/// A key in remote storage, relative to the configured bucket prefix or root.
/// Serialized as a plain string; deserializing checks it like
/// [`RemoteKey::from_listing`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RemoteKey(String);

impl<'de> Deserialize<'de> for RemoteKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RemoteKey::from_listing(&s).map_err(serde::de::Error::custom)
    }
}

impl RemoteKey {
    /// Wraps a key read back from a listing. Rejects empty keys, absolute keys and
    /// `..` components, so a listing can never point outside the root.
    pub fn from_listing(s: &str) -> Result<RemoteKey, ParseError> {
        if s.is_empty() || s.starts_with('/') || s.split('/').any(|c| c == ".." || c == ".") {
            return Err(ParseError::malformed(
                "remote key",
                "a relative key without '.' or '..'",
                s,
            ));
        }
        Ok(RemoteKey(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last `/`-separated component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for RemoteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RemoteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteKey({})", self.0)
    }
}

/// `tenants/{tenant}/`: everything of one tenant.
pub fn tenant_prefix(tenant: TenantId) -> String {
    format!("tenants/{tenant}/")
}

/// `tenants/{tenant}/timelines/`
pub fn timelines_prefix(tenant: TenantId) -> String {
    format!("tenants/{tenant}/timelines/")
}

/// `tenants/{tenant}/timelines/{timeline}/`
pub fn timeline_prefix(tenant: TenantId, timeline: TimelineId) -> String {
    let mut prefix = String::with_capacity(LAYER_KEY_BYTES);
    push_timeline_prefix(tenant, timeline, &mut prefix);
    prefix
}

/// The longest layer key: the timeline prefix (96 bytes), a delta layer's name
/// and a generation suffix.
const LAYER_KEY_BYTES: usize = 96 + 68 + 9;

/// Appends [`timeline_prefix`] to `out` (without `format!`: it starts every layer
/// key, which the node and the simulator's checkers build often).
fn push_timeline_prefix(tenant: TenantId, timeline: TimelineId, out: &mut String) {
    use std::fmt::Write as _;
    out.push_str("tenants/");
    let _ = write!(out, "{tenant}");
    out.push_str("/timelines/");
    let _ = write!(out, "{timeline}");
    out.push('/');
}

/// The prefix under which every index of a timeline is listed.
pub fn index_prefix(tenant: TenantId, timeline: TimelineId) -> String {
    format!("{}{INDEX_PART_FILE_NAME}", timeline_prefix(tenant, timeline))
}

/// The key of one index upload. The generation suffix stays last, like on every
/// object; the sequence sits between the file name and the suffix, so a late PUT of
/// an older index lands under its own key (see [`crate::index_part`]).
pub fn index_key(tenant: TenantId, timeline: TimelineId, version: IndexVersion) -> RemoteKey {
    RemoteKey(format!(
        "{}.{:016x}{}",
        index_prefix(tenant, timeline),
        version.seq,
        version.generation.suffix()
    ))
}

pub fn layer_key(
    tenant: TenantId,
    timeline: TimelineId,
    layer: &LayerName,
    written_in: Generation,
) -> RemoteKey {
    let mut key = String::with_capacity(LAYER_KEY_BYTES);
    push_timeline_prefix(tenant, timeline, &mut key);
    layer.push_remote_file_name(written_in, &mut key);
    RemoteKey(key)
}

pub fn tenant_deletion_mark_key(tenant: TenantId) -> RemoteKey {
    RemoteKey(format!("{}{TENANT_DELETION_MARK}", timelines_prefix(tenant)))
}

/// If `key` is an index key of this timeline, its version; `Some(Err)` for a key
/// that starts like an index key but does not parse.
pub fn parse_index_key(
    tenant: TenantId,
    timeline: TimelineId,
    key: &RemoteKey,
) -> Option<Result<IndexVersion, ParseError>> {
    let rest = key.as_str().strip_prefix(&index_prefix(tenant, timeline))?;
    Some(parse_index_suffix(rest))
}

/// Parses `.{seq:016x}-{gen:08x}`.
fn parse_index_suffix(rest: &str) -> Result<IndexVersion, ParseError> {
    let expected = ".SEQ(16 lowercase hex)-GEN(8 lowercase hex)";
    let bad = || ParseError::malformed("index key suffix", expected, rest);
    let body = rest.strip_prefix('.').ok_or_else(bad)?;
    let (seq, generation) = body.split_at_checked(16).ok_or_else(bad)?;
    if !seq.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad());
    }
    let seq = u64::from_str_radix(seq, 16).map_err(|_| bad())?;
    Ok(IndexVersion { generation: Generation::parse_suffix(generation)?, seq })
}

/// What a key directly under `tenants/{tenant}/timelines/` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimelinesEntry {
    Timeline(TimelineId),
    DeletionMark,
    /// Anything else: reported and ignored, never fatal.
    Unknown(String),
}

/// Classifies the first path component after `tenants/{tenant}/timelines/`.
pub fn classify_timelines_entry(tenant: TenantId, key: &RemoteKey) -> Option<TimelinesEntry> {
    let rest = key.as_str().strip_prefix(&timelines_prefix(tenant))?;
    let first = rest.split('/').next().unwrap_or(rest);
    Some(if first == TENANT_DELETION_MARK && !rest.contains('/') {
        TimelinesEntry::DeletionMark
    } else {
        match first.parse::<TimelineId>() {
            Ok(id) if rest.contains('/') => TimelinesEntry::Timeline(id),
            _ => TimelinesEntry::Unknown(first.to_owned()),
        }
    })
}
