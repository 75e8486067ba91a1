//! Background jobs through the node's scheduler: timelines of several tenants
//! compact under one bound, every grant reaches its timeline and every slot comes
//! back (the harness runs `check_invariants`, scheduler included, after every
//! input).

use super::*;
use crate::scheduler::JobKind;

#[test]
fn compaction_of_many_timelines_runs_under_one_bound() {
    let mut c = config();
    c.timeline.compaction_threshold_layers = 2;
    c.timeline.checkpoint_distance_bytes = 256;
    c.scheduler.max_concurrent_jobs = 1;
    let mut h = Harness::start(World::default(), c);
    let (big, small) = (TenantId([1; 16]), TenantId([9; 16]));
    let timelines: Vec<(TenantId, TimelineId)> =
        (0..3).map(|i| (big, TimelineId([10 + i; 16]))).chain([(small, TL)]).collect();
    for tenant in [big, small] {
        assert!(h.call(Request::CreateTenant { tenant }).is_ok());
    }
    for (tenant, timeline) in &timelines {
        let r = h.call(Request::CreateTimeline { tenant: *tenant, timeline: *timeline });
        assert!(matches!(r, Ok(Response::TimelineCreated(_))), "{r:?}");
    }
    let mut granted_to = Vec::new();
    for round in 0..4 {
        for (tenant, timeline) in &timelines {
            let batch = records(16 + round * 400, 50);
            let r =
                h.call(Request::Ingest { tenant: *tenant, timeline: *timeline, records: batch });
            assert!(matches!(r, Ok(Response::Ingested { .. })), "{r:?}");
        }
        while h.tick(60_000) {}
        for line in h.node.drain_trace() {
            if line.machine == "scheduler" {
                granted_to.push(line.what);
            }
        }
    }
    assert!(h.node.scheduler.granted_total() > 4, "{granted_to:?}");
    // Every timeline was granted compaction and has none left to do (the L0s left
    // are single ones between image sets).
    for (tenant, timeline) in &timelines {
        let tl = &h.node.tenants[tenant].timelines[timeline].timeline;
        assert!(tl.compaction_candidates().is_none(), "{tenant}/{timeline} not compacted");
        assert!(tl.layers().any(|l| !crate::timeline::is_l0(&l.name) && l.name.is_delta()));
        let ours = format!("tenant: TenantId({tenant}), timeline: TimelineId({timeline})");
        assert!(granted_to.iter().any(|g| g.contains(&ours)), "{ours} never granted");
    }
    for kind in JobKind::ALL {
        assert_eq!(h.node.background_jobs_running(kind), 0, "{kind:?} slot leaked");
        assert_eq!(h.node.background_jobs_queued(kind), 0, "{kind:?} still queued");
    }
}

/// Grants for a timeline that is gone are handed back. (A running job whose
/// timeline left the node frees its slot as the timeline leaves: no sweep looks
/// for it, `check_invariants` asserts none is left, and
/// `a_job_abandoned_by_a_stop_frees_its_slot_as_the_tenant_leaves` in
/// `tests/incarnation.rs` drives it through a real stop.)
#[test]
fn slots_of_gone_timelines_come_back() {
    let mut h = Harness::start(World::default(), config());
    let gone = crate::scheduler::JobOwner {
        tenant: TenantId([7; 16]),
        timeline: TimelineId([8; 16]),
        kind: JobKind::Gc,
    };
    // A request whose grant reaches no timeline.
    h.node.scheduler.handle_request(h.now, gone);
    h.node.dirty.insert(super::super::Machine::Scheduler);
    h.node.pump();
    h.node.check_invariants();
    assert_eq!(h.node.background_jobs_running(JobKind::Gc), 0, "grant not handed back");
    assert_eq!(h.node.scheduler.granted_total(), 1);
}
