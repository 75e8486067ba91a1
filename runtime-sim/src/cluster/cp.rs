//! The cluster's control-plane node and the pageservers' link to it.
//!
//! # The control-plane node
//! Core's [`ControlPlane`] machine on its own simulated store ([`SimStore`]: a
//! commit takes simulated time; a kill loses what was not committed), served over
//! madsim's network as `strata control` serves it over HTTP: each call runs to its
//! reply holding the one lock on the machine (the store commits before the machine
//! sees `handle_persisted`, so a reply never names a generation that is not
//! durable). `ListRemoteGenerations` is answered from the shared object store's
//! current keys (the simulated control plane can see the bucket). Started from
//! the store on every (re)start: [`ControlPlane::recover`].
//!
//! It records, for checkers ([`CpLog`]): every grant the store committed (tenant,
//! generation, node, and the pageserver's run at the time), and every validation it
//! answered (node, tenant, generation, valid or not).
//!
//! # The link
//! [`CpLink`] is the pageserver's [`GenerationStore`] with a remote control plane
//! (`NodeConfig::remote_control_plane`): `send` carries one attempt to the
//! control-plane node (fault site `net.delay.cp`; partitions and kills make it time
//! out) and returns its answer. Each attempt is one connection, given up at the
//! node's deadline plus the margin the HTTP link allows, on the node's own clock (a
//! real HTTP client's timeout runs on its host's clock; timed on true time, a
//! skewed node retried while its first attempt was still carried: cluster seed
//! 1651): a request held in transit
//! longer is never delivered. (An earlier model delivered it anyway, seconds after
//! the node had retried; cluster seed 28 then showed the late attach re-granting the
//! tenant to the node that had given up on it, after it had moved on: nothing fences
//! a late `Attach` in the protocol, so a link must not deliver one.); the node's control-plane client machine owns the
//! deadline and retries. `load` is empty and `apply` refuses: a node with a remote
//! control plane has no table of its own.
//!
//! # Test-only breaks
//! [`CpBreak`] changes what the simulated control plane or link does, so that a test
//! can show a checker failing; the swarm never sets one.

use super::net;
use super::reconcile::{self, MigrationStore};
use crate::faults::{Faults, site};
use crate::sim_remote::SimRemote;
use crate::sim_store::SimStore;
use madsim::net::Endpoint;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_adapters::generation_store::{GenerationStore, SendOutcome, StoreError};
use strata_core::control_plane::migration::{MigrationConfig, MigrationReconciler};
use strata_core::control_plane::{
    ControlPlane, ControlPlaneEffect, ControlPlaneError, ControlPlaneReply, CpRequest, RequestId,
    StoreChange, TenantRecord, max_generation_in_listing,
};
use strata_core::generation::Generation;
use strata_core::id::{NodeId, TenantId};
use strata_core::io_error::{IoError, IoErrorKind, IoTarget};
use strata_core::remote_path::{self, RemoteKey};

pub const CP_IP: &str = "10.0.1.10";
pub const CP_ADDR: &str = "10.0.1.10:7100";
/// The raw-message tag of a control-plane call.
const CP_CALL_TAG: u64 = 0x4350_4341_4c4c; // "CPCALL"
/// The raw-message tag of an admin request.
const CP_ADMIN_TAG: u64 = 0x4350_4144_4d4e; // "CPADMN"
/// How long the client waits for an admin answer (a start waits for its persist).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long past the client machine's deadline the link waits for an answer (as
/// the HTTP link of the tokio build does: `LINK_TIMEOUT_MARGIN` there).
const LINK_MARGIN: Duration =
    Duration::from_millis(strata_core::control_plane::client::DEFAULT_LINK_MARGIN_MS);

/// A deliberate break, for a test that shows a checker failing. Never set by the swarm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpBreak {
    #[default]
    None,
    /// The control plane answers an attach with the generation below the one it
    /// granted (a lost increment): the node writes under a generation granted to
    /// someone else, or to nobody (S-GEN-MONO).
    GrantBelow,
    /// The link answers every validation "valid" without asking the control plane
    /// (a node that skips validation): deletions run unvalidated (S-DEL-GEN).
    SkipValidation,
}

