//! Checks that can fail: each check of [`Timeline::check_invariants`] (with its
//! flush, GC and job parts) fires on a state that breaks it. Every fixture passes
//! every check (the harness runs them after each input); each test breaks one rule
//! and names the check it expects.

use super::*;
use crate::timeline::jobs::JobGate;
use crate::timeline::layer_map::Residence;
use crate::timeline::read::Reader;

/// Records at 11 and 12 flushed to a layer (disk_consistent 12), one at 20 in the
/// open in-memory layer.
fn flushed() -> Timeline {
    let mut h = Harness::new(Lsn(10), small_config());
    h.ingest(vec![rec(1, 11, img(b"a")), rec(2, 12, img(b"b"))]).unwrap();
    h.flush();
    h.ingest(vec![rec(1, 20, app(b"c"))]).unwrap();
    h.tl.check_invariants();
    h.tl
}

/// Records at 11 and 12 frozen, their layer write in flight.
fn writing_layer() -> Harness {
    let mut h = Harness::new(Lsn(10), small_config());
    h.ingest(vec![rec(1, 11, img(b"a")), rec(2, 12, img(b"b"))]).unwrap();
    h.manual = true;
    h.tl.handle_flush(h.now);
    h.drain();
    assert!(matches!(h.tl.flush, FlushState::WritingLayer { .. }), "{:?}", h.tl.flush);
    h
}

/// The layer written, the metadata write at 12 in flight.
fn writing_metadata() -> Timeline {
    let mut h = writing_layer();
    assert!(h.complete_next());
    assert!(matches!(h.tl.flush, FlushState::WritingMetadata { .. }), "{:?}", h.tl.flush);
    h.tl
}

fn a_layer(tl: &Timeline) -> LayerName {
    tl.layers.layers.keys().next().expect("a layer").clone()
}

macro_rules! fires {
    ($name:ident, $expected:literal, $fixture:expr, |$tl:ident| $corrupt:block) => {
        #[test]
        #[should_panic(expected = $expected)]
        fn $name() {
            let mut $tl: Timeline = $fixture;
            $corrupt
            $tl.check_invariants();
        }
    };
}

fires!(disk_consistent_above_last_ingested, "S-PROJECTED: disk_consistent", flushed(), |tl| {
    tl.metadata.disk_consistent_lsn = Lsn(21);
});

fires!(
    in_memory_layers_not_contiguous,
    "in-memory layers are not contiguous",
    writing_layer().tl,
    |tl| {
        tl.open.start = Lsn(tl.open.start.0 + 1);
    }
);

fires!(an_in_memory_layer_not_above_durable, "not above disk_consistent", flushed(), |tl| {
    tl.open.start = tl.metadata.disk_consistent_lsn;
});

fires!(
    a_record_above_last_ingested,
    "outside its in-memory layer or above last ingested",
    flushed(),
    |tl| {
        tl.last_ingested = Lsn(19);
    }
);

fires!(an_open_layer_with_an_end, "only frozen in-memory layers have an end", flushed(), |tl| {
    tl.open.end = Some(Lsn(100));
});

fires!(an_empty_frozen_layer, "an empty frozen layer", writing_layer().tl, |tl| {
    tl.frozen[0].records.clear();
    tl.frozen[0].last_lsn = None;
});

fires!(
    frozen_work_with_the_flush_idle,
    "flush work queued while the flush is idle",
    writing_layer().tl,
    |tl| {
        tl.flush = FlushState::Idle;
    }
);

fires!(a_satisfied_flush_request_unanswered, "satisfied but not answered", flushed(), |tl| {
    tl.flush_requests.insert(FlushId(99), Lsn(11));
});

fires!(
    writing_a_layer_with_nothing_frozen,
    "writing a layer with nothing frozen",
    writing_layer().tl,
    |tl| {
        let start = tl.frozen[0].start;
        tl.frozen.clear();
        tl.open.start = start;
    }
);

fires!(a_layer_write_op_untracked, "layer write op untracked", writing_layer().tl, |tl| {
    let op = tl.flush.op().unwrap();
    tl.ops.insert(op, OpKind::WriteMetadata);
});

fires!(
    a_layer_backoff_with_nothing_frozen,
    "a layer backoff with nothing frozen",
    writing_layer().tl,
    |tl| {
        let FlushState::WritingLayer { op, unrecorded, .. } = tl.flush.clone() else { panic!() };
        tl.ops.remove(&op);
        let start = tl.frozen[0].start;
        tl.frozen.clear();
        tl.open.start = start;
        tl.flush = FlushState::LayerBackoff { until: Instant(100), failures: 1, unrecorded };
    }
);

fires!(a_metadata_op_untracked, "metadata op untracked", writing_metadata(), |tl| {
    let op = tl.flush.op().unwrap();
    tl.ops.insert(op, OpKind::WriteLayer);
});

