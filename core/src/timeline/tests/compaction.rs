//! Compaction: L0 → L1, the order of its effects with the upload queue, crashes at
//! every step, and re-runs after an interrupted compaction.

use super::*;
use crate::timeline::compaction::is_l0;
use crate::timeline::harness::{Harness, World};
use crate::timeline::model::Model;

pub(super) fn config(threshold: usize) -> TimelineConfig {
    TimelineConfig {
        checkpoint_distance_bytes: 1 << 20,
        checkpoint_timeout_ms: 1 << 30,
        compaction_threshold_layers: threshold,
        compaction_target_file_bytes: 200,
        image_creation_threshold_layers: usize::MAX,
        gc_horizon_lsn_distance: u64::MAX,
        // GC tests here bound by LSN distance only (gc.rs tests cover wall-clock).
        gc_retention_ms: 0,
        ..TimelineConfig::default()
    }
}

/// `layers` flushed L0s over `keys` keys: an image per key in the first, then
/// appends. Returns the model.
pub(super) fn fill(h: &mut Harness, layers: u64, keys: u64) -> Model {
    let mut model = Model::default();
    let mut lsn = h.tl.last_ingested_lsn().0;
    for round in 0..layers {
        let mut batch = Vec::new();
        for key in 0..keys {
            lsn += 1;
            let record = if round == 0 {
                Record::Image(vec![key as u8; 20])
            } else {
                Record::Delta(vec![DeltaOp::Append(vec![round as u8; 3])])
            };
            model.records.entry(Key(key)).or_default().insert(Lsn(lsn), record.clone());
            batch.push(IngestRecord { key: Key(key), lsn: Lsn(lsn), record });
        }
        h.ingest(batch).unwrap();
        h.flush();
    }
    model.last = Lsn(lsn);
    model
}

pub(super) fn check_reads(h: &mut Harness, model: &Model, keys: u64) {
    for key in 0..=keys {
        for lsn in (1..=model.last.0).step_by(2).chain([model.last.0]) {
            assert_eq!(h.get(Key(key), Lsn(lsn)), Ok(model.get(Key(key), Lsn(lsn))), "{key}@{lsn}");
        }
    }
}

fn l0_count(h: &Harness) -> usize {
    h.tl.layers().filter(|l| is_l0(&l.name)).count()
}

/// The upload queue's set, the map and the published index agree.
fn check_sets(h: &Harness) {
    let mapped: Vec<LayerName> = h.tl.layers().map(|l| l.name).collect();
    let queued: Vec<LayerName> = h.world.queue_layers.keys().cloned().collect();
    assert_eq!(mapped, queued, "S-IDX-REF: the map and the upload queue's set differ");
    for name in h.world.index.layer_metadata.keys() {
        assert!(h.world.remote.contains_key(name), "S-IDX-REF: {name} named but missing");
    }
}

#[test]
fn l0s_past_the_threshold_become_key_partitioned_l1s() {
    let mut h = Harness::new(Lsn(0), config(4));
    let model = fill(&mut h, 3, 8);
    assert_eq!(l0_count(&h), 3, "below the threshold nothing happens");
    assert_eq!(*h.tl.compaction_state(), CompactionState::Idle);
    let more = fill(&mut h, 1, 8);
    let mut model = model;
    for (k, m) in more.records {
        model.records.entry(k).or_default().extend(m);
    }
    model.last = more.last;
    assert_eq!(l0_count(&h), 0);
    let l1: Vec<LayerInfo> = h.tl.layers().collect();
    assert!(l1.len() >= 2, "a 200-byte target cuts 8 keys into several L1s: {l1:?}");
    let mut next_start = None;
    for l in &l1 {
        let LayerName::Delta { keys, lsns } = &l.name else { panic!("{}", l.name) };
        assert_eq!((lsns.start, lsns.end), (Lsn(1), Lsn(33)));
        if let Some(s) = next_start {
            assert_eq!(keys.start, s, "partitions are adjacent");
        }
        next_start = Some(keys.end);
        assert!(l.resident);
    }
    check_sets(&h);
    // The L0s were deleted remotely, after an index without them.
    assert_eq!(h.world.deleted.len(), 4);
    assert!(h.world.disk.keys().all(|n| !is_l0(n)), "local L0 files removed");
    check_reads(&mut h, &model, 8);
}

