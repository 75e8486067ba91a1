//! `LocationConf` TOML: the current version 2, the previous version 1.

use crate::support::{arb_location_conf, generation};
use proptest::prelude::*;
use strata_core::ParseError;
use strata_core::location_conf::{
    LOCATION_CONF_ACCEPTED_VERSIONS, LocationConf, LocationMode, TOML_INT_MAX, TenantConfOverrides,
};

const WHAT: &str = "location config (config-v1)";

fn sample() -> LocationConf {
    LocationConf {
        mode: LocationMode::AttachedMulti { generation: generation(5) },
        tenant_conf: TenantConfOverrides {
            checkpoint_distance_bytes: Some(268_435_456),
            pitr_interval_ms: Some(604_800_000),
            ..Default::default()
        },
    }
}

#[test]
fn v2_toml_snapshot() {
    insta::assert_snapshot!(sample().to_toml());
}

#[test]
fn v2_every_mode_snapshot() {
    let modes = [
        LocationMode::AttachedSingle { generation: generation(1) },
        LocationMode::AttachedMulti { generation: generation(2) },
        LocationMode::AttachedStale { generation: generation(3) },
        LocationMode::Secondary { warm: true },
    ];
    let out: Vec<String> = modes
        .iter()
        .map(|&mode| LocationConf { mode, tenant_conf: Default::default() }.to_toml())
        .collect();
    insta::assert_snapshot!(out.join("---\n"));
}

const V1_SAMPLE: &str = r#"
mode = "Attached"
generation = 5
attach_mode = "Multi"

[tenant_conf]
checkpoint_distance_bytes = 268435456
pitr_interval_ms = 604800000
"#;

#[test]
fn v1_sample_reads_back_and_is_rewritten_as_v2() {
    let conf = LocationConf::from_toml(V1_SAMPLE).unwrap();
    assert_eq!(conf, sample());
    let rewritten = conf.to_toml();
    assert!(rewritten.contains("format_version = 2"), "{rewritten}");
    assert_eq!(LocationConf::from_toml(&rewritten), Ok(conf.clone()));
    insta::assert_debug_snapshot!(conf);
}

#[test]
fn v1_forms() {
    let g = generation(9);
    let cases = [
        ("mode = \"Attached\"\ngeneration = 9\n", LocationMode::AttachedSingle { generation: g }),
        (
            "mode = \"Attached\"\ngeneration = 9\nattach_mode = \"Single\"\n",
            LocationMode::AttachedSingle { generation: g },
        ),
        (
            "mode = \"Attached\"\ngeneration = 9\nattach_mode = \"Stale\"\n",
            LocationMode::AttachedStale { generation: g },
        ),
        ("mode = \"Secondary\"\n", LocationMode::Secondary { warm: false }),
        ("mode = \"Secondary\"\nwarm = true\n", LocationMode::Secondary { warm: true }),
    ];
    for (text, mode) in cases {
        assert_eq!(
            LocationConf::from_toml(text),
            Ok(LocationConf { mode, tenant_conf: Default::default() }),
            "{text}"
        );
    }
}

#[test]
fn unknown_versions_are_rejected() {
    for (text, version) in [
        ("format_version = 3\n[mode]\nkind = \"Secondary\"\nwarm = true\n", 3),
        ("format_version = 0\n", 0),
    ] {
        assert_eq!(
            LocationConf::from_toml(text),
            Err(ParseError::UnsupportedVersion {
                what: WHAT,
                version,
                accepted: LOCATION_CONF_ACCEPTED_VERSIONS,
            })
        );
    }
    // v1 was written without a format_version key; an explicit `format_version = 1`
    // reaches the v1 reader, which rejects the unknown field.
    assert!(matches!(
        LocationConf::from_toml("format_version = 1\nmode = \"Secondary\"\n"),
        Err(ParseError::Invalid { what: WHAT, .. })
    ));
    for text in ["format_version = -1\n", "format_version = 4294967296\n"] {
        assert!(
            matches!(
                LocationConf::from_toml(text),
                Err(ParseError::UnsupportedVersion { what: WHAT, .. })
            ),
            "{text}"
        );
    }
    assert!(matches!(
        LocationConf::from_toml("format_version = \"2\"\n"),
        Err(ParseError::Malformed { what: WHAT, .. })
    ));
}

#[test]
fn malformed_configs_are_invalid() {
    let cases = [
        "", // v1 without mode
        "this is not toml",
        "format_version = 2\n",                                    // no mode
        "format_version = 2\n[mode]\nkind = \"AttachedSingle\"\n", // no generation
        "format_version = 2\n[mode]\nkind = \"AttachedSingle\"\ngeneration = 0\n",
        "format_version = 2\n[mode]\nkind = \"Detached\"\n", // never stored
        "format_version = 2\n[mode]\nkind = \"Secondary\"\nwarm = true\ngeneration = 3\n",
        "format_version = 2\n[mode]\nkind = \"Secondary\"\nwarm = true\n[tenant_conf]\ncheckpoint_distanse_bytes = 1\n",
        "format_version = 2\ncolour = 1\n[mode]\nkind = \"Secondary\"\nwarm = true\n",
        "mode = \"Attached\"\n", // v1 attached, no generation
        "mode = \"Attached\"\ngeneration = 0\n",
        "mode = \"Attached\"\ngeneration = 3\nattach_mode = \"Double\"\n",
        "mode = \"Secondary\"\ngeneration = 3\n",
        "mode = \"Secondary\"\nattach_mode = \"Single\"\n",
        "mode = \"Detached\"\n",
    ];
    for text in cases {
        let got = LocationConf::from_toml(text);
        assert!(matches!(got, Err(ParseError::Invalid { what: WHAT, .. })), "{text:?} -> {got:?}");
    }
}

#[test]
fn integers_beyond_toml_range_saturate() {
    let mut conf = sample();
    conf.tenant_conf.gc_horizon_bytes = Some(u64::MAX);
    conf.tenant_conf.checkpoint_timeout_ms = Some(TOML_INT_MAX + 1);
    let back = LocationConf::from_toml(&conf.to_toml()).unwrap();
    assert_eq!(back.tenant_conf.gc_horizon_bytes, Some(TOML_INT_MAX));
    assert_eq!(back.tenant_conf.checkpoint_timeout_ms, Some(TOML_INT_MAX));
    assert_eq!(
        back.tenant_conf.checkpoint_distance_bytes,
        conf.tenant_conf.checkpoint_distance_bytes
    );
}

proptest! {
    #[test]
    fn location_conf_round_trips(conf in arb_location_conf()) {
        let text = conf.to_toml();
        prop_assert_eq!(LocationConf::from_toml(&text), Ok(conf.clone()));
        prop_assert!(text.starts_with("format_version = 2\n"), "{}", text);
    }
}
