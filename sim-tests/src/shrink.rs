//! Schedules as files, and shrinking a failing seed's schedule (issue 18 item 5;
//! `strata-sim --seed S --write-schedule FILE`, `--seed S --schedule FILE`,
//! `--shrink S`).
//!
//! A schedule file is text: `#` comments, four header lines naming what it runs
//! (`seed`, `scenario`, `settings`, and `break` for a deliberate break), then one
//! event a line, `kind name ordinal` (`strata_runtime_sim::schedule`), in the order
//! they happened:
//!
//! ```text
//! # strata-sim schedule: single-node seed 7, 4 events
//! seed 7
//! scenario single-node
//! settings drawn
//! fault disk.slow_io 3
//! kill node-1 0
//! step client.batch 12
//! step chaos.attach 0
//! ```
//!
//! Shrinking runs the seed recording its schedule; if it fails, it drops events
//! while the same invariant id still breaks: first every event of one kind and
//! name at once (all the chaos client's reads, say), then contiguous chunks of
//! halving size down to one event at a time, until no single event can go or the
//! budget (runs, wall time) is spent. After each run that still fails, the
//! schedule becomes the events that run reached, which replays the same way.

use crate::run::{Scenario, SeedRun, invariant_id};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use strata_runtime_sim::schedule::{Event, Kind, Recorder};
use strata_runtime_sim::settings::NodeSettings;

/// A schedule with the header that says what it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleFile {
    pub seed: u64,
    pub cluster: bool,
    pub settings: NodeSettings,
    /// The deliberate break's name (`crate::run::BREAKS`), if any.
    pub brk: Option<String>,
    pub events: Vec<Event>,
}

impl ScheduleFile {
    pub fn new(scenario: &Scenario, seed: u64, events: Vec<Event>) -> ScheduleFile {
        ScheduleFile {
            seed,
            cluster: scenario.is_cluster(),
            settings: scenario.settings(),
            brk: scenario.break_name().map(str::to_string),
            events,
        }
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let scenario = if self.cluster { "cluster" } else { "single-node" };
        let settings = match self.settings {
            NodeSettings::Standard => "standard",
            NodeSettings::FromSeed => "drawn",
        };
        let mut text = format!(
            "# strata-sim schedule: {scenario} seed {}, {} events ({})\nseed {}\nscenario {scenario}\nsettings {settings}\n",
            self.seed,
            self.events.len(),
            sizes(&self.events),
            self.seed
        );
        if let Some(brk) = &self.brk {
            text.push_str(&format!("break {brk}\n"));
        }
        for event in &self.events {
            text.push_str(&format!("{event}\n"));
        }
        text
    }

    pub fn parse(text: &str) -> Result<ScheduleFile, String> {
        let (mut seed, mut scenario, mut settings, mut brk) = (None, None, None, None);
        let mut events = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |e: String| format!("line {}: {e}", n + 1);
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "seed" => seed = Some(value.trim().parse::<u64>().map_err(|e| at(e.to_string()))?),
                "scenario" => scenario = Some(value.trim().to_string()),
                "settings" => settings = Some(value.trim().to_string()),
                "break" => brk = Some(value.trim().to_string()),
                _ => events.push(line.parse::<Event>().map_err(at)?),
            }
        }
        let cluster = match scenario.as_deref() {
            Some("cluster") => true,
            Some("single-node") => false,
            other => return Err(format!("scenario {other:?}: expected single-node or cluster")),
        };
        let settings = match settings.as_deref() {
            Some("standard") => NodeSettings::Standard,
            Some("drawn") => NodeSettings::FromSeed,
            other => return Err(format!("settings {other:?}: expected standard or drawn")),
        };
        let seed = seed.ok_or("no `seed N` line")?;
        Ok(ScheduleFile { seed, cluster, settings, brk, events })
    }

    pub fn read(path: &Path) -> Result<ScheduleFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        ScheduleFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes the file (creating its directory).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.to_text())
    }

    /// Whether `scenario` and `seed` are what this file runs; else what differs.
    pub fn matches(&self, scenario: &Scenario, seed: u64) -> Result<(), String> {
        let want = ScheduleFile::new(scenario, seed, Vec::new());
        let mine = ScheduleFile { events: Vec::new(), ..self.clone() };
        if mine == want {
            return Ok(());
        }
        Err(format!(
            "the schedule is for {}; the command line asks for {} (replay it with: {})",
            mine.describe(),
            want.describe(),
            self.replay_command_for("FILE")
        ))
    }

    fn describe(&self) -> String {
        let scenario = if self.cluster { "cluster" } else { "single-node" };
        let settings = match self.settings {
            NodeSettings::Standard => "standard settings",
            NodeSettings::FromSeed => "drawn settings",
        };
        let brk = self.brk.as_ref().map(|b| format!(", break {b}")).unwrap_or_default();
        format!("{scenario} seed {}, {settings}{brk}", self.seed)
    }

    /// The one command that replays this file, saved at `path`.
    pub fn replay_command_for(&self, path: &str) -> String {
        let mut command = crate::run::replay_command(self.seed, self.cluster, self.settings);
        if let Some(brk) = &self.brk {
            command.push_str(&format!(" --break {brk}"));
        }
        command.push_str(&format!(" --schedule {path}"));
        command
    }
}

