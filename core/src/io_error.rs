//! One I/O error type for every completion: [`IoError`].
//!
//! Every effect the driver executes on the world (a disk operation, a remote call,
//! a control-plane store transaction, a redo) that fails comes back as an
//! [`IoError`]: a [`IoErrorKind`] that machines branch on, the [`IoTarget`] it
//! concerned (the local path or the remote key), and a message for people. No
//! machine receives a bare `String` error. The drivers (tokio and simulator, one
//! `runtime-tokio/src/driver.rs`) map every adapter error onto a kind; the node
//! passes the error on unchanged, or makes a `Corrupt` one when bytes it was
//! handed do not match what an index records.
//!
//! # Kinds and what they mean
//!
//! | kind | from | what it tells the machine |
//! |---|---|---|
//! | `NotFound` | ENOENT; a missing remote key | an answer, not a failure: per operation (often "nothing to do") |
//! | `Transient` | remote 5xx, timeouts, throttling, a lost connection or response; a store transaction that may or may not have committed | retry with capped exponential backoff, indefinitely |
//! | `OperatorFixable(kind)` | EPERM/EACCES on LocalFs, S3 `AccessDenied`, bad credentials, a missing bucket ([`FixableKind`]) | as `Transient`, counted by kind; never `Broken` |
//! | `NoSpace` | ENOSPC, EDQUOT on the local disk | the disk-full policy (`crate::timeline` flush: ingest refused with 503, reads served, retried within a named budget, then Broken `NoSpace`) |
//! | `FsyncFailed` | an fsync (of a file or a directory) failed | the file's contents and its directory entry are unknown: never trusted again, rewritten from memory or the machine fails (its module doc says which) |
//! | `Corrupt` | bytes that do not parse or do not match the size and CRC32C an index records | not retried as is: a local copy is replaced from remote storage; a remote object breaks the timeline naming it |
//! | `Permanent` | the request can never succeed as written: an invalid key, a delete over the batch limit, a bad path, a redo the function refuses, an unreadable local layer | the machine's failure rule (the remote queues go `Broken`) |
//!
//! Which machine does what with each kind is in its module doc; the whole table is
//! in `docs/FAULT_MODEL.md`.

use camino::Utf8PathBuf;

/// What an I/O effect failed with, as machines branch on it (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum IoErrorKind {
    /// A missing file or object: an answer.
    NotFound,
    /// Worth a retry (remote 5xx/timeout, a lost response).
    Transient,
    /// Refused until an operator fixes permissions, credentials or the bucket:
    /// retried with backoff like `Transient`, and counted by kind.
    OperatorFixable(FixableKind),
    /// The local disk is full (ENOSPC, EDQUOT).
    NoSpace,
    /// An fsync failed: what the file (or directory) holds is unknown.
    FsyncFailed,
    /// The bytes are not what they should be (parse, size or CRC mismatch).
    Corrupt,
    /// Retrying will not help.
    Permanent,
}

impl IoErrorKind {
    /// Every kind, `NotFound` first, then in the order of [`IoErrorKind::ERROR_LABELS`]
    /// (what tests, models and fuzz targets draw a failure from).
    pub const ALL: [IoErrorKind; 9] = [
        IoErrorKind::NotFound,
        IoErrorKind::Transient,
        IoErrorKind::OperatorFixable(FixableKind::AccessDenied),
        IoErrorKind::OperatorFixable(FixableKind::InvalidCredentials),
        IoErrorKind::OperatorFixable(FixableKind::NoSuchBucket),
        IoErrorKind::NoSpace,
        IoErrorKind::FsyncFailed,
        IoErrorKind::Corrupt,
        IoErrorKind::Permanent,
    ];

    /// Every label of [`IoErrorKind::label`] but `not_found` (an answer, not an
    /// error), in a fixed order: the values of `strata_io_errors_total{kind}`.
    pub const ERROR_LABELS: [&'static str; 8] = [
        "transient",
        "access_denied",
        "invalid_credentials",
        "no_such_bucket",
        "no_space",
        "fsync_failed",
        "corrupt",
        "permanent",
    ];

    /// The label `strata_io_errors_total{kind}` counts this kind under.
    pub fn label(self) -> &'static str {
        match self {
            IoErrorKind::NotFound => "not_found",
            IoErrorKind::Transient => "transient",
            IoErrorKind::OperatorFixable(kind) => kind.as_str(),
            IoErrorKind::NoSpace => "no_space",
            IoErrorKind::FsyncFailed => "fsync_failed",
            IoErrorKind::Corrupt => "corrupt",
            IoErrorKind::Permanent => "permanent",
        }
    }

    /// Whether the upload and deletion queues retry a remote operation that failed
    /// this way (capped backoff, indefinitely): everything but `Permanent` and
    /// `Corrupt`. A missing key is retried too (an upload that cannot find its
    /// target); `NoSpace` and `FsyncFailed` come from a local step of a remote
    /// operation and are retried like any local write.
    pub fn is_retried_remotely(self) -> bool {
        match self {
            IoErrorKind::NotFound
            | IoErrorKind::Transient
            | IoErrorKind::OperatorFixable(_)
            | IoErrorKind::NoSpace
            | IoErrorKind::FsyncFailed => true,
            IoErrorKind::Corrupt | IoErrorKind::Permanent => false,
        }
    }
}

