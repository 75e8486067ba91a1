//! Unit tests: one per rule, driven through the harness (which also checks the
//! invariants inside and out after every input).

use super::harness::*;
use super::*;
use crate::deletion_queue::LsnValidation;
use crate::index_part::IndexVersion;
use crate::lsn::Lsn;
use crate::remote_path::{index_key, layer_key};

/// A new timeline with its first index durable.
fn started() -> Harness {
    let mut h = Harness::new_timeline(AttachMode::Single);
    h.settle();
    h
}

fn handed_names(h: &Harness) -> Vec<String> {
    h.handed.iter().map(|x| x.key.file_name().to_owned()).collect()
}

fn set_md(h: &mut Harness, lsn: u64) {
    h.step(|q, now| q.handle_set_metadata(now, md(lsn))).unwrap();
}

#[test]
fn new_timeline_uploads_its_first_index_at_once() {
    let mut h = Harness::new_timeline(AttachMode::Single);
    assert_eq!(h.names(), ["index#1"]);
    h.complete(0, Finish::Ok);
    assert!(h.q.is_idle());
    assert_eq!(h.q.latest_durable(), Some(IndexVersion { generation: gen_(1), seq: 1 }));
}

#[test]
fn s_idx_order_index_waits_for_every_layer_it_names() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.add(2, 10).unwrap();
    set_md(&mut h, 0x20);
    assert_eq!(h.names().len(), 2, "two layers, no index yet: {:?}", h.names());
    h.complete(1, Finish::Ok);
    assert_eq!(h.names().len(), 1, "still no index: {:?}", h.names());
    h.complete(0, Finish::Ok);
    assert_eq!(h.names(), ["index#2"]);
    let Obj::Index(index) = &h.outstanding[0].obj else { panic!("an index") };
    assert_eq!(index.layer_metadata.len(), 2);
    assert_eq!(index.disk_consistent_lsn, Lsn(0x20));
}

#[test]
fn layer_uploads_are_bounded_by_the_concurrency() {
    let mut h = started();
    for i in 1..=5 {
        h.add(i, 10).unwrap();
    }
    assert_eq!(h.q.in_flight_count(), 2);
    assert_eq!(h.outstanding.len(), 2);
    h.complete(0, Finish::Ok);
    let layers = h.names().iter().filter(|n| !n.starts_with("index")).count();
    assert_eq!(layers, 2);
}

#[test]
fn one_index_at_a_time() {
    let mut h = started();
    set_md(&mut h, 0x20);
    assert_eq!(h.names(), ["index#2"]);
    set_md(&mut h, 0x30);
    set_md(&mut h, 0x40);
    assert_eq!(h.names(), ["index#2"], "the next waits for the one in flight");
    h.complete(0, Finish::Ok);
    // The snapshots at 0x30 and 0x40 waited for the same layers: one upload.
    assert_eq!(h.names(), ["index#3"]);
    let Obj::Index(index) = &h.outstanding[0].obj else { panic!("an index") };
    assert_eq!(index.disk_consistent_lsn, Lsn(0x40));
    h.settle();
    assert_eq!(h.q.projected_lsn(), Lsn(0x40));
}

#[test]
fn a_superseded_snapshot_that_has_not_started_is_skipped() {
    let mut h = started();
    set_md(&mut h, 0x20); // index#2 in flight
    h.add(1, 10).unwrap(); // snapshot A waits for layer 1
    h.step(|q, now| q.handle_unlink_layers(now, &[layer(1)])).unwrap(); // snapshot B does not
    set_md(&mut h, 0x30); // folded into B
    let b = h.barrier();
    let i = h.names().iter().position(|n| n.starts_with("index")).unwrap();
    h.complete(i, Finish::Ok);
    // B starts at once (seq 3); A never uploads.
    assert_eq!(h.names().iter().filter(|n| n.starts_with("index")).count(), 1);
    assert!(h.names().contains(&"index#3".to_owned()));
    let i = h.names().iter().position(|n| n.starts_with("index")).unwrap();
    let Obj::Index(index) = &h.outstanding[i].obj else { panic!("an index") };
    assert!(index.layer_metadata.is_empty());
    assert_eq!(index.disk_consistent_lsn, Lsn(0x30));
    h.complete(i, Finish::Ok);
    assert_eq!(h.barriers[&b], Some(Ok(())));
    h.settle();
    assert_eq!(h.q.latest_durable().unwrap().seq, 3);
}