/// #5635: the outputs reach the upload queue before the inputs are unlinked, and
/// the inputs are deleted only after an index without them is durable.
#[test]
fn compaction_adds_its_outputs_before_it_unlinks_the_inputs() {
    let mut h = Harness::new(Lsn(0), config(3));
    let _ = fill(&mut h, 2, 4);
    h.world.set_lag(true);
    h.log.clear();
    let _ = fill(&mut h, 1, 4);
    let pos = |f: &dyn Fn(&TimelineEffect) -> bool| h.log.iter().position(f);
    let unlink = pos(&|e| matches!(e, TimelineEffect::UnlinkLayers { .. })).expect("unlinked");
    let last_add = h
        .log
        .iter()
        .rposition(|e| matches!(e, TimelineEffect::LayerFlushed { name, .. } if !is_l0(name)))
        .expect("outputs added");
    assert!(last_add < unlink, "#5635: an input unlinked before its replacement was added");
    // The index still lags: nothing deleted, the index names the L0s, all exist.
    assert!(h.world.deleted.is_empty(), "S-DEL-AFTER-INDEX");
    assert_eq!(h.world.pending_delete.len(), 3);
    h.world.set_lag(false);
    assert_eq!(h.world.deleted.len(), 3);
    check_sets(&h);
}

#[test]
fn mode_gates_compaction() {
    let mut h = Harness::new(Lsn(0), config(2));
    h.tl.handle_mode(h.now, false, false);
    let model = fill(&mut h, 4, 3);
    assert_eq!(l0_count(&h), 4, "stale / emergency: no compaction");
    h.tl.handle_mode(h.now, true, false);
    h.drain();
    assert_eq!(l0_count(&h), 0, "AttachedMulti compacts");
    check_sets(&h);
    check_reads(&mut h, &model, 3);
}

#[test]
fn failed_compaction_reads_and_writes_are_retried() {
    let mut h = Harness::new(Lsn(0), TimelineConfig { layer_cache_bytes: 0, ..config(3) });
    let model = fill(&mut h, 2, 4);
    h.fail_writes = 2;
    let mut all = model;
    let more = fill(&mut h, 1, 4);
    for (k, m) in more.records {
        all.records.entry(k).or_default().extend(m);
    }
    all.last = more.last;
    for _ in 0..20 {
        if let Some(at) = h.tl.poll_timeout() {
            h.advance_to(at);
        }
    }
    assert_eq!(l0_count(&h), 0);
    check_sets(&h);
    check_reads(&mut h, &all, 4);
}

/// S18: a crash before every world step of a compaction (with the index current or
/// lagging), then recovery from the index: the layer set is correct, the job runs
/// again, and every read matches the model.
#[test]
fn a_crash_at_every_compaction_step_recovers_a_correct_layer_set() {
    for lag in [false, true] {
        for cache in [0u64, 1 << 20] {
            let cfg = TimelineConfig { layer_cache_bytes: cache, ..config(3) };
            let mut h = Harness::new(Lsn(0), cfg.clone());
            h.tl.handle_mode(h.now, false, false);
            let model = fill(&mut h, 3, 6);
            h.world.set_lag(lag);
            h.manual = true;
            h.tl.handle_mode(h.now, true, true);
            h.drain();
            let mut steps = 0;
            loop {
                let world: World = h.world.clone();
                let mut r = Harness::recover(world, cfg.clone(), h.now);
                r.world.set_lag(false);
                r.drain();
                check_reads(&mut r, &model, 6);
                assert_eq!(l0_count(&r), 0, "the re-run compacted (lag {lag}, step {steps})");
                check_sets(&r);
                if !h.complete_next() {
                    break;
                }
                steps += 1;
            }
            assert!(steps >= 3, "read(s) or writes were stepped: {steps}");
            assert_eq!(l0_count(&h), 0);
            h.manual = false;
            h.world.set_lag(false);
            check_sets(&h);
            check_reads(&mut h, &model, 6);
        }
    }
}

/// An interrupted compaction whose outputs were partly named by a durable index:
/// the re-run keeps the existing output, writes only the missing ones, and ends
/// with the same layer set as an uninterrupted run.
#[test]
fn an_interrupted_compaction_rerun_writes_only_missing_outputs() {
    let cfg = config(3);
    let mut h = Harness::new(Lsn(0), cfg.clone());
    h.tl.handle_mode(h.now, false, false);
    let model = fill(&mut h, 3, 6);
    let before: World = h.world.clone();
    h.tl.handle_mode(h.now, true, true);
    h.drain();
    let done: Vec<LayerName> = h.tl.layers().map(|l| l.name).collect();
    assert!(done.len() >= 2);
    // The crash left an index naming the L0s and the first output only.
    let mut world = before;
    let first = done[0].clone();
    world.remote.insert(first.clone(), h.world.remote[&first].clone());
    world.index.layer_metadata.insert(first.clone(), h.world.remote[&first].1);
    world.index.seq += 1;
    let mut r = Harness::recover(world, cfg, h.now);
    assert_eq!(l0_count(&r), 3);
    r.log.clear();
    check_reads(&mut r, &model, 6);
    let written: Vec<&LayerName> = r
        .log
        .iter()
        .filter_map(|e| match e {
            TimelineEffect::WriteLayer { name, .. } => Some(name),
            _ => None,
        })
        .collect();
    assert!(!written.contains(&&first), "the existing output is not written again");
    assert_eq!(written.len(), done.len() - 1);
    let after: Vec<LayerName> = r.tl.layers().map(|l| l.name).collect();
    assert_eq!(after, done);
    check_sets(&r);
    check_reads(&mut r, &model, 6);
}

