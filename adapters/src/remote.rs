//! Remote storage: the object store that is strata's source of truth.
//!
//! Keys are [`RemoteKey`]s relative to the configured root (LocalFs directory or S3
//! bucket prefix). Every implementation keeps these rules (the conformance suite
//! checks them):
//! - `put` is atomic: a reader sees the old object or the new one, never a prefix.
//! - `get` of a missing key is [`RemoteErrorKind::NotFound`].
//! - `list(prefix)` returns every key starting with `prefix`, sorted, however many
//!   (implementations paginate underneath).
//! - `delete_objects` takes at most [`MAX_KEYS_PER_DELETE`] keys; deleting a missing
//!   key succeeds.
//! - Errors say whether a retry may help and name the key. Retries are the
//!   caller's (the upload and deletion queues own them).
//!
//! # Streaming layer files: `put_file` and `get_to_file`
//!
//! Layer files move between the node's data directory and the store without
//! passing through core: [`RemoteStorage::put_file`] reads the local file in the
//! adapter and uploads it; [`RemoteStorage::get_to_file`] downloads into a
//! temporary file next to the target, hands every chunk to a [`DownloadCheck`]
//! (the driver's wraps core's size and CRC32C check), and only if the check
//! accepts the whole body fsyncs it, renames it onto the target and fsyncs the
//! directory. Local paths are relative to the node's data directory, the local
//! disk each adapter is given (`with_local_disk`).
//!
//! **Memory per transfer** is bounded by [`TRANSFER_CHUNK_BYTES`]: the adapters
//! read and write in chunks of at most that many bytes (the S3 download is the
//! exception: it writes each chunk as the HTTP stack hands it over, whose size the
//! SDK bounds, not us). Nothing holds a whole layer.
//!
//! **Crash behaviour of a download.** The final name only ever appears through
//! the rename of a temporary file that was written completely, accepted by the
//! check and fsynced. A crash before the rename leaves at most the temporary file
//! (`{name}.{unique}.___temp`, [`crate::disk::TEMP_FILE_SUFFIX`]: never listed,
//! removed with its directory, never read under the layer's name); a crash after
//! the rename but before the directory fsync leaves no file or the complete one.
//! A refused check removes the temporary file and reports
//! [`TransferError::Corrupt`]: nothing appears under the final name. So a
//! partially written or unverified layer never carries the layer's name.
//!
//! # Error classification
//!
//! | kind | when | what the node does |
//! |---|---|---|
//! | `NotFound` | the key does not exist | per operation |
//! | `Transient` | timeouts, 5xx, throttling, a lost connection, other I/O errors | retries with capped backoff, indefinitely |
//! | `OperatorFixable(kind)` | refused for a reason an operator can fix while the node runs: `AccessDenied` (EPERM/EACCES on LocalFs, e.g. a read-only directory; S3 `AccessDenied`), `InvalidCredentials` (S3 `InvalidAccessKeyId`, `SignatureDoesNotMatch`), `NoSuchBucket` (S3) | retries with capped backoff, indefinitely, counting each failure by kind (`strata_io_errors_total{kind}`); uploads wait, reads keep working |
//! | `Permanent` | the request can never succeed as written: an invalid key or prefix, a key a directory cannot hold, a delete over [`MAX_KEYS_PER_DELETE`], a bad configuration, another 4xx | the timeline's upload queue goes Broken |
//!
//! The rule for a new error: `Permanent` only if sending the same request again
//! can never succeed, whatever an operator does to the store; when in doubt,
//! `Transient`.

use crate::disk::DiskError;
use camino::Utf8Path;
use std::future::Future;
pub use strata_core::node::io::FixableKind;
use strata_core::remote_path::RemoteKey;

pub const MAX_KEYS_PER_DELETE: usize = 1000;

/// Most bytes of one layer a streaming transfer ([`RemoteStorage::put_file`],
/// [`RemoteStorage::get_to_file`]) holds in memory at a time: the buffer it reads
/// the source into before writing it on. 256 KiB: large enough that a layer of
/// tens of MiB takes a few hundred system calls, small enough that many
/// concurrent transfers stay cheap.
pub const TRANSFER_CHUNK_BYTES: usize = 256 * 1024;

/// What [`RemoteStorage::get_to_file`] asks before it gives a downloaded file its
/// final name, and [`RemoteStorage::put_file`] before it sends a local file. The adapter calls [`DownloadCheck::update`] with every chunk, in
/// order, then [`DownloadCheck::finish`] once; an `Err` refuses the download.
pub trait DownloadCheck: Send + 'static {
    fn update(&mut self, chunk: &[u8]);
    /// After the last chunk: `Err(why)` if the bytes are not what was expected.
    fn finish(&self) -> Result<(), String>;
}

/// Core's size and CRC32C check of a layer file: what the driver hands
/// `get_to_file` for a layer download.
impl DownloadCheck for strata_core::file_check::FileCheck {
    fn update(&mut self, chunk: &[u8]) {
        strata_core::file_check::FileCheck::update(self, chunk)
    }

    fn finish(&self) -> Result<(), String> {
        strata_core::file_check::FileCheck::finish(self).map_err(|e| e.to_string())
    }
}

/// Accepts everything (a transfer with nothing to check against).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCheck;