#[test]
fn barrier_is_reached_by_a_newer_index_that_covers_it() {
    let mut h = started();
    set_md(&mut h, 0x20); // index#2 in flight
    set_md(&mut h, 0x30);
    let b1 = h.barrier();
    set_md(&mut h, 0x40);
    let b2 = h.barrier();
    assert_eq!(h.barriers[&b1], None);
    h.complete(0, Finish::Ok);
    assert_eq!(h.barriers[&b1], None, "0x30 is not durable yet");
    assert_eq!(h.names(), ["index#3"]);
    h.complete(0, Finish::Ok);
    assert_eq!(h.barriers[&b1], Some(Ok(())));
    assert_eq!(h.barriers[&b2], Some(Ok(())));
    let b3 = h.barrier();
    assert_eq!(h.barriers[&b3], Some(Ok(())), "nothing pending: reached at once");
}

#[test]
fn s_del_after_index_deletion_waits_for_the_index_without_the_layer() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.settle();
    h.step(|q, now| q.handle_unlink_layers(now, &[layer(1)])).unwrap();
    assert!(h.handed.is_empty(), "handed before the index: {:?}", handed_names(&h));
    assert_eq!(h.names(), ["index#3"]);
    h.complete(0, Finish::Ok);
    let key = layer_key(TENANT, TIMELINE, &layer(1), gen_(1));
    assert!(h.handed.iter().any(|x| x.key == key));
    // Older indexes of this generation go too; the newest durable one stays.
    let old = index_key(TENANT, TIMELINE, IndexVersion { generation: gen_(1), seq: 2 });
    let newest = index_key(TENANT, TIMELINE, IndexVersion { generation: gen_(1), seq: 3 });
    assert!(h.handed.iter().any(|x| x.key == old));
    assert!(!h.handed.iter().any(|x| x.key == newest));
    h.settle();
    assert!(!h.store.contains_key(&key));
    assert!(h.store.contains_key(&newest));
}

#[test]
fn unlinked_layer_in_flight_is_deleted_only_after_its_upload_finishes() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.step(|q, now| q.handle_unlink_layers(now, &[layer(1)])).unwrap();
    // The layer upload is in flight; the index without it can go already.
    let idx = h.names().iter().position(|n| n.starts_with("index")).expect("index");
    h.complete(idx, Finish::Ok);
    assert!(h.handed.iter().all(|x| !x.key.as_str().contains("__")), "layer handed early");
    h.complete(0, Finish::Ok);
    let key = layer_key(TENANT, TIMELINE, &layer(1), gen_(1));
    assert!(h.handed.iter().any(|x| x.key == key));
}

/// LOCAL-READ (cluster seed 3636): compaction unlinked a layer whose upload was in
/// flight and asked for its local file to be removed at once. The removal waits
/// until the upload ends (here: it succeeds, reading the file), so the upload never
/// meets a missing file and the queue stays Active; the layer is deleted after.
#[test]
fn the_local_file_of_a_layer_unlinked_during_its_upload_is_removed_after_the_upload() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.step(|q, now| q.handle_unlink_layers(now, &[layer(1)])).unwrap();
    h.input(UploadInput::RemoveLocal(layer(1))).unwrap();
    assert!(h.local.contains(&layer(1)), "removed under its upload");
    assert_eq!(h.q.local_removals_waiting(), 1);
    let i = h.names().iter().position(|n| !n.starts_with("index")).expect("the layer upload");
    h.complete(i, Finish::Ok);
    assert!(!h.local.contains(&layer(1)), "not removed once the upload ended");
    assert_eq!(h.q.local_removals_waiting(), 0);
    h.settle();
    assert_eq!(h.q.state(), &QueueState::Active);
    let key = layer_key(TENANT, TIMELINE, &layer(1), gen_(1));
    assert!(!h.store.contains_key(&key), "the unlinked layer is deleted after");
}

