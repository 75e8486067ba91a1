//! Running one seed, shared by the swarm tests (`tests/swarm.rs`) and the
//! `strata-sim` binary: a fresh madsim runtime per seed, a panic turned into the
//! seed's violation, the failure text with its one-line replay command, the
//! corpus files, and the replay of one seed with its whole trace.

use std::io::Write;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use strata_runtime_sim::cluster::{self, ClusterConfig, ClusterReport, CpBreak, NodeBreak};
use strata_runtime_sim::scenario::{self, RunReport, ScenarioConfig, StoreBreak};
use strata_runtime_sim::schedule::Recorder;
use strata_runtime_sim::settings::NodeSettings;
use strata_runtime_sim::sim_disk::DiskBreak;
use strata_runtime_tokio::trace_sink::TraceSink;

/// Trace lines a failure prints (the whole trace only in a replay).
pub const TRACE_TAIL_LINES: usize = 60;

/// Which scenario a seed runs, with its configuration.
#[derive(Clone, Debug)]
pub enum Scenario {
    /// One pageserver (`strata_runtime_sim::scenario`).
    Single(ScenarioConfig),
    /// Three pageservers and a control plane (`strata_runtime_sim::cluster`).
    Cluster(ClusterConfig),
}

impl Scenario {
    /// The swarm's scenario with `settings` (drawn per seed, or the standard ones).
    pub fn new(cluster: bool, settings: NodeSettings) -> Scenario {
        if cluster {
            Scenario::Cluster(ClusterConfig { settings, ..ClusterConfig::default() })
        } else {
            Scenario::Single(ScenarioConfig { settings, ..ScenarioConfig::default() })
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Scenario::Cluster(_))
    }

    pub fn settings(&self) -> NodeSettings {
        match self {
            Scenario::Single(c) => c.settings,
            Scenario::Cluster(c) => c.settings,
        }
    }

