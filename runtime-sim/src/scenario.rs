//! The skeleton scenario: one pageserver node on simulated disk, object store and
//! control-plane store; a workload on its own node that creates a tenant and a
//! timeline, ingests, reads back and re-sends after restarts; a nemesis that kills
//! the pageserver at seed-chosen moments and turns faults on and off; checkers named
//! by invariant id. Everything random comes from the seed.
//!
//! Steps of a run:
//! 1. Faults on (seed-chosen probabilities per site). The workload ingests
//!    `batches` batches; the nemesis kills the node `kills` times (the simulated disk
//!    applies its crash rule in the same step) and restarts it after a pause.
//!    Some restarts find the control plane's store failing (seed-chosen): the node
//!    starts in emergency mode and leaves it when re-attach succeeds.
//! 2. After every restart, once the node reports itself active, S-LOCAL-TRUTH: no
//!    layer file an earlier life left survives unless an index lists it with its
//!    size (`checkers::local_truth`). Then the workload checks S-VISIBLE: every key reads back, at
//!    the highest visible LSN the node ever published, exactly the model's value.
//!    At `relocations` seed-chosen batches the workload moves the tenant through
//!    location_config (detach then attach; Stale then back to Single; Secondary then
//!    attach; restart on a newer generation), retrying through 503s and kills, and
//!    checks L-ATTACH (the tenant is attached again within `attach_within_ms`) and
//!    S-VISIBLE afterwards.
//!    At a seed-chosen batch the workload also creates a second timeline, ingests
//!    into it and deletes it, and does the same with a second tenant (retrying
//!    through kills).
//!    Meanwhile a second client fires conflicting but harmless requests (attach,
//!    delete the timeline about to be deleted, create what exists, read state),
//!    ingests and reads key `FFFFFFFFFFFFFFFF`, which must be refused with 400, and
//!    creates one empty timeline over and over: each create must answer 201, never
//!    409, even when a kill cut off the attempt before it (issue 15, item 5).
//! 3. Faults off ("heal"), then L-UPLOAD: within `heal_within_ms` of simulated time,
//!    everything ingested becomes visible; and S-NO-DEADLOCK: no request the node
//!    took is still unanswered 300 simulated s after the heal (`crate::deadlock`).
//! 4. Storage-side checkers over the object store's history: S-IDX-REF and
//!    S-IDX-ORDER; S-GEN-MONO (every object written on time carries a generation
//!    granted to the node's current run: emergency mode writes nothing); S-DEL-GEN
//!    (a layer is deleted only after a validation reached the control plane since
//!    the index that dropped it landed); S-CRASHSAFE over the disk's durable files; and L-DELETE: within
//!    `heal_within_ms`, nothing is left under the deleted timeline's prefix (S14:
//!    an interrupted deletion resumes).
//!
//! The node's own `check_invariants` (S-PROJECTED and every machine's rules) runs
//! after every input inside the driver; a panic there fails the run.
//!
//! A run may record its schedule or follow one (`ScenarioConfig::schedule`,
//! `crate::schedule`): the kills, store outages, fault decisions and workload
//! steps (`client.*`, `chaos.*`) it names happen, the others do not.

mod chaos;
mod client;
mod pageserver;
mod rot;

pub use chaos::RECREATED_TIMELINE;
use chaos::chaos_client;
pub use client::SEED_BOUND;
pub(crate) use client::{
    call, check_visible, create_timeline, current_info, forget_last_refusal, note_refusal, retry,
    stuck,
};
pub(crate) use pageserver::{
    Serving, clock_nemesis, clock_sites_on, local_truth_once_active, newest_grants, operator,
    pageserver_and_client, run_pageserver,
};
pub use rot::RotSeen;

use crate::checkers;
use crate::clock;
use crate::faults::{Faults, site};
use crate::model::Model;
use crate::rpc::{self, CallError};
use crate::schedule::{self, Kind};
use crate::settings::{Drawn, NodeSettings};
pub use crate::sim_remote::StoreBreak;
use crate::sim_trace;
use crate::world::{FaultPlan, World};
use madsim::rand::{Rng, thread_rng};
use madsim::runtime::Handle;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_core::node::NodeConfig;
use strata_core::node::api::{ApiError, Request, Response};
use strata_core::redo::{DeltaOp, IngestRecord, MAX_VALUE_BYTES, Record};
use strata_core::tenant::{LocationRequest, RequestedMode};
use strata_core::{Key, Lsn, NodeId, TenantId, TimelineId};
use strata_runtime_tokio::driver::{self, Adapters};
use strata_runtime_tokio::trace_sink::TraceSink;

