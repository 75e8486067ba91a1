//! Panic isolation (`isolation.rs`, issue 15 item 1): with
//! `isolate_tenant_panics` on, a panic inside one timeline's handler breaks only
//! its tenant; with it off (tests, the simulator) the panic propagates; a panic
//! outside a machine's handler propagates either way.
//!
//! The panic is forced by a test-only fault injection
//! ([`inject_unflushable_record`]): a record under `Key::MAX` put straight into a
//! timeline's open layer, past ingest validation, which is exactly the bug that
//! took the node down; its next flush panics inside the timeline's handler.

use super::*;
use crate::id::OpId;
use crate::node::Machine;
use crate::node::Route;
use crate::remote_path;
use crate::tenant::{Slot, TenantState};
use crate::timeline::tests::inject_unflushable_record;

const B: TenantId = TenantId([9; 16]);

fn isolating() -> NodeConfig {
    let mut c = config();
    c.isolate_tenant_panics = true;
    c
}

/// Keys of every remote object of `tenant`, with their bytes.
fn remote_of(world: &World, tenant: TenantId) -> BTreeMap<String, Vec<u8>> {
    let prefix = remote_path::tenant_prefix(tenant);
    world
        .objects
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The remote keys an I/O writes (PUT or DELETE).
fn remote_writes(io: &Io) -> Vec<String> {
    match io {
        Io::RemotePut { key, .. } | Io::RemotePutFile { key, .. } => {
            vec![key.as_str().to_string()]
        }
        Io::RemoteDelete { keys } => keys.iter().map(|k| k.as_str().to_string()).collect(),
        _ => Vec::new(),
    }
}

impl Harness {
    fn send(&mut self, request: Request) -> RequestId {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        self.node.handle_request(self.now, WallTime(self.now.0), req, request);
        req
    }

    /// Like `settle`, but the uploads of `tenant` (a layer from its local file, an
    /// index) and its layer downloads are held back (left in flight). Returns them,
    /// and every remote key written.
    fn settle_holding(&mut self, tenant: TenantId) -> (Held, Vec<String>) {
        let prefix = remote_path::tenant_prefix(tenant);
        let (mut held, mut written) = (Vec::new(), Vec::new());
        for _ in 0..1_000_000 {
            self.node.check_invariants();
            match self.node.poll_effect() {
                Some(NodeEffect::Io { op, io }) => {
                    written.extend(remote_writes(&io));
                    let upload = matches!(
                        self.node.routes.get(&op),
                        Some(Route::UploadPut { tenant: t, .. } | Route::Download { tenant: t, .. })
                            if *t == tenant
                    );
                    let put = remote_writes(&io).iter().any(|k| k.starts_with(&prefix));
                    if upload || put {
                        held.push((op, io));
                        continue;
                    }
                    let result = self.world.execute(io);
                    self.node.handle_io(self.now, WallTime(self.now.0), op, result);
                }
                Some(NodeEffect::Reply { req, result }) => {
                    self.replies.insert(req, result);
                }
                Some(NodeEffect::Stopped { clean, reason }) => self.stopped = Some((clean, reason)),
                None => return (held, written),
            }
        }
        panic!("node did not settle");
    }

    /// Executes I/O held back earlier (it was in flight) and everything it leads
    /// to; returns every remote key written meanwhile.
    fn complete_held(&mut self, held: Held) -> Vec<String> {
        let mut written = Vec::new();
        for (op, io) in held {
            let result = self.world.execute(io);
            self.node.handle_io(self.now, WallTime(self.now.0), op, result);
            loop {
                self.node.check_invariants();
                match self.node.poll_effect() {
                    Some(NodeEffect::Io { op, io }) => {
                        written.extend(remote_writes(&io));
                        let result = self.world.execute(io);
                        self.node.handle_io(self.now, WallTime(self.now.0), op, result);
                    }
                    Some(NodeEffect::Reply { req, result }) => {
                        self.replies.insert(req, result);
                    }
                    Some(NodeEffect::Stopped { clean, reason }) => {
                        self.stopped = Some((clean, reason))
                    }
                    None => break,
                }
            }
        }
        written
    }
}

fn visible(h: &mut Harness, tenant: TenantId) -> (Lsn, Lsn) {
    match h.call(Request::TimelineInfo { tenant, timeline: TL }) {
        Ok(Response::TimelineInfo(i)) => (i.remote_consistent_lsn_visible, i.last_ingested_lsn),
        other => panic!("info of {tenant}: {other:?}"),
    }
}

fn read_of(h: &mut Harness, tenant: TenantId, key: u64, lsn: Lsn) -> Option<Vec<u8>> {
    match h.call(Request::Read { tenant, timeline: TL, key: Key(key), lsn }) {
        Ok(Response::Value { value, .. }) => value,
        other => panic!("read of {tenant}: {other:?}"),
    }
}

/// I/O left in flight by [`Harness::settle_holding`].
type Held = Vec<(OpId, Io)>;

/// Two tenants with data visible; A also has an acknowledged batch whose layer
/// upload is in flight (held back). Returns the LSN visible for both and A's
/// values there.
fn two_tenants_with_an_upload_in_flight(
    config: NodeConfig,
) -> (Harness, Lsn, Vec<Option<Vec<u8>>>, Held) {
    let mut h = Harness::start(World::default(), config);
    for tenant in [T, B] {
        assert!(h.call(Request::CreateTenant { tenant }).is_ok());
        assert!(h.call(Request::CreateTimeline { tenant, timeline: TL }).is_ok());
        let r = h.call(Request::Ingest { tenant, timeline: TL, records: records(16, 100) });
        assert!(matches!(r, Ok(Response::Ingested { .. })), "{r:?}");
    }
    while h.tick(60_000) {}
    let last = records(16, 100).last().unwrap().lsn;
    assert_eq!(visible(&mut h, T).0, last, "A's data is visible before the panic");
    let before: Vec<_> = (0..7).map(|k| read_of(&mut h, T, k, last)).collect();
    assert!(before.iter().all(Option::is_some));

    let req = h.send(Request::Ingest { tenant: T, timeline: TL, records: records(1_000, 100) });
    let (held, _) = h.settle_holding(T);
    assert!(matches!(h.replies.remove(&req), Some(Ok(Response::Ingested { .. }))));
    assert!(!held.is_empty(), "an upload of A is in flight");
    (h, last, before, held)
}

/// The kill test of the crash argument in `isolation.rs`: the panic breaks A only;
/// nothing is written remotely for A after the panic (an upload in flight at the
/// panic lands, nothing follows it); B keeps serving; after a crash and restart, A
/// reads back everything that was visible before the panic.
#[test]
fn a_panicking_timeline_breaks_only_its_tenant_and_a_restart_reads_back_what_was_visible() {
    let (mut h, last, before, held) = two_tenants_with_an_upload_in_flight(isolating());

    // The bug, then an ingest whose flush meets it: the timeline's handler panics.
    let slot = h.node.tenants.get_mut(&T).unwrap().timelines.get_mut(&TL).unwrap();
    inject_unflushable_record(&mut slot.timeline, h.now);
    h.node.dirty.insert(Machine::Timeline(T, TL));
    let waiting = h.send(Request::Read { tenant: T, timeline: TL, key: Key(1), lsn: Lsn(1 << 40) });
    let poison_lsn = h.node.tenants[&T].timelines[&TL].timeline.last_ingested_lsn();
    let ingest = h.send(Request::Ingest {
        tenant: T,
        timeline: TL,
        records: records(poison_lsn.0 + 8, 100),
    });
    let (more_held, written) = h.settle_holding(T);
    let prefix_a = remote_path::tenant_prefix(T);
    assert!(more_held.is_empty(), "{more_held:?}");
    assert!(written.iter().all(|k| !k.starts_with(&prefix_a)), "{written:?}");

    // The panic is the ingest's answer, and the waiting read's.
    match h.replies.remove(&ingest) {
        Some(Err(ApiError::Internal(m))) => {
            assert!(m.contains("panicked") && m.contains("outside the layer's ranges"), "{m}")
        }
        other => panic!("ingest that panicked: {other:?}"),
    }
    assert!(
        matches!(h.replies.remove(&waiting), Some(Err(ApiError::Internal(m))) if m.contains("broken")),
        "the waiting read is answered"
    );
    // A is Broken with the panic message in its lifecycle state, which the tenant
    // machine alone holds (the manager's slot keeps its placement, no copy of the
    // state); the node reports it from there; its machines are gone.
    let TenantState::Broken { reason } = &h.node.tenants[&T].state() else {
        panic!("A is {:?}", h.node.tenants[&T].state())
    };
    assert!(reason.contains("outside the layer's ranges"), "{reason}");
    assert!(h.node.tenants[&T].timelines.is_empty());
    assert!(matches!(h.node.manager.slot(T), Some(Slot::Attached { broken: None, .. })));
    assert!(matches!(h.node.tenant_state(T), Some(TenantState::Broken { .. })));
    for r in [
        h.call(Request::Ingest { tenant: T, timeline: TL, records: records(1 << 30, 1) }),
        h.call(Request::Read { tenant: T, timeline: TL, key: Key(1), lsn: last }),
        h.call(Request::TimelineInfo { tenant: T, timeline: TL }),
        h.call(Request::CreateTimeline { tenant: T, timeline: TimelineId([3; 16]) }),
    ] {
        assert!(matches!(&r, Err(ApiError::Internal(m)) if m.contains("broken")), "{r:?}");
    }

    // The upload in flight at the panic completes (it was in flight: its layer
    // lands, streamed by the adapter from the local file): nothing follows it for
    // A (the guard in `Node::handle_io`), no index, no other PUT.
    let a_at_panic = remote_of(&h.world, T);
    let in_flight: Vec<String> = held.iter().flat_map(|(_, io)| remote_writes(io)).collect();
    assert!(in_flight.iter().all(|k| !k.contains("index_part")), "{in_flight:?}");
    let written = h.complete_held(held);
    assert!(
        written.iter().all(|k| !k.starts_with(&prefix_a)),
        "written for A after the panic: {written:?}"
    );
    let a_after_panic = remote_of(&h.world, T);
    let mut old_keys = a_after_panic.clone();
    old_keys.retain(|k, _| !in_flight.contains(k) || a_at_panic.contains_key(k));
    assert_eq!(old_keys, a_at_panic, "only the uploads in flight landed");

    // B keeps serving: ingest, flush, upload, read.
    let more = records(2_000, 100);
    let b_last = more.last().unwrap().lsn;
    assert!(h.call(Request::Ingest { tenant: B, timeline: TL, records: more }).is_ok());
    while h.tick(60_000) {}
    assert_eq!(visible(&mut h, B), (b_last, b_last));
    assert!(read_of(&mut h, B, 3, b_last).is_some());
    assert_eq!(remote_of(&h.world, T), a_after_panic, "A's remote storage changed after the panic");

    // A shutdown now is not clean: A lost what it acknowledged above its visible LSN.
    let crashed = h.world.clone();
    assert_eq!(h.call(Request::Shutdown), Ok(Response::ShutdownComplete { clean: false }));
    assert!(h.stopped.as_ref().is_some_and(|(_, why)| why.contains("broken")), "{:?}", h.stopped);

    // Crash (the node dropped as it was before that shutdown) and restart: A loads
    // from remote storage on a new generation and reads back what was visible
    // before the panic.
    let mut h = Harness::start(crashed, isolating());
    assert_eq!(h.node.phase(), &NodePhase::Active);
    let (v, l) = visible(&mut h, T);
    assert!(l >= last, "A after restart: visible {v}, last ingested {l}, was visible {last}");
    let after: Vec<_> = (0..7).map(|k| read_of(&mut h, T, k, last)).collect();
    assert_eq!(after, before);
    assert!(read_of(&mut h, B, 3, b_last).is_some());
}

/// Without isolation (tests, the simulator) the same panic propagates: a run that
/// hits it fails.
#[test]
fn without_isolation_a_handler_panic_propagates() {
    let (mut h, _, _, _) = two_tenants_with_an_upload_in_flight(config());
    let slot = h.node.tenants.get_mut(&T).unwrap().timelines.get_mut(&TL).unwrap();
    inject_unflushable_record(&mut slot.timeline, h.now);
    h.node.dirty.insert(Machine::Timeline(T, TL));
    let from = h.node.tenants[&T].timelines[&TL].timeline.last_ingested_lsn().0 + 8;
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        h.send(Request::Ingest { tenant: T, timeline: TL, records: records(from, 100) })
    }));
    let payload = panicked.expect_err("the flush panics");
    let message = payload.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("outside the layer's ranges"), "{message}");
}

