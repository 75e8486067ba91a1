//! The tenant manager's reference world: location_config, create and delete
//! requests for two tenants (with the tenant machine saying broken or not), settled
//! slots offered from outside, and the node finishing each step in flight with its
//! output, a failure of any kind, the wrong kind of output, or a completion for a
//! tenant with no step in flight. A control plane of the world grants generations
//! (each above the last and above what the step asks). Checked after every input:
//! - [`TenantManager::check_invariants`];
//! - S-NO-DEADLOCK from outside: a tenant is `InProgress` exactly while the world
//!   holds one step of it to finish, and never more than one;
//! - every request is answered exactly once; an `Ok` answer describes the slot as it
//!   now is, and an attached slot carries the generation the world granted last;
//! - a tenant's attached generation never goes back on this node;
//! - a detach renames the directory to a number no other detach used, and its
//!   background removal names that same number;
//! - an illegal completion is a typed error that changes nothing;
//! - at the end (every step finished Ok) no operation is left and every request
//!   is answered.
//!
//! Compiled for tests (`tests.rs` draws actions with proptest) and under the
//! `fuzzing` feature (the `tenant_manager` fuzz target draws them with
//! `arbitrary`). Every input reaches the manager through [`TenantManager::handle`].

use super::manager::*;
use crate::control_plane::{CallFailure, RemoteTenantFound};
use crate::generation::Generation;
use crate::id::TenantId;
use crate::io_error::{IoError, IoErrorKind, IoTarget};
use crate::location_conf::LocationMode;
use crate::node::api::RequestId;
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

const TENANTS: u8 = 2;

/// One step of the world. Tenant picks are taken modulo [`TENANTS`].
#[derive(Clone, Debug)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Action {
    /// Tenant, mode pick, generation pick, the tenant machine says broken.
    Location(u8, u8, u8, bool),
    Create(u8),
    /// Tenant, the tenant machine says broken.
    Delete(u8, bool),
    /// Tenant, mode pick: a settled slot from start-up or a create.
    Settled(u8, u8),
    /// Tenant, mode pick: start-up loads the tenant (`handle_load`) on a generation
    /// the world's re-attach grants; refused, changing nothing, while busy or for a
    /// secondary mode.
    Load(u8, u8),
    /// The step in flight of the tenant finishes with its output (a `CheckRemote`
    /// finds something when the flag is set).
    StepOk(u8, bool),
    /// The step in flight fails, with a failure picked by the byte.
    StepFailed(u8, u8),
    /// The step in flight answered with the wrong kind of output (or a tenant with
    /// no step in flight answered at all).
    StepWrong(u8),
}

pub struct World {
    m: TenantManager,
    now: Instant,
    /// The step of each tenant the node is carrying out.
    steps: BTreeMap<TenantId, Step>,
    /// Requests sent and not yet answered.
    asked: BTreeMap<RequestId, TenantId>,
    next_req: u64,
    /// The control plane: the last generation granted per tenant.
    granted: BTreeMap<TenantId, Generation>,
    /// The highest attached generation each tenant ever had on this node.
    attached_high: BTreeMap<TenantId, Generation>,
    /// Directory numbers renamed to, and the tenant's last one.
    renamed: BTreeSet<DetachedDir>,
    last_rename: BTreeMap<TenantId, DetachedDir>,
}

pub fn run(actions: Vec<Action>) {
    let mut w = World::new();
    for action in actions {
        w.apply(action);
    }
    w.finish();
}

fn tenant(t: u8) -> TenantId {
    TenantId([t % TENANTS + 1; 16])
}

fn requested(pick: u8) -> RequestedMode {
    match pick % 6 {
        0 => RequestedMode::AttachedSingle,
        1 => RequestedMode::AttachedMulti,
        2 => RequestedMode::AttachedStale,
        3 => RequestedMode::Secondary { warm: false },
        4 => RequestedMode::Secondary { warm: true },
        _ => RequestedMode::Detached,
    }
}

fn failure(pick: u8) -> StepError {
    match pick % 4 {
        0 => StepError::Io(IoError::new(IoErrorKind::Transient, IoTarget::Store, "disk")),
        1 => StepError::ControlPlane(CallFailure::Unreachable("down".into())),
        2 => StepError::GenerationConflict("a newer generation in remote storage".into()),
        _ => StepError::LoadFailed { tenant: tenant(0), reason: "listing failed".into() },
    }
}

impl World {
    fn new() -> Self {
        World {
            m: TenantManager::recover(BTreeMap::new()),
            now: Instant::ZERO,
            steps: BTreeMap::new(),
            asked: BTreeMap::new(),
            next_req: 0,
            granted: BTreeMap::new(),
            attached_high: BTreeMap::new(),
            renamed: BTreeSet::new(),
            last_rename: BTreeMap::new(),
        }
    }

