//! A remote control plane (`strata control`): the link answers the client's sends
//! with the reply itself, and the node's in-process table stays empty.

use super::*;

fn remote() -> NodeConfig {
    let mut c = config();
    c.remote_control_plane = true;
    c
}

/// Starts a node on `world` and ticks until it is Active.
fn start_active(world: World) -> Harness {
    let mut h = Harness::start(world, remote());
    for _ in 0..20 {
        if h.node.phase() == &NodePhase::Active {
            break;
        }
        assert!(h.tick(60_000), "start-up stuck in {:?}", h.node.phase());
    }
    h
}

/// A node on a remote control plane with tenant `T`, timeline `TL` and 40
/// batches of 16 keys visible, shut down: the node, the last LSN, and key 3's value.
fn ingested_then_shut_down() -> (Harness, Lsn, Option<Vec<u8>>) {
    let world = World { remote_cp: true, ..World::default() };
    let mut h = Harness::start(world, remote());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    let batch = records(16, 40);
    let last = batch.last().unwrap().lsn;
    h.ingest(batch).unwrap();
    let want = read(&mut h, 3, last);
    wait_visible(&mut h, last);
    h.call(Request::Shutdown).unwrap();
    (h, last, want)
}

/// Create, ingest, restart: the remote control plane's re-attach bumps the
/// generation and the data reads back. Without the start-up skip for a remote
/// control plane, the restart refuses to start (its empty in-process table does
/// not know the local tenant).
#[test]
fn with_a_remote_control_plane_a_restart_re_attaches_on_a_new_generation_and_reads_back() {
    let (h, last, want) = ingested_then_shut_down();
    assert_eq!(h.world.store[&T].generation.get(), 1, "granted by the remote table");
    assert_eq!(h.node.cp.records().count(), 0, "the in-process table stays empty");

    let mut h = start_active(h.world);
    assert_eq!(h.node.phase(), &NodePhase::Active);
    assert_eq!(h.world.store[&T].generation.get(), 2, "re-attach bumped it");
    assert_eq!(info(&mut h).generation.get(), 2);
    assert_eq!(read(&mut h, 3, last), want);
}

/// A migration destination killed after the control plane granted it the tenant
/// but before its location_config wrote `config-v1` (cluster seed 302): re-attach
/// names the tenant and says a migration to this node is under way, so with no
/// config the tenant loads AttachedMulti (its config written so), deleting nothing.
/// Without the re-attach's mode the node took it for AttachedSingle, compacted and
/// queued deletions as the tenant's single holder (S-SINGLE-WRITER).
#[test]
fn a_destination_re_attached_without_a_config_loads_attached_multi() {
    use crate::location_conf::LocationMode;
    let (h, last, want) = ingested_then_shut_down();

    // The tenant's directory never made it to this disk; the control plane holds
    // the grant and the migration to this node.
    let mut world = h.world;
    let dir = format!("tenants/{T}/");
    world.files.retain(|p, _| !p.as_str().starts_with(&dir));
    world.migrating_here.insert(T);
    let mut h = start_active(world);
    let generation = h.world.store[&T].generation;
    assert_eq!(h.node.tenants[&T].mode, LocationMode::AttachedMulti { generation });
    let path = crate::node::io::location_conf_path(T);
    let conf = String::from_utf8(h.world.files[&path].clone()).unwrap();
    assert!(conf.contains("AttachedMulti"), "{conf}");
    assert_eq!(read(&mut h, 3, last), want);

    // Outside a migration the same start takes it AttachedSingle, as before.
    let mut world = h.world;
    world.files.retain(|p, _| !p.as_str().starts_with(&dir));
    world.migrating_here.clear();
    let h = Harness::start(world, remote());
    let generation = h.world.store[&T].generation;
    assert_eq!(h.node.tenants[&T].mode, LocationMode::AttachedSingle { generation });
}

/// A destination killed before its attach rewrote its config still has the
/// Secondary one it held before the migration; re-attached as the migration's
/// destination, it loads AttachedMulti, never AttachedSingle (the 20-migration e2e
/// found it loading Single, which an attach-only call then kept).
#[test]
fn a_destination_re_attached_with_a_secondary_config_loads_attached_multi() {
    use crate::location_conf::{LocationConf, LocationMode};
    let (h, last, want) = ingested_then_shut_down();
    let mut world = h.world;
    let path = crate::node::io::location_conf_path(T);
    let secondary = LocationConf {
        mode: LocationMode::Secondary { warm: true },
        tenant_conf: Default::default(),
    };
    world.files.insert(path.clone(), secondary.to_toml().into_bytes());
    world.migrating_here.insert(T);
    let mut h = start_active(world);
    let generation = h.world.store[&T].generation;
    assert_eq!(h.node.tenants[&T].mode, LocationMode::AttachedMulti { generation });
    let conf = String::from_utf8(h.world.files[&path].clone()).unwrap();
    assert!(conf.contains("AttachedMulti"), "{conf}");
    assert_eq!(read(&mut h, 3, last), want);
}
