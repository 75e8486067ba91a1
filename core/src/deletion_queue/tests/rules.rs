//! One test per rule of issue 8's deletion queue.

use super::*;

#[test]
fn a_list_is_written_before_it_is_validated_and_validated_before_it_executes() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1), key(T1, 2)]);
    assert!(h.held.is_empty(), "the open list waits to fill or age");
    assert_eq!(h.q.input_queue_len(), 2, "the unbounded input is visible as a metric");
    h.flush();
    assert_eq!(h.held.len(), 1);
    assert!(is_write(&h.held[0]), "persist comes first: {:?}", h.held);
    h.complete(is_write, Ok(()));
    assert_eq!(h.q.input_queue_len(), 0);
    assert_eq!(h.held.len(), 1);
    assert!(is_validate(&h.held[0]), "validate before any delete: {:?}", h.held);
    h.complete(is_validate, Ok(()));
    assert!(h.held.iter().any(is_delete));
    h.complete(is_delete, Ok(()));
    assert_eq!(h.deleted, vec![key(T1, 1), key(T1, 2)]);
    h.complete(is_remove, Ok(()));
    while let Some(e) = h.held.pop_front() {
        h.carry_out(e, Ok(()));
        h.settle();
    }
    assert!(h.disk.is_empty(), "executed lists are removed");
    assert_eq!(h.flushed, vec![FlushId(0)]);
    let executed = h.outcomes().values().all(|o| *o == DeletionOutcome::Executed);
    assert!(executed && h.reports.len() == 2);
}

#[test]
fn a_failed_list_write_is_retried_and_never_counts_as_accepted() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1)]);
    h.flush();
    h.complete(is_write, Err(IoError::remote(IoErrorKind::Transient, "k", "fsync failed")));
    assert!(h.held.is_empty(), "nothing validated on a failed write");
    let at = h.q.poll_timeout().expect("a retry timer");
    assert_eq!(at, h.now.plus_millis(10));
    h.advance(10);
    assert!(is_write(&h.held[0]), "the write is retried");
}

/// A list write whose fsync failed may have landed whole (cluster seed 3295). Its
/// keys cancelled (the node went AttachedStale), the list is removed from disk
/// before the header may cover its sequence: a restart (the tenant attached
/// elsewhere by then) never executes it as validated. Before, the emptied list
/// counted as never written, was forgotten, and the header covered it.
#[test]
fn a_cancelled_list_whose_write_failed_is_removed_before_the_header_covers_it() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1)]);
    h.flush();
    let write = h.held.pop_front().expect("the list write");
    let DeletionEffect::WriteList { sequence, bytes, .. } = &write else { panic!("{write:?}") };
    h.disk.insert(*sequence, bytes.clone());
    h.carry_out(write, Err(IoError::remote(IoErrorKind::Transient, "k", "fsync failed")));
    h.q.handle_cancel(h.now, T1, TL, key(T1, 1));
    h.auto = true;
    h.settle();
    h.run_until_idle();
    h.restart(&[]);
    h.run_until_idle();
    assert!(h.deleted.is_empty(), "executed without a validation: {:?}", h.deleted);
    assert!(h.disk.is_empty(), "the list file is left: {:?}", h.disk.keys());
}

#[test]
fn one_generation_per_tenant_per_list() {
    let mut h = Harness::new(small_config());
    h.current.insert(T1, g(2));
    h.push(T1, g(1), vec![key(T1, 1)]);
    h.push(T2, g(1), vec![key(T2, 1)]);
    h.push(T1, g(2), vec![key(T1, 2)]);
    h.flush();
    for bytes in h.disk.values() {
        let list = DeletionList::from_json_bytes(bytes).unwrap();
        assert!(list.tenants.len() <= 2);
    }
    assert!(h.validations.iter().flatten().any(|p| *p == (T1, g(1))));
    assert!(h.validations.iter().flatten().any(|p| *p == (T1, g(2))));
    let outcomes = h.outcomes();
    assert_eq!(outcomes[&key(T1, 1)], DeletionOutcome::DroppedStale);
    assert_eq!(outcomes[&key(T1, 2)], DeletionOutcome::Executed);
    assert_eq!(outcomes[&key(T2, 1)], DeletionOutcome::Executed);
}

