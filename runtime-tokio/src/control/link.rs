//! The node's link to a remote control plane (`strata control`) over HTTP.
//!
//! It answers the client machine's `ControlPlaneSend` effects (through
//! [`GenerationStore::send`], which the driver calls for every
//! `Io::ControlPlaneSend`): one HTTP `POST` per attempt, with the bearer token
//! when one is configured. Outcomes, mapped to the client machine's kinds:
//! - a 2xx with the expected body: the reply;
//! - a refusal of the machine (`{"refusal"}`: unknown tenant, overloaded, store
//!   failed, …): `Refused` with that error (the client retries the retryable ones);
//! - 400, 401 or 409: `Refused(Rejected)`, not retried (a malformed request, a
//!   wrong token, or an attach the migration fence refuses does not get better);
//! - no connection, a reset, any other status, a body that does not parse:
//!   `Unreachable` (retried);
//! - no answer: the client machine's deadline (`call_timeout_ms`) makes it a
//!   `Timeout`. The HTTP call itself gives up at [`LINK_TIMEOUT_MARGIN`] past that
//!   deadline, so no task outlives its attempt by much (its late answer is dropped
//!   by the client).
//!
//! The in-process store calls ([`GenerationStore::load`], `apply`) are not used
//! with a remote control plane: the node's in-process table stays empty.

use super::wire;
use std::time::Duration;
use strata_adapters::generation_store::{GenerationStore, SendOutcome, StoreError};
use strata_core::control_plane::{
    ControlPlaneError, ControlPlaneReply, CpRequest, ReAttachedTenant, StoreChange, TenantRecord,
};

/// How long past the client machine's deadline an HTTP call may run: the margin
/// the client machine waits out before it retries a timed-out attempt.
pub const LINK_TIMEOUT_MARGIN: Duration =
    Duration::from_millis(strata_core::control_plane::client::DEFAULT_LINK_MARGIN_MS);

/// A remote control plane at `base` (e.g. `http://127.0.0.1:9090`).
#[derive(Clone, Debug)]
pub struct RemoteControlPlane {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl RemoteControlPlane {
    /// `call_timeout` is the client machine's per-attempt deadline.
    pub fn new(base: &str, token: Option<String>, call_timeout: Duration) -> Self {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(call_timeout + LINK_TIMEOUT_MARGIN))
                .build(),
        );
        RemoteControlPlane { base: base.trim_end_matches('/').to_string(), token, agent }
    }

    /// One blocking POST; `(status, body)` or why it did not happen.
    fn post(&self, path: &str, body: serde_json::Value) -> Result<(u16, Vec<u8>), String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.post(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request.send_json(body).map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .read_to_vec()
            .map_err(|e| format!("POST {url}: reading the answer: {e}"))?;
        Ok((status, bytes))
    }
}