/// The upload of an unlinked layer ends in every way (a failure is not retried) or
/// is dropped by a stop; each releases the waiting removal. A layer with no upload
/// left (queued only: the unlink dropped it) is removed at once.
#[test]
fn a_waiting_local_removal_goes_when_the_upload_ends_in_any_way() {
    for how in [Finish::Transient, Finish::LostResponse, Finish::Permanent, Finish::Failed(3)] {
        let mut h = started();
        h.add(1, 10).unwrap();
        h.step(|q, now| q.handle_unlink_layers(now, &[layer(1)])).unwrap();
        h.input(UploadInput::RemoveLocal(layer(1))).unwrap();
        assert!(h.local.contains(&layer(1)), "{how:?}: removed under its upload");
        let i = h.names().iter().position(|n| !n.starts_with("index")).expect("the layer upload");
        h.complete(i, how);
        assert!(!h.local.contains(&layer(1)), "{how:?}: the removal still waits");
    }
    let mut h = started();
    for i in 1..=3 {
        h.add(i, 10).unwrap(); // the concurrency is 2: layer 3 is queued
    }
    h.step(|q, now| q.handle_unlink_layers(now, &[layer(2), layer(3)])).unwrap();
    h.input(UploadInput::RemoveLocal(layer(3))).unwrap();
    assert!(!h.local.contains(&layer(3)), "a dropped queued upload held the removal");
    h.input(UploadInput::RemoveLocal(layer(2))).unwrap();
    h.input(UploadInput::Stop).unwrap();
    assert!(h.local.contains(&layer(2)), "a stop does not end an upload in flight");
    while !h.outstanding.is_empty() {
        h.complete(0, Finish::Ok);
    }
    assert!(!h.local.contains(&layer(2)), "the stopped queue's upload ended, no removal");
    assert_eq!(h.q.local_removals_waiting(), 0);
}

/// A layer unlinked during its upload, its removal waiting, then added again (its
/// file written again): the waiting removal was for the old copy and is dropped,
/// so the re-added layer keeps its file.
#[test]
fn a_re_added_layer_keeps_the_file_a_waiting_removal_was_asked_for() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.step(|q, now| q.handle_unlink_layers(now, &[layer(1)])).unwrap();
    h.input(UploadInput::RemoveLocal(layer(1))).unwrap();
    h.add(1, 10).unwrap();
    assert_eq!(h.q.local_removals_waiting(), 0);
    h.settle();
    assert!(h.local.contains(&layer(1)), "the re-added layer lost its file");
    assert!(h.q.remote_layers().contains_key(&layer(1)));
}

#[test]
fn re_added_key_whose_deletion_has_not_left_is_taken_back() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.settle();
    h.step(|q, now| q.handle_unlink_layers(now, &[layer(1)])).unwrap();
    h.add(1, 10).unwrap();
    h.settle();
    let key = layer_key(TENANT, TIMELINE, &layer(1), gen_(1));
    assert!(h.store.contains_key(&key));
    assert!(h.q.remote_layers().contains_key(&layer(1)));
}

