//! Throughput: the machine next to a naive reference queue (the FIFO scheme of the
//! reference implementation: only the head may start; layers overlap, an index
//! waits for everything before it, a delete waits for every upload) doing the same
//! work in the same run. Invariant checks are not called here.
//!
//! Run: `cargo test -p strata-core --lib --release upload_queue::bench -- --ignored --nocapture`

use super::harness::{TENANT, TIMELINE, gen_, layer, md};
use super::*;
use crate::deletion_queue::{DeletionOutcome, DeletionReport, LsnValidation};
use crate::generation::Generation;
use crate::index_part::{IndexPart, LayerMeta};
use crate::layer_name::LayerName;
use crate::metadata::TimelineMetadata;
use crate::remote_path::{RemoteKey, layer_key};
use crate::time::Instant;
use std::collections::{BTreeMap, VecDeque};

/// Layers flushed per run.
const LAYERS: u64 = 20_000;
/// A compaction unlinks this many of the oldest layers.
const COMPACTION_BATCH: u64 = 10;
/// Layers kept in the set (the set stays about this size).
const LIVE_LAYERS: u64 = 200;

enum NaiveOp {
    Layer,
    Index(#[expect(dead_code, reason = "the snapshot is the work being measured")] IndexPart),
    Delete(#[expect(dead_code, reason = "handed to a deletion queue")] Vec<RemoteKey>),
}

impl NaiveOp {
    fn is_layer(&self) -> bool {
        matches!(self, NaiveOp::Layer)
    }
}

/// The naive model: a FIFO whose head starts when the reference's rules allow.
struct Naive {
    generation: Generation,
    layers: BTreeMap<LayerName, LayerMeta>,
    metadata: TimelineMetadata,
    queued: VecDeque<NaiveOp>,
    in_progress: BTreeMap<u64, NaiveOp>,
    next_id: u64,
    started: VecDeque<u64>,
}

impl Naive {
    fn add_layer(&mut self, name: LayerName, meta: LayerMeta) {
        self.layers.insert(name, meta);
        self.queued.push_back(NaiveOp::Layer);
        self.launch();
    }

    fn schedule_index(&mut self) {
        let mut index = IndexPart::empty(self.metadata);
        index.layer_metadata = self.layers.clone();
        self.queued.push_back(NaiveOp::Index(index));
    }

    fn set_metadata(&mut self, md: TimelineMetadata) {
        self.metadata = md;
        self.schedule_index();
        self.launch();
    }

    fn unlink(&mut self, names: &[LayerName]) {
        let mut keys = Vec::new();
        for n in names {
            if let Some(m) = self.layers.remove(n) {
                keys.push(layer_key(TENANT, TIMELINE, n, m.generation));
            }
        }
        self.schedule_index();
        self.queued.push_back(NaiveOp::Delete(keys));
        self.launch();
    }

    fn launch(&mut self) {
        while let Some(front) = self.queued.front() {
            let ok = match front {
                NaiveOp::Layer => true,
                NaiveOp::Index(_) => self.in_progress.is_empty(),
                NaiveOp::Delete(_) => {
                    self.in_progress.values().all(|o| matches!(o, NaiveOp::Delete(_)))
                }
            };
            if !ok {
                break;
            }
            let op = self.queued.pop_front().expect("front exists");
            let _ = op.is_layer();
            self.next_id += 1;
            self.in_progress.insert(self.next_id, op);
            self.started.push_back(self.next_id);
        }
    }

    fn complete(&mut self, id: u64) {
        self.in_progress.remove(&id);
        self.launch();
    }
}

fn run_naive() -> u64 {
    let mut n = Naive {
        generation: gen_(1),
        layers: BTreeMap::new(),
        metadata: md(0x10),
        queued: VecDeque::new(),
        in_progress: BTreeMap::new(),
        next_id: 0,
        started: VecDeque::new(),
    };
    let mut inputs = 0;
    for i in 0..LAYERS {
        let meta = LayerMeta { file_size: 1000, generation: n.generation, crc32c: 0 };
        n.add_layer(layer(i), meta);
        n.set_metadata(md(0x10 + i));
        inputs += 2;
        if i >= LIVE_LAYERS && i % COMPACTION_BATCH == 0 {
            let old: Vec<LayerName> =
                (i - LIVE_LAYERS..i - LIVE_LAYERS + COMPACTION_BATCH).map(layer).collect();
            n.unlink(&old);
            inputs += 1;
        }
        while let Some(id) = n.started.pop_front() {
            n.complete(id);
            inputs += 1;
        }
    }
    inputs
}

fn run_machine() -> u64 {
    let mut q = UploadQueue::new_timeline(
        TENANT,
        TIMELINE,
        gen_(1),
        AttachMode::Single,
        md(0x10),
        UploadQueueConfig::default(),
    );
    let now = Instant::ZERO;
    let mut inputs = 0;
    let mut started = VecDeque::new();
    let drain = |q: &mut UploadQueue, started: &mut VecDeque<crate::id::OpId>| {
        let mut fed = 0;
        loop {
            while let Some(e) = q.poll_effect() {
                match e {
                    UploadEffect::UploadLayer { op, .. } | UploadEffect::UploadIndex { op, .. } => {
                        started.push_back(op)
                    }
                    UploadEffect::HandDeletions { keys, .. } => {
                        for key in keys {
                            let outcome = DeletionOutcome::Executed;
                            let r =
                                DeletionReport { tenant: TENANT, timeline: TIMELINE, key, outcome };
                            q.handle_deletion_report(now, r);
                            fed += 1;
                        }
                    }
                    UploadEffect::ValidateLsn { generation, lsn } => {
                        let v = LsnValidation {
                            tenant: TENANT,
                            timeline: TIMELINE,
                            generation,
                            lsn,
                            valid: true,
                        };
                        q.handle_lsn_validation(now, v);
                        fed += 1;
                    }
                    _ => {}
                }
            }
            let Some(op) = started.pop_front() else { return fed };
            q.handle_completion(now, op, Ok(())).expect("in flight");
            fed += 1;
        }
    };
    for i in 0..LAYERS {
        q.handle_add_layer(now, layer(i), 1000, 0).expect("add");
        q.handle_set_metadata(now, md(0x10 + i)).expect("metadata");
        inputs += 2;
        if i >= LIVE_LAYERS && i % COMPACTION_BATCH == 0 {
            let old: Vec<LayerName> =
                (i - LIVE_LAYERS..i - LIVE_LAYERS + COMPACTION_BATCH).map(layer).collect();
            q.handle_unlink_layers(now, &old).expect("unlink");
            inputs += 1;
        }
        inputs += drain(&mut q, &mut started);
    }
    assert!(q.is_idle());
    inputs
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn bench_machine_vs_naive_model() {
    #[expect(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
    #[expect(clippy::disallowed_types, reason = "a benchmark measures wall time")]
    fn timed(f: fn() -> u64) -> (u64, f64) {
        let start = std::time::Instant::now();
        let inputs = f();
        (inputs, start.elapsed().as_secs_f64())
    }
    let (naive_inputs, naive_s) = timed(run_naive);
    let (machine_inputs, machine_s) = timed(run_machine);
    let naive_rate = LAYERS as f64 / naive_s;
    let machine_rate = LAYERS as f64 / machine_s;
    println!(
        "naive model: {LAYERS} flushes in {naive_s:.3}s = {naive_rate:.0} flushes/s ({:.0} inputs/s)",
        naive_inputs as f64 / naive_s
    );
    println!(
        "machine:     {LAYERS} flushes in {machine_s:.3}s = {machine_rate:.0} flushes/s ({:.0} inputs/s)",
        machine_inputs as f64 / machine_s
    );
    println!("ratio machine/naive: {:.2}x", machine_rate / naive_rate);
}
