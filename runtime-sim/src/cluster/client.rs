//! The cluster's client node: it ingests, reads, and moves the tenant between
//! pageservers, following the ingest contract (docs/OPERATIONS.md): it keeps every
//! record until a node reports it visible, and on a new location re-sends from
//! that node's `last_ingested` (re-sent LSNs at or below it are no-ops).
//!
//! A migration, step by step (each step's request retried through timeouts, 503s
//! and kills until answered, within the migration's bound):
//! 1. the destination goes AttachedMulti (it acquires the next generation from the
//!    control plane, persisted before the answer);
//! 2. the origin goes AttachedStale, if it still holds the tenant attached (a
//!    restarted origin that re-attach no longer named holds nothing to fence);
//! 3. the client switches to the destination and re-sends from its `last_ingested`
//!    until the destination's visible LSN reaches everything the client sent (at
//!    least the origin's `last_ingested` when it went stale: "caught up");
//! 4. the origin goes Secondary (warm or cold) or Detached (seed-chosen);
//! 5. the destination goes AttachedSingle.
//!
//! Then S-VISIBLE on the destination: every key reads back, at the highest visible
//! LSN any node published, the model's value. The same check runs on the holder
//! after each of its restarts.
//!
//! Every location_config request sent and answer received is logged ([`ModeLog`])
//! for the S-SINGLE-WRITER checker.
//!
//! # Open: the ingest contract has no start-LSN fence
//! The client reads a node's `last_ingested` and sends the records after it. If the
//! node restarts in between (its `last_ingested` falls back to what was durable),
//! it accepts the records after a gap: LSNs are not contiguous, so it cannot tell,
//! and the skipped records are lost once it publishes a visible LSN above them.
//! Cluster seed 200 found it when `net.delay.client` held the ingest for seconds
//! after the read (S-VISIBLE on the destination). The fix belongs in the ingest
//! API (the request names the LSN it continues from; the node refuses a gap); until
//! then the client sends each ingest at once after its read (`send_after`).

use super::ClusterConfig;
use crate::faults::{Faults, site};
use crate::model::Model;
use crate::rpc::{self, CallError};
use crate::scenario::{self, RETRY_PAUSE, WORKLOAD_TENANT};
use madsim::net::Endpoint;
use madsim::rand::{Rng, thread_rng};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_core::node::api::{ApiError, Request, Response};
use strata_core::tenant::{LocationRequest, RequestedMode};
use strata_core::{Lsn, TenantId, TimelineId};

pub const CLIENT_IP: &str = "10.0.1.20";
/// The timeline the client writes.
pub const TIMELINE: TimelineId = TimelineId([9; 16]);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the origin's steps are retried before the client leaves it alone.
const ORIGIN_GIVE_UP: Duration = Duration::from_secs(60);

fn node_id(i: usize) -> strata_core::NodeId {
    strata_core::NodeId(i as u64 + 1)
}

/// The address of pageserver `i` (0-based; its node id is `i + 1`).
pub fn pageserver_addr(i: usize) -> SocketAddr {
    format!("10.0.1.{}:7000", i + 1).parse().expect("static address")
}

/// What happened to a location_config request, when.
#[derive(Clone, Debug)]
pub struct ModeEvent {
    /// Simulated time since the cluster was created.
    pub at: Duration,
    pub node: usize,
    pub tenant: TenantId,
    /// `None`: a request was sent (the node's mode is unknown from then on);
    /// `Some(mode)`: the node answered that it holds the tenant in `mode`.
    pub answered: Option<RequestedMode>,
}

/// The client's log of location_config requests, for checkers.
#[derive(Clone, Debug)]
pub struct ModeLog {
    events: Arc<Mutex<Vec<ModeEvent>>>,
    created: madsim::time::Instant,
}

impl ModeLog {
    /// Create it in the same step as the object store, so both share one time base.
    pub fn new() -> Self {
        ModeLog { events: Arc::default(), created: madsim::time::Instant::now() }
    }

    fn push(&self, node: usize, tenant: TenantId, answered: Option<RequestedMode>) {
        let at = madsim::time::Instant::now().duration_since(self.created);
        let event = ModeEvent { at, node, tenant, answered };
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }

