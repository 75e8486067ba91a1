//! The disk-full policy (`disk_full.rs`) and the failed-fsync rule (a file whose
//! write failed is never read back: the flush rewrites it from memory).

use super::*;
use crate::io_error::IoErrorKind;
use crate::timeline::harness::Harness;

fn budgeted() -> TimelineConfig {
    TimelineConfig { no_space_budget_ms: 1_000, ..small_config() }
}

fn no_space(h: &mut Harness, writes: u32) {
    h.fail_writes = writes;
    h.write_failure = IoErrorKind::NoSpace;
}

/// Fires the next due timer (moving the clock to it).
fn next_timer(h: &mut Harness) {
    let at = h.tl.poll_timeout().expect("a timer is set");
    h.advance_to(at);
}

#[test]
fn a_full_disk_refuses_ingest_serves_reads_and_recovers_when_a_write_succeeds() {
    let mut h = Harness::new(Lsn(0), budgeted());
    h.ingest(vec![rec(1, 1, img(b"v"))]).unwrap();
    no_space(&mut h, 2);
    h.tl.handle_flush(h.now);
    h.drain();
    assert_eq!(h.tl.disk_full(), Some(DiskFull::Refusing { since: Instant::ZERO }));
    let refused = h.ingest(vec![rec(1, 2, app(b"w"))]).unwrap_err();
    assert!(matches!(refused, IngestError::NoSpace { out_of_space: false, .. }), "{refused:?}");
    // Records already acknowledged are answered as before (nothing new applied).
    assert_eq!(h.ingest(vec![rec(1, 1, img(b"v"))]).unwrap().skipped, 1);
    assert_eq!(h.get(Key(1), Lsn(1)), Ok(Some(b"v".to_vec())), "reads are served");
    next_timer(&mut h);
    assert!(h.tl.disk_full().is_some(), "the second write failed too");
    next_timer(&mut h);
    assert_eq!(h.tl.disk_full(), None, "a write that succeeds ends the episode");
    h.ingest(vec![rec(1, 2, app(b"w"))]).unwrap();
    assert_eq!(h.get(Key(1), Lsn(2)), Ok(Some(b"vw".to_vec())));
}

#[test]
fn past_the_budget_the_flush_stops_ingest_stays_refused_and_reads_are_served() {
    let mut h = Harness::new(Lsn(0), budgeted());
    h.ingest(vec![rec(1, 1, img(b"v")), rec(2, 2, img(b"x"))]).unwrap();
    no_space(&mut h, u32::MAX);
    h.tl.handle_flush(h.now);
    h.drain();
    for _ in 0..20 {
        if h.tl.disk_full() != Some(DiskFull::Refusing { since: Instant::ZERO }) {
            break;
        }
        next_timer(&mut h);
    }
    assert_eq!(h.tl.disk_full(), Some(DiskFull::OutOfSpace { since: Instant::ZERO }));
    assert!(h.now >= Instant(1_000), "not before the budget: {}", h.now);
    assert!(
        h.tl.timers().all(|(_, t)| t != TimelineTimer::FlushRetry),
        "no more retries once the budget is spent"
    );
    let attempts = h.fail_writes;
    h.advance_to(h.now.plus_millis(60_000));
    assert_eq!(h.fail_writes, attempts, "nothing more is written");
    let refused = h.ingest(vec![rec(1, 3, app(b"w"))]).unwrap_err();
    assert!(matches!(refused, IngestError::NoSpace { out_of_space: true, .. }), "{refused:?}");
    assert_eq!(h.get(Key(1), Lsn(2)), Ok(Some(b"v".to_vec())));
    assert_eq!(h.get(Key(2), Lsn(2)), Ok(Some(b"x".to_vec())));
    h.tl.check_invariants();
}

#[test]
fn the_node_is_told_once_when_the_budget_runs_out() {
    let mut h = Harness::new(Lsn(0), budgeted());
    h.ingest(vec![rec(1, 1, img(b"v"))]).unwrap();
    no_space(&mut h, u32::MAX);
    h.tl.handle_flush(h.now);
    h.drain();
    while h.tl.poll_timeout().is_some_and(|at| at < Instant(100_000)) {
        next_timer(&mut h);
    }
    let told: Vec<_> =
        h.log.iter().filter(|e| matches!(e, TimelineEffect::OutOfSpace { .. })).collect();
    assert_eq!(told, [&TimelineEffect::OutOfSpace { since: Instant::ZERO }]);
}

/// The failed-fsync rule: the harness leaves half the bytes behind under the
/// layer's name when a write fails, as a file whose fsync failed may hold. The
/// layer stays in memory, reads never touch that file, and the retry rewrites it
/// whole. Treating the failed write as done would read the torn file back.
#[test]
fn a_layer_whose_fsync_failed_is_never_read_back() {
    let mut h = Harness::new(Lsn(0), budgeted());
    h.ingest(vec![rec(1, 1, img(b"value-one")), rec(1, 2, app(b"+two"))]).unwrap();
    h.fail_writes = 1;
    h.tl.handle_flush(h.now);
    h.drain();
    let (name, torn) = h.world.disk.iter().next().map(|(n, b)| (n.clone(), b.clone())).unwrap();
    assert!(h.tl.layer(&name).is_none(), "not in the layer map while its write failed");
    assert_eq!(h.tl.disk_full(), None, "a failed fsync is not a full disk");
    assert_eq!(h.get(Key(1), Lsn(2)), Ok(Some(b"value-one+two".to_vec())));
    assert_eq!(h.world.disk[&name], torn, "the torn file is still there, unread");
    next_timer(&mut h);
    assert!(h.tl.layer(&name).is_some());
    assert_ne!(h.world.disk[&name], torn, "rewritten whole from memory");
    assert_eq!(h.tl.in_memory_bytes(), 0);
    assert_eq!(h.get(Key(1), Lsn(2)), Ok(Some(b"value-one+two".to_vec())));
}
