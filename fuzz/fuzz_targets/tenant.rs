//! Fuzzes the tenant machine (`node/tenant_machine.rs`: one attached tenant's
//! lifecycle, its timelines and its ops in flight), which runs inside the node,
//! through the node's tenant world (`node::tenant_world`): requests about two
//! tenants with two timelines each (create, ingest, read, location_config in every
//! mode, deletions, listings, shutdown), every held I/O completed in any order with
//! its result, any failure kind, or landed with its answer lost, never completed
//! (lost until a crash), timers, time passing and crashes (the node restarted from
//! the world's files, objects and store rows). After every input:
//! `Node::check_invariants` (with the tenant machines' in-flight accounting) and
//! every reply answering a request once; at the end every request is answered.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::node::tenant_world::{self, Action};

/// Actions per input, at most: keeps one execution short.
const MAX_ACTIONS: usize = 300;

fuzz_target!(|actions: Vec<Action>| {
    let mut actions = actions;
    actions.truncate(MAX_ACTIONS);
    if std::env::var_os("STRATA_FUZZ_PRINT").is_some() {
        eprintln!("{actions:?}");
    }
    tenant_world::run(actions);
});
