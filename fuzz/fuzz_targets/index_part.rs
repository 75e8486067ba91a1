//! `IndexPart` (index_part.json): arbitrary bytes never panic the reader, and an
//! accepted index writes back to JSON that reads to the same index.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::index_part::IndexPart;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = IndexPart::from_json_bytes(data) {
        let written = index.to_json_bytes();
        let again = IndexPart::from_json_bytes(&written).expect("the writer's output reads back");
        assert_eq!(again, index);
        assert_eq!(again.to_json_bytes(), written, "writing is deterministic");
    }
});
