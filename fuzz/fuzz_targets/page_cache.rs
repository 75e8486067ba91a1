//! Fuzzes strata-core's page cache: the bytes become a capacity and a history of
//! steps for the cache's reference model (`page_cache::model`): layer lookups,
//! fills completed in any order (with the bytes or failed), value lookups and
//! inserts, invalidations of a layer, a timeline or a tenant, and crashes. After
//! every step `check_invariants`; a hit must be the current bytes (or redo's
//! answer), and every waiter is answered exactly once.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::page_cache::model::{self, Step};

/// Steps per execution, at most (the property test draws up to 200).
const MAX_STEPS: usize = 400;

fuzz_target!(|input: (u16, Vec<Step>)| {
    let (capacity, mut steps) = input;
    steps.truncate(MAX_STEPS);
    model::run(u64::from(capacity % 1024), steps);
});
