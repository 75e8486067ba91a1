//! The reconciler's model world: three nodes with the tenant manager's
//! location_config rules for one tenant, the control plane's generation table (and
//! the driver's attach fence), the store of migration rows, and an ingest client
//! that follows the re-send contract (it writes to the newest attached, non-stale
//! node; the table's holder makes what it ingested visible).
//!
//! Driven by fixed scenarios and a seeded property test (`tests.rs`) and by the
//! `migration` fuzz target, whose bytes become [`Action`]s: starts to any node,
//! calls carried in any order and answered with the node's answer, the answer lost,
//! or a failure of each kind without reaching the node; persists landed or not and
//! answered Ok, with each I/O failure kind, or never (a lost completion: the
//! machine waits until a crash); timers, time passing, nodes going down and coming
//! back (a restart bumps the holder's generation), ingest, and crashes of the
//! reconciler (dropped, [`MigrationReconciler::recover`]ed from the store's rows).
//!
//! Checked after every step: [`MigrationReconciler::check_invariants`]; the
//! store's phase never goes back within a migration; a node is told
//! `AttachedSingle` only in `FinalizeDestination`, and the origin is told no
//! attached mode but `AttachedStale` below the destination's generation. At the end (faults healed,
//! a lost persist ended by a crash) the last durable migration finishes: the
//! destination holds the tenant AttachedSingle at the table's generation, the
//! origin nothing current, and what was visible reads on the destination.
//!
//! Compiled for tests and under the `fuzzing` feature (with `Arbitrary` for
//! [`Action`]).

use super::*;
use crate::control_plane::TenantRecord;
use crate::generation::Generation;
use crate::id::TimelineId;
use crate::io_error::{IoErrorKind, IoTarget};
use crate::location_conf::LocationMode;
use crate::lsn::Lsn;
use crate::tenant::manager::Plan;
use crate::tenant::{DetachedDir, LocationRequest, Placement, RequestedMode, Step, plan};
use crate::upload_queue::harness::fail_kind;

pub(super) const T: TenantId = TenantId([7; 16]);
pub(super) const TL: TimelineId = TimelineId([9; 16]);
pub(super) const O: NodeId = NodeId(1);
pub(super) const D: NodeId = NodeId(2);

pub(super) fn g(n: u32) -> Generation {
    Generation::new(n).unwrap()
}

pub(super) fn mode_at(mode: RequestedMode, generation: Generation) -> LocationMode {
    match mode {
        RequestedMode::AttachedSingle => LocationMode::AttachedSingle { generation },
        RequestedMode::AttachedMulti => LocationMode::AttachedMulti { generation },
        RequestedMode::AttachedStale => LocationMode::AttachedStale { generation },
        other => panic!("{other:?} has no generation"),
    }
}

pub(super) fn same_mode_at(mode: LocationMode, generation: Generation) -> LocationMode {
    match mode {
        LocationMode::AttachedSingle { .. } => LocationMode::AttachedSingle { generation },
        LocationMode::AttachedMulti { .. } => LocationMode::AttachedMulti { generation },
        LocationMode::AttachedStale { .. } => LocationMode::AttachedStale { generation },
        secondary => secondary,
    }
}

/// One node's view of the tenant.
#[derive(Clone, Debug)]
pub(super) struct ModelNode {
    pub(super) up: bool,
    pub(super) placement: Placement,
    pub(super) last_ingested: Lsn,
    pub(super) visible: Lsn,
}

pub struct World {
    pub(super) rc: MigrationReconciler,
    pub(super) config: MigrationConfig,
    pub(super) now: Instant,
    /// The control plane's table for T: generation and holder.
    pub(super) table: (Generation, Option<NodeId>),
    pub(super) nodes: BTreeMap<NodeId, ModelNode>,
    /// Remote storage's visible LSN (what any attach loads).
    pub(super) remote_visible: Lsn,
    /// What the client produced; it keeps every record until visible.
    pub(super) produced: Lsn,
    pub(super) store: BTreeMap<TenantId, MigrationRecord>,
    pub(super) calls: Vec<(OpId, NodeId, NodeCall)>,
    pub(super) persists: Vec<(OpId, MigrationRecord)>,
    pub(super) replies: Vec<Result<MigrationRecord, MigrationError>>,
    /// Every durable phase seen, in order (checks the order).
    pub(super) phases: Vec<Phase>,
    /// Attaches refused by the fence (the driver's rule).
    pub(super) fenced: u64,
    /// A persist's completion was lost: the machine waits on it until a crash.
    pub(super) lost_persist: bool,
}

