//! `IndexPart` JSON and the index-selection function.

use crate::support::{arb_generation, arb_index_part, sample_index_part, sample_metadata};
use proptest::prelude::*;
use strata_core::ParseError;
use strata_core::WallTime;
use strata_core::index_part::{IndexPart, IndexVersion, select_index};

fn json_of(index: &IndexPart) -> serde_json::Value {
    serde_json::from_slice(&index.to_json_bytes()).unwrap()
}

fn parse_value(v: &serde_json::Value) -> Result<IndexPart, ParseError> {
    IndexPart::from_json_bytes(&serde_json::to_vec(v).unwrap())
}

#[test]
fn index_part_json_snapshot() {
    let bytes = sample_index_part().to_json_bytes();
    insta::assert_snapshot!(String::from_utf8(bytes).unwrap());
}

#[test]
fn tombstone_json_snapshot() {
    let mut index = IndexPart::empty(sample_metadata());
    index.seq = 8;
    index.deleted_at = Some(WallTime::from_unix_millis(1_764_320_000_000));
    let bytes = index.to_json_bytes();
    insta::assert_snapshot!(String::from_utf8(bytes.clone()).unwrap());
    assert_eq!(IndexPart::from_json_bytes(&bytes), Ok(index));
}

#[test]
fn unknown_versions_are_rejected() {
    for version in [0u32, 2, 99, u32::MAX] {
        let mut v = json_of(&sample_index_part());
        v["version"] = version.into();
        assert_eq!(
            parse_value(&v),
            Err(ParseError::UnsupportedVersion {
                what: "index_part.json",
                version,
                accepted: strata_core::index_part::ACCEPTED_VERSIONS,
            })
        );
    }
    // A version that is not a u32 at all, or no version, is invalid JSON for us.
    for bad in [serde_json::json!(-1), serde_json::json!("1"), serde_json::json!(null)] {
        let mut v = json_of(&sample_index_part());
        v["version"] = bad.clone();
        assert!(matches!(parse_value(&v), Err(ParseError::Invalid { .. })), "{bad}");
    }
    let mut v = json_of(&sample_index_part());
    v.as_object_mut().unwrap().remove("version");
    assert!(matches!(parse_value(&v), Err(ParseError::Invalid { .. })));
}

#[test]
fn bad_metadata_hex_is_malformed() {
    for bad in ["zz", "abc", "0x00"] {
        let mut v = json_of(&sample_index_part());
        v["metadata"] = bad.into();
        assert!(
            matches!(parse_value(&v), Err(ParseError::Malformed { what: "index_part.json", .. })),
            "{bad}"
        );
    }
}

#[test]
fn bad_embedded_metadata_is_reported_as_such() {
    let mut v = json_of(&sample_index_part());
    let hex = v["metadata"].as_str().unwrap().to_owned();
    // Truncated blob.
    v["metadata"] = hex[..hex.len() - 2].into();
    assert!(matches!(
        parse_value(&v),
        Err(ParseError::Truncated { what: "timeline metadata", .. })
    ));
    // One flipped digit: checksum.
    let flipped: String = hex
        .chars()
        .enumerate()
        .map(|(i, c)| if i == 20 { if c == '0' { '1' } else { '0' } } else { c })
        .collect();
    v["metadata"] = flipped.into();
    assert!(matches!(parse_value(&v), Err(ParseError::Checksum { what: "timeline metadata", .. })));
}

#[test]
fn disk_consistent_lsn_must_match_metadata() {
    let mut v = json_of(&sample_index_part());
    v["disk_consistent_lsn"] = "0/1".into();
    assert!(matches!(parse_value(&v), Err(ParseError::Invalid { what: "index_part.json", .. })));
}

#[test]
fn tombstone_with_layers_is_invalid() {
    let mut v = json_of(&sample_index_part());
    v["deleted_at"] = 1_764_320_000_000u64.into();
    let err = parse_value(&v).unwrap_err();
    assert!(matches!(&err, ParseError::Invalid { what: "index_part.json", .. }), "{err}");
    assert!(err.to_string().contains("tombstone"), "{err}");
}