    pub fn events(&self) -> Vec<ModeEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Default for ModeLog {
    fn default() -> Self {
        ModeLog::new()
    }
}

/// What the client shares with the run.
#[derive(Clone, Debug)]
pub struct Shared {
    pub faults: Faults,
    /// The control plane's log, to fence the migrating tenant ([`CpLog::migrating`]).
    pub cp: super::cp::CpLog,
    /// Restarts so far, per pageserver.
    pub restarts: Arc<Mutex<Vec<usize>>>,
    pub modes: ModeLog,
}

/// What the client saw.
#[derive(Debug, Default)]
pub struct ClientOutcome {
    pub model: Model,
    pub migrations: usize,
    /// Simulated milliseconds of the longest migration.
    pub longest_migration_ms: u64,
    /// Re-attaches the client made after a restart found the holder without the tenant.
    pub reattaches: usize,
    /// Restarts of the tenant the client asked for to load a broken timeline again.
    pub reloads: usize,
}

struct Client {
    ep: Endpoint,
    shared: Shared,
    model: Model,
    holder: usize,
    /// How the holder holds the tenant (AttachedMulti while a migration catches up).
    holder_mode: RequestedMode,
    tenant: TenantId,
    out: ClientOutcome,
}

/// The client's run: returns what it saw, or the broken invariant.
pub async fn client_main(config: ClusterConfig, shared: Shared) -> Result<ClientOutcome, String> {
    let me: SocketAddr = format!("{CLIENT_IP}:0").parse().expect("static address");
    let ep = Endpoint::bind(me).await.map_err(|e| e.to_string())?;
    let mut c = Client {
        ep,
        shared,
        model: Model::default(),
        holder: 0,
        holder_mode: RequestedMode::AttachedSingle,
        tenant: WORKLOAD_TENANT,
        out: ClientOutcome::default(),
    };
    let bound = Duration::from_millis(config.heal_within_ms);
    c.create(bound).await?;
    let migrate_at: Vec<usize> =
        (0..config.migrations).map(|_| thread_rng().gen_range(0..config.batches.max(1))).collect();
    let mut seen_restarts = c.restarts_of(c.holder);
    let mut lsn = 0x100u64;
    for batch in 0..config.batches {
        for _ in migrate_at.iter().filter(|b| **b == batch) {
            let others: Vec<usize> = (0..config.pageservers).filter(|i| *i != c.holder).collect();
            let dest = others[thread_rng().gen_range(0..others.len())];
            c.migrate(dest, Duration::from_millis(config.migrate_within_ms)).await?;
            seen_restarts = c.restarts_of(c.holder);
        }
        for _ in 0..config.records_per_batch {
            lsn += thread_rng().gen_range(1..16);
            let record = scenario::random_record(config.keys, Lsn(lsn));
            if !c.model.redo_refuses(&record) {
                c.model.push(record);
            }
        }
        let from = c.info(c.holder, bound).await?.last_ingested_lsn;
        c.send_after(c.holder, from).await;
        let now = c.restarts_of(c.holder);
        if now != seen_restarts {
            seen_restarts = now;
            c.info(c.holder, bound).await?;
            c.check_visible(c.holder).await?;
        }
        madsim::time::sleep(Duration::from_millis(thread_rng().gen_range(1..50))).await;
    }
    // L-UPLOAD on the holder, after the heal.
    let deadline = madsim::time::Instant::now() + bound;
    loop {
        let info = c.info(c.holder, bound).await?;
        if info.last_ingested_lsn >= c.model.last_lsn()
            && c.model.visible_lsn() >= c.model.last_lsn()
        {
            break;
        }
        c.send_after(c.holder, info.last_ingested_lsn).await;
        if madsim::time::Instant::now() > deadline {
            return Err(format!(
                "L-UPLOAD: {} ms after the heal, visible is {} on node {} but {} was ingested",
                config.heal_within_ms,
                c.model.visible_lsn(),
                c.holder + 1,
                c.model.last_lsn()
            ));
        }
        madsim::time::sleep(Duration::from_millis(500)).await;
    }
    c.check_visible(c.holder).await?;
    c.out.model = c.model;
    Ok(c.out)
}

impl Client {
    fn restarts_of(&self, node: usize) -> usize {
        self.shared.restarts.lock().expect("not poisoned")[node]
    }

    /// One request to `node`, perhaps held in transit first (`net.delay.client`).
    async fn call(&self, node: usize, request: Request) -> Result<Response, CallError> {
        crate::cluster::net::maybe_delay(&self.shared.faults, site::NET_DELAY_CLIENT).await;
        rpc::call(&self.ep, pageserver_addr(node), request, CALL_TIMEOUT).await
    }

    /// Creates the tenant and its timeline on the first pageserver.
    async fn create(&mut self, bound: Duration) -> Result<(), String> {
        let deadline = madsim::time::Instant::now() + bound;
        let tenant = self.tenant;
        for request in [
            Request::CreateTenant { tenant },
            Request::CreateTimeline { tenant, timeline: TIMELINE },
        ] {
            loop {
                match self.call(self.holder, request.clone()).await {
                    Ok(_) | Err(CallError::Api(ApiError::Conflict(_))) => break,
                    // A failed step left the tenant Broken: a location_config repairs it.
                    Err(CallError::Api(ApiError::Internal(why))) => {
                        tracing::info!(%why, "client: the tenant is broken; attaching it again");
                        self.location(self.holder, RequestedMode::AttachedSingle, deadline).await?;
                    }
                    Err(_) if madsim::time::Instant::now() > deadline => {
                        return Err(format!("L-ATTACH: {request:?} not answered within {bound:?}"));
                    }
                    Err(_) => madsim::time::sleep(RETRY_PAUSE).await,
                }
            }
        }
        Ok(())
    }

