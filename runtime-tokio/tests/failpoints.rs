//! Failpoints end to end (issue 19 item 3): the real `strata` binary with
//! `testing.failpoints = true`, stopped at the driver's named sites
//! (`strata_adapters::fault_sites::FAILPOINTS`) by `PUT /v1/failpoints` or
//! `STRATA_FAILPOINTS`, then killed, restarted or released. Each scenario ends by
//! scanning the node's log for WARN and ERROR lines that are not on its allow-list.
//! The scenarios and what each proves are listed in docs/TESTING.md.
#![cfg(not(madsim))]

mod common;

use common::{Proc, TIMEOUT, agent, free_port, lsn, parse_lsn, strata};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TENANT: &str = "0000000000000000000000000000000e";
const KEYS: u64 = 6;

/// One node on its embedded defaults (LocalFs remote, SQLite control plane), with
/// failpoints on (unless `testing` is false) and small layers.
struct Node {
    dir: PathBuf,
    port: u16,
    proc: Option<Proc>,
    agent: ureq::Agent,
    /// How many times it was started: each run logs to its own file.
    runs: usize,
}

impl Node {
    fn init(dir: &Path, testing: bool) -> Node {
        let out = strata().args(["init", "--dir"]).arg(dir).output().unwrap();
        assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let path = dir.join("strata.toml");
        let mut config = std::fs::read_to_string(&path)
            .unwrap()
            .replace("127.0.0.1:9898", &format!("127.0.0.1:{port}"))
            .replace(
                "[tuning]",
                "[tuning]\ncheckpoint_distance_bytes = 4096\nvalidate_delay_ms = 100\n\
                 deletion_list_seal_delay_ms = 100\ncheckpoint_timeout_ms = 300\nshutdown_grace_ms = 5000",
            );
        if testing {
            config.push_str("\n[testing]\nfailpoints = true\n");
        }
        std::fs::write(&path, config).unwrap();
        Node { dir: dir.to_owned(), port, proc: None, agent: agent(), runs: 0 }
    }

