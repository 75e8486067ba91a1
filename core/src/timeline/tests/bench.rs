//! Read throughput by delta depth: `get(key, lsn)` per second through the timeline
//! (with the pure redo function, as the simulator runs it), next to the naive
//! BTreeMap model. Run:
//! `cargo test --release -p strata-core --lib timeline::tests::bench -- --ignored --nocapture`

use super::*;
use crate::timeline::harness::Harness;
use crate::timeline::model::Model;

const KEYS: u64 = 64;
const GETS: u64 = 20_000;

/// Each key: one 8 KiB image, then `depth` deltas of 16 bytes at scattered offsets.
fn build(depth: u64, flush: bool) -> (Harness, Model) {
    let config = TimelineConfig {
        checkpoint_distance_bytes: u64::MAX,
        max_in_memory_bytes: u64::MAX,
        ..TimelineConfig::default()
    };
    let mut h = Harness::new(Lsn(0), config);
    let mut model = Model::default();
    let mut lsn = 0;
    for round in 0..=depth {
        let mut batch = Vec::new();
        for key in 0..KEYS {
            lsn += 1;
            let record = if round == 0 {
                Record::Image(vec![key as u8; crate::redo::MAX_VALUE_BYTES])
            } else {
                let offset = ((round * 131 + key * 17) % 8000) as u32;
                Record::Delta(vec![DeltaOp::WriteAt { offset, bytes: vec![round as u8; 16] }])
            };
            model.records.entry(Key(key)).or_default().insert(Lsn(lsn), record.clone());
            batch.push(IngestRecord { key: Key(key), lsn: Lsn(lsn), record });
        }
        h.ingest(batch).unwrap();
    }
    model.last = Lsn(lsn);
    if flush {
        h.flush();
    }
    (h, model)
}

#[test]
#[ignore = "benchmark: run explicitly with --release --ignored --nocapture"]
// A benchmark measures wall time; this is test-only code outside the machines.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn bench_get_by_delta_depth() {
    use std::time::Instant as Clock;
    println!("get(key, lsn) at the newest LSN, {KEYS} keys, 8 KiB values, {GETS} gets per row");
    println!(
        "{:>6} {:>10} {:>14} {:>14} {:>8}",
        "depth", "where", "timeline/s", "model/s", "ratio"
    );
    for depth in [1u64, 10, 100] {
        for flush in [false, true] {
            let (mut h, model) = build(depth, flush);
            h.check = false;
            let lsn = model.last;
            let mut sink = 0usize;
            let t = Clock::now();
            for i in 0..GETS {
                let key = Key((i * 7919) % KEYS);
                sink += h.get(key, lsn).unwrap().unwrap().len();
            }
            let tl_rate = GETS as f64 / t.elapsed().as_secs_f64();
            let t = Clock::now();
            for i in 0..GETS {
                let key = Key((i * 7919) % KEYS);
                sink += model.get(key, lsn).unwrap().len();
            }
            let model_rate = GETS as f64 / t.elapsed().as_secs_f64();
            assert_eq!(sink, 2 * GETS as usize * crate::redo::MAX_VALUE_BYTES);
            let place = if flush { "L0 file" } else { "memory" };
            println!(
                "{depth:>6} {place:>10} {tl_rate:>14.0} {model_rate:>14.0} {:>8.2}",
                tl_rate / model_rate
            );
        }
    }
}

#[test]
#[ignore = "benchmark: run explicitly with --release --ignored --nocapture"]
// A benchmark measures wall time; this is test-only code outside the machines.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn bench_ingest_and_flush_cpu() {
    use std::time::Instant as Clock;
    // The machine's share of ingest + flush (records into memory, layer encoding,
    // checksums), with the in-memory "disk" of the harness: no fsync here; the
    // driver-level benchmark adds real I/O.
    let config = TimelineConfig {
        checkpoint_distance_bytes: 16 * 1024 * 1024,
        max_in_memory_bytes: u64::MAX,
        ..TimelineConfig::default()
    };
    let mut h = Harness::new(Lsn(0), config);
    h.check = false;
    const RECORDS: u64 = 40_000;
    let value = vec![0x5au8; crate::redo::MAX_VALUE_BYTES];
    let t = Clock::now();
    let mut bytes = 0u64;
    for batch in 0..RECORDS / 100 {
        let records: Vec<IngestRecord> = (0..100)
            .map(|i| {
                let lsn = batch * 100 + i + 1;
                IngestRecord {
                    key: Key(lsn % 5000),
                    lsn: Lsn(lsn),
                    record: Record::Image(value.clone()),
                }
            })
            .collect();
        bytes += 100 * value.len() as u64;
        h.ingest(records).unwrap();
    }
    h.flush();
    let secs = t.elapsed().as_secs_f64();
    let written: u64 = h.world.disk.values().map(|b| b.len() as u64).sum();
    println!(
        "ingest + flush (CPU only): {RECORDS} records of 8 KiB, {:.0} MiB/s of values, {} layer files, {:.0} MiB written",
        bytes as f64 / secs / (1024.0 * 1024.0),
        h.world.disk.len(),
        written as f64 / (1024.0 * 1024.0)
    );
}
