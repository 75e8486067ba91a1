//! The steps of each phase: which call a step makes, what its answer decides, and
//! how a failure is retried or (for the origin) given up on. The table is in the
//! module doc of `migration`.

use super::{
    EventKind, MigrationEffect, MigrationReconciler, MigrationRecord, NodeAnswer, NodeCall,
    NodeTenantStatus, OriginAfter, Phase, Step, Wait,
};
use crate::generation::Generation;
use crate::id::{NodeId, TenantId, TimelineId};
use crate::location_conf::LocationMode;
use crate::lsn::Lsn;
use crate::tenant::{LocationRequest, Placement, RequestedMode};
use crate::time::Instant;
use std::collections::BTreeMap;

/// The generation an attached placement holds.
fn attached(placement: &Placement) -> Option<(LocationMode, Generation)> {
    match placement {
        Placement::Located(mode) => Some((*mode, mode.generation()?)),
        Placement::Detached => None,
    }
}

/// Panics if `step` does not belong to `phase` (a step of an earlier phase running
/// after a later one is durable would repeat an old effect).
pub(super) fn assert_step_in_phase(step: Step, phase: &Phase) {
    let ok = match phase {
        Phase::AttachDestination => {
            matches!(step, Step::ObserveDestination | Step::AttachDestination { .. })
        }
        Phase::StaleOrigin { .. } => matches!(
            step,
            Step::ObserveOrigin | Step::StaleOrigin { .. } | Step::ObserveStaleOrigin
        ),
        Phase::CatchUp { .. } => step == Step::ObserveCatchUp,
        Phase::DemoteOrigin { .. } => step == Step::DemoteOrigin,
        Phase::FinalizeDestination { .. } => {
            matches!(step, Step::ObserveFinal | Step::FinalizeDestination { .. })
        }
        Phase::Done { .. } => false,
    };
    assert!(ok, "step {step:?} runs in phase {}", phase.name());
}

impl MigrationReconciler {
    fn record(&self, tenant: TenantId) -> &MigrationRecord {
        let m = self.active.get(&tenant).expect("an active migration");
        m.durable.as_ref().expect("steps run only once the migration is durable")
    }

    /// The node a step calls.
    pub(super) fn step_node(&self, tenant: TenantId, step: Step) -> NodeId {
        let record = self.record(tenant);
        match step {
            Step::ObserveDestination
            | Step::AttachDestination { .. }
            | Step::ObserveCatchUp
            | Step::ObserveFinal
            | Step::FinalizeDestination { .. } => record.destination,
            Step::ObserveOrigin
            | Step::StaleOrigin { .. }
            | Step::ObserveStaleOrigin
            | Step::DemoteOrigin => record.origin,
        }
    }

    fn step_call(&self, tenant: TenantId, step: Step) -> NodeCall {
        let lc =
            |mode, generation| NodeCall::LocationConfig(LocationRequest::new(mode, generation));
        match step {
            Step::ObserveDestination
            | Step::ObserveOrigin
            | Step::ObserveStaleOrigin
            | Step::ObserveCatchUp
            | Step::ObserveFinal => NodeCall::Status,
            Step::AttachDestination { at_least, convert } => {
                // Attach only, unless D was seen attached in another mode: delivered
                // late, after D became AttachedSingle at this generation, an
                // attach-only call leaves D as it is.
                let request = LocationRequest::new(RequestedMode::AttachedMulti, Some(at_least));
                NodeCall::LocationConfig(LocationRequest { attach_only: !convert, ..request })
            }
            Step::StaleOrigin { generation } => lc(RequestedMode::AttachedStale, Some(generation)),
            Step::DemoteOrigin => {
                // Names the newest generation it demotes (below the destination's): a
                // late delivery to an origin that attached again since is refused.
                let record = self.record(tenant);
                let below = record.phase.destination_generation().and_then(|g| g.previous());
                match record.origin_after {
                    OriginAfter::SecondaryWarm => {
                        lc(RequestedMode::Secondary { warm: true }, below)
                    }
                    OriginAfter::Detached => lc(RequestedMode::Detached, below),
                }
            }
            Step::FinalizeDestination { generation } => {
                lc(RequestedMode::AttachedSingle, generation)
            }
        }
    }

