//! Remote objects that are corrupt for good (issue 15 item 7): the timeline is
//! Broken with a named reason, listed so, and every request answers that reason
//! (500), never a 404 ("no such timeline") or a 503 ("retry and it will work").

use super::*;

/// A tenant with one timeline and data in several layers, shut down cleanly;
/// returns the world, the last LSN and the values at it.
fn stopped_with_data() -> (World, Lsn, Vec<Option<Vec<u8>>>) {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    let batch = records(16, 200);
    let last = batch.last().unwrap().lsn;
    h.call(Request::Ingest { tenant: T, timeline: TL, records: batch }).unwrap();
    let values = (0..7).map(|k| read(&mut h, k, last)).collect();
    assert_eq!(h.call(Request::Shutdown), Ok(Response::ShutdownComplete { clean: true }));
    (h.world.clone(), last, values)
}

fn assert_broken_corrupt(h: &mut Harness, object: &str) {
    let listed = listed(h, T);
    assert!(listed.timelines.contains(&TL), "{listed:?}");
    assert_eq!(listed.broken_timelines.len(), 1, "{listed:?}");
    let broken = &listed.broken_timelines[0];
    assert_eq!((broken.timeline, broken.kind.as_str()), (TL, "corrupt"), "{listed:?}");
    assert!(broken.reason.contains(object), "{broken:?} does not name {object}");
    for request in [
        Request::Read { tenant: T, timeline: TL, key: Key(1), lsn: Lsn(16) },
        Request::Ingest { tenant: T, timeline: TL, records: records(100_000, 1) },
    ] {
        match h.call(request.clone()) {
            Err(ApiError::Internal(msg)) => {
                assert!(msg.contains("corrupt") && msg.contains(object), "{request:?}: {msg}")
            }
            other => panic!("{request:?} answered {other:?}, not the corruption"),
        }
    }
}

/// A corrupted remote index used to make its timeline vanish (404, only a log line
/// said why). Now it is listed as broken (`corrupt`, naming the index) and every
/// request answers that, at start-up and when the tenant is attached again.
#[test]
fn a_corrupt_remote_index_lists_the_timeline_broken_and_answers_why() {
    let (mut world, _, _) = stopped_with_data();
    let index = world
        .objects
        .keys()
        .filter(|k| k.contains("index_part.json"))
        .max()
        .cloned()
        .expect("an index");
    world.objects.insert(index.clone(), b"{\"not an index".to_vec());

    let mut h = Harness::start(world, config());
    assert_eq!(h.node.phase(), &NodePhase::Active);
    assert_broken_corrupt(&mut h, &index);
    match h.call(Request::TimelineInfo { tenant: T, timeline: TL }) {
        Err(ApiError::Internal(msg)) => assert!(msg.contains(&index), "{msg}"),
        other => panic!("info answered {other:?}"),
    }
    // It is not a free name: creating it again is refused, nothing is written over
    // the corrupt index.
    let objects_before = h.world.objects.clone();
    assert!(matches!(
        h.call(Request::CreateTimeline { tenant: T, timeline: TL }),
        Err(ApiError::Conflict(_))
    ));
    assert!(matches!(
        h.call(Request::DeleteTimeline { tenant: T, timeline: TL }),
        Err(ApiError::Internal(_))
    ));
    // Deleting the tenant could not delete that timeline's objects: refused.
    assert!(matches!(h.call(Request::DeleteTenant { tenant: T }), Err(ApiError::Conflict(_))));
    assert_eq!(h.world.objects, objects_before, "something was written over the corrupt index");

    // Detach and attach again: the same answer.
    let detached = RequestedMode::Detached;
    location(&mut h, detached, None).unwrap();
    location(&mut h, RequestedMode::AttachedSingle, None).unwrap();
    assert_broken_corrupt(&mut h, &index);
}