#[test]
fn re_added_key_already_handed_is_cancelled_and_its_upload_held_for_the_report() {
    for cancel_wins in [false, true] {
        let mut h = started();
        h.add(1, 10).unwrap();
        h.settle();
        h.step(|q, now| q.handle_unlink_layers(now, &[layer(1)])).unwrap();
        h.complete(0, Finish::Ok);
        let key = layer_key(TENANT, TIMELINE, &layer(1), gen_(1));
        let i = h.handed.iter().position(|x| x.key == key).expect("handed");
        h.add(1, 10).unwrap();
        assert!(h.handed[i].cancel_requested, "CancelDeletion emitted");
        assert!(h.outstanding.is_empty(), "re-upload held: {:?}", h.names());
        h.finish_deletion(i, cancel_wins);
        assert_eq!(h.names().len(), 1, "re-upload released after the report");
        h.settle();
        assert!(
            h.store.contains_key(&key),
            "the re-added layer survives (cancel_wins={cancel_wins})"
        );
    }
}

/// Found by the model test (a `Mode(Multi)` between a re-add and the deletion's
/// `Cancelled` report): the report came back as "cancelled for the mode", the key
/// went back to waiting for deletion and the re-upload stayed held for good, so
/// the queue stalled and, back in Single, would have deleted a layer it re-added.
#[test]
fn a_re_added_layer_cancelled_by_a_mode_change_too_is_uploaded_and_never_deleted() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.settle();
    h.step(|q, now| q.handle_unlink_layers(now, &[layer(1)])).unwrap();
    h.complete(0, Finish::Ok);
    let key = layer_key(TENANT, TIMELINE, &layer(1), gen_(1));
    let i = h.handed.iter().position(|x| x.key == key).expect("handed");
    h.add(1, 10).unwrap();
    assert!(h.outstanding.is_empty(), "re-upload held: {:?}", h.names());
    h.input(UploadInput::ModeChanged(AttachMode::Multi)).unwrap();
    h.finish_deletion(i, true);
    assert_eq!(h.names().len(), 1, "re-upload released after the report");
    h.settle();
    h.input(UploadInput::ModeChanged(AttachMode::Single)).unwrap();
    h.settle();
    assert!(h.handed.is_empty(), "the re-added layer is handed for deletion again");
    assert!(h.store.contains_key(&key), "the re-added layer survives");
    assert!(h.q.remote_layers().contains_key(&layer(1)));
}

#[test]
fn s_gen_suffix_layers_keep_the_generation_they_were_written_in() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.settle();
    h.crash_and_recover(|_| true, AttachMode::Single);
    assert_eq!(h.q.generation(), gen_(2));
    assert_eq!(h.q.remote_layers()[&layer(1)].generation, gen_(1));
    h.add(2, 10).unwrap();
    assert_eq!(h.q.remote_layers()[&layer(2)].generation, gen_(2));
    h.step(|q, now| q.handle_unlink_layers(now, &[layer(1)])).unwrap();
    h.settle();
    assert!(!h.store.contains_key(&layer_key(TENANT, TIMELINE, &layer(1), gen_(1))));
    assert!(h.store.contains_key(&layer_key(TENANT, TIMELINE, &layer(2), gen_(2))));
    let (version, index) = h.newest_index(gen_(2)).unwrap();
    // seq 1 re-published the loaded index; the add and the unlink share seq 2.
    assert_eq!(version, IndexVersion { generation: gen_(2), seq: 2 });
    assert_eq!(index.layer_metadata[&layer(2)].generation, gen_(2));
}

