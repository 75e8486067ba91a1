//! The simulated disk: an in-memory file system with page cache and durable state
//! kept apart, owned by the simulated world.
//!
//! The node's init code captures a [`SimDisk`] (a cloneable handle); the state
//! lives behind it, so a node kill does not touch it. The nemesis calls
//! [`SimDisk::crash`] in the same step as it kills the node: that applies the
//! crash rule.
//!
//! Model: inodes (files, directories) and, per directory, its entries as the page
//! cache has them and as they were at its last fsync; per file, its data and the
//! data as of its last fsync.
//!
//! Crash rule ([`SimDisk::crash`]): the namespace is rebuilt from the root through
//! the durable entries only (an unsynced create, rename or remove is lost), every
//! file keeps only its synced data, except that the last unsynced write may
//! survive torn at a 512-byte boundary (site `disk.crash.torn_write`).
//!
//! Every operation is a sequence of steps with a (virtual) sleep before each, so a
//! kill can land between any two (madsim's timers round a sleep up to a whole
//! millisecond, so a step takes about 1 ms of simulated time). `write_atomic` is: create parents (each new
//! directory, then an fsync of its parent), create and write the temp file, fsync
//! it, rename it over the target, fsync the directory.
//!
//! Faults ([`crate::faults::site`]): `disk.fsync_fail` (the fsync returns `FsyncFailed`; a
//! file's data is then unknown and a later fsync will not persist it; a directory
//! keeps its old durable entries), `disk.enospc` (creating a file or directory
//! fails with `NoSpace`), `disk.full` (an episode of 1–10 s in which every creation
//! fails with `NoSpace`), `disk.slow_io` (one step takes 50–500 ms instead of
//! microseconds), `disk.read.eio` (a read of a layer file fails with `Io`) and
//! `disk.read.bitflip` (a read of a layer file returns one bit flipped; the file
//! stays intact). The two read sites touch layer files only, and never the read of
//! an upload (`read_unfaulted`): docs/FAULT_MODEL.md, "Local read faults".
//! `disk.read.meta_eio`: a read of a file kept without a checksum (a tenant's
//! `config-v1`, a deletion list, the deletion header) fails with `Io`.
//! `disk.complete.late`: an operation's steps (its effect) run on time, then its
//! answer is held for 5–500 ms, so that later operations of the node complete
//! first (completions reordered on purpose; `disk.slow_io` delays before a step).
//!
//! Simplifications against POSIX: a directory may be renamed only to a free name;
//! `remove_dir_all` unlinks the tree at once (a crash before its parent's fsync
//! brings the whole tree back).

use crate::faults::{Faults, site};
use camino::{Utf8Path, Utf8PathBuf};
use madsim::rand::{Rng, thread_rng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use strata_adapters::disk::{
    DirEntry, Disk, DiskError, DiskErrorKind, TEMP_FILE_SUFFIX, check_relative, is_temp_file_name,
};

type Ino = u64;
const ROOT: Ino = 0;
/// The unit a crash may tear a write at.
pub const SECTOR_BYTES: usize = 512;

/// Step latencies of the simulated disk.
#[derive(Clone, Debug)]
pub struct SimDiskConfig {
    pub step_latency_min_us: u64,
    pub step_latency_max_us: u64,
    /// Added to a step when `disk.slow_io` fires.
    pub slow_io_min_ms: u64,
    pub slow_io_max_ms: u64,
    /// How long a `disk.full` episode lasts.
    pub full_min_ms: u64,
    pub full_max_ms: u64,
    /// How long `disk.complete.late` holds an answer after its effect.
    pub late_min_ms: u64,
    pub late_max_ms: u64,
}

impl Default for SimDiskConfig {
    fn default() -> Self {
        SimDiskConfig {
            step_latency_min_us: 10,
            step_latency_max_us: 200,
            slow_io_min_ms: 50,
            slow_io_max_ms: 500,
            full_min_ms: 1_000,
            full_max_ms: 10_000,
            late_min_ms: 5,
            late_max_ms: 500,
        }
    }
}

/// A file's bytes, shared: an fsync or a crash copies the handle, not the bytes
/// (copying every file's data at each fsync and twice at each crash was a cost of
/// its own in release swarms: docs/PERFORMANCE.md). Never changed in place.
type Data = Arc<Vec<u8>>;

#[derive(Clone, Debug)]
struct FileNode {
    data: Data,
    synced: Data,
    /// An fsync failed: the page cache is marked clean, so later fsyncs do not
    /// persist `data`.
    poisoned: bool,
    /// The disk's epoch (crash count) when the file was created: a file of an
    /// earlier node life is one start-up must reconcile (S-LOCAL-TRUTH).
    born: u64,
}

/// A deliberately broken disk, for a test that shows a checker failing; the swarm
/// never sets one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiskBreak {
    #[default]
    None,
    /// The removal of a layer file created before the last crash is answered done
    /// and not done: local-only layers of an earlier life survive start-up's
    /// reconciliation (S-LOCAL-TRUTH).
    KeepsEarlierLayers,
    /// `write_atomic` of a `config-v1` skips the temp file's fsync (the rename and
    /// the directory fsync still happen): a crash leaves the new name on empty
    /// data (S-CRASHSAFE).
    UnsyncedConfigData,
    /// Every step takes as many more milliseconds as there were disks made on
    /// this thread before this one (mod 5): state that leaks from one run into
    /// the next, so a seed run twice in one process runs differently
    /// (S-DETERMINISM).
    LeaksAcrossRuns,
}

