//! Issue 17 items 3, 4 and 6 end to end with the real binary on 127.0.0.1:
//! `strata control` and two pageservers sharing one remote storage (one LocalFs
//! directory; for the kill -9 test a fresh bucket on the S3 server at
//! `S3_ENDPOINT` when it is set, as in CI: moto, `scripts/s3-local.sh`); a
//! tenant migrates back and forth (`strata ctl migrate`, the admin API) while an
//! ingest client that follows the re-send contract (docs/OPERATIONS.md) writes to
//! it; kill -9 of the origin, the destination and the control plane at points drawn
//! from a printed seed (`STRATA_E2E_SEED=N` replays one). Afterwards every value the
//! client saw acknowledged visible reads back from the node holding the tenant, and
//! `strata scrub --deep` finds every index reference in the shared remote intact.
#![cfg(not(madsim))]

mod common;

use common::{Proc, TIMEOUT, agent, free_port, lsn, parse_lsn, strata};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TENANT: &str = "0000000000000000000000000000000c";
const TIMELINE: &str = "0000000000000000000000000000000d";
const TOKEN: &str = "e2e-migration-token";
const KEYS: usize = 8;

/// A deterministic random source (xorshift) from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Cluster {
    dir: PathBuf,
    cp_port: u16,
    ports: [u16; 2],
}

/// Where the two nodes keep their shared remote storage.
#[derive(Clone, Copy, PartialEq)]
enum Remote {
    /// `dir/remote`, a LocalFs directory.
    Local,
    /// A new bucket on the S3 server at `S3_ENDPOINT` when it is set, else `Local`.
    S3IfSet,
}

/// The `[remote_storage]` section both nodes share: a new bucket on the S3
/// server at `S3_ENDPOINT` (moto creates it on a plain PUT), or `dir/remote`.
fn shared_remote(dir: &std::path::Path, remote: Remote) -> String {
    let endpoint = std::env::var("S3_ENDPOINT").ok().filter(|_| remote == Remote::S3IfSet);
    let Some(endpoint) = endpoint else {
        std::fs::create_dir_all(dir.join("remote")).unwrap();
        return format!("kind = \"local\"\npath = \"{}\"", dir.join("remote").display());
    };
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let bucket = format!("strata-migration-{:x}-{n}", nanos.as_nanos());
    let mut created = agent().put(format!("{endpoint}/{bucket}")).send_empty().unwrap();
    assert!(
        created.status().is_success(),
        "creating bucket {bucket}: {}",
        created.body_mut().read_to_string().unwrap_or_default()
    );
    eprintln!("migration e2e: remote storage s3://{bucket} at {endpoint}");
    format!(
        "kind = \"s3\"\nbucket = \"{bucket}\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\n\
         access_key_id = \"testing\"\nsecret_access_key = \"testing\""
    )
}

impl Cluster {
    /// Two nodes on one LocalFs directory (`dir/remote`).
    fn new(dir: PathBuf) -> Cluster {
        Cluster::with_remote(dir, Remote::Local)
    }

    fn with_remote(dir: PathBuf, remote: Remote) -> Cluster {
        let c = Cluster { dir, cp_port: free_port(), ports: [free_port(), free_port()] };
        let remote = shared_remote(&c.dir, remote);
        for i in 0..2 {
            let d = c.dir.join(format!("n{}", i + 1));
            let out = strata().args(["init", "--dir"]).arg(&d).output().unwrap();
            assert!(out.status.success());
            let config = format!(
                "node_id = {}\ndata_dir = \"data\"\nlisten_http = \"127.0.0.1:{}\"\n\n\
                 [remote_storage]\n{remote}\n\n\
                 [control_plane]\nkind = \"remote\"\nurl = \"{}\"\ntoken = \"{TOKEN}\"\ncall_timeout_ms = 2000\n\n\
                 [walredo]\nkind = \"process\"\n\n\
                 [tuning]\ncheckpoint_distance_bytes = 4096\nvalidate_delay_ms = 100\n\
                 checkpoint_timeout_ms = 300\nshutdown_grace_ms = 1500\n",
                i + 1,
                c.ports[i],
                c.cp_url()
            );
            std::fs::write(d.join("strata.toml"), config).unwrap();
        }
        c
    }

