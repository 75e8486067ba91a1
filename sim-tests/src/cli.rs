//! `strata-sim`, one command for the simulator (issue 18 item 6): replay one seed
//! with its trace, or run a swarm with a progress bar and a summary table.
//!
//! ```sh
//! export RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim
//! cargo run -p strata-sim-tests --bin strata-sim -- --seed 42             # replay, whole trace
//! cargo run -p strata-sim-tests --bin strata-sim -- --seeds 1..101        # a swarm of seeds 1-100
//! cargo run -p strata-sim-tests --bin strata-sim -- --seeds 1..=200 --cluster
//! cargo run -p strata-sim-tests --bin strata-sim -- --seeds-from-commit 500
//! cargo run -p strata-sim-tests --bin strata-sim -- --seed 7 --write-schedule s7.schedule
//! cargo run -p strata-sim-tests --bin strata-sim -- --seed 7 --schedule s7.schedule
//! cargo run -p strata-sim-tests --bin strata-sim -- --shrink 1 --break lose-first-index
//! ```
//!
//! The exit status is non-zero when any seed fails; each failure prints its
//! one-line replay command as it is found.

use crate::commit_seed;
use crate::run::{
    Scenario, SeedRun, failure_text, failure_text_writing_picture, invariant_id, parse_seed_range,
    replay_with_picture, show_run,
};
use crate::shrink::{self, Budget, ScheduleFile, Shrunk};
use clap::{ArgGroup, Parser};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use strata_runtime_sim::settings::NodeSettings;

/// Exit status of a swarm or replay with a failing seed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status of a command that could not start (bad arguments, no commit id).
pub const EXIT_USAGE: u8 = 2;

/// strata's deterministic simulator: replay one seed with its trace, or run a
/// swarm of seeds with a summary. Build with RUSTFLAGS="--cfg madsim".
#[derive(Parser, Debug, Clone)]
#[command(name = "strata-sim", version)]
// One mode per run.
#[command(group(ArgGroup::new("mode").required(true).args(["seed", "seeds", "seeds_from_commit", "shrink"])))]
pub struct Cli {
    /// Replay one seed: print its whole trace (every node's trace lines), then
    /// its report; non-zero exit status if it fails.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Run a swarm over seeds A..B (B excluded) or A..=B, with a progress bar on
    /// a terminal and a summary table at the end.
    #[arg(long, value_name = "A..B", value_parser = parse_seed_range)]
    pub seeds: Option<Range<u64>>,
    /// Run a swarm of N seeds from a start seed derived from the commit
    /// (STRATA_COMMIT, else `git rev-parse HEAD`), printed first: each commit
    /// covers new seeds and a rerun of the same commit runs the same ones.
    #[arg(long, value_name = "N")]
    pub seeds_from_commit: Option<u64>,
    /// The cluster scenario (a control plane and three pageservers) instead of
    /// the single-node one.
    #[arg(long)]
    pub cluster: bool,
    /// Run every seed with the standard node settings (as the corpus does)
    /// instead of the settings each seed draws.
    #[arg(long)]
    pub standard_settings: bool,
    /// Stop a swarm at its first failing seed.
    #[arg(long)]
    pub fail_fast: bool,
    /// With --seed: also write the run's picture to FILE, a self-contained HTML
    /// page (a lane per machine, time down the page, faults and the violation
    /// marked, each trace line on hover). With --shrink: the picture of the
    /// shrunk schedule's run. A swarm writes one per failing seed into
    /// target/strata-sim/ without being asked.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["seeds", "seeds_from_commit"])]
    pub html: Option<PathBuf>,
    /// With --seed: follow the schedule in FILE (written by --write-schedule or
    /// --shrink): a fault decision, kill or workload step it does not name does
    /// not happen. The file's header must match the scenario, settings and break.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["seeds", "seeds_from_commit", "shrink"])]
    pub schedule: Option<PathBuf>,
    /// With --seed: write the run's schedule (the fault decisions that fired, the
    /// kills, the workload steps) to FILE. With --shrink: where the shrunk schedule
    /// goes (default target/strata-sim/{scenario}-seed-S[-{break}].schedule).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["seeds", "seeds_from_commit"])]
    pub write_schedule: Option<PathBuf>,
    /// Shrink failing seed S: drop faults, kills and workload steps from its
    /// schedule while the same invariant id still breaks, print the sizes before
    /// and after, write the smaller schedule and the command that replays it.
    #[arg(long, value_name = "S")]
    pub shrink: Option<u64>,
    /// With --shrink: at most N runs.
    #[arg(long, value_name = "N", default_value_t = Budget::default().runs)]
    pub shrink_runs: usize,
    /// With --shrink: at most SECS of wall time (the run under way finishes).
    #[arg(long, value_name = "SECS", default_value_t = Budget::default().wall.as_secs())]
    pub shrink_secs: u64,
    /// A deliberate break of the simulator, a test-only hook that makes a checker
    /// fail (docs/TESTING.md): lose-first-index, relabel-layer-generations (single
    /// node); grant-below, skip-validation, stale-ignored, multi-uploads-nothing,
    /// drops-a-record (--cluster).
    #[arg(long = "break", value_name = "NAME")]
    pub brk: Option<String>,
    /// Force fault site SITE on with probability P (0..=1) over each seed's own
    /// plan, e.g. `--force disk.complete.late=0.3`; repeatable. A targeted run,
    /// as the tests that measure one site; the replay command repeats it.
    #[arg(long = "force", value_name = "SITE=P", value_parser = crate::run::parse_forced)]
    pub force: Vec<(&'static str, f64)>,
}

/// Where a swarm writes the picture of each failing seed.
pub const PICTURE_DIR: &str = "target/strata-sim";

/// A swarm to run.
#[derive(Clone, Debug)]
pub struct Swarm {
    pub scenario: Scenario,
    pub seeds: Range<u64>,
    pub fail_fast: bool,
    /// The directory for each failing seed's picture (`{scenario}-seed-N.html`);
    /// `None` writes none.
    pub pictures: Option<PathBuf>,
}

impl Cli {
    /// The scenario asked for (`Err` for an unknown `--break`).
    pub fn scenario(&self) -> Result<Scenario, String> {
        let settings =
            if self.standard_settings { NodeSettings::Standard } else { NodeSettings::FromSeed };
        let scenario = Scenario::new(self.cluster, settings).with_forced(self.force.clone());
        match &self.brk {
            Some(name) => scenario.with_break(name),
            None => Ok(scenario),
        }
    }

