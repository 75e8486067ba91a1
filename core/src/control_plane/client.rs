//! The control-plane client: the node's side of every call to the control plane.
//!
//! # Purpose
//! The node asks the control plane four things: re-attach (start-up, and the
//! retries of emergency mode), attach and detach (tenant-manager steps and the
//! start-up rebuild of a lost table), and validate (the deletion queue). This
//! machine turns each into a *call* with a deadline per attempt, a named retry
//! budget with backoff, and one typed outcome: the reply, or a [`CallFailure`]
//! (`Unreachable`, `Timeout`, `Refused`). It does not know how a request travels:
//! the node answers its [`ClientEffect::Send`] with the in-process
//! [`ControlPlane`](super::ControlPlane) today; an HTTP adapter answers the same
//! effect from a remote service (the cluster issue), with no change here.
//!
//! # States (per call)
//! - `InFlight { attempt, deadline }`: one attempt is out; its reply, its
//!   "unreachable" or its deadline ends it.
//! - `Backoff { until }`: the last attempt failed in a retryable way and budget is
//!   left; the next attempt goes out at `until`.
//!
//! A call leaves the machine when it is answered or its budget is spent.
//!
//! # Inputs
//! - [`ControlPlaneClient::handle_call`]: a new call; its first attempt goes out at
//!   once.
//! - [`ControlPlaneClient::handle_reply`]: the control plane answered an attempt
//!   (a reply or a refusal).
//! - [`ControlPlaneClient::handle_unreachable`]: the attempt never reached it.
//! - [`ControlPlaneClient::handle_timeout`]`(now, timer)`: one named
//!   [`ClientTimer`] fires: an attempt's deadline, or a call's backoff.
//!
//! The same inputs as data: [`ClientInput`], fed by [`ControlPlaneClient::handle`]
//! (a fuzz target or a property test drives the machine through it alone).
//!
//! A reply to an attempt that is no longer in flight (it timed out, and a retry
//! may be out) is dropped and counted (`late_replies_total`): in a distributed
//! system that is normal, not a bug. A reply naming an attempt never sent, or the
//! wrong kind of reply, is a typed [`ClientInputError`].
//!
//! # Effects
//! - [`ClientEffect::Send`] `{ attempt, request }`: carry one attempt; answer it by
//!   `attempt` with `handle_reply` or `handle_unreachable`.
//! - [`ClientEffect::Done`] `{ call, result }`: the call's one outcome.
//!
//! # Retry policy (named bounds, [`ClientConfig`])
//! Every attempt has `call_timeout_ms`. `Unreachable`, `Timeout` and the retryable
//! refusals (`Overloaded`, `StoreFailed`: [`is_retryable`]) are retried after
//! `backoff_base_ms · 2^(n-1)` (capped at `backoff_max_ms`) while the call has
//! attempts left of its kind's budget ([`CallBudgets`]); then the last failure is
//! the call's outcome. Other refusals (unknown tenant or node, generations
//! exhausted) are the outcome at once. Every call is safe to repeat: a repeated
//! re-attach or attach grants a newer generation (the older one is never used: its
//! reply is late and dropped), detach and validate are idempotent. That holds only
//! if the control plane carries out a call's attempts in the order they were sent:
//! an older attempt carried out after the one whose reply the node used grants a
//! generation newer than the node's, and every validation of the node's is then
//! answered "not current" for good (cluster seed 5475: an attach delayed 11 s on
//! the way, delivered after its retry had been answered). So a retry after a
//! deadline waits `link_margin_ms` more, until the transport has given the old
//! attempt up (the HTTP link's timeout is the deadline plus that margin) and it can
//! no longer be sent; and a call whose last attempt timed out reports its
//! `Timeout` only then (state `Settling`), so the caller's next call (emergency
//! mode's re-attach after start-up's timed out: cluster seed 276) cannot overtake
//! it either. An attempt already received by the control plane and still
//! queued there when the retry arrives is carried out first (the service runs calls
//! one at a time, in arrival order).
//!
//! # Invariants ([`ControlPlaneClient::check_invariants`])
//! - A call has exactly one attempt in flight or one backoff, never both; an
//!   attempt in flight belongs to exactly one call.
//! - A call never uses more attempts than its budget.
//! - Every call in the machine has a timer (its deadline or its backoff): no call
//!   waits forever, whatever the transport does.
//!
//! # Crash
//! Nothing is durable. A crash loses every call; the callers' own recovery asks
//! again (start-up re-attaches, the deletion queue revalidates recovered lists, a
//! tenant-manager step restarts from its persisted state). A request the control
//! plane carried out but whose reply was lost is covered by the repeat-safety
//! above.

