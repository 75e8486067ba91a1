//! The HTTP API: a thin mapping of routes onto the transport-independent request
//! layer (`strata_core::node::api`). No rule lives here.
//!
//! | method, path | request | success |
//! |---|---|---|
//! | `POST /v1/tenant` | `{"tenant_id"?: hex}` | 201 `{"tenant_id", "generation"}`; 409 if the node has it, the control plane knows it, or remote storage holds anything of it (the message names the generation, the timelines and the highest LSN found: attach it with location_config instead) |
//! | `GET /v1/tenant` | | 200 list of tenants (`tenant`, `generation`, `state`, `reason` when Broken, `timelines`, `broken_timelines`: `[{"timeline", "kind": "corrupt" \| "failed", "reason"}]`) |
//! | `POST /v1/tenant/{t}/timeline` | `{"timeline_id"?: hex}` | 201 timeline info (after its first index is durable), also when the timeline exists exactly as a create makes it (empty: a retry); 409 if it exists with data, here or in remote storage (the message names the index's generation, its disk_consistent_lsn and the highest LSN found) |
//! | `GET /v1/tenant/{t}/timeline/{tl}` | | 200 timeline info with the four LSNs |
//! | `DELETE /v1/tenant/{t}/timeline/{tl}` | | 202 `{"state": "Deleting"}`; poll GET until 404; 409 unless the tenant is AttachedSingle here |
//! | `POST /v1/tenant/{t}/timeline/{tl}/ingest` | `{"records": [...]}` | 200 `{"last_ingested_lsn", "applied", "skipped"}`; 400 for key `FFFFFFFFFFFFFFFF` (not storable: key ranges are half-open) |
//! | `GET /v1/tenant/{t}/timeline/{tl}/page?key=K&lsn=L` | | 200 `{"key", "lsn", "value": hex or null}`; 400 for key `FFFFFFFFFFFFFFFF` |
//! | `PUT /v1/tenant/{t}/location_config` | `{"mode": "AttachedSingle" \| "AttachedMulti" \| "AttachedStale" \| "Secondary" \| "Detached", "generation"?: n, "warm"?: bool}` | 200 `{"changed": bool, "mode", "generation": n or null, "warm": bool or null}` (`warm` only for Secondary, `generation` only for attached modes); 409 for a generation older than the one held |
//! | `GET /v1/tenant/{t}/location` | | 200 `{"tenant_id", "mode", "generation", "warm", "timelines": [timeline info]}`: where the tenant stands here (`Detached` if unknown) and its timelines' LSNs; 503 while it changes |
//! | `POST /v1/tenant/{t}/detach` | | 200, as location_config `Detached` |
//! | `DELETE /v1/tenant/{t}` | | 200 `{"tenant_id", "deleted": true}` once the tenant and all its timelines are gone (503 while it runs: retry); 409 unless the tenant is AttachedSingle here, or while a timeline of it is broken |
//! | `GET /v1/status` | | 200 `{"phase", "in_flight_io", "inputs"}` |
//! | `GET /metrics` | | Prometheus text |
//! | `GET /v1/openapi.json` | | 200 this API's OpenAPI 3.1 document ([`crate::openapi`]; checked in as `docs/openapi.json`) |
//! | `PUT /v1/failpoints` | `[{"name", "action"}]` | 200 the failpoints now on; 404 unless `testing.failpoints` is on; 400 for an unknown name or a bad action ([`failpoints`]) |
//!
//! The document is generated from the `#[utoipa::path]` attribute on each handler
//! below (success answers, and the statuses only that route has) and from
//! [`crate::openapi::SharedResponses`] (what routes share, derived from each
//! operation's shape); the answers are the typed structs of [`crate::openapi`].
//! A route, status or body changed here without the document fails
//! `openapi::tests::checked_in_spec_is_current`, and `scripts/schemathesis.sh`
//! (CI) fails on any answer the document does not describe.
//!
//! With `[auth]` configured every route but `/v1/status`, `/metrics` and `/v1/openapi.json` needs a
//! bearer token (`crate::auth`): 401 without a valid one, 403 when its scope does
//! not cover the route.
//!
//! Every request runs in a `request` span (id, method, path, tenant, timeline)
//! and leaves one access-log line (target `strata::access`); see [`access_log`].
//!
//! Errors: every error of every route, including the ones raised before a handler
//! runs, is JSON `{"msg": "..."}`:
//!
//! | status | when |
//! |---|---|
//! | 400 | bad input: a malformed id in the path, a bad query (`key`, `lsn` missing or malformed), a body that is not JSON, a refused record |
//! | 401 + `WWW-Authenticate: Bearer` | auth on and no token, a malformed or expired one, or one no configured key signed |
//! | 403 | a valid token whose scope does not cover the route (a tenant token on another tenant, or on an admin route) |
//! | 404 | unknown tenant or timeline; an unknown route |
//! | 405 | a known route with another method (with `Allow`) |
//! | 409 | already exists |
//! | 413 | a body above [`MAX_REQUEST_BODY_BYTES`] |
//! | 415 | a body without `content-type: application/json` |
//! | 422 | JSON of the wrong shape (a missing or unknown field, a value of the wrong type) |
//! | 503 + `Retry-After` | not active yet, busy, backpressure, shutting down, a `[limits]` bound (too many requests in flight, the request deadline: [`limit_requests`]) |
//! | 500 | a bug, a broken timeline (the message names why: `corrupt: remote object KEY: …` for an index or layer no retry can fix, listed in `GET /v1/tenant` under `broken_timelines`), or a tenant broken by a panic in one of its machines (the message names the panic; a `location_config` or a restart reloads it) |
//!
//! Extraction errors keep axum's status and become JSON through the extractors
//! below ([`ApiJson`], [`ApiPath`], [`ApiQuery`]); unknown routes and methods go
//! through the router's fallbacks. A body above the limit is read and dropped (up
//! to [`MAX_DRAINED_BODY_BYTES`] within [`BODY_DRAIN_TIMEOUT_MS`]) before the 413
//! is sent, so a client still sending it reads the answer instead of a reset; a
//! client that sent `Expect: 100-continue` is answered at once, before it sends the
//! body. Past either drain bound the connection is closed.
//!
//! Remote storage refusing the node (access denied, bad credentials, a missing
//! bucket) is no request's error: ingest and reads keep answering 200 while the
//! uploads are retried, the visible LSN waits, and `strata_io_errors_total{kind}`
//! counts the refusals until an operator fixes them.

