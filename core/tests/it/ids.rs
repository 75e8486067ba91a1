//! TenantId, TimelineId, NodeId, Lsn, Key and Generation: display, parse, serde.

use crate::support::{TENANT, TIMELINE, arb_generation, arb_tenant, arb_timeline, generation};
use proptest::prelude::*;
use strata_core::{Generation, Key, Lsn, NodeId, OpId, ParseError, TenantId, TimelineId};

#[test]
fn display_forms_snapshot() {
    let lines = [
        format!("tenant        {TENANT}"),
        format!("timeline      {TIMELINE}"),
        format!("tenant debug  {TENANT:?}"),
        format!("node          {}", NodeId(7)),
        format!("op            {}", OpId(12)),
        format!("lsn           {}", Lsn(0x0000_0001_0169_AC28)),
        format!("lsn file hex  {}", Lsn(0x0000_0001_0169_AC28).to_file_hex()),
        format!("lsn zero      {}", Lsn::ZERO),
        format!("lsn max       {}", Lsn::MAX),
        format!("key           {}", Key(0x0000_0000_0123_ABCD)),
        format!("key max       {}", Key::MAX),
        format!("generation    {}", generation(10)),
        format!("gen suffix    {}", generation(10).suffix()),
        format!("gen max sfx   {}", generation(u32::MAX).suffix()),
        format!("gen json      {}", serde_json::to_string(&generation(10)).unwrap()),
        format!("lsn json      {}", serde_json::to_string(&Lsn(0x0169_AC28)).unwrap()),
        format!("key json      {}", serde_json::to_string(&Key(0xABCD)).unwrap()),
        format!("node json     {}", serde_json::to_string(&NodeId(7)).unwrap()),
        format!("tenant json   {}", serde_json::to_string(&TENANT).unwrap()),
    ];
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn ids_reject_wrong_length_case_and_non_hex() {
    let good = TENANT.to_string();
    for bad in [
        String::new(),
        good[..31].to_owned(),
        format!("{good}0"),
        good.to_uppercase(),
        format!("{}g", &good[..31]),
        format!("{}+", &good[..31]),
        format!(" {}", &good[..31]),
    ] {
        assert!(
            matches!(bad.parse::<TenantId>(), Err(ParseError::Malformed { what: "tenant id", .. })),
            "{bad:?}"
        );
        assert!(
            matches!(
                bad.parse::<TimelineId>(),
                Err(ParseError::Malformed { what: "timeline id", .. })
            ),
            "{bad:?}"
        );
    }
    // A wrong-case id inside JSON is an error too, not a silent lowercase.
    let json = format!("\"{}\"", good.to_uppercase());
    assert!(serde_json::from_str::<TenantId>(&json).is_err());
}

#[test]
fn node_id_forms() {
    assert_eq!("node-7".parse::<NodeId>(), Ok(NodeId(7)));
    assert_eq!("7".parse::<NodeId>(), Ok(NodeId(7)));
    for bad in ["", "node-", "node-x", "-1", "node--1", "node-node-1", "18446744073709551616"] {
        assert!(
            matches!(bad.parse::<NodeId>(), Err(ParseError::Malformed { what: "node id", .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn lsn_rejects_bad_forms() {
    for bad in
        ["", "0", "/", "0/", "/0", "0/0/0", "123456789/0", "0/123456789", "x/0", "0/ 1", "+1/0"]
    {
        assert!(
            matches!(bad.parse::<Lsn>(), Err(ParseError::Malformed { what: "lsn", .. })),
            "{bad:?}"
        );
    }
    // Either case in the X/X form; upper case only in file names.
    assert_eq!("a/b".parse::<Lsn>(), Ok(Lsn(0xa_0000_000b)));
    assert_eq!("A/B".parse::<Lsn>(), Ok(Lsn(0xa_0000_000b)));
    for bad in ["000000000000000a", "00000000000000A", "00000000000000000A", "+00000000000000A"] {
        assert!(
            matches!(
                Lsn::from_file_hex(bad),
                Err(ParseError::Malformed { what: "lsn in a file name", .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn key_rejects_wrong_case_and_length() {
    for bad in ["", "00000000000000ab", "0000000000000AB", "00000000000000AB0", "000000000000 0AB"]
    {
        assert!(
            matches!(bad.parse::<Key>(), Err(ParseError::Malformed { what: "key", .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn generation_zero_is_rejected_everywhere() {
    assert_eq!(Generation::new(0), None);
    assert!(matches!(
        Generation::parse_suffix("-00000000"),
        Err(ParseError::Invalid { what: "generation suffix", .. })
    ));
    assert!(matches!(
        "0".parse::<Generation>(),
        Err(ParseError::Invalid { what: "generation", .. })
    ));
    assert!(serde_json::from_str::<Generation>("0").is_err());
    assert!(toml::from_str::<toml::Table>("g = 0").is_ok(), "the TOML itself is fine");
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct G {
        g: Generation,
    }
    assert!(toml::from_str::<G>("g = 0").is_err());
    assert_eq!(Generation::FIRST.previous(), None);
    assert_eq!(generation(u32::MAX).next(), None);
}

#[test]
fn generation_suffix_rejects_bad_forms() {
    for bad in
        ["", "-", "0000000a", "-0000000A", "-000000a", "-00000000a", "_0000000a", "-+000000a"]
    {
        assert!(
            matches!(
                Generation::parse_suffix(bad),
                Err(ParseError::Malformed { what: "generation suffix", .. })
            ),
            "{bad:?}"
        );
    }
    for bad in ["", "-1", "x", "4294967296", "1.0"] {
        assert!(
            matches!(
                bad.parse::<Generation>(),
                Err(ParseError::Malformed { what: "generation", .. })
            ),
            "{bad:?}"
        );
    }
}

proptest! {
    #[test]
    fn tenant_and_timeline_ids_round_trip(t in arb_tenant(), tl in arb_timeline()) {
        let s = t.to_string();
        prop_assert_eq!(s.len(), 32);
        prop_assert_eq!(s.parse::<TenantId>(), Ok(t));
        prop_assert_eq!(tl.to_string().parse::<TimelineId>(), Ok(tl));
        let json = serde_json::to_string(&t).unwrap();
        prop_assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), t);
    }

    #[test]
    fn node_id_round_trips(n in any::<u64>()) {
        prop_assert_eq!(NodeId(n).to_string().parse::<NodeId>(), Ok(NodeId(n)));
        let json = serde_json::to_string(&NodeId(n)).unwrap();
        prop_assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), NodeId(n));
    }

    #[test]
    fn lsn_round_trips_in_both_forms(n in any::<u64>()) {
        let lsn = Lsn(n);
        prop_assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
        prop_assert_eq!(lsn.to_string().to_lowercase().parse::<Lsn>(), Ok(lsn));
        let hex = lsn.to_file_hex();
        prop_assert_eq!(hex.len(), 16);
        prop_assert_eq!(Lsn::from_file_hex(&hex), Ok(lsn));
        let json = serde_json::to_string(&lsn).unwrap();
        prop_assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), lsn);
    }

    #[test]
    fn lsn_file_hex_orders_like_the_number(a in any::<u64>(), b in any::<u64>()) {
        prop_assert_eq!(Lsn(a).to_file_hex().cmp(&Lsn(b).to_file_hex()), a.cmp(&b));
    }

    #[test]
    fn key_round_trips(n in any::<u64>()) {
        let key = Key(n);
        prop_assert_eq!(key.to_string().parse::<Key>(), Ok(key));
        let json = serde_json::to_string(&key).unwrap();
        prop_assert_eq!(serde_json::from_str::<Key>(&json).unwrap(), key);
    }

    #[test]
    fn generation_round_trips_as_suffix_and_decimal(g in arb_generation()) {
        let suffix = g.suffix();
        prop_assert_eq!(suffix.len(), 9);
        prop_assert_eq!(Generation::parse_suffix(&suffix), Ok(g));
        prop_assert_eq!(g.get().to_string().parse::<Generation>(), Ok(g));
        let json = serde_json::to_string(&g).unwrap();
        prop_assert_eq!(serde_json::from_str::<Generation>(&json).unwrap(), g);
    }

    #[test]
    fn generation_suffix_orders_like_the_number(a in arb_generation(), b in arb_generation()) {
        prop_assert_eq!(a.suffix().cmp(&b.suffix()), a.cmp(&b));
    }
}