/// One step of the world. Node and call picks are taken modulo their number.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Action {
    /// A start to this node, the origin ending detached (else Secondary warm).
    Start(u8, bool),
    /// Carries this call; the node's answer reaches the machine (else it is lost).
    Call(u8, bool),
    /// This call fails without reaching its node ([`World::fail_call`]).
    CallFailed(u8, u8),
    /// The persist in flight lands and is answered Ok.
    PersistOk,
    /// The persist in flight lands or not and fails with this kind ([`fail_kind`]).
    PersistFailed(bool, u8),
    /// The persist in flight lands or not; its completion is lost.
    PersistLost(bool),
    /// The next timer fires.
    Timer,
    /// Time passes (ms).
    Advance(u16),
    /// The reconciler dies and recovers from the store.
    Crash,
    /// This node goes down, or comes back (restarting).
    Toggle(u8),
    /// This node restarts.
    Restart(u8),
    Ingest,
}

/// Runs `actions` from a fresh world with short timeouts, then heals (a lost
/// persist ended by a crash, every node back) and checks that the last durable
/// migration finishes.
pub fn run(actions: Vec<Action>) {
    let mut w = World::new();
    w.config.call_timeout_ms = 1_000;
    w.config.catch_up_timeout_ms = 5_000;
    w.config.origin_give_up_ms = 5_000;
    w.rc = MigrationReconciler::recover(w.config.clone(), Vec::new(), w.now);
    for action in actions {
        w.apply(action);
        w.rc.check_invariants();
    }
    w.heal_and_finish();
}

impl World {
    pub(super) fn new() -> Self {
        let config = MigrationConfig::default();
        let mut nodes = BTreeMap::new();
        let attached = Placement::Located(LocationMode::AttachedSingle { generation: g(3) });
        nodes.insert(
            O,
            ModelNode { up: true, placement: attached, last_ingested: Lsn(100), visible: Lsn(80) },
        );
        for n in [D, NodeId(3)] {
            let detached = ModelNode {
                up: true,
                placement: Placement::Detached,
                last_ingested: Lsn(0),
                visible: Lsn(0),
            };
            nodes.insert(n, detached);
        }
        World {
            rc: MigrationReconciler::recover(config.clone(), Vec::new(), Instant::ZERO),
            config,
            now: Instant::ZERO,
            table: (g(3), Some(O)),
            nodes,
            remote_visible: Lsn(80),
            produced: Lsn(100),
            store: BTreeMap::new(),
            calls: Vec::new(),
            persists: Vec::new(),
            replies: Vec::new(),
            phases: Vec::new(),
            fenced: 0,
            lost_persist: false,
        }
    }

    /// Feeds one action.
    pub fn apply(&mut self, action: Action) {
        let node = |n: u8| NodeId(u64::from(n % 3) + 1);
        let pick = |i: u8, len: usize| usize::from(i) % len;
        match action {
            Action::Start(to, detach) => {
                let after = if detach { OriginAfter::Detached } else { OriginAfter::SecondaryWarm };
                self.start_to(node(to), after);
            }
            Action::Call(i, answered) if !self.calls.is_empty() => {
                self.deliver_call(pick(i, self.calls.len()), !answered);
            }
            Action::CallFailed(i, how) if !self.calls.is_empty() => {
                self.fail_call(pick(i, self.calls.len()), how);
            }
            Action::PersistOk if !self.persists.is_empty() => {
                self.complete_persist(0, true, Some(Ok(())));
            }
            Action::PersistFailed(applied, kind) if !self.persists.is_empty() => {
                self.complete_persist(0, applied, Some(Err(fail_kind(kind))));
            }
            Action::PersistLost(applied) if !self.persists.is_empty() => {
                self.complete_persist(0, applied, None);
                self.lost_persist = true;
            }
            Action::Timer => {
                self.fire_next_timer();
            }
            Action::Advance(ms) => self.now = self.now.plus_millis(u64::from(ms)),
            Action::Crash => self.crash_reconciler(),
            Action::Toggle(n) => {
                let node = node(n);
                let up = !self.nodes[&node].up;
                if up {
                    self.restart_node(node);
                }
                self.nodes.get_mut(&node).expect("a node of the world").up = up;
            }
            Action::Restart(n) => self.restart_node(node(n)),
            Action::Ingest => self.ingest(),
            _ => {}
        }
    }