use super::{ControlPlaneError, ControlPlaneReply};
use crate::generation::Generation;
use crate::id::{NodeId, OpId, OpIds, TenantId};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[path = "client_config.rs"]
mod config;
pub use config::{CallBudgets, ClientConfig, DEFAULT_LINK_MARGIN_MS};

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

/// A refusal worth another attempt: the control plane may accept the same request
/// later.
pub fn is_retryable(error: &ControlPlaneError) -> bool {
    match error {
        ControlPlaneError::Overloaded { .. } | ControlPlaneError::StoreFailed(_) => true,
        ControlPlaneError::UnknownTenant(_)
        | ControlPlaneError::UnknownNode(_)
        | ControlPlaneError::GenerationExhausted(..)
        | ControlPlaneError::Rejected(_) => false,
    }
}

/// One request to the control plane, as the node asks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpRequest {
    /// Bump and return every tenant attached to `node` but those `held_back`.
    ReAttach { node: NodeId, held_back: BTreeSet<TenantId> },
    /// Attach `tenant` to `node` above `reported` (the generation the node's
    /// LocationConf last recorded).
    Attach { tenant: TenantId, node: NodeId, reported: Option<Generation> },
    /// `node` lets `tenant` go (a no-op when another node holds it).
    Detach { tenant: TenantId, node: NodeId },
    /// Is each generation its tenant's latest? Answered in request order.
    Validate { tenants: Vec<(TenantId, Generation)> },
}

/// The budget a call draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallKind {
    ReAttach,
    Tenant,
    Validate,
}

impl CpRequest {
    pub fn kind(&self) -> CallKind {
        match self {
            CpRequest::ReAttach { .. } => CallKind::ReAttach,
            CpRequest::Attach { .. } | CpRequest::Detach { .. } => CallKind::Tenant,
            CpRequest::Validate { .. } => CallKind::Validate,
        }
    }

    /// Whether `reply` answers this request.
    fn answered_by(&self, reply: &ControlPlaneReply) -> bool {
        matches!(
            (self, reply),
            (CpRequest::ReAttach { .. }, ControlPlaneReply::ReAttached { .. })
                | (CpRequest::Attach { .. }, ControlPlaneReply::Attached { .. })
                | (CpRequest::Detach { .. }, ControlPlaneReply::Detached)
                | (CpRequest::Validate { .. }, ControlPlaneReply::Validated { .. })
        )
    }
}

/// Identifies one call; its [`ClientEffect::Done`] carries it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEffect {
    /// Carry one attempt of a call to the control plane.
    Send { attempt: OpId, request: CpRequest },
    /// The call's outcome, once.
    Done { call: CallId, result: Result<ControlPlaneReply, CallFailure> },
}

/// Why the client wants to be woken: the closed set of its timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientTimer {
    /// The attempt in flight of this call has had its `call_timeout_ms`.
    Deadline(CallId),
    /// This call's backoff ends: its next attempt goes out.
    Retry(CallId),
}

/// One input of the client; each variant names the `handle_*` method it stands
/// for. No `Arbitrary` derive: `OpId`, `CpRequest` and `ControlPlaneReply` do not
/// implement it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientInput {
    /// `handle_call`: answered with [`ClientOutput::Call`].
    Call(CpRequest),
    /// `handle_reply`.
    Reply { attempt: OpId, reply: Result<ControlPlaneReply, ControlPlaneError> },
    /// `handle_unreachable`.
    Unreachable { attempt: OpId, message: String },
    /// `handle_timeout`: one named timer fired.
    Timeout(ClientTimer),
}

