//! The node's effects on the world and their completions, and the local disk layout.
//!
//! Every effect the driver executes is one [`Io`] with a node-level [`OpId`]; its
//! result comes back as the matching [`IoResult`]. The node routes it to the machine
//! that asked (see `Route` in `mod.rs`). Composite operations (upload a local layer
//! file, download and verify a layer) are sequences of these primitive effects, so
//! that every rule stays in core and the simulator can fault every step.
//!
//! Local layout under the data directory:
//!
//! ```text
//! tenants/{tenant}/config-v1                         LocationConf
//! tenants/{tenant}/timelines/{timeline}/metadata     TimelineMetadata blob
//! tenants/{tenant}/timelines/{timeline}/{layer}      layer files (no generation suffix)
//! tenants/{tenant}.___detached.{n}/                 a detached tenant being removed
//! deletion/{seq:016x}-01.list, deletion/header-01    deletion queue
//! ```

use crate::control_plane::StoreChange;
use crate::id::{TenantId, TimelineId};
use crate::layer_name::LayerName;
use crate::location_conf::LOCATION_CONF_FILE_NAME;
use crate::redo::RedoRequest;
use crate::remote_path::RemoteKey;
use camino::Utf8PathBuf;

pub const TENANTS_DIR: &str = "tenants";
pub const DELETION_DIR: &str = "deletion";
pub const METADATA_FILE_NAME: &str = "metadata";

pub fn tenant_dir(tenant: TenantId) -> Utf8PathBuf {
    Utf8PathBuf::from(format!("{TENANTS_DIR}/{tenant}"))
}

/// Marks a tenant directory renamed away by a detach; start-up removes any such
/// directory it finds (the removal after the rename was interrupted).
pub const DETACHED_DIR_MARKER: &str = ".___detached";

/// Where a detach renames `tenants/{tenant}` before removing it in the background.
pub fn detached_dir(tenant: TenantId, n: u64) -> Utf8PathBuf {
    Utf8PathBuf::from(format!("{TENANTS_DIR}/{tenant}{DETACHED_DIR_MARKER}.{n}"))
}

pub fn location_conf_path(tenant: TenantId) -> Utf8PathBuf {
    tenant_dir(tenant).join(LOCATION_CONF_FILE_NAME)
}

pub fn timelines_dir(tenant: TenantId) -> Utf8PathBuf {
    tenant_dir(tenant).join("timelines")
}

pub fn timeline_dir(tenant: TenantId, timeline: TimelineId) -> Utf8PathBuf {
    timelines_dir(tenant).join(timeline.to_string())
}

pub fn metadata_path(tenant: TenantId, timeline: TimelineId) -> Utf8PathBuf {
    timeline_dir(tenant, timeline).join(METADATA_FILE_NAME)
}

pub fn layer_path(tenant: TenantId, timeline: TimelineId, layer: &LayerName) -> Utf8PathBuf {
    timeline_dir(tenant, timeline).join(layer.to_string())
}

pub fn deletion_path(file_name: &str) -> Utf8PathBuf {
    Utf8PathBuf::from(DELETION_DIR).join(file_name)
}

/// One primitive effect on the world.
#[derive(Clone, PartialEq, Eq)]
pub enum Io {
    /// Crash-safe overwrite (temp, fsync, rename, directory fsync).
    DiskWrite {
        path: Utf8PathBuf,
        bytes: Vec<u8>,
    },
    DiskRead {
        path: Utf8PathBuf,
    },
    DiskRemove {
        path: Utf8PathBuf,
    },
    DiskList {
        path: Utf8PathBuf,
    },
    DiskCreateDir {
        path: Utf8PathBuf,
    },
    /// Rename a file or directory (durable: both parents fsynced).
    DiskRename {
        from: Utf8PathBuf,
        to: Utf8PathBuf,
    },
    /// Remove a directory and everything under it (durable).
    DiskRemoveDir {
        path: Utf8PathBuf,
    },
    RemotePut {
        key: RemoteKey,
        bytes: Vec<u8>,
    },
    RemoteGet {
        key: RemoteKey,
    },
    RemoteList {
        prefix: String,
    },
    RemoteDelete {
        keys: Vec<RemoteKey>,
    },
    /// One transaction on the control plane's durable store.
    StoreApply {
        change: StoreChange,
    },
    Redo {
        request: RedoRequest,
    },
}

impl std::fmt::Debug for Io {
    /// Short and stable: byte payloads show only their length, so trace lines stay
    /// readable and comparable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Io::DiskWrite { path, bytes } => write!(f, "DiskWrite {path} ({} bytes)", bytes.len()),
            Io::DiskRead { path } => write!(f, "DiskRead {path}"),
            Io::DiskRemove { path } => write!(f, "DiskRemove {path}"),
            Io::DiskList { path } => write!(f, "DiskList {path}"),
            Io::DiskCreateDir { path } => write!(f, "DiskCreateDir {path}"),
            Io::DiskRename { from, to } => write!(f, "DiskRename {from} -> {to}"),
            Io::DiskRemoveDir { path } => write!(f, "DiskRemoveDir {path}"),
            Io::RemotePut { key, bytes } => write!(f, "RemotePut {key} ({} bytes)", bytes.len()),
            Io::RemoteGet { key } => write!(f, "RemoteGet {key}"),
            Io::RemoteList { prefix } => write!(f, "RemoteList {prefix}"),
            Io::RemoteDelete { keys } => {
                write!(f, "RemoteDelete {} keys, first {:?}", keys.len(), keys.first())
            }
            Io::StoreApply { change } => write!(f, "StoreApply {change:?}"),
            Io::Redo { request } => write!(f, "Redo ({} deltas)", request.deltas.len()),
        }
    }
}

