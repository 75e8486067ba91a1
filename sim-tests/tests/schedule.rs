//! Schedules (issue 18 item 5): a run records its schedule without changing, a
//! recorded schedule replayed unchanged runs the same way (same trace line for
//! line, same outcome), and a deliberate break's failing seed shrinks to a smaller
//! schedule that still breaks the same invariant.
#![cfg(madsim)]

use strata_runtime_sim::settings::NodeSettings;
use strata_sim_tests::run::{Scenario, divergence, invariant_id};
use strata_sim_tests::shrink::{self, Budget, ScheduleFile};

fn standard(cluster: bool) -> Scenario {
    Scenario::new(cluster, NodeSettings::Standard)
}

/// Recording changes nothing, and following the recording runs the same way.
fn replays_unchanged(scenario: &Scenario, seed: u64) -> Option<String> {
    let plain = scenario.run(seed);
    let (recorded, events) = shrink::record(scenario, seed);
    assert!(!events.is_empty(), "{} seed {seed}: an empty schedule", scenario.name());
    assert_eq!(divergence(&plain.trace, &recorded.trace), None, "recording changed the run");
    assert_eq!(plain.violations, recorded.violations);
    // Through the file's text, as `--schedule FILE` reads it.
    let text = ScheduleFile::new(scenario, seed, events.clone()).to_text();
    let file = ScheduleFile::parse(&text).expect("parses");
    file.matches(scenario, seed).expect("the header matches");
    let (followed, reached) = shrink::follow(scenario, seed, &file.events);
    assert_eq!(reached, events, "the replay reached other events");
    if let Some(i) = divergence(&recorded.trace, &followed.trace) {
        panic!(
            "{} seed {seed}: the replayed schedule diverged at trace line {i}:\n  recorded: {:?}\n  replayed: {:?}",
            scenario.name(),
            recorded.trace.get(i),
            followed.trace.get(i)
        );
    }
    assert_eq!(recorded.violations, followed.violations);
    assert_eq!(recorded.simulated_ms, followed.simulated_ms);
    followed.violation().map(str::to_string)
}

#[test]
fn a_recorded_schedule_replayed_unchanged_runs_the_same() {
    // A passing seed, with faults and kills.
    assert_eq!(replays_unchanged(&standard(false), 3), None);
    // Failing ones, each at the same point: a single-node and a cluster break.
    let broken = standard(false).with_break("relabel-layer-generations").unwrap();
    let violation = replays_unchanged(&broken, 1).expect("the break fails seed 1");
    assert_eq!(invariant_id(&violation), "S-GEN-SUFFIX");
    let broken = standard(true).with_break("drops-a-record").unwrap();
    let violation = replays_unchanged(&broken, 1).expect("the break fails seed 1");
    // S-VISIBLE, found by L-MIGRATE's read-back on the destination.
    assert_eq!(invariant_id(&violation), "L-MIGRATE");
    assert!(violation.contains("S-VISIBLE"), "{violation}");
}

#[test]
fn a_schedule_that_leaves_everything_out_drops_every_kill_and_step() {
    let scenario = standard(false);
    let (run, reached) = shrink::follow(&scenario, 3, &[]);
    assert!(reached.is_empty());
    assert!(run.violation().is_none(), "{:?}", run.violation());
    assert!(run.fired.iter().all(|(_, n)| *n == 0), "a fault fired: {:?}", run.fired);
    let kills = run.trace.iter().filter(|l| l.contains("kill left out by the schedule")).count();
    assert_eq!(kills, 3, "the scenario's three kills are left out");
    assert!(!run.trace.iter().any(|l| l.contains("nemesis - effect restarted")));
    assert!(!run.trace.iter().any(|l| l.starts_with("chaos") || l.contains(" chaos request ")));
}

#[test]
fn a_broken_seed_shrinks_to_a_smaller_schedule_that_still_fails() {
    let scenario = standard(false).with_break("relabel-layer-generations").unwrap();
    let budget = Budget { runs: 80, wall: std::time::Duration::from_secs(300) };
    let shrunk = shrink::shrink(&scenario, 1, budget, &mut std::io::stdout()).expect("shrinks");
    println!(
        "S-GEN-SUFFIX seed 1: {} events before, {} after",
        shrunk.before.len(),
        shrunk.after.len()
    );
    assert_eq!(shrunk.id, "S-GEN-SUFFIX");
    assert!(shrunk.after.len() < shrunk.before.len(), "{:?}", shrunk.after);
    // On its own, again: the shrunk schedule still breaks the same id.
    let (run, _) = shrink::follow(&scenario, 1, &shrunk.after);
    assert_eq!(run.violation().map(invariant_id).as_deref(), Some("S-GEN-SUFFIX"));
}
