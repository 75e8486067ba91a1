//! An in-memory world for the node: local files, remote objects and the control
//! plane's store rows, executing the node's [`Io`] effects (with switches for the
//! faults tests inject). The node's tests (`tests.rs`) run it synchronously; the
//! tenant fuzz world (`tenant_world.rs`) completes its effects in any order.
//! Compiled for tests and under the `fuzzing` feature.

use super::io::{Entry, Io, IoError, IoErrorKind, IoResult, IoTarget};
use crate::control_plane::{CpRequest, StoreChange, TenantRecord};
use crate::id::TenantId;
use crate::time::Instant;
use camino::Utf8PathBuf;
use std::collections::BTreeMap;

#[derive(Default, Clone)]
pub(crate) struct World {
    pub(crate) files: BTreeMap<Utf8PathBuf, Vec<u8>>,
    pub(crate) objects: BTreeMap<String, Vec<u8>>,
    pub(crate) store: BTreeMap<TenantId, TenantRecord>,
    /// The next this many remote listings fail with a transient error.
    pub(crate) transient_lists: u32,
    /// The next this many remote listings fail for good (`Permanent`).
    pub(crate) permanent_lists: u32,
    /// The next this many control-plane store transactions fail (nothing written).
    pub(crate) store_failures: u32,
    /// Remote PUTs and DELETEs executed so far.
    pub(crate) remote_writes: u64,
    /// Remote DELETE requests executed so far.
    pub(crate) remote_deletes: u64,
    /// While set, remote PUTs and DELETEs are refused with access denied (a remote
    /// directory made read-only), until an operator clears it.
    pub(crate) deny_remote_writes: bool,
    /// Remote writes refused so far.
    pub(crate) denied_writes: u64,
    /// The next this many remote GETs and listings are refused with access denied.
    pub(crate) denied_reads: u32,
    /// While set, every local write fails with no space left on the device.
    pub(crate) disk_full: bool,
    /// The next this many validation calls cannot reach the control plane.
    pub(crate) unreachable_validations: u32,
    /// The next this many re-attach calls cannot reach the control plane.
    pub(crate) unreachable_re_attaches: u32,
    /// How often each remote key was deleted (a DELETE of a missing key counts).
    pub(crate) deletes_per_key: BTreeMap<String, u32>,
    /// Control-plane calls that could not reach it so far.
    pub(crate) unreachable_calls: u64,
    /// The control plane is remote (a model of `strata control`: its own machine on
    /// `store`, answering over the link with `IoResult::CpReply`).
    pub(crate) remote_cp: bool,
    /// Tenants the remote control plane is migrating to the node that asks (its
    /// re-attach answer marks them `migration_destination`).
    pub(crate) migrating_here: std::collections::BTreeSet<TenantId>,
    /// While set, a layer upload finds its local file gone (removed just before).
    pub(crate) lose_files_before_upload: bool,
    /// The next this many layer downloads deliver the object with one byte
    /// flipped on the way (the stored object stays intact).
    pub(crate) corrupt_downloads: u32,
    /// The next this many writes of a `config-v1` fail with ENOSPC.
    pub(crate) full_config_writes: u32,
    /// Local reads of these files fail with EIO (`Permanent`) while listed.
    pub(crate) eio_reads: std::collections::BTreeSet<Utf8PathBuf>,
}

impl World {
    /// Carries out one I/O on the world, with the faults armed for it.
    pub(crate) fn execute(&mut self, io: Io) -> IoResult {
        match io {
            Io::DiskWrite { .. }
            | Io::DiskRead { .. }
            | Io::DiskRemove { .. }
            | Io::DiskCreateDir { .. }
            | Io::DiskRename { .. }
            | Io::DiskRemoveDir { .. }
            | Io::DiskList { .. } => self.execute_disk(io),
            Io::RemotePut { .. } | Io::RemotePutFile { .. } | Io::RemoteDelete { .. } => {
                self.execute_remote_write(io)
            }
            Io::RemoteList { .. } | Io::RemoteGet { .. } | Io::RemoteGetFile { .. } => {
                self.execute_remote_read(io)
            }
            Io::ControlPlaneSend { .. } | Io::StoreApply { .. } | Io::Redo { .. } => {
                self.execute_control(io)
            }
        }
    }

