//! The real `strata` binary on the power-cut file system (`strata-testfs`, issue
//! 18 item 8): its whole directory (data directory, LocalFs remote storage, the
//! embedded control plane's SQLite file) on a FUSE mount that keeps only what was
//! fsynced. A power cut is kill -9 of the node, then the mount's unsynced state
//! dropped and the mount made again; after each restart every value acknowledged
//! visible reads back, and after the last one everything ingested does.
#![cfg(not(madsim))]

mod common;

use common::{Proc, TIMEOUT, agent, free_port, lsn, parse_lsn, strata};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use strata_testfs::{Image, TestFs, mount_or_skip};

const TENANT: &str = "0000000000000000000000000000000a";
const TIMELINE: &str = "0000000000000000000000000000000b";
const KEYS: u64 = 8;

/// Writes `bytes` to `path` and makes it durable (file and directory fsync): the
/// operator's config is on disk before the node ever starts.
fn write_durably(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    std::fs::File::open(path).unwrap().sync_all().unwrap();
    std::fs::File::open(path.parent().unwrap()).unwrap().sync_all().unwrap();
}

struct Node {
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    port: u16,
    proc: Option<Proc>,
    agent: ureq::Agent,
}

impl Node {
    fn start(&mut self) {
        let mut cmd = strata();
        cmd.args(["pageserver", "--config"]).arg(&self.config);
        let mut proc = Proc::spawn(&mut cmd, self.log.clone());
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = proc.try_wait() {
                panic!("node exited with {status} before becoming active: {}", proc.log());
            }
            if let Ok(mut r) = self.agent.get(self.url("/v1/status")).call()
                && r.body_mut().read_json::<Value>().is_ok_and(|v| v["phase"] == "Active")
            {
                break;
            }
            assert!(Instant::now() < deadline, "node did not become active: {}", proc.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        self.proc = Some(proc);
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let mut r = self.agent.post(self.url(path)).send_json(body).unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let mut r = self.agent.get(self.url(path)).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null))
    }

    fn visible(&self) -> u64 {
        let (status, info) = self.get(&format!("/v1/tenant/{TENANT}/timeline/{TIMELINE}"));
        assert_eq!(status, 200, "{info}\n{}", self.log());
        parse_lsn(info["remote_consistent_lsn_visible"].as_str().unwrap())
    }

    fn read(&self, key: u64, at: u64) -> Option<String> {
        let (status, v) = self.get(&format!(
            "/v1/tenant/{TENANT}/timeline/{TIMELINE}/page?key={key:016X}&lsn={}",
            lsn(at)
        ));
        assert_eq!(status, 200, "read {key} at {at:X}: {v}\n{}", self.log());
        v["value"].as_str().map(str::to_owned)
    }

    fn ingest(&self, records: &[(u64, u64, String)]) {
        let records: Vec<Value> = records
            .iter()
            .map(|(l, k, v)| json!({"key": format!("{k:016X}"), "lsn": lsn(*l), "record": {"image": v}}))
            .collect();
        for chunk in records.chunks(256) {
            let (status, body) = self.post(
                &format!("/v1/tenant/{TENANT}/timeline/{TIMELINE}/ingest"),
                json!({ "records": chunk }),
            );
            assert_eq!(status, 200, "ingest: {body}\n{}", self.log());
        }
    }
}

/// Every key's value at `at`, as the client's history says.
fn expected(sent: &[(u64, u64, String)], key: u64, at: u64) -> Option<String> {
    sent.iter().rfind(|(l, k, _)| *k == key && *l <= at).map(|(_, _, v)| v.clone())
}

