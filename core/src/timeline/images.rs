//! Image layers: the full value of every key at one LSN, so reads stop there and GC
//! can drop the history below.
//!
//! **When.** A job of the compaction pipeline (one job at a time, L0 compaction
//! first), while compaction is allowed: when the number of distinct delta LSN
//! ranges above the newest *full image set* (image layers of one LSN that together
//! cover the whole key range) reaches `image_creation_threshold_layers`, and
//! `disk_consistent_lsn` is above that set.
//!
//! **How.** At `lsn = disk_consistent_lsn` (everything at or below it is in durable
//! layers): load every layer reaching above the newest full image set (its images
//! plus the deltas above), collect each key's records at or below `lsn` (a record
//! found in two overlapping layers is taken once; an image record wins over a delta
//! at the same LSN), and reconstruct each key's value — an image with no deltas
//! above it directly, otherwise by a `Redo` effect, one key at a time. The values
//! are cut into image layers of about `compaction_target_file_bytes`; the first
//! starts at `Key::MIN`, the last ends at `Key::MAX`, so the set covers every key.
//! Outputs are written and committed like compaction's (`LayerFlushed` in the
//! transition that maps them); nothing is unlinked.
//!
//! **Crash.** Before the commit: stray local files, removed at start-up; the job
//! runs again. After: the images are ordinary layers.

use super::compaction::{Entry, Job, JobKind, Output, partition};
use super::layer_map::lsn_range;
use super::{OpKind, Timeline, TimelineEffect};
use crate::id::OpId;
use crate::io_error::IoError;
use crate::key::Key;
use crate::layer_file;
use crate::layer_name::{KeyRange, LayerName};
use crate::lsn::Lsn;
use crate::redo::{Record, RedoRequest};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

use super::compaction::CompactionState;

impl Timeline {
    /// LSNs of image sets covering the whole key range, ascending.
    pub(crate) fn full_image_lsns(&self) -> Vec<Lsn> {
        let mut by_lsn: BTreeMap<Lsn, Vec<KeyRange>> = BTreeMap::new();
        for name in self.layers.layers.keys() {
            if let LayerName::Image { keys, lsn } = name {
                by_lsn.entry(*lsn).or_default().push(*keys);
            }
        }
        by_lsn
            .into_iter()
            .filter(|(_, ranges)| covers_all_keys(ranges))
            .map(|(lsn, _)| lsn)
            .collect()
    }

    /// An image job, if one is due.
    pub(super) fn image_job(&self) -> Option<Box<Job>> {
        let lsn = self.metadata.disk_consistent_lsn;
        let newest = self.full_image_lsns().last().copied();
        if newest.is_some_and(|n| n >= lsn) {
            return None;
        }
        let above = |name: &LayerName| newest.is_none_or(|n| lsn_range(name).end > n);
        let depth: BTreeSet<_> = self
            .layers
            .layers
            .keys()
            .filter(|n| n.is_delta() && above(n) && lsn_range(n).end <= lsn.next())
            .map(lsn_range)
            .map(|r| (r.start, r.end))
            .collect();
        if depth.len() < self.config.image_creation_threshold_layers.max(1) {
            return None;
        }
        let inputs: Vec<LayerName> = self
            .layers
            .layers
            .keys()
            .filter(|n| above(n) && lsn_range(n).start <= lsn)
            .cloned()
            .collect();
        Some(Job::new(JobKind::Image { lsn }, inputs))
    }

