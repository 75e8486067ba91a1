//! Fuzzes strata-core's deletion_queue. The body is `machines/deletion.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core as under_test;
use under_test::deletion_queue::model::Action;

#[path = "machines/deletion.rs"]
mod body;

fuzz_target!(|input: Vec<Action>| body::run(input));
