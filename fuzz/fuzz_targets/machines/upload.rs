//! The upload queue's fuzz body, shared by `upload_queue` (strata-core) and
//! `upload_queue_mutant` (the broken copy): the bytes become a history of steps for
//! the queue's reference model (`upload_queue::model`): layer adds and unlinks,
//! metadata changes, barriers, mode changes, completions of any in-flight upload in
//! any order with success, every I/O failure kind, a lost response or a late write,
//! deletion reports, validations, timer firings, stops and crashes (the machine
//! dropped and recovered from the newest durable index). After every step the
//! harness runs `check_invariants`, checks the world (S-IDX-ORDER, S-IDX-REF,
//! S-DEL-AFTER-INDEX, S-SINGLE-WRITER) and compares with the model; at the end it
//! heals and checks that nothing was lost. With the flag set, the history is
//! followed by a timeline deletion and more faults (`model::run_deletion`).

use super::under_test::upload_queue::model::{self, Step};

/// Steps per phase, at most: keeps one execution short (the property test draws up
/// to 120).
const MAX_STEPS: usize = 200;

pub fn run((deletion, mut history, mut after): (bool, Vec<Step>, Vec<Step>)) {
    history.truncate(MAX_STEPS);
    after.truncate(MAX_STEPS);
    if deletion {
        model::run_deletion(history, after);
    } else {
        model::run(history);
    }
}
