//! A synchronous test harness: completes every effect at once against an in-memory
//! "disk" and "remote storage" (BTreeMaps), with faults the test switches on. With
//! `manual` set it holds world effects instead, and the caller completes any held
//! one, in any order, with success, a failure of any [`IoErrorKind`], or never
//! (a lost completion): what the model's step language (`model.rs`) and the
//! `timeline` fuzz target drive.

use super::*;
use crate::index_part::IndexPart;
use crate::io_error::{IoErrorKind, IoTarget};
use crate::layer_file;
use crate::redo::IngestRecord;
use crate::scheduler::JobKind as BackgroundJob;
use std::collections::BTreeSet;

pub fn ids() -> (TenantId, TimelineId) {
    (TenantId::from_bytes([1; 16]), TimelineId::from_bytes([2; 16]))
}

/// What survives a crash: durable local files and remote storage.
#[derive(Clone, Debug)]
pub struct World {
    pub disk: BTreeMap<LayerName, Vec<u8>>,
    pub metadata_file: Option<Vec<u8>>,
    pub remote: BTreeMap<LayerName, (Vec<u8>, LayerMeta)>,
    /// The latest uploaded index.
    pub index: IndexPart,
    /// What the upload queue holds: its layer set and the latest durable metadata.
    pub queue_layers: BTreeMap<LayerName, LayerMeta>,
    pub queue_metadata: TimelineMetadata,
    /// While set, the index is not re-uploaded (the upload queue lags).
    pub lag: bool,
    /// Unlinked layers whose remote objects wait for an index without them
    /// (S-DEL-AFTER-INDEX); in memory only, lost on a crash.
    pub pending_delete: BTreeSet<LayerName>,
    /// Remote layer objects deleted so far.
    pub deleted: Vec<LayerName>,
}

impl World {
    pub fn new(initdb: Lsn) -> Self {
        let metadata = TimelineMetadata {
            disk_consistent_lsn: initdb,
            gc_cutoff_lsn: Lsn::ZERO,
            initdb_lsn: initdb,
            ancestor: None,
        };
        World {
            disk: BTreeMap::new(),
            metadata_file: None,
            remote: BTreeMap::new(),
            index: IndexPart::empty(metadata),
            queue_layers: BTreeMap::new(),
            queue_metadata: metadata,
            lag: false,
            pending_delete: BTreeSet::new(),
            deleted: Vec::new(),
        }
    }

    /// Uploads an index of the queue's current state (layer objects are uploaded
    /// the moment they are added, so S-IDX-ORDER holds trivially).
    pub fn publish(&mut self) {
        let index = &mut self.index;
        index.seq += 1;
        index.layer_metadata = self.queue_layers.clone();
        index.disk_consistent_lsn = self.queue_metadata.disk_consistent_lsn;
        index.metadata = self.queue_metadata;
        for (name, meta) in &index.layer_metadata {
            assert_eq!(self.remote.get(name).map(|(_, m)| m), Some(meta), "S-IDX-REF");
        }
        // Hand on deletions the new index no longer names.
        let gone: Vec<LayerName> = self
            .pending_delete
            .iter()
            .filter(|n| !self.index.layer_metadata.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.pending_delete.remove(&name);
            self.remote.remove(&name);
            self.deleted.push(name);
        }
    }

    pub fn set_lag(&mut self, lag: bool) {
        self.lag = lag;
        if !lag {
            self.publish();
        }
    }
}

