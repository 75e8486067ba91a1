//! Tenant incarnations (`tenant_machine.rs`: Identity of ops, Crash): a stop waits
//! at most [`STOP_DRAIN_TIMEOUT_MS`] for its tenant's remote calls and reads, then
//! drops the tenant; a late completion of the old incarnation is dropped by
//! identity, never handed to the new machines; a local write is waited for
//! without a limit.

use super::*;
use crate::node::{DEFAULT_SHUTDOWN_GRACE_MS, STOP_DRAIN_TIMEOUT_MS};
use crate::remote_path;
use crate::scheduler::JobKind;
use crate::tenant::{LocationOutcome, LocationRequest, RequestedMode};

impl Harness {
    /// Sends a request without waiting for its answer.
    fn send_request(&mut self, request: Request) -> RequestId {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        self.node.handle_request(self.now, WallTime(self.now.0), req, request);
        self.settle();
        req
    }

    /// Completes I/O held in flight, one at a time, each followed by what it leads
    /// to.
    fn complete_held_io(&mut self) {
        for (op, io) in std::mem::take(&mut self.held_io) {
            let result = self.world.execute(io);
            self.node.handle_io(self.now, WallTime(self.now.0), op, result);
            self.settle();
        }
    }

    /// Restarts T on `generation` (a stop, a new generation, a load).
    fn send_restart(&mut self, generation: u32) -> RequestId {
        let request =
            LocationRequest::new(RequestedMode::AttachedSingle, crate::Generation::new(generation));
        self.send_request(Request::LocationConfig { tenant: T, request })
    }
}

fn restarted(reply: Option<Result<Response, ApiError>>) -> bool {
    matches!(reply, Some(Ok(Response::LocationConfigured(LocationOutcome::Changed(_)))))
}

/// A layer upload's PUT of T is in flight when T is restarted on a newer
/// generation: the stop gives up on it after the drain timeout, the new
/// incarnation starts, and when the PUT finally completes its completion is
/// dropped by identity: the new machines (whose op ids start again at 0) never
/// see it. Before incarnations the stop waited for it forever.
#[test]
fn a_stale_completion_after_a_tenant_restart_is_dropped() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    let g = info(&mut h).generation;
    let prefix = remote_path::tenant_prefix(T);
    h.hold = Some(Box::new(move |io| {
        matches!(io, Io::RemotePut { key, .. } | Io::RemotePutFile { key, .. }
            if key.as_str().starts_with(&prefix) && !key.as_str().contains("index_part"))
    }));
    h.call(Request::Ingest { tenant: T, timeline: TL, records: records(2_000, 120) }).unwrap();
    h.run_for(5_000);
    assert!(!h.held_io.is_empty(), "no layer PUT of T went out");
    h.hold = None;

    let req = h.send_restart(g.get() + 1);
    h.run_for(DEFAULT_SHUTDOWN_GRACE_MS + STOP_DRAIN_TIMEOUT_MS + 1_000);
    let reply = h.replies.remove(&req);
    assert!(restarted(reply.clone()), "the restart did not end past the drain timeout: {reply:?}");
    let i = info(&mut h);
    assert_eq!(i.generation.get(), g.get() + 1);
    let loaded = i.last_ingested_lsn;
    let before = read(&mut h, 0, loaded);

    // The old incarnation's PUT completes now.
    h.node.drain_trace();
    h.complete_held_io();
    let trace: Vec<String> = h.node.drain_trace().into_iter().map(|l| l.what).collect();
    assert!(
        trace.iter().any(|w| w.contains("UploadPut") && w.contains("replaced tenant incarnation")),
        "the straggler was not dropped by identity: {trace:#?}"
    );
    // The new incarnation is untouched: it serves, ingests and uploads.
    assert_eq!(read(&mut h, 0, loaded), before);
    let batch = records(loaded.0 + 8, 40);
    let last = batch.last().unwrap().lsn;
    h.ingest(batch).unwrap();
    wait_visible(&mut h, last);
}

/// A layer write of T is in flight when T is restarted: the stop waits for it past
/// the drain timeout (a write of the old incarnation must never land where the new
/// one reads), and the restart goes on only once it completed.
#[test]
fn a_stop_waits_for_a_local_write_past_the_drain_timeout() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    let g = info(&mut h).generation;
    let timeline_dir = crate::node::io::timeline_dir(T, TL);
    let mut first = true;
    h.hold = Some(Box::new(move |io| {
        let layer_write = matches!(io, Io::DiskWrite { path, .. }
            if path.starts_with(&timeline_dir)
                && path.file_name() != Some(crate::node::io::METADATA_FILE_NAME));
        let hold = layer_write && first;
        first &= !hold;
        hold
    }));
    h.call(Request::Ingest { tenant: T, timeline: TL, records: records(2_000, 120) }).unwrap();
    h.run_for(5_000);
    assert_eq!(h.held_io.len(), 1, "no layer write of T went out");

    let req = h.send_restart(g.get() + 1);
    h.run_for(DEFAULT_SHUTDOWN_GRACE_MS + 3 * STOP_DRAIN_TIMEOUT_MS);
    assert!(
        h.replies.remove(&req).is_none(),
        "the stop ended with a local write of the old incarnation in flight"
    );

    h.complete_held_io();
    h.run_for(1_000);
    let reply = h.replies.remove(&req);
    assert!(restarted(reply.clone()), "the restart did not end after the write: {reply:?}");
    assert_eq!(info(&mut h).generation.get(), g.get() + 1);
}

