//! Issue 15 item 9, S-GEN-MONO (two attachments never share one generation): two
//! nodes with separate control-plane stores on one remote storage. A creates T at
//! generation 1; B, whose store has never seen T, attaches it at generation 2; both
//! ingest different values at the same LSNs and see them visible. When A restarts,
//! its control plane would grant generation 2 again and A would load B's index and
//! serve B's values at LSNs it had reported visible. A must instead find the
//! generation its control plane never granted and keep T Broken, naming it.

use super::*;

fn images(from: u64, n: u64, tag: u8) -> Vec<IngestRecord> {
    (0..n)
        .map(|i| IngestRecord {
            key: Key(i % 7),
            lsn: Lsn(from + i * 8),
            record: Record::Image(vec![tag; 40 + i as usize % 3]),
        })
        .collect()
}

const OTHER: TenantId = TenantId([5; 16]);

/// A (store A) created T at generation 1 and B (store B, same remote storage)
/// attached it at generation 2; both ingested different values at the same LSNs,
/// saw them visible and stopped. Returns A's world (with the shared objects), B's,
/// and the last LSN.
fn two_control_planes_one_remote() -> (World, World, Lsn) {
    // A creates T at generation 1.
    let mut a = Harness::start(World::default(), config());
    a.call(Request::CreateTenant { tenant: T }).unwrap();
    a.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    assert_eq!(a.world.store[&T].generation.get(), 1);
    // And another tenant of A's alone, which every re-attach bumps.
    a.call(Request::CreateTenant { tenant: OTHER }).unwrap();

    // B: its own (empty) store, the same remote storage; attaches T at generation 2.
    let mut b_world = World { objects: a.world.objects.clone(), ..World::default() };
    b_world.store.clear();
    let mut b = Harness::start(b_world, NodeConfig::new(NodeId(2)));
    let r = location(&mut b, RequestedMode::AttachedSingle, None);
    assert!(matches!(r, Ok(Response::LocationConfigured(_))), "{r:?}");
    assert_eq!(b.world.store[&T].generation.get(), 2);

    // Both ingest different values at the same LSNs; both see them visible.
    let (mine, theirs) = (images(16, 60, 0xA), images(16, 60, 0xB));
    let last = mine.last().unwrap().lsn;
    a.call(Request::Ingest { tenant: T, timeline: TL, records: mine }).unwrap();
    b.call(Request::Ingest { tenant: T, timeline: TL, records: theirs }).unwrap();
    wait_visible(&mut a, last);
    wait_visible(&mut b, last);
    let a_values: Vec<_> = (0..7).map(|k| read(&mut a, k, last)).collect();
    assert!(a_values.iter().all(|v| v.as_ref().is_some_and(|v| v[0] == 0xA)));
    a.call(Request::Shutdown).unwrap();
    b.call(Request::Shutdown).unwrap();

    let mut world = a.world.clone();
    world.objects.extend(b.world.objects.clone());
    (world, b.world.clone(), last)
}

#[test]
fn s_gen_mono_a_generation_another_control_plane_granted_breaks_the_tenant_instead_of_serving_it() {
    let (world, b_world, last) = two_control_planes_one_remote();
    // A restarts on the shared remote storage.
    let mut a = Harness::start(world, config());
    assert_eq!(a.node.phase(), &NodePhase::Active);
    let t = listed(&mut a, T);
    let reason = t.reason.clone().unwrap_or_default();
    assert_eq!(t.state, "Broken", "A serves T again: {t:?}");
    assert!(reason.contains("generation 2") && reason.contains("S-GEN-MONO"), "{reason}");
    match a.call(Request::Read { tenant: T, timeline: TL, key: Key(1), lsn: last }) {
        Err(ApiError::Internal(msg)) => assert!(msg.contains("generation 2"), "{msg}"),
        other => panic!("A answered a read of T with {other:?}"),
    }
    assert_eq!(a.node.generation_conflicts_total(), 1);
    // Nothing was granted over the conflict, so the next start finds it again.
    assert_eq!(a.world.store[&T].generation.get(), 1);
    a.call(Request::Shutdown).unwrap();
    let mut a = Harness::start(a.world.clone(), config());
    assert_eq!(listed(&mut a, T).state, "Broken");
    assert_eq!(a.world.store[&T].generation.get(), 1);

    // On attach: detached, then attached again, A looks before it is granted
    // anything, and refuses every time.
    let r = location(&mut a, RequestedMode::Detached, None);
    assert!(matches!(r, Ok(Response::LocationConfigured(_))), "{r:?}");
    for _ in 0..2 {
        match location(&mut a, RequestedMode::AttachedSingle, None) {
            Err(ApiError::Internal(msg)) => assert!(msg.contains("generation 2"), "{msg}"),
            other => panic!("A attached T over B's generation: {other:?}"),
        }
        assert_eq!(a.world.store[&T].generation.get(), 1);
    }
    assert_eq!(a.node.generation_conflicts_total(), 3);

    // B, whose control plane granted generation 2, restarts and serves its values.
    let mut world = b_world;
    world.objects = a.world.objects.clone();
    let mut b = Harness::start(world, NodeConfig::new(NodeId(2)));
    assert_eq!(b.node.generation_conflicts_total(), 0);
    assert!(read(&mut b, 1, last).is_some_and(|v| v[0] == 0xB));
}

/// The same conflict found while the control plane's store fails (emergency mode):
/// T is held back, not loaded on its old generation, and still not re-attached once
/// the store answers again.
#[test]
fn s_gen_mono_a_conflicting_tenant_stays_out_through_emergency_mode() {
    let (mut world, _, last) = two_control_planes_one_remote();
    world.store_failures = 3;
    let mut a = Harness::start(world, config());
    assert!(a.node.in_emergency());
    assert_eq!(listed(&mut a, T).state, "Broken");
    assert!(matches!(
        a.call(Request::Read { tenant: T, timeline: TL, key: Key(1), lsn: last }),
        Err(ApiError::Internal(_))
    ));
    for _ in 0..50 {
        if !a.node.in_emergency() {
            break;
        }
        assert!(a.tick(120_000), "stuck in emergency mode");
    }
    assert!(!a.node.in_emergency());
    let t = listed(&mut a, T);
    assert_eq!(t.state, "Broken", "{t:?}");
    assert!(t.reason.as_deref().unwrap_or_default().contains("generation 2"), "{t:?}");
    assert_eq!(a.world.store[&T].generation.get(), 1);
}