pub struct Harness {
    pub tl: Timeline,
    pub world: World,
    pub now: Instant,
    pub reads: BTreeMap<ReadId, Result<Option<Vec<u8>>, ReadError>>,
    pub flushes_done: BTreeSet<FlushId>,
    pub next_read: u64,
    /// The next this-many layer/metadata writes fail (leaving garbage behind).
    pub fail_writes: u32,
    /// How those writes fail (`FsyncFailed` unless a test says otherwise).
    pub write_failure: IoErrorKind,
    /// The next this-many downloads / redo calls fail.
    pub fail_downloads: u32,
    pub fail_redos: u32,
    /// Failures injected so far (by the counters above or `fail_held`): of local
    /// reads and downloads, and of redo calls. A read may fail only after one.
    pub data_faults: u64,
    pub redo_faults: u64,
    /// Held world effects dropped without a completion (`lose_held`): their ops
    /// stay in flight until a crash.
    pub lost: u64,
    /// Every effect seen, for order assertions.
    pub log: Vec<TimelineEffect>,
    /// World effects not yet completed while `manual` (oldest first).
    pub pending: VecDeque<TimelineEffect>,
    /// Drain effects without completing world effects (the test completes them).
    pub manual: bool,
    /// Run `check_invariants` after every input and keep the effect log (off only
    /// in benchmarks).
    pub check: bool,
    /// The scheduler: grant every `JobWanted` at once (default), or hold them in
    /// `wanted` for the test to grant.
    pub grant_jobs: bool,
    pub wanted: BTreeSet<BackgroundJob>,
    /// Jobs granted and not finished yet.
    pub running_jobs: BTreeSet<BackgroundJob>,
    /// Grants given so far.
    pub grants: u64,
}

impl Harness {
    pub fn new(initdb: Lsn, config: TimelineConfig) -> Self {
        let (t, tl) = ids();
        let tl = Timeline::create(t, tl, initdb, config, Instant::ZERO);
        tl.check_invariants();
        Self::around(tl, World::new(initdb), Instant::ZERO)
    }

    /// Recovers from what `world` holds, as start-up does.
    pub fn recover(mut world: World, config: TimelineConfig, now: Instant) -> Self {
        let (t, tl) = ids();
        let local: BTreeMap<LayerName, u64> =
            world.disk.iter().map(|(n, b)| (n.clone(), b.len() as u64)).collect();
        let (tl, remove) = Timeline::recover(t, tl, &world.index, &local, config, now);
        tl.check_invariants();
        for name in &remove {
            world.disk.remove(name);
        }
        // The upload queue recovers from the same index and unlinks future layers;
        // deletions it had not handed on yet are forgotten (the objects leak).
        world.pending_delete.clear();
        world.queue_layers = world.index.layer_metadata.clone();
        world.queue_metadata = world.index.metadata;
        for name in tl.future_layers() {
            world.queue_layers.remove(name);
        }
        if !world.lag {
            world.publish();
        }
        Self::around(tl, world, now)
    }

    /// A harness around `tl` in `world` at `now`: no faults armed, nothing held.
    fn around(tl: Timeline, world: World, now: Instant) -> Self {
        Harness {
            tl,
            world,
            now,
            reads: BTreeMap::new(),
            flushes_done: BTreeSet::new(),
            next_read: 0,
            fail_writes: 0,
            write_failure: IoErrorKind::FsyncFailed,
            fail_downloads: 0,
            fail_redos: 0,
            data_faults: 0,
            redo_faults: 0,
            lost: 0,
            log: Vec::new(),
            pending: VecDeque::new(),
            manual: false,
            check: true,
            grant_jobs: true,
            wanted: BTreeSet::new(),
            running_jobs: BTreeSet::new(),
            grants: 0,
        }
    }

    pub fn complete(&mut self, op: OpId, c: TimelineCompletion) {
        self.tl.handle_completion(self.now, op, c).expect("harness completes real ops");
        if self.check {
            self.tl.check_invariants();
        }
    }

    /// Executes effects until none are left.
    pub fn drain(&mut self) {
        if self.check {
            self.tl.check_invariants();
        }
        while let Some(e) = self.tl.poll_effect() {
            if self.check {
                self.log.push(e.clone());
            }
            self.execute(e);
        }
    }