/// A corrupted remote layer, downloaded on demand, used to answer 503 + Retry-After
/// on every read although no retry could help. Now the read answers the typed
/// corruption (500 naming the object) and the timeline is Broken, listed as
/// `corrupt`.
#[test]
fn a_corrupt_remote_layer_fails_the_read_with_the_corruption_not_a_retry() {
    let (mut world, last, _) = stopped_with_data();
    // Every local layer file gone (as after eviction), every remote layer corrupted
    // (same size, one byte flipped).
    world.files.retain(|p, _| !p.as_str().contains("__"));
    let layers: Vec<String> = world
        .objects
        .keys()
        .filter(|k| k.contains("/timelines/") && k.contains("__"))
        .cloned()
        .collect();
    assert!(!layers.is_empty());
    for key in &layers {
        let bytes = world.objects.get_mut(key).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xFF;
    }

    let mut h = Harness::start(world, config());
    assert_eq!(info(&mut h).state, "Active", "nothing is read before a read needs it");
    match h.call(Request::Read { tenant: T, timeline: TL, key: Key(3), lsn: last }) {
        Err(ApiError::Internal(msg)) => {
            assert!(msg.contains("corrupt"), "{msg}");
            assert!(layers.iter().any(|l| msg.contains(l.as_str())), "no object named: {msg}");
        }
        other => panic!("the read answered {other:?}, not the corruption"),
    }
    let i = info(&mut h);
    assert!(i.state.starts_with("Broken: corrupt: remote object "), "{i:?}");
    let listed = listed(&mut h, T);
    assert_eq!(listed.broken_timelines.len(), 1, "{listed:?}");
    assert_eq!(listed.broken_timelines[0].kind, "corrupt");
    // Later reads answer the same, at once.
    assert!(matches!(
        h.call(Request::Read { tenant: T, timeline: TL, key: Key(4), lsn: last }),
        Err(ApiError::Internal(msg)) if msg.contains("corrupt")
    ));
}

/// A timeline broken by a corrupt layer stops its background work: compaction
/// would otherwise download the corrupt object again after every backoff, forever.
#[test]
fn a_timeline_broken_by_corruption_stops_downloading_it_again() {
    let (mut world, last, _) = stopped_with_data();
    world.files.retain(|p, _| !p.as_str().contains("__"));
    for (key, bytes) in world.objects.iter_mut() {
        if key.contains("/timelines/") && key.contains("__") {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xFF;
        }
    }
    let mut c = config();
    c.timeline.compaction_threshold_layers = 2;
    let mut h = Harness::start(world, c);
    let _ = h.call(Request::Read { tenant: T, timeline: TL, key: Key(3), lsn: last });
    assert!(info(&mut h).state.starts_with("Broken: corrupt"));
    h.node.drain_trace();
    for _ in 0..200 {
        if !h.tick(60_000) {
            break;
        }
    }
    let gets: Vec<String> = h
        .node
        .drain_trace()
        .into_iter()
        .map(|l| l.what)
        .filter(|w| w.starts_with("RemoteGet") && w.contains("/timelines/"))
        .collect();
    assert!(gets.is_empty(), "a broken timeline kept downloading: {gets:?}");
}

/// A corrupt local layer (bytes that do not match the CRC32C the layer map
/// records) of a layer that is in remote storage is replaced from there: the read
/// downloads it again and answers the right value.
#[test]
fn a_corrupt_local_layer_is_downloaded_again_from_remote_storage() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    let batch = records(16, 100);
    let last = batch.last().unwrap().lsn;
    h.call(Request::Ingest { tenant: T, timeline: TL, records: batch }).unwrap();
    wait_visible(&mut h, last);
    let expected: Vec<_> = (0..7).map(|k| read(&mut h, k, last)).collect();
    h.call(Request::Shutdown).unwrap();
    let mut world = h.world.clone();
    let layers: Vec<Utf8PathBuf> = world
        .files
        .keys()
        .filter(|p| p.as_str().contains("/timelines/") && p.as_str().contains("__"))
        .cloned()
        .collect();
    assert!(!layers.is_empty());
    for p in &layers {
        let bytes = world.files.get_mut(p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF; // same size: start-up keeps it as resident
    }
    let mut h = Harness::start(world, config());
    for (k, value) in expected.iter().enumerate() {
        assert_eq!(&read(&mut h, k as u64, last), value, "key {k}");
    }
    assert!(listed(&mut h, T).broken_timelines.is_empty());
}

