//! Time at the node: a wall-clock jump is an input with a counter, never a silent
//! clamp; what decides anything (GC retention) stays on the monotonic clock.

use super::*;
use crate::time::{ClockWatch, JumpDirection, WALL_CLOCK_JUMP_TOLERANCE_MS};

/// Feeds `(now, wall)` through a [`ClockWatch`] as the driver does: a jump becomes
/// the node's `handle_wall_clock_jump` input, then a request carries the reading.
fn input_at(
    h: &mut Harness,
    watch: &mut ClockWatch,
    wall: WallTime,
    request: Request,
) -> RequestId {
    if let Some(jump) = watch.observe(h.now, wall) {
        h.node.handle_wall_clock_jump(h.now, wall, jump);
    }
    let req = RequestId(1_000_000 + h.next_req);
    h.next_req += 1;
    h.node.handle_request(h.now, wall, req, request);
    h.settle();
    req
}

#[test]
fn a_wall_clock_jump_back_is_an_input_with_a_counter_and_is_not_clamped() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    h.run_for(20_000);
    let before = WallTime(h.now.0);
    let mut watch = ClockWatch::new(h.now, before, WALL_CLOCK_JUMP_TOLERANCE_MS);
    let info = Request::TimelineInfo { tenant: T, timeline: TL };
    // Within the tolerance: no input, no count.
    input_at(&mut h, &mut watch, WallTime(before.0 - WALL_CLOCK_JUMP_TOLERANCE_MS), info.clone());
    assert_eq!(h.node.wall_clock_jumps_total(JumpDirection::Backward), 0);
    // Back by 15 s: the node hears of it, counts it and takes the new time.
    let back = WallTime(before.0 - 15_000);
    let jump = watch.observe(h.now, back).expect("beyond the tolerance");
    h.node.handle_wall_clock_jump(h.now, back, jump);
    assert_eq!(h.node.wall, back, "the wall clock is not clamped to the old reading");
    assert_eq!(h.node.wall_clock_jumps_total(JumpDirection::Backward), 1);
    assert_eq!(h.node.wall_clock_jumps_total(JumpDirection::Forward), 0);
    input_at(&mut h, &mut watch, back, Request::DeleteTimeline { tenant: T, timeline: TL });
    assert_eq!(h.node.wall_clock_jumps_total(JumpDirection::Backward), 1, "one jump, one count");
    let traced = h.node.drain_trace();
    assert!(
        traced.iter().any(|l| l.what.contains("wall clock jumped backward by")),
        "the jump is a traced input"
    );
    // The tombstone written after the jump carries the jumped-back time.
    let prefix = crate::remote_path::timeline_prefix(T, TL);
    let tombstone = h
        .world
        .objects
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix) && k.contains("index_part.json"))
        .filter_map(|(_, b)| crate::index_part::IndexPart::from_json_bytes(b).ok())
        .find_map(|i| i.deleted_at)
        .expect("a tombstone index");
    assert_eq!(tombstone, back);
}

/// GC's retention runs on the monotonic clock: a wall clock stepped forward by a day
/// makes nothing old enough; only monotonic time passing does. Fails if the node
/// (or the driver) took its `now` from the wall clock.
#[test]
fn gc_retention_stays_on_monotonic_time_when_the_wall_clock_jumps() {
    let mut config = config();
    config.timeline.gc_retention_ms = 60_000;
    let mut h = Harness::start(World::default(), config);
    let (old, _) = tenant_with_data(&mut h);
    h.run_for(61_000);
    let batch = records(old.0 + 8, 40);
    let last = batch.last().unwrap().lsn;
    h.ingest(batch).unwrap();
    let horizon = |h: &Harness| {
        h.node.tenants[&T].timelines[&TL].timeline.gc_retention_horizon().expect("retention set")
    };
    assert!(horizon(&h) < last, "the new batch is not a minute old yet");
    let day = 86_400_000;
    let mut watch = ClockWatch::new(h.now, WallTime(h.now.0), WALL_CLOCK_JUMP_TOLERANCE_MS);
    h.now = h.now.plus_millis(2_000);
    // A read reaches the timeline, so it sees the input's time.
    let read = Request::Read { tenant: T, timeline: TL, key: Key(0), lsn: last };
    let wall = WallTime(h.now.0 + day);
    input_at(&mut h, &mut watch, wall, read.clone());
    assert_eq!(h.node.wall_clock_jumps_total(JumpDirection::Forward), 1);
    assert!(horizon(&h) < last, "a wall-clock day is not a monotonic minute");
    h.run_for(61_000);
    let wall = WallTime(h.now.0 + day);
    input_at(&mut h, &mut watch, wall, read);
    assert_eq!(horizon(&h), last, "a monotonic minute later everything ingested is old enough");
}

/// The node routes a due timer by name to its machine only: the open layer's
/// checkpoint timer reaches that timeline as `Checkpoint`, and no other machine is
/// handed a timer in that input.
#[test]
fn the_node_hands_a_due_timer_to_its_machine_by_name() {
    let mut config = config();
    config.timeline.checkpoint_distance_bytes = 1 << 20;
    config.timeline.checkpoint_timeout_ms = 5_000;
    let mut h = Harness::start(World::default(), config);
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    h.run_for(10_000);
    h.ingest(records(16, 2)).unwrap();
    let at = h.node.poll_timeout().expect("the open layer's checkpoint timer");
    let _ = h.node.drain_trace();
    h.now = at;
    h.node.handle_timeout(h.now, WallTime(h.now.0));
    let fired: Vec<String> = h
        .node
        .drain_trace()
        .into_iter()
        .filter(|l| l.what.starts_with("timer "))
        .map(|l| l.what)
        .collect();
    assert_eq!(fired, [format!("timer Timeline({T:?}, {TL:?}) Timeline(Checkpoint)")]);
    h.settle();
    assert!(h.node.tenants[&T].timelines[&TL].timeline.open_layer_bytes() == 0, "frozen");
}

/// The node's own deadlines are named timers too: a start-up listing that failed
/// transiently is retried when `NodeTimer::StartupRetry` fires.
#[test]
fn the_nodes_own_deadlines_fire_by_name() {
    let (mut world, last, _) = one_batch_then_shutdown(50);
    world.transient_lists = 1;
    let mut h = start_until_active(world);
    assert_eq!(info(&mut h).last_ingested_lsn, last);
    let fired: Vec<String> = h
        .node
        .drain_trace()
        .into_iter()
        .filter(|l| l.what.starts_with("timer node"))
        .map(|l| l.what)
        .collect();
    assert_eq!(fired, ["timer node StartupRetry"]);
}