    /// The local disk: files by path, directories implied by their contents.
    fn execute_disk(&mut self, io: Io) -> IoResult {
        match io {
            Io::DiskWrite { path, .. } if self.disk_full => {
                IoResult::Done(Err(IoError::local(IoErrorKind::NoSpace, path, "ENOSPC (test)")))
            }
            Io::DiskWrite { path, .. }
                if self.full_config_writes > 0 && path.as_str().ends_with("config-v1") =>
            {
                self.full_config_writes -= 1;
                IoResult::Done(Err(IoError::local(IoErrorKind::NoSpace, path, "ENOSPC (test)")))
            }
            Io::DiskWrite { path, bytes } => {
                self.files.insert(path, bytes);
                IoResult::Done(Ok(()))
            }
            Io::DiskRead { path } if self.eio_reads.contains(&path) => {
                IoResult::Bytes(Err(IoError::local(IoErrorKind::Permanent, path, "EIO (test)")))
            }
            Io::DiskRead { path } => {
                IoResult::Bytes(self.files.get(&path).cloned().ok_or_else(|| {
                    IoError::local(IoErrorKind::NotFound, path.clone(), "no such file")
                }))
            }
            Io::DiskRemove { path } => {
                IoResult::Done(self.files.remove(&path).map(|_| ()).ok_or_else(|| {
                    IoError::local(IoErrorKind::NotFound, path.clone(), "no such file")
                }))
            }
            Io::DiskCreateDir { .. } => IoResult::Done(Ok(())),
            Io::DiskRename { from, to } => {
                let prefix = format!("{from}/");
                let moving: Vec<Utf8PathBuf> = self
                    .files
                    .keys()
                    .filter(|p| p.as_str().starts_with(&prefix) || **p == from)
                    .cloned()
                    .collect();
                if moving.is_empty() {
                    return IoResult::Done(Err(IoError::local(
                        IoErrorKind::NotFound,
                        from.clone(),
                        "no such file",
                    )));
                }
                for p in moving {
                    let bytes = self.files.remove(&p).unwrap_or_default();
                    let rest = p.as_str().strip_prefix(from.as_str()).unwrap_or_default();
                    self.files.insert(Utf8PathBuf::from(format!("{to}{rest}")), bytes);
                }
                IoResult::Done(Ok(()))
            }
            Io::DiskRemoveDir { path } => {
                let prefix = format!("{path}/");
                let before = self.files.len();
                self.files.retain(|p, _| !p.as_str().starts_with(&prefix));
                if before == self.files.len() {
                    return IoResult::Done(Err(IoError::local(
                        IoErrorKind::NotFound,
                        path.clone(),
                        "no such file",
                    )));
                }
                IoResult::Done(Ok(()))
            }
            Io::DiskList { path } => {
                let prefix = format!("{path}/");
                let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
                // Paths order by component, so everything under `path` is contiguous.
                for (p, bytes) in self.files.range(path.clone()..) {
                    if !p.starts_with(&path) {
                        break;
                    }
                    let Some(rest) = p.as_str().strip_prefix(&prefix) else { continue };
                    let (name, is_dir) = match rest.split_once('/') {
                        Some((dir, _)) => (dir.to_string(), true),
                        None => (rest.to_string(), false),
                    };
                    let size_bytes = if is_dir { 0 } else { bytes.len() as u64 };
                    entries.insert(name.clone(), Entry { name, is_dir, size_bytes });
                }
                if entries.is_empty() {
                    return IoResult::Listing(Err(IoError::local(
                        IoErrorKind::NotFound,
                        path.clone(),
                        "no such file",
                    )));
                }
                IoResult::Listing(Ok(entries.into_values().collect()))
            }
            other => unreachable!("not a disk I/O: {other:?}"),
        }
    }

