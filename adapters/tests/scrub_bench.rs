//! Benchmark (printed, not asserted): objects the scrubber checks per second, next
//! to a bare paged listing of the same store in the same run, on LocalFs and (with
//! `S3_ENDPOINT`, see scripts/s3-local.sh) on the local S3 server.
//!
//! cargo test --release -p strata-adapters --test scrub_bench -- --ignored --nocapture
//! S3_ENDPOINT=http://127.0.0.1:PORT cargo test … (same)
#![cfg(not(madsim))]

use std::time::Instant;
use strata_adapters::local_fs::LocalFs;
use strata_adapters::remote::RemoteStorage;
use strata_adapters::s3::{S3Config, S3Remote};
use strata_adapters::scrub::{NoOracle, SCRUB_PAGE_KEYS, ScrubOptions, scrub};
use strata_core::generation::Generation;
use strata_core::id::{TenantId, TimelineId};
use strata_core::index_part::{IndexPart, IndexVersion, LayerMeta};
use strata_core::key::Key;
use strata_core::layer_name::{KeyRange, LayerName};
use strata_core::lsn::Lsn;
use strata_core::metadata::TimelineMetadata;
use strata_core::redo::Record;
use strata_core::remote_path::{index_key, layer_key};
use strata_core::time::WallTime;

const TIMELINES: u8 = 10;

/// `TIMELINES` timelines of `layers` layers each, every one named by its index.
async fn fill<R: RemoteStorage>(remote: &R, layers: u64) -> u64 {
    let g = Generation::FIRST;
    let mut objects = 0;
    for t in 0..TIMELINES {
        let (tenant, timeline) = (TenantId::from_bytes([1; 16]), TimelineId::from_bytes([t; 16]));
        let mut part = IndexPart::empty(TimelineMetadata {
            disk_consistent_lsn: Lsn(0x10_0000),
            initdb_lsn: Lsn(0x10),
            ..TimelineMetadata::default()
        });
        for i in 0..layers {
            let name =
                LayerName::Image { keys: KeyRange::new(Key(0), Key(9)).unwrap(), lsn: Lsn(i + 1) };
            let record = Record::Image(vec![7; 64]);
            let enc =
                strata_core::layer_file::encode(&name, [(Key(1), Lsn(i + 1), &record)]).unwrap();
            let meta =
                LayerMeta { file_size: enc.bytes.len() as u64, generation: g, crc32c: enc.crc32c };
            remote.put(&layer_key(tenant, timeline, &name, g), enc.bytes).await.unwrap();
            part.layer_metadata.insert(name, meta);
            objects += 1;
        }
        let version = IndexVersion { generation: g, seq: 1 };
        part.seq = 1;
        remote.put(&index_key(tenant, timeline, version), part.to_json_bytes()).await.unwrap();
        objects += 1;
    }
    objects
}

async fn measure<R: RemoteStorage>(what: &str, remote: &R, objects: u64) {
    let started = Instant::now();
    let (mut listed, mut after) = (0u64, None);
    loop {
        let page = remote.list_page("", after.as_ref(), SCRUB_PAGE_KEYS).await.unwrap();
        listed += page.objects.len() as u64;
        match page.next_start_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let list_s = started.elapsed().as_secs_f64();
    assert_eq!(listed, objects);
    for deep in [false, true] {
        let started = Instant::now();
        let options = ScrubOptions { deep, ..ScrubOptions::default() };
        let out = scrub(remote, &options, &NoOracle, WallTime(0), &mut |_| {}).await.unwrap();
        let s = started.elapsed().as_secs_f64();
        assert_eq!((out.report.objects, out.report.problems()), (objects, 0));
        println!(
            "{what}: {objects} objects; bare listing {:.0} objects/s ({list_s:.2} s); scrub{} {:.0} objects/s ({s:.2} s)",
            objects as f64 / list_s,
            if deep { " --deep" } else { "" },
            objects as f64 / s,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn scrub_rate() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalFs::new(camino::Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap());
    let objects = fill(&local, 2000).await;
    measure("LocalFs", &local, objects).await;
    let Ok(endpoint) = std::env::var("S3_ENDPOINT") else {
        println!("S3_ENDPOINT is not set: no S3 numbers (see scripts/s3-local.sh)");
        return;
    };
    let mut cfg = S3Config::new("us-east-1", format!("strata-scrub-bench-{}", std::process::id()));
    cfg.endpoint = Some(endpoint);
    cfg.access_key_id = Some("testing".into());
    cfg.secret_access_key = Some("testing".into());
    let s3 = S3Remote::new(cfg).unwrap();
    s3.ensure_bucket().await.unwrap();
    let objects = fill(&s3, 300).await;
    measure("S3 (moto)", &s3, objects).await;
}
