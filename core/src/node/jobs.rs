//! Background jobs: a timeline's requests and finished jobs go to the scheduler,
//! its grants go to their timeline, and the jobs of timelines that leave the node
//! are forgotten and their slots freed by the removal itself
//! ([`Node::forget_background_jobs`], called wherever timelines leave `tenants`: a
//! tenant's stop, a panic, a timeline's deletion, leaving emergency mode); no sweep
//! looks for them. `check_invariants` asserts that every running job's timeline is
//! on the node.

use super::{Machine, Node, RefusingMachine, SlotState};
use crate::id::{TenantId, TimelineId};
use crate::scheduler::{JobKind, JobOwner, SchedulerEffect};
use crate::trace::Direction;

impl Node {
    /// A timeline wants a background job: the scheduler queues it (same input).
    pub(super) fn on_job_wanted(&mut self, t: TenantId, tl: TimelineId, kind: JobKind) {
        let now = self.now;
        self.scheduler.handle_request(now, JobOwner { tenant: t, timeline: tl, kind });
        self.dirty.insert(Machine::Scheduler);
    }

    /// A timeline's background job is finished: its scheduler slot is freed.
    pub(super) fn on_job_finished(&mut self, t: TenantId, tl: TimelineId, kind: JobKind) {
        let now = self.now;
        let owner = JobOwner { tenant: t, timeline: tl, kind };
        if let Err(e) = self.scheduler.handle_finished(now, owner) {
            self.refused(RefusingMachine::Scheduler, "a finished job", &e);
        }
        self.dirty.insert(Machine::Scheduler);
    }

    /// Grants go to their timeline within the same input; a grant for a timeline
    /// that is gone (or did not ask) is handed back at once.
    pub(super) fn drain_scheduler(&mut self) {
        while let Some(effect) = self.scheduler.poll_effect() {
            let now = self.now;
            self.trace_lazy("scheduler", None, Direction::Effect, || format!("{effect:?}"));
            match effect {
                SchedulerEffect::Grant(owner) => {
                    let (t, tl) = (owner.tenant, owner.timeline);
                    // A stopping tenant, or a timeline being deleted, starts no new
                    // background work (the grant is handed back; the timeline keeps
                    // waiting and is dropped with its tenant or its deletion).
                    let stopping = self.tenants.get(&t).is_some_and(|x| x.is_stopping());
                    let unexpected = crate::timeline::TimelineError::UnexpectedGrant(owner.kind);
                    let routed = matches!(
                        self.slot_mut(t, tl),
                        Some(slot) if !stopping && slot.state != SlotState::Deleting
                    );
                    let taken = if routed {
                        self.with_machines(t, tl, |slot| {
                            slot.timeline.handle_job_granted(now, owner.kind)
                        })
                    } else {
                        Some(Err(unexpected))
                    };
                    // None: the handler panicked and the tenant's jobs are forgotten.
                    let Some(taken) = taken else { continue };
                    match taken {
                        Ok(()) => {
                            self.dirty.insert(Machine::Timeline(t, tl));
                        }
                        Err(e) => {
                            // Handed back by the node (not routed) is a rule; refused
                            // by the timeline that asked is a bug.
                            if routed {
                                self.refused(RefusingMachine::Timeline, "a job grant", &e);
                            }
                            tracing::info!(tenant = %t, timeline = %tl, error = %e, "grant handed back");
                            if let Err(e) = self.scheduler.handle_finished(now, owner) {
                                self.refused(RefusingMachine::Scheduler, "a handed-back grant", &e);
                            }
                        }
                    }
                }
            }
        }
    }

    /// A tenant (`timeline: None`) or a timeline was removed from the node: its
    /// queued background jobs are dropped and the slots of its running ones freed
    /// (their machines are gone, nobody else would report them finished). Called
    /// wherever timelines leave `tenants`.
    pub(crate) fn forget_background_jobs(&mut self, t: TenantId, tl: Option<TimelineId>) {
        let now = self.now;
        self.scheduler.handle_cancel_owner(now, t, tl);
        for owner in self.scheduler.running_of(t, tl) {
            let gone = self
                .tenants
                .get(&t)
                .is_none_or(|tenant| !tenant.timelines.contains_key(&owner.timeline));
            if gone {
                let _ = self.scheduler.handle_finished(now, owner);
            }
        }
        self.dirty.insert(Machine::Scheduler);
    }
}