/// One call as the simulated network carries it.
struct CpCall {
    from: NodeId,
    request: CpRequest,
}

type CpAnswer = Result<ControlPlaneReply, ControlPlaneError>;

/// A grant the control plane's store committed.
#[derive(Clone, Debug)]
pub struct GrantSeen {
    /// Simulated time of the commit, since the cluster was created.
    pub at: Duration,
    pub tenant: TenantId,
    pub generation: Generation,
    pub node: NodeId,
    /// The pageserver's run (its crashes so far) when the grant committed.
    pub node_epoch: u64,
}

/// A validation the control plane answered.
#[derive(Clone, Debug)]
pub struct ValidationSeen {
    pub at: Duration,
    pub node: NodeId,
    pub node_epoch: u64,
    /// Tenant, generation asked, and whether it was the latest.
    pub results: Vec<(TenantId, Generation, bool)>,
}

#[derive(Debug, Default)]
struct LogInner {
    grants: Vec<GrantSeen>,
    validations: Vec<ValidationSeen>,
    /// Each pageserver's crashes so far (kept by the world).
    epochs: BTreeMap<NodeId, u64>,
}

/// What the control plane did, for checkers; owned by the cluster world (it
/// outlives every node's life).
#[derive(Clone, Debug)]
pub struct CpLog {
    inner: Arc<Mutex<LogInner>>,
    created: madsim::time::Instant,
}

