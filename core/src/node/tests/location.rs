//! The tenant manager through the node: detach and attach, mode changes within a
//! generation and across generations, the no-waiting rule for a tenant in progress
//! (S-NO-DEADLOCK), leftovers of a crashed detach, and what each attached mode may
//! write (S-SINGLE-WRITER).

use super::*;

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
    let conf =
        String::from_utf8(h.world.files[&crate::node::io::location_conf_path(T)].clone()).unwrap();
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
    let detach = LocationRequest::new(RequestedMode::Detached, None);
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

// ---- S-SINGLE-WRITER through location_config ----

/// Ingests `batches` batches and lets time pass (flushes, compaction, timers).
pub(super) fn churn(h: &mut Harness, batches: u64) {
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

/// Found by the tenant fuzz target: a read answered with an error stayed in its
/// tenant's waiting reads, and the tenant's next stop answered it a second time
/// ("tenant is stopping"). A read leaves the waiting reads when it is answered,
/// however.
#[test]
fn a_read_answered_with_an_error_is_not_answered_again_at_a_stop() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    // Nothing ingested: a read above the last LSN ingested is an error.
    let first = h.call(Request::Read { tenant: T, timeline: TL, key: Key(0), lsn: Lsn(16) });
    assert!(first.is_err(), "{first:?}");
    assert!(h.node.tenants[&T].reads.is_empty(), "the answered read still waits");
    let read = RequestId(h.next_req - 1);
    location(&mut h, RequestedMode::Detached, None).unwrap();
    assert_eq!(h.replies.get(&read), None, "answered again at the stop");
}
