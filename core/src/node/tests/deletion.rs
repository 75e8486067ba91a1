//! Deletion through the node: a timeline (tombstone, objects, leftovers by listing;
//! answered once the tombstone is durable; resumed after a crash or a mode change)
//! and a tenant (deletion mark, every timeline, then the tenant; resumed after a
//! crash); only an AttachedSingle node deletes (S-SINGLE-WRITER).

use super::*;

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

pub(super) fn wait_deleted(h: &mut Harness) {
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
    let dir = crate::node::io::timeline_dir(T, TL);
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

/// Found by the tenant fuzz target: a timeline's tombstone PUT refused for good
/// (a permanent error) broke its upload queue in the middle of the deletion; the
/// node ignored a break of a timeline being deleted, so the timeline stayed
/// `Deleting` with nothing left to do and the tenant deletion waited for it
/// forever, unanswered. The deletion now fails: its timeline is broken and the
/// request is answered with the error.
#[test]
fn a_tombstone_refused_for_good_fails_the_tenant_deletion_instead_of_hanging() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    h.hold = Some(Box::new(
        |io| matches!(io, Io::RemotePut { key, .. } if key.as_str().contains("index_part")),
    ));
    let (now, wall) = (h.now, WallTime(h.now.0));
    h.node.handle_request(now, wall, RequestId(9_500), Request::DeleteTenant { tenant: T });
    h.settle();
    let (op, io) = h.held_io.pop().expect("the tombstone PUT went out");
    h.hold = None;
    let Io::RemotePut { key, .. } = io else { unreachable!() };
    let refused =
        super::super::io::IoError::remote(IoErrorKind::Permanent, key.as_str(), "400 (test)");
    h.node.handle_io(now, wall, op, IoResult::Done(Err(refused)));
    h.settle();
    for _ in 0..50 {
        if h.replies.contains_key(&RequestId(9_500)) {
            break;
        }
        h.tick(60_000);
    }
    let reply = h.replies.get(&RequestId(9_500));
    assert!(matches!(reply, Some(Err(ApiError::Internal(_)))), "{reply:?}");
    assert!(matches!(h.node.tenants[&T].timelines[&TL].state, super::super::SlotState::Broken(_)));
}

/// Deletion lists this node queued while it held the tenant AttachedSingle, left
/// unvalidated on its disk by a crash after its config became AttachedMulti (a
/// mode change whose cancels were not durable yet): at the next start the tenant
/// loads AttachedMulti and its lists are dropped, never validated nor executed.
/// Before, re-attach's `previous_was_own` adopted them whatever the mode, and the
/// destination of a migration deleted objects (cluster seed 302).
#[test]
fn lists_of_a_tenant_loading_attached_multi_are_not_adopted() {
    use crate::location_conf::{LocationConf, LocationMode};
    let mut h = Harness::start(World::default(), config());
    let (last, _) = tenant_with_data(&mut h);
    // More data while validations fail: compaction queues deletions on disk that
    // no validation confirms.
    h.world.unreachable_validations = u32::MAX;
    let mut lsn = last.0;
    for _ in 0..6 {
        let batch = records(lsn + 8, 120);
        lsn = batch.last().unwrap().lsn.0;
        h.call(Request::Ingest { tenant: T, timeline: TL, records: batch }).unwrap();
        h.tick(10_000);
    }
    let lists = |w: &World| w.files.keys().filter(|p| p.as_str().ends_with(".list")).count();
    assert!(lists(&h.world) > 0, "no deletion list on disk");
    let deletes_before = h.world.deletes_per_key.len();

    // Crash; the config says AttachedMulti on the same generation.
    let mut world = h.world.clone();
    world.unreachable_validations = 0;
    let path = crate::node::io::location_conf_path(T);
    let text = String::from_utf8(world.files[&path].clone()).unwrap();
    let mut conf = LocationConf::from_toml(&text).unwrap();
    let generation = conf.mode.generation().unwrap();
    conf.mode = LocationMode::AttachedMulti { generation };
    world.files.insert(path, conf.to_toml().into_bytes());
    let mut h = Harness::start(world, config());
    for _ in 0..30 {
        h.tick(10_000);
    }
    assert!(matches!(h.node.tenants[&T].mode, LocationMode::AttachedMulti { .. }));
    let dq = h.node.dq.as_ref().unwrap().stats();
    assert!(dq.keys_dropped_at_recovery_total > 0, "{dq:?}");
    assert_eq!(dq.keys_executed_total, 0, "{dq:?}");
    assert_eq!(h.world.deletes_per_key.len(), deletes_before, "a Multi tenant deleted");
}

/// A deletion list that cannot be read at a start (EIO) and that the header does not
/// count as validated is removed at recovery (its objects leak). Left in place, as
/// before, the next start read it after this life's validations had moved the
/// header past its sequence, and executed it as validated: an object was deleted
/// that no validation ever covered (S-DEL-GEN; found reading the code behind the
/// simulator's `disk.read.meta_eio`).
#[test]
fn an_unreadable_unvalidated_list_is_never_executed_later() {
    use crate::deletion_list::{
        DELETION_HEADER_FILE_NAME, DeletionHeader, DeletionList, TenantDeletions,
    };
    use crate::node::io::deletion_path;
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    let generation = h.node.tenants[&T].mode.generation().unwrap();
    let prefix = crate::remote_path::timeline_prefix(T, TL);
    // Two objects no index names: list 3 (unvalidated) would delete one, list 4
    // (unvalidated, of this node's generation) the other.
    let mut world = h.world.clone();
    let list = |seq: u64, name: &str| {
        let mut list = DeletionList::new(seq);
        let timelines = [(TL, vec![name.to_string()])].into_iter().collect();
        list.tenants.insert(T, TenantDeletions { generation, timelines });
        list.to_json_bytes()
    };
    for name in ["never-validated", "validated"] {
        world.objects.insert(format!("{prefix}{name}"), b"x".to_vec());
    }
    let unreadable = deletion_path(&DeletionList::file_name(3));
    world.files.insert(unreadable.clone(), list(3, "never-validated"));
    world.files.insert(deletion_path(&DeletionList::file_name(4)), list(4, "validated"));
    let header = deletion_path(DELETION_HEADER_FILE_NAME);
    world.files.insert(header.clone(), DeletionHeader::new(2).to_json_bytes());
    world.eio_reads.insert(unreadable.clone());

    // A start that cannot read list 3: list 4 is validated and executed, and the
    // header moves past 3.
    let mut h = Harness::start(world, config());
    for _ in 0..30 {
        h.tick(10_000);
    }
    assert!(!h.world.objects.contains_key(&format!("{prefix}validated")), "list 4 not executed");
    let validated = DeletionHeader::from_json_bytes(&h.world.files[&header]).unwrap();
    assert!(validated.validated_sequence >= 3, "{validated:?}");
    assert!(!h.world.files.contains_key(&unreadable), "the unreadable list was left in place");

    // The next start can read every file: nothing of list 3 is deleted.
    let mut world = h.world.clone();
    world.eio_reads.clear();
    let mut h = Harness::start(world, config());
    for _ in 0..30 {
        h.tick(10_000);
    }
    let key = format!("{prefix}never-validated");
    assert!(h.world.objects.contains_key(&key), "an unvalidated list was executed");
}
