//! The control plane's generation table: which node holds which tenant, in which
//! generation.
//!
//! # Purpose
//! Generations fence nodes from each other and from their own earlier runs: only the
//! holder of a tenant's latest generation may delete its objects or publish a
//! visible LSN (S-DEL-GEN, S-VISIBLE). This machine grants generations and answers
//! "is generation G still T's latest?". It runs inside `strata control`, or in
//! process on a single node with the embedded SQLite store.
//!
//! The node never calls this machine directly: every request goes through the
//! [`client`] machine (deadline, retry budget, typed failures), and this machine
//! is the in-process way to answer the client's `Send` effects (`node/cp_link.rs`).
//!
//! # Requests (inputs) and replies
//! - [`ControlPlane::handle_attach`]: attach T to N → T's generation + 1, recorded as
//!   N's. For a tenant the table has never seen (a fresh or lost store) the machine
//!   first asks the driver to list T's remote storage
//!   ([`ControlPlaneEffect::ListRemoteGenerations`]), and grants a generation above
//!   both the highest generation found there and the one N reports from its
//!   LocationConf, so a lost table never restarts at 1 (S-GEN-MONO).
//! - [`ControlPlaneEffect`] `Reply` to [`ControlPlane::handle_re_attach`]: every
//!   tenant attached to N, each bumped to a new generation, with
//!   `previous_was_own`: the generation just superseded was granted to N itself (so
//!   N's deletion queue may adopt lists of that generation). A re-attach may name
//!   tenants N holds back ([`ControlPlane::handle_re_attach_holding_back`]: N
//!   found objects in their remote storage above the generation this table last
//!   granted, so another control plane granted them): those keep their generation
//!   and stay attached to N, unanswered, so the conflict is found again on N's next
//!   start instead of being covered by a new grant (S-GEN-MONO).
//! - [`ControlPlane::handle_validate`]: `(T, G)` is valid iff G is T's current
//!   durable generation; an unknown tenant is invalid. Answered at once, from the
//!   durable table, results in request order.
//! - [`ControlPlane::handle_detach`]: N lets T go: if the table says N holds T, T is
//!   attached nowhere (its generation stays); if another node holds T (T migrated
//!   away from N), nothing changes. So a migration's origin, demoted after the
//!   destination's grant, cannot detach the tenant from the destination.
//! - Completions: [`ControlPlane::handle_persisted`] and
//!   [`ControlPlane::handle_remote_generations`]; one that matches nothing in
//!   progress is a typed [`ControlPlaneInputError`].
//!
//! The same inputs as data: [`ControlPlaneInput`], fed by [`ControlPlane::handle`].
//! The machine has no timers, so no timer input.
//!
//! # States
//! The table itself ([`TenantRecord`] per tenant: what the store holds, nothing
//! else), and one [`InProgress`] mutating request at a time; further mutating
//! requests wait in a FIFO of at most [`MAX_QUEUED_REQUESTS`] (beyond it the
//! request is refused with [`ControlPlaneError::Overloaded`], which the client
//! retries). The request in progress is `ListingRemote` (waiting for
//! `handle_remote_generations`) or `Persisting` (waiting for `handle_persisted`).
//!
//! # Effects
//! `Persist { op, change }` (one store transaction), `ListRemoteGenerations`, and
//! `Reply`. Completions come back by [`OpId`].
//!
//! # Invariants and ordering
//! - A reply never names a generation that is not durable: a grant's `Reply` is
//!   emitted only after its `Persist` completed Ok (S-GEN-MONO).
//! - Generations only grow: a grant is above the table's generation, above every
//!   generation a failed (outcome unknown) persist may have written, above the
//!   node's reported generation and, for a new tenant, above remote storage.
//!   Two grants never share a generation.
//! - Validation reads only the durable table, so it linearizes before any grant
//!   still being persisted.
//!
//! # Crash and failure
//! - Crash before a `Persist` completes: the change may or may not be in the store;
//!   the reply was never sent, so no node uses the generation. A restarted table
//!   ([`ControlPlane::recover`]) serves whatever the store holds; a retry of the
//!   request grants the next generation above it.
//! - A failed `Persist` (a failed commit or fsync: the outcome is unknown): the
//!   table is left as it was, the generation it tried to write becomes a floor for
//!   the tenant (the next grant goes above it), and the request is answered with
//!   [`ControlPlaneError::StoreFailed`]. The client retries.

