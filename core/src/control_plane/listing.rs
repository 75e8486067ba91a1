//! What one listing of a tenant's remote storage says: the highest generation found
//! there (what a fresh or lost control-plane store starts above, S-GEN-MONO), and
//! for a create, whether anything of the tenant is there at all
//! ([`summarize_tenant_listing`]).

use crate::generation::Generation;
use crate::id::{TenantId, TimelineId};
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use crate::remote_path::{RemoteKey, TimelinesEntry, classify_timelines_entry, parse_index_key};
use std::collections::BTreeSet;
use std::fmt;

/// Length of a generation suffix: `-` and 8 hex digits.
const GENERATION_SUFFIX_LEN_BYTES: usize = 9;

/// The highest generation any layer or index key of `tenant` carries, among `keys`
/// (a listing of `tenants/{tenant}/`). Keys that do not parse, and keys of other
/// tenants, are ignored: a stray object must not block an attach, and it can only
/// lower the result, never make two attachments share a generation with a parsed one.
pub fn max_generation_in_listing(tenant: TenantId, keys: &[RemoteKey]) -> Option<Generation> {
    keys.iter().filter_map(|key| generation_of_key(tenant, key)).max()
}

/// The generation suffix of one index or layer key of `tenant`, if it has one.
pub fn generation_of_key(tenant: TenantId, key: &RemoteKey) -> Option<Generation> {
    let timeline = match classify_timelines_entry(tenant, key)? {
        TimelinesEntry::Timeline(timeline) => timeline,
        TimelinesEntry::DeletionMark | TimelinesEntry::Unknown(_) => return None,
    };
    if let Some(parsed) = parse_index_key(tenant, timeline, key) {
        return parsed.ok().map(|version| version.generation);
    }
    layer_of_key(key).map(|(_, generation)| generation)
}

/// The layer name and generation suffix of a layer object's key.
fn layer_of_key(key: &RemoteKey) -> Option<(LayerName, Generation)> {
    let name = key.file_name();
    let split = name.len().checked_sub(GENERATION_SUFFIX_LEN_BYTES)?;
    let (layer, suffix) = (name.get(..split)?, name.get(split..)?);
    let layer = layer.parse::<LayerName>().ok()?;
    Some((layer, Generation::parse_suffix(suffix).ok()?))
}

/// The highest LSN a layer holds records at (its LSN range is half-open).
fn highest_lsn_of(layer: &LayerName) -> Lsn {
    match layer {
        LayerName::Delta { lsns, .. } => Lsn(lsns.end.0.saturating_sub(1)),
        LayerName::Image { lsn, .. } => *lsn,
    }
}

/// What remote storage holds of one tenant, from one listing of `tenants/{tenant}/`,
/// without reading any object. A tenant create goes on only over an empty one: a
/// create writes nothing remote, so anything found is a tenant that exists (or
/// existed) and a create would hide it (issue 15, item 2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteTenantFound {
    /// Objects listed under `tenants/{tenant}/`, whatever they are.
    pub objects: usize,
    /// The highest generation any index or layer key carries.
    pub max_generation: Option<Generation>,
    /// Every timeline with at least one object.
    pub timelines: BTreeSet<TimelineId>,
    /// The highest LSN any listed layer holds records at.
    pub highest_lsn: Option<Lsn>,
    /// The tenant's deletion mark is there: it was deleted (or is being deleted).
    pub deletion_mark: bool,
}

impl RemoteTenantFound {
    pub fn is_empty(&self) -> bool {
        self.objects == 0
    }
}

impl fmt::Display for RemoteTenantFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} objects", self.objects)?;
        if let Some(g) = self.max_generation {
            write!(f, ", generation {g}")?;
        }
        let timelines: Vec<String> = self.timelines.iter().map(ToString::to_string).collect();
        write!(f, ", timelines [{}]", timelines.join(", "))?;
        match self.highest_lsn {
            Some(lsn) => write!(f, ", highest LSN {lsn}")?,
            None => write!(f, ", no layers")?,
        }
        if self.deletion_mark {
            write!(f, ", a deletion mark")?;
        }
        Ok(())
    }
}