    /// Heals (a lost persist ended by a crash, every node back) and checks that
    /// the last durable migration finishes. The fence may have refused an attach
    /// (a late call, or a node other than the destination); the reconciler observes
    /// again and goes on.
    pub fn heal_and_finish(&mut self) {
        if self.lost_persist || !self.persists.is_empty() {
            self.crash_reconciler();
        }
        for node in [O, D, NodeId(3)] {
            if !self.nodes[&node].up {
                self.restart_node(node);
            }
        }
        if self.store.is_empty() {
            return; // no start became durable
        }
        self.settle(20_000);
        self.check_finished();
    }

    /// Starts moving T from O to D.
    #[cfg(test)]
    pub(super) fn start(&mut self, after: OriginAfter) {
        self.start_to(D, after);
    }

    /// Starts moving T from the table's holder (O when none) to `destination`.
    pub(super) fn start_to(&mut self, destination: NodeId, after: OriginAfter) {
        let start = MigrationStart {
            tenant: T,
            origin: self.table.1.unwrap_or(O),
            origin_generation: self.table.0,
            destination,
            origin_after: after,
        };
        self.rc.handle_start(self.now, RequestId(1), start);
        self.drain();
    }

    pub(super) fn drain(&mut self) {
        self.rc.check_invariants();
        while let Some(effect) = self.rc.poll_effect() {
            match effect {
                MigrationEffect::Persist { op, record } => self.persists.push((op, record)),
                MigrationEffect::Call { op, node, call, .. } => {
                    self.check_call(node, &call);
                    self.calls.push((op, node, call));
                }
                MigrationEffect::Reply { result, .. } => {
                    if let Ok(record) = &result {
                        let durable = self.store.get(&record.tenant);
                        assert_eq!(durable, Some(record), "a start answered before durable");
                    }
                    self.replies.push(result);
                }
            }
        }
        self.rc.check_invariants();
    }

    /// The world's rules for a call as the reconciler issues it: AttachedSingle
    /// only to the destination in `FinalizeDestination`; to the origin no attached
    /// mode but `AttachedStale`, below the destination's generation.
    fn check_call(&self, node: NodeId, call: &NodeCall) {
        let NodeCall::LocationConfig(request) = call else { return };
        let record = self.rc.migration(T).and_then(|m| m.record).expect("a call before durable");
        let phase = &record.phase;
        if request.mode == RequestedMode::AttachedSingle {
            assert!(
                node == record.destination && matches!(phase, Phase::FinalizeDestination { .. }),
                "AttachedSingle to {node} in phase {}",
                phase.name()
            );
        }
        let attached = matches!(
            request.mode,
            RequestedMode::AttachedSingle
                | RequestedMode::AttachedMulti
                | RequestedMode::AttachedStale
        );
        if node == record.origin && attached {
            assert_eq!(request.mode, RequestedMode::AttachedStale, "the origin told {request:?}");
            let (Some(g), Some(dg)) = (request.generation, phase.destination_generation()) else {
                panic!("the origin told {request:?} in phase {}", phase.name());
            };
            assert!(g < dg, "the origin told AttachedStale at {g}, not below {dg}");
        }
    }

    /// The control plane's `/attach`, as a node's AcquireGeneration asks it, behind
    /// the drivers' fence ([`MigrationReconciler::attach_fence`]).
    pub(super) fn acquire(
        &mut self,
        node: NodeId,
        at_least: Option<Generation>,
    ) -> Result<Generation, String> {
        let reported = at_least.and_then(Generation::previous);
        let (generation, attached_to) = self.table;
        let record = TenantRecord { tenant: T, generation, attached_to };
        if let Err(refusal) = self.rc.attach_fence(Some(&record), T, node, reported) {
            self.fenced += 1;
            return Err(refusal.to_string());
        }
        let above = reported.map_or(self.table.0, |r| r.max(self.table.0));
        let granted = above.next().unwrap();
        self.table = (granted, Some(node));
        Ok(granted)
    }

