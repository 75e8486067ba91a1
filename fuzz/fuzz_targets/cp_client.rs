//! Fuzzes the control-plane client through its reference world
//! (`control_plane::client_world`): calls of every kind; a transport answering any
//! attempt (in flight, late, never sent) with the reply, the wrong kind of reply, a
//! retryable or final refusal, or "unreachable"; a clock firing due timers and
//! naming timers not due. After every input: `check_invariants` and every effect
//! against the world's model (outcome, budget, deadline, backoff); at the end every
//! call has ended exactly once.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::control_plane::client_world::{self, Action};

/// Actions per input, at most: keeps one execution short.
const MAX_ACTIONS: usize = 300;

fuzz_target!(|actions: Vec<Action>| {
    let mut actions = actions;
    actions.truncate(MAX_ACTIONS);
    client_world::run(actions);
});
