//! The node composite under a synchronous harness: an in-memory world (files,
//! objects, store rows) that executes the node's I/O effects immediately, in
//! order, with `check_invariants` after every input. Crash = drop the node, keep
//! the world.

use super::api::{ApiError, Request, RequestId, Response};
use super::io::{Entry, Io, IoFailure, IoResult};
use super::{Node, NodeConfig, NodeEffect, NodePhase};
use crate::control_plane::{StoreChange, TenantRecord};
use crate::id::{NodeId, TenantId, TimelineId};
use crate::key::Key;
use crate::lsn::Lsn;
use crate::redo::{DeltaOp, IngestRecord, Record};
use crate::time::{Instant, WallTime};
use camino::Utf8PathBuf;
use std::collections::BTreeMap;

#[derive(Default, Clone)]
pub(crate) struct World {
    pub(crate) files: BTreeMap<Utf8PathBuf, Vec<u8>>,
    pub(crate) objects: BTreeMap<String, Vec<u8>>,
    pub(crate) store: BTreeMap<TenantId, TenantRecord>,
    /// The next this many remote listings fail with a transient error.
    transient_lists: u32,
    /// The next this many control-plane store transactions fail (nothing written).
    store_failures: u32,
    /// Remote PUTs and DELETEs executed so far.
    remote_writes: u64,
    /// Remote DELETE requests executed so far.
    remote_deletes: u64,
    /// While set, remote PUTs and DELETEs are refused with access denied (a remote
    /// directory made read-only), until an operator clears it.
    deny_remote_writes: bool,
    /// Remote writes refused so far.
    denied_writes: u64,
    /// The next this many remote GETs and listings are refused with access denied.
    denied_reads: u32,
}

