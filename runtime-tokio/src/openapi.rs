//! The HTTP API's contract: an OpenAPI 3.1 document generated from the handlers'
//! `#[utoipa::path]` attributes in [`crate::http`] and the schemas below, served at
//! `GET /v1/openapi.json` and checked in as `docs/openapi.json`. The test
//! `checked_in_spec_is_current` fails when the two differ; regenerate the file with
//! `UPDATE_OPENAPI=1 cargo test -p strata-runtime-tokio --lib openapi`.
//!
//! Every operation lists every status it can answer. The ones every route shares are
//! added by [`SharedResponses`] rather than repeated on each handler: 401 and 403 on
//! every route that needs a token (all but `/v1/status`, `/metrics` and
//! `/v1/openapi.json`), and 500 and 503 (with `Retry-After`) on the same routes.
//! Every 4xx and 5xx body is [`ErrorBody`].
//!
//! core carries no schema (it has no utoipa). The core types the API shows have a
//! mirror here, of the same name, which is what the document describes; the tests
//! below check that each mirror reads and writes exactly the JSON its core type
//! does, so that the two cannot drift apart unnoticed. The leaves (ids, LSNs, keys,
//! generations, hex bytes) are schemas written by hand, each matching its core
//! type's `FromStr`/`Display`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use strata_core::{Generation, TenantId, TimelineId};
use strata_core::{Key, Lsn};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder, Schema, Type,
};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// The document: every route of [`crate::http::router`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "strata storage node",
        description = "The HTTP API of one strata storage node (docs/OPERATIONS.md). Every \
            4xx and 5xx answer is JSON `{\"msg\": \"...\"}` (ErrorBody); a 503 carries \
            `Retry-After` (seconds). A known path with another method answers 405 with \
            `Allow`, an unknown path 404.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::http::create_tenant,
        crate::http::list_tenants,
        crate::http::location_config,
        crate::http::tenant_location,
        crate::http::detach,
        crate::http::delete_tenant,
        crate::http::create_timeline,
        crate::http::timeline_info,
        crate::http::delete_timeline,
        crate::http::ingest,
        crate::http::read_page,
        crate::http::status,
        crate::http::metrics,
        crate::http::openapi_json,
        crate::http::failpoints::put_failpoints,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SharedResponses)
)]
pub struct ApiDoc;

/// The document as pretty JSON with a final newline (what `docs/openapi.json` holds).
pub fn spec_json() -> String {
    let mut spec = serde_json::to_value(ApiDoc::openapi())
        .unwrap_or_else(|e| unreachable!("the OpenAPI document serializes: {e}"));
    add_links(&mut spec);
    let mut text = serde_json::to_string_pretty(&spec)
        .unwrap_or_else(|e| unreachable!("the OpenAPI document serializes: {e}"));
    text.push('\n');
    text
}

/// Routes that need no token and are held to no `[limits]` bound: they answer 200.
pub const OPEN_PATHS: [&str; 3] = ["/v1/status", "/metrics", "/v1/openapi.json"];

/// Adds what the routes share, from each operation's shape: 400 with parameters or
/// a body; 404 under `{tenant}`; 413, 415 and 422 with a JSON body; on every guarded
/// route 401, 403, 500 and 503 + `Retry-After`; and the bearer security scheme.
pub struct SharedResponses;

fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
    )
}

fn integer_header(description: &str) -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
        .description(Some(description))
        .build()
}

fn string_header(description: &str) -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

