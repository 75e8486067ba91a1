//! The remote key layout: prefixes, layer keys, index keys, the deletion mark.

use crate::support::{
    TENANT, TIMELINE, arb_generation, arb_index_version, arb_layer_name, arb_tenant, arb_timeline,
    delta, generation, image,
};
use proptest::prelude::*;
use strata_core::ParseError;
use strata_core::index_part::IndexVersion;
use strata_core::remote_path::{
    self, RemoteKey, TimelinesEntry, classify_timelines_entry, index_key, layer_key,
    parse_index_key,
};

#[test]
fn remote_keys_snapshot() {
    let v = IndexVersion { generation: generation(3), seq: 0x1f };
    let lines = [
        remote_path::tenant_prefix(TENANT),
        remote_path::timelines_prefix(TENANT),
        remote_path::timeline_prefix(TENANT, TIMELINE),
        remote_path::index_prefix(TENANT, TIMELINE),
        index_key(TENANT, TIMELINE, v).to_string(),
        layer_key(TENANT, TIMELINE, &delta(0, u64::MAX, 0x10, 0x20), generation(2)).to_string(),
        layer_key(TENANT, TIMELINE, &image(0, u64::MAX, 0x20), generation(3)).to_string(),
        remote_path::tenant_deletion_mark_key(TENANT).to_string(),
    ];
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn listing_keys_with_dot_components_are_rejected() {
    for bad in ["", "/tenants/x", "tenants/../x", "..", "tenants/x/..", "a/./b", ".", "./a"] {
        assert!(
            matches!(
                RemoteKey::from_listing(bad),
                Err(ParseError::Malformed { what: "remote key", .. })
            ),
            "{bad:?}"
        );
    }
    // Dots inside a component are ordinary.
    assert!(RemoteKey::from_listing("tenants/a/index_part.json.0000000000000001-00000001").is_ok());
    assert!(RemoteKey::from_listing("a/..b/c..").is_ok());
}

#[test]
fn deserialized_remote_keys_are_checked_like_listings() {
    assert!(serde_json::from_str::<RemoteKey>(r#""tenants/../etc""#).is_err());
    assert!(serde_json::from_str::<RemoteKey>(r#""""#).is_err());
    let k: RemoteKey = serde_json::from_str(r#""tenants/a/b""#).unwrap();
    assert_eq!(k.as_str(), "tenants/a/b");
    assert_eq!(k.file_name(), "b");
}

#[test]
fn malformed_index_keys_are_typed_errors() {
    let prefix = remote_path::index_prefix(TENANT, TIMELINE);
    let cases = [
        ("", "index key suffix"),
        (".", "index key suffix"),
        ("-00000001", "index key suffix"),
        (".000000000000001-00000001", "index key suffix"),
        (".000000000000001F-00000001", "index key suffix"),
        (".000000000000001f-0000000A", "generation suffix"),
        (".000000000000001f_00000001", "generation suffix"),
        (".000000000000001f-00000001.tmp", "generation suffix"),
        (".+00000000000001f-00000001", "index key suffix"),
    ];
    for (suffix, what) in cases {
        let key = RemoteKey::from_listing(&format!("{prefix}{suffix}")).unwrap();
        let got = parse_index_key(TENANT, TIMELINE, &key);
        assert!(
            matches!(&got, Some(Err(ParseError::Malformed { what: w, .. })) if *w == what),
            "{suffix:?} -> {got:?}"
        );
    }
    let zero = RemoteKey::from_listing(&format!("{prefix}.0000000000000001-00000000")).unwrap();
    assert!(matches!(
        parse_index_key(TENANT, TIMELINE, &zero),
        Some(Err(ParseError::Invalid { what: "generation suffix", .. }))
    ));
    // Keys of other timelines or of layers are not index keys at all.
    let layer = layer_key(TENANT, TIMELINE, &image(0, 1, 2), generation(1));
    assert_eq!(parse_index_key(TENANT, TIMELINE, &layer), None);
    let other = index_key(
        TENANT,
        crate::support::ANCESTOR,
        IndexVersion { generation: generation(1), seq: 0 },
    );
    assert_eq!(parse_index_key(TENANT, TIMELINE, &other), None);
}

#[test]
fn timelines_entries_are_classified() {
    let prefix = remote_path::timelines_prefix(TENANT);
    let classify = |rest: &str| {
        classify_timelines_entry(
            TENANT,
            &RemoteKey::from_listing(&format!("{prefix}{rest}")).unwrap(),
        )
    };
    assert_eq!(classify("deleted"), Some(TimelinesEntry::DeletionMark));
    assert_eq!(
        classify(&format!("{TIMELINE}/index_part.json")),
        Some(TimelinesEntry::Timeline(TIMELINE))
    );
    assert_eq!(
        classify(&TIMELINE.to_string()),
        Some(TimelinesEntry::Unknown(TIMELINE.to_string()))
    );
    assert_eq!(classify("deleted/x"), Some(TimelinesEntry::Unknown("deleted".into())));
    assert_eq!(classify("junk/x"), Some(TimelinesEntry::Unknown("junk".into())));
    let elsewhere = RemoteKey::from_listing("tenants/other/timelines/deleted").unwrap();
    assert_eq!(classify_timelines_entry(TENANT, &elsewhere), None);
}

proptest! {
    #[test]
    fn index_key_round_trips(t in arb_tenant(), tl in arb_timeline(), v in arb_index_version()) {
        let key = index_key(t, tl, v);
        prop_assert!(key.as_str().starts_with(&remote_path::index_prefix(t, tl)));
        prop_assert!(key.as_str().ends_with(&v.generation.suffix()));
        prop_assert_eq!(RemoteKey::from_listing(key.as_str()), Ok(key.clone()));
        prop_assert_eq!(parse_index_key(t, tl, &key), Some(Ok(v)));
    }

    #[test]
    fn index_keys_sort_like_versions_within_a_generation(
        g in arb_generation(), a in any::<u64>(), b in any::<u64>()
    ) {
        let ka = index_key(TENANT, TIMELINE, IndexVersion { generation: g, seq: a });
        let kb = index_key(TENANT, TIMELINE, IndexVersion { generation: g, seq: b });
        prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
    }

    #[test]
    fn layer_key_is_listable_and_classified(
        t in arb_tenant(), tl in arb_timeline(), name in arb_layer_name(), g in arb_generation()
    ) {
        let key = layer_key(t, tl, &name, g);
        prop_assert_eq!(RemoteKey::from_listing(key.as_str()), Ok(key.clone()));
        prop_assert_eq!(key.file_name(), name.remote_file_name(g));
        prop_assert_eq!(classify_timelines_entry(t, &key), Some(TimelinesEntry::Timeline(tl)));
        prop_assert_eq!(parse_index_key(t, tl, &key), None);
    }
}
