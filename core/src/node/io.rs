//! The node's effects on the world and their completions, and the local disk layout.
//!
//! Every effect the driver executes is one [`Io`] with a node-level [`OpId`]; its
//! result comes back as the matching [`IoResult`]. The node routes it to the machine
//! that asked (see `Route` in `mod.rs`). Layer files move between the local disk
//! and remote storage in one effect each way, streamed by the adapter
//! ([`Io::RemotePutFile`], [`Io::RemoteGetFile`] with core's size and CRC32C
//! check), so their bytes never pass through core; every rule stays in core, and
//! the simulator can fault every step.
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

use crate::control_plane::{ControlPlaneError, ControlPlaneReply, CpRequest, StoreChange};
use crate::file_check::ExpectedFile;
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
    /// Upload the local file `path` to `key`: the adapter reads the file (in
    /// bounded chunks), so a layer's bytes never pass through core on the way up.
    /// The adapter checks the file against `expected` (the layer map's size and
    /// CRC32C) as it reads it, before anything is sent or renamed: a corrupt local
    /// copy is never uploaded ([`IoErrorKind::Corrupt`] naming the local path).
    RemotePutFile {
        key: RemoteKey,
        path: Utf8PathBuf,
        expected: ExpectedFile,
    },
    RemoteGet {
        key: RemoteKey,
    },
    /// Download `key` into the local file `path`: the adapter streams the body
    /// into a temporary file through a [`FileCheck`](crate::file_check::FileCheck)
    /// of `expected` and renames it onto `path` only if the check accepts it (a
    /// refusal is [`IoErrorKind::Corrupt`] and leaves nothing under `path`). The
    /// bytes never pass through core.
    RemoteGetFile {
        key: RemoteKey,
        path: Utf8PathBuf,
        expected: ExpectedFile,
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
    /// Carry one attempt of a control-plane call over the driver's link. For the
    /// embedded control plane the answer is `Done(Ok)`, "delivered" (the node then
    /// hands it to the in-process machine), or `Done(Err)`, "unreachable". A remote
    /// control plane's link answers `CpReply` (its reply or refusal) or `Done(Err)`.
    ControlPlaneSend {
        request: CpRequest,
    },
    Redo {
        request: RedoRequest,
    },
}

impl Io {
    /// Whether it writes, renames or removes a local file or directory: such an op
    /// of a stopped tenant is always waited for (`tenant_machine.rs`, Crash).
    pub fn writes_locally(&self) -> bool {
        match self {
            Io::DiskWrite { .. }
            | Io::DiskRemove { .. }
            | Io::DiskCreateDir { .. }
            | Io::DiskRename { .. }
            | Io::DiskRemoveDir { .. }
            // Writes the downloaded layer's local file (temp file, then rename).
            | Io::RemoteGetFile { .. } => true,
            Io::DiskRead { .. }
            | Io::DiskList { .. }
            | Io::RemotePut { .. }
            // Reads the local file, writes only remotely.
            | Io::RemotePutFile { .. }
            | Io::RemoteGet { .. }
            | Io::RemoteList { .. }
            | Io::RemoteDelete { .. }
            | Io::StoreApply { .. }
            | Io::ControlPlaneSend { .. }
            | Io::Redo { .. } => false,
        }
    }
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
            Io::RemotePutFile { key, path, expected } => write!(
                f,
                "RemotePutFile {key} from {path} ({} bytes crc {:08x})",
                expected.size_bytes, expected.crc32c
            ),
            Io::RemoteGet { key } => write!(f, "RemoteGet {key}"),
            Io::RemoteGetFile { key, path, expected } => write!(
                f,
                "RemoteGetFile {key} to {path} ({} bytes crc {:08x})",
                expected.size_bytes, expected.crc32c
            ),
            Io::RemoteList { prefix } => write!(f, "RemoteList {prefix}"),
            Io::RemoteDelete { keys } => {
                write!(f, "RemoteDelete {} keys, first {:?}", keys.len(), keys.first())
            }
            Io::StoreApply { change } => write!(f, "StoreApply {change:?}"),
            Io::ControlPlaneSend { request } => write!(f, "ControlPlaneSend {request:?}"),
            Io::Redo { request } => write!(f, "Redo ({} deltas)", request.deltas.len()),
        }
    }
}

/// The failure of an [`Io`]: one type for every completion (kinds, targets and
/// what each machine does with them: `crate::io_error`).
pub use crate::io_error::{FixableKind, IoError, IoErrorKind, IoTarget};

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
    Done(Result<(), IoError>),
    Bytes(Result<Vec<u8>, IoError>),
    /// Directory entries (DiskList) or objects with full keys as `name` (RemoteList).
    Listing(Result<Vec<Entry>, IoError>),
    /// A remote control plane's answer to a `ControlPlaneSend`.
    CpReply(Result<ControlPlaneReply, ControlPlaneError>),
}

impl IoResult {
    /// The failure, if the effect failed.
    pub fn failure(&self) -> Option<&IoError> {
        match self {
            IoResult::Done(Err(e)) => Some(e),
            IoResult::Bytes(Err(e)) => Some(e),
            IoResult::Listing(Err(e)) => Some(e),
            IoResult::Done(Ok(_))
            | IoResult::Bytes(Ok(_))
            | IoResult::Listing(Ok(_))
            | IoResult::CpReply(_) => None,
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
            IoResult::CpReply(r) => write!(f, "CpReply({r:?})"),
        }
    }
}
