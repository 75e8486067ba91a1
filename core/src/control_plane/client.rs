//! The node's side of the control plane: how a call can fail.
//!
//! (The client machine itself follows in the next step; this file starts with the
//! failure kinds the deletion queue already takes as an input.)

use super::ControlPlaneError;

/// Why a control-plane call gave no answer the caller can use, after the client's
/// retry budget.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// The request never reached the control plane (connection refused, reset,
    /// the in-process link down).
    #[error("control plane unreachable: {0}")]
    Unreachable(String),
    /// No answer within the call's deadline; the request may or may not have been
    /// carried out.
    #[error("control plane did not answer within {deadline_ms} ms")]
    Timeout { deadline_ms: u64 },
    /// The control plane answered with a refusal.
    #[error("control plane refused: {0}")]
    Refused(ControlPlaneError),
}
