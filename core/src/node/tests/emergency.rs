//! Emergency mode: the control plane's store fails at start-up; the node serves on
//! its local generation and writes nothing remote until re-attach succeeds.

use super::*;

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

/// Leaving emergency mode waits until no tenant has I/O in flight, tenant by
/// tenant as each one's ops complete (no sweep). A tenant that had drained and
/// then sends an op again (a flush's layer write) drains again: start-up does not go
/// on while that write is in flight, or the old incarnation's write could land
/// where the new one reads.
#[test]
fn leaving_emergency_waits_for_a_tenant_that_sent_an_op_after_it_had_drained() {
    use crate::node::emergency::Emergency;
    let b = TenantId([5; 16]);
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    h.call(Request::CreateTenant { tenant: b }).unwrap();
    h.call(Request::CreateTimeline { tenant: b, timeline: TL }).unwrap();
    h.call(Request::Shutdown).unwrap();
    let mut world = h.world.clone();
    world.store_failures = 3;
    let mut h = Harness::start(world, config());
    assert!(h.node.in_emergency());
    let layer_write = |io: &Io| {
        matches!(io, Io::DiskWrite { path, .. } if path.as_str().contains("/timelines/")
            && path.file_name() != Some(crate::node::io::METADATA_FILE_NAME))
    };
    h.hold = Some(Box::new(layer_write));
    // T flushes a layer whose write stays in flight.
    let last = h.node.tenants[&T].timelines[&TL].timeline.last_ingested_lsn();
    h.ingest(records(last.0 + 8, 120)).unwrap();
    assert_eq!(h.held_io.len(), 1, "T's layer write did not go out");
    for _ in 0..50 {
        if matches!(h.node.emergency, Some(Emergency::Leaving { .. })) {
            break;
        }
        assert!(h.tick(120_000), "re-attach never succeeded");
    }
    assert!(matches!(h.node.emergency, Some(Emergency::Leaving { .. })), "not leaving");
    // B, idle so far (drained), now flushes a layer too.
    let request = Request::Ingest { tenant: b, timeline: TL, records: records(16, 120) };
    assert!(matches!(h.call(request), Ok(Response::Ingested { .. })));
    assert_eq!(h.held_io.len(), 2, "B's layer write did not go out");
    // T's write completes: T drains, but B's write is still in flight.
    let t_dir = crate::node::io::tenant_dir(T);
    let (of_t, of_b): (Vec<_>, Vec<_>) = std::mem::take(&mut h.held_io)
        .into_iter()
        .partition(|(_, io)| matches!(io, Io::DiskWrite { path, .. } if path.starts_with(&t_dir)));
    h.held_io = of_b;
    h.hold = None;
    for (op, io) in of_t {
        let result = h.world.execute(io);
        h.node.handle_io(h.now, WallTime(h.now.0), op, result);
        h.settle();
    }
    assert!(
        matches!(h.node.emergency, Some(Emergency::Leaving { .. })),
        "start-up went on with B's layer write in flight"
    );
    // B's write completes: start-up goes on, every tenant on a new generation.
    let (op, io) = h.held_io.pop().expect("B's write");
    let result = h.world.execute(io);
    h.node.handle_io(h.now, WallTime(h.now.0), op, result);
    h.settle();
    for _ in 0..50 {
        if !h.node.in_emergency() && h.node.phase() == &NodePhase::Active {
            break;
        }
        assert!(h.tick(120_000), "stuck leaving emergency mode");
    }
    assert!(!h.node.in_emergency());
    assert_eq!(h.node.tenants.len(), 2);
}