#[test]
fn s_projected_visible_follows_a_validation_after_the_index() {
    let mut h = started();
    assert_eq!((h.q.projected_lsn(), h.q.visible_lsn()), (Lsn(0x10), Lsn(0x10)));
    set_md(&mut h, 0x20);
    assert_eq!(h.q.projected_lsn(), Lsn(0x10));
    h.complete(0, Finish::Ok);
    assert_eq!((h.q.projected_lsn(), h.q.visible_lsn()), (Lsn(0x20), Lsn(0x10)));
    let stale = |lsn, generation, valid| LsnValidation {
        tenant: TENANT,
        timeline: TIMELINE,
        generation,
        lsn: Lsn(lsn),
        valid,
    };
    h.step(|q, now| q.handle_lsn_validation(now, stale(0x20, gen_(1), false)));
    assert_eq!(h.q.visible_lsn(), Lsn(0x10));
    h.step(|q, now| q.handle_lsn_validation(now, stale(0x20, gen_(7), true)));
    assert_eq!(h.q.visible_lsn(), Lsn(0x10), "another generation's validation");
    h.step(|q, now| q.handle_lsn_validation(now, stale(0x30, gen_(1), true)));
    assert_eq!(h.q.visible_lsn(), Lsn(0x10), "beyond projected");
    h.validations.clear();
    h.step(|q, now| q.handle_lsn_validation(now, stale(0x20, gen_(1), true)));
    assert_eq!(h.q.visible_lsn(), Lsn(0x20));
}

#[test]
fn recovery_starts_visible_at_zero_and_asks_for_validation() {
    let mut h = started();
    set_md(&mut h, 0x20);
    h.settle();
    h.crash_and_recover(|_| true, AttachMode::Single);
    assert_eq!((h.q.projected_lsn(), h.q.visible_lsn()), (Lsn(0x20), Lsn(0)));
    // The loaded index is re-published under the new generation first.
    assert_eq!(h.names(), ["index#1"]);
    assert!(h.validations.is_empty());
    h.complete(0, Finish::Ok);
    assert_eq!(h.q.latest_durable(), Some(IndexVersion { generation: gen_(2), seq: 1 }));
    assert_eq!(h.validations, [(gen_(2), Lsn(0x20))]);
    h.validate(true);
    assert_eq!(h.q.visible_lsn(), Lsn(0x20));
}

#[test]
fn recovery_in_the_same_generation_continues_the_sequence() {
    let h = started();
    let (version, index) = h.newest_index(gen_(1)).map(|(v, i)| (v, i.clone())).unwrap();
    let q = UploadQueue::recover(
        TENANT,
        TIMELINE,
        gen_(1),
        AttachMode::Single,
        index,
        version,
        test_config(),
    );
    let mut h2 = Harness::with(q);
    set_md(&mut h2, 0x20);
    assert_eq!(h2.names(), ["index#2"]);
}

#[test]
fn transient_errors_retry_after_a_capped_doubling_backoff() {
    let mut h = started();
    h.add(1, 10).unwrap();
    for failures in 1..=6u32 {
        let failed_at = h.now;
        h.complete(0, Finish::Transient);
        assert!(h.outstanding.is_empty());
        let delay = h.q.poll_timeout().unwrap().millis_since(failed_at);
        let reasons: Vec<TimerReason> = h.q.timers().map(|(_, r)| r).collect();
        assert_eq!(reasons, [TimerReason::LayerRetry(layer(1))]);
        assert_eq!(delay, (10u64 << (failures - 1)).min(80));
        assert!(h.fire_timer());
        assert_eq!(h.outstanding.len(), 1);
    }
}

#[test]
fn an_index_retry_reuses_its_sequence_and_a_late_put_cannot_roll_back() {
    let mut h = started();
    set_md(&mut h, 0x20);
    h.complete(0, Finish::Late); // seq 2 given up on, lands later
    assert!(h.fire_timer());
    assert_eq!(h.names(), ["index#2"]);
    h.complete(0, Finish::Ok);
    set_md(&mut h, 0x30);
    h.complete(0, Finish::Ok); // seq 3
    h.apply_late(0);
    let (version, index) = h.newest_index(gen_(1)).unwrap();
    assert_eq!(version.seq, 3);
    assert_eq!(index.disk_consistent_lsn, Lsn(0x30));
}