    pub fn apply(&mut self, action: Action) {
        self.now = self.now.plus_millis(1);
        match action {
            Action::Location(t, mode, g, broken) => {
                let (tenant, req) = (tenant(t), self.ask(tenant(t)));
                let generation = self.pick_generation(tenant, g);
                let request = LocationRequest::new(requested(mode), generation);
                let broken = broken.then(|| "a handler panicked".to_string());
                self.feed(ManagerInput::LocationConfig { req, tenant, request, broken });
            }
            Action::Create(t) => {
                let (tenant, req) = (tenant(t), self.ask(tenant(t)));
                self.feed(ManagerInput::CreateTenant { req, tenant });
            }
            Action::Delete(t, broken) => {
                let (tenant, req) = (tenant(t), self.ask(tenant(t)));
                let broken = broken.then(|| "a handler panicked".to_string());
                self.feed(ManagerInput::DeleteTenant { req, tenant, broken });
            }
            Action::Settled(t, mode) => self.settle_slot(tenant(t), mode),
            Action::Load(t, mode) => self.load(tenant(t), mode),
            Action::StepOk(t, found) => {
                let tenant = tenant(t);
                let Some(step) = self.steps.get(&tenant).cloned() else { return };
                let output = self.output(tenant, &step, found);
                self.steps.remove(&tenant);
                self.feed(ManagerInput::StepDone { tenant, result: Ok(output) });
            }
            Action::StepFailed(t, pick) => {
                let tenant = tenant(t);
                if self.steps.remove(&tenant).is_some() {
                    let result = Err(failure(pick));
                    self.feed(ManagerInput::StepDone { tenant, result });
                }
            }
            Action::StepWrong(t) => self.wrong_completion(tenant(t)),
        }
    }

    fn ask(&mut self, tenant: TenantId) -> RequestId {
        self.next_req += 1;
        let req = RequestId(self.next_req);
        self.asked.insert(req, tenant);
        req
    }

    /// None, the one held, one older, or one newer.
    fn pick_generation(&self, tenant: TenantId, pick: u8) -> Option<Generation> {
        let held = self.granted.get(&tenant).map_or(1, |g| g.get());
        match pick % 4 {
            0 | 1 => None,
            2 => Generation::new(held.saturating_sub(1).max(1)),
            _ => Generation::new(held + u32::from(pick / 4 % 3)),
        }
    }

    /// What the node answers for `step` when it succeeds.
    fn output(&mut self, tenant: TenantId, step: &Step, found: bool) -> StepOutput {
        match step {
            Step::CheckRemote => {
                let objects = usize::from(found);
                StepOutput::Found(RemoteTenantFound { objects, ..RemoteTenantFound::default() })
            }
            Step::AcquireGeneration { at_least } => {
                let next = self.granted.get(&tenant).map_or(1, |g| g.get() + 1);
                let g = at_least.map_or(next, |a| a.get().max(next));
                let g = Generation::new(g).expect("nonzero");
                self.granted.insert(tenant, g);
                StepOutput::Generation(g)
            }
            _ => StepOutput::Done,
        }
    }

    fn settle_slot(&mut self, tenant: TenantId, pick: u8) {
        let busy = matches!(self.m.slot(tenant), Some(Slot::InProgress(_)));
        let slot = match pick % 3 {
            // (A busy manager refuses it: no generation is granted for it then.)
            0 | 2 if busy => Slot::secondary(pick & 8 != 0),
            0 => Slot::secondary(pick & 8 != 0),
            1 => Slot::Broken { reason: "config-v1 unreadable".into() },
            _ => {
                let g =
                    match self.output(tenant, &Step::AcquireGeneration { at_least: None }, false) {
                        StepOutput::Generation(g) => g,
                        other => unreachable!("{other:?}"),
                    };
                Slot::Attached {
                    mode: LocationMode::AttachedSingle { generation: g },
                    broken: None,
                }
            }
        };
        let out = self.m.handle(self.now, ManagerInput::Settled { tenant, slot });
        assert_eq!(out.is_err(), busy, "a settled slot is refused exactly while busy: {out:?}");
        self.check();
    }

    /// Start-up loads `tenant`: accepted exactly when nothing runs on it and the
    /// mode is attached; a refusal changes nothing.
    fn load(&mut self, tenant: TenantId, pick: u8) {
        let busy = matches!(self.m.slot(tenant), Some(Slot::InProgress(_)));
        let mode = match requested(pick) {
            RequestedMode::Secondary { warm } => LocationMode::Secondary { warm },
            requested => {
                if busy {
                    // Re-attach grants nothing for a tenant the node is busy with.
                    return self.check();
                }
                let StepOutput::Generation(generation) =
                    self.output(tenant, &Step::AcquireGeneration { at_least: None }, false)
                else {
                    unreachable!("a grant")
                };
                // A Detached pick loads AttachedSingle, the mode start-up loads by default.
                with_generation(requested, generation)
                    .unwrap_or(LocationMode::AttachedSingle { generation })
            }
        };
        let before = self.m.slot(tenant).cloned();
        match self.m.handle(self.now, ManagerInput::Load { tenant, mode }) {
            Ok(()) => {
                assert!(mode.generation().is_some() && !busy, "{mode:?} loaded while busy");
                self.feed_effects();
            }
            Err(e) => {
                assert_eq!(self.m.slot(tenant), before.as_ref(), "a refused load changed it: {e}");
                self.check();
            }
        }
    }