/// Layers visited per get: with N L0s a get of a key whose image is in the oldest
/// one reads N files; after compaction one.
#[test]
fn compaction_cuts_read_amplification() {
    let cfg = TimelineConfig { layer_cache_bytes: 0, ..config(6) };
    let mut h = Harness::new(Lsn(0), cfg);
    h.tl.handle_mode(h.now, false, false);
    let model = fill(&mut h, 6, 4);
    let visits = |h: &mut Harness| {
        h.log.clear();
        assert_eq!(h.get(Key(2), model.last), Ok(model.get(Key(2), model.last)));
        h.log.iter().filter(|e| matches!(e, TimelineEffect::ReadLayer { .. })).count()
    };
    assert_eq!(visits(&mut h), 6);
    h.tl.handle_mode(h.now, true, true);
    h.drain();
    assert_eq!(visits(&mut h), 1);
}

/// A flushed layer whose metadata is not durable yet is never a compaction input:
/// after a crash it would be a future layer, and an L1 holding it would take older,
/// unlinked records with it.
#[test]
fn compaction_waits_for_the_metadata_of_the_newest_l0() {
    let mut h = Harness::new(Lsn(0), config(2));
    let _ = fill(&mut h, 1, 3);
    h.manual = true;
    h.ingest(vec![IngestRecord { key: Key(1), lsn: Lsn(10), record: Record::Image(vec![7]) }])
        .unwrap();
    h.tl.handle_flush(h.now);
    h.drain();
    assert!(h.complete_next(), "the layer write");
    assert_eq!(l0_count(&h), 2);
    assert_eq!(h.tl.disk_consistent_lsn(), Lsn(3));
    assert_eq!(*h.tl.compaction_state(), CompactionState::Idle, "the new L0 is not durable");
    assert!(h.complete_next(), "the metadata write");
    assert_ne!(*h.tl.compaction_state(), CompactionState::Idle);
    while h.complete_next() {}
    assert_eq!(l0_count(&h), 0);
}