#[test]
fn a_permanent_error_breaks_the_queue() {
    let mut h = started();
    h.add(1, 10).unwrap();
    let b = h.barrier();
    h.complete(0, Finish::Permanent);
    assert!(matches!(h.q.state(), QueueState::Broken { .. }));
    assert!(h.broken.as_deref().unwrap().contains("403"));
    assert!(matches!(h.barriers[&b], Some(Err(BarrierError::Broken(_)))));
    assert!(matches!(h.add(2, 1), Err(UploadQueueError::Broken(_))));
}

#[test]
fn multi_uploads_but_keeps_its_deletions_until_single() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.settle();
    h.step(|q, now| q.handle_mode_changed(now, AttachMode::Multi));
    h.step(|q, now| q.handle_unlink_layers(now, &[layer(1)])).unwrap();
    h.add(2, 10).unwrap();
    h.settle();
    assert!(h.store.contains_key(&layer_key(TENANT, TIMELINE, &layer(2), gen_(1))));
    assert!(h.store.contains_key(&layer_key(TENANT, TIMELINE, &layer(1), gen_(1))), "kept");
    assert!(!h.q.is_idle(), "deletions are held");
    h.step(|q, now| q.handle_mode_changed(now, AttachMode::Single));
    h.settle();
    assert!(!h.store.contains_key(&layer_key(TENANT, TIMELINE, &layer(1), gen_(1))));
    assert!(h.q.is_idle());
}

#[test]
fn stale_holds_uploads_and_pushes_back_above_the_bound() {
    for mode in [AttachMode::Stale, AttachMode::Emergency] {
        let mut h = started();
        h.step(|q, now| q.handle_mode_changed(now, mode));
        h.add(1, 60).unwrap();
        assert!(h.outstanding.is_empty(), "{mode:?} uploads nothing");
        assert!(!h.backpressure);
        h.add(2, 60).unwrap();
        assert!(h.backpressure && h.q.backpressure(), "120 > 100 bytes held");
        let b = h.barrier();
        h.settle();
        assert_eq!(h.barriers[&b], None, "nothing is durable in {mode:?}");
        h.step(|q, now| q.handle_mode_changed(now, AttachMode::Single));
        assert!(!h.backpressure);
        h.settle();
        assert_eq!(h.barriers[&b], Some(Ok(())));
        assert_eq!(h.newest_index(gen_(1)).unwrap().1.layer_metadata.len(), 2);
    }
}

#[test]
fn stop_drops_queued_work_fails_barriers_and_accepts_in_flight_completions() {
    let mut h = started();
    for i in 1..=4 {
        h.add(i, 10).unwrap();
    }
    let b = h.barrier();
    h.step(|q, now| q.handle_stop(now));
    assert_eq!(h.barriers[&b], Some(Err(BarrierError::Stopped)));
    // Two queued layers and four index snapshots (each waits for one more layer).
    assert_eq!(h.q.dropped_count(), 6);
    assert_eq!(h.outstanding.len(), 2);
    h.complete(0, Finish::Ok);
    h.complete(0, Finish::Transient);
    assert!(h.q.is_idle());
    assert_eq!(h.add(9, 1), Err(UploadQueueError::Stopped));
    let b2 = h.barrier();
    assert_eq!(h.barriers[&b2], Some(Err(BarrierError::Stopped)));
}