    /// The swarm this command line asks for (`None` for a replay). A start seed
    /// derived from the commit is printed to `out`.
    pub fn swarm(&self, out: &mut dyn Write) -> Result<Option<Swarm>, String> {
        let seeds = match (&self.seeds, self.seeds_from_commit) {
            (Some(seeds), _) => seeds.clone(),
            (None, Some(count)) => {
                let commit = commit_seed::current_commit()?;
                let start = commit_seed::start_seed(&commit);
                let end = start.checked_add(count).ok_or("too many seeds")?;
                writeln!(
                    out,
                    "commit {commit}: start seed {start}; the same seeds: --seeds {start}..{end}"
                )
                .map_err(|e| e.to_string())?;
                start..end
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(Swarm {
            scenario: self.scenario()?,
            seeds,
            fail_fast: self.fail_fast,
            pictures: Some(PathBuf::from(PICTURE_DIR)),
        }))
    }
}

/// `strata-sim`'s main: returns the process's exit status.
pub fn main(cli: Cli) -> u8 {
    let stdout = &mut std::io::stdout();
    let scenario = match cli.scenario() {
        Ok(scenario) => scenario,
        Err(e) => {
            eprintln!("strata-sim: {e}");
            return EXIT_USAGE;
        }
    };
    if let Some(seed) = cli.shrink {
        return shrink_main(&cli, &scenario, seed, &mut stdout.lock());
    }
    if let Some(seed) = cli.seed {
        return match scheduled_replay(&cli, &scenario, seed, &mut stdout.lock()) {
            Ok(true) => 0,
            Ok(false) => EXIT_FAILED,
            Err(e) => {
                eprintln!("strata-sim: {e}");
                EXIT_USAGE
            }
        };
    }
    let swarm = match cli.swarm(stdout) {
        Ok(Some(swarm)) => swarm,
        Ok(None) => return EXIT_USAGE,
        Err(e) => {
            eprintln!("strata-sim: {e}");
            return EXIT_USAGE;
        }
    };
    let summary = run_swarm(&swarm, progress_bar(swarm.seeds.end - swarm.seeds.start), stdout);
    // A reader that stopped early (`| head`) does not change the status.
    let _ = write!(stdout, "{}", summary.table());
    summary.exit_status()
}

/// `--seed S`, perhaps following `--schedule FILE` or writing `--write-schedule
/// FILE`: the replay's output, then what became of the schedule. `Ok(passed)`.
fn scheduled_replay(
    cli: &Cli,
    scenario: &Scenario,
    seed: u64,
    out: &mut dyn Write,
) -> Result<bool, String> {
    let html = cli.html.as_deref();
    let (run, events, followed) = match (&cli.schedule, &cli.write_schedule) {
        (None, None) => return Ok(replay_with_picture(scenario, seed, out, html)),
        (Some(path), _) => {
            let file = ScheduleFile::read(path)?;
            file.matches(scenario, seed)?;
            let (run, reached) = shrink::follow(scenario, seed, &file.events);
            (run, reached, Some((path, file.events.len())))
        }
        (None, Some(_)) => {
            let (run, events) = shrink::record(scenario, seed);
            (run, events, None)
        }
    };
    let passed = show_run(scenario, &run, out, html);
    let file = ScheduleFile::new(scenario, seed, events);
    if let Some((path, listed)) = followed {
        let _ = writeln!(
            out,
            "schedule: followed {} ({} of its {listed} events reached: {})",
            path.display(),
            file.events.len(),
            shrink::sizes(&file.events)
        );
    }
    if let Some(path) = &cli.write_schedule {
        file.write(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let _ = writeln!(
            out,
            "schedule: {} events ({}) written to {}\nreplay it: {}",
            file.events.len(),
            shrink::sizes(&file.events),
            path.display(),
            file.replay_command_for(&path.display().to_string())
        );
    }
    Ok(passed)
}

/// Where `--shrink S` writes the shrunk schedule unless told:
/// `target/strata-sim/{scenario}-seed-S[-{break}].schedule`.
pub fn default_schedule_path(scenario: &Scenario, seed: u64) -> PathBuf {
    let brk = scenario.break_name().map(|b| format!("-{b}")).unwrap_or_default();
    PathBuf::from(PICTURE_DIR).join(format!("{}-seed-{seed}{brk}.schedule", scenario.name()))
}

/// `--shrink S`: progress on stderr, the outcome on `out`. 0 when the shrunk
/// schedule was written and still fails with the seed's invariant id; 1 when it
/// does not; 2 when the seed passes (nothing to shrink) or the file cannot be written.
fn shrink_main(cli: &Cli, scenario: &Scenario, seed: u64, out: &mut dyn Write) -> u8 {
    let budget = Budget { runs: cli.shrink_runs, wall: Duration::from_secs(cli.shrink_secs) };
    let shrunk = match shrink::shrink(scenario, seed, budget, &mut std::io::stderr()) {
        Ok(shrunk) => shrunk,
        Err(e) => {
            let _ = writeln!(out, "strata-sim: {e}");
            return if e.contains("nothing to shrink") { EXIT_USAGE } else { EXIT_FAILED };
        }
    };
    let path = cli.write_schedule.clone().unwrap_or_else(|| default_schedule_path(scenario, seed));
    let file = ScheduleFile::new(scenario, seed, shrunk.after.clone());
    if let Err(e) = file.write(&path) {
        let _ = writeln!(out, "strata-sim: {}: {e}", path.display());
        return EXIT_USAGE;
    }
    let _ = write!(out, "{}", shrink_report(scenario, &shrunk, &file, &path));
    if let Some(html) = &cli.html {
        let _ = match crate::run::write_picture(scenario, &shrunk.last, html) {
            Ok(bytes) => writeln!(out, "picture: {} ({bytes} bytes)", html.display()),
            Err(e) => writeln!(out, "picture: {} not written: {e}", html.display()),
        };
    }
    0
}

/// What `--shrink` prints once done.
pub fn shrink_report(
    scenario: &Scenario,
    shrunk: &Shrunk,
    file: &ScheduleFile,
    path: &std::path::Path,
) -> String {
    let mut t = String::new();
    let brk = scenario.break_name().map(|b| format!(", break {b}")).unwrap_or_default();
    let _ = writeln!(
        t,
        "strata-sim: shrink of {} seed {}{brk}: {}",
        scenario.name(),
        shrunk.seed,
        shrunk.id
    );
    let rows = [
        (
            "schedule before",
            format!("{:>5} events ({})", shrunk.before.len(), shrink::sizes(&shrunk.before)),
        ),
        (
            "schedule after",
            format!("{:>5} events ({})", shrunk.after.len(), shrink::sizes(&shrunk.after)),
        ),
        (
            "runs",
            format!(
                "{:>5}{}",
                shrunk.runs,
                if shrunk.budget_spent { " (budget spent)" } else { "" }
            ),
        ),
        ("wall s", format!("{:>7.1}", shrunk.wall.as_secs_f64())),
    ];
    for (name, value) in rows {
        let _ = writeln!(t, "  {name:<17}{value}");
    }
    let _ = writeln!(
        t,
        "the shrunk schedule, re-run, fails {} again: {}",
        shrunk.id,
        shrunk.last.violation().unwrap_or("?")
    );
    let _ = writeln!(t, "schedule: {}", path.display());
    let _ = writeln!(t, "replay: {}", file.replay_command_for(&path.display().to_string()));
    t
}

/// A bar on stderr, drawn only when stderr is a terminal (hidden in CI).
pub fn progress_bar(seeds: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(seeds), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:32}] {pos}/{len} seeds, {per_sec}, eta {eta} {msg}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// One failed seed of a swarm.
#[derive(Clone, Debug)]
pub struct Failure {
    pub seed: u64,
    /// The invariant id of its first violation ([`invariant_id`]).
    pub id: String,
    pub violation: String,
}

/// What a swarm saw, summed over its seeds.
#[derive(Debug)]
pub struct Summary {
    pub scenario: Scenario,
    pub seeds: Range<u64>,
    pub seeds_run: u64,
    pub failures: Vec<Failure>,
    /// Every fault site of the scenario with how often it fired, zeros included.
    pub fired: BTreeMap<String, u64>,
    pub simulated_ms: u64,
    pub machine_inputs: u64,
    pub wall: Duration,
}

/// Runs the swarm's seeds in order. Each failure is written to `out` as it is
/// found (its violation, settings, replay command and trace tail); the bar
/// advances per seed.
pub fn run_swarm(swarm: &Swarm, bar: ProgressBar, out: &mut dyn Write) -> Summary {
    let wall = Instant::now();
    let mut summary = Summary {
        scenario: swarm.scenario.clone(),
        seeds: swarm.seeds.clone(),
        seeds_run: 0,
        failures: Vec::new(),
        fired: BTreeMap::new(),
        simulated_ms: 0,
        machine_inputs: 0,
        wall: Duration::ZERO,
    };
    for seed in swarm.seeds.clone() {
        let run = swarm.scenario.run_swarm_seed(seed);
        summary.add(&run);
        if let Some(violation) = run.violation() {
            summary.failures.push(Failure {
                seed,
                id: invariant_id(violation),
                violation: violation.to_string(),
            });
            let text = match &swarm.pictures {
                Some(dir) => failure_text_writing_picture(&swarm.scenario, &run, dir),
                None => failure_text(&swarm.scenario, &run),
            };
            bar.suspend(|| {
                let _ = writeln!(out, "{text}\n");
            });
            bar.set_message(format!("{} failed", summary.failures.len()));
        }
        bar.inc(1);
        if swarm.fail_fast && !summary.failures.is_empty() {
            break;
        }
    }
    bar.finish_and_clear();
    summary.wall = wall.elapsed();
    summary
}

impl Summary {
    fn add(&mut self, run: &SeedRun) {
        self.seeds_run += 1;
        self.simulated_ms += run.simulated_ms;
        self.machine_inputs += run.machine_inputs;
        for (site, n) in &run.fired {
            *self.fired.entry(site.clone()).or_default() += n;
        }
    }

