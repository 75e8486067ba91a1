//! Checks that can fail: each check of [`UploadQueue::check_invariants`] fires on
//! a state that breaks it. Every fixture passes every check (the harness runs them
//! after each input); each test breaks exactly one rule and names the check it
//! expects.

use super::harness::*;
use super::machine::{IndexState, JobState};
use super::*;
use crate::id::OpId;
use crate::index_part::IndexVersion;
use crate::lsn::Lsn;
use crate::remote_path::{RemoteKey, layer_key};

/// Index #1 durable; layers 1 and 2 uploading, layer 3 queued (the concurrency is
/// 2), a snapshot at 0x20 waiting for all three.
fn busy() -> UploadQueue {
    let mut h = Harness::new_timeline(AttachMode::Single);
    h.settle();
    for i in 1..=3 {
        h.add(i, 10).unwrap();
    }
    h.step(|q, now| q.handle_set_metadata(now, md(0x20))).unwrap();
    h.q.check_invariants();
    h.q
}

/// Index #2 (0x20) in flight, a snapshot at 0x30 queued behind it, a barrier on it.
fn indexing() -> UploadQueue {
    let mut h = Harness::new_timeline(AttachMode::Single);
    h.settle();
    h.step(|q, now| q.handle_set_metadata(now, md(0x20))).unwrap();
    h.step(|q, now| q.handle_set_metadata(now, md(0x30))).unwrap();
    h.barrier();
    h.q.check_invariants();
    assert!(h.q.index_flight.is_some() && !h.q.tickets.is_empty() && !h.q.barriers.is_empty());
    h.q
}

/// Everything durable: layer 1 named by the durable index at 0x20, projected and
/// visible at 0x20.
fn settled() -> UploadQueue {
    let mut h = Harness::new_timeline(AttachMode::Single);
    h.settle();
    h.add(1, 10).unwrap();
    h.step(|q, now| q.handle_set_metadata(now, md(0x20))).unwrap();
    h.settle();
    h.q.check_invariants();
    h.q
}

fn stopped() -> UploadQueue {
    let mut h = Harness::new_timeline(AttachMode::Single);
    h.settle();
    h.step(|q, now| q.handle_stop(now));
    h.q.check_invariants();
    h.q
}

fn deleting() -> UploadQueue {
    let mut h = Harness::new_timeline(AttachMode::Single);
    h.settle();
    h.delete_timeline().unwrap();
    h.q.check_invariants();
    assert!(matches!(h.q.state, QueueState::Deleting(_)));
    h.q
}

fn key_of(q: &UploadQueue, i: u64) -> RemoteKey {
    layer_key(q.tenant, q.timeline, &layer(i), q.generation)
}

macro_rules! fires {
    ($name:ident, $expected:literal, $fixture:ident, |$q:ident| $corrupt:block) => {
        #[test]
        #[should_panic(expected = $expected)]
        fn $name() {
            let mut $q = $fixture();
            $corrupt
            $q.check_invariants();
        }
    };
}

fires!(layers_in_flight_drifts, "layers_in_flight drifted", busy, |q| {
    q.layers_in_flight = 1;
});

fires!(too_many_layer_uploads, "layer uploads in flight", busy, |q| {
    q.jobs.get_mut(&layer(3)).unwrap().state = JobState::InFlight(OpId(99));
    q.layers_in_flight = 3;
});

fires!(held_bytes_drift, "held_bytes drifted", busy, |q| {
    q.held_bytes += 1;
});

fires!(a_job_of_another_generation, "S-GEN-SUFFIX: job", busy, |q| {
    q.jobs.get_mut(&layer(3)).unwrap().meta.generation = gen_(9);
});

fires!(a_wanted_job_not_in_the_set, "not in set", busy, |q| {
    q.layers.remove(&layer(3));
});

fires!(an_unwanted_job_not_in_flight, "not in flight", busy, |q| {
    q.jobs.get_mut(&layer(3)).unwrap().wanted = false;
    q.held_bytes -= 10;
});

fires!(an_index_ticket_not_newer, "index ticket not newer", indexing, |q| {
    q.durable_ticket = q.index_flight.as_ref().unwrap().ticket;
});

fires!(index_seq_differs_from_key_seq, "IndexPart.seq must equal the key's seq", indexing, |q| {
    q.index_flight.as_mut().unwrap().index.seq += 1;
});

