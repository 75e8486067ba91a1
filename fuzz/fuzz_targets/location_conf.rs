//! The location config (`config-v1`, TOML, format versions 1 and 2): arbitrary text
//! never panics the reader, and an accepted config writes back (always as the
//! current version) to text that reads to the same config.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::location_conf::LocationConf;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(conf) = LocationConf::from_toml(s) {
        let written = conf.to_toml();
        assert_eq!(LocationConf::from_toml(&written), Ok(conf));
    }
});
