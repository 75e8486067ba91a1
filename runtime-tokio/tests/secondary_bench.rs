//! Benchmark, printed and never asserted (ignored: not in CI): the cut-over of a
//! tenant onto a node that held it as a cold secondary against one that held it as
//! a warm secondary, next to the raw time to copy the same bytes.
//!
//! ```sh
//! cargo test -p strata-runtime-tokio --test secondary_bench -- --ignored --nocapture
//! STRATA_BENCH_SECONDARY_MIB=256 cargo test ...   # a smaller tenant (default 1024)
//! ```
//!
//! Another node's work is written straight into the remote directory (LocalFs)
//! with core's formats: image layers of 16 MiB, 8000-byte values, and an index at
//! generation 1. The real `strata` binary then takes the tenant (the embedded
//! control plane grants a generation above it). "Cut-over" = `location_config`
//! AttachedSingle answered, then one read in every layer (a read needs its layer
//! local: cold, it is downloaded then; warm, it is already there). The raw copy is
//! `std::fs::copy` + fsync of the same objects, one after another. Remote storage is
//! a directory on the same disk, so every "download" here is a local copy.
#![cfg(not(madsim))]

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_core::generation::Generation;
use strata_core::id::{TenantId, TimelineId};
use strata_core::index_part::{IndexPart, IndexVersion, LayerMeta};
use strata_core::key::Key;
use strata_core::layer_name::{KeyRange, LayerName};
use strata_core::lsn::Lsn;
use strata_core::metadata::TimelineMetadata;
use strata_core::redo::Record;
use strata_core::remote_path;

const TENANT: &str = "000000000000000000000000000000c1";
const TIMELINE: &str = "000000000000000000000000000000c2";
const VALUE_BYTES: usize = 8000;
const LAYER_BYTES: usize = 16 << 20;
const IMAGE_LSN: u64 = 0x100;
const LAST_LSN: u64 = 0x108;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Writes `layers` image layers and their index under `remote`; returns each
/// layer's first key and object path, and the bytes written.
fn publish(remote: &Path, layers: u64) -> (Vec<(u64, PathBuf)>, u64) {
    let tenant: TenantId = TENANT.parse().unwrap();
    let timeline: TimelineId = TIMELINE.parse().unwrap();
    let g1 = Generation::new(1).unwrap();
    let keys_per_layer = (LAYER_BYTES / VALUE_BYTES) as u64;
    let metadata = TimelineMetadata {
        disk_consistent_lsn: Lsn(LAST_LSN),
        initdb_lsn: Lsn(IMAGE_LSN),
        ..TimelineMetadata::default()
    };
    let mut index = IndexPart::empty(metadata);
    index.seq = 1;
    let (mut out, mut total) = (Vec::new(), 0u64);
    for l in 0..layers {
        let first = l * keys_per_layer;
        let keys = KeyRange::new(Key(first), Key(first + keys_per_layer)).unwrap();
        let name = LayerName::Image { keys, lsn: Lsn(IMAGE_LSN) };
        let records: Vec<(Key, Lsn, Record)> = (first..first + keys_per_layer)
            .map(|k| {
                let value: Vec<u8> =
                    (0..VALUE_BYTES).map(|i| (k.wrapping_mul(31) ^ i as u64) as u8).collect();
                (Key(k), Lsn(IMAGE_LSN), Record::Image(value))
            })
            .collect();
        let encoded =
            strata_core::layer_file::encode(&name, records.iter().map(|(k, l, r)| (*k, *l, r)))
                .unwrap();
        let key = remote_path::layer_key(tenant, timeline, &name, g1);
        let path = remote.join(key.as_str());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &encoded.bytes).unwrap();
        let meta = LayerMeta {
            file_size: encoded.bytes.len() as u64,
            generation: g1,
            crc32c: encoded.crc32c,
        };
        total += meta.file_size;
        index.layer_metadata.insert(name, meta);
        out.push((first, path));
    }
    let key = remote_path::index_key(tenant, timeline, IndexVersion { generation: g1, seq: 1 });
    std::fs::write(remote.join(key.as_str()), index.to_json_bytes()).unwrap();
    (out, total)
}

struct Node {
    port: u16,
    child: Child,
    agent: ureq::Agent,
}