    /// "single-node" or "cluster".
    pub fn name(&self) -> &'static str {
        if self.is_cluster() { "cluster" } else { "single-node" }
    }

    /// Runs `seed` in a fresh simulated runtime, keeping its whole trace.
    pub fn run(&self, seed: u64) -> SeedRun {
        self.run_with(seed, None)
    }

    /// Runs `seed`, recording its schedule or following one (`schedule`; see
    /// `strata_runtime_sim::schedule`), keeping its whole trace.
    pub fn run_with(&self, seed: u64, schedule: Option<Recorder>) -> SeedRun {
        self.run_traced(seed, schedule, Traced::Yes)
    }

    /// [`Scenario::run_with`], with its trace [`Traced::Yes`] or [`Traced::No`].
    pub fn run_traced(&self, seed: u64, schedule: Option<Recorder>, traced: Traced) -> SeedRun {
        match self {
            Scenario::Single(config) => {
                let config = ScenarioConfig { schedule, ..config.clone() };
                let (report, trace) = run_seed_with(seed, config, traced);
                SeedRun::single(&report, trace)
            }
            Scenario::Cluster(config) => {
                let config = ClusterConfig { schedule, ..config.clone() };
                let (report, trace) = run_cluster_seed_with(seed, config, traced);
                SeedRun::cluster(&report, trace)
            }
        }
    }

    /// Runs `seed` as a swarm does: without its trace, and, when it fails, once
    /// more with it ([`rerun_traced`]), so the failure shows its trace and picture.
    pub fn run_swarm_seed(&self, seed: u64) -> SeedRun {
        let run = self.run_traced(seed, None, Traced::No);
        if run.violation().is_none() {
            return run;
        }
        rerun_traced(run.violations, || self.run(seed))
    }

    /// The one-line command that replays `seed` of this scenario with its trace.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut command = replay_command(seed, self.is_cluster(), self.settings());
        if let Some(name) = self.break_name() {
            command.push_str(" --break ");
            command.push_str(name);
        }
        for (site, p) in self.forced() {
            command.push_str(&format!(" --force {site}={p}"));
        }
        command
    }

    /// The fault sites forced on over each seed's own plan (`--force`).
    pub fn forced(&self) -> &[(&'static str, f64)] {
        match self {
            Scenario::Single(c) => &c.forced_faults,
            Scenario::Cluster(c) => &c.forced_faults,
        }
    }

    /// This scenario with `forced` fault sites on over each seed's own plan (a
    /// targeted run: `strata-sim --force SITE=P`).
    pub fn with_forced(self, forced: Vec<(&'static str, f64)>) -> Scenario {
        match self {
            Scenario::Single(c) => Scenario::Single(ScenarioConfig { forced_faults: forced, ..c }),
            Scenario::Cluster(c) => Scenario::Cluster(ClusterConfig { forced_faults: forced, ..c }),
        }
    }

    /// This scenario with the deliberate break `name` (one of [`BREAKS`] for its
    /// kind of scenario): a test-only hook of the simulator that makes a checker fail.
    pub fn with_break(self, name: &str) -> Result<Scenario, String> {
        let (cluster, scenario_name) = (self.is_cluster(), self.name());
        let unknown = || {
            let names: Vec<&str> =
                BREAKS.iter().filter(|(_, c, _)| *c == cluster).map(|(n, _, _)| *n).collect();
            format!(
                "no break {name:?} for the {scenario_name} scenario; one of {}",
                names.join(", ")
            )
        };
        let brk = BREAKS
            .iter()
            .find(|(n, c, _)| *n == name && *c == cluster)
            .map(|(_, _, b)| *b)
            .ok_or_else(unknown)?;
        Ok(match (self, brk) {
            (Scenario::Single(c), Break::Store(store_break)) => {
                Scenario::Single(ScenarioConfig { store_break, ..c })
            }
            (Scenario::Single(c), Break::Disk(disk_break)) => {
                Scenario::Single(ScenarioConfig { disk_break, ..c })
            }
            (Scenario::Single(c), Break::Node(node_break)) => {
                Scenario::Single(ScenarioConfig { node_break, ..c })
            }
            (Scenario::Cluster(c), Break::Cp(cp_break)) => {
                Scenario::Cluster(ClusterConfig { cp_break, ..c })
            }
            (Scenario::Cluster(c), Break::Node(node_break)) => {
                Scenario::Cluster(ClusterConfig { node_break, ..c })
            }
            (Scenario::Cluster(c), Break::Disk(disk_break)) => {
                Scenario::Cluster(ClusterConfig { disk_break, ..c })
            }
            _ => return Err(unknown()),
        })
    }

    /// The name of its deliberate break ([`BREAKS`]), if any.
    pub fn break_name(&self) -> Option<&'static str> {
        let brk = match self {
            Scenario::Single(c) if c.store_break != StoreBreak::None => Break::Store(c.store_break),
            Scenario::Single(c) if c.disk_break != DiskBreak::None => Break::Disk(c.disk_break),
            Scenario::Single(c) if c.node_break != NodeBreak::None => Break::Node(c.node_break),
            Scenario::Cluster(c) if c.cp_break != CpBreak::None => Break::Cp(c.cp_break),
            Scenario::Cluster(c) if c.node_break != NodeBreak::None => Break::Node(c.node_break),
            Scenario::Cluster(c) if c.disk_break != DiskBreak::None => Break::Disk(c.disk_break),
            _ => return None,
        };
        BREAKS.iter().find(|(_, _, b)| *b == brk).map(|(n, _, _)| *n)
    }
}

/// A deliberate break of the simulator (a test-only hook the swarm never sets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Break {
    Store(StoreBreak),
    Disk(DiskBreak),
    Cp(CpBreak),
    Node(NodeBreak),
}