thread_local! {
    /// Disks made so far on this thread, where a run and the next one of a test
    /// run (only [`DiskBreak::LeaksAcrossRuns`] reads it).
    static DISKS_MADE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[derive(Clone, Debug, Default)]
struct DirNode {
    entries: BTreeMap<String, Ino>,
    durable: BTreeMap<String, Ino>,
}

#[derive(Clone, Debug)]
enum Inode {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Debug)]
struct State {
    inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
    next_temp: u64,
    brk: DiskBreak,
    /// Files a read of failed with `disk.read.meta_eio` since the last crash.
    meta_eio_since_crash: BTreeSet<Utf8PathBuf>,
    /// The file of the last write not yet fsynced (the one a crash may tear).
    last_unsynced_write: Option<Ino>,
    /// Bumped by every crash; an operation that started before fails its next step.
    epoch: u64,
    /// Paths whose last `write_atomic` failed its fsync: their contents are unknown
    /// until a later write succeeds, they are removed, or a crash settles them.
    untrusted: BTreeSet<Utf8PathBuf>,
    /// Reads of such paths (`FSYNC-TRUST` violations).
    untrusted_reads: Vec<String>,
    /// The disk is full until then (a `disk.full` episode).
    full_until: Option<tokio::time::Instant>,
    config: SimDiskConfig,
}

/// A step failed: the kind and what happened.
type StepError = (DiskErrorKind, String);

fn io(msg: impl Into<String>) -> StepError {
    (DiskErrorKind::Io, msg.into())
}

fn not_found() -> StepError {
    (DiskErrorKind::NotFound, "no such file or directory".into())
}

impl State {
    fn dir(&self, ino: Ino) -> Result<&DirNode, StepError> {
        match self.inodes.get(&ino) {
            Some(Inode::Dir(d)) => Ok(d),
            Some(Inode::File(_)) => Err(io("not a directory")),
            None => Err(io("inode lost")),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut DirNode, StepError> {
        match self.inodes.get_mut(&ino) {
            Some(Inode::Dir(d)) => Ok(d),
            Some(Inode::File(_)) => Err(io("not a directory")),
            None => Err(io("inode lost")),
        }
    }

    /// The inode at `comps` (the root for none).
    fn lookup(&self, comps: &[String]) -> Result<Ino, StepError> {
        let mut cur = ROOT;
        for c in comps {
            cur = *self.dir(cur)?.entries.get(c).ok_or_else(not_found)?;
        }
        Ok(cur)
    }

    fn alloc(&mut self, node: Inode) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, node);
        ino
    }

    fn fsync_dir(&mut self, ino: Ino) -> Result<(), StepError> {
        let d = self.dir_mut(ino)?;
        d.durable = d.entries.clone();
        Ok(())
    }