pub(crate) mod failpoints;

use crate::driver::{NodeHandle, NodeStatus};
use crate::metrics::Metrics;
use crate::openapi::{
    self, ErrorBody, KeySpec, LsnSpec, TenantIdSpec, TenantLocationReply, TimelineIdSpec,
};
use axum::body::{Body, HttpBody};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_core::location_conf::LocationMode;
use strata_core::node::api::{ApiError, Request, Response};
use strata_core::request_body::{
    CreateTenantBody, CreateTimelineBody, IngestBody, LocationConfigBody, PageQuery,
};
use strata_core::tenant::{LocationOutcome, LocationRequest, Placement, RequestedMode};
use strata_core::{TenantId, TimelineId};

/// The largest request body accepted (an ingest batch); larger ones get 413.
pub const MAX_REQUEST_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How much of an over-limit body is read and dropped before the 413 is sent (so
/// the client, still sending, reads the answer rather than a connection reset).
/// Past it the connection is closed.
pub const MAX_DRAINED_BODY_BYTES: u64 = 256 * 1024 * 1024;

/// How long reading and dropping an over-limit body may take.
pub const BODY_DRAIN_TIMEOUT_MS: u64 = 30_000;

#[derive(Clone)]
pub struct AppState {
    pub node: NodeHandle,
    pub metrics: Arc<Metrics>,
    pub status: Arc<Mutex<NodeStatus>>,
    /// The token check (`crate::auth`); `None`: auth off (loopback only).
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// `[limits]`: concurrent requests and the request deadline.
    pub limits: Arc<HttpLimits>,
    /// The node's failpoints; `None` unless `testing.failpoints` is on
    /// (`PUT /v1/failpoints` answers 404 then).
    pub failpoints: Option<strata_adapters::failpoint::Failpoints>,
}

/// The HTTP API's load bounds (`[limits]` in the config).
pub struct HttpLimits {
    slots: tokio::sync::Semaphore,
    deadline: Duration,
}

impl HttpLimits {
    pub fn new(max_concurrent_requests: usize, deadline_ms: u64) -> Self {
        HttpLimits {
            slots: tokio::sync::Semaphore::new(max_concurrent_requests),
            deadline: Duration::from_millis(deadline_ms),
        }
    }
}

/// `Retry-After` of an answer refused by a limit.
pub const LIMIT_RETRY_AFTER_SECS: u64 = 1;

/// Holds every request but the open ones ([`crate::openapi::OPEN_PATHS`]:
/// `/v1/status`, `/metrics`, `/v1/openapi.json`; probes and scrapers stay
/// answerable under load) to `[limits]`: past `max_concurrent_http_requests` in
/// flight, or past `http_request_deadline_ms`, the answer is 503 with
/// `Retry-After`, counted in `strata_http_limit_hits_total{limit}`. A request cut
/// by the deadline is no longer awaited, but what it asked the node may still
/// happen (a create may land): its retry is answered as a retry (an ingest skips
/// the LSNs it has, a timeline create answers 201, a tenant create 409).
async fn limit_requests(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: Next,
) -> HttpResponse {
    if crate::openapi::OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let refused = |limit: &'static str, msg: String| {
        state.metrics.limit_hit(limit);
        let mut response = Rejected::new(StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(LIMIT_RETRY_AFTER_SECS));
        response
    };
    let Ok(_slot) = state.limits.slots.try_acquire() else {
        return refused(
            "concurrency",
            "too many requests in flight (limits.max_concurrent_http_requests): retry".into(),
        );
    };
    match tokio::time::timeout(state.limits.deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => refused(
            "deadline",
            format!(
                "the request took longer than limits.http_request_deadline_ms ({} ms): retry",
                state.limits.deadline.as_millis()
            ),
        ),
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/tenant", post(create_tenant).get(list_tenants))
        .route("/v1/tenant/{tenant}/location_config", put(location_config))
        .route("/v1/tenant/{tenant}/location", get(tenant_location))
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
        .route("/v1/openapi.json", get(openapi_json))
        .route("/v1/failpoints", put(failpoints::put_failpoints))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(middleware::from_fn(limit_body))
        .layer(middleware::from_fn_with_state(state.clone(), limit_requests))
        .layer(middleware::from_fn_with_state(state.auth.clone(), crate::auth::authorize))
        .layer(middleware::from_fn(access_log))
        .with_state(state)
}

/// An error raised before a handler runs (extraction, routing, body limit): its
/// status, as `{"msg"}`.
#[derive(Debug)]
pub struct Rejected {
    status: StatusCode,
    msg: String,
}

impl Rejected {
    pub(crate) fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Rejected { status, msg: msg.into() }
    }
}

