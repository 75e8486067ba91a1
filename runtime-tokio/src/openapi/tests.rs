use super::*;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use strata_core::node::api;
use strata_core::redo::{self, DeltaOp as CoreOp, IngestRecord as CoreRecord};
use strata_core::request_body;

/// The checked-in document, next to the workspace's docs.
fn checked_in_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

#[test]
fn checked_in_spec_is_current() {
    let generated = spec_json();
    let path = checked_in_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/openapi.json differs from the spec the handlers generate; regenerate it with \
         `UPDATE_OPENAPI=1 cargo test -p strata-runtime-tokio --lib openapi` and commit it"
    );
}

/// Every guarded operation lists 401, 403, 500 and 503 (with `Retry-After`), and every
/// 4xx/5xx body is `ErrorBody`.
#[test]
fn every_operation_lists_the_shared_errors_with_one_error_body() {
    let spec: Value = serde_json::from_str(&spec_json()).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 13, "one path per route of the router");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            let open = OPEN_PATHS.contains(&path.as_str());
            for status in ["401", "403", "500", "503"] {
                assert_eq!(responses.contains_key(status), !open, "{method} {path} {status}");
            }
            if !open {
                assert!(responses["503"]["headers"]["Retry-After"].is_object(), "{method} {path}");
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    assert_eq!(operations, 15);
}

/// `core` as JSON reads into `Mirror` (which refuses unknown fields) and writes back
/// to the same JSON; and that JSON reads back into `Core`.
fn same_json<Core, Mirror>(core: &Core)
where
    Core: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    Mirror: Serialize + DeserializeOwned,
{
    let value = serde_json::to_value(core).unwrap();
    let mirror: Mirror = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("mirror refuses {value}: {e}"));
    let again = serde_json::to_value(&mirror).unwrap();
    assert_eq!(again, value, "the mirror writes other JSON than the core type");
    let back: Core = serde_json::from_value(again).unwrap();
    assert_eq!(&back, core);
}

/// `text` is accepted by both, or refused by both.
fn same_verdict<Core: DeserializeOwned, Mirror: DeserializeOwned>(text: &str) {
    let core = serde_json::from_str::<Core>(text).is_ok();
    let mirror = serde_json::from_str::<Mirror>(text).is_ok();
    assert_eq!(core, mirror, "core accepts {text}: {core}; the mirror: {mirror}");
}

fn tenant(n: u8) -> TenantId {
    TenantId::from_bytes([n; 16])
}

fn timeline(n: u8) -> TimelineId {
    TimelineId::from_bytes([n; 16])
}

fn timeline_info(n: u8) -> api::TimelineInfo {
    api::TimelineInfo {
        tenant: tenant(n),
        timeline: timeline(n + 1),
        state: "Active".into(),
        generation: Generation::new(u32::from(n) + 1).unwrap(),
        last_ingested_lsn: Lsn(0x1_0000_0010),
        disk_consistent_lsn: Lsn(0x10),
        remote_consistent_lsn_projected: Lsn(8),
        remote_consistent_lsn_visible: Lsn(0),
        layers: 3,
    }
}

#[test]
fn answer_mirrors_write_what_core_writes() {
    same_json::<api::TimelineInfo, TimelineInfo>(&timeline_info(7));
    same_json::<api::TenantInfo, TenantInfo>(&api::TenantInfo {
        tenant: tenant(1),
        generation: Some(Generation::new(4).unwrap()),
        state: "Active".into(),
        reason: None,
        timelines: vec![timeline(2), timeline(3)],
        broken_timelines: vec![api::BrokenTimeline {
            timeline: timeline(3),
            kind: "corrupt".into(),
            reason: "remote object x: bad".into(),
        }],
    });
    same_json::<api::TenantInfo, TenantInfo>(&api::TenantInfo {
        tenant: tenant(9),
        generation: None,
        state: "Broken".into(),
        reason: Some("config unreadable".into()),
        timelines: vec![],
        broken_timelines: vec![],
    });
}

#[test]
fn request_body_mirrors_read_and_write_what_core_does() {
    use request_body as rb;
    same_json::<rb::CreateTenantBody, CreateTenantBody>(&rb::CreateTenantBody::default());
    same_json::<rb::CreateTenantBody, CreateTenantBody>(&rb::CreateTenantBody {
        tenant_id: Some(tenant(5)),
    });
    same_json::<rb::CreateTimelineBody, CreateTimelineBody>(&rb::CreateTimelineBody {
        timeline_id: Some(timeline(6)),
    });
    same_json::<rb::LocationConfigBody, LocationConfigBody>(&rb::LocationConfigBody {
        mode: "Secondary".into(),
        generation: Some(3),
        warm: true,
        attach_only: false,
    });
    same_json::<rb::LocationConfigBody, LocationConfigBody>(&rb::LocationConfigBody {
        mode: "AttachedMulti".into(),
        generation: Some(4),
        warm: false,
        attach_only: true,
    });
    let records = vec![
        CoreRecord { key: Key(1), lsn: Lsn(0x20), record: redo::Record::Image(vec![0xab, 1]) },
        CoreRecord {
            key: Key(0x2a),
            lsn: Lsn(0x1_0000_0000),
            record: redo::Record::Delta(vec![
                CoreOp::WriteAt { offset: 2, bytes: vec![0xff] },
                CoreOp::Append(vec![]),
                CoreOp::Truncate(9),
                CoreOp::Clear,
            ]),
        },
    ];
    same_json::<rb::IngestBody, IngestBody>(&rb::IngestBody { records });
    for text in [r#"{}"#, r#"{"tenant_id": "00"}"#, r#"{"tenant_id": null}"#, r#"{"other": 1}"#] {
        same_verdict::<rb::CreateTenantBody, CreateTenantBody>(text);
    }
    for text in [
        r#"{"mode": "Detached"}"#,
        r#"{"mode": "X", "generation": 0}"#,
        r#"{"generation": 1}"#,
        r#"{"mode": "Secondary", "warm": null}"#,
        r#"{"mode": "Secondary", "extra": 1}"#,
        r#"{"mode": "AttachedMulti", "attach_only": true}"#,
        r#"{"mode": "AttachedMulti", "attach_only": 1}"#,
    ] {
        same_verdict::<rb::LocationConfigBody, LocationConfigBody>(text);
    }
    for text in [
        r#"{"records": []}"#,
        r#"{"records": [{"key": "000000000000002A", "lsn": "0/1", "record": {"image": "AB"}}]}"#,
        r#"{"records": [{"key": "000000000000002A", "lsn": "0/1", "record": {"delta": ["clear", {"truncate": 1}]}}]}"#,
        r#"{"records": [{"key": "000000000000002a", "lsn": "0/1", "record": {"image": ""}}]}"#,
        r#"{"records": [{"key": "000000000000002A", "lsn": "0/1", "record": "clear"}]}"#,
        r#"{"records": [{"key": "000000000000002A", "lsn": "0/1"}]}"#,
    ] {
        same_verdict::<rb::IngestBody, IngestBody>(text);
    }
}

#[test]
fn examples_in_the_spec_parse_as_the_core_types() {
    let spec: Value = serde_json::from_str(&spec_json()).unwrap();
    let schemas = &spec["components"]["schemas"];
    let example = |name: &str| json!(schemas[name]["examples"][0]);
    serde_json::from_value::<TenantId>(example("TenantId")).unwrap();
    serde_json::from_value::<TimelineId>(example("TimelineId")).unwrap();
    serde_json::from_value::<Lsn>(example("Lsn")).unwrap();
    serde_json::from_value::<Key>(example("Key")).unwrap();
}
