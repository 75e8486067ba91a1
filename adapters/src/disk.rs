//! The local disk as strata's machines see it: a data directory with crash-safe
//! writes.
//!
//! Paths are relative to the node's data directory (`tenants/{t}/config-v1`, …);
//! an absolute path or a `..` component is refused with [`DiskErrorKind::BadPath`].
//!
//! Crash contract every implementation keeps (the simulated disk enforces it, the
//! real one gets it from the file system):
//! - [`Disk::write_atomic`] leaves either the old file or the new one, never a
//!   prefix: it writes a temporary file, fsyncs it, renames it over the target and
//!   fsyncs the directory. It returns only after all of that is durable.
//! - [`Disk::rename`], [`Disk::remove_file`] and [`Disk::create_dir_all`] fsync the
//!   directories they change before returning.
//! - After a failed fsync the file's contents are unknown: the operation returns an
//!   error and the caller treats the file as lost (redo the write, or fail).
//!
//! Error classification: only `NotFound` is an answer; every other kind fails the
//! operation, and the driver maps each onto the one I/O error type of core
//! (`strata_core::io_error::IoError`), kind for kind:
//!
//! | [`DiskErrorKind`] | when | core's kind |
//! |---|---|---|
//! | `NotFound` | ENOENT | `NotFound` |
//! | `NoSpace` | ENOSPC, EDQUOT, in any step (an fsync included) | `NoSpace` |
//! | `FsyncFailed` | an fsync of a file or a directory failed (other than ENOSPC) | `FsyncFailed` |
//! | `BadPath` | an absolute path or `..` | `Permanent` |
//! | `Io` | anything else (EPERM/EACCES on the data directory, EIO, EXDEV) | `Permanent` |
//!
//! After `NoSpace` or `FsyncFailed` from a write the file's contents are unknown;
//! the machine that asked rewrites it from memory or fails (the timeline's flush:
//! `strata_core::timeline` module doc; the deletion queue's list writes retry
//! whole), and never reads it back as if durable. Remote storage classifies its
//! errors itself (`crate::remote`).

use camino::{Utf8Path, Utf8PathBuf};
use std::future::Future;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskErrorKind {
    NotFound,
    /// ENOSPC or EDQUOT.
    NoSpace,
    /// An fsync (of a file's data or of a directory) failed: what the file or the
    /// directory entry holds, now and after a crash, is unknown.
    FsyncFailed,
    /// A path outside the data directory.
    BadPath,
    /// Anything else.
    Io,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("disk {op} {path}: {kind:?}: {message}")]
pub struct DiskError {
    pub kind: DiskErrorKind,
    pub op: &'static str,
    pub path: Utf8PathBuf,
    pub message: String,
}

impl DiskError {
    pub fn new(
        kind: DiskErrorKind,
        op: &'static str,
        path: &Utf8Path,
        message: impl Into<String>,
    ) -> Self {
        DiskError { kind, op, path: path.to_owned(), message: message.into() }
    }
}

/// Suffix of the temporary files `write_atomic` writes next to its target. A crash
/// can leave one behind; [`Disk::list_dir`] never lists them, and
/// [`Disk::remove_dir_all`] removes them with the rest of the tree.
pub const TEMP_FILE_SUFFIX: &str = ".___temp";

/// Whether a directory entry is a leftover temporary file of `write_atomic`.
pub fn is_temp_file_name(name: &str) -> bool {
    name.ends_with(TEMP_FILE_SUFFIX)
}

/// One entry of a directory listing. `size_bytes` is 0 for directories.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
    pub size_bytes: u64,
}

pub trait Disk: Clone + Send + Sync + 'static {
    /// Crash-safe overwrite: temp file, fsync, rename, directory fsync. Creates
    /// missing parent directories (durably).
    fn write_atomic(
        &self,
        path: &Utf8Path,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(), DiskError>> + Send;

    /// The whole file.
    fn read(&self, path: &Utf8Path) -> impl Future<Output = Result<Vec<u8>, DiskError>> + Send;

    /// Removes a file and fsyncs its directory. A missing file is `NotFound`.
    fn remove_file(&self, path: &Utf8Path) -> impl Future<Output = Result<(), DiskError>> + Send;

    /// Renames a file or directory and fsyncs the directories involved. A file
    /// replaces an existing file at `to`; the parent of `to` must exist.
    fn rename(
        &self,
        from: &Utf8Path,
        to: &Utf8Path,
    ) -> impl Future<Output = Result<(), DiskError>> + Send;

    /// Creates a directory and its parents, durably. Existing directories are fine.
    fn create_dir_all(&self, path: &Utf8Path)
    -> impl Future<Output = Result<(), DiskError>> + Send;

    /// Removes a directory tree (not necessarily atomically: rename it away first),
    /// then fsyncs its parent. A missing directory is `NotFound`.
    fn remove_dir_all(&self, path: &Utf8Path)
    -> impl Future<Output = Result<(), DiskError>> + Send;

    /// The entries of a directory, sorted by name, without leftover temporary files
    /// ([`TEMP_FILE_SUFFIX`]). A missing directory is `NotFound`.
    fn list_dir(
        &self,
        path: &Utf8Path,
    ) -> impl Future<Output = Result<Vec<DirEntry>, DiskError>> + Send;
}

/// Refuses absolute paths and `..`/`.` components. Shared by every implementation.
pub fn check_relative(op: &'static str, path: &Utf8Path) -> Result<(), DiskError> {
    use camino::Utf8Component;
    // `components()` drops interior `.` segments, so look at the text as well.
    let ok = !path.as_str().is_empty()
        && path.components().all(|c| matches!(c, Utf8Component::Normal(_)))
        && !path.as_str().split('/').any(|c| c == "." || c == "..");
    if ok {
        Ok(())
    } else {
        Err(DiskError::new(
            DiskErrorKind::BadPath,
            op,
            path,
            "not a relative path inside the data directory",
        ))
    }
}
