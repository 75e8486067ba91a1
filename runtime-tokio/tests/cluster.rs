//! End-to-end with the real binaries on 127.0.0.1: `strata control` and a
//! pageserver whose `[control_plane]` is that service.
#![cfg(not(madsim))]

mod common;

use common::{Proc, TIMEOUT, agent, free_port, lsn, parse_lsn, strata};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TENANT: &str = "0000000000000000000000000000000a";
const TIMELINE: &str = "0000000000000000000000000000000b";
const TOKEN: &str = "e2e-node-token";

struct Cluster {
    dir: PathBuf,
    cp_port: u16,
    node_port: u16,
}

impl Cluster {
    fn cp_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.cp_port)
    }

    fn start_control(&self) -> Proc {
        common::start_control(&self.dir, self.cp_port, TOKEN)
    }

    fn start_node(&self) -> Proc {
        let p = Proc::spawn(
            strata().args(["pageserver", "--config"]).arg(self.dir.join("n1/strata.toml")),
            self.dir.join("n1.log"),
        );
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(mut r) = agent().get(self.node("/v1/status")).call()
                && r.body_mut().read_json::<Value>().is_ok_and(|v| v["phase"] == "Active")
            {
                return p;
            }
            assert!(Instant::now() < deadline, "node not active: {}", p.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn node(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.node_port)
    }

    fn ctl(&self, args: &[&str]) -> Value {
        let out = strata()
            .args(["ctl", "--url", &self.cp_url(), "--token", TOKEN])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "strata ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn timeline(&self) -> Value {
        let mut r = agent()
            .get(self.node(&format!("/v1/tenant/{TENANT}/timeline/{TIMELINE}")))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.body_mut().read_json().unwrap()
    }

    fn visible(&self) -> u64 {
        parse_lsn(self.timeline()["remote_consistent_lsn_visible"].as_str().unwrap())
    }

    fn read(&self, key: u64, at: u64) -> Option<String> {
        let url = self.node(&format!(
            "/v1/tenant/{TENANT}/timeline/{TIMELINE}/page?key={key:016X}&lsn={}",
            lsn(at)
        ));
        let mut r = agent().get(url).call().unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.body_mut().read_json().unwrap();
        v["value"].as_str().map(str::to_owned)
    }

    /// `batches` batches over `keys` keys from `start`: returns the expected value
    /// per key (given `values` before) and the last LSN.
    fn ingest(&self, values: &mut [Vec<u8>], start: u64, batches: u64) -> u64 {
        let mut at = start;
        for b in 0..batches {
            let mut records = Vec::new();
            for (k, value) in values.iter_mut().enumerate() {
                at += 8;
                let record = if value.is_empty() {
                    *value = format!("key{k}-").into_bytes();
                    json!({"image": hex::encode(&value)})
                } else {
                    let add = vec![(b % 251) as u8 + 1; 3];
                    value.extend_from_slice(&add);
                    json!({"delta": [{"append": hex::encode(add)}]})
                };
                records.push(json!({"key": format!("{k:016X}"), "lsn": lsn(at), "record": record}));
            }
            let url = self.node(&format!("/v1/tenant/{TENANT}/timeline/{TIMELINE}/ingest"));
            // A 503 (backpressure: uploads ahead of validation) is retried a while.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut r = agent().post(&url).send_json(json!({ "records": records })).unwrap();
                let status = r.status().as_u16();
                if status == 200 {
                    break;
                }
                let body = r.body_mut().read_to_string().unwrap_or_default();
                assert!(status == 503 && Instant::now() < deadline, "batch {b}: {status} {body}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        at
    }

    fn wait_visible(&self, last: u64) {
        let deadline = Instant::now() + TIMEOUT;
        while self.visible() < last {
            assert!(
                Instant::now() < deadline,
                "visible stuck at {:X} below {last:X}",
                self.visible()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn check_all(&self, values: &[Vec<u8>], at: u64) {
        for (k, v) in values.iter().enumerate() {
            assert_eq!(self.read(k as u64, at), Some(hex::encode(v)), "key {k} at {at:X}");
        }
    }
}

fn remote_objects(dir: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.insert(p.display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&dir.join("tenants"), &mut out);
    out
}

fn metric(c: &Cluster, line_start: &str) -> u64 {
    let mut r = agent().get(c.node("/metrics")).call().unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Issue 17 items 1–2 end to end: `strata control` + one pageserver using it.
#[test]
fn a_pageserver_on_strata_control_creates_restarts_and_stalls_deletions_while_it_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster { dir: dir.path().to_owned(), cp_port: free_port(), node_port: free_port() };
    let out = strata().args(["init", "--dir"]).arg(c.dir.join("n1")).output().unwrap();
    assert!(out.status.success());
    let config = std::fs::read_to_string(c.dir.join("n1/strata.toml")).unwrap();
    let embedded = "[control_plane]\nkind = \"embedded\"\nsqlite_path = \"control-plane.sqlite\"\n";
    assert!(config.contains(embedded), "{config}");
    let config = config
        .replace("127.0.0.1:9898", &format!("127.0.0.1:{}", c.node_port))
        .replace(
            embedded,
            &format!(
                "[control_plane]\nkind = \"remote\"\nurl = \"{}\"\ntoken = \"{TOKEN}\"\ncall_timeout_ms = 2000\n",
                c.cp_url()
            ),
        )
        .replace(
            "[tuning]",
            "[tuning]\ncheckpoint_distance_bytes = 4096\nvalidate_delay_ms = 200\ncheckpoint_timeout_ms = 500\nshutdown_grace_ms = 30000",
        );
    std::fs::write(c.dir.join("n1/strata.toml"), config).unwrap();

    let mut cp = c.start_control();
    let mut node = c.start_node();
    c.ctl(&["node", "register", "1", &c.node("")]);
    let row = c.ctl(&["tenant", "create", TENANT, "--node", "1"]);
    assert_eq!(row, json!({"tenant_id": TENANT, "node_id": 1, "generation": 1}));
    let r = agent()
        .post(c.node(&format!("/v1/tenant/{TENANT}/timeline")))
        .send_json(json!({"timeline_id": TIMELINE}))
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut values = vec![Vec::new(); 16];
    let last = c.ingest(&mut values, 0x100, 20);
    c.wait_visible(last);
    c.check_all(&values, last);

    // Restart the pageserver: re-attach bumps the generation; the data reads back.
    node.stop();
    let mut node = c.start_node();
    assert_eq!(c.timeline()["generation"], 2);
    assert_eq!(
        c.ctl(&["tenant", "list"]),
        json!([{"tenant_id": TENANT, "node_id": 1, "generation": 2}])
    );
    c.check_all(&values, last);

    // The control plane dies: validations fail, nothing is deleted, nothing more
    // becomes visible, reads are served.
    cp.kill9();
    let before = remote_objects(&c.dir.join("n1/remote"));
    let visible_before = c.visible();
    let last2 = c.ingest(&mut values, last, 8);
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        let now = remote_objects(&c.dir.join("n1/remote"));
        let gone: Vec<_> = before.difference(&now).collect();
        assert!(gone.is_empty(), "deleted while the control plane was down: {gone:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(c.visible(), visible_before, "visible advanced without a validation");
    assert!(metric(&c, "strata_control_plane_failures_total") > 0, "no failed call counted");
    c.check_all(&values, last2);
    let during = remote_objects(&c.dir.join("n1/remote"));
    assert!(during.len() > before.len(), "uploads continued while it was down");

    // Back: validations pass, the visible LSN catches up and held deletions run.
    let _cp = c.start_control();
    c.wait_visible(last2);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let now = remote_objects(&c.dir.join("n1/remote"));
        if during.difference(&now).next().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no deletion after the control plane came back: {}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.check_all(&values, last2);
    node.stop();
    purge_asks_strata_control(&c);
}

/// Issue 20 item 3 against the real service: two orphans planted beside the
/// timeline's layers (copies of a layer under names no index holds), one two days
/// old and one new. `strata scrub --purge --older-than 24h --control-url` lists
/// only the old one in a dry run and deletes nothing; with `--yes` it deletes only
/// that one; everything an index references stays, and a deep scrub then finds no
/// problem.
fn purge_asks_strata_control(c: &Cluster) {
    let remote = c.dir.join("n1/remote");
    let orphans_before = deep_scrub_orphans(&remote);
    let tl = remote.join(format!("tenants/{TENANT}/timelines/{TIMELINE}"));
    let layer = std::fs::read_dir(&tl)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .find(|n| n.contains("__"))
        .expect("a layer in the remote timeline");
    // `{keys}__{start}-{end}-{generation}`: a start LSN of 1 names a layer no index has.
    let (keys, rest) = layer.split_once("__").unwrap();
    let orphan = |n: u64| format!("{keys}__{:016X}{}", n, &rest[16..]);
    let (old, young) = (tl.join(orphan(1)), tl.join(orphan(2)));
    std::fs::copy(tl.join(&layer), &old).unwrap();
    std::fs::copy(tl.join(&layer), &young).unwrap();
    let two_days = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    std::fs::File::options().write(true).open(&old).unwrap().set_modified(two_days).unwrap();
    let before = remote_objects(&remote);

    let _cp = c.start_control();
    let purge = |yes: bool| {
        let mut cmd = strata();
        cmd.args(["scrub", "--json", "--no-progress", "--purge", "--older-than", "24h"])
            .args(["--control-url", &c.cp_url(), "--control-token", TOKEN, "--remote"])
            .arg(&remote);
        if yes {
            cmd.arg("--yes");
        }
        let out = cmd.output().unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("scrub printed no report ({e}): {}", String::from_utf8_lossy(&out.stderr))
        });
        assert_eq!(out.status.code(), Some(0), "orphans only: {report:#}");
        report
    };
    let dry = purge(false);
    assert_eq!(
        (dry["purge"]["executed"].as_bool(), dry["purge"]["deleted"].as_u64()),
        (Some(false), Some(1)),
        "{dry:#}"
    );
    assert_eq!(remote_objects(&remote), before, "a dry run deleted something");
    let done = purge(true);
    assert_eq!(
        (done["purge"]["executed"].as_bool(), done["purge"]["deleted"].as_u64()),
        (Some(true), Some(1)),
        "{done:#}"
    );
    let mut want = before.clone();
    assert!(want.remove(&old.display().to_string()));
    assert_eq!(remote_objects(&remote), want, "the purge deleted more than the old orphan");
    assert_eq!(deep_scrub_orphans(&remote), orphans_before + 1, "the young orphan stays");
}

/// `strata scrub --deep` over `remote`: it must find no problem; the orphans it counts.
fn deep_scrub_orphans(remote: &Path) -> u64 {
    let out = strata()
        .args(["scrub", "--deep", "--json", "--no-progress", "--remote"])
        .arg(remote)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    report["counts"]["orphan"].as_u64().unwrap_or(0)
}
