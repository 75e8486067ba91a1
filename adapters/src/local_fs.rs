//! LocalFs: a directory on the local file system as the object store (the
//! embedded default).
//!
//! A key `a/b/c` is the file `{root}/a/b/c`. The rules of [`crate::remote`]:
//! - `put` writes `{name}.{unique}.___temp` next to the target, fsyncs it, renames
//!   it over the target and fsyncs the directory (missing directories are created
//!   durably first). Readers see the old object or the new one.
//! - `list(prefix)` walks the directories the prefix can reach, recursing, and
//!   returns the matching files sorted by key; temp files are never listed.
//! - `list_page(prefix, start_after, max_keys)` walks the same directories in key
//!   order (each directory's entries sorted, a directory as its name plus `/`, which
//!   is exactly the order of the keys beneath it), skips every subtree that lies
//!   wholly at or before `start_after`, and stops after `max_keys`: it holds one
//!   page and the entries of the directories on its path, never the whole tree.
//!   Modification times are the files' mtimes.
//! - `delete_objects` removes each file (a missing one is fine) and fsyncs the
//!   directories it changed. Emptied directories stay (removing them would race
//!   with a `put` creating a file inside).
//!
//! - `put_file` copies the local file (from the data directory of the local disk
//!   given with [`LocalFs::with_local_disk`]) into the temp file in chunks of
//!   [`TRANSFER_CHUNK_BYTES`], then renames it as `put` does. `get_to_file` copies
//!   the object into a temp file in the data directory in chunks of that size,
//!   through the caller's check, and renames it onto the target only if the
//!   check accepts it ([`crate::remote`] has the crash argument).
//!
//! What a directory cannot hold that S3 can: a key with an empty, `.` or `..`
//! component, a key ending in the temp suffix, and a key that is also a "folder" of
//! another key (`a/b` and `a/b/c`). Such a `put` is a `Permanent` error; `get` of
//! such a key is `NotFound` and deleting it succeeds, since it cannot exist.
//!
//! Error kinds (the classification is in [`crate::remote`]): a missing file is
//! `NotFound`; EPERM/EACCES (a directory made read-only, files owned by another
//! user, an immutable directory) and EROFS are `OperatorFixable(AccessDenied)`:
//! the node retries them with backoff until an operator fixes the permissions;
//! the layouts above and invalid input are `Permanent`; any other I/O error is
//! `Transient` (the queues retry).

use crate::disk::{DiskError, DiskErrorKind, is_temp_file_name};
use crate::local_disk::{
    LocalDisk, TempDownload, crash_safe_write, crash_safe_write_with, fsync_dir, open_upload_source,
};
use crate::remote::{
    DownloadCheck, FixableKind, ListPage, ListedEntry, ListedObject, MAX_KEYS_PER_DELETE,
    RemoteError, RemoteErrorKind, RemoteStorage, TRANSFER_CHUNK_BYTES, TransferError,
};
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::sync::Arc;
use strata_core::remote_path::RemoteKey;
use strata_core::time::WallTime;

/// Remote storage in a local directory.
#[derive(Clone, Debug)]
pub struct LocalFs {
    root: Arc<Utf8PathBuf>,
    /// The data directory `put_file` and `get_to_file` paths are relative to.
    local: Option<LocalDisk>,
}

impl LocalFs {
    /// An object store rooted at `root` (created on the first `put`).
    pub fn new(root: Utf8PathBuf) -> LocalFs {
        LocalFs { root: Arc::new(root), local: None }
    }

    /// The node's disk, whose data directory `put_file` and `get_to_file` read
    /// and write. Without one they fail with `BadPath`.
    pub fn with_local_disk(mut self, disk: LocalDisk) -> LocalFs {
        self.local = Some(disk);
        self
    }

    /// The data directory, or the error of a transfer without one.
    fn local_root(&self, op: &'static str, path: &Utf8Path) -> Result<Utf8PathBuf, DiskError> {
        match &self.local {
            Some(disk) => Ok(disk.root().to_owned()),
            None => Err(DiskError::new(DiskErrorKind::BadPath, op, path, NO_LOCAL_DISK)),
        }
    }

