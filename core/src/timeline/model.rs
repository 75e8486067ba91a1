//! The timeline's reference model and the step language its property test and fuzz
//! target share: ingest, flushes, reads, timer firings, world faults, held world
//! effects completed in any order (success, any [`IoErrorKind`], or lost), job
//! grants held back, backpressure, mode changes and crashes (the machine dropped,
//! [`Harness::recover`] from what was durable, the client re-sending what it kept).
//!
//! The model is a plain BTreeMap of every acknowledged record ([`Model`]). After
//! every step the harness has run `check_invariants`; [`run`] then checks
//! S-IDX-REF (the upload queue's set is the layer map) and S-DEL-AFTER-INDEX, and
//! compares every answered read with the model: a value must be the model's, an
//! error may only follow an injected fault (never wrong bytes). A refused ingest
//! must have a reason the step sequence explains (backpressure, a disk-full
//! episode, a size read held or failed, a value redo would refuse); everything
//! else must be accepted. At the end faults stop, held effects complete (after a
//! crash if one was lost or the disk ran out), and every key reads back as the
//! model says at every LSN above the GC cutoff.
//!
//! Compiled for tests (`tests/model_tests.rs` draws steps with proptest) and under
//! the `fuzzing` feature (the `timeline` fuzz target draws them with `arbitrary`).

use super::harness::{Harness, World};
use super::*;
use crate::io_error::IoErrorKind;
use crate::redo::{DeltaOp, IngestRecord, Record, RedoError};

/// Keys the steps use (reads go one past them: a key never written).
pub const KEYS: u64 = 6;

/// One step. Indexes pick among what exists, modulo its length.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Step {
    /// Records as (key, LSN step, record): key modulo [`KEYS`], step 1 to 3.
    Ingest(Vec<(u8, u8, Record)>),
    /// `handle_flush`; waited for (timers fired until `FlushDone`) unless effects
    /// are held, lost, or the disk ran out.
    Flush,
    /// Read a key (modulo `KEYS + 1`) at an ingested LSN picked by the index.
    Read(u8, u32),
    /// Advance the clock by this many ms, firing every timer due.
    Tick(u16),
    /// Fire a timer by name, due or not (a stale firing changes nothing).
    Fire(TimelineTimer),
    /// The next this-many (modulo 4) writes / downloads / redo calls fail.
    FailWrites(u8),
    FailDownloads(u8),
    FailRedos(u8),
    /// Flip a bit of a local layer file.
    CorruptLocal(u32),
    /// Stop (true) or resume (false) index uploads.
    Lag(bool),
    Crash,
    /// The upload queue reports its layers uploaded (eviction may take them).
    ConfirmUploads,
    /// `handle_mode(may_compact, may_delete)`.
    Mode(bool, bool),
    /// `handle_backpressure`.
    Backpressure(bool),
    /// Hold world effects for `Complete` (true), or complete them as they come
    /// (false: the held ones complete first, oldest first).
    Hold(bool),
    /// Hold the scheduler's grants (true), or grant every job asked for (false).
    HoldJobs(bool),
    /// Complete a held world effect.
    Complete(u16, Outcome),
}

/// How a held world effect ends.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Outcome {
    Ok,
    Fail(IoErrorKind),
    /// Its completion never comes (the op stays in flight until a crash).
    Lost,
}

/// The model: every acknowledged record.
#[derive(Clone, Default)]
pub struct Model {
    pub records: BTreeMap<Key, BTreeMap<Lsn, Record>>,
    pub last: Lsn,
}

impl Model {
    pub fn get(&self, key: Key, lsn: Lsn) -> Option<Vec<u8>> {
        self.try_get(key, lsn).expect("values stay small")
    }

