//! Issue 15 item 4: a tenant directory whose `config-v1` is missing or unreadable is
//! not loaded and nothing is guessed: the tenant is `Broken` with the reason (listed,
//! and its requests answer with it), its config is left byte for byte, until a
//! location_config names its mode. A tenant with no local directory at all still
//! loads from remote storage.

use super::*;
use crate::location_conf::LocationMode;
use crate::node::io::location_conf_path;

/// An AttachedMulti tenant with data, stopped; returns its world, last LSN, values.
fn multi_tenant_stopped() -> (World, Lsn, Vec<Option<Vec<u8>>>) {
    let mut h = Harness::start(World::default(), config());
    let (last, values) = tenant_with_data(&mut h);
    let g = info(&mut h).generation;
    let r = location(&mut h, RequestedMode::AttachedMulti, Some(g.get()));
    assert!(matches!(r, Ok(Response::LocationConfigured(LocationOutcome::Changed(_)))), "{r:?}");
    h.call(Request::Shutdown).unwrap();
    (h.world.clone(), last, values)
}

fn assert_broken(h: &mut Harness, why: &str) {
    let list = tenants(h);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].state, "Broken", "{list:?}");
    let reason = list[0].reason.clone().unwrap_or_default();
    assert!(reason.contains(why), "reason {reason:?} does not say {why:?}");
    for r in [
        h.call(Request::TimelineInfo { tenant: T, timeline: TL }),
        h.call(Request::Read { tenant: T, timeline: TL, key: Key(1), lsn: Lsn(16) }),
        h.call(Request::Ingest { tenant: T, timeline: TL, records: records(100_000, 1) }),
        h.call(Request::CreateTimeline { tenant: T, timeline: TimelineId([7; 16]) }),
    ] {
        match r {
            Err(ApiError::Internal(msg)) => {
                assert!(msg.contains("broken") && msg.contains(why), "{msg}")
            }
            other => panic!("a broken tenant answered {other:?}"),
        }
    }
    assert!(h.node.tenant_ids().next().is_none(), "machines run for a broken tenant");
}

#[test]
fn an_unreadable_config_is_not_loaded_nor_rewritten_until_location_config_names_the_mode() {
    let (mut world, last, values) = multi_tenant_stopped();
    let path = location_conf_path(T);
    let corrupt = b"mode = \x00 garbage".to_vec();
    world.files.insert(path.clone(), corrupt.clone());
    let remote_before = world.objects.clone();

    let mut h = Harness::start(world, config());
    assert_eq!(h.node.phase(), &NodePhase::Active);
    assert_broken(&mut h, "config-v1 is unreadable");
    assert_eq!(h.world.files[&path], corrupt, "the unreadable config was rewritten");
    assert_eq!(h.world.objects, remote_before, "a broken tenant wrote to remote storage");

    // Still broken after another restart: nothing was guessed the first time.
    h.call(Request::Shutdown).unwrap();
    let mut h = Harness::start(h.world.clone(), config());
    assert_broken(&mut h, "config-v1 is unreadable");
    assert_eq!(h.world.files[&path], corrupt);

    // The operator names the mode: the config is written, the tenant loads.
    let placed = location(&mut h, RequestedMode::AttachedMulti, None);
    let g = match placed {
        Ok(Response::LocationConfigured(LocationOutcome::Changed(Placement::Located(
            crate::location_conf::LocationMode::AttachedMulti { generation },
        )))) => generation,
        other => panic!("{other:?}"),
    };
    let conf = String::from_utf8(h.world.files[&path].clone()).unwrap();
    assert!(conf.contains("AttachedMulti"), "{conf}");
    let list = tenants(&mut h);
    assert_eq!((list[0].state.as_str(), list[0].generation), ("Active", Some(g)), "{list:?}");
    assert_eq!(info(&mut h).last_ingested_lsn, last);
    assert_eq!((0..7).map(|k| read(&mut h, k, last)).collect::<Vec<_>>(), values);
    // And it stays AttachedMulti across a restart.
    h.call(Request::Shutdown).unwrap();
    let h = Harness::start(h.world.clone(), config());
    let conf = String::from_utf8(h.world.files[&path].clone()).unwrap();
    assert!(conf.contains("AttachedMulti"), "{conf}");
}

#[test]
fn a_missing_config_is_broken_and_detaching_it_removes_the_directory() {
    let (mut world, _, _) = multi_tenant_stopped();
    world.files.remove(&location_conf_path(T));
    let mut h = Harness::start(world, config());
    assert_broken(&mut h, "config-v1 is missing");
    assert!(!h.world.files.contains_key(&location_conf_path(T)), "a config was guessed");
    // Deleting needs a placed tenant.
    assert!(matches!(h.call(Request::DeleteTenant { tenant: T }), Err(ApiError::Internal(_))));
    // Secondary: written as asked, nothing runs.
    let r = location(&mut h, RequestedMode::Secondary { warm: false }, None);
    assert!(matches!(r, Ok(Response::LocationConfigured(LocationOutcome::Changed(_)))), "{r:?}");
    let conf = String::from_utf8(h.world.files[&location_conf_path(T)].clone()).unwrap();
    assert!(conf.contains("Secondary"), "{conf}");
    assert!(tenants(&mut h).is_empty());
    // A missing config again, then Detached: the directory goes, the generation is
    // released.
    h.call(Request::Shutdown).unwrap();
    let mut world = h.world.clone();
    world.files.remove(&location_conf_path(T));
    let mut h = Harness::start(world, config());
    assert_broken(&mut h, "config-v1 is missing");
    let r = location(&mut h, RequestedMode::Detached, None);
    assert!(
        matches!(
            r,
            Ok(Response::LocationConfigured(LocationOutcome::Changed(Placement::Detached)))
        ),
        "{r:?}"
    );
    let prefix = format!("tenants/{T}");
    assert!(!h.world.files.keys().any(|p| p.as_str().starts_with(&prefix)));
    assert!(tenants(&mut h).is_empty());
    assert_eq!(h.world.store[&T].attached_to, None);
}