    /// Starts the node with `env` added and waits until it is Active.
    fn start(&mut self, env: &[(&str, &str)]) {
        self.runs += 1;
        let mut cmd = strata();
        cmd.args(["pageserver", "--config"]).arg(self.dir.join("strata.toml"));
        cmd.env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.proc = Some(Proc::spawn(&mut cmd, self.dir.join(format!("node-{}.log", self.runs))));
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(code) = self.exited() {
                panic!("node exited ({code:?}) before becoming active: {}", self.log());
            }
            if let Ok(mut r) = self.agent.get(self.url("/v1/status")).call()
                && r.body_mut().read_json::<Value>().unwrap()["phase"] == "Active"
            {
                return;
            }
            assert!(Instant::now() < deadline, "node did not become active: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit code, once the process has exited by itself.
    fn exited(&mut self) -> Option<Option<i32>> {
        self.proc.as_mut()?.try_wait().map(|s| s.code())
    }

    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(code) = self.exited() {
                self.proc = None;
                return code;
            }
            assert!(Instant::now() < deadline, "node did not exit: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        self.proc.take().unwrap().kill9();
    }

    fn stop(&mut self) {
        self.proc.take().unwrap().stop();
    }

    /// Every run's log, oldest first.
    fn log(&self) -> String {
        (1..=self.runs)
            .map(|n| {
                std::fs::read_to_string(self.dir.join(format!("node-{n}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = self.url(path);
        let r = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            ("PUT", Some(b)) => self.agent.put(&url).send_json(b),
            ("POST", Some(b)) => self.agent.post(&url).send_json(b),
            other => panic!("{other:?}"),
        };
        let mut r = r.unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()));
        (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null))
    }

    fn set_failpoint(&self, name: &str, action: &str) {
        let (status, body) =
            self.call("PUT", "/v1/failpoints", Some(json!([{"name": name, "action": action}])));
        assert_eq!(status, 200, "{body}");
    }

    fn timeline(&self, timeline: &str) -> Value {
        let (status, info) =
            self.call("GET", &format!("/v1/tenant/{TENANT}/timeline/{timeline}"), None);
        assert_eq!(status, 200, "{info}");
        info
    }

    fn lsn_of(&self, timeline: &str, which: &str) -> u64 {
        parse_lsn(self.timeline(timeline)[which].as_str().unwrap())
    }

    /// Waits for `cond` on the timeline's info.
    fn wait_for(&self, timeline: &str, what: &str, cond: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let info = self.timeline(timeline);
            if cond(&info) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {info}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_visible(&self, timeline: &str, at_least: u64) {
        self.wait_for(timeline, "the visible LSN", |i| {
            parse_lsn(i["remote_consistent_lsn_visible"].as_str().unwrap()) >= at_least
        });
    }

    /// Waits until the log has a line with every one of `parts`.
    fn wait_log(&self, parts: &[&str]) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.log().lines().any(|l| parts.iter().all(|p| l.contains(p))) {
            assert!(Instant::now() < deadline, "no log line with {parts:?}: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn create_tenant(&self) {
        let (status, body) = self.call("POST", "/v1/tenant", Some(json!({"tenant_id": TENANT})));
        assert_eq!(status, 201, "{body}");
    }

    fn create_timeline(&self, timeline: &str) {
        let (status, body) = self.call(
            "POST",
            &format!("/v1/tenant/{TENANT}/timeline"),
            Some(json!({"timeline_id": timeline})),
        );
        assert_eq!(status, 201, "{body}");
    }

    /// Ingests `batches` batches over [`KEYS`] keys from `lsn_n`: an image per key
    /// (tagged), then appends. Returns the values and the last LSN.
    fn ingest(
        &self,
        timeline: &str,
        tag: &str,
        mut lsn_n: u64,
        batches: u64,
    ) -> (Vec<String>, u64) {
        let mut values = vec![Vec::<u8>::new(); KEYS as usize];
        for b in 0..batches {
            let mut records = Vec::new();
            for k in 0..KEYS {
                lsn_n += 8;
                let record = if b == 0 {
                    values[k as usize] = format!("{tag}{k}-").into_bytes();
                    json!({"image": hex::encode(&values[k as usize])})
                } else {
                    let add = vec![b as u8; 200];
                    values[k as usize].extend_from_slice(&add);
                    json!({"delta": [{"append": hex::encode(add)}]})
                };
                records
                    .push(json!({"key": format!("{k:016X}"), "lsn": lsn(lsn_n), "record": record}));
            }
            let (status, body) = self.call(
                "POST",
                &format!("/v1/tenant/{TENANT}/timeline/{timeline}/ingest"),
                Some(json!({ "records": records })),
            );
            assert_eq!(status, 200, "ingest: {body}");
        }
        (values.into_iter().map(hex::encode).collect(), lsn_n)
    }

    fn assert_reads(&self, timeline: &str, values: &[String], at: u64) {
        for (k, want) in values.iter().enumerate() {
            let path = format!(
                "/v1/tenant/{TENANT}/timeline/{timeline}/page?key={k:016X}&lsn={}",
                lsn(at)
            );
            let (status, v) = self.call("GET", &path, None);
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["value"].as_str(), Some(want.as_str()), "key {k} at {}", lsn(at));
        }
    }

    /// Every object under the remote directory, as relative paths.
    fn remote_objects(&self, under: &str) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else {
                    out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let root = self.dir.join("remote");
        let mut out = Vec::new();
        walk(&root, &root.join(under), &mut out);
        out.sort();
        out
    }

    /// Fails on a WARN or ERROR line of any run's log that contains none of `allowed`.
    fn assert_log_clean(&self, allowed: &[&str]) {
        let log = self.log();
        let unexpected: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .filter(|l| !allowed.iter().any(|a| l.contains(a)))
            .collect();
        assert!(unexpected.is_empty(), "unexpected WARN/ERROR lines:\n{}", unexpected.join("\n"));
    }
}

fn timeline_id(n: u64) -> String {
    format!("{n:032x}")
}

/// The route and the variable are off without `testing.failpoints`; with it, an
/// unknown name or a bad action is refused with 400 and a message naming it.
#[test]
fn failpoints_are_off_without_the_testing_switch_and_refuse_unknown_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut off = Node::init(&dir.path().join("off"), false);
    // Ignored, not refused: the node starts and its index uploads are not failed.
    off.start(&[("STRATA_FAILPOINTS", "upload.index=error;no.such=exit")]);
    let (status, body) = off.call(
        "PUT",
        "/v1/failpoints",
        Some(json!([{"name": "upload.index", "action": "error"}])),
    );
    assert_eq!(status, 404, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("testing.failpoints"), "{body}");
    off.create_tenant();
    off.create_timeline(&timeline_id(1));
    let (_, last) = off.ingest(&timeline_id(1), "a", 0x100, 3);
    off.wait_visible(&timeline_id(1), last);
    off.stop();
    off.assert_log_clean(&[]);

    let mut on = Node::init(&dir.path().join("on"), true);
    on.start(&[("STRATA_FAILPOINTS", "cp.validate=sleep(1)")]);
    let put = |body: Value| on.call("PUT", "/v1/failpoints", Some(body));
    let (status, body) = put(json!([{"name": "upload.idx", "action": "pause"}]));
    assert_eq!(status, 400, "{body}");
    let msg = body["msg"].as_str().unwrap();
    assert!(msg.contains("upload.idx") && msg.contains("upload.index"), "{msg}");
    let (status, body) = put(json!([{"name": "upload.index", "action": "sleep(soon)"}]));
    assert_eq!(status, 400, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("sleep(soon)"), "{body}");
    let (status, body) = put(json!([{"name": "upload.layer", "action": "sleep(5)"}]));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!([{"name": "cp.validate", "action": "sleep(1)"}, {"name": "upload.layer", "action": "sleep(5)"}])
    );
    on.stop();
    on.assert_log_clean(&[]);
    // A bad list in the variable refuses the start.
    let out = strata()
        .args(["pageserver", "--config"])
        .arg(on.dir.join("strata.toml"))
        .env("STRATA_FAILPOINTS", "upload.index=sometimes")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sometimes"));
}

/// `strata scrub --deep` over the node's remote directory: orphans are allowed
/// (an upload stopped before its index leaves some), every other finding fails.
fn scrub(node: &Node) {
    let out = strata()
        .args(["scrub", "--deep", "--json", "--no-progress", "--remote"])
        .arg(node.dir.join("remote"))
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "the scrubber found problems: {report:#}");
}

/// An upload stopped before its index (`upload.index=pause`), then kill -9: the
/// restarted node reads back every value that was acknowledged visible, nothing of
/// the stopped upload became visible, and the client's re-send completes it.
#[test]
fn an_upload_stopped_before_its_index_then_kill_9_loses_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::init(dir.path(), true);
    let tl = timeline_id(1);
    node.start(&[]);
    node.create_tenant();
    node.create_timeline(&tl);
    let (v1, last1) = node.ingest(&tl, "a", 0x100, 4);
    node.wait_visible(&tl, last1);