    /// A record is durable: answer the start, then run the phase (or finish).
    pub(super) fn on_durable(&mut self, now: Instant, tenant: TenantId, record: MigrationRecord) {
        let m = self.active.get_mut(&tenant).expect("an active migration");
        m.durable = Some(record.clone());
        m.failures = 0;
        m.phase_started = now;
        if let Some(req) = m.start_req.take() {
            self.effects.push_back(MigrationEffect::Reply { req, result: Ok(record.clone()) });
        }
        self.event(now, tenant, EventKind::Phase(record.phase.clone()));
        if matches!(record.phase, Phase::Done { .. }) {
            let m = self.active.remove(&tenant).expect("checked above");
            self.stats.finished_total += 1;
            self.finished.insert(tenant, (record, m.events));
            return;
        }
        self.begin_phase(now, tenant);
    }

    /// The first step of the durable phase.
    pub(super) fn begin_phase(&mut self, now: Instant, tenant: TenantId) {
        let step = self.first_step(tenant);
        self.run_step(now, tenant, step);
    }

    /// The durable phase's first step: an observation wherever the phase acts on
    /// what a node holds. A failed step starts its phase over from here, so a retry
    /// acts on what the node holds now (a restart may have bumped its generation).
    fn first_step(&self, tenant: TenantId) -> Step {
        match self.record(tenant).phase {
            Phase::AttachDestination => Step::ObserveDestination,
            Phase::StaleOrigin { .. } => Step::ObserveOrigin,
            Phase::CatchUp { .. } => Step::ObserveCatchUp,
            Phase::DemoteOrigin { .. } => Step::DemoteOrigin,
            Phase::FinalizeDestination { .. } => Step::ObserveFinal,
            Phase::Done { .. } => unreachable!("a Done migration is not active"),
        }
    }

    pub(super) fn run_step(&mut self, now: Instant, tenant: TenantId, step: Step) {
        assert_step_in_phase(step, &self.record(tenant).phase);
        let node = self.step_node(tenant, step);
        let call = self.step_call(tenant, step);
        self.assert_call_is_safe(tenant, node, &call);
        let op = self.next_op(tenant);
        self.stats.calls_total += 1;
        let deadline = now.plus_millis(self.config.call_timeout_ms);
        self.active.get_mut(&tenant).expect("an active migration").wait =
            Wait::Call { op, step, deadline };
        self.event(now, tenant, EventKind::Calling { node, call: call.clone() });
        self.effects.push_back(MigrationEffect::Call { op, node, tenant, call });
    }

    /// The origin is never asked to attach (which could acquire a generation above
    /// the destination's): only `AttachedStale` at a generation below the
    /// destination's, Secondary or Detached. The destination is never demoted.
    fn assert_call_is_safe(&self, tenant: TenantId, node: NodeId, call: &NodeCall) {
        let record = self.record(tenant);
        let NodeCall::LocationConfig(request) = call else { return };
        if node == record.origin {
            let dg = record.phase.destination_generation();
            let ok = match request.mode {
                RequestedMode::AttachedStale => {
                    request.generation.is_some() && request.generation < dg
                }
                RequestedMode::Secondary { .. } | RequestedMode::Detached => {
                    matches!(record.phase, Phase::DemoteOrigin { .. })
                }
                RequestedMode::AttachedSingle | RequestedMode::AttachedMulti => false,
            };
            assert!(ok, "{tenant}: unsafe call to the origin {node}: {request:?}");
        } else {
            let ok = match request.mode {
                RequestedMode::AttachedMulti => true,
                RequestedMode::AttachedSingle => {
                    matches!(record.phase, Phase::FinalizeDestination { .. })
                }
                _ => false,
            };
            assert!(ok, "{tenant}: unsafe call to the destination {node}: {request:?}");
        }
    }