/// Compaction throughput next to a plain k-way merge of the same sorted runs, and
/// read amplification before and after. Run:
/// `cargo test --release -p strata-core --lib timeline::tests::compaction::bench -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: run explicitly with --release --ignored --nocapture"]
// A benchmark measures wall time; this is test-only code outside the machines.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn bench_compaction_and_read_amplification() {
    use crate::layer_file::{self, LayerFile};
    use crate::layer_name::{KeyRange, LsnRange};
    use crate::timeline::compaction::{build_outputs, merge_runs};
    use std::time::Instant as Clock;
    const LAYERS: u64 = 10;
    const KEYS: u64 = 2_000;
    const VALUE: usize = 100;
    // LAYERS L0 files, each touching every key once.
    let full = KeyRange { start: Key::MIN, end: Key::MAX };
    let mut files = Vec::new();
    let mut lsn = 1u64;
    for layer in 0..LAYERS {
        let start = lsn;
        let mut recs = Vec::new();
        for key in 0..KEYS {
            let r = if layer == 0 {
                Record::Image(vec![key as u8; VALUE])
            } else {
                Record::Delta(vec![DeltaOp::WriteAt { offset: 0, bytes: vec![layer as u8; VALUE] }])
            };
            recs.push((Key(key), Lsn(lsn), r));
            lsn += 1;
        }
        recs.sort_by_key(|(k, l, _)| (*k, *l));
        let name =
            LayerName::Delta { keys: full, lsns: LsnRange { start: Lsn(start), end: Lsn(lsn) } };
        let enc = layer_file::encode(&name, recs.iter().map(|(k, l, r)| (*k, *l, r))).unwrap();
        files.push((name, enc.bytes));
    }
    let in_bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    let lsns = LsnRange { start: Lsn(1), end: Lsn(lsn) };
    let rounds = 5;
    let t = Clock::now();
    let mut out_bytes = 0;
    for _ in 0..rounds {
        let runs: Vec<_> = files
            .iter()
            .map(|(n, b)| LayerFile::parse(n, b.clone(), None).unwrap().all_records().unwrap())
            .collect();
        let outs = build_outputs(runs, lsns, 1 << 20);
        out_bytes = outs.iter().map(|o| o.bytes.len()).sum();
    }
    let compaction = t.elapsed().as_secs_f64() / rounds as f64;
    let runs: Vec<_> = files
        .iter()
        .map(|(n, b)| LayerFile::parse(n, b.clone(), None).unwrap().all_records().unwrap())
        .collect();
    let t = Clock::now();
    for _ in 0..rounds {
        let merged = merge_runs(runs.clone());
        assert_eq!(merged.len() as u64, LAYERS * KEYS);
    }
    let merge = t.elapsed().as_secs_f64() / rounds as f64;
    let mb = in_bytes as f64 / 1e6;
    println!(
        "{LAYERS} L0 layers × {KEYS} keys × {VALUE}-byte records: {mb:.1} MB in, {:.1} MB out",
        out_bytes as f64 / 1e6
    );
    println!(
        "compaction (parse + verify + merge + partition + encode): {:>8.1} MB/s",
        mb / compaction
    );
    println!("plain k-way merge of the same decoded sorted runs:         {:>8.1} MB/s", mb / merge);

    // Read amplification: layer files visited per get (no cache), before and after.
    let cfg = TimelineConfig {
        layer_cache_bytes: 0,
        compaction_threshold_layers: 8,
        compaction_target_file_bytes: 4096,
        ..config(8)
    };
    let mut h = Harness::new(Lsn(0), cfg);
    h.tl.handle_mode(h.now, false, false);
    let model = fill(&mut h, 8, 64);
    let per_get = |h: &mut Harness| {
        h.log.clear();
        for key in 0..64 {
            assert_eq!(h.get(Key(key), model.last), Ok(model.get(Key(key), model.last)));
        }
        h.log.iter().filter(|e| matches!(e, TimelineEffect::ReadLayer { .. })).count()
    };
    let before = per_get(&mut h);
    h.tl.handle_mode(h.now, true, true);
    h.drain();
    let after = per_get(&mut h);
    println!(
        "read amplification, 8 L0s → {} L1s, 64 gets: {:.2} layers/get before, {:.2} after",
        h.tl.layers().count(),
        before as f64 / 64.0,
        after as f64 / 64.0
    );
}

#[test]
fn deep_deltas_get_an_image_set_that_reads_stop_at() {
    let cfg =
        TimelineConfig { image_creation_threshold_layers: 3, layer_cache_bytes: 0, ..config(100) };
    let mut h = Harness::new(Lsn(0), cfg);
    h.tl.handle_mode(h.now, false, false);
    let model = fill(&mut h, 3, 5);
    assert!(h.tl.layers().all(|l| l.name.is_delta()));
    h.tl.handle_mode(h.now, true, true);
    h.drain();
    let images: Vec<LayerName> = h.tl.layers().map(|l| l.name).filter(|n| !n.is_delta()).collect();
    assert!(!images.is_empty(), "an image set at disk_consistent");
    assert_eq!(h.tl.full_image_lsns(), [model.last]);
    assert!(h.log.iter().any(|e| matches!(e, TimelineEffect::Redo { .. })), "deltas redone");
    check_sets(&h);
    // A get at the newest LSN reads the image only.
    h.log.clear();
    assert_eq!(h.get(Key(3), model.last), Ok(model.get(Key(3), model.last)));
    let reads = h.log.iter().filter(|e| matches!(e, TimelineEffect::ReadLayer { .. })).count();
    assert_eq!(reads, 1);
    check_reads(&mut h, &model, 5);
}

