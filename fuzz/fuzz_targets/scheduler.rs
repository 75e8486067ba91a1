//! Fuzzes strata-core's background-job scheduler: the bytes become a bound and a
//! history of steps for its reference model (`scheduler::model`): requests,
//! finishes (of running jobs, and of one that is not running: refused),
//! cancellations and crashes. After every step `check_invariants` and agreement
//! with the model; over the run determinism, fairness and no starvation.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::scheduler::model::{self, Step};

/// Steps per execution, at most (the property test draws up to 200).
const MAX_STEPS: usize = 400;

fuzz_target!(|input: (u8, Vec<Step>)| {
    let (max, mut steps) = input;
    steps.truncate(MAX_STEPS);
    model::check(&steps, usize::from(max % 6));
});