fires!(a_metadata_write_not_ahead, "not ahead", writing_metadata(), |tl| {
    let FlushState::WritingMetadata { metadata, .. } = &tl.flush else { panic!() };
    tl.metadata.disk_consistent_lsn = metadata.disk_consistent_lsn;
    tl.flush_requests.clear();
});

fires!(a_metadata_retry_not_ahead, "metadata retry at", writing_metadata(), |tl| {
    let FlushState::WritingMetadata { op, metadata, .. } = tl.flush.clone() else { panic!() };
    tl.ops.remove(&op);
    tl.metadata.disk_consistent_lsn = metadata.disk_consistent_lsn;
    tl.flush_requests.clear();
    tl.flush = FlushState::MetadataBackoff { until: Instant(100), metadata, failures: 1 };
});

fires!(a_gc_metadata_op_untracked, "GC metadata op untracked", flushed(), |tl| {
    let metadata = tl.metadata;
    tl.gc = GcState::WritingMetadata { op: OpId(999), metadata, victims: Vec::new() };
});

fires!(gc_moving_disk_consistent, "GC moves disk_consistent", flushed(), |tl| {
    let mut metadata = tl.metadata;
    metadata.disk_consistent_lsn = Lsn(11);
    tl.ops.insert(OpId(999), OpKind::GcMetadata);
    tl.gc = GcState::WritingMetadata { op: OpId(999), metadata, victims: Vec::new() };
});

fires!(two_metadata_writers, "two metadata writers", writing_metadata(), |tl| {
    let metadata = tl.metadata;
    tl.ops.insert(OpId(999), OpKind::GcMetadata);
    tl.gc = GcState::WritingMetadata { op: OpId(999), metadata, victims: Vec::new() };
});

fires!(a_gc_cutoff_above_durable, "above durable", flushed(), |tl| {
    tl.metadata.gc_cutoff_lsn = Lsn(13);
});

fires!(too_many_lsn_time_samples, "too many LSN time samples", flushed(), |tl| {
    tl.lsn_times = (0..=crate::timeline::gc::MAX_LSN_TIME_SAMPLES as u64)
        .map(|i| (Instant(i), Lsn(i)))
        .collect();
});

fires!(lsn_time_samples_out_of_order, "LSN time samples out of order", flushed(), |tl| {
    tl.lsn_times = [(Instant(1), Lsn(12)), (Instant(2), Lsn(11))].into();
});

fires!(
    an_lsn_time_sample_above_last_ingested,
    "an LSN time sample above last ingested",
    flushed(),
    |tl| {
        tl.lsn_times = [(Instant(1), Lsn(21))].into();
    }
);

fires!(a_job_busy_without_its_grant, "job busy/gate mismatch", flushed(), |tl| {
    tl.jobs.insert(BackgroundJob::Compaction, JobGate::Running);
});

fires!(a_job_granted_but_not_started, "granted but not started", flushed(), |tl| {
    tl.jobs.insert(BackgroundJob::Eviction, JobGate::Granted);
});

fires!(a_write_the_flush_does_not_own, "is a write the flush does not own", flushed(), |tl| {
    tl.ops.insert(OpId(999), OpKind::WriteLayer);
});

fires!(an_op_serving_a_finished_read, "serves a finished read", flushed(), |tl| {
    tl.ops.insert(OpId(999), OpKind::Redo { read: Reader::Caller(ReadId(99)) });
});

fires!(a_download_of_a_resident_layer, "downloads", flushed(), |tl| {
    let name = a_layer(&tl);
    tl.ops.insert(OpId(999), OpKind::Download { name });
});

fires!(a_tracked_layer_not_mapped, "tracked but not mapped", flushed(), |tl| {
    let name = a_layer(&tl);
    tl.layers.layers.remove(&name);
    tl.remote_durable.insert(name);
});

fires!(a_download_without_its_op, "is downloading without its download op", flushed(), |tl| {
    let name = a_layer(&tl);
    tl.layers.layers.get_mut(&name).unwrap().residence = Residence::Downloading { op: OpId(999) };
});

fires!(
    size_reads_differing,
    "size reads in the read table and in the size tracker differ",
    flushed(),
    |tl| {
        let read = crate::timeline::read::Read::new(Key(5), Lsn(30), Instant(0), Instant(100));
        tl.reads.insert(Reader::SizeProbe(Key(5)), read);
    }
);

