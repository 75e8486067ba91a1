//! The node composite under a synchronous harness: an in-memory world (files,
//! objects, store rows) that executes the node's I/O effects immediately, in
//! order, with `check_invariants` after every input. Crash = drop the node, keep
//! the world.

use super::api::{ApiError, Request, RequestId, Response};
use super::io::{Io, IoErrorKind, IoResult};
use super::{Node, NodeConfig, NodeEffect, NodePhase};
use crate::control_plane::CpRequest;
use crate::id::{NodeId, TenantId, TimelineId};
use crate::key::Key;
use crate::lsn::Lsn;
use crate::redo::{DeltaOp, IngestRecord, Record};
use crate::time::{Instant, WallTime};
use camino::Utf8PathBuf;
use std::collections::BTreeMap;

pub(crate) use super::world::World;

/// Says which I/O a test leaves in flight.
type HoldIo = Box<dyn FnMut(&Io) -> bool>;

pub(super) struct Harness {
    pub(super) world: World,
    pub(super) node: Node,
    /// Run `check_invariants` after every effect (benchmarks turn it off).
    pub(super) check: bool,
    /// Ask `poll_timeout` after every input, as the driver does.
    pub(super) poll_timeouts: bool,
    now: Instant,
    next_req: u64,
    replies: BTreeMap<RequestId, Result<Response, ApiError>>,
    stopped: Option<(bool, String)>,
    /// While set, validation calls are held in transit (neither delivered nor
    /// refused) until [`Harness::deliver_held_validations`].
    pub(super) hold_validations: bool,
    held: Vec<(crate::id::OpId, Io)>,
    /// I/O for which this says so is not executed but left in flight in
    /// `held_io` (tests of stragglers: `tests/incarnation.rs`).
    hold: Option<HoldIo>,
    held_io: Vec<(crate::id::OpId, Io)>,
}

pub(super) fn config() -> NodeConfig {
    let mut c = NodeConfig::new(NodeId(1));
    c.timeline.checkpoint_distance_bytes = 512;
    c
}

impl Harness {
    pub(super) fn start(world: World, config: NodeConfig) -> Harness {
        Self::start_with(world, config, true)
    }

    /// Starts with `hold` set before the first effect runs (a start-up I/O held).
    pub(super) fn start_holding(world: World, config: NodeConfig, hold: HoldIo) -> Harness {
        let mut h = Self::unstarted(world, config, true);
        h.hold = Some(hold);
        h.settle();
        h
    }

    pub(super) fn start_with(world: World, config: NodeConfig, check: bool) -> Harness {
        let mut h = Self::unstarted(world, config, check);
        h.settle();
        h
    }

    fn unstarted(world: World, config: NodeConfig, check: bool) -> Harness {
        // A remote control plane's table is not the node's: it starts empty.
        let records = if config.remote_control_plane {
            Vec::new()
        } else {
            world.store.values().cloned().collect()
        };
        let now = Instant(1_000);
        let node = Node::start(config, now, WallTime(0), records);
        Harness {
            world,
            node,
            check,
            poll_timeouts: !check,
            now,
            next_req: 0,
            replies: BTreeMap::new(),
            stopped: None,
            hold_validations: false,
            held: Vec::new(),
            hold: None,
            held_io: Vec::new(),
        }
    }

    /// Executes effects until the node is quiet, firing due timers (time advances
    /// to the next deadline when nothing else is pending, up to a bound).
    fn settle(&mut self) {
        for _ in 0..100_000_000u64 {
            if self.check {
                self.node.check_invariants();
            }
            if self.poll_timeouts {
                std::hint::black_box(self.node.poll_timeout());
            }
            match self.node.poll_effect() {
                Some(NodeEffect::Io { op, io })
                    if self.hold_validations
                        && matches!(
                            io,
                            Io::ControlPlaneSend { request: CpRequest::Validate { .. } }
                        ) =>
                {
                    self.held.push((op, io));
                }
                Some(NodeEffect::Io { op, io }) if self.hold.as_mut().is_some_and(|h| h(&io)) => {
                    self.held_io.push((op, io));
                }
                Some(NodeEffect::Io { op, io }) => {
                    let result = self.world.execute(io);
                    self.node.handle_io(self.now, WallTime(self.now.0), op, result);
                }
                Some(NodeEffect::Reply { req, result }) => {
                    self.replies.insert(req, result);
                }
                Some(NodeEffect::Stopped { clean, reason }) => {
                    self.stopped = Some((clean, reason));
                }
                None => return,
            }
        }
        panic!("node did not settle");
    }

