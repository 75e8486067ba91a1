//! Bearer-token authentication of the real `strata` binary's HTTP API (127.0.0.1).
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
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["pageserver", "--config"])
        .arg(dir.join("strata.toml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
        .spawn()
        .unwrap()
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
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let key = dir.path().join("auth.key");
    let out = strata(&["token", "new-key", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    init(dir.path(), &format!("127.0.0.1:{port}"), "[auth]\nkey_files = [\"auth.key\"]\n");
    let _node = Killed(start(dir.path()));
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    // The open routes answer without a token.
    while agent().get(format!("{base}/v1/status")).call().map(|r| r.status().as_u16()).ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "{}", node_log(dir.path()));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(call(&base, "GET", "/metrics", None).0, 200);

    let admin = mint(&key, "admin", None);
    let token_a = mint(&key, "tenant", Some(A));
    let secret =
        auth::read_key(Utf8PathBuf::from_path_buf(key.clone()).unwrap().as_path()).unwrap();
    let expired = auth::mint(
        &secret,
        &Claims { scope: Scope::Admin, tenant_id: None, exp: auth::now_secs() - 3600 },
    )
    .unwrap();
    let foreign = auth::mint(
        b"a key this node was never given, 32+ bytes",
        &Claims { scope: Scope::Admin, tenant_id: None, exp: auth::now_secs() + 600 },
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
