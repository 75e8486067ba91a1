//! `strata control` runs the migration reconciler
//! ([`MigrationReconciler`](strata_core::control_plane::migration)): one task feeds
//! it and carries out its effects.
//!
//! - `Persist`: one SQLite transaction (`migrations` table, [`MigrationStore`]),
//!   committed before the machine hears `handle_persisted`; a failure is fed back
//!   (the machine retries it).
//! - `Call`: a task per call, so a slow node never holds up another migration: the
//!   node's address from the registered nodes, then `GET /v1/tenant/{t}/location` or
//!   `PUT /v1/tenant/{t}/location_config`, bounded by [`NODE_CALL_TIMEOUT`]. Its
//!   outcome comes back to the loop: 2xx → the parsed answer, 503 → `Busy`, another
//!   status → `Refused` (the node's message), no connection → `Unreachable`. The
//!   machine's own `call_timeout_ms` covers a call that never comes back.
//! - `Reply`: the admin request waiting for its start ([`ControlService`]).
//! - Timers: the loop sleeps until the machine's next timer, an answer, or a nudge
//!   (a new start).
//!
//! The machine sits in the service's one lock with the generation table; the loop
//! takes the lock per input and never across I/O. On start the machine is rebuilt
//! from the `migrations` rows, and unfinished migrations resume at their phase.

use super::service::{Inner, NODE_CALL_TIMEOUT, NodeToken};
use std::collections::BTreeMap;
use std::sync::Arc;
use strata_adapters::control_store::ControlStore;
use strata_adapters::generation_store::StoreError;
use strata_adapters::migration_store::MigrationStore;
use strata_core::control_plane::migration::{
    MigrationEffect, NodeAnswer, NodeCall, NodeCallError, NodeTenantStatus, TimelineLsns,
};
use strata_core::generation::Generation;
use strata_core::id::{NodeId, OpId, TenantId};
use strata_core::io_error::{IoError, IoErrorKind, IoTarget};
use strata_core::location_conf::LocationMode;
use strata_core::node::api::TimelineInfo;
use strata_core::request_body::LocationConfigBody;
use strata_core::tenant::Placement;
use strata_core::time::Instant;
use tokio::sync::{Mutex, mpsc};

/// What wakes the loop besides a timer.
pub(super) enum Wake {
    /// A node call finished.
    Answer { op: OpId, result: Result<NodeAnswer, NodeCallError> },
    /// New effects may be queued (a start).
    Nudge,
}

/// Starts the loop; the sender wakes it.
pub(super) fn spawn(
    inner: Arc<Mutex<Inner>>,
    store: ControlStore,
    started: std::time::Instant,
    node_token: NodeToken,
) -> mpsc::UnboundedSender<Wake> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(inner, store, started, node_token, rx, tx.clone()));
    tx
}

fn now(started: std::time::Instant) -> Instant {
    Instant::from_millis(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX))
}

async fn run(
    inner: Arc<Mutex<Inner>>,
    store: ControlStore,
    started: std::time::Instant,
    node_token: NodeToken,
    mut rx: mpsc::UnboundedReceiver<Wake>,
    tx: mpsc::UnboundedSender<Wake>,
) {
    loop {
        carry_out_effects(&inner, &store, started, &node_token, &tx).await;
        let next = inner.lock().await.mig.next_timer();
        let sleep = match next {
            Some((at, _)) => {
                let wait = at.millis_since(now(started));
                tokio::time::sleep(std::time::Duration::from_millis(wait))
            }
            None => tokio::time::sleep(std::time::Duration::from_secs(3600)),
        };
        tokio::select! {
            wake = rx.recv() => match wake {
                Some(Wake::Answer { op, result }) => {
                    let mut g = inner.lock().await;
                    if let Err(e) = g.mig.handle_node_answer(now(started), op, result) {
                        debug_assert!(false, "the reconciler refused an answer: {e}");
                        tracing::error!(error = %e, "the reconciler refused a node answer");
                    }
                }
                Some(Wake::Nudge) => {}
                None => return,
            },
            () = sleep => {
                if let Some((at, timer)) = next {
                    inner.lock().await.mig.handle_timeout(now(started).max(at), timer);
                }
            }
        }
    }
}

/// Drains the machine and carries out what it asks until it asks nothing more.
async fn carry_out_effects(
    inner: &Arc<Mutex<Inner>>,
    store: &ControlStore,
    started: std::time::Instant,
    node_token: &NodeToken,
    tx: &mpsc::UnboundedSender<Wake>,
) {
    loop {
        let effects: Vec<MigrationEffect> = {
            let mut g = inner.lock().await;
            g.mig.check_invariants();
            std::iter::from_fn(|| g.mig.poll_effect()).collect()
        };
        if effects.is_empty() {
            return;
        }
        for effect in effects {
            match effect {
                MigrationEffect::Persist { op, record } => {
                    let result = store.put_migration(&record).await.map_err(|e| {
                        IoError::new(IoErrorKind::Transient, IoTarget::Store, e.to_string())
                    });
                    let mut g = inner.lock().await;
                    if let Err(e) = g.mig.handle_persisted(now(started), op, result) {
                        debug_assert!(false, "the reconciler refused a persist completion: {e}");
                        tracing::error!(error = %e, "the reconciler refused a persist completion");
                    }
                }
                MigrationEffect::Call { op, node, tenant, call } => {
                    let address = node_address(store, node).await;
                    let (tx, node_token) = (tx.clone(), node_token.clone());
                    tokio::spawn(async move {
                        let result = match address {
                            Ok(address) => call_node(address, tenant, call, node_token).await,
                            Err(e) => Err(e),
                        };
                        let _ = tx.send(Wake::Answer { op, result });
                    });
                }
                MigrationEffect::Reply { req, result } => {
                    let mut g = inner.lock().await;
                    if let Some(waiter) = g.starts.remove(&req) {
                        let _ = waiter.send(result);
                    }
                }
            }
        }
    }
}

