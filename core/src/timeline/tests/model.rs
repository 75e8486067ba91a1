//! Model-based tests: random ingest, flushes, reads, faults and crashes, compared
//! with a plain BTreeMap of records.

use super::harness::{Harness, World};
use super::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Records as (key, lsn step, record).
    Ingest(Vec<(u64, u64, Record)>),
    Flush,
    Read(u64, prop::sample::Index),
    Tick(u64),
    FailWrites(u32),
    FailDownloads(u32),
    FailRedos(u32),
    CorruptLocal(prop::sample::Index),
    /// Stop (true) or resume (false) index uploads.
    Lag(bool),
    Crash,
    /// The upload queue reports its layers uploaded (eviction may take them).
    ConfirmUploads,
    /// `handle_mode(may_compact, may_delete)`.
    Mode(bool, bool),
}

fn record() -> impl Strategy<Value = Record> {
    let op = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..8).prop_map(DeltaOp::Append),
        (0u32..24, prop::collection::vec(any::<u8>(), 0..6))
            .prop_map(|(offset, bytes)| DeltaOp::WriteAt { offset, bytes }),
        (0u32..24).prop_map(DeltaOp::Truncate),
        Just(DeltaOp::Clear),
    ];
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..16).prop_map(Record::Image),
        3 => prop::collection::vec(op, 1..3).prop_map(Record::Delta),
    ]
}

fn op(crashes: bool) -> impl Strategy<Value = Op> {
    let crash = if crashes { Op::Crash } else { Op::Tick(0) };
    prop_oneof![
        6 => prop::collection::vec((0u64..6, 1u64..4, record()), 1..6).prop_map(Op::Ingest),
        1 => Just(Op::Flush),
        6 => (0u64..7, any::<prop::sample::Index>()).prop_map(|(k, i)| Op::Read(k, i)),
        1 => (0u64..3000).prop_map(Op::Tick),
        1 => (0u32..3).prop_map(Op::FailWrites),
        1 => (0u32..2).prop_map(Op::FailDownloads),
        1 => (0u32..2).prop_map(Op::FailRedos),
        1 => any::<prop::sample::Index>().prop_map(Op::CorruptLocal),
        1 => any::<bool>().prop_map(Op::Lag),
        1 => Just(crash),
        1 => Just(Op::ConfirmUploads),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(c, d)| Op::Mode(c, d)),
    ]
}

/// The model: every acknowledged record.
#[derive(Default)]
pub(super) struct Model {
    pub(super) records: BTreeMap<Key, BTreeMap<Lsn, Record>>,
    pub(super) last: Lsn,
}

impl Model {
    pub(super) fn get(&self, key: Key, lsn: Lsn) -> Option<Vec<u8>> {
        self.try_get(key, lsn).expect("values stay small")
    }

    /// The value of `key` at `lsn`, or why redo refuses it.
    pub(super) fn try_get(&self, key: Key, lsn: Lsn) -> Result<Option<Vec<u8>>, RedoError> {
        let Some(history) = self.records.get(&key) else { return Ok(None) };
        let below: Vec<&Record> = history.range(..=lsn).map(|(_, r)| r).collect();
        if below.is_empty() {
            return Ok(None);
        }
        let from = below.iter().rposition(|r| matches!(r, Record::Image(_)));
        let (base, rest) = match from {
            Some(i) => match below[i] {
                Record::Image(b) => (Some(b.as_slice()), &below[i + 1..]),
                Record::Delta(_) => unreachable!(),
            },
            None => (None, &below[..]),
        };
        let deltas: Vec<&[DeltaOp]> = rest
            .iter()
            .map(|r| match r {
                Record::Delta(ops) => ops.as_slice(),
                Record::Image(_) => unreachable!(),
            })
            .collect();
        crate::redo::apply(base, &deltas).map(Some)
    }

    pub(super) fn all(&self) -> Vec<IngestRecord> {
        let mut all: Vec<IngestRecord> = self
            .records
            .iter()
            .flat_map(|(k, m)| {
                m.iter().map(|(l, r)| IngestRecord { key: *k, lsn: *l, record: r.clone() })
            })
            .collect();
        all.sort_by_key(|r| r.lsn);
        all
    }
}

fn config() -> TimelineConfig {
    TimelineConfig {
        checkpoint_distance_bytes: 300,
        checkpoint_timeout_ms: 2_000,
        read_wait_timeout_ms: 100,
        flush_retry_base_ms: 10,
        flush_retry_max_ms: 100,
        // Room for a few small files: reads go both through the cache and to disk.
        layer_cache_bytes: 1_500,
        compaction_threshold_layers: 3,
        compaction_target_file_bytes: 120,
        image_creation_threshold_layers: 2,
        gc_horizon_lsn_distance: 4,
        gc_retention_ms: 0,
        eviction_idle_ms: 1_500,
        ..TimelineConfig::default()
    }
}