fn add_shared(path: &str, op: &mut Operation) {
    let has_body = op.request_body.is_some();
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let responses = &mut op.responses.responses;
    let mut add = |status: &str, response: ResponseBuilder| {
        responses.entry(status.to_string()).or_insert_with(|| response.build().into());
    };
    if has_params || has_body {
        add(
            "400",
            error_response(
                "a malformed id in the path, a bad query, a body that is not JSON, or a refused value",
            ),
        );
    }
    if path.contains("{tenant}") {
        add("404", error_response("no such tenant or timeline"));
    }
    if has_body {
        add("413", error_response("the body is larger than 16 MiB"));
        add("415", error_response("a body without `content-type: application/json`"));
        add(
            "422",
            error_response(
                "JSON of the wrong shape: a missing or unknown field, a value of the wrong type",
            ),
        );
    }
    add(
        "401",
        error_response("auth is on and the token is missing, malformed, expired or not signed by a configured key")
            .header("WWW-Authenticate", string_header("`Bearer`")),
    );
    add("403", error_response("the token's scope does not cover this route"));
    add(
        "500",
        error_response(
            "a bug, a broken timeline or a tenant broken by a panic (the message says which)",
        ),
    );
    add(
        "503",
        error_response(
            "not active yet, busy, backpressure, shutting down, or a `[limits]` bound: retry",
        )
        .header("Retry-After", integer_header("seconds to wait before retrying")),
    );
    op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
}

impl Modify for SharedResponses {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
        for (path, item) in api.paths.paths.iter_mut() {
            if OPEN_PATHS.contains(&path.as_str()) {
                continue;
            }
            for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete]
                .into_iter()
                .flatten()
            {
                add_shared(path, op);
            }
        }
    }
}

/// OpenAPI links, so that a client generator or a stateful tester (schemathesis)
/// can follow a created timeline into the operations on it, and a placed tenant
/// into creating a timeline. Written as JSON: utoipa 5.5 writes a link's
/// `operationId` as `operation_id`, which no reader understands.
fn add_links(spec: &mut serde_json::Value) {
    let mut link = |path: &str, method: &str, status: &str, targets: &[&str], params: Value| {
        let links = &mut spec["paths"][path][method]["responses"][status]["links"];
        assert!(links.is_null() || links.is_object(), "{method} {path} {status}");
        for target in targets {
            links[*target] = serde_json::json!({"operationId": target, "parameters": params});
        }
    };
    link(
        "/v1/tenant/{tenant}/timeline",
        "post",
        "201",
        &["timeline_info", "ingest", "read_page", "delete_timeline"],
        serde_json::json!({"tenant": "$response.body#/tenant", "timeline": "$response.body#/timeline"}),
    );
    link(
        "/v1/tenant/{tenant}/location_config",
        "put",
        "200",
        &["create_timeline", "tenant_location"],
        serde_json::json!({"tenant": "$request.path.tenant"}),
    );
    link(
        "/v1/tenant",
        "post",
        "201",
        &["create_timeline"],
        serde_json::json!({"tenant": "$response.body#/tenant_id"}),
    );
}

/// Every 4xx and 5xx answer's body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong, for a human.
    pub msg: String,
}

/// A string schema written by hand, for a core type whose JSON is a string.
macro_rules! string_schema {
    ($(#[$doc:meta])* $spec:ident, $name:literal, $pattern:literal, $example:literal) => {
        $(#[$doc])*
        pub struct $spec;

        impl PartialSchema for $spec {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some($pattern))
                    .examples([$example])
                    .into()
            }
        }

        impl ToSchema for $spec {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

string_schema!(
    /// `TenantId`: 32 lowercase hex digits.
    TenantIdSpec,
    "TenantId",
    "^[0-9a-f]{32}$",
    "0123456789abcdef0123456789abcdef"
);
string_schema!(
    /// `TimelineId`: 32 lowercase hex digits.
    TimelineIdSpec,
    "TimelineId",
    "^[0-9a-f]{32}$",
    "fedcba9876543210fedcba9876543210"
);
string_schema!(
    /// `Lsn`: `HI/LO`, each half 1 to 8 hex digits (written upper-case).
    LsnSpec,
    "Lsn",
    "^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$",
    "0/16B3748"
);
string_schema!(
    /// `Key`: 16 upper-case hex digits (`FFFFFFFFFFFFFFFF` is refused: not storable).
    KeySpec,
    "Key",
    "^[0-9A-F]{16}$",
    "000000000000002A"
);

/// `Generation`: an integer from 1.
pub struct GenerationSpec;

impl PartialSchema for GenerationSpec {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(u32::MAX))
            .into()
    }
}

impl ToSchema for GenerationSpec {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Generation")
    }
}

