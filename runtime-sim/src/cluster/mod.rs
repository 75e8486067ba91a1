//! The cluster scenario: one control-plane node on its own simulated store, three
//! pageservers (each with its own simulated disk and clock, all sharing one
//! simulated object store), and a client node that ingests, reads and moves the
//! tenant between pageservers. Every call crosses madsim's network: node ↔
//! control plane ([`cp`]) and client ↔ node (`crate::rpc`), with delays and
//! partitions as named fault sites ([`net`]).
//!
//! Steps of a run:
//! 1. Faults on (seed-chosen per site, as in the one-node scenario, plus the
//!    network sites). The client creates the tenant on pageserver 1, ingests
//!    `batches` batches and at `migrations` seed-chosen batches asks the control
//!    plane to move the tenant to another pageserver ([`client`]); core's migration
//!    reconciler, driven on the control-plane node ([`reconcile`]), carries it out. Meanwhile the nemesis kills `kills`
//!    seed-chosen nodes, the control plane included (each disk and store applies
//!    its crash rule in the same step) and restarts them after a pause; a restarted
//!    control plane may find its store failing for a few commits.
//! 2. Faults heal. The client finishes its batches and migrations (L-MIGRATE:
//!    each within `migrate_within_ms`, every visible value read back on the
//!    destination), then L-UPLOAD on the holder: everything becomes visible within
//!    `heal_within_ms`. S-VISIBLE is checked on the holder after each of its
//!    restarts and after each migration.
//! 3. Checkers over what storage saw: S-IDX-ORDER and S-IDX-REF over the shared
//!    store (`crate::checkers`), S-CRASHSAFE and FSYNC-TRUST of every disk, and the
//!    cluster's S-GEN-MONO, S-SINGLE-WRITER and S-DEL-GEN ([`checks`]).
//!
//! A report collects every violation found, in that order; the first is the run's.

pub mod checks;
pub mod client;
pub mod cp;
pub mod net;
pub mod reconcile;

use crate::checkers;
use crate::clock::SimClock;
use crate::faults::{Faults, site};
use crate::scenario::nemesis_line;
use crate::schedule::Kind;
use crate::sim_disk::{SimDisk, SimDiskConfig};
use crate::sim_remote::{SimRemote, SimRemoteConfig};
use crate::sim_store::SimStore;
use crate::sim_trace;
use crate::world::{FaultPlan, mix};
use madsim::rand::{Rng, thread_rng};
use madsim::runtime::Handle;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_core::NodeId;
use strata_core::location_conf::LocationMode;
use strata_core::node::api::{Request, Response, TimelineInfo};
use strata_core::tenant::{LocationOutcome, Placement};
use strata_core::tenant::{LocationRequest, RequestedMode};
use strata_runtime_tokio::trace_sink::TraceSink;

pub use cp::CpBreak;

/// The control plane's lane in the trace (`crate::sim_trace`).
pub const CP_LANE: &str = "control-plane";

/// A pageserver's lane: `node-N`, as its own trace lines name it.
fn lane(id: NodeId) -> String {
    id.to_string()
}