    /// The value of `key` at `lsn`, or why redo refuses it.
    pub fn try_get(&self, key: Key, lsn: Lsn) -> Result<Option<Vec<u8>>, RedoError> {
        let Some(history) = self.records.get(&key) else { return Ok(None) };
        let below: Vec<&Record> = history.range(..=lsn).map(|(_, r)| r).collect();
        if below.is_empty() {
            return Ok(None);
        }
        let from = below.iter().rposition(|r| matches!(r, Record::Image(_)));
        let (base, rest) = match from {
            Some(i) => match below[i] {
                Record::Image(b) => (Some(b.as_slice()), &below[i + 1..]),
                Record::Delta(_) => unreachable!(),
            },
            None => (None, &below[..]),
        };
        let deltas: Vec<&[DeltaOp]> = rest
            .iter()
            .map(|r| match r {
                Record::Delta(ops) => ops.as_slice(),
                Record::Image(_) => unreachable!(),
            })
            .collect();
        crate::redo::apply(base, &deltas).map(Some)
    }

    pub fn all(&self) -> Vec<IngestRecord> {
        let mut all: Vec<IngestRecord> = self
            .records
            .iter()
            .flat_map(|(k, m)| {
                m.iter().map(|(l, r)| IngestRecord { key: *k, lsn: *l, record: r.clone() })
            })
            .collect();
        all.sort_by_key(|r| r.lsn);
        all
    }

    fn apply(&mut self, records: &[IngestRecord]) {
        for r in records {
            self.records.entry(r.key).or_default().insert(r.lsn, r.record.clone());
            self.last = r.lsn;
        }
    }
}

/// The configuration the model runs: small layers, so that flushes, compaction,
/// image layers, GC and eviction all happen within a few dozen steps.
pub fn config() -> TimelineConfig {
    TimelineConfig {
        checkpoint_distance_bytes: 300,
        checkpoint_timeout_ms: 2_000,
        read_wait_timeout_ms: 100,
        flush_retry_base_ms: 10,
        flush_retry_max_ms: 100,
        // Room for a few small files: reads go both through the cache and to disk.
        layer_cache_bytes: 1_500,
        compaction_threshold_layers: 3,
        compaction_target_file_bytes: 120,
        image_creation_threshold_layers: 2,
        gc_horizon_lsn_distance: 4,
        gc_retention_ms: 0,
        eviction_idle_ms: 1_500,
        no_space_budget_ms: 1_000,
        ..TimelineConfig::default()
    }
}

const INITDB: Lsn = Lsn(100);

/// Caps a drawn record at the sizes the property test draws (an arbitrary one
/// could be megabytes): at most 16 image bytes, 3 ops, offsets below 24.
fn small(record: Record) -> Record {
    let cut = |mut b: Vec<u8>, n: usize| {
        b.truncate(n);
        b
    };
    match record {
        Record::Image(b) => Record::Image(cut(b, 16)),
        Record::Delta(mut ops) => {
            ops.truncate(3);
            let ops = ops.into_iter().map(|op| match op {
                DeltaOp::Append(b) => DeltaOp::Append(cut(b, 8)),
                DeltaOp::WriteAt { offset, bytes } => {
                    DeltaOp::WriteAt { offset: offset % 24, bytes: cut(bytes, 6) }
                }
                DeltaOp::Truncate(n) => DeltaOp::Truncate(n % 24),
                DeltaOp::Clear => DeltaOp::Clear,
            });
            Record::Delta(ops.collect())
        }
    }
}

/// A read started and not answered yet, with the faults injected before it.
struct Pending {
    key: Key,
    lsn: Lsn,
    data_faults: u64,
    redo_faults: u64,
}

/// The run's state besides the harness: the model and the reads in flight.
struct Run {
    h: Harness,
    model: Model,
    reads: BTreeMap<ReadId, Pending>,
    backpressure: bool,
}

/// Runs the steps; panics on any divergence from the model or broken invariant.
pub fn run(steps: Vec<Step>) {
    let mut r = Run {
        h: Harness::new(INITDB, config()),
        model: Model::default(),
        reads: BTreeMap::new(),
        backpressure: false,
    };
    for step in steps {
        r.step(step);
        r.check();
    }
    r.heal();
}