    /// Sends every record after `from` to `node`.
    async fn send_after(&mut self, node: usize, from: Lsn) {
        let records = self.model.records_after(from).to_vec();
        if records.is_empty() {
            return;
        }
        let request = Request::Ingest { tenant: self.tenant, timeline: TIMELINE, records };
        // Sent at once, never held: the ingest API names no start LSN, so a node
        // that restarted between the `last_ingested` this send is based on and its
        // arrival would accept the records after a gap (cluster seed 200, with a
        // delay injected here: S-VISIBLE broken; open, see the module doc).
        let ingest = rpc::call(&self.ep, pageserver_addr(node), request, CALL_TIMEOUT).await;
        if let Ok(Response::Ingested { last_ingested_lsn, .. }) = ingest {
            self.model.acked(last_ingested_lsn);
        }
    }

    /// `node`'s timeline info (its visible LSN recorded in the model), retried
    /// within `bound`. A holder that lost the tenant (a restart whose re-attach did
    /// not name it) is attached again.
    async fn info(
        &mut self,
        node: usize,
        bound: Duration,
    ) -> Result<strata_core::node::api::TimelineInfo, String> {
        let deadline = madsim::time::Instant::now() + bound;
        let (tenant, timeline) = (self.tenant, TIMELINE);
        loop {
            match self.call(node, Request::TimelineInfo { tenant, timeline }).await {
                Ok(Response::TimelineInfo(info)) => {
                    self.model.published_visible(info.remote_consistent_lsn_visible)?;
                    if !(node == self.holder && info.state.starts_with("Broken")) {
                        return Ok(info);
                    }
                    // A timeline broken for good (the disk-full policy) is loaded
                    // again by a restart of the tenant on a newer generation.
                    tracing::info!(state = %info.state, node = node + 1, "client: reloading a broken timeline");
                    self.out.reloads += 1;
                    let next = info.generation.next();
                    self.location_at(node, self.holder_mode, next, deadline).await?;
                }
                Ok(other) => return Err(format!("unexpected info answer {other:?}")),
                Err(CallError::Api(ApiError::NotFound(what))) if node == self.holder => {
                    tracing::info!(%what, node = node + 1, "the holder lacks the tenant; attaching it again");
                    self.out.reattaches += 1;
                    self.location(node, RequestedMode::AttachedSingle, deadline).await?;
                    if self.model.visible_lsn() == Lsn::ZERO {
                        let create = Request::CreateTimeline { tenant, timeline };
                        let _ = self.call(node, create).await;
                    }
                }
                // A failed step left the tenant Broken: a location_config repairs it.
                Err(CallError::Api(ApiError::Internal(why))) if node == self.holder => {
                    tracing::info!(%why, node = node + 1, "client: the holder's tenant is broken; repairing");
                    self.out.reloads += 1;
                    self.location(node, self.holder_mode, deadline).await?;
                }
                Err(_) => madsim::time::sleep(RETRY_PAUSE).await,
            }
            if madsim::time::Instant::now() > deadline {
                return Err(format!(
                    "L-ATTACH: node {} did not answer timeline info within {bound:?}",
                    node + 1
                ));
            }
        }
    }

    /// location_config(`mode`) on `node`, retried until answered or `deadline`.
    async fn location(
        &mut self,
        node: usize,
        mode: RequestedMode,
        deadline: madsim::time::Instant,
    ) -> Result<(), String> {
        self.location_at(node, mode, None, deadline).await
    }

