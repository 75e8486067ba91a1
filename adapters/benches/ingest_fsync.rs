//! Ingest + flush with fsync, next to raw writes of the same bytes, in one run.
//!
//! 1. **strata**: a [`Timeline`] ingests `RECORDS` page images (8 KiB each) in
//!    batches; every `WriteLayer` and `WriteMetadata` it emits is executed by
//!    [`LocalDisk::write_atomic`] — the real crash-safe write (temp file, fsync,
//!    rename, directory fsync) — and completed back into the machine, until a final
//!    flush is done. Timed end to end: ingest, freeze, layer encoding, CRC32C,
//!    writes.
//! 2. **crash-safe write only**: the same layer files through `write_atomic`, with
//!    no timeline and no metadata writes: what the write protocol alone costs.
//! 3. **raw + fsync**: the same layer files' bytes, each written sequentially to a
//!    new file and fsynced once (no temp name, no rename, no directory fsync).
//! 4. **plain write**: the same bytes with `std::fs::write` (no fsync at all).
//!
//! Prints MB/s and layers/s of each and the ratios; never asserts on time. The
//! total is bounded (`RECORDS × 8 KiB` = 32 MiB by default, at most 64 MiB), in a
//! fresh directory under the system temp dir, removed afterwards.
//!
//! Run: `cargo bench -p strata-adapters --bench ingest_fsync`
//! (`STRATA_BENCH_RECORDS=n` changes the record count; `STRATA_BENCH_DIR=path`
//! the directory, e.g. to measure another file system.)

#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
fn main() {
    bench::run();
}

#[cfg(not(madsim))]
mod bench {
    use camino::{Utf8Path, Utf8PathBuf};
    use std::io::Write;
    use std::time::Instant as WallInstant;
    use strata_adapters::disk::Disk;
    use strata_adapters::local_disk::LocalDisk;
    use strata_core::id::{TenantId, TimelineId};
    use strata_core::key::Key;
    use strata_core::lsn::Lsn;
    use strata_core::node::io::{layer_path, metadata_path};
    use strata_core::redo::{IngestRecord, Record};
    use strata_core::time::Instant;
    use strata_core::timeline::{Timeline, TimelineCompletion, TimelineConfig, TimelineEffect};

    const VALUE_BYTES: usize = 8 * 1024;
    const DEFAULT_RECORDS: usize = 4096;
    const MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;
    const BATCH: usize = 256;
    const LAYER_BYTES: u64 = 1024 * 1024;
    const T: TenantId = TenantId([7; 16]);
    const TL: TimelineId = TimelineId([8; 16]);

