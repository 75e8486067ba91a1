//! One record's binary encoding (inside layer files): arbitrary bytes never panic the
//! decoder, an accepted record encodes back to exactly the same bytes, and checking
//! or applying a decoded record never panics (it may refuse).

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::redo::{self, MAX_VALUE_BYTES, Record};

fuzz_target!(|data: &[u8]| {
    let Ok(record) = Record::decode(data) else { return };
    assert_eq!(record.encode(), data, "the encoding is canonical");
    let _ = record.size_bytes();
    let valid = record.validate().is_ok();
    if let Record::Delta(ops) = &record {
        let on_empty = redo::apply(None, &[ops]);
        assert_eq!(on_empty.is_ok(), valid, "validate says whether a delta applies on its own");
        let base = vec![0xa5; data.len() % (MAX_VALUE_BYTES + 2)];
        if let Ok(value) = redo::apply(Some(&base), &[ops, ops]) {
            assert!(value.len() <= MAX_VALUE_BYTES);
        }
    }
});
