//! Layer file names, bare and with the generation suffix of their remote key: the
//! parser never panics, and an accepted name has exactly one spelling.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::{Generation, LayerName};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(name) = s.parse::<LayerName>() {
        assert_eq!(name.to_string(), s, "layer names have one spelling");
        assert_eq!(name.to_string().parse::<LayerName>(), Ok(name.clone()));
        let keys = name.key_range();
        assert!(keys.start < keys.end, "a parsed key range is never empty");
        if let Some(g) = Generation::new(u32::from(data[0])) {
            let remote = name.remote_file_name(g);
            let (bare, suffix) = remote.split_at(s.len());
            assert_eq!(bare.parse::<LayerName>(), Ok(name));
            assert_eq!(Generation::parse_suffix(suffix), Ok(g));
        }
    }
});
