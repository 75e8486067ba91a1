//! The FUSE file system behind [`TestFs`]: inodes in memory, each with its current
//! and its durable version.

use crate::image::{Entry, Image};
use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

const TTL: Duration = Duration::from_secs(1);
const ROOT: u64 = 1;

/// Counts of what the mounted file system was asked, since its mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests that change something or make it durable (the cut points).
    pub mutations: u64,
    pub file_fsyncs: u64,
    pub dir_fsyncs: u64,
    pub renames: u64,
    pub bytes_written: u64,
}

enum Node {
    File { data: Vec<u8>, durable: Vec<u8> },
    Dir { entries: BTreeMap<OsString, u64>, durable: BTreeMap<OsString, u64> },
}

struct Inode {
    perm: u16,
    mtime: SystemTime,
    node: Node,
}

struct State {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    next_fh: u64,
    /// Mutating requests still allowed before the armed power cut.
    cut_after: Option<u64>,
    /// Set at the power cut: the durable state then. Every later request fails.
    cut: Option<Image>,
    stats: Stats,
}

impl State {
    fn from_image(image: &Image) -> State {
        let mut s = State {
            inodes: HashMap::new(),
            next_ino: ROOT + 1,
            next_fh: 1,
            cut_after: None,
            cut: None,
            stats: Stats::default(),
        };
        let entries = s.load_dir(&image.root);
        s.inodes.insert(ROOT, dir_inode(0o755, entries));
        s
    }

    fn load_dir(&mut self, dir: &BTreeMap<String, Entry>) -> BTreeMap<OsString, u64> {
        let mut entries = BTreeMap::new();
        for (name, e) in dir {
            let inode = match e {
                Entry::File(bytes) => Inode {
                    perm: 0o644,
                    mtime: SystemTime::now(),
                    node: Node::File { data: bytes.clone(), durable: bytes.clone() },
                },
                Entry::Dir(sub) => {
                    let sub = self.load_dir(sub);
                    dir_inode(0o755, sub)
                }
            };
            let ino = self.alloc(inode);
            entries.insert(OsString::from(name), ino);
        }
        entries
    }