/// A compaction of T is running, its layer read held, when T is restarted: the stop
/// abandons the read past the drain timeout and drops the old incarnation, whose
/// timeline never reports the job finished. Its scheduler slot is freed as the
/// tenant leaves (not by a sweep), so the new incarnation's compaction gets the
/// one slot there is.
#[test]
fn a_job_abandoned_by_a_stop_frees_its_slot_as_the_tenant_leaves() {
    let mut c = config();
    c.timeline.compaction_threshold_layers = 2;
    c.timeline.checkpoint_distance_bytes = 256;
    c.scheduler.max_concurrent_jobs = 1;
    let mut h = Harness::start(World::default(), c);
    tenant_with_data(&mut h);
    let g = info(&mut h).generation;
    let timeline_dir = crate::node::io::timeline_dir(T, TL);
    h.hold = Some(Box::new(move |io| {
        matches!(io, Io::DiskRead { path } if path.starts_with(&timeline_dir)
            && path.file_name() != Some(crate::node::io::METADATA_FILE_NAME))
    }));
    for round in 0..4 {
        h.call(Request::Ingest {
            tenant: T,
            timeline: TL,
            records: records(2_000 + round * 400, 50),
        })
        .unwrap();
        h.run_for(5_000);
    }
    assert!(!h.held_io.is_empty(), "no layer read of T went out");
    assert_eq!(h.node.background_jobs_running(JobKind::Compaction), 1, "no compaction runs");
    h.hold = None;

    let req = h.send_restart(g.get() + 1);
    h.run_for(DEFAULT_SHUTDOWN_GRACE_MS + STOP_DRAIN_TIMEOUT_MS + 1_000);
    let reply = h.replies.remove(&req);
    assert!(restarted(reply.clone()), "the restart did not end past the drain timeout: {reply:?}");
    h.run_for(60_000);
    for kind in JobKind::ALL {
        assert_eq!(h.node.background_jobs_running(kind), 0, "{kind:?} slot leaked");
    }
    let tl = &h.node.tenants[&T].timelines[&TL].timeline;
    assert!(tl.compaction_candidates().is_none(), "the new incarnation never compacted");
    h.complete_held_io();
}

/// Found by the tenant fuzz target: a timeline create waits for its first index;
/// that PUT failed (to be retried) when the tenant was restarted on a newer
/// generation. The stop dropped the tenant in the same input as it stopped the
/// upload queue, whose answer to the create's barrier went with it: the create was
/// never answered. It is answered 503 (retry) when the tenant is dropped.
#[test]
fn a_create_waiting_for_its_first_index_is_answered_when_its_tenant_stops() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    let g = h.node.tenants[&T].generation;
    h.hold = Some(Box::new(
        |io| matches!(io, Io::RemotePut { key, .. } if key.as_str().contains("index_part")),
    ));
    let create = h.send_request(Request::CreateTimeline { tenant: T, timeline: TL });
    let (op, io) = h.held_io.pop().expect("the first index PUT went out");
    h.hold = None;
    let Io::RemotePut { key, .. } = io else { unreachable!() };
    let failed = super::super::io::IoError::remote(IoErrorKind::Transient, key.as_str(), "503");
    h.node.handle_io(h.now, WallTime(h.now.0), op, IoResult::Done(Err(failed)));
    h.settle();
    assert!(!h.replies.contains_key(&create), "answered before its first index is durable");
    let restart = h.send_restart(g.get() + 1);
    for _ in 0..50 {
        if h.replies.contains_key(&restart) {
            break;
        }
        h.tick(60_000);
    }
    assert!(restarted(h.replies.get(&restart).cloned()), "{:?}", h.replies.get(&restart));
    let answer = h.replies.get(&create);
    assert!(matches!(answer, Some(Err(ApiError::Unavailable { .. }))), "{answer:?}");
}

/// Found by the tenant fuzz target: a read waiting for a layer read when its
/// tenant stopped was answered "stopping" by the stop, and then again with its
/// value when the layer read completed while the stop drained. A read is answered
/// once: the first answer stands.
#[test]
fn a_read_answered_by_a_stop_is_not_answered_again_when_its_layer_read_completes() {
    let (world, last, _) = one_batch_then_shutdown(50);
    let mut h = start_until_active(world);
    let timeline_dir = crate::node::io::timeline_dir(T, TL);
    h.hold = Some(Box::new(move |io| {
        matches!(io, Io::DiskRead { path } if path.starts_with(&timeline_dir)
            && path.file_name() != Some(crate::node::io::METADATA_FILE_NAME))
    }));
    let read = h.send_request(Request::Read { tenant: T, timeline: TL, key: Key(3), lsn: last });
    assert!(!h.held_io.is_empty(), "no layer read went out");
    h.hold = None;
    h.send_request(Request::LocationConfig {
        tenant: T,
        request: LocationRequest::new(RequestedMode::Detached, None),
    });
    let first = h.replies.get(&read).cloned();
    assert!(matches!(first, Some(Err(ApiError::Unavailable { .. }))), "{first:?}");
    h.complete_held_io();
    assert_eq!(h.replies.get(&read).cloned(), first, "answered a second time");
}