impl World {
    pub(crate) fn execute(&mut self, io: Io) -> IoResult {
        match io {
            Io::DiskWrite { path, bytes } => {
                self.files.insert(path, bytes);
                IoResult::Done(Ok(()))
            }
            Io::DiskRead { path } => IoResult::Bytes(
                self.files.get(&path).cloned().ok_or(IoFailure::NotFound(path.to_string())),
            ),
            Io::DiskRemove { path } => IoResult::Done(
                self.files.remove(&path).map(|_| ()).ok_or(IoFailure::NotFound(path.to_string())),
            ),
            Io::DiskCreateDir { .. } => IoResult::Done(Ok(())),
            Io::DiskRename { from, to } => {
                let prefix = format!("{from}/");
                let moving: Vec<Utf8PathBuf> = self
                    .files
                    .keys()
                    .filter(|p| p.as_str().starts_with(&prefix) || **p == from)
                    .cloned()
                    .collect();
                if moving.is_empty() {
                    return IoResult::Done(Err(IoFailure::NotFound(from.to_string())));
                }
                for p in moving {
                    let bytes = self.files.remove(&p).unwrap_or_default();
                    let rest = p.as_str().strip_prefix(from.as_str()).unwrap_or_default();
                    self.files.insert(Utf8PathBuf::from(format!("{to}{rest}")), bytes);
                }
                IoResult::Done(Ok(()))
            }
            Io::DiskRemoveDir { path } => {
                let prefix = format!("{path}/");
                let before = self.files.len();
                self.files.retain(|p, _| !p.as_str().starts_with(&prefix));
                if before == self.files.len() {
                    return IoResult::Done(Err(IoFailure::NotFound(path.to_string())));
                }
                IoResult::Done(Ok(()))
            }
            Io::DiskList { path } => {
                let prefix = format!("{path}/");
                let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
                // Paths order by component, so everything under `path` is contiguous.
                for (p, bytes) in self.files.range(path.clone()..) {
                    if !p.starts_with(&path) {
                        break;
                    }
                    let Some(rest) = p.as_str().strip_prefix(&prefix) else { continue };
                    let (name, is_dir) = match rest.split_once('/') {
                        Some((dir, _)) => (dir.to_string(), true),
                        None => (rest.to_string(), false),
                    };
                    let size_bytes = if is_dir { 0 } else { bytes.len() as u64 };
                    entries.insert(name.clone(), Entry { name, is_dir, size_bytes });
                }
                if entries.is_empty() {
                    return IoResult::Listing(Err(IoFailure::NotFound(path.to_string())));
                }
                IoResult::Listing(Ok(entries.into_values().collect()))
            }
            Io::RemotePut { .. } | Io::RemoteDelete { .. } if self.deny_remote_writes => {
                self.denied_writes += 1;
                IoResult::Done(Err(IoFailure::OperatorFixable {
                    kind: super::io::FixableKind::AccessDenied,
                    message: "Permission denied (os error 13) (test)".into(),
                }))
            }
            Io::RemotePut { key, bytes } => {
                self.remote_writes += 1;
                self.objects.insert(key.as_str().to_string(), bytes);
                IoResult::Done(Ok(()))
            }
            Io::RemoteList { .. } | Io::RemoteGet { .. } if self.denied_reads > 0 => {
                self.denied_reads -= 1;
                let e = IoFailure::OperatorFixable {
                    kind: super::io::FixableKind::AccessDenied,
                    message: "AccessDenied (test)".into(),
                };
                match io {
                    Io::RemoteList { .. } => IoResult::Listing(Err(e)),
                    _ => IoResult::Bytes(Err(e)),
                }
            }
            Io::RemoteGet { key } => IoResult::Bytes(
                self.objects.get(key.as_str()).cloned().ok_or(IoFailure::NotFound(key.to_string())),
            ),
            Io::RemoteList { .. } if self.transient_lists > 0 => {
                self.transient_lists -= 1;
                IoResult::Listing(Err(IoFailure::Transient("simulated 503".into())))
            }
            Io::RemoteList { prefix } => IoResult::Listing(Ok(self
                .objects
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| Entry { name: k.clone(), is_dir: false, size_bytes: v.len() as u64 })
                .collect())),
            Io::RemoteDelete { keys } => {
                self.remote_writes += 1;
                self.remote_deletes += 1;
                for k in keys {
                    self.objects.remove(k.as_str());
                }
                IoResult::Done(Ok(()))
            }
            Io::StoreApply { .. } if self.store_failures > 0 => {
                self.store_failures -= 1;
                IoResult::Done(Err(IoFailure::Transient("store unavailable (test)".into())))
            }
            Io::StoreApply { change } => {
                let records = match change {
                    StoreChange::Upsert(r) => vec![r],
                    StoreChange::UpsertAll(rs) => rs,
                };
                for r in records {
                    self.store.insert(r.tenant, r);
                }
                IoResult::Done(Ok(()))
            }
            Io::Redo { request } => {
                IoResult::Bytes(request.execute().map_err(|e| IoFailure::Permanent(e.to_string())))
            }
        }
    }
}

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

    pub(super) fn start_with(world: World, config: NodeConfig, check: bool) -> Harness {
        let records = world.store.values().cloned().collect();
        let now = Instant(1_000);
        let node = Node::start(config, now, WallTime(0), records);
        let mut h = Harness {
            world,
            node,
            check,
            poll_timeouts: !check,
            now,
            next_req: 0,
            replies: BTreeMap::new(),
            stopped: None,
        };
        h.settle();
        h
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

    fn call(&mut self, request: Request) -> Result<Response, ApiError> {
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
    h.call(Request::LocationConfig { tenant: T, request: LocationRequest { mode, generation } })
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

#[test]
fn detach_flushes_releases_and_removes_then_attach_reads_everything_back() {
    let mut h = Harness::start(World::default(), config());
    let (last, values) = tenant_with_data(&mut h);
    let gen1 = info(&mut h).generation;
    match location(&mut h, RequestedMode::Detached, None) {
        Ok(Response::LocationConfigured(LocationOutcome::Changed(Placement::Detached))) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.call(Request::TimelineInfo { tenant: T, timeline: TL }),
        Err(ApiError::NotFound(_))
    ));
    assert!(
        !h.world.files.keys().any(|p| p.as_str().starts_with(&format!("tenants/{T}"))),
        "local directory left behind: {:?}",
        h.world.files.keys().collect::<Vec<_>>()
    );
    assert_eq!(h.world.store[&T].attached_to, None, "the control plane still has it here");
    // Everything ingested before the detach was flushed and uploaded first.
    let indexes = h.world.objects.keys().filter(|k| k.contains("index_part")).count();
    assert!(indexes > 0);
    // Detached again: nothing to do.
    assert!(matches!(
        location(&mut h, RequestedMode::Detached, None),
        Ok(Response::LocationConfigured(LocationOutcome::Unchanged(Placement::Detached)))
    ));

    // Creating it again would hide its timelines behind an empty tenant: refused
    // (seed 628 of the swarm, with a concurrent client creating what exists).
    assert!(matches!(h.call(Request::CreateTenant { tenant: T }), Err(ApiError::Conflict(_))));
    // A restart does not bring it back.
    h.call(Request::Shutdown).unwrap();
    let mut h = Harness::start(h.world.clone(), config());
    assert!(h.node.tenant_ids().next().is_none());

    // Attach: a new generation, and everything reads back from remote storage.
    let gen2 = match location(&mut h, RequestedMode::AttachedSingle, None) {
        Ok(Response::LocationConfigured(LocationOutcome::Changed(Placement::Located(m)))) => {
            m.generation().unwrap()
        }
        other => panic!("{other:?}"),
    };
    assert!(gen2 > gen1);
    let i = info(&mut h);
    assert_eq!((i.generation, i.last_ingested_lsn, i.state.as_str()), (gen2, last, "Active"));
    let after: Vec<_> = (0..7).map(|k| read(&mut h, k, last)).collect();
    assert_eq!(after, values);
}

#[test]
fn a_mode_change_keeps_the_generation_and_a_newer_generation_restarts() {
    let mut h = Harness::start(World::default(), config());
    let (last, values) = tenant_with_data(&mut h);
    let g = info(&mut h).generation;
    // Data ingested in Stale mode is held, never uploaded: a restart loses it (it
    // was never visible), and the client re-sends from the visible LSN.
    assert!(matches!(
        location(&mut h, RequestedMode::AttachedStale, Some(g.get())),
        Ok(Response::LocationConfigured(LocationOutcome::Changed(_)))
    ));
    assert_eq!(info(&mut h).generation, g, "a mode change must not restart");
    let conf = String::from_utf8(h.world.files[&super::io::location_conf_path(T)].clone()).unwrap();
    assert!(conf.contains("AttachedStale"), "{conf}");
    // Newer: restart on exactly that generation. Older: refused.
    let wanted = g.get() + 5;
    assert!(location(&mut h, RequestedMode::AttachedSingle, Some(wanted)).is_ok());
    assert!(matches!(
        location(&mut h, RequestedMode::AttachedSingle, Some(g.get())),
        Err(ApiError::Conflict(_))
    ));
    let i = info(&mut h);
    assert_eq!((i.generation.get(), i.last_ingested_lsn), (wanted, last));
    assert_eq!((0..7).map(|k| read(&mut h, k, last)).collect::<Vec<_>>(), values);
}

/// S-NO-DEADLOCK: while a tenant's slot is in progress, its requests are refused at
/// once with a retryable error; nothing waits.
#[test]
fn requests_for_a_tenant_in_progress_get_busy_at_once() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    let (now, wall) = (h.now, WallTime(h.now.0));
    let detach = LocationRequest { mode: RequestedMode::Detached, generation: None };
    h.node.handle_request(
        now,
        wall,
        RequestId(9_000),
        Request::LocationConfig { tenant: T, request: detach },
    );
    h.node.handle_request(
        now,
        wall,
        RequestId(9_001),
        Request::TimelineInfo { tenant: T, timeline: TL },
    );
    h.node.handle_request(
        now,
        wall,
        RequestId(9_002),
        Request::Ingest { tenant: T, timeline: TL, records: records(2_000, 3) },
    );
    h.node.handle_request(
        now,
        wall,
        RequestId(9_003),
        Request::LocationConfig { tenant: T, request: detach },
    );
    let (mut busy, mut ios) = (0, Vec::new());
    while let Some(e) = h.node.poll_effect() {
        match e {
            NodeEffect::Reply { req, result: Err(ApiError::Unavailable { .. }) }
                if req.0 > 9_000 =>
            {
                busy += 1
            }
            NodeEffect::Reply { req: RequestId(9_001), result: Ok(_) } => {}
            NodeEffect::Reply { req, result } => panic!("{req:?} answered {result:?} while busy"),
            NodeEffect::Io { op, io } => ios.push((op, io)),
            NodeEffect::Stopped { .. } => panic!("stopped"),
        }
    }
    assert_eq!(busy, 2, "ingest and the second location_config are busy; info is not refused");
    for (op, io) in ios {
        let result = h.world.execute(io);
        h.node.handle_io(now, wall, op, result);
    }
    h.settle();
    for _ in 0..100 {
        if h.replies.contains_key(&RequestId(9_000)) {
            break;
        }
        h.tick(60_000);
    }
    assert!(matches!(h.replies.get(&RequestId(9_000)), Some(Ok(Response::LocationConfigured(_)))));
}

