//! A remote control plane (`strata control`): the link answers the client's sends
//! with the reply itself, and the node's in-process table stays empty.

use super::*;

fn remote() -> NodeConfig {
    let mut c = config();
    c.remote_control_plane = true;
    c
}

/// Create, ingest, restart: the remote control plane's re-attach bumps the
/// generation and the data reads back. Without the start-up skip for a remote
/// control plane, the restart refuses to start (its empty in-process table does
/// not know the local tenant).
#[test]
fn with_a_remote_control_plane_a_restart_re_attaches_on_a_new_generation_and_reads_back() {
    let world = World { remote_cp: true, ..World::default() };
    let mut h = Harness::start(world, remote());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    assert_eq!(h.world.store[&T].generation.get(), 1, "granted by the remote table");
    assert_eq!(h.node.cp.records().count(), 0, "the in-process table stays empty");
    let batch = records(16, 40);
    let last = batch.last().unwrap().lsn;
    h.ingest(batch).unwrap();
    let want = read(&mut h, 3, last);
    wait_visible(&mut h, last);
    h.call(Request::Shutdown).unwrap();

    let mut h = Harness::start(h.world, remote());
    for _ in 0..20 {
        if h.node.phase() == &NodePhase::Active {
            break;
        }
        assert!(h.tick(60_000), "start-up stuck in {:?}", h.node.phase());
    }
    assert_eq!(h.node.phase(), &NodePhase::Active);
    assert_eq!(h.world.store[&T].generation.get(), 2, "re-attach bumped it");
    assert_eq!(info(&mut h).generation.get(), 2);
    assert_eq!(read(&mut h, 3, last), want);
}
