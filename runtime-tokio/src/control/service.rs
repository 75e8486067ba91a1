//! The `strata control` server: one [`ControlPlane`] machine behind HTTP.
//!
//! # How a request runs
//! Every request that reaches the machine runs as its own task holding the one
//! lock on the machine and its store, from the input to the reply: the input goes
//! in, and the machine's effects are carried out in order (`Persist` is one
//! store transaction (SQLite or PostgreSQL), committed before the machine sees
//! `handle_persisted`; a
//! `Reply` ends the request). So a reply never names a generation that is not
//! committed (S-GEN-MONO: the machine only emits a grant's reply after its
//! persist completed Ok). The task is spawned, so a client that hangs up cannot
//! leave the machine half-way through a request.
//!
//! `ListRemoteGenerations` (asked for a tenant the table has never seen) is
//! answered "nothing found": this service has no access to the bucket. A new
//! tenant therefore starts at the generation above the one the node reports
//! (`reported_gen`), or at 1. Consequence: a lost control-plane database is not
//! rebuilt from remote storage here (the embedded control plane does that with
//! `--rebuild-generations`); keep the database file safe (docs/OPERATIONS.md).
//!
//! # Crash
//! The machine is rebuilt from the store at start ([`ControlPlane::recover`]). A
//! crash before a commit loses the change and no answer named it; the node's
//! client times out and retries.

use super::migrate::{self, Wake};
use super::wire::{self, ErrorBody, Refusal};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use strata_adapters::control_store::ControlStore;
use strata_adapters::generation_store::GenerationStore;
use strata_adapters::migration_store::MigrationStore;
use strata_core::control_plane::migration::{
    MigrationConfig, MigrationError, MigrationReconciler, MigrationRecord, MigrationStart,
    MigrationView, OriginAfter,
};
use strata_core::control_plane::{
    ControlPlane, ControlPlaneEffect, ControlPlaneError, ControlPlaneReply, RequestId,
};
use strata_core::id::{NodeId, TenantId};
use strata_core::io_error::{IoError, IoErrorKind, IoTarget};
use strata_core::time::Instant;
use tokio::sync::{Mutex, mpsc, oneshot};

/// How long the control plane waits for a node's `POST /v1/tenant`.
pub const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct Inner {
    cp: ControlPlane,
    store: ControlStore,
    next_req: u64,
    /// The migration reconciler (driven by `migrate.rs`).
    pub(super) mig: MigrationReconciler,
    /// Admin requests waiting for their migration's start to be durable.
    pub(super) starts: BTreeMap<RequestId, StartWaiter>,
}

/// Where a migration start's answer goes.
pub(super) type StartWaiter = oneshot::Sender<Result<MigrationRecord, MigrationError>>;

/// The service's shared state.
#[derive(Clone)]
pub struct ControlService {
    inner: Arc<Mutex<Inner>>,
    /// Wakes the migration loop.
    wake: mpsc::UnboundedSender<Wake>,
    store: ControlStore,
    auth: ControlAuth,
    started: std::time::Instant,
    /// Wall-clock milliseconds at start: names this run of the service.
    incarnation: u64,
    /// What calls to nodes carry.
    node_token: NodeToken,
}

/// The bearer token `strata control` sends on every call to a node (a tenant
/// create, a migration's status and location_config calls): the contents of
/// `--node-token-file`, read at each call, so a token can be replaced without a
/// restart. `None`: calls carry no token (nodes with auth off).
#[derive(Clone, Debug, Default)]
pub struct NodeToken(Option<camino::Utf8PathBuf>);

impl NodeToken {
    pub fn from_file(path: Option<camino::Utf8PathBuf>) -> NodeToken {
        NodeToken(path)
    }

    /// The `Authorization` header value, if a token file is configured.
    pub fn header(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.0 else { return Ok(None) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the node token file {path}: {e}"))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("the node token file {path} is empty"));
        }
        Ok(Some(format!("Bearer {token}")))
    }
}

