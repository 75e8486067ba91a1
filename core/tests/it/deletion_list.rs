//! Deletion-queue files: the list and the header.

use crate::support::{arb_deletion_header, arb_deletion_list, sample_deletion_list};
use proptest::prelude::*;
use strata_core::ParseError;
use strata_core::deletion_list::{DELETION_HEADER_FILE_NAME, DeletionHeader, DeletionList};

#[test]
fn deletion_list_json_snapshot() {
    let list = sample_deletion_list();
    let mut validated = list.clone();
    validated.validated = true;
    let out = [
        DeletionList::file_name(list.sequence),
        String::from_utf8(list.to_json_bytes()).unwrap(),
        String::from_utf8(validated.to_json_bytes()).unwrap(),
    ];
    insta::assert_snapshot!(out.join("\n"));
}

#[test]
fn deletion_header_json_snapshot() {
    let out = [
        DELETION_HEADER_FILE_NAME.to_owned(),
        String::from_utf8(DeletionHeader::new(41).to_json_bytes()).unwrap(),
    ];
    insta::assert_snapshot!(out.join("\n"));
}

#[test]
fn unknown_versions_are_rejected() {
    for version in [0u32, 2, u32::MAX] {
        let mut list = sample_deletion_list();
        list.version = version;
        assert_eq!(
            DeletionList::from_json_bytes(&list.to_json_bytes()),
            Err(ParseError::UnsupportedVersion { what: "deletion list", version, accepted: &[1] })
        );
        let header = DeletionHeader { version, validated_sequence: 3 };
        assert_eq!(
            DeletionHeader::from_json_bytes(&header.to_json_bytes()),
            Err(ParseError::UnsupportedVersion {
                what: "deletion header",
                version,
                accepted: &[1]
            })
        );
    }
}

#[test]
fn malformed_lists_and_headers_are_invalid() {
    let list = String::from_utf8(sample_deletion_list().to_json_bytes()).unwrap();
    let tenant = crate::support::TENANT.to_string();
    let bad_lists = [
        String::new(),
        list[..list.len() - 1].to_owned(),
        list.replace("\"generation\":3", "\"generation\":0"),
        list.replace(&tenant, &tenant.to_uppercase()),
        list.replace(&tenant, &tenant[1..]),
        list.replace("\"sequence\"", "\"seq\""),
        list.replacen('{', "{\"extra\":1,", 1),
    ];
    for bad in bad_lists {
        let got = DeletionList::from_json_bytes(bad.as_bytes());
        assert!(
            matches!(got, Err(ParseError::Invalid { what: "deletion list", .. })),
            "{bad} -> {got:?}"
        );
    }
    for bad in [&b""[..], b"{}", b"{\"version\":1}", b"{\"version\":1,\"validated_sequence\":-1}"] {
        let got = DeletionHeader::from_json_bytes(bad);
        assert!(matches!(got, Err(ParseError::Invalid { what: "deletion header", .. })), "{got:?}");
    }
}

#[test]
fn names_that_leave_the_timeline_prefix_are_rejected() {
    for bad in ["", ".", "..", "../other/x", "a/b", "/abs"] {
        let mut list = sample_deletion_list();
        let tenant = list.tenants.values_mut().next().unwrap();
        tenant.timelines.values_mut().next().unwrap().push(bad.to_owned());
        let got = DeletionList::from_json_bytes(&list.to_json_bytes());
        assert!(
            matches!(got, Err(ParseError::Malformed { what: "deletion list", .. })),
            "{bad:?} -> {got:?}"
        );
    }
}

#[test]
fn list_file_names() {
    assert_eq!(DeletionList::file_name(0x2a), "000000000000002a-01.list");
    for bad in [
        "",
        "-01.list",
        "000000000000002A-01.list",
        "00000000000002a-01.list",
        "000000000000002a-02.list",
        "header-01",
        "+00000000000002a-01.list",
    ] {
        assert_eq!(DeletionList::parse_file_name(bad), None, "{bad:?}");
    }
}

proptest! {
    #[test]
    fn deletion_list_round_trips(list in arb_deletion_list()) {
        let bytes = list.to_json_bytes();
        prop_assert_eq!(DeletionList::from_json_bytes(&bytes), Ok(list.clone()));
        prop_assert_eq!(DeletionList::parse_file_name(&DeletionList::file_name(list.sequence)), Some(list.sequence));
    }

    #[test]
    fn deletion_header_round_trips(header in arb_deletion_header()) {
        prop_assert_eq!(DeletionHeader::from_json_bytes(&header.to_json_bytes()), Ok(header));
    }

    #[test]
    fn list_file_names_sort_like_sequences(a in any::<u64>(), b in any::<u64>()) {
        prop_assert_eq!(DeletionList::file_name(a).cmp(&DeletionList::file_name(b)), a.cmp(&b));
    }
}
