//! `strata-sim` (issue 18 item 6): the binary on a couple of seeds, a replay, a
//! start seed from the commit, and a deliberately failing seed through the
//! library entry point the binary calls.
#![cfg(madsim)]

use std::process::Command;
use strata_runtime_sim::cluster::{ClusterConfig, CpBreak};
use strata_runtime_sim::settings::NodeSettings;
use strata_sim_tests::cli::{self, Cli, EXIT_FAILED, Swarm};
use strata_sim_tests::run::Scenario;

fn strata_sim(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_strata-sim"))
        .args(args)
        .env("STRATA_COMMIT", "0123456789abcdef0123456789abcdef01234567")
        .output()
        .expect("run strata-sim");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stdout, stderr)
}

/// The value of a summary row (`  name    value`).
fn row<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(name).filter(|v| v.starts_with(' ')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{table}"))
}

#[test]
fn a_short_swarm_prints_its_summary_and_exits_zero() {
    let (code, out, err) = strata_sim(&["--seeds", "1..=2", "--standard-settings"]);
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("single-node scenario, seeds 1..3, standard settings"), "{out}");
    assert_eq!(row(&out, "seeds run"), "2");
    assert_eq!(row(&out, "passed"), "2");
    assert_eq!(row(&out, "failed"), "0");
    assert!(out.contains("failures by invariant: none"), "{out}");
    for name in ["simulated s per wall s", "machine inputs per wall s"] {
        let value: f64 = row(&out, name).replace(',', "").parse().expect(name);
        assert!(value > 0.0, "{name}: {value}\n{out}");
    }
    assert!(out.contains("fault sites fired ("), "{out}");
    assert!(out.contains("fault sites never fired ("), "{out}");
    // No terminal here: the bar is hidden, stderr stays free of it.
    assert!(!err.contains("seeds, "), "a progress bar on a non-terminal:\n{err}");
}

#[test]
fn a_replay_prints_the_trace_and_the_report() {
    let (code, out, err) = strata_sim(&["--seed", "3", "--standard-settings"]);
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.lines().count() > 100, "a short trace:\n{out}");
    assert!(out.contains("RunReport {") && out.contains("seed: 3,"), "{out}");
    assert!(out.contains("single-node seed 3 passed"), "{out}");
}

#[test]
fn the_start_seed_comes_from_the_commit() {
    let (code, out, err) = strata_sim(&["--seeds-from-commit", "0"]);
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let start =
        strata_sim_tests::commit_seed::start_seed("0123456789abcdef0123456789abcdef01234567");
    let line = format!(
        "commit 0123456789abcdef0123456789abcdef01234567: start seed {start}; the same seeds: --seeds {start}..{start}"
    );
    assert!(out.contains(&line), "expected {line:?} in:\n{out}");
    assert_eq!(row(&out, "seeds run"), "0");
}