    pub fn root(&self) -> &Utf8Path {
        &self.root
    }

    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        key: &str,
        f: impl FnOnce(&Utf8Path) -> Result<T, RemoteError> + Send + 'static,
    ) -> Result<T, RemoteError> {
        let root = Arc::clone(&self.root);
        match tokio::task::spawn_blocking(move || f(&root)).await {
            Ok(r) => r,
            Err(e) => Err(RemoteError::new(RemoteErrorKind::Transient, op, key, format!("{e}"))),
        }
    }
}

pub(crate) const NO_LOCAL_DISK: &str =
    "no local disk configured for streaming transfers (with_local_disk)";

/// Whether a directory can hold `key` as a file.
fn storable(key: &str) -> bool {
    !key.is_empty()
        && key.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && !is_temp_file_name(key)
}

fn error(op: &'static str, key: &str, step: &str, e: io::Error) -> RemoteError {
    RemoteError::new(kind_of(&e), op, key, format!("{step}: {e}"))
}

/// The kind of a file-system error (see the module doc).
fn kind_of(e: &io::Error) -> RemoteErrorKind {
    use io::ErrorKind as K;
    match e.kind() {
        K::NotFound => RemoteErrorKind::NotFound,
        K::PermissionDenied | K::ReadOnlyFilesystem => {
            RemoteErrorKind::OperatorFixable(FixableKind::AccessDenied)
        }
        K::NotADirectory
        | K::IsADirectory
        | K::DirectoryNotEmpty
        | K::InvalidInput
        | K::InvalidFilename => RemoteErrorKind::Permanent,
        _ => RemoteErrorKind::Transient,
    }
}

fn put_blocking(root: &Utf8Path, key: &str, body: &[u8]) -> Result<(), RemoteError> {
    const OP: &str = "put";
    let err = |step: &str, e: io::Error| error(OP, key, step, e);
    if !storable(key) {
        return Err(RemoteError::new(
            RemoteErrorKind::Permanent,
            OP,
            key,
            "a directory cannot hold this key (empty, '.' or '..' component, or temp suffix)",
        ));
    }
    crash_safe_write(root, Utf8Path::new(key), body).map_err(|(step, e)| err(step, e))
}

fn get_blocking(root: &Utf8Path, key: &str) -> Result<Vec<u8>, RemoteError> {
    if !storable(key) {
        return Err(RemoteError::new(RemoteErrorKind::NotFound, "get", key, "no such object"));
    }
    fs::read(root.join(key)).map_err(|e| match e.kind() {
        io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory => {
            RemoteError::new(RemoteErrorKind::NotFound, "get", key, format!("no such object: {e}"))
        }
        _ => error("get", key, "read", e),
    })
}

/// `put_file`: the local file `local_root/path`, copied chunk by chunk into a temp
/// file under the store's root and renamed onto `key`.
fn put_file_blocking(
    root: &Utf8Path,
    local_root: &Utf8Path,
    key: &str,
    path: &Utf8Path,
    mut check: impl DownloadCheck,
) -> Result<u64, TransferError> {
    const OP: &str = "put_file";
    let (mut source, _) = open_upload_source(local_root, path)?;
    if !storable(key) {
        return Err(RemoteError::new(
            RemoteErrorKind::Permanent,
            OP,
            key,
            "a directory cannot hold this key (empty, '.' or '..' component, or temp suffix)",
        )
        .into());
    }
    let mut copied = 0u64;
    // A failed read of the local source is the disk's error, not the store's.
    let mut local_failure: Option<TransferError> = None;
    let written = crash_safe_write_with(root, Utf8Path::new(key), |target| {
        let mut buf = vec![0u8; TRANSFER_CHUNK_BYTES];
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let why = format!("read: {e}");
                    local_failure = Some(DiskError::new(DiskErrorKind::Io, OP, path, why).into());
                    return Err(("read the local file", e));
                }
            };
            check.update(&buf[..n]);
            target.write_all(&buf[..n]).map_err(|e| ("write temp file", e))?;
            copied += n as u64;
        }
        // Refused: the temp file goes, nothing is renamed into the store.
        check.finish().map_err(|message| {
            local_failure = Some(TransferError::CorruptSource { path: path.to_owned(), message });
            ("check the local file", io::Error::other("refused by the check"))
        })
    });
    if let Some(e) = local_failure {
        return Err(e);
    }
    written.map_err(|(step, e)| error(OP, key, step, e))?;
    Ok(copied)
}

