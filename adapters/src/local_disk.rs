//! Crash-safe local disk on the real file system, rooted at the node's data
//! directory.
//!
//! Every operation runs as one blocking job (`spawn_blocking`) with plain `std::fs`
//! calls, in the order the crash contract of [`crate::disk`] needs:
//!
//! - `write_atomic`: create missing parent directories (each new directory and its
//!   parent fsynced), write `{name}.{unique}.___temp` next to the target, fsync it,
//!   rename it over the target, fsync the directory. A crash before the rename
//!   leaves the old file (and maybe a temp file, which listings hide); after the
//!   rename but before the directory fsync, old or new; after, new.
//! - `rename`, `remove_file`, `remove_dir_all`: the change, then an fsync of every
//!   directory whose entries changed.
//! - A failed fsync is reported as [`DiskErrorKind::FsyncFailed`] (ENOSPC from
//!   an fsync as `NoSpace`); the caller treats the file as lost. `write_atomic` removes its temp file on any failure (best
//!   effort).
//!
//! Error kinds: `ENOENT` → `NotFound`, `ENOSPC`/`EDQUOT` → `NoSpace`, any other
//! error of an fsync step → `FsyncFailed`, everything else (`EXDEV` included, with a message saying so: a rename across file systems
//! means a mount point inside the data directory) → `Io`. Paths in errors are the
//! relative paths the caller gave.

use crate::disk::{
    DirEntry, Disk, DiskError, DiskErrorKind, TEMP_FILE_SUFFIX, check_relative, is_temp_file_name,
};
use camino::{Utf8Path, Utf8PathBuf};
use std::fs;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The real disk: a data directory on the local file system.
#[derive(Clone, Debug)]
pub struct LocalDisk {
    root: Arc<Utf8PathBuf>,
}

/// Makes temp file names unique within the process (the pid makes them unique
/// across processes sharing a directory).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl LocalDisk {
    /// A disk rooted at `root`. Nothing is touched until the first operation; the
    /// root itself is created (durably) by the first operation that creates a file
    /// or directory.
    pub fn new(root: Utf8PathBuf) -> LocalDisk {
        LocalDisk { root: Arc::new(root) }
    }

    pub fn root(&self) -> &Utf8Path {
        &self.root
    }

    /// Runs `f(root, path)` on the blocking pool after checking `path`.
    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        path: &Utf8Path,
        f: impl FnOnce(&Utf8Path, &Utf8Path) -> Result<T, DiskError> + Send + 'static,
    ) -> Result<T, DiskError> {
        check_relative(op, path)?;
        let root = Arc::clone(&self.root);
        let rel = path.to_owned();
        match tokio::task::spawn_blocking(move || f(&root, &rel)).await {
            Ok(r) => r,
            Err(e) => Err(DiskError::new(DiskErrorKind::Io, op, path, format!("task: {e}"))),
        }
    }
}

/// `{name}.{pid}-{n}.___temp`: unique per write, hidden from listings.
pub(crate) fn temp_file_name(name: &str) -> String {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{name}.{}-{n}{TEMP_FILE_SUFFIX}", std::process::id())
}

fn error(op: &'static str, path: &Utf8Path, step: &str, e: io::Error) -> DiskError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => DiskErrorKind::NotFound,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => DiskErrorKind::NoSpace,
        _ if step.starts_with("fsync") => DiskErrorKind::FsyncFailed,
        _ => DiskErrorKind::Io,
    };
    let message = if e.kind() == io::ErrorKind::CrossesDevices {
        format!("{step}: crosses file systems (EXDEV): {e}")
    } else {
        format!("{step}: {e}")
    };
    DiskError::new(kind, op, path, message)
}

