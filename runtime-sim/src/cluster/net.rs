//! The cluster's network: control-plane calls carried as values over madsim's
//! simulated network, and the network nemesis (delays and partitions, each a named
//! fault site).
//!
//! Calls between simulated nodes go through madsim's network, so a partition (a
//! clogged link: every message dropped) or a killed peer is seen as a timeout. The
//! simulator passes the typed values themselves; there is no wire format here
//! (the HTTP encoding of the same requests is `strata control`'s, tested in the
//! tokio build).
//!
//! Sites (see [`crate::faults::site::CLUSTER`]):
//! - `net.partition.cp`: an episode of 1–15 s in which one pageserver and the
//!   control plane cannot reach each other (both directions);
//! - `net.partition.client`: the same between one pageserver and the client;
//! - `net.delay.cp`: one control-plane call is held 1–12 s in transit (past the
//!   node's 10 s deadline at the long end: the node gives it up, the reply is dropped);
//! - `net.delay.client`: one client request is held 1–8 s in transit.
//!
//! Healing ends every episode and stops new ones.

use crate::faults::{Faults, site};
use madsim::net::Endpoint;
use madsim::rand::{Rng, thread_rng};
use madsim::task::NodeId;
use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the network nemesis asks its partition sites whether they fire.
const NEMESIS_PERIOD: Duration = Duration::from_millis(500);
const PARTITION_MIN_MS: u64 = 1_000;
const PARTITION_MAX_MS: u64 = 15_000;
const CP_DELAY_MAX_MS: u64 = 12_000;
const CLIENT_DELAY_MAX_MS: u64 = 8_000;

/// Sends `request` to the handler of `tag` at `dst` and waits at most `timeout`
/// for its answer.
pub async fn call_any<Q, A>(
    ep: &Endpoint,
    dst: SocketAddr,
    tag: u64,
    request: Q,
    timeout: Duration,
) -> Result<A, String>
where
    Q: Any + Send + Sync,
    A: Any + Send + Sync,
{
    let answer_tag = thread_rng().r#gen::<u64>();
    ep.send_to_raw(dst, tag, Box::new((answer_tag, request))).await.map_err(|e| e.to_string())?;
    let (answer, _) = madsim::time::timeout(timeout, ep.recv_from_raw(answer_tag))
        .await
        .map_err(|_| format!("no answer from {dst} within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    answer.downcast::<A>().map(|a| *a).map_err(|_| "answer of the wrong type".to_string())
}

/// Serves calls of `tag` on `ep` (one task each) until the node dies.
pub fn serve_any<Q, A, F, Fut>(ep: Arc<Endpoint>, tag: u64, handler: F)
where
    Q: Any + Send + Sync,
    A: Any + Send + Sync,
    F: Fn(Q) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = A> + Send + 'static,
{
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((payload, from)) = ep.recv_from_raw(tag).await {
            let Ok(call) = payload.downcast::<(u64, Q)>() else { continue };
            let (answer_tag, request) = *call;
            let (ep, handler) = (ep.clone(), handler.clone());
            tokio::spawn(async move {
                let answer = handler(request).await;
                // The caller may be gone (killed, partitioned): then nobody waits.
                let _ = ep.send_to_raw(from, answer_tag, Box::new(answer)).await;
            });
        }
    });
}

/// Holds the caller while `site` (a delay site) fires: `max_ms` at most.
pub async fn maybe_delay(faults: &Faults, delay_site: &'static str) {
    if faults.fire(delay_site) {
        let max_ms =
            if delay_site == site::NET_DELAY_CP { CP_DELAY_MAX_MS } else { CLIENT_DELAY_MAX_MS };
        let ms = thread_rng().gen_range(1_000..=max_ms);
        madsim::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// The nodes the network nemesis cuts apart.
#[derive(Clone, Debug)]
pub struct Topology {
    pub pageservers: Vec<NodeId>,
    pub control_plane: NodeId,
    pub client: NodeId,
}

/// Partitions a pageserver from the control plane or from the client while the
/// partition sites fire, each for a seed-chosen time; stops (healing every link)
/// when `stop` is set or the faults heal.
pub async fn partition_nemesis(faults: Faults, topology: Topology, stop: Arc<Mutex<bool>>) {
    let net = madsim::net::NetSim::current();
    let cut = |a: NodeId, b: NodeId, on: bool| {
        if on {
            net.clog_link(a, b);
            net.clog_link(b, a);
        } else {
            net.unclog_link(a, b);
            net.unclog_link(b, a);
        }
    };
    // Open episodes: the link and when it heals.
    let mut open: Vec<((NodeId, NodeId), madsim::time::Instant)> = Vec::new();
    while !*stop.lock().expect("not poisoned") && !faults.is_healed() {
        madsim::time::sleep(NEMESIS_PERIOD).await;
        let now = madsim::time::Instant::now();
        open.retain(|((a, b), until)| {
            let over = *until <= now;
            if over {
                tracing::info!(?a, ?b, "nemesis: partition healed");
                cut(*a, *b, false);
            }
            !over
        });
        for (s, peer) in [
            (site::NET_PARTITION_CP, topology.control_plane),
            (site::NET_PARTITION_CLIENT, topology.client),
        ] {
            if faults.fire(s) {
                let ps =
                    topology.pageservers[thread_rng().gen_range(0..topology.pageservers.len())];
                let ms = thread_rng().gen_range(PARTITION_MIN_MS..=PARTITION_MAX_MS);
                tracing::info!(?ps, ?peer, ms, "nemesis: partition ({s})");
                cut(ps, peer, true);
                open.push(((ps, peer), now + Duration::from_millis(ms)));
            }
        }
    }
    for ((a, b), _) in open {
        cut(a, b, false);
    }
}