fn json(v: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn unreachable(message: String) -> StoreError {
    StoreError::Io(message)
}

/// The request as its path and JSON body.
fn encode(request: &CpRequest) -> (&'static str, serde_json::Value) {
    match request {
        CpRequest::ReAttach { node, held_back } => (
            "/re-attach",
            json(wire::ReAttachRequest {
                node_id: node.0,
                held_back: held_back.iter().map(ToString::to_string).collect(),
            }),
        ),
        CpRequest::Attach { tenant, node, reported } => (
            "/attach",
            json(wire::AttachRequest {
                tenant_id: tenant.to_string(),
                node_id: node.0,
                reported_gen: reported.map(|g| g.get()),
            }),
        ),
        CpRequest::Detach { tenant, node } => (
            "/detach",
            json(wire::DetachRequest { tenant_id: tenant.to_string(), node_id: node.0 }),
        ),
        CpRequest::Validate { tenants } => (
            "/validate",
            json(wire::ValidateRequest {
                tenants: tenants
                    .iter()
                    .map(|(t, g)| wire::TenantGen { id: t.to_string(), r#gen: g.get() })
                    .collect(),
            }),
        ),
    }
}

/// A 2xx body as the reply `request` expects.
fn decode(request: &CpRequest, body: &[u8]) -> Result<ControlPlaneReply, String> {
    let bad = |e: serde_json::Error| format!("the control plane's answer does not parse: {e}");
    Ok(match request {
        CpRequest::ReAttach { .. } => {
            let r: wire::ReAttachResponse = serde_json::from_slice(body).map_err(bad)?;
            let mut tenants = Vec::new();
            for t in r.tenants {
                tenants.push(ReAttachedTenant {
                    tenant: wire::tenant_id(&t.id)?,
                    generation: wire::generation(t.r#gen)?,
                    previous_was_own: t.previous_was_own,
                    migration_destination: t.migration_destination,
                });
            }
            ControlPlaneReply::ReAttached { tenants }
        }
        CpRequest::Attach { .. } => {
            let r: wire::AttachResponse = serde_json::from_slice(body).map_err(bad)?;
            ControlPlaneReply::Attached { generation: wire::generation(r.r#gen)? }
        }
        CpRequest::Detach { .. } => ControlPlaneReply::Detached,
        CpRequest::Validate { .. } => {
            let r: wire::ValidateResponse = serde_json::from_slice(body).map_err(bad)?;
            let mut results = Vec::new();
            for v in r.tenants {
                results.push((wire::tenant_id(&v.id)?, v.valid));
            }
            ControlPlaneReply::Validated { results }
        }
    })
}

/// An answer as the client machine's outcome (see the module doc).
pub fn interpret(request: &CpRequest, status: u16, body: &[u8]) -> SendOutcome {
    if (200..300).contains(&status) {
        return decode(request, body).map(|r| Some(Ok(r))).map_err(unreachable);
    }
    let error: Option<wire::ErrorBody> = serde_json::from_slice(body).ok();
    let msg = error.as_ref().map(|e| e.msg.clone()).unwrap_or_default();
    if let Some(refusal) = error.and_then(|e| e.refusal) {
        let refusal = refusal.into_error().map_err(unreachable)?;
        return Ok(Some(Err(refusal)));
    }
    match status {
        400 | 401 | 409 => Ok(Some(Err(ControlPlaneError::Rejected(format!("{status}: {msg}"))))),
        _ => Err(unreachable(format!("control plane answered {status}: {msg}"))),
    }
}

impl GenerationStore for RemoteControlPlane {
    /// The node's in-process table stays empty: the table is the service's.
    async fn load(&self) -> Result<Vec<TenantRecord>, StoreError> {
        Ok(Vec::new())
    }

    /// Never asked for: the in-process control plane gets no request when the
    /// link answers every send itself.
    async fn apply(&self, change: &StoreChange) -> Result<(), StoreError> {
        Err(StoreError::Io(format!(
            "the in-process control plane is off (remote control plane): cannot apply {change:?}"
        )))
    }

    async fn send(&self, request: &CpRequest) -> SendOutcome {
        let (path, body) = encode(request);
        let this = self.clone();
        let answer = tokio::task::spawn_blocking(move || this.post(path, body))
            .await
            .map_err(|e| unreachable(format!("link task failed: {e}")))?;
        let (status, bytes) = answer.map_err(unreachable)?;
        interpret(request, status, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::id::TenantId;

    #[test]
    fn answers_map_to_the_client_kinds() {
        let t = TenantId([3; 16]);
        let validate = CpRequest::Validate {
            tenants: vec![(t, strata_core::generation::Generation::new(2).unwrap())],
        };
        let ok = format!(r#"{{"tenants":[{{"id":"{t}","valid":false}}]}}"#);
        assert_eq!(
            interpret(&validate, 200, ok.as_bytes()),
            Ok(Some(Ok(ControlPlaneReply::Validated { results: vec![(t, false)] })))
        );
        let overloaded = r#"{"msg":"busy","refusal":{"kind":"overloaded","queued":9}}"#;
        assert_eq!(
            interpret(&validate, 503, overloaded.as_bytes()),
            Ok(Some(Err(ControlPlaneError::Overloaded { queued: 9 })))
        );
        let unauthorized = interpret(&validate, 401, br#"{"msg":"token"}"#);
        assert!(matches!(unauthorized, Ok(Some(Err(ControlPlaneError::Rejected(_))))));
        assert!(matches!(interpret(&validate, 502, b"gateway"), Err(StoreError::Io(_))));
        assert!(matches!(interpret(&validate, 200, b"{"), Err(StoreError::Io(_))));
    }

    /// A control plane that accepts and never answers: the HTTP call gives up
    /// `LINK_TIMEOUT_MARGIN` after the client's deadline (which has made it a
    /// `Timeout` already). A closed port: unreachable at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_control_plane_times_out_and_a_closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent = format!("http://{}", listener.local_addr().unwrap());
        let deadline = Duration::from_millis(200);
        let link = RemoteControlPlane::new(&silent, None, deadline);
        let request =
            CpRequest::ReAttach { node: strata_core::id::NodeId(1), held_back: Default::default() };
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(20), link.send(&request)).await;
        let took = started.elapsed();
        assert!(matches!(outcome, Ok(Err(StoreError::Io(_)))), "{outcome:?}");
        assert!(took >= deadline && took < deadline + LINK_TIMEOUT_MARGIN * 3, "{took:?}");
        drop(listener);

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let link = RemoteControlPlane::new(&url, None, Duration::from_secs(5));
        let started = std::time::Instant::now();
        assert!(matches!(link.send(&request).await, Err(StoreError::Io(_))));
        assert!(started.elapsed() < Duration::from_secs(5), "refused at once");
    }
}
