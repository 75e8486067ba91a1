mod bench;
mod checks;
mod compaction;
mod disk_full;
mod eviction;
mod jobs;
mod model_tests;
mod value_sizes;

use super::harness::{self, Harness, World};
use super::*;
use crate::generation::Generation;
use crate::index_part::LayerMeta;
use crate::io_error::IoErrorKind;
use crate::redo::{DeltaOp, IngestRecord, Record};

/// Test-only fault injection for the node's panic-isolation tests: puts a record
/// under [`Key::MAX`] into the open in-memory layer, bypassing ingest validation
/// (the bug of issue 15 item 1), so the next flush of this timeline panics inside
/// its handler ("record ... outside the layer's ranges").
pub(crate) fn inject_unflushable_record(tl: &mut Timeline, now: Instant) {
    let lsn = tl.last_ingested.next();
    tl.open.put(now, Key::MAX, lsn, Record::Image(b"poison".to_vec()));
    tl.last_ingested = lsn;
}

fn rec(key: u64, lsn: u64, record: Record) -> IngestRecord {
    IngestRecord { key: Key(key), lsn: Lsn(lsn), record }
}

fn img(b: &[u8]) -> Record {
    Record::Image(b.to_vec())
}

fn app(b: &[u8]) -> Record {
    Record::Delta(vec![DeltaOp::Append(b.to_vec())])
}

fn small_config() -> TimelineConfig {
    TimelineConfig {
        checkpoint_distance_bytes: 1 << 20,
        checkpoint_timeout_ms: 10_000,
        read_wait_timeout_ms: 500,
        ..TimelineConfig::default()
    }
}

#[test]
fn ingest_then_read_from_memory_and_from_a_file() {
    let mut h = Harness::new(Lsn(10), small_config());
    h.ingest(vec![rec(1, 11, img(b"a")), rec(1, 12, app(b"b")), rec(2, 13, img(b"x"))]).unwrap();
    assert_eq!(h.get(Key(1), Lsn(12)), Ok(Some(b"ab".to_vec())));
    assert_eq!(h.get(Key(1), Lsn(11)), Ok(Some(b"a".to_vec())));
    assert_eq!(h.get(Key(1), Lsn(10)), Ok(None));
    assert_eq!(h.get(Key(3), Lsn(13)), Ok(None));
    h.flush();
    assert_eq!(h.tl.disk_consistent_lsn(), Lsn(13));
    assert_eq!(h.tl.in_memory_bytes(), 0);
    h.ingest(vec![rec(1, 20, app(b"c"))]).unwrap();
    // One delta in memory, the rest in the file.
    assert_eq!(h.get(Key(1), Lsn(20)), Ok(Some(b"abc".to_vec())));
    assert_eq!(h.get(Key(1), Lsn(19)), Ok(Some(b"ab".to_vec())));
    assert_eq!(h.get(Key(2), Lsn(20)), Ok(Some(b"x".to_vec())));
}

#[test]
fn ingest_is_idempotent_and_checks_the_whole_batch_first() {
    let mut h = Harness::new(Lsn(10), small_config());
    let out = h.ingest(vec![rec(1, 11, img(b"a")), rec(1, 12, app(b"b"))]).unwrap();
    assert_eq!((out.applied, out.skipped, out.last_ingested_lsn), (2, 0, Lsn(12)));
    let out = h
        .ingest(vec![rec(1, 11, img(b"zz")), rec(1, 12, app(b"zz")), rec(1, 13, app(b"c"))])
        .unwrap();
    assert_eq!((out.applied, out.skipped, out.last_ingested_lsn), (1, 2, Lsn(13)));
    assert_eq!(h.get(Key(1), Lsn(13)), Ok(Some(b"abc".to_vec())));

    let err = h.ingest(vec![rec(1, 20, img(b"a")), rec(1, 20, img(b"b"))]).unwrap_err();
    assert!(matches!(err, IngestError::NotIncreasing { index: 1, .. }), "{err}");
    let big = Record::Image(vec![0; crate::redo::MAX_VALUE_BYTES + 1]);
    let err = h.ingest(vec![rec(1, 21, img(b"ok")), rec(1, 22, big)]).unwrap_err();
    assert!(matches!(err, IngestError::InvalidRecord { .. }), "{err}");
    assert_eq!(h.tl.last_ingested_lsn(), Lsn(13), "a refused batch applies nothing");
    let err = h.ingest(vec![rec(1, u64::MAX, img(b""))]).unwrap_err();
    assert!(matches!(err, IngestError::LsnOutOfRange { .. }));
}