/// A crash after the detach's rename leaves `tenants/{t}.___detached.N`; start-up
/// removes it.
#[test]
fn start_up_removes_a_detached_directory_left_by_a_crash() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    h.call(Request::Shutdown).unwrap();
    let mut world = h.world.clone();
    let leftover = Utf8PathBuf::from(format!("tenants/{T}.___detached.3/timelines/x/layer"));
    world.files.insert(leftover.clone(), vec![1, 2, 3]);
    let h = Harness::start(world, config());
    assert_eq!(h.node.phase(), &NodePhase::Active);
    assert!(!h.world.files.contains_key(&leftover));
    assert_eq!(h.node.tenant_ids().count(), 1);
}

// ---- timeline deletion ----

fn timeline_objects(h: &Harness) -> Vec<String> {
    let prefix = crate::remote_path::timeline_prefix(T, TL);
    h.world.objects.keys().filter(|k| k.starts_with(&prefix)).cloned().collect()
}

/// True if every object listed is a tombstone index (deleted timelines keep one).
fn only_tombstones(h: &Harness, keys: &[String]) -> bool {
    keys.iter().all(|k| {
        k.contains("index_part.json")
            && crate::index_part::IndexPart::from_json_bytes(&h.world.objects[k])
                .is_ok_and(|i| i.deleted_at.is_some())
    })
}