    fn fsync_file(&mut self, ino: Ino) -> Result<(), StepError> {
        match self.inodes.get_mut(&ino) {
            Some(Inode::File(f)) => {
                if !f.poisoned {
                    f.synced = f.data.clone();
                }
            }
            _ => return Err(io("not a file")),
        }
        if self.last_unsynced_write == Some(ino) {
            self.last_unsynced_write = None;
        }
        Ok(())
    }

    /// The crash rule: rebuild from the root through durable entries.
    fn crash(&mut self, faults: &Faults) {
        let torn_candidate = self.last_unsynced_write.take();
        let mut old = std::mem::take(&mut self.inodes);
        let mut seen = BTreeSet::new();
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            if !seen.insert(ino) {
                continue;
            }
            let Some(node) = old.remove(&ino) else { continue };
            let node = match node {
                Inode::Dir(d) => {
                    todo.extend(d.durable.values().copied());
                    Inode::Dir(DirNode { entries: d.durable.clone(), durable: d.durable })
                }
                Inode::File(f) => {
                    let unsynced =
                        f.poisoned || !(Arc::ptr_eq(&f.data, &f.synced) || f.data == f.synced);
                    let data = if unsynced
                        && torn_candidate == Some(ino)
                        && faults.fire(site::DISK_TORN_WRITE)
                    {
                        Arc::new(torn(&f.synced, &f.data))
                    } else {
                        f.synced.clone()
                    };
                    Inode::File(FileNode {
                        synced: data.clone(),
                        data,
                        poisoned: false,
                        born: f.born,
                    })
                }
            };
            self.inodes.insert(ino, node);
        }
        self.epoch += 1;
        self.meta_eio_since_crash.clear();
        // After a crash a file is its old or its new durable version: known again.
        self.untrusted.clear();
    }
}

/// What a write of `new` over `old` torn at a random sector boundary leaves: the
/// sectors before the cut are new, the rest old (or nothing where old was shorter).
fn torn(old: &[u8], new: &[u8]) -> Vec<u8> {
    let sectors = new.len().div_ceil(SECTOR_BYTES);
    let cut = if sectors == 0 { 0 } else { thread_rng().gen_range(0..sectors) * SECTOR_BYTES };
    let mut out = new[..cut].to_vec();
    if old.len() > cut {
        out.extend_from_slice(&old[cut..]);
    }
    out
}

/// The simulated disk (a handle: clones share one state).
#[derive(Clone, Debug)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
    faults: Faults,
    /// How many disks this thread made before this one.
    made: u64,
}

impl Default for SimDisk {
    fn default() -> Self {
        SimDisk::new()
    }
}

fn comps(path: &Utf8Path) -> Vec<String> {
    path.components().map(|c| c.as_str().to_owned()).collect()
}

impl SimDisk {
    /// An empty disk with its own fault settings (all off).
    pub fn new() -> SimDisk {
        SimDisk::with_faults(Faults::new(), SimDiskConfig::default())
    }

