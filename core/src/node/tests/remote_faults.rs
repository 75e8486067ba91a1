//! Remote failures an operator must fix (issue 15 item 6): they are retried with
//! capped backoff while the timeline keeps serving; they never break it.

use super::deletion::wait_deleted;
use super::*;
use crate::layer_name::LayerName;

/// A remote directory made read-only (EACCES on every PUT and DELETE) used to break
/// the timeline for good: ingest and reads answered 500 even after the directory
/// was writable again. Now uploads are retried with capped backoff: reads and
/// ingest keep working, the visible LSN waits, and once the operator fixes the
/// permissions everything ingested becomes visible.
#[test]
fn access_denied_uploads_are_retried_until_fixed_while_reads_keep_working() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    let first = records(16, 100);
    let first_last = first.last().unwrap().lsn;
    h.call(Request::Ingest { tenant: T, timeline: TL, records: first }).unwrap();
    h.run_for(30_000);
    assert_eq!(info(&mut h).remote_consistent_lsn_visible, first_last);

    h.world.deny_remote_writes = true;
    let second = records(first_last.0 + 8, 200);
    let second_last = second.last().unwrap().lsn;
    h.call(Request::Ingest { tenant: T, timeline: TL, records: second }).unwrap();
    let denied_before = h.world.denied_writes;
    // Ten minutes of refusals: far past any retry budget a "transient" error might have.
    let minutes = 10;
    h.run_for(minutes * 60_000);
    let denied = h.world.denied_writes - denied_before;
    let i = info(&mut h);
    assert_eq!(i.state, "Active", "an operator-fixable failure broke the timeline");
    assert_eq!(i.last_ingested_lsn, second_last);
    assert_eq!(i.remote_consistent_lsn_visible, first_last, "visible must wait for the upload");
    // Retried all along, with the backoff capped (not given up, not stretched out).
    let cap_ms = h.node.config.upload.backoff_max_ms;
    assert!(
        denied >= minutes * 60_000 / cap_ms,
        "{denied} refused writes in {minutes} min: the retry backoff is not capped at {cap_ms} ms"
    );
    // Reads keep working, of flushed and unflushed data alike; ingest too.
    let expected: Vec<_> = (0..7).map(|k| read(&mut h, k, second_last)).collect();
    assert!(expected.iter().all(Option::is_some), "{expected:?}");
    let third = records(second_last.0 + 8, 20);
    let third_last = third.last().unwrap().lsn;
    assert!(matches!(
        h.call(Request::Ingest { tenant: T, timeline: TL, records: third }),
        Ok(Response::Ingested { .. })
    ));

    // The operator makes the directory writable again: everything becomes visible.
    h.world.deny_remote_writes = false;
    h.call(Request::Shutdown).unwrap();
    assert_eq!(h.stopped.as_ref().map(|s| s.0), Some(true), "{:?}", h.stopped);
    let mut h = Harness::start(h.world.clone(), config());
    let i = info(&mut h);
    assert_eq!((i.state.as_str(), i.last_ingested_lsn), ("Active", third_last));
    for (k, value) in expected.iter().enumerate() {
        assert_eq!(&read(&mut h, k as u64, second_last), value, "key {k} after the restart");
    }
}

/// Timeline deletion under a read-only remote directory waits (its tombstone and
/// deletes are retried), and finishes once the directory is writable again.
#[test]
fn access_denied_deletions_wait_for_the_operator_and_then_finish() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    h.call(Request::Ingest { tenant: T, timeline: TL, records: records(16, 100) }).unwrap();
    h.run_for(30_000);
    h.world.deny_remote_writes = true;
    // Answered once the tombstone is durable: not while it is refused.
    let req = RequestId(1_000_000);
    let delete = Request::DeleteTimeline { tenant: T, timeline: TL };
    h.node.handle_request(h.now, WallTime(h.now.0), req, delete);
    h.settle();
    h.run_for(5 * 60_000);
    assert_eq!(h.replies.remove(&req), None, "answered before the tombstone was durable");
    assert!(h.world.denied_writes > 0);
    h.world.deny_remote_writes = false;
    h.run_for(60_000);
    assert_eq!(h.replies.remove(&req), Some(Ok(Response::TimelineDeleting)));
    wait_deleted(&mut h);
}

/// Remote storage refusing reads at start-up (S3 `AccessDenied` on the listing and
/// the index GET) used to drop the tenant or the timeline (404): start-up now waits
/// and retries with backoff, then loads everything once access is fixed.
#[test]
fn access_denied_reads_at_start_up_are_retried_until_fixed() {
    let (mut world, last, before) = one_batch_then_shutdown(50);
    world.denied_reads = 6;
    let mut h = start_until_active(world);
    assert_eq!(info(&mut h).last_ingested_lsn, last);
    assert_eq!(read(&mut h, 3, last), before);
    assert_eq!(h.world.denied_reads, 0, "the refusals were not all met");
}