/// Why an I/O effect failed, as the machines need to branch on it.
///
/// # Classification (the adapters map their errors onto these kinds)
///
/// | kind | what | what the machines do |
/// |---|---|---|
/// | `NotFound` | a missing file or object | per operation (often: nothing to do) |
/// | `Transient` | remote 5xx, timeout, throttling, a lost connection or response | retry with capped exponential backoff, indefinitely |
/// | `OperatorFixable` | the request is refused for a reason an operator can fix while the node runs: permissions (EPERM/EACCES on LocalFs, S3 `AccessDenied`), credentials (S3 `InvalidAccessKeyId`, `SignatureDoesNotMatch`), a missing bucket (S3 `NoSuchBucket`) | as `Transient`: retry with capped backoff, indefinitely; never `Broken`. Uploads wait (the visible LSN stalls), reads keep working; the driver counts each failure by [`FixableKind`] (`strata_io_errors_total`) |
/// | `Permanent` | the request can never succeed as written: an invalid key, a delete over the batch limit, a bad configuration; locally ENOSPC or a failed fsync (the file is lost) | the remote queues go `Broken`; local writes follow their machine's rule |
///
/// Corrupt data (an object that does not parse, or does not match the size and
/// checksum its index records) is not an I/O failure: the read succeeded. The node
/// breaks the timeline with the named reason `BrokenReason::Corrupt { object }`
/// (its index at start-up or attach, a layer on download): no retry can fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoFailure {
    NotFound(String),
    /// Worth a retry (remote 5xx/timeout, a lost response).
    Transient(String),
    /// Refused until an operator fixes permissions, credentials or the bucket:
    /// retried with backoff like `Transient`, and counted by `kind`.
    OperatorFixable {
        kind: FixableKind,
        message: String,
    },
    /// Retrying will not help (bad request, ENOSPC, a failed fsync: the file is lost).
    Permanent(String),
}

impl IoFailure {
    pub fn message(&self) -> &str {
        match self {
            IoFailure::NotFound(m)
            | IoFailure::Transient(m)
            | IoFailure::OperatorFixable { message: m, .. }
            | IoFailure::Permanent(m) => m,
        }
    }

    /// Every label of [`IoFailure::kind_label`] but `not_found` (an answer, not an
    /// error), in a fixed order.
    pub const ERROR_LABELS: [&'static str; 5] =
        ["transient", "access_denied", "invalid_credentials", "no_such_bucket", "permanent"];

    /// The label `strata_io_errors_total{kind}` counts this failure under.
    pub fn kind_label(&self) -> &'static str {
        match self {
            IoFailure::NotFound(_) => "not_found",
            IoFailure::Transient(_) => "transient",
            IoFailure::OperatorFixable { kind, .. } => kind.as_str(),
            IoFailure::Permanent(_) => "permanent",
        }
    }
}

/// Why a request was refused in a way an operator can fix while the node keeps
/// running (see [`IoFailure`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// One directory entry or listed object, as the node needs it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub size_bytes: u64,
}

/// The completion of one [`Io`].
#[derive(Clone, PartialEq, Eq)]
pub enum IoResult {
    Done(Result<(), IoFailure>),
    Bytes(Result<Vec<u8>, IoFailure>),
    /// Directory entries (DiskList) or objects with full keys as `name` (RemoteList).
    Listing(Result<Vec<Entry>, IoFailure>),
}

impl IoResult {
    /// The failure, if the effect failed.
    pub fn failure(&self) -> Option<&IoFailure> {
        match self {
            IoResult::Done(Err(e)) => Some(e),
            IoResult::Bytes(Err(e)) => Some(e),
            IoResult::Listing(Err(e)) => Some(e),
            IoResult::Done(Ok(_)) | IoResult::Bytes(Ok(_)) | IoResult::Listing(Ok(_)) => None,
        }
    }
}

impl std::fmt::Debug for IoResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IoResult::Done(r) => write!(f, "Done({r:?})"),
            IoResult::Bytes(Ok(b)) => write!(f, "Bytes({} bytes)", b.len()),
            IoResult::Bytes(Err(e)) => write!(f, "Bytes(Err({e:?}))"),
            IoResult::Listing(Ok(v)) => write!(f, "Listing({} entries)", v.len()),
            IoResult::Listing(Err(e)) => write!(f, "Listing(Err({e:?}))"),
        }
    }
}