/// Issue 15 item 1: `FFFFFFFFFFFFFFFF` was acknowledged and the next flush panicked
/// ("record ... outside the layer's ranges"), taking the node down. Key ranges are
/// half-open, so that key is refused at ingest (the batch applies nothing) and at
/// read; the largest storable key still goes through a flush.
#[test]
fn key_max_is_refused_at_ingest_and_read_and_the_largest_storable_key_flushes() {
    let mut h = Harness::new(Lsn(10), small_config());
    let err = h.ingest(vec![rec(1, 11, img(b"a")), rec(u64::MAX, 12, img(b"b"))]).unwrap_err();
    assert_eq!(err, IngestError::KeyOutOfRange { lsn: Lsn(12), key: Key::MAX });
    assert_eq!(h.tl.last_ingested_lsn(), Lsn(10), "a refused batch applies nothing");
    h.ingest(vec![rec(u64::MAX - 1, 11, img(b"a")), rec(0, 12, img(b"z"))]).unwrap();
    h.flush();
    assert_eq!(h.tl.disk_consistent_lsn(), Lsn(12));
    assert_eq!(h.get(Key(u64::MAX - 1), Lsn(12)), Ok(Some(b"a".to_vec())));
    assert_eq!(h.get(Key::MAX, Lsn(12)), Err(ReadError::KeyOutOfRange { key: Key::MAX }));
}

