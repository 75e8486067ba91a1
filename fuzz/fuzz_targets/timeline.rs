//! Fuzzes strata-core's timeline: the bytes become a history of steps for the
//! timeline's reference model (`timeline::model`): ingest, flushes, reads, timer
//! firings (due or stale), world faults, held world effects completed in any order
//! with success, any I/O failure kind, or never (lost), held job grants (so
//! compaction, GC and eviction start and stop at any point), backpressure, mode
//! changes and crashes (the machine dropped and recovered from what was durable).
//! After every step the harness runs `check_invariants`, the world's rules
//! (S1 / S-IDX-REF, S-DEL-AFTER-INDEX) are checked and every answered read is
//! compared with the BTreeMap model; at the end everything reads back as the model.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::timeline::model::{self, Step};

/// Steps per execution, at most: keeps one execution short (the property test
/// draws up to 120).
const MAX_STEPS: usize = 200;

fuzz_target!(|steps: Vec<Step>| {
    let mut steps = steps;
    steps.truncate(MAX_STEPS);
    model::run(steps);
});
