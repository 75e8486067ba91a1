//! Fuzzes the broken copy of the deletion_queue (`fuzz/mutant/build.rs`): it must crash,
//! and soon (`scripts/fuzz-mutants.sh` times it). The body is `machines/deletion.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core_mutant as under_test;
use under_test::deletion_queue::model::Action;

#[path = "machines/deletion.rs"]
mod body;

fuzz_target!(|input: Vec<Action>| body::run(input));
