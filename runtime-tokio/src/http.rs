//! The HTTP API: a thin mapping of routes onto the transport-independent request
//! layer (`strata_core::node::api`). No rule lives here.
//!
//! | method, path | request | success |
//! |---|---|---|
//! | `POST /v1/tenant` | `{"tenant_id"?: hex}` | 201 `{"tenant_id", "generation"}` |
//! | `GET /v1/tenant` | | 200 list of tenants |
//! | `POST /v1/tenant/{t}/timeline` | `{"timeline_id"?: hex}` | 201 timeline info (after its first index is durable) |
//! | `GET /v1/tenant/{t}/timeline/{tl}` | | 200 timeline info with the four LSNs |
//! | `DELETE /v1/tenant/{t}/timeline/{tl}` | | 202 `{"state": "Deleting"}`; poll GET until 404 |
//! | `POST /v1/tenant/{t}/timeline/{tl}/ingest` | `{"records": [...]}` | 200 `{"last_ingested_lsn", "applied", "skipped"}` |
//! | `GET /v1/tenant/{t}/timeline/{tl}/page?key=K&lsn=L` | | 200 `{"key", "lsn", "value": hex or null}` |
//! | `PUT /v1/tenant/{t}/location_config` | `{"mode": "AttachedSingle" \| "AttachedMulti" \| "AttachedStale" \| "Secondary" \| "Detached", "generation"?: n, "warm"?: bool}` | 200 `{"changed": bool, "mode", "generation"}` |
//! | `POST /v1/tenant/{t}/detach` | | 200, as location_config `Detached` |
//! | `DELETE /v1/tenant/{t}` | | 200 once the tenant and all its timelines are gone (503 while it runs: retry) |
//! | `GET /v1/status` | | 200 node phase |
//! | `GET /metrics` | | Prometheus text |
//!
//! Errors: `{"msg": "..."}` with 400 (bad input), 404 (unknown id), 409 (exists),
//! 503 + `Retry-After` (not active yet, busy, backpressure, shutting down), 500
//! (a bug or a broken timeline).

use crate::driver::{NodeHandle, NodeStatus};
use crate::metrics::Metrics;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use strata_core::Generation;
use strata_core::location_conf::LocationMode;
use strata_core::node::api::{ApiError, Request, Response};
use strata_core::redo::IngestRecord;
use strata_core::tenant::{LocationOutcome, LocationRequest, Placement, RequestedMode};
use strata_core::{Key, Lsn, TenantId, TimelineId};

/// The largest request body accepted (an ingest batch); larger ones get 413.
pub const MAX_REQUEST_BODY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub node: NodeHandle,
    pub metrics: Arc<Metrics>,
    pub status: Arc<Mutex<NodeStatus>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/tenant", post(create_tenant).get(list_tenants))
        .route("/v1/tenant/{tenant}/location_config", put(location_config))
        .route("/v1/tenant/{tenant}/detach", post(detach))
        .route("/v1/tenant/{tenant}", axum::routing::delete(delete_tenant))
        .route("/v1/tenant/{tenant}/timeline", post(create_timeline))
        .route(
            "/v1/tenant/{tenant}/timeline/{timeline}",
            get(timeline_info).delete(delete_timeline),
        )
        .route("/v1/tenant/{tenant}/timeline/{timeline}/ingest", post(ingest))
        .route("/v1/tenant/{tenant}/timeline/{timeline}/page", get(read_page))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .with_state(state)
}

/// An API error as HTTP.
pub struct HttpError(ApiError);