    node.set_failpoint("upload.index", "pause");
    let (v2, last2) = node.ingest(&tl, "b", last1, 4);
    node.wait_log(&["failpoint: paused", "upload.index"]);
    let visible = node.lsn_of(&tl, "remote_consistent_lsn_visible");
    let projected = node.lsn_of(&tl, "remote_consistent_lsn_projected");
    assert_eq!((visible, projected), (last1, last1), "nothing of the stopped upload is durable");
    node.kill9();

    node.start(&[]);
    // Visible again once the new generation's first validation passed.
    node.wait_visible(&tl, last1);
    let visible = node.lsn_of(&tl, "remote_consistent_lsn_visible");
    assert_eq!(visible, last1, "the restart loaded the last durable index");
    node.assert_reads(&tl, &v1, last1);
    // The client re-sends from last_ingested (docs/OPERATIONS.md): everything lands.
    assert_eq!(node.lsn_of(&tl, "last_ingested_lsn"), last1);
    let (again, _) = node.ingest(&tl, "b", last1, 4);
    assert_eq!(again, v2);
    node.wait_visible(&tl, last2);
    node.assert_reads(&tl, &v2, last2);
    node.assert_reads(&tl, &v1, last1);
    node.stop();
    scrub(&node);
    node.assert_log_clean(&[]);
}

