//! Emergency mode: starting while the control plane cannot grant generations.
//!
//! When start-up's re-attach fails (the control plane's store does not answer or
//! fails its transaction), the node does not refuse to start and does not invent a
//! generation. It loads every tenant on the generation its `config-v1` records (the
//! last one granted to it), with every upload queue in `Emergency` mode:
//!
//! - reads are served and ingest is taken (into memory and local layer files);
//! - nothing is written to or deleted from remote storage, no deletion list runs
//!   (the deletion queue is not even loaded), no LSN is validated, so the visible
//!   LSN stays where it is (S-GEN-MONO, S-SINGLE-WRITER); compaction, GC and
//!   eviction are off; ingest is refused with 503 once too much is held;
//! - location_config and timeline deletion answer 503 (no generation can be had).
//!
//! Re-attach is retried with a capped, doubling backoff
//! ([`EMERGENCY_RETRY_BASE_MS`]..[`EMERGENCY_RETRY_MAX_MS`]). When it succeeds, the
//! node stops every tenant's machines, waits until none of their I/O is in flight
//! (so no completion of an old machine can reach a new one), and runs start-up from
//! the re-attach answer: configs rewritten with the new generations, the deletion
//! queue recovered, timelines loaded from remote storage. What was ingested in
//! emergency mode and never uploaded was never visible; it is dropped with the old
//! machines, and clients re-send from the visible LSN, as after any crash.
//!
//! The wait is driven by the tenants' own counts, never by a sweep: `Leaving`
//! holds the tenants that may still have I/O in flight (`draining`: every tenant
//! at first, and any tenant an op goes out for meanwhile, `Node::track_op`); a
//! tenant leaves the set when it is advanced with none of its ops in flight (each
//! completion marks it), and the last one to leave continues start-up.
//!
//! Crash: nothing of emergency mode is durable. A restart tries re-attach again.

use super::startup::StartupPhase;
use super::{Machine, Node, NodePhase};
use crate::control_plane::CpRequest;
use crate::control_plane::{CallFailure, ControlPlaneReply, ReAttachedTenant};
use crate::id::TenantId;
use crate::time::Instant;
use std::collections::BTreeSet;

/// Backoff of re-attach attempts in emergency mode: doubles per failure, capped.
pub const EMERGENCY_RETRY_BASE_MS: u64 = 500;
pub const EMERGENCY_RETRY_MAX_MS: u64 = 30_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Emergency {
    /// Waiting to try re-attach again at `at`.
    Waiting { at: Instant, failures: u32, since: Instant },
    /// A re-attach request is with the control plane.
    ReAttaching { failures: u32, since: Instant },
    /// Re-attach succeeded; the old machines are stopping. `draining`: the tenants
    /// that may still have I/O in flight; start-up goes on once it is empty.
    Leaving { tenants: Vec<ReAttachedTenant>, draining: BTreeSet<TenantId> },
}

impl Node {
    /// True while the node runs on its local generations without a control plane.
    pub fn in_emergency(&self) -> bool {
        self.emergency.is_some()
    }

    /// Start-up's re-attach failed: carry on with the local generations.
    pub(crate) fn enter_emergency(&mut self, error: &CallFailure) {
        tracing::error!(%error, "control plane unavailable at start-up: emergency mode (no remote writes until re-attach succeeds)");
        self.startup.warnings.push(format!(
            "emergency mode: re-attach failed ({error}); running on local generations, writing nothing remote"
        ));
        let since = self.now;
        self.emergency = Some(Emergency::Waiting {
            at: self.now.plus_millis(EMERGENCY_RETRY_BASE_MS),
            failures: 1,
            since,
        });
    }

    /// When the re-attach retry fires. Set only while the node is Active, the only
    /// phase in which it does anything: a deadline left set during a shutdown
    /// stayed due and was never cleared, so `poll_timeout` named the past for
    /// ever (found by the `tenant` fuzz target:
    /// `a_shutdown_in_emergency_mode_is_answered_and_no_timer_stays_due`).
    pub(crate) fn emergency_deadline(&self) -> Option<Instant> {
        match &self.emergency {
            Some(Emergency::Waiting { at, .. }) if self.phase == NodePhase::Active => Some(*at),
            _ => None,
        }
    }

    /// Fires the re-attach retry when due.
    pub(crate) fn fire_emergency_retry(&mut self) {
        let Some(Emergency::Waiting { at, failures, since }) = self.emergency.clone() else {
            return;
        };
        if self.now < at || self.phase != NodePhase::Active {
            return;
        }
        self.emergency = Some(Emergency::ReAttaching { failures, since });
        let (node, held_back) = (self.config.node_id, self.startup.held_back.clone());
        let request = CpRequest::ReAttach { node, held_back };
        self.cp_call(super::routing::CpWaiter::EmergencyReAttach, request);
    }