impl Run {
    fn step(&mut self, step: Step) {
        let h = &mut self.h;
        match step {
            Step::Ingest(batch) => self.ingest(batch),
            Step::Flush => self.flush(),
            Step::Read(key, at) => {
                let span = h.tl.last_ingested_lsn().0 - INITDB.0 + 1;
                let lsn = Lsn(INITDB.0 + u64::from(at) % span);
                let key = Key(u64::from(key) % (KEYS + 1));
                let (data_faults, redo_faults) = (h.data_faults, h.redo_faults);
                let id = h.start_read(key, lsn);
                self.reads.insert(id, Pending { key, lsn, data_faults, redo_faults });
            }
            Step::Tick(ms) => h.advance_to(h.now.plus_millis(u64::from(ms))),
            Step::Fire(timer) => {
                h.tl.handle_timeout(h.now, timer);
                h.drain();
            }
            Step::FailWrites(n) => h.fail_writes = u32::from(n % 4),
            Step::FailDownloads(n) => h.fail_downloads = u32::from(n % 4),
            Step::FailRedos(n) => h.fail_redos = u32::from(n % 4),
            Step::CorruptLocal(i) => {
                let i = i as usize;
                if !h.world.disk.is_empty() {
                    let name = h.world.disk.keys().nth(i % h.world.disk.len()).unwrap().clone();
                    let bytes = h.world.disk.get_mut(&name).unwrap();
                    let at = i % bytes.len().max(1);
                    if let Some(b) = bytes.get_mut(at) {
                        *b ^= 0x40;
                        // A read of this file may fail now (after a download of it).
                        h.data_faults += 1;
                    }
                }
            }
            Step::Lag(on) => h.world.set_lag(on),
            Step::ConfirmUploads => h.confirm_uploads(),
            Step::Mode(compact, delete) => {
                h.tl.handle_mode(h.now, compact, delete);
                h.drain();
            }
            Step::Backpressure(on) => {
                self.backpressure = on;
                h.tl.handle_backpressure(h.now, on);
                h.drain();
            }
            Step::Hold(on) => self.hold(on),
            Step::HoldJobs(on) => {
                h.grant_jobs = !on;
                if !on {
                    h.grant_all();
                }
            }
            Step::Complete(i, outcome) => {
                let i = usize::from(i);
                match outcome {
                    Outcome::Ok => h.complete_held(i),
                    Outcome::Fail(kind) => h.fail_held(i, kind),
                    Outcome::Lost => h.lose_held(i),
                };
            }
            Step::Crash => self.crash(),
        }
    }

    fn ingest(&mut self, batch: Vec<(u8, u8, Record)>) {
        let h = &mut self.h;
        let mut lsn = self.model.last.max(INITDB);
        let mut records = Vec::new();
        for (key, step, record) in batch {
            lsn = Lsn(lsn.0 + u64::from(step.clamp(1, 3)));
            let key = Key(u64::from(key) % KEYS);
            records.push(IngestRecord { key, lsn, record: small(record) });
        }
        let full = h.tl.in_memory_bytes() >= h.tl.config().max_in_memory_bytes;
        let faults = (h.data_faults, h.redo_faults);
        match h.ingest(records.clone()) {
            Ok(_) => self.model.apply(&records),
            Err(IngestError::Backpressure { .. }) => assert!(self.backpressure || full),
            Err(IngestError::NoSpace { .. }) => assert!(h.tl.disk_full().is_some()),
            // The size read that would allow it is held, lost or failed.
            Err(IngestError::SizeUnknown { .. }) => assert!(
                h.manual || h.lost > 0 || (h.data_faults, h.redo_faults) != faults,
                "a size read failed without a fault"
            ),
            Err(IngestError::ValueTooLarge { key, lsn, .. }) => {
                let mut after = self.model.clone();
                after.apply(&records);
                assert!(after.try_get(key, lsn).is_err(), "refused a value redo accepts");
            }
            Err(e) => panic!("a valid batch refused: {e}"),
        }
    }

    /// Waits for the flush when it can finish: nothing held or lost, the disk not
    /// out of space.
    fn flush(&mut self) {
        let h = &mut self.h;
        if h.manual || h.lost > 0 || h.tl.disk_full().is_some() {
            h.tl.handle_flush(h.now);
            h.drain();
        } else {
            h.flush();
            assert_eq!(h.tl.disk_consistent_lsn(), h.tl.last_ingested_lsn());
        }
    }

