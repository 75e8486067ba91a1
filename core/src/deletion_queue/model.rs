//! The deletion queue's reference world: two nodes share one tenant through
//! migrations, crashes and restarts, with the real control-plane machine answering
//! validations at random times (or the call failing), and every I/O completing in
//! any order, with success or any failure kind.
//!
//! Each node models just enough of an upload queue: it creates layers, unlinks
//! them (index upload first, then the deletion push), and advances its projected
//! LSN (index upload, then an LSN update). Checked after every step:
//! - S-DEL-GEN: a key goes into `DeleteObjects` only after a validation evaluated
//!   after its push found the (possibly recovery-rewritten) generation current;
//! - no object the latest index (highest generation) references is ever deleted;
//! - visible never passes projected, nor the LSN of the latest index;
//! - L-DELETE, at the end (all faults healed): every key the current holder pushed
//!   in its current generation was deleted.
//!
//! Compiled for tests (`tests/model.rs` draws actions with proptest) and under the
//! `fuzzing` feature (the `deletion_queue` fuzz target draws them with
//! `arbitrary`). Every input reaches the queue through [`DeletionQueue::handle`].

use super::*;
use crate::control_plane::{
    ControlPlane, ControlPlaneEffect, ControlPlaneError, ControlPlaneReply, RequestId,
    TenantRecord, max_generation_in_listing,
};
use crate::id::NodeId;
use crate::io_error::IoErrorKind;
use crate::layer_name::LayerName;
use crate::remote_path::layer_key;
use crate::upload_queue::harness::fail_kind;
use std::collections::BTreeSet;

/// The one tenant of the world.
pub const T: TenantId = TenantId([1; 16]);
/// Its one timeline.
pub const TL: TimelineId = TimelineId([7; 16]);

/// One step of the world. Node indexes are taken modulo 2, picks modulo what is
/// there, tick lengths into 1..300 ms.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Action {
    NewLayer(usize),
    Unlink(usize, usize),
    Ingest(usize),
    Migrate,
    Crash(usize, u8),
    Restart(usize),
    DeliverValidate(usize),
    DeliverReply(usize),
    CompleteIo(usize, usize, bool),
    Tick(u64),
    Flush(usize),
    /// Node, pick, failure kind ([`fail_kind`]): an in-flight I/O fails, nothing
    /// happened.
    FailIo(usize, usize, u8),
    /// Pick, how: a validation request in transit fails (unreachable, timed out,
    /// refused) instead of reaching the control plane.
    FailValidate(usize, u8),
    /// Node, pick: its upload queue cancels a key it pushed (the tenant left
    /// AttachedSingle), wherever the key is short of a delete in flight.
    Cancel(usize, usize),
    /// Node: its tenant left AttachedSingle; keys recovered from disk are dropped.
    StopDeleting(usize),
}

impl Action {
    fn normalized(self) -> Action {
        let node = |n: usize| n % 2;
        match self {
            Action::NewLayer(n) => Action::NewLayer(node(n)),
            Action::Unlink(n, p) => Action::Unlink(node(n), p),
            Action::Ingest(n) => Action::Ingest(node(n)),
            Action::Crash(n, b) => Action::Crash(node(n), b),
            Action::Restart(n) => Action::Restart(node(n)),
            Action::CompleteIo(n, p, ok) => Action::CompleteIo(node(n), p, ok),
            Action::Tick(ms) => Action::Tick(1 + ms.saturating_sub(1) % 299),
            Action::Flush(n) => Action::Flush(node(n)),
            Action::FailIo(n, p, k) => Action::FailIo(node(n), p, k),
            Action::Cancel(n, p) => Action::Cancel(node(n), p),
            Action::StopDeleting(n) => Action::StopDeleting(node(n)),
            a @ (Action::Migrate
            | Action::DeliverValidate(_)
            | Action::DeliverReply(_)
            | Action::FailValidate(..)) => a,
        }
    }
}

#[derive(Default)]
struct Node {
    q: Option<DeletionQueue>,
    incarnation: u64,
    generation: Option<Generation>,
    layers: BTreeSet<RemoteKey>,
    projected: Lsn,
    visible: Lsn,
    disk: BTreeMap<u64, Vec<u8>>,
    header: Option<Vec<u8>>,
    in_flight: Vec<DeletionEffect>,
    /// Every key this node pushed: the step and the generations it counts under.
    pushed: BTreeMap<RemoteKey, (u64, Vec<Generation>)>,
    /// Keys pushed in the current incarnation and generation.
    pushed_now: Vec<RemoteKey>,
    /// Validations the control plane evaluated for this node: step, valid pairs.
    evaluated: Vec<(u64, Vec<(TenantId, Generation)>)>,
}