/// How the control plane authenticates requests.
#[derive(Clone)]
pub enum ControlAuth {
    /// Everything open (a control plane on loopback for tests and one machine).
    Open,
    /// One static bearer token for every route (superseded by `Jwt`).
    Token(String),
    /// JWTs signed by one of the keys (`crate::auth`): the admin API needs the
    /// admin scope; the node-facing API the admin scope or the node scope of the
    /// node the request names (`/validate` names none: any node token).
    Jwt(Arc<crate::auth::Auth>),
}

impl From<Option<String>> for ControlAuth {
    fn from(token: Option<String>) -> Self {
        token.map_or(ControlAuth::Open, ControlAuth::Token)
    }
}

/// What a route needs from the token.
#[derive(Clone, Copy, Debug)]
enum Need {
    Admin,
    /// The node-facing API, as this node (`None`: as any node).
    Node(Option<NodeId>),
}

/// An error answer.
pub struct CtlError {
    status: StatusCode,
    body: ErrorBody,
}

impl CtlError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        CtlError { status, body: ErrorBody { msg: msg.into(), refusal: None } }
    }

    fn bad_request(msg: impl Into<String>) -> Self {
        CtlError::new(StatusCode::BAD_REQUEST, msg)
    }

    fn refused(e: &ControlPlaneError) -> Self {
        let status = match e {
            ControlPlaneError::UnknownTenant(_) | ControlPlaneError::UnknownNode(_) => {
                StatusCode::NOT_FOUND
            }
            ControlPlaneError::GenerationExhausted(..) => StatusCode::CONFLICT,
            ControlPlaneError::Overloaded { .. } | ControlPlaneError::StoreFailed(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ControlPlaneError::Rejected(_) => StatusCode::BAD_REQUEST,
        };
        CtlError { status, body: ErrorBody { msg: e.to_string(), refusal: Refusal::from_error(e) } }
    }
}

impl IntoResponse for CtlError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, CtlError> {
    serde_json::from_slice(body).map_err(|e| CtlError::bad_request(format!("malformed body: {e}")))
}

impl ControlService {
    /// Opens the store `db` names (`sqlite:PATH` or `postgres://…`,
    /// [`ControlStore::open`]) and rebuilds the machine from it; calls to nodes
    /// carry no token.
    pub async fn open(db: &str, auth: impl Into<ControlAuth>) -> Result<ControlService, String> {
        Self::open_with_node_token(db, auth, NodeToken::default()).await
    }

    /// [`ControlService::open`], every call to a node carrying `node_token`.
    pub async fn open_with_node_token(
        db: &str,
        auth: impl Into<ControlAuth>,
        node_token: NodeToken,
    ) -> Result<ControlService, String> {
        let auth = auth.into();
        let store = ControlStore::open(db).await?;
        let describe = strata_adapters::control_store::DbSpec::parse(db)?.describe();
        let records = store.load().await.map_err(|e| format!("loading {describe}: {e}"))?;
        let migrations =
            store.load_migrations().await.map_err(|e| format!("loading {describe}: {e}"))?;
        let started = std::time::Instant::now();
        let mig =
            MigrationReconciler::recover(MigrationConfig::default(), migrations, Instant::ZERO);
        let inner = Inner {
            cp: ControlPlane::recover(records),
            store: store.clone(),
            next_req: 0,
            mig,
            starts: BTreeMap::new(),
        };
        let inner = Arc::new(Mutex::new(inner));
        let wake = migrate::spawn(Arc::clone(&inner), store.clone(), started, node_token.clone());
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(ControlService { inner, wake, store, auth, started, incarnation, node_token })
    }

    fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// 401 without a valid token; 403 when its scope does not cover `need`.
    fn authorize(&self, headers: &HeaderMap, need: Need) -> Result<(), CtlError> {
        use crate::auth::Scope;
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let unauthorized = |why: String| CtlError::new(StatusCode::UNAUTHORIZED, why);
        let auth = match &self.auth {
            ControlAuth::Open => return Ok(()),
            ControlAuth::Token(token) if presented == Some(token.as_str()) => return Ok(()),
            ControlAuth::Token(_) => {
                return Err(unauthorized("missing or wrong bearer token".into()));
            }
            ControlAuth::Jwt(auth) => auth,
        };
        let token = presented.ok_or_else(|| unauthorized("missing bearer token".into()))?;
        let claims = auth.verify(token).map_err(|e| unauthorized(format!("bad token: {e}")))?;
        let allowed = match (claims.scope, need) {
            (Scope::Admin, _) => true,
            (Scope::Node, Need::Node(None)) => true,
            (Scope::Node, Need::Node(Some(node))) => claims.node_id == Some(node.0),
            (Scope::Node, Need::Admin) | (Scope::Tenant, _) => false,
        };
        if allowed {
            Ok(())
        } else {
            let msg = format!("a {:?} token does not cover this request ({need:?})", claims.scope);
            Err(CtlError::new(StatusCode::FORBIDDEN, msg))
        }
    }