    fn execute(&mut self, e: TimelineEffect) {
        let manual = self.manual;
        let e = if manual {
            e
        } else {
            match self.execute_io(e) {
                Some(e) => e,
                None => return,
            }
        };
        match e {
            TimelineEffect::ReadDone { req, result } => {
                assert!(self.reads.insert(req, result).is_none(), "{req:?} answered twice");
            }
            TimelineEffect::LayerFlushed { name, file_size, crc32c } => {
                // S1: the layer is in the map when the upload queue hears of it.
                assert!(self.tl.layer(&name).is_some(), "S1: {name} flushed but not in the map");
                let bytes = self.world.disk[&name].clone();
                assert_eq!(bytes.len() as u64, file_size);
                assert_eq!(layer_file::file_crc32c(&bytes), crc32c);
                let meta = LayerMeta { file_size, generation: self.tl.config().generation, crc32c };
                self.world.remote.insert(name.clone(), (bytes, meta));
                let w = &mut self.world;
                w.pending_delete.remove(&name);
                assert!(w.queue_layers.insert(name.clone(), meta).is_none(), "{name} added twice");
                if !w.lag {
                    w.publish();
                }
            }
            TimelineEffect::MetadataDurable { metadata } => {
                let on_disk = self.world.metadata_file.as_deref().expect("written before durable");
                assert_eq!(TimelineMetadata::from_bytes(on_disk), Ok(metadata));
                self.world.queue_metadata = metadata;
                if !self.world.lag {
                    self.world.publish();
                }
            }
            TimelineEffect::FlushDone { id, disk_consistent_lsn } => {
                assert!(disk_consistent_lsn <= self.tl.disk_consistent_lsn());
                assert!(self.flushes_done.insert(id), "{id:?} answered twice");
            }
            TimelineEffect::UnlinkLayers { names } => {
                // The upload queue: the replacements were added before (S-IDX-REF).
                for name in &names {
                    assert!(self.tl.layer(name).is_none(), "{name} unlinked but still mapped");
                    assert!(
                        self.world.queue_layers.remove(name).is_some(),
                        "{name} not in the set"
                    );
                    self.world.pending_delete.insert(name.clone());
                }
                if !self.world.lag {
                    self.world.publish();
                }
            }
            TimelineEffect::EvictLayer { name } => {
                self.world.disk.remove(&name);
            }
            TimelineEffect::JobWanted { kind } => {
                assert!(self.wanted.insert(kind), "{kind:?} asked for twice");
                assert!(!self.running_jobs.contains(&kind), "{kind:?} asked for while running");
                if self.grant_jobs {
                    self.grant(kind);
                }
            }
            TimelineEffect::JobFinished { kind } => {
                assert!(self.running_jobs.remove(&kind), "{kind:?} finished but not granted");
            }
            // For the node (it breaks the timeline): the log records it.
            TimelineEffect::OutOfSpace { .. } => {}
            other => {
                assert!(manual);
                self.pending.push_back(other);
            }
        }
    }