#[test]
fn stale_generations_are_dropped_counted_and_never_executed() {
    let mut h = Harness::new(small_config());
    h.current.insert(T1, g(5));
    h.push(T1, g(4), vec![key(T1, 1), key(T1, 2)]);
    h.push(T2, g(1), vec![key(T2, 1)]);
    h.flush();
    h.run_until_idle();
    assert_eq!(h.deleted, vec![key(T2, 1)], "S-DEL-GEN: nothing of the stale generation");
    assert_eq!(h.q.stats().keys_dropped_stale_total, 2);
    assert_eq!(h.q.stats().lists_dropped_stale_total, 1);
    assert_eq!(h.outcomes()[&key(T1, 2)], DeletionOutcome::DroppedStale);
    assert!(h.disk.is_empty());
    // The rewritten list reached the disk before the header passed it.
    let header = DeletionHeader::from_json_bytes(h.header.as_ref().unwrap()).unwrap();
    assert!(header.validated_sequence >= 1);
}

#[test]
fn an_unknown_tenant_is_stale() {
    let mut h = Harness::new(small_config());
    let t9 = TenantId([9; 16]);
    h.push(t9, g(1), vec![key(t9, 1)]);
    h.flush();
    assert!(h.deleted.is_empty());
    assert_eq!(h.outcomes()[&key(t9, 1)], DeletionOutcome::DroppedStale);
}

#[test]
fn lsn_updates_are_validated_only_by_a_validation_requested_after_them() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1)]);
    h.flush();
    h.complete(is_write, Ok(()));
    assert!(is_validate(&h.held[0]));
    // Arrives while that validation is in flight: it must wait for the next one.
    h.q.handle_push_lsn_update(h.now, T1, TL, g(1), Lsn(100));
    h.settle();
    h.complete(is_validate, Ok(()));
    assert!(h.lsns.is_empty(), "no cached validity");
    h.q.handle_flush_advisory(h.now);
    h.settle();
    h.complete(is_validate, Ok(()));
    let want =
        LsnValidation { tenant: T1, timeline: TL, generation: g(1), lsn: Lsn(100), valid: true };
    assert_eq!(h.lsns, vec![want]);
    // Stale generation: reported invalid.
    h.current.insert(T1, g(2));
    h.q.handle_push_lsn_update(h.now, T1, TL, g(1), Lsn(200));
    h.q.handle_flush_advisory(h.now);
    h.settle();
    h.complete(is_validate, Ok(()));
    assert!(!h.lsns[1].valid);
    assert_eq!(h.q.stats().lsn_updates_dropped_total, 1);
}

#[test]
fn lsn_updates_wait_for_earlier_deletions_to_be_accepted() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1)]);
    h.q.handle_push_lsn_update(h.now, T1, TL, g(1), Lsn(100));
    h.flush();
    assert_eq!(h.held.len(), 1, "only the list write: {:?}", h.held);
    h.complete(is_write, Ok(()));
    let DeletionEffect::Validate { tenants, .. } = h.take(is_validate) else { unreachable!() };
    assert_eq!(tenants, vec![(T1, g(1))], "the list and the LSN update travel together");
}

#[test]
fn batches_hold_at_most_1000_keys() {
    let mut config = small_config();
    config.list_target_keys = 10_000;
    let mut h = Harness::new(config);
    h.push(T1, g(1), (0..2500).map(|n| key(T1, n)).collect());
    h.flush();
    let mut sizes = h.batches.clone();
    sizes.sort();
    assert_eq!(sizes, vec![500, 1000, 1000]);
    assert_eq!(h.deleted_set().len(), 2500);
}