    fn cp_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.cp_port)
    }

    fn node_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    fn start_control(&self) -> Proc {
        common::start_control(&self.dir, self.cp_port, TOKEN)
    }

    /// Starts node `i` (0 or 1); with `wait`, until it is Active.
    fn start_node(&self, i: usize, wait: bool) -> Proc {
        let p = Proc::spawn(
            strata()
                .args(["pageserver", "--config"])
                .arg(self.dir.join(format!("n{}/strata.toml", i + 1))),
            self.dir.join(format!("n{}.log", i + 1)),
        );
        let deadline = Instant::now() + TIMEOUT;
        if !wait {
            return p;
        }
        loop {
            if let Ok(mut r) = agent().get(format!("{}/v1/status", self.node_url(i))).call()
                && r.body_mut().read_json::<Value>().is_ok_and(|v| v["phase"] == "Active")
            {
                return p;
            }
            assert!(Instant::now() < deadline, "node {i} not active: {}", p.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        let out = strata()
            .args(["ctl", "--url", &self.cp_url(), "--token", TOKEN])
            .args(args)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    /// `GET /v1/tenant/{t}/location` of node `i`, or `None` when it does not answer.
    fn location(&self, i: usize) -> Option<Value> {
        let url = format!("{}/v1/tenant/{TENANT}/location", self.node_url(i));
        let mut r = fast_agent().get(url).call().ok()?;
        if r.status() != 200 {
            return None;
        }
        r.body_mut().read_json().ok()
    }

    fn admin(&self, path: &str) -> Option<Value> {
        let mut r = fast_agent()
            .get(format!("{}{path}", self.cp_url()))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .ok()?;
        if r.status() != 200 {
            return None;
        }
        r.body_mut().read_json().ok()
    }

    /// Asks for a migration to node `to` (0 or 1). `false` when the control plane
    /// did not take it (down, or a migration still runs).
    fn start_migration(&self, to: usize) -> bool {
        let body = json!({"tenant_id": TENANT, "node_id": to + 1});
        let r = fast_agent()
            .post(format!("{}/admin/migrations", self.cp_url()))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .send_json(body);
        matches!(r, Ok(r) if r.status() == 201)
    }

    /// The tenant is on node `to` with no migration running.
    fn migrated_to(&self, to: usize) -> bool {
        let Some(rows) = self.admin("/admin/tenants") else { return false };
        let Some(row) = rows.as_array().and_then(|r| r.iter().find(|r| r["tenant_id"] == TENANT))
        else {
            return false;
        };
        row["node_id"] == to as u64 + 1 && row["migration"]["active"] == false
    }
}

fn fast_agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build(),
    )
}

/// The ingest client: it plays the WAL service of the re-send contract. Every
/// record it produces is kept; it writes to the attached node with the highest
/// generation that is not AttachedStale, re-sending from that node's
/// `last_ingested` (and, one time in three, a few records from before it, which the
/// node must skip); the highest visible LSN any node reports is acknowledged.
struct Client {
    /// Every record ever produced, in LSN order: (lsn, key, appended byte).
    wal: Vec<(u64, usize, u8)>,
    next_lsn: u64,
    /// The highest visible LSN a node reported.
    acknowledged: u64,
    rng: Rng,
}

impl Client {
    fn new(seed: u64) -> Client {
        Client { wal: Vec::new(), next_lsn: 0x1000, acknowledged: 0, rng: Rng(seed | 1) }
    }

    /// The value of `key` as of `at`: its appended bytes, in order.
    fn value(&self, key: usize, at: u64) -> Option<String> {
        let bytes: Vec<u8> =
            self.wal.iter().filter(|(l, k, _)| *k == key && *l <= at).map(|(_, _, b)| *b).collect();
        (!bytes.is_empty()).then(|| hex::encode(bytes))
    }

