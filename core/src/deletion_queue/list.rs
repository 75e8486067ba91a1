//! One deletion list as the queue tracks it: its content, its stage, and how much
//! of it is durable.

use crate::deletion_list::{DeletionList, TenantDeletions};
use crate::deletion_queue::messages::DeletionReport;
use crate::generation::Generation;
use crate::id::{OpId, TenantId, TimelineId};
use crate::time::Instant;
use std::collections::BTreeMap;

/// The state of one retried local or remote operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IoState {
    Idle,
    InFlight(OpId),
    Backoff { until: Instant },
}

/// Where a list is in the pipeline. Lists only move forward, but for one step
/// back: a failed validation returns its lists from `Validating` to `Sealed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Collecting pushes; in memory only. At most one, the newest.
    Open { opened_at: Instant },
    /// Closed to pushes; being written or accepted and waiting for validation.
    Sealed,
    /// In the validation `op`.
    Validating { op: OpId },
    /// Validated; `remaining` keys are in the executor.
    Executing { remaining: usize },
    /// Every key is done (or the list is empty): the file is being removed.
    Removing { remove: IoState, failures: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct List {
    /// The in-memory truth; `content.validated` is set once it passed validation.
    pub content: DeletionList,
    pub stage: Stage,
    /// Read from disk at start-up: no upload queue of this run waits for reports.
    pub recovered: bool,
    /// Bumped on every change of `content`.
    pub version: u64,
    /// The newest version known durable on disk; 0 while never written.
    pub durable_version: u64,
    pub write: IoState,
    pub write_failures: u32,
    /// When the first write completed (the list was accepted).
    pub accepted_at: Option<Instant>,
    /// Cancel reports held until `durable_version` reaches their version (or the
    /// file is removed).
    pub cancels: Vec<(u64, DeletionReport)>,
}

impl List {
    pub fn open(sequence: u64, now: Instant) -> Self {
        List {
            content: DeletionList::new(sequence),
            stage: Stage::Open { opened_at: now },
            recovered: false,
            version: 0,
            durable_version: 0,
            write: IoState::Idle,
            write_failures: 0,
            accepted_at: None,
            cancels: Vec::new(),
        }
    }

    /// A list read back from disk.
    pub fn recovered(content: DeletionList, stage: Stage, now: Instant) -> Self {
        List {
            content,
            stage,
            recovered: true,
            version: 1,
            durable_version: 1,
            write: IoState::Idle,
            write_failures: 0,
            accepted_at: Some(now),
            cancels: Vec::new(),
        }
    }

    pub fn generation_of(&self, tenant: TenantId) -> Option<Generation> {
        self.content.tenants.get(&tenant).map(|t| t.generation)
    }

    /// Adds names; the caller made sure the tenant's generation matches.
    pub fn add(
        &mut self,
        tenant: TenantId,
        generation: Generation,
        timeline: TimelineId,
        names: Vec<String>,
    ) {
        let entry = self
            .content
            .tenants
            .entry(tenant)
            .or_insert_with(|| TenantDeletions { generation, timelines: BTreeMap::new() });
        debug_assert_eq!(entry.generation, generation, "one generation per tenant per list");
        entry.timelines.entry(timeline).or_default().extend(names);
        self.version += 1;
    }

    /// Removes every occurrence of `name`; true if there was one.
    pub fn remove_key(&mut self, tenant: TenantId, timeline: TimelineId, name: &str) -> bool {
        let Some(t) = self.content.tenants.get_mut(&tenant) else { return false };
        let Some(names) = t.timelines.get_mut(&timeline) else { return false };
        let before = names.len();
        names.retain(|n| n != name);
        if names.len() == before {
            return false;
        }
        if names.is_empty() {
            t.timelines.remove(&timeline);
        }
        if t.timelines.is_empty() {
            self.content.tenants.remove(&tenant);
        }
        self.version += 1;
        true
    }

    /// Nothing of it ever reached the disk, and no write that could is in flight.
    pub fn never_written(&self) -> bool {
        self.durable_version == 0 && !matches!(self.write, IoState::InFlight(_))
    }

    /// No write of it was ever attempted, so no file of it can exist. A failed
    /// write (a failed fsync) leaves the file unknown: it may be on disk, whole,
    /// and must be removed before the header may cover its sequence (cluster seed
    /// 3295: else a restart executes it as validated).
    pub fn no_file(&self) -> bool {
        self.never_written() && self.write_failures == 0
    }

    /// Its validated content is what the disk holds: the header may cover it.
    pub fn clean_on_disk(&self) -> bool {
        self.content.validated && self.durable_version == self.version
    }

    /// Needs a (re)write now: sealed or later, changed since the last durable
    /// write, and not being removed.
    pub fn needs_write(&self) -> bool {
        let writable = matches!(
            self.stage,
            Stage::Sealed | Stage::Validating { .. } | Stage::Executing { .. }
        );
        writable && self.version > self.durable_version && !self.content.is_empty()
    }
}