impl Node {
    fn start(dir: &Path) -> Node {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["init", "--dir"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let config_path = dir.join("strata.toml");
        let config = std::fs::read_to_string(&config_path).unwrap();
        let config = config.replace("127.0.0.1:9898", &format!("127.0.0.1:{port}"));
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.join("node.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["pageserver", "--config"])
            .arg(&config_path)
            .env("STRATA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(300)))
                .build(),
        );
        let node = Node { port, child, agent };
        let deadline = Instant::now() + Duration::from_secs(60);
        while node.get_json("/v1/status")["phase"] != "Active" {
            assert!(Instant::now() < deadline, "node did not become active");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn get_json(&self, path: &str) -> Value {
        match self.agent.get(self.url(path)).call() {
            Ok(mut r) => r.body_mut().read_json().unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// `location_config`, retried while the node answers 503.
    fn place(&self, body: Value) {
        let path = format!("/v1/tenant/{TENANT}/location_config");
        for _ in 0..600 {
            let mut r = self.agent.put(self.url(&path)).send_json(body.clone()).unwrap();
            let status = r.status().as_u16();
            if status == 200 {
                return;
            }
            assert_eq!(status, 503, "{body}: {}", r.body_mut().read_to_string().unwrap());
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{body} never answered 200");
    }

    fn read(&self, key: u64) {
        let path = format!(
            "/v1/tenant/{TENANT}/timeline/{TIMELINE}/page?key={key:016X}&lsn=0/{LAST_LSN:X}"
        );
        let mut r = self.agent.get(self.url(&path)).call().unwrap();
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string().unwrap();
        assert_eq!(status, 200, "read {key}: {body}");
        assert!(body.len() > VALUE_BYTES, "read {key}: {body}");
    }

    /// A counter of `GET /metrics`.
    fn metric(&self, name: &str) -> f64 {
        let text = self
            .agent
            .get(self.url("/metrics"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Attach, then read one key of every layer: the cut-over, in ms (attach, reads).
fn cut_over(node: &Node, layers: &[(u64, PathBuf)]) -> (f64, f64) {
    let start = Instant::now();
    node.place(json!({"mode": "AttachedSingle"}));
    let attached = start.elapsed();
    for (first, _) in layers {
        node.read(*first);
    }
    let total = start.elapsed();
    (attached.as_secs_f64() * 1e3, (total - attached).as_secs_f64() * 1e3)
}

#[test]
#[ignore = "benchmark: prints numbers, asserts nothing; run by hand"]
fn cut_over_onto_a_cold_and_a_warm_secondary() {
    let mib: u64 = std::env::var("STRATA_BENCH_SECONDARY_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let layers = (mib << 20).div_ceil(LAYER_BYTES as u64).max(1);
    let dir = tempfile::tempdir().unwrap();
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let started = Instant::now();
    // `strata init` makes the remote directory; the data goes in before the start.
    let node = Node::start(&node_dir);
    let (objects, bytes) = publish(&node_dir.join("remote"), layers);
    println!(
        "tenant: {layers} image layers, {:.1} MiB, written in {:.1} s",
        bytes as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );
    let mib_s = |ms: f64| bytes as f64 / (1 << 20) as f64 / (ms / 1e3);

    // Raw: the same objects copied and fsynced, one after another.
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir_all(&raw_dir).unwrap();
    let start = Instant::now();
    for (i, (_, path)) in objects.iter().enumerate() {
        let to = raw_dir.join(i.to_string());
        std::fs::copy(path, &to).unwrap();
        std::fs::File::open(&to).unwrap().sync_all().unwrap();
    }
    let raw_ms = start.elapsed().as_secs_f64() * 1e3;
    std::fs::remove_dir_all(&raw_dir).unwrap();

    // Cold: placed Secondary without downloads, then attached.
    node.place(json!({"mode": "Secondary", "warm": false}));
    let (cold_attach, cold_reads) = cut_over(&node, &objects);
    node.place(json!({"mode": "Detached"}));

    // Warm: placed Secondary with downloads; cut over once it holds every layer.
    let before = node.metric("strata_secondary_downloaded_layers_total");
    let start = Instant::now();
    node.place(json!({"mode": "Secondary", "warm": true}));
    while node.metric("strata_secondary_downloaded_layers_total") < before + layers as f64 {
        assert!(start.elapsed() < Duration::from_secs(600), "the warm secondary never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    let prefetch_ms = start.elapsed().as_secs_f64() * 1e3;
    let (warm_attach, warm_reads) = cut_over(&node, &objects);

    let cold = cold_attach + cold_reads;
    let warm = warm_attach + warm_reads;
    println!("raw copy + fsync of the layers: {raw_ms:.0} ms ({:.0} MiB/s)", mib_s(raw_ms));
    println!(
        "cold secondary cut-over: {cold:.0} ms (attach {cold_attach:.0} ms, first read of every layer {cold_reads:.0} ms)"
    );
    println!(
        "warm secondary cut-over: {warm:.0} ms (attach {warm_attach:.0} ms, first read of every layer {warm_reads:.0} ms); its downloads beforehand {prefetch_ms:.0} ms ({:.0} MiB/s)",
        mib_s(prefetch_ms)
    );
    println!(
        "cold / warm: {:.1}x; cold - warm: {:.0} ms (raw copy {raw_ms:.0} ms)",
        cold / warm,
        cold - warm
    );
}

/// Not a benchmark: the real driver runs a warm secondary on real adapters. It
/// downloads every layer of the index into the tenant's directory (the metric
/// counts them), and the attach that follows reads them back.
#[test]
fn the_real_driver_runs_a_warm_secondary() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let (objects, bytes) = publish(&dir.path().join("remote"), 2);
    node.place(json!({"mode": "Secondary", "warm": true}));
    let start = Instant::now();
    while node.metric("strata_secondary_downloaded_layers_total") < 2.0 {
        assert!(start.elapsed() < Duration::from_secs(60), "the warm secondary never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(node.metric("strata_secondary_downloaded_bytes_total"), bytes as f64);
    assert_eq!(node.metric("strata_secondary_tenants"), 1.0);
    let local = dir.path().join(format!("data/tenants/{TENANT}/timelines/{TIMELINE}"));
    let mut sizes: Vec<u64> =
        std::fs::read_dir(&local).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).collect();
    sizes.sort();
    let mut want: Vec<u64> =
        objects.iter().map(|(_, p)| std::fs::metadata(p).unwrap().len()).collect();
    want.sort();
    assert_eq!(sizes, want, "{local:?}");
    cut_over(&node, &objects);
    assert_eq!(node.metric("strata_secondary_tenants"), 0.0);
}