    fn produce(&mut self, n: usize) {
        for _ in 0..n {
            let key = (self.next_lsn as usize / 8) % KEYS;
            let byte = (self.next_lsn % 251) as u8;
            self.wal.push((self.next_lsn, key, byte));
            self.next_lsn += 8;
        }
    }

    fn json(&self, lsn_: u64, key: usize, byte: u8) -> Value {
        let first = self.wal.iter().find(|(_, k, _)| *k == key).is_some_and(|(l, _, _)| *l == lsn_);
        let record = if first {
            json!({"image": hex::encode([byte])})
        } else {
            json!({"delta": [{"append": hex::encode([byte])}]})
        };
        json!({"key": format!("{key:016X}"), "lsn": lsn(lsn_), "record": record})
    }

    /// The node to write to, with its last_ingested and visible LSNs.
    fn target(&self, c: &Cluster) -> Option<(usize, u64, u64)> {
        let mut best: Option<(u64, usize, u64, u64)> = None;
        for i in 0..2 {
            let Some(loc) = c.location(i) else { continue };
            let mode = loc["mode"].as_str().unwrap_or_default();
            if !matches!(mode, "AttachedSingle" | "AttachedMulti") {
                continue;
            }
            let generation = loc["generation"].as_u64().unwrap_or(0);
            let Some(tl) = loc["timelines"].as_array().and_then(|t| t.first()) else { continue };
            let last = parse_lsn(tl["last_ingested_lsn"].as_str().unwrap_or("0/0"));
            let visible = parse_lsn(tl["remote_consistent_lsn_visible"].as_str().unwrap_or("0/0"));
            if best.is_none_or(|b| generation > b.0) {
                best = Some((generation, i, last, visible));
            }
        }
        best.map(|(_, i, last, visible)| (i, last, visible))
    }

    /// Delivers what the target node lacks (a bounded chunk); updates the
    /// acknowledged LSN. `Some(node)` when a node took the records.
    fn deliver(&mut self, c: &Cluster) -> Option<usize> {
        let (node, last, visible) = self.target(c)?;
        self.acknowledged = self.acknowledged.max(visible);
        let overlap =
            if self.rng.next().is_multiple_of(3) { 8 * (self.rng.next() % 32) } else { 0 };
        let from = last.saturating_sub(overlap);
        let records: Vec<Value> = self
            .wal
            .iter()
            .filter(|(l, _, _)| *l > from)
            .take(256)
            .map(|(l, k, b)| self.json(*l, *k, *b))
            .collect();
        if records.is_empty() {
            return Some(node);
        }
        let url = format!("{}/v1/tenant/{TENANT}/timeline/{TIMELINE}/ingest", c.node_url(node));
        let r = fast_agent().post(url).send_json(json!({ "records": records })).ok()?;
        (r.status() == 200).then_some(node)
    }
}

/// Reads every key at `at` from node `i` and compares with the client's model.
fn check_reads(c: &Cluster, client: &Client, i: usize, at: u64) {
    for key in 0..KEYS {
        let url = format!(
            "{}/v1/tenant/{TENANT}/timeline/{TIMELINE}/page?key={key:016X}&lsn={}",
            c.node_url(i),
            lsn(at)
        );
        let mut r = agent().get(url).call().unwrap();
        assert_eq!(r.status(), 200, "read of key {key} at {at:X} from node {i}");
        let v: Value = r.body_mut().read_json().unwrap();
        let expected = client.value(key, at);
        assert_eq!(v["value"].as_str().map(str::to_owned), expected, "key {key} at {at:X}");
    }
}