    /// Carries out an I/O effect on the world and completes it; any other effect
    /// is handed back.
    fn execute_io(&mut self, e: TimelineEffect) -> Option<TimelineEffect> {
        match e {
            TimelineEffect::WriteLayer { op, name, bytes } => {
                let r = if self.fail_writes > 0 {
                    self.fail_writes -= 1;
                    self.world.disk.insert(name.clone(), bytes[..bytes.len() / 2].to_vec());
                    Err(IoError::local(self.write_failure, name.to_string(), "write failed"))
                } else {
                    self.world.disk.insert(name, bytes);
                    Ok(())
                };
                self.complete(op, TimelineCompletion::Written(r));
            }
            TimelineEffect::WriteMetadata { op, metadata } => {
                let r = if self.fail_writes > 0 {
                    self.fail_writes -= 1;
                    Err(IoError::local(self.write_failure, "metadata", "write failed"))
                } else {
                    self.world.metadata_file = Some(metadata.to_bytes().to_vec());
                    Ok(())
                };
                self.complete(op, TimelineCompletion::Written(r));
            }
            TimelineEffect::ReadLayer { op, name } => {
                let r = self.world.disk.get(&name).cloned().ok_or_else(|| {
                    IoError::local(IoErrorKind::NotFound, name.to_string(), "no such file")
                });
                self.complete(op, TimelineCompletion::Read(r));
            }
            TimelineEffect::DownloadLayer { op, name, meta } => {
                let r = match self.world.remote.get(&name) {
                    _ if self.fail_downloads > 0 => {
                        self.fail_downloads -= 1;
                        self.data_faults += 1;
                        Err(IoError::remote(
                            IoErrorKind::Transient,
                            name.to_string(),
                            "503 slow down",
                        ))
                    }
                    Some((bytes, m))
                        if *m == meta
                            && bytes.len() as u64 == meta.file_size
                            && layer_file::file_crc32c(bytes) == meta.crc32c =>
                    {
                        self.world.disk.insert(name, bytes.clone());
                        Ok(())
                    }
                    Some(_) => Err(IoError::remote(
                        IoErrorKind::Corrupt,
                        name.to_string(),
                        "size or checksum mismatch",
                    )),
                    None => Err(IoError::remote(IoErrorKind::NotFound, name.to_string(), "404")),
                };
                self.complete(op, TimelineCompletion::Downloaded(r));
            }
            TimelineEffect::Redo { op, request } => {
                // Round-trip the wire encoding, as the walredo process would.
                let decoded = RedoRequest::decode(&request.encode()).expect("valid encoding");
                let r = if self.fail_redos > 0 {
                    self.fail_redos -= 1;
                    self.redo_faults += 1;
                    Err(IoError::new(
                        IoErrorKind::Transient,
                        IoTarget::Redo,
                        "walredo process died",
                    ))
                } else {
                    decoded.execute().map_err(|e| {
                        IoError::new(IoErrorKind::Permanent, IoTarget::Redo, e.to_string())
                    })
                };
                self.complete(op, TimelineCompletion::Redone(r));
            }
            other => return Some(other),
        }
        None
    }

    /// Grants the job of `kind` the timeline asked for (effects not drained).
    pub fn grant(&mut self, kind: BackgroundJob) {
        assert!(self.wanted.remove(&kind), "{kind:?} not asked for");
        self.running_jobs.insert(kind);
        self.grants += 1;
        self.tl.handle_job_granted(self.now, kind).expect("asked for");
        if self.check {
            self.tl.check_invariants();
        }
    }

    /// Grants every job asked for and drains.
    pub fn grant_all(&mut self) {
        while let Some(kind) = self.wanted.pop_first() {
            self.wanted.insert(kind);
            self.grant(kind);
            self.drain();
        }
    }

    /// Completes the oldest world effect held while `manual`; false if none.
    pub fn complete_next(&mut self) -> bool {
        self.complete_held(0)
    }

    /// Completes the held world effect at `index` (modulo the number held) as the
    /// world does; false if none is held.
    pub fn complete_held(&mut self, index: usize) -> bool {
        let Some(e) = self.take_held(index) else { return false };
        let manual = std::mem::replace(&mut self.manual, false);
        self.execute(e);
        self.manual = manual;
        self.drain();
        true
    }