#[test]
fn transient_delete_failures_back_off_and_permanent_ones_are_reported() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1)]);
    h.flush();
    h.complete(is_write, Ok(()));
    h.complete(is_validate, Ok(()));
    h.complete(is_delete, Err(IoError::remote(IoErrorKind::Transient, "k", "503")));
    assert_eq!(h.q.poll_timeout(), Some(h.now.plus_millis(10)));
    h.advance(10);
    h.complete(is_delete, Err(IoError::remote(IoErrorKind::Transient, "k", "503")));
    assert_eq!(h.q.poll_timeout(), Some(h.now.plus_millis(20)), "the delay doubles");
    h.advance(20);
    assert_eq!(h.q.stats().delete_retries_total, 2);
    h.complete(is_delete, Err(IoError::remote(IoErrorKind::Permanent, "k", "access denied")));
    let outcome = h.outcomes()[&key(T1, 1)].clone();
    assert_eq!(
        outcome,
        DeletionOutcome::FailedPermanently("permanent on remote k: access denied".into())
    );
    h.complete(is_remove, Ok(()));
    assert!(h.disk.is_empty());
}

#[test]
fn a_cancel_is_durable_before_it_is_reported() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    // In the open list: nothing durable, reported at once.
    h.push(T1, g(1), vec![key(T1, 1), key(T1, 2), key(T1, 3)]);
    h.q.handle_cancel(h.now, T1, TL, key(T1, 1));
    h.settle();
    assert_eq!(h.outcomes()[&key(T1, 1)], DeletionOutcome::Cancelled);
    // In a written list: the rewrite comes first.
    h.flush();
    h.complete(is_write, Ok(()));
    h.q.handle_cancel(h.now, T1, TL, key(T1, 2));
    h.settle();
    assert!(!h.outcomes().contains_key(&key(T1, 2)), "not before the rewrite");
    let write = h.take(is_write);
    let DeletionEffect::WriteList { bytes, .. } = &write else { unreachable!() };
    assert_eq!(DeletionList::from_json_bytes(bytes).unwrap().len(), 1);
    h.carry_out(write, Ok(()));
    h.settle();
    assert_eq!(h.outcomes()[&key(T1, 2)], DeletionOutcome::Cancelled);
    assert_eq!(h.q.stats().keys_cancelled_total, 2);
    h.auto = true;
    h.held.clear(); // the validate was held; let a restart redo the rest
    h.run_until_idle_after_validation_loss();
    assert_eq!(h.deleted, vec![key(T1, 3)]);
}

#[test]
fn a_cancel_after_execution_started_changes_nothing() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1)]);
    h.flush();
    h.complete(is_write, Ok(()));
    h.complete(is_validate, Ok(()));
    h.q.handle_cancel(h.now, T1, TL, key(T1, 1));
    h.settle();
    h.complete(is_delete, Ok(()));
    assert_eq!(h.outcomes()[&key(T1, 1)], DeletionOutcome::Executed);
}

#[test]
fn cancelling_every_key_of_a_written_list_removes_it_before_reporting() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1)]);
    h.flush();
    h.complete(is_write, Ok(()));
    let validate = h.take(is_validate); // in flight while the cancel arrives
    h.q.handle_cancel(h.now, T1, TL, key(T1, 1));
    h.settle();
    assert!(h.reports.is_empty());
    h.carry_out(validate, Ok(()));
    h.settle();
    h.complete(is_remove, Ok(()));
    assert_eq!(h.outcomes()[&key(T1, 1)], DeletionOutcome::Cancelled);
    assert!(h.deleted.is_empty() && h.disk.is_empty());
}