/// GC: with an image set at or below the horizon, everything older goes — after
/// the metadata raising the cutoff is durable, through the upload queue.
#[test]
fn gc_removes_layers_below_an_image_set_under_the_horizon() {
    let cfg = TimelineConfig {
        image_creation_threshold_layers: 3,
        gc_horizon_lsn_distance: 5,
        ..config(100)
    };
    let mut h = Harness::new(Lsn(0), cfg);
    h.tl.handle_mode(h.now, true, false);
    let model = fill(&mut h, 3, 4); // LSNs 1..=12, image set at 12
    assert_eq!(h.tl.full_image_lsns(), [Lsn(12)]);
    let mut all = model;
    let more = fill(&mut h, 2, 4); // LSNs 13..=20: horizon 15 ≥ 12
    for (k, m) in more.records {
        all.records.entry(k).or_default().extend(m);
    }
    all.last = more.last;
    // AttachedMulti: no GC.
    assert_eq!(h.tl.metadata().gc_cutoff_lsn, Lsn::ZERO);
    let (cutoff, victims) = h.tl.gc_plan().expect("GC has work");
    assert_eq!(cutoff, Lsn(12));
    let deleted_before = h.world.deleted.len();
    h.world.set_lag(true);
    h.log.clear();
    h.tl.handle_mode(h.now, true, true);
    h.drain();
    assert_eq!(h.tl.metadata().gc_cutoff_lsn, Lsn(12));
    let names: Vec<LayerName> = h.tl.layers().map(|l| l.name).collect();
    assert!(names.iter().all(|n| lsn_range_end(n) > Lsn(12)), "{names:?}");
    let kinds: Vec<&str> = h
        .log
        .iter()
        .filter_map(|e| match e {
            TimelineEffect::WriteMetadata { .. } => Some("write-metadata"),
            TimelineEffect::MetadataDurable { .. } => Some("metadata-durable"),
            TimelineEffect::UnlinkLayers { .. } => Some("unlink"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["write-metadata", "metadata-durable", "unlink"]);
    assert_eq!(h.world.deleted.len(), deleted_before, "S-DEL-AFTER-INDEX: the index lags");
    h.world.set_lag(false);
    assert_eq!(h.world.deleted[deleted_before..], victims[..]);
    assert_eq!(h.world.index.metadata.gc_cutoff_lsn, Lsn(12));
    check_sets(&h);
    assert!(matches!(h.get(Key(1), Lsn(11)), Err(ReadError::BelowGcCutoff { .. })));
    for key in 0..=4 {
        for lsn in 12..=20 {
            assert_eq!(h.get(Key(key), Lsn(lsn)), Ok(all.get(Key(key), Lsn(lsn))));
        }
    }
    // A restart from the index keeps the cutoff and reads the same.
    let mut r = Harness::recover(h.world.clone(), h.tl.config().clone(), h.now);
    assert_eq!(r.tl.metadata().gc_cutoff_lsn, Lsn(12));
    assert_eq!(r.get(Key(2), Lsn(20)), Ok(all.get(Key(2), Lsn(20))));
}

fn lsn_range_end(n: &LayerName) -> Lsn {
    crate::timeline::layer_map::lsn_range(n).end
}

/// S18 for the whole background pipeline: L0 compaction, then an image set, then GC,
/// with a crash before every world step (index current or lagging). After each
/// restart every read at or above the recovered cutoff matches the model, the map
/// equals the upload queue's set, and the pipeline finishes again.
#[test]
fn a_crash_at_every_step_of_compaction_images_and_gc_recovers() {
    let cfg = TimelineConfig {
        image_creation_threshold_layers: 1,
        gc_horizon_lsn_distance: 0,
        ..config(3)
    };
    let reads_ok = |h: &mut Harness, model: &Model| {
        let cutoff = h.tl.metadata().gc_cutoff_lsn;
        for key in 0..=6 {
            for lsn in cutoff.0.max(1)..=model.last.0 {
                let want = model.get(Key(key), Lsn(lsn));
                assert_eq!(h.get(Key(key), Lsn(lsn)), Ok(want), "{key}@{lsn} cutoff {cutoff}");
            }
        }
    };
    for lag in [false, true] {
        let mut h = Harness::new(Lsn(0), cfg.clone());
        h.tl.handle_mode(h.now, false, false);
        let model = fill(&mut h, 3, 6);
        h.world.set_lag(lag);
        h.manual = true;
        h.tl.handle_mode(h.now, true, true);
        h.drain();
        let mut steps = 0;
        loop {
            let mut r = Harness::recover(h.world.clone(), cfg.clone(), h.now);
            r.world.set_lag(false);
            // Any input runs the pipeline to its end (the harness completes at once).
            r.advance_to(r.now);
            reads_ok(&mut r, &model);
            check_sets(&r);
            assert_eq!(l0_count(&r), 0, "lag {lag}, step {steps}");
            assert_eq!(r.tl.metadata().gc_cutoff_lsn, model.last, "GC ran to the image set");
            if !h.complete_next() {
                break;
            }
            steps += 1;
        }
        assert!(steps >= 5, "compaction, redo, image writes and GC metadata: {steps}");
        h.manual = false;
        h.world.set_lag(false);
        assert_eq!(h.tl.metadata().gc_cutoff_lsn, model.last);
        assert!(h.tl.layers().all(|l| !l.name.is_delta()), "only the image set is left");
        check_sets(&h);
        reads_ok(&mut h, &model);
    }
}