/// A tenant's place on a node (the `mode` of location_config and of its answers).
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: the JSON is core's string
pub enum LocationMode {
    AttachedSingle,
    AttachedMulti,
    AttachedStale,
    Secondary,
    Detached,
}

/// Bytes as hex (an even number of hex digits; written lowercase).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HexBytes(pub String);

impl PartialSchema for HexBytes {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).pattern(Some("^([0-9a-fA-F]{2})*$")).into()
    }
}

impl ToSchema for HexBytes {}

// ---- request bodies: mirrors of strata_core::request_body ----

/// `POST /v1/tenant`: the id to create, or a random one when absent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<TenantIdSpec>)]
    pub tenant_id: Option<TenantId>,
}

/// `POST /v1/tenant/{tenant}/timeline`: the id to create, or a random one when absent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTimelineBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<TimelineIdSpec>)]
    pub timeline_id: Option<TimelineId>,
}

/// `PUT /v1/tenant/{tenant}/location_config`. `generation`: for the attached modes,
/// the generation expected (older than the held one: 409; newer: the tenant
/// restarts on at least it); for `Secondary` and `Detached`, the newest generation
/// the request demotes (a node holding a newer one answers 409). `warm` means
/// something for `Secondary` only. `attach_only`: a tenant already attached at the
/// generation keeps its mode (answered unchanged). `AttachedStale` never takes a new
/// generation: asked of a node not holding the named one, it is a 409. A `mode`
/// outside the list, or generation 0, is a 400.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationConfigBody {
    #[schema(value_type = LocationMode)]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    #[serde(default)]
    pub warm: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attach_only: bool,
}

/// `POST /v1/tenant/{tenant}/timeline/{timeline}/ingest`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestBody {
    pub records: Vec<IngestRecord>,
}

/// One WAL record: `record` applies to `key` at `lsn`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRecord {
    #[schema(value_type = KeySpec)]
    pub key: Key,
    #[schema(value_type = LsnSpec)]
    pub lsn: Lsn,
    pub record: Record,
}

/// A full value (`image`) or edits applied to the value below (`delta`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    Image(HexBytes),
    Delta(Vec<DeltaOp>),
}

/// One edit of a value.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeltaOp {
    /// Overwrite at `offset`, zero-filling any gap past the end.
    WriteAt { offset: u32, bytes: HexBytes },
    /// Add bytes at the end.
    Append(HexBytes),
    /// Keep at most the first n bytes.
    Truncate(u32),
    /// Make the value empty.
    Clear,
}

// ---- answers: mirrors of strata_core::node::api ----

/// A timeline and its four LSNs (mirror of `strata_core::node::api::TimelineInfo`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimelineInfo {
    #[schema(value_type = TenantIdSpec)]
    pub tenant: TenantId,
    #[schema(value_type = TimelineIdSpec)]
    pub timeline: TimelineId,
    pub state: String,
    #[schema(value_type = GenerationSpec)]
    pub generation: Generation,
    #[schema(value_type = LsnSpec)]
    pub last_ingested_lsn: Lsn,
    #[schema(value_type = LsnSpec)]
    pub disk_consistent_lsn: Lsn,
    /// Durable remotely: the index that covers it finished uploading.
    #[schema(value_type = LsnSpec)]
    pub remote_consistent_lsn_projected: Lsn,
    /// Projected and validated: safe for WAL producers to discard below.
    #[schema(value_type = LsnSpec)]
    pub remote_consistent_lsn_visible: Lsn,
    pub layers: usize,
}

