//! Checks that can fail: each check of [`DeletionQueue::check_invariants`] fires
//! on a state that breaks it. Every fixture passes every check (the harness runs
//! them after each input); each test breaks one rule and names the check it expects.

use super::super::list::{IoState, List, Stage};
use super::*;

/// One list, open, collecting two keys of T1.
fn open() -> DeletionQueue {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1), key(T1, 2)]);
    h.q.check_invariants();
    h.q
}

/// Its write in flight.
fn writing() -> Harness {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1), key(T1, 2)]);
    h.flush();
    assert!(is_write(&h.held[0]));
    h
}

/// Written, its validation in flight.
fn validating() -> DeletionQueue {
    let mut h = writing();
    h.complete(is_write, Ok(()));
    assert!(is_validate(&h.held[0]));
    h.q.check_invariants();
    h.q
}

/// Validated, its keys deleting.
fn executing() -> Harness {
    let mut h = writing();
    h.complete(is_write, Ok(()));
    h.complete(is_validate, Ok(()));
    assert!(h.held.iter().any(is_delete));
    h.q.check_invariants();
    h
}

fn only_list(q: &mut DeletionQueue) -> &mut List {
    q.lists.values_mut().next().expect("a list")
}

macro_rules! fires {
    ($name:ident, $expected:literal, $fixture:expr, |$q:ident| $corrupt:block) => {
        #[test]
        #[should_panic(expected = $expected)]
        fn $name() {
            let mut $q: DeletionQueue = $fixture;
            $corrupt
            $q.check_invariants();
        }
    };
}

fires!(two_open_lists, "several open lists", open(), |q| {
    let seq = q.next_seq;
    q.lists.insert(seq, List::open(seq, Instant::ZERO));
    q.next_seq += 1;
});

fires!(an_open_list_that_is_not_the_newest, "the open list is the newest", open(), |q| {
    let seq = q.next_seq;
    let mut sealed = List::open(seq, Instant::ZERO);
    sealed.stage = Stage::Sealed;
    q.lists.insert(seq, sealed);
    q.next_seq += 1;
});

fires!(a_sequence_not_below_next, "not below next", open(), |q| {
    q.next_seq = *q.lists.keys().next_back().unwrap();
});

fires!(a_list_under_the_wrong_sequence, "list filed under the wrong sequence", open(), |q| {
    only_list(&mut q).content.sequence += 100;
});

fires!(durable_ahead_of_memory, "durable ahead of memory", open(), |q| {
    let list = only_list(&mut q);
    list.durable_version = list.version + 1;
});

fires!(an_unvalidated_list_executing, "executes unvalidated", executing().q, |q| {
    only_list(&mut q).content.validated = false;
});

fires!(a_list_executing_before_accepted, "executes before it was accepted", executing().q, |q| {
    only_list(&mut q).durable_version = 0;
});

fires!(
    a_list_waiting_for_another_validation,
    "waits for a validation not in flight",
    validating(),
    |q| {
        only_list(&mut q).stage = Stage::Validating { op: OpId(999) };
    }
);

fires!(
    a_write_overlapping_a_removal,
    "write and removal overlap",
    {
        let mut h = executing();
        while h.held.iter().any(is_delete) {
            h.complete(is_delete, Ok(()));
        }
        assert!(h.held.iter().any(is_remove));
        h.q
    },
    |q| {
        only_list(&mut q).write = IoState::InFlight(OpId(998));
    }
);

fires!(the_executor_losing_track_of_a_key, "executor lost track", executing().q, |q| {
    let list = only_list(&mut q);
    let Stage::Executing { remaining } = list.stage else { panic!("{:?}", list.stage) };
    list.stage = Stage::Executing { remaining: remaining + 1 };
});

fires!(
    a_key_in_the_executor_without_its_list,
    "in the executor without a validated list",
    executing().q,
    |q| {
        let mut stray = q.batches.values().next().unwrap().keys[0].clone();
        stray.sequence = 999;
        q.exec_queue.push_back(stray);
    }
);

fires!(an_empty_batch, "batch size", executing().q, |q| {
    q.batches.insert(
        999,
        Batch { keys: Vec::new(), state: IoState::Idle, failures: 0, cancel_if_failed: vec![] },
    );
});

fires!(a_header_beyond_every_sequence, "header beyond every sequence", open(), |q| {
    q.header_durable = q.next_seq + 1;
});

fires!(two_header_writes, "header writes at once", open(), |q| {
    q.ops.insert(OpId(998), OpKind::WriteHeader { validated_sequence: 0 });
    q.ops.insert(OpId(999), OpKind::WriteHeader { validated_sequence: 0 });
});

fires!(a_validation_op_not_tracked, "validation op not tracked", validating(), |q| {
    q.ops.retain(|_, k| *k != OpKind::Validate);
});

fires!(two_validations_at_once, "validations at once", validating(), |q| {
    q.ops.insert(OpId(999), OpKind::Validate);
});

fires!(a_validation_op_without_a_round, "validation op without a round", open(), |q| {
    q.ops.insert(OpId(999), OpKind::Validate);
});

fires!(a_backoff_without_a_failure, "a validation backoff without a failure", open(), |q| {
    q.validation_retry = Some((0, Instant::ZERO));
});

fires!(lsn_updates_out_of_order, "LSN updates out of arrival order", open(), |q| {
    let update = |index| LsnUpdate {
        tenant: T1,
        timeline: TL,
        generation: g(1),
        lsn: crate::lsn::Lsn(0x10),
        after_seq: 0,
        index,
        arrived_at: Instant::ZERO,
    };
    q.lsn_waiting = vec![update(2), update(1)];
});

fires!(work_that_nothing_moves, "stuck: queued work", writing().q, |q| {
    q.ops.clear();
});
