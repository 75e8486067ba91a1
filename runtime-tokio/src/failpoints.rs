//! Which failpoints one of the node's I/Os passes, and what an I/O a failpoint
//! failed completes with. The registry and its actions are
//! `strata_adapters::failpoint`; the names are `strata_adapters::fault_sites`.
//!
//! The driver consults a node's failpoints (only when it has some: a node with
//! `testing.failpoints` on) just before it runs each I/O, in this order:
//!
//! 1. the I/O's purpose, from the route the node keeps for it
//!    ([`Node::route_of`](strata_core::node::Node::route_of)): `upload.layer`,
//!    `upload.index`, `timeline_delete.tombstone`, `timeline_delete.list`,
//!    `deletion.execute`, `cp.validate`, `timeline_delete.local`;
//! 2. the site it shares with the simulator, from its kind alone: every remote PUT
//!    (`remote.put.transient`), GET (`remote.get.transient`), listing
//!    (`remote.list.transient`), DELETE (`remote.delete.transient`) and
//!    control-plane call (`cp.unreachable`).
//!
//! An `error` completes the I/O without running it: a transient failure of its
//! remote key or of the control plane (a call "unreachable"), a permanent failure
//! of a local path, as the adapters would report them. The machines then do what
//! they do with such a failure (retry, back off, wait), which is the point.

use strata_adapters::failpoint::Injected;
use strata_adapters::fault_sites as site;
use strata_core::control_plane::CpRequest;
use strata_core::index_part::IndexPart;
use strata_core::io_error::{IoError, IoErrorKind, IoTarget};
use strata_core::node::Route;
use strata_core::node::io::{Io, IoResult};

/// The failpoints `io` passes, in the order they are consulted.
pub fn sites(route: Option<&Route>, io: &Io) -> [Option<&'static str>; 2] {
    [purpose(route, io), shared(io)]
}

fn purpose(route: Option<&Route>, io: &Io) -> Option<&'static str> {
    match (route?, io) {
        (Route::UploadPut { layer: Some(_), .. }, _) => Some(site::UPLOAD_LAYER),
        (Route::UploadPut { layer: None, .. }, Io::RemotePut { bytes, .. }) => {
            let tombstone =
                IndexPart::from_json_bytes(bytes).is_ok_and(|index| index.deleted_at.is_some());
            Some(if tombstone { site::TIMELINE_DELETE_TOMBSTONE } else { site::UPLOAD_INDEX })
        }
        (Route::UploadList { .. }, _) => Some(site::TIMELINE_DELETE_LIST),
        (Route::Deletion { .. }, Io::RemoteDelete { .. }) => Some(site::DELETION_EXECUTE),
        (_, Io::ControlPlaneSend { request: CpRequest::Validate { .. } }) => {
            Some(site::CP_VALIDATE)
        }
        // The same route removes a detached tenant's directory; a timeline's is
        // `tenants/{t}/timelines/{tl}`.
        (Route::DetachedRemoved, Io::DiskRemoveDir { path })
            if path.parent().and_then(|p| p.file_name()) == Some("timelines") =>
        {
            Some(site::TIMELINE_DELETE_LOCAL)
        }
        _ => None,
    }
}

fn shared(io: &Io) -> Option<&'static str> {
    match io {
        Io::RemotePut { .. } | Io::RemotePutFile { .. } => Some(site::REMOTE_PUT_TRANSIENT),
        Io::RemoteGet { .. } | Io::RemoteGetFile { .. } => Some(site::REMOTE_GET_TRANSIENT),
        Io::RemoteList { .. } => Some(site::REMOTE_LIST_TRANSIENT),
        Io::RemoteDelete { .. } => Some(site::REMOTE_DELETE_TRANSIENT),
        Io::ControlPlaneSend { .. } => Some(site::CP_UNREACHABLE),
        _ => None,
    }
}

