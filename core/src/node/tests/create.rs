//! Creates look in remote storage first and never write over what they find
//! (issue 15, items 2 and 5): a create over data is refused naming what is there; a
//! create over exactly what a create makes (a retry after a crash) succeeds.

use super::*;
use crate::tenant::{LocationRequest, RequestedMode};

/// The node's disk and its control-plane store are lost (a replacement machine);
/// remote storage is all that is left.
fn lose_local_state(world: &World) -> World {
    World { objects: world.objects.clone(), ..World::default() }
}

fn conflict(r: Result<Response, ApiError>) -> String {
    match r {
        Err(ApiError::Conflict(msg)) => msg,
        other => panic!("expected 409, got {other:?}"),
    }
}

#[test]
fn a_tenant_create_over_remote_data_is_refused_naming_it_and_an_attach_loads_it() {
    let mut h = Harness::start(World::default(), config());
    let (last, values) = tenant_with_data(&mut h);
    assert_eq!(h.call(Request::Shutdown), Ok(Response::ShutdownComplete { clean: true }));

    let mut h = Harness::start(lose_local_state(&h.world), config());
    assert_eq!(h.node.phase(), &NodePhase::Active, "{:?}", h.node.startup_warnings());
    let objects_before = h.world.objects.clone();
    let msg = conflict(h.call(Request::CreateTenant { tenant: T }));
    // It names the generation, the timelines and the highest LSN found, and what to do.
    assert!(msg.contains("generation g1"), "{msg}");
    assert!(msg.contains(&TL.to_string()), "{msg}");
    assert!(msg.contains(&format!("highest LSN {last}")), "{msg}");
    assert!(msg.contains("location_config"), "{msg}");
    // Nothing was written, nothing is attached: a timeline create finds no tenant.
    assert_eq!(h.world.objects, objects_before);
    assert!(h.node.tenant_manager().slot(T).is_none());
    assert!(matches!(
        h.call(Request::CreateTimeline { tenant: T, timeline: TL }),
        Err(ApiError::NotFound(_))
    ));

    // The operator's recovery: attach it. Everything visible is read back.
    let attach = LocationRequest::new(RequestedMode::AttachedSingle, None);
    h.call(Request::LocationConfig { tenant: T, request: attach }).unwrap();
    for (k, expected) in values.iter().enumerate() {
        assert_eq!(&read(&mut h, k as u64, last), expected, "key {k}");
    }
    // A create of the tenant or its timeline now: it exists.
    conflict(h.call(Request::CreateTenant { tenant: T }));
    let msg = conflict(h.call(Request::CreateTimeline { tenant: T, timeline: TL }));
    assert!(msg.contains(&format!("last ingested LSN {last}")), "{msg}");

    // A tenant nobody ever wrote is created as before.
    let other = TenantId([7; 16]);
    assert!(matches!(
        h.call(Request::CreateTenant { tenant: other }),
        Ok(Response::TenantCreated { .. })
    ));
}

#[test]
fn a_timeline_create_over_a_non_empty_remote_index_is_refused_naming_it() {
    // Remote storage holds TL with data (written under generation 1 of T) ...
    let mut a = Harness::start(World::default(), config());
    let (last, _) = tenant_with_data(&mut a);
    a.call(Request::Shutdown).unwrap();
    let theirs: BTreeMap<String, Vec<u8>> =
        a.world.objects.into_iter().filter(|(k, _)| k.contains(&TL.to_string())).collect();

    // ... that this node's T (also generation 1) never loaded.
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.world.objects.extend(theirs.clone());
    let msg = conflict(h.call(Request::CreateTimeline { tenant: T, timeline: TL }));
    assert!(msg.contains("index of generation g1"), "{msg}");
    assert!(msg.contains("disk_consistent_lsn"), "{msg}");
    assert!(msg.contains(&format!("highest LSN of any layer {last}")), "{msg}");
    // Not one object was written over it or next to it.
    let now: BTreeMap<String, Vec<u8>> =
        h.world.objects.clone().into_iter().filter(|(k, _)| k.contains(&TL.to_string())).collect();
    assert_eq!(now, theirs);
    assert!(matches!(info_of(&mut h), Err(ApiError::NotFound(_))));
}

fn info_of(h: &mut Harness) -> Result<Response, ApiError> {
    h.call(Request::TimelineInfo { tenant: T, timeline: TL })
}