    /// Advances time to the next deadline (if within `max_ms`) and fires it.
    fn tick(&mut self, max_ms: u64) -> bool {
        match self.node.poll_timeout() {
            Some(at) if at.millis_since(self.now) <= max_ms => {
                self.now = self.now.max(at);
                self.node.handle_timeout(self.now, WallTime(self.now.0));
                self.settle();
                true
            }
            _ => false,
        }
    }

    /// Delivers the held validation calls whose attempt the client no longer waits
    /// for (past their deadline); returns how many. The others stay held.
    pub(super) fn deliver_late_validations(&mut self) -> usize {
        let (late, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(op, _)| match self.node.routes.get(op) {
                Some(super::routing::Route::ControlPlaneCall { attempt }) => {
                    !self.node.cp_client.is_in_flight(*attempt)
                }
                _ => true,
            });
        self.held = waiting;
        let n = late.len();
        for (op, io) in late {
            let result = self.world.execute(io);
            self.node.handle_io(self.now, WallTime(self.now.0), op, result);
            self.settle();
        }
        n
    }

    pub(super) fn call(&mut self, request: Request) -> Result<Response, ApiError> {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        self.node.handle_request(self.now, WallTime(self.now.0), req, request);
        self.settle();
        for _ in 0..1_000 {
            if let Some(r) = self.replies.remove(&req) {
                return r;
            }
            if !self.tick(60_000) {
                break;
            }
        }
        panic!("no reply to {req:?}");
    }

    /// Advances simulated time by `ms`, firing every deadline on the way.
    fn run_for(&mut self, ms: u64) {
        let until = self.now.plus_millis(ms);
        while self.now < until {
            if !self.tick(until.millis_since(self.now)) {
                self.now = until;
                self.node.handle_timeout(self.now, WallTime(self.now.0));
                self.settle();
            }
        }
    }

    /// Ingests like a client: a 503 is retried, a few times. After a restart (or
    /// a re-attach) the first append to a key written before waits for a read of
    /// the value's size (timeline/value_sizes.rs).
    fn ingest(&mut self, records: Vec<IngestRecord>) -> Result<Response, ApiError> {
        let request = Request::Ingest { tenant: T, timeline: TL, records };
        let mut result = self.call(request.clone());
        for _ in 0..3 {
            if !matches!(result, Err(ApiError::Unavailable { .. })) {
                break;
            }
            result = self.call(request.clone());
        }
        result
    }
}

const T: TenantId = TenantId([1; 16]);
const TL: TimelineId = TimelineId([2; 16]);

fn records(from: u64, n: u64) -> Vec<IngestRecord> {
    (0..n)
        .map(|i| {
            let lsn = Lsn(from + i * 8);
            let record = if i % 5 == 0 {
                Record::Image(vec![i as u8; 40])
            } else {
                Record::Delta(vec![DeltaOp::Append(vec![i as u8; 3])])
            };
            IngestRecord { key: Key(i % 7), lsn, record }
        })
        .collect()
}

fn read(h: &mut Harness, key: u64, lsn: Lsn) -> Option<Vec<u8>> {
    match h.call(Request::Read { tenant: T, timeline: TL, key: Key(key), lsn }) {
        Ok(Response::Value { value, .. }) => value,
        other => panic!("read: {other:?}"),
    }
}

fn info(h: &mut Harness) -> super::api::TimelineInfo {
    match h.call(Request::TimelineInfo { tenant: T, timeline: TL }) {
        Ok(Response::TimelineInfo(i)) => i,
        other => panic!("info: {other:?}"),
    }
}

/// Every tenant the node lists (attached or broken).
fn tenants(h: &mut Harness) -> Vec<super::api::TenantInfo> {
    match h.call(Request::ListTenants) {
        Ok(Response::Tenants(list)) => list,
        other => panic!("list: {other:?}"),
    }
}

