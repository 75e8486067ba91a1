//! Fuzzes the migration reconciler through its model world
//! (`control_plane::migration::world`): starts to any of three nodes; calls carried
//! in any order, answered, their answer lost, or failed without reaching the node
//! (unreachable, busy, refused); persists landed or not, answered Ok, with any I/O
//! failure kind, or never; timers, time passing, nodes down, back and restarted,
//! ingest, and crashes (the reconciler recovered from the store's rows). After
//! every input: `check_invariants`, the store's phase never going back, the calls'
//! rules (AttachedSingle only in FinalizeDestination, the origin only ever told
//! AttachedStale below the destination's generation), a start answered only once
//! durable; at the end the last durable migration finishes with the destination
//! AttachedSingle at the table's generation and nothing visible lost.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::control_plane::migration::world::{self, Action};

/// Actions per input, at most: keeps one execution short.
const MAX_ACTIONS: usize = 300;

fuzz_target!(|actions: Vec<Action>| {
    let mut actions = actions;
    actions.truncate(MAX_ACTIONS);
    if std::env::var_os("STRATA_FUZZ_PRINT").is_some() {
        eprintln!("{actions:?}");
    }
    world::run(actions);
});
