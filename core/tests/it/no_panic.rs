//! No parser panics, whatever it is fed: arbitrary strings and bytes, and valid
//! encodings with a few bytes changed or cut off (which reach deeper checks than
//! random noise does).

use crate::support::{arb_deletion_list, arb_index_part, arb_location_conf, sample_index_part};
use proptest::prelude::*;
use strata_core::deletion_list::{DeletionHeader, DeletionList};
use strata_core::index_part::IndexPart;
use strata_core::location_conf::LocationConf;
use strata_core::metadata::TimelineMetadata;
use strata_core::remote_path::{RemoteKey, classify_timelines_entry, parse_index_key};
use strata_core::{Generation, Key, LayerName, Lsn, NodeId, TenantId, TimelineId};

/// Every text parser in core.
fn parse_text(s: &str) {
    let _ = s.parse::<TenantId>();
    let _ = s.parse::<TimelineId>();
    let _ = s.parse::<NodeId>();
    let _ = s.parse::<Lsn>();
    let _ = Lsn::from_file_hex(s);
    let _ = s.parse::<Key>();
    let _ = s.parse::<Generation>();
    let _ = Generation::parse_suffix(s);
    let _ = s.parse::<LayerName>();
    let _ = DeletionList::parse_file_name(s);
    let _ = LocationConf::from_toml(s);
    if let Ok(key) = RemoteKey::from_listing(s) {
        let _ = parse_index_key(crate::support::TENANT, crate::support::TIMELINE, &key);
        let _ = classify_timelines_entry(crate::support::TENANT, &key);
        let _ = key.file_name();
    }
    // The same text behind every index prefix, so the suffix parser sees it.
    let prefixed = format!(
        "{}{s}",
        strata_core::remote_path::index_prefix(crate::support::TENANT, crate::support::TIMELINE)
    );
    if let Ok(key) = RemoteKey::from_listing(&prefixed) {
        let _ = parse_index_key(crate::support::TENANT, crate::support::TIMELINE, &key);
    }
}

/// Every byte parser in core.
fn parse_bytes(b: &[u8]) {
    let _ = IndexPart::from_json_bytes(b);
    let _ = TimelineMetadata::from_bytes(b);
    let _ = DeletionList::from_json_bytes(b);
    let _ = DeletionHeader::from_json_bytes(b);
    if let Ok(s) = std::str::from_utf8(b) {
        parse_text(s);
    }
}

/// A byte edit: (position, new byte) pairs, then an optional cut.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    for &(at, b) in edits {
        let at = at % bytes.len();
        bytes[at] = b;
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes
}

fn edits() -> impl Strategy<Value = (Vec<(usize, u8)>, Option<usize>)> {
    (
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        proptest::option::of(any::<usize>()),
    )
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        parse_text(&s);
        parse_bytes(s.as_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        parse_bytes(&b);
    }

    #[test]
    fn near_valid_index_parts_never_panic(index in arb_index_part(), (e, cut) in edits()) {
        parse_bytes(&mutate(index.to_json_bytes(), &e, cut));
    }

    #[test]
    fn near_valid_metadata_never_panics(index in arb_index_part(), (e, cut) in edits()) {
        parse_bytes(&mutate(index.metadata.to_bytes().to_vec(), &e, cut));
    }

    #[test]
    fn near_valid_location_confs_never_panic(conf in arb_location_conf(), (e, cut) in edits()) {
        parse_bytes(&mutate(conf.to_toml().into_bytes(), &e, cut));
    }

    #[test]
    fn near_valid_deletion_lists_never_panic(list in arb_deletion_list(), (e, cut) in edits()) {
        parse_bytes(&mutate(list.to_json_bytes(), &e, cut));
    }

    #[test]
    fn near_valid_names_never_panic(
        name in crate::support::arb_layer_name(),
        g in crate::support::arb_generation(),
        (e, cut) in edits(),
    ) {
        parse_bytes(&mutate(name.remote_file_name(g).into_bytes(), &e, cut));
        parse_bytes(&mutate(name.to_string().into_bytes(), &e, cut));
    }
}

#[test]
fn every_prefix_of_a_valid_index_part_is_an_error_not_a_panic() {
    let bytes = sample_index_part().to_json_bytes();
    for cut in 0..bytes.len() {
        assert!(IndexPart::from_json_bytes(&bytes[..cut]).is_err(), "prefix of {cut} bytes parsed");
    }
}
