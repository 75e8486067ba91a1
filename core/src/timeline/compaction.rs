//! Compaction: many L0 delta layers → a few L1 delta layers partitioned by key range.
//!
//! An **L0** layer is a delta layer over the whole key range (what a flush writes);
//! an **L1** layer is a delta layer over part of it. Every layer holds exactly the
//! records of its rectangle (key range × LSN range), so layers that overlap (the
//! L0s and the L1s made from them, both in the map after a crash between steps)
//! answer every read the same way.
//!
//! A job, one at a time ([`CompactionState`]), each under a grant of the node's
//! scheduler (`jobs.rs`: asked for when there is work, held from the pick until the
//! pipeline is `Idle` again, write backoffs included):
//! 1. **Pick**: when compaction is allowed (`handle_mode`), take a run of L0s
//!    *durable locally* (their LSN end is at or below `disk_consistent_lsn + 1`),
//!    cut at gaps and at full image sets (see [`Timeline::compaction_candidates`]):
//!    the oldest run of at least `compaction_threshold_layers`, or an older closed
//!    run of at least two.
//!    Layers above `disk_consistent_lsn` are never taken: after a crash they would
//!    be future layers and dropped, and the L1 would take older records with them.
//! 2. **Load** each input, oldest first: from the parsed-file cache, by `ReadLayer`,
//!    or after a `DownloadLayer` (shared with reads) when it is remote-only.
//! 3. **Merge** the sorted runs (a k-way merge by `(key, lsn)`) and cut them into
//!    outputs of about `compaction_target_file_bytes`, never splitting one key;
//!    each output covers `[its first key, the next output's first key)` and the
//!    union of the inputs' LSN ranges. Outputs already in the layer map (a re-run
//!    after a crash: same inputs, same names, same records) are not written again.
//! 4. **Write** each output with `WriteLayer` (crash-safe, durable on success).
//! 5. **Commit**, in one transition: every output enters the layer map and goes to
//!    the upload queue (`LayerFlushed`, S1 / S-IDX-REF), *then* the inputs leave the
//!    map, `UnlinkLayers` names them (the upload queue uploads an index without them
//!    and only then hands their deletion on: S-DEL-AFTER-INDEX), and `EvictLayer`
//!    asks for each input's local file to be removed: the upload queue removes it
//!    once no upload of it is left (an input flushed moments ago may still be
//!    uploading; removing its file under that upload broke the queue: LOCAL-READ,
//!    cluster seed 3636). Effects are delivered in order, so the upload queue always
//!    hears of the outputs before the unlink (#5635), and of the unlink before the
//!    removal.
//!
//! **Crash at each step** (S18). Before the commit: the outputs are local files the
//! index does not name; start-up removes them, the inputs are untouched and the job
//! runs again. After the commit, before the index without the inputs is durable: the
//! durable index names the inputs, maybe some outputs too (the upload queue takes one
//! index snapshot per change); both are correct layers of the same rectangles, and
//! the re-run writes only the outputs missing, then unlinks the inputs. After that
//! index: the inputs are gone from the index and only their deletion is pending in
//! the deletion queue, which persists its lists.
//!
//! **Failures.** A read or write that fails puts the job into `Backoff`
//! (`flush_retry_base_ms`, doubling up to `flush_retry_max_ms`): a failed write is
//! retried with the same bytes; a failed load restarts the job from the pick (a bad
//! local input is re-downloaded first, once per job; a second failure waits for the
//! next attempt).

use super::layer_map::{LayerEntry, Residence};
use super::{OpKind, Timeline, TimelineEffect};
use crate::id::OpId;
use crate::index_part::LayerMeta;
use crate::io_error::IoError;
use crate::key::Key;
use crate::layer_file::{self, LayerFile};
use crate::layer_name::{KeyRange, LayerName, LsnRange};
use crate::lsn::Lsn;
use crate::redo::{Record, RedoRequest};
use crate::scheduler::JobKind as BackgroundJob;
use crate::time::Instant;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

/// One record of a layer: `(key, lsn, record)`.
pub(crate) type Entry = (Key, Lsn, Record);

/// An output layer, encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub(crate) name: LayerName,
    pub(crate) bytes: Vec<u8>,
    pub(crate) crc32c: u32,
}

/// What a job makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// L0s → L1s; the inputs are replaced.
    Compact,
    /// An image layer set at `lsn` over the whole key range (`images.rs`); the
    /// inputs stay.
    Image { lsn: Lsn },
}