fn wait_deleted(h: &mut Harness) {
    for _ in 0..200 {
        let objects = timeline_objects(h);
        if matches!(
            h.call(Request::TimelineInfo { tenant: T, timeline: TL }),
            Err(ApiError::NotFound(_))
        ) && only_tombstones(h, &objects)
            && objects.len() == 1
        {
            return;
        }
        h.tick(60_000);
    }
    panic!("timeline not deleted: {:?}", timeline_objects(h));
}

#[test]
fn timeline_deletion_removes_every_object_and_the_local_directory() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    assert!(timeline_objects(&h).len() > 2);
    assert_eq!(
        h.call(Request::DeleteTimeline { tenant: T, timeline: TL }),
        Ok(Response::TimelineDeleting)
    );
    match h.call(Request::TimelineInfo { tenant: T, timeline: TL }) {
        Ok(Response::TimelineInfo(i)) => assert_eq!(i.state, "Deleting"),
        Err(ApiError::NotFound(_)) => {}
        other => panic!("{other:?}"),
    }
    // Deleting again while it runs is accepted, not an error.
    let again = h.call(Request::DeleteTimeline { tenant: T, timeline: TL });
    assert!(matches!(again, Ok(Response::TimelineDeleting) | Err(ApiError::NotFound(_))));
    wait_deleted(&mut h);
    let dir = super::io::timeline_dir(T, TL);
    assert!(!h.world.files.keys().any(|p| p.starts_with(&dir)), "local files left");
}