/// A tenant as listed (mirror of `strata_core::node::api::TenantInfo`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantInfo {
    #[schema(value_type = TenantIdSpec)]
    pub tenant: TenantId,
    /// `null` for a tenant broken before it was placed (its config unreadable).
    #[schema(value_type = Option<GenerationSpec>)]
    pub generation: Option<Generation>,
    pub state: String,
    /// Why it is `Broken`; `null` otherwise.
    pub reason: Option<String>,
    #[schema(value_type = Vec<TimelineIdSpec>)]
    pub timelines: Vec<TimelineId>,
    pub broken_timelines: Vec<BrokenTimeline>,
}

/// A Broken timeline: requests for it answer 500 with `reason`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrokenTimeline {
    #[schema(value_type = TimelineIdSpec)]
    pub timeline: TimelineId,
    /// `corrupt`, `no_space` or `failed`.
    pub kind: String,
    pub reason: String,
}

// ---- answers built in crate::http ----

/// `201` of `POST /v1/tenant`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantCreated {
    #[schema(value_type = TenantIdSpec)]
    pub tenant_id: TenantId,
    #[schema(value_type = GenerationSpec)]
    pub generation: Generation,
}

/// Where a tenant stands after `location_config` or `detach`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationConfigured {
    /// Whether the request changed anything.
    pub changed: bool,
    #[schema(value_type = LocationMode)]
    pub mode: String,
    /// For the attached modes; `null` otherwise.
    #[schema(value_type = Option<GenerationSpec>)]
    pub generation: Option<Generation>,
    /// For `Secondary`; `null` otherwise.
    pub warm: Option<bool>,
}

/// `200` of `GET /v1/tenant/{tenant}/location`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantLocationReply {
    #[schema(value_type = TenantIdSpec)]
    pub tenant_id: TenantId,
    #[schema(value_type = LocationMode)]
    pub mode: String,
    #[schema(value_type = Option<GenerationSpec>)]
    pub generation: Option<Generation>,
    pub warm: Option<bool>,
    /// Every timeline whose machines run here (none unless attached).
    #[schema(value_type = Vec<TimelineInfo>)]
    pub timelines: Vec<strata_core::node::api::TimelineInfo>,
}

/// `200` of `DELETE /v1/tenant/{tenant}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantDeleted {
    #[schema(value_type = TenantIdSpec)]
    pub tenant_id: TenantId,
    pub deleted: bool,
}

/// `202` of `DELETE /v1/tenant/{tenant}/timeline/{timeline}`: poll GET until 404.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimelineDeleting {
    /// `Deleting`.
    pub state: String,
}

/// `200` of ingest.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ingested {
    #[schema(value_type = LsnSpec)]
    pub last_ingested_lsn: Lsn,
    /// Records applied.
    pub applied: usize,
    /// Records at or below the last ingested LSN, skipped (a retry).
    pub skipped: usize,
}

/// `200` of a page read: the value of `key` as of `lsn`, `null` if it has none.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PageValue {
    #[schema(value_type = KeySpec)]
    pub key: Key,
    #[schema(value_type = LsnSpec)]
    pub lsn: Lsn,
    pub value: Option<HexBytes>,
}

/// One failpoint setting of `PUT /v1/failpoints` (and of its answer).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailpointSetting {
    /// A failpoint of the registry (`strata_adapters::fault_sites::FAILPOINTS`),
    /// e.g. `upload.index`; another name is answered 400.
    #[schema(example = "upload.index")]
    pub name: String,
    /// `off`, `error`, `sleep(MS)`, `pause` or `exit`.
    #[schema(example = "pause")]
    pub action: String,
}

/// `200` of `GET /v1/status`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeStatusReply {
    /// The start-up phase; `Active` once the node serves requests.
    pub phase: String,
    pub in_flight_io: usize,
    pub inputs: u64,
}

#[cfg(test)]
mod tests;
