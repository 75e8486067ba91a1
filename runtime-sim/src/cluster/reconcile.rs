//! The control-plane node's migration driver: core's
//! [`MigrationReconciler`] run next to the generation table, its effects carried
//! out on the simulated world.
//!
//! - `Persist`: one upsert of the tenant's migration row in [`MigrationStore`]
//!   (world-owned, like the generation store: a commit takes 1–5 ms, and a kill of
//!   the control plane loses what had not committed).
//! - `Call`: a node's `TenantLocation` (status) or `LocationConfig`, over madsim's
//!   network like any client request (partitions and kills make it fail).
//! - `Reply`: to the client's admin request that started the migration.
//! - Timers: the driver looks at the machine's timers every [`DRIVER_TICK`].
//!
//! The client asks through [`Admin`] calls: `Migrate` starts a migration (origin
//! and its generation from the generation table), `Phase` reads where it stands.
//! While a tenant migrates, the control plane refuses an attach of it from any node
//! but the destination (`MigrationReconciler::migrating_to`): a restarted origin
//! asked to go AttachedStale must not acquire a generation above the destination's.
//!
//! Crash: the reconciler is rebuilt from the store at every start
//! (`MigrationReconciler::recover`); an unfinished migration resumes at its
//! persisted phase.

use super::client::ModeLog;
use super::cp::Machine;
use crate::rpc::{self, CallError};
use crate::sim_disk::SimDisk;
use madsim::rand::{Rng, thread_rng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_core::control_plane::RequestId;
use strata_core::control_plane::migration::{
    MigrationEffect, MigrationError, MigrationRecord, MigrationStart, NodeAnswer, NodeCall,
    NodeCallError, NodeTenantStatus, OriginAfter, Phase, TimelineLsns,
};
use strata_core::id::{NodeId, TenantId};
use strata_core::io_error::{IoError, IoErrorKind, IoTarget};
use strata_core::location_conf::LocationMode;
use strata_core::node::api::{ApiError, Request, Response};
use strata_core::tenant::{LocationOutcome, Placement, RequestedMode};

/// How often the driver fires due timers and carries out new effects.
const DRIVER_TICK: Duration = Duration::from_millis(50);
/// How long one call to a node may take before it is a transport failure.
const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The migration rows, owned by the world (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct MigrationStore {
    inner: Arc<Mutex<(BTreeMap<TenantId, MigrationRecord>, u64)>>,
}

impl MigrationStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, (BTreeMap<TenantId, MigrationRecord>, u64)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn load(&self) -> Vec<MigrationRecord> {
        self.lock().0.values().cloned().collect()
    }

    /// The control plane died: upserts in flight never commit.
    pub fn crash(&self) {
        self.lock().1 += 1;
    }

    async fn persist(&self, record: MigrationRecord) -> Result<(), String> {
        let epoch = self.lock().1;
        let ms = thread_rng().gen_range(1..=crate::sim_store::MAX_COMMIT_LATENCY_MS);
        madsim::time::sleep(Duration::from_millis(ms)).await;
        let mut inner = self.lock();
        if inner.1 != epoch {
            return Err("crashed before commit".into());
        }
        inner.0.insert(record.tenant, record);
        Ok(())
    }
}

/// An admin request of the client.
pub enum Admin {
    /// Start moving `tenant` to `to`.
    Migrate { tenant: TenantId, to: NodeId, origin_after: OriginAfter },
    /// Where the tenant's migration stands: its durable phase, if any.
    Phase { tenant: TenantId },
}

/// The answer to an [`Admin`] request.
pub type AdminAnswer = Result<Option<Phase>, String>;

/// Answers an admin request (the caller holds no lock).
pub(crate) async fn admin(
    machine: &Arc<tokio::sync::Mutex<Machine>>,
    replies: &Replies,
    request: Admin,
) -> AdminAnswer {
    match request {
        Admin::Phase { tenant } => {
            let m = machine.lock().await;
            Ok(m.migrations.migration(tenant).and_then(|v| v.record).map(|r| r.phase.clone()))
        }
        Admin::Migrate { tenant, to, origin_after } => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            {
                let mut m = machine.lock().await;
                let Some(record) = m.cp.record(tenant).cloned() else {
                    return Err(format!("tenant {tenant} is unknown to the control plane"));
                };
                let Some(origin) = record.attached_to else {
                    return Err(format!("tenant {tenant} is attached nowhere"));
                };
                if origin == to {
                    // Already there: a retried request whose first attempt started
                    // a migration that has finished since (its answer was lost).
                    return Ok(Some(Phase::Done { generation: record.generation }));
                }
                let now = m.now();
                let req = m.next_request();
                replies.lock().expect("not poisoned").insert(req, tx);
                let start = MigrationStart {
                    tenant,
                    origin,
                    origin_generation: record.generation,
                    destination: to,
                    origin_after,
                };
                m.migrations.handle_start(now, req, start);
            }
            match rx.await {
                Ok(Ok(record)) => Ok(Some(record.phase)),
                Ok(Err(MigrationError::AlreadyMigrating { .. })) => Ok(None),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the control plane stopped".into()),
            }
        }
    }
}

