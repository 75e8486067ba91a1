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

use std::future::Future;
pub use strata_core::node::io::FixableKind;
use strata_core::remote_path::RemoteKey;

pub const MAX_KEYS_PER_DELETE: usize = 1000;

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

    /// At most [`MAX_KEYS_PER_DELETE`] keys; more is a `Permanent` error.
    fn delete_objects(
        &self,
        keys: &[RemoteKey],
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;
}