/// S14: a deletion interrupted after its tombstone resumes on the next start and
/// leaves nothing of the timeline in remote storage.
#[test]
fn an_interrupted_timeline_deletion_resumes_after_a_restart() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    h.call(Request::DeleteTimeline { tenant: T, timeline: TL }).unwrap();
    // The tombstone is durable; its objects wait for the deletion queue's validation.
    let tombstoned = timeline_objects(&h);
    assert!(tombstoned.len() > 1, "{tombstoned:?}");
    // Crash: the node is dropped, the world stays.
    let mut h = Harness::start(h.world.clone(), config());
    assert_eq!(h.node.phase(), &NodePhase::Active, "{:?}", h.node.startup_warnings());
    wait_deleted(&mut h);
}

#[test]
fn only_the_single_attached_node_deletes_a_timeline() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    let g = info(&mut h).generation;
    location(&mut h, RequestedMode::AttachedMulti, Some(g.get())).unwrap();
    assert!(matches!(
        h.call(Request::DeleteTimeline { tenant: T, timeline: TL }),
        Err(ApiError::Conflict(_))
    ));
    assert_eq!(info(&mut h).state, "Active");
}

/// Seed 8: a relocation to Stale and back (same generation, no restart) while a
/// timeline deletion waited for validation stopped the deletion for good: a flush
/// finishing after the deletion began broke the timeline, and nothing resumed the
/// deletion; the tombstone stayed in remote storage (L-DELETE). Now work of a
/// deleting timeline cannot break it, and back in Single the deletion resumes.
#[test]
fn a_deletion_stopped_by_a_mode_change_resumes_back_in_single() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    let g = info(&mut h).generation;
    // Ingest (a flush starts) and delete in the same breath: the flush finishes
    // while the timeline is being deleted.
    let (now, wall) = (h.now, WallTime(h.now.0));
    let ingest = Request::Ingest { tenant: T, timeline: TL, records: records(4_000, 120) };
    h.node.handle_request(now, wall, RequestId(9_100), ingest);
    h.node.handle_request(
        now,
        wall,
        RequestId(9_101),
        Request::DeleteTimeline { tenant: T, timeline: TL },
    );
    h.settle();
    assert!(!timeline_objects(&h).is_empty());
    location(&mut h, RequestedMode::AttachedStale, Some(g.get())).unwrap();
    location(&mut h, RequestedMode::AttachedSingle, Some(g.get())).unwrap();
    wait_deleted(&mut h);
}

/// Seed 23: DeleteTimeline was answered before its tombstone was durable; a crash
/// then lost the deletion the client had been told about. The answer now waits for
/// the tombstone.
#[test]
fn delete_timeline_is_answered_only_once_the_tombstone_is_durable() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    let (now, wall) = (h.now, WallTime(h.now.0));
    h.node.handle_request(
        now,
        wall,
        RequestId(9_200),
        Request::DeleteTimeline { tenant: T, timeline: TL },
    );
    let mut pending = Vec::new();
    while let Some(e) = h.node.poll_effect() {
        match e {
            NodeEffect::Reply { req, .. } => panic!("{req:?} answered before any I/O completed"),
            NodeEffect::Io { op, io } => pending.push((op, io)),
            NodeEffect::Stopped { .. } => panic!("stopped"),
        }
    }
    let tombstone = pending
        .iter()
        .position(|(_, io)| matches!(io, Io::RemotePut { key, .. } if key.as_str().contains("index_part")))
        .expect("the tombstone upload");
    // A crash now loses nothing the client was told: it has no answer yet.
    let (op, io) = pending.remove(tombstone);
    let result = h.world.execute(io);
    h.node.handle_io(now, wall, op, result);
    let answered = std::iter::from_fn(|| h.node.poll_effect()).any(|e| {
        matches!(
            e,
            NodeEffect::Reply { req: RequestId(9_200), result: Ok(Response::TimelineDeleting) }
        )
    });
    assert!(answered, "answered once the tombstone is durable");
}

// ---- emergency mode ----