/// A panic in the node's own routing (here: a completion of the wrong kind, a
/// routing bug) is not a tenant's: it propagates even with isolation on, and the
/// tokio binary exits 1.
#[test]
fn with_isolation_a_panic_outside_a_machine_handler_still_propagates() {
    let (mut h, _, _, held) = two_tenants_with_an_upload_in_flight(isolating());
    let (op, _) = held[0].clone();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        h.node.handle_io(h.now, WallTime(h.now.0), op, IoResult::Listing(Ok(Vec::new())))
    }));
    assert!(panicked.is_err(), "a routing bug must not be caught");
}

/// The operator's way back without a restart: a location_config restarts a
/// Broken tenant on a new generation, loading it from remote storage.
#[test]
fn a_tenant_broken_by_a_panic_comes_back_through_location_config_on_a_new_generation() {
    let (mut h, last, before, held) = two_tenants_with_an_upload_in_flight(isolating());
    let generation = h.node.tenants[&T].generation;
    let slot = h.node.tenants.get_mut(&T).unwrap().timelines.get_mut(&TL).unwrap();
    inject_unflushable_record(&mut slot.timeline, h.now);
    h.node.dirty.insert(Machine::Timeline(T, TL));
    let from = h.node.tenants[&T].timelines[&TL].timeline.last_ingested_lsn().0 + 8;
    let r = h.call(Request::Ingest { tenant: T, timeline: TL, records: records(from, 100) });
    assert!(matches!(r, Err(ApiError::Internal(_))), "{r:?}");
    h.complete_held(held);

    // Deleting it now is refused (its timelines' machines are gone) and writes
    // nothing: no deletion mark.
    let before_delete = remote_of(&h.world, T);
    let r = h.call(Request::DeleteTenant { tenant: T });
    assert!(matches!(&r, Err(ApiError::Internal(m)) if m.contains("broken")), "{r:?}");
    assert_eq!(remote_of(&h.world, T), before_delete);

    let r = location(&mut h, RequestedMode::AttachedSingle, None);
    assert!(matches!(r, Ok(Response::LocationConfigured(LocationOutcome::Changed(_)))), "{r:?}");
    assert!(h.node.tenants[&T].generation > generation);
    assert_eq!(h.node.tenants[&T].state(), TenantState::Active);
    let after: Vec<_> = (0..7).map(|k| read_of(&mut h, T, k, last)).collect();
    assert_eq!(after, before);
    // A client's retry: the first append to each key waits for a size read (503).
    assert!(h.ingest(records(1 << 20, 10)).is_ok());
}