    /// An empty disk reporting to a shared fault registry.
    pub fn with_faults(faults: Faults, config: SimDiskConfig) -> SimDisk {
        let mut inodes = BTreeMap::new();
        inodes.insert(ROOT, Inode::Dir(DirNode::default()));
        let state = State {
            inodes,
            next_ino: ROOT + 1,
            next_temp: 0,
            last_unsynced_write: None,
            epoch: 0,
            brk: DiskBreak::None,
            meta_eio_since_crash: BTreeSet::new(),
            full_until: None,
            untrusted: BTreeSet::new(),
            untrusted_reads: Vec::new(),
            config,
        };
        let made = DISKS_MADE.with(|n| n.replace(n.get() + 1));
        SimDisk { state: Arc::new(Mutex::new(state)), faults, made }
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the crash rule. Call it in the same step as killing the node that
    /// uses this disk; operations still running fail their next step.
    pub fn crash(&self) {
        self.lock().crash(&self.faults);
    }

    /// How many crashes this disk went through.
    pub fn crashes(&self) -> u64 {
        self.lock().epoch
    }

    /// The file's content as the node would read it now (for checkers).
    pub fn read_now(&self, path: &Utf8Path) -> Option<Vec<u8>> {
        let state = self.lock();
        match state.inodes.get(&state.lookup(&comps(path)).ok()?)? {
            Inode::File(f) => Some(f.data.to_vec()),
            Inode::Dir(_) => None,
        }
    }

    /// The content a crash now would leave at `path`, leaving torn writes aside
    /// (for checkers).
    pub fn read_durable(&self, path: &Utf8Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let mut cur = ROOT;
        for c in comps(path) {
            cur = *state.dir(cur).ok()?.durable.get(&c)?;
        }
        match state.inodes.get(&cur)? {
            Inode::File(f) => Some(f.synced.to_vec()),
            Inode::Dir(_) => None,
        }
    }

    /// Whether a read of `path` failed with `disk.read.meta_eio` since the last
    /// crash (a node life that could not read a tenant's `config-v1` left the
    /// tenant Broken, unloaded: S-LOCAL-TRUTH is not its start-up's to keep).
    pub fn meta_eio_since_crash(&self, path: &Utf8Path) -> bool {
        self.lock().meta_eio_since_crash.contains(path)
    }

    /// Sets a deliberate break ([`DiskBreak`]).
    pub fn set_break(&self, brk: DiskBreak) {
        self.lock().brk = brk;
    }

    /// Every layer file the node would see now that was created before the last
    /// crash (by an earlier node life), with its size (for S-LOCAL-TRUTH).
    pub fn layers_of_earlier_lives(&self) -> BTreeMap<Utf8PathBuf, u64> {
        self.files_where(|path, file, epoch| file.born < epoch && is_layer_file(path))
    }

    /// Every file the node would see now, temp files included, with its size.
    pub fn files_now(&self) -> BTreeMap<Utf8PathBuf, u64> {
        self.files_where(|_, _, _| true)
    }

    /// The files the node would see now that `keep` keeps (given the path, the
    /// file and the disk's epoch), with their sizes.
    fn files_where(
        &self,
        keep: impl Fn(&Utf8Path, &FileNode, u64) -> bool,
    ) -> BTreeMap<Utf8PathBuf, u64> {
        let state = self.lock();
        let mut out = BTreeMap::new();
        let mut todo = vec![(Utf8PathBuf::new(), ROOT)];
        while let Some((path, ino)) = todo.pop() {
            match state.inodes.get(&ino) {
                Some(Inode::Dir(d)) => {
                    todo.extend(d.entries.iter().map(|(n, i)| (path.join(n), *i)));
                }
                Some(Inode::File(f)) if keep(&path, f, state.epoch) => {
                    out.insert(path, f.data.len() as u64);
                }
                _ => {}
            }
        }
        out
    }

    /// One step's latency: a virtual sleep, where a kill can land.
    async fn pause(&self) {
        let (min, max, slow_min, slow_max) = {
            let s = self.lock();
            let c = &s.config;
            (c.step_latency_min_us, c.step_latency_max_us, c.slow_io_min_ms, c.slow_io_max_ms)
        };
        let mut d = Duration::from_micros(thread_rng().gen_range(min..=max.max(min)));
        if self.lock().brk == DiskBreak::LeaksAcrossRuns {
            d += Duration::from_millis(self.made % 5);
        }
        if self.faults.fire(site::DISK_SLOW_IO) {
            d += Duration::from_millis(thread_rng().gen_range(slow_min..=slow_max.max(slow_min)));
        }
        tokio::time::sleep(d).await;
    }

    /// Sleeps, then runs one step under the lock; fails if the disk crashed since
    /// the operation began.
    async fn step<T>(
        &self,
        op: &Op<'_>,
        f: impl FnOnce(&mut State, &Faults) -> Result<T, StepError>,
    ) -> Result<T, DiskError> {
        self.pause().await;
        let mut state = self.lock();
        if state.epoch != op.epoch {
            return Err(op.err((DiskErrorKind::Io, "the disk crashed during the operation".into())));
        }
        f(&mut state, &self.faults).map_err(|e| op.err(e))
    }

    fn begin<'a>(&self, name: &'static str, path: &'a Utf8Path) -> Result<Op<'a>, DiskError> {
        check_relative(name, path)?;
        Ok(Op { name, path, epoch: self.lock().epoch })
    }

    /// Creates the directories along `dirs` (each new one followed by an fsync of
    /// its parent); returns the last one.
    async fn mkdirs(&self, op: &Op<'_>, dirs: &[String]) -> Result<Ino, DiskError> {
        let mut cur = ROOT;
        for c in dirs {
            let (ino, created) = self
                .step(op, |s, faults| match s.dir(cur)?.entries.get(c) {
                    Some(&ino) => {
                        s.dir(ino)?;
                        Ok((ino, false))
                    }
                    None => {
                        if no_space(s, faults) {
                            return Err((DiskErrorKind::NoSpace, "mkdir: ENOSPC".into()));
                        }
                        let ino = s.alloc(Inode::Dir(DirNode::default()));
                        s.dir_mut(cur)?.entries.insert(c.clone(), ino);
                        Ok((ino, true))
                    }
                })
                .await?;
            if created {
                // A directory whose entry did not reach the disk is removed again
                // (the real adapter does the same): left in place, a later create
                // would find it and never fsync its entry, and everything written in
                // it would be acknowledged and then lost with it at a crash
                // (cluster seed 51: an acknowledged location_config lost).
                let parent = cur;
                self.step(op, |s, faults| {
                    fsync_dir(s, faults, parent).inspect_err(|_| {
                        if let Ok(d) = s.dir_mut(parent) {
                            d.entries.remove(c);
                        }
                    })
                })
                .await?;
            }
            cur = ino;
        }
        Ok(cur)
    }
}

/// Whether creating a file or directory fails with ENOSPC now: `disk.enospc` fires,
/// a `disk.full` episode is under way, or one starts. Healing ends any episode.
fn no_space(s: &mut State, faults: &Faults) -> bool {
    if faults.is_healed() {
        return false;
    }
    let now = tokio::time::Instant::now();
    if s.full_until.is_some_and(|until| now < until) {
        return true;
    }
    if faults.fire(site::DISK_FULL) {
        let (min, max) = (s.config.full_min_ms, s.config.full_max_ms);
        s.full_until =
            Some(now + Duration::from_millis(thread_rng().gen_range(min..=max.max(min))));
        return true;
    }
    faults.fire(site::DISK_ENOSPC)
}

fn fsync_dir(s: &mut State, faults: &Faults, ino: Ino) -> Result<(), StepError> {
    if faults.fire(site::DISK_FSYNC_FAIL) {
        return Err((DiskErrorKind::FsyncFailed, "directory fsync failed".into()));
    }
    s.fsync_dir(ino)
}

/// Whether `path` names a layer file (its name parses as a layer name): the only
/// files `disk.read.eio` and `disk.read.bitflip` touch. Every other file the node
/// reads (a tenant's `config-v1`, a deletion list) carries no checksum, so a flip
/// there could be trusted: see docs/FAULT_MODEL.md, "Local read faults".
fn is_layer_file(path: &Utf8Path) -> bool {
    path.file_name().is_some_and(|n| n.parse::<strata_core::layer_name::LayerName>().is_ok())
}

/// Whether `path` names a file the node reads without a checksum: a tenant's
/// `config-v1`, a deletion list or the deletion header, which `disk.read.meta_eio`
/// fails with EIO (a flip there could be trusted, so none is injected).
fn is_unchecked_file(path: &Utf8Path) -> bool {
    use strata_core::deletion_list::{DELETION_HEADER_FILE_NAME, DeletionList};
    let Some(name) = path.file_name() else { return false };
    if name == strata_core::location_conf::LOCATION_CONF_FILE_NAME {
        return true;
    }
    let in_deletion_dir = path.parent() == Some(Utf8Path::new(strata_core::node::io::DELETION_DIR));
    in_deletion_dir
        && (name == DELETION_HEADER_FILE_NAME || DeletionList::parse_file_name(name).is_some())
}

/// One operation in progress.
struct Op<'a> {
    name: &'static str,
    path: &'a Utf8Path,
    epoch: u64,
}