/// `get_to_file`: the object copied chunk by chunk through `check` into a temp
/// file next to `local_root/path`, renamed onto it only if `check` accepts.
fn get_to_file_blocking(
    root: &Utf8Path,
    local_root: &Utf8Path,
    key: &str,
    path: &Utf8Path,
    mut check: impl DownloadCheck,
) -> Result<u64, TransferError> {
    const OP: &str = "get_to_file";
    if !storable(key) {
        return Err(RemoteError::new(RemoteErrorKind::NotFound, OP, key, "no such object").into());
    }
    let mut source = fs::File::open(root.join(key)).map_err(|e| match e.kind() {
        io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory => {
            RemoteError::new(RemoteErrorKind::NotFound, OP, key, format!("no such object: {e}"))
        }
        _ => error(OP, key, "open", e),
    })?;
    let (download, mut target) = TempDownload::create(local_root, path)?;
    let mut buf = vec![0u8; TRANSFER_CHUNK_BYTES];
    let mut copied = 0u64;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(error(OP, key, "read", e).into()),
        };
        check.update(&buf[..n]);
        target.write_all(&buf[..n]).map_err(|e| download.write_error(e))?;
        copied += n as u64;
    }
    if let Err(message) = check.finish() {
        // `download` is dropped uncommitted: the temp file goes.
        return Err(TransferError::Corrupt { key: key.to_owned(), message });
    }
    download.commit(target)?;
    Ok(copied)
}

/// Whether anything under the directory `dir_key/` can start with `prefix`.
fn may_match(dir_key: &str, prefix: &str) -> bool {
    let dir = format!("{dir_key}/");
    dir.starts_with(prefix) || prefix.starts_with(&dir)
}

fn list_blocking(root: &Utf8Path, prefix: &str) -> Result<Vec<ListedObject>, RemoteError> {
    const OP: &str = "list";
    check_list_prefix(OP, prefix)?;
    // Start at the deepest directory the prefix names completely.
    let start = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    if !start.is_empty() && !storable(start) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut stack = vec![start.to_owned()];
    while let Some(dir_key) = stack.pop() {
        let entries = match fs::read_dir(root.join(&dir_key)) {
            Ok(entries) => entries,
            Err(e)
                if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) =>
            {
                continue;
            }
            Err(e) => return Err(error(OP, prefix, "read directory", e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| error(OP, prefix, "read directory entry", e))?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(dir = %dir_key, "LocalFs: skipping a file name that is not UTF-8");
                continue;
            };
            if is_temp_file_name(&name) {
                continue;
            }
            let key = if dir_key.is_empty() { name } else { format!("{dir_key}/{name}") };
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Deleted between read_dir and stat: not listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(error(OP, prefix, "stat entry", e)),
            };
            if meta.is_dir() {
                if may_match(&key, prefix) {
                    stack.push(key);
                }
            } else if key.starts_with(prefix) {
                match RemoteKey::from_listing(&key) {
                    Ok(key) => out.push(ListedObject { key, size_bytes: meta.len() }),
                    Err(e) => tracing::warn!(%key, "LocalFs: skipping an unusable key: {e}"),
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn check_list_prefix(op: &'static str, prefix: &str) -> Result<(), RemoteError> {
    if prefix.starts_with('/') || prefix.split('/').any(|c| c == "." || c == "..") {
        return Err(RemoteError::new(
            RemoteErrorKind::Permanent,
            op,
            prefix,
            "a prefix must be relative, without '.' or '..' components",
        ));
    }
    Ok(())
}

/// [`RemoteStorage::list_page`] (see the module doc).
fn list_page_blocking(
    root: &Utf8Path,
    prefix: &str,
    start_after: Option<&str>,
    max_keys: usize,
) -> Result<ListPage, RemoteError> {
    check_list_prefix("list_page", prefix)?;
    let start = prefix.rfind('/').map_or("", |i| &prefix[..i]);
    if !start.is_empty() && !storable(start) {
        return Ok(ListPage::default());
    }
    let mut page = PageWalk { prefix, start_after, max_keys: max_keys.max(1), out: Vec::new() };
    let more = page.walk(root, start)?;
    let next_start_after = if more { page.out.last().map(|o| o.key.clone()) } else { None };
    Ok(ListPage { objects: page.out, next_start_after })
}

struct PageWalk<'a> {
    prefix: &'a str,
    start_after: Option<&'a str>,
    max_keys: usize,
    out: Vec<ListedEntry>,
}

impl PageWalk<'_> {
    /// Walks `dir_key` in key order; `Ok(true)` when the page filled up and a key
    /// is left after it.
    fn walk(&mut self, root: &Utf8Path, dir_key: &str) -> Result<bool, RemoteError> {
        const OP: &str = "list_page";
        let entries = match fs::read_dir(root.join(dir_key)) {
            Ok(entries) => entries,
            Err(e)
                if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(error(OP, self.prefix, "read directory", e)),
        };
        let mut sorted = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| error(OP, self.prefix, "read directory entry", e))?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            if is_temp_file_name(&name) {
                continue;
            }
            let key = if dir_key.is_empty() { name } else { format!("{dir_key}/{name}") };
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(error(OP, self.prefix, "stat entry", e)),
            };
            let order = if meta.is_dir() { format!("{key}/") } else { key.clone() };
            sorted.push((order, key, meta));
        }
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (order, key, meta) in sorted {
            if meta.is_dir() {
                let before =
                    self.start_after.is_some_and(|a| *order < *a && !a.starts_with(&order));
                if may_match(&key, self.prefix) && !before && self.walk(root, &key)? {
                    return Ok(true);
                }
                continue;
            }
            if !key.starts_with(self.prefix) || self.start_after.is_some_and(|a| *key <= *a) {
                continue;
            }
            let Ok(key) = RemoteKey::from_listing(&key) else { continue };
            if self.out.len() == self.max_keys {
                return Ok(true);
            }
            let last_modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| WallTime::from_unix_millis(d.as_millis() as u64));
            self.out.push(ListedEntry { key, size_bytes: meta.len(), last_modified });
        }
        Ok(false)
    }
}