impl CpLog {
    pub fn new() -> Self {
        CpLog { inner: Arc::default(), created: madsim::time::Instant::now() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> Duration {
        madsim::time::Instant::now().duration_since(self.created)
    }

    /// Pageserver `node` crashed.
    pub fn node_crashed(&self, node: NodeId) {
        *self.lock().epochs.entry(node).or_insert(0) += 1;
    }

    fn epoch(&self, node: NodeId) -> u64 {
        self.lock().epochs.get(&node).copied().unwrap_or(0)
    }

    pub fn grants(&self) -> Vec<GrantSeen> {
        self.lock().grants.clone()
    }

    pub fn validations(&self) -> Vec<ValidationSeen> {
        self.lock().validations.clone()
    }
}

impl Default for CpLog {
    fn default() -> Self {
        CpLog::new()
    }
}

/// The control plane's machines: the generation table and the migration
/// reconciler, behind one lock.
pub(crate) struct Machine {
    pub(crate) cp: ControlPlane,
    pub(crate) migrations: MigrationReconciler,
    next_req: u64,
    started: madsim::time::Instant,
}

impl Machine {
    /// Milliseconds since this life of the control plane began.
    pub(crate) fn now(&self) -> strata_core::time::Instant {
        let elapsed = madsim::time::Instant::now().duration_since(self.started);
        strata_core::time::Instant::from_millis(elapsed.as_millis() as u64)
    }

    pub(crate) fn next_request(&mut self) -> RequestId {
        self.next_req += 1;
        RequestId(self.next_req)
    }
}

/// What the control-plane node's lives share: its stores and the world's log.
#[derive(Clone, Debug)]
pub struct CpWorld {
    pub store: SimStore,
    pub migrations: MigrationStore,
    pub remote: SimRemote,
    pub log: CpLog,
    pub modes: super::client::ModeLog,
    /// Each pageserver's disk, for the status of a tenant on it (`reconcile.rs`).
    pub disks: Vec<crate::sim_disk::SimDisk>,
    pub brk: CpBreak,
}

/// One life of the control-plane node: recover from the stores, serve calls, drive
/// migrations.
pub async fn control_plane_main(world: CpWorld) {
    let records = loop {
        match world.store.load().await {
            Ok(records) => break records,
            Err(_) => madsim::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let started = madsim::time::Instant::now();
    let migrations = MigrationReconciler::recover(
        MigrationConfig::default(),
        world.migrations.load(),
        strata_core::time::Instant::from_millis(0),
    );
    let machine = Arc::new(tokio::sync::Mutex::new(Machine {
        cp: ControlPlane::recover(records),
        migrations,
        next_req: 0,
        started,
    }));
    let addr: SocketAddr = CP_ADDR.parse().expect("static address");
    let ep = Arc::new(Endpoint::bind(addr).await.expect("bind the control plane's endpoint"));
    let (m, w) = (machine.clone(), world.clone());
    net::serve_any(ep.clone(), CP_CALL_TAG, move |call: CpCall| {
        let (machine, w) = (m.clone(), w.clone());
        async move { run_call(&machine, &w.store, &w.remote, &w.log, call, w.brk).await }
    });
    let replies = reconcile::Replies::default();
    let (m, r) = (machine.clone(), replies.clone());
    net::serve_any(ep, CP_ADMIN_TAG, move |request: reconcile::Admin| {
        let (machine, replies) = (m.clone(), r.clone());
        async move { reconcile::admin(&machine, &replies, request).await }
    });
    reconcile::drive(machine, (world.migrations, world.modes, world.disks), replies).await;
}

/// An admin request to the control plane, from the client node.
pub async fn admin_call(request: reconcile::Admin) -> reconcile::AdminAnswer {
    // On the client's own address: an endpoint on 0.0.0.0 may get the port of the
    // client's main endpoint, and then the answer goes to that one.
    let me: SocketAddr = format!("{}:0", super::client::CLIENT_IP).parse().expect("static address");
    let ep = Endpoint::bind(me).await.map_err(|e| e.to_string())?;
    let cp: SocketAddr = CP_ADDR.parse().expect("static address");
    net::call_any::<_, reconcile::AdminAnswer>(&ep, cp, CP_ADMIN_TAG, request, ADMIN_TIMEOUT)
        .await
        .and_then(|answer| answer)
}

/// Runs one call through the machine to its reply (see the module doc).
async fn run_call(
    machine: &tokio::sync::Mutex<Machine>,
    store: &SimStore,
    remote: &SimRemote,
    log: &CpLog,
    call: CpCall,
    brk: CpBreak,
) -> CpAnswer {
    let mut m = machine.lock().await;
    let now = m.now();
    let req = m.next_request();
    let node_epoch = log.epoch(call.from);
    if let CpRequest::Attach { tenant, node, reported } = &call.request
        && let Err(refusal) =
            m.migrations.attach_fence(m.cp.record(*tenant), *tenant, *node, *reported)
    {
        return Err(ControlPlaneError::Rejected(refusal.to_string()));
    }
    match call.request.clone() {
        CpRequest::ReAttach { node, held_back } => {
            m.cp.handle_re_attach_holding_back(now, req, node, held_back)
        }
        CpRequest::Attach { tenant, node, reported } => {
            m.cp.handle_attach(now, req, tenant, node, reported)
        }
        CpRequest::Detach { tenant, node } => m.cp.handle_detach(now, req, tenant, node),
        CpRequest::Validate { tenants } => m.cp.handle_validate(now, req, tenants),
    }
    loop {
        let effect = m.cp.poll_effect();
        m.cp.check_invariants();
        match effect {
            Some(ControlPlaneEffect::Persist { op, change }) => {
                let result = store.apply(&change).await;
                log_committed(store, log, &change);
                let result = result.map_err(|e| {
                    IoError::new(IoErrorKind::Transient, IoTarget::Store, e.to_string())
                });
                m.cp.handle_persisted(now, op, result).expect("the persist in progress");
            }
            Some(ControlPlaneEffect::ListRemoteGenerations { op, tenant }) => {
                let prefix = remote_path::tenant_prefix(tenant);
                let keys: Vec<RemoteKey> = remote
                    .objects()
                    .into_keys()
                    .filter(|k| k.as_str().starts_with(&prefix))
                    .collect();
                let found = max_generation_in_listing(tenant, &keys);
                m.cp.handle_remote_generations(now, op, found).expect("the listing in progress");
            }
            Some(ControlPlaneEffect::Reply { req: r, mut reply }) if r == req => {
                if let (
                    CpRequest::ReAttach { node, .. },
                    Ok(ControlPlaneReply::ReAttached { tenants }),
                ) = (&call.request, &mut reply)
                {
                    m.migrations.mark_destinations(*node, tenants);
                }
                if let (
                    CpRequest::Validate { tenants },
                    Ok(ControlPlaneReply::Validated { results }),
                ) = (&call.request, &reply)
                {
                    let results = tenants
                        .iter()
                        .zip(results)
                        .map(|((t, g), (_, valid))| (*t, *g, *valid))
                        .collect();
                    let at = log.now();
                    let seen = ValidationSeen { at, node: call.from, node_epoch, results };
                    log.lock().validations.push(seen);
                }
                return match (brk, reply) {
                    (CpBreak::GrantBelow, Ok(ControlPlaneReply::Attached { generation })) => {
                        let below = generation.previous().unwrap_or(generation);
                        Ok(ControlPlaneReply::Attached { generation: below })
                    }
                    (_, reply) => reply,
                };
            }
            Some(ControlPlaneEffect::Reply { req: r, .. }) => {
                panic!("control plane: a reply for request {r:?}, which nobody waits for")
            }
            None => panic!("control plane: the machine stopped without replying"),
        }
    }
}

/// Logs the records of `change` the store holds now (committed, even if the
/// store then reported a failure).
fn log_committed(store: &SimStore, log: &CpLog, change: &StoreChange) {
    let committed = store.records();
    for record in change.records() {
        let TenantRecord { tenant, generation, attached_to: Some(node) } = record.clone() else {
            continue;
        };
        if !committed.contains(record) {
            continue;
        }
        let at = log.now();
        let node_epoch = log.epoch(node);
        let mut inner = log.lock();
        let known = inner
            .grants
            .iter()
            .any(|g| g.tenant == tenant && g.generation == generation && g.node == node);
        if !known {
            inner.grants.push(GrantSeen { at, tenant, generation, node, node_epoch });
        }
    }
}

/// A pageserver's link to the control-plane node (see the module doc).
#[derive(Clone, Debug)]
pub struct CpLink {
    pub node: NodeId,
    pub faults: Faults,
    /// The node's client machine's per-attempt deadline.
    pub call_timeout: Duration,
    pub brk: CpBreak,
    /// The node's clock: an attempt is given up on it, as a real HTTP client's
    /// timeout runs on its host's clock (a skewed or jumped clock moves both).
    pub clock: crate::clock::SimClock,
}

/// How often, at most, a link waiting for its node's clock looks at it again (a
/// jump of that clock is noticed this late).
const LINK_CLOCK_POLL: Duration = Duration::from_millis(5);

/// Sleeps until `clock` reads `deadline_ms` or later (monotonic, milliseconds),
/// converting what is left by the clock's current rate and looking again at most
/// every [`LINK_CLOCK_POLL`], so that a rate change or a jump is followed.
async fn until_node_clock(clock: &crate::clock::SimClock, deadline_ms: u64) {
    use strata_runtime_tokio::driver::Clock;
    loop {
        let now = clock.monotonic().as_millis();
        if now >= deadline_ms {
            return;
        }
        let left = Duration::from_millis((deadline_ms - now) * 1_000 / clock.rate_permille());
        madsim::time::sleep(left.clamp(Duration::from_millis(1), LINK_CLOCK_POLL)).await;
    }
}

impl GenerationStore for CpLink {
    async fn load(&self) -> Result<Vec<TenantRecord>, StoreError> {
        Ok(Vec::new())
    }

    async fn apply(&self, _change: &StoreChange) -> Result<(), StoreError> {
        Err(StoreError::Io("a node with a remote control plane has no store of its own".into()))
    }

    fn send(&self, request: &CpRequest) -> impl Future<Output = SendOutcome> + Send {
        let (link, request) = (self.clone(), request.clone());
        async move {
            if let (CpBreak::SkipValidation, CpRequest::Validate { tenants }) = (link.brk, &request)
            {
                let results = tenants.iter().map(|(t, _)| (*t, true)).collect();
                return Ok(Some(Ok(ControlPlaneReply::Validated { results })));
            }
            // One connection per attempt, given up at the link's timeout on the
            // node's clock (1 ms early, so never after the node's own retry, which
            // waits the same margin: cluster seed 1651 had a skewed node retry
            // while its first attempt, timed on true time, was still in transit):
            // a request held in transit past it is never delivered (the
            // connection is gone).
            let timeout = link.call_timeout + LINK_MARGIN;
            let give_up = {
                use strata_runtime_tokio::driver::Clock;
                let started = link.clock.monotonic().as_millis();
                let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                started.saturating_add(timeout_ms).saturating_sub(1)
            };
            let attempt = async {
                net::maybe_delay(&link.faults, site::NET_DELAY_CP).await;
                let me: SocketAddr = "0.0.0.0:0".parse().expect("static address");
                let ep = Endpoint::bind(me).await.map_err(|e| e.to_string())?;
                let cp: SocketAddr = CP_ADDR.parse().expect("static address");
                let call = CpCall { from: link.node, request };
                net::call_any::<_, CpAnswer>(&ep, cp, CP_CALL_TAG, call, timeout).await
            };
            tokio::select! {
                answer = attempt => match answer {
                    Ok(answer) => Ok(Some(answer)),
                    Err(e) => Err(StoreError::Io(e)),
                },
                () = until_node_clock(&link.clock, give_up) => {
                    Err(StoreError::Io(format!("no answer within {timeout:?} (node clock)")))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attempt is given up on the node's clock: with the node's clock running
    /// twice as fast as true time and every call held 1–12 s in transit
    /// (`net.delay.cp`), no call reaches the control plane after the node's clock
    /// passed the attempt's deadline plus the margin. A link timed on true time
    /// delivered calls up to twice as late (cluster seed 1651: a skewed node's
    /// retry was granted, then its first attempt, re-granting a newer generation).
    #[madsim::test]
    async fn a_link_gives_up_on_its_nodes_clock() {
        let handle = madsim::runtime::Handle::current();
        let arrivals: Arc<Mutex<Vec<madsim::time::Instant>>> = Arc::default();
        let cp_addr: SocketAddr = CP_ADDR.parse().expect("static address");
        let cp = handle.create_node().name("control-plane").ip(cp_addr.ip()).build();
        let seen = arrivals.clone();
        cp.spawn(async move {
            let ep = Arc::new(Endpoint::bind(cp_addr).await.expect("bind"));
            net::serve_any(ep, CP_CALL_TAG, move |_call: CpCall| {
                let seen = seen.clone();
                async move {
                    seen.lock().expect("not poisoned").push(madsim::time::Instant::now());
                    let answer: CpAnswer =
                        Ok(ControlPlaneReply::Attached { generation: Generation::FIRST });
                    answer
                }
            });
            std::future::pending::<()>().await;
        });
        let clock = crate::clock::SimClock::new();
        clock.set_rate_permille(2_000);
        let faults = Faults::new();
        faults.set(site::NET_DELAY_CP, 1.0);
        let call_timeout = Duration::from_secs(5);
        let link = CpLink { node: NodeId(1), faults, call_timeout, brk: CpBreak::None, clock };
        // The node's clock runs at 2x: its deadline plus the margin, in true time.
        let window = (call_timeout + LINK_MARGIN) / 2;
        let pageserver = handle.create_node().name("pageserver").ip([10, 0, 1, 1].into()).build();
        let starts = pageserver
            .spawn(async move {
                let request = CpRequest::Attach {
                    tenant: TenantId([7; 16]),
                    node: NodeId(1),
                    reported: None,
                };
                let mut starts = Vec::new();
                for _ in 0..30 {
                    starts.push(madsim::time::Instant::now());
                    let _ = link.send(&request).await;
                }
                starts
            })
            .await
            .expect("the pageserver's task");
        madsim::time::sleep(Duration::from_secs(15)).await;
        let arrivals = arrivals.lock().expect("not poisoned").clone();
        assert!(!arrivals.is_empty(), "no call arrived: the test checks nothing");
        for at in arrivals {
            let start = starts.iter().rev().find(|s| **s <= at).expect("an attempt began before");
            let late = at.duration_since(*start);
            assert!(
                late <= window,
                "a call arrived {late:?} after its attempt began (given up after {window:?})"
            );
        }
    }
}