fires!(an_index_of_a_foreign_generation, "index of a foreign generation", indexing, |q| {
    q.index_flight.as_mut().unwrap().version.generation = gen_(9);
});

fires!(a_seq_handed_out_twice, "seq handed out twice", indexing, |q| {
    q.next_seq = q.index_flight.as_ref().unwrap().version.seq;
});

fires!(tickets_out_of_order, "S-IDX-ORDER: ticket", indexing, |q| {
    q.tickets[0].ticket = q.index_flight.as_ref().unwrap().ticket;
});

fires!(a_ticket_beyond_last_ticket, "ticket beyond last_ticket", indexing, |q| {
    q.last_ticket = 1;
});

fires!(an_index_flight_older_than_durable, "index flight older than durable", indexing, |q| {
    let seq = q.index_flight.as_ref().unwrap().version.seq;
    q.durable.as_mut().unwrap().version.seq = seq;
});

fires!(a_snapshot_needing_a_layer_without_a_job, "has no job", busy, |q| {
    q.tickets.back_mut().unwrap().needs.insert(layer(9));
});

fires!(a_named_key_handed_for_deletion, "S-DEL-AFTER-INDEX", settled, |q| {
    let key = key_of(&q, 1);
    q.handed.insert(key);
});

fires!(a_layer_in_the_set_handed_without_being_held, "not held for its report", busy, |q| {
    let key = key_of(&q, 3);
    q.handed.insert(key);
});

fires!(visible_beyond_projected, "S-PROJECTED: visible > projected", settled, |q| {
    q.visible = Lsn(q.projected.0 + 1);
});

fires!(visible_never_validated, "visible never validated", settled, |q| {
    q.visible = q.projected;
    q.validation_requested = Lsn(0);
});

fires!(projected_beyond_disk_consistent, "S-PROJECTED: projected", settled, |q| {
    q.projected = Lsn(q.metadata.disk_consistent_lsn.0 + 1);
});

fires!(backpressure_while_uploading, "backpressure while uploading", settled, |q| {
    q.backpressure_on = true;
});

fires!(a_reached_barrier_still_waits, "a reached barrier still waits", settled, |q| {
    q.barriers.push((BarrierId(99), q.durable_ticket));
});

fires!(a_barrier_on_a_stopped_queue, "barrier waits on a stopped queue", stopped, |q| {
    q.barriers.push((BarrierId(99), q.durable_ticket + 1));
});

fires!(an_index_queued_on_a_stopped_queue, "index queued on a stopped queue", stopped, |q| {
    let mut ticket = indexing().tickets[0].clone();
    ticket.ticket = q.durable_ticket + 1;
    q.last_ticket = ticket.ticket;
    q.tickets.push_back(ticket);
});

fires!(deletions_kept_on_a_stopped_queue, "deletions kept on a stopped queue", stopped, |q| {
    q.waiting_deletions.insert((layer(1), gen_(1)), 1);
});

fires!(deleting_outside_single, "deleting outside Single", deleting, |q| {
    q.mode = AttachMode::Multi;
});

fires!(deleting_with_a_layer_set, "deleting with a layer set", deleting, |q| {
    let meta = busy().layers[&layer(1)];
    q.layers.insert(layer(1), meta);
});

fires!(queued_work_that_nothing_moves, "queued work with nothing in flight", busy, |q| {
    for job in q.jobs.values_mut() {
        job.state = JobState::Queued;
    }
    q.layers_in_flight = 0;
});

fires!(a_ready_index_not_started, "a ready index was not started", indexing, |q| {
    q.index_flight.as_mut().unwrap().state = IndexState::Ready;
    // A deletion report awaited: the queue is not stuck, only the index is.
    let key = key_of(&q, 9);
    q.handed.insert(key);
});

fires!(a_stuck_deletion, "is stuck", settled, |q| {
    q.waiting_deletions.insert((layer(7), gen_(1)), q.durable_ticket);
});

fires!(an_old_index_not_handed, "old index not handed", settled, |q| {
    q.index_keys.insert(IndexVersion { generation: q.generation, seq: 0 });
});

#[test]
#[should_panic(expected = "LOCAL-READ: the removal of")]
fn a_local_removal_waiting_for_no_upload_fires() {
    let mut q = settled();
    q.local_removals.insert(layer(1));
    q.check_invariants();
}
