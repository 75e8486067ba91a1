//! The disk-full policy end to end (`timeline/disk_full.rs`): ingest refused with
//! 503 while flush writes fail with no space, reads served; past the budget the
//! timeline is Broken `no_space` and its reads are still served.

use super::*;

fn budgeted() -> NodeConfig {
    let mut c = config();
    c.timeline.no_space_budget_ms = 5_000;
    c
}

#[test]
fn a_full_disk_refuses_ingest_with_503_serves_reads_then_breaks_no_space() {
    let mut h = Harness::start(World::default(), budgeted());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    let first = records(16, 40);
    let last = first.last().unwrap().lsn;
    h.ingest(first).unwrap();
    let value = read(&mut h, 3, last);
    assert!(value.is_some());
    h.world.disk_full = true;
    // More than a layer's worth: the open layer freezes and its flush fails.
    let more = records(last.0 + 8, 40);
    let more_last = more.last().unwrap().lsn;
    h.call(Request::Ingest { tenant: T, timeline: TL, records: more }).unwrap();
    h.run_for(200);
    assert_eq!(h.node.timelines_disk_full(), 1);
    let refused =
        h.call(Request::Ingest { tenant: T, timeline: TL, records: records(more_last.0 + 8, 2) });
    assert!(
        matches!(&refused, Err(ApiError::Unavailable { reason, .. }) if reason.contains("disk is full")),
        "{refused:?}"
    );
    assert_eq!(read(&mut h, 3, last), value, "reads are served while the disk is full");
    assert!(listed(&mut h, T).broken_timelines.is_empty(), "not broken within the budget");

    h.run_for(10_000);
    let broken = listed(&mut h, T).broken_timelines;
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert_eq!(broken[0].kind, "no_space");
    let refused =
        h.call(Request::Ingest { tenant: T, timeline: TL, records: records(more_last.0 + 8, 2) });
    assert!(matches!(refused, Err(ApiError::Internal(_))), "{refused:?}");
    assert_eq!(read(&mut h, 3, last), value, "a timeline broken for no space serves reads");
    assert!(read(&mut h, 3, more_last).is_some(), "what is only in memory too");
    assert_eq!(h.node.timelines_disk_full(), 1);
}