type InTransit<T> = (usize, u64, OpId, Vec<T>);

/// Runs `actions`, heals every fault, and checks L-DELETE: the current holder's
/// deletions of its current generation ran.
pub fn run(actions: Vec<Action>) {
    let mut w = World::new();
    for a in actions {
        w.apply(a);
    }
    w.heal();
    let holder = w.holder().expect("the tenant stays attached").0 as usize;
    let node = &w.nodes[holder];
    for key in &node.pushed_now {
        assert!(!w.remote.contains(key), "L-DELETE: {key:?} was never deleted");
    }
    w.check();
}

/// Two nodes, the control plane, remote storage and the messages in transit.
pub struct World {
    cp: ControlPlane,
    store: BTreeMap<TenantId, TenantRecord>,
    remote: BTreeSet<RemoteKey>,
    /// The latest index each generation uploaded: its layers and LSN.
    indexes: BTreeMap<Generation, (BTreeSet<RemoteKey>, Lsn)>,
    nodes: [Node; 2],
    /// Validate requests in transit: node, its incarnation, op, pairs.
    to_cp: Vec<InTransit<(TenantId, Generation)>>,
    /// Replies in transit.
    to_node: Vec<InTransit<(TenantId, bool)>>,
    now: Instant,
    step: u64,
    next_layer: u64,
    next_req: u64,
}