fn delete_blocking(root: &Utf8Path, keys: &[String]) -> Result<(), RemoteError> {
    const OP: &str = "delete_objects";
    let mut dirs = BTreeSet::new();
    for key in keys.iter().filter(|k| storable(k)) {
        match fs::remove_file(root.join(key)) {
            Ok(()) => {
                dirs.insert(Utf8Path::new(key).parent().unwrap_or(Utf8Path::new("")).to_owned());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::NotADirectory
                        | io::ErrorKind::IsADirectory
                ) => {}
            Err(e) => return Err(error(OP, key, "remove", e)),
        }
    }
    for dir in dirs {
        match fsync_dir(&root.join(&dir)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(OP, dir.as_str(), "fsync directory", e)),
        }
    }
    Ok(())
}

impl RemoteStorage for LocalFs {
    async fn put(&self, key: &RemoteKey, body: Vec<u8>) -> Result<(), RemoteError> {
        let k = key.as_str().to_owned();
        self.run("put", key.as_str(), move |root| put_blocking(root, &k, &body)).await
    }

    async fn get(&self, key: &RemoteKey) -> Result<Vec<u8>, RemoteError> {
        let k = key.as_str().to_owned();
        self.run("get", key.as_str(), move |root| get_blocking(root, &k)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, RemoteError> {
        let p = prefix.to_owned();
        self.run("list", prefix, move |root| list_blocking(root, &p)).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&RemoteKey>,
        max_keys: usize,
    ) -> Result<ListPage, RemoteError> {
        let (p, a) = (prefix.to_owned(), start_after.map(|k| k.as_str().to_owned()));
        self.run("list_page", prefix, move |root| {
            list_page_blocking(root, &p, a.as_deref(), max_keys)
        })
        .await
    }

    async fn delete_objects(&self, keys: &[RemoteKey]) -> Result<(), RemoteError> {
        let first = keys.first().map(|k| k.as_str()).unwrap_or("");
        if keys.len() > MAX_KEYS_PER_DELETE {
            return Err(RemoteError::new(
                RemoteErrorKind::Permanent,
                "delete_objects",
                first,
                format!("{} keys in one batch; at most {MAX_KEYS_PER_DELETE}", keys.len()),
            ));
        }
        let keys: Vec<String> = keys.iter().map(|k| k.as_str().to_owned()).collect();
        self.run("delete_objects", first, move |root| delete_blocking(root, &keys)).await
    }

    async fn put_file<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        check: C,
    ) -> Result<u64, TransferError> {
        let local_root = self.local_root("put_file", path)?;
        let (k, p) = (key.as_str().to_owned(), path.to_owned());
        self.run_transfer("put_file", key.as_str(), move |root| {
            put_file_blocking(root, &local_root, &k, &p, check)
        })
        .await
    }

    async fn get_to_file<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        check: C,
    ) -> Result<u64, TransferError> {
        let local_root = self.local_root("get_to_file", path)?;
        let (k, p) = (key.as_str().to_owned(), path.to_owned());
        self.run_transfer("get_to_file", key.as_str(), move |root| {
            get_to_file_blocking(root, &local_root, &k, &p, check)
        })
        .await
    }
}