/// A deliberate break at a pageserver's door, for a test that shows a checker
/// failing (the node is handed a changed request). Never set by the swarm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeBreak {
    #[default]
    None,
    /// A location_config to AttachedStale reaches the node as AttachedSingle, and
    /// its answer says AttachedStale: the origin keeps uploading (S-SINGLE-WRITER).
    StaleIgnored,
    /// A location_config to AttachedMulti reaches the node as AttachedStale: the
    /// destination never uploads, so a migration never catches up (L-MIGRATE).
    MultiUploadsNothing,
    /// An ingest of several records reaches the node without its first: the node
    /// acknowledges a record it never had (S-VISIBLE).
    DropsARecord,
    /// Every tenant listing is held at the door for ever, as a request stuck on a
    /// lock nobody releases (Neon's TENANTS-lock deadlock): S-NO-DEADLOCK.
    HoldsListings,
    /// A location_config to AttachedSingle reaches the node as Secondary: a
    /// relocation never ends attached (L-ATTACH).
    AttachesAsSecondary,
    /// Timeline info answers claim everything ingested is visible, as a node
    /// publishing an LSN before it is durable would (S-PROJECTED).
    PublishesEarly,
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub pageservers: usize,
    pub batches: usize,
    pub records_per_batch: usize,
    pub keys: u64,
    /// Kills of seed-chosen nodes (pageservers and the control plane).
    pub kills: usize,
    pub migrations: usize,
    pub heal_within_ms: u64,
    pub migrate_within_ms: u64,
    pub faults: bool,
    pub cp_break: CpBreak,
    pub node_break: NodeBreak,
    /// Every pageserver's disk deliberately broken (`DiskBreak`); never set by the
    /// swarm.
    pub disk_break: crate::sim_disk::DiskBreak,
    /// Listings of the shared store lag this long (0: strongly consistent, as S3).
    pub list_lag_ms: u64,
    /// The pageservers' settings (all three alike): standard, or drawn from the
    /// seed (the cluster swarm; `crate::settings`).
    pub settings: crate::settings::NodeSettings,
    /// Record the run's schedule, or follow one (`crate::schedule`); the swarm
    /// leaves it `None`.
    pub schedule: Option<crate::schedule::Recorder>,
    /// Fault sites forced on with these probabilities, over the seed's own plan
    /// (a targeted run, `strata-sim --force`; the swarm leaves it empty).
    pub forced_faults: Vec<(&'static str, f64)>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            pageservers: 3,
            batches: 30,
            records_per_batch: 8,
            keys: 24,
            kills: 3,
            migrations: 3,
            heal_within_ms: 120_000,
            migrate_within_ms: 300_000,
            faults: true,
            cp_break: CpBreak::None,
            node_break: NodeBreak::None,
            disk_break: crate::sim_disk::DiskBreak::None,
            list_lag_ms: 0,
            settings: crate::settings::NodeSettings::Standard,
            schedule: None,
            forced_faults: Vec::new(),
        }
    }
}

/// What a cluster run saw; a failed run names the broken invariants.
#[derive(Debug, Default)]
pub struct ClusterReport {
    pub seed: u64,
    /// The pageservers' settings, as `Drawn::describe` prints them.
    pub settings: String,
    pub fired: Vec<(String, u64)>,
    pub restarts: usize,
    pub cp_restarts: usize,
    pub migrations: usize,
    pub longest_migration_ms: u64,
    pub reattaches: usize,
    pub reloads: usize,
    pub simulated_ms: u64,
    /// Every violation found, checkers in the order of the module doc.
    pub violations: Vec<String>,
    /// The first of them.
    pub violation: Option<String>,
    /// Machine inputs the pageservers' drivers handled, over every life.
    pub machine_inputs: u64,
}

/// One pageserver's own world: its disk and clock, and its handle to the shared store.
#[derive(Clone, Debug)]
struct Pageserver {
    id: NodeId,
    disk: SimDisk,
    remote: SimRemote,
    clock: SimClock,
}

fn node_config(id: NodeId, settings: &crate::settings::Drawn) -> strata_core::node::NodeConfig {
    let mut c = crate::scenario::node_config();
    settings.apply(&mut c);
    c.node_id = id;
    c.remote_control_plane = true;
    // A migration's origin left warm follows the destination's new layers often, so
    // its downloads meet kills, faults and the next migration back to it.
    c.secondary.refresh_interval_ms = 2_000;
    c.secondary.download_concurrency = 2;
    c
}

/// The changed requests (and answers) of a [`NodeBreak`].
pub(crate) fn rewrite_for(brk: NodeBreak) -> crate::rpc::Rewrite {
    fn swap(request: Request, from: RequestedMode, to: RequestedMode) -> Request {
        match request {
            Request::LocationConfig { tenant, request } if request.mode == from => {
                Request::LocationConfig { tenant, request: LocationRequest { mode: to, ..request } }
            }
            other => other,
        }
    }
    /// An answer that says AttachedStale where the node holds AttachedSingle.
    fn claim_stale(answer: Response) -> Response {
        let stale = |p: Placement| match p {
            Placement::Located(LocationMode::AttachedSingle { generation }) => {
                Placement::Located(LocationMode::AttachedStale { generation })
            }
            other => other,
        };
        match answer {
            Response::LocationConfigured(LocationOutcome::Changed(p)) => {
                Response::LocationConfigured(LocationOutcome::Changed(stale(p)))
            }
            Response::LocationConfigured(LocationOutcome::Unchanged(p)) => {
                Response::LocationConfigured(LocationOutcome::Unchanged(stale(p)))
            }
            other => other,
        }
    }
    match brk {
        NodeBreak::None => crate::rpc::UNCHANGED,
        NodeBreak::StaleIgnored => |r| match r {
            Request::LocationConfig { request, .. }
                if request.mode == RequestedMode::AttachedStale =>
            {
                let single = swap(r, RequestedMode::AttachedStale, RequestedMode::AttachedSingle);
                Some((single, claim_stale))
            }
            other => Some((other, |a| a)),
        },
        NodeBreak::MultiUploadsNothing => {
            |r| Some((swap(r, RequestedMode::AttachedMulti, RequestedMode::AttachedStale), |a| a))
        }
        NodeBreak::DropsARecord => |r| match r {
            Request::Ingest { tenant, timeline, mut records } if records.len() > 1 => {
                records.remove(0);
                Some((Request::Ingest { tenant, timeline, records }, |a| a))
            }
            other => Some((other, |a| a)),
        },
        NodeBreak::AttachesAsSecondary => |r| {
            Some((
                swap(r, RequestedMode::AttachedSingle, RequestedMode::Secondary { warm: false }),
                |a| a,
            ))
        },
        NodeBreak::PublishesEarly => |r| {
            Some((r, |a| match a {
                Response::TimelineInfo(info) => Response::TimelineInfo(TimelineInfo {
                    remote_consistent_lsn_visible: info.last_ingested_lsn,
                    ..info
                }),
                other => other,
            }))
        },
        NodeBreak::HoldsListings => |r| match r {
            Request::ListTenants => None,
            other => Some((other, |a| a)),
        },
    }
}