/// What [`ControlPlaneClient::handle`] answers besides the effects it queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientOutput {
    /// The input was taken.
    Done,
    /// The new call's id: its [`ClientEffect::Done`] carries it.
    Call(CallId),
}

/// An input that does not fit: a bug in the transport or the node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientInputError {
    #[error("attempt {0} was never sent")]
    UnknownAttempt(OpId),
    #[error("attempt {attempt} of a {kind:?} call answered with {reply:?}")]
    WrongReply { attempt: OpId, kind: CallKind, reply: ControlPlaneReply },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    InFlight {
        attempt: OpId,
        deadline: Instant,
    },
    Backoff {
        until: Instant,
    },
    /// The last attempt timed out with no budget left: the `Timeout` surfaces at
    /// `until`, once the transport has given the attempt up as well.
    Settling {
        until: Instant,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Call {
    request: CpRequest,
    /// Attempts sent so far.
    attempts: u32,
    state: CallState,
}

impl CallFailure {
    /// Every label of [`CallFailure::label`], in a fixed order.
    pub const LABELS: [&'static str; 3] = ["unreachable", "timeout", "refused"];

    /// The label `strata_control_plane_failures_total{kind}` counts it under.
    pub fn label(&self) -> &'static str {
        match self {
            CallFailure::Unreachable(_) => "unreachable",
            CallFailure::Timeout { .. } => "timeout",
            CallFailure::Refused(_) => "refused",
        }
    }
}

/// Counters exported as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub calls_total: u64,
    pub attempts_total: u64,
    pub unreachable_total: u64,
    pub timeouts_total: u64,
    pub refusals_total: u64,
    /// Calls whose outcome was a failure (budget spent or a final refusal).
    pub calls_failed_total: u64,
    /// Replies to attempts no longer in flight (dropped).
    pub late_replies_total: u64,
}