/// `tenant`'s entry in the tenant list.
fn listed(h: &mut Harness, tenant: TenantId) -> super::api::TenantInfo {
    tenants(h)
        .into_iter()
        .find(|t| t.tenant == tenant)
        .unwrap_or_else(|| panic!("{tenant} is not listed"))
}

/// Fires deadlines until `last` is visible (flushed, uploaded, validated).
fn wait_visible(h: &mut Harness, last: Lsn) {
    for _ in 0..100 {
        if info(h).remote_consistent_lsn_visible == last {
            return;
        }
        h.tick(60_000);
    }
    panic!("{last} never became visible: {:?}", info(h));
}

/// Starts a node on `world` and fires deadlines until it is Active (start-up may
/// wait out retried failures).
fn start_until_active(world: World) -> Harness {
    let mut h = Harness::start(world, config());
    for _ in 0..20 {
        if h.node.phase() == &NodePhase::Active {
            return h;
        }
        assert!(h.tick(60_000), "start-up stuck in {:?}", h.node.phase());
    }
    assert_eq!(h.node.phase(), &NodePhase::Active);
    h
}

/// Creates T/TL, ingests `n` records, reads key 3 at the last LSN and shuts down;
/// returns the world, that LSN and that value.
fn one_batch_then_shutdown(n: u64) -> (World, Lsn, Option<Vec<u8>>) {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    let batch = records(16, n);
    let last = batch.last().unwrap().lsn;
    h.call(Request::Ingest { tenant: T, timeline: TL, records: batch }).unwrap();
    let value = read(&mut h, 3, last);
    h.call(Request::Shutdown).unwrap();
    (h.world.clone(), last, value)
}