/// `12 faults, 3 kills, 1 outage, 40 steps`: a schedule's size by kind.
pub fn sizes(events: &[Event]) -> String {
    let count = |k: Kind| events.iter().filter(|e| e.kind == k).count();
    format!(
        "{} faults, {} kills, {} outages, {} steps",
        count(Kind::Fault),
        count(Kind::Kill),
        count(Kind::Outage),
        count(Kind::Step)
    )
}

/// How long a shrink may go on.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub runs: usize,
    pub wall: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { runs: 300, wall: Duration::from_secs(600) }
    }
}

/// What a shrink found.
#[derive(Debug)]
pub struct Shrunk {
    pub seed: u64,
    /// The invariant id the seed breaks, before and after.
    pub id: String,
    /// The recorded schedule of the seed.
    pub before: Vec<Event>,
    /// The smallest schedule found that still breaks `id`.
    pub after: Vec<Event>,
    /// Runs made (the first recording and the final re-run included).
    pub runs: usize,
    pub wall: Duration,
    /// Whether the budget ran out before no single event could go.
    pub budget_spent: bool,
    /// The final re-run of `after`.
    pub last: SeedRun,
}

/// Runs `seed` following `events`: the run, and the events it reached.
pub fn follow(scenario: &Scenario, seed: u64, events: &[Event]) -> (SeedRun, Vec<Event>) {
    let recorder = Recorder::follow(events);
    let run = scenario.run_with(seed, Some(recorder.clone()));
    (run, recorder.events())
}

/// Runs `seed` recording its schedule.
pub fn record(scenario: &Scenario, seed: u64) -> (SeedRun, Vec<Event>) {
    let recorder = Recorder::record();
    let run = scenario.run_with(seed, Some(recorder.clone()));
    (run, recorder.events())
}

