//! The walredo request body (`RedoRequest`): arbitrary bytes never panic the decoder,
//! an accepted request encodes back to exactly the same bytes, and executing it
//! never panics and never yields a value over one page.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::redo::{MAX_VALUE_BYTES, RedoRequest};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = RedoRequest::decode(data) else { return };
    assert_eq!(request.encode(), data, "the encoding is canonical");
    if let Ok(value) = request.execute() {
        assert!(value.len() <= MAX_VALUE_BYTES);
    }
});