#[derive(Serialize)]
struct ErrorBody {
    msg: String,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> HttpResponse {
        let (status, retry_after_ms) = match &self.0 {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, None),
            ApiError::Unavailable { retry_after_ms, .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, Some(*retry_after_ms))
            }
            ApiError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, Some(1_000)),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        let mut response = (status, Json(ErrorBody { msg: self.0.to_string() })).into_response();
        if let Some(ms) = retry_after_ms {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

fn bad_request(what: impl std::fmt::Display) -> HttpError {
    HttpError(ApiError::BadRequest(what.to_string()))
}

async fn call(
    state: &AppState,
    route: &'static str,
    request: Request,
) -> Result<Response, HttpError> {
    let timer = state.metrics.request_started(route);
    let result = state.node.call(request).await;
    state.metrics.request_finished(route, timer, result.as_ref().err());
    result.map_err(HttpError)
}

fn unexpected(r: Response) -> HttpError {
    HttpError(ApiError::Internal(format!("unexpected response {r:?}")))
}

fn parse_tenant(s: &str) -> Result<TenantId, HttpError> {
    s.parse().map_err(bad_request)
}

fn parse_timeline(s: &str) -> Result<TimelineId, HttpError> {
    s.parse().map_err(bad_request)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateTenantBody {
    tenant_id: Option<TenantId>,
}

async fn create_tenant(
    State(state): State<AppState>,
    body: Option<Json<CreateTenantBody>>,
) -> Result<HttpResponse, HttpError> {
    let tenant =
        body.and_then(|Json(b)| b.tenant_id).unwrap_or_else(|| TenantId::from_bytes(random_id()));
    match call(&state, "create_tenant", Request::CreateTenant { tenant }).await? {
        Response::TenantCreated { tenant, generation } => Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({"tenant_id": tenant, "generation": generation})),
        )
            .into_response()),
        other => Err(unexpected(other)),
    }
}