impl ClientStats {
    /// Failed attempts by [`CallFailure::label`], in the order of
    /// [`CallFailure::LABELS`].
    pub fn attempt_failures(&self) -> [(&'static str, u64); 3] {
        let [unreachable, timeout, refused] = CallFailure::LABELS;
        [
            (unreachable, self.unreachable_total),
            (timeout, self.timeouts_total),
            (refused, self.refusals_total),
        ]
    }
}

#[derive(Debug, Default)]
pub struct ControlPlaneClient {
    config: ClientConfig,
    calls: BTreeMap<CallId, Call>,
    /// The attempt in flight of each call, by attempt id.
    in_flight: BTreeMap<OpId, CallId>,
    next_call: u64,
    attempt_ids: OpIds,
    /// Attempts ever sent: ids below are known, so a late reply is told from a bogus one.
    sent: u64,
    effects: VecDeque<ClientEffect>,
    stats: ClientStats,
}

impl ControlPlaneClient {
    pub fn new(config: ClientConfig) -> Self {
        ControlPlaneClient { config, ..ControlPlaneClient::default() }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Starts a call; its first attempt goes out at once.
    pub fn handle_call(&mut self, now: Instant, request: CpRequest) -> CallId {
        let call = CallId(self.next_call);
        self.next_call += 1;
        self.stats.calls_total += 1;
        let placeholder = CallState::Backoff { until: now };
        self.calls.insert(call, Call { request, attempts: 0, state: placeholder });
        self.send(now, call);
        call
    }

    /// The control plane answered `attempt`: a reply, or a refusal.
    pub fn handle_reply(
        &mut self,
        now: Instant,
        attempt: OpId,
        reply: Result<ControlPlaneReply, ControlPlaneError>,
    ) -> Result<(), ClientInputError> {
        let Some(call) = self.live_call(attempt)? else { return Ok(()) };
        let request = &self.calls[&call].request;
        match reply {
            Ok(reply) if request.answered_by(&reply) => {
                self.in_flight.remove(&attempt);
                self.finish(call, Ok(reply));
                Ok(())
            }
            Ok(reply) => {
                let kind = request.kind();
                Err(ClientInputError::WrongReply { attempt, kind, reply })
            }
            Err(error) => {
                self.in_flight.remove(&attempt);
                self.stats.refusals_total += 1;
                let retryable = is_retryable(&error);
                self.failed(now, call, CallFailure::Refused(error), retryable);
                Ok(())
            }
        }
    }

    /// `attempt` never reached the control plane.
    pub fn handle_unreachable(
        &mut self,
        now: Instant,
        attempt: OpId,
        message: String,
    ) -> Result<(), ClientInputError> {
        let Some(call) = self.live_call(attempt)? else { return Ok(()) };
        self.in_flight.remove(&attempt);
        self.stats.unreachable_total += 1;
        self.failed(now, call, CallFailure::Unreachable(message), true);
        Ok(())
    }

    /// Fires one timer, named by the caller ([`ControlPlaneClient::next_timer`] says
    /// which and when). A timer that is not set or not yet due does nothing.
    pub fn handle_timeout(&mut self, now: Instant, timer: ClientTimer) {
        if !self.timers().any(|(at, t)| t == timer && at <= now) {
            return;
        }
        match timer {
            ClientTimer::Deadline(call) => {
                let Some(CallState::InFlight { attempt, .. }) =
                    self.calls.get(&call).map(|c| c.state)
                else {
                    return;
                };
                self.in_flight.remove(&attempt);
                self.stats.timeouts_total += 1;
                let deadline_ms = self.config.call_timeout_ms;
                // The attempt may still be in transit: neither its retry nor the
                // caller's next call may go out before the transport has given it up
                // as well (cluster seeds 5475 and 276).
                let later = now.plus_millis(self.config.link_margin_ms);
                let c = self.calls.get_mut(&call).expect("matched above");
                if c.attempts >= self.config.budget(c.request.kind()) && later > now {
                    c.state = CallState::Settling { until: later };
                    return;
                }
                self.failed(later, call, CallFailure::Timeout { deadline_ms }, true);
            }
            ClientTimer::Retry(call) => match self.calls.get(&call).map(|c| c.state) {
                Some(CallState::Settling { .. }) => {
                    self.stats.calls_failed_total += 1;
                    let deadline_ms = self.config.call_timeout_ms;
                    self.finish(call, Err(CallFailure::Timeout { deadline_ms }));
                }
                _ => self.send(now, call),
            },
        }
    }

    /// Feeds one input. An illegal one (an attempt never sent, the wrong kind of
    /// reply) is an `Err`, exactly as the `handle_*` method it stands for answers
    /// it; a late reply or a timer not due is taken and does nothing, as there.
    pub fn handle(
        &mut self,
        now: Instant,
        input: ClientInput,
    ) -> Result<ClientOutput, ClientInputError> {
        match input {
            ClientInput::Call(request) => {
                return Ok(ClientOutput::Call(self.handle_call(now, request)));
            }
            ClientInput::Reply { attempt, reply } => self.handle_reply(now, attempt, reply)?,
            ClientInput::Unreachable { attempt, message } => {
                self.handle_unreachable(now, attempt, message)?
            }
            ClientInput::Timeout(timer) => self.handle_timeout(now, timer),
        }
        Ok(ClientOutput::Done)
    }

    pub fn poll_effect(&mut self) -> Option<ClientEffect> {
        self.effects.pop_front()
    }

    /// The earliest deadline; [`ControlPlaneClient::next_timer`] says which timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(at, _)| at)
    }

    /// The earliest timer and its name: call `handle_timeout(at, timer)` then.
    pub fn next_timer(&self) -> Option<(Instant, ClientTimer)> {
        self.timers().min()
    }

