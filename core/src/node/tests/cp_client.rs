//! The node's calls through the control-plane client: a control plane that cannot
//! be reached delays deletions and visible LSNs, never loses or repeats them; at
//! start-up it means emergency mode.

use super::*;

/// Issue 16 item 2: validation fails N times (the control plane unreachable), then
/// succeeds. While it fails nothing is deleted and the visible LSN stays; after,
/// every deletion happens exactly once and the visible LSN catches up.
#[test]
fn validation_fails_n_times_then_succeeds_deletions_happen_once_and_the_visible_lsn_advances() {
    let mut c = config();
    c.timeline.compaction_threshold_layers = 3;
    let mut h = Harness::start(World::default(), c);
    tenant_with_data(&mut h);
    let visible_before = info(&mut h).remote_consistent_lsn_visible;
    let deletes_before = h.world.remote_deletes;

    // The control plane stops answering validations while compaction hands
    // deletions to the deletion queue and uploads advance the projected LSN.
    h.world.unreachable_validations = u32::MAX;
    super::location::churn(&mut h, 6);
    for _ in 0..20 {
        h.tick(60_000);
        assert_eq!(h.world.remote_deletes, deletes_before, "deleted without a validation");
    }
    let dq = h.node.dq.as_ref().unwrap();
    let (failed, queued) = (dq.stats().validations_unreachable_total, dq.queued_keys());
    assert!(failed >= 5, "the deletion queue stopped retrying: {:?}", dq.stats());
    assert!(queued > 0, "deletions wait for a validation: {:?}", dq.stats());
    assert_eq!(h.world.remote_deletes, deletes_before, "deleted without a validation");
    let i = info(&mut h);
    assert_eq!(i.remote_consistent_lsn_visible, visible_before, "visible without validation");
    assert!(i.remote_consistent_lsn_projected > visible_before, "{i:?}");
    // Each failure spent the client's whole budget (the call in progress, if any,
    // has spent part of it).
    let budget = u64::from(h.node.config.control_plane.budgets.validate_attempts);
    let calls = h.world.unreachable_calls;
    assert!((budget * failed..budget * (failed + 1)).contains(&calls), "{calls} attempts");
    let client = h.node.control_plane_client_stats();
    assert_eq!(client.attempt_failures()[0], ("unreachable", calls), "the metric's count");

    // The control plane answers again.
    h.world.unreachable_validations = 0;
    let last = info(&mut h).last_ingested_lsn;
    wait_visible(&mut h, last);
    for _ in 0..20 {
        h.tick(60_000);
    }
    assert!(h.world.remote_deletes > deletes_before, "the held deletions ran");
    let twice: Vec<_> = h.world.deletes_per_key.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "deleted more than once: {twice:?}");
    let dq = h.node.dq.as_ref().unwrap().stats();
    assert!(dq.keys_executed_total > 0 && dq.keys_dropped_stale_total == 0, "{dq:?}");
}

/// Re-attach at start-up that cannot reach the control plane: emergency mode (as
/// when its store fails), and out of it once re-attach gets through.
#[test]
fn an_unreachable_control_plane_at_start_up_means_emergency_mode_until_it_answers() {
    let mut h = Harness::start(World::default(), config());
    let (last, _) = tenant_with_data(&mut h);
    let g = info(&mut h).generation;
    h.call(Request::Shutdown).unwrap();

    let mut world = h.world.clone();
    world.unreachable_re_attaches = 2;
    let mut h = Harness::start(world, config());
    assert!(h.node.in_emergency(), "{:?}", h.node.startup_warnings());
    assert_eq!(info(&mut h).generation, g, "emergency mode runs on the local generation");
    for _ in 0..50 {
        if !h.node.in_emergency() {
            break;
        }
        h.tick(60_000);
    }
    assert!(!h.node.in_emergency(), "re-attach never got through");
    assert_eq!(h.world.unreachable_calls, 2);
    let i = info(&mut h);
    assert!(i.generation > g, "a new generation after re-attach");
    assert_eq!(i.last_ingested_lsn, last);
}

/// A validation whose answer does not come within the client's deadline times out
/// (retried within its budget, then a failed validation for the deletion queue);
/// when the held calls finally arrive they are dropped, never answered twice, and
/// the next validation that gets through makes the LSN visible.
#[test]
fn a_validation_past_its_deadline_times_out_and_its_late_delivery_is_dropped() {
    let mut h = Harness::start(World::default(), config());
    let (last, _) = tenant_with_data(&mut h);
    let visible_before = info(&mut h).remote_consistent_lsn_visible;
    h.hold_validations = true;
    let next = records(last.0 + 8, 60);
    let newest = next.last().unwrap().lsn;
    h.call(Request::Ingest { tenant: T, timeline: TL, records: next }).unwrap();
    for _ in 0..10 {
        h.tick(60_000);
    }
    let client = h.node.control_plane_client_stats();
    assert!(client.timeouts_total >= 3, "{client:?}");
    let dq = h.node.dq.as_ref().unwrap().stats();
    assert!(dq.validations_timed_out_total >= 1, "{dq:?}");
    assert_eq!(info(&mut h).remote_consistent_lsn_visible, visible_before);

    // The held calls arrive long after their deadlines: lost in transit.
    let late = h.deliver_late_validations();
    assert!(late >= 3, "{late} delivered late");
    let client = h.node.control_plane_client_stats();
    assert_eq!(client.late_replies_total, 0, "a dropped delivery is never answered");
    assert_eq!(info(&mut h).remote_consistent_lsn_visible, visible_before);

    h.hold_validations = false;
    h.deliver_late_validations();
    wait_visible(&mut h, newest);
}
