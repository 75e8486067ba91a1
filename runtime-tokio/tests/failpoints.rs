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

#[allow(dead_code)] // the fault scenarios, next, use every helper
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
                 checkpoint_timeout_ms = 300\nshutdown_grace_ms = 5000",
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