/// What `io` completes with when a failpoint failed it.
pub fn failed(io: &Io, injected: &Injected) -> IoResult {
    let message = injected.to_string();
    let remote = |key: &str| IoError::remote(IoErrorKind::Transient, key, message.clone());
    let local = |path| IoError::local(IoErrorKind::Permanent, path, message.clone());
    let error = match io {
        Io::DiskWrite { path, .. }
        | Io::DiskRead { path }
        | Io::DiskRemove { path }
        | Io::DiskList { path }
        | Io::DiskCreateDir { path }
        | Io::DiskRemoveDir { path }
        | Io::DiskRename { from: path, .. } => local(path.clone()),
        Io::RemotePut { key, .. }
        | Io::RemotePutFile { key, .. }
        | Io::RemoteGet { key }
        | Io::RemoteGetFile { key, .. } => remote(key.as_str()),
        Io::RemoteList { prefix } => remote(prefix),
        Io::RemoteDelete { keys } => remote(keys.first().map_or("", |k| k.as_str())),
        Io::StoreApply { .. } | Io::ControlPlaneSend { .. } => {
            IoError::new(IoErrorKind::Transient, IoTarget::Store, message.clone())
        }
        Io::Redo { .. } => IoError::new(IoErrorKind::Permanent, IoTarget::Redo, message.clone()),
    };
    match io {
        Io::DiskRead { .. } | Io::RemoteGet { .. } | Io::Redo { .. } => IoResult::Bytes(Err(error)),
        Io::DiskList { .. } | Io::RemoteList { .. } => IoResult::Listing(Err(error)),
        _ => IoResult::Done(Err(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::id::OpId;
    use strata_core::remote_path::RemoteKey;
    use strata_core::{TenantId, TimelineId};

    fn ids() -> (TenantId, TimelineId) {
        (
            "0000000000000000000000000000000a".parse().unwrap(),
            "0000000000000000000000000000000b".parse().unwrap(),
        )
    }

    #[test]
    fn an_index_put_and_a_tombstone_are_told_apart() {
        let (tenant, timeline) = ids();
        let route = Route::UploadPut { tenant, timeline, inner: OpId(1), layer: None };
        let key = RemoteKey::from_listing("tenants/a/timelines/b/index_part.json.1-1").unwrap();
        let z = strata_core::Lsn::ZERO;
        let metadata = strata_core::metadata::TimelineMetadata {
            disk_consistent_lsn: z,
            gc_cutoff_lsn: z,
            initdb_lsn: z,
            ancestor: None,
        };
        let mut index = IndexPart::empty(metadata);
        let put =
            |index: &IndexPart| Io::RemotePut { key: key.clone(), bytes: index.to_json_bytes() };
        assert_eq!(
            sites(Some(&route), &put(&index)),
            [Some(site::UPLOAD_INDEX), Some(site::REMOTE_PUT_TRANSIENT)]
        );
        index.deleted_at = Some(strata_core::time::WallTime::from_unix_millis(1));
        assert_eq!(sites(Some(&route), &put(&index))[0], Some(site::TIMELINE_DELETE_TOMBSTONE));
        let failed = failed(&put(&index), &Injected { site: site::UPLOAD_INDEX });
        let IoResult::Done(Err(e)) = failed else { panic!("{failed:?}") };
        assert_eq!(e.kind, IoErrorKind::Transient);
        assert!(e.message.contains("failpoint upload.index"), "{}", e.message);
    }

    #[test]
    fn a_validation_a_deletion_and_a_timeline_directory_have_their_sites() {
        let (tenant, timeline) = ids();
        let validate = Io::ControlPlaneSend { request: CpRequest::Validate { tenants: vec![] } };
        let call = Route::ControlPlaneCall { attempt: OpId(3) };
        assert_eq!(
            sites(Some(&call), &validate),
            [Some(site::CP_VALIDATE), Some(site::CP_UNREACHABLE)]
        );
        let delete = Io::RemoteDelete { keys: vec![] };
        assert_eq!(
            sites(Some(&Route::Deletion { inner: OpId(2) }), &delete)[0],
            Some(site::DELETION_EXECUTE)
        );
        let dir = Io::DiskRemoveDir { path: strata_core::node::io::timeline_dir(tenant, timeline) };
        assert_eq!(
            sites(Some(&Route::DetachedRemoved), &dir),
            [Some(site::TIMELINE_DELETE_LOCAL), None]
        );
        let tenant_dir = Io::DiskRemoveDir { path: strata_core::node::io::tenant_dir(tenant) };
        assert_eq!(sites(Some(&Route::DetachedRemoved), &tenant_dir), [None, None]);
        let list = Io::RemoteList { prefix: "tenants/".into() };
        let IoResult::Listing(Err(_)) =
            failed(&list, &Injected { site: site::REMOTE_LIST_TRANSIENT })
        else {
            panic!("a listing fails as a listing")
        };
    }
}