    fn alloc(&mut self, inode: Inode) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, inode);
        ino
    }

    /// The durable tree: from the root through durable entries only, each file with
    /// its durable content. A directory met again on its own path (a cycle that
    /// unsynced renames of directories could leave) is cut off there.
    fn durable_image(&self) -> Image {
        fn walk(s: &State, ino: u64, path: &mut Vec<u64>) -> BTreeMap<String, Entry> {
            let mut out = BTreeMap::new();
            let Some(Inode { node: Node::Dir { durable, .. }, .. }) = s.inodes.get(&ino) else {
                return out;
            };
            path.push(ino);
            for (name, child) in durable {
                let name = name.to_string_lossy().into_owned();
                match s.inodes.get(child).map(|i| &i.node) {
                    Some(Node::File { durable, .. }) => {
                        out.insert(name, Entry::File(durable.clone()));
                    }
                    Some(Node::Dir { .. }) if !path.contains(child) => {
                        out.insert(name, Entry::Dir(walk(s, *child, path)));
                    }
                    _ => {}
                }
            }
            path.pop();
            out
        }
        Image { root: walk(self, ROOT, &mut Vec::new()) }
    }

    /// Whether the machine is dead (cut before or now). Counts a mutating request
    /// and fires the armed cut just before the one that reaches it.
    fn dead_at_mutation(&mut self) -> bool {
        if self.cut.is_some() {
            return true;
        }
        if let Some(left) = self.cut_after.as_mut() {
            if *left == 0 {
                self.cut_now();
                return true;
            }
            *left -= 1;
        }
        self.stats.mutations += 1;
        false
    }

    fn cut_now(&mut self) {
        if self.cut.is_none() {
            self.cut = Some(self.durable_image());
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let i = self.inodes.get(&ino)?;
        let (kind, size, nlink) = match &i.node {
            Node::File { data, .. } => (FileType::RegularFile, data.len() as u64, 1),
            Node::Dir { .. } => (FileType::Directory, 0, 2),
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: i.mtime,
            mtime: i.mtime,
            ctime: i.mtime,
            crtime: i.mtime,
            kind,
            perm: i.perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entries_mut(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.node) {
            Some(Node::Dir { entries, .. }) => Ok(entries),
            Some(Node::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        match self.inodes.get(&parent).map(|i| &i.node) {
            Some(Node::Dir { entries, .. }) => entries.get(name).copied().ok_or(Errno::ENOENT),
            Some(Node::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(self.inodes.get(&ino).map(|i| &i.node), Some(Node::Dir { .. }))
    }

    fn is_empty_dir(&self, ino: u64) -> bool {
        matches!(self.inodes.get(&ino).map(|i| &i.node), Some(Node::Dir { entries, .. }) if entries.is_empty())
    }

    /// Adds a new inode under `parent/name` (current entries only).
    fn add(&mut self, parent: u64, name: &OsStr, inode: Inode) -> Result<u64, Errno> {
        if self.entries_mut(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.alloc(inode);
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (dir, self.is_dir(ino)) {
            (false, true) => return Err(Errno::EISDIR),
            (true, false) => return Err(Errno::ENOTDIR),
            (true, true) if !self.is_empty_dir(ino) => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        self.entries_mut(parent)?.remove(name);
        Ok(())
    }

    fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return Err(Errno::EINVAL);
        }
        let ino = self.lookup(parent, name)?;
        self.entries_mut(new_parent)?;
        if let Ok(target) = self.lookup(new_parent, new_name) {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if target == ino {
                return Ok(());
            }
            match (self.is_dir(ino), self.is_dir(target)) {
                (false, true) => return Err(Errno::EISDIR),
                (true, false) => return Err(Errno::ENOTDIR),
                (true, true) if !self.is_empty_dir(target) => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(new_parent)?.insert(new_name.to_owned(), ino);
        self.stats.renames += 1;
        Ok(())
    }

    /// fsync of a file (its data) or of a directory (its entries).
    fn fsync(&mut self, ino: u64) -> Result<(), Errno> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.node) {
            Some(Node::File { data, durable }) => {
                durable.clone_from(data);
                self.stats.file_fsyncs += 1;
            }
            Some(Node::Dir { entries, durable }) => {
                durable.clone_from(entries);
                self.stats.dir_fsyncs += 1;
            }
            None => return Err(Errno::ENOENT),
        }
        Ok(())
    }

    fn data_mut(&mut self, ino: u64) -> Result<&mut Vec<u8>, Errno> {
        match self.inodes.get_mut(&ino) {
            Some(Inode { node: Node::File { data, .. }, mtime, .. }) => {
                *mtime = SystemTime::now();
                Ok(data)
            }
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }
}

fn dir_inode(perm: u16, entries: BTreeMap<OsString, u64>) -> Inode {
    Inode { perm, mtime: SystemTime::now(), node: Node::Dir { durable: entries.clone(), entries } }
}

fn file_inode(perm: u16) -> Inode {
    Inode {
        perm,
        mtime: SystemTime::now(),
        node: Node::File { data: Vec::new(), durable: Vec::new() },
    }
}

/// The FUSE side: every request locks the one state.
struct PowerCutFs(Arc<Mutex<State>>);

impl PowerCutFs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs a mutating request: `EIO` once the power is cut (or as the armed cut fires).
macro_rules! mutate {
    ($s:ident, $reply:ident) => {
        if $s.dead_at_mutation() {
            $reply.error(Errno::EIO);
            return;
        }
    };
}

/// Runs a reading request: `EIO` once the power is cut.
macro_rules! alive {
    ($s:ident, $reply:ident) => {
        if $s.cut.is_some() {
            $reply.error(Errno::EIO);
            return;
        }
    };
}

fn perm_of(mode: u32) -> u16 {
    (mode & 0o7777) as u16
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = self.state();
        alive!(s, reply);
        match s.lookup(parent.0, name).map(|ino| s.attr(ino)) {
            Ok(Some(attr)) => reply.entry(&TTL, &attr, Generation(0)),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let s = self.state();
        alive!(s, reply);
        match s.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.state();
        mutate!(s, reply);
        if let Some(size) = size {
            match s.data_mut(ino.0) {
                Ok(data) => data.resize(size as usize, 0),
                Err(e) => return reply.error(e),
            }
        }
        if let Some(mode) = mode
            && let Some(i) = s.inodes.get_mut(&ino.0)
        {
            i.perm = perm_of(mode);
        }
        match s.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.state();
        mutate!(s, reply);
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        match s.add(parent.0, name, file_inode(perm_of(mode & !umask))) {
            Ok(ino) => reply.entry(&TTL, &s.attr(ino).expect("just added"), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.state();
        mutate!(s, reply);
        match s.add(parent.0, name, dir_inode(perm_of(mode & !umask), BTreeMap::new())) {
            Ok(ino) => reply.entry(&TTL, &s.attr(ino).expect("just added"), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        mutate!(s, reply);
        match s.remove(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        mutate!(s, reply);
        match s.remove(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        mutate!(s, reply);
        match s.rename(parent.0, name, newparent.0, newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.state();
        if flags.0 & libc::O_TRUNC != 0 {
            mutate!(s, reply);
            if let Err(e) = s.data_mut(ino.0).map(Vec::clear) {
                return reply.error(e);
            }
        }
        alive!(s, reply);
        if s.is_dir(ino.0) {
            return reply.error(Errno::EISDIR);
        }
        s.next_fh += 1;
        reply.opened(FileHandle(s.next_fh), FopenFlags::empty());
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.state();
        mutate!(s, reply);
        match s.add(parent.0, name, file_inode(perm_of(mode & !umask))) {
            Ok(ino) => {
                s.next_fh += 1;
                let attr = s.attr(ino).expect("just added");
                reply.created(
                    &TTL,
                    &attr,
                    Generation(0),
                    FileHandle(s.next_fh),
                    FopenFlags::empty(),
                )
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let s = self.state();
        alive!(s, reply);
        match s.inodes.get(&ino.0).map(|i| &i.node) {
            Some(Node::File { data, .. }) => {
                let start = (offset as usize).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            Some(Node::Dir { .. }) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        bytes: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.state();
        mutate!(s, reply);
        match s.data_mut(ino.0) {
            Ok(data) => {
                let start = offset as usize;
                let end = start + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[start..end].copy_from_slice(bytes);
                s.stats.bytes_written += bytes.len() as u64;
                reply.written(bytes.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        let s = self.state();
        alive!(s, reply);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        mutate!(s, reply);
        match s.fsync(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.state();
        alive!(s, reply);
        if !s.is_dir(ino.0) {
            return reply.error(Errno::ENOTDIR);
        }
        s.next_fh += 1;
        reply.opened(FileHandle(s.next_fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = self.state();
        alive!(s, reply);
        let Some(Node::Dir { entries, .. }) = s.inodes.get(&ino.0).map(|i| &i.node) else {
            return reply.error(Errno::ENOTDIR);
        };
        let mut all = vec![
            (ino.0, FileType::Directory, OsString::from(".")),
            (ino.0, FileType::Directory, OsString::from("..")),
        ];
        for (name, child) in entries {
            let kind = if s.is_dir(*child) { FileType::Directory } else { FileType::RegularFile };
            all.push((*child, kind, name.clone()));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        mutate!(s, reply);
        match s.fsync(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Plenty of room: this file system models power cuts, not a full disk.
        reply.statfs(1 << 30, 1 << 29, 1 << 29, 1 << 20, 1 << 19, 4096, 255, 4096);
    }
}

/// A mounted power-cut file system. Dropping it unmounts it (losing nothing more:
/// call [`TestFs::power_cut`] to keep the durable state).
pub struct TestFs {
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
}

impl TestFs {
    /// Mounts `image` (the durable state a power cut left, or [`Image::default`])
    /// at `mountpoint`, an existing empty directory.
    pub fn mount(mountpoint: &Path, image: &Image) -> io::Result<TestFs> {
        let state = Arc::new(Mutex::new(State::from_image(image)));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("strata-testfs".into()),
            MountOption::Subtype("strata-testfs".into()),
            MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount(PowerCutFs(Arc::clone(&state)), mountpoint, &config)?;
        Ok(TestFs { state, session: Some(session), mountpoint: mountpoint.to_owned() })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms the power cut: the next `n` mutating requests (create, mkdir, write,
    /// truncate, rename, unlink, rmdir, fsync of a file or a directory) run, the one
    /// after them finds the power gone.
    pub fn arm_cut_after(&self, n: u64) {
        self.state().cut_after = Some(n);
    }

    /// Whether the power is off (an armed cut fired, or [`TestFs::cut_now`]).
    pub fn is_cut(&self) -> bool {
        self.state().cut.is_some()
    }

    /// Cuts the power now: the durable state is fixed, every later request fails.
    pub fn cut_now(&self) {
        self.state().cut_now();
    }

    pub fn stats(&self) -> Stats {
        self.state().stats
    }

    /// The durable state now (what a cut at this instant would leave).
    pub fn durable(&self) -> Image {
        let s = self.state();
        s.cut.clone().unwrap_or_else(|| s.durable_image())
    }

    /// The power cut: fixes the durable state (if an armed cut has not already),
    /// unmounts, and returns what a reboot finds. Nothing may hold a file open on
    /// the mount (kill its processes first); if something does, the mount is
    /// detached lazily.
    pub fn power_cut(mut self) -> Image {
        self.cut_now();
        let image = self.durable();
        self.unmount();
        image
    }

    fn unmount(&mut self) {
        let Some(session) = self.session.take() else { return };
        if session.umount_and_join().is_err() {
            // Busy: detach it; the session thread ends when the last user lets go.
            if let Ok(c) = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes()) {
                // SAFETY: a valid NUL-terminated path; umount2 only reads it.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

impl Drop for TestFs {
    fn drop(&mut self) {
        self.cut_now();
        self.unmount();
    }
}

/// Whether a power-cut file system mounts here: `Ok` after a mount, a write, an
/// fsync and an unmount in a temporary directory; otherwise why not.
pub fn mount_check() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("no /dev/fuse: this kernel or container has no FUSE".into());
    }
    static CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("strata-testfs-check-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("mount point {}: {e}", dir.display()))?;
    let result = (|| {
        let fs = TestFs::mount(&dir, &Image::default()).map_err(|e| format!("mount: {e}"))?;
        let f = dir.join("probe");
        std::fs::write(&f, b"probe").map_err(|e| format!("write on the mount: {e}"))?;
        std::fs::File::open(&f).and_then(|f| f.sync_all()).map_err(|e| format!("fsync: {e}"))?;
        let image = fs.power_cut();
        // The probe's entry was never made durable (no directory fsync).
        if image.root.is_empty() {
            Ok(())
        } else {
            Err(format!("unexpected durable state {image:?}"))
        }
    })();
    let _ = std::fs::remove_dir(&dir);
    result
}

/// For a test that needs a mount: `true` when it can go on. Otherwise it prints a
/// loud `SKIPPED` line with the reason and returns `false`; under `CI=true` a mount
/// that fails although `/dev/fuse` exists panics instead (CI installs `fuse3` and
/// runs as root, so there it must work). Without `/dev/fuse` mounting is
/// impossible and the test skips, in CI too, saying so.
pub fn mount_or_skip(test: &str) -> bool {
    match mount_check() {
        Ok(()) => true,
        Err(why) => {
            let line = format!(
                "SKIPPED {test}: the power-cut file system (FUSE) cannot mount here: {why}"
            );
            eprintln!("\n{}\n{line}\n{}\n", "*".repeat(line.len()), "*".repeat(line.len()));
            let impossible = !Path::new("/dev/fuse").exists();
            if std::env::var("CI").is_ok_and(|v| v == "true") && !impossible {
                panic!("{line} (under CI=true a FUSE mount must work: /dev/fuse exists)");
            }
            false
        }
    }
}