async fn node_address(store: &ControlStore, node: NodeId) -> Result<String, NodeCallError> {
    let nodes = store.nodes().await.map_err(|e: StoreError| {
        NodeCallError::Unreachable(format!("reading the registered nodes: {e}"))
    })?;
    let nodes: BTreeMap<NodeId, String> = nodes.into_iter().collect();
    nodes
        .get(&node)
        .cloned()
        .ok_or_else(|| NodeCallError::Refused(format!("{node} is not registered")))
}

/// One call to a node over HTTP, with the node token when one is configured (see
/// the module doc for the outcome mapping; a token file that cannot be read is
/// `Unreachable`, retried like a node that does not answer).
pub async fn call_node(
    address: String,
    tenant: TenantId,
    call: NodeCall,
    node_token: NodeToken,
) -> Result<NodeAnswer, NodeCallError> {
    let base = address.trim_end_matches('/').to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(NODE_CALL_TIMEOUT))
                .build(),
        );
        let auth = node_token.header().map_err(NodeCallError::Unreachable)?;
        let auth = auth.unwrap_or_default();
        let sent = match &call {
            NodeCall::Status => {
                let r = agent.get(format!("{base}/v1/tenant/{tenant}/location"));
                if auth.is_empty() { r.call() } else { r.header("Authorization", &auth).call() }
            }
            NodeCall::LocationConfig(request) => {
                let r = agent.put(format!("{base}/v1/tenant/{tenant}/location_config"));
                let r = if auth.is_empty() { r } else { r.header("Authorization", &auth) };
                r.send_json(LocationConfigBody::from_request(request))
            }
        };
        let mut response = sent.map_err(|e| NodeCallError::Unreachable(format!("{base}: {e}")))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Ok::<_, NodeCallError>((call, status, text))
    })
    .await
    .map_err(|e| NodeCallError::Unreachable(format!("call task failed: {e}")))?;
    let (call, status, text) = answer?;
    match status {
        200..=299 => parse_answer(&call, &text).map_err(NodeCallError::Refused),
        503 => Err(NodeCallError::Busy(text)),
        _ => Err(NodeCallError::Refused(format!("{status}: {text}"))),
    }
}

#[derive(serde::Deserialize)]
struct PlacementJson {
    mode: String,
    generation: Option<u32>,
    warm: Option<bool>,
    #[serde(default)]
    timelines: Vec<TimelineInfo>,
}

/// A node's answer as the machine's [`NodeAnswer`].
pub fn parse_answer(call: &NodeCall, text: &str) -> Result<NodeAnswer, String> {
    let json: PlacementJson =
        serde_json::from_str(text).map_err(|e| format!("answer {text:?} does not parse: {e}"))?;
    let generation = || {
        json.generation
            .and_then(Generation::new)
            .ok_or_else(|| format!("{} without a generation: {text}", json.mode))
    };
    let placement = match json.mode.as_str() {
        "Detached" => Placement::Detached,
        "Secondary" => {
            Placement::Located(LocationMode::Secondary { warm: json.warm.unwrap_or(false) })
        }
        "AttachedSingle" => {
            Placement::Located(LocationMode::AttachedSingle { generation: generation()? })
        }
        "AttachedMulti" => {
            Placement::Located(LocationMode::AttachedMulti { generation: generation()? })
        }
        "AttachedStale" => {
            Placement::Located(LocationMode::AttachedStale { generation: generation()? })
        }
        other => return Err(format!("unknown mode {other:?}")),
    };
    Ok(match call {
        NodeCall::LocationConfig(_) => NodeAnswer::Placed(placement),
        NodeCall::Status => {
            let timelines = json
                .timelines
                .iter()
                .map(|t| {
                    let lsns = TimelineLsns {
                        last_ingested: t.last_ingested_lsn,
                        visible: t.remote_consistent_lsn_visible,
                    };
                    (t.timeline, lsns)
                })
                .collect();
            NodeAnswer::Status(NodeTenantStatus { placement, timelines })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_answers_parse_into_the_machines_answers() {
        let placed = parse_answer(
            &NodeCall::LocationConfig(strata_core::tenant::LocationRequest::new(
                strata_core::tenant::RequestedMode::AttachedStale,
                None,
            )),
            r#"{"changed": true, "mode": "AttachedStale", "generation": 4, "warm": null}"#,
        );
        let g4 = Generation::new(4).unwrap();
        assert_eq!(
            placed,
            Ok(NodeAnswer::Placed(Placement::Located(LocationMode::AttachedStale {
                generation: g4
            })))
        );
        let status = parse_answer(
            &NodeCall::Status,
            r#"{"tenant_id": "07070707070707070707070707070707", "mode": "Secondary", "generation": null, "warm": true, "timelines": []}"#,
        );
        let secondary = Placement::Located(LocationMode::Secondary { warm: true });
        assert_eq!(
            status,
            Ok(NodeAnswer::Status(NodeTenantStatus {
                placement: secondary,
                timelines: BTreeMap::new()
            }))
        );
        assert!(parse_answer(&NodeCall::Status, r#"{"mode": "AttachedSingle"}"#).is_err());
        assert!(parse_answer(&NodeCall::Status, r#"{"mode": "Sideways"}"#).is_err());
    }
}