#[test]
fn timeline_deletion_writes_the_tombstone_first_and_keeps_it() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.add(2, 10).unwrap();
    h.settle();
    h.add(3, 10).unwrap(); // in flight when the deletion starts
    h.delete_timeline().unwrap();
    assert_eq!(h.names(), ["0000000000000006-0000000000000007", "index#4"]);
    assert!(!h.tombstone_durable);
    h.complete(1, Finish::Ok); // the tombstone
    assert!(h.tombstone_durable, "TombstoneDurable is reported once the tombstone is durable");
    let (_, newest) = h.newest_index(gen_(1)).unwrap();
    assert!(newest.deleted_at.is_some() && newest.layer_metadata.is_empty());
    assert!(h.handed.is_empty(), "layers wait for the in-flight upload");
    h.complete(0, Finish::Ok);
    let names = handed_names(&h);
    // Three layers, then index#3 (#1 and #2 went when #3 became durable).
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names[..3].iter().all(|n| n.contains("__")));
    assert!(names[3].starts_with("index_part"));
    // An object an earlier run left behind, which only a listing finds.
    let orphan = layer_key(TENANT, TIMELINE, &layer(9), gen_(1));
    let meta = crate::index_part::LayerMeta { file_size: 1, generation: gen_(1), crc32c: 0 };
    h.store.insert(orphan.clone(), Obj::Layer(meta));
    assert_eq!(h.listings.len(), 1);
    h.complete_listing(0, false);
    assert!(h.fire_timer(), "the listing is retried after a backoff");
    h.complete_listing(0, true);
    assert!(h.handed.iter().any(|x| x.key == orphan));
    while !h.handed.is_empty() {
        assert!(!h.deleted, "deleted before every object was");
        h.finish_deletion(0, false);
        let (_, newest) = h.newest_index(gen_(1)).expect("the tombstone stays while objects exist");
        assert!(newest.deleted_at.is_some());
    }
    assert!(h.deleted);
    assert_eq!(h.q.state(), &QueueState::Deleted);
    // Only the tombstone is left, for good: a late PUT of an older index can never
    // outrank it.
    assert_eq!(h.store.len(), 1, "{:?}", h.store.keys().collect::<Vec<_>>());
    let (_, newest) = h.newest_index(gen_(1)).unwrap();
    assert!(newest.deleted_at.is_some());
}

#[test]
fn timeline_deletion_needs_single_and_aborts_on_a_mode_change() {
    let mut h = started();
    h.step(|q, now| q.handle_mode_changed(now, AttachMode::Multi));
    assert_eq!(h.delete_timeline(), Err(UploadQueueError::NotSingle(AttachMode::Multi)));
    h.step(|q, now| q.handle_mode_changed(now, AttachMode::Single));
    h.delete_timeline().unwrap();
    h.step(|q, now| q.handle_mode_changed(now, AttachMode::Stale));
    assert_eq!(h.q.state(), &QueueState::Stopped);
    assert_eq!(h.aborted, Some(UploadQueueError::ModeChangedDuringDeletion(AttachMode::Stale)));
}

#[test]
fn a_recovered_tombstone_refuses_changes() {
    let mut h = started();
    h.delete_timeline().unwrap();
    h.complete(0, Finish::Ok);
    h.crash_and_recover(|_| false, AttachMode::Single);
    assert_eq!(h.q.state(), &QueueState::Tombstoned);
    assert_eq!(h.add(1, 1), Err(UploadQueueError::Deleted));
}

/// A deletion interrupted by a crash after its tombstone was durable resumes on the
/// next start: a tombstone of the new generation, then everything under the prefix
/// (found by the listing, since the recovered tombstone names no layer), then the
/// tombstones. Without the resume the layers stay in remote storage forever.
#[test]
fn an_interrupted_timeline_deletion_resumes_after_a_restart() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.add(2, 10).unwrap();
    h.settle();
    h.add(3, 10).unwrap(); // in flight: the layers wait for it
    h.delete_timeline().unwrap();
    h.complete(1, Finish::Ok); // the tombstone
    assert!(h.handed.is_empty());
    h.crash_and_recover(|_| true, AttachMode::Single);
    assert_eq!(h.q.state(), &QueueState::Tombstoned);
    assert!(
        h.store.len() > 2,
        "layers and indexes are left: {:?}",
        h.store.keys().collect::<Vec<_>>()
    );
    h.delete_timeline().unwrap();
    for _ in 0..50 {
        if h.deleted {
            break;
        }
        if !h.outstanding.is_empty() {
            h.complete(0, Finish::Ok);
        } else if !h.listings.is_empty() {
            h.complete_listing(0, true);
        } else if !h.handed.is_empty() {
            h.finish_deletion(0, false);
        }
    }
    assert!(h.deleted, "deletion did not finish: {:?}", h.q.state());
    assert_eq!(
        h.store.len(),
        1,
        "only the new tombstone: {:?}",
        h.store.keys().collect::<Vec<_>>()
    );
}