/// A panic while the tenant is being stopped (here: the flush a detach starts) is
/// a failure of that stop, not its end: the detach must not answer success, release
/// the generation or remove the directory, because what the tenant acknowledged
/// above its visible LSN was never uploaded. The tenant is Broken (listed so, its
/// requests answer why), nothing is written remote for it, and a shutdown is not
/// clean. It used to be refused as "Stopping has no Fail", so the stop found no
/// timelines left, called them visible, and the detach answered 200.
#[test]
fn a_panic_during_a_detach_fails_the_detach_and_breaks_the_tenant() {
    let (mut h, _, _, held) = two_tenants_with_an_upload_in_flight(isolating());
    h.complete_held(held);
    while h.tick(60_000) {}
    // Acknowledged, not yet flushed: only the stop's flush would make it durable.
    let from = h.node.tenants[&T].timelines[&TL].timeline.last_ingested_lsn().0 + 8;
    let r = h.call(Request::Ingest { tenant: T, timeline: TL, records: records(from, 3) });
    assert!(matches!(r, Ok(Response::Ingested { .. })), "{r:?}");
    let slot = h.node.tenants.get_mut(&T).unwrap().timelines.get_mut(&TL).unwrap();
    inject_unflushable_record(&mut slot.timeline, h.now);
    let remote_before = remote_of(&h.world, T);
    let generation = h.node.tenants[&T].generation;

    let r = location(&mut h, RequestedMode::Detached, None);
    assert!(matches!(&r, Err(ApiError::Internal(m)) if m.contains("panicked")), "detach: {r:?}");
    let TenantState::Broken { reason } = &h.node.tenants[&T].state() else {
        panic!("A is {:?}", h.node.tenants[&T].state())
    };
    assert!(reason.contains("outside the layer's ranges"), "{reason}");
    assert_eq!(listed(&mut h, T).state, "Broken");
    assert_eq!(h.world.store[&T].generation, generation, "the generation stays held");
    assert!(h.world.files.contains_key(&crate::node::io::location_conf_path(T)));
    while h.tick(60_000) {}
    assert_eq!(remote_of(&h.world, T), remote_before, "written for A after the panic");
    let r = h.call(Request::Read { tenant: T, timeline: TL, key: Key(1), lsn: Lsn(16) });
    assert!(matches!(&r, Err(ApiError::Internal(m)) if m.contains("broken")), "{r:?}");
    assert_eq!(h.call(Request::Shutdown), Ok(Response::ShutdownComplete { clean: false }));
}