    /// Moves to `phase` (durable first).
    fn advance(&mut self, tenant: TenantId, phase: Phase) {
        let record = MigrationRecord { phase, ..self.record(tenant).clone() };
        self.persist(tenant, record);
    }

    fn skip(&mut self, now: Instant, tenant: TenantId, reason: String, phase: Phase) {
        self.event(now, tenant, EventKind::Skipped { reason });
        self.advance(tenant, phase);
    }

    pub(super) fn on_answer(
        &mut self,
        now: Instant,
        tenant: TenantId,
        step: Step,
        answer: NodeAnswer,
    ) {
        let record = self.record(tenant).clone();
        let og = record.origin_generation;
        let dg = record.phase.destination_generation();
        match (step, answer) {
            (Step::ObserveDestination, NodeAnswer::Status(s)) => match attached(&s.placement) {
                Some((LocationMode::AttachedMulti { .. }, g)) if g > og => {
                    self.advance(tenant, Phase::StaleOrigin { destination_generation: g });
                }
                Some((_, g)) if g > og => {
                    let step = Step::AttachDestination { at_least: g, convert: true };
                    self.run_step(now, tenant, step)
                }
                _ => {
                    let at_least = og.next().unwrap_or(og);
                    let step = Step::AttachDestination { at_least, convert: false };
                    self.run_step(now, tenant, step);
                }
            },
            (Step::AttachDestination { .. }, NodeAnswer::Placed(p)) => match attached(&p) {
                Some((LocationMode::AttachedMulti { .. }, g)) if g > og => {
                    self.advance(tenant, Phase::StaleOrigin { destination_generation: g });
                }
                _ => self.unexpected(now, tenant, step, &p),
            },
            (Step::ObserveOrigin, NodeAnswer::Status(s)) => {
                let dg = dg.expect("StaleOrigin knows the destination generation");
                match attached(&s.placement) {
                    Some((LocationMode::AttachedStale { .. }, g)) if g < dg => {
                        self.enter_catch_up(tenant, dg, &s)
                    }
                    Some((_, g)) if g < dg => {
                        self.run_step(now, tenant, Step::StaleOrigin { generation: g })
                    }
                    _ => {
                        let reason =
                            format!("the origin holds {:?}: nothing to make stale", s.placement);
                        self.stats.origin_skipped_total += 1;
                        let phase =
                            Phase::CatchUp { destination_generation: dg, target: BTreeMap::new() };
                        self.skip(now, tenant, reason, phase);
                    }
                }
            }
            (Step::StaleOrigin { generation }, NodeAnswer::Placed(p)) => {
                if p == Placement::Located(LocationMode::AttachedStale { generation }) {
                    self.run_step(now, tenant, Step::ObserveStaleOrigin);
                } else {
                    self.unexpected(now, tenant, step, &p);
                }
            }
            (Step::ObserveStaleOrigin, NodeAnswer::Status(s)) => {
                let dg = dg.expect("StaleOrigin knows the destination generation");
                self.enter_catch_up(tenant, dg, &s);
            }
            (Step::ObserveCatchUp, NodeAnswer::Status(s)) => self.on_catch_up(now, tenant, &s),
            (Step::DemoteOrigin, NodeAnswer::Placed(p)) => match p {
                Placement::Detached | Placement::Located(LocationMode::Secondary { .. }) => {
                    let dg = dg.expect("DemoteOrigin knows the destination generation");
                    self.advance(tenant, Phase::FinalizeDestination { destination_generation: dg });
                }
                other => self.unexpected(now, tenant, step, &other),
            },
            (Step::ObserveFinal, NodeAnswer::Status(s)) => match attached(&s.placement) {
                Some((LocationMode::AttachedSingle { .. }, g)) if dg.is_some_and(|d| g >= d) => {
                    self.advance(tenant, Phase::Done { generation: g });
                }
                Some((_, g)) if dg.is_some_and(|d| g >= d) => {
                    self.run_step(now, tenant, Step::FinalizeDestination { generation: Some(g) })
                }
                _ => self.run_step(now, tenant, Step::FinalizeDestination { generation: None }),
            },
            (Step::FinalizeDestination { .. }, NodeAnswer::Placed(p)) => match attached(&p) {
                Some((LocationMode::AttachedSingle { .. }, g)) if g > og => {
                    self.advance(tenant, Phase::Done { generation: g });
                }
                _ => self.unexpected(now, tenant, step, &p),
            },
            (step, answer) => {
                let reason = format!("{step:?} answered with the wrong kind: {answer:?}");
                self.call_failed(now, tenant, step, reason);
            }
        }
    }

