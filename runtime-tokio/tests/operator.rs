//! The operator surface of the real `strata` binary (127.0.0.1): bearer-token
//! authentication, configuration sources (file, `STRATA_…` environment, `-c`), S3
//! credentials from the AWS chain.
#![cfg(not(madsim))]

use camino::Utf8PathBuf;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_runtime_tokio::auth::{self, Claims, Scope};

const A: &str = "0000000000000000000000000000000a";
const B: &str = "0000000000000000000000000000000b";
const TIMELINE: &str = "000000000000000000000000000000c1";

fn strata(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata")).args(args).output().unwrap()
}

/// `strata init` into `dir` listening on `listen`, with `auth` appended to the config.
fn init(dir: &Path, listen: &str, auth: &str) {
    let out = strata(&["init", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = dir.join("strata.toml");
    let config = std::fs::read_to_string(&path).unwrap().replace("127.0.0.1:9898", listen);
    std::fs::write(&path, format!("{config}\n{auth}")).unwrap();
}

fn start(dir: &Path) -> Child {
    start_with(dir, |_| {})
}

/// Starts `strata pageserver` on `dir`'s config, `env` adjusting its environment.
fn start_with(dir: &Path, env: impl FnOnce(&mut Command)) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .args(["pageserver", "--config"])
        .arg(dir.join("strata.toml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap());
    env(&mut command);
    command.spawn().unwrap()
}

/// Waits until `/v1/status` (open with auth on) says the node is active.
fn wait_serving(base: &str, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let phase = || {
        let mut r = agent().get(format!("{base}/v1/status")).call().ok()?;
        let v: serde_json::Value = r.body_mut().read_json().ok()?;
        Some(v["phase"].as_str()? == "Active")
    };
    while phase() != Some(true) {
        assert!(Instant::now() < deadline, "{}", node_log(dir));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `strata init` into `dir` on a free loopback port (auth off), started with `env`
/// and active: the running node and its base URL.
fn serve(dir: &Path, env: impl FnOnce(&mut Command)) -> (Killed, String) {
    let port = free_port();
    init(dir, &format!("127.0.0.1:{port}"), "");
    let node = Killed(start_with(dir, env));
    let base = format!("http://127.0.0.1:{port}");
    wait_serving(&base, dir);
    (node, base)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build(),
    )
}

/// `(status, WWW-Authenticate, body)` of `method path` with `token`.
fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, Option<String>, serde_json::Value) {
    let url = format!("{base}{path}");
    let agent = agent();
    let mut r = match method {
        "GET" => {
            let mut req = agent.get(&url);
            if let Some(t) = token {
                req = req.header("authorization", &format!("Bearer {t}"));
            }
            req.call().unwrap()
        }
        "POST" => {
            let mut req = agent.post(&url);
            if let Some(t) = token {
                req = req.header("authorization", &format!("Bearer {t}"));
            }
            req.send_json(serde_json::json!({})).unwrap()
        }
        other => panic!("{other}"),
    };
    let challenge =
        r.headers().get("www-authenticate").map(|v| v.to_str().unwrap_or_default().to_string());
    (r.status().as_u16(), challenge, r.body_mut().read_json().unwrap_or_default())
}

fn mint(key_file: &Path, scope: &str, tenant: Option<&str>) -> String {
    let mut args =
        vec!["token", "mint", "--key-file", key_file.to_str().unwrap(), "--scope", scope];
    if let Some(t) = tenant {
        args.extend(["--tenant", t]);
    }
    let out = strata(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn tokens_scope_every_route_401_without_a_valid_one_403_outside_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let key = dir.path().join("auth.key");
    let out = strata(&["token", "new-key", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    init(dir.path(), &format!("127.0.0.1:{port}"), "[auth]\nkey_files = [\"auth.key\"]\n");
    let _node = Killed(start(dir.path()));
    let base = format!("http://127.0.0.1:{port}");
    // The open routes answer without a token.
    wait_serving(&base, dir.path());
    assert_eq!(call(&base, "GET", "/metrics", None).0, 200);

    let admin = mint(&key, "admin", None);
    let token_a = mint(&key, "tenant", Some(A));
    let secret =
        auth::read_key(Utf8PathBuf::from_path_buf(key.clone()).unwrap().as_path()).unwrap();
    let expired = auth::mint(
        &secret,
        &Claims {
            scope: Scope::Admin,
            tenant_id: None,
            node_id: None,
            exp: auth::now_secs() - 3600,
        },
    )
    .unwrap();
    let foreign = auth::mint(
        b"a key this node was never given, 32+ bytes",
        &Claims {
            scope: Scope::Admin,
            tenant_id: None,
            node_id: None,
            exp: auth::now_secs() + 600,
        },
    )
    .unwrap();

    // 401 with a Bearer challenge: no token, an expired one, a foreign signature, garbage.
    for (what, token) in [
        ("none", None),
        ("expired", Some(&*expired)),
        ("foreign", Some(&*foreign)),
        ("junk", Some("x.y.z")),
    ] {
        let (status, challenge, body) = call(&base, "GET", "/v1/tenant", token);
        assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")), "{what}: {body}");
        assert!(body["msg"].is_string(), "{what}: {body}");
        let (status, _, body) = call(&base, "POST", &format!("/v1/tenant/{A}/timeline"), token);
        assert_eq!(status, 401, "{what}: {body}");
    }

    // The admin token creates both tenants.
    for t in [A, B] {
        let url = format!("{base}/v1/tenant");
        let r = agent()
            .post(&url)
            .header("authorization", &format!("Bearer {admin}"))
            .send_json(serde_json::json!({"tenant_id": t}))
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    // Tenant A's token: its own timelines, nothing of B, no admin route.
    let r = agent()
        .post(format!("{base}/v1/tenant/{A}/timeline"))
        .header("authorization", &format!("Bearer {token_a}"))
        .send_json(serde_json::json!({"timeline_id": TIMELINE}))
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (status, _, _) =
        call(&base, "GET", &format!("/v1/tenant/{A}/timeline/{TIMELINE}"), Some(&token_a));
    assert_eq!(status, 200);
    for (method, path) in [
        ("POST", format!("/v1/tenant/{B}/timeline")),
        ("GET", format!("/v1/tenant/{B}/timeline/{TIMELINE}")),
        ("GET", "/v1/tenant".to_string()),
        ("POST", format!("/v1/tenant/{A}/detach")),
    ] {
        let (status, challenge, body) = call(&base, method, &path, Some(&token_a));
        assert_eq!((status, challenge), (403, None), "{method} {path}: {body}");
        assert!(body["msg"].is_string(), "{body}");
    }
    // The admin token reaches B's timelines too.
    let (status, _, body) = call(&base, "POST", &format!("/v1/tenant/{B}/timeline"), Some(&admin));
    assert_eq!(status, 201, "{body}");
}

fn node_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
}

#[test]
fn a_node_bound_off_loopback_without_auth_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "0.0.0.0:0", "");
    let mut child = start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node started on 0.0.0.0 without auth: {}", node_log(dir.path()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let log = node_log(dir.path());
    assert!(log.contains("not a loopback address"), "{log}");
}
#[test]
fn print_config_shows_the_file_overridden_by_the_environment_then_by_c() {
    let dir = tempfile::tempdir().unwrap();
    let strata = env!("CARGO_BIN_EXE_strata");
    let out = Command::new(strata).args(["init", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success());
    let config = dir.path().join("strata.toml");
    let out = Command::new(strata)
        .args(["pageserver", "--print-config", "--config"])
        .arg(&config)
        .args(["-c", "node_id=3", "-c", "walredo.request_timeout_ms=2500"])
        .env("STRATA_NODE_ID", "2")
        .env("STRATA_TUNING__PAGE_CACHE_BYTES", "1048576")
        .env("STRATA_LISTEN_HTTP", "127.0.0.1:7001")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "node_id = 3",
        "listen_http = \"127.0.0.1:7001\"",
        "page_cache_bytes = 1048576",
        "request_timeout_ms = 2500",
        "gc_retention_ms = ",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    // A typo after -c is an error, not a default.
    let out = Command::new(strata)
        .args(["pageserver", "--print-config", "--config"])
        .arg(&config)
        .args(["-c", "tuning.page_cache_byte=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such configuration key"));
}

#[test]
fn s3_credentials_come_from_an_aws_profile_when_the_config_names_none() {
    let Ok(endpoint) = std::env::var("S3_ENDPOINT") else {
        println!("S3_ENDPOINT is not set: skipping (scripts/s3-local.sh starts one)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    init(dir.path(), &format!("127.0.0.1:{port}"), "");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let bucket = format!("strata-profile-{:x}", nanos.as_nanos());
    // moto creates a bucket on a plain PUT.
    let created = agent().put(format!("{endpoint}/{bucket}")).send_empty().unwrap();
    assert!(created.status().is_success());
    let path = dir.path().join("strata.toml");
    let config = std::fs::read_to_string(&path).unwrap().replace(
        "[remote_storage]\nkind = \"local\"\npath = \"remote\"",
        &format!("[remote_storage]\nkind = \"s3\"\nbucket = \"{bucket}\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\""),
    );
    assert!(config.contains("kind = \"s3\"") && !config.contains("access_key_id"), "{config}");
    std::fs::write(&path, config).unwrap();
    let credentials = dir.path().join("aws-credentials");
    std::fs::write(
        &credentials,
        "[strata-test]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let aws_config = dir.path().join("aws-config");
    std::fs::write(&aws_config, "[profile strata-test]\nregion = us-east-1\n").unwrap();
    let _node = Killed(start_with(dir.path(), |c| {
        c.env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", &aws_config)
            .env("AWS_PROFILE", "strata-test")
            // Nothing but 127.0.0.1: never ask an instance-metadata service.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN");
    }));
    let base = format!("http://127.0.0.1:{port}");
    wait_serving(&base, dir.path());
    // A create lists the tenant's prefix, a timeline's create uploads its first index:
    // both need signed requests, so credentials were found in the profile.
    let r =
        agent().post(format!("{base}/v1/tenant")).send_json(serde_json::json!({"tenant_id": A}));
    assert_eq!(r.unwrap().status().as_u16(), 201, "{}", node_log(dir.path()));
    let r = agent()
        .post(format!("{base}/v1/tenant/{A}/timeline"))
        .send_json(serde_json::json!({"timeline_id": TIMELINE}));
    assert_eq!(r.unwrap().status().as_u16(), 201, "{}", node_log(dir.path()));
}

/// The metric families in docs/OPERATIONS.md's metrics table.
fn documented_metrics() -> std::collections::BTreeSet<String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/OPERATIONS.md"))
            .unwrap();
    let section = doc.split("\n## Metrics (`GET /metrics`)\n").nth(1).expect("a Metrics section");
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter(|l| l.starts_with("| `strata_"))
        .flat_map(|l| {
            // One row may name several metrics: `a`, `b`.
            let cell = l.split('|').nth(1).unwrap_or_default();
            cell.split(", ")
                .map(|m| {
                    m.trim().trim_matches('`').split('{').next().unwrap_or_default().to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn after_a_short_workload_every_metric_is_documented_and_every_documented_one_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, base) = serve(dir.path(), |c| {
        c.args([
            "-c",
            "tuning.checkpoint_distance_bytes=4096",
            "-c",
            "tuning.checkpoint_timeout_ms=200",
        ]);
    });
    let post = |path: &str, body: serde_json::Value| {
        let r = agent().post(format!("{base}{path}")).send_json(body).unwrap();
        r.status().as_u16()
    };
    assert_eq!(post("/v1/tenant", serde_json::json!({"tenant_id": A})), 201);
    assert_eq!(
        post(&format!("/v1/tenant/{A}/timeline"), serde_json::json!({"timeline_id": TIMELINE})),
        201
    );
    let records: Vec<_> = (0..64u64)
        .map(|k| {
            serde_json::json!({"key": format!("{k:016X}"), "lsn": format!("0/{:X}", 0x100 + k * 8),
                "record": {"image": hex::encode([k as u8; 100])}})
        })
        .collect();
    let ingest = format!("/v1/tenant/{A}/timeline/{TIMELINE}/ingest");
    assert_eq!(post(&ingest, serde_json::json!({"records": records})), 200);
    let page =
        format!("{base}/v1/tenant/{A}/timeline/{TIMELINE}/page?key=0000000000000001&lsn=0/2F8");
    assert_eq!(agent().get(&page).call().unwrap().status().as_u16(), 200);
    // Wait for the flushed layer's upload, so that remote storage has been written.
    let deadline = Instant::now() + Duration::from_secs(30);
    let scrape = || {
        agent().get(format!("{base}/metrics")).call().unwrap().body_mut().read_to_string().unwrap()
    };
    let mut text = scrape();
    while !text.contains("strata_remote_storage_bytes_total{op=\"put_file\"}") {
        assert!(Instant::now() < deadline, "no layer upload: {text}");
        std::thread::sleep(Duration::from_millis(100));
        text = scrape();
    }
    let exported: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let documented = documented_metrics();
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    let absent: Vec<_> = documented.difference(&exported).collect();
    assert!(
        undocumented.is_empty() && absent.is_empty(),
        "exported but undocumented: {undocumented:?}; documented but absent: {absent:?}"
    );
}

#[test]
fn json_logs_carry_one_access_line_per_request_with_its_id_tenant_and_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, base) = serve(dir.path(), |c| {
        c.env("STRATA_LOG_FORMAT", "json").env("STRATA_LOG", "info");
    });
    let r = agent()
        .get(format!("{base}/v1/tenant/{A}/timeline/{TIMELINE}"))
        .header("x-request-id", "req-42")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("req-42"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = node_log(dir.path());
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let access: Vec<_> = lines
            .iter()
            .filter(|v| v["target"] == "strata::access" && v["span"]["id"] == "req-42")
            .collect();
        if let [line] = access.as_slice() {
            assert_eq!(line["fields"]["status"], 404, "{line}");
            assert_eq!(line["span"]["tenant"], A, "{line}");
            assert_eq!(line["span"]["timeline"], TIMELINE, "{line}");
            assert_eq!(line["span"]["method"], "GET", "{line}");
            break;
        }
        assert!(access.is_empty(), "one access line per request: {access:?}");
        assert!(Instant::now() < deadline, "no access line for req-42: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn past_the_concurrency_limit_or_the_deadline_a_request_gets_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let overrides =
        ["limits.max_concurrent_http_requests=1", "limits.http_request_deadline_ms=1500"];
    let (_node, base, timeline) = serve_with_timeline(dir.path(), &overrides);
    // A read at an LSN not ingested waits (read_wait_timeout_ms, 5 s): it holds the
    // one slot until the deadline cuts it.
    let slow_url =
        format!("{base}/v1/tenant/{A}/timeline/{TIMELINE}/page?key=0000000000000001&lsn=1/0");
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let mut r = agent().get(&slow_url).call().unwrap();
        let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let body: serde_json::Value = r.body_mut().read_json().unwrap();
        (r.status().as_u16(), retry, body, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(400));
    let mut r = agent().get(format!("{timeline}/{TIMELINE}")).call().unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let body: serde_json::Value = r.body_mut().read_json().unwrap();
    assert!(body["msg"].as_str().unwrap().contains("max_concurrent_http_requests"), "{body}");
    // Probes are not counted.
    assert_eq!(agent().get(format!("{base}/v1/status")).call().unwrap().status().as_u16(), 200);
    let (status, retry, body, took) = slow.join().unwrap();
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{body}");
    assert!(body["msg"].as_str().unwrap().contains("http_request_deadline_ms"), "{body}");
    assert!(
        took < Duration::from_millis(4_000),
        "cut by the deadline, not the read wait: {took:?}"
    );
    // The slot is free again.
    assert_eq!(
        agent().get(format!("{timeline}/{TIMELINE}")).call().unwrap().status().as_u16(),
        200
    );
    let text =
        agent().get(format!("{base}/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    for line in [
        "strata_http_limit_hits_total{limit=\"concurrency\"} 1",
        "strata_http_limit_hits_total{limit=\"deadline\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
}

#[test]
fn past_the_tenant_limit_a_create_or_attach_gets_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, base) = serve(dir.path(), |c| {
        c.args(["-c", "limits.max_tenants=1"]);
    });
    let create = |t: &str| {
        agent().post(format!("{base}/v1/tenant")).send_json(serde_json::json!({"tenant_id": t}))
    };
    let attach = |t: &str, mode: &str| {
        agent()
            .put(format!("{base}/v1/tenant/{t}/location_config"))
            .send_json(serde_json::json!({"mode": mode}))
    };
    assert_eq!(create(A).unwrap().status().as_u16(), 201);
    for mut r in [create(B).unwrap(), attach(B, "AttachedSingle").unwrap()] {
        assert_eq!(r.status().as_u16(), 503);
        assert!(r.headers().get("retry-after").is_some(), "no Retry-After");
        let body: serde_json::Value = r.body_mut().read_json().unwrap();
        assert!(body["msg"].as_str().unwrap().contains("its limit is 1"), "{body}");
    }
    // A request about the tenant held is not refused by the bound.
    assert_eq!(attach(A, "AttachedSingle").unwrap().status().as_u16(), 200);
    // Once A left, B fits.
    assert_eq!(attach(A, "Detached").unwrap().status().as_u16(), 200);
    assert_eq!(create(B).unwrap().status().as_u16(), 201);
    assert_eq!(metric(&base, "strata_http_limit_hits_total{limit=\"tenants\"}"), 2);
}

#[test]
fn past_the_node_memory_bound_new_records_get_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, base, timeline) =
        serve_with_timeline(dir.path(), &["limits.max_in_memory_bytes=1"]);
    let ingest = |lsn: &str| {
        agent().post(format!("{timeline}/{TIMELINE}/ingest")).send_json(serde_json::json!(
            {"records": [{"key": "0000000000000001", "lsn": lsn, "record": {"image": "AB"}}]}
        ))
    };
    // The first record finds the node empty; the next one finds it at its bound.
    assert_eq!(ingest("0/10").unwrap().status().as_u16(), 200);
    let mut r = ingest("0/18").unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().get("retry-after").is_some(), "no Retry-After");
    let body: serde_json::Value = r.body_mut().read_json().unwrap();
    assert!(body["msg"].as_str().unwrap().contains("max_in_memory_bytes"), "{body}");
    // A re-send of what the timeline has is not refused.
    assert_eq!(ingest("0/10").unwrap().status().as_u16(), 200);
    assert!(metric(&base, "strata_http_limit_hits_total{limit=\"memory\"}") >= 1);
    metric(&base, "strata_node_in_memory_bytes");
}

/// A node serving with a `-c` per override, tenant A and its timeline created;
/// the timelines' URL.
fn serve_with_timeline(dir: &Path, overrides: &[&str]) -> (Killed, String, String) {
    let (node, base) = serve(dir, |c| {
        for o in overrides {
            c.args(["-c", o]);
        }
    });
    let r =
        agent().post(format!("{base}/v1/tenant")).send_json(serde_json::json!({"tenant_id": A}));
    assert_eq!(r.unwrap().status().as_u16(), 201);
    let timeline = format!("{base}/v1/tenant/{A}/timeline");
    let r = agent().post(&timeline).send_json(serde_json::json!({"timeline_id": TIMELINE}));
    assert_eq!(r.unwrap().status().as_u16(), 201);
    (node, base, timeline)
}

/// The value of the sample `name` (labels included) in `/metrics`.
fn metric(base: &str, name: &str) -> u64 {
    let text =
        agent().get(format!("{base}/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}
