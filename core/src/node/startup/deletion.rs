//! Phase 4, `LoadDeletionQueue`: read `deletion/` and recover the deletion queue
//! with the re-attach answer (lists of this node's immediately preceding generation
//! are kept for tenants loading AttachedSingle; others are dropped).

use super::{StartupIo, StartupPhase};
use crate::control_plane::ReAttachedTenant;
use crate::deletion_list::{DELETION_HEADER_FILE_NAME, DeletionHeader, DeletionList};
use crate::deletion_queue::DeletionQueue;
use crate::id::TenantId;
use crate::location_conf::LocationMode;
use crate::node::io::{self, Io, IoResult};
use crate::node::{Machine, Node};
use std::collections::BTreeMap;

impl Node {
    /// Every config is written: `deletion/` is listed.
    pub(super) fn list_deletion_queue(&mut self) {
        self.enter(StartupPhase::LoadDeletionQueue);
        self.startup_io(StartupIo::ListDeletion, Io::DiskList { path: io::DELETION_DIR.into() });
    }

    /// `deletion/` listed: its header and every deletion list are read.
    pub(super) fn on_deletion_listed(&mut self, result: IoResult) {
        if let IoResult::Listing(Ok(entries)) = result {
            for entry in entries.into_iter().filter(|e| !e.is_dir) {
                if entry.name == DELETION_HEADER_FILE_NAME
                    || DeletionList::parse_file_name(&entry.name).is_some()
                {
                    let path = io::deletion_path(&entry.name);
                    self.startup_io(StartupIo::ReadDeletion(entry.name), Io::DiskRead { path });
                }
            }
        }
    }

    /// A deletion file read: kept for the recovery, or skipped with a warning (an
    /// unreadable list's sequence is kept: see [`Node::recover_deletion_queue`]).
    pub(super) fn on_deletion_read(&mut self, name: String, result: IoResult) {
        let IoResult::Bytes(Ok(bytes)) = result else {
            self.startup.unreadable_lists.extend(DeletionList::parse_file_name(&name));
            return self.warn(format!("deletion file {name} unreadable: {result:?}; skipped"));
        };
        if name == DELETION_HEADER_FILE_NAME {
            match DeletionHeader::from_json_bytes(&bytes) {
                Ok(h) => self.startup.header = Some(h),
                Err(e) => self.warn(format!("deletion header unreadable ({e}); treating as empty")),
            }
        } else {
            match DeletionList::from_json_bytes(&bytes) {
                Ok(list) => self.startup.lists.push(list),
                Err(e) => {
                    self.startup.unreadable_lists.extend(DeletionList::parse_file_name(&name));
                    self.warn(format!("deletion list {name} unreadable ({e}); skipped"))
                }
            }
        }
    }

    /// Every deletion file read: the deletion queue is recovered from them. Only
    /// tenants loading AttachedSingle may keep their unvalidated lists: one
    /// loading AttachedMulti or AttachedStale deletes nothing (S-SINGLE-WRITER), so
    /// its lists are dropped (the objects leak, for a scrubber), as if re-attach
    /// had not named it.
    ///
    /// A list that could not be read (EIO) or parsed and that the header does not
    /// count as validated is recovered as an empty list, which the queue removes:
    /// its objects leak (for a scrubber). Left in place, it would be read at a later
    /// start, after this life's validations had moved the header past its
    /// sequence, and executed as validated although nothing validated it (S-DEL-GEN).
    /// One the header covers was validated: it stays in place for a later start.
    pub(super) fn recover_deletion_queue(&mut self) {
        let header = self.startup.header.take();
        let mut lists = std::mem::take(&mut self.startup.lists);
        let validated = header.map_or(0, |h| h.validated_sequence);
        for seq in std::mem::take(&mut self.startup.unreadable_lists) {
            if seq > validated && !lists.iter().any(|l| l.sequence == seq) {
                self.warn(format!("deletion list {seq} unreadable and unvalidated: removed"));
                lists.push(DeletionList::new(seq));
            }
        }
        let single = |t: &TenantId| {
            matches!(self.startup.to_load.get(t), Some(LocationMode::AttachedSingle { .. }))
        };
        let deleting: BTreeMap<TenantId, ReAttachedTenant> = (self.startup.reattached.iter())
            .filter(|(t, _)| single(t))
            .map(|(t, a)| (*t, a.clone()))
            .collect();
        let dq = DeletionQueue::recover(
            self.config.deletion.clone(),
            header,
            lists,
            &deleting,
            self.now,
        );
        self.dq = Some(dq);
        self.dirty.insert(Machine::DeletionQueue);
    }
}
