//! Fuzzes the tenant manager through its reference world
//! (`tenant::manager_world`): location_config, create and delete requests for two
//! tenants, settled slots, and each step in flight finished with its output, any
//! failure, the wrong kind of output, or a completion for a tenant with no step.
//! After every input: `check_invariants`, S-NO-DEADLOCK from outside (one step in
//! flight exactly while an operation runs), every request answered once with an
//! answer matching the slot, attached generations never going back, detach
//! directory numbers unique; at the end nothing left in progress.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::tenant::manager_world::{self, Action};

/// Actions per input, at most: keeps one execution short.
const MAX_ACTIONS: usize = 300;

fuzz_target!(|actions: Vec<Action>| {
    let mut actions = actions;
    actions.truncate(MAX_ACTIONS);
    manager_world::run(actions);
});