    /// Remote writes: puts, uploads of a local file, batch deletes.
    fn execute_remote_write(&mut self, io: Io) -> IoResult {
        match io {
            Io::RemotePut { .. } | Io::RemotePutFile { .. } | Io::RemoteDelete { .. }
                if self.deny_remote_writes =>
            {
                self.denied_writes += 1;
                IoResult::Done(Err(IoError::remote(
                    IoErrorKind::OperatorFixable(super::io::FixableKind::AccessDenied),
                    "(test)",
                    "Permission denied (os error 13) (test)",
                )))
            }
            Io::RemotePut { key, bytes } => {
                self.remote_writes += 1;
                self.objects.insert(key.as_str().to_string(), bytes);
                IoResult::Done(Ok(()))
            }
            // As the adapters do: the local file is read first (missing: the
            // disk's NotFound, nothing uploaded), then put.
            Io::RemotePutFile { key, path, expected } => match self.files.get(&path) {
                _ if self.lose_files_before_upload => {
                    self.files.remove(&path);
                    IoResult::Done(Err(IoError::local(
                        IoErrorKind::NotFound,
                        path.clone(),
                        "put_file: open: no such file",
                    )))
                }
                // As the driver does: core's check of the local bytes first.
                Some(bytes) if crate::file_check::check_bytes(bytes, expected).is_err() => {
                    let why = crate::file_check::check_bytes(bytes, expected).unwrap_err();
                    IoResult::Done(Err(IoError::local(
                        IoErrorKind::Corrupt,
                        path.clone(),
                        format!("the local copy of {key} is corrupt: {why}"),
                    )))
                }
                Some(bytes) => {
                    self.remote_writes += 1;
                    self.objects.insert(key.as_str().to_string(), bytes.clone());
                    IoResult::Done(Ok(()))
                }
                None => IoResult::Done(Err(IoError::local(
                    IoErrorKind::NotFound,
                    path.clone(),
                    "put_file: open: no such file",
                ))),
            },
            Io::RemoteDelete { keys } => {
                self.remote_writes += 1;
                self.remote_deletes += 1;
                for k in keys {
                    *self.deletes_per_key.entry(k.as_str().to_string()).or_default() += 1;
                    self.objects.remove(k.as_str());
                }
                IoResult::Done(Ok(()))
            }
            other => unreachable!("not a remote write: {other:?}"),
        }
    }