pub mod client;
#[cfg(any(test, feature = "fuzzing"))]
pub mod client_world;
mod listing;
pub mod migration;
mod re_attached;
#[cfg(test)]
mod tests;
#[cfg(any(test, feature = "fuzzing"))]
pub mod world;

pub use client::{CallFailure, ControlPlaneClient, CpRequest};
pub use listing::{
    RemoteTenantFound, generation_of_key, max_generation_in_listing, summarize_tenant_listing,
};
pub use re_attached::ReAttachedTenant;

use crate::generation::Generation;
use crate::id::{NodeId, OpId, OpIds, TenantId};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Mutating requests waiting behind the one in progress; more are refused.
pub const MAX_QUEUED_REQUESTS: usize = 4096;

/// One row of the generation table, exactly as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TenantRecord {
    pub tenant: TenantId,
    /// The latest generation granted for the tenant.
    pub generation: Generation,
    /// The node `generation` was granted to, while it is attached there.
    pub attached_to: Option<NodeId>,
}

/// One store transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChange {
    /// Insert or replace one tenant's row.
    Upsert(TenantRecord),
    /// Insert or replace several rows at once (a re-attach), all or nothing.
    UpsertAll(Vec<TenantRecord>),
}

impl StoreChange {
    pub fn records(&self) -> &[TenantRecord] {
        match self {
            StoreChange::Upsert(record) => std::slice::from_ref(record),
            StoreChange::UpsertAll(records) => records,
        }
    }
}

/// The id a driver gives a request; its reply carries it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlPlaneReply {
    Attached {
        generation: Generation,
    },
    ReAttached {
        tenants: Vec<ReAttachedTenant>,
    },
    /// In request order.
    Validated {
        results: Vec<(TenantId, bool)>,
    },
    Detached,
}

/// Why a request was refused. Each reply carries at most one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlPlaneError {
    /// Not found: the table has no such tenant.
    #[error("tenant {0} is unknown to the control plane")]
    UnknownTenant(TenantId),
    /// Not found: the node holds no tenant (only for requests naming a node's
    /// tenant, never for re-attach, where an empty answer is normal).
    #[error("{0} holds no tenant")]
    UnknownNode(NodeId),
    /// Conflict: the tenant has used up the generation space.
    #[error("tenant {0}: no generation left above {1}")]
    GenerationExhausted(TenantId, Generation),
    /// Retryable: too many requests waiting.
    #[error("control plane overloaded: {queued} requests waiting")]
    Overloaded { queued: usize },
    /// Retryable: the store did not confirm the change; its outcome is unknown.
    #[error("control-plane store failed: {0}")]
    StoreFailed(String),
    /// A remote control plane refused the request itself (HTTP 400 or 401: a
    /// malformed request, or a node without the right token). Not retried: the
    /// same request would be refused again.
    #[error("control plane rejected the request: {0}")]
    Rejected(String),
}

/// A completion that matches nothing in progress: a bug in the driver, or a
/// completion from before a restart (stale).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlPlaneInputError {
    #[error("stale or unknown completion {0}: nothing is waiting for it")]
    UnexpectedCompletion(OpId),
}

/// One input of the generation table; each variant names the `handle_*` method
/// it stands for. No `Arbitrary` derive: `TenantId`, `NodeId`, `Generation` and
/// `OpId` do not implement it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlPlaneInput {
    /// `handle_attach`.
    Attach { req: RequestId, tenant: TenantId, node: NodeId, reported: Option<Generation> },
    /// `handle_re_attach_holding_back` (`handle_re_attach` with none held back).
    ReAttach { req: RequestId, node: NodeId, held_back: BTreeSet<TenantId> },
    /// `handle_detach`.
    Detach { req: RequestId, tenant: TenantId, node: NodeId },
    /// `handle_validate`.
    Validate { req: RequestId, tenants: Vec<(TenantId, Generation)> },
    /// `handle_persisted`: a `Persist` completed.
    Persisted { op: OpId, result: Result<(), crate::io_error::IoError> },
    /// `handle_remote_generations`: a `ListRemoteGenerations` completed.
    RemoteGenerations { op: OpId, max_found: Option<Generation> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlPlaneEffect {
    Persist {
        op: OpId,
        change: StoreChange,
    },
    /// List `tenants/{tenant}/` in remote storage and answer with
    /// [`max_generation_in_listing`] through
    /// [`ControlPlane::handle_remote_generations`]. The driver retries a failed
    /// listing itself: remote storage is always configured.
    ListRemoteGenerations {
        op: OpId,
        tenant: TenantId,
    },
    Reply {
        req: RequestId,
        reply: Result<ControlPlaneReply, ControlPlaneError>,
    },
}

/// A mutating request waiting its turn.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Request {
    Attach { tenant: TenantId, node: NodeId, reported: Option<Generation> },
    ReAttach { node: NodeId, held_back: BTreeSet<TenantId> },
    Detach { tenant: TenantId, node: NodeId },
}