    /// A node's location_config: the tenant manager's own mode table ([`plan`]) for
    /// one healthy tenant, its steps carried out at once.
    pub(super) fn location_config(
        &mut self,
        node: NodeId,
        request: LocationRequest,
    ) -> Result<Placement, NodeCallError> {
        let held = self.nodes[&node].placement;
        let refused = |e: String| NodeCallError::Refused(e);
        let (steps, keep) = match plan(T, held, true, request, DetachedDir(1)) {
            Err(e) => return Err(refused(e.to_string())),
            Ok(Plan::Unchanged(placement)) => return Ok(placement),
            Ok(Plan::Run { steps, keep_generation, .. }) => (steps, keep_generation),
        };
        if steps.contains(&Step::ReleaseGeneration) && self.table.1 == Some(node) {
            self.table.1 = None; // a node-scoped release
        }
        let acquired = steps.iter().find_map(|s| match s {
            Step::AcquireGeneration { at_least } => Some(*at_least),
            _ => None,
        });
        let placement = match request.mode {
            RequestedMode::Secondary { warm } => {
                Placement::Located(LocationMode::Secondary { warm })
            }
            RequestedMode::Detached => Placement::Detached,
            mode => {
                let generation = match acquired {
                    Some(at_least) => {
                        let granted = self.acquire(node, at_least).map_err(refused)?;
                        let n = self.nodes.get_mut(&node).unwrap();
                        n.visible = self.remote_visible;
                        n.last_ingested = self.remote_visible;
                        granted
                    }
                    None => keep.expect("a mode change keeps the held generation"),
                };
                Placement::Located(mode_at(mode, generation))
            }
        };
        self.nodes.get_mut(&node).unwrap().placement = placement;
        Ok(placement)
    }

    pub(super) fn status(&self, node: NodeId) -> NodeTenantStatus {
        let n = &self.nodes[&node];
        let mut timelines = BTreeMap::new();
        if matches!(n.placement, Placement::Located(m) if m.generation().is_some()) {
            timelines
                .insert(TL, TimelineLsns { last_ingested: n.last_ingested, visible: n.visible });
        }
        NodeTenantStatus { placement: n.placement, timelines }
    }

    /// Carries call `i`; `lose_answer` drops the answer (the call still happened).
    pub(super) fn deliver_call(&mut self, i: usize, lose_answer: bool) {
        // A call may arrive after its migration moved on or finished (its answer is
        // then dropped as late): the nodes' rules make it harmless, which the end
        // checks see.
        let (op, node, call) = self.calls.remove(i);
        let result = if !self.nodes[&node].up {
            Err(NodeCallError::Unreachable("connection refused".into()))
        } else {
            match call {
                NodeCall::Status => Ok(NodeAnswer::Status(self.status(node))),
                NodeCall::LocationConfig(request) => {
                    self.location_config(node, request).map(NodeAnswer::Placed)
                }
            }
        };
        if !lose_answer {
            self.rc.handle_node_answer(self.now, op, result).unwrap();
            self.drain();
        }
    }

    /// Call `i` fails without reaching its node: 0 unreachable, 1 busy, 2 refused.
    pub(super) fn fail_call(&mut self, i: usize, how: u8) {
        let (op, _, _) = self.calls.remove(i);
        let e = match how % 3 {
            0 => NodeCallError::Unreachable("connection reset".into()),
            1 => NodeCallError::Busy("503".into()),
            _ => NodeCallError::Refused("500".into()),
        };
        self.rc.handle_node_answer(self.now, op, Err(e)).unwrap();
        self.drain();
    }

    /// Carries persist `i`: `applied` decides the store, `answer` what the machine
    /// hears (`Some(false)`: a transient failure).
    pub(super) fn deliver_persist(&mut self, i: usize, applied: bool, answer: Option<bool>) {
        let answer = answer.map(|ok| if ok { Ok(()) } else { Err(IoErrorKind::Transient) });
        self.complete_persist(i, applied, answer);
    }

    /// Carries persist `i`: `applied` decides the store, `answer` what the machine
    /// hears (`None`: nothing, ever).
    pub(super) fn complete_persist(
        &mut self,
        i: usize,
        applied: bool,
        answer: Option<Result<(), IoErrorKind>>,
    ) {
        let (op, record) = self.persists.remove(i);
        if applied {
            match self.store.get(&T) {
                // A new migration after a finished one.
                Some(old)
                    if matches!(old.phase, Phase::Done { .. })
                        && record.phase == Phase::AttachDestination =>
                {
                    self.phases.clear();
                }
                Some(old) => {
                    assert!(record.phase.rank() >= old.phase.rank(), "the store's phase went back");
                }
                None => {}
            }
            self.phases.push(record.phase.clone());
            self.store.insert(record.tenant, record);
        }
        if let Some(answer) = answer {
            let result =
                answer.map_err(|kind| IoError::new(kind, IoTarget::Store, "disk I/O error"));
            self.rc.handle_persisted(self.now, op, result).unwrap();
            self.drain();
        }
    }

    /// The control plane crashes and restarts from its store.
    pub(super) fn crash_reconciler(&mut self) {
        self.lost_persist = false;
        self.calls.clear();
        self.persists.clear();
        self.rc = MigrationReconciler::recover(
            self.config.clone(),
            self.store.values().cloned().collect(),
            self.now,
        );
        self.drain();
    }