    /// Remote reads: gets, downloads to a local file, listings.
    fn execute_remote_read(&mut self, io: Io) -> IoResult {
        match io {
            Io::RemoteList { .. } | Io::RemoteGet { .. } | Io::RemoteGetFile { .. }
                if self.denied_reads > 0 =>
            {
                self.denied_reads -= 1;
                let e = IoError::remote(
                    IoErrorKind::OperatorFixable(super::io::FixableKind::AccessDenied),
                    "(test)",
                    "AccessDenied (test)",
                );
                match io {
                    Io::RemoteList { .. } => IoResult::Listing(Err(e)),
                    Io::RemoteGetFile { .. } => IoResult::Done(Err(e)),
                    _ => IoResult::Bytes(Err(e)),
                }
            }
            Io::RemoteGet { key } => {
                IoResult::Bytes(self.objects.get(key.as_str()).cloned().ok_or_else(|| {
                    IoError::remote(IoErrorKind::NotFound, key.as_str(), "no such key")
                }))
            }
            // As the driver does: core's size and CRC32C check before the file
            // gets its name; a refusal writes nothing.
            Io::RemoteGetFile { key, path, expected } => {
                let Some(mut bytes) = self.objects.get(key.as_str()).cloned() else {
                    return IoResult::Done(Err(IoError::remote(
                        IoErrorKind::NotFound,
                        key.as_str(),
                        "no such key",
                    )));
                };
                if self.corrupt_downloads > 0 && !bytes.is_empty() {
                    self.corrupt_downloads -= 1;
                    bytes[0] ^= 1;
                }
                if let Err(mismatch) = crate::file_check::check_bytes(&bytes, expected) {
                    return IoResult::Done(Err(IoError::remote(
                        IoErrorKind::Corrupt,
                        key.as_str(),
                        mismatch.to_string(),
                    )));
                }
                self.files.insert(path, bytes);
                IoResult::Done(Ok(()))
            }
            Io::RemoteList { .. } if self.transient_lists > 0 => {
                self.transient_lists -= 1;
                IoResult::Listing(Err(IoError::remote(
                    IoErrorKind::Transient,
                    "(test)",
                    "simulated 503",
                )))
            }
            Io::RemoteList { .. } if self.permanent_lists > 0 => {
                self.permanent_lists -= 1;
                IoResult::Listing(Err(IoError::remote(
                    IoErrorKind::Permanent,
                    "(test)",
                    "simulated permanent refusal",
                )))
            }
            Io::RemoteList { prefix } => IoResult::Listing(Ok(self
                .objects
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| Entry { name: k.clone(), is_dir: false, size_bytes: v.len() as u64 })
                .collect())),
            other => unreachable!("not a remote read: {other:?}"),
        }
    }

    /// The control plane (embedded or remote), its store, and walredo.
    fn execute_control(&mut self, io: Io) -> IoResult {
        match io {
            Io::ControlPlaneSend { request: CpRequest::Validate { .. } }
                if self.unreachable_validations > 0 =>
            {
                self.unreachable_validations -= 1;
                self.unreachable_calls += 1;
                IoResult::Done(Err(IoError::new(
                    IoErrorKind::Transient,
                    IoTarget::Store,
                    "connection refused (test)",
                )))
            }
            Io::ControlPlaneSend { request: CpRequest::ReAttach { .. } }
                if self.unreachable_re_attaches > 0 =>
            {
                self.unreachable_re_attaches -= 1;
                self.unreachable_calls += 1;
                IoResult::Done(Err(IoError::new(
                    IoErrorKind::Transient,
                    IoTarget::Store,
                    "connection refused (test)",
                )))
            }
            Io::ControlPlaneSend { request } if self.remote_cp => {
                IoResult::CpReply(self.remote_answer(request))
            }
            // The embedded control plane: delivered.
            Io::ControlPlaneSend { .. } => IoResult::Done(Ok(())),
            Io::StoreApply { .. } if self.store_failures > 0 => {
                self.store_failures -= 1;
                IoResult::Done(Err(IoError::new(
                    IoErrorKind::Transient,
                    IoTarget::Store,
                    "store unavailable (test)",
                )))
            }
            Io::StoreApply { change } => {
                let records = match change {
                    StoreChange::Upsert(r) => vec![r],
                    StoreChange::UpsertAll(rs) => rs,
                };
                for r in records {
                    self.store.insert(r.tenant, r);
                }
                IoResult::Done(Ok(()))
            }
            Io::Redo { request } => {
                IoResult::Bytes(request.execute().map_err(|e| {
                    IoError::new(IoErrorKind::Permanent, IoTarget::Redo, e.to_string())
                }))
            }
            other => unreachable!("not a control-plane, store or redo I/O: {other:?}"),
        }
    }
}

impl World {
    /// A remote control plane's answer: core's machine on this world's store, each
    /// change committed before the reply (as `strata control` runs it).
    fn remote_answer(
        &mut self,
        request: CpRequest,
    ) -> Result<crate::control_plane::ControlPlaneReply, crate::control_plane::ControlPlaneError>
    {
        use crate::control_plane::RequestId as CpReq;
        use crate::control_plane::{ControlPlane, ControlPlaneEffect, ControlPlaneReply};
        let now = Instant::ZERO;
        let mut cp = ControlPlane::recover(self.store.values().cloned().collect());
        let req = CpReq(0);
        match request {
            CpRequest::ReAttach { node, held_back } => {
                cp.handle_re_attach_holding_back(now, req, node, held_back)
            }
            CpRequest::Attach { tenant, node, reported } => {
                cp.handle_attach(now, req, tenant, node, reported)
            }
            CpRequest::Detach { tenant, node } => cp.handle_detach(now, req, tenant, node),
            CpRequest::Validate { tenants } => cp.handle_validate(now, req, tenants),
        }
        loop {
            match cp.poll_effect().expect("the control plane replies") {
                ControlPlaneEffect::Persist { op, change } => {
                    for r in change.records() {
                        self.store.insert(r.tenant, r.clone());
                    }
                    cp.handle_persisted(now, op, Ok(())).unwrap();
                }
                ControlPlaneEffect::ListRemoteGenerations { op, .. } => {
                    cp.handle_remote_generations(now, op, None).unwrap();
                }
                ControlPlaneEffect::Reply { mut reply, .. } => {
                    if let Ok(ControlPlaneReply::ReAttached { tenants }) = &mut reply {
                        for t in tenants {
                            t.migration_destination = self.migrating_here.contains(&t.tenant);
                        }
                    }
                    return reply;
                }
            }
        }
    }
}