#[test]
fn create_ingest_shutdown_restart_reads_back_with_a_new_generation() {
    let mut h = Harness::start(World::default(), config());
    assert_eq!(h.node.phase(), &NodePhase::Active);
    let gen1 = match h.call(Request::CreateTenant { tenant: T }) {
        Ok(Response::TenantCreated { generation, .. }) => generation,
        other => panic!("{other:?}"),
    };
    assert!(matches!(h.call(Request::CreateTenant { tenant: T }), Err(ApiError::Conflict(_))));
    match h.call(Request::CreateTimeline { tenant: T, timeline: TL }) {
        Ok(Response::TimelineCreated(info)) => assert_eq!(info.state, "Active"),
        other => panic!("{other:?}"),
    }
    // S-ACTIVE-UPLOADED: an index exists remotely once the timeline is reported.
    assert!(h.world.objects.keys().any(|k| k.contains("index_part.json")));

    let batch = records(16, 200);
    let last = batch.last().unwrap().lsn;
    assert!(matches!(
        h.call(Request::Ingest { tenant: T, timeline: TL, records: batch.clone() }),
        Ok(Response::Ingested { .. })
    ));
    let before: Vec<_> = (0..7).map(|k| read(&mut h, k, last)).collect();
    assert!(before.iter().all(Option::is_some));

    let shutdown_started = h.now;
    assert_eq!(h.call(Request::Shutdown), Ok(Response::ShutdownComplete { clean: true }));
    assert_eq!(h.stopped.as_ref().map(|s| s.0), Some(true));
    // The shutdown has the final LSN validated at once, not after the deletion
    // queue's usual validation delay.
    let waited_ms = h.now.millis_since(shutdown_started);
    assert!(waited_ms < h.node.config.deletion.validate_delay_ms, "shutdown waited {waited_ms} ms");

    // Restart from what the world holds.
    let mut h = Harness::start(h.world.clone(), config());
    assert_eq!(h.node.phase(), &NodePhase::Active, "{:?}", h.node.startup_warnings());
    let i = info(&mut h);
    assert!(i.generation > gen1, "generation {} after restart, was {gen1}", i.generation);
    assert_eq!(i.last_ingested_lsn, last);
    for (k, expected) in before.iter().enumerate() {
        assert_eq!(&read(&mut h, k as u64, last), expected, "key {k}");
    }
    // Re-sent records are acknowledged and skipped.
    match h.call(Request::Ingest { tenant: T, timeline: TL, records: batch }) {
        Ok(Response::Ingested { applied, skipped, .. }) => assert_eq!((applied, skipped), (0, 200)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_fresh_store_with_local_tenants_refuses_to_start_unless_rebuilding() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    h.call(Request::Ingest { tenant: T, timeline: TL, records: records(16, 50) }).unwrap();
    h.call(Request::Shutdown).unwrap();
    let highest_before = h.world.store[&T].generation;

    let mut lost = h.world.clone();
    lost.store.clear();
    let refused = Harness::start(lost.clone(), config());
    match refused.node.phase() {
        NodePhase::Failed(reason) => assert!(reason.contains("--rebuild-generations"), "{reason}"),
        other => panic!("started on a lost store: {other:?}"),
    }

    let mut rebuild = config();
    rebuild.rebuild_generations = true;
    let mut h = Harness::start(lost, rebuild);
    assert_eq!(h.node.phase(), &NodePhase::Active);
    let i = info(&mut h);
    assert!(
        i.generation > highest_before,
        "S-GEN-MONO: rebuilt generation {} not above {highest_before}",
        i.generation
    );
}

#[test]
fn local_layers_deleted_while_stopped_are_downloaded_on_read() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    let batch = records(16, 200);
    // Reads at every tenth LSN need every layer.
    let lsns: Vec<Lsn> = batch.iter().step_by(10).map(|r| r.lsn).collect();
    h.call(Request::Ingest { tenant: T, timeline: TL, records: batch }).unwrap();
    let expect = |h: &mut Harness| -> Vec<Option<Vec<u8>>> {
        lsns.iter().flat_map(|lsn| (0..7).map(|k| read(h, k, *lsn)).collect::<Vec<_>>()).collect()
    };
    let before = expect(&mut h);
    h.call(Request::Shutdown).unwrap();

    let mut world = h.world.clone();
    let layers: Vec<Utf8PathBuf> =
        world.files.keys().filter(|p| p.as_str().contains("__")).cloned().collect();
    assert!(layers.len() >= 2, "{layers:?}");
    world.files.remove(&layers[0]);
    world.files.get_mut(&layers[1]).unwrap().truncate(10);

    let mut h = Harness::start(world, config());
    // S-LOCAL-TRUTH: the truncated file was removed at start-up.
    assert!(!h.world.files.contains_key(&layers[1]));
    assert_eq!(expect(&mut h), before);
    assert!(h.world.files.contains_key(&layers[0]), "the layer was not downloaded again");
}

/// Seed 152: a transient failure listing remote timelines at start-up dropped the
/// tenant (404) although its data was visible. Start-up now waits for remote storage.
#[test]
fn transient_remote_failures_at_start_up_are_retried_not_fatal_to_the_tenant() {
    let (mut world, last, before) = one_batch_then_shutdown(50);
    world.transient_lists = 3;
    let mut h = start_until_active(world);
    assert_eq!(h.world.transient_lists, 0);
    assert_eq!(info(&mut h).last_ingested_lsn, last);
    assert_eq!(read(&mut h, 3, last), before);
}

// ---- tenant manager: location_config, detach ----

use crate::tenant::{LocationOutcome, LocationRequest, Placement, RequestedMode};

fn location(
    h: &mut Harness,
    mode: RequestedMode,
    generation: Option<u32>,
) -> Result<Response, ApiError> {
    let generation = generation.map(|g| crate::Generation::new(g).unwrap());
    h.call(Request::LocationConfig { tenant: T, request: LocationRequest::new(mode, generation) })
}

/// A tenant with one timeline and some data, everything visible.
fn tenant_with_data(h: &mut Harness) -> (Lsn, Vec<Option<Vec<u8>>>) {
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    let batch = records(16, 120);
    let last = batch.last().unwrap().lsn;
    h.call(Request::Ingest { tenant: T, timeline: TL, records: batch }).unwrap();
    let values = (0..7).map(|k| read(h, k, last)).collect();
    // Flushed, uploaded and validated: what survives any later change.
    wait_visible(h, last);
    (last, values)
}

mod checks;
mod clock;
mod corruption;
mod cp_client;
mod create;
mod deletion;
mod emergency;
mod generation_conflict;
mod incarnation;
mod isolation;
mod jobs;
mod location;
mod memory;
mod no_space;
mod placement;
mod refusals;
mod remote_cp;
mod remote_faults;
mod secondary;
mod startup_load;
