//! Snapshots of readable traces: what the machine does, step by step, in two
//! typical stories. A change in ordering shows up as a diff here.

use super::harness::*;
use crate::lsn::Lsn;

fn input(h: &mut Harness, what: &str) {
    h.note(format!("> {what}"));
}

#[test]
fn trace_flush_compact_and_validate() {
    let mut h = Harness::traced();
    h.complete(0, Finish::Ok);
    h.validate(true);
    input(&mut h, "add layer 1, add layer 2, set metadata lsn=0/20");
    h.add(1, 10).unwrap();
    h.add(2, 20).unwrap();
    h.step(|q, now| q.handle_set_metadata(now, md(0x20))).unwrap();
    input(&mut h, "barrier");
    h.barrier();
    h.complete(1, Finish::Transient);
    h.complete(0, Finish::Ok);
    input(&mut h, "timer");
    assert!(h.fire_timer());
    h.complete(0, Finish::Ok); // index 2 (layer 1 only)
    h.complete(0, Finish::Ok); // layer 2, retried
    h.complete(0, Finish::Ok); // index 3
    h.validate(true);
    input(&mut h, "compaction: add layer 3, unlink layers 1 and 2");
    h.add(3, 30).unwrap();
    h.step(|q, now| q.handle_unlink_layers(now, &[layer(1), layer(2)])).unwrap();
    h.complete(0, Finish::Ok); // layer 3
    h.complete(0, Finish::Ok); // index 4
    while !h.handed.is_empty() {
        h.finish_deletion(0, false);
    }
    assert!(h.q.is_idle(), "{}", h.trace.join("\n"));
    assert_eq!(h.q.visible_lsn(), Lsn(0x20));
    insta::assert_snapshot!(h.trace.join("\n"));
}

#[test]
fn trace_timeline_deletion() {
    let mut h = Harness::traced();
    h.complete(0, Finish::Ok);
    input(&mut h, "add layer 1");
    h.add(1, 10).unwrap();
    h.settle();
    input(&mut h, "delete timeline");
    h.delete_timeline().unwrap();
    h.complete(0, Finish::Ok);
    h.complete_listing(0, true);
    while !h.handed.is_empty() {
        h.finish_deletion(0, false);
    }
    assert!(h.deleted);
    insta::assert_snapshot!(h.trace.join("\n"));
}