impl DownloadCheck for NoCheck {
    fn update(&mut self, _chunk: &[u8]) {}
    fn finish(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Why a streaming transfer failed: the store, the local file, or the check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The store refused or failed the request (its own kinds).
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Reading the local source or writing the local target failed (the disk's
    /// kinds: a missing source is `NotFound`, ENOSPC `NoSpace`, ...).
    #[error(transparent)]
    Local(#[from] DiskError),
    /// The downloaded bytes failed the caller's [`DownloadCheck`]; nothing was
    /// written under the target's name.
    #[error("remote get {key}: refused by the check: {message}")]
    Corrupt { key: String, message: String },
    /// The local file `put_file` read failed the caller's check; nothing was
    /// uploaded (the store holds what it held).
    #[error("put_file {path}: the local file was refused by the check: {message}")]
    CorruptSource { path: camino::Utf8PathBuf, message: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteErrorKind {
    NotFound,
    /// Timeouts, 5xx, throttling, a lost connection: try again.
    Transient,
    /// Access denied, bad credentials, a missing bucket: try again once an operator
    /// has fixed it (the node retries with backoff meanwhile).
    OperatorFixable(FixableKind),
    /// The request can never succeed as written (an invalid key, too many keys in
    /// one delete, a bad configuration): retrying will not help.
    Permanent,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("remote {op} {key}: {kind:?}: {message}")]
pub struct RemoteError {
    pub kind: RemoteErrorKind,
    pub op: &'static str,
    /// The key (or prefix) the operation concerned.
    pub key: String,
    pub message: String,
}

impl RemoteError {
    pub fn new(
        kind: RemoteErrorKind,
        op: &'static str,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        RemoteError { kind, op, key: key.into(), message: message.into() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedObject {
    pub key: RemoteKey,
    pub size_bytes: u64,
}

/// One page of [`RemoteStorage::list_page`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Sorted by key, all after the page's `start_after`.
    pub objects: Vec<ListedEntry>,
    /// Pass as `start_after` for the next page; `None`: the listing is complete.
    pub next_start_after: Option<RemoteKey>,
}

/// A listed object with its modification time, when the store tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedEntry {
    pub key: RemoteKey,
    pub size_bytes: u64,
    /// When the object was last written; `None` when the store does not say.
    pub last_modified: Option<strata_core::time::WallTime>,
}

pub trait RemoteStorage: Clone + Send + Sync + 'static {
    fn put(
        &self,
        key: &RemoteKey,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;

    fn get(&self, key: &RemoteKey) -> impl Future<Output = Result<Vec<u8>, RemoteError>> + Send;

    fn list(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<ListedObject>, RemoteError>> + Send;

    /// One page of the keys starting with `prefix`, sorted: at most `max_keys`
    /// (at least 1) keys after `start_after` (`None`: from the first). What the
    /// scrubber walks a bucket of millions of objects with, holding one page at a
    /// time. The default lists the whole prefix with [`RemoteStorage::list`] and
    /// cuts the page out (memory grows with the prefix, ages unknown); LocalFs and
    /// S3 page in the store and report modification times.
    fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&RemoteKey>,
        max_keys: usize,
    ) -> impl Future<Output = Result<ListPage, RemoteError>> + Send {
        async move {
            let all = self.list(prefix).await?;
            Ok(page_of(all, start_after, max_keys))
        }
    }

    /// At most [`MAX_KEYS_PER_DELETE`] keys; more is a `Permanent` error.
    fn delete_objects(
        &self,
        keys: &[RemoteKey],
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;

    /// Uploads the local file `path` (relative to the data directory) to `key`,
    /// reading it in chunks of at most [`TRANSFER_CHUNK_BYTES`]; as atomic as
    /// `put`. Every chunk goes through `check` first, and the object is written
    /// (renamed into place, or sent) only if it accepts the whole file:
    /// otherwise [`TransferError::CorruptSource`] and nothing is uploaded.
    /// Returns the bytes uploaded.
    fn put_file<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        check: C,
    ) -> impl Future<Output = Result<u64, TransferError>> + Send;

    /// Downloads `key` into the local file `path` (relative to the data
    /// directory) through a temporary file, chunk by chunk through `check`; the
    /// file gets its name only if `check` accepts the whole body (see the module
    /// doc for the crash behaviour). Returns the bytes written.
    fn get_to_file<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        check: C,
    ) -> impl Future<Output = Result<u64, TransferError>> + Send;
}

/// The page of `sorted` (a whole, sorted listing) after `start_after`, of at most
/// `max_keys` keys: the default [`RemoteStorage::list_page`].
pub fn page_of(
    sorted: Vec<ListedObject>,
    start_after: Option<&RemoteKey>,
    max_keys: usize,
) -> ListPage {
    let max_keys = max_keys.max(1);
    let mut rest = sorted.into_iter().filter(|o| start_after.is_none_or(|s| &o.key > s));
    let objects: Vec<ListedEntry> = rest
        .by_ref()
        .take(max_keys)
        .map(|o| ListedEntry { key: o.key, size_bytes: o.size_bytes, last_modified: None })
        .collect();
    let more = rest.next().is_some();
    let next_start_after = if more { objects.last().map(|o| o.key.clone()) } else { None };
    ListPage { objects, next_start_after }
}