#[test]
fn bad_arguments_are_refused() {
    let (code, _, err) = strata_sim(&["--seeds", "5..5"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = strata_sim(&["--seed", "1", "--seeds", "1..3"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = strata_sim(&["--seeds", "1..3", "--schedule", "x.schedule"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = strata_sim(&["--seed", "1", "--break", "drops-a-record"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no break \"drops-a-record\" for the single-node scenario"), "{err}");
}

/// `--write-schedule`, `--schedule` and `--shrink` through the binary, on the
/// deliberate break that fails seed 1 at its first timeline create.
#[test]
fn a_schedule_is_written_replayed_and_shrunk() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("strata-sim-schedules");
    let _ = std::fs::remove_dir_all(&dir);
    let recorded = dir.join("recorded.schedule");
    let shrunk = dir.join("shrunk.schedule");
    let (recorded, shrunk) = (recorded.to_str().unwrap(), shrunk.to_str().unwrap());
    let brk = ["--seed", "1", "--standard-settings", "--break", "lose-first-index"];
    let with = |more: &[&str]| strata_sim(&[&brk[..], more].concat());
    let failure = "single-node seed 1 failed: S-ACTIVE-UPLOADED: ";

    let (code, out, err) = with(&["--write-schedule", recorded]);
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(failure), "{out}");
    let written = format!("written to {recorded}\nreplay it: ");
    assert!(out.contains(&written) && out.contains(&format!("--schedule {recorded}")), "{out}");
    let text = std::fs::read_to_string(recorded).unwrap();
    assert!(
        text.contains("\nbreak lose-first-index\n") && text.contains("\nkill node-1 0\n"),
        "{text}"
    );

    let (code, replayed, err) = with(&["--schedule", recorded]);
    assert_eq!(code, Some(1), "stdout:\n{replayed}\nstderr:\n{err}");
    let line = |t: &str| t.lines().find(|l| l.starts_with(failure)).map(str::to_string);
    assert_eq!(line(&replayed), line(&out));
    assert!(replayed.contains(&format!("schedule: followed {recorded} (")), "{replayed}");
    // A schedule is replayed only with what it was recorded with.
    let (code, _, err) =
        strata_sim(&["--seed", "2", "--standard-settings", "--schedule", recorded]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "the schedule is for single-node seed 1, standard settings, break lose-first-index"
        ),
        "{err}"
    );

    let picture = dir.join("shrunk.html");
    let (code, out, err) = strata_sim(&[
        "--shrink",
        "1",
        "--standard-settings",
        "--break",
        "lose-first-index",
        "--write-schedule",
        shrunk,
        "--html",
        picture.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("shrink: single-node seed 1 fails S-ACTIVE-UPLOADED")
            && err.contains("  run   2 ("),
        "{err}"
    );
    assert!(
        out.contains("shrink of single-node seed 1, break lose-first-index: S-ACTIVE-UPLOADED"),
        "{out}"
    );
    assert!(out.contains("  schedule before ") && out.contains("  schedule after "), "{out}");
    assert!(out.contains("the shrunk schedule, re-run, fails S-ACTIVE-UPLOADED again"), "{out}");
    let command =
        format!("--seed 1 --standard-settings --break lose-first-index --schedule {shrunk}\n");
    assert!(out.contains("\nreplay: ") && out.contains(&command), "{out}");
    assert!(out.contains(&format!("picture: {} (", picture.display())), "{out}");
    let html = std::fs::read_to_string(&picture).expect("the shrunk run's picture");
    assert!(html.contains("S-ACTIVE-UPLOADED"), "no violation in the picture");
    let (code, replayed, _) = with(&["--schedule", shrunk]);
    assert_eq!(code, Some(1));
    assert!(replayed.contains(failure), "{replayed}");

    // A passing seed has nothing to shrink.
    let (code, out, _) =
        strata_sim(&["--shrink", "3", "--standard-settings", "--shrink-runs", "5"]);
    assert_eq!(code, Some(2));
    assert!(out.contains("single-node seed 3 passed: nothing to shrink"), "{out}");
}

/// A deliberately broken link that answers validations itself, so nodes delete
/// unvalidated (a test-only hook of the cluster scenario, as
/// `cluster_breaks_are_caught` uses; the binary's `--break skip-validation`): the seed
/// fails, the exit status is non-zero, the failure and the summary name the
/// invariant id and the replay command.
#[test]
fn a_failing_seed_makes_the_exit_status_non_zero_and_names_the_invariant() {
    let cli = <Cli as clap::Parser>::try_parse_from([
        "strata-sim",
        "--seeds",
        "2..3",
        "--cluster",
        "--standard-settings",
    ])
    .unwrap();
    let Swarm { scenario, seeds, fail_fast, pictures } =
        cli.swarm(&mut Vec::new()).unwrap().unwrap();
    assert_eq!(pictures.as_deref(), Some(std::path::Path::new(cli::PICTURE_DIR)));
    let Scenario::Cluster(config) = scenario else { panic!("not the cluster scenario") };
    assert_eq!(config.settings, NodeSettings::Standard);
    let broken = ClusterConfig { cp_break: CpBreak::SkipValidation, ..config };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("strata-sim-pictures");
    let _ = std::fs::remove_dir_all(&dir);
    let pictures = Some(dir.clone());
    let swarm = Swarm { scenario: Scenario::Cluster(broken), seeds, fail_fast, pictures };
    let mut out = Vec::new();
    let summary = cli::run_swarm(&swarm, indicatif::ProgressBar::hidden(), &mut out);
    let out = String::from_utf8(out).unwrap();
    let table = summary.table();
    assert_eq!(summary.exit_status(), EXIT_FAILED, "{out}\n{table}");
    assert_eq!(summary.seeds_run, 1);
    assert_eq!(summary.failures.len(), 1);
    assert_eq!(summary.failures[0].id, "S-DEL-GEN", "{:?}", summary.failures);
    let replay =
        "cargo run -p strata-sim-tests --bin strata-sim -- --seed 2 --cluster --standard-settings";
    assert!(out.contains("cluster seed 2 failed: S-DEL-GEN") && out.contains(replay), "{out}");
    assert_eq!(row(&table, "failed"), "1");
    let by_invariant = table.lines().find(|l| l.trim_start().starts_with("S-DEL-GEN"));
    assert_eq!(
        by_invariant.map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["S-DEL-GEN", "1", "seeds", "2"])
    );
    assert!(table.contains(replay), "{table}");

    // The failing seed's picture, named beside the replay command.
    let path = dir.join("cluster-seed-2.html");
    let replay = format!("{replay} --break skip-validation");
    assert!(out.contains(&format!("{replay}\npicture: {}\n", path.display())), "{out}");
    let html = std::fs::read_to_string(&path).expect("the picture");
    let violation = summary.failures[0].violation.replace('&', "&amp;").replace('<', "&lt;");
    let violation = violation.replace('>', "&gt;").replace('"', "&quot;");
    assert!(html.contains(&format!("<td class=v>{violation}</td>")), "no violation in the header");
    assert!(html.contains("<i class=v title="), "no violation mark");
    for lane in ["node-1", "node-2", "node-3", "control-plane", "client", "object-store"] {
        assert!(html.contains(&format!("<span>{lane}</span>")), "no lane {lane}");
    }
    let faults = html.matches("<i class=f title=").count();
    assert!(faults > 0, "no fault mark");
    assert!(html.contains(" fault - effect ") && html.contains(" request rq1 effect to node-1: "));
    assert!(html.contains("<td>RUSTFLAGS=&quot;--cfg madsim&quot; CARGO_TARGET_DIR=target/sim"));
}

#[test]
fn a_replay_writes_its_picture() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("strata-sim-seed-3.html");
    let _ = std::fs::remove_file(&path);
    let path_text = path.to_str().expect("a UTF-8 path");
    let (code, out, err) = strata_sim(&["--seed", "3", "--standard-settings", "--html", path_text]);
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(&format!("picture: {path_text} (")), "{out}");
    let html = std::fs::read_to_string(&path).expect("the picture");
    assert!(html.contains("strata-sim: single-node seed 3 passed"));
    for lane in ["nemesis", "node-1", "client", "object-store"] {
        assert!(html.contains(&format!("<span>{lane}</span>")), "no lane {lane}");
    }
    assert!(!html.contains("<i class=v "), "a violation mark on a passing seed");
    // --html only goes with --seed.
    let (code, _, err) = strata_sim(&["--seeds", "1..2", "--html", path_text]);
    assert_eq!(code, Some(2), "{err}");
}
