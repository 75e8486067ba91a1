//! Timeline metadata (the binary blob with a CRC32C): arbitrary bytes never panic the
//! reader, and an accepted blob is byte for byte what the writer writes. Each input
//! is tried as given and with its checksum fixed, so the fuzzer reaches the checks
//! behind the CRC.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::layer_file::file_crc32c;
use strata_core::metadata::TimelineMetadata;

fn check(bytes: &[u8]) {
    if let Ok(m) = TimelineMetadata::from_bytes(bytes) {
        assert_eq!(&m.to_bytes()[..], bytes, "an accepted blob is exactly what the writer writes");
        assert_eq!(TimelineMetadata::from_bytes(&m.to_bytes()), Ok(m));
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 4 {
        let mut fixed = data.to_vec();
        let crc = file_crc32c(&fixed[4..]);
        fixed[..4].copy_from_slice(&crc.to_be_bytes());
        check(&fixed);
    }
});