/// Sends a timeline create and crashes the node right after its first index PUT
/// landed remotely, before the completion (and so the answer) came back.
fn create_timeline_then_crash_after_the_index_put(h: &mut Harness) -> (String, Vec<u8>) {
    let req = RequestId(1_000_000);
    h.node.handle_request(
        h.now,
        WallTime(h.now.0),
        req,
        Request::CreateTimeline { tenant: T, timeline: TL },
    );
    while let Some(effect) = h.node.poll_effect() {
        let NodeEffect::Io { op, io } = effect else { continue };
        let index_put = match &io {
            Io::RemotePut { key, bytes } if key.as_str().contains("index_part.json") => {
                Some((key.as_str().to_string(), bytes.clone()))
            }
            _ => None,
        };
        let result = h.world.execute(io);
        if let Some(put) = index_put {
            return put;
        }
        h.node.handle_io(h.now, WallTime(h.now.0), op, result);
    }
    panic!("no index PUT");
}

#[test]
fn a_create_retried_after_a_crash_that_lost_its_answer_succeeds() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    let (key, _) = create_timeline_then_crash_after_the_index_put(&mut h);
    assert!(h.world.objects.contains_key(&key));

    // Restart: start-up finds the index the crashed create wrote and loads the
    // timeline. The client never got an answer and retries: what exists is what the
    // create would make, so 201.
    let mut h = Harness::start(h.world.clone(), config());
    let r = h.call(Request::CreateTimeline { tenant: T, timeline: TL });
    let Ok(Response::TimelineCreated(created)) = r else { panic!("retry: {r:?}") };
    assert_eq!(created.state, "Active");
    assert_eq!(created.last_ingested_lsn, Lsn::ZERO);
    // A repeat is idempotent too, and the timeline works.
    assert!(matches!(
        h.call(Request::CreateTimeline { tenant: T, timeline: TL }),
        Ok(Response::TimelineCreated(_))
    ));
    h.call(Request::Ingest { tenant: T, timeline: TL, records: records(16, 20) }).unwrap();
    let msg = conflict(h.call(Request::CreateTimeline { tenant: T, timeline: TL }));
    assert!(msg.contains("already exists"), "{msg}");
}

#[test]
fn a_create_retried_after_its_late_index_put_landed_adopts_the_empty_index() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    let (key, bytes) = create_timeline_then_crash_after_the_index_put(&mut h);
    // The PUT was still in flight while the node restarted (remote storage paused):
    // start-up does not see it; it lands afterwards.
    h.world.objects.remove(&key);
    let mut h = Harness::start(h.world.clone(), config());
    assert!(matches!(info_of(&mut h), Err(ApiError::NotFound(_))));
    h.world.objects.insert(key.clone(), bytes);

    let r = h.call(Request::CreateTimeline { tenant: T, timeline: TL });
    let Ok(Response::TimelineCreated(created)) = r else { panic!("retry: {r:?}") };
    assert!(created.generation > Generation::new(1).unwrap());
    // The old empty index is still there (adopted, not overwritten), and ours is
    // durable next to it.
    assert!(h.world.objects.contains_key(&key));
    let indexes = h.world.objects.keys().filter(|k| k.contains("index_part.json")).count();
    assert_eq!(indexes, 2);
    // It works, across a restart too.
    let batch = records(16, 30);
    let last = batch.last().unwrap().lsn;
    h.call(Request::Ingest { tenant: T, timeline: TL, records: batch }).unwrap();
    let value = read(&mut h, 0, last);
    assert!(value.is_some());
    h.call(Request::Shutdown).unwrap();
    let mut h = Harness::start(h.world.clone(), config());
    assert_eq!(read(&mut h, 0, last), value);
}

use crate::generation::Generation;

/// Found by the tenant fuzz target: a timeline create on an AttachedStale tenant
/// started machines that upload nothing in that mode and waited for their first
/// index, so the request was never answered. It is refused (409) now.
#[test]
fn a_timeline_create_on_a_stale_tenant_is_refused_not_left_unanswered() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    let g = h.node.tenants[&T].generation;
    location(&mut h, RequestedMode::AttachedStale, Some(g.get())).unwrap();
    let msg = conflict(h.call(Request::CreateTimeline { tenant: T, timeline: TL }));
    assert!(msg.contains("attached stale"), "{msg}");
    assert!(!h.node.tenants[&T].timelines.contains_key(&TL));
    // Back in AttachedSingle, the create goes through.
    location(&mut h, RequestedMode::AttachedSingle, Some(g.get())).unwrap();
    assert!(matches!(
        h.call(Request::CreateTimeline { tenant: T, timeline: TL }),
        Ok(Response::TimelineCreated(_))
    ));
}