#[test]
fn bad_layer_entries_are_rejected() {
    let base = json_of(&sample_index_part());
    let name = base["layer_metadata"].as_object().unwrap().keys().next().unwrap().clone();
    let mut cases = Vec::new();
    // Generation 0 in a layer entry.
    let mut v = base.clone();
    v["layer_metadata"][&name]["generation"] = 0.into();
    cases.push(v);
    // An unknown field in a layer entry (deny_unknown_fields).
    let mut v = base.clone();
    v["layer_metadata"][&name]["colour"] = "red".into();
    cases.push(v);
    // A layer name that does not parse.
    let mut v = base.clone();
    let meta = v["layer_metadata"][&name].clone();
    v["layer_metadata"].as_object_mut().unwrap().insert("not-a-layer".into(), meta);
    cases.push(v);
    for v in cases {
        assert!(
            matches!(parse_value(&v), Err(ParseError::Invalid { what: "index_part.json", .. })),
            "{v}"
        );
    }
}

#[test]
fn not_json_is_invalid() {
    for bad in [&b""[..], b"{", b"[]", b"null", b"\xff\xfe", b"{\"version\": 1}"] {
        assert!(
            matches!(
                IndexPart::from_json_bytes(bad),
                Err(ParseError::Invalid { what: "index_part.json", .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn select_index_examples() {
    let v = |g: u32, seq: u64| IndexVersion { generation: crate::support::generation(g), seq };
    let g = crate::support::generation;
    let listed = [v(1, 0), v(1, 5), v(3, 2), v(3, 9), v(5, 0), v(7, 1)];
    // Own generation present: its highest sequence.
    let s = select_index(g(3), &listed);
    assert_eq!(s.chosen, Some(v(3, 9)));
    assert_eq!(s.newer, vec![v(5, 0), v(7, 1)]);
    // Own generation absent: the highest generation below.
    let s = select_index(g(4), &listed);
    assert_eq!(s.chosen, Some(v(3, 9)));
    assert_eq!(s.newer, vec![v(5, 0), v(7, 1)]);
    // Everything is newer: nothing is loaded, all reported.
    let s = select_index(g(1), &[v(2, 0), v(2, 1)]);
    assert_eq!(s.chosen, None);
    assert_eq!(s.newer, vec![v(2, 0), v(2, 1)]);
    // Nothing listed.
    let s = select_index(g(1), &[]);
    assert_eq!((s.chosen, s.newer.len()), (None, 0));
}

proptest! {
    #[test]
    fn index_part_round_trips(index in arb_index_part()) {
        let bytes = index.to_json_bytes();
        prop_assert_eq!(IndexPart::from_json_bytes(&bytes), Ok(index.clone()));
        // Writing again gives the same bytes: the format is canonical.
        prop_assert_eq!(IndexPart::from_json_bytes(&bytes).unwrap().to_json_bytes(), bytes);
    }

    #[test]
    fn select_index_properties(
        own in (1u32..12).prop_map(crate::support::generation),
        listed in proptest::collection::vec(
            ((1u32..12).prop_map(crate::support::generation), 0u64..6)
                .prop_map(|(generation, seq)| IndexVersion { generation, seq }),
            0..16,
        ),
    ) {
        let s = select_index(own, &listed);
        let at_or_below: Vec<_> = listed.iter().filter(|v| v.generation <= own).collect();
        // Never a generation above our own; the maximum at or below it.
        match s.chosen {
            Some(chosen) => {
                prop_assert!(chosen.generation <= own);
                prop_assert!(listed.contains(&chosen));
                prop_assert!(at_or_below.iter().all(|v| **v <= chosen));
                if listed.iter().any(|v| v.generation == own) {
                    prop_assert_eq!(chosen.generation, own);
                }
            }
            None => prop_assert!(at_or_below.is_empty()),
        }
        // Every newer index is reported, sorted, and only those.
        let mut newer: Vec<_> = listed.iter().copied().filter(|v| v.generation > own).collect();
        newer.sort();
        prop_assert_eq!(s.newer, newer);
    }

    #[test]
    fn select_index_is_order_independent(
        own in arb_generation(),
        mut listed in proptest::collection::vec(crate::support::arb_index_version(), 0..10),
    ) {
        let a = select_index(own, &listed);
        listed.reverse();
        prop_assert_eq!(select_index(own, &listed), a);
    }
}
