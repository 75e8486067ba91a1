//! Fuzzes the control plane's generation table through its reference world
//! (`control_plane::world`): requests from two nodes about three tenants, store
//! persists succeeding, failing (landed or not) and lost, remote listings, and
//! crashes (recovered from the store's rows). After every step: `check_invariants`
//! (with the reply-durability check), reply durability against the store, S-GEN-MONO
//! (a tenant's grants strictly increase across crashes) and fencing of validations;
//! at the end every live request is answered.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::control_plane::world::{self, Action};

/// Actions per input, at most: keeps one execution short.
const MAX_ACTIONS: usize = 300;

fuzz_target!(|actions: Vec<Action>| {
    let mut actions = actions;
    actions.truncate(MAX_ACTIONS);
    world::run(actions);
});