    fn unexpected(&mut self, now: Instant, tenant: TenantId, step: Step, placement: &Placement) {
        let reason = format!("{step:?}: the node answered {placement:?}");
        self.call_failed(now, tenant, step, reason);
    }

    /// The origin's LSNs become the catch-up target.
    fn enter_catch_up(&mut self, tenant: TenantId, dg: Generation, origin: &NodeTenantStatus) {
        let target: BTreeMap<TimelineId, Lsn> =
            origin.timelines.iter().map(|(tl, lsns)| (*tl, lsns.last_ingested)).collect();
        self.advance(tenant, Phase::CatchUp { destination_generation: dg, target });
    }

    fn on_catch_up(&mut self, now: Instant, tenant: TenantId, destination: &NodeTenantStatus) {
        let Phase::CatchUp { destination_generation, target } = self.record(tenant).phase.clone()
        else {
            unreachable!("ObserveCatchUp runs in CatchUp");
        };
        let next = Phase::DemoteOrigin { destination_generation };
        let behind: Vec<(TimelineId, Lsn)> = target
            .iter()
            .filter(|(tl, lsn)| destination.timelines.get(tl).is_none_or(|d| d.visible < **lsn))
            .map(|(tl, lsn)| (*tl, *lsn))
            .collect();
        if behind.is_empty() {
            return self.advance(tenant, next);
        }
        let m = self.active.get_mut(&tenant).expect("an active migration");
        if now.millis_since(m.phase_started) >= self.config.catch_up_timeout_ms {
            self.stats.catch_up_timeouts_total += 1;
            let reason = format!(
                "catch-up timed out after {} ms; behind on {behind:?} (the client re-sends what was never visible)",
                self.config.catch_up_timeout_ms
            );
            return self.skip(now, tenant, reason, next);
        }
        m.wait = Wait::Poll { until: now.plus_millis(self.config.catch_up_poll_ms) };
    }

    /// The step's call failed: retry after a backoff, or skip an origin step that
    /// has failed for `origin_give_up_ms`.
    pub(super) fn call_failed(
        &mut self,
        now: Instant,
        tenant: TenantId,
        step: Step,
        reason: String,
    ) {
        self.stats.call_failures_total += 1;
        let node = self.step_node(tenant, step);
        self.event(now, tenant, EventKind::CallFailed { node, reason });
        let record = self.record(tenant).clone();
        let m = self.active.get_mut(&tenant).expect("an active migration");
        m.failures += 1;
        let failing_for = now.millis_since(m.phase_started);
        if node == record.origin && failing_for >= self.config.origin_give_up_ms {
            let dg = record.phase.destination_generation().expect("origin steps follow the grant");
            let next = match record.phase {
                Phase::StaleOrigin { .. } => {
                    Phase::CatchUp { destination_generation: dg, target: BTreeMap::new() }
                }
                _ => Phase::FinalizeDestination { destination_generation: dg },
            };
            self.stats.origin_skipped_total += 1;
            let reason = format!("the origin {node} failed every call for {failing_for} ms");
            return self.skip(now, tenant, reason, next);
        }
        let until = now.plus_millis(self.config.backoff_ms(m.failures));
        let step = self.first_step(tenant);
        self.active.get_mut(&tenant).expect("an active migration").wait =
            Wait::RetryStep { step, until };
    }
}