    /// Fails the held world effect at `index` (modulo the number held) with
    /// `kind`: a failed layer write leaves a torn file behind; false if none is held.
    pub fn fail_held(&mut self, index: usize, kind: IoErrorKind) -> bool {
        let Some(e) = self.take_held(index) else { return false };
        let (op, c) = match e {
            TimelineEffect::WriteLayer { op, name, bytes } => {
                self.world.disk.insert(name.clone(), bytes[..bytes.len() / 2].to_vec());
                (op, TimelineCompletion::Written(Err(IoError::local(kind, name.to_string(), "x"))))
            }
            TimelineEffect::WriteMetadata { op, .. } => {
                (op, TimelineCompletion::Written(Err(IoError::local(kind, "metadata", "x"))))
            }
            TimelineEffect::ReadLayer { op, name } => {
                self.data_faults += 1;
                (op, TimelineCompletion::Read(Err(IoError::local(kind, name.to_string(), "x"))))
            }
            TimelineEffect::DownloadLayer { op, name, .. } => {
                self.data_faults += 1;
                let e = IoError::remote(kind, name.to_string(), "x");
                (op, TimelineCompletion::Downloaded(Err(e)))
            }
            TimelineEffect::Redo { op, .. } => {
                self.redo_faults += 1;
                (op, TimelineCompletion::Redone(Err(IoError::new(kind, IoTarget::Redo, "x"))))
            }
            other => unreachable!("only world effects are held: {other:?}"),
        };
        self.complete(op, c);
        self.drain();
        true
    }

    /// Drops the held world effect at `index` (modulo the number held): its
    /// completion never comes. False if none is held.
    pub fn lose_held(&mut self, index: usize) -> bool {
        let lost = self.take_held(index).is_some();
        self.lost += u64::from(lost);
        lost
    }

    fn take_held(&mut self, index: usize) -> Option<TimelineEffect> {
        let n = self.pending.len();
        if n == 0 { None } else { self.pending.remove(index % n) }
    }

    /// The upload queue reports every layer it holds as uploaded.
    pub fn confirm_uploads(&mut self) {
        let names: Vec<LayerName> = self.world.queue_layers.keys().cloned().collect();
        self.tl.handle_layers_uploaded(self.now, &names);
        self.drain();
    }

    /// Ingests like a client: a [`IngestError::SizeUnknown`] refusal is retried
    /// once the size reads it started are done (during the drain, unless effects
    /// are held or fail), a few times.
    pub fn ingest(&mut self, records: Vec<IngestRecord>) -> Result<IngestOutcome, IngestError> {
        let mut attempts = 0;
        loop {
            let r = self.tl.handle_ingest(self.now, records.clone());
            self.drain();
            attempts += 1;
            if attempts >= 8 || !matches!(r, Err(IngestError::SizeUnknown { .. })) {
                return r;
            }
        }
    }

    /// Flushes and runs timers until the flush is answered.
    pub fn flush(&mut self) {
        let id = self.tl.handle_flush(self.now);
        self.drain();
        for _ in 0..1000 {
            if self.flushes_done.contains(&id) {
                return;
            }
            let at = self.tl.poll_timeout().expect("an unfinished flush has a timer");
            self.advance_to(at);
        }
        panic!("flush never finished");
    }

    /// Moves the clock to `at` and fires every timer due then, one named timer at a
    /// time, draining after each. With none due, the machine still sees `at`: a
    /// timer that is not due is a stale firing, which changes nothing but lets the
    /// scheduling pass run at `at` (what any input does).
    pub fn advance_to(&mut self, at: Instant) {
        self.now = self.now.max(at);
        if self.tl.next_timer().is_none_or(|(due, _)| due > self.now) {
            self.tl.handle_timeout(self.now, TimelineTimer::Checkpoint);
        }
        for _ in 0..10_000 {
            match self.tl.next_timer() {
                Some((due, timer)) if due <= self.now => {
                    self.tl.handle_timeout(self.now, timer);
                    self.drain();
                }
                _ => return self.drain(),
            }
        }
        panic!("a timer that fired stayed due");
    }

    pub fn start_read(&mut self, key: Key, lsn: Lsn) -> ReadId {
        let id = ReadId(self.next_read);
        self.next_read += 1;
        self.tl.handle_read(self.now, id, key, lsn);
        self.drain();
        id
    }

    /// Reads and expects an answer without waiting.
    pub fn get(&mut self, key: Key, lsn: Lsn) -> Result<Option<Vec<u8>>, ReadError> {
        let id = self.start_read(key, lsn);
        self.reads.remove(&id).expect("the read finished synchronously")
    }
}