/// Three L0s flushed; a compaction granted, its first input being read.
fn compacting() -> Harness {
    let mut h = Harness::new(Lsn(0), compaction::config(2));
    h.grant_jobs = false;
    compaction::fill(&mut h, 3, 4);
    h.manual = true;
    h.grant(BackgroundJob::Compaction);
    h.drain();
    assert!(
        matches!(h.tl.compaction, CompactionState::Loading { op: Some(_), .. }),
        "{:?}",
        h.tl.compaction
    );
    h.tl.check_invariants();
    h
}

/// Every input loaded, the first output being written.
fn compaction_writing() -> Timeline {
    let mut h = compacting();
    for _ in 0..20 {
        if matches!(h.tl.compaction, CompactionState::Writing { .. }) {
            return h.tl;
        }
        assert!(h.complete_next(), "{:?}", h.tl.compaction);
    }
    panic!("never writing: {:?}", h.tl.compaction);
}

fn loading_job(
    tl: &mut Timeline,
) -> (&mut Box<crate::timeline::compaction::Job>, &mut Option<OpId>) {
    match &mut tl.compaction {
        CompactionState::Loading { job, op } => (job, op),
        other => panic!("{other:?}"),
    }
}

fires!(a_compaction_input_not_l0, "is not an L0", compacting().tl, |tl| {
    let image = LayerName::Image {
        keys: crate::layer_name::KeyRange::new(Key(0), Key(10)).unwrap(),
        lsn: Lsn(5),
    };
    let (job, _) = loading_job(&mut tl);
    job.inputs.push(image);
});

fires!(a_compaction_input_leaving_the_map, "left the map", compacting().tl, |tl| {
    let (job, _) = loading_job(&mut tl);
    let last = job.inputs.last().unwrap().clone();
    tl.layers.layers.remove(&last);
});

fires!(
    loading_with_every_input_loaded,
    "loading a job with every input loaded",
    compacting().tl,
    |tl| {
        let (job, _) = loading_job(&mut tl);
        job.loaded = vec![Vec::new(); job.inputs.len()];
    }
);

fires!(a_compaction_read_op_untracked, "compaction read op untracked", compacting().tl, |tl| {
    let (_, op) = loading_job(&mut tl);
    let op = op.unwrap();
    tl.ops.insert(op, OpKind::ImageRedo);
});

fires!(waiting_for_an_input_not_downloading, "which is not downloading", compacting().tl, |tl| {
    let (_, op) = loading_job(&mut tl);
    let op = op.take().unwrap();
    tl.ops.remove(&op);
});

fires!(redoing_with_nothing_to_redo, "redoing with nothing to redo", compacting().tl, |tl| {
    let CompactionState::Loading { job, op } = tl.compaction.clone() else { panic!() };
    let op = op.unwrap();
    tl.ops.insert(op, OpKind::ImageRedo);
    tl.compaction = CompactionState::Redoing { job, op };
});

fires!(
    a_compaction_write_op_untracked,
    "compaction write op untracked",
    compaction_writing(),
    |tl| {
        let CompactionState::Writing { op, .. } = &tl.compaction else { panic!() };
        tl.ops.insert(*op, OpKind::ImageRedo);
    }
);

fires!(writing_past_the_outputs, "writing past the job's outputs", compaction_writing(), |tl| {
    let CompactionState::Writing { job, .. } = &mut tl.compaction else { panic!() };
    job.written = job.outputs.len();
});

fires!(
    a_backoff_past_the_outputs,
    "a backoff past the job's outputs",
    compaction_writing(),
    |tl| {
        let CompactionState::Writing { mut job, op, .. } = tl.compaction.clone() else { panic!() };
        tl.ops.remove(&op);
        job.written = job.outputs.len();
        tl.compaction =
            CompactionState::Backoff { until: Instant(1 << 40), failures: 1, job: Some(job) };
    }
);

fires!(an_l1_straddling_a_full_image_set, "straddles the image set", flushed(), |tl| {
    let full = Key::full_range();
    let entry = tl.layers.layers.values().next().unwrap().clone();
    let image = LayerName::Image {
        keys: crate::layer_name::KeyRange::new(full.start, full.end).unwrap(),
        lsn: Lsn(5),
    };
    let keys = crate::layer_name::KeyRange::new(Key(0), Key(10)).unwrap();
    let l1 =
        LayerName::Delta { keys, lsns: crate::layer_name::LsnRange::new(Lsn(3), Lsn(8)).unwrap() };
    tl.layers.layers.insert(image, entry.clone());
    tl.layers.layers.insert(l1, entry);
});

fires!(an_image_redo_op_untracked, "image redo op untracked", compacting().tl, |tl| {
    let CompactionState::Loading { mut job, op } = tl.compaction.clone() else { panic!() };
    let request = crate::redo::RedoRequest { base: Some(b"a".to_vec()), deltas: Vec::new() };
    job.redo.push_back((Key(1), request));
    tl.compaction = CompactionState::Redoing { job, op: op.unwrap() };
});