/// The one mutating request being carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
enum InProgress {
    ListingRemote {
        op: OpId,
        req: RequestId,
        tenant: TenantId,
        node: NodeId,
        reported: Option<Generation>,
    },
    Persisting {
        op: OpId,
        req: RequestId,
        change: StoreChange,
        reply: ControlPlaneReply,
    },
}

#[derive(Debug, Default)]
pub struct ControlPlane {
    /// The durable table: exactly what the store confirmed.
    table: BTreeMap<TenantId, TenantRecord>,
    /// Per tenant, the highest generation a failed persist may have written.
    floors: BTreeMap<TenantId, Generation>,
    queue: VecDeque<(RequestId, Request)>,
    in_progress: Option<InProgress>,
    effects: VecDeque<ControlPlaneEffect>,
    ops: OpIds,
    /// Metrics.
    grants_total: u64,
    store_failures_total: u64,
}

impl ControlPlane {
    /// A table serving what the store holds (an empty vec for a fresh store).
    pub fn recover(records: Vec<TenantRecord>) -> Self {
        let table = records.into_iter().map(|r| (r.tenant, r)).collect();
        ControlPlane { table, ..ControlPlane::default() }
    }

    pub fn handle_attach(
        &mut self,
        now: Instant,
        req: RequestId,
        tenant: TenantId,
        node: NodeId,
        reported_generation: Option<Generation>,
    ) {
        self.enqueue(now, req, Request::Attach { tenant, node, reported: reported_generation });
    }

    pub fn handle_re_attach(&mut self, now: Instant, req: RequestId, node: NodeId) {
        self.handle_re_attach_holding_back(now, req, node, BTreeSet::new());
    }

    /// A re-attach that leaves `held_back` as they are: not bumped, not answered.
    pub fn handle_re_attach_holding_back(
        &mut self,
        now: Instant,
        req: RequestId,
        node: NodeId,
        held_back: BTreeSet<TenantId>,
    ) {
        self.enqueue(now, req, Request::ReAttach { node, held_back });
    }

    pub fn handle_detach(&mut self, now: Instant, req: RequestId, tenant: TenantId, node: NodeId) {
        self.enqueue(now, req, Request::Detach { tenant, node });
    }

    /// Answered at once from the durable table.
    pub fn handle_validate(
        &mut self,
        _now: Instant,
        req: RequestId,
        tenants: Vec<(TenantId, Generation)>,
    ) {
        let results = tenants.into_iter().map(|(t, g)| (t, self.is_current(t, g))).collect();
        self.reply(req, Ok(ControlPlaneReply::Validated { results }));
    }

    /// Completion of a `Persist`. `Err` means the outcome is unknown.
    pub fn handle_persisted(
        &mut self,
        now: Instant,
        op: OpId,
        result: Result<(), crate::io_error::IoError>,
    ) -> Result<(), ControlPlaneInputError> {
        let Some(InProgress::Persisting { op: expected, .. }) = &self.in_progress else {
            return Err(ControlPlaneInputError::UnexpectedCompletion(op));
        };
        if *expected != op {
            return Err(ControlPlaneInputError::UnexpectedCompletion(op));
        }
        let Some(InProgress::Persisting { req, change, reply, .. }) = self.in_progress.take()
        else {
            unreachable!("matched just above");
        };
        match result {
            Ok(()) => {
                for record in change.records() {
                    self.table.insert(record.tenant, record.clone());
                }
                self.reply(req, Ok(reply));
            }
            Err(e) => {
                let message = e.message;
                self.store_failures_total += 1;
                for record in change.records() {
                    let floor = self.floors.entry(record.tenant).or_insert(record.generation);
                    *floor = (*floor).max(record.generation);
                }
                self.reply(req, Err(ControlPlaneError::StoreFailed(message)));
            }
        }
        self.pump(now);
        Ok(())
    }