impl LocalFs {
    /// [`LocalFs::run`] for a transfer's error type.
    async fn run_transfer(
        &self,
        op: &'static str,
        key: &str,
        f: impl FnOnce(&Utf8Path) -> Result<u64, TransferError> + Send + 'static,
    ) -> Result<u64, TransferError> {
        let root = Arc::clone(&self.root);
        match tokio::task::spawn_blocking(move || f(&root)).await {
            Ok(r) => r,
            Err(e) => {
                Err(RemoteError::new(RemoteErrorKind::Transient, op, key, format!("{e}")).into())
            }
        }
    }
}

/// A test aid: makes a directory refuse new entries while it lives, so a test can
/// see LocalFs's access-denied kind and recover from it. `chmod 0555` for an
/// ordinary user; as root (where permission bits do not deny), `chattr +i`
/// (immutable: EPERM even for root). `None` if neither is possible here.
pub struct ReadOnlyDir(Utf8PathBuf, bool);

impl ReadOnlyDir {
    pub fn new(dir: &Utf8Path) -> Option<ReadOnlyDir> {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            let ok = std::process::Command::new("chattr")
                .args(["+i", dir.as_str()])
                .status()
                .is_ok_and(|s| s.success());
            ok.then(|| ReadOnlyDir(dir.to_owned(), true))
        } else {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).ok()?;
            Some(ReadOnlyDir(dir.to_owned(), false))
        }
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.1 {
            let _ = std::process::Command::new("chattr").args(["-i", self.0.as_str()]).status();
        } else {
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EPERM, EACCES and EROFS are for an operator to fix (retried), not permanent;
    /// a layout a directory cannot hold stays permanent.
    #[test]
    fn permission_errors_are_operator_fixable() {
        let denied = RemoteErrorKind::OperatorFixable(FixableKind::AccessDenied);
        for errno in [libc::EPERM, libc::EACCES, libc::EROFS] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(kind_of(&e), denied, "errno {errno}: {e}");
        }
        assert_eq!(kind_of(&io::Error::from(io::ErrorKind::PermissionDenied)), denied);
        let e = error("put", "tenants/t/x", "create temp", io::Error::from_raw_os_error(13));
        assert_eq!((e.kind, e.op, e.key.as_str()), (denied, "put", "tenants/t/x"));
        assert_eq!(
            kind_of(&io::Error::from_raw_os_error(libc::ENOTDIR)),
            RemoteErrorKind::Permanent
        );
        assert_eq!(kind_of(&io::Error::from_raw_os_error(libc::ENOENT)), RemoteErrorKind::NotFound);
        assert_eq!(kind_of(&io::Error::from_raw_os_error(libc::EIO)), RemoteErrorKind::Transient);
    }

    /// `list_page` pages like `list` (the conformance case) and reports
    /// modification times.
    #[tokio::test]
    async fn list_page_pages_in_key_order_like_list() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        let fs = LocalFs::new(root);
        assert!(crate::conformance::remote_list_page_like_list(&fs, "p/").await);
    }
}