async fn list_tenants(State(state): State<AppState>) -> Result<HttpResponse, HttpError> {
    match call(&state, "list_tenants", Request::ListTenants).await? {
        Response::Tenants(list) => Ok(Json(list).into_response()),
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationConfigBody {
    mode: String,
    generation: Option<u32>,
    #[serde(default)]
    warm: bool,
}

impl LocationConfigBody {
    fn request(&self) -> Result<LocationRequest, HttpError> {
        let mode = match self.mode.as_str() {
            "AttachedSingle" => RequestedMode::AttachedSingle,
            "AttachedMulti" => RequestedMode::AttachedMulti,
            "AttachedStale" => RequestedMode::AttachedStale,
            "Secondary" => RequestedMode::Secondary { warm: self.warm },
            "Detached" => RequestedMode::Detached,
            other => {
                return Err(bad_request(format!(
                    "unknown mode {other:?}: expected AttachedSingle, AttachedMulti, AttachedStale, Secondary or Detached"
                )));
            }
        };
        let generation = match self.generation {
            None => None,
            Some(n) => Some(
                Generation::new(n).ok_or_else(|| bad_request("generation must be at least 1"))?,
            ),
        };
        Ok(LocationRequest { mode, generation })
    }
}

fn placement_json(outcome: LocationOutcome) -> serde_json::Value {
    let (changed, placement) = match outcome {
        LocationOutcome::Unchanged(p) => (false, p),
        LocationOutcome::Changed(p) => (true, p),
    };
    let (mode, generation, warm) = match placement {
        Placement::Detached => ("Detached", None, None),
        Placement::Located(LocationMode::AttachedSingle { generation }) => {
            ("AttachedSingle", Some(generation), None)
        }
        Placement::Located(LocationMode::AttachedMulti { generation }) => {
            ("AttachedMulti", Some(generation), None)
        }
        Placement::Located(LocationMode::AttachedStale { generation }) => {
            ("AttachedStale", Some(generation), None)
        }
        Placement::Located(LocationMode::Secondary { warm }) => ("Secondary", None, Some(warm)),
    };
    serde_json::json!({"changed": changed, "mode": mode, "generation": generation, "warm": warm})
}

async fn location_config(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Json(body): Json<LocationConfigBody>,
) -> Result<HttpResponse, HttpError> {
    let tenant = parse_tenant(&tenant)?;
    let request = body.request()?;
    match call(&state, "location_config", Request::LocationConfig { tenant, request }).await? {
        Response::LocationConfigured(outcome) => Ok(Json(placement_json(outcome)).into_response()),
        other => Err(unexpected(other)),
    }
}

async fn delete_tenant(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<HttpResponse, HttpError> {
    let tenant = parse_tenant(&tenant)?;
    match call(&state, "delete_tenant", Request::DeleteTenant { tenant }).await? {
        Response::LocationConfigured(_) => {
            Ok(Json(serde_json::json!({"tenant_id": tenant, "deleted": true})).into_response())
        }
        other => Err(unexpected(other)),
    }
}

async fn detach(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<HttpResponse, HttpError> {
    let tenant = parse_tenant(&tenant)?;
    let request = LocationRequest { mode: RequestedMode::Detached, generation: None };
    match call(&state, "detach", Request::LocationConfig { tenant, request }).await? {
        Response::LocationConfigured(outcome) => Ok(Json(placement_json(outcome)).into_response()),
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateTimelineBody {
    timeline_id: Option<TimelineId>,
}

async fn create_timeline(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    body: Option<Json<CreateTimelineBody>>,
) -> Result<HttpResponse, HttpError> {
    let tenant = parse_tenant(&tenant)?;
    let timeline = body
        .and_then(|Json(b)| b.timeline_id)
        .unwrap_or_else(|| TimelineId::from_bytes(random_id()));
    match call(&state, "create_timeline", Request::CreateTimeline { tenant, timeline }).await? {
        Response::TimelineCreated(info) => Ok((StatusCode::CREATED, Json(info)).into_response()),
        other => Err(unexpected(other)),
    }
}

async fn timeline_info(
    State(state): State<AppState>,
    Path((tenant, timeline)): Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (tenant, timeline) = (parse_tenant(&tenant)?, parse_timeline(&timeline)?);
    match call(&state, "timeline_info", Request::TimelineInfo { tenant, timeline }).await? {
        Response::TimelineInfo(info) => Ok(Json(info).into_response()),
        other => Err(unexpected(other)),
    }
}

async fn delete_timeline(
    State(state): State<AppState>,
    Path((tenant, timeline)): Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (tenant, timeline) = (parse_tenant(&tenant)?, parse_timeline(&timeline)?);
    match call(&state, "delete_timeline", Request::DeleteTimeline { tenant, timeline }).await? {
        Response::TimelineDeleting => {
            Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"state": "Deleting"})))
                .into_response())
        }
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestBody {
    records: Vec<IngestRecord>,
}

async fn ingest(
    State(state): State<AppState>,
    Path((tenant, timeline)): Path<(String, String)>,
    body: Result<Json<IngestBody>, axum::extract::rejection::JsonRejection>,
) -> Result<HttpResponse, HttpError> {
    let (tenant, timeline) = (parse_tenant(&tenant)?, parse_timeline(&timeline)?);
    let Json(body) = body.map_err(|e| bad_request(e.body_text()))?;
    match call(&state, "ingest", Request::Ingest { tenant, timeline, records: body.records })
        .await?
    {
        r @ Response::Ingested { .. } => Ok(Json(r).into_response()),
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize)]
struct PageQuery {
    key: String,
    lsn: String,
}

async fn read_page(
    State(state): State<AppState>,
    Path((tenant, timeline)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Result<HttpResponse, HttpError> {
    let (tenant, timeline) = (parse_tenant(&tenant)?, parse_timeline(&timeline)?);
    let key: Key = q.key.parse().map_err(bad_request)?;
    let lsn: Lsn = q.lsn.parse().map_err(bad_request)?;
    match call(&state, "read_page", Request::Read { tenant, timeline, key, lsn }).await? {
        Response::Value { key, lsn, value } => Ok(Json(serde_json::json!({
            "key": key,
            "lsn": lsn,
            "value": value.map(hex::encode),
        }))
        .into_response()),
        other => Err(unexpected(other)),
    }
}

async fn status(State(state): State<AppState>) -> HttpResponse {
    let s = state.status.lock().map(|s| s.clone()).unwrap_or_default();
    Json(serde_json::json!({"phase": s.phase, "in_flight_io": s.in_flight_io, "inputs": s.inputs}))
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> HttpResponse {
    let status = state.status.lock().map(|s| s.clone()).unwrap_or_default();
    state.metrics.observe_page_cache(&status.page_cache);
    state.metrics.observe_background_jobs(&status.background_jobs);
    let text = state.metrics.render(&state.node).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// 16 random bytes for a new id, from the OS.
fn random_id() -> [u8; 16] {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if filled.is_err() {
        // No /dev/urandom: fall back to the clock and the process id; ids only need to be unique.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes.copy_from_slice(&(nanos ^ (u128::from(std::process::id()) << 64)).to_le_bytes());
    }
    bytes
}
