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