#[test]
fn a_key_holds_one_content() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.settle();
    h.step(|q, now| q.handle_unlink_layers(now, &[layer(1)])).unwrap();
    // The durable index still names layer 1 with size 10.
    assert_eq!(h.add(1, 11), Err(UploadQueueError::ContentChanged(layer(1))));
    h.add(1, 10).unwrap();
}

#[test]
fn illegal_inputs_are_typed_errors() {
    let mut h = started();
    h.add(1, 10).unwrap();
    assert_eq!(h.add(1, 10), Err(UploadQueueError::LayerAlreadyPresent(layer(1))));
    let unlink = h.step(|q, now| q.handle_unlink_layers(now, &[layer(1), layer(5)]));
    assert_eq!(unlink, Err(UploadQueueError::UnknownLayer(layer(5))));
    assert!(h.q.remote_layers().contains_key(&layer(1)), "all or nothing");
    let stray = h.step(|q, now| q.handle_completion(now, crate::id::OpId(999), Ok(())));
    assert_eq!(stray, Err(UploadQueueError::NotInFlight(crate::id::OpId(999))));
    let back = h.step(|q, now| q.handle_set_metadata(now, md(0x1)));
    assert_eq!(back, Err(UploadQueueError::LsnWentBack { current: Lsn(0x10), new: Lsn(0x1) }));
}

/// Seed 23: a deletion requested while a layer upload and an index naming it were
/// queued behind each other.
#[test]
fn deletion_with_a_layer_in_flight_and_metadata_queued_uploads_the_tombstone() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.step(|q, now| q.handle_set_metadata(now, md(0x100))).unwrap();
    h.delete_timeline().unwrap();
    let names = h.names();
    assert!(names.iter().any(|n| n.starts_with("index")), "no tombstone upload: {names:?}");
}

/// A named timer does its own retry only: with two layer retries due at the same
/// instant, firing one re-uploads that layer and leaves the other in backoff.
#[test]
fn a_fired_timer_retries_only_what_it_names() {
    let mut h = started();
    h.add(1, 10).unwrap();
    h.add(2, 10).unwrap();
    assert_eq!(h.outstanding.len(), 2);
    h.complete(0, Finish::Transient);
    h.complete(0, Finish::Transient);
    let timers: Vec<(crate::time::Instant, TimerReason)> = h.q.timers().collect();
    let due = h.now.plus_millis(10);
    assert_eq!(
        timers,
        [(due, TimerReason::LayerRetry(layer(1))), (due, TimerReason::LayerRetry(layer(2)))]
    );
    h.now = due;
    h.step(|q, now| q.handle_timeout(now, TimerReason::LayerRetry(layer(2))));
    assert_eq!(h.outstanding.len(), 1, "only the named layer is retried");
    assert!(h.outstanding[0].key.file_name().starts_with(&layer(2).to_string()));
    let left: Vec<TimerReason> = h.q.timers().map(|(_, r)| r).collect();
    assert_eq!(left, [TimerReason::LayerRetry(layer(1))]);
    // A timer that is not set (the index retry) changes nothing.
    h.step(|q, now| {
        q.handle_timeout(now, TimerReason::IndexRetry(IndexVersion { generation: gen_(1), seq: 9 }))
    });
    h.step(|q, now| q.handle_timeout(now, TimerReason::ListingRetry));
    assert_eq!(h.outstanding.len(), 1);
    h.step(|q, now| q.handle_timeout(now, TimerReason::LayerRetry(layer(1))));
    assert_eq!(h.outstanding.len(), 2);
    assert_eq!(h.q.next_timer(), None);
}
