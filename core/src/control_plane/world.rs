//! The generation table's reference world: requests from two nodes about three
//! tenants, the store answering each `Persist` with success, any failure kind
//! (outcome unknown: the change may or may not have landed) or never (a lost
//! completion: the machine waits until a crash), remote listings answered with any
//! generation, and crashes (the machine dropped, [`ControlPlane::recover`]ed from the
//! store's rows, a persist in flight landed or not).
//!
//! Checked after every step: [`ControlPlane::check_invariants`] (with its
//! reply-durability check) and, on every reply the world receives:
//! - reply durability: a granted generation is in the store (or a newer one is);
//! - S-GEN-MONO: the generations granted to a tenant strictly increase, across
//!   crashes and failed persists (two grants never share a generation);
//! - fencing: a validation says `true` only for the table's generation, and never
//!   for a generation below one already granted;
//! - every reply answers its request's kind, at most once; at the end (no fault
//!   left) every request since the last crash has been answered.
//!
//! Compiled for tests (`tests.rs` draws actions with proptest) and under the
//! `fuzzing` feature (the `control_plane` fuzz target draws them with `arbitrary`).
//! Every input reaches the machine through [`ControlPlane::handle`].

use super::*;
use crate::io_error::{IoError, IoTarget};
use crate::upload_queue::harness::fail_kind;

/// Tenants and nodes of the world.
const TENANTS: u8 = 3;
const NODES: u64 = 2;

/// One step of the world. Tenant and node picks are taken modulo their number.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Action {
    /// Tenant, node, what the node reports ([`World::reported`]).
    Attach(u8, u8, u8),
    /// Node, a mask of the tenants it holds back.
    ReAttach(u8, u8),
    /// Tenant, the node letting it go.
    Detach(u8, u8),
    /// Tenant, which generation to ask about ([`World::reported`]).
    Validate(u8, u8),
    /// The persist in flight completes Ok.
    PersistOk,
    /// The persist in flight fails with this kind ([`fail_kind`]); the change
    /// landed in the store anyway or not.
    PersistFailed(u8, bool),
    /// The persist in flight never completes.
    PersistLost,
    /// The listing in flight answers with this generation (0: nothing found).
    Listed(u32),
    /// The machine dies; the persist in flight landed or not.
    Crash(bool),
}

/// A request the world sent and has no reply for yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asked {
    Attach(TenantId),
    ReAttach,
    Detach(TenantId, NodeId),
    Validate(TenantId, Generation),
}

pub struct World {
    cp: ControlPlane,
    /// What the store holds.
    store: BTreeMap<TenantId, TenantRecord>,
    /// The effect the world owes an answer: a `Persist` or a listing (the machine
    /// has one request in progress at a time).
    pending: Option<ControlPlaneEffect>,
    /// A completion was lost: nothing moves until a crash.
    stuck: bool,
    asked: BTreeMap<RequestId, Asked>,
    /// The highest generation ever granted, per tenant (the world's S-GEN-MONO).
    granted: BTreeMap<TenantId, Generation>,
    next_req: u64,
    now: Instant,
}

pub fn run(actions: Vec<Action>) {
    let mut w = World::new();
    for action in actions {
        w.apply(action);
    }
    w.finish();
}

impl World {
    fn new() -> Self {
        World {
            cp: ControlPlane::recover(Vec::new()),
            store: BTreeMap::new(),
            pending: None,
            stuck: false,
            asked: BTreeMap::new(),
            granted: BTreeMap::new(),
            next_req: 0,
            now: Instant::ZERO,
        }
    }

    pub fn apply(&mut self, action: Action) {
        self.now = self.now.plus_millis(1);
        let tenant = |t: u8| TenantId([t % TENANTS + 1; 16]);
        let node = |n: u8| NodeId(u64::from(n) % NODES + 1);
        match action {
            Action::Attach(t, n, r) => {
                let tenant = tenant(t);
                let reported = self.reported(tenant, r);
                let req = self.ask(Asked::Attach(tenant));
                let node = node(n);
                self.feed(ControlPlaneInput::Attach { req, tenant, node, reported });
            }
            Action::ReAttach(n, mask) => {
                let held_back = (0..TENANTS).filter(|i| mask & (1 << i) != 0).map(tenant).collect();
                let req = self.ask(Asked::ReAttach);
                self.feed(ControlPlaneInput::ReAttach { req, node: node(n), held_back });
            }
            Action::Detach(t, n) => {
                let (tenant, node) = (tenant(t), node(n));
                let req = self.ask(Asked::Detach(tenant, node));
                self.feed(ControlPlaneInput::Detach { req, tenant, node });
            }
            Action::Validate(t, pick) => {
                let tenant = tenant(t);
                let generation = self.reported(tenant, pick).unwrap_or(Generation::FIRST);
                let req = self.ask(Asked::Validate(tenant, generation));
                self.feed(ControlPlaneInput::Validate { req, tenants: vec![(tenant, generation)] });
            }
            Action::PersistOk => self.complete_persist(Ok(()), true),
            Action::PersistFailed(kind, landed) => {
                let e =
                    IoError::new(fail_kind(kind), IoTarget::Store, String::from("store failed"));
                self.complete_persist(Err(e), landed);
            }
            Action::PersistLost => {
                if matches!(self.pending, Some(ControlPlaneEffect::Persist { .. })) {
                    self.pending = None;
                    self.stuck = true;
                }
            }
            Action::Listed(found) => {
                if let Some(ControlPlaneEffect::ListRemoteGenerations { op, .. }) = self.pending {
                    self.pending = None;
                    let max_found = Generation::new(found);
                    self.feed(ControlPlaneInput::RemoteGenerations { op, max_found });
                }
            }
            Action::Crash(landed) => self.crash(landed),
        }
    }