/// A corrupt local copy of a layer not yet in remote storage cannot be replaced:
/// it is never uploaded; the upload fails `Corrupt` and the timeline goes Broken
/// naming it (a typed error, not a corrupt object in remote storage).
#[test]
fn a_corrupt_local_layer_not_yet_uploaded_is_never_uploaded() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    h.world.deny_remote_writes = true;
    let batch = records(16, 100);
    h.call(Request::Ingest { tenant: T, timeline: TL, records: batch }).unwrap();
    h.run_for(5_000);
    let layers: Vec<Utf8PathBuf> = h
        .world
        .files
        .keys()
        .filter(|p| p.as_str().contains("/timelines/") && p.as_str().contains("__"))
        .cloned()
        .collect();
    assert!(!layers.is_empty(), "flushed, not uploaded");
    for p in &layers {
        let bytes = h.world.files.get_mut(p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
    }
    h.world.deny_remote_writes = false;
    h.run_for(60_000);
    for p in &layers {
        let name = p.file_name().unwrap();
        assert!(
            !h.world.objects.keys().any(|k| k.contains(name)),
            "a corrupt local layer {name} was uploaded"
        );
    }
    let broken = listed(&mut h, T).broken_timelines;
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(broken[0].reason.contains("corrupt"), "{broken:?}");
}

/// A download the size and CRC32C check refuses is tried again, up to
/// `CORRUPT_DOWNLOAD_ATTEMPTS` times: a corruption on the way (here the first
/// attempts' bodies have a flipped byte; the stored object is intact) costs a
/// few downloads, not the timeline, and the read answers the value. Only a
/// refusal every time breaks the timeline, after exactly that many downloads.
#[test]
fn a_download_refused_by_its_check_is_retried_before_the_object_is_called_corrupt() {
    use crate::node::completions::CORRUPT_DOWNLOAD_ATTEMPTS;
    let downloads = |h: &mut Harness| {
        h.node
            .drain_trace()
            .into_iter()
            .filter(|l| l.what.starts_with("RemoteGetFile") && l.what.contains("/timelines/"))
            .count() as u32
    };
    let (mut world, last, values) = stopped_with_data();
    world.files.retain(|p, _| !p.as_str().contains("__"));
    const {
        assert!(
            CORRUPT_DOWNLOAD_ATTEMPTS >= 2,
            "a corruption on the way must not break the timeline"
        )
    };
    world.corrupt_downloads = CORRUPT_DOWNLOAD_ATTEMPTS - 1;
    let mut h = Harness::start(world.clone(), config());
    h.node.drain_trace();
    let r = h.call(Request::Read { tenant: T, timeline: TL, key: Key(3), lsn: last });
    assert!(matches!(&r, Ok(Response::Value { value, .. }) if *value == values[3]), "{r:?}");
    assert_eq!(info(&mut h).state, "Active");
    assert_eq!(h.world.corrupt_downloads, 0, "every corrupted body was refused");
    assert!(downloads(&mut h) >= CORRUPT_DOWNLOAD_ATTEMPTS, "retried, not given up");

    world.corrupt_downloads = u32::MAX;
    let mut h = Harness::start(world, config());
    h.node.drain_trace();
    let r = h.call(Request::Read { tenant: T, timeline: TL, key: Key(3), lsn: last });
    assert!(matches!(&r, Err(ApiError::Internal(m)) if m.contains("corrupt")), "{r:?}");
    assert!(info(&mut h).state.starts_with("Broken: corrupt"));
    assert_eq!(downloads(&mut h), CORRUPT_DOWNLOAD_ATTEMPTS, "downloads before giving up");
}