/// A layer whose local file is gone when its upload runs: the adapter reports the
/// local path missing, and the node makes it permanent (no retry can bring the file
/// back), so the upload queue is Broken instead of retrying a missing file forever;
/// nothing of that layer reaches remote storage, and nothing is made visible above
/// what was.
#[test]
fn a_layer_upload_whose_local_file_is_gone_is_permanent() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    let first = records(16, 100);
    let first_last = first.last().unwrap().lsn;
    h.call(Request::Ingest { tenant: T, timeline: TL, records: first }).unwrap();
    h.run_for(30_000);
    assert_eq!(info(&mut h).remote_consistent_lsn_visible, first_last);
    let objects_before = h.world.objects.clone();

    h.world.lose_files_before_upload = true;
    h.call(Request::Ingest { tenant: T, timeline: TL, records: records(first_last.0 + 8, 100) })
        .unwrap();
    let writes_before = h.world.remote_writes;
    h.run_for(10 * 60_000);
    assert_eq!(h.world.objects, objects_before, "a layer without its local file was uploaded");
    assert_eq!(h.world.remote_writes, writes_before, "the missing file was retried");
    match h.call(Request::TimelineInfo { tenant: T, timeline: TL }) {
        Ok(Response::TimelineInfo(i)) => {
            assert!(i.state.starts_with("Broken"), "{}", i.state);
            assert_eq!(i.remote_consistent_lsn_visible, first_last);
        }
        Err(ApiError::Internal(m)) => assert!(m.contains("broken"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Cluster seed 3636 (LOCAL-READ): layer uploads are slow (held in flight) when
/// compaction replaces their layers and asks for the local files to be removed.
/// Each removal waits for its upload: the uploads read whole files, the timeline
/// stays Active, everything ingested becomes visible, and the replaced layers'
/// files are removed after. Before, the files were removed at once, an upload found
/// none (a permanent error) and the timeline was Broken for good.
#[test]
fn compaction_of_layers_whose_uploads_are_in_flight_keeps_their_files_for_them() {
    let mut c = config();
    c.timeline.compaction_threshold_layers = 2;
    c.timeline.checkpoint_distance_bytes = 256;
    let mut h = Harness::start(World::default(), c);
    tenant_with_data(&mut h);
    let prefix = crate::remote_path::timeline_prefix(T, TL);
    h.hold = Some(Box::new(
        move |io| matches!(io, Io::RemotePutFile { key, .. } if key.as_str().starts_with(&prefix)),
    ));
    let mut last = Lsn(0);
    for round in 0..4 {
        let batch = records(2_000 + round * 400, 50);
        last = batch.last().unwrap().lsn;
        h.call(Request::Ingest { tenant: T, timeline: TL, records: batch }).unwrap();
        h.run_for(5_000);
    }
    h.hold = None;
    let held: Vec<LayerName> = h
        .held_io
        .iter()
        .filter_map(|(_, io)| match io {
            Io::RemotePutFile { path, .. } => path.file_name()?.parse().ok(),
            _ => None,
        })
        .collect();
    let tl = &h.node.tenants[&T].timelines[&TL].timeline;
    let replaced: Vec<LayerName> = held.into_iter().filter(|n| tl.layer(n).is_none()).collect();
    assert!(!replaced.is_empty(), "no layer was compacted away under its upload");
    for name in &replaced {
        let path = crate::node::io::layer_path(T, TL, name);
        assert!(h.world.files.contains_key(&path), "{name} removed under its upload");
    }

    for (op, io) in std::mem::take(&mut h.held_io) {
        let result = h.world.execute(io);
        h.node.handle_io(h.now, WallTime(h.now.0), op, result);
        h.settle();
    }
    wait_visible(&mut h, last);
    assert_eq!(info(&mut h).state, "Active");
    for name in &replaced {
        let path = crate::node::io::layer_path(T, TL, name);
        assert!(!h.world.files.contains_key(&path), "{name}'s file outlived its upload");
    }
}

/// `Node::queue_counts` (the upload-queue metrics) sees uploads held back by a
/// refusing remote, and sees the queues empty once they all landed.
#[test]
fn queue_counts_show_uploads_waiting_on_a_refusing_remote_and_none_after() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    h.run_for(30_000);
    let idle = h.node.queue_counts();
    assert_eq!((idle.upload_queued, idle.upload_in_flight), (0, 0), "{idle:?}");
    h.world.deny_remote_writes = true;
    let batch = records(16, 200);
    let last = batch.last().unwrap().lsn;
    h.call(Request::Ingest { tenant: T, timeline: TL, records: batch }).unwrap();
    h.run_for(120_000);
    let held = h.node.queue_counts();
    assert!(held.upload_queued + held.upload_in_flight > 0, "{held:?}");
    h.world.deny_remote_writes = false;
    wait_visible(&mut h, last);
    let done = h.node.queue_counts();
    assert_eq!((done.upload_queued, done.upload_in_flight), (0, 0), "{done:?}");
}
