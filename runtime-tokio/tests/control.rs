//! `strata control`'s store and API, served in process on 127.0.0.1.
#![cfg(not(madsim))]

use camino::Utf8PathBuf;
use serde_json::{Value, json};
use std::time::Duration;
use strata_runtime_tokio::control::service::{self, ControlAuth, ControlService};

mod common;

const T1: &str = "00000000000000000000000000000001";
const T2: &str = "00000000000000000000000000000002";
const TOKEN: &str = "node-secret";

/// A control plane on its own runtime and thread, stopped on drop.
struct Running {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// `db`: `sqlite:PATH` or a `postgres://` URL.
    fn start(db: &str) -> Running {
        Self::start_with(db, ControlAuth::Token(TOKEN.into()))
    }

    fn start_with(db: &str, auth: ControlAuth) -> Running {
        let db = db.to_string();
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let service = ControlService::open(&db, auth).await.unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                url_tx.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
                service::serve(listener, service, async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let url = url_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Running { url, stop: Some(stop_tx), thread: Some(thread) }
    }

    fn post(&self, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build(),
        );
        let mut r =
            agent.post(format!("{}{path}", self.url)).header("content-type", "application/json");
        if let Some(t) = token {
            r = r.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = r.send(body).unwrap();
        (resp.status().as_u16(), resp.body_mut().read_json().unwrap_or(Value::Null))
    }

    fn node(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.post(path, Some(TOKEN), &body.to_string());
        assert_eq!(status, 200, "{path}: {v}");
        v
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A fresh SQLite store: `sqlite:PATH` in a temp dir.
fn db() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().join("control.db")).unwrap();
    (dir, format!("sqlite:{path}"))
}

fn gens(v: &Value) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = v["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_string(), t["gen"].as_u64().unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn re_attach_bumps_durably_and_a_restarted_control_plane_answers_above_it() {
    let (_dir, path) = db();
    re_attach_bumps_durably(&path);
}

/// The same on PostgreSQL (`DATABASE_URL`, a schema of its own).
#[test]
fn re_attach_bumps_durably_and_a_restarted_control_plane_answers_above_it_on_postgres() {
    let Some(url) = common::pg::fresh_schema_url("reattach") else { return };
    re_attach_bumps_durably(&url);
}

fn re_attach_bumps_durably(path: &str) {
    let cp = Running::start(path);
    assert_eq!(cp.node("/attach", json!({"tenant_id": T1, "node_id": 1}))["gen"], 1);
    assert_eq!(
        cp.node("/attach", json!({"tenant_id": T2, "node_id": 1, "reported_gen": 4}))["gen"],
        5
    );
    let first = cp.node("/re-attach", json!({"node_id": 1}));
    assert_eq!(gens(&first), vec![(T1.into(), 2), (T2.into(), 6)]);
    assert_eq!(first["tenants"][0]["previous_was_own"], true);
    // Another node holds nothing.
    assert_eq!(gens(&cp.node("/re-attach", json!({"node_id": 2}))), vec![]);
    drop(cp); // the process stops: only the store remains

    let cp = Running::start(path);
    let valid = cp.node(
        "/validate",
        json!({"tenants": [{"id": T1, "gen": 2}, {"id": T2, "gen": 6}, {"id": T1, "gen": 1}]}),
    );
    let valid: Vec<bool> = valid["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["valid"].as_bool().unwrap())
        .collect();
    assert_eq!(valid, vec![true, true, false], "the bumped generations survived the restart");
    let second = cp.node("/re-attach", json!({"node_id": 1}));
    assert_eq!(gens(&second), vec![(T1.into(), 3), (T2.into(), 7)]);
    let valid =
        cp.node("/validate", json!({"tenants": [{"id": T1, "gen": 2}, {"id": T1, "gen": 3}]}));
    assert_eq!(valid["tenants"][0]["valid"], false, "superseded by the re-attach");
    assert_eq!(valid["tenants"][1]["valid"], true);
    // Detached: attached nowhere, generation kept; re-attach no longer bumps it.
    // A detach from a node that does not hold it changes nothing.
    cp.node("/detach", json!({"tenant_id": T1, "node_id": 2}));
    assert_eq!(
        gens(&cp.node("/re-attach", json!({"node_id": 1}))),
        vec![(T1.into(), 4), (T2.into(), 8)]
    );
    cp.node("/detach", json!({"tenant_id": T1, "node_id": 1}));
    assert_eq!(gens(&cp.node("/re-attach", json!({"node_id": 1}))), vec![(T2.into(), 9)]);
    let unknown = cp.node(
        "/validate",
        json!({"tenants": [{"id": "000000000000000000000000000000ff", "gen": 1}]}),
    );
    assert_eq!(unknown["tenants"][0]["valid"], false, "an unknown tenant is invalid");
}

#[test]
fn node_calls_without_the_token_are_refused_with_401_and_change_nothing() {
    let (_dir, path) = db();
    let cp = Running::start(&path);
    cp.node("/attach", json!({"tenant_id": T1, "node_id": 1}));
    for (path, body) in [
        ("/re-attach", json!({"node_id": 1})),
        ("/validate", json!({"tenants": [{"id": T1, "gen": 1}]})),
        ("/attach", json!({"tenant_id": T1, "node_id": 1})),
        ("/detach", json!({"tenant_id": T1, "node_id": 1})),
        ("/admin/nodes", json!({"node_id": 1, "address": "http://127.0.0.1:1"})),
    ] {
        for token in [None, Some("wrong")] {
            let (status, v) = cp.post(path, token, &body.to_string());
            assert_eq!(status, 401, "{path} with {token:?}: {v}");
            assert!(v["msg"].is_string(), "{v}");
        }
    }
    let valid = cp.node("/validate", json!({"tenants": [{"id": T1, "gen": 1}]}));
    assert_eq!(valid["tenants"][0]["valid"], true, "no refused call bumped the generation");
}

#[test]
fn malformed_bodies_are_refused_with_400_and_a_msg() {
    let (_dir, path) = db();
    let cp = Running::start(&path);
    for (path, body) in [
        ("/re-attach", "not json"),
        ("/re-attach", r#"{"node_id": "one"}"#),
        ("/re-attach", r#"{}"#),
        ("/validate", r#"{"tenants": [{"id": "zz", "gen": 1}]}"#),
        ("/validate", r#"{"tenants": [{"id": "00000000000000000000000000000001", "gen": 0}]}"#),
        ("/validate", r#"{"tenants": [{"id": "00000000000000000000000000000001"}]}"#),
        (
            "/attach",
            r#"{"tenant_id": "00000000000000000000000000000001", "node_id": 1, "extra": 1}"#,
        ),
        (
            "/attach",
            r#"{"tenant_id": "00000000000000000000000000000001", "node_id": 1, "reported_gen": 0}"#,
        ),
        ("/detach", r#"[1, 2]"#),
        ("/admin/nodes", r#"{"node_id": 1, "address": "127.0.0.1:1"}"#),
        ("/admin/tenants", r#"{"tenant_id": "x", "node_id": 1}"#),
    ] {
        let (status, v) = cp.post(path, Some(TOKEN), body);
        assert_eq!(status, 400, "{path} {body}: {v}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    let (status, v) =
        cp.post("/detach", Some(TOKEN), &json!({"tenant_id": T2, "node_id": 1}).to_string());
    assert_eq!(status, 404, "detach of an unknown tenant: {v}");
    assert_eq!(v["refusal"]["kind"], "unknown_tenant");
    let (status, v) =
        cp.post("/admin/tenants", Some(TOKEN), &json!({"tenant_id": T1, "node_id": 9}).to_string());
    assert_eq!(status, 404, "an unregistered node: {v}");
}

/// JWT auth (`--key-file`): a node token speaks for its own node on the
/// node-facing API, is refused (403) for another node and on the admin API; an
/// admin token covers everything; no token, a wrong signature or an expired
/// token is 401.
#[test]
fn node_scoped_tokens_speak_for_their_own_node_only() {
    use strata_runtime_tokio::auth::{self, Auth, Claims, Scope};
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    let (_dir, db) = db();
    let auth = ControlAuth::Jwt(std::sync::Arc::new(Auth::from_secrets(&[SECRET]).unwrap()));
    let cp = Running::start_with(&db, auth);
    let mint = |scope, node_id, exp| {
        auth::mint(SECRET, &Claims { scope, tenant_id: None, node_id, exp }).unwrap()
    };
    let later = auth::now_secs() + 600;
    let node1 = mint(Scope::Node, Some(1), later);
    let admin = mint(Scope::Admin, None, later);
    let attach = |node: u64| json!({"tenant_id": T1, "node_id": node}).to_string();
    assert_eq!(cp.post("/attach", Some(&node1), &attach(1)).0, 200);
    assert_eq!(cp.post("/re-attach", Some(&node1), r#"{"node_id": 1}"#).0, 200);
    let validate = json!({"tenants": [{"id": T1, "gen": 2}]}).to_string();
    assert_eq!(cp.post("/validate", Some(&node1), &validate).0, 200);
    // Another node's requests, and the admin API, are not a node token's.
    assert_eq!(cp.post("/attach", Some(&node1), &attach(2)).0, 403);
    assert_eq!(cp.post("/re-attach", Some(&node1), r#"{"node_id": 2}"#).0, 403);
    let register = json!({"node_id": 3, "address": "http://127.0.0.1:1"}).to_string();
    assert_eq!(cp.post("/admin/nodes", Some(&node1), &register).0, 403);
    assert_eq!(cp.post("/admin/nodes", Some(&admin), &register).0, 200);
    assert_eq!(cp.post("/attach", Some(&admin), &attach(2)).0, 200);
    // Tokens that prove nothing.
    let expired = mint(Scope::Node, Some(1), auth::now_secs() - 3600);
    let forged = auth::mint(
        b"another key, also thirty-two bytes",
        &Claims { scope: Scope::Admin, tenant_id: None, node_id: None, exp: later },
    )
    .unwrap();
    for token in [None, Some(expired.as_str()), Some(forged.as_str()), Some(TOKEN)] {
        assert_eq!(cp.post("/re-attach", token, r#"{"node_id": 1}"#).0, 401, "{token:?}");
    }
}

/// Benchmark (printed, never asserted; not run in CI): requests per second of
/// `strata control` (the binary of this build) on SQLite and on PostgreSQL.
/// `/validate` with 1 and 16 concurrent node clients (each its own connection,
/// each request naming its node's 8 tenants); `/attach` (one store commit each)
/// from one client, to show what the store costs where it is written.
///
/// ```sh
/// DATABASE_URL=$(bash scripts/pg-local.sh start 55432) \
///   cargo test -p strata-runtime-tokio --test control bench_ -- --ignored --nocapture
/// ```
/// `STRATA_BENCH_SECS` (default 5) is the time per `/validate` run.
#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_control_plane_requests_per_second() {
    const NODES: u64 = 16;
    const TENANTS_PER_NODE: u64 = 8;
    let secs: u64 =
        std::env::var("STRATA_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec![("sqlite", format!("sqlite:{}", dir.path().join("bench.db").display()))];
    if std::env::var("DATABASE_URL").is_ok() {
        stores.push(("postgres", common::pg::fresh_schema_url("bench").unwrap()));
    } else {
        println!("DATABASE_URL is not set: SQLite numbers only");
    }
    let tenant = |node: u64, i: u64| format!("{:032x}", node * 1000 + i);
    let mut rows = Vec::new();
    for (name, db) in &stores {
        let port = common::free_port();
        let cp = common::start_control_on(dir.path(), port, TOKEN, db, &[]);
        let url = format!("http://127.0.0.1:{port}");
        let agent = common::agent();
        let begun = std::time::Instant::now();
        for node in 1..=NODES {
            for i in 0..TENANTS_PER_NODE {
                bench_post(
                    &agent,
                    &url,
                    "/attach",
                    &json!({"tenant_id": tenant(node, i), "node_id": node}),
                );
            }
        }
        let attach_rps = (NODES * TENANTS_PER_NODE) as f64 / begun.elapsed().as_secs_f64();
        rows.push(format!("| {name} | /attach (1 commit each) | 1 | {attach_rps:.0} | |"));
        for clients in [1u64, 16] {
            let deadline = std::time::Instant::now() + Duration::from_secs(secs);
            let threads: Vec<_> = (1..=clients)
                .map(|node| {
                    let body = json!({"tenants": (0..TENANTS_PER_NODE)
                        .map(|i| json!({"id": tenant(node, i), "gen": 1}))
                        .collect::<Vec<_>>()});
                    let url = url.clone();
                    std::thread::spawn(move || {
                        let agent = common::agent();
                        let mut latencies = Vec::new();
                        while std::time::Instant::now() < deadline {
                            let t = std::time::Instant::now();
                            bench_post(&agent, &url, "/validate", &body);
                            latencies.push(t.elapsed());
                        }
                        latencies
                    })
                })
                .collect();
            let mut latencies: Vec<Duration> =
                threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
            latencies.sort();
            let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
            rows.push(format!(
                "| {name} | /validate (8 tenants) | {clients} | {:.0} | {:.2} / {:.2} |",
                latencies.len() as f64 / secs as f64,
                pct(50).as_secs_f64() * 1e3,
                pct(99).as_secs_f64() * 1e3,
            ));
        }
        drop(cp);
    }
    println!("| store | request | clients | requests/s | p50 / p99 ms |");
    println!("|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

/// One node-API request of the benchmark; anything but 200 fails it.
fn bench_post(agent: &ureq::Agent, url: &str, path: &str, body: &Value) {
    let mut r = agent
        .post(format!("{url}{path}"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(body)
        .unwrap();
    assert_eq!(r.status(), 200, "{path}: {}", r.body_mut().read_to_string().unwrap());
}