/// The seed's fault plan, with the network sites drawn from a mix of the seed.
fn plan(config: &ClusterConfig, seed: u64) -> FaultPlan {
    if !config.faults {
        return FaultPlan::none();
    }
    let mut plan = FaultPlan::from_seed(&mut thread_rng(), seed);
    for (i, s) in site::CLUSTER.iter().enumerate() {
        let bits = mix(seed, 1_000 + i as u64);
        if bits & 1 == 1 {
            let unit = ((bits >> 1) & 0xFFFF) as f64 / 65_536.0;
            plan.probabilities.push((*s, 0.01 + 0.09 * unit));
        }
    }
    plan.probabilities.extend(config.forced_faults.iter().copied());
    plan
}

/// Runs the cluster scenario in the current madsim runtime.
pub async fn run(config: ClusterConfig, trace: TraceSink) -> ClusterReport {
    let handle = Handle::current();
    crate::scenario::forget_last_refusal();
    let _trace = sim_trace::begin(&trace);
    let _schedule = crate::schedule::begin(config.schedule.as_ref());
    let faults = Faults::new();
    for (s, p) in &plan(&config, handle.seed()).probabilities {
        faults.set(s, *p);
    }
    // Created in one step: the store's history, the control plane's log and the
    // client's mode log share one time base.
    let remote_config =
        SimRemoteConfig { list_lag_ms: config.list_lag_ms, ..SimRemoteConfig::default() };
    let remote = SimRemote::with_faults(faults.clone(), remote_config);
    let log = cp::CpLog::new();
    let modes = client::ModeLog::new();
    let cp_store = SimStore::with_faults(faults.clone());

    let disks: Vec<SimDisk> = (0..config.pageservers)
        .map(|_| SimDisk::with_faults(faults.clone(), SimDiskConfig::default()))
        .collect();
    disks.iter().for_each(|d| d.set_break(config.disk_break));
    let cp_world = cp::CpWorld {
        store: cp_store.clone(),
        migrations: reconcile::MigrationStore::default(),
        remote: remote.clone(),
        log: log.clone(),
        modes: modes.clone(),
        disks: disks.clone(),
        brk: config.cp_break,
    };
    let w = cp_world.clone();
    let cp_node = handle
        .create_node()
        .name("control-plane")
        .ip(cp::CP_IP.parse().expect("static address"))
        .init(move || cp::control_plane_main(w.clone()))
        .build();
    sim_trace::name_node(&cp_node, cp::CP_IP.parse().expect("static address"), CP_LANE);
    let brk = config.cp_break;
    let settings = config.settings.for_seed(handle.seed());
    tracing::info!(settings = %settings.describe(), "pageserver settings");
    let mut pageservers = Vec::new();
    let mut ps_nodes = Vec::new();
    // One tally per pageserver: S-LOCAL-TRUTH waits for one pageserver's life.
    let tallies: Vec<crate::inputs::InputTally> =
        (0..disks.len()).map(|_| crate::inputs::InputTally::new()).collect();
    let requests = crate::deadlock::RequestWatch::new();
    for (i, disk) in disks.iter().cloned().enumerate() {
        let id = NodeId(i as u64 + 1);
        let ps = Pageserver {
            id,
            remote: remote.for_writer(id.0).with_local_disk(disk.clone()),
            disk,
            clock: SimClock::new(),
        };
        let serving = crate::scenario::Serving {
            rewrite: rewrite_for(config.node_break),
            watch: requests.clone(),
            name: lane(id),
        };
        let (p, t, f) = (ps.clone(), trace.clone(), faults.clone());
        let (s, tally) = (settings.clone(), tallies[i].clone());
        let addr: SocketAddr = client::pageserver_addr(i);
        let node = handle
            .create_node()
            .name(format!("pageserver-{}", i + 1))
            .ip(addr.ip())
            .init(move || {
                let config = node_config(p.id, &s);
                let link = cp::CpLink {
                    node: p.id,
                    faults: f.clone(),
                    call_timeout: Duration::from_millis(config.control_plane.call_timeout_ms),
                    brk,
                    clock: p.clock.clone(),
                };
                let adapters = (p.disk.clone(), p.remote.clone(), link);
                let (clock, trace, tally) = (p.clock.clone(), t.clone(), tally.clone());
                let serving = serving.clone();
                async move {
                    crate::scenario::run_pageserver(
                        config, addr, adapters, clock, trace, serving, &tally,
                    )
                    .await;
                }
            })
            .build();
        sim_trace::name_node(&node, addr.ip(), &lane(id));
        pageservers.push(ps);
        ps_nodes.push(node);
    }
    let client_node = handle
        .create_node()
        .name("client")
        .ip(client::CLIENT_IP.parse().expect("static address"))
        .build();
    sim_trace::name_node(
        &client_node,
        client::CLIENT_IP.parse().expect("static address"),
        "client",
    );

    let started = madsim::time::Instant::now();
    let restarts = Arc::new(Mutex::new(vec![0usize; config.pageservers]));
    let shared =
        client::Shared { faults: faults.clone(), restarts: restarts.clone(), modes: modes.clone() };
    let client_config = config.clone();
    let client = client_node.spawn(async move { client::client_main(client_config, shared).await });
    let stop_net = Arc::new(Mutex::new(false));
    let topology = net::Topology {
        pageservers: ps_nodes.iter().map(|n| n.id()).collect(),
        control_plane: cp_node.id(),
        client: client_node.id(),
    };
    let (f, stop) = (faults.clone(), stop_net.clone());
    tokio::spawn(async move { net::partition_nemesis(f, topology, stop).await });
    // Each pageserver's clock skews and jumps on its own (the clock sites).
    if crate::scenario::clock_sites_on(&faults) {
        for ps in &pageservers {
            let (f, c, stop) = (faults.clone(), ps.clock.clone(), stop_net.clone());
            tokio::spawn(async move { crate::scenario::clock_nemesis(f, c, stop).await });
        }
    }

    let mut report = ClusterReport {
        seed: handle.seed(),
        settings: settings.describe(),
        ..ClusterReport::default()
    };
    // S-LOCAL-TRUTH's findings, from a check after each pageserver restart.
    let local_truth: Arc<Mutex<Vec<String>>> = Arc::default();
    // Nemesis: kill and restart seed-chosen nodes while the client runs. A schedule
    // may leave a kill or an outage out: its draws are made all the same.
    for _ in 0..config.kills {
        madsim::time::sleep(Duration::from_millis(thread_rng().gen_range(50..4_000))).await;
        let victim = thread_rng().gen_range(0..=config.pageservers);
        let pause = Duration::from_millis(thread_rng().gen_range(0..2_000));
        let victim_lane = match pageservers.get(victim) {
            Some(ps) => lane(ps.id),
            None => CP_LANE.to_string(),
        };
        if !crate::schedule::decide(Kind::Kill, &victim_lane, true) {
            nemesis_line(&victim_lane, format_args!("kill left out by the schedule"));
            // The draws of the outage this kill would have set up.
            if victim == config.pageservers && config.faults && thread_rng().gen_bool(0.3) {
                let _failures = thread_rng().gen_range(1..4);
            }
            madsim::time::sleep(pause).await;
        } else if victim == config.pageservers {
            tracing::info!("nemesis: the control plane is killed");
            handle.kill(cp_node.id());
            cp_store.crash();
            cp_world.migrations.crash();
            nemesis_line(CP_LANE, format_args!("killed: its store crashes"));
            if config.faults && thread_rng().gen_bool(0.3) {
                let failures = thread_rng().gen_range(1..4);
                if crate::schedule::decide(Kind::Outage, CP_LANE, true) {
                    for i in 0..failures {
                        let fault = if i % 2 == 0 {
                            crate::sim_store::StoreFault::FailBeforeCommit
                        } else {
                            crate::sim_store::StoreFault::FailAfterCommit
                        };
                        nemesis_line(
                            CP_LANE,
                            format_args!("its store will fail a commit: {fault:?}"),
                        );
                        cp_store.inject(fault);
                    }
                }
            }
            madsim::time::sleep(pause).await;
            report.cp_restarts += 1;
            handle.restart(cp_node.id());
            nemesis_line(CP_LANE, format_args!("restarted"));
        } else {
            let ps = &pageservers[victim];
            tracing::info!(node = ps.id.0, "nemesis: a pageserver is killed");
            handle.kill(ps_nodes[victim].id());
            ps.disk.crash();
            ps.remote.crash();
            log.node_crashed(ps.id);
            nemesis_line(&lane(ps.id), format_args!("killed: its disk crashes"));
            if let Err(v) = checkers::crash_safe_of(&ps.disk) {
                report.violations.push(v);
            }
            madsim::time::sleep(pause).await;
            restarts.lock().expect("not poisoned")[victim] += 1;
            report.restarts += 1;
            let (disk, store, tally) = (ps.disk.clone(), remote.clone(), tallies[victim].clone());
            let lives_before = tally.lives();
            handle.restart(ps_nodes[victim].id());
            nemesis_line(&lane(ps.id), format_args!("restarted"));
            let (found, log) = (local_truth.clone(), log.clone());
            tokio::spawn(async move {
                let crashes = disk.crashes();
                let grants = || {
                    let grants = log.grants().into_iter().map(|g| (g.tenant, g.generation));
                    crate::scenario::newest_grants(grants)
                };
                let check = crate::scenario::local_truth_once_active(
                    (&disk, &store),
                    (&tally, lives_before),
                    crashes,
                    grants,
                );
                if let Err(v) = check.await {
                    found.lock().expect("not poisoned").push(v);
                }
            });
        }
    }
    faults.heal();
    nemesis_line(sim_trace::NEMESIS_LANE, format_args!("faults heal"));
    // No seed runs for ever (`scenario::SEED_BOUND`): a client past it is stuck;
    // and from the heal on no request waits in a pageserver for ever (S-NO-DEADLOCK).
    let healed = madsim::time::Instant::now();
    let deadlock = crate::deadlock::watch(requests.clone(), healed);
    let outcome = tokio::select! {
        outcome = madsim::time::timeout(crate::scenario::SEED_BOUND, client) => match outcome {
            Ok(outcome) => outcome,
            Err(_) => Ok(Err(crate::scenario::stuck(started))),
        },
        violation = deadlock => Ok(Err(violation)),
    };
    let outcome = match outcome {
        Ok(Ok(out)) => match crate::deadlock::settle(&requests, healed).await {
            Ok(()) => Ok(Ok(out)),
            Err(violation) => Ok(Err(violation)),
        },
        other => other,
    };
    *stop_net.lock().expect("not poisoned") = true;
    report.simulated_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(Ok(out)) => {
            report.migrations = out.migrations;
            report.longest_migration_ms = out.longest_migration_ms;
            report.reattaches = out.reattaches;
            report.reloads = out.reloads;
        }
        Ok(Err(violation)) => report.violations.push(violation),
        Err(e) => report.violations.push(format!("client task failed: {e}")),
    }
    let history = remote.history();
    let found = [
        checkers::check_history(&history),
        checks::generations(&history, &log.grants()),
        checks::single_writer(&history, &modes.events(), &log.validations()),
        checks::deletions(&history, &log.validations(), &log.grants()),
    ];
    report.violations.extend(found.into_iter().filter_map(Result::err));
    for ps in &pageservers {
        let found = [checkers::crash_safe_of(&ps.disk), checkers::fsync_trust_of(&ps.disk)];
        report.violations.extend(found.into_iter().filter_map(Result::err));
    }
    report.violations.extend(local_truth.lock().expect("not poisoned").drain(..));
    report.violation = report.violations.first().cloned();
    let fired = faults.fired();
    report.fired = fired.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
    report.machine_inputs = tallies.iter().map(crate::inputs::InputTally::total).sum();
    let nodes: Vec<&madsim::runtime::NodeHandle> =
        ps_nodes.iter().chain([&cp_node, &client_node]).collect();
    crate::scenario::end_nodes(&handle, &nodes).await;
    report
}