    /// Runs one request through the machine to its reply (see the module doc).
    async fn run(
        &self,
        input: impl FnOnce(&mut ControlPlane, Instant, RequestId) + Send + 'static,
    ) -> Result<ControlPlaneReply, CtlError> {
        let inner = Arc::clone(&self.inner);
        let now = self.now();
        let task = tokio::spawn(async move {
            let mut inner = inner.lock().await;
            let req = RequestId(inner.next_req);
            inner.next_req += 1;
            input(&mut inner.cp, now, req);
            loop {
                let effect = inner.cp.poll_effect();
                inner.cp.check_invariants();
                match effect {
                    Some(ControlPlaneEffect::Persist { op, change }) => {
                        let result = inner.store.apply(&change).await.map_err(|e| {
                            IoError::new(IoErrorKind::Transient, IoTarget::Store, e.to_string())
                        });
                        if let Err(e) = &result {
                            tracing::warn!(error = %e, "control-plane store change failed");
                        }
                        if let Err(e) = inner.cp.handle_persisted(now, op, result) {
                            return Err(format!("the machine refused a persist completion: {e}"));
                        }
                    }
                    Some(ControlPlaneEffect::ListRemoteGenerations { op, .. }) => {
                        if let Err(e) = inner.cp.handle_remote_generations(now, op, None) {
                            return Err(format!("the machine refused a listing: {e}"));
                        }
                    }
                    Some(ControlPlaneEffect::Reply { req: r, reply }) if r == req => {
                        return Ok(reply);
                    }
                    Some(ControlPlaneEffect::Reply { req: r, .. }) => {
                        return Err(format!("a reply for request {r:?}, none waits"));
                    }
                    None => return Err("the machine stopped without replying".to_string()),
                }
            }
        });
        match task.await {
            Ok(Ok(Ok(reply))) => Ok(reply),
            Ok(Ok(Err(refusal))) => Err(CtlError::refused(&refusal)),
            Ok(Err(bug)) => {
                debug_assert!(false, "{bug}");
                Err(CtlError::new(StatusCode::INTERNAL_SERVER_ERROR, bug))
            }
            Err(e) => Err(CtlError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        }
    }
}

/// The router of `strata control`.
pub fn router(service: ControlService) -> Router {
    Router::new()
        .route("/re-attach", post(re_attach))
        .route("/validate", post(validate))
        .route("/attach", post(attach))
        .route("/detach", post(detach))
        .route("/admin/nodes", post(register_node).get(list_nodes))
        .route("/admin/tenants", post(create_tenant).get(list_tenants))
        .route("/admin/migrations", post(start_migration))
        .route("/admin/migrations/{tenant}", get(show_migration))
        .fallback(|| async { CtlError::new(StatusCode::NOT_FOUND, "no such route") })
        .with_state(service)
}

async fn re_attach(
    State(s): State<ControlService>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<wire::ReAttachResponse>, CtlError> {
    let body: wire::ReAttachRequest = parse(&body)?;
    s.authorize(&headers, Need::Node(Some(NodeId(body.node_id))))?;
    let held_back = body
        .held_back
        .iter()
        .map(|t| wire::tenant_id(t))
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(CtlError::bad_request)?;
    let node = NodeId(body.node_id);
    let reply = s
        .run(move |cp, now, req| cp.handle_re_attach_holding_back(now, req, node, held_back))
        .await?;
    let ControlPlaneReply::ReAttached { mut tenants } = reply else {
        return Err(CtlError::new(StatusCode::INTERNAL_SERVER_ERROR, "wrong reply"));
    };
    s.inner.lock().await.mig.mark_destinations(node, &mut tenants);
    let tenants = tenants
        .into_iter()
        .map(|t| wire::ReAttachedTenant {
            id: t.tenant.to_string(),
            r#gen: t.generation.get(),
            previous_was_own: t.previous_was_own,
            migration_destination: t.migration_destination,
        })
        .collect();
    Ok(Json(wire::ReAttachResponse { tenants }))
}

async fn validate(
    State(s): State<ControlService>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<wire::ValidateResponse>, CtlError> {
    s.authorize(&headers, Need::Node(None))?;
    let body: wire::ValidateRequest = parse(&body)?;
    let mut tenants = Vec::new();
    for t in body.tenants {
        let tenant = wire::tenant_id(&t.id).map_err(CtlError::bad_request)?;
        let generation = wire::generation(t.r#gen).map_err(CtlError::bad_request)?;
        tenants.push((tenant, generation));
    }
    let reply = s.run(move |cp, now, req| cp.handle_validate(now, req, tenants)).await?;
    let ControlPlaneReply::Validated { results } = reply else {
        return Err(CtlError::new(StatusCode::INTERNAL_SERVER_ERROR, "wrong reply"));
    };
    let tenants =
        results.into_iter().map(|(t, valid)| wire::Validity { id: t.to_string(), valid }).collect();
    Ok(Json(wire::ValidateResponse { tenants }))
}

async fn attach(
    State(s): State<ControlService>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<wire::AttachResponse>, CtlError> {
    let body: wire::AttachRequest = parse(&body)?;
    s.authorize(&headers, Need::Node(Some(NodeId(body.node_id))))?;
    let tenant = wire::tenant_id(&body.tenant_id).map_err(CtlError::bad_request)?;
    let reported =
        body.reported_gen.map(wire::generation).transpose().map_err(CtlError::bad_request)?;
    let node = NodeId(body.node_id);
    {
        // The attach fence (core's `migration/fence.rs`): a migrating tenant's
        // generation goes to its destination only, and a late attach is refused.
        let inner = s.inner.lock().await;
        let table = inner.cp.record(tenant);
        if let Err(refusal) = inner.mig.attach_fence(table, tenant, node, reported) {
            return Err(CtlError::new(StatusCode::CONFLICT, refusal.to_string()));
        }
    }
    let reply =
        s.run(move |cp, now, req| cp.handle_attach(now, req, tenant, node, reported)).await?;
    let ControlPlaneReply::Attached { generation } = reply else {
        return Err(CtlError::new(StatusCode::INTERNAL_SERVER_ERROR, "wrong reply"));
    };
    Ok(Json(wire::AttachResponse { r#gen: generation.get() }))
}

async fn detach(
    State(s): State<ControlService>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, CtlError> {
    let body: wire::DetachRequest = parse(&body)?;
    s.authorize(&headers, Need::Node(Some(NodeId(body.node_id))))?;
    let tenant = wire::tenant_id(&body.tenant_id).map_err(CtlError::bad_request)?;
    let node = NodeId(body.node_id);
    s.run(move |cp, now, req| cp.handle_detach(now, req, tenant, node)).await?;
    Ok(Json(serde_json::json!({})))
}

async fn register_node(
    State(s): State<ControlService>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<wire::RegisterNode>, CtlError> {
    s.authorize(&headers, Need::Admin)?;
    let body: wire::RegisterNode = parse(&body)?;
    if !(body.address.starts_with("http://") || body.address.starts_with("https://")) {
        return Err(CtlError::bad_request(format!(
            "address {:?}: expected http://HOST:PORT",
            body.address
        )));
    }
    s.store
        .register_node(NodeId(body.node_id), body.address.clone())
        .await
        .map_err(|e| CtlError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(body))
}

async fn list_nodes(
    State(s): State<ControlService>,
    headers: HeaderMap,
) -> Result<Json<Vec<wire::RegisterNode>>, CtlError> {
    s.authorize(&headers, Need::Admin)?;
    let nodes = s
        .store
        .nodes()
        .await
        .map_err(|e| CtlError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(
        nodes
            .into_iter()
            .map(|(n, address)| wire::RegisterNode { node_id: n.0, address })
            .collect(),
    ))
}

async fn list_tenants(
    State(s): State<ControlService>,
    headers: HeaderMap,
) -> Result<Json<Vec<wire::TenantRow>>, CtlError> {
    s.authorize(&headers, Need::Admin)?;
    let inner = s.inner.lock().await;
    let rows = inner
        .cp
        .records()
        .map(|r| wire::TenantRow {
            tenant_id: r.tenant.to_string(),
            node_id: r.attached_to.map(|n| n.0),
            generation: r.generation.get(),
            migration: inner.mig.migration(r.tenant).and_then(|m| migration_summary(&m)),
        })
        .collect();
    Ok(Json(rows))
}

/// Asks the registered node to create the tenant; the node attaches it through
/// `/attach` (a new generation, committed before the node hears it). Answers the
/// tenant's row once the node answered 201.
async fn create_tenant(
    State(s): State<ControlService>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<wire::TenantRow>), CtlError> {
    s.authorize(&headers, Need::Admin)?;
    let body: wire::CreateTenant = parse(&body)?;
    let tenant = wire::tenant_id(&body.tenant_id).map_err(CtlError::bad_request)?;
    let nodes = s
        .store
        .nodes()
        .await
        .map_err(|e| CtlError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let Some((_, address)) = nodes.into_iter().find(|(n, _)| n.0 == body.node_id) else {
        return Err(CtlError::new(
            StatusCode::NOT_FOUND,
            format!("node {} is not registered (strata ctl node register)", body.node_id),
        ));
    };
    let url = format!("{}/v1/tenant", address.trim_end_matches('/'));
    let payload = serde_json::json!({ "tenant_id": tenant.to_string() });
    let node_token = s.node_token.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(NODE_CALL_TIMEOUT))
                .build(),
        );
        let mut request = agent.post(&url);
        if let Some(auth) = node_token.header()? {
            request = request.header("Authorization", &auth);
        }
        let mut r = request.send_json(payload).map_err(|e| format!("{url}: {e}"))?;
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        Ok::<_, String>((status, text))
    })
    .await
    .map_err(|e| CtlError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (status, text) = answer.map_err(|e| {
        CtlError::new(StatusCode::BAD_GATEWAY, format!("node {} unreachable: {e}", body.node_id))
    })?;
    if status != 201 {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        return Err(CtlError::new(status, format!("node {}: {text}", body.node_id)));
    }
    let inner = s.inner.lock().await;
    let Some(record) = inner.cp.record(tenant) else {
        return Err(CtlError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "node {} created {tenant} without attaching it here: is its control_plane url this service?",
                body.node_id
            ),
        ));
    };
    Ok((
        StatusCode::CREATED,
        Json(wire::TenantRow {
            tenant_id: tenant.to_string(),
            node_id: record.attached_to.map(|n| n.0),
            generation: record.generation.get(),
            migration: None,
        }),
    ))
}

fn migration_summary(m: &MigrationView<'_>) -> Option<wire::MigrationSummary> {
    let r = m.record?;
    Some(wire::MigrationSummary {
        phase: r.phase.name().to_string(),
        origin: r.origin.0,
        destination: r.destination.0,
        active: m.active,
    })
}

fn migration_row(
    incarnation: u64,
    tenant: TenantId,
    m: &MigrationView<'_>,
    since: u64,
) -> wire::MigrationRow {
    wire::MigrationRow {
        incarnation,
        tenant_id: tenant.to_string(),
        origin: m.record.map(|r| r.origin.0),
        destination: m.record.map(|r| r.destination.0),
        origin_generation: m.record.map(|r| r.origin_generation.get()),
        phase: m.record.map_or("starting", |r| r.phase.name()).to_string(),
        destination_generation: m
            .record
            .and_then(|r| r.phase.destination_generation())
            .map(|g| g.get()),
        active: m.active,
        events: m
            .events
            .iter()
            .filter(|e| e.seq >= since)
            .map(|e| wire::EventRow {
                seq: e.seq,
                at_ms: e.at.as_millis(),
                what: e.kind.to_string(),
            })
            .collect(),
    }
}

/// Starts a migration of the tenant from the node holding it to `node_id`;
/// answers once its first phase is durable (then it runs in the background:
/// `GET /admin/migrations/{tenant}` follows it).
async fn start_migration(
    State(s): State<ControlService>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<wire::MigrationRow>), CtlError> {
    s.authorize(&headers, Need::Admin)?;
    let body: wire::StartMigration = parse(&body)?;
    let tenant = wire::tenant_id(&body.tenant_id).map_err(CtlError::bad_request)?;
    let origin_after = match body.origin_after.as_deref() {
        None | Some("secondary_warm") => OriginAfter::SecondaryWarm,
        Some("detached") => OriginAfter::Detached,
        Some(other) => {
            return Err(CtlError::bad_request(format!(
                "origin_after {other:?}: expected secondary_warm or detached"
            )));
        }
    };
    let destination = NodeId(body.node_id);
    let nodes = s
        .store
        .nodes()
        .await
        .map_err(|e| CtlError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if !nodes.iter().any(|(n, _)| *n == destination) {
        return Err(CtlError::new(
            StatusCode::NOT_FOUND,
            format!("node {} is not registered (strata ctl node register)", body.node_id),
        ));
    }
    let (tx, rx) = oneshot::channel();
    {
        let mut inner = s.inner.lock().await;
        let Some(record) = inner.cp.record(tenant).cloned() else {
            return Err(CtlError::new(
                StatusCode::NOT_FOUND,
                format!("tenant {tenant} is unknown"),
            ));
        };
        let Some(origin) = record.attached_to else {
            return Err(CtlError::new(
                StatusCode::CONFLICT,
                format!("tenant {tenant} is attached nowhere: attach it before migrating it"),
            ));
        };
        let req = RequestId(inner.next_req);
        inner.next_req += 1;
        inner.starts.insert(req, tx);
        let start = MigrationStart {
            tenant,
            origin,
            origin_generation: record.generation,
            destination,
            origin_after,
        };
        let now = s.now();
        inner.mig.handle_start(now, req, start);
    }
    let _ = s.wake.send(Wake::Nudge);
    let answer = tokio::time::timeout(NODE_CALL_TIMEOUT, rx).await;
    match answer {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => {
            let status = match e {
                MigrationError::AlreadyMigrating { .. } | MigrationError::SameNode { .. } => {
                    StatusCode::CONFLICT
                }
                MigrationError::TooMany { .. } => StatusCode::SERVICE_UNAVAILABLE,
            };
            return Err(CtlError::new(status, e.to_string()));
        }
        Ok(Err(_)) | Err(_) => {
            return Err(CtlError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the migration's start was not durable in time (the store is slow or failing); retry",
            ));
        }
    }
    let inner = s.inner.lock().await;
    let view = inner.mig.migration(tenant).ok_or_else(|| {
        CtlError::new(StatusCode::INTERNAL_SERVER_ERROR, "a started migration is gone")
    })?;
    Ok((StatusCode::CREATED, Json(migration_row(s.incarnation, tenant, &view, 0))))
}

#[derive(serde::Deserialize)]
struct SinceQuery {
    #[serde(default)]
    since: u64,
}

/// The tenant's last migration and its events from `since` on.
async fn show_migration(
    State(s): State<ControlService>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Query(q): Query<SinceQuery>,
) -> Result<Json<wire::MigrationRow>, CtlError> {
    s.authorize(&headers, Need::Admin)?;
    let tenant = wire::tenant_id(&tenant).map_err(CtlError::bad_request)?;
    let inner = s.inner.lock().await;
    let view = inner.mig.migration(tenant).ok_or_else(|| {
        CtlError::new(StatusCode::NOT_FOUND, format!("tenant {tenant} has no migration"))
    })?;
    Ok(Json(migration_row(s.incarnation, tenant, &view, q.since)))
}

/// Serves `strata control` on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: ControlService,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(service)).with_graceful_shutdown(stop).await
}