/// Every deliberate break by its `--break` name: whether it is the cluster
/// scenario's, and the hook. The invariant each makes fail is in docs/TESTING.md.
pub const BREAKS: [(&str, bool, Break); 17] = [
    ("lose-first-index", false, Break::Store(StoreBreak::LoseFirstIndex)),
    ("relabel-layer-generations", false, Break::Store(StoreBreak::RelabelLayerGenerations)),
    ("acked-layers-land-late", false, Break::Store(StoreBreak::AckedLayersLandLate)),
    ("deletes-a-neighbour", false, Break::Store(StoreBreak::DeletesANeighbour)),
    ("fails-later-index-puts", false, Break::Store(StoreBreak::FailsLaterIndexPuts)),
    ("ignores-index-deletes", false, Break::Store(StoreBreak::IgnoresIndexDeletes)),
    ("keeps-earlier-layers", false, Break::Disk(DiskBreak::KeepsEarlierLayers)),
    ("unsynced-config-data", false, Break::Disk(DiskBreak::UnsyncedConfigData)),
    ("holds-listings", false, Break::Node(NodeBreak::HoldsListings)),
    ("attaches-as-secondary", false, Break::Node(NodeBreak::AttachesAsSecondary)),
    ("publishes-early", false, Break::Node(NodeBreak::PublishesEarly)),
    ("keeps-earlier-layers", true, Break::Disk(DiskBreak::KeepsEarlierLayers)),
    ("grant-below", true, Break::Cp(CpBreak::GrantBelow)),
    ("skip-validation", true, Break::Cp(CpBreak::SkipValidation)),
    ("stale-ignored", true, Break::Node(NodeBreak::StaleIgnored)),
    ("multi-uploads-nothing", true, Break::Node(NodeBreak::MultiUploadsNothing)),
    ("drops-a-record", true, Break::Node(NodeBreak::DropsARecord)),
];

/// What one seed of either scenario saw, for the swarm's summary.
#[derive(Debug)]
pub struct SeedRun {
    pub seed: u64,
    /// Every violation found, the run's first first (empty when the seed passed).
    pub violations: Vec<String>,
    /// The settings the pageservers ran with (`Drawn::describe`).
    pub settings: String,
    pub simulated_ms: u64,
    pub machine_inputs: u64,
    pub fired: Vec<(String, u64)>,
    /// The scenario's report, pretty-printed.
    pub report: String,
    pub trace: Vec<String>,
}

impl SeedRun {
    pub fn single(report: &RunReport, trace: Vec<String>) -> SeedRun {
        SeedRun {
            seed: report.seed,
            violations: report.violation.iter().cloned().collect(),
            settings: report.settings.clone(),
            simulated_ms: report.simulated_ms,
            machine_inputs: report.machine_inputs,
            fired: report.fired.clone(),
            report: format!("{report:#?}"),
            trace,
        }
    }

    pub fn cluster(report: &ClusterReport, trace: Vec<String>) -> SeedRun {
        SeedRun {
            seed: report.seed,
            violations: report.violations.clone(),
            settings: report.settings.clone(),
            simulated_ms: report.simulated_ms,
            machine_inputs: report.machine_inputs,
            fired: report.fired.clone(),
            report: format!("{report:#?}"),
            trace,
        }
    }

    pub fn violation(&self) -> Option<&str> {
        self.violations.first().map(String::as_str)
    }
}

/// The invariant id a violation names: its first word shaped like one
/// (`S-VISIBLE`, `L-UPLOAD`, `FSYNC-TRUST`, `SEED-BOUND`); `panic` for a panic
/// that names none (a node's own check, for instance), else `unnamed`.
pub fn invariant_id(violation: &str) -> String {
    let is_id = |w: &&str| {
        let mut parts = w.split('-');
        let head = parts.next().unwrap_or("");
        let rest: Vec<&str> = parts.collect();
        !head.is_empty()
            && head.chars().all(|c| c.is_ascii_uppercase())
            && !rest.is_empty()
            && rest.iter().all(|p| {
                !p.is_empty() && p.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            })
    };
    let words = violation.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
    match words.into_iter().find(is_id) {
        Some(id) => id.to_string(),
        None if violation.starts_with("panic:") => "panic".to_string(),
        None => "unnamed".to_string(),
    }
}

