//! Ids, LSNs, keys, generations, deletion-list file names and remote object keys:
//! every small text format of strata-core. A parser may reject anything, but must
//! never panic, and whatever it accepts formats back to text that parses to the
//! same value (for most, to the same text: they have one spelling).

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::deletion_list::DeletionList;
use strata_core::remote_path::{self, RemoteKey};
use strata_core::{Generation, Key, Lsn, NodeId, TenantId, TimelineId};

const TENANT: TenantId = TenantId([0x11; 16]);
const TIMELINE: TimelineId = TimelineId([0x22; 16]);

fn text(s: &str) {
    if let Ok(id) = s.parse::<TenantId>() {
        assert_eq!(id.to_string(), s);
    }
    if let Ok(id) = s.parse::<TimelineId>() {
        assert_eq!(id.to_string(), s);
    }
    if let Ok(node) = s.parse::<NodeId>() {
        assert_eq!(node.to_string().parse::<NodeId>(), Ok(node));
    }
    if let Ok(lsn) = s.parse::<Lsn>() {
        assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
    }
    if let Ok(lsn) = Lsn::from_file_hex(s) {
        assert_eq!(lsn.to_file_hex(), s);
    }
    if let Ok(key) = s.parse::<Key>() {
        assert_eq!(key.to_string(), s);
    }
    if let Ok(g) = s.parse::<Generation>() {
        assert_eq!(g.get().to_string().parse::<Generation>(), Ok(g));
    }
    if let Ok(g) = Generation::parse_suffix(s) {
        assert_eq!(g.suffix(), s);
    }
    if let Some(seq) = DeletionList::parse_file_name(s) {
        assert_eq!(DeletionList::file_name(seq), s);
    }
    if let Ok(key) = RemoteKey::from_listing(s) {
        let _ = remote_path::classify_timelines_entry(TENANT, &key);
        if let Some(Ok(v)) = remote_path::parse_index_key(TENANT, TIMELINE, &key) {
            assert_eq!(remote_path::index_key(TENANT, TIMELINE, v), key);
        }
    }
    // The same text as the tail of an index key, so the suffix parser sees it.
    let prefixed = format!("{}{s}", remote_path::index_prefix(TENANT, TIMELINE));
    if let Ok(key) = RemoteKey::from_listing(&prefixed)
        && let Some(Ok(v)) = remote_path::parse_index_key(TENANT, TIMELINE, &key)
    {
        assert_eq!(remote_path::index_key(TENANT, TIMELINE, v), key);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        text(s);
    }
});
