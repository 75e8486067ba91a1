//! The node-wide bound on in-memory layers (`node/memory.rs`): many timelines,
//! each under its own bound, together past the node's.

use super::*;

const TL2: TimelineId = TimelineId([3; 16]);

fn bounded() -> NodeConfig {
    let mut c = config();
    // Nothing freezes by size or age in this test: only the bound makes room.
    c.timeline.checkpoint_distance_bytes = 1 << 30;
    c.timeline.checkpoint_timeout_ms = 1 << 40;
    c.max_in_memory_bytes = Some(2_000);
    c
}

fn ingest_into(
    h: &mut Harness,
    timeline: TimelineId,
    records: Vec<IngestRecord>,
) -> Result<Response, ApiError> {
    h.call(Request::Ingest { tenant: T, timeline, records })
}

#[test]
fn past_the_node_memory_bound_ingest_is_refused_until_the_fullest_layer_flushed() {
    let mut h = Harness::start(World::default(), bounded());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    for tl in [TL, TL2] {
        h.call(Request::CreateTimeline { tenant: T, timeline: tl }).unwrap();
    }
    // TL fills the node's bound on its own (its own bound is far higher).
    let mut next = 16;
    while h.node.in_memory_bytes().0 < 2_000 {
        let batch = records(next, 10);
        next = batch.last().unwrap().lsn.0 + 8;
        ingest_into(&mut h, TL, batch).unwrap();
    }
    let (held, refused_before) = h.node.in_memory_bytes();
    assert_eq!(refused_before, 0);
    // A re-send of what TL has is not refused: it adds nothing.
    ingest_into(&mut h, TL, records(16, 10)).unwrap();
    // New records for TL2 are, with 503 and a retry time, and TL (the fullest
    // open layer) is told to flush.
    let refused = ingest_into(&mut h, TL2, records(16, 3));
    assert!(
        matches!(&refused, Err(ApiError::Unavailable { reason, retry_after_ms })
            if reason.contains("max_in_memory_bytes") && *retry_after_ms > 0),
        "{refused:?}"
    );
    assert_eq!(h.node.in_memory_bytes().1, 1);
    h.run_for(1_000);
    let (after, _) = h.node.in_memory_bytes();
    assert!(after < held, "the flush freed nothing: {after} of {held}");
    ingest_into(&mut h, TL2, records(16, 3)).unwrap();
    let info = h.call(Request::TimelineInfo { tenant: T, timeline: TL2 });
    assert!(
        matches!(&info, Ok(Response::TimelineInfo(i)) if i.last_ingested_lsn == Lsn(32)),
        "{info:?}"
    );
}