impl Op<'_> {
    fn err(&self, (kind, message): StepError) -> DiskError {
        DiskError::new(kind, self.name, self.path, message)
    }
}

/// Splits a checked path into its parent's components and its name.
fn split(path: &Utf8Path) -> (Vec<String>, String) {
    let mut c = comps(path);
    let name = c.pop().unwrap_or_default();
    (c, name)
}

impl SimDisk {
    /// The steps of `write_atomic` (see the module doc).
    async fn write_atomic_steps(&self, path: &Utf8Path, bytes: Vec<u8>) -> Result<(), DiskError> {
        let op = self.begin("write_atomic", path)?;
        let (dirs, name) = split(path);
        let dir = self.mkdirs(&op, &dirs).await?;
        let (tmp_name, tmp) = self
            .step(&op, |s, faults| {
                s.dir(dir)?;
                if no_space(s, faults) {
                    return Err((DiskErrorKind::NoSpace, "write temp file: ENOSPC".into()));
                }
                let tmp_name = format!("{name}.{}{TEMP_FILE_SUFFIX}", s.next_temp);
                s.next_temp += 1;
                let file = FileNode {
                    data: Arc::new(bytes),
                    synced: Data::default(),
                    poisoned: false,
                    born: s.epoch,
                };
                let tmp = s.alloc(Inode::File(file));
                s.dir_mut(dir)?.entries.insert(tmp_name.clone(), tmp);
                s.last_unsynced_write = Some(tmp);
                Ok((tmp_name, tmp))
            })
            .await?;
        self.step(&op, |s, faults| {
            if faults.fire(site::DISK_FSYNC_FAIL) {
                if let Some(Inode::File(f)) = s.inodes.get_mut(&tmp) {
                    f.poisoned = true;
                }
                // Best effort, like the real disk: unlink the temp file.
                s.dir_mut(dir)?.entries.remove(&tmp_name);
                return Err((
                    DiskErrorKind::FsyncFailed,
                    "fsync of the temp file failed; its content is unknown".into(),
                ));
            }
            if s.brk == DiskBreak::UnsyncedConfigData
                && name == strata_core::location_conf::LOCATION_CONF_FILE_NAME
            {
                return Ok(());
            }
            s.fsync_file(tmp)
        })
        .await?;
        let hold_ms = crate::faults::DISK_HOLD_WRITE_MS;
        self.faults.hold(site::DISK_HOLD_WRITE, path.as_str(), hold_ms).await;
        self.step(&op, |s, _| {
            let d = s.dir(dir)?;
            if let Some(existing) = d.entries.get(&name)
                && matches!(s.inodes.get(existing), Some(Inode::Dir(_)))
            {
                return Err(io("rename temp file: the target is a directory"));
            }
            let d = s.dir_mut(dir)?;
            d.entries.remove(&tmp_name);
            d.entries.insert(name.clone(), tmp);
            Ok(())
        })
        .await?;
        self.step(&op, |s, faults| fsync_dir(s, faults, dir)).await
    }