#[test]
fn a_tenant_without_a_local_directory_loads_from_remote_storage() {
    let (mut world, last, values) = multi_tenant_stopped();
    let prefix = format!("tenants/{T}/");
    world.files.retain(|p, _| !p.as_str().starts_with(&prefix));
    let mut h = Harness::start(world, config());
    let list = tenants(&mut h);
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].state.as_str(), list[0].reason.as_deref()), ("Active", None));
    assert_eq!(info(&mut h).last_ingested_lsn, last);
    assert_eq!((0..7).map(|k| read(&mut h, k, last)).collect::<Vec<_>>(), values);
    assert!(h.world.files.contains_key(&location_conf_path(T)), "config not written");
}

/// Start-up rewrites each tenant's `config-v1` with its new generation; a write
/// that fails (here ENOSPC: a full disk) is written again after the start-up
/// backoff, not at once: ten writes milliseconds apart all met the same full disk
/// and the node dropped the tenant, whose data was visible (swarm seed 63 after
/// layer transfers became one effect each). The tenant loads once a write lands.
#[test]
fn a_failed_config_write_at_start_up_is_retried_after_a_backoff() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    assert_eq!(h.call(Request::Shutdown), Ok(Response::ShutdownComplete { clean: true }));
    let mut world = h.world.clone();
    world.full_config_writes = crate::node::startup::STARTUP_WRITE_ATTEMPTS - 1;
    let mut h = Harness::start(world, config());
    // Settled without firing a timer: one write failed, the next waits its turn.
    assert_eq!(
        h.world.full_config_writes,
        crate::node::startup::STARTUP_WRITE_ATTEMPTS - 2,
        "the failed write was retried at once"
    );
    assert!(h.node.poll_timeout().is_some(), "no retry scheduled");
    while h.node.phase() != &NodePhase::Active && h.tick(60_000) {}
    assert_eq!(h.world.full_config_writes, 0);
    assert_eq!(h.node.phase(), &NodePhase::Active);
    assert_eq!(info(&mut h).state, "Active", "the tenant was dropped");
}

/// What the control plane's migration reconciler observes: where the tenant stands
/// and its timelines' LSNs; an unknown tenant is Detached.
#[test]
fn tenant_location_names_the_placement_and_the_timelines_lsns() {
    let mut h = Harness::start(World::default(), config());
    let other = TenantId([0x42; 16]);
    let r = h.call(Request::TenantLocation { tenant: other });
    let Ok(Response::TenantLocation(l)) = r else { panic!("{r:?}") };
    assert_eq!((l.placement, l.timelines.len()), (Placement::Detached, 0));
    let (last, _) = tenant_with_data(&mut h);
    let g = info(&mut h).generation;
    let r = location(&mut h, RequestedMode::AttachedStale, Some(g.get()));
    assert!(r.is_ok(), "{r:?}");
    let r = h.call(Request::TenantLocation { tenant: T });
    let Ok(Response::TenantLocation(l)) = r else { panic!("{r:?}") };
    assert_eq!(l.placement, Placement::Located(LocationMode::AttachedStale { generation: g }));
    assert_eq!(l.timelines.len(), 1);
    assert_eq!(l.timelines[0].timeline, TL);
    assert_eq!(l.timelines[0].last_ingested_lsn, last);
    assert_eq!(l.timelines[0].remote_consistent_lsn_visible, last);
    let r = location(&mut h, RequestedMode::Secondary { warm: true }, None);
    assert!(r.is_ok(), "{r:?}");
    let r = h.call(Request::TenantLocation { tenant: T });
    let Ok(Response::TenantLocation(l)) = r else { panic!("{r:?}") };
    assert_eq!(l.placement, Placement::Located(LocationMode::Secondary { warm: true }));
    assert!(l.timelines.is_empty());
}

/// A migration's origin goes AttachedStale, then Secondary: nothing it holds can
/// become visible any more (it uploads nothing), so its stop does not wait out the
/// shutdown grace period for it.
#[test]
fn a_stale_tenant_stops_at_once_instead_of_waiting_for_a_visibility_it_cannot_reach() {
    let mut h = Harness::start(World::default(), config());
    let (last, _) = tenant_with_data(&mut h);
    let g = info(&mut h).generation;
    let r = location(&mut h, RequestedMode::AttachedStale, Some(g.get()));
    assert!(r.is_ok(), "{r:?}");
    let more = records(last.0 + 8, 20);
    let r = h.call(Request::Ingest { tenant: T, timeline: TL, records: more });
    assert!(r.is_ok(), "{r:?}");
    let started = h.now;
    let r = location(&mut h, RequestedMode::Secondary { warm: true }, None);
    assert!(r.is_ok(), "{r:?}");
    let took = h.now.millis_since(started);
    let grace = h.node.config.shutdown_grace_ms;
    assert!(took < grace, "the stale tenant's stop took {took} ms (grace {grace} ms)");
}