#[test]
fn a_restart_keeps_the_previous_own_generation_and_drops_older_ones() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.current.insert(T2, g(3));
    h.push(T1, g(1), vec![key(T1, 1)]);
    h.push(T2, g(3), vec![key(T2, 1)]);
    h.flush();
    while let Some(i) = h.held.iter().position(is_write) {
        let e = h.held.remove(i).unwrap();
        h.carry_out(e, Ok(()));
    }
    assert_eq!(h.disk.len(), 1, "both tenants in one list");
    // Crash before validation. Re-attach: T1 g1 → g2 (own), T2 g3 → g5 (g4 was elsewhere).
    h.auto = true;
    h.restart(&[(T1, g(2), true), (T2, g(5), false)]);
    h.q.handle_flush(h.now);
    h.run_until_idle();
    assert_eq!(h.deleted, vec![key(T1, 1)], "a plain restart loses no queued deletion");
    assert_eq!(h.q.stats().keys_dropped_at_recovery_total, 1);
    assert!(h.validations.iter().flatten().all(|p| *p != (T1, g(1))), "rewritten to g2");
    assert!(h.disk.is_empty());
    assert!(h.reports.is_empty(), "recovered keys have no upload queue to report to");
}

#[test]
fn lists_under_the_header_execute_after_a_restart_without_revalidation() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1)]);
    h.flush();
    h.complete(is_write, Ok(()));
    h.complete(is_validate, Ok(()));
    h.complete(is_header, Ok(()));
    assert!(h.held.iter().any(is_delete));
    // Crash before the delete; the restart attaches the tenant here on g2.
    h.current.insert(T1, g(2));
    h.auto = true;
    h.restart(&[(T1, g(2), true)]);
    h.run_until_idle();
    assert_eq!(h.deleted, vec![key(T1, 1)], "validated before the crash, after the push");
    assert!(h.validations.len() == 1);
}

/// S-SINGLE-WRITER: a validated list on disk of a tenant that does not load
/// AttachedSingle after the restart (moved to another node, or loading
/// AttachedMulti) is not executed: its keys are dropped and counted, the objects
/// leak for a scrubber.
#[test]
fn a_validated_list_of_a_tenant_not_loading_single_is_dropped_at_restart() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1)]);
    h.flush();
    h.complete(is_write, Ok(()));
    h.complete(is_validate, Ok(()));
    h.complete(is_header, Ok(()));
    assert!(h.held.iter().any(is_delete));
    h.current.insert(T1, g(9));
    h.auto = true;
    h.restart(&[]);
    h.run_until_idle();
    assert!(h.deleted.is_empty(), "deleted for a tenant not held Single: {:?}", h.deleted);
    assert_eq!(h.q.stats().keys_dropped_at_recovery_total, 1);
    assert!(h.disk.is_empty(), "the emptied list is removed");
}

/// Cluster seed 5802: a validated key whose delete was refused and is backing off
/// when its tenant leaves AttachedSingle is cancelled, not retried: a node in
/// AttachedMulti deletes nothing (S-SINGLE-WRITER). The cancel is reported only once
/// the list's rewrite (here: its removal) is durable.
#[test]
fn a_cancel_takes_a_key_out_of_a_delete_that_is_backing_off() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1), key(T1, 2)]);
    h.flush();
    h.complete(is_write, Ok(()));
    h.complete(is_validate, Ok(()));
    let denied = IoError::remote(IoErrorKind::Transient, "k", "access denied");
    h.complete(is_delete, Err(denied));
    h.q.handle_cancel(h.now, T1, TL, key(T1, 1));
    h.settle();
    assert!(!h.outcomes().contains_key(&key(T1, 1)), "not before the rewrite");
    let write = h.take(is_write);
    let DeletionEffect::WriteList { bytes, .. } = &write else { unreachable!() };
    assert_eq!(DeletionList::from_json_bytes(bytes).unwrap().len(), 1, "rewritten without it");
    h.carry_out(write, Ok(()));
    h.settle();
    assert_eq!(h.outcomes()[&key(T1, 1)], DeletionOutcome::Cancelled);
    h.advance(1_000);
    h.auto = true;
    for e in std::mem::take(&mut h.held) {
        h.carry_out(e, Ok(()));
    }
    h.run_until_idle();
    assert_eq!(h.deleted, vec![key(T1, 2)], "the retry carries only the key left");
    assert!(h.disk.is_empty());
}