impl IntoResponse for Rejected {
    fn into_response(self) -> HttpResponse {
        (self.status, Json(ErrorBody { msg: self.msg })).into_response()
    }
}

impl From<JsonRejection> for Rejected {
    fn from(r: JsonRejection) -> Self {
        Rejected::new(r.status(), r.body_text())
    }
}

impl From<PathRejection> for Rejected {
    fn from(r: PathRejection) -> Self {
        Rejected::new(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for Rejected {
    fn from(r: QueryRejection) -> Self {
        Rejected::new(r.status(), r.body_text())
    }
}

/// `axum::Json` whose rejections (400, 413, 415, 422) answer `{"msg"}`. As an
/// `Option`, a request without a `content-type` is `None` (an empty body).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Rejected;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Rejected> {
        let Json(value) = <Json<T> as FromRequest<S>>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = Rejected;

    async fn from_request(
        req: axum::extract::Request,
        state: &S,
    ) -> Result<Option<Self>, Rejected> {
        let value = <Json<T> as OptionalFromRequest<S>>::from_request(req, state).await?;
        Ok(value.map(|Json(v)| ApiJson(v)))
    }
}

/// `axum::extract::Path` whose rejections answer `{"msg"}`.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Rejected;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejected> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

/// `axum::extract::Query` whose rejections answer `{"msg"}` (400).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Rejected;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejected> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

async fn not_found(uri: axum::http::Uri) -> Rejected {
    Rejected::new(StatusCode::NOT_FOUND, format!("no route {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Rejected {
    Rejected::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Buffers the body up to [`MAX_REQUEST_BODY_BYTES`]; a larger one (by its
/// `content-length`, or by what arrives) is answered 413 after it was drained.
async fn limit_body(req: axum::extract::Request, next: Next) -> HttpResponse {
    let limit = MAX_REQUEST_BODY_BYTES as u64;
    let too_large = || {
        Rejected::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {limit} bytes"),
        )
        .into_response()
    };
    let declared = declared_length(req.headers());
    if declared.is_some_and(|n| n > limit) {
        // A client waiting for `100 Continue` has not sent the body: answer at once.
        if !expects_continue(req.headers()) {
            drain(req.into_body(), 0).await;
        }
        return too_large();
    }
    let (parts, mut body) = req.into_parts();
    let mut buffered = Vec::new();
    while let Some(frame) = next_frame(&mut body).await {
        let Ok(data) = frame else {
            return Rejected::new(StatusCode::BAD_REQUEST, "reading the request body failed")
                .into_response();
        };
        buffered.extend_from_slice(&data);
        if buffered.len() as u64 > limit {
            drain(body, buffered.len() as u64).await;
            return too_large();
        }
    }
    next.run(axum::extract::Request::from_parts(parts, Body::from(buffered))).await
}

/// The longest `x-request-id` taken from a client; a longer or non-printable one
/// is replaced by the node's own.
pub const MAX_REQUEST_ID_BYTES: usize = 64;

/// Runs every request in a `request` span (`id`, `method`, `path`, and `tenant`,
/// `timeline` when the path names them) and logs one access line for it
/// (target `strata::access`: `status`, `duration_ms`). The id is the client's
/// `x-request-id` when it is a short printable one, else a node-wide counter; the
/// answer carries it back in `x-request-id`.
async fn access_log(req: axum::extract::Request, next: Next) -> HttpResponse {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tracing::Instrument;
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID_BYTES
                && v.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(
            || format!("{:016x}", NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            str::to_string,
        );
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (tenant, timeline) = match segments.as_slice() {
        ["v1", "tenant", t, "timeline", tl, ..] => (Some(*t), Some(*tl)),
        ["v1", "tenant", t, ..] => (Some(*t), None),
        _ => (None, None),
    };
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %req.method(),
        path = %path,
        tenant = tracing::field::Empty,
        timeline = tracing::field::Empty,
    );
    if let Some(t) = tenant {
        span.record("tenant", t);
    }
    if let Some(tl) = timeline {
        span.record("timeline", tl);
    }
    let started = std::time::Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_millis();
    span.in_scope(|| tracing::info!(target: "strata::access", status, duration_ms, "request"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

async fn next_frame(body: &mut Body) -> Option<Result<axum::body::Bytes, axum::Error>> {
    std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx))
        .await
        .map(|frame| frame.map(|f| f.into_data().unwrap_or_default()))
}

/// Reads and drops the rest of `body`, bounded by [`MAX_DRAINED_BODY_BYTES`] (counting
/// `already` bytes read) and [`BODY_DRAIN_TIMEOUT_MS`].
async fn drain(mut body: Body, already: u64) {
    let drained = async {
        let mut total = already;
        while let Some(Ok(data)) = next_frame(&mut body).await {
            total += data.len() as u64;
            if total > MAX_DRAINED_BODY_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(BODY_DRAIN_TIMEOUT_MS), drained).await;
}

/// An API error as HTTP.
pub struct HttpError(ApiError);

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

#[utoipa::path(post, path = "/v1/tenant", tag = "tenants",
    request_body(content = Option<openapi::CreateTenantBody>, description = "Optional: without a body (and without `content-type`) the id is random."),
    responses(
        (status = 201, description = "created", body = openapi::TenantCreated),
        (status = 409, description = "the node has it, the control plane knows it, or remote storage holds anything of it (attach it with location_config instead)", body = ErrorBody),
    ))]
pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    body: Option<ApiJson<CreateTenantBody>>,
) -> Result<HttpResponse, HttpError> {
    let tenant = body
        .and_then(|ApiJson(b)| b.tenant_id)
        .unwrap_or_else(|| TenantId::from_bytes(random_id()));
    match call(&state, "create_tenant", Request::CreateTenant { tenant }).await? {
        Response::TenantCreated { tenant, generation } => Ok((
            StatusCode::CREATED,
            Json(openapi::TenantCreated { tenant_id: tenant, generation }),
        )
            .into_response()),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/v1/tenant", tag = "tenants",
    responses((status = 200, description = "every tenant of the node", body = Vec<openapi::TenantInfo>)))]
pub(crate) async fn list_tenants(State(state): State<AppState>) -> Result<HttpResponse, HttpError> {
    match call(&state, "list_tenants", Request::ListTenants).await? {
        Response::Tenants(list) => Ok(Json(list).into_response()),
        other => Err(unexpected(other)),
    }
}

fn placement_reply(outcome: LocationOutcome) -> openapi::LocationConfigured {
    let (changed, placement) = match outcome {
        LocationOutcome::Unchanged(p) => (false, p),
        LocationOutcome::Changed(p) | LocationOutcome::Created(p) => (true, p),
    };
    let (mode, generation, warm) = placement_fields(placement);
    openapi::LocationConfigured { changed, mode: mode.to_string(), generation, warm }
}

/// A placement as `(mode, generation, warm)`, the names location_config uses.
fn placement_fields(
    placement: Placement,
) -> (&'static str, Option<strata_core::Generation>, Option<bool>) {
    match placement {
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
    }
}

#[utoipa::path(get, path = "/v1/tenant/{tenant}/location", tag = "tenants",
    params(("tenant" = TenantIdSpec, Path, description = "tenant id")),
    responses((status = 200, description = "where the tenant stands here (`Detached` if unknown) and its timelines' LSNs", body = openapi::TenantLocationReply)))]
pub(crate) async fn tenant_location(
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<HttpResponse, HttpError> {
    let tenant = parse_tenant(&tenant)?;
    match call(&state, "tenant_location", Request::TenantLocation { tenant }).await? {
        Response::TenantLocation(l) => {
            let (mode, generation, warm) = placement_fields(l.placement);
            Ok(Json(TenantLocationReply {
                tenant_id: l.tenant,
                mode: mode.to_string(),
                generation,
                warm,
                timelines: l.timelines,
            })
            .into_response())
        }
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(put, path = "/v1/tenant/{tenant}/location_config", tag = "tenants",
    params(("tenant" = TenantIdSpec, Path, description = "tenant id")),
    request_body = openapi::LocationConfigBody,
    responses(
        (status = 200, description = "placed", body = openapi::LocationConfigured),
        (status = 409, description = "the generation is older than the one the node holds", body = ErrorBody),
    ))]
pub(crate) async fn location_config(
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<LocationConfigBody>,
) -> Result<HttpResponse, HttpError> {
    let tenant = parse_tenant(&tenant)?;
    let request = body.request().map_err(bad_request)?;
    match call(&state, "location_config", Request::LocationConfig { tenant, request }).await? {
        Response::LocationConfigured(outcome) => Ok(Json(placement_reply(outcome)).into_response()),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(delete, path = "/v1/tenant/{tenant}", tag = "tenants",
    params(("tenant" = TenantIdSpec, Path, description = "tenant id")),
    responses(
        (status = 200, description = "the tenant and all its timelines are gone (503 while it runs: retry)", body = openapi::TenantDeleted),
        (status = 409, description = "the tenant is not attached here as AttachedSingle (only the single attached node deletes), or a timeline of it cannot be deleted (its remote index is corrupt)", body = ErrorBody),
    ))]
pub(crate) async fn delete_tenant(
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<HttpResponse, HttpError> {
    let tenant = parse_tenant(&tenant)?;
    match call(&state, "delete_tenant", Request::DeleteTenant { tenant }).await? {
        Response::LocationConfigured(_) => {
            Ok(Json(openapi::TenantDeleted { tenant_id: tenant, deleted: true }).into_response())
        }
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(post, path = "/v1/tenant/{tenant}/detach", tag = "tenants",
    params(("tenant" = TenantIdSpec, Path, description = "tenant id")),
    responses((status = 200, description = "detached, as location_config `Detached`", body = openapi::LocationConfigured)))]
pub(crate) async fn detach(
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<HttpResponse, HttpError> {
    let tenant = parse_tenant(&tenant)?;
    let request = LocationRequest::new(RequestedMode::Detached, None);
    match call(&state, "detach", Request::LocationConfig { tenant, request }).await? {
        Response::LocationConfigured(outcome) => Ok(Json(placement_reply(outcome)).into_response()),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(post, path = "/v1/tenant/{tenant}/timeline", tag = "timelines",
    params(("tenant" = TenantIdSpec, Path, description = "tenant id")),
    request_body(content = Option<openapi::CreateTimelineBody>, description = "Optional: without a body (and without `content-type`) the id is random."),
    responses(
        (status = 201, description = "created, its first index durable; also when it exists exactly as a create makes it (a retry)", body = openapi::TimelineInfo),
        (status = 409, description = "it exists with data, here or in remote storage", body = ErrorBody),
    ))]
pub(crate) async fn create_timeline(
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
    body: Option<ApiJson<CreateTimelineBody>>,
) -> Result<HttpResponse, HttpError> {
    let tenant = parse_tenant(&tenant)?;
    let timeline = body
        .and_then(|ApiJson(b)| b.timeline_id)
        .unwrap_or_else(|| TimelineId::from_bytes(random_id()));
    match call(&state, "create_timeline", Request::CreateTimeline { tenant, timeline }).await? {
        Response::TimelineCreated(info) => Ok((StatusCode::CREATED, Json(info)).into_response()),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/v1/tenant/{tenant}/timeline/{timeline}", tag = "timelines",
    params(("tenant" = TenantIdSpec, Path, description = "tenant id"), ("timeline" = TimelineIdSpec, Path, description = "timeline id")),
    responses((status = 200, description = "the timeline and its four LSNs", body = openapi::TimelineInfo)))]
pub(crate) async fn timeline_info(
    State(state): State<AppState>,
    ApiPath((tenant, timeline)): ApiPath<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (tenant, timeline) = (parse_tenant(&tenant)?, parse_timeline(&timeline)?);
    match call(&state, "timeline_info", Request::TimelineInfo { tenant, timeline }).await? {
        Response::TimelineInfo(info) => Ok(Json(info).into_response()),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(delete, path = "/v1/tenant/{tenant}/timeline/{timeline}", tag = "timelines",
    params(("tenant" = TenantIdSpec, Path, description = "tenant id"), ("timeline" = TimelineIdSpec, Path, description = "timeline id")),
    responses(
        (status = 202, description = "deletion started: poll GET until 404", body = openapi::TimelineDeleting),
        (status = 409, description = "the tenant is not attached here as AttachedSingle: only the single attached node deletes", body = ErrorBody),
    ))]
pub(crate) async fn delete_timeline(
    State(state): State<AppState>,
    ApiPath((tenant, timeline)): ApiPath<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (tenant, timeline) = (parse_tenant(&tenant)?, parse_timeline(&timeline)?);
    match call(&state, "delete_timeline", Request::DeleteTimeline { tenant, timeline }).await? {
        Response::TimelineDeleting => {
            let deleting = openapi::TimelineDeleting { state: "Deleting".into() };
            Ok((StatusCode::ACCEPTED, Json(deleting)).into_response())
        }
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(post, path = "/v1/tenant/{tenant}/timeline/{timeline}/ingest", tag = "timelines",
    params(("tenant" = TenantIdSpec, Path, description = "tenant id"), ("timeline" = TimelineIdSpec, Path, description = "timeline id")),
    request_body = openapi::IngestBody,
    responses((status = 200, description = "ingested (400 for key `FFFFFFFFFFFFFFFF`: not storable)", body = openapi::Ingested)))]
pub(crate) async fn ingest(
    State(state): State<AppState>,
    ApiPath((tenant, timeline)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<IngestBody>,
) -> Result<HttpResponse, HttpError> {
    let (tenant, timeline) = (parse_tenant(&tenant)?, parse_timeline(&timeline)?);
    match call(&state, "ingest", Request::Ingest { tenant, timeline, records: body.records })
        .await?
    {
        Response::Ingested { last_ingested_lsn, applied, skipped } => {
            Ok(Json(openapi::Ingested { last_ingested_lsn, applied, skipped }).into_response())
        }
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/v1/tenant/{tenant}/timeline/{timeline}/page", tag = "timelines",
    params(("tenant" = TenantIdSpec, Path, description = "tenant id"), ("timeline" = TimelineIdSpec, Path, description = "timeline id"),
        ("key" = KeySpec, Query, description = "16 upper-case hex digits (`FFFFFFFFFFFFFFFF` is refused)"),
        ("lsn" = LsnSpec, Query, description = "read as of this LSN")),
    responses((status = 200, description = "the value as of `lsn`", body = openapi::PageValue)))]
pub(crate) async fn read_page(
    State(state): State<AppState>,
    ApiPath((tenant, timeline)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<HttpResponse, HttpError> {
    let (tenant, timeline) = (parse_tenant(&tenant)?, parse_timeline(&timeline)?);
    let (key, lsn) = q.parse().map_err(bad_request)?;
    match call(&state, "read_page", Request::Read { tenant, timeline, key, lsn }).await? {
        Response::Value { key, lsn, value } => {
            let value = value.map(|v| openapi::HexBytes(hex::encode(v)));
            Ok(Json(openapi::PageValue { key, lsn, value }).into_response())
        }
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/v1/status", tag = "node",
    responses((status = 200, description = "the node's phase (`Active` once it serves)", body = openapi::NodeStatusReply)))]
pub(crate) async fn status(State(state): State<AppState>) -> HttpResponse {
    let s = state.status.lock().map(|s| s.clone()).unwrap_or_default();
    Json(openapi::NodeStatusReply {
        phase: s.phase,
        in_flight_io: s.in_flight_io,
        inputs: s.inputs,
    })
    .into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> HttpResponse {
    let status = state.status.lock().map(|s| s.clone()).unwrap_or_default();
    state.metrics.observe_page_cache(&status.page_cache);
    state.metrics.observe_generation_conflicts(status.generation_conflicts_total);
    state.metrics.observe_secondaries(&status.secondary, status.warm_secondaries);
    state.metrics.observe_tenant_limit(status.tenant_limit_refusals_total);
    state.metrics.observe_memory(status.in_memory_bytes, status.memory_limit_refusals_total);
    state.metrics.observe_background_jobs(&status.background_jobs);
    state.metrics.observe_io_errors(&status.io_errors);
    state.metrics.observe_wall_clock_jumps(&status.wall_clock_jumps);
    state.metrics.observe_machine_refusals(&status.machine_refusals);
    state.metrics.observe_control_plane_failures(&status.control_plane_failures);
    state.metrics.observe_disk_full(status.timelines_disk_full);
    state.metrics.observe_node(status.in_flight_io, status.emergency);
    state.metrics.observe_queues(&status.queues);
    state.metrics.observe_startup(&status.startup_phases_ms);
    let text = state.metrics.render(&state.node).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "node",
    responses((status = 200, description = "this document", body = Object)))]
pub(crate) async fn openapi_json() -> HttpResponse {
    static SPEC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = SPEC.get_or_init(openapi::spec_json).clone();
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
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