    /// A completion that fits nothing: refused, typed, nothing changed.
    fn wrong_completion(&mut self, tenant: TenantId) {
        let before = self.m.slot(tenant).cloned();
        let result = match self.steps.get(&tenant) {
            None => Ok(StepOutput::Done),
            Some(Step::CheckRemote | Step::AcquireGeneration { .. }) => Ok(StepOutput::Done),
            Some(_) => return,
        };
        let out = self.m.handle(self.now, ManagerInput::StepDone { tenant, result });
        let expected = match (self.steps.get(&tenant), &before) {
            (None, Some(Slot::InProgress(_))) => ManagerInputError::NoStepInFlight(tenant),
            (None, _) => ManagerInputError::NoOperation(tenant),
            (Some(Step::CheckRemote), _) => ManagerInputError::MissingFound(tenant),
            (Some(_), _) => ManagerInputError::MissingGeneration(tenant),
        };
        assert_eq!(out, Err(ManagerHandleError::Input(expected)));
        assert_eq!(self.m.slot(tenant), before.as_ref(), "a refused completion changed the slot");
        self.check();
    }

    fn feed(&mut self, input: ManagerInput) {
        self.m.handle(self.now, input).expect("the world completes only steps in flight");
        self.feed_effects();
    }

    /// Takes every effect of the manager: steps to carry out, replies to check.
    fn feed_effects(&mut self) {
        while let Some(effect) = self.m.poll_effect() {
            match effect {
                ManagerEffect::Step { tenant, step: Step::RemoveLocalDir { dir } } => {
                    assert_eq!(self.last_rename.get(&tenant), Some(&dir), "removes another dir");
                    assert!(self.m.slot(tenant).is_none(), "a background removal of a live slot");
                }
                ManagerEffect::Step { tenant, step } => {
                    if let Step::RenameLocalDir { dir } = step {
                        assert!(self.renamed.insert(dir), "{dir:?} renamed to twice");
                        self.last_rename.insert(tenant, dir);
                    }
                    let before = self.steps.insert(tenant, step.clone());
                    assert!(before.is_none(), "{tenant}: {step:?} while {before:?} is in flight");
                }
                ManagerEffect::Reply { req, tenant, result } => {
                    let asked = self.asked.remove(&req);
                    assert_eq!(asked, Some(tenant), "{req:?} answered twice or for another");
                    if let Ok(outcome) = result {
                        self.answered(tenant, outcome);
                    }
                }
            }
        }
        self.check();
    }

    /// An `Ok` answer describes the slot as it now is.
    fn answered(&self, tenant: TenantId, outcome: LocationOutcome) {
        let placement = match outcome {
            LocationOutcome::Unchanged(p) | LocationOutcome::Changed(p) => p,
            LocationOutcome::Created(p) => p,
        };
        let slot = self.m.slot(tenant);
        match placement {
            Placement::Detached => assert!(slot.is_none(), "detached, slot {slot:?}"),
            Placement::Located(LocationMode::Secondary { warm }) => {
                assert!(matches!(slot, Some(Slot::Secondary { warm: w, .. }) if *w == warm));
            }
            Placement::Located(mode) => {
                let Some(Slot::Attached { mode: held, broken: None }) = slot else {
                    panic!("answered {mode:?}, slot {slot:?}")
                };
                assert_eq!(*held, mode);
                let g = mode.generation();
                assert_eq!(g, self.granted.get(&tenant).copied(), "not the generation granted");
            }
        }
    }

    fn check(&mut self) {
        self.m.check_invariants();
        for (tenant, slot) in self.m.slots() {
            let busy = matches!(slot, Slot::InProgress(_));
            assert_eq!(busy, self.steps.contains_key(tenant), "{tenant}: S-NO-DEADLOCK {slot:?}");
            if let Slot::Attached { mode, .. } = slot {
                let g = mode.generation().expect("attached");
                let high = self.attached_high.entry(*tenant).or_insert(g);
                assert!(g >= *high, "{tenant}: attached at {g} after {high}");
                *high = g;
            }
        }
        for tenant in self.steps.keys() {
            assert!(
                matches!(self.m.slot(*tenant), Some(Slot::InProgress(_))),
                "{tenant}: a step in flight without an operation"
            );
        }
    }

    /// Every step finishes Ok: no operation is left, every request is answered.
    fn finish(&mut self) {
        for _ in 0..100 {
            let Some(tenant) = self.steps.keys().next().copied() else { break };
            let t = tenant.0[0] - 1;
            self.apply(Action::StepOk(t, false));
        }
        assert!(self.steps.is_empty(), "steps never end: {:?}", self.steps);
        assert_eq!(self.m.in_progress(), 0);
        assert!(self.asked.is_empty(), "requests never answered: {:?}", self.asked);
    }
}
