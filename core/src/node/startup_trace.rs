//! An insta snapshot of a start-up trace: one tenant with one timeline whose index
//! is in remote storage, on a fresh node. Any change to the order of start-up's
//! phases, its I/O or its trace lines shows up in review.

use super::bench::world;
use super::tests::{Harness, config};

#[test]
fn start_up_trace_of_one_tenant() {
    let mut h = Harness::start(world(1), config());
    let lines: Vec<String> = h.node.drain_trace().iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(lines.join("\n"));
}

/// S3/S7: start-up reads configs and indexes with bounded parallelism; the node's
/// `check_invariants` (after every effect) asserts the bound.
#[test]
fn start_up_io_is_bounded_by_startup_concurrency() {
    let mut c = config();
    c.startup_concurrency = 3;
    let h = Harness::start(world(40), c);
    assert_eq!(h.node.phase(), &super::NodePhase::Active);
    assert_eq!(h.node.tenant_ids().count(), 40);
}