    pub fn run() {
        let records = std::env::var("STRATA_BENCH_RECORDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_RECORDS)
            .min(MAX_TOTAL_BYTES / VALUE_BYTES);
        let base = std::env::var("STRATA_BENCH_DIR").map(Utf8PathBuf::from).unwrap_or_else(|_| {
            Utf8PathBuf::try_from(std::env::temp_dir()).expect("utf-8 temp dir")
        });
        let root = base.join(format!("strata-bench-ingest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create bench dir");
        println!(
            "ingest + flush: {records} records of {VALUE_BYTES} bytes, layers of ~{} KiB, in {root}",
            LAYER_BYTES / 1024
        );

        let (strata_secs, layers) = strata(&root.join("strata"), records);
        let bytes: u64 = layers.iter().map(|(_, b)| b.len() as u64).sum();
        let safe_secs = crash_safe_only(&root.join("crash-safe"), &layers);
        let fsync_secs = raw_fsync(&root.join("raw-fsync"), &layers);
        let plain_secs = plain(&root.join("plain"), &layers);
        let _ = std::fs::remove_dir_all(&root);

        let n = layers.len() as f64;
        let mb = bytes as f64 / (1024.0 * 1024.0);
        let line = |what: &str, secs: f64| {
            println!(
                "  {what:<44} {:>9.1} MB/s {:>9.1} layers/s ({secs:.3} s)",
                mb / secs,
                n / secs
            )
        };
        println!("  {} layer files, {mb:.1} MiB of layer bytes", layers.len());
        line("strata ingest + flush (crash-safe write)", strata_secs);
        line("crash-safe write of the layers only", safe_secs);
        line("raw sequential write + fsync per file", fsync_secs);
        line("plain std::fs::write (no fsync)", plain_secs);
        println!(
            "  strata / raw+fsync: {:.2}x    crash-safe only / raw+fsync: {:.2}x    strata / plain: {:.2}x",
            fsync_secs / strata_secs,
            fsync_secs / safe_secs,
            plain_secs / strata_secs
        );
    }

    fn config() -> TimelineConfig {
        TimelineConfig {
            checkpoint_distance_bytes: LAYER_BYTES,
            checkpoint_timeout_ms: u64::MAX / 4,
            compaction_threshold_layers: usize::MAX,
            image_creation_threshold_layers: usize::MAX,
            gc_horizon_lsn_distance: u64::MAX,
            eviction_idle_ms: u64::MAX,
            ..TimelineConfig::default()
        }
    }

    /// Runs the timeline's flush on the real disk; returns the time and the layer
    /// files it wrote (name, bytes) for the raw runs.
    fn strata(root: &Utf8Path, records: usize) -> (f64, Vec<(String, Vec<u8>)>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let disk = LocalDisk::new(root.to_owned());
        let mut tl = Timeline::create(T, TL, Lsn(8), config(), Instant::ZERO);
        let mut written = Vec::new();
        let now = Instant::ZERO;
        let value: Vec<u8> = (0..VALUE_BYTES).map(|i| (i % 251) as u8).collect();
        let start = WallInstant::now();
        let mut lsn = 16u64;
        for batch in 0..records.div_ceil(BATCH) {
            let n = BATCH.min(records - batch * BATCH);
            let recs: Vec<IngestRecord> = (0..n)
                .map(|i| {
                    lsn += 8;
                    let key = Key((batch * BATCH + i) as u64 % 1024);
                    IngestRecord { key, lsn: Lsn(lsn), record: Record::Image(value.clone()) }
                })
                .collect();
            tl.handle_ingest(now, recs).expect("ingest");
            drain(&rt, &disk, &mut tl, &mut written);
        }
        tl.handle_flush(now);
        drain(&rt, &disk, &mut tl, &mut written);
        assert_eq!(tl.disk_consistent_lsn(), Lsn(lsn), "everything flushed");
        (start.elapsed().as_secs_f64(), written)
    }

    fn drain(
        rt: &tokio::runtime::Runtime,
        disk: &LocalDisk,
        tl: &mut Timeline,
        written: &mut Vec<(String, Vec<u8>)>,
    ) {
        while let Some(effect) = tl.poll_effect() {
            let (op, path, bytes) = match effect {
                TimelineEffect::WriteLayer { op, name, bytes } => {
                    written.push((name.to_string(), bytes.clone()));
                    (op, layer_path(T, TL, &name), bytes)
                }
                TimelineEffect::WriteMetadata { op, metadata } => {
                    (op, metadata_path(T, TL), metadata.to_bytes().to_vec())
                }
                _ => continue,
            };
            rt.block_on(disk.write_atomic(&path, bytes)).expect("crash-safe write");
            tl.handle_completion(Instant::ZERO, op, TimelineCompletion::Written(Ok(())))
                .expect("completion");
        }
    }

    fn crash_safe_only(root: &Utf8Path, layers: &[(String, Vec<u8>)]) -> f64 {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let disk = LocalDisk::new(root.to_owned());
        let start = WallInstant::now();
        for (name, bytes) in layers {
            let path = Utf8PathBuf::from("layers").join(name);
            rt.block_on(disk.write_atomic(&path, bytes.clone())).expect("crash-safe write");
        }
        start.elapsed().as_secs_f64()
    }

    fn raw_fsync(dir: &Utf8Path, layers: &[(String, Vec<u8>)]) -> f64 {
        std::fs::create_dir_all(dir).expect("dir");
        let start = WallInstant::now();
        for (name, bytes) in layers {
            let mut f = std::fs::File::create(dir.join(name)).expect("create");
            f.write_all(bytes).expect("write");
            f.sync_all().expect("fsync");
        }
        start.elapsed().as_secs_f64()
    }

    fn plain(dir: &Utf8Path, layers: &[(String, Vec<u8>)]) -> f64 {
        std::fs::create_dir_all(dir).expect("dir");
        let start = WallInstant::now();
        for (name, bytes) in layers {
            std::fs::write(dir.join(name), bytes).expect("write");
        }
        start.elapsed().as_secs_f64()
    }
}