    /// Every input is loaded: plan the reconstructions.
    pub(super) fn plan_images(&mut self, mut job: Box<Job>, lsn: Lsn) {
        let mut history: BTreeMap<Key, BTreeMap<Lsn, Record>> = BTreeMap::new();
        for run in std::mem::take(&mut job.loaded) {
            for (key, l, record) in run {
                if l > lsn {
                    continue;
                }
                let h = history.entry(key).or_default();
                if !matches!(h.get(&l), Some(Record::Image(_))) {
                    h.insert(l, record);
                }
            }
        }
        for (key, h) in history {
            let records: Vec<Record> = h.into_values().collect();
            let from = records.iter().rposition(|r| matches!(r, Record::Image(_)));
            let (base, rest) = match from {
                Some(i) => match &records[i] {
                    Record::Image(b) => (Some(b.clone()), &records[i + 1..]),
                    Record::Delta(_) => unreachable!("rposition found an image"),
                },
                None => (None, &records[..]),
            };
            let deltas: Vec<_> = rest
                .iter()
                .map(|r| match r {
                    Record::Delta(ops) => ops.clone(),
                    Record::Image(_) => unreachable!("after the last image"),
                })
                .collect();
            match (base, deltas.is_empty()) {
                (Some(b), true) => {
                    job.values.insert(key, b);
                }
                (base, _) => job.redo.push_back((key, RedoRequest { base, deltas })),
            }
        }
        self.next_image_redo(job, lsn);
    }

    fn next_image_redo(&mut self, mut job: Box<Job>, lsn: Lsn) {
        if let Some((_, request)) = job.redo.front() {
            let op = self.new_op(OpKind::ImageRedo);
            self.effects.push_back(TimelineEffect::Redo { op, request: request.clone() });
            self.compaction = CompactionState::Redoing { job, op };
            return;
        }
        let values = std::mem::take(&mut job.values);
        let mut outputs = image_outputs(values, lsn, self.config.compaction_target_file_bytes);
        outputs.retain(|o| !self.layers.layers.contains_key(&o.name));
        job.outputs = outputs;
        self.start_output_write(job, 0);
    }

    pub(super) fn image_redone(&mut self, now: Instant, op: OpId, r: Result<Vec<u8>, IoError>) {
        let CompactionState::Redoing { mut job, op: current } =
            std::mem::replace(&mut self.compaction, CompactionState::Idle)
        else {
            unreachable!("an ImageRedo op exists only while Redoing")
        };
        debug_assert_eq!(op, current);
        let JobKind::Image { lsn } = job.kind else { unreachable!("only image jobs redo") };
        match r {
            Ok(value) => {
                let (key, _) = job.redo.pop_front().expect("Redoing has a request");
                job.values.insert(key, value);
                if !self.may_compact {
                    return; // dropped
                }
                self.next_image_redo(job, lsn);
            }
            Err(_) => {
                let until = now.plus_millis(self.backoff_ms(1));
                self.compaction = CompactionState::Backoff { until, failures: 1, job: None };
            }
        }
    }
}

fn covers_all_keys(ranges: &[KeyRange]) -> bool {
    let mut sorted = ranges.to_vec();
    sorted.sort();
    let mut next = Key::MIN;
    for r in sorted {
        if r.start > next {
            return false;
        }
        next = next.max(r.end);
    }
    next == Key::MAX
}

/// Image layers at `lsn` holding `values`, together covering every key.
pub(crate) fn image_outputs(
    values: BTreeMap<Key, Vec<u8>>,
    lsn: Lsn,
    target_bytes: u64,
) -> Vec<Output> {
    let entries: Vec<Entry> = values.into_iter().map(|(k, v)| (k, lsn, Record::Image(v))).collect();
    let mut parts = partition(entries, target_bytes);
    if parts.is_empty() {
        parts.push((KeyRange { start: Key::MIN, end: Key::MAX }, Vec::new()));
    }
    let n = parts.len();
    parts[0].0.start = Key::MIN;
    parts[n - 1].0.end = Key::MAX;
    parts
        .into_iter()
        .map(|(keys, records)| {
            let name = LayerName::Image { keys, lsn };
            let enc = layer_file::encode(&name, records.iter().map(|(k, l, r)| (*k, *l, r)))
                .expect("values are sorted images inside the output's ranges");
            Output { name, bytes: enc.bytes, crc32c: enc.crc32c }
        })
        .collect()
}
