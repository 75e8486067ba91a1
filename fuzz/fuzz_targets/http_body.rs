//! The HTTP API's request bodies (create tenant, create timeline, location_config,
//! ingest) and the page query: arbitrary bytes never panic a reader, an accepted body
//! writes back to JSON that reads to the same body, and a location_config body means
//! the same request after going through its inverse.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::request_body::{
    CreateTenantBody, CreateTimelineBody, IngestBody, LocationConfigBody, PageQuery,
};
use strata_core::{Key, Lsn};

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = CreateTenantBody::from_json_bytes(data) {
        assert_eq!(CreateTenantBody::from_json_bytes(&body.to_json_bytes()), Ok(body));
    }
    if let Ok(body) = CreateTimelineBody::from_json_bytes(data) {
        assert_eq!(CreateTimelineBody::from_json_bytes(&body.to_json_bytes()), Ok(body));
    }
    if let Ok(body) = LocationConfigBody::from_json_bytes(data) {
        assert_eq!(LocationConfigBody::from_json_bytes(&body.to_json_bytes()), Ok(body.clone()));
        if let Ok(request) = body.request() {
            assert_eq!(LocationConfigBody::from_request(&request).request(), Ok(request));
        }
    }
    if let Ok(body) = IngestBody::from_json_bytes(data) {
        assert_eq!(IngestBody::from_json_bytes(&body.to_json_bytes()), Ok(body));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let (key, lsn) = s.split_once('&').unwrap_or((s, ""));
        let query = PageQuery { key: key.to_string(), lsn: lsn.to_string() };
        if let Ok((k, l)) = query.parse() {
            assert_eq!(k.to_string().parse::<Key>(), Ok(k));
            assert_eq!(l.to_string().parse::<Lsn>(), Ok(l));
        }
    }
});