/// The background job in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub(crate) kind: JobKind,
    /// Layers read (L0s being replaced, oldest first; or an image's sources).
    pub(crate) inputs: Vec<LayerName>,
    /// Records of `inputs[..loaded.len()]`.
    pub(crate) loaded: Vec<Vec<Entry>>,
    /// Inputs this job downloaded: a second bad copy ends the attempt.
    pub(crate) downloaded: BTreeSet<LayerName>,
    /// Encoded outputs (set once every input is loaded); `written` of them are durable.
    pub(crate) outputs: Vec<Output>,
    pub(crate) written: usize,
    /// Image jobs: reconstructions still to run, and the values so far.
    pub(crate) redo: VecDeque<(Key, RedoRequest)>,
    pub(crate) values: BTreeMap<Key, Vec<u8>>,
}

impl Job {
    pub(crate) fn new(kind: JobKind, inputs: Vec<LayerName>) -> Box<Job> {
        Box::new(Job {
            kind,
            inputs,
            loaded: Vec::new(),
            downloaded: BTreeSet::new(),
            outputs: Vec::new(),
            written: 0,
            redo: VecDeque::new(),
            values: BTreeMap::new(),
        })
    }
}

/// Where the compaction pipeline is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompactionState {
    Idle,
    /// Loading `job.inputs[job.loaded.len()]`: by a `ReadLayer` (`op`), or waiting
    /// for its download (`op == None`).
    Loading {
        job: Box<Job>,
        op: Option<OpId>,
    },
    /// Image jobs: reconstructing `job.redo[0]` (`Redo` effect `op`).
    Redoing {
        job: Box<Job>,
        op: OpId,
    },
    /// Writing `job.outputs[job.written]`.
    Writing {
        job: Box<Job>,
        op: OpId,
        failures: u32,
    },
    /// After a failure: at `until`, resume writing `job`, or (without one) pick again.
    Backoff {
        until: Instant,
        failures: u32,
        job: Option<Box<Job>>,
    },
}

impl CompactionState {
    pub(crate) fn timer(&self) -> Option<Instant> {
        match self {
            CompactionState::Backoff { until, .. } => Some(*until),
            _ => None,
        }
    }

    pub(crate) fn job(&self) -> Option<&Job> {
        match self {
            CompactionState::Idle | CompactionState::Backoff { job: None, .. } => None,
            CompactionState::Loading { job, .. }
            | CompactionState::Redoing { job, .. }
            | CompactionState::Writing { job, .. }
            | CompactionState::Backoff { job: Some(job), .. } => Some(job),
        }
    }

    pub(crate) fn inputs(&self) -> &[LayerName] {
        match self {
            CompactionState::Idle | CompactionState::Backoff { job: None, .. } => &[],
            CompactionState::Loading { job, .. }
            | CompactionState::Redoing { job, .. }
            | CompactionState::Writing { job, .. }
            | CompactionState::Backoff { job: Some(job), .. } => &job.inputs,
        }
    }
}

/// A delta layer over the whole key range: what a flush writes.
pub(crate) fn is_l0(name: &LayerName) -> bool {
    let full = Key::full_range();
    matches!(name, LayerName::Delta { keys, .. } if keys.start == full.start && keys.end == full.end)
}

/// Merges runs sorted by `(key, lsn)` into one sorted run (a k-way merge with a
/// heap). Runs hold distinct `(key, lsn)` pairs.
pub(crate) fn merge_runs(runs: Vec<Vec<Entry>>) -> Vec<Entry> {
    let total = runs.iter().map(Vec::len).sum();
    let mut iters: Vec<_> = runs.into_iter().map(|r| r.into_iter().peekable()).collect();
    let mut heap = BinaryHeap::new();
    for (i, it) in iters.iter_mut().enumerate() {
        if let Some((k, l, _)) = it.peek() {
            heap.push(Reverse((*k, *l, i)));
        }
    }
    let mut out = Vec::with_capacity(total);
    while let Some(Reverse((_, _, i))) = heap.pop() {
        let e = iters[i].next().expect("peeked");
        if let Some((k, l, _)) = iters[i].peek() {
            heap.push(Reverse((*k, *l, i)));
        }
        out.push(e);
    }
    out
}