/// Each step of a timeline deletion, interrupted by a restart: the process exits at
/// the step (`exit`), the node restarts without failpoints, and the deletion
/// completes: the timeline answers 404, its local directory is gone, and remote
/// storage holds nothing of it but the tombstone index. Stopped before its
/// tombstone, the deletion had not begun (it was never acknowledged): the timeline
/// is still whole and a retried DELETE completes it.
#[test]
fn each_step_of_a_timeline_deletion_interrupted_by_a_restart_completes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::init(dir.path(), true);
    node.start(&[]);
    node.create_tenant();
    let steps = [
        "timeline_delete.tombstone",
        "timeline_delete.list",
        "deletion.execute",
        "timeline_delete.local",
    ];
    for (n, step) in steps.iter().enumerate() {
        let started = Instant::now();
        let tl = timeline_id(0x10 + n as u64);
        node.create_timeline(&tl);
        let (values, last) = node.ingest(&tl, "d", 0x100, 4);
        node.wait_visible(&tl, last);
        // Old index objects are deleted through the deletion queue too: let it drain
        // so that `deletion.execute` is reached by this deletion.
        std::thread::sleep(Duration::from_millis(400));
        node.set_failpoint(step, "exit");
        let path = node.url(&format!("/v1/tenant/{TENANT}/timeline/{tl}"));
        // The answer (202) may or may not come before the exit.
        let _ = node.agent.delete(&path).call();
        assert_eq!(node.wait_exit(), Some(strata_adapters::failpoint::EXIT_CODE), "{step}");
        let line =
            node.log().lines().rev().find(|l| l.contains("failpoint: exiting")).map(str::to_owned);
        // The step of this timeline's deletion (its I/O names the timeline).
        assert!(
            line.as_deref().is_some_and(|l| l.contains(step) && l.contains(&tl)),
            "{step}: {line:?}"
        );

        let exited = started.elapsed();
        node.start(&[]);
        println!(
            "{step}: exited after {:.1} s, active again after {:.1} s",
            exited.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        if *step == "timeline_delete.tombstone" {
            node.assert_reads(&tl, &values, last);
            let (status, body) =
                node.call("DELETE", &format!("/v1/tenant/{TENANT}/timeline/{tl}"), None);
            assert_eq!(status, 202, "{body}");
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (status, _) = node.call("GET", &format!("/v1/tenant/{TENANT}/timeline/{tl}"), None);
            if status == 404
                && !node.dir.join(format!("data/tenants/{TENANT}/timelines/{tl}")).exists()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{step}: the deletion did not complete: {}",
                node.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = node.remote_objects(&format!("tenants/{TENANT}/timelines/{tl}"));
        assert!(!left.is_empty(), "{step}: the tombstone stays");
        for object in &left {
            let bytes = std::fs::read(node.dir.join("remote").join(object)).unwrap();
            let index: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            assert!(!index["deleted_at"].is_null(), "{step}: {object} is left and is no tombstone");
        }
        println!("{step}: {:.1} s", started.elapsed().as_secs_f64());
    }
    node.stop();
    scrub(&node);
    node.assert_log_clean(&[]);
}

/// Validations failing (`cp.validate=error`) while the node keeps ingesting and
/// uploading: nothing becomes visible and nothing is deleted from remote storage
/// (S-DEL-GEN); once validations succeed, everything ingested becomes visible and
/// reads back.
#[test]
fn a_validation_failing_while_the_node_ingests_deletes_nothing_and_makes_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::init(dir.path(), true);
    let tl = timeline_id(0x20);
    node.start(&[]);
    node.create_tenant();
    node.create_timeline(&tl);
    let (_, last1) = node.ingest(&tl, "a", 0x100, 3);
    node.wait_visible(&tl, last1);

    node.set_failpoint("cp.validate", "error");
    let before = node.remote_objects("");
    let mut last = last1;
    let mut values = Vec::new();
    for round in 0..4 {
        let (v, l) = node.ingest(&tl, &format!("r{round}-"), last, 3);
        (values, last) = (v, l);
        std::thread::sleep(Duration::from_millis(150));
    }
    node.wait_for(&tl, "everything durable", |i| {
        parse_lsn(i["remote_consistent_lsn_projected"].as_str().unwrap()) >= last
    });
    node.wait_log(&["failpoint: failing the I/O", "cp.validate"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node.lsn_of(&tl, "remote_consistent_lsn_visible"), last1, "nothing became visible");
    let after = node.remote_objects("");
    let gone: Vec<_> = before.iter().filter(|o| !after.contains(o)).collect();
    assert!(gone.is_empty(), "deleted without a validation: {gone:?}");
    assert!(after.len() > before.len(), "uploads went on");

    node.set_failpoint("cp.validate", "off");
    node.wait_visible(&tl, last);
    node.assert_reads(&tl, &values, last);
    node.stop();
    scrub(&node);
    node.assert_log_clean(&["control plane call failed", "validation failed"]);
}
