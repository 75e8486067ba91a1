//! A machine refusing an input the node routed to it is a bug in the node.
//!
//! Every machine returns a typed error for an input that is illegal in its state (a
//! completion of an op it does not have in flight, a reply it did not ask for, a
//! grant for a job it did not want). The node only routes what a machine asked for
//! (by op id, by route), so such an error means the routing is wrong: the input
//! is dropped, [`Node::refused`] counts it by machine
//! (`strata_machine_refusals_total{machine}` in the tokio binary), logs it, and in
//! debug builds (tests, the simulator) fails the run on the spot with a
//! `debug_assert!`, so the swarm finds it instead of a log line hiding it.
//!
//! Where a refusal is expected (the node hands a grant back for a timeline being
//! deleted, an upload queue that is deleting refuses a flushed layer and the node
//! breaks the timeline) the node does not call [`Node::refused`]: those are rules,
//! not routing bugs.

use super::Node;

/// The machine that refused (the label of `strata_machine_refusals_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefusingMachine {
    Timeline,
    UploadQueue,
    DeletionQueue,
    ControlPlane,
    ControlPlaneClient,
    TenantManager,
    Scheduler,
    WarmSecondary,
}

impl RefusingMachine {
    pub const ALL: [RefusingMachine; 8] = [
        RefusingMachine::Timeline,
        RefusingMachine::UploadQueue,
        RefusingMachine::DeletionQueue,
        RefusingMachine::ControlPlane,
        RefusingMachine::ControlPlaneClient,
        RefusingMachine::TenantManager,
        RefusingMachine::Scheduler,
        RefusingMachine::WarmSecondary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusingMachine::Timeline => "timeline",
            RefusingMachine::UploadQueue => "upload_queue",
            RefusingMachine::DeletionQueue => "deletion_queue",
            RefusingMachine::ControlPlane => "control_plane",
            RefusingMachine::ControlPlaneClient => "control_plane_client",
            RefusingMachine::TenantManager => "tenant_manager",
            RefusingMachine::Scheduler => "scheduler",
            RefusingMachine::WarmSecondary => "warm_secondary",
        }
    }
}

/// Refusals since start, per machine.
#[derive(Clone, Debug, Default)]
pub(crate) struct Refusals {
    counts: [u64; RefusingMachine::ALL.len()],
}

impl Node {
    /// `machine` refused `what`, an input the node routed to it: a bug (module doc).
    /// Counted and logged; in debug builds the run fails here.
    pub(crate) fn refused(
        &mut self,
        machine: RefusingMachine,
        what: &str,
        error: &dyn std::fmt::Display,
    ) {
        self.refusals.counts[machine as usize] += 1;
        tracing::error!(machine = machine.as_str(), what, %error, "a machine refused a routed input");
        debug_assert!(false, "{} refused {what}: {error}", machine.as_str());
    }

    /// Routed inputs refused since start, per machine (every machine listed).
    pub fn machine_refusals(&self) -> Vec<(RefusingMachine, u64)> {
        RefusingMachine::ALL.iter().map(|m| (*m, self.refusals.counts[*m as usize])).collect()
    }
}
