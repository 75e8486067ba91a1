//! The timeline metadata blob.

use crate::support::{arb_metadata, hex_dump, sample_metadata};
use proptest::prelude::*;
use strata_core::ParseError;
use strata_core::metadata::{METADATA_SIZE, METADATA_VERSION, TimelineMetadata};

/// Rewrites the checksum after a deliberate edit, so the next check is reached.
fn reseal(b: &mut [u8; METADATA_SIZE]) {
    let crc = crc32c::crc32c(&b[4..]);
    b[0..4].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn metadata_blob_snapshot() {
    insta::assert_snapshot!(hex_dump(&sample_metadata().to_bytes()));
}

#[test]
fn metadata_without_ancestor_snapshot() {
    let m = TimelineMetadata { ancestor: None, ..sample_metadata() };
    insta::assert_snapshot!(hex_dump(&m.to_bytes()));
}

#[test]
fn wrong_length_is_rejected() {
    let b = sample_metadata().to_bytes();
    for len in [0, 1, 4, 57, METADATA_SIZE - 1] {
        assert_eq!(
            TimelineMetadata::from_bytes(&b[..len]),
            Err(ParseError::Truncated {
                what: "timeline metadata",
                need: METADATA_SIZE,
                have: len
            })
        );
    }
    let mut long = b.to_vec();
    long.push(0);
    assert!(matches!(
        TimelineMetadata::from_bytes(&long),
        Err(ParseError::Invalid { what: "timeline metadata", .. })
    ));
}

#[test]
fn any_flipped_bit_is_a_checksum_error() {
    let b = sample_metadata().to_bytes();
    for byte in 0..METADATA_SIZE {
        for bit in 0..8 {
            let mut c = b;
            c[byte] ^= 1 << bit;
            assert!(
                matches!(
                    TimelineMetadata::from_bytes(&c),
                    Err(ParseError::Checksum { what: "timeline metadata", .. })
                ),
                "byte {byte} bit {bit}"
            );
        }
    }
}

#[test]
fn unknown_version_is_rejected() {
    for version in [0u16, 2, u16::MAX] {
        let mut b = sample_metadata().to_bytes();
        b[4..6].copy_from_slice(&version.to_be_bytes());
        reseal(&mut b);
        assert_eq!(
            TimelineMetadata::from_bytes(&b),
            Err(ParseError::UnsupportedVersion {
                what: "timeline metadata",
                version: version.into(),
                accepted: &[METADATA_VERSION as u32],
            })
        );
    }
}

#[test]
fn bad_body_length_and_ancestor_flag_are_invalid() {
    let mut b = sample_metadata().to_bytes();
    b[6..8].copy_from_slice(&48u16.to_be_bytes());
    reseal(&mut b);
    assert!(matches!(TimelineMetadata::from_bytes(&b), Err(ParseError::Invalid { .. })));

    let mut b = sample_metadata().to_bytes();
    b[32] = 2;
    reseal(&mut b);
    assert!(matches!(TimelineMetadata::from_bytes(&b), Err(ParseError::Invalid { .. })));
}

#[test]
fn garbage_after_the_body_is_invalid() {
    // A sealed blob with bytes in the zero padding, or an ancestor id without the
    // ancestor flag, did not come from this writer.
    let no_ancestor = TimelineMetadata { ancestor: None, ..sample_metadata() };
    for at in [33, 48, 56, 57, METADATA_SIZE - 1] {
        let mut b = no_ancestor.to_bytes();
        b[at] = 0x5a;
        reseal(&mut b);
        assert!(
            matches!(TimelineMetadata::from_bytes(&b), Err(ParseError::Invalid { .. })),
            "byte {at}"
        );
    }
}

proptest! {
    #[test]
    fn metadata_round_trips(m in arb_metadata()) {
        let b = m.to_bytes();
        prop_assert_eq!(b.len(), METADATA_SIZE);
        prop_assert_eq!(TimelineMetadata::from_bytes(&b), Ok(m));
    }

    #[test]
    fn sealed_random_blobs_never_panic(b in proptest::array::uniform32(any::<u8>()), v in any::<bool>()) {
        // Sealed so the parser gets past the checksum into the field checks.
        let mut blob = [0u8; METADATA_SIZE];
        blob[4..36].copy_from_slice(&b);
        if v {
            blob[4..6].copy_from_slice(&METADATA_VERSION.to_be_bytes());
            blob[6..8].copy_from_slice(&49u16.to_be_bytes());
        }
        reseal(&mut blob);
        let _ = TimelineMetadata::from_bytes(&blob);
    }
}
