//! A machine refusing an input the node routed to it is a bug (`refusals.rs`):
//! counted per machine, and a debug assertion stops the run.

use super::*;
use crate::id::OpId;
use crate::node::{RefusingMachine, Route};

/// A completion for an op the timeline never issued, routed to it as if the node
/// had lost track of its ops: the timeline refuses it.
#[test]
fn a_refused_routed_input_is_counted_and_fails_a_debug_build() {
    let mut h = Harness::start(World::default(), config());
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    let count = |h: &Harness, m: RefusingMachine| {
        h.node.machine_refusals().into_iter().find(|(k, _)| *k == m).map(|(_, n)| n)
    };
    assert_eq!(count(&h, RefusingMachine::Timeline), Some(0));
    let op = OpId(u64::MAX - 1);
    let bogus = OpId(u64::MAX - 7);
    let route = Route::Timeline { tenant: T, timeline: TL, inner: bogus, redo: false };
    let write = Io::DiskWrite { path: crate::node::io::metadata_path(T, TL), bytes: Vec::new() };
    h.node.track_op(op, &route, &write);
    h.node.routes.insert(op, route);
    let (now, wall) = (h.now, WallTime(h.now.0));
    let node = &mut h.node;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        node.handle_io(now, wall, op, IoResult::Done(Ok(())));
    }));
    assert_eq!(outcome.is_err(), cfg!(debug_assertions), "a debug build stops on a refusal");
    assert_eq!(count(&h, RefusingMachine::Timeline), Some(1));
    assert_eq!(count(&h, RefusingMachine::UploadQueue), Some(0));
    assert_eq!(h.node.machine_refusals().len(), RefusingMachine::ALL.len());
}
