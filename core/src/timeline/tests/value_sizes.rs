//! Issue 15 item 3: ingest never acknowledges a value redo would refuse, so every
//! acknowledged key reads back, across flushes, crashes and recoveries
//! (`value_sizes.rs`).

use super::*;
use crate::redo::MAX_VALUE_BYTES;
use crate::timeline::harness::{Harness, World};
use crate::timeline::model::Model;
use proptest::prelude::*;

fn config() -> TimelineConfig {
    TimelineConfig { checkpoint_distance_bytes: 20_000, ..small_config() }
}

fn big(len: usize) -> Record {
    Record::Image(vec![7; len])
}

fn append(len: usize) -> Record {
    Record::Delta(vec![DeltaOp::Append(vec![1; len])])
}

/// The repro: an 8,000-byte image, then a 500-byte append. The append is
/// refused (400 over HTTP) and the key keeps reading back.
#[test]
fn an_append_past_the_limit_is_refused_and_the_value_still_reads_back() {
    let mut h = Harness::new(Lsn(10), config());
    h.ingest(vec![rec(1, 20, big(8000))]).unwrap();
    let err = h.ingest(vec![rec(1, 30, append(500))]).unwrap_err();
    assert_eq!(err, IngestError::ValueTooLarge { key: Key(1), lsn: Lsn(30), len: 8500, max: 8192 });
    // Within one batch too; nothing of the batch is applied.
    let err = h.ingest(vec![rec(2, 30, big(100)), rec(1, 31, append(193))]).unwrap_err();
    assert!(matches!(err, IngestError::ValueTooLarge { len: 8193, .. }), "{err}");
    assert_eq!(h.tl.last_ingested_lsn(), Lsn(20));
    // Up to the limit is fine.
    h.ingest(vec![rec(1, 40, append(192))]).unwrap();
    h.flush();
    assert_eq!(h.get(Key(1), Lsn(40)).unwrap().map(|v| v.len()), Some(MAX_VALUE_BYTES));
    assert_eq!(h.get(Key(1), Lsn(20)).unwrap().map(|v| v.len()), Some(8000));
}

/// After a restart the timeline does not know the sizes: the first append to a
/// key written before is refused with `SizeUnknown` while a size read runs, then
/// checked exactly (refused past the limit, accepted below it).
#[test]
fn after_a_restart_sizes_are_read_before_an_append_is_checked() {
    let mut h = Harness::new(Lsn(10), config());
    h.ingest(vec![rec(1, 20, big(8000)), rec(2, 21, big(10))]).unwrap();
    h.flush();
    let (world, now) = (h.world.clone(), h.now);
    drop(h);
    let mut h = Harness::recover(world, config(), now);
    assert_eq!(h.tl.tracked_value_sizes(), 0);
    // Images, clears, truncates and write_at need no size: accepted at once.
    h.tl.handle_ingest(h.now, vec![rec(3, 30, big(5))]).unwrap();
    let err = h.tl.handle_ingest(h.now, vec![rec(1, 31, append(500))]).unwrap_err();
    assert!(matches!(err, IngestError::SizeUnknown { key: Key(1), more: 0, .. }), "{err}");
    h.drain(); // the size read completes
    let err = h.tl.handle_ingest(h.now, vec![rec(1, 31, append(500))]).unwrap_err();
    assert!(matches!(err, IngestError::ValueTooLarge { len: 8500, .. }), "{err}");
    h.tl.handle_ingest(h.now, vec![rec(1, 31, append(192))]).unwrap();
    h.drain();
    assert_eq!(h.get(Key(1), Lsn(31)).unwrap().map(|v| v.len()), Some(MAX_VALUE_BYTES));
    // An empty key is read as empty.
    let err = h.tl.handle_ingest(h.now, vec![rec(9, 32, append(3))]).unwrap_err();
    assert!(matches!(err, IngestError::SizeUnknown { key: Key(9), .. }), "{err}");
    h.drain();
    h.tl.handle_ingest(h.now, vec![rec(9, 32, append(3))]).unwrap();
}

/// A record for a key whose size read is in flight makes that read's answer stale:
/// it is dropped, and the next append reads again.
#[test]
fn a_size_read_overtaken_by_ingest_is_not_used() {
    let mut h = Harness::new(Lsn(10), config());
    h.ingest(vec![rec(1, 20, big(8000))]).unwrap();
    h.flush();
    let (world, now) = (h.world.clone(), h.now);
    drop(h);
    let mut h = Harness::recover(world, config(), now);
    h.manual = true;
    let err = h.tl.handle_ingest(h.now, vec![rec(1, 30, append(100))]).unwrap_err();
    assert!(matches!(err, IngestError::SizeUnknown { .. }), "{err}");
    h.drain();
    // The size read waits on the disk; meanwhile a write_at grows the value.
    let grow = Record::Delta(vec![DeltaOp::WriteAt { offset: 8100, bytes: vec![2; 50] }]);
    h.tl.handle_ingest(h.now, vec![rec(1, 31, grow)]).unwrap();
    h.drain();
    while h.complete_next() {}
    h.manual = false;
    assert_eq!(h.tl.tracked_value_sizes(), 0, "a stale size read was used");
    // Read again, now exactly: 8150 bytes.
    let err = h.ingest(vec![rec(1, 40, append(43))]).unwrap_err();
    assert!(matches!(err, IngestError::ValueTooLarge { len: 8193, .. }), "{err}");
    h.ingest(vec![rec(1, 40, append(42))]).unwrap();
}