/// S-GEN-MONO / S-SINGLE-WRITER in emergency mode: with the control plane's store
/// failing at start-up, the node starts on its local generation, serves reads and
/// takes ingest, writes and deletes nothing remote, refuses what needs a
/// generation; once re-attach succeeds it runs on a new generation and uploads.
#[test]
fn emergency_mode_serves_and_writes_nothing_remote_until_re_attach_succeeds() {
    let mut h = Harness::start(World::default(), config());
    let (last, values) = tenant_with_data(&mut h);
    let g = info(&mut h).generation;
    h.call(Request::Shutdown).unwrap();

    let mut world = h.world.clone();
    world.store_failures = 3;
    let mut h = Harness::start(world, config());
    assert_eq!(h.node.phase(), &NodePhase::Active, "{:?}", h.node.startup_warnings());
    assert!(h.node.in_emergency());
    let writes_before = h.world.remote_writes;
    let i = info(&mut h);
    assert_eq!((i.generation, i.last_ingested_lsn), (g, last));
    assert_eq!((0..7).map(|k| read(&mut h, k, last)).collect::<Vec<_>>(), values);
    // Ingest is taken (held locally); things that need a generation are refused.
    assert!(h.ingest(records(last.0 + 8, 40)).is_ok());
    assert!(matches!(
        location(&mut h, RequestedMode::Detached, None),
        Err(ApiError::Unavailable { .. })
    ));
    assert!(matches!(
        h.call(Request::DeleteTimeline { tenant: T, timeline: TL }),
        Err(ApiError::Unavailable { .. })
    ));
    assert_eq!(h.world.remote_writes, writes_before, "emergency mode wrote to remote storage");
    assert_eq!(info(&mut h).remote_consistent_lsn_visible, i.remote_consistent_lsn_visible);

    // The store comes back: re-attach succeeds after its backoff.
    for _ in 0..50 {
        if !h.node.in_emergency() && h.node.phase() == &NodePhase::Active {
            break;
        }
        assert!(h.tick(120_000), "stuck in emergency mode");
    }
    assert!(!h.node.in_emergency());
    let i = info(&mut h);
    assert!(i.generation > g, "generation {} after emergency, was {g}", i.generation);
    assert_eq!((0..7).map(|k| read(&mut h, k, last)).collect::<Vec<_>>(), values);
    // Uploads work again: new data becomes visible.
    let batch = records(i.last_ingested_lsn.0 + 8, 40);
    let new_last = batch.last().unwrap().lsn;
    h.ingest(batch).unwrap();
    for _ in 0..100 {
        if info(&mut h).remote_consistent_lsn_visible == new_last {
            return;
        }
        h.tick(60_000);
    }
    panic!("nothing became visible after leaving emergency mode: {:?}", info(&mut h));
}

// ---- S-SINGLE-WRITER through location_config ----

/// Ingests `batches` batches and lets time pass (flushes, compaction, timers).
fn churn(h: &mut Harness, batches: u64) {
    for _ in 0..batches {
        let from = info(h).last_ingested_lsn.0 + 8;
        h.call(Request::Ingest { tenant: T, timeline: TL, records: records(from, 60) }).unwrap();
        for _ in 0..5 {
            h.tick(60_000);
        }
    }
}

/// S-SINGLE-WRITER: in AttachedStale the node uploads and deletes nothing; in
/// AttachedMulti it uploads (and compacts) but deletes nothing; back in
/// AttachedSingle it does both again.
#[test]
fn stale_writes_nothing_and_multi_deletes_nothing() {
    let mut c = config();
    c.timeline.compaction_threshold_layers = 3;
    let mut h = Harness::start(World::default(), c);
    tenant_with_data(&mut h);
    let g = info(&mut h).generation.get();

    location(&mut h, RequestedMode::AttachedStale, Some(g)).unwrap();
    let writes = h.world.remote_writes;
    h.node.drain_trace();
    churn(&mut h, 4);
    for l in h.node.drain_trace() {
        let l = l.to_string();
        if l.contains("Remote") && l.contains("effect") {
            eprintln!("DEBUG {l}");
        }
    }
    assert_eq!(h.world.remote_writes, writes, "AttachedStale wrote to remote storage");

    location(&mut h, RequestedMode::AttachedMulti, Some(g)).unwrap();
    let deletes = h.world.remote_deletes;
    churn(&mut h, 6);
    assert!(h.world.remote_writes > writes, "AttachedMulti uploads");
    assert_eq!(h.world.remote_deletes, deletes, "AttachedMulti deleted from remote storage");

    location(&mut h, RequestedMode::AttachedSingle, Some(g)).unwrap();
    churn(&mut h, 6);
    assert!(h.world.remote_deletes > deletes, "AttachedSingle hands on the held deletions");
}

