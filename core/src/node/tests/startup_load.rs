//! Start-up loads through the tenant manager (issue 16 item 1): a tenant
//! start-up finds gets its machines by a manager operation (`OperationKind::Load`),
//! so a load that fails ends as any failed operation does, with a Broken slot that
//! names why, instead of the tenant silently missing from the node.

use super::*;
use crate::node::StartupPhase;
use crate::tenant::{OperationKind, Slot};

/// Its timelines cannot be listed for good at start-up: the tenant is listed
/// Broken with the reason (it used to be dropped: 404 for a tenant the control
/// plane attaches here), and a location_config naming its mode reloads it.
#[test]
fn a_tenant_whose_timelines_cannot_be_listed_at_start_up_is_broken_with_the_reason() {
    let (mut world, last, before) = one_batch_then_shutdown(50);
    // The first is start-up's generation check (which leaves the failure to the
    // load), the second the load's own listing.
    world.permanent_lists = 2;
    let mut h = start_until_active(world);
    assert_eq!(h.world.permanent_lists, 0, "the listings were not both refused");
    let t = listed(&mut h, T);
    assert_eq!(t.state, "Broken", "{t:?}");
    let reason = t.reason.clone().unwrap_or_default();
    assert!(reason.contains("listing its remote timelines failed"), "{reason}");
    assert!(matches!(h.node.manager.slot(T), Some(Slot::Attached { broken: Some(_), .. })));

    let r = location(&mut h, RequestedMode::AttachedSingle, None);
    assert!(matches!(r, Ok(Response::LocationConfigured(_))), "{r:?}");
    assert_eq!(listed(&mut h, T).state, "Active");
    assert_eq!(read(&mut h, 3, last), before);
}

/// While start-up loads a tenant, its slot is the manager's `Load` operation: the
/// node's machines for it exist only under that slot (`check_invariants` asserts
/// it in every phase), and the node becomes active only once every load ended.
#[test]
fn start_up_loads_are_tenant_manager_operations_and_the_node_waits_for_them() {
    let (world, last, before) = one_batch_then_shutdown(50);
    let timelines = crate::remote_path::timelines_prefix(T);
    // The first listing of T's timelines is start-up's generation check; the
    // second, the load's, is held.
    let mut seen = 0;
    let hold: HoldIo = Box::new(move |io| {
        let listing = matches!(io, Io::RemoteList { prefix } if *prefix == timelines);
        seen += usize::from(listing);
        listing && seen == 2
    });
    let mut h = Harness::start_holding(world, config(), hold);
    assert_eq!(h.node.phase(), &NodePhase::Starting(StartupPhase::LoadTimelines));
    match h.node.manager.slot(T) {
        Some(Slot::InProgress(op)) => assert_eq!(op.kind, OperationKind::Load),
        other => panic!("T loads outside the manager: its slot is {other:?}"),
    }
    assert!(h.node.tenants.contains_key(&T), "the load started no tenant machine");

    h.hold = None;
    let (op, io) = h.held_io.pop().expect("the load's listing went out");
    let result = h.world.execute(io);
    h.node.handle_io(h.now, WallTime(h.now.0), op, result);
    h.settle();
    assert_eq!(h.node.phase(), &NodePhase::Active);
    assert!(matches!(h.node.manager.slot(T), Some(Slot::Attached { broken: None, .. })));
    assert_eq!(listed(&mut h, T).state, "Active");
    assert_eq!(read(&mut h, 3, last), before);
}
