//! The deletion queue's fuzz body, shared by `deletion_queue` (strata-core) and
//! `deletion_queue_mutant` (the broken copy): the bytes become actions of the
//! queue's reference world (`deletion_queue::model`): two nodes sharing a tenant
//! through migrations, crashes (the queue dropped, recovered from its durable lists
//! and header) and restarts, pushes and LSN updates, the real control-plane machine
//! answering validations (or the call failing: unreachable, timeout, refused), every
//! I/O completing in any order with success or any failure kind, and timers. After
//! every action: `check_invariants`, S-DEL-GEN (a key is deleted only after a
//! validation evaluated after its push found its generation current), no object the
//! latest index references deleted, S-VISIBLE; at the end L-DELETE.

use super::under_test::deletion_queue::model::{self, Action};

/// Actions per input, at most: keeps one execution short (the property test draws
/// up to 120).
const MAX_ACTIONS: usize = 200;

pub fn run(mut actions: Vec<Action>) {
    actions.truncate(MAX_ACTIONS);
    model::run(actions);
}