    /// A generation for `tenant` picked by `r`: none, the latest granted, one
    /// below or above it, or (rarely) one near the end of the generation space.
    fn reported(&self, tenant: TenantId, r: u8) -> Option<Generation> {
        let latest = self.granted.get(&tenant).map_or(0, |g| g.get());
        match r % 8 {
            0 | 1 => None,
            2 | 3 => Generation::new(latest),
            4 => Generation::new(latest.saturating_sub(1)),
            5 => Generation::new(latest.saturating_add(u32::from(r >> 3))),
            6 => Generation::new(u32::MAX - u32::from(r >> 6)),
            _ => Generation::new(u32::from(r >> 3).max(1)),
        }
    }

    fn ask(&mut self, asked: Asked) -> RequestId {
        self.next_req += 1;
        let req = RequestId(self.next_req);
        self.asked.insert(req, asked);
        req
    }

    fn complete_persist(&mut self, result: Result<(), IoError>, landed: bool) {
        let Some(ControlPlaneEffect::Persist { op, change }) = self.pending.clone() else {
            return;
        };
        self.pending = None;
        if landed {
            for record in change.records() {
                self.store.insert(record.tenant, record.clone());
            }
        }
        self.feed(ControlPlaneInput::Persisted { op, result });
    }

    fn crash(&mut self, landed: bool) {
        if let Some(ControlPlaneEffect::Persist { change, .. }) = &self.pending
            && landed
        {
            for record in change.records() {
                self.store.insert(record.tenant, record.clone());
            }
        }
        self.pending = None;
        self.stuck = false;
        // Requests die with the machine: their callers retry with new ids.
        self.asked.clear();
        self.cp = ControlPlane::recover(self.store.values().cloned().collect());
        self.check();
    }

    fn feed(&mut self, input: ControlPlaneInput) {
        self.cp.handle(self.now, input).expect("the world completes only what is in progress");
        self.check();
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(effect) = self.cp.poll_effect() {
            match effect {
                ControlPlaneEffect::Reply { req, reply } => self.receive(req, reply),
                effect => {
                    assert!(self.pending.is_none() && !self.stuck, "two requests in progress");
                    self.pending = Some(effect);
                }
            }
            self.check();
        }
    }

    fn receive(&mut self, req: RequestId, reply: Result<ControlPlaneReply, ControlPlaneError>) {
        let asked = self.asked.remove(&req).expect("one reply per request, to a live request");
        let Ok(reply) = reply else { return };
        match (asked, reply) {
            (Asked::Attach(tenant), ControlPlaneReply::Attached { generation }) => {
                self.granted_now(tenant, generation);
            }
            (Asked::ReAttach, ControlPlaneReply::ReAttached { tenants }) => {
                for t in tenants {
                    self.granted_now(t.tenant, t.generation);
                }
            }
            (Asked::Detach(tenant, node), ControlPlaneReply::Detached) => {
                let holder = self.cp.record(tenant).and_then(|r| r.attached_to);
                assert_ne!(holder, Some(node), "{node} let {tenant} go and still holds it");
            }
            (Asked::Validate(tenant, generation), ControlPlaneReply::Validated { results }) => {
                assert_eq!(results.len(), 1, "one result per pair");
                let (t, valid) = results[0];
                assert_eq!(t, tenant, "results in request order");
                let current = self.cp.record(tenant).map(|r| r.generation);
                assert_eq!(valid, current == Some(generation), "validation reads the table");
                let latest = self.granted.get(&tenant).copied();
                assert!(
                    !valid || latest.is_none_or(|l| generation >= l),
                    "fencing: {generation} of {tenant} valid after {latest:?} was granted"
                );
            }
            (asked, reply) => panic!("{asked:?} answered with {reply:?}"),
        }
    }

    /// A reply grants `generation` of `tenant`.
    fn granted_now(&mut self, tenant: TenantId, generation: Generation) {
        let stored = self.store.get(&tenant).map(|r| r.generation);
        assert!(
            stored.is_some_and(|s| s >= generation),
            "reply durability: {generation} of {tenant} granted, the store holds {stored:?}"
        );
        let before = self.granted.insert(tenant, generation);
        assert!(
            before.is_none_or(|b| b < generation),
            "S-GEN-MONO: {tenant} granted {generation} after {before:?}"
        );
    }

    fn check(&self) {
        self.cp.check_invariants();
        for record in self.cp.records() {
            let stored = self.store.get(&record.tenant);
            assert!(
                stored.is_some_and(|s| s.generation >= record.generation),
                "the table holds {record:?}, the store {stored:?}"
            );
        }
    }

    /// Heals every fault and completes everything: every live request is answered.
    fn finish(&mut self) {
        if self.stuck {
            self.crash(false);
        }
        while let Some(effect) = &self.pending {
            match effect {
                ControlPlaneEffect::Persist { .. } => self.complete_persist(Ok(()), true),
                ControlPlaneEffect::ListRemoteGenerations { .. } => self.apply(Action::Listed(0)),
                ControlPlaneEffect::Reply { .. } => unreachable!("replies are received at once"),
            }
        }
        assert!(self.asked.is_empty(), "requests never answered: {:?}", self.asked);
    }
}