pub(crate) fn fsync_dir(dir: &Utf8Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// The directory holding `rel` (the root for a top-level entry).
fn parent_of(root: &Utf8Path, rel: &Utf8Path) -> Utf8PathBuf {
    match rel.parent() {
        Some(p) => root.join(p),
        None => root.to_owned(),
    }
}

/// Creates `root/rel` (creating `root` first if needed) and its missing ancestors; each new directory is fsynced
/// and so is the directory that received its entry.
pub(crate) fn create_dir_all_durable(root: &Utf8Path, rel: &Utf8Path) -> io::Result<()> {
    if !root.is_dir() {
        fs::create_dir_all(root)?;
        fsync_dir(root)?;
        if let Some(parent) = root.parent().filter(|p| !p.as_str().is_empty()) {
            fsync_dir(parent)?;
        }
    }
    let mut cur = root.to_owned();
    for comp in rel.components() {
        let parent = cur.clone();
        cur.push(comp);
        match fs::create_dir(&cur) {
            Ok(()) => {
                // A directory whose entry may not have reached the disk is removed
                // again (best effort): left in place, the next create would find it
                // and never fsync its entry, and whatever is written in it would be
                // acknowledged and then lost with it at a power cut (the simulated
                // disk models the same rule; cluster seed 51 found it there).
                if let Err(e) = fsync_dir(&cur).and_then(|()| fsync_dir(&parent)) {
                    let _ = fs::remove_dir(&cur);
                    return Err(e);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !fs::metadata(&cur)?.is_dir() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{comp} exists and is not a directory"),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_atomic_blocking(root: &Utf8Path, rel: &Utf8Path, bytes: &[u8]) -> Result<(), DiskError> {
    crash_safe_write(root, rel, bytes).map_err(|(step, e)| error("write_atomic", rel, step, e))
}

/// The crash-safe overwrite of `root/rel`, shared by the disk and LocalFs: create
/// the parent directories durably, write a temp file, fsync it, rename it over the
/// target, fsync the directory. On failure the temp file is removed and the step
/// that failed is named.
pub(crate) fn crash_safe_write(
    root: &Utf8Path,
    rel: &Utf8Path,
    bytes: &[u8],
) -> Result<(), (&'static str, io::Error)> {
    crash_safe_write_with(root, rel, |f| f.write_all(bytes).map_err(|e| ("write temp file", e)))
}

/// [`crash_safe_write`] with the content written by `fill` into the temp file
/// (LocalFs's `put_file` copies a local file into it chunk by chunk).
pub(crate) fn crash_safe_write_with(
    root: &Utf8Path,
    rel: &Utf8Path,
    fill: impl FnOnce(&mut fs::File) -> Result<(), (&'static str, io::Error)>,
) -> Result<(), (&'static str, io::Error)> {
    let dir_rel = rel.parent().unwrap_or(Utf8Path::new(""));
    create_dir_all_durable(root, dir_rel).map_err(|e| ("create parent directories", e))?;
    let dir = parent_of(root, rel);
    let tmp = dir.join(temp_file_name(rel.file_name().unwrap_or_default()));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| ("create temp file", e))?;
        fill(&mut f)?;
        f.sync_all().map_err(|e| ("fsync temp file", e))?;
        fs::rename(&tmp, root.join(rel)).map_err(|e| ("rename temp file", e))
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(&dir).map_err(|e| ("fsync directory", e))
}

/// Opens the local file `root/rel` for a streaming upload (`put_file` of LocalFs
/// and S3); returns it with its absolute path.
pub(crate) fn open_upload_source(
    root: &Utf8Path,
    rel: &Utf8Path,
) -> Result<(fs::File, Utf8PathBuf), DiskError> {
    check_relative("put_file", rel)?;
    let full = root.join(rel);
    let file = fs::File::open(&full).map_err(|e| error("put_file", rel, "open", e))?;
    Ok((file, full))
}

/// A download in progress into the data directory (`get_to_file` of LocalFs and
/// S3): the temp file `{name}.{unique}.___temp` next to the target. Only
/// [`TempDownload::commit`] gives the content the target's name (fsync, rename,
/// directory fsync); dropped uncommitted, the temp file is removed (best effort; a
/// crash may leave it, hidden from listings). See `crate::remote` for why this
/// never leaves a partial layer under its name.
pub(crate) struct TempDownload {
    rel: Utf8PathBuf,
    tmp: Utf8PathBuf,
    target: Utf8PathBuf,
    dir: Utf8PathBuf,
    committed: bool,
}

impl TempDownload {
    /// Creates the parent directories (durably) and the empty temp file.
    pub(crate) fn create(
        root: &Utf8Path,
        rel: &Utf8Path,
    ) -> Result<(TempDownload, fs::File), DiskError> {
        const OP: &str = "get_to_file";
        check_relative(OP, rel)?;
        let err = |step: &str, e: io::Error| error(OP, rel, step, e);
        let dir_rel = rel.parent().unwrap_or(Utf8Path::new(""));
        create_dir_all_durable(root, dir_rel).map_err(|e| err("create parent directories", e))?;
        let dir = parent_of(root, rel);
        let tmp = dir.join(temp_file_name(rel.file_name().unwrap_or_default()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| err("create temp file", e))?;
        let target = root.join(rel);
        Ok((TempDownload { rel: rel.to_owned(), tmp, target, dir, committed: false }, file))
    }

    /// The error of writing the temp file.
    pub(crate) fn write_error(&self, e: io::Error) -> DiskError {
        error("get_to_file", &self.rel, "write temp file", e)
    }

    /// The content is complete and accepted: fsync it, rename it onto the target,
    /// fsync the directory.
    pub(crate) fn commit(mut self, file: fs::File) -> Result<(), DiskError> {
        let err = |step: &str, e: io::Error| error("get_to_file", &self.rel, step, e);
        file.sync_all().map_err(|e| err("fsync temp file", e))?;
        drop(file);
        fs::rename(&self.tmp, &self.target).map_err(|e| err("rename temp file", e))?;
        self.committed = true;
        fsync_dir(&self.dir).map_err(|e| err("fsync directory", e))
    }
}

impl Drop for TempDownload {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn list_dir_blocking(root: &Utf8Path, rel: &Utf8Path) -> Result<Vec<DirEntry>, DiskError> {
    const OP: &str = "list_dir";
    let err = |step: &str, e: io::Error| error(OP, rel, step, e);
    let mut out = Vec::new();
    for entry in fs::read_dir(root.join(rel)).map_err(|e| err("read directory", e))? {
        let entry = entry.map_err(|e| err("read directory entry", e))?;
        let Ok(name) = entry.file_name().into_string() else {
            return Err(DiskError::new(DiskErrorKind::Io, OP, rel, "a file name is not UTF-8"));
        };
        if is_temp_file_name(&name) {
            continue;
        }
        let meta = fs::metadata(entry.path()).map_err(|e| err("stat entry", e))?;
        let is_dir = meta.is_dir();
        out.push(DirEntry { name, is_dir, size_bytes: if is_dir { 0 } else { meta.len() } });
    }
    out.sort();
    Ok(out)
}

fn remove_dir_all_blocking(root: &Utf8Path, rel: &Utf8Path) -> Result<(), DiskError> {
    const OP: &str = "remove_dir_all";
    let err = |step: &str, e: io::Error| error(OP, rel, step, e);
    let full = root.join(rel);
    if !fs::symlink_metadata(&full).map_err(|e| err("stat", e))?.is_dir() {
        return Err(DiskError::new(DiskErrorKind::Io, OP, rel, "not a directory"));
    }
    fs::remove_dir_all(&full).map_err(|e| err("remove tree", e))?;
    fsync_dir(&parent_of(root, rel)).map_err(|e| err("fsync parent directory", e))
}

impl Disk for LocalDisk {
    async fn write_atomic(&self, path: &Utf8Path, bytes: Vec<u8>) -> Result<(), DiskError> {
        self.run("write_atomic", path, move |root, rel| write_atomic_blocking(root, rel, &bytes))
            .await
    }

    async fn read(&self, path: &Utf8Path) -> Result<Vec<u8>, DiskError> {
        self.run("read", path, |root, rel| {
            fs::read(root.join(rel)).map_err(|e| error("read", rel, "read", e))
        })
        .await
    }

    async fn remove_file(&self, path: &Utf8Path) -> Result<(), DiskError> {
        self.run("remove_file", path, |root, rel| {
            let err = |step: &str, e: io::Error| error("remove_file", rel, step, e);
            fs::remove_file(root.join(rel)).map_err(|e| err("remove", e))?;
            fsync_dir(&parent_of(root, rel)).map_err(|e| err("fsync directory", e))
        })
        .await
    }

    async fn rename(&self, from: &Utf8Path, to: &Utf8Path) -> Result<(), DiskError> {
        check_relative("rename", to)?;
        let to = to.to_owned();
        self.run("rename", from, move |root, rel| {
            let err = |step: &str, e: io::Error| error("rename", rel, step, e);
            fs::rename(root.join(rel), root.join(&to)).map_err(|e| err("rename", e))?;
            let (from_dir, to_dir) = (parent_of(root, rel), parent_of(root, &to));
            fsync_dir(&to_dir).map_err(|e| err("fsync target directory", e))?;
            if from_dir != to_dir {
                fsync_dir(&from_dir).map_err(|e| err("fsync source directory", e))?;
            }
            Ok(())
        })
        .await
    }

    async fn create_dir_all(&self, path: &Utf8Path) -> Result<(), DiskError> {
        self.run("create_dir_all", path, |root, rel| {
            create_dir_all_durable(root, rel)
                .map_err(|e| error("create_dir_all", rel, "create directories", e))
        })
        .await
    }

    async fn remove_dir_all(&self, path: &Utf8Path) -> Result<(), DiskError> {
        self.run("remove_dir_all", path, remove_dir_all_blocking).await
    }

    async fn list_dir(&self, path: &Utf8Path) -> Result<Vec<DirEntry>, DiskError> {
        self.run("list_dir", path, list_dir_blocking).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fsync_is_fsync_failed_and_enospc_is_no_space_in_any_step() {
        let p = Utf8Path::new("t/f");
        let eio = || io::Error::from_raw_os_error(5);
        assert_eq!(error("w", p, "fsync temp file", eio()).kind, DiskErrorKind::FsyncFailed);
        assert_eq!(error("w", p, "fsync directory", eio()).kind, DiskErrorKind::FsyncFailed);
        assert_eq!(error("w", p, "write temp file", eio()).kind, DiskErrorKind::Io);
        let full = || io::Error::from(io::ErrorKind::StorageFull);
        assert_eq!(error("w", p, "fsync temp file", full()).kind, DiskErrorKind::NoSpace);
        assert_eq!(error("w", p, "write temp file", full()).kind, DiskErrorKind::NoSpace);
        let gone = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(error("r", p, "read", gone).kind, DiskErrorKind::NotFound);
    }
}
