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
//! - Errors say whether a retry may help ([`RemoteErrorKind::Transient`]) and name the
//!   key. Retries are the caller's (the upload and deletion queues own them).

use std::future::Future;
use strata_core::remote_path::RemoteKey;

pub const MAX_KEYS_PER_DELETE: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteErrorKind {
    NotFound,
    /// Timeouts, 5xx, throttling, a lost connection: try again.
    Transient,
    /// Bad request, access denied, corrupt data: retrying will not help.
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