    /// A node restarts: re-attach bumps what the table says it holds; an attached
    /// tenant the table gives another node is dropped; unflushed ingest is lost.
    pub(super) fn restart_node(&mut self, node: NodeId) {
        let holder = self.table.1 == Some(node);
        let bumped = self.table.0.next().unwrap();
        let n = self.nodes.get_mut(&node).unwrap();
        if let Placement::Located(mode) = n.placement
            && mode.generation().is_some()
        {
            if holder {
                n.placement = Placement::Located(same_mode_at(mode, bumped));
                self.table.0 = bumped;
            } else {
                n.placement = Placement::Detached;
            }
        }
        n.last_ingested = self.remote_visible;
        n.visible = self.remote_visible;
    }

    /// The client: writes to the newest attached, non-stale node (re-sending from
    /// its last_ingested); nodes holding the table's generation upload and validate.
    pub(super) fn ingest(&mut self) {
        self.produced = Lsn(self.produced.0 + 10);
        let table = self.table;
        let target = self
            .nodes
            .iter()
            .filter(|(_, n)| n.up)
            .filter_map(|(id, n)| match n.placement {
                Placement::Located(LocationMode::AttachedStale { .. }) => None,
                Placement::Located(m) => m.generation().map(|g| (g, *id)),
                Placement::Detached => None,
            })
            .max();
        if let Some((_, id)) = target {
            self.nodes.get_mut(&id).unwrap().last_ingested = self.produced;
        }
        for (id, n) in self.nodes.iter_mut() {
            let current = matches!(n.placement, Placement::Located(m)
                if m.generation() == Some(table.0) && table.1 == Some(*id)
                    && !matches!(m, LocationMode::AttachedStale { .. }));
            if current && n.up {
                n.visible = n.last_ingested;
                self.remote_visible = self.remote_visible.max(n.visible);
            }
        }
    }

    /// One step with no faults: the first persist, else the first call, else the
    /// next timer. `false` when there was nothing to do.
    pub(super) fn step(&mut self) -> bool {
        if !self.persists.is_empty() {
            self.deliver_persist(0, true, Some(true));
        } else if !self.calls.is_empty() {
            self.deliver_call(0, false);
        } else {
            return self.fire_next_timer();
        }
        true
    }

    pub(super) fn fire_next_timer(&mut self) -> bool {
        let Some((at, timer)) = self.rc.next_timer() else { return false };
        self.now = self.now.max(at);
        self.rc.handle_timeout(self.now, timer);
        self.drain();
        true
    }

    /// Runs with no faults until the migration is Done; panics past `max_steps`.
    pub(super) fn settle(&mut self, max_steps: usize) {
        for n in self.nodes.values_mut() {
            n.up = true;
        }
        for _ in 0..max_steps {
            if self.rc.active_count() == 0 && self.calls.is_empty() && self.persists.is_empty() {
                return;
            }
            self.ingest();
            if self.persists.is_empty() && self.calls.is_empty() {
                self.now = self.now.plus_millis(1);
            }
            assert!(self.step(), "an active migration waits on nothing");
        }
        panic!("no progress: {:?}", self.rc.migration(T));
    }

    /// After the migration: its destination holds T AttachedSingle at the table's
    /// generation, its origin holds nothing current, and what was visible reads on
    /// the destination.
    pub(super) fn check_finished(&self) {
        let record = self.store.get(&T).expect("a durable record");
        let Phase::Done { generation } = record.phase else { panic!("not done: {record:?}") };
        let (origin, destination) = (record.origin, record.destination);
        // A restart of D after the migration bumps the table past the record's.
        assert_eq!(self.table.1, Some(destination), "the table does not give T to {destination}");
        assert!(self.table.0 >= generation, "the table went back below {generation}");
        assert_eq!(
            self.nodes[&destination].placement,
            Placement::Located(LocationMode::AttachedSingle { generation: self.table.0 })
        );
        if let Placement::Located(m) = self.nodes[&origin].placement
            && let Some(og) = m.generation()
        {
            assert!(og < self.table.0, "the origin holds {og}, not below {}", self.table.0);
        }
        let visible = self.nodes[&destination].visible;
        assert!(visible >= self.remote_visible, "visible data lost on {destination}");
        let ranks: Vec<u8> = self.phases.iter().map(Phase::rank).collect();
        assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "phases went back: {ranks:?}");
        assert!(generation > record.origin_generation);
    }
}