/// Cuts a sorted run into key-range partitions of about `target_bytes` (by
/// `Record::size_bytes`), never splitting a key. Returns `(keys, records)` pairs;
/// no partition spans the whole key range (that would make it look like an L0).
pub(crate) fn partition(merged: Vec<Entry>, target_bytes: u64) -> Vec<(KeyRange, Vec<Entry>)> {
    let mut parts: Vec<Vec<Entry>> = Vec::new();
    let mut size = 0u64;
    for e in merged {
        let new_key = parts.last().and_then(|p| p.last()).is_none_or(|last| last.0 != e.0);
        if parts.is_empty() || (new_key && size >= target_bytes) {
            parts.push(Vec::new());
            size = 0;
        }
        size += e.2.size_bytes();
        parts.last_mut().expect("pushed").push(e);
    }
    // A single partition from Key::MIN to the last storable key: split off its last key.
    if let [only] = &mut parts[..] {
        let (first, last) = (only[0].0, only[only.len() - 1].0);
        if first == Key::MIN && last.next() == Key::MAX {
            let at = only.partition_point(|e| e.0 < last);
            let tail = only.split_off(at);
            parts.push(tail);
        }
    }
    let starts: Vec<Key> = parts.iter().map(|p| p[0].0).collect();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let end = starts.get(i + 1).copied().unwrap_or_else(|| p[p.len() - 1].0.next());
            (KeyRange { start: starts[i], end }, p)
        })
        .collect()
}

/// Merges and encodes the outputs of a job over `lsns`.
pub(crate) fn build_outputs(
    runs: Vec<Vec<Entry>>,
    lsns: LsnRange,
    target_bytes: u64,
) -> Vec<Output> {
    partition(merge_runs(runs), target_bytes)
        .into_iter()
        .map(|(keys, records)| {
            let name = LayerName::Delta { keys, lsns };
            let enc = layer_file::encode(&name, records.iter().map(|(k, l, r)| (*k, *l, r)))
                .expect("merged records are sorted and inside the output's ranges");
            Output { name, bytes: enc.bytes, crc32c: enc.crc32c }
        })
        .collect()
}

impl Timeline {
    /// The L0 run a job should take now, if any. L0s durable locally (LSN end ≤
    /// disk_consistent + 1) are cut into runs at gaps and at full image sets (an L1
    /// must not straddle an image set's LSN: a read would take the L1 and continue
    /// below it, past the images, and GC could not use that set). The oldest run
    /// with at least `compaction_threshold_layers` L0s is taken, or an older run
    /// already closed by a newer one when it holds at least two.
    pub(crate) fn compaction_candidates(&self) -> Option<Vec<LayerName>> {
        let limit = self.metadata.disk_consistent_lsn.next();
        let mut l0: Vec<(LsnRange, &LayerName)> = self
            .layers
            .layers
            .keys()
            .filter_map(|n| match n {
                LayerName::Delta { lsns, .. } if is_l0(n) && lsns.end <= limit => Some((*lsns, n)),
                _ => None,
            })
            .collect();
        l0.sort();
        let cuts: BTreeSet<Lsn> = self.full_image_lsns().into_iter().map(Lsn::next).collect();
        let mut runs: Vec<Vec<LayerName>> = Vec::new();
        let mut end: Option<Lsn> = None;
        for (lsns, name) in l0 {
            if end.is_none_or(|e| e != lsns.start) || cuts.contains(&lsns.start) {
                runs.push(Vec::new());
            }
            end = Some(lsns.end);
            runs.last_mut().expect("pushed").push(name.clone());
        }
        let threshold = self.config.compaction_threshold_layers.max(2);
        let n = runs.len();
        runs.into_iter()
            .enumerate()
            .find(|(i, run)| run.len() >= threshold || (i + 1 < n && run.len() >= 2))
            .map(|(_, run)| run)
    }

