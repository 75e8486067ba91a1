//! Gating of background jobs by the node's scheduler (`crate::scheduler`).
//!
//! Compaction (with image creation), GC and eviction each start only with a grant:
//! when one has work, the timeline emits [`TimelineEffect::JobWanted`] once and
//! waits; [`Timeline::handle_job_granted`] lets it start; when that job's work ends
//! — committed, failed into a backoff, or dropped by a mode change — it emits
//! [`TimelineEffect::JobFinished`] in the same transition, so a scheduler slot is
//! never held by a job that no longer runs. A grant that finds nothing to do (the
//! work went away, or the mode forbids it now) is handed back at once with
//! `JobFinished`.
//!
//! Per kind, a [`JobGate`] is absent → `Wanted` → `Granted` → `Running` → absent:
//! - compaction is `Running` from the pick until the pipeline is `Idle` again (a
//!   write backoff in between keeps the slot: the job is not over);
//! - GC is `Running` while its metadata write is in flight; a granted GC waits
//!   (`Granted`) while a flush or a compaction of this timeline is busy, and a
//!   granted compaction waits while GC's metadata write is in flight (GC's victims
//!   could be its inputs);
//! - eviction is synchronous: granted, it evicts and finishes in one transition.
//!
//! One grant is one job: after a job ends, the next one is asked for again, so the
//! scheduler's fairness applies job by job.

use super::{CompactionState, GcState, Timeline, TimelineEffect, TimelineError};
use crate::scheduler::JobKind;
use crate::time::Instant;

/// Where a timeline's background job of one kind stands with the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobGate {
    /// `JobWanted` emitted; waiting for the grant.
    Wanted,
    /// Granted, not started yet (GC waits so for a busy flush or compaction,
    /// compaction for GC's metadata write).
    Granted,
    /// Started; `JobFinished` follows when its work ends.
    Running,
}

impl Timeline {
    /// The scheduler granted the job of `kind` this timeline asked for.
    pub fn handle_job_granted(&mut self, now: Instant, kind: JobKind) -> Result<(), TimelineError> {
        match self.jobs.get(&kind) {
            Some(JobGate::Wanted) => {
                self.jobs.insert(kind, JobGate::Granted);
                self.pump(now);
                Ok(())
            }
            _ => Err(TimelineError::UnexpectedGrant(kind)),
        }
    }

    /// Where the job of `kind` stands with the scheduler (`None`: not asked for).
    pub fn job_gate(&self, kind: JobKind) -> Option<JobGate> {
        self.jobs.get(&kind).copied()
    }

    /// Asks for a job of `kind`: true when granted, and the caller starts it now
    /// (the gate becomes `Running`).
    pub(super) fn take_grant(&mut self, kind: JobKind) -> bool {
        match self.jobs.get(&kind) {
            None => {
                self.jobs.insert(kind, JobGate::Wanted);
                self.effects.push_back(TimelineEffect::JobWanted { kind });
                false
            }
            Some(JobGate::Wanted | JobGate::Running) => false,
            Some(JobGate::Granted) => {
                self.jobs.insert(kind, JobGate::Running);
                true
            }
        }
    }

    /// Nothing to do for `kind` now: a grant not used is handed back.
    pub(super) fn decline_grant(&mut self, kind: JobKind) {
        if self.jobs.get(&kind) == Some(&JobGate::Granted) {
            self.finish_job(kind);
        }
    }

    pub(super) fn finish_job(&mut self, kind: JobKind) {
        self.jobs.remove(&kind);
        self.effects.push_back(TimelineEffect::JobFinished { kind });
    }

    /// Is the work of a started job of `kind` still going?
    fn job_busy(&self, kind: JobKind) -> bool {
        match kind {
            JobKind::Compaction => self.compaction != CompactionState::Idle,
            JobKind::Gc => matches!(self.gc, GcState::WritingMetadata { .. }),
            JobKind::Eviction => false,
        }
    }

    /// Finishes every `Running` job whose work has ended. True if any did.
    pub(super) fn settle_jobs(&mut self) -> bool {
        let done: Vec<JobKind> = self
            .jobs
            .iter()
            .filter(|(k, g)| **g == JobGate::Running && !self.job_busy(**k))
            .map(|(k, _)| *k)
            .collect();
        for kind in &done {
            self.finish_job(*kind);
        }
        !done.is_empty()
    }

    pub(super) fn check_job_invariants(&self) {
        for kind in JobKind::ALL {
            let gate = self.jobs.get(&kind).copied();
            // Work runs only with a grant, and a job whose work ended holds no slot.
            assert_eq!(
                self.job_busy(kind),
                gate == Some(JobGate::Running),
                "{kind:?} job busy/gate mismatch: gate {gate:?}"
            );
            if gate == Some(JobGate::Granted) {
                // GC waits for a flush or a compaction, compaction for GC.
                let waits = match kind {
                    JobKind::Gc => {
                        self.flush != super::FlushState::Idle
                            || self.compaction != CompactionState::Idle
                    }
                    JobKind::Compaction => self.gc_writing(),
                    JobKind::Eviction => false,
                };
                assert!(waits, "{kind:?} granted but not started");
            }
        }
    }
}
