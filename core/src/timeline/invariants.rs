//! `check_invariants`: the rules of the module doc, asserted on the timeline's state.

use super::layer_map::Residence;
use super::read::Reader;
use super::{FlushState, OpKind, Timeline};
use crate::key::Key;
use crate::lsn::Lsn;

impl Timeline {
    /// Panics if a rule is broken. Run after every input in tests.
    pub fn check_invariants(&self) {
        let dc = self.metadata.disk_consistent_lsn;
        assert!(
            dc <= self.last_ingested,
            "S-PROJECTED: disk_consistent {dc} > last ingested {}",
            self.last_ingested
        );
        // In-memory layers are contiguous and hold only what their ranges say.
        let mut expect_start: Option<Lsn> = None;
        for l in self.frozen.iter().chain(std::iter::once(&self.open)) {
            if let Some(s) = expect_start {
                assert_eq!(l.start, s, "in-memory layers are not contiguous");
            }
            assert!(l.start > dc, "in-memory layer at {} not above disk_consistent {dc}", l.start);
            for (_, lsn, _) in l.sorted() {
                assert!(
                    lsn >= l.start && l.end.is_none_or(|e| lsn < e) && lsn <= self.last_ingested,
                    "record at {lsn} outside its in-memory layer or above last ingested"
                );
            }
            let frozen = !std::ptr::eq(l, &self.open);
            assert_eq!(l.end.is_some(), frozen, "only frozen in-memory layers have an end");
            expect_start = l.end;
        }
        for l in &self.frozen {
            assert!(!l.is_empty(), "an empty frozen layer");
        }
        // Queued work ⇒ something in flight or a timer set.
        if !self.frozen.is_empty() || self.flush_requests.values().any(|t| *t > dc) {
            assert!(
                self.flush != FlushState::Idle || self.gc_writing(),
                "flush work queued while the flush is idle"
            );
        }
        if let Some(done) = self.flush_requests.iter().find(|(_, t)| **t <= dc) {
            panic!("flush request {done:?} satisfied but not answered");
        }
        self.check_flush_invariants();
        self.check_compaction_invariants();
        self.check_gc_invariants();
        self.check_job_invariants();
        self.cache.check();
        for (id, r) in &self.reads {
            r.check(*id, &self.ops, &self.layers);
        }
        self.sizes.check_invariants();
        let size_reads: Vec<Key> = self
            .reads
            .keys()
            .filter_map(|r| match r {
                Reader::SizeProbe(key) => Some(*key),
                Reader::Caller(_) => None,
            })
            .collect();
        assert_eq!(
            size_reads,
            self.sizes.reads_in_flight().collect::<Vec<_>>(),
            "size reads in the read table and in the size tracker differ"
        );
        for (op, kind) in &self.ops {
            match kind {
                OpKind::CompactRead { .. }
                | OpKind::CompactWrite
                | OpKind::ImageRedo
                | OpKind::GcMetadata => {}
                OpKind::WriteLayer | OpKind::WriteMetadata => {
                    assert!(self.flush.op() == Some(*op), "{op} is a write the flush does not own");
                }
                OpKind::ReadLayer { read, .. } | OpKind::Redo { read } => {
                    assert!(self.reads.contains_key(read), "{op} serves a finished read");
                }
                OpKind::Download { name } => {
                    // Or the layer left the map (compaction / GC) meanwhile.
                    let residence = self.layers.layers.get(name).map(|e| e.residence);
                    assert!(
                        residence.is_none_or(|r| r == Residence::Downloading { op: *op }),
                        "{op} downloads {name}, which is {residence:?}"
                    );
                }
            }
        }
        for name in self.remote_durable.iter().chain(self.last_access.keys()) {
            assert!(self.layers.layers.contains_key(name), "{name} tracked but not mapped");
        }
        for (name, e) in &self.layers.layers {
            if let Residence::Downloading { op } = e.residence {
                assert!(
                    matches!(self.ops.get(&op), Some(OpKind::Download { name: n }) if n == name),
                    "{name} is downloading without its download op"
                );
            }
        }
    }
}