    pub(crate) fn on_emergency_cp_reply(&mut self, reply: Result<ControlPlaneReply, CallFailure>) {
        let Some(Emergency::ReAttaching { failures, since }) = self.emergency.clone() else {
            return;
        };
        if self.phase != NodePhase::Active {
            // A shutdown began while the retry was out: leaving emergency mode would
            // start the node over and drop the shutdown (found by the `tenant` fuzz
            // target: `a_re_attach_answered_during_a_shutdown_does_not_restart_the_node`).
            // The generations it bumped are bumped again at the next start.
            let at = self.now;
            self.emergency = Some(Emergency::Waiting { at, failures, since });
            return;
        }
        match reply {
            Ok(ControlPlaneReply::ReAttached { tenants }) => {
                tracing::info!(
                    tenants = tenants.len(),
                    emergency_ms = self.now.millis_since(since),
                    "re-attach succeeded: leaving emergency mode"
                );
                let now = self.now;
                for (t, tl) in self.all_timelines() {
                    self.with_machines(t, tl, |slot| slot.upload.handle_stop(now));
                    self.dirty.insert(Machine::Upload(t, tl));
                }
                let draining: BTreeSet<TenantId> = self.tenants.keys().copied().collect();
                for tenant in &draining {
                    self.touch_tenant(*tenant);
                }
                let none = draining.is_empty();
                self.emergency = Some(Emergency::Leaving { tenants, draining });
                if none {
                    self.finish_leaving_emergency();
                }
            }
            other => {
                let exponent = failures.min(16);
                let delay_ms = EMERGENCY_RETRY_BASE_MS
                    .saturating_mul(1 << exponent)
                    .min(EMERGENCY_RETRY_MAX_MS);
                tracing::warn!(?other, delay_ms, "re-attach failed again; still in emergency mode");
                self.emergency = Some(Emergency::Waiting {
                    at: self.now.plus_millis(delay_ms),
                    failures: failures + 1,
                    since,
                });
            }
        }
    }

    /// While leaving: an op of `tenant` went out, so it drains again.
    pub(crate) fn draining_again(&mut self, tenant: TenantId) {
        if let Some(Emergency::Leaving { draining, .. }) = &mut self.emergency {
            draining.insert(tenant);
        }
    }

    /// While leaving: `tenant` was advanced; with none of its ops in flight it has
    /// drained, and the last tenant to drain lets start-up go on.
    pub(crate) fn advance_leaving_emergency(&mut self, tenant: TenantId) {
        let idle = self.tenants.get(&tenant).is_none_or(|t| t.in_flight.is_empty());
        let Some(Emergency::Leaving { draining, .. }) = &mut self.emergency else { return };
        if idle {
            draining.remove(&tenant);
        }
        if draining.is_empty() {
            self.finish_leaving_emergency();
        }
    }

    /// The old machines have no I/O in flight: start-up continues from the
    /// re-attach answer as if it had come at once.
    fn finish_leaving_emergency(&mut self) {
        if self.phase != NodePhase::Active {
            // A shutdown began while the old machines drained: starting over would
            // drop it (found by the `tenant` fuzz target:
            // `a_shutdown_while_leaving_emergency_mode_is_answered`). The node stops
            // on its old machines; the next start re-attaches.
            if let Some(Emergency::Leaving { .. }) = self.emergency {
                let now = self.now;
                self.emergency = Some(Emergency::Waiting { at: now, failures: 1, since: now });
            }
            return;
        }
        let Some(Emergency::Leaving { tenants, .. }) = self.emergency.take() else { return };
        let waiting: Vec<_> = self
            .tenants
            .values_mut()
            .flat_map(|t| std::mem::take(&mut t.reads).into_keys())
            .collect();
        for req in waiting {
            self.reply(
                req,
                Err(super::api::ApiError::unavailable("leaving emergency mode; retry")),
            );
        }
        // Every machine goes: none of their in-memory bytes is counted any more.
        self.memory.total = 0;
        for tenant in std::mem::take(&mut self.tenants).into_keys() {
            self.forget_background_jobs(tenant, None);
        }
        self.phase = NodePhase::Starting(StartupPhase::ReAttach);
        self.startup.outstanding += 1;
        self.on_startup_cp_reply(Ok(ControlPlaneReply::ReAttached { tenants }));
    }
}