/// Past `value_sizes_max_keys` the smallest key is dropped: it becomes unknown (a
/// size read), never assumed empty.
#[test]
fn a_dropped_size_is_read_again_not_guessed() {
    let cfg = TimelineConfig { value_sizes_max_keys: 2, ..config() };
    let mut h = Harness::new(Lsn(10), cfg);
    h.ingest(vec![rec(1, 20, big(8000)), rec(2, 21, big(1)), rec(3, 22, big(1))]).unwrap();
    assert_eq!(h.tl.tracked_value_sizes(), 2);
    let err = h.tl.handle_ingest(h.now, vec![rec(1, 30, append(500))]).unwrap_err();
    assert!(matches!(err, IngestError::SizeUnknown { key: Key(1), .. }), "{err}");
    h.drain();
    let err = h.ingest(vec![rec(1, 30, append(500))]).unwrap_err();
    assert!(matches!(err, IngestError::ValueTooLarge { len: 8500, .. }), "{err}");
    // A new key is unknown too now (it might have been dropped).
    let err = h.tl.handle_ingest(h.now, vec![rec(4, 31, append(1))]).unwrap_err();
    assert!(matches!(err, IngestError::SizeUnknown { key: Key(4), .. }), "{err}");
}

#[derive(Clone, Debug)]
enum Op {
    /// (key, record) pairs, one LSN each.
    Ingest(Vec<(u64, Record)>),
    Flush,
    Crash,
}

fn record() -> impl Strategy<Value = Record> {
    let len = prop_oneof![0usize..64, 7_900usize..=MAX_VALUE_BYTES];
    let op = prop_oneof![
        3 => (0usize..700).prop_map(|n| DeltaOp::Append(vec![3; n])),
        1 => (0u32..8_150, 0usize..43).prop_map(|(offset, n)| DeltaOp::WriteAt { offset, bytes: vec![4; n] }),
        1 => (0u32..8_200).prop_map(DeltaOp::Truncate),
        1 => Just(DeltaOp::Clear),
    ];
    prop_oneof![
        1 => len.prop_map(|n| Record::Image(vec![5; n])),
        3 => prop::collection::vec(op, 1..4).prop_map(Record::Delta),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec((0u64..3, record()), 1..5).prop_map(Op::Ingest),
        1 => Just(Op::Flush),
        1 => Just(Op::Crash),
    ]
}

/// Whether the model, with `batch` appended, has a value redo refuses.
fn overflows(model: &Model, batch: &[IngestRecord]) -> bool {
    let mut m = Model { records: model.records.clone(), last: model.last };
    batch.iter().any(|r| {
        m.records.entry(r.key).or_default().insert(r.lsn, r.record.clone());
        m.try_get(r.key, r.lsn).is_err()
    })
}

fn run(ops: Vec<Op>) {
    const INITDB: Lsn = Lsn(10);
    let mut h = Harness::new(INITDB, config());
    let mut model = Model::default();
    let mut lsn = INITDB.0;
    for op in ops {
        match op {
            Op::Ingest(batch) => {
                let records: Vec<IngestRecord> = batch
                    .into_iter()
                    .map(|(key, record)| {
                        lsn += 1;
                        rec(key, lsn, record)
                    })
                    .collect();
                let expect_refusal = overflows(&model, &records);
                match h.ingest(records.clone()) {
                    Ok(_) => {
                        assert!(!expect_refusal, "acknowledged a value redo refuses");
                        for r in records {
                            model.records.entry(r.key).or_default().insert(r.lsn, r.record);
                            model.last = r.lsn;
                        }
                    }
                    // A record that overflows even on the empty value fails
                    // `Record::validate` first.
                    Err(IngestError::ValueTooLarge { .. } | IngestError::InvalidRecord { .. })
                        if expect_refusal => {}
                    Err(e) => panic!("refused a valid batch: {e}"),
                }
            }
            Op::Flush => h.flush(),
            Op::Crash => {
                let (world, now): (World, Instant) = (h.world.clone(), h.now);
                drop(h);
                h = Harness::recover(world, config(), now);
                for chunk in model.all().chunks(4) {
                    h.ingest(chunk.to_vec()).expect("a re-send of acknowledged records");
                }
            }
        }
        // Every acknowledged key reads back at the newest LSN.
        for key in 0..3 {
            let at = model.last.max(INITDB);
            assert_eq!(h.get(Key(key), at), Ok(model.get(Key(key), at)), "key {key} at {at}");
        }
    }
    h.flush();
    let (world, now) = (h.world.clone(), h.now);
    drop(h);
    let mut h = Harness::recover(world, config(), now);
    for (key, history) in &model.records {
        for lsn in history.keys() {
            assert_eq!(h.get(*key, *lsn), Ok(model.get(*key, *lsn)), "key {key} at {lsn}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_acknowledged_value_reads_back(ops in prop::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