    pub(super) fn pump_compaction(&mut self, now: Instant) {
        loop {
            match std::mem::replace(&mut self.compaction, CompactionState::Idle) {
                CompactionState::Idle => {
                    if !self.may_compact {
                        self.decline_grant(BackgroundJob::Compaction);
                        return;
                    }
                    let job = if let Some(inputs) = self.compaction_candidates() {
                        Job::new(JobKind::Compact, inputs)
                    } else if let Some(job) = self.image_job() {
                        job
                    } else {
                        self.decline_grant(BackgroundJob::Compaction);
                        return;
                    };
                    // Not while GC's metadata write is in flight (its victims could
                    // be this job's inputs): a granted job waits for it. Then only
                    // with the scheduler's grant (asked for once, here).
                    if self.gc_writing() || !self.take_grant(BackgroundJob::Compaction) {
                        return;
                    }
                    self.compaction = CompactionState::Loading { job, op: None };
                }
                CompactionState::Loading { job, op: Some(op) } => {
                    self.compaction = CompactionState::Loading { job, op: Some(op) };
                    return;
                }
                CompactionState::Loading { mut job, op: None } => {
                    if !self.may_compact {
                        return; // dropped; picked again once allowed
                    }
                    let Some(name) = job.inputs.get(job.loaded.len()).cloned() else {
                        self.finish_loading(job);
                        continue;
                    };
                    let entry = self.layers.layers.get(&name).expect("inputs stay in the map");
                    match entry.residence {
                        Residence::Resident => {
                            if let Some(records) =
                                self.cache.get(&name).and_then(|f| f.all_records().ok())
                            {
                                job.loaded.push(records);
                                self.compaction = CompactionState::Loading { job, op: None };
                                continue;
                            }
                            let op = self.new_op(OpKind::CompactRead { name: name.clone() });
                            self.effects.push_back(TimelineEffect::ReadLayer { op, name });
                            self.compaction = CompactionState::Loading { job, op: Some(op) };
                        }
                        Residence::Downloading { .. } => {
                            self.compaction = CompactionState::Loading { job, op: None };
                        }
                        Residence::RemoteOnly if job.downloaded.contains(&name) => {
                            // Our download failed or gave a bad copy: try again later.
                            self.compaction_backoff(now, 1, None);
                        }
                        Residence::RemoteOnly => {
                            job.downloaded.insert(name.clone());
                            self.start_download(&name);
                            self.compaction = CompactionState::Loading { job, op: None };
                        }
                    }
                    return;
                }
                CompactionState::Redoing { job, op } => {
                    self.compaction = CompactionState::Redoing { job, op };
                    return;
                }
                CompactionState::Writing { job, op, failures } => {
                    self.compaction = CompactionState::Writing { job, op, failures };
                    return;
                }
                CompactionState::Backoff { until, failures, job } => {
                    self.compaction = CompactionState::Backoff { until, failures, job };
                    return;
                }
            }
        }
    }

    /// Every input is loaded: build the outputs and start writing (or commit at once
    /// when every output already exists).
    fn finish_loading(&mut self, mut job: Box<Job>) {
        if let JobKind::Image { lsn } = job.kind {
            self.plan_images(job, lsn);
            return;
        }
        let first = crate::timeline::layer_map::lsn_range(&job.inputs[0]);
        let last = crate::timeline::layer_map::lsn_range(job.inputs.last().expect("non-empty"));
        let lsns = LsnRange { start: first.start, end: last.end };
        let runs = std::mem::take(&mut job.loaded);
        let mut outputs = build_outputs(runs, lsns, self.config.compaction_target_file_bytes);
        outputs.retain(|o| !self.layers.layers.contains_key(&o.name));
        job.outputs = outputs;
        self.start_output_write(job, 0);
    }

    pub(super) fn start_output_write(&mut self, job: Box<Job>, failures: u32) {
        if !self.may_compact {
            // Dropped: written outputs are local files no index names (start-up
            // removes them; a re-run writes them again).
            self.compaction = CompactionState::Idle;
            return;
        }
        let Some(out) = job.outputs.get(job.written) else {
            self.commit_compaction(*job);
            return;
        };
        let op = self.new_op(OpKind::CompactWrite);
        let (name, bytes) = (out.name.clone(), out.bytes.clone());
        self.effects.push_back(TimelineEffect::WriteLayer { op, name, bytes });
        self.compaction = CompactionState::Writing { job, op, failures };
    }

    /// The one transition that swaps the inputs for the outputs (see the module doc).
    fn commit_compaction(&mut self, job: Job) {
        for out in job.outputs {
            let meta = LayerMeta {
                file_size: out.bytes.len() as u64,
                generation: self.config.generation,
                crc32c: out.crc32c,
            };
            self.layers
                .layers
                .insert(out.name.clone(), LayerEntry { meta, residence: Residence::Resident });
            self.effects.push_back(TimelineEffect::LayerFlushed {
                name: out.name,
                file_size: meta.file_size,
                crc32c: meta.crc32c,
            });
        }
        if job.kind == JobKind::Compact {
            self.remove_layers(&job.inputs);
        }
        self.compaction = CompactionState::Idle;
    }

    /// Takes layers out of the map: `UnlinkLayers` for the upload queue, then
    /// `EvictLayer` for each local file. Reads waiting on one of them search again.
    pub(super) fn remove_layers(&mut self, names: &[LayerName]) {
        for name in names {
            self.layers.layers.remove(name);
            self.cache.remove(name);
            self.remote_durable.remove(name);
            self.last_access.remove(name);
        }
        self.effects.push_back(TimelineEffect::UnlinkLayers { names: names.to_vec() });
        for name in names {
            self.effects.push_back(TimelineEffect::EvictLayer { name: name.clone() });
        }
        self.restart_reads_of(names);
    }