    /// Completion of `ListRemoteGenerations`.
    pub fn handle_remote_generations(
        &mut self,
        now: Instant,
        op: OpId,
        max_found: Option<Generation>,
    ) -> Result<(), ControlPlaneInputError> {
        let Some(InProgress::ListingRemote { op: expected, req, tenant, node, reported }) =
            self.in_progress.clone()
        else {
            return Err(ControlPlaneInputError::UnexpectedCompletion(op));
        };
        if expected != op {
            return Err(ControlPlaneInputError::UnexpectedCompletion(op));
        }
        self.in_progress = None;
        let above = [max_found, reported, self.floors.get(&tenant).copied()];
        self.grant(req, tenant, node, above.into_iter().flatten().max());
        self.pump(now);
        Ok(())
    }

    /// Feeds one input. A completion that matches nothing in progress is an
    /// `Err`, exactly as the `handle_*` method it stands for answers it; a request
    /// beyond the queue bound is answered with an `Overloaded` reply, as there.
    pub fn handle(
        &mut self,
        now: Instant,
        input: ControlPlaneInput,
    ) -> Result<(), ControlPlaneInputError> {
        match input {
            ControlPlaneInput::Attach { req, tenant, node, reported } => {
                self.handle_attach(now, req, tenant, node, reported)
            }
            ControlPlaneInput::ReAttach { req, node, held_back } => {
                self.handle_re_attach_holding_back(now, req, node, held_back)
            }
            ControlPlaneInput::Detach { req, tenant, node } => {
                self.handle_detach(now, req, tenant, node)
            }
            ControlPlaneInput::Validate { req, tenants } => self.handle_validate(now, req, tenants),
            ControlPlaneInput::Persisted { op, result } => {
                self.handle_persisted(now, op, result)?
            }
            ControlPlaneInput::RemoteGenerations { op, max_found } => {
                self.handle_remote_generations(now, op, max_found)?
            }
        }
        Ok(())
    }

    pub fn poll_effect(&mut self) -> Option<ControlPlaneEffect> {
        self.effects.pop_front()
    }

    /// The machine sets no timers (so it has no `handle_timeout`): retries belong
    /// to its clients.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The durable table, in tenant order.
    pub fn records(&self) -> impl Iterator<Item = &TenantRecord> {
        self.table.values()
    }

    pub fn record(&self, tenant: TenantId) -> Option<&TenantRecord> {
        self.table.get(&tenant)
    }

    /// Mutating requests waiting (metric).
    pub fn queued_requests(&self) -> usize {
        self.queue.len()
    }

    pub fn grants_total(&self) -> u64 {
        self.grants_total
    }

    pub fn store_failures_total(&self) -> u64 {
        self.store_failures_total
    }

    pub fn check_invariants(&self) {
        for (tenant, record) in &self.table {
            assert_eq!(*tenant, record.tenant, "table keyed by the wrong tenant");
        }
        assert!(self.queue.len() <= MAX_QUEUED_REQUESTS, "request queue over its bound");
        assert!(
            self.queue.is_empty() || self.in_progress.is_some(),
            "requests wait while nothing is in progress"
        );
        if let Some(InProgress::Persisting { change, reply, .. }) = &self.in_progress {
            for record in change.records() {
                let current = self.table.get(&record.tenant).map(|r| r.generation);
                assert!(
                    current.is_none_or(|g| g <= record.generation),
                    "S-GEN-MONO: persisting {record:?} below the table's {current:?}"
                );
            }
            if let ControlPlaneReply::Attached { generation } = reply {
                let granted = change.records().iter().any(|r| r.generation == *generation);
                assert!(granted, "reply names a generation the change does not persist");
            }
        }
        for effect in &self.effects {
            if let ControlPlaneEffect::Reply { reply: Ok(reply), .. } = effect {
                self.check_reply_durable(reply);
            }
        }
    }

    /// A queued reply names only generations the durable table holds, or ones a
    /// later durable grant has since superseded.
    fn check_reply_durable(&self, reply: &ControlPlaneReply) {
        let granted: Vec<(TenantId, Generation)> = match reply {
            ControlPlaneReply::Attached { .. } => return, // checked when emitted
            ControlPlaneReply::ReAttached { tenants } => {
                tenants.iter().map(|t| (t.tenant, t.generation)).collect()
            }
            ControlPlaneReply::Validated { .. } | ControlPlaneReply::Detached => return,
        };
        for (tenant, generation) in granted {
            let current = self.table.get(&tenant).map(|r| r.generation);
            assert!(
                current.is_some_and(|g| g >= generation),
                "S-GEN-MONO: reply grants {generation} of {tenant}, table holds {current:?}"
            );
        }
    }