    /// A read without the read-fault sites, for `put_file`: an upload's local read
    /// is not faulted (an EIO there is `Permanent` and a refused source `Corrupt`,
    /// either breaks the timeline for good: docs/FAULT_MODEL.md, "Local read faults").
    pub(crate) async fn read_unfaulted(&self, path: &Utf8Path) -> Result<Vec<u8>, DiskError> {
        self.note_untrusted_read(path);
        let op = self.begin("read", path)?;
        self.step(&op, |s, _| match s.inodes.get(&s.lookup(&comps(path))?) {
            Some(Inode::File(f)) => Ok(f.data.to_vec()),
            Some(Inode::Dir(_)) => Err(io("is a directory")),
            None => Err(io("inode lost")),
        })
        .await
    }

    /// Records a read of a path whose last write failed its fsync (FSYNC-TRUST).
    fn note_untrusted_read(&self, path: &Utf8Path) {
        let mut s = self.lock();
        if s.untrusted.contains(path) {
            let what = format!(
                "FSYNC-TRUST: the node read {path} back although its last write failed its fsync (its contents are unknown: it must be rewritten from memory or given up)"
            );
            s.untrusted_reads.push(what);
        }
    }

    /// The paths whose last `write_atomic` failed its fsync and that the node then
    /// read back, as `FSYNC-TRUST` violations (for the checkers).
    pub fn untrusted_reads(&self) -> Vec<String> {
        self.lock().untrusted_reads.clone()
    }
}

