//! Two nodes share one tenant through migrations, crashes and restarts, with the
//! real control-plane machine answering validations at random times.
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

use super::*;
use crate::control_plane::{
    ControlPlane, ControlPlaneEffect, ControlPlaneReply, RequestId, TenantRecord,
    max_generation_in_listing,
};
use crate::id::NodeId;
use crate::layer_name::LayerName;
use crate::remote_path::layer_key;
use proptest::prelude::*;

const T: TenantId = T1;

#[derive(Clone, Debug)]
enum Action {
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
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..2usize).prop_map(Action::NewLayer),
        4 => (0..2usize, any::<usize>()).prop_map(|(n, p)| Action::Unlink(n, p)),
        2 => (0..2usize).prop_map(Action::Ingest),
        1 => Just(Action::Migrate),
        1 => (0..2usize, any::<u8>()).prop_map(|(n, b)| Action::Crash(n, b)),
        2 => (0..2usize).prop_map(Action::Restart),
        4 => any::<usize>().prop_map(Action::DeliverValidate),
        4 => any::<usize>().prop_map(Action::DeliverReply),
        8 => (0..2usize, any::<usize>(), prop::bool::weighted(0.8))
            .prop_map(|(n, p, ok)| Action::CompleteIo(n, p, ok)),
        3 => (1..300u64).prop_map(Action::Tick),
        1 => (0..2usize).prop_map(Action::Flush),
    ]
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

struct World {
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
    DeletionQueueConfig { list_target_keys: 3, ..small_config() }
}

impl World {
    fn new() -> Self {
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

    fn holder(&self) -> Option<NodeId> {
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

    fn apply(&mut self, action: Action) {
        self.step += 1;
        let now = self.now;
        match action {
            Action::NewLayer(n) => {
                let Some(generation) = self.nodes[n].generation else { return };
                self.next_layer += 1;
                let name: LayerName = format!(
                    "{:016X}-{:016X}__0000000000000001",
                    self.next_layer,
                    self.next_layer + 1
                )
                .parse()
                .unwrap();
                let key = layer_key(T, TL, &name, generation);
                self.remote.insert(key.clone());
                self.nodes[n].layers.insert(key);
                self.upload_index(n);
            }
            Action::Unlink(n, pick) => {
                let Some(generation) = self.nodes[n].generation else { return };
                let node = &self.nodes[n];
                let Some(key) = node.layers.iter().nth(pick % node.layers.len().max(1)).cloned()
                else {
                    return;
                };
                self.nodes[n].layers.remove(&key);
                self.upload_index(n); // S-DEL-AFTER-INDEX: the index first
                let step = self.step;
                let node = &mut self.nodes[n];
                node.pushed.insert(key.clone(), (step, vec![generation]));
                node.pushed_now.push(key.clone());
                node.q.as_mut().unwrap().handle_push(now, T, TL, generation, vec![key]);
            }
            Action::Ingest(n) => {
                let Some(generation) = self.nodes[n].generation else { return };
                self.nodes[n].projected = Lsn(self.nodes[n].projected.0 + 1);
                self.upload_index(n);
                let node = &mut self.nodes[n];
                let lsn = node.projected;
                node.q.as_mut().unwrap().handle_push_lsn_update(now, T, TL, generation, lsn);
            }
            Action::Migrate => {
                let to = match self.holder() {
                    Some(NodeId(0)) => 1,
                    _ => 0,
                };
                if self.nodes[to].q.is_some() {
                    self.attach(to);
                }
            }
            Action::Crash(n, bits) => {
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
            Action::Restart(n) => {
                if self.nodes[n].q.is_some() {
                    return;
                }
                let node_id = NodeId(n as u64);
                let reply =
                    self.cp_request(|cp, req| cp.handle_re_attach(Instant::ZERO, req, node_id));
                let ControlPlaneReply::ReAttached { tenants } = reply else { panic!("{reply:?}") };
                let attached: BTreeMap<TenantId, ReAttachedTenant> =
                    tenants.into_iter().map(|t| (t.tenant, t)).collect();
                let node = &mut self.nodes[n];
                let header =
                    node.header.as_ref().map(|b| DeletionHeader::from_json_bytes(b).unwrap());
                let lists =
                    node.disk.values().map(|b| DeletionList::from_json_bytes(b).unwrap()).collect();
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
            Action::DeliverValidate(pick) => {
                if self.to_cp.is_empty() {
                    return;
                }
                let (n, inc, op, pairs) = self.to_cp.remove(pick % self.to_cp.len());
                let reply = self
                    .cp_request(|cp, req| cp.handle_validate(Instant::ZERO, req, pairs.clone()));
                let ControlPlaneReply::Validated { results } = reply else { panic!("{reply:?}") };
                let valid =
                    pairs.iter().zip(&results).filter(|(_, r)| r.1).map(|(p, _)| *p).collect();
                self.nodes[n].evaluated.push((self.step, valid));
                self.to_node.push((n, inc, op, results));
            }
            Action::DeliverReply(pick) => {
                if self.to_node.is_empty() {
                    return;
                }
                let (n, inc, op, results) = self.to_node.remove(pick % self.to_node.len());
                let node = &mut self.nodes[n];
                if node.incarnation == inc
                    && let Some(q) = node.q.as_mut()
                {
                    q.handle_validation(now, op, results).unwrap();
                }
            }
            Action::CompleteIo(n, pick, ok) => {
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
                let result = if ok {
                    self.land(n, &effect);
                    Ok(())
                } else {
                    Err(IoError::remote(IoErrorKind::Transient, "k", "injected"))
                };
                self.nodes[n].q.as_mut().unwrap().handle_completion(now, op, result).unwrap();
            }
            Action::Tick(ms) => {
                self.now = self.now.plus_millis(ms);
                for node in &mut self.nodes {
                    if let Some(q) = node.q.as_mut() {
                        while let Some((at, timer)) = q.next_timer()
                            && at <= self.now
                        {
                            q.handle_timeout(self.now, timer);
                        }
                    }
                }
            }
            Action::Flush(n) => {
                if let Some(q) = self.nodes[n].q.as_mut() {
                    q.handle_flush_advisory(now);
                }
            }
        }
        self.drain();
        self.check();
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
                    DeletionEffect::Report(_) | DeletionEffect::FlushDone { .. } => {}
                }
            }
            if let Some(q) = &self.nodes[n].q {
                q.check_invariants();
            }
        }
    }

    fn check(&self) {
        let (layers, _) = self.indexes.values().next_back().cloned().unwrap_or_default();
        for key in &layers {
            assert!(
                self.remote.contains(key),
                "deleted {key:?}, which the latest index references"
            );
        }
    }

    /// Heals every fault and runs until nothing moves.
    fn heal(&mut self) {
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn two_nodes_share_a_tenant_through_migrations_and_crashes(
        actions in prop::collection::vec(action(), 1..120)
    ) {
        let mut w = World::new();
        for a in actions {
            w.apply(a);
        }
        w.heal();
        // L-DELETE: the current holder's deletions of its current generation ran.
        let holder = w.holder().expect("the tenant stays attached").0 as usize;
        let node = &w.nodes[holder];
        for key in &node.pushed_now {
            prop_assert!(!w.remote.contains(key), "L-DELETE: {key:?} was never deleted");
        }
        w.check();
    }
}