impl std::fmt::Display for IoErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// What a failed effect concerned.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IoTarget {
    /// A local path, relative to the data directory.
    Local(Utf8PathBuf),
    /// A remote key or listing prefix.
    Remote(String),
    /// The walredo process (or function).
    Redo,
    /// The control plane's durable store.
    Store,
}

impl std::fmt::Display for IoTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IoTarget::Local(path) => write!(f, "local {path}"),
            IoTarget::Remote(key) => write!(f, "remote {key}"),
            IoTarget::Redo => f.write_str("walredo"),
            IoTarget::Store => f.write_str("the control-plane store"),
        }
    }
}

/// A failed I/O effect: what kind of failure, on what, and a message. Its `Debug`
/// form is short and stable (`NotFound(local tenants/…: no such file)`): trace
/// lines print it.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} on {target}: {message}")]
pub struct IoError {
    pub kind: IoErrorKind,
    pub target: IoTarget,
    pub message: String,
}

impl std::fmt::Debug for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}({}: {})", self.kind, self.target, self.message)
    }
}

impl IoError {
    pub fn new(kind: IoErrorKind, target: IoTarget, message: impl Into<String>) -> Self {
        IoError { kind, target, message: message.into() }
    }

    /// A failure of a local disk operation on `path`.
    pub fn local(
        kind: IoErrorKind,
        path: impl Into<Utf8PathBuf>,
        message: impl Into<String>,
    ) -> Self {
        IoError::new(kind, IoTarget::Local(path.into()), message)
    }

    /// A failure of a remote operation on `key` (or a listing prefix).
    pub fn remote(kind: IoErrorKind, key: impl Into<String>, message: impl Into<String>) -> Self {
        IoError::new(kind, IoTarget::Remote(key.into()), message)
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == IoErrorKind::NotFound
    }

    /// The label `strata_io_errors_total{kind}` counts this failure under.
    pub fn kind_label(&self) -> &'static str {
        self.kind.label()
    }
}

/// Why a request was refused in a way an operator can fix while the node keeps
/// running (see [`IoErrorKind::OperatorFixable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum FixableKind {
    /// EPERM/EACCES on LocalFs (a read-only directory), S3 `AccessDenied`.
    AccessDenied,
    /// S3 `InvalidAccessKeyId`, `SignatureDoesNotMatch`: wrong or revoked keys.
    InvalidCredentials,
    /// S3 `NoSuchBucket`: the bucket is missing (not yet created, or deleted).
    NoSuchBucket,
}

impl FixableKind {
    pub const ALL: [FixableKind; 3] =
        [FixableKind::AccessDenied, FixableKind::InvalidCredentials, FixableKind::NoSuchBucket];

    pub fn as_str(self) -> &'static str {
        match self {
            FixableKind::AccessDenied => "access_denied",
            FixableKind::InvalidCredentials => "invalid_credentials",
            FixableKind::NoSuchBucket => "no_such_bucket",
        }
    }
}

impl std::fmt::Display for FixableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_a_distinct_label_and_only_not_found_is_left_out() {
        let kinds: Vec<_> =
            IoErrorKind::ALL.into_iter().filter(|k| *k != IoErrorKind::NotFound).collect();
        let labels: Vec<_> = kinds.iter().map(|k| k.label()).collect();
        assert_eq!(labels, IoErrorKind::ERROR_LABELS);
        assert!(!labels.contains(&IoErrorKind::NotFound.label()));
    }

    #[test]
    fn only_permanent_and_corrupt_stop_the_remote_queues_retrying() {
        assert!(!IoErrorKind::Permanent.is_retried_remotely());
        assert!(!IoErrorKind::Corrupt.is_retried_remotely());
        assert!(IoErrorKind::Transient.is_retried_remotely());
        assert!(IoErrorKind::OperatorFixable(FixableKind::NoSuchBucket).is_retried_remotely());
    }

    #[test]
    fn an_error_names_its_kind_and_target() {
        let e = IoError::local(IoErrorKind::FsyncFailed, "tenants/t/config-v1", "EIO");
        assert_eq!(e.to_string(), "fsync_failed on local tenants/t/config-v1: EIO");
    }
}