/// The operations, answered on time; [`Disk`] below holds an answer when
/// `disk.complete.late` fires.
impl SimDisk {
    async fn write_atomic_on_time(&self, path: &Utf8Path, bytes: Vec<u8>) -> Result<(), DiskError> {
        let result = self.write_atomic_steps(path, bytes).await;
        let mut s = self.lock();
        match &result {
            Ok(()) => {
                s.untrusted.remove(path);
            }
            Err(e) if e.kind == DiskErrorKind::FsyncFailed => {
                s.untrusted.insert(path.to_owned());
            }
            Err(_) => {}
        }
        result
    }

    async fn read_on_time(&self, path: &Utf8Path) -> Result<Vec<u8>, DiskError> {
        self.note_untrusted_read(path);
        let op = self.begin("read", path)?;
        let faulted = is_layer_file(path);
        let unchecked = is_unchecked_file(path);
        self.step(&op, |s, faults| {
            let mut data = match s.inodes.get(&s.lookup(&comps(path))?) {
                Some(Inode::File(f)) => f.data.to_vec(),
                Some(Inode::Dir(_)) => return Err(io("is a directory")),
                None => return Err(io("inode lost")),
            };
            if unchecked && faults.fire(site::DISK_READ_META_EIO) {
                s.meta_eio_since_crash.insert(path.to_owned());
                return Err(io("Input/output error (os error 5) (simulated EIO)"));
            }
            if faulted && faults.fire(site::DISK_READ_EIO) {
                return Err(io("Input/output error (os error 5) (simulated EIO)"));
            }
            if faulted && !data.is_empty() && faults.fire(site::DISK_READ_BITFLIP) {
                let at = thread_rng().gen_range(0..data.len() * 8);
                data[at / 8] ^= 1 << (at % 8);
            }
            Ok(data)
        })
        .await
    }

    async fn remove_file_on_time(&self, path: &Utf8Path) -> Result<(), DiskError> {
        self.lock().untrusted.remove(path);
        let op = self.begin("remove_file", path)?;
        let (dirs, name) = split(path);
        let dir = self
            .step(&op, |s, _| {
                let dir = s.lookup(&dirs)?;
                let ino = *s.dir(dir)?.entries.get(&name).ok_or_else(not_found)?;
                let born = match s.inodes.get(&ino) {
                    Some(Inode::Dir(_)) => return Err(io("is a directory")),
                    Some(Inode::File(f)) => f.born,
                    None => s.epoch,
                };
                let kept =
                    s.brk == DiskBreak::KeepsEarlierLayers && born < s.epoch && is_layer_file(path);
                if !kept {
                    s.dir_mut(dir)?.entries.remove(&name);
                }
                Ok(dir)
            })
            .await?;
        self.step(&op, |s, faults| fsync_dir(s, faults, dir)).await
    }

    async fn rename_on_time(&self, from: &Utf8Path, to: &Utf8Path) -> Result<(), DiskError> {
        self.lock().untrusted.retain(|p| !p.starts_with(from) && !p.starts_with(to));
        check_relative("rename", to)?;
        let op = self.begin("rename", from)?;
        let ((from_dirs, from_name), (to_dirs, to_name)) = (split(from), split(to));
        let (from_dir, to_dir) = self
            .step(&op, |s, _| {
                let from_dir = s.lookup(&from_dirs)?;
                let ino = *s.dir(from_dir)?.entries.get(&from_name).ok_or_else(not_found)?;
                let to_dir = s.lookup(&to_dirs)?;
                s.dir(to_dir)?;
                if from == to {
                    return Ok((from_dir, to_dir));
                }
                let moving_dir = matches!(s.inodes.get(&ino), Some(Inode::Dir(_)));
                if moving_dir && to.starts_with(from) {
                    return Err(io("cannot move a directory into itself"));
                }
                if let Some(target) = s.dir(to_dir)?.entries.get(&to_name) {
                    let target_is_dir = matches!(s.inodes.get(target), Some(Inode::Dir(_)));
                    if moving_dir || target_is_dir {
                        return Err(io("the target exists and one of the two is a directory"));
                    }
                }
                s.dir_mut(from_dir)?.entries.remove(&from_name);
                s.dir_mut(to_dir)?.entries.insert(to_name.clone(), ino);
                Ok((from_dir, to_dir))
            })
            .await?;
        self.step(&op, |s, faults| fsync_dir(s, faults, to_dir)).await?;
        if from_dir != to_dir {
            self.step(&op, |s, faults| fsync_dir(s, faults, from_dir)).await?;
        }
        Ok(())
    }