    fn hold(&mut self, on: bool) {
        let h = &mut self.h;
        if on {
            h.manual = true;
            return;
        }
        for _ in 0..10_000 {
            if !h.complete_next() {
                h.manual = false;
                return;
            }
        }
        panic!("held effects never ran out");
    }

    fn crash(&mut self) {
        let h = &mut self.h;
        let durable = h.world.index.disk_consistent_lsn;
        let world: World = h.world.clone();
        let now = h.now;
        // The reads in flight die with the machine; faults armed before the crash
        // do not carry over; backpressure is the upload queue's to say again.
        self.reads.clear();
        self.backpressure = false;
        self.h = Harness::recover(world, config(), now);
        let h = &mut self.h;
        assert_eq!(h.tl.last_ingested_lsn(), durable);
        // Everything at or below the durable LSN reads back unchanged.
        for key in 0..KEYS {
            assert_eq!(h.get(Key(key), durable), Ok(self.model.get(Key(key), durable)));
        }
        // The client re-sends everything it kept; the durable part is skipped.
        for chunk in self.model.all().chunks(7) {
            h.ingest(chunk.to_vec()).expect("re-send");
        }
        assert_eq!(h.tl.last_ingested_lsn(), self.model.last.max(INITDB));
    }

    /// After every step: the world's rules, and every answered read.
    fn check(&mut self) {
        let h = &mut self.h;
        // S-IDX-REF: the upload queue's set is the layer map (nothing mapped that the
        // queue does not know, nothing the queue names that the map dropped);
        // `publish` checks the index names only existing objects, and deletions
        // wait for an index without them (S-DEL-AFTER-INDEX).
        let mapped: Vec<LayerName> = h.tl.layers().map(|l| l.name).collect();
        let queued: Vec<LayerName> = h.world.queue_layers.keys().cloned().collect();
        assert_eq!(mapped, queued);
        for name in &h.world.deleted {
            assert!(!h.world.index.layer_metadata.contains_key(name), "S-DEL-AFTER-INDEX");
        }
        for (id, result) in std::mem::take(&mut h.reads) {
            let p = self.reads.remove(&id).expect("an answer to a read in flight");
            let (key, lsn) = (p.key, p.lsn);
            match result {
                Ok(v) => assert_eq!(v, self.model.get(key, lsn), "get({key}, {lsn})"),
                // An injected fault may fail a read, clearly; never silently.
                Err(ReadError::LayerUnavailable { .. } | ReadError::LayerCorrupt { .. }) => {
                    assert!(h.data_faults > p.data_faults, "get({key}, {lsn}) failed")
                }
                Err(ReadError::Redo(_)) => assert!(h.redo_faults > p.redo_faults),
                Err(ReadError::BelowGcCutoff { gc_cutoff, .. }) => {
                    assert!(lsn < gc_cutoff && gc_cutoff == h.tl.metadata().gc_cutoff_lsn)
                }
                Err(e) => panic!("get({key}, {lsn}): {e}"),
            }
        }
    }

    /// Faults stop, held effects complete (a crash clears lost ones and a spent
    /// disk-full budget), and everything reads back as the model says.
    fn heal(mut self) {
        self.h.grant_jobs = true;
        self.h.grant_all();
        self.hold(false);
        self.check();
        let h = &mut self.h;
        (h.fail_writes, h.fail_downloads, h.fail_redos) = (0, 0, 0);
        if h.lost > 0 || h.tl.disk_full().is_some() {
            self.crash();
        }
        let h = &mut self.h;
        h.flush();
        assert_eq!(h.tl.disk_consistent_lsn(), h.tl.last_ingested_lsn());
        let last = self.model.last;
        for key in 0..=KEYS {
            let from = INITDB.0.max(h.tl.metadata().gc_cutoff_lsn.0);
            for lsn in (from..=last.0).step_by(3).chain([last.0]) {
                assert_eq!(h.get(Key(key), Lsn(lsn)), Ok(self.model.get(Key(key), Lsn(lsn))));
            }
        }
    }
}