/// Shrinks the schedule of failing `seed` within `budget`, a line per run on
/// `progress`. `Err` when the seed passes (nothing to shrink) or when the shrunk
/// schedule, re-run at the end, no longer breaks the same id.
pub fn shrink(
    scenario: &Scenario,
    seed: u64,
    budget: Budget,
    progress: &mut dyn Write,
) -> Result<Shrunk, String> {
    let started = Instant::now();
    let (first, before) = record(scenario, seed);
    let Some(violation) = first.violation() else {
        return Err(format!("{} seed {seed} passed: nothing to shrink", scenario.name()));
    };
    let id = invariant_id(violation);
    let _ = writeln!(
        progress,
        "shrink: {} seed {seed} fails {id}; its schedule has {} events ({})",
        scenario.name(),
        before.len(),
        sizes(&before)
    );
    let mut runs = 1;
    let mut current = before.clone();
    let mut spent = false;
    // Candidates already run that did not break `id` (a pass at one event at a
    // time after a removal meets them again).
    let mut kept: HashSet<Vec<Event>> = HashSet::new();
    // Whether `candidate` still breaks `id`: then the events it reached.
    let mut attempt = |candidate: Vec<Event>, what: &str, runs: &mut usize| -> Option<Vec<Event>> {
        if kept.contains(&candidate) {
            return None;
        }
        *runs += 1;
        let (run, reached) = follow(scenario, seed, &candidate);
        let got = run.violation().map(invariant_id);
        let still = got.as_deref() == Some(id.as_str());
        let verdict = match &got {
            _ if still => format!("still {id}: {} events", reached.len()),
            Some(other) => format!("fails {other} instead: kept"),
            None => "passes: kept".to_string(),
        };
        let _ = writeln!(
            progress,
            "  run {:>3} ({:>5.1} s): without {what}: {verdict}",
            *runs,
            started.elapsed().as_secs_f64()
        );
        if !still {
            kept.insert(candidate);
        }
        still.then_some(reached)
    };
    let out_of_budget = |runs: usize| runs + 1 >= budget.runs || started.elapsed() >= budget.wall;
    // Every event of one kind and name at once.
    let mut groups: BTreeMap<(Kind, String), usize> = BTreeMap::new();
    for e in &current {
        *groups.entry((e.kind, e.name.clone())).or_default() += 1;
    }
    for ((kind, name), n) in groups {
        if out_of_budget(runs) {
            spent = true;
            break;
        }
        let candidate: Vec<Event> =
            current.iter().filter(|e| !(e.kind == kind && e.name == name)).cloned().collect();
        if candidate.len() == current.len() {
            continue; // already gone with an earlier group's removal
        }
        let what = format!("every {} {name} ({n})", kind.as_str());
        if let Some(reached) = attempt(candidate, &what, &mut runs) {
            current = reached;
        }
    }
    // Chunks of halving size, then one event at a time until none can go.
    let mut chunk = (current.len() / 2).max(1);
    while !spent {
        let mut removed = false;
        let mut i = 0;
        while i < current.len() {
            if out_of_budget(runs) {
                spent = true;
                break;
            }
            let end = (i + chunk).min(current.len());
            let mut candidate = current[..i].to_vec();
            candidate.extend_from_slice(&current[end..]);
            let what = if end - i == 1 {
                format!("{}", current[i])
            } else {
                format!("events {}..{} of {}", i + 1, end, current.len())
            };
            match attempt(candidate, &what, &mut runs) {
                Some(reached) => {
                    current = reached;
                    removed = true;
                }
                None => i += chunk,
            }
        }
        if chunk == 1 {
            if !removed {
                break;
            }
        } else {
            chunk = (chunk / 2).max(1);
        }
    }
    // The shrunk schedule must still break the same id.
    runs += 1;
    let (last, _) = follow(scenario, seed, &current);
    let got = last.violation().map(invariant_id);
    if got.as_deref() != Some(id.as_str()) {
        return Err(format!(
            "the shrunk schedule of {} seed {seed} ({} events) no longer fails {id}: {got:?}",
            scenario.name(),
            current.len()
        ));
    }
    Ok(Shrunk {
        seed,
        id,
        before,
        after: current,
        runs,
        wall: started.elapsed(),
        budget_spent: spent,
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_file_prints_and_parses_back() {
        let file = ScheduleFile {
            seed: 7,
            cluster: true,
            settings: NodeSettings::Standard,
            brk: Some("drops-a-record".into()),
            events: vec![
                "fault net.delay.cp 3".parse().unwrap(),
                "kill control-plane 0".parse().unwrap(),
                "step client.batch 12".parse().unwrap(),
            ],
        };
        let text = file.to_text();
        assert!(text.starts_with("# strata-sim schedule: cluster seed 7, 3 events"), "{text}");
        assert_eq!(ScheduleFile::parse(&text), Ok(file.clone()));
        assert!(file.replay_command_for("x.schedule").ends_with(
            "--seed 7 --cluster --standard-settings --break drops-a-record --schedule x.schedule"
        ));
        assert!(ScheduleFile::parse("scenario single-node\nsettings drawn\n").is_err());
        assert!(ScheduleFile::parse("seed 1\nscenario x\nsettings drawn\n").is_err());
        assert!(ScheduleFile::parse("seed 1\nscenario cluster\nsettings drawn\nbogus\n").is_err());
    }
}