#[test]
fn flush_effects_come_in_order() {
    let mut h = Harness::new(Lsn(0), small_config());
    h.ingest(vec![rec(5, 1, img(b"v")), rec(6, 2, img(b"w"))]).unwrap();
    h.log.clear();
    h.flush();
    let kinds: Vec<&str> = h
        .log
        .iter()
        .map(|e| match e {
            TimelineEffect::WriteLayer { .. } => "write-layer",
            TimelineEffect::LayerFlushed { .. } => "layer-flushed",
            TimelineEffect::WriteMetadata { .. } => "write-metadata",
            TimelineEffect::MetadataDurable { .. } => "metadata-durable",
            TimelineEffect::FlushDone { .. } => "flush-done",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["write-layer", "layer-flushed", "write-metadata", "metadata-durable", "flush-done"]
    );
    let name: LayerName =
        "0000000000000000-FFFFFFFFFFFFFFFF__0000000000000001-0000000000000003".parse().unwrap();
    assert!(matches!(&h.log[0], TimelineEffect::WriteLayer { name: n, .. } if *n == name));
    // A flush with nothing new is answered at once.
    h.log.clear();
    h.flush();
    assert!(matches!(h.log[..], [TimelineEffect::FlushDone { .. }]));
}

/// Frozen layers waiting behind a flush are written one after another and one
/// metadata write records them all (a crash-safe write costs two fsyncs; one per
/// layer halved ingest throughput).
#[test]
fn one_metadata_write_covers_the_layers_waiting_to_flush() {
    let mut h =
        Harness::new(Lsn(0), TimelineConfig { checkpoint_distance_bytes: 64, ..small_config() });
    h.manual = true;
    for i in 0..3u64 {
        let batch = (0..4).map(|k| rec(k, 1 + i * 4 + k, img(&[i as u8; 40]))).collect();
        h.ingest(batch).unwrap();
    }
    h.drain();
    let mut kinds = Vec::new();
    for _ in 0..20 {
        let Some(effect) = h.log.pop() else { break };
        match effect {
            TimelineEffect::WriteLayer { op, name, bytes } => {
                kinds.push("write-layer");
                h.world.disk.insert(name, bytes);
                h.manual = false;
                h.complete(op, TimelineCompletion::Written(Ok(())));
                h.manual = true;
                h.drain();
            }
            TimelineEffect::WriteMetadata { op, metadata } => {
                kinds.push("write-metadata");
                h.world.metadata_file = Some(metadata.to_bytes().to_vec());
                h.manual = false;
                h.complete(op, TimelineCompletion::Written(Ok(())));
                h.manual = true;
                h.drain();
            }
            _ => {}
        }
    }
    let layers = kinds.iter().filter(|k| **k == "write-layer").count();
    assert!(layers >= 3, "{kinds:?}");
    assert_eq!(
        kinds[layers..],
        ["write-metadata"],
        "one metadata write after all layers: {kinds:?}"
    );
    assert_eq!(h.tl.disk_consistent_lsn(), Lsn(12));
}

#[test]
fn disk_consistent_waits_for_layer_and_metadata() {
    let mut h = Harness::new(Lsn(0), small_config());
    h.manual = true;
    h.ingest(vec![rec(1, 1, img(b"v"))]).unwrap();
    let id = h.tl.handle_flush(h.now);
    h.drain();
    let Some(TimelineEffect::WriteLayer { op, name, bytes }) = h.log.pop() else {
        panic!("{:?}", h.log)
    };
    h.world.disk.insert(name, bytes);
    h.manual = false;
    h.complete(op, TimelineCompletion::Written(Ok(())));
    h.manual = true;
    h.drain();
    assert_eq!(h.tl.disk_consistent_lsn(), Lsn(0), "metadata not durable yet");
    let Some(TimelineEffect::WriteMetadata { op, .. }) = h.log.pop() else { panic!("{:?}", h.log) };
    // A failed metadata write: retried after the backoff, nothing advances.
    h.complete(
        op,
        TimelineCompletion::Written(Err(IoError::local(
            IoErrorKind::FsyncFailed,
            "metadata",
            "EIO",
        ))),
    );
    assert_eq!(h.tl.poll_timeout(), Some(Instant(100)));
    h.manual = false;
    h.advance_to(Instant(100));
    assert_eq!(h.tl.disk_consistent_lsn(), Lsn(1));
    assert!(h.flushes_done.contains(&id));
}

#[test]
fn a_failed_layer_write_is_redone_from_memory() {
    let mut h = Harness::new(Lsn(0), small_config());
    h.ingest(vec![rec(1, 1, img(b"v")), rec(1, 2, app(b"w"))]).unwrap();
    h.fail_writes = 3;
    h.flush();
    assert!(h.now >= Instant(100 + 200 + 400), "backoff doubles: {}", h.now);
    assert_eq!(h.tl.disk_consistent_lsn(), Lsn(2));
    assert_eq!(h.get(Key(1), Lsn(2)), Ok(Some(b"vw".to_vec())));
}

#[test]
fn reads_above_last_ingested_wait_then_time_out() {
    let mut h = Harness::new(Lsn(0), small_config());
    let early = h.start_read(Key(1), Lsn(5));
    let late = h.start_read(Key(1), Lsn(9));
    assert!(h.reads.is_empty());
    h.ingest(vec![rec(1, 5, img(b"five"))]).unwrap();
    assert_eq!(h.reads.remove(&early), Some(Ok(Some(b"five".to_vec()))));
    assert_eq!(h.tl.poll_timeout(), Some(Instant(500)));
    h.advance_to(Instant(500));
    let err = h.reads.remove(&late).unwrap().unwrap_err();
    assert_eq!(err, ReadError::WaitTimeout { lsn: Lsn(9), last_ingested: Lsn(5), waited_ms: 500 });
    assert_eq!(h.tl.reads_in_progress(), 0);
}

#[test]
fn reads_below_the_gc_cutoff_fail() {
    let mut world = World::new(Lsn(60));
    world.index.metadata.gc_cutoff_lsn = Lsn(50);
    let mut h = Harness::recover(world, small_config(), Instant::ZERO);
    assert_eq!(
        h.get(Key(1), Lsn(49)),
        Err(ReadError::BelowGcCutoff { lsn: Lsn(49), gc_cutoff: Lsn(50) })
    );
    assert_eq!(h.get(Key(1), Lsn(50)), Ok(None));
}

#[test]
fn size_and_age_thresholds_freeze_the_open_layer() {
    let config = TimelineConfig { checkpoint_distance_bytes: 100, ..small_config() };
    let mut h = Harness::new(Lsn(0), config);
    h.manual = true;
    h.ingest(vec![rec(1, 1, img(&[7; 50]))]).unwrap();
    assert_eq!(h.tl.frozen_layer_count(), 0);
    h.ingest(vec![rec(1, 2, img(&[7; 50]))]).unwrap();
    assert_eq!((h.tl.frozen_layer_count(), h.tl.open_layer_bytes()), (1, 0));
    h.ingest(vec![rec(2, 3, img(b"x"))]).unwrap();
    assert_eq!(h.tl.poll_timeout(), Some(Instant(10_000)));
    h.now = Instant(10_000);
    h.tl.handle_timeout(h.now, TimelineTimer::Checkpoint);
    assert_eq!(h.tl.frozen_layer_count(), 2, "the age timer froze the second layer");
    // Reads see frozen layers while their flush is in flight.
    h.manual = false;
    h.drain();
    h.manual = true;
    assert_eq!(h.tl.disk_consistent_lsn(), Lsn(0), "world effects were withheld");
    let id = ReadId(99);
    h.tl.handle_read(h.now, id, Key(2), Lsn(3));
    h.drain();
    assert_eq!(h.reads.remove(&id), Some(Ok(Some(b"x".to_vec()))));
}

#[test]
fn backpressure_refuses_new_records_but_acknowledges_old_ones() {
    let mut h = Harness::new(Lsn(0), small_config());
    h.ingest(vec![rec(1, 1, img(b"a"))]).unwrap();
    h.tl.handle_backpressure(h.now, true);
    let err = h.ingest(vec![rec(1, 2, img(b"b"))]).unwrap_err();
    assert_eq!(err, IngestError::Backpressure { retry_after_ms: 1_000 });
    assert_eq!(h.ingest(vec![rec(1, 1, img(b"a"))]).unwrap().skipped, 1);
    h.tl.handle_backpressure(h.now, false);
    h.ingest(vec![rec(1, 2, img(b"b"))]).unwrap();

    let config = TimelineConfig { max_in_memory_bytes: 100, ..small_config() };
    let mut h = Harness::new(Lsn(0), config);
    h.manual = true;
    h.ingest(vec![rec(1, 1, img(&[0; 200]))]).unwrap();
    let err = h.ingest(vec![rec(1, 2, img(b"b"))]).unwrap_err();
    assert!(matches!(err, IngestError::Backpressure { .. }));
    assert_eq!(h.tl.frozen_layer_count(), 1, "memory is drained by a flush");
}

#[test]
fn recover_trusts_the_remote_index() {
    let mut h = Harness::new(Lsn(0), small_config());
    h.ingest(vec![rec(1, 1, img(b"a"))]).unwrap();
    h.flush();
    h.ingest(vec![rec(1, 2, app(b"b"))]).unwrap();
    h.flush();
    let mut world = h.world.clone();
    let names: Vec<LayerName> = world.disk.keys().cloned().collect();
    // A local-only file, and a local file whose size disagrees with the index.
    let stray: LayerName =
        "0000000000000000-FFFFFFFFFFFFFFFF__0000000000000009-000000000000000A".parse().unwrap();
    world.disk.insert(stray.clone(), vec![1, 2, 3]);
    world.disk.get_mut(&names[0]).unwrap().push(0);
    let (t, tl) = harness::ids();
    let local = world.disk.iter().map(|(n, b)| (n.clone(), b.len() as u64)).collect();
    let (recovered, remove) =
        Timeline::recover(t, tl, &world.index, &local, small_config(), Instant::ZERO);
    assert_eq!(remove, vec![names[0].clone(), stray]);
    assert!(!recovered.layer(&names[0]).unwrap().residence.eq(&Residence::Resident));
    assert_eq!(recovered.layer(&names[1]).unwrap().residence, Residence::Resident);
    assert_eq!(recovered.last_ingested_lsn(), Lsn(2));

    let mut h = Harness::recover(world, small_config(), Instant(5));
    assert_eq!(h.get(Key(1), Lsn(2)), Ok(Some(b"ab".to_vec())), "downloads the remote-only layer");
    assert_eq!(h.tl.layer(&names[0]).unwrap().residence, Residence::Resident);
}

#[test]
fn a_corrupt_local_layer_is_downloaded_again_never_served() {
    let config = TimelineConfig { layer_cache_bytes: 0, ..small_config() };
    let mut h = Harness::new(Lsn(0), config);
    h.ingest(vec![rec(1, 1, img(b"good"))]).unwrap();
    h.flush();
    let name = h.world.disk.keys().next().unwrap().clone();
    let len = h.world.disk[&name].len();
    h.world.disk.get_mut(&name).unwrap()[len / 2] ^= 0xff;
    h.log.clear();
    assert_eq!(h.get(Key(1), Lsn(1)), Ok(Some(b"good".to_vec())));
    assert!(h.log.iter().any(|e| matches!(e, TimelineEffect::DownloadLayer { .. })));

    // Bad locally and remotely: a clear error naming the corruption (no retry can
    // help), not bytes.
    h.world.disk.get_mut(&name).unwrap()[len / 2] ^= 0xff;
    h.world.disk.get_mut(&name).unwrap()[len / 2] ^= 0x0f;
    h.world.remote.get_mut(&name).unwrap().0[len / 2] ^= 0x0f;
    let err = h.get(Key(1), Lsn(1)).unwrap_err();
    assert!(matches!(err, ReadError::LayerCorrupt { .. }), "{err}");
}

#[test]
fn completions_for_unknown_or_mismatched_ops_are_refused() {
    let mut h = Harness::new(Lsn(0), small_config());
    let err =
        h.tl.handle_completion(h.now, OpId(42), TimelineCompletion::Written(Ok(()))).unwrap_err();
    assert_eq!(err, TimelineError::UnknownOp(OpId(42)));
    h.manual = true;
    h.ingest(vec![rec(1, 1, img(b"a"))]).unwrap();
    h.tl.handle_flush(h.now);
    h.drain();
    let Some(TimelineEffect::WriteLayer { op, .. }) = h.log.pop() else { panic!() };
    let err = h.tl.handle_completion(h.now, op, TimelineCompletion::Read(Ok(vec![]))).unwrap_err();
    assert_eq!(err, TimelineError::WrongCompletion { op, expected: "Written" });
    h.tl.check_invariants();
}

#[test]
fn duplicate_read_ids_are_answered_with_an_error() {
    let mut h = Harness::new(Lsn(0), small_config());
    h.tl.handle_read(h.now, ReadId(1), Key(1), Lsn(5));
    h.tl.handle_read(h.now, ReadId(1), Key(1), Lsn(5));
    h.drain();
    assert_eq!(h.reads.remove(&ReadId(1)), Some(Err(ReadError::DuplicateReadId(ReadId(1)))));
}

#[test]
fn parsed_layers_are_cached_within_a_byte_budget() {
    let mut h = Harness::new(Lsn(0), small_config());
    h.ingest(vec![rec(1, 1, img(b"a"))]).unwrap();
    h.flush();
    h.ingest(vec![rec(1, 2, app(b"b"))]).unwrap();
    h.flush();
    h.log.clear();
    assert_eq!(h.get(Key(1), Lsn(2)), Ok(Some(b"ab".to_vec())));
    assert_eq!(h.tl.layer_cache_hits_misses(), (0, 2));
    assert_eq!(h.get(Key(1), Lsn(2)), Ok(Some(b"ab".to_vec())));
    assert_eq!(h.tl.layer_cache_hits_misses(), (2, 2));
    let reads = h.log.iter().filter(|e| matches!(e, TimelineEffect::ReadLayer { .. })).count();
    assert_eq!(reads, 2, "the second get is served from the cache");
    let total: u64 = h.world.disk.values().map(|b| b.len() as u64).sum();
    assert_eq!(h.tl.layer_cache_bytes(), total);

    // A budget that holds one file keeps only the most recent one.
    let one = h.world.disk.values().map(|b| b.len() as u64).max().unwrap();
    let config = TimelineConfig { layer_cache_bytes: one, ..small_config() };
    let mut h2 = Harness::recover(h.world.clone(), config, h.now);
    assert_eq!(h2.get(Key(1), Lsn(2)), Ok(Some(b"ab".to_vec())));
    assert!(h2.tl.layer_cache_bytes() <= one);
}

#[test]
fn future_layers_in_the_index_are_left_out_and_reported() {
    let mut h = Harness::new(Lsn(0), small_config());
    let records = vec![rec(1, 1, img(b"a")), rec(1, 2, app(b"b"))];
    h.ingest(records.clone()).unwrap();
    // The layer is flushed and (with the queue's index) uploaded; its metadata
    // write fails, and the node crashes before the retry.
    h.fail_writes = 0;
    h.tl.handle_flush(h.now);
    h.manual = true;
    h.drain();
    let Some(TimelineEffect::WriteLayer { op, name, bytes }) = h.log.pop() else { panic!() };
    h.world.disk.insert(name.clone(), bytes);
    h.manual = false;
    h.complete(op, TimelineCompletion::Written(Ok(())));
    h.fail_writes = 1;
    h.drain();
    assert_eq!(h.world.index.layer_metadata.keys().collect::<Vec<_>>(), [&name]);
    assert_eq!(h.world.index.disk_consistent_lsn, Lsn(0));

    let mut h = Harness::recover(h.world.clone(), small_config(), h.now);
    assert_eq!(h.tl.future_layers(), std::slice::from_ref(&name));
    assert!(h.tl.layer(&name).is_none());
    assert!(!h.world.disk.contains_key(&name), "its local file is removed");
    assert_eq!(h.tl.last_ingested_lsn(), Lsn(0));
    // Re-sent and flushed at the same boundary: the same name, added afresh.
    h.ingest(records).unwrap();
    h.flush();
    assert_eq!(h.tl.disk_consistent_lsn(), Lsn(2));
    assert!(h.tl.layer(&name).is_some());
    assert_eq!(h.get(Key(1), Lsn(2)), Ok(Some(b"ab".to_vec())));
}

#[test]
fn reads_stop_at_the_newest_image_layer_below_them() {
    use crate::layer_name::{KeyRange, LsnRange};
    let full = KeyRange { start: Key::MIN, end: Key::MAX };
    let old = LayerName::Delta { keys: full, lsns: LsnRange::new(Lsn(1), Lsn(11)).unwrap() };
    let image = LayerName::Image { keys: KeyRange::new(Key(0), Key(100)).unwrap(), lsn: Lsn(10) };
    let new = LayerName::Delta { keys: full, lsns: LsnRange::new(Lsn(11), Lsn(21)).unwrap() };
    type Contents = Vec<(Key, Lsn, Record)>;
    let layers: Vec<(LayerName, Contents)> = vec![
        // The old deltas would give "old!"; the image at 10 says "img" for key 1.
        (
            old.clone(),
            vec![
                (Key(1), Lsn(2), img(b"old")),
                (Key(1), Lsn(9), app(b"!")),
                (Key(200), Lsn(3), img(b"far")),
            ],
        ),
        (image.clone(), vec![(Key(1), Lsn(10), img(b"img"))]),
        (new.clone(), vec![(Key(1), Lsn(15), app(b"+")), (Key(200), Lsn(16), app(b"?"))]),
    ];
    let mut world = World::new(Lsn(20));
    for (name, records) in &layers {
        let enc =
            crate::layer_file::encode(name, records.iter().map(|(k, l, r)| (*k, *l, r))).unwrap();
        let meta = LayerMeta {
            file_size: enc.bytes.len() as u64,
            generation: Generation::FIRST,
            crc32c: enc.crc32c,
        };
        world.remote.insert(name.clone(), (enc.bytes, meta));
        world.index.layer_metadata.insert(name.clone(), meta);
    }
    let mut h = Harness::recover(world, small_config(), Instant::ZERO);
    h.log.clear();
    assert_eq!(h.get(Key(1), Lsn(15)), Ok(Some(b"img+".to_vec())));
    let fetched: Vec<&LayerName> = h
        .log
        .iter()
        .filter_map(|e| match e {
            TimelineEffect::DownloadLayer { name, .. } => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(fetched, [&new, &image], "the old deltas below the image are never fetched");
    assert_eq!(h.get(Key(1), Lsn(10)), Ok(Some(b"img".to_vec())));
    assert_eq!(h.get(Key(1), Lsn(9)), Ok(Some(b"old!".to_vec())));
    assert_eq!(h.get(Key(1), Lsn(1)), Ok(None));
    // Key 200 is outside the image layer's keys: its history comes from the deltas.
    assert_eq!(h.get(Key(200), Lsn(20)), Ok(Some(b"far?".to_vec())));
}

/// A named timer does its own work only: with the checkpoint age, a waiting read's
/// deadline and a flush retry all due at one instant, firing one leaves the others
/// armed and their work undone until each fires. Any other input leaves them too.
#[test]
fn a_fired_timer_does_only_its_own_work() {
    let config = TimelineConfig { checkpoint_timeout_ms: 1_000, ..small_config() };
    let mut h = Harness::new(Lsn(0), config);
    h.ingest(vec![rec(1, 1, img(b"a"))]).unwrap();
    h.fail_writes = 1;
    let _ = h.tl.handle_flush(h.now);
    h.drain(); // the layer write fails: the flush backs off
    h.ingest(vec![rec(1, 2, app(b"b"))]).unwrap(); // a new open layer, opened now
    let waiting = h.start_read(Key(1), Lsn(9));
    let armed = |h: &Harness| h.tl.timers().map(|(_, t)| t).collect::<Vec<_>>();
    assert_eq!(
        armed(&h),
        [TimelineTimer::Checkpoint, TimelineTimer::FlushRetry, TimelineTimer::ReadWait]
    );
    h.now = Instant(2_000);
    let _ = h.get(Key(1), Lsn(2)); // an input, not a timer: nothing due happens
    assert_eq!(armed(&h).len(), 3);
    assert_eq!((h.tl.frozen_layer_count(), h.tl.disk_consistent_lsn()), (1, Lsn(0)));

    h.tl.handle_timeout(h.now, TimelineTimer::ReadWait);
    h.drain();
    assert!(matches!(h.reads.remove(&waiting), Some(Err(ReadError::WaitTimeout { .. }))));
    assert_eq!(armed(&h), [TimelineTimer::Checkpoint, TimelineTimer::FlushRetry]);
    assert_eq!((h.tl.frozen_layer_count(), h.tl.disk_consistent_lsn()), (1, Lsn(0)));

    h.tl.handle_timeout(h.now, TimelineTimer::FlushRetry);
    h.drain();
    assert_eq!(h.tl.disk_consistent_lsn(), Lsn(1), "the retried flush wrote the layer");
    assert_eq!(armed(&h), [TimelineTimer::Checkpoint]);
    assert!(h.tl.open_layer_bytes() > 0, "the open layer is not frozen by another timer");

    // Timers that are not set change nothing.
    for timer in [TimelineTimer::CompactionRetry, TimelineTimer::GcRetry, TimelineTimer::FlushRetry]
    {
        h.tl.handle_timeout(h.now, timer);
        h.drain();
    }
    assert!(h.tl.open_layer_bytes() > 0);
    h.tl.handle_timeout(h.now, TimelineTimer::Checkpoint);
    h.drain();
    assert_eq!(h.tl.open_layer_bytes(), 0, "the checkpoint timer froze the open layer");
}

/// Inputs as data: the timeline driven through `handle` alone; each illegal input
/// is refused with its typed error and changes nothing.
#[test]
fn handle_takes_every_input_and_types_its_refusals() {
    let mut h = Harness::new(Lsn(10), small_config());
    h.manual = true;
    let ingest = TimelineInput::Ingest(vec![rec(1, 11, img(b"a"))]);
    let out = h.tl.handle(h.now, ingest).unwrap();
    assert!(matches!(out, TimelineOutput::Ingested(IngestOutcome { applied: 1, .. })));
    let refused = h.tl.handle(h.now, TimelineInput::Ingest(vec![rec(u64::MAX, 12, img(b"x"))]));
    assert!(matches!(refused, Err(TimelineInputError::Ingest(IngestError::KeyOutOfRange { .. }))));
    let Ok(TimelineOutput::Flush(flush)) = h.tl.handle(h.now, TimelineInput::Flush) else {
        panic!("a flush is answered with its id")
    };
    h.drain();
    let Some(TimelineEffect::WriteLayer { op, .. }) = h.pending.front().cloned() else {
        panic!("the flush writes a layer: {:?}", h.pending)
    };
    let wrong = TimelineInput::Completion { op, completion: TimelineCompletion::Read(Ok(vec![])) };
    assert_eq!(
        h.tl.handle(h.now, wrong),
        Err(TimelineInputError::Illegal(TimelineError::WrongCompletion {
            op,
            expected: "Written"
        }))
    );
    let unknown = OpId(op.0 + 1000);
    let stray =
        TimelineInput::Completion { op: unknown, completion: TimelineCompletion::Written(Ok(())) };
    assert_eq!(
        h.tl.handle(h.now, stray),
        Err(TimelineInputError::Illegal(TimelineError::UnknownOp(unknown)))
    );
    let grant = TimelineInput::JobGranted(crate::scheduler::JobKind::Gc);
    assert_eq!(
        h.tl.handle(h.now, grant),
        Err(TimelineInputError::Illegal(TimelineError::UnexpectedGrant(
            crate::scheduler::JobKind::Gc
        )))
    );
    h.tl.check_invariants();
    // The refusals changed nothing: the real completion is still taken.
    while h.complete_next() {}
    assert!(h.flushes_done.contains(&flush));
    assert_eq!(h.tl.disk_consistent_lsn(), Lsn(11));
    for input in [
        TimelineInput::Read { req: ReadId(7), key: Key(1), lsn: Lsn(11) },
        TimelineInput::Backpressure(false),
        TimelineInput::Mode { may_compact: true, may_delete: true },
        TimelineInput::LayersUploaded(Vec::new()),
        TimelineInput::Timeout(TimelineTimer::Checkpoint),
    ] {
        assert_eq!(h.tl.handle(h.now, input), Ok(TimelineOutput::Done));
        h.drain();
        while h.complete_next() {}
    }
    assert_eq!(h.reads.get(&ReadId(7)), Some(&Ok(Some(b"a".to_vec()))));
}