fn config() -> DeletionQueueConfig {
    DeletionQueueConfig {
        list_target_keys: 3,
        list_seal_delay_ms: 100,
        validate_batch_keys: 8,
        validate_delay_ms: 200,
        max_deletes_in_flight: 2,
        max_list_writes_in_flight: 2,
        backoff_base_ms: 10,
        backoff_max_ms: 80,
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> Self {
        let mut w = World {
            cp: ControlPlane::recover(Vec::new()),
            store: BTreeMap::new(),
            remote: BTreeSet::new(),
            indexes: BTreeMap::new(),
            nodes: [Node::default(), Node::default()],
            to_cp: Vec::new(),
            to_node: Vec::new(),
            now: Instant::ZERO,
            step: 0,
            next_layer: 0,
            next_req: 0,
        };
        for n in 0..2 {
            w.nodes[n].q = Some(DeletionQueue::new(config()));
        }
        w.attach(0);
        w
    }

    /// Runs one control-plane request to its reply, with an instant store.
    fn cp_request(&mut self, send: impl FnOnce(&mut ControlPlane, RequestId)) -> ControlPlaneReply {
        self.next_req += 1;
        let req = RequestId(self.next_req);
        send(&mut self.cp, req);
        let mut reply = None;
        while let Some(effect) = self.cp.poll_effect() {
            match effect {
                ControlPlaneEffect::Persist { op, change } => {
                    for r in change.records() {
                        self.store.insert(r.tenant, r.clone());
                    }
                    self.cp.handle_persisted(self.now, op, Ok(())).unwrap();
                }
                ControlPlaneEffect::ListRemoteGenerations { op, tenant } => {
                    let keys: Vec<RemoteKey> = self.remote.iter().cloned().collect();
                    let found = max_generation_in_listing(tenant, &keys);
                    self.cp.handle_remote_generations(self.now, op, found).unwrap();
                }
                ControlPlaneEffect::Reply { req: r, reply: answer } if r == req => {
                    reply = Some(answer.unwrap());
                }
                ControlPlaneEffect::Reply { .. } => {}
            }
            self.cp.check_invariants();
        }
        reply.expect("answered")
    }

    pub fn holder(&self) -> Option<NodeId> {
        self.store.get(&T).and_then(|r| r.attached_to)
    }

    /// The node loads the latest index and claims it under its new generation.
    fn load(&mut self, n: usize, generation: Generation) {
        let (layers, lsn) = self.indexes.values().next_back().cloned().unwrap_or_default();
        let node = &mut self.nodes[n];
        node.generation = Some(generation);
        node.layers = layers.clone();
        node.projected = lsn;
        node.visible = Lsn(0);
        node.pushed_now.clear();
        self.indexes.insert(generation, (layers, lsn));
    }

    fn attach(&mut self, n: usize) {
        let reply = self
            .cp_request(|cp, req| cp.handle_attach(Instant::ZERO, req, T, NodeId(n as u64), None));
        let ControlPlaneReply::Attached { generation } = reply else { panic!("{reply:?}") };
        self.load(n, generation);
    }

    fn upload_index(&mut self, n: usize) {
        let node = &self.nodes[n];
        let generation = node.generation.expect("only holders upload");
        self.indexes.insert(generation, (node.layers.clone(), node.projected));
    }

    /// Plays one action, drains every effect, checks.
    pub fn apply(&mut self, action: Action) {
        self.step += 1;
        match action.normalized() {
            Action::NewLayer(n) => self.new_layer(n),
            Action::Unlink(n, pick) => self.unlink(n, pick),
            Action::Ingest(n) => self.ingest(n),
            Action::Migrate => self.migrate(),
            Action::Crash(n, bits) => self.crash(n, bits),
            Action::Restart(n) => self.restart(n),
            Action::DeliverValidate(pick) => self.deliver_validate(pick),
            Action::DeliverReply(pick) => self.deliver_reply(pick),
            Action::CompleteIo(n, pick, ok) => self.complete_io(n, pick, ok.then_some(0).ok_or(1)),
            Action::FailIo(n, pick, kind) => self.complete_io(n, pick, Err(kind)),
            Action::FailValidate(pick, how) => self.fail_validate(pick, how),
            Action::Tick(ms) => self.tick(ms),
            Action::Flush(n) => self.flush(n),
            Action::Cancel(n, pick) => self.cancel(n, pick),
            Action::StopDeleting(n) => {
                let now = self.now;
                if let Some(q) = self.nodes[n].q.as_mut() {
                    q.handle(now, DeletionInput::StopDeleting { tenant: T }).expect("taken");
                }
            }
        }
        self.drain();
        self.check();
    }

    fn new_layer(&mut self, n: usize) {
        let Some(generation) = self.nodes[n].generation else { return };
        self.next_layer += 1;
        let name: LayerName =
            format!("{:016X}-{:016X}__0000000000000001", self.next_layer, self.next_layer + 1)
                .parse()
                .unwrap();
        let key = layer_key(T, TL, &name, generation);
        self.remote.insert(key.clone());
        self.nodes[n].layers.insert(key);
        self.upload_index(n);
    }

    fn unlink(&mut self, n: usize, pick: usize) {
        let now = self.now;
        let Some(generation) = self.nodes[n].generation else { return };
        let node = &self.nodes[n];
        let Some(key) = node.layers.iter().nth(pick % node.layers.len().max(1)).cloned() else {
            return;
        };
        self.nodes[n].layers.remove(&key);
        self.upload_index(n); // S-DEL-AFTER-INDEX: the index first
        let step = self.step;
        let node = &mut self.nodes[n];
        node.pushed.insert(key.clone(), (step, vec![generation]));
        node.pushed_now.push(key.clone());
        let push = DeletionInput::Push { tenant: T, timeline: TL, generation, keys: vec![key] };
        node.q.as_mut().unwrap().handle(now, push).expect("a push is always taken");
    }

    fn cancel(&mut self, n: usize, pick: usize) {
        let now = self.now;
        let node = &mut self.nodes[n];
        let Some(q) = node.q.as_mut() else { return };
        if node.pushed_now.is_empty() {
            return;
        }
        let key = node.pushed_now[pick % node.pushed_now.len()].clone();
        q.handle(now, DeletionInput::Cancel { tenant: T, timeline: TL, key }).expect("taken");
    }

    fn ingest(&mut self, n: usize) {
        let now = self.now;
        let Some(generation) = self.nodes[n].generation else { return };
        self.nodes[n].projected = Lsn(self.nodes[n].projected.0 + 1);
        self.upload_index(n);
        let node = &mut self.nodes[n];
        let lsn = node.projected;
        let update = DeletionInput::PushLsnUpdate { tenant: T, timeline: TL, generation, lsn };
        node.q.as_mut().unwrap().handle(now, update).expect("an update is always taken");
    }

    fn migrate(&mut self) {
        let to = match self.holder() {
            Some(NodeId(0)) => 1,
            _ => 0,
        };
        if self.nodes[to].q.is_some() {
            self.attach(to);
        }
    }

    fn crash(&mut self, n: usize, bits: u8) {
        let node = &mut self.nodes[n];
        if node.q.take().is_none() {
            return;
        }
        node.incarnation += 1;
        node.generation = None;
        node.layers.clear();
        // Each in-flight effect happened or not.
        let in_flight = std::mem::take(&mut node.in_flight);
        for (i, effect) in in_flight.into_iter().enumerate() {
            if bits & (1 << (i % 8)) != 0 {
                self.land(n, &effect);
            }
        }
    }

    fn restart(&mut self, n: usize) {
        if self.nodes[n].q.is_some() {
            return;
        }
        let node_id = NodeId(n as u64);
        let reply = self.cp_request(|cp, req| cp.handle_re_attach(Instant::ZERO, req, node_id));
        let ControlPlaneReply::ReAttached { tenants } = reply else { panic!("{reply:?}") };
        let attached: BTreeMap<TenantId, ReAttachedTenant> =
            tenants.into_iter().map(|t| (t.tenant, t)).collect();
        let node = &mut self.nodes[n];
        let header = node.header.as_ref().map(|b| DeletionHeader::from_json_bytes(b).unwrap());
        let lists = node.disk.values().map(|b| DeletionList::from_json_bytes(b).unwrap()).collect();
        if let Some(a) = attached.get(&T)
            && a.previous_was_own
        {
            // Recovery may adopt the immediately preceding generation's lists.
            for (_, gens) in node.pushed.values_mut() {
                if gens.contains(&a.generation.previous().unwrap()) {
                    gens.push(a.generation);
                }
            }
        }
        node.q = Some(DeletionQueue::recover(config(), header, lists, &attached, self.now));
        if let Some(a) = attached.get(&T) {
            self.load(n, a.generation);
        }
    }

    fn deliver_validate(&mut self, pick: usize) {
        if self.to_cp.is_empty() {
            return;
        }
        let (n, inc, op, pairs) = self.to_cp.remove(pick % self.to_cp.len());
        let reply =
            self.cp_request(|cp, req| cp.handle_validate(Instant::ZERO, req, pairs.clone()));
        let ControlPlaneReply::Validated { results } = reply else { panic!("{reply:?}") };
        let valid = pairs.iter().zip(&results).filter(|(_, r)| r.1).map(|(p, _)| *p).collect();
        self.nodes[n].evaluated.push((self.step, valid));
        self.to_node.push((n, inc, op, results));
    }

    fn deliver_reply(&mut self, pick: usize) {
        let now = self.now;
        if self.to_node.is_empty() {
            return;
        }
        let (n, inc, op, results) = self.to_node.remove(pick % self.to_node.len());
        let node = &mut self.nodes[n];
        if node.incarnation == inc
            && let Some(q) = node.q.as_mut()
        {
            q.handle(now, DeletionInput::Validation { op, results }).unwrap();
        }
    }

    fn fail_validate(&mut self, pick: usize, how: u8) {
        let now = self.now;
        if self.to_cp.is_empty() {
            return;
        }
        let (n, inc, op, _) = self.to_cp.remove(pick % self.to_cp.len());
        let failure = match how % 3 {
            0 => CallFailure::Unreachable("connection refused".into()),
            1 => CallFailure::Timeout { deadline_ms: 1_000 },
            _ => CallFailure::Refused(ControlPlaneError::Overloaded { queued: 1 }),
        };
        let node = &mut self.nodes[n];
        if node.incarnation == inc
            && let Some(q) = node.q.as_mut()
        {
            q.handle(now, DeletionInput::ValidationFailed { op, failure }).unwrap();
        }
    }

    fn tick(&mut self, ms: u64) {
        self.now = self.now.plus_millis(ms);
        for node in &mut self.nodes {
            if let Some(q) = node.q.as_mut() {
                while let Some((at, timer)) = q.next_timer()
                    && at <= self.now
                {
                    q.handle(self.now, DeletionInput::Timeout(timer)).expect("taken");
                }
            }
        }
    }

    fn flush(&mut self, n: usize) {
        let now = self.now;
        if let Some(q) = self.nodes[n].q.as_mut() {
            q.handle(now, DeletionInput::FlushAdvisory).expect("taken");
        }
    }

    /// Completes the `pick`-th in-flight I/O of node `n`: `Ok(_)` it happened, `Err(k)`
    /// it failed with [`fail_kind`]`(k)` and nothing happened.
    fn complete_io(&mut self, n: usize, pick: usize, outcome: Result<u8, u8>) {
        let now = self.now;
        let node = &mut self.nodes[n];
        if node.in_flight.is_empty() {
            return;
        }
        let effect = node.in_flight.remove(pick % node.in_flight.len());
        let op = match &effect {
            DeletionEffect::WriteList { op, .. }
            | DeletionEffect::WriteHeader { op, .. }
            | DeletionEffect::RemoveList { op, .. }
            | DeletionEffect::DeleteObjects { op, .. } => *op,
            other => unreachable!("not I/O: {other:?}"),
        };
        let result = match outcome {
            Ok(_) => {
                self.land(n, &effect);
                Ok(())
            }
            Err(1) => Err(IoError::remote(IoErrorKind::Transient, "k", "injected")),
            Err(kind) => Err(IoError::remote(fail_kind(kind), "k", "injected")),
        };
        let completion = DeletionInput::Completion { op, result };
        self.nodes[n].q.as_mut().unwrap().handle(now, completion).unwrap();
    }

    /// What an I/O effect does to the world when it happens.
    fn land(&mut self, n: usize, effect: &DeletionEffect) {
        let node = &mut self.nodes[n];
        match effect {
            DeletionEffect::WriteList { sequence, bytes, .. } => {
                node.disk.insert(*sequence, bytes.clone());
            }
            DeletionEffect::WriteHeader { bytes, .. } => node.header = Some(bytes.clone()),
            DeletionEffect::RemoveList { sequence, .. } => {
                node.disk.remove(sequence);
            }
            DeletionEffect::DeleteObjects { keys, .. } => {
                for key in keys {
                    self.remote.remove(key);
                }
            }
            _ => {}
        }
    }

    fn drain(&mut self) {
        for n in 0..2 {
            while let Some(effect) = self.nodes[n].q.as_mut().and_then(|q| q.poll_effect()) {
                let node = &mut self.nodes[n];
                match effect {
                    DeletionEffect::Validate { op, tenants } => {
                        self.to_cp.push((n, node.incarnation, op, tenants));
                    }
                    DeletionEffect::DeleteObjects { ref keys, .. } => {
                        for key in keys {
                            let (pushed_at, gens) = &node.pushed[key];
                            let validated = node.evaluated.iter().any(|(at, valid)| {
                                at > pushed_at && gens.iter().any(|g| valid.contains(&(T, *g)))
                            });
                            assert!(
                                validated,
                                "S-DEL-GEN: {key:?} deleted without a validation after its push"
                            );
                        }
                        node.in_flight.push(effect);
                    }
                    DeletionEffect::WriteList { .. }
                    | DeletionEffect::WriteHeader { .. }
                    | DeletionEffect::RemoveList { .. } => node.in_flight.push(effect),
                    DeletionEffect::LsnValidated(v) => {
                        if v.valid && node.generation == Some(v.generation) {
                            node.visible = node.visible.max(v.lsn);
                            let latest = self.indexes.values().next_back().map_or(Lsn(0), |i| i.1);
                            assert!(
                                v.lsn <= latest,
                                "S-VISIBLE: visible {} above the latest index {}",
                                v.lsn,
                                latest
                            );
                        }
                        assert!(node.visible <= node.projected, "visible passed projected");
                    }
                    DeletionEffect::Report(r) => {
                        // A key whose delete failed for good is not deleted: L-DELETE
                        // does not expect it.
                        // Nor one cancelled: it waits in its upload queue.
                        if matches!(
                            r.outcome,
                            DeletionOutcome::FailedPermanently(_) | DeletionOutcome::Cancelled
                        ) {
                            node.pushed_now.retain(|k| *k != r.key);
                        }
                    }
                    DeletionEffect::FlushDone { .. } => {}
                }
            }
            if let Some(q) = &self.nodes[n].q {
                q.check_invariants();
            }
        }
    }

    /// No object the latest index references is ever deleted.
    pub fn check(&self) {
        let (layers, _) = self.indexes.values().next_back().cloned().unwrap_or_default();
        for key in &layers {
            assert!(
                self.remote.contains(key),
                "deleted {key:?}, which the latest index references"
            );
        }
    }

    /// Heals every fault and runs until nothing moves.
    pub fn heal(&mut self) {
        for n in 0..2 {
            self.apply(Action::Restart(n));
        }
        for _ in 0..500 {
            for n in 0..2 {
                self.apply(Action::Flush(n));
            }
            let busy = !self.to_cp.is_empty()
                || !self.to_node.is_empty()
                || self.nodes.iter().any(|n| !n.in_flight.is_empty());
            if !busy && self.nodes.iter().all(|n| n.q.as_ref().is_some_and(|q| q.is_idle())) {
                return;
            }
            self.apply(Action::DeliverValidate(0));
            self.apply(Action::DeliverReply(0));
            for n in 0..2 {
                self.apply(Action::CompleteIo(n, 0, true));
            }
            self.apply(Action::Tick(100));
        }
        panic!("the world did not settle");
    }
}
