//! A tiny synchronous world for the upload queue: a remote store, a deletion queue
//! that executes, cancels or drops what it is handed when the test says so, and a
//! validator. The test chooses which effect completes when, and how. After every
//! input the harness checks the machine's invariants and the world's.
//!
//! Compiled for tests and under the `fuzzing` feature (the `upload_queue` fuzz
//! target drives it). Every input goes through [`UploadQueue::handle`].

use super::*;
use crate::deletion_queue::{DeletionOutcome, DeletionReport, LsnValidation};
use crate::generation::Generation;
use crate::id::{OpId, TenantId, TimelineId};
use crate::index_part::{IndexPart, IndexVersion, LayerMeta, select_index};
use crate::io_error::{IoError, IoErrorKind};
use crate::key::Key;
use crate::layer_name::{KeyRange, LayerName};
use crate::lsn::Lsn;
use crate::metadata::TimelineMetadata;
use crate::remote_path::{RemoteKey, index_key, layer_key, parse_index_key};
use crate::time::{Instant, WallTime};
use std::collections::{BTreeMap, BTreeSet};

pub const TENANT: TenantId = TenantId([0x11; 16]);
pub const TIMELINE: TimelineId = TimelineId([0x22; 16]);

pub fn gen_(n: u32) -> Generation {
    Generation::new(n).expect("nonzero")
}

/// A small image layer named after `i`.
pub fn layer(i: u64) -> LayerName {
    let keys = KeyRange::new(Key(i * 2), Key(i * 2 + 1)).expect("start < end");
    LayerName::Image { keys, lsn: Lsn(0x10) }
}

pub fn md(lsn: u64) -> TimelineMetadata {
    TimelineMetadata { disk_consistent_lsn: Lsn(lsn), ..TimelineMetadata::default() }
}