/// Summarizes a listing of `tenants/{tenant}/` (keys of other tenants are ignored).
pub fn summarize_tenant_listing(tenant: TenantId, keys: &[RemoteKey]) -> RemoteTenantFound {
    let prefix = crate::remote_path::tenant_prefix(tenant);
    let mut found = RemoteTenantFound::default();
    for key in keys.iter().filter(|k| k.as_str().starts_with(&prefix)) {
        found.objects += 1;
        match classify_timelines_entry(tenant, key) {
            Some(TimelinesEntry::Timeline(timeline)) => {
                found.timelines.insert(timeline);
                if parse_index_key(tenant, timeline, key).is_none()
                    && let Some((layer, _)) = layer_of_key(key)
                {
                    found.highest_lsn = found.highest_lsn.max(Some(highest_lsn_of(&layer)));
                }
            }
            Some(TimelinesEntry::DeletionMark) => found.deletion_mark = true,
            Some(TimelinesEntry::Unknown(_)) | None => {}
        }
        found.max_generation = found.max_generation.max(generation_of_key(tenant, key));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::TimelineId;
    use crate::index_part::IndexVersion;
    use crate::remote_path::{index_key, layer_key, tenant_deletion_mark_key};

    fn g(n: u32) -> Generation {
        Generation::new(n).unwrap()
    }

    #[test]
    fn finds_the_highest_generation_of_layers_and_indexes() {
        let t = TenantId([1; 16]);
        let tl = TimelineId([2; 16]);
        let layer: LayerName =
            "0000000000000000-0000000000001000__0000000001696070-00000000016960E9".parse().unwrap();
        let keys = vec![
            layer_key(t, tl, &layer, g(7)),
            index_key(t, tl, IndexVersion { generation: g(5), seq: 3 }),
            tenant_deletion_mark_key(t),
            RemoteKey::from_listing(&format!("tenants/{t}/timelines/{tl}/junk-000000ff")).unwrap(),
            // Another tenant's key is not ours to count.
            layer_key(TenantId([9; 16]), tl, &layer, g(40)),
        ];
        assert_eq!(max_generation_in_listing(t, &keys), Some(g(7)));
        let keys = vec![index_key(t, tl, IndexVersion { generation: g(12), seq: 1 })];
        assert_eq!(max_generation_in_listing(t, &keys), Some(g(12)));
        assert_eq!(max_generation_in_listing(t, &[]), None);
    }

    #[test]
    fn a_tenant_listing_names_generation_timelines_and_highest_lsn() {
        let t = TenantId([1; 16]);
        let (tl, tl2) = (TimelineId([2; 16]), TimelineId([3; 16]));
        let delta: LayerName =
            "0000000000000000-0000000000001000__0000000000000010-0000000000000041".parse().unwrap();
        let image: LayerName =
            "0000000000000000-0000000000001000__0000000000000030".parse().unwrap();
        let keys = vec![
            layer_key(t, tl, &delta, g(1)),
            layer_key(t, tl2, &image, g(3)),
            index_key(t, tl, IndexVersion { generation: g(2), seq: 9 }),
            tenant_deletion_mark_key(t),
            layer_key(TenantId([9; 16]), tl, &delta, g(40)),
        ];
        let found = summarize_tenant_listing(t, &keys);
        assert_eq!(found.objects, 4);
        assert_eq!(found.max_generation, Some(g(3)));
        assert_eq!(found.timelines, [tl, tl2].into_iter().collect());
        // The delta's LSN range is half-open: its highest LSN is 0x40.
        assert_eq!(found.highest_lsn, Some(Lsn(0x40)));
        assert!(found.deletion_mark);
        assert!(!found.is_empty());
        let text = found.to_string();
        assert!(text.contains("highest LSN 0/40") && text.contains(&tl2.to_string()), "{text}");
        assert!(summarize_tenant_listing(t, &keys[4..]).is_empty());
    }
}
