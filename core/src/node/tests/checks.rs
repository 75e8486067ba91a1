//! Checks that can fail: each check of the node's own [`Node::check_invariants`]
//! (the machines' checks it also runs have their own tests beside each machine)
//! fires on a node state that breaks it. The fixture passes every check (the
//! harness runs them after every effect); each test breaks one rule.

use super::super::startup::StartupIo;
use super::super::tenant_machine::Lifecycle;
use super::super::timers::MachineTimer;
use super::super::{Machine, Route};
use super::*;
use crate::control_plane::client::ClientTimer;
use crate::id::OpId;
use crate::location_conf::LocationMode;
use crate::tenant::Slot;

/// An active node holding T with TL and its data, everything visible.
fn active() -> Node {
    let mut h = start_until_active(World::default());
    tenant_with_data(&mut h);
    h.node.check_invariants();
    h.node
}

fn tenant(node: &mut Node) -> &mut super::super::tenant_machine::Tenant {
    node.tenants.get_mut(&T).expect("T is attached")
}

macro_rules! fires {
    ($name:ident, $expected:literal, |$node:ident| $corrupt:block) => {
        #[test]
        #[should_panic(expected = $expected)]
        fn $name() {
            let mut $node = active();
            $corrupt
            $node.check_invariants();
        }
    };
}

fires!(
    an_attached_slot_without_its_tenant_machine,
    "attached without its tenant machine",
    |node| {
        node.tenants.remove(&T);
    }
);

fires!(machines_without_an_attached_slot, "has machines but no attached slot", |node| {
    let now = node.now;
    node.manager.handle_settled(now, T, Slot::secondary(false)).unwrap();
});

fires!(machines_running_in_another_mode_than_their_slot, "its slot says", |node| {
    let now = node.now;
    let generation = tenant(&mut node).generation;
    let mode = LocationMode::AttachedMulti { generation };
    node.manager.handle_settled(now, T, Slot::Attached { mode, broken: None }).unwrap();
});

fires!(projected_above_the_timelines_disk_consistent, "S-PROJECTED broken on", |node| {
    let now = node.now;
    let config = node.config.timeline.clone();
    let slot = tenant(&mut node).timelines.get_mut(&TL).unwrap();
    slot.timeline = crate::timeline::Timeline::create(T, TL, Lsn(0), config, now);
});

fires!(a_broken_tenant_holding_machines, "broken tenant", |node| {
    tenant(&mut node).lifecycle = Lifecycle::Broken { reason: "a handler panicked".into() };
});

fires!(a_timer_index_out_of_date, "timer index out of date", |node| {
    let timer = MachineTimer::ControlPlaneClient(ClientTimer::Retry(
        crate::control_plane::client::CallId(99),
    ));
    node.timers.set(Machine::Tenant(T), Some((Instant(1), timer)));
});

fires!(an_op_in_flight_without_its_route, "in flight without its route", |node| {
    tenant(&mut node).in_flight.insert(OpId(999_999));
});

fires!(a_local_write_untracked, "a local write untracked", |node| {
    tenant(&mut node).local_writes.insert(OpId(999_999));
});

fires!(a_create_check_not_in_flight, "create check of", |node| {
    tenant(&mut node).create_checks.insert(TimelineId([9; 16]));
});

fires!(an_upload_count_drifting, "upload in-flight count", |node| {
    tenant(&mut node).timelines.get_mut(&TL).unwrap().upload_in_flight += 1;
});

fires!(start_up_io_miscounted, "start-up I/O miscounted", |node| {
    node.startup.in_flight += 1;
});

fires!(start_up_io_above_its_bound, "start-up I/O above its bound", |node| {
    let bound = node.config.startup_concurrency.max(1);
    for i in 0..=bound {
        let route = Route::Startup(StartupIo::ListTenantDir(TenantId([i as u8; 16])));
        node.routes.insert(OpId(900_000 + i as u64), route);
    }
    node.startup.in_flight = bound + 1;
});

fires!(an_io_effect_without_a_route, "has no route", |node| {
    let io = Io::DiskRead { path: "tenants/x".into() };
    node.effects.push_back(NodeEffect::Io { op: OpId(999_999), io });
});
