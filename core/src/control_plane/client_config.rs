//! The control-plane client's named bounds: attempts per call kind, the deadline
//! of one attempt, the retry backoff and the transport's margin past a deadline
//! (see "Retry policy" in `client.rs`).

use super::CallKind;

/// Attempts per call (the first included), by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallBudgets {
    /// Start-up's re-attach: one attempt. A failure puts the node in emergency
    /// mode at once, and emergency mode retries re-attach on its own backoff.
    pub re_attach_attempts: u32,
    /// Attach and detach (tenant-manager steps, the start-up rebuild).
    pub tenant_attempts: u32,
    /// The deletion queue's validations; after these the queue's own
    /// `RetryValidation` backoff takes over.
    pub validate_attempts: u32,
}

/// The transports' margin past an attempt's deadline (the HTTP link of the tokio
/// build and the simulator's link both give an attempt up at deadline + this).
pub const DEFAULT_LINK_MARGIN_MS: u64 = 1_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Deadline of one attempt.
    pub call_timeout_ms: u64,
    pub budgets: CallBudgets,
    /// First retry delay; doubles per failed attempt up to `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// How long past an attempt's deadline the transport may still deliver it (the
    /// HTTP link gives up at the deadline plus this margin). A timed-out attempt's
    /// retry waits this long on top of its backoff, so that the attempts of one call
    /// reach the control plane in the order they were sent (see "Retry policy").
    pub link_margin_ms: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            call_timeout_ms: 10_000,
            budgets: CallBudgets {
                re_attach_attempts: 1,
                tenant_attempts: 3,
                validate_attempts: 3,
            },
            backoff_base_ms: 100,
            backoff_max_ms: 5_000,
            link_margin_ms: DEFAULT_LINK_MARGIN_MS,
        }
    }
}

impl ClientConfig {
    pub fn budget(&self, kind: CallKind) -> u32 {
        let n = match kind {
            CallKind::ReAttach => self.budgets.re_attach_attempts,
            CallKind::Tenant => self.budgets.tenant_attempts,
            CallKind::Validate => self.budgets.validate_attempts,
        };
        n.max(1)
    }

    pub(super) fn backoff_ms(&self, failures: u32) -> u64 {
        let factor = 1u64.checked_shl(failures.saturating_sub(1).min(63)).unwrap_or(u64::MAX);
        self.backoff_base_ms.saturating_mul(factor).min(self.backoff_max_ms)
    }
}