    /// Every timer, with its reason.
    pub fn timers(&self) -> impl Iterator<Item = (Instant, ClientTimer)> + '_ {
        self.calls.iter().map(|(call, c)| match c.state {
            CallState::InFlight { deadline, .. } => (deadline, ClientTimer::Deadline(*call)),
            CallState::Backoff { until } | CallState::Settling { until } => {
                (until, ClientTimer::Retry(*call))
            }
        })
    }

    /// Calls not yet answered (metric).
    pub fn calls_in_progress(&self) -> usize {
        self.calls.len()
    }

    /// Whether `attempt` is in flight (a transport may drop what is not).
    pub fn is_in_flight(&self, attempt: OpId) -> bool {
        self.in_flight.contains_key(&attempt)
    }

    /// The request of `attempt`, while it is in flight.
    pub fn in_flight_request(&self, attempt: OpId) -> Option<&CpRequest> {
        self.calls.get(self.in_flight.get(&attempt)?).map(|c| &c.request)
    }

    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Panics if a rule is broken. Tests run it after every input.
    pub fn check_invariants(&self) {
        for (attempt, call) in &self.in_flight {
            let state = self.calls.get(call).map(|c| c.state);
            assert!(
                matches!(state, Some(CallState::InFlight { attempt: a, .. }) if a == *attempt),
                "attempt {attempt} in flight for {call:?}, whose state is {state:?}"
            );
        }
        for (id, call) in &self.calls {
            let budget = self.config.budget(call.request.kind());
            assert!(
                call.attempts >= 1 && call.attempts <= budget,
                "{id:?}: {} attempts, budget {budget}",
                call.attempts
            );
            match call.state {
                CallState::InFlight { attempt, .. } => {
                    assert_eq!(self.in_flight.get(&attempt), Some(id), "{id:?}: attempt untracked");
                }
                CallState::Backoff { .. } => {
                    assert!(call.attempts < budget, "{id:?} backs off with no budget left");
                }
                CallState::Settling { .. } => {
                    assert_eq!(call.attempts, budget, "{id:?} settles with budget left");
                }
            }
        }
        assert!(self.calls.len() >= self.in_flight.len(), "more attempts than calls");
        assert!(self.sent >= self.in_flight.len() as u64, "attempts counted wrong");
    }

    /// The call whose attempt in flight is `attempt` (still tracked: the caller
    /// ends the attempt); `None` for a late reply.
    fn live_call(&mut self, attempt: OpId) -> Result<Option<CallId>, ClientInputError> {
        if attempt.0 >= self.sent {
            return Err(ClientInputError::UnknownAttempt(attempt));
        }
        match self.in_flight.get(&attempt) {
            Some(call) => Ok(Some(*call)),
            None => {
                self.stats.late_replies_total += 1;
                Ok(None)
            }
        }
    }

    fn send(&mut self, now: Instant, id: CallId) {
        let attempt = self.attempt_ids.next_id();
        self.sent += 1;
        self.stats.attempts_total += 1;
        let deadline = now.plus_millis(self.config.call_timeout_ms);
        let call = self.calls.get_mut(&id).expect("a call outlives its attempts");
        call.attempts += 1;
        call.state = CallState::InFlight { attempt, deadline };
        self.in_flight.insert(attempt, id);
        let request = call.request.clone();
        self.effects.push_back(ClientEffect::Send { attempt, request });
    }

    /// The attempt in flight of `id` failed (it is no longer tracked as in flight):
    /// back off and retry, or surface the failure.
    fn failed(&mut self, now: Instant, id: CallId, failure: CallFailure, retryable: bool) {
        let call = self.calls.get_mut(&id).expect("a call outlives its attempts");
        let budget = self.config.budget(call.request.kind());
        if retryable && call.attempts < budget {
            let until = now.plus_millis(self.config.backoff_ms(call.attempts));
            call.state = CallState::Backoff { until };
            return;
        }
        self.stats.calls_failed_total += 1;
        self.finish(id, Err(failure));
    }

    fn finish(&mut self, call: CallId, result: Result<ControlPlaneReply, CallFailure>) {
        self.calls.remove(&call);
        self.effects.push_back(ClientEffect::Done { call, result });
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