    /// 0 when every seed passed, else [`EXIT_FAILED`].
    pub fn exit_status(&self) -> u8 {
        if self.failures.is_empty() { 0 } else { EXIT_FAILED }
    }

    /// Failed seeds by invariant id, ids in order.
    pub fn by_invariant(&self) -> BTreeMap<&str, Vec<u64>> {
        let mut by: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for f in &self.failures {
            by.entry(f.id.as_str()).or_default().push(f.seed);
        }
        by
    }

    /// The summary table printed at the end of a swarm.
    pub fn table(&self) -> String {
        let secs = self.wall.as_secs_f64().max(1e-9);
        let simulated = self.simulated_ms as f64 / 1000.0;
        let settings = match self.scenario.settings() {
            NodeSettings::FromSeed => "settings drawn per seed",
            NodeSettings::Standard => "standard settings",
        };
        let mut t = String::new();
        let (start, end) = (self.seeds.start, self.seeds.end);
        let _ = writeln!(
            t,
            "strata-sim: {} scenario, seeds {start}..{end}, {settings}",
            self.scenario.name()
        );
        let rows = [
            ("seeds run", thousands(self.seeds_run)),
            ("passed", thousands(self.seeds_run - self.failures.len() as u64)),
            ("failed", thousands(self.failures.len() as u64)),
            ("wall s", format!("{secs:.1}")),
            ("seeds per minute", format!("{:.1}", self.seeds_run as f64 / secs * 60.0)),
            ("simulated s", format!("{simulated:.1}")),
            ("simulated s per wall s", format!("{:.1}", simulated / secs)),
            ("machine inputs", thousands(self.machine_inputs)),
            ("machine inputs per wall s", thousands((self.machine_inputs as f64 / secs) as u64)),
        ];
        for (name, value) in rows {
            let _ = writeln!(t, "  {name:<27}{value:>12}");
        }
        if self.failures.is_empty() {
            let _ = writeln!(t, "failures by invariant: none");
        } else {
            let _ = writeln!(t, "failures by invariant:");
            for (id, seeds) in self.by_invariant() {
                let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
                let _ = writeln!(t, "  {id:<27}{:>12}  seeds {}", seeds.len(), list.join(", "));
            }
        }
        let fired: Vec<_> = self.fired.iter().filter(|(_, n)| **n > 0).collect();
        let silent: Vec<&str> =
            self.fired.iter().filter(|(_, n)| **n == 0).map(|(s, _)| s.as_str()).collect();
        let _ = writeln!(t, "fault sites fired ({} of {}):", fired.len(), self.fired.len());
        for (site, n) in fired {
            let _ = writeln!(t, "  {site:<27}{:>12}", thousands(*n));
        }
        let _ = writeln!(t, "fault sites never fired ({}):", silent.len());
        for line in wrap(&silent, 76) {
            let _ = writeln!(t, "  {line}");
        }
        if !self.failures.is_empty() {
            let _ = writeln!(t, "replay (the first seed of each invariant):");
            for seeds in self.by_invariant().values() {
                let _ = writeln!(t, "  {}", self.scenario.replay_command(seeds[0]));
            }
        }
        t
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Names joined by ", " in lines of at most `width` characters (a longer name
/// gets a line of its own).
fn wrap(names: &[&str], width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for name in names {
        if !line.is_empty() && line.len() + 2 + name.len() > width {
            lines.push(std::mem::take(&mut line) + ",");
        }
        if !line.is_empty() {
            line.push_str(", ");
        }
        line.push_str(name);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn names_wrap() {
        assert_eq!(wrap(&["a", "b", "c"], 3), vec!["a,", "b,", "c"]);
        assert_eq!(wrap(&["a", "b", "c"], 4), vec!["a, b,", "c"]);
        assert_eq!(wrap(&["a", "b"], 80), vec!["a, b"]);
        assert!(wrap(&[], 80).is_empty());
    }

    #[test]
    fn the_command_line_picks_one_mode() {
        let parse = |args: &[&str]| Cli::try_parse_from(["strata-sim"].iter().chain(args));
        assert!(parse(&[]).is_err());
        assert!(parse(&["--seed", "1", "--seeds", "1..3"]).is_err());
        let cli = parse(&["--seeds", "1..=2", "--cluster", "--standard-settings"]).unwrap();
        let swarm = cli.swarm(&mut Vec::new()).unwrap().unwrap();
        assert_eq!(swarm.seeds, 1..3);
        assert!(swarm.scenario.is_cluster());
        assert_eq!(swarm.scenario.settings(), NodeSettings::Standard);
        assert!(parse(&["--seed", "7"]).unwrap().swarm(&mut Vec::new()).unwrap().is_none());
    }
}
