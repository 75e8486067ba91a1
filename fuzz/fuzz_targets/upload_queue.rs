//! Fuzzes strata-core's upload_queue. The body is `machines/upload.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core as under_test;
use under_test::upload_queue::model::Step;

#[path = "machines/upload.rs"]
mod body;

fuzz_target!(|input: (bool, Vec<Step>, Vec<Step>)| body::run(input));