    /// [`Client::location`] asking for at least `generation`.
    async fn location_at(
        &mut self,
        node: usize,
        mode: RequestedMode,
        generation: Option<strata_core::Generation>,
        deadline: madsim::time::Instant,
    ) -> Result<(), String> {
        let tenant = self.tenant;
        let request =
            Request::LocationConfig { tenant, request: LocationRequest { mode, generation } };
        loop {
            self.shared.modes.push(node, tenant, None);
            match self.call(node, request.clone()).await {
                Ok(Response::LocationConfigured(_)) => {
                    self.shared.modes.push(node, tenant, Some(mode));
                    return Ok(());
                }
                // Moved on past what was asked (a retry after a restart): done.
                Err(CallError::Api(ApiError::Conflict(_))) => return Ok(()),
                Ok(other) => return Err(format!("unexpected location_config answer {other:?}")),
                Err(e) => {
                    tracing::info!(?e, node = node + 1, ?mode, "location_config not done; retrying")
                }
            }
            if madsim::time::Instant::now() > deadline {
                return Err(format!(
                    "L-MIGRATE: location_config {mode:?} on node {} not done in time",
                    node + 1
                ));
            }
            madsim::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Moves the tenant from the holder to `dest` (see the module doc); L-MIGRATE:
    /// done within `bound`, and every visible value reads back on `dest`.
    async fn migrate(&mut self, dest: usize, bound: Duration) -> Result<(), String> {
        let started = madsim::time::Instant::now();
        let deadline = started + bound;
        let origin = self.holder;
        tracing::info!(origin = origin + 1, dest = dest + 1, "client: migration begins");
        self.shared.cp.migrating(self.tenant, Some(node_id(dest)));
        self.location(dest, RequestedMode::AttachedMulti, deadline).await?;
        self.stale_origin(origin, deadline).await?;
        // The client switches: the destination gets everything it lacks.
        self.holder = dest;
        self.holder_mode = RequestedMode::AttachedMulti;
        let target = self.model.last_lsn();
        loop {
            let left = deadline.saturating_duration_since(madsim::time::Instant::now());
            let info = self
                .info(dest, left.max(RETRY_PAUSE))
                .await
                .map_err(|e| format!("L-MIGRATE: {e}"))?;
            if info.remote_consistent_lsn_visible >= target {
                break;
            }
            self.send_after(dest, info.last_ingested_lsn).await;
            if madsim::time::Instant::now() > deadline {
                return Err(format!(
                    "L-MIGRATE: node {} not caught up within {bound:?}: visible {} of {target}",
                    dest + 1,
                    info.remote_consistent_lsn_visible
                ));
            }
            madsim::time::sleep(Duration::from_millis(500)).await;
        }
        let away = match thread_rng().gen_range(0..3) {
            0 => RequestedMode::Secondary { warm: true },
            1 => RequestedMode::Secondary { warm: false },
            _ => RequestedMode::Detached,
        };
        self.location(origin, away, deadline).await?;
        self.location(dest, RequestedMode::AttachedSingle, deadline).await?;
        self.holder_mode = RequestedMode::AttachedSingle;
        self.shared.cp.migrating(self.tenant, None);
        self.check_visible(dest)
            .await
            .map_err(|e| format!("L-MIGRATE: on the destination: {e}"))?;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.out.migrations += 1;
        self.out.longest_migration_ms = self.out.longest_migration_ms.max(ms);
        tracing::info!(origin = origin + 1, dest = dest + 1, ms, "client: migration done");
        Ok(())
    }

    /// Step 2: the origin goes AttachedStale if it holds the tenant attached. An
    /// origin that does not answer for [`ORIGIN_GIVE_UP`] is left as it is: the
    /// destination's generation fences it.
    async fn stale_origin(
        &mut self,
        origin: usize,
        deadline: madsim::time::Instant,
    ) -> Result<(), String> {
        let give_up = madsim::time::Instant::now() + ORIGIN_GIVE_UP;
        let (tenant, timeline) = (self.tenant, TIMELINE);
        let request = Request::LocationConfig {
            tenant,
            request: LocationRequest { mode: RequestedMode::AttachedStale, generation: None },
        };
        loop {
            match self.call(origin, Request::TimelineInfo { tenant, timeline }).await {
                Ok(Response::TimelineInfo(_)) => {
                    self.shared.modes.push(origin, tenant, None);
                    if let Ok(Response::LocationConfigured(_)) =
                        self.call(origin, request.clone()).await
                    {
                        self.shared.modes.push(origin, tenant, Some(RequestedMode::AttachedStale));
                        return Ok(());
                    }
                }
                // It does not hold the tenant (a restart whose re-attach did not name it).
                Err(CallError::Api(ApiError::NotFound(_))) => return Ok(()),
                _ => {}
            }
            let now = madsim::time::Instant::now();
            if now > give_up {
                tracing::info!(
                    origin = origin + 1,
                    "client: the origin does not answer; left to its generation"
                );
                return Ok(());
            }
            if now > deadline {
                return Err(format!("L-MIGRATE: node {} not made stale in time", origin + 1));
            }
            madsim::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// S-VISIBLE on `node`.
    async fn check_visible(&self, node: usize) -> Result<(), String> {
        scenario::check_visible(&self.ep, pageserver_addr(node), self.tenant, TIMELINE, &self.model)
            .await
            .map_err(|e| format!("{e} (on node {})", node + 1))
    }
}