/// A key cancelled while its delete is in flight is executed if that delete
/// succeeds; if it fails, the key leaves the batch instead of being retried.
#[test]
fn a_key_cancelled_while_its_delete_is_in_flight_is_not_retried_after_a_failure() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1), key(T1, 2)]);
    h.flush();
    h.complete(is_write, Ok(()));
    h.complete(is_validate, Ok(()));
    assert!(h.held.iter().any(is_delete), "the delete is in flight");
    h.q.handle_cancel(h.now, T1, TL, key(T1, 1));
    h.settle();
    assert!(!h.held.iter().any(is_write), "nothing changes while it is in flight");
    let denied = IoError::remote(IoErrorKind::Transient, "k", "access denied");
    h.complete(is_delete, Err(denied));
    h.complete(is_write, Ok(()));
    assert_eq!(h.outcomes()[&key(T1, 1)], DeletionOutcome::Cancelled);
    h.advance(1_000);
    h.auto = true;
    for e in std::mem::take(&mut h.held) {
        h.carry_out(e, Ok(()));
    }
    h.run_until_idle();
    assert_eq!(h.deleted, vec![key(T1, 2)], "the retry carries only the key left");
}

/// Keys read back from disk at start-up have no upload queue to cancel them: when
/// their tenant leaves AttachedSingle, `handle_stop_deleting` drops those not in a
/// delete in flight, queued or backing off, and leaves other tenants' alone.
#[test]
fn stop_deleting_drops_recovered_keys_not_in_flight() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1)]);
    h.push(T2, g(1), vec![key(T2, 1)]);
    h.flush();
    h.complete(is_write, Ok(()));
    h.complete(is_validate, Ok(()));
    h.complete(is_header, Ok(()));
    // Crash before the deletes; both tenants load Single again.
    h.restart(&[(T1, g(2), true), (T2, g(2), true)]);
    let denied = IoError::remote(IoErrorKind::Transient, "k", "access denied");
    h.complete(is_delete, Err(denied));
    h.q.handle_stop_deleting(h.now, T1);
    h.settle();
    assert_eq!(h.q.stats().keys_dropped_stale_total, 1);
    h.auto = true;
    for e in std::mem::take(&mut h.held) {
        h.carry_out(e, Ok(()));
    }
    h.run_until_idle();
    assert_eq!(h.deleted, vec![key(T2, 1)], "only the other tenant's key is deleted");
    assert!(h.reports.is_empty(), "recovered keys are never reported");
    assert!(h.disk.is_empty());
}

#[test]
fn flush_waits_for_execution_and_advisory_flush_only_nudges() {
    let mut h = Harness::new(small_config());
    h.push(T1, g(1), vec![key(T1, 1)]);
    assert!(h.deleted.is_empty(), "batching delay");
    h.q.handle_flush_advisory(h.now);
    h.settle();
    assert_eq!(h.deleted.len(), 1);
    assert!(h.flushed.is_empty(), "an advisory flush has no completion");
    h.push(T1, g(1), vec![key(T1, 2)]);
    let id = h.flush();
    assert_eq!(h.flushed, vec![id]);
    assert_eq!(h.deleted.len(), 2);
    let id = h.flush();
    assert_eq!(h.flushed.last(), Some(&id), "an empty flush completes at once");
}

#[test]
fn timers_seal_and_validate_without_a_flush() {
    let mut h = Harness::new(small_config());
    h.push(T1, g(1), vec![key(T1, 1)]);
    assert_eq!(h.q.poll_timeout(), Some(Instant(100)), "seal timer");
    h.advance(100);
    assert!(h.deleted.is_empty());
    assert_eq!(h.q.poll_timeout(), Some(Instant(300)), "validate timer");
    h.advance(200);
    assert_eq!(h.deleted, vec![key(T1, 1)]);
}