/// A layer download in flight at the panic whose body the check refuses: its
/// completion is dropped with the tenant's machines (the guard in
/// `Node::handle_io`); without the guard the node would download it again, into
/// the directory of a tenant it no longer runs. Since uploads are one effect
/// (`RemotePutFile`), this is the guard's case a test can see from outside.
#[test]
fn a_refused_download_in_flight_at_a_panic_is_not_downloaded_again() {
    let mut h = Harness::start(World::default(), isolating());
    assert!(h.call(Request::CreateTenant { tenant: T }).is_ok());
    assert!(h.call(Request::CreateTimeline { tenant: T, timeline: TL }).is_ok());
    let batch = records(16, 100);
    let last = batch.last().unwrap().lsn;
    assert!(h.call(Request::Ingest { tenant: T, timeline: TL, records: batch }).is_ok());
    assert_eq!(h.call(Request::Shutdown), Ok(Response::ShutdownComplete { clean: true }));
    // Restart without the local layer files: a read downloads them; every
    // download's body comes with a flipped byte.
    let mut world = h.world.clone();
    world.files.retain(|p, _| !p.as_str().contains("__"));
    world.corrupt_downloads = u32::MAX;
    let mut h = Harness::start(world, isolating());
    let _read = h.send(Request::Read { tenant: T, timeline: TL, key: Key(3), lsn: last });
    let (held, _) = h.settle_holding(T);
    assert!(
        held.iter().any(|(_, io)| matches!(io, Io::RemoteGetFile { .. })),
        "a download of T is in flight: {held:?}"
    );

    // The panic: the tenant's machines are dropped.
    let slot = h.node.tenants.get_mut(&T).unwrap().timelines.get_mut(&TL).unwrap();
    inject_unflushable_record(&mut slot.timeline, h.now);
    h.node.dirty.insert(Machine::Timeline(T, TL));
    // Its flush comes with the checkpoint timer, and panics.
    h.run_for(10 * 60_000);
    assert!(
        matches!(h.node.tenants[&T].state(), TenantState::Broken { .. }),
        "{:?}",
        h.node.tenants[&T].state()
    );

    // The downloads complete, refused by the check: nothing follows for T.
    let tenant_dir = crate::node::io::tenant_dir(T);
    for (op, io) in held {
        let download = matches!(io, Io::RemoteGetFile { .. });
        let result = h.world.execute(io);
        if download {
            assert!(matches!(&result, IoResult::Done(Err(e)) if e.kind == IoErrorKind::Corrupt));
        }
        h.node.handle_io(h.now, WallTime(h.now.0), op, result);
        while let Some(effect) = h.node.poll_effect() {
            if let NodeEffect::Io { io, .. } = &effect {
                let touches_t = match io {
                    Io::RemoteGetFile { path, .. } => path.starts_with(&tenant_dir),
                    _ => false,
                };
                assert!(
                    !touches_t,
                    "downloaded again for a tenant whose machines are gone: {io:?}"
                );
            }
        }
    }
}
