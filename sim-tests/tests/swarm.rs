//! The seed swarm, the determinism check, the seed corpus and one-seed replay.
#![cfg(madsim)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;
use strata_runtime_sim::scenario::{self, RunReport, ScenarioConfig};
use strata_runtime_sim::settings::NodeSettings;
use strata_runtime_tokio::trace_sink::TraceSink;

const DEFAULT_SEEDS: u64 = 100;
const DETERMINISM_SAMPLE: u64 = 4;
const TRACE_TAIL_LINES: usize = 60;
/// Seeds of `corrupt_downloads_are_refused`.
const CORRUPT_DOWNLOAD_SEEDS: u64 = 30;

fn replay_command(seed: u64) -> String {
    format!(
        "STRATA_REPLAY_SEED={seed} RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo test -p strata-sim-tests --test swarm replay -- --nocapture"
    )
}

/// The swarm's scenario: each seed draws its node settings (`settings.rs`); the
/// corpus and the deliberate breaks keep the standard ones.
fn drawn() -> ScenarioConfig {
    ScenarioConfig { settings: NodeSettings::FromSeed, ..ScenarioConfig::default() }
}

/// Runs one seed in a fresh simulated runtime. A panic (a node's invariant check,
/// for instance) becomes the report's violation.
fn run_seed(seed: u64, config: ScenarioConfig) -> (RunReport, Vec<String>) {
    let settings = config.settings.for_seed(seed).describe();
    let (sink, lines) = TraceSink::collect();
    let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let outcome = catch_unwind(AssertUnwindSafe(|| runtime.block_on(scenario::run(config, sink))));
    let trace = lines.lock().map(|l| l.clone()).unwrap_or_default();
    let report = outcome.unwrap_or_else(|panic| RunReport {
        seed,
        violation: Some(panic_violation(panic.as_ref())),
        settings,
        ..RunReport::default()
    });
    (report, trace)
}

/// A run's panic (a node's invariant check, for instance) as its violation.
fn panic_violation(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "non-string panic".to_string());
    format!("panic: {message}")
}

/// The first line where two traces of one seed differ (S-DETERMINISM).
fn divergence(a: &[String], b: &[String]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|i| a.get(*i) != b.get(*i))
}

/// Every `*.seed` file of `corpus/{dir}`, in order, with its seed (the first line).
/// A file with a line `settings: drawn` runs with the settings its seed draws (it
/// was found so); the others with the standard settings.
fn corpus_seeds(dir: &str) -> Vec<(std::path::PathBuf, u64, NodeSettings)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seed"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let seed =
                text.lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| {
                    panic!("{}: the first line must be the seed", path.display());
                });
            let drawn = text.lines().any(|l| l.trim() == "settings: drawn");
            let settings = if drawn { NodeSettings::FromSeed } else { NodeSettings::Standard };
            (path, seed, settings)
        })
        .collect()
}