/// `SITE=P` of `--force`: a known fault site and a probability in 0..=1.
pub fn parse_forced(text: &str) -> Result<(&'static str, f64), String> {
    use strata_runtime_sim::faults::site;
    let (name, p) = text.split_once('=').ok_or_else(|| format!("{text:?}: expected SITE=P"))?;
    let known = site::ALL.iter().chain(site::CLUSTER).find(|s| **s == name);
    let site = known.copied().ok_or_else(|| format!("{name:?}: no such fault site"))?;
    let p: f64 = p.parse().map_err(|e| format!("{p:?}: {e}"))?;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("{p}: a probability is within 0..=1"));
    }
    Ok((site, p))
}

/// The one-line command that replays a seed with its whole trace.
pub fn replay_command(seed: u64, cluster: bool, settings: NodeSettings) -> String {
    let mut command = format!(
        "RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo run -p strata-sim-tests --bin strata-sim -- --seed {seed}"
    );
    if cluster {
        command.push_str(" --cluster");
    }
    if settings == NodeSettings::Standard {
        command.push_str(" --standard-settings");
    }
    command
}

/// Whether a run keeps its trace. Nothing a seed draws or does depends on it (the
/// trace only records), so a seed run without it and with it takes the same steps:
/// a swarm runs each seed without it (formatting every line of every seed was one
/// of the largest costs, `docs/PERFORMANCE.md`) and reruns a failing one with it
/// ([`Scenario::run_swarm_seed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traced {
    Yes,
    No,
}

impl Traced {
    /// The sink a run records to, and the lines it collects (none when off).
    fn sink(self) -> (TraceSink, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        match self {
            Traced::Yes => TraceSink::collect(),
            Traced::No => (TraceSink::Off, Default::default()),
        }
    }
}

/// The traced rerun of a seed that failed untraced. Both runs take the same steps,
/// so the rerun fails the same way; if it does not, the difference is itself a
/// violation (S-DETERMINISM, put first) and both runs' violations are shown.
pub fn rerun_traced(untraced: Vec<String>, rerun: impl FnOnce() -> SeedRun) -> SeedRun {
    let mut run = rerun();
    if run.violations != untraced {
        let traced = run.violations.clone();
        run.violations.insert(
            0,
            format!(
                "S-DETERMINISM: the seed's untraced run and its traced rerun differ: untraced {untraced:?}, traced {traced:?}"
            ),
        );
    }
    run
}

/// Runs one seed of the one-node scenario in a fresh simulated runtime. A panic (a
/// node's invariant check, for instance) becomes the report's violation.
pub fn run_seed(seed: u64, config: ScenarioConfig) -> (RunReport, Vec<String>) {
    run_seed_with(seed, config, Traced::Yes)
}

/// [`run_seed`], keeping the trace or not.
pub fn run_seed_with(
    seed: u64,
    config: ScenarioConfig,
    traced: Traced,
) -> (RunReport, Vec<String>) {
    let settings = config.settings.for_seed(seed).describe();
    let (sink, lines) = traced.sink();
    let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let outcome = catch_unwind(AssertUnwindSafe(|| runtime.block_on(scenario::run(config, sink))));
    let trace = lines.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default();
    let report = outcome.unwrap_or_else(|panic| RunReport {
        seed,
        violation: Some(panic_violation(panic.as_ref())),
        settings,
        ..RunReport::default()
    });
    (report, trace)
}

/// Runs one cluster seed in a fresh simulated runtime; a panic becomes the violation.
pub fn run_cluster_seed(seed: u64, config: ClusterConfig) -> (ClusterReport, Vec<String>) {
    run_cluster_seed_with(seed, config, Traced::Yes)
}

/// [`run_cluster_seed`], keeping the trace or not.
pub fn run_cluster_seed_with(
    seed: u64,
    config: ClusterConfig,
    traced: Traced,
) -> (ClusterReport, Vec<String>) {
    let settings = config.settings.for_seed(seed).describe();
    let (sink, lines) = traced.sink();
    let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let outcome = catch_unwind(AssertUnwindSafe(|| runtime.block_on(cluster::run(config, sink))));
    let trace = lines.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default();
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

/// A run's panic (a node's invariant check, for instance) as its violation.
pub fn panic_violation(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "non-string panic".to_string());
    format!("panic: {message}")
}