#[test]
fn power_cuts_during_ingest_lose_nothing_acknowledged_visible() {
    if !mount_or_skip("power_cuts_during_ingest_lose_nothing_acknowledged_visible") {
        return;
    }
    let cuts: usize =
        std::env::var("STRATA_E2E_POWER_CUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let seed: u64 =
        std::env::var("STRATA_E2E_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
        });
    println!("power-cut e2e: seed {seed} (STRATA_E2E_SEED), {cuts} cuts (STRATA_E2E_POWER_CUTS)");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut fs = TestFs::mount(&mnt, &Image::default()).unwrap();

    // `strata init` on the mount, its config adjusted and made durable.
    let out = strata().args(["init", "--dir"]).arg(&mnt).output().unwrap();
    assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    let config_path = mnt.join("strata.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let config = config.replace("127.0.0.1:9898", &format!("127.0.0.1:{port}")).replace(
        "[tuning]",
        "[tuning]\ncheckpoint_distance_bytes = 4096\nshutdown_grace_ms = 30000\nvalidate_delay_ms = 200\ncheckpoint_timeout_ms = 1000",
    );
    write_durably(&config_path, config.as_bytes());

    let mut node = Node {
        config: config_path,
        log: tmp.path().join("node.log"),
        port,
        proc: None,
        agent: agent(),
    };
    node.start();
    let (status, body) = node.post("/v1/tenant", json!({ "tenant_id": TENANT }));
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        node.post(&format!("/v1/tenant/{TENANT}/timeline"), json!({ "timeline_id": TIMELINE }));
    assert_eq!(status, 201, "{body}");

    // The client's history: every record sent (one image per LSN), in LSN order.
    let mut sent: Vec<(u64, u64, String)> = Vec::new();
    let mut visible = 0u64;
    let mut lsn_n = 0x100u64;
    let mut checked = 0usize;
    for round in 0..=cuts {
        // Re-send everything above what was visible, then ingest until the cut.
        let resend: Vec<_> = sent.iter().filter(|(l, _, _)| *l > visible).cloned().collect();
        node.ingest(&resend);
        let cut_after = Duration::from_millis(next() % 1_500 + 100);
        let wait_visible = round % 2 == 0;
        let t = Instant::now();
        loop {
            let mut records = Vec::new();
            for _ in 0..16 {
                lsn_n += 8;
                let key = next() % KEYS;
                records.push((
                    lsn_n,
                    key,
                    hex::encode(format!("r{round}-l{lsn_n}-{}", next() % 1000)),
                ));
            }
            node.ingest(&records);
            sent.extend(records);
            // After a restart the node publishes 0 until its first validation in
            // the new generation; what the client was once told stays promised.
            visible = visible.max(node.visible());
            if t.elapsed() >= cut_after {
                break;
            }
        }
        // Half the rounds wait until everything sent is visible, then cut.
        let deadline = Instant::now() + TIMEOUT;
        while wait_visible && visible < lsn_n {
            assert!(Instant::now() < deadline, "visible stuck at {visible:X} below {lsn_n:X}");
            std::thread::sleep(Duration::from_millis(50));
            visible = visible.max(node.visible());
        }
        if round == cuts {
            break;
        }
        // The power cut: the node dies (kill -9), then everything not fsynced goes.
        node.proc.take().unwrap().kill9();
        let image = fs.power_cut();
        println!(
            "cut {}: after {:?} of ingest, LSN {lsn_n:X}, visible {visible:X}, {} files ({} bytes) durable",
            round + 1,
            cut_after,
            image.files().len(),
            image.bytes()
        );
        fs = TestFs::mount(&mnt, &image).unwrap();
        node.start();
        // S-VISIBLE: everything at or below the visible LSN reads back.
        if visible > 0 {
            for key in 0..KEYS {
                let got = node.read(key, visible);
                assert_eq!(
                    got,
                    expected(&sent, key, visible),
                    "cut {}: key {key} at visible {visible:X}",
                    round + 1
                );
                checked += 1;
            }
        }
    }
    // Everything ingested became visible (the last round waited), and reads back.
    for key in 0..KEYS {
        assert_eq!(node.read(key, lsn_n), expected(&sent, key, lsn_n), "key {key} at the end");
        checked += 1;
    }
    node.proc.take().unwrap().stop();
    // The remote storage the cuts left is consistent: no index names a missing
    // object (orphans are allowed).
    let out = strata()
        .args(["scrub", "--deep", "--json", "--no-progress", "--remote"])
        .arg(mnt.join("remote"))
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        out.status.code(),
        Some(0),
        "scrub: {report:#} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("scrub: {} objects, {} orphans", report["objects"], report["counts"]["orphan"]);
    let stats = fs.stats();
    drop(fs);
    println!(
        "power-cut e2e: {cuts} cuts, {} records, {checked} reads checked, last mount {} file and {} directory fsyncs, {:?}",
        sent.len(),
        stats.file_fsyncs,
        stats.dir_fsyncs,
        started.elapsed()
    );
}