fn fail(report: &RunReport, trace: &[String]) -> ! {
    let tail = trace.len().saturating_sub(TRACE_TAIL_LINES);
    panic!(
        "seed {} failed: {}\nsettings: {}\nreplay: {}\nlast {} trace lines (node-1):\n{}",
        report.seed,
        report.violation.as_deref().unwrap_or("?"),
        report.settings,
        replay_command(report.seed),
        trace.len() - tail,
        trace[tail..].join("\n")
    );
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn swarm() {
    let start = env_u64("STRATA_SEED_START").unwrap_or(1);
    let count = env_u64("STRATA_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let wall = Instant::now();
    let (mut simulated_ms, mut restarts, mut outages) = (0u64, 0usize, 0usize);
    let (mut chaos, mut chaos_busy, mut chaos_bad_key) = (0u64, 0u64, 0u64);
    let (mut disk_full_refused, mut disk_full_broken) = (0u64, 0u64);
    let mut fired: std::collections::BTreeMap<String, u64> = Default::default();
    let mut wall_jump_inputs = 0usize;
    let mut scrub_orphans = 0u64;
    // `STRATA_SWARM_VERBOSE=1`: a line per seed (wall time, settings) as it ends.
    let verbose = env_u64("STRATA_SWARM_VERBOSE").is_some_and(|v| v != 0);
    for seed in start..start + count {
        let seed_wall = Instant::now();
        let (report, trace) = run_seed(seed, drawn());
        if verbose {
            let ms = seed_wall.elapsed().as_millis();
            println!("seed {seed}: {ms} wall ms, settings: {}", report.settings);
        }
        if report.violation.is_some() {
            fail(&report, &trace);
        }
        scrub_orphans += report.scrub_orphans;
        wall_jump_inputs += trace.iter().filter(|l| l.contains("wall clock jumped")).count();
        simulated_ms += report.simulated_ms;
        restarts += report.restarts;
        outages += report.store_outages;
        chaos += report.chaos_answered;
        chaos_busy += report.chaos_busy;
        disk_full_refused += report.disk_full.refused;
        disk_full_broken += report.disk_full.broken;
        chaos_bad_key += report.chaos_bad_key_refused;
        for (site, n) in &report.fired {
            *fired.entry(site.clone()).or_default() += n;
        }
    }
    let secs = wall.elapsed().as_secs_f64();
    println!(
        "swarm: {count} seeds from {start}, {restarts} restarts, {:.1} simulated s in {secs:.1} wall s: {:.1} simulated s per wall s, {:.1} seeds per minute",
        simulated_ms as f64 / 1000.0,
        simulated_ms as f64 / 1000.0 / secs,
        count as f64 / secs * 60.0
    );
    println!("restarts that met a failing control-plane store (emergency mode): {outages}");
    println!("end-of-run scrub: {scrub_orphans} orphans (never a failure)");
    println!(
        "concurrent chaos requests answered: {chaos}, of which 503 (busy, not ready): {chaos_busy}; key FFFFFFFFFFFFFFFF refused with 400: {chaos_bad_key}"
    );
    println!(
        "workload ingests refused for a full disk: {disk_full_refused} with 503, {disk_full_broken} with 500 (timeline Broken no_space)"
    );
    println!("fault sites fired: {fired:?}");
    println!(
        "wall-clock jumps the driver reported to the node (handle_wall_clock_jump): {wall_jump_inputs}"
    );
    let silent: Vec<&String> = fired.iter().filter(|(_, n)| **n == 0).map(|(s, _)| s).collect();
    println!("fault sites that never fired: {silent:?}");
}

#[test]
fn determinism() {
    for seed in 1..=DETERMINISM_SAMPLE {
        let (a, trace_a) = run_seed(seed, drawn());
        let (_, trace_b) = run_seed(seed, drawn());
        if let Some(i) = divergence(&trace_a, &trace_b) {
            panic!(
                "S-DETERMINISM: seed {seed} diverged at trace line {i}:\n  first run:  {:?}\n  second run: {:?}\nreplay: {}",
                trace_a.get(i),
                trace_b.get(i),
                replay_command(seed)
            );
        }
        assert!(!trace_a.is_empty(), "seed {seed} produced no trace");
        assert!(a.violation.is_none(), "seed {seed}: {:?}", a.violation);
    }
}

#[test]
fn corpus() {
    for (path, seed, settings) in corpus_seeds("corpus") {
        let (report, trace) = run_seed(seed, ScenarioConfig { settings, ..Default::default() });
        if report.violation.is_some() {
            eprintln!("corpus seed from {}", path.display());
            fail(&report, &trace);
        }
    }
}

/// Layer downloads corrupted on the way (`remote.get_to_file.corrupt` forced to
/// fire on half of them, over each seed's own faults) are refused by the size and
/// CRC32C check and downloaded again: every seed passes, S-CRASHSAFE included
/// (every layer file under its name verifies). With the check broken (accepting
/// everything) a flipped layer lands under its name and a seed fails. Independent
/// of which seeds of the swarm happen to download.
#[test]
fn corrupt_downloads_are_refused() {
    use strata_runtime_sim::faults::site;
    let config = ScenarioConfig {
        forced_faults: vec![(site::REMOTE_GET_TO_FILE_CORRUPT, 0.5)],
        ..ScenarioConfig::default()
    };
    let mut fired = 0;
    for seed in 1..=CORRUPT_DOWNLOAD_SEEDS {
        let (report, trace) = run_seed(seed, config.clone());
        if report.violation.is_some() {
            fail(&report, &trace);
        }
        fired += report
            .fired
            .iter()
            .find(|(s, _)| s == site::REMOTE_GET_TO_FILE_CORRUPT)
            .map_or(0, |(_, n)| *n);
    }
    println!("remote.get_to_file.corrupt fired {fired} times in {CORRUPT_DOWNLOAD_SEEDS} seeds");
    assert!(fired > 0, "no download was corrupted: the test checks nothing");
}

#[test]
fn replay() {
    let Some(seed) = env_u64("STRATA_REPLAY_SEED") else {
        println!("set STRATA_REPLAY_SEED=N to replay one seed");
        return;
    };
    let config = ScenarioConfig { settings: NodeSettings::from_env(), ..ScenarioConfig::default() };
    let (report, trace) = run_seed(seed, config);
    for line in &trace {
        println!("{line}");
    }
    println!("{report:#?}");
    if report.violation.is_some() {
        fail(&report, &trace);
    }
}

// ---- The cluster scenario (`strata_runtime_sim::cluster`) ----

use strata_runtime_sim::cluster::{self, ClusterConfig, ClusterReport};

/// Cluster seeds the swarm runs by default (`STRATA_CLUSTER_SEEDS` for more).
const DEFAULT_CLUSTER_SEEDS: u64 = 200;

fn cluster_replay_command(seed: u64) -> String {
    format!(
        "STRATA_REPLAY_CLUSTER_SEED={seed} RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo test -p strata-sim-tests --test swarm cluster_replay -- --nocapture"
    )
}

/// The cluster swarm's scenario, with settings drawn per seed as [`drawn`].
fn cluster_drawn() -> ClusterConfig {
    ClusterConfig { settings: NodeSettings::FromSeed, ..ClusterConfig::default() }
}

/// Runs one cluster seed in a fresh simulated runtime; a panic becomes the violation.
fn run_cluster_seed(seed: u64, config: ClusterConfig) -> (ClusterReport, Vec<String>) {
    let settings = config.settings.for_seed(seed).describe();
    let (sink, lines) = TraceSink::collect();
    let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let outcome = catch_unwind(AssertUnwindSafe(|| runtime.block_on(cluster::run(config, sink))));
    let trace = lines.lock().map(|l| l.clone()).unwrap_or_default();
    let report = outcome.unwrap_or_else(|panic| {
        let violation = panic_violation(panic.as_ref());
        ClusterReport {
            seed,
            settings,
            violations: vec![violation.clone()],
            violation: Some(violation),
            ..ClusterReport::default()
        }
    });
    (report, trace)
}

fn cluster_fail(report: &ClusterReport, trace: &[String]) -> ! {
    let tail = trace.len().saturating_sub(TRACE_TAIL_LINES);
    panic!(
        "cluster seed {} failed: {}\nall violations: {:#?}\nsettings: {}\nreplay: {}\nlast {} trace lines (every node):\n{}",
        report.seed,
        report.violation.as_deref().unwrap_or("?"),
        report.violations,
        report.settings,
        cluster_replay_command(report.seed),
        trace.len() - tail,
        trace[tail..].join("\n")
    );
}

/// The cluster swarm: seeds `STRATA_CLUSTER_SEED_START..+STRATA_CLUSTER_SEEDS`
/// (default 1..=200; 5,000 on demand).
#[test]
fn cluster_swarm() {
    let start = env_u64("STRATA_CLUSTER_SEED_START").unwrap_or(1);
    let count = env_u64("STRATA_CLUSTER_SEEDS").unwrap_or(DEFAULT_CLUSTER_SEEDS);
    let wall = Instant::now();
    let (mut simulated_ms, mut restarts, mut cp_restarts) = (0u64, 0usize, 0usize);
    let (mut migrations, mut longest, mut reattaches) = (0usize, 0u64, 0usize);
    let mut fired: std::collections::BTreeMap<String, u64> = Default::default();
    // `STRATA_CLUSTER_KEEP_GOING=1`: run every seed, print each failure's first
    // violation as it is found, and fail at the end naming them all.
    let keep_going = env_u64("STRATA_CLUSTER_KEEP_GOING").is_some_and(|v| v != 0);
    let mut failed: Vec<(u64, String)> = Vec::new();
    for seed in start..start + count {
        let (report, trace) = run_cluster_seed(seed, cluster_drawn());
        if let Some(violation) = &report.violation {
            if !keep_going {
                cluster_fail(&report, &trace);
            }
            println!("cluster seed {seed} FAILED: {violation} (settings: {})", report.settings);
            failed.push((seed, violation.clone()));
            continue;
        }
        if keep_going && (seed - start + 1).is_multiple_of(250) {
            let secs = wall.elapsed().as_secs_f64();
            println!(
                "cluster swarm: through seed {seed}, {} failed, {secs:.0} wall s",
                failed.len()
            );
        }
        simulated_ms += report.simulated_ms;
        restarts += report.restarts;
        cp_restarts += report.cp_restarts;
        migrations += report.migrations;
        reattaches += report.reattaches;
        longest = longest.max(report.longest_migration_ms);
        for (site, n) in &report.fired {
            *fired.entry(site.clone()).or_default() += n;
        }
    }
    let secs = wall.elapsed().as_secs_f64();
    println!(
        "cluster swarm: {count} seeds from {start}, {restarts} pageserver and {cp_restarts} control-plane restarts, {migrations} migrations (longest {longest} simulated ms), {reattaches} re-attaches after a restart; {:.1} simulated s in {secs:.1} wall s: {:.1} simulated s per wall s, {:.1} seeds per minute",
        simulated_ms as f64 / 1000.0,
        simulated_ms as f64 / 1000.0 / secs,
        count as f64 / secs * 60.0
    );
    println!("cluster fault sites fired: {fired:?}");
    let seeds: Vec<u64> = failed.iter().map(|(s, _)| *s).collect();
    assert!(failed.is_empty(), "{} of {count} cluster seeds failed: {seeds:?}", failed.len());
}

#[test]
fn cluster_replay() {
    let Some(seed) = env_u64("STRATA_REPLAY_CLUSTER_SEED") else {
        println!("set STRATA_REPLAY_CLUSTER_SEED=N to replay one cluster seed");
        return;
    };
    let config = ClusterConfig { settings: NodeSettings::from_env(), ..ClusterConfig::default() };
    let (report, trace) = run_cluster_seed(seed, config);
    for line in &trace {
        println!("{line}");
    }
    println!("{report:#?}");
    if report.violation.is_some() {
        cluster_fail(&report, &trace);
    }
}

/// Every cluster seed in `corpus/cluster/` (bugs the cluster scenario found).
#[test]
fn cluster_corpus() {
    for (path, seed, settings) in corpus_seeds("corpus/cluster") {
        let (report, trace) =
            run_cluster_seed(seed, ClusterConfig { settings, ..Default::default() });
        if report.violation.is_some() {
            eprintln!("cluster corpus seed from {}", path.display());
            cluster_fail(&report, &trace);
        }
    }
}

/// Each cluster checker fails under a deliberate break (a test-only hook of the
/// simulated control plane, link or request layer; never set by the swarm): the
/// first seed (from 1) whose run reports the expected invariant id, within
/// `BREAK_SEEDS` seeds. The seeds found are printed and listed in docs/TESTING.md.
#[test]
fn cluster_breaks_are_caught() {
    use strata_runtime_sim::cluster::{CpBreak, NodeBreak};
    const BREAK_SEEDS: u64 = 20;
    let base = ClusterConfig::default();
    let breaks: Vec<(&str, ClusterConfig, &str)> = vec![
        (
            "the control plane answers an attach one generation low",
            ClusterConfig { cp_break: CpBreak::GrantBelow, ..base.clone() },
            "S-GEN-MONO",
        ),
        (
            "the link answers validations itself",
            ClusterConfig { cp_break: CpBreak::SkipValidation, ..base.clone() },
            "S-DEL-GEN",
        ),
        (
            "a node takes AttachedStale for AttachedSingle",
            ClusterConfig { node_break: NodeBreak::StaleIgnored, ..base.clone() },
            "S-SINGLE-WRITER",
        ),
        (
            "a destination takes AttachedMulti for AttachedStale",
            ClusterConfig { node_break: NodeBreak::MultiUploadsNothing, ..base.clone() },
            "L-MIGRATE",
        ),
        (
            "a node loses the first record of each ingest it acknowledges",
            ClusterConfig { node_break: NodeBreak::DropsARecord, ..base.clone() },
            "S-VISIBLE",
        ),
    ];
    for (what, config, id) in breaks {
        let found = (1..=BREAK_SEEDS).find_map(|seed| {
            let (report, _) = run_cluster_seed(seed, config.clone());
            report.violations.iter().find(|v| v.contains(id)).map(|v| (seed, v.clone()))
        });
        match found {
            Some((seed, violation)) => println!("{what}: {id} at seed {seed}: {violation}"),
            None => panic!("{what}: no seed of 1..={BREAK_SEEDS} reported {id}"),
        }
    }
}

/// S-DETERMINISM for the cluster scenario: a sample of seeds run twice give the
/// same trace, line for line.
#[test]
fn cluster_determinism() {
    for seed in 1..=2 {
        let (a, trace_a) = run_cluster_seed(seed, cluster_drawn());
        let (_, trace_b) = run_cluster_seed(seed, cluster_drawn());
        if let Some(i) = divergence(&trace_a, &trace_b) {
            panic!(
                "S-DETERMINISM: cluster seed {seed} diverged at trace line {i}:\n  first run:  {:?}\n  second run: {:?}\nreplay: {}",
                trace_a.get(i),
                trace_b.get(i),
                cluster_replay_command(seed)
            );
        }
        assert!(!trace_a.is_empty(), "cluster seed {seed} produced no trace");
        assert!(a.violation.is_none(), "cluster seed {seed}: {:?}", a.violation);
    }
}