/// The first line where two traces of one seed differ (S-DETERMINISM).
pub fn divergence(a: &[String], b: &[String]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|i| a.get(*i) != b.get(*i))
}

/// What a failed seed prints: the seed, its violations, the settings, the replay
/// command and the last [`TRACE_TAIL_LINES`] trace lines.
pub fn failure_text(scenario: &Scenario, run: &SeedRun) -> String {
    failure_text_with_picture(scenario, run, None)
}

/// [`failure_text`], with the path of the run's picture beside the replay command.
pub fn failure_text_with_picture(
    scenario: &Scenario,
    run: &SeedRun,
    picture: Option<&str>,
) -> String {
    let tail = run.trace.len().saturating_sub(TRACE_TAIL_LINES);
    let others = match run.violations.len() {
        0 | 1 => String::new(),
        _ => format!("\nall violations: {:#?}", run.violations),
    };
    let picture = picture.map(|p| format!("\npicture: {p}")).unwrap_or_default();
    format!(
        "{} seed {} failed: {}{others}\nsettings: {}\nreplay: {}{picture}\nlast {} trace lines ({}):\n{}",
        scenario.name(),
        run.seed,
        run.violation().unwrap_or("?"),
        run.settings,
        scenario.replay_command(run.seed),
        run.trace.len() - tail,
        "every machine",
        run.trace[tail..].join("\n")
    )
}

/// Replays `seed`: writes its whole trace, then its report, then (when it fails)
/// the failure text to `out`. Returns whether the seed passed, whatever became of
/// the writing (a reader such as `head` may stop early).
pub fn replay(scenario: &Scenario, seed: u64, out: &mut dyn Write) -> bool {
    replay_with_picture(scenario, seed, out, None)
}

/// [`replay`], also writing the run's HTML picture ([`picture`]) to `html` and its
/// path and size to `out`.
pub fn replay_with_picture(
    scenario: &Scenario,
    seed: u64,
    out: &mut dyn Write,
    html: Option<&Path>,
) -> bool {
    show_run(scenario, &scenario.run(seed), out, html)
}

/// What [`replay_with_picture`] writes, for a run already made (one that followed
/// a schedule, for instance). Returns whether it passed.
pub fn show_run(
    scenario: &Scenario,
    run: &SeedRun,
    out: &mut dyn Write,
    html: Option<&Path>,
) -> bool {
    let _ = write_replay(scenario, run, out);
    if let Some(path) = html {
        let _ = match write_picture(scenario, run, path) {
            Ok(bytes) => writeln!(
                out,
                "picture: {} ({bytes} bytes, {} trace lines)",
                path.display(),
                run.trace.len()
            ),
            Err(e) => writeln!(out, "picture: {} not written: {e}", path.display()),
        };
    }
    run.violation().is_none()
}

/// The HTML picture of a run ([`crate::html`]): a lane per machine, time down the
/// page, faults and the violation marked, each trace line on hover.
pub fn picture(scenario: &Scenario, run: &SeedRun) -> String {
    let verdict = if run.violation().is_some() { "failed" } else { "passed" };
    let fired: Vec<String> =
        run.fired.iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{s} {n}")).collect();
    let mut fields = vec![
        ("seed".to_string(), run.seed.to_string()),
        ("scenario".to_string(), scenario.name().to_string()),
        ("settings".to_string(), run.settings.clone()),
        ("simulated".to_string(), format!("{} ms", run.simulated_ms)),
        ("machine inputs".to_string(), run.machine_inputs.to_string()),
        ("fault sites fired".to_string(), fired.join(", ")),
    ];
    if run.violations.len() > 1 {
        fields.push(("all violations".to_string(), run.violations.join("\n")));
    }
    let header = crate::html::Header {
        title: format!("strata-sim: {} seed {} {verdict}", scenario.name(), run.seed),
        fields,
        violation: run.violation().map(str::to_string),
        replay: scenario.replay_command(run.seed),
    };
    crate::html::render(&header, &run.trace)
}