#[test]
fn a_full_list_is_sealed_at_once_and_keys_outside_the_prefix_fail() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), (0..4).map(|n| key(T1, n)).collect());
    assert!(is_write(&h.held[0]), "list_target_keys reached");
    h.push(T1, g(1), vec![key(T2, 1)]);
    let outcome = &h.outcomes()[&key(T2, 1)];
    assert!(matches!(outcome, DeletionOutcome::FailedPermanently(_)));
}

#[test]
fn stale_completions_are_typed_errors() {
    let mut h = Harness::new(small_config());
    assert_eq!(
        h.q.handle_completion(h.now, OpId(42), Ok(())),
        Err(DeletionQueueError::UnexpectedCompletion(OpId(42)))
    );
    assert_eq!(
        h.q.handle_validation(h.now, OpId(42), vec![]),
        Err(DeletionQueueError::UnexpectedCompletion(OpId(42)))
    );
}

#[test]
fn a_failed_validation_deletes_nothing_publishes_nothing_and_retries_after_a_backoff() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1), key(T1, 2)]);
    h.q.handle_push_lsn_update(h.now, T1, TL, g(1), Lsn(100));
    h.flush();
    h.complete(is_write, Ok(()));
    let unreachable = CallFailure::Unreachable("connection refused".into());
    // Two failures: the backoff doubles (base 10 ms, then 20 ms).
    for backoff_ms in [10, 20] {
        let DeletionEffect::Validate { op, .. } = h.take(is_validate) else { unreachable!() };
        h.q.handle_validation_failed(h.now, op, &unreachable).unwrap();
        h.settle();
        assert!(h.held.iter().all(|e| !is_delete(e)), "nothing deleted: {:?}", h.held);
        assert!(h.lsns.is_empty(), "nothing visible after a failed validation");
        assert!(h.reports.is_empty(), "nothing dropped or reported");
        assert_eq!(h.q.lsn_updates_waiting(), 1, "the LSN update waits again");
        let timers: Vec<_> = h.q.timers().collect();
        assert_eq!(timers, vec![(h.now.plus_millis(backoff_ms), TimerReason::RetryValidation)]);
        // A flush does not hurry a control plane that just failed.
        h.q.handle_flush_advisory(h.now);
        h.advance(backoff_ms - 1);
        assert!(h.held.is_empty(), "no validation before the backoff ends: {:?}", h.held);
        h.advance(1);
        assert!(is_validate(&h.held[0]), "retried when the backoff ends: {:?}", h.held);
    }
    assert_eq!(h.q.stats().validations_unreachable_total, 2);
    // The third one is answered: everything goes on, exactly once.
    h.complete(is_validate, Ok(()));
    let want =
        LsnValidation { tenant: T1, timeline: TL, generation: g(1), lsn: Lsn(100), valid: true };
    assert_eq!(h.lsns, vec![want]);
    h.auto = true;
    while let Some(e) = h.held.pop_front() {
        h.carry_out(e, Ok(()));
        h.settle();
    }
    h.run_until_idle();
    assert_eq!(h.deleted, vec![key(T1, 1), key(T1, 2)], "each key deleted once");
    assert!(h.q.timers().next().is_none(), "a success resets the backoff");
}

#[test]
fn validation_fails_n_times_then_succeeds_deletions_happen_once() {
    let mut h = Harness::new(small_config());
    h.failing_validations = 5;
    let keys: Vec<RemoteKey> = (0..10).map(|n| key(T1, n)).collect();
    h.push(T1, g(1), keys.clone());
    h.q.handle_push_lsn_update(h.now, T1, TL, g(1), Lsn(100));
    h.flush();
    // A second LSN update arrives after the failures began: it supersedes nothing
    // of another timeline and travels after the first.
    h.q.handle_push_lsn_update(h.now, T1, TL, g(1), Lsn(200));
    h.run_until_idle();
    assert_eq!(h.failing_validations, 0);
    assert_eq!(h.q.stats().validations_unreachable_total, 5);
    assert_eq!(h.deleted.len(), keys.len(), "each key deleted exactly once: {:?}", h.deleted);
    assert_eq!(h.deleted_set(), keys.into_iter().collect());
    assert!(h.lsns.iter().all(|v| v.valid), "{:?}", h.lsns);
    assert_eq!(h.lsns.last().map(|v| v.lsn), Some(Lsn(200)), "the visible LSN advances");
    assert_eq!(h.flushed, vec![FlushId(0)], "the flush completes once it is all done");
}

