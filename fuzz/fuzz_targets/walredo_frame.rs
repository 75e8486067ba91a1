//! The walredo pipe framing: a byte stream is split into frames until it ends or
//! goes bad; no input panics, every whole frame re-encodes to exactly its bytes, a
//! header that parses encodes back to itself, and the "whole frame buffered?" check
//! agrees with the splitter.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::walredo_frame::{
    FRAME_HEADER_BYTES, Frame, encode_frame, encode_header, holds_complete_frame, parse_header,
    split_frame,
};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        if let Some(h) = rest.get(..FRAME_HEADER_BYTES) {
            let h: [u8; FRAME_HEADER_BYTES] = h.try_into().expect("five bytes");
            if let Ok(header) = parse_header(h) {
                assert_eq!(encode_header(header.kind, header.body_len), Ok(h));
            }
        }
        match split_frame(rest) {
            Ok(Some(Frame { kind, body, len })) => {
                assert!(holds_complete_frame(rest));
                assert_eq!(encode_frame(kind, body).as_deref(), Ok(&rest[..len]));
                assert!(len >= FRAME_HEADER_BYTES);
                rest = &rest[len..];
            }
            Ok(None) => {
                assert!(!holds_complete_frame(rest));
                break;
            }
            Err(_) => break,
        }
    }
});