    pub(super) fn compaction_read_done(
        &mut self,
        now: Instant,
        op: OpId,
        name: LayerName,
        result: Result<Vec<u8>, IoError>,
    ) {
        let CompactionState::Loading { mut job, op: Some(current) } =
            std::mem::replace(&mut self.compaction, CompactionState::Idle)
        else {
            unreachable!("a CompactRead op exists only while Loading")
        };
        debug_assert_eq!(op, current);
        let crc = self.layers.layers.get(&name).map(|e| e.meta.crc32c);
        let parsed = result.map_err(|e| e.to_string()).and_then(|bytes| {
            let file = LayerFile::parse(&name, bytes, crc).map_err(|e| e.to_string())?;
            let records = file.all_records().map_err(|e| e.to_string())?;
            Ok((file, records))
        });
        match parsed {
            Ok((file, records)) => {
                self.cache.insert(file);
                job.loaded.push(records);
                self.compaction = CompactionState::Loading { job, op: None };
            }
            Err(_) if job.downloaded.contains(&name) => self.compaction_backoff(now, 1, None),
            Err(_) => {
                // The local copy is bad: treat it as missing; loading downloads it.
                self.cache.remove(&name);
                if let Some(e) = self.layers.layers.get_mut(&name)
                    && e.residence == Residence::Resident
                {
                    e.residence = Residence::RemoteOnly;
                }
                self.compaction = CompactionState::Loading { job, op: None };
            }
        }
    }

    pub(super) fn compaction_write_done(
        &mut self,
        now: Instant,
        op: OpId,
        result: Result<(), IoError>,
    ) {
        let CompactionState::Writing { mut job, op: current, failures } =
            std::mem::replace(&mut self.compaction, CompactionState::Idle)
        else {
            unreachable!("a CompactWrite op exists only while Writing")
        };
        debug_assert_eq!(op, current);
        if result.is_err() {
            self.compaction_backoff(now, failures + 1, Some(job));
            return;
        }
        job.written += 1;
        self.start_output_write(job, 0);
    }

    fn compaction_backoff(&mut self, now: Instant, failures: u32, job: Option<Box<Job>>) {
        let until = now.plus_millis(self.backoff_ms(failures));
        self.compaction = CompactionState::Backoff { until, failures, job };
    }

    pub(super) fn compaction_timeout(&mut self, now: Instant) {
        if let CompactionState::Backoff { until, failures, job } = &self.compaction
            && *until <= now
        {
            let (failures, job) = (*failures, job.clone());
            self.compaction = CompactionState::Idle;
            if let Some(job) = job {
                self.start_output_write(job, failures);
            }
        }
    }

    pub(super) fn check_compaction_invariants(&self) {
        // No L1 straddles a full image set (compaction cuts its runs there).
        for j in self.full_image_lsns() {
            for name in self.layers.layers.keys().filter(|n| n.is_delta() && !is_l0(n)) {
                let r = crate::timeline::layer_map::lsn_range(name);
                assert!(
                    !(r.start <= j && r.end > j.next()),
                    "{name} straddles the image set at {j}"
                );
            }
        }
        let compact = self.compaction.job().is_some_and(|j| j.kind == JobKind::Compact);
        for name in self.compaction.inputs() {
            assert!(!compact || is_l0(name), "compaction input {name} is not an L0");
            assert!(self.layers.layers.contains_key(name), "compaction input {name} left the map");
        }
        match &self.compaction {
            CompactionState::Idle => {}
            CompactionState::Loading { job, op } => {
                let loading = job.outputs.is_empty() && job.loaded.len() < job.inputs.len();
                assert!(loading, "loading a job with every input loaded");
                let name = &job.inputs[job.loaded.len()];
                match op {
                    Some(op) => assert_eq!(
                        self.ops.get(op),
                        Some(&OpKind::CompactRead { name: name.clone() }),
                        "compaction read op untracked"
                    ),
                    // Waiting for a download: one must be in flight.
                    None => assert!(
                        matches!(self.layers.layers[name].residence, Residence::Downloading { .. }),
                        "compaction waits for {name}, which is not downloading"
                    ),
                }
            }
            CompactionState::Redoing { job, op } => {
                assert!(!job.redo.is_empty(), "redoing with nothing to redo");
                assert_eq!(self.ops.get(op), Some(&OpKind::ImageRedo), "image redo op untracked");
            }
            CompactionState::Writing { job, op, .. } => {
                assert!(job.written < job.outputs.len(), "writing past the job's outputs");
                let write = self.ops.get(op);
                assert_eq!(write, Some(&OpKind::CompactWrite), "compaction write op untracked");
            }
            CompactionState::Backoff { job, .. } => {
                if let Some(job) = job {
                    assert!(job.written < job.outputs.len(), "a backoff past the job's outputs");
                }
            }
        }
    }
}