#[test]
fn a_failure_for_a_validation_not_in_flight_is_a_typed_error() {
    let mut h = Harness::new(small_config());
    let failure = CallFailure::Timeout { deadline_ms: 10 };
    assert_eq!(
        h.q.handle_validation_failed(h.now, OpId(42), &failure),
        Err(DeletionQueueError::UnexpectedCompletion(OpId(42)))
    );
}

impl Harness {
    /// After a test dropped a held `Validate`, a restart from disk is the only way
    /// forward (a validation without an answer stays in flight forever).
    fn run_until_idle_after_validation_loss(&mut self) {
        let attached: Vec<_> = self.current.iter().map(|(t, gn)| (*t, *gn, false)).collect();
        self.restart(&attached);
        self.q.handle_flush(self.now);
        self.run_until_idle();
    }
}

/// A named timer does its own work only: with two list-write retries and the open
/// list's seal due at one instant, firing one retries that write alone; the other
/// stays in backoff and the open list stays open until their own timers fire.
/// Other inputs never act on time passing (the pump has no clock condition).
#[test]
fn a_fired_timer_does_only_its_own_work() {
    let mut h = Harness::new(small_config());
    h.auto = false;
    h.push(T1, g(1), vec![key(T1, 1)]);
    h.push(T1, g(2), vec![key(T1, 2)]); // another generation: list 1 is sealed
    h.push(T1, g(3), vec![key(T1, 3)]); // and list 2
    h.complete(
        is_write,
        Err(IoError::local(IoErrorKind::FsyncFailed, "deletion/list", "fsync failed")),
    );
    h.complete(
        is_write,
        Err(IoError::local(IoErrorKind::FsyncFailed, "deletion/list", "fsync failed")),
    );
    assert!(h.held.is_empty());
    let retry = h.now.plus_millis(10);
    let seal = h.now.plus_millis(100);
    let timers: Vec<(Instant, TimerReason)> = h.q.timers().collect();
    assert_eq!(
        timers,
        [
            (seal, TimerReason::SealOpenList),
            (retry, TimerReason::RetryListWrite(1)),
            (retry, TimerReason::RetryListWrite(2)),
        ]
    );
    // Long past every deadline, an input that is not a timer starts nothing.
    h.now = seal.plus_millis(1_000);
    h.push(T2, g(1), vec![key(T2, 1)]);
    assert!(h.held.is_empty(), "no retry and no seal without its timer: {:?}", h.held);
    h.q.handle_timeout(h.now, TimerReason::RetryListWrite(2));
    h.settle();
    assert_eq!(h.held.len(), 1);
    assert!(matches!(h.held[0], DeletionEffect::WriteList { sequence: 2, .. }));
    let left: Vec<TimerReason> = h.q.timers().map(|(_, r)| r).collect();
    assert_eq!(left, [TimerReason::SealOpenList, TimerReason::RetryListWrite(1)]);
    h.q.handle_timeout(h.now, TimerReason::SealOpenList);
    h.settle();
    let left: Vec<TimerReason> = h.q.timers().map(|(_, r)| r).collect();
    assert_eq!(left, [TimerReason::RetryListWrite(1)], "the open list is sealed");
    assert!(h.held.iter().all(|e| !matches!(e, DeletionEffect::WriteList { sequence: 1, .. })));
    // A timer that is not set does nothing.
    h.q.handle_timeout(h.now, TimerReason::RetryHeaderWrite);
    h.q.handle_timeout(h.now, TimerReason::RetryDelete(0));
    h.settle();
    assert!(h.held.iter().all(|e| !matches!(e, DeletionEffect::WriteList { sequence: 1, .. })));
}
