//! The cluster's client node: it ingests, reads, and moves the tenant between
//! pageservers, following the ingest contract (docs/OPERATIONS.md): it keeps every
//! record until a node reports it visible, and on a new location re-sends from
//! that node's `last_ingested` (re-sent LSNs at or below it are no-ops).
//!
//! A migration is the control plane's: the client asks for one (admin `Migrate`),
//! and the control plane's migration reconciler moves the tenant (destination
//! AttachedMulti at a newer generation, origin AttachedStale, catch-up, origin
//! Secondary (warm) or Detached, destination AttachedSingle; `reconcile.rs`). The
//! client follows its phase; once the origin is stale (catch-up) it switches to
//! the destination and re-sends from the destination's `last_ingested`.
//!
//! Then S-VISIBLE on the destination: every key reads back, at the highest visible
//! LSN any node published, the model's value. The same check runs on the holder
//! after each of its restarts.
//!
//! Every location_config request sent and answer received, the client's and the
//! reconciler's, is logged ([`ModeLog`]) for the S-SINGLE-WRITER checker.
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
use super::cp;
use super::reconcile::Admin;
use crate::faults::{Faults, site};
use crate::model::Model;
use crate::rpc::{self, CallError};
use crate::scenario::{self, RETRY_PAUSE, WORKLOAD_TENANT};
use madsim::net::Endpoint;
use madsim::rand::{Rng, thread_rng};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_core::control_plane::migration::{OriginAfter, Phase};
use strata_core::node::api::{ApiError, Request, Response};
use strata_core::tenant::{LocationRequest, RequestedMode};
use strata_core::{Lsn, TenantId, TimelineId};

pub const CLIENT_IP: &str = "10.0.1.20";
/// The timeline the client writes.
pub const TIMELINE: TimelineId = TimelineId([9; 16]);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

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

    pub(crate) fn push(&self, node: usize, tenant: TenantId, answered: Option<RequestedMode>) {
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
            if crate::schedule::step("client.migrate") {
                c.migrate(dest, Duration::from_millis(config.migrate_within_ms)).await?;
                seen_restarts = c.restarts_of(c.holder);
            }
        }
        for _ in 0..config.records_per_batch {
            lsn += thread_rng().gen_range(1..16);
            let record = scenario::random_record(config.keys, Lsn(lsn));
            if !c.model.redo_refuses(&record) {
                c.model.push(record);
            }
        }
        // A schedule may leave the batch's ingest out: its records go with the next.
        if crate::schedule::step("client.batch") {
            let from = c.info(c.holder, bound).await?.last_ingested_lsn;
            c.send_after(c.holder, from).await;
        }
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
        // Formatted only if it fails (`crate::scenario::call`).
        let kept = request.clone();
        let answer = rpc::call(&self.ep, pageserver_addr(node), request, CALL_TIMEOUT).await;
        if let Err(e) = &answer {
            let to = format!(" to pageserver {}", node + 1);
            crate::scenario::note_refusal(kept, to, format!("{e:?}"));
        }
        answer
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
            Request::LocationConfig { tenant, request: LocationRequest::new(mode, generation) };
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

    /// Moves the tenant from the holder to `dest` through the control plane's
    /// migration reconciler (see the module doc); L-MIGRATE: done within `bound`,
    /// and every visible value reads back on `dest`.
    async fn migrate(&mut self, dest: usize, bound: Duration) -> Result<(), String> {
        let started = madsim::time::Instant::now();
        let deadline = started + bound;
        let (origin, tenant) = (self.holder, self.tenant);
        tracing::info!(origin = origin + 1, dest = dest + 1, "client: migration begins");
        let origin_after = if thread_rng().gen_bool(0.5) {
            OriginAfter::SecondaryWarm
        } else {
            OriginAfter::Detached
        };
        let to = node_id(dest);
        while let Err(e) = cp::admin_call(Admin::Migrate { tenant, to, origin_after }).await {
            if madsim::time::Instant::now() > deadline {
                return Err(format!("L-MIGRATE: the control plane did not start it: {e}"));
            }
            madsim::time::sleep(RETRY_PAUSE).await;
        }
        // Follow it: once the origin is stale (catch-up), the client sends to the
        // destination everything it lacks.
        loop {
            let phase = cp::admin_call(Admin::Phase { tenant }).await;
            if let Ok(Some(Phase::Done { .. })) = phase {
                break;
            }
            if let Ok(Some(p)) = &phase
                && p.rank() >= 2
                && self.holder != dest
            {
                tracing::info!(dest = dest + 1, "client: the origin is stale; switching");
                self.holder = dest;
                self.holder_mode = RequestedMode::AttachedMulti;
            }
            if self.holder == dest
                && let Ok(Response::TimelineInfo(info)) =
                    self.call(dest, Request::TimelineInfo { tenant, timeline: TIMELINE }).await
            {
                self.model.published_visible(info.remote_consistent_lsn_visible)?;
                self.send_after(dest, info.last_ingested_lsn).await;
            }
            if madsim::time::Instant::now() > deadline {
                return Err(format!(
                    "L-MIGRATE: the migration to node {} not done within {bound:?}: {phase:?}",
                    dest + 1
                ));
            }
            madsim::time::sleep(Duration::from_millis(500)).await;
        }
        self.holder = dest;
        self.holder_mode = RequestedMode::AttachedSingle;
        self.check_visible(dest)
            .await
            .map_err(|e| format!("L-MIGRATE: on the destination: {e}"))?;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.out.migrations += 1;
        self.out.longest_migration_ms = self.out.longest_migration_ms.max(ms);
        tracing::info!(origin = origin + 1, dest = dest + 1, ms, "client: migration done");
        Ok(())
    }

    /// S-VISIBLE on `node`.
    async fn check_visible(&self, node: usize) -> Result<(), String> {
        scenario::check_visible(&self.ep, pageserver_addr(node), self.tenant, TIMELINE, &self.model)
            .await
            .map_err(|e| format!("{e} (on node {})", node + 1))
    }
}
