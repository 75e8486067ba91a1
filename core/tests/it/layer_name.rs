//! Layer file names: delta and image, local and remote forms.

use crate::support::{arb_generation, arb_layer_name, delta, generation, image};
use proptest::prelude::*;
use strata_core::layer_name::{KeyRange, LsnRange};
use strata_core::{Generation, Key, LayerName, Lsn, ParseError};

#[test]
fn layer_names_snapshot() {
    let names = [
        delta(0, u64::MAX, 0x0149_6A10, 0x0000_0001_0200_0028),
        delta(0x0000_0000_0001_0000, 0x0000_0000_0002_0000, 0x10, 0x20),
        image(0, u64::MAX, 0x0149_6A10),
        image(0x0000_0000_0001_0000, 0x0000_0000_0001_0001, 0xFFFF_FFFF_FFFF_FFFF),
    ];
    let lines: Vec<String> =
        names.iter().map(|n| format!("{n}\n{}", n.remote_file_name(generation(0x2a)))).collect();
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn start_not_below_end_is_invalid() {
    let k = "0000000000000010";
    let l = "0000000000000020";
    for bad in [
        format!("{k}-{k}__{l}-0000000000000030"), // empty key range
        format!("0000000000000011-{k}__{l}-0000000000000030"), // reversed key range
        format!("{k}-0000000000000011__{l}-{l}"), // empty lsn range
        format!("{k}-0000000000000011__{l}-0000000000000019"), // reversed lsn range
    ] {
        assert!(
            matches!(bad.parse::<LayerName>(), Err(ParseError::Invalid { .. })),
            "{bad:?} -> {:?}",
            bad.parse::<LayerName>()
        );
    }
    assert!(matches!(
        KeyRange::new(Key(5), Key(5)),
        Err(ParseError::Invalid { what: "key range", .. })
    ));
    assert!(matches!(
        LsnRange::new(Lsn(6), Lsn(5)),
        Err(ParseError::Invalid { what: "lsn range", .. })
    ));
}

#[test]
fn malformed_layer_names_are_rejected() {
    let good = delta(0x10, 0x11, 0x20, 0x30).to_string();
    assert_eq!(good.parse::<LayerName>().map(|n| n.to_string()).as_deref(), Ok(good.as_str()));
    for bad in [
        String::new(),
        "garbage".to_owned(),
        good.replace("__", "_"),
        good.replace("__", "-"),
        good.to_lowercase().replace("0000000000000010", "000000000000000a"),
        good[1..].to_owned(),
        format!("{good}-00000001"), // a remote file name is not a layer name
        format!("{good}0"),
        good.replacen('-', "", 1),
    ] {
        assert!(
            matches!(bad.parse::<LayerName>(), Err(ParseError::Malformed { .. })),
            "{bad:?} -> {:?}",
            bad.parse::<LayerName>()
        );
    }
    // Wrong case: keys and LSNs in names are upper case only.
    let lower = image(0xab, 0xcd, 0xef).to_string().to_lowercase();
    assert!(matches!(lower.parse::<LayerName>(), Err(ParseError::Malformed { what: "key", .. })));
}

proptest! {
    #[test]
    fn layer_name_round_trips(name in arb_layer_name()) {
        let s = name.to_string();
        prop_assert_eq!(s.parse::<LayerName>(), Ok(name.clone()));
        let json = serde_json::to_string(&name).unwrap();
        prop_assert_eq!(serde_json::from_str::<LayerName>(&json).unwrap(), name.clone());
        prop_assert_eq!(s.contains("__"), true);
        prop_assert_eq!(name.is_delta(), s.len() == 16 * 4 + 4);
    }

    #[test]
    fn remote_file_name_is_name_plus_suffix(name in arb_layer_name(), g in arb_generation()) {
        let remote = name.remote_file_name(g);
        let split = remote.len() - 9;
        let (base, suffix) = remote.split_at(split);
        prop_assert_eq!(base.parse::<LayerName>(), Ok(name));
        prop_assert_eq!(Generation::parse_suffix(suffix), Ok(g));
    }
}