// ---- tenant deletion ----

fn tenant_objects(h: &Harness) -> Vec<String> {
    let prefix = crate::remote_path::tenant_prefix(T);
    h.world.objects.keys().filter(|k| k.starts_with(&prefix)).cloned().collect()
}

fn wait_tenant_gone(h: &mut Harness) {
    let mark = crate::remote_path::tenant_deletion_mark_key(T).as_str().to_string();
    for _ in 0..300 {
        let left: Vec<String> = tenant_objects(h).into_iter().filter(|k| *k != mark).collect();
        let gone = h.node.tenant_manager().slot(T).is_none() && only_tombstones(h, &left);
        if gone {
            return;
        }
        h.tick(60_000);
    }
    panic!("tenant not deleted: {:?} {:?}", h.node.tenant_manager().slot(T), tenant_objects(h));
}

#[test]
fn delete_tenant_removes_every_timeline_then_the_tenant_and_keeps_its_mark() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    let tl2 = TimelineId([3; 16]);
    h.call(Request::CreateTimeline { tenant: T, timeline: tl2 }).unwrap();
    let (now, wall) = (h.now, WallTime(h.now.0));
    h.node.handle_request(now, wall, RequestId(9_300), Request::DeleteTenant { tenant: T });
    h.settle();
    wait_tenant_gone(&mut h);
    assert!(matches!(h.replies.get(&RequestId(9_300)), Some(Ok(Response::LocationConfigured(_)))));
    let mark = crate::remote_path::tenant_deletion_mark_key(T).as_str().to_string();
    let left: Vec<String> = tenant_objects(&h).into_iter().filter(|k| *k != mark).collect();
    assert_eq!(left.len(), 2, "one tombstone per timeline: {left:?}");
    assert!(only_tombstones(&h, &left));
    assert!(h.world.objects.contains_key(&mark));
    assert!(!h.world.files.keys().any(|p| p.as_str().starts_with(&format!("tenants/{T}"))));
    assert_eq!(h.world.store[&T].attached_to, None);
    assert!(matches!(h.call(Request::DeleteTenant { tenant: T }), Err(ApiError::NotFound(_))));
    // Attaching the id again finds the mark and finishes the deletion: it stays deleted.
    location(&mut h, RequestedMode::AttachedSingle, None).unwrap();
    wait_tenant_gone(&mut h);
}

/// A tenant deletion interrupted by a crash (mark written, timelines still being
/// deleted) resumes on the next start.
#[test]
fn an_interrupted_tenant_deletion_resumes_after_a_restart() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    let (now, wall) = (h.now, WallTime(h.now.0));
    h.node.handle_request(now, wall, RequestId(9_400), Request::DeleteTenant { tenant: T });
    h.settle();
    let mark = crate::remote_path::tenant_deletion_mark_key(T).as_str().to_string();
    assert!(h.world.objects.contains_key(&mark), "the mark goes first");
    assert!(tenant_objects(&h).len() > 1, "still deleting");
    let mut h = Harness::start(h.world.clone(), config());
    assert_eq!(h.node.phase(), &NodePhase::Active);
    wait_tenant_gone(&mut h);
}

#[test]
fn only_a_single_attached_tenant_is_deleted() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    let g = info(&mut h).generation.get();
    location(&mut h, RequestedMode::AttachedStale, Some(g)).unwrap();
    assert!(matches!(h.call(Request::DeleteTenant { tenant: T }), Err(ApiError::Conflict(_))));
    assert_eq!(info(&mut h).state, "Active");
}

mod corruption;
mod create;
mod generation_conflict;
mod isolation;
mod jobs;
mod placement;
mod remote_faults;