fn run(ops: Vec<Op>) {
    const INITDB: Lsn = Lsn(100);
    let mut h = Harness::new(INITDB, config());
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Ingest(batch) => {
                let mut lsn = model.last.max(INITDB);
                let mut records = Vec::new();
                for (key, step, record) in batch {
                    lsn = Lsn(lsn.0 + step);
                    records.push(IngestRecord { key: Key(key), lsn, record });
                }
                h.ingest(records.clone()).expect("valid batch");
                for r in records {
                    model.records.entry(r.key).or_default().insert(r.lsn, r.record);
                    model.last = r.lsn;
                }
            }
            Op::Flush => {
                h.flush();
                assert_eq!(h.tl.disk_consistent_lsn(), h.tl.last_ingested_lsn());
            }
            Op::Read(key, at) => {
                let span = h.tl.last_ingested_lsn().0 - INITDB.0 + 1;
                let lsn = Lsn(INITDB.0 + at.index(span as usize) as u64);
                let faults = (h.fail_downloads, h.fail_redos);
                match h.get(Key(key), lsn) {
                    Ok(v) => assert_eq!(v, model.get(Key(key), lsn), "get({key}, {lsn})"),
                    // An injected fault may fail a read, clearly; never silently.
                    Err(ReadError::LayerUnavailable { .. }) => assert!(h.fail_downloads < faults.0),
                    Err(ReadError::Redo(_)) => assert!(h.fail_redos < faults.1),
                    Err(ReadError::BelowGcCutoff { gc_cutoff, .. }) => {
                        assert!(lsn < gc_cutoff && gc_cutoff == h.tl.metadata().gc_cutoff_lsn)
                    }
                    Err(e) => panic!("get({key}, {lsn}): {e}"),
                }
            }
            Op::Tick(ms) => h.advance_to(h.now.plus_millis(ms)),
            Op::FailWrites(n) => h.fail_writes = n,
            Op::FailDownloads(n) => h.fail_downloads = n,
            Op::FailRedos(n) => h.fail_redos = n,
            Op::CorruptLocal(i) => {
                if !h.world.disk.is_empty() {
                    let name =
                        h.world.disk.keys().nth(i.index(h.world.disk.len())).unwrap().clone();
                    let bytes = h.world.disk.get_mut(&name).unwrap();
                    let at = i.index(bytes.len().max(1));
                    if let Some(b) = bytes.get_mut(at) {
                        *b ^= 0x40;
                    }
                }
            }
            Op::Lag(on) => h.world.set_lag(on),
            Op::ConfirmUploads => h.confirm_uploads(),
            Op::Mode(compact, delete) => {
                h.tl.handle_mode(h.now, compact, delete);
                h.drain();
            }
            Op::Crash => {
                let durable = h.world.index.disk_consistent_lsn;
                let world: World = h.world.clone();
                let now = h.now;
                drop(h);
                h = Harness::recover(world, config(), now);
                // Faults armed before the crash do not carry over.
                assert_eq!(h.tl.last_ingested_lsn(), durable);
                // Everything at or below the durable LSN reads back unchanged.
                for key in 0..6 {
                    assert_eq!(h.get(Key(key), durable), Ok(model.get(Key(key), durable)));
                }
                // The client re-sends everything it kept; the durable part is skipped.
                for chunk in model.all().chunks(7) {
                    h.ingest(chunk.to_vec()).expect("re-send");
                }
                assert_eq!(h.tl.last_ingested_lsn(), model.last.max(INITDB));
            }
        }
        // S-IDX-REF: the upload queue's set is the layer map (nothing mapped that the
        // queue does not know, nothing the queue names that the map dropped);
        // `publish` checks the index names only existing objects, and deletions
        // wait for an index without them (S-DEL-AFTER-INDEX).
        let mapped: Vec<LayerName> = h.tl.layers().map(|l| l.name).collect();
        let queued: Vec<LayerName> = h.world.queue_layers.keys().cloned().collect();
        assert_eq!(mapped, queued);
        for name in &h.world.deleted {
            assert!(!h.world.index.layer_metadata.contains_key(name), "S-DEL-AFTER-INDEX");
        }
    }
    (h.fail_writes, h.fail_downloads, h.fail_redos) = (0, 0, 0);
    h.flush();
    for key in 0..7 {
        let from = INITDB.0.max(h.tl.metadata().gc_cutoff_lsn.0);
        for lsn in (from..=model.last.0).step_by(3).chain([model.last.0]) {
            assert_eq!(h.get(Key(key), Lsn(lsn)), Ok(model.get(Key(key), Lsn(lsn))));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn timeline_matches_a_btreemap_model(ops in prop::collection::vec(op(false), 1..80)) {
        run(ops);
    }

    #[test]
    fn timeline_survives_crashes(ops in prop::collection::vec(op(true), 1..80)) {
        run(ops);
    }
}