/// A tenant with one timeline on node 0.
fn setup(c: &Cluster) {
    for i in 0..2 {
        let (ok, out, err) = c.ctl(&["node", "register", &(i + 1).to_string(), &c.node_url(i)]);
        assert!(ok, "{out} {err}");
    }
    let (ok, out, err) = c.ctl(&["tenant", "create", TENANT, "--node", "1"]);
    assert!(ok, "{out} {err}");
    let r = agent()
        .post(format!("{}/v1/tenant/{TENANT}/timeline", c.node_url(0)))
        .send_json(json!({"timeline_id": TIMELINE}))
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Runs the client until the target node shows everything produced as visible.
fn drain(c: &Cluster, client: &mut Client, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let last = client.next_lsn - 8;
    loop {
        let node = client.deliver(c);
        if let Some(n) = node
            && client.acknowledged >= last
        {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "visible stuck at {:X} below {last:X}",
            client.acknowledged
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `strata ctl migrate` shows each step and the final state; `strata ctl tenant
/// list` shows the migration; the data moves with the tenant both ways.
#[test]
fn strata_ctl_migrate_moves_a_tenant_back_and_forth_and_shows_each_step() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::new(dir.path().to_owned());
    let _cp = c.start_control();
    let _n1 = c.start_node(0, true);
    let _n2 = c.start_node(1, true);
    setup(&c);
    let mut client = Client::new(7);
    for (to, after) in [(1usize, "secondary_warm"), (0, "detached"), (1, "secondary_warm")] {
        client.produce(200);
        let from = drain(&c, &mut client, TIMEOUT);
        assert_eq!(from, 1 - to);
        let to_arg = (to + 1).to_string();
        let (ok, out, err) = c.ctl(&["migrate", TENANT, "--to", &to_arg, "--origin-after", after]);
        assert!(ok, "migrate: {out} {err}");
        for phase in [
            "attach_destination",
            "stale_origin",
            "catch_up",
            "demote_origin",
            "finalize_destination",
            "done",
        ] {
            assert!(err.contains(&format!("phase {phase}")), "no {phase} step shown:\n{err}");
        }
        let done: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            (done["phase"].as_str(), done["destination"].as_u64()),
            (Some("done"), Some(to as u64 + 1))
        );
        let (ok, out, _) = c.ctl(&["tenant", "list"]);
        assert!(ok);
        let rows: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(rows[0]["node_id"], to as u64 + 1, "{rows}");
        assert_eq!(rows[0]["migration"]["phase"], "done", "{rows}");
        let origin = c.location(1 - to).unwrap();
        let expected = if after == "detached" { "Detached" } else { "Secondary" };
        assert_eq!(origin["mode"], expected, "{origin}");
        assert_eq!(c.location(to).unwrap()["mode"], "AttachedSingle");
        check_reads(&c, &client, to, client.acknowledged);
    }
}

/// Migrations back and forth under concurrent ingest, with kill -9 of the origin,
/// the destination or the control plane at seeded points. Replay a failure with
/// the printed `STRATA_E2E_SEED`.
#[test]
fn migrations_under_ingest_and_kill_9_keep_every_acknowledged_value() {
    let started = Instant::now();
    let seed =
        std::env::var("STRATA_E2E_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
        });
    let migrations: usize =
        std::env::var("STRATA_E2E_MIGRATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    eprintln!("migration e2e: STRATA_E2E_SEED={seed} ({migrations} migrations)");
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::with_remote(dir.path().to_owned(), Remote::S3IfSet);
    let mut cp = Some(c.start_control());
    let mut nodes = [Some(c.start_node(0, true)), Some(c.start_node(1, true))];
    setup(&c);
    let mut client = Client::new(seed);
    let mut current = 0usize;
    let mut checkpoints = Vec::new();
    for m in 0..migrations {
        let to = 1 - current;
        // 0: no fault, 1: kill the origin, 2: the destination, 3: the control plane.
        let fault = rng.next() % 4;
        let kill_after = Duration::from_millis(rng.next() % 1500);
        let down_for = Duration::from_millis(200 + rng.next() % 1500);
        eprintln!(
            "migration {m}: node {} -> {}, fault {fault} after {kill_after:?}, down {down_for:?}",
            current + 1,
            to + 1
        );
        let begun = Instant::now();
        let mut requested = false;
        let mut killed_at: Option<Instant> = None;
        let mut fault_done = fault == 0;
        loop {
            client.produce(4);
            client.deliver(&c);
            if !requested {
                requested = c.start_migration(to) || c.migrated_to(to);
            }
            if !fault_done && killed_at.is_none() && begun.elapsed() >= kill_after {
                match fault {
                    1 => nodes[current].as_mut().unwrap().kill9(),
                    2 => nodes[to].as_mut().unwrap().kill9(),
                    _ => cp.as_mut().unwrap().kill9(),
                }
                killed_at = Some(Instant::now());
            }
            if let Some(at) = killed_at
                && at.elapsed() >= down_for
            {
                match fault {
                    1 => nodes[current] = Some(c.start_node(current, false)),
                    2 => nodes[to] = Some(c.start_node(to, false)),
                    _ => cp = Some(c.start_control()),
                }
                killed_at = None;
                fault_done = true;
            }
            if requested && fault_done && c.migrated_to(to) {
                break;
            }
            assert!(
                begun.elapsed() < Duration::from_secs(90),
                "migration {m} (seed {seed}) did not finish: {:?}\ncontrol plane log:\n{}",
                c.admin(&format!("/admin/migrations/{TENANT}")),
                cp.as_ref().map(Proc::log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        current = to;
        checkpoints.push(client.acknowledged);
    }
    // Heal: everything up, the client re-sends until all it produced is visible.
    let holder = drain(&c, &mut client, TIMEOUT);
    assert_eq!(holder, current, "the client writes to the node the control plane names");
    assert_eq!(c.location(current).unwrap()["mode"], "AttachedSingle");
    let other = c.location(1 - current).unwrap();
    assert!(matches!(other["mode"].as_str(), Some("Secondary" | "Detached")), "{other}");
    for at in checkpoints.iter().copied().filter(|a| *a > 0).chain([client.next_lsn - 8]) {
        check_reads(&c, &client, current, at);
    }
    // An independent walk of the shared remote storage (the directory or the
    // bucket node 1's configuration names): every layer an index references is
    // there, whole (exit 0: clean, orphans allowed).
    let scrub = strata()
        .args(["scrub", "--deep", "--no-progress", "--config"])
        .arg(c.dir.join("n1/strata.toml"))
        .output()
        .unwrap();
    assert!(
        scrub.status.success(),
        "strata scrub (seed {seed}) found problems:\n{}\n{}",
        String::from_utf8_lossy(&scrub.stdout),
        String::from_utf8_lossy(&scrub.stderr)
    );
    eprintln!(
        "migration e2e: {migrations} migrations, {} records, acknowledged {:X}, took {:?}",
        client.wal.len(),
        client.acknowledged,
        started.elapsed()
    );
}

/// Issue 19 item 3's tokens: with auth on both nodes, `strata control` without
/// `--node-token-file` cannot create a tenant (the node answers 401, and the
/// admin sees it); with an admin token of the nodes in that file, the tenant is
/// created and migrates from node 1 to node 2, and its data reads back there.
#[test]
fn a_control_plane_with_the_node_token_migrates_between_nodes_with_auth_on() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::new(dir.path().to_owned());
    let key = c.dir.join("auth.key");
    let out = strata().args(["token", "new-key"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for i in 1..=2 {
        let path = c.dir.join(format!("n{i}/strata.toml"));
        let config = std::fs::read_to_string(&path).unwrap();
        let config = format!("{config}\n[auth]\nkey_files = [\"{}\"]\n", key.display());
        std::fs::write(&path, config).unwrap();
    }
    let out = strata()
        .args(["token", "mint", "--scope", "admin", "--key-file"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let admin = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let bearer = format!("Bearer {admin}");
    // Without the node token: the node refuses the control plane's call.
    let mut cp = c.start_control();
    let _n1 = c.start_node(0, true);
    let _n2 = c.start_node(1, true);
    for i in 0..2 {
        let (ok, out, err) = c.ctl(&["node", "register", &(i + 1).to_string(), &c.node_url(i)]);
        assert!(ok, "{out} {err}");
    }
    let (ok, out, err) = c.ctl(&["tenant", "create", TENANT, "--node", "1"]);
    assert!(!ok && err.contains("401"), "a create without the node token: {out} {err}");
    let r = agent().get(format!("{}/v1/tenant/{TENANT}/location", c.node_url(0))).call().unwrap();
    assert_eq!(r.status(), 401, "a call without a token");
    cp.stop();

    let token_file = c.dir.join("node.token");
    std::fs::write(&token_file, format!("{admin}\n")).unwrap();
    let _cp = common::start_control_with(
        &c.dir,
        c.cp_port,
        TOKEN,
        &["--node-token-file", token_file.to_str().unwrap()],
    );
    let (ok, out, err) = c.ctl(&["tenant", "create", TENANT, "--node", "1"]);
    assert!(ok, "a create with the node token: {out} {err}");
    let node = |i: usize, path: &str| format!("{}/v1/tenant/{TENANT}{path}", c.node_url(i));
    let r = agent()
        .post(node(0, "/timeline"))
        .header("Authorization", &bearer)
        .send_json(json!({"timeline_id": TIMELINE}))
        .unwrap();
    assert_eq!(r.status(), 201);
    let records: Vec<Value> = (0..KEYS)
        .map(|k| {
            let image = json!({"image": hex::encode(format!("auth{k}"))});
            json!({"key": format!("{k:016X}"), "lsn": lsn(0x1000 + 8 * k as u64), "record": image})
        })
        .collect();
    let last = 0x1000 + 8 * (KEYS as u64 - 1);
    let r = agent()
        .post(node(0, &format!("/timeline/{TIMELINE}/ingest")))
        .header("Authorization", &bearer)
        .send_json(json!({ "records": records }))
        .unwrap();
    assert_eq!(r.status(), 200);
    // Visible on node 1 first: what the destination loads (clients re-send the rest).
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let url = node(0, &format!("/timeline/{TIMELINE}"));
        let mut r = agent().get(&url).header("Authorization", &bearer).call().unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        if parse_lsn(v["remote_consistent_lsn_visible"].as_str().unwrap()) >= last {
            break;
        }
        assert!(Instant::now() < deadline, "not visible on node 1: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    let (ok, out, err) = c.ctl(&["migrate", TENANT, "--to", "2", "--origin-after", "detached"]);
    println!("migration with tokens: {:.1} s", started.elapsed().as_secs_f64());
    assert!(ok, "migrate: {out} {err}");
    let done: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((done["phase"].as_str(), done["destination"].as_u64()), (Some("done"), Some(2)));
    let deadline = Instant::now() + TIMEOUT;
    for k in 0..KEYS {
        let url = node(1, &format!("/timeline/{TIMELINE}/page?key={k:016X}&lsn={}", lsn(last)));
        loop {
            let mut r = agent().get(&url).header("Authorization", &bearer).call().unwrap();
            let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
            if r.status() == 200 {
                assert_eq!(v["value"].as_str(), Some(hex::encode(format!("auth{k}")).as_str()));
                break;
            }
            assert!(Instant::now() < deadline && r.status() == 503, "read of key {k}: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The first key of the deletion a `deletion.execute` pause holds, from its log line.
fn held_key(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("failpoint: paused") && l.contains("deletion.execute"))
        .unwrap_or_else(|| panic!("no paused deletion in {log}"));
    let start = line.find("RemoteKey(").unwrap_or_else(|| panic!("{line}")) + "RemoteKey(".len();
    line[start..].split(')').next().unwrap().to_string()
}

/// Issue 19 item 3: a deletion stopped before its execution (`deletion.execute=pause`
/// on the origin) while the tenant migrates away; the origin is then killed with
/// the validated deletion list on its disk and restarted. The destination keeps
/// every acknowledged value (read back after its own kill -9 and restart, so from
/// remote storage), and `strata scrub --deep` finds no index naming a missing
/// object: nothing the new holder needs was deleted. The restarted origin runs
/// the validated list from its disk (the held key goes, no list is left).
#[test]
fn a_deletion_stopped_before_execution_while_the_tenant_migrates_deletes_nothing_needed() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::new(dir.path().to_owned());
    for i in 1..=2 {
        let path = c.dir.join(format!("n{i}/strata.toml"));
        let config = std::fs::read_to_string(&path).unwrap();
        let config =
            format!("{config}deletion_list_seal_delay_ms = 100\n\n[testing]\nfailpoints = true\n");
        std::fs::write(&path, config).unwrap();
    }
    let _cp = c.start_control();
    let mut n1 = c.start_node(0, true);
    let mut n2 = c.start_node(1, true);
    setup(&c);
    let mut client = Client::new(11);
    client.produce(300);
    assert_eq!(drain(&c, &mut client, TIMEOUT), 0);

    let set = |i: usize, action: &str| {
        let mut r = agent()
            .put(format!("{}/v1/failpoints", c.node_url(i)))
            .send_json(json!([{"name": "deletion.execute", "action": action}]))
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.body_mut().read_to_string().unwrap_or_default());
    };
    set(0, "pause");
    let deadline = Instant::now() + TIMEOUT;
    while !n1
        .log()
        .lines()
        .any(|l| l.contains("failpoint: paused") && l.contains("deletion.execute"))
    {
        client.produce(100);
        drain(&c, &mut client, TIMEOUT);
        assert!(Instant::now() < deadline, "no deletion reached execution: {}", n1.log());
    }

    let (ok, out, err) =
        c.ctl(&["migrate", TENANT, "--to", "2", "--origin-after", "secondary_warm"]);
    assert!(ok, "migrate: {out} {err}");
    client.produce(200);
    assert_eq!(drain(&c, &mut client, TIMEOUT), 1);
    // The origin dies with its deletion held; it restarts as a Secondary with the
    // list on its disk, and a fresh (empty) set of failpoints.
    // Each run's log is kept: a restart writes its file anew.
    let mut logs = vec![("node 1, first run", n1.log())];
    n1.kill9();
    // The held deletion had passed validation (the header covers its list), but
    // the origin restarts holding the tenant Secondary, and a Secondary deletes
    // nothing (S-SINGLE-WRITER): start-up drops the list's keys and removes the
    // list (`core/src/deletion_queue`, "Crash and recovery"). The key, an index
    // that a newer index of the same generation superseded before the move, stays:
    // garbage no index names, for a scrubber.
    let held = c.dir.join("remote").join(held_key(&logs[0].1));
    let lists = || {
        std::fs::read_dir(c.dir.join("n1/data/deletion"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".list"))
            .count()
    };
    assert!(held.exists() && lists() > 0, "the held deletion is on the origin's disk");
    n1 = c.start_node(0, true);
    let deadline = Instant::now() + TIMEOUT;
    while lists() > 0 {
        assert!(Instant::now() < deadline, "the recovered list was not dropped: {}", n1.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(held.exists(), "a Secondary deleted {}", held.display());

    logs.push(("node 2, first run", n2.log()));
    n2.kill9();
    n2 = c.start_node(1, true);
    client.produce(50);
    assert_eq!(drain(&c, &mut client, TIMEOUT), 1);
    check_reads(&c, &client, 1, client.acknowledged);
    let out = strata()
        .args(["scrub", "--deep", "--json", "--no-progress", "--remote"])
        .arg(c.dir.join("remote"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the scrubber found problems: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    logs.extend([("node 1, second run", n1.log()), ("node 2, second run", n2.log())]);
    // The origin, made AttachedStale, cannot make its last records visible before
    // it is demoted: the destination has them (the client re-sends).
    let allowed = ["stopping: grace period ended before everything was visible"];
    for (run, log) in &logs {
        if std::env::var_os("E2E_SHOW_LOGS").is_some() {
            println!("==== {run}\n{log}");
        }
        let bad = common::unexpected_log_lines(log, &allowed);
        assert!(bad.is_empty(), "{run}: unexpected WARN/ERROR lines:\n{}", bad.join("\n"));
    }
    println!("deletion held through a migration: {:.1} s", started.elapsed().as_secs_f64());
}