pub const PAGESERVER_ADDR: &str = "10.0.0.1:7000";
/// The pageserver's address without its port.
pub const PAGESERVER_IP: &str = "10.0.0.1";
/// The tenant the workload creates.
pub const WORKLOAD_TENANT: TenantId = TenantId([7; 16]);
/// The workload's timeline.
pub const WORKLOAD_TIMELINE: TimelineId = TimelineId([9; 16]);
pub const CLIENT_IP: &str = "10.0.0.2";
/// A second client that fires concurrent, conflicting but harmless requests.
pub const CHAOS_IP: &str = "10.0.0.3";
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    pub batches: usize,
    pub records_per_batch: usize,
    pub keys: u64,
    pub kills: usize,
    /// Simulated time after the heal within which everything must be visible.
    pub heal_within_ms: u64,
    pub faults: bool,
    /// How many times the workload moves the tenant through location_config.
    pub relocations: usize,
    /// Simulated time within which a relocation must end with the tenant attached.
    pub attach_within_ms: u64,
    /// Fault sites forced on with these probabilities, over the seed's own plan
    /// (a targeted test; the swarm leaves it empty).
    pub forced_faults: Vec<(&'static str, f64)>,
    /// The pageserver's settings: the standard ones, or drawn from the seed (the
    /// swarm; `crate::settings`).
    pub settings: NodeSettings,
    /// A deliberately broken object store, for a test that shows a checker failing
    /// (`StoreBreak`); the swarm never sets one.
    pub store_break: StoreBreak,
    /// A request layer that changes or holds requests (`NodeBreak`); the swarm
    /// never sets one.
    pub node_break: crate::cluster::NodeBreak,
    /// A deliberately broken disk (`DiskBreak`); the swarm never sets one.
    pub disk_break: crate::sim_disk::DiskBreak,
    /// Record the run's schedule, or follow one (`crate::schedule`); the swarm
    /// leaves it `None`.
    pub schedule: Option<crate::schedule::Recorder>,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            batches: 40,
            records_per_batch: 8,
            keys: 24,
            kills: 3,
            heal_within_ms: 120_000,
            faults: true,
            relocations: 2,
            attach_within_ms: 120_000,
            forced_faults: Vec::new(),
            settings: NodeSettings::Standard,
            store_break: StoreBreak::None,
            node_break: crate::cluster::NodeBreak::None,
            disk_break: crate::sim_disk::DiskBreak::None,
            schedule: None,
        }
    }
}

/// Ingests of the workload refused by the disk-full policy (`timeline/disk_full.rs`):
/// with 503 during an episode, and with 500 once the timeline is Broken `no_space`
/// (until a restart reloads it).
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskFullSeen {
    pub refused: u64,
    pub broken: u64,
}

/// What a run saw; a failed run also names the broken invariant.
#[derive(Debug, Default)]
pub struct RunReport {
    pub seed: u64,
    pub fired: Vec<(String, u64)>,
    pub restarts: usize,
    /// Restarts whose re-attach found the control plane's store failing.
    pub store_outages: usize,
    /// Requests of the concurrent chaos client that got an answer, and how many of
    /// those were 503 (busy or not ready).
    pub chaos_answered: u64,
    pub chaos_busy: u64,
    /// Chaos requests naming key `FFFFFFFFFFFFFFFF` that were refused with 400.
    pub chaos_bad_key_refused: u64,
    /// The workload's ingests refused because the node's disk was full.
    pub disk_full: DiskFullSeen,
    pub simulated_ms: u64,
    pub acked_lsn: Lsn,
    pub visible_lsn: Lsn,
    pub violation: Option<String>,
    /// Orphans the end-of-run scrub counted (never a failure).
    pub scrub_orphans: u64,
    /// The rot phase (`remote.rot`): layers rotted, reads the rot explains.
    pub rot: RotSeen,
    /// The settings the pageserver ran with, as `Drawn::describe` prints them.
    pub settings: String,
    /// Machine inputs the node's drivers handled, over every life (`crate::inputs`).
    pub machine_inputs: u64,
}

