//! The highest generation found in a tenant's remote storage: what a fresh or lost
//! control-plane store starts above (S-GEN-MONO).

use crate::generation::Generation;
use crate::id::TenantId;
use crate::layer_name::LayerName;
use crate::remote_path::{RemoteKey, TimelinesEntry, classify_timelines_entry, parse_index_key};

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
    let name = key.file_name();
    let split = name.len().checked_sub(GENERATION_SUFFIX_LEN_BYTES)?;
    let (layer, suffix) = (name.get(..split)?, name.get(split..)?);
    layer.parse::<LayerName>().ok()?;
    Generation::parse_suffix(suffix).ok()
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
}