    async fn create_dir_all_on_time(&self, path: &Utf8Path) -> Result<(), DiskError> {
        let op = self.begin("create_dir_all", path)?;
        self.mkdirs(&op, &comps(path)).await.map(|_| ())
    }

    async fn remove_dir_all_on_time(&self, path: &Utf8Path) -> Result<(), DiskError> {
        self.lock().untrusted.retain(|p| !p.starts_with(path));
        let op = self.begin("remove_dir_all", path)?;
        let (dirs, name) = split(path);
        let dir = self
            .step(&op, |s, _| {
                let dir = s.lookup(&dirs)?;
                let ino = *s.dir(dir)?.entries.get(&name).ok_or_else(not_found)?;
                s.dir(ino)?;
                s.dir_mut(dir)?.entries.remove(&name);
                Ok(dir)
            })
            .await?;
        self.step(&op, |s, faults| fsync_dir(s, faults, dir)).await
    }

    async fn list_dir_on_time(&self, path: &Utf8Path) -> Result<Vec<DirEntry>, DiskError> {
        let op = self.begin("list_dir", path)?;
        self.step(&op, |s, _| {
            let dir = s.dir(s.lookup(&comps(path))?)?;
            let mut out = Vec::new();
            for (name, ino) in dir.entries.iter().filter(|(n, _)| !is_temp_file_name(n)) {
                let (is_dir, size_bytes) = match s.inodes.get(ino) {
                    Some(Inode::Dir(_)) => (true, 0),
                    Some(Inode::File(f)) => (false, f.data.len() as u64),
                    None => return Err(io("inode lost")),
                };
                out.push(DirEntry { name: name.clone(), is_dir, size_bytes });
            }
            Ok(out)
        })
        .await
    }
}

impl SimDisk {
    /// `disk.complete.late`: the operation is done (its effect applied, or its
    /// failure settled); its answer waits 5–500 ms more if the site fires.
    async fn answer<T>(&self, result: T) -> T {
        let range = {
            let s = self.lock();
            (s.config.late_min_ms, s.config.late_max_ms)
        };
        self.faults.late(site::DISK_COMPLETE_LATE, range).await;
        result
    }
}

impl Disk for SimDisk {
    async fn write_atomic(&self, path: &Utf8Path, bytes: Vec<u8>) -> Result<(), DiskError> {
        self.answer(self.write_atomic_on_time(path, bytes).await).await
    }

    async fn read(&self, path: &Utf8Path) -> Result<Vec<u8>, DiskError> {
        self.answer(self.read_on_time(path).await).await
    }

    async fn remove_file(&self, path: &Utf8Path) -> Result<(), DiskError> {
        self.answer(self.remove_file_on_time(path).await).await
    }

    async fn rename(&self, from: &Utf8Path, to: &Utf8Path) -> Result<(), DiskError> {
        self.answer(self.rename_on_time(from, to).await).await
    }

    async fn create_dir_all(&self, path: &Utf8Path) -> Result<(), DiskError> {
        self.answer(self.create_dir_all_on_time(path).await).await
    }

    async fn remove_dir_all(&self, path: &Utf8Path) -> Result<(), DiskError> {
        self.answer(self.remove_dir_all_on_time(path).await).await
    }

    async fn list_dir(&self, path: &Utf8Path) -> Result<Vec<DirEntry>, DiskError> {
        self.answer(self.list_dir_on_time(path).await).await
    }
}

#[cfg(test)]
mod tests;