    fn is_current(&self, tenant: TenantId, generation: Generation) -> bool {
        self.table.get(&tenant).is_some_and(|r| r.generation == generation)
    }

    fn enqueue(&mut self, now: Instant, req: RequestId, request: Request) {
        if self.queue.len() >= MAX_QUEUED_REQUESTS {
            let queued = self.queue.len();
            self.reply(req, Err(ControlPlaneError::Overloaded { queued }));
            return;
        }
        self.queue.push_back((req, request));
        self.pump(now);
    }

    /// Starts the next queued request when none is in progress; requests that need
    /// no store change are answered on the spot.
    fn pump(&mut self, _now: Instant) {
        while self.in_progress.is_none() {
            let Some((req, request)) = self.queue.pop_front() else { return };
            match request {
                Request::Attach { tenant, node, reported } => match self.table.get(&tenant) {
                    Some(record) => {
                        let above = [Some(record.generation), reported, self.floor(tenant)];
                        self.grant(req, tenant, node, above.into_iter().flatten().max());
                    }
                    None => {
                        let op = self.ops.next_id();
                        self.in_progress =
                            Some(InProgress::ListingRemote { op, req, tenant, node, reported });
                        self.effects
                            .push_back(ControlPlaneEffect::ListRemoteGenerations { op, tenant });
                    }
                },
                Request::ReAttach { node, held_back } => self.re_attach(req, node, &held_back),
                Request::Detach { tenant, node } => match self.table.get(&tenant) {
                    None => self.reply(req, Err(ControlPlaneError::UnknownTenant(tenant))),
                    Some(record) if record.attached_to != Some(node) => {
                        self.reply(req, Ok(ControlPlaneReply::Detached));
                    }
                    Some(record) => {
                        let record = TenantRecord { attached_to: None, ..record.clone() };
                        let change = StoreChange::Upsert(record);
                        self.persist(req, change, ControlPlaneReply::Detached);
                    }
                },
            }
        }
    }

    fn floor(&self, tenant: TenantId) -> Option<Generation> {
        self.floors.get(&tenant).copied()
    }

    /// Persists `tenant` attached to `node` at the generation after `above`.
    fn grant(&mut self, req: RequestId, tenant: TenantId, node: NodeId, above: Option<Generation>) {
        let generation = match above {
            None => Generation::FIRST,
            Some(g) => match g.next() {
                Some(next) => next,
                None => {
                    self.reply(req, Err(ControlPlaneError::GenerationExhausted(tenant, g)));
                    return;
                }
            },
        };
        self.grants_total += 1;
        let record = TenantRecord { tenant, generation, attached_to: Some(node) };
        self.persist(req, StoreChange::Upsert(record), ControlPlaneReply::Attached { generation });
    }

    fn re_attach(&mut self, req: RequestId, node: NodeId, held_back: &BTreeSet<TenantId>) {
        let mut records = Vec::new();
        let mut tenants = Vec::new();
        let attached =
            |r: &&TenantRecord| r.attached_to == Some(node) && !held_back.contains(&r.tenant);
        for record in self.table.values().filter(attached) {
            let above =
                record.generation.max(self.floor(record.tenant).unwrap_or(Generation::FIRST));
            let Some(generation) = above.next() else {
                let err = ControlPlaneError::GenerationExhausted(record.tenant, above);
                self.reply(req, Err(err));
                return;
            };
            // The superseded generation was granted to `node` (it is what the table
            // records for it) and no failed persist may have granted one in between.
            let previous_was_own = above == record.generation;
            records.push(TenantRecord { generation, ..record.clone() });
            tenants.push(ReAttachedTenant::new(record.tenant, generation, previous_was_own));
        }
        if records.is_empty() {
            self.reply(req, Ok(ControlPlaneReply::ReAttached { tenants }));
            return;
        }
        self.grants_total += records.len() as u64;
        self.persist(
            req,
            StoreChange::UpsertAll(records),
            ControlPlaneReply::ReAttached { tenants },
        );
    }

    fn persist(&mut self, req: RequestId, change: StoreChange, reply: ControlPlaneReply) {
        let op = self.ops.next_id();
        self.effects.push_back(ControlPlaneEffect::Persist { op, change: change.clone() });
        self.in_progress = Some(InProgress::Persisting { op, req, change, reply });
    }

    fn reply(&mut self, req: RequestId, reply: Result<ControlPlaneReply, ControlPlaneError>) {
        self.effects.push_back(ControlPlaneEffect::Reply { req, reply });
    }
}