pub fn test_config() -> UploadQueueConfig {
    UploadQueueConfig {
        layer_upload_concurrency: 2,
        backoff_base_ms: 10,
        backoff_max_ms: 80,
        stale_hold_max_bytes: 100,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Obj {
    Layer(LayerMeta),
    Index(IndexPart),
}

/// An upload effect the driver has not completed yet.
#[derive(Clone, Debug)]
pub struct Pending {
    pub op: OpId,
    pub key: RemoteKey,
    pub obj: Obj,
    /// A layer upload's layer: it reads the local file until it completes.
    pub layer: Option<LayerName>,
}

/// How the driver finishes one upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Finish {
    Ok,
    /// Transient error; nothing was written.
    Transient,
    /// Written, but the response was lost: reported as transient.
    LostResponse,
    /// Given up on (transient), but applied later, after newer writes.
    Late,
    Permanent,
    /// Failed with one of the I/O error kinds ([`fail_kind`]); nothing was written.
    Failed(u8),
}

/// Every kind of I/O failure, picked by `n` (modulo their number).
pub fn fail_kind(n: u8) -> IoErrorKind {
    IoErrorKind::ALL[usize::from(n) % IoErrorKind::ALL.len()]
}

/// A key handed to the deletion queue.
#[derive(Clone, Debug)]
pub struct Handed {
    pub key: RemoteKey,
    pub cancel_requested: bool,
}

pub struct Harness {
    pub q: UploadQueue,
    pub now: Instant,
    pub store: BTreeMap<RemoteKey, Obj>,
    /// Writes the driver gave up on that land later.
    pub late: Vec<(RemoteKey, Obj)>,
    pub outstanding: Vec<Pending>,
    pub handed: Vec<Handed>,
    pub validations: Vec<(Generation, Lsn)>,
    /// `ListTimeline` requests not answered yet.
    pub listings: Vec<OpId>,
    pub barriers: BTreeMap<BarrierId, Option<Result<(), BarrierError>>>,
    pub broken: Option<String>,
    pub deleted: bool,
    pub tombstone_durable: bool,
    pub aborted: Option<UploadQueueError>,
    pub backpressure: bool,
    pub trace: Vec<String>,
    pub record_trace: bool,
    /// The newest visible LSN ever published (it must stay durable).
    pub published_visible: Lsn,
    /// Local layer files: written by [`Harness::add`], removed by `RemoveLocal`.
    pub local: BTreeSet<LayerName>,
}

impl Harness {
    pub fn new_timeline(mode: AttachMode) -> Self {
        let q = UploadQueue::new_timeline(TENANT, TIMELINE, gen_(1), mode, md(0x10), test_config());
        Self::with(q)
    }

    /// Like `new_timeline`, recording a readable trace of inputs and effects.
    pub fn traced() -> Self {
        let q = UploadQueue::new_timeline(
            TENANT,
            TIMELINE,
            gen_(1),
            AttachMode::Single,
            md(0x10),
            test_config(),
        );
        Self::build(q, true)
    }

    pub fn with(q: UploadQueue) -> Self {
        Self::build(q, false)
    }

    fn build(q: UploadQueue, record_trace: bool) -> Self {
        let mut h = Harness {
            q,
            now: Instant::ZERO,
            store: BTreeMap::new(),
            late: Vec::new(),
            outstanding: Vec::new(),
            handed: Vec::new(),
            validations: Vec::new(),
            listings: Vec::new(),
            barriers: BTreeMap::new(),
            broken: None,
            deleted: false,
            tombstone_durable: false,
            aborted: None,
            backpressure: false,
            trace: vec!["> new_timeline gen=1 lsn=0/10".into()],
            record_trace,
            published_visible: Lsn(0),
            local: BTreeSet::new(),
        };
        h.drain();
        h
    }

    /// Feeds one input, drains its effects, checks the invariants inside and out.
    pub fn step<R>(&mut self, input: impl FnOnce(&mut UploadQueue, Instant) -> R) -> R {
        let out = input(&mut self.q, self.now);
        self.drain();
        out
    }

    /// Feeds one input as data ([`UploadQueue::handle`]), then as [`Harness::step`].
    pub fn input(&mut self, input: UploadInput) -> Result<UploadOutput, UploadQueueError> {
        self.step(|q, now| q.handle(now, input))
    }

    pub fn note(&mut self, line: String) {
        if self.record_trace {
            self.trace.push(line);
        }
    }

    fn drain(&mut self) {
        while let Some(e) = self.q.poll_effect() {
            self.effect(e);
        }
        self.q.check_invariants();
        self.check_world();
    }

    fn effect(&mut self, e: UploadEffect) {
        let mode = self.q.mode();
        match e {
            UploadEffect::UploadLayer { op, name, meta } => {
                assert!(mode.may_upload(), "S-SINGLE-WRITER: layer upload in {mode:?}");
                assert_eq!(meta.generation, self.q.generation(), "S-GEN-SUFFIX: {name}");
                self.note(format!("  {op} UploadLayer {name} size={}", meta.file_size));
                assert!(self.local.contains(&name), "LOCAL-READ: {name} uploaded from no file");
                let key = layer_key(TENANT, TIMELINE, &name, meta.generation);
                let layer = Some(name);
                self.outstanding.push(Pending { op, key, obj: Obj::Layer(meta), layer });
            }
            UploadEffect::UploadIndex { op, version, index } => {
                assert!(mode.may_upload(), "S-SINGLE-WRITER: index upload in {mode:?}");
                assert_eq!(index.seq, version.seq, "IndexPart.seq is the key's seq");
                for (name, meta) in &index.layer_metadata {
                    let key = layer_key(TENANT, TIMELINE, name, meta.generation);
                    let there = self.store.get(&key) == Some(&Obj::Layer(*meta));
                    assert!(there, "S-IDX-ORDER: index {version:?} names {key}, not uploaded");
                }
                self.note(format!(
                    "  {op} UploadIndex seq={} gen={} layers={} lsn={}{}",
                    version.seq,
                    version.generation,
                    index.layer_metadata.len(),
                    index.disk_consistent_lsn,
                    if index.deleted_at.is_some() { " TOMBSTONE" } else { "" }
                ));
                let key = index_key(TENANT, TIMELINE, version);
                self.outstanding.push(Pending { op, key, obj: Obj::Index(index), layer: None });
            }
            UploadEffect::HandDeletions { generation, keys } => {
                assert_eq!(generation, self.q.generation(), "deletions under a foreign generation");
                assert!(mode.may_delete(), "S-SINGLE-WRITER: deletion in {mode:?}");
                let names: Vec<&str> = keys.iter().map(|k| k.file_name()).collect();
                self.note(format!("  HandDeletions {names:?}"));
                for key in keys {
                    self.handed.push(Handed { key, cancel_requested: false });
                }
            }
            UploadEffect::CancelDeletion { key } => {
                self.note(format!("  CancelDeletion {}", key.file_name()));
                for h in self.handed.iter_mut().filter(|h| h.key == key) {
                    h.cancel_requested = true;
                }
            }
            UploadEffect::ValidateLsn { generation, lsn } => {
                self.note(format!("  ValidateLsn gen={generation} lsn={lsn}"));
                self.validations.push((generation, lsn));
            }
            UploadEffect::BarrierReached { id, result } => {
                self.note(format!("  BarrierReached {} {result:?}", id.0));
                self.barriers.insert(id, Some(result));
            }
            UploadEffect::LsnAdvanced { projected, visible } => {
                self.note(format!("  LsnAdvanced projected={projected} visible={visible}"));
                self.published_visible = self.published_visible.max(visible);
            }
            UploadEffect::Backpressure { on } => {
                self.note(format!("  Backpressure on={on}"));
                self.backpressure = on;
            }
            UploadEffect::Broken { reason } => {
                self.note(format!("  Broken {reason}"));
                self.broken = Some(reason);
            }
            UploadEffect::ListTimeline { op, prefix } => {
                assert_eq!(prefix, crate::remote_path::timeline_prefix(TENANT, TIMELINE));
                self.note(format!("  {op} ListTimeline"));
                self.listings.push(op);
            }
            UploadEffect::DeletionAborted { error } => {
                self.note(format!("  DeletionAborted {error}"));
                self.aborted = Some(error);
            }
            UploadEffect::TombstoneDurable => {
                self.note("  TombstoneDurable".into());
                self.tombstone_durable = true;
            }
            UploadEffect::TimelineDeleted => {
                self.note("  TimelineDeleted".into());
                self.deleted = true;
            }
            UploadEffect::RemoveLocal { name } => {
                self.note(format!("  RemoveLocal {name}"));
                let read = self.outstanding.iter().any(|p| p.layer.as_ref() == Some(&name));
                assert!(!read, "LOCAL-READ: {name}'s local file removed under its upload");
                // This world asks for a removal only after an unlink.
                let live = self.q.remote_layers().contains_key(&name) && self.q_is_live();
                assert!(!live, "{name}'s new file removed by a removal asked before its re-add");
                self.local.remove(&name);
            }
        }
    }

    /// The index a reader in generation `own` would load.
    pub fn newest_index(&self, own: Generation) -> Option<(IndexVersion, &IndexPart)> {
        let versions: Vec<IndexVersion> = self
            .store
            .keys()
            .filter_map(|k| parse_index_key(TENANT, TIMELINE, k).and_then(Result::ok))
            .collect();
        let chosen = select_index(own, &versions).chosen?;
        match self.store.get(&index_key(TENANT, TIMELINE, chosen)) {
            Some(Obj::Index(i)) => Some((chosen, i)),
            _ => None,
        }
    }

    /// S-IDX-REF / S-DEL-AFTER-INDEX on the world: the newest index names only
    /// layers that exist with the recorded metadata; S-PROJECTED against it.
    pub fn check_world(&self) {
        let deleting = matches!(self.q.state(), QueueState::Deleting(_) | QueueState::Deleted);
        let Some((version, index)) = self.newest_index(self.q.generation()) else {
            assert!(deleting || self.published_visible == Lsn(0), "visible published, no index");
            return;
        };
        if index.deleted_at.is_none() {
            for (name, meta) in &index.layer_metadata {
                let key = layer_key(TENANT, TIMELINE, name, meta.generation);
                assert_eq!(
                    self.store.get(&key),
                    Some(&Obj::Layer(*meta)),
                    "S-IDX-REF: newest index {version:?} names {key}, missing in storage"
                );
            }
            // Until this generation has an index of its own, a late PUT of an older
            // generation may outrank the loaded one (visible is not published then).
            let own = version.generation == self.q.generation();
            assert!(
                self.q.projected_lsn() <= index.disk_consistent_lsn || !own || !self.q_is_live(),
                "S-PROJECTED: projected {} beyond the durable index's {}",
                self.q.projected_lsn(),
                index.disk_consistent_lsn
            );
            assert!(
                self.published_visible <= index.disk_consistent_lsn,
                "S-VISIBLE: published {} beyond the durable index's {}",
                self.published_visible,
                index.disk_consistent_lsn
            );
        }
    }

    fn q_is_live(&self) -> bool {
        matches!(self.q.state(), QueueState::Active)
    }

    /// Completes the `i`-th outstanding upload.
    pub fn complete(&mut self, i: usize, how: Finish) {
        let p = self.outstanding.remove(i);
        let result = match how {
            Finish::Ok => {
                self.store.insert(p.key, p.obj);
                Ok(())
            }
            Finish::Transient => Err(IoError::remote(IoErrorKind::Transient, "k", "503")),
            Finish::LostResponse => {
                self.store.insert(p.key, p.obj);
                Err(IoError::remote(IoErrorKind::Transient, "k", "timeout"))
            }
            Finish::Late => {
                self.late.push((p.key, p.obj));
                Err(IoError::remote(IoErrorKind::Transient, "k", "timeout"))
            }
            Finish::Permanent => Err(IoError::remote(IoErrorKind::Permanent, "k", "403")),
            Finish::Failed(n) => Err(IoError::remote(fail_kind(n), "k", "injected")),
        };
        self.note(format!("> {} completion {how:?}", p.op));
        let op = p.op;
        self.input(UploadInput::Completion { op, result }).expect("op was in flight");
    }

    /// A write given up on earlier lands now.
    pub fn apply_late(&mut self, i: usize) {
        let (key, obj) = self.late.remove(i);
        self.note(format!("> late write lands: {}", key.file_name()));
        self.store.insert(key, obj);
        self.drain();
    }

    /// The deletion queue finishes the `i`-th handed key: a cancel that was asked
    /// for wins if `cancel_wins`.
    pub fn finish_deletion(&mut self, i: usize, cancel_wins: bool) {
        let h = self.handed.remove(i);
        let outcome = if h.cancel_requested && cancel_wins {
            DeletionOutcome::Cancelled
        } else {
            self.store.remove(&h.key);
            DeletionOutcome::Executed
        };
        self.note(format!("> deletion report {} {outcome:?}", h.key.file_name()));
        let report = DeletionReport { tenant: TENANT, timeline: TIMELINE, key: h.key, outcome };
        self.input(UploadInput::DeletionReport(report)).expect("reports are always taken");
    }

    /// Answers the `i`-th listing request with the store's keys, or a transient error.
    pub fn complete_listing(&mut self, i: usize, ok: bool) {
        let op = self.listings.remove(i);
        let result = if ok {
            Ok(self.store.keys().cloned().collect())
        } else {
            Err(IoError::remote(IoErrorKind::Transient, "k", "503"))
        };
        self.note(format!("> {op} listing {}", if ok { "Ok" } else { "Transient" }));
        self.input(UploadInput::Listing { op, result }).expect("listing was in flight");
    }

    /// The validator answers the oldest LSN update: the generation is current.
    pub fn validate(&mut self, valid: bool) {
        if self.validations.is_empty() {
            return;
        }
        let (generation, lsn) = self.validations.remove(0);
        let v = LsnValidation { tenant: TENANT, timeline: TIMELINE, generation, lsn, valid };
        self.note(format!("> validation gen={generation} lsn={lsn} valid={valid}"));
        self.input(UploadInput::LsnValidation(v)).expect("validations are always taken");
    }

    /// Moves the clock to the next deadline and fires every timer due then, one
    /// named timer at a time; false if there is none.
    pub fn fire_timer(&mut self) -> bool {
        let Some(deadline) = self.q.poll_timeout() else { return false };
        self.now = self.now.max(deadline);
        while let Some((at, timer)) = self.q.next_timer()
            && at <= self.now
        {
            self.input(UploadInput::Timeout(timer)).expect("timers are always taken");
        }
        true
    }

    /// Writes layer `i`'s local file, then adds the layer.
    pub fn add(&mut self, i: u64, size: u64) -> Result<(), UploadQueueError> {
        self.local.insert(layer(i));
        let input = UploadInput::AddLayer { name: layer(i), file_size: size, crc32c: i as u32 };
        self.input(input).map(|_| ())
    }

    pub fn barrier(&mut self) -> BarrierId {
        let Ok(UploadOutput::Barrier(id)) = self.input(UploadInput::Barrier) else {
            panic!("a barrier is always answered with its id")
        };
        self.barriers.entry(id).or_insert(None);
        id
    }

    pub fn delete_timeline(&mut self) -> Result<(), UploadQueueError> {
        self.input(UploadInput::DeleteTimeline { at: WallTime(1_700_000_000_000) }).map(|_| ())
    }

    /// Completes everything in flight, fires timers, executes deletions and answers
    /// validations until the world is quiet ("heal, then check").
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            if !self.outstanding.is_empty() {
                self.complete(0, Finish::Ok);
            } else if !self.handed.is_empty() {
                self.finish_deletion(0, false);
            } else if !self.listings.is_empty() {
                self.complete_listing(0, true);
            } else if !self.validations.is_empty() {
                self.validate(true);
            } else if !self.fire_timer() {
                return;
            }
        }
        panic!("the queue did not settle");
    }

    /// Names of the outstanding uploads, in emission order.
    pub fn names(&self) -> Vec<String> {
        self.outstanding
            .iter()
            .map(|p| match &p.obj {
                Obj::Layer(_) => p.key.file_name().split("__").next().unwrap_or("").to_owned(),
                Obj::Index(i) => format!("index#{}", i.seq),
            })
            .collect()
    }

    /// Crash: each outstanding write lands or not as `landed(i)` says; the deletion
    /// queue keeps (and later executes) what it was handed; the node restarts in the
    /// next generation and recovers from the newest index in storage.
    pub fn crash_and_recover(&mut self, landed: impl Fn(usize) -> bool, mode: AttachMode) {
        assert!(
            self.try_crash_and_recover(landed, mode),
            "crash before the first index was durable"
        );
    }

    /// `crash_and_recover`; false (and no new machine) if no index is left to load.
    pub fn try_crash_and_recover(
        &mut self,
        landed: impl Fn(usize) -> bool,
        mode: AttachMode,
    ) -> bool {
        for (i, p) in std::mem::take(&mut self.outstanding).into_iter().enumerate() {
            if landed(i) {
                self.store.insert(p.key, p.obj);
            }
        }
        // Executed by the deletion queue after the restart (its lists are durable).
        for h in std::mem::take(&mut self.handed) {
            self.store.remove(&h.key);
        }
        self.validations.clear();
        self.listings.clear();
        self.barriers.clear();
        // A fresh machine starts without backpressure.
        self.backpressure = false;
        let generation = self.q.generation().next().expect("generations left");
        let Some((version, index)) = self.newest_index(generation).map(|(v, i)| (v, i.clone()))
        else {
            self.note("> crash; no index left".into());
            return false;
        };
        self.note(format!("> crash; recover gen={generation} from seq={}", version.seq));
        let q =
            UploadQueue::recover(TENANT, TIMELINE, generation, mode, index, version, test_config());
        self.q = q;
        self.drain();
        true
    }
}