/// The file name of a failing seed's picture in a swarm's directory.
pub fn picture_file_name(scenario: &Scenario, seed: u64) -> String {
    format!("{}-seed-{seed}.html", scenario.name())
}

/// [`failure_text`] of a seed a swarm found, after writing its picture into `dir`
/// ([`picture_file_name`]); the text names the picture under the replay command
/// (or why it was not written).
pub fn failure_text_writing_picture(scenario: &Scenario, run: &SeedRun, dir: &Path) -> String {
    let path = dir.join(picture_file_name(scenario, run.seed));
    let picture = match write_picture(scenario, run, &path) {
        Ok(_) => path.display().to_string(),
        Err(e) => format!("{} not written: {e}", path.display()),
    };
    failure_text_with_picture(scenario, run, Some(&picture))
}

/// Writes the run's [`picture`] to `path` (creating its directory); returns its size.
pub fn write_picture(scenario: &Scenario, run: &SeedRun, path: &Path) -> std::io::Result<usize> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let html = picture(scenario, run);
    std::fs::write(path, &html)?;
    Ok(html.len())
}

fn write_replay(scenario: &Scenario, run: &SeedRun, out: &mut dyn Write) -> std::io::Result<()> {
    for line in &run.trace {
        writeln!(out, "{line}")?;
    }
    writeln!(out, "{}", run.report)?;
    match run.violation() {
        None => writeln!(out, "{} seed {} passed", scenario.name(), run.seed),
        Some(_) => writeln!(out, "{}", failure_text(scenario, run)),
    }
}

/// Every `*.seed` file of `corpus/{dir}` (relative to this crate), in order, with
/// its seed (the first line). A file with a line `settings: drawn` runs with the
/// settings its seed draws (it was found so); the others with the standard settings.
pub fn corpus_seeds(dir: &str) -> Vec<(PathBuf, u64, NodeSettings)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seed"))
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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

/// Parses `A..B` (B excluded) or `A..=B` (B included) into seeds `A..B`.
pub fn parse_seed_range(text: &str) -> Result<Range<u64>, String> {
    let bad = || format!("{text:?}: expected A..B (B excluded) or A..=B, e.g. 1..101");
    let (a, b) = text.split_once("..").ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = match b.strip_prefix('=') {
        Some(b) => b.trim().parse::<u64>().map_err(|_| bad())?.checked_add(1).ok_or_else(bad)?,
        None => b.trim().parse().map_err(|_| bad())?,
    };
    if end <= start {
        return Err(format!("{text:?}: the range holds no seed"));
    }
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_in_violations() {
        assert_eq!(invariant_id("S-VISIBLE: read 0/10 at 0/20: gone"), "S-VISIBLE");
        assert_eq!(invariant_id("chaos client: L-ATTACH: not answered"), "L-ATTACH");
        assert_eq!(invariant_id("SEED-BOUND: the workload did not finish"), "SEED-BOUND");
        assert_eq!(invariant_id("FSYNC-TRUST: read back"), "FSYNC-TRUST");
        assert_eq!(invariant_id("panic: node failed: key FFFFFFFFFFFFFFFF"), "panic");
        assert_eq!(invariant_id("panic: S-PROJECTED broken (x-y)"), "S-PROJECTED");
        assert_eq!(invariant_id("client task failed: cancelled"), "unnamed");
    }

    #[test]
    fn seed_ranges_parse_both_ways() {
        assert_eq!(parse_seed_range("1..101"), Ok(1..101));
        assert_eq!(parse_seed_range("1..=100"), Ok(1..101));
        assert!(parse_seed_range("5..5").is_err());
        assert!(parse_seed_range("5").is_err());
        assert!(parse_seed_range("a..b").is_err());
    }
}