/// Who waits for the reply to a `Start`.
pub type Replies = Arc<
    Mutex<
        BTreeMap<RequestId, tokio::sync::oneshot::Sender<Result<MigrationRecord, MigrationError>>>,
    >,
>;

/// Runs the reconciler's timers and effects until the node dies.
pub(crate) async fn drive(
    machine: Arc<tokio::sync::Mutex<Machine>>,
    (store, modes, disks): (MigrationStore, ModeLog, Vec<SimDisk>),
    replies: Replies,
) {
    loop {
        let effects = {
            let mut m = machine.lock().await;
            let now = m.now();
            let due: Vec<_> =
                m.migrations.timers().filter(|(at, _)| *at <= now).map(|(_, t)| t).collect();
            for timer in due {
                m.migrations.handle_timeout(now, timer);
            }
            std::iter::from_fn(|| m.migrations.poll_effect()).collect::<Vec<_>>()
        };
        for effect in effects {
            match effect {
                MigrationEffect::Persist { op, record } => {
                    let (machine, store) = (machine.clone(), store.clone());
                    tokio::spawn(async move {
                        let result = store
                            .persist(record)
                            .await
                            .map_err(|e| IoError::new(IoErrorKind::Transient, IoTarget::Store, e));
                        let mut m = machine.lock().await;
                        let now = m.now();
                        m.migrations
                            .handle_persisted(now, op, result)
                            .expect("a persist in flight");
                    });
                }
                MigrationEffect::Call { op, node, tenant, call } => {
                    let (machine, modes, disks) = (machine.clone(), modes.clone(), disks.clone());
                    tokio::spawn(async move {
                        let result = call_node(node, tenant, call, (&modes, &disks)).await;
                        let mut m = machine.lock().await;
                        let now = m.now();
                        m.migrations.handle_node_answer(now, op, result).expect("a call in flight");
                    });
                }
                MigrationEffect::Reply { req, result } => {
                    if let Some(tx) = replies.lock().expect("not poisoned").remove(&req) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
        madsim::time::sleep(DRIVER_TICK).await;
    }
}

/// One call to a node, as the reconciler asks it.
async fn call_node(
    node: NodeId,
    tenant: TenantId,
    call: NodeCall,
    (modes, disks): (&ModeLog, &[SimDisk]),
) -> Result<NodeAnswer, NodeCallError> {
    // On the node's own address: an endpoint on 0.0.0.0 may get the port of one
    // bound on the node's address, and then answers go to that one.
    let me: SocketAddr = format!("{}:0", super::cp::CP_IP).parse().expect("static address");
    let ep = madsim::net::Endpoint::bind(me)
        .await
        .map_err(|e| NodeCallError::Unreachable(e.to_string()))?;
    let i = (node.0 - 1) as usize;
    let addr = super::client::pageserver_addr(i);
    if let NodeCall::LocationConfig(_) = call {
        modes.push(i, tenant, None);
    }
    let request = match &call {
        NodeCall::Status => {
            let status = status(&ep, addr, &disks[i], tenant).await?;
            return Ok(NodeAnswer::Status(status));
        }
        NodeCall::LocationConfig(request) => Request::LocationConfig { tenant, request: *request },
    };
    match (call, rpc::call(&ep, addr, request, NODE_CALL_TIMEOUT).await) {
        (NodeCall::LocationConfig(_), Ok(Response::LocationConfigured(outcome))) => {
            let placement = match outcome {
                LocationOutcome::Unchanged(p) | LocationOutcome::Changed(p) => p,
                LocationOutcome::Created(p) => p,
            };
            modes.push(i, tenant, Some(requested(&placement)));
            Ok(NodeAnswer::Placed(placement))
        }
        (_, Ok(other)) => Err(NodeCallError::Refused(format!("unexpected answer {other:?}"))),
        (_, Err(CallError::Transport(e))) => Err(NodeCallError::Unreachable(e)),
        (_, Err(CallError::Api(ApiError::Unavailable { reason, .. }))) => {
            Err(NodeCallError::Busy(reason))
        }
        (_, Err(CallError::Api(e))) => Err(NodeCallError::Refused(e.to_string())),
    }
}

/// The mode a placement stands for, as the mode log records answers.
fn requested(placement: &Placement) -> RequestedMode {
    match placement {
        Placement::Detached => RequestedMode::Detached,
        Placement::Located(LocationMode::AttachedSingle { .. }) => RequestedMode::AttachedSingle,
        Placement::Located(LocationMode::AttachedMulti { .. }) => RequestedMode::AttachedMulti,
        Placement::Located(LocationMode::AttachedStale { .. }) => RequestedMode::AttachedStale,
        Placement::Located(LocationMode::Secondary { warm }) => {
            RequestedMode::Secondary { warm: *warm }
        }
    }
}

/// A node's status of `tenant` from the node API that exists today: the node must
/// answer `ListTenants` (and `TimelineInfo` for each timeline it lists), and its
/// placement is the location config on its disk, what it durably holds (a tenant
/// it lists runs attached; one it does not list is Secondary if its config says
/// so, else Detached). This stands in for the node API's `TenantLocation`, which
/// the reconciler's tokio driver brings (issue 17 item 3) and is not on main yet.
async fn status(
    ep: &madsim::net::Endpoint,
    addr: SocketAddr,
    disk: &SimDisk,
    tenant: TenantId,
) -> Result<NodeTenantStatus, NodeCallError> {
    let transport = |e: CallError| match e {
        CallError::Transport(e) => NodeCallError::Unreachable(e),
        CallError::Api(ApiError::Unavailable { reason, .. }) => NodeCallError::Busy(reason),
        CallError::Api(e) => NodeCallError::Refused(e.to_string()),
    };
    let listed = match rpc::call(ep, addr, Request::ListTenants, NODE_CALL_TIMEOUT).await {
        Ok(Response::Tenants(tenants)) => tenants.into_iter().find(|t| t.tenant == tenant),
        Ok(other) => return Err(NodeCallError::Refused(format!("unexpected answer {other:?}"))),
        Err(e) => return Err(transport(e)),
    };
    let conf = disk
        .read_now(&strata_core::node::io::location_conf_path(tenant))
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| strata_core::location_conf::LocationConf::from_toml(&text).ok())
        .map(|c| c.mode);
    let Some(info) = listed.filter(|t| t.generation.is_some()) else {
        let placement = match conf {
            Some(mode @ LocationMode::Secondary { .. }) => Placement::Located(mode),
            _ => Placement::Detached,
        };
        return Ok(NodeTenantStatus { placement, timelines: BTreeMap::new() });
    };
    let generation = info.generation.expect("filtered");
    let mode = match conf {
        Some(LocationMode::AttachedMulti { .. }) => LocationMode::AttachedMulti { generation },
        Some(LocationMode::AttachedStale { .. }) => LocationMode::AttachedStale { generation },
        _ => LocationMode::AttachedSingle { generation },
    };
    let mut timelines = BTreeMap::new();
    for timeline in info.timelines {
        let request = Request::TimelineInfo { tenant, timeline };
        match rpc::call(ep, addr, request, NODE_CALL_TIMEOUT).await {
            Ok(Response::TimelineInfo(t)) => {
                let lsns = TimelineLsns {
                    last_ingested: t.last_ingested_lsn,
                    visible: t.remote_consistent_lsn_visible,
                };
                timelines.insert(timeline, lsns);
            }
            Ok(other) => {
                return Err(NodeCallError::Refused(format!("unexpected answer {other:?}")));
            }
            Err(e) => return Err(transport(e)),
        }
    }
    Ok(NodeTenantStatus { placement: Placement::Located(mode), timelines })
}
