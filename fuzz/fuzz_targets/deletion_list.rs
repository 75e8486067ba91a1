//! The deletion queue's on-disk formats: deletion lists, the header and list file
//! names. Arbitrary bytes never panic a reader; whatever is accepted writes back to
//! bytes that read to the same value, and an accepted list names only plain file
//! names (one path component each).

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::deletion_list::{DeletionHeader, DeletionList};

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = DeletionList::from_json_bytes(data) {
        for name in list.tenants.values().flat_map(|t| t.timelines.values()).flatten() {
            assert!(!name.is_empty() && name != "." && name != ".." && !name.contains('/'));
        }
        assert_eq!(DeletionList::from_json_bytes(&list.to_json_bytes()), Ok(list));
    }
    if let Ok(header) = DeletionHeader::from_json_bytes(data) {
        assert_eq!(DeletionHeader::from_json_bytes(&header.to_json_bytes()), Ok(header));
    }
    if let Ok(s) = std::str::from_utf8(data)
        && let Some(seq) = DeletionList::parse_file_name(s)
    {
        assert_eq!(DeletionList::file_name(seq), s);
    }
});
