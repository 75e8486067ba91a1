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