/// The node's configuration in the simulator: small layers, quick timers.
pub fn node_config() -> NodeConfig {
    let mut c = NodeConfig::new(NodeId(1));
    c.timeline.checkpoint_distance_bytes = 2_048;
    c.timeline.checkpoint_timeout_ms = 2_000;
    // Compact, evict and delete often, so that every ordering rule is exercised.
    c.timeline.compaction_threshold_layers = 4;
    c.timeline.compaction_target_file_bytes = 8 * 1024;
    c.timeline.eviction_idle_ms = 3_000;
    // A `disk.full` episode lasts 1–10 s: the longer ones outlast this budget (the
    // flush retries at 0.1, 0.3, 0.7, 1.5, 3.1 s…), so that timelines go Broken
    // `no_space` too (`timeline/disk_full.rs`); a restart reloads them.
    c.timeline.no_space_budget_ms = 3_000;
    c.deletion.list_seal_delay_ms = 1_000;
    c.deletion.validate_delay_ms = 1_000;
    c.shutdown_grace_ms = 10_000;
    // A small page cache, so that eviction and refills run under faults too.
    c.page_cache.capacity_bytes = 16 * 1024;
    c
}

/// Runs the scenario in the current madsim runtime, writing trace lines to `trace`
/// (the caller keeps the buffer, so a run that panics can still be shown).
pub async fn run(config: ScenarioConfig, trace: TraceSink) -> RunReport {
    let handle = Handle::current();
    forget_last_refusal();
    let _trace = sim_trace::begin(&trace);
    let _schedule = schedule::begin(config.schedule.as_ref());
    let mut plan = if config.faults {
        FaultPlan::from_seed(&mut thread_rng(), handle.seed())
    } else {
        FaultPlan::none()
    };
    plan.probabilities.extend(config.forced_faults.iter().copied());
    let mut world = World::new(plan);
    world.remote.set_break(config.store_break);
    world.disk.set_break(config.disk_break);
    world.rewrite = crate::cluster::rewrite_for(config.node_break);
    let settings = config.settings.for_seed(handle.seed());
    tracing::info!(settings = %settings.describe(), "node settings");
    let (node, client) = pageserver_and_client(&handle, &world, &trace, &settings);
    sim_trace::name_node(&node, PAGESERVER_IP.parse().expect("static address"), "node-1");
    sim_trace::name_node(&client, CLIENT_IP.parse().expect("static address"), "client");

    let started = madsim::time::Instant::now();
    let stop_clock = Arc::new(Mutex::new(false));
    if clock_sites_on(&world.faults) {
        let (f, c, stop) = (world.faults.clone(), world.clock.clone(), stop_clock.clone());
        tokio::spawn(async move { clock_nemesis(f, c, stop).await });
    }
    let restarts = Arc::new(Mutex::new(0usize));
    let emergencies = Arc::new(Mutex::new(0usize));
    let workload_config = config.clone();
    let r = restarts.clone();
    let disk_full = Arc::new(Mutex::new(DiskFullSeen::default()));
    let d = disk_full.clone();
    let w = world.clone();
    let workload = client.spawn(async move { workload(workload_config, r, d, w).await });
    let chaos_node =
        handle.create_node().name("chaos").ip(CHAOS_IP.parse().expect("static address")).build();
    sim_trace::name_node(&chaos_node, CHAOS_IP.parse().expect("static address"), "chaos");
    let stop_chaos = Arc::new(Mutex::new(false));
    let stop = stop_chaos.clone();
    let chaos = chaos_node.spawn(async move { chaos_client(stop).await });

    // Nemesis: kill and restart at seed-chosen moments while the workload runs.
    // A schedule may leave a kill or an outage out: its draws are made all the same.
    if world.faults.probability(site::CP_STORE_LOST) > 0.0 {
        let (w, n, r, stop) = (world.clone(), node.clone(), restarts.clone(), stop_clock.clone());
        tokio::spawn(async move { operator(w, n, r, stop).await });
    }
    for _ in 0..config.kills {
        let wait_ms = thread_rng().gen_range(50..4_000);
        madsim::time::sleep(Duration::from_millis(wait_ms)).await;
        let kill = schedule::decide(Kind::Kill, "node-1", true);
        if kill {
            handle.kill(node.id());
            world.crash();
            {
                let mut op = world.operator.lock().expect("not poisoned");
                (op.down, op.refused) = (true, false);
            }
            nemesis_line("node-1", format_args!("killed: its disk and store crash"));
            if world.faults.fire(site::CP_STORE_LOST) {
                world.store.lose_everything();
                nemesis_line("node-1", format_args!("its control plane's store is lost"));
            }
            if let Err(violation) = checkers::crash_safe(&world) {
                return RunReport {
                    seed: handle.seed(),
                    violation: Some(violation),
                    ..RunReport::default()
                };
            }
        } else {
            nemesis_line("node-1", format_args!("kill left out by the schedule"));
        }
        // The control plane's store fails for the restart's re-attach (and maybe a
        // few retries): the node starts in emergency mode.
        if config.faults && thread_rng().gen_bool(0.3) {
            let failures = thread_rng().gen_range(1..4);
            if kill && schedule::decide(Kind::Outage, "node-1", true) {
                for i in 0..failures {
                    let fault = if i % 2 == 0 {
                        crate::sim_store::StoreFault::FailBeforeCommit
                    } else {
                        crate::sim_store::StoreFault::FailAfterCommit
                    };
                    world.store.inject(fault);
                }
                *emergencies.lock().expect("not poisoned") += 1;
                nemesis_line(
                    "node-1",
                    format_args!("the control plane's store fails its next {failures} commits"),
                );
            }
        }
        let pause_ms = thread_rng().gen_range(0..2_000);
        madsim::time::sleep(Duration::from_millis(pause_ms)).await;
        if kill {
            *restarts.lock().expect("not poisoned") += 1;
            handle.restart(node.id());
            world.operator.lock().expect("not poisoned").down = false;
            nemesis_line("node-1", format_args!("restarted"));
        }
    }
    world.heal();
    nemesis_line(sim_trace::NEMESIS_LANE, format_args!("faults heal"));

    let mut report =
        RunReport { seed: handle.seed(), settings: settings.describe(), ..RunReport::default() };
    // S-NO-DEADLOCK: from the heal on, no request may wait in the node for ever.
    let healed = madsim::time::Instant::now();
    let deadlock = crate::deadlock::watch(world.requests.clone(), healed);
    let ended = tokio::select! {
        outcome = madsim::time::timeout(SEED_BOUND, workload) => outcome.map_err(|_| stuck(started)),
        violation = deadlock => Err(violation),
    };
    let outcome = match ended {
        Ok(outcome) => outcome,
        Err(violation) => {
            *stop_chaos.lock().expect("not poisoned") = true;
            *stop_clock.lock().expect("not poisoned") = true;
            report.violation = Some(violation);
            report.simulated_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            report.fired = world.fired();
            report.machine_inputs = world.inputs.total();
            return report;
        }
    };
    *stop_chaos.lock().expect("not poisoned") = true;
    *stop_clock.lock().expect("not poisoned") = true;
    let mut chaos_violation = None;
    if let Ok(chaos) = chaos.await {
        report.chaos_answered = chaos.answered;
        report.chaos_busy = chaos.busy;
        report.chaos_bad_key_refused = chaos.bad_key_refused;
        chaos_violation = chaos.violation;
    }
    report.restarts = *restarts.lock().expect("not poisoned");
    report.disk_full = *disk_full.lock().expect("not poisoned");
    report.store_outages = *emergencies.lock().expect("not poisoned");
    report.simulated_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut final_model = None;
    match outcome {
        Ok(Ok(model)) => {
            report.acked_lsn = model.acked_lsn();
            report.visible_lsn = model.visible_lsn();
            final_model = Some(model);
        }
        Ok(Err(violation)) => report.violation = Some(violation),
        Err(e) => report.violation = Some(format!("workload task failed: {e}")),
    }
    // The chaos client's finding comes first: it is the cause when both fail.
    if let Some(violation) = chaos_violation {
        report.violation = Some(format!("chaos client: {violation}"));
    }
    if report.violation.is_none() {
        report.violation = crate::deadlock::settle(&world.requests, healed).await.err();
    }
    if report.violation.is_none() && config.batches > 0 {
        let timeline = strata_core::remote_path::timeline_prefix(WORKLOAD_TENANT, DELETED_TIMELINE);
        report.violation =
            check_deleted(&world, &timeline, None, config.heal_within_ms).await.err();
    }
    if report.violation.is_none() && config.batches > 0 {
        let prefix = strata_core::remote_path::tenant_prefix(DELETED_TENANT);
        let mark = strata_core::remote_path::tenant_deletion_mark_key(DELETED_TENANT);
        report.violation =
            check_deleted(&world, &prefix, Some(mark.as_str()), config.heal_within_ms).await.err();
    }
    if report.violation.is_none() {
        // Every storage-side checker runs: the first violation leads, the others
        // follow it ("; also: …"), so a run names every promise it broke.
        let found: Vec<String> = [
            checkers::storage(&world),
            checkers::crash_safe(&world),
            checkers::fsync_trust(&world),
            checkers::generations(&world),
            checkers::deletions(&world),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect();
        if !found.is_empty() {
            report.violation = Some(found.join("; also: "));
        }
    }
    if report.violation.is_none() {
        match checkers::scrub(&world).await {
            Ok(orphans) => report.scrub_orphans = orphans,
            Err(violation) => report.violation = Some(violation),
        }
    }
    if report.violation.is_none()
        && let Some(model) = final_model
    {
        match rot::rot_phase(&world, &client, model, config.heal_within_ms).await {
            Ok(seen) => report.rot = seen,
            Err(violation) => report.violation = Some(violation),
        }
    }
    report.fired = world.fired();
    report.machine_inputs = world.inputs.total();
    end_nodes(&handle, &[&node, &client, &chaos_node]).await;
    report
}

/// A kill, restart or heal on `lane`'s trace.
pub(crate) fn nemesis_line(lane: &str, what: std::fmt::Arguments<'_>) {
    sim_trace::record(sim_trace::Lane::Named(lane), "nemesis", "-", "effect", what);
}

/// Kills every node of a finished run and lets the executor drop their tasks.
/// madsim keeps only weak references to its tasks: a task still waiting when the
/// runtime is dropped is never freed, with everything it holds (a world's disk
/// and object store): about 1.4 MB per seed, so a long swarm grew without bound.
/// Killed tasks are dropped unpolled, so this adds no trace line and changes
/// nothing the report saw; the second of simulated time lets the nemeses of the
/// main node, already told to stop, see it (they look every 0.5 s).
pub(crate) async fn end_nodes(handle: &Handle, nodes: &[&madsim::runtime::NodeHandle]) {
    for node in nodes {
        handle.kill(node.id());
    }
    madsim::time::sleep(Duration::from_secs(1)).await;
}

/// The workload: create, ingest with re-sends, check S-VISIBLE after restarts,
/// then L-UPLOAD after the heal. Returns the model, or the broken invariant.
async fn workload(
    config: ScenarioConfig,
    restarts: Arc<Mutex<usize>>,
    disk_full: Arc<Mutex<DiskFullSeen>>,
    world: World,
) -> Result<Model, String> {
    let remote = world.remote.clone();
    let node: SocketAddr = PAGESERVER_ADDR.parse().expect("static address");
    let me: SocketAddr = format!("{CLIENT_IP}:0").parse().expect("static address");
    let ep = madsim::net::Endpoint::bind(me).await.map_err(|e| e.to_string())?;
    let tenant = WORKLOAD_TENANT;
    let timeline = WORKLOAD_TIMELINE;
    let mut model = Model::default();
    let mut seen_restarts = 0;

    retry(&ep, node, Request::CreateTenant { tenant }, |r| matches!(r, Err(ApiError::Conflict(_))))
        .await;
    create_timeline(&ep, node, (tenant, timeline), &remote).await?;

    let delete_at = thread_rng().gen_range(0..config.batches.max(1));
    let relocate_at: Vec<usize> =
        (0..config.relocations).map(|_| thread_rng().gen_range(0..config.batches.max(1))).collect();
    let mut lsn = 0x100u64;
    for batch in 0..config.batches {
        for _ in relocate_at.iter().filter(|b| **b == batch) {
            if schedule::step("client.relocate") {
                relocate(&ep, node, tenant, timeline, &mut model, config.attach_within_ms).await?;
                check_visible(&ep, node, tenant, timeline, &model).await?;
            }
        }
        if batch == delete_at && schedule::step("client.delete") {
            create_and_delete_timeline(&ep, node, tenant).await;
            create_and_delete_tenant(&ep, node).await;
        }
        // A record that would take a value past the limit is not part of the model:
        // it is sent alone below, once the node has everything, and must be refused.
        let mut too_large = None;
        for _ in 0..config.records_per_batch {
            lsn += thread_rng().gen_range(1..16);
            let record = random_record(config.keys, Lsn(lsn));
            if model.redo_refuses(&record) {
                too_large.get_or_insert(record);
            } else {
                model.push(record);
            }
        }
        // A schedule may leave the batch's ingest out: its records go with the next.
        if schedule::step("client.batch") {
            // Send everything after what the node has (its last ingested LSN may have
            // gone back to its disk_consistent_lsn after a crash): re-sends are skipped.
            let from = current_info(&ep, node, tenant, timeline, &mut model).await?;
            let records = model.records_after(from).to_vec();
            match call(&ep, node, Request::Ingest { tenant, timeline, records }).await {
                Ok(Response::Ingested { last_ingested_lsn, .. }) => {
                    model.acked(last_ingested_lsn);
                    if let Some(record) = too_large
                        && last_ingested_lsn == model.last_lsn()
                        && schedule::step("client.too-large")
                    {
                        lsn += 1;
                        let record = IngestRecord { lsn: Lsn(lsn), ..record };
                        send_too_large(&ep, node, tenant, timeline, &model, record).await?;
                    }
                }
                Ok(other) => return Err(format!("unexpected ingest answer {other:?}")),
                Err(CallError::Api(ApiError::Unavailable { reason, .. }))
                    if reason.contains("local disk is full") =>
                {
                    disk_full.lock().expect("not poisoned").refused += 1;
                }
                Err(CallError::Api(ApiError::Internal(reason))) if reason.contains("no space") => {
                    disk_full.lock().expect("not poisoned").broken += 1;
                }
                Err(_) => {} // retried with the next batch
            }
        }
        let now_restarts = *restarts.lock().expect("not poisoned");
        if now_restarts != seen_restarts {
            seen_restarts = now_restarts;
            let crashes = world.disk.crashes();
            current_info(&ep, node, tenant, timeline, &mut model).await?;
            let grants = || {
                newest_grants(
                    world.store.grants().into_iter().map(|(_, r)| (r.tenant, r.generation)),
                )
            };
            local_truth_once_active(
                (&world.disk, &world.remote),
                (&world.inputs, 0),
                crashes,
                grants,
            )
            .await?;
            check_visible(&ep, node, tenant, timeline, &model).await?;
        }
        madsim::time::sleep(Duration::from_millis(thread_rng().gen_range(1..50))).await;
    }

    // Send whatever the node does not have, then wait for L-UPLOAD.
    let deadline = madsim::time::Instant::now() + Duration::from_millis(config.heal_within_ms);
    loop {
        let from = current_info(&ep, node, tenant, timeline, &mut model).await?;
        if from >= model.last_lsn() && model.visible_lsn() >= model.last_lsn() {
            break;
        }
        if from < model.last_lsn() {
            let records = model.records_after(from).to_vec();
            if let Ok(Response::Ingested { last_ingested_lsn, .. }) =
                call(&ep, node, Request::Ingest { tenant, timeline, records }).await
            {
                model.acked(last_ingested_lsn);
            }
        }
        if madsim::time::Instant::now() > deadline {
            return Err(format!(
                "L-UPLOAD: {} ms after the heal, visible is {} but {} was ingested",
                config.heal_within_ms,
                model.visible_lsn(),
                model.last_lsn()
            ));
        }
        madsim::time::sleep(Duration::from_millis(500)).await;
    }
    check_visible(&ep, node, tenant, timeline, &model).await?;
    let (crashes, grants) = (world.disk.crashes(), || {
        newest_grants(world.store.grants().into_iter().map(|(_, r)| (r.tenant, r.generation)))
    });
    local_truth_once_active((&world.disk, &world.remote), (&world.inputs, 0), crashes, grants)
        .await?;
    Ok(model)
}

/// Forty image records over five keys: enough for a flushed layer and an index.
fn small_batch() -> Vec<IngestRecord> {
    (0..40u64)
        .map(|i| IngestRecord {
            key: Key(i % 5),
            lsn: Lsn(0x10 + i * 8),
            record: Record::Image(vec![i as u8; 48]),
        })
        .collect()
}

/// The timeline the workload creates, fills and deletes.
pub const DELETED_TIMELINE: TimelineId = TimelineId([0xDD; 16]);

/// Creates [`DELETED_TIMELINE`], ingests a few records, and deletes it, retrying
/// through kills and busy answers until the node says it is deleting or gone.
async fn create_and_delete_timeline(
    ep: &madsim::net::Endpoint,
    node: SocketAddr,
    tenant: TenantId,
) {
    let timeline = DELETED_TIMELINE;
    retry(ep, node, Request::CreateTimeline { tenant, timeline }, |r| {
        matches!(r, Err(ApiError::Conflict(_)))
    })
    .await;
    let _ = call(ep, node, Request::Ingest { tenant, timeline, records: small_batch() }).await;
    retry(ep, node, Request::DeleteTimeline { tenant, timeline }, |r| {
        matches!(r, Err(ApiError::NotFound(_)))
    })
    .await;
}

/// The tenant the workload creates, fills and deletes.
pub const DELETED_TENANT: TenantId = TenantId([8; 16]);

/// Creates [`DELETED_TENANT`] with a timeline and some data, then deletes it,
/// retrying through kills and busy answers until the node says it is gone.
async fn create_and_delete_tenant(ep: &madsim::net::Endpoint, node: SocketAddr) {
    let (tenant, timeline) = (DELETED_TENANT, TimelineId::from_bytes([0xEE; 16]));
    retry(ep, node, Request::CreateTenant { tenant }, |r| matches!(r, Err(ApiError::Conflict(_))))
        .await;
    retry(ep, node, Request::CreateTimeline { tenant, timeline }, |r| {
        matches!(r, Err(ApiError::Conflict(_)))
    })
    .await;
    let _ = call(ep, node, Request::Ingest { tenant, timeline, records: small_batch() }).await;
    retry(ep, node, Request::DeleteTenant { tenant }, |r| matches!(r, Err(ApiError::NotFound(_))))
        .await;
}

/// L-DELETE: within `within_ms`, remote storage holds nothing under the deleted
/// prefix but tombstone indexes (kept for good) and `keep` (a tenant's deletion
/// mark): the deletion resumed after any kill.
///
/// One exception, from the fault model: a PUT the node gave up on may be applied
/// by the store much later. If such a late PUT landed under the prefix after the
/// deletion began, it can leave garbage behind the deletion's listing; it is not a
/// deletion that did not execute, so such runs are tolerated (see docs/TENANTS.md:
/// a scrubber for such garbage is not built). The kept tombstone means such a late
/// index can never make the timeline exist again (seed 47, seed 67).
async fn check_deleted(
    world: &World,
    prefix: &str,
    keep: Option<&str>,
    within_ms: u64,
) -> Result<(), String> {
    let deadline = madsim::time::Instant::now() + Duration::from_millis(within_ms);
    loop {
        let history = world.remote.history();
        let under = |e: &&crate::sim_remote::HistoryEntry| e.key.as_str().starts_with(prefix);
        let deletion_began = history.iter().filter(under).find_map(|e| {
            let index =
                strata_core::index_part::IndexPart::from_json_bytes(e.body.as_ref()?).ok()?;
            index.deleted_at.map(|_| e.at)
        });
        let late_after_deletion = deletion_began
            .is_some_and(|began| history.iter().filter(under).any(|e| e.late && e.at >= began));
        let left: Vec<String> = world
            .remote
            .objects()
            .into_keys()
            .map(|k| k.as_str().to_string())
            .filter(|k| k.starts_with(prefix) && Some(k.as_str()) != keep)
            .filter(|k| !is_tombstone(world, k))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if madsim::time::Instant::now() > deadline {
            if late_after_deletion {
                tracing::warn!(left = left.len(), "L-DELETE: garbage from a late PUT tolerated");
                return Ok(());
            }
            return Err(format!(
                "L-DELETE: {within_ms} ms after the heal, {} objects under deleted {prefix} remain, e.g. {}",
                left.len(),
                left[0]
            ));
        }
        madsim::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A deleted timeline keeps its newest tombstone index for good.
fn is_tombstone(world: &World, key: &str) -> bool {
    let Ok(key) = strata_core::remote_path::RemoteKey::from_listing(key) else { return false };
    world
        .remote
        .get_now(&key)
        .and_then(|body| strata_core::index_part::IndexPart::from_json_bytes(&body).ok())
        .is_some_and(|index| index.deleted_at.is_some())
}

/// Moves the tenant away and back through location_config, retrying each request
/// through timeouts, 503s and kills until it is answered; L-ATTACH: within
/// `within_ms` the tenant is attached and its timeline answers again.
async fn relocate(
    ep: &madsim::net::Endpoint,
    node: SocketAddr,
    tenant: TenantId,
    timeline: TimelineId,
    model: &mut Model,
    within_ms: u64,
) -> Result<(), String> {
    let started = madsim::time::Instant::now();
    let deadline = started + Duration::from_millis(within_ms);
    let generation = loop {
        match call(ep, node, Request::TimelineInfo { tenant, timeline }).await {
            Ok(Response::TimelineInfo(info)) => break info.generation,
            _ if madsim::time::Instant::now() > deadline => {
                return Err("L-ATTACH: the timeline never answered before a relocation".into());
            }
            _ => madsim::time::sleep(RETRY_PAUSE).await,
        }
    };
    let away = match thread_rng().gen_range(0..4) {
        0 => vec![(RequestedMode::Detached, None)],
        1 => vec![(RequestedMode::AttachedStale, Some(generation))],
        2 => vec![(RequestedMode::Secondary { warm: true }, None)],
        _ => vec![(RequestedMode::AttachedSingle, generation.next())],
    };
    let steps = away.into_iter().chain([(RequestedMode::AttachedSingle, None)]);
    for (mode, generation) in steps {
        let request =
            Request::LocationConfig { tenant, request: LocationRequest::new(mode, generation) };
        loop {
            match call(ep, node, request.clone()).await {
                Ok(Response::LocationConfigured(_)) => break,
                // A retried request whose first attempt finished, then a restart
                // moved the generation on: the tenant is past what was asked.
                Err(CallError::Api(ApiError::Conflict(_))) => break,
                Err(CallError::Api(ApiError::Internal(e))) => {
                    // A failed step leaves the tenant Broken; the next request repairs it.
                    tracing::warn!(%e, "location_config step failed; retrying");
                }
                Ok(other) => return Err(format!("unexpected location_config answer {other:?}")),
                Err(_) => {}
            }
            if madsim::time::Instant::now() > deadline {
                return Err(format!(
                    "L-ATTACH: location_config {mode:?} not done within {within_ms} ms"
                ));
            }
            madsim::time::sleep(RETRY_PAUSE).await;
        }
    }
    // Attached: the timeline answers again (a kill may have restarted the node).
    loop {
        match call(ep, node, Request::TimelineInfo { tenant, timeline }).await {
            Ok(Response::TimelineInfo(info)) => {
                model.published_visible(info.remote_consistent_lsn_visible)?;
                return Ok(());
            }
            Err(CallError::Api(ApiError::NotFound(what))) => {
                // A kill between the steps can leave it detached: attach again.
                let request = Request::LocationConfig {
                    tenant,
                    request: LocationRequest::new(RequestedMode::AttachedSingle, None),
                };
                let _ = call(ep, node, request).await;
                tracing::info!(%what, "not attached after a relocation; attaching again");
            }
            _ => {}
        }
        if madsim::time::Instant::now() > deadline {
            return Err(format!("L-ATTACH: tenant not attached {within_ms} ms after a relocation"));
        }
        madsim::time::sleep(RETRY_PAUSE).await;
    }
}

/// Sends `record`, which would take its key's value past the limit given everything
/// the node acknowledged, alone. S-VISIBLE (issue 15 item 3): acknowledged, the key
/// could never be read again at or above its LSN; it must be refused (400), or
/// deferred (503 while the node reads the value's size).
async fn send_too_large(
    ep: &madsim::net::Endpoint,
    node: SocketAddr,
    tenant: TenantId,
    timeline: TimelineId,
    model: &Model,
    record: IngestRecord,
) -> Result<(), String> {
    if !model.redo_refuses(&record) {
        return Ok(()); // a later record of the batch shrank the value
    }
    let what = format!("{} at {}", record.key, record.lsn);
    match call(ep, node, Request::Ingest { tenant, timeline, records: vec![record] }).await {
        Ok(answer) => Err(format!(
            "S-VISIBLE: the node acknowledged a record ({what}) that takes the value past {MAX_VALUE_BYTES} bytes, so redo refuses it for good: {answer:?}"
        )),
        Err(_) => Ok(()),
    }
}

pub(crate) fn random_record(keys: u64, lsn: Lsn) -> IngestRecord {
    let mut rng = thread_rng();
    let key = Key(rng.gen_range(0..keys));
    let record = if rng.gen_bool(0.3) {
        // Now and then a value near the limit, so appends can outgrow it.
        let len = if rng.gen_bool(0.1) {
            rng.gen_range(MAX_VALUE_BYTES - 300..=MAX_VALUE_BYTES)
        } else {
            rng.gen_range(0..64)
        };
        Record::Image((0..len).map(|_| rng.r#gen::<u8>()).collect())
    } else {
        let op = match rng.gen_range(0..4) {
            0 if rng.gen_bool(0.2) => {
                DeltaOp::Append(vec![rng.r#gen::<u8>(); rng.gen_range(100..400)])
            }
            0 => DeltaOp::Append(vec![rng.r#gen::<u8>(); rng.gen_range(1..8)]),
            1 => {
                DeltaOp::WriteAt { offset: rng.gen_range(0..64), bytes: vec![rng.r#gen::<u8>(); 4] }
            }
            2 => DeltaOp::Truncate(rng.gen_range(0..64)),
            _ => DeltaOp::Append(vec![0xAB]),
        };
        Record::Delta(vec![op])
    };
    IngestRecord { key, lsn, record }
}
