//! The request layer over madsim's simulated network: the workload calls the node
//! with the same typed requests HTTP maps onto in production.

use madsim::net::Endpoint;
use madsim::net::rpc::Request as RpcRequest;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use strata_core::node::api::{ApiError, Request, Response};
use strata_runtime_tokio::driver::NodeHandle;

/// One request to a node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeRpc(pub Request);

impl RpcRequest for NodeRpc {
    type Response = Result<Response, ApiError>;
    const ID: u64 = 0x5354_5241_5441; // "STRATA"
}

/// A test-only change of what a node is handed, and of what it answers to it:
/// `None` holds the request for ever (a request layer stuck on a lock).
pub type Rewrite = fn(Request) -> Option<(Request, fn(Response) -> Response)>;

/// Every request and answer as it is.
pub const UNCHANGED: Rewrite = |request| Some((request, |answer| answer));

/// Serves `handle` on `addr` until the node dies, handing the node the request
/// `rewrite` makes of each, and the caller the answer it makes of the node's: a
/// test-only break (a node that ignores part of what it is asked) that a test uses
/// to show a checker failing; the swarm passes [`UNCHANGED`]. Every request waits
/// in `watch` (as node `name`) until it is answered or the node dies
/// (S-NO-DEADLOCK, `crate::deadlock`).
pub async fn serve_rewriting(
    addr: SocketAddr,
    handle: NodeHandle,
    rewrite: Rewrite,
    (watch, name): (crate::deadlock::RequestWatch, &str),
) -> std::io::Result<Arc<Endpoint>> {
    let endpoint = Arc::new(Endpoint::bind(addr).await?);
    let name = name.to_string();
    endpoint.add_rpc_handler(move |NodeRpc(request): NodeRpc| {
        let handle = handle.clone();
        let entered = watch.enter(&name, &request);
        let rewritten = rewrite(request);
        async move {
            let _entered = entered;
            match rewritten {
                Some((request, answer)) => handle.call(request).await.map(answer),
                None => std::future::pending().await,
            }
        }
    });
    Ok(endpoint)
}

/// Why a call did not get the node's answer.
#[derive(Debug)]
pub enum CallError {
    /// The network or a timeout: the request may or may not have been applied.
    Transport(String),
    /// The node answered with an error.
    Api(ApiError),
}

/// Calls the node at `addr`, waiting at most `timeout`.
pub async fn call(
    client: &Endpoint,
    addr: SocketAddr,
    request: Request,
    timeout: Duration,
) -> Result<Response, CallError> {
    use crate::sim_trace::{Lane, record};
    // Traced on the caller's lane, the request and its answer under one number.
    let traced = crate::sim_trace::next_request().map(|n| (format!("rq{n}"), lane_of(addr)));
    if let Some((op, to)) = &traced {
        record(Lane::Here, "request", op, "effect", format_args!("to {to}: {request:?}"));
    }
    let answer = match client.call_timeout(addr, NodeRpc(request), timeout).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(CallError::Api(e)),
        Err(e) => Err(CallError::Transport(e.to_string())),
    };
    if let Some((op, from)) = &traced {
        record(Lane::Here, "request", op, "input", format_args!("from {from}: {answer:?}"));
    }
    answer
}

fn lane_of(addr: SocketAddr) -> String {
    crate::sim_trace::lane_of(addr.ip())
}
