//! The control-plane client's reference world: calls of every kind, and a
//! transport that answers any attempt (in flight, late, or never sent) with the
//! right reply, the wrong kind of reply, a retryable or a final refusal, or
//! "unreachable", and a clock that fires due timers (and names timers that are not
//! due). The world keeps its own model of each call (attempts sent, the attempt in
//! flight, when it went out, when it failed) and checks every effect against it:
//! - [`ControlPlaneClient::check_invariants`] after every input;
//! - a reply to the attempt in flight ends the call with that reply; a final
//!   refusal ends it with that refusal; a retryable failure backs off while budget
//!   is left, else ends the call with that failure;
//! - a late reply (attempt no longer in flight) does nothing; an attempt never sent
//!   and the wrong kind of reply are typed errors that change nothing;
//! - a call never sends more attempts than its budget, a deadline fires only
//!   `call_timeout_ms` after its attempt went out, a retry goes out only after its
//!   backoff, a timer not due does nothing;
//! - every call ends exactly once, and once the transport goes quiet every call
//!   ends within its budget of deadlines and backoffs.
//!
//! Compiled for tests (`client_tests.rs` draws actions with proptest) and under
//! the `fuzzing` feature (the `cp_client` fuzz target draws them with
//! `arbitrary`). Every input reaches the machine through [`ControlPlaneClient::handle`].

use super::client::*;
use super::{ControlPlaneError, ControlPlaneReply, ReAttachedTenant};
use crate::generation::Generation;
use crate::id::{NodeId, OpId, TenantId};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

const T: TenantId = TenantId([3; 16]);

pub fn config() -> ClientConfig {
    ClientConfig {
        call_timeout_ms: 1_000,
        budgets: CallBudgets { re_attach_attempts: 1, tenant_attempts: 3, validate_attempts: 4 },
        backoff_base_ms: 100,
        backoff_max_ms: 250,
        link_margin_ms: 0,
    }
}

/// One step of the world. Picks are taken modulo what is there.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Action {
    /// A new call of kind `n % 4` (re-attach, attach, detach, validate).
    Call(u8),
    /// The transport answers one attempt ever sent (in flight or late) with
    /// [`World::answer`]'s pick.
    Reply(u16, u8),
    /// One attempt ever sent never reached the control plane.
    Unreachable(u16),
    /// An attempt id never sent is answered.
    Bogus(u16),
    /// The clock moves this many milliseconds; every due timer fires.
    Advance(u16),
    /// A named timer of one call (deadline or retry) is fired now, due or not.
    Fire(u8, bool),
}

/// The world's model of one live call.
#[derive(Clone, Debug)]
struct Model {
    request: CpRequest,
    attempts: u32,
    /// The attempt in flight and when it went out.
    in_flight: Option<(OpId, Instant)>,
    /// When the last attempt failed (the call backs off).
    failed_at: Option<Instant>,
}

pub struct World {
    c: ControlPlaneClient,
    now: Instant,
    live: BTreeMap<CallId, Model>,
    ended: BTreeSet<CallId>,
    /// Every attempt ever sent, with its call.
    sent: Vec<(OpId, CallId)>,
}

pub fn run(actions: Vec<Action>) {
    let mut w = World::new();
    for action in actions {
        w.apply(action);
    }
    w.quiet();
}

/// What one input should make the machine emit.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Nothing,
    Done(Result<ControlPlaneReply, CallFailure>),
    /// A failure that ends the call when the budget is spent, else backs off.
    Failed(CallFailure),
}

fn request(n: u8) -> CpRequest {
    match n % 4 {
        0 => CpRequest::ReAttach { node: NodeId(1), held_back: BTreeSet::new() },
        1 => CpRequest::Attach { tenant: T, node: NodeId(1), reported: None },
        2 => CpRequest::Detach { tenant: T, node: NodeId(1) },
        _ => CpRequest::Validate { tenants: vec![(T, Generation::FIRST)] },
    }
}

fn reply_to(request: &CpRequest) -> ControlPlaneReply {
    match request {
        CpRequest::ReAttach { .. } => ControlPlaneReply::ReAttached {
            tenants: vec![ReAttachedTenant::new(T, Generation::FIRST, true)],
        },
        CpRequest::Attach { .. } => ControlPlaneReply::Attached { generation: Generation::FIRST },
        CpRequest::Detach { .. } => ControlPlaneReply::Detached,
        CpRequest::Validate { .. } => ControlPlaneReply::Validated { results: vec![(T, true)] },
    }
}

/// An answer to `request`, picked by `how`: the reply, the wrong kind of reply, or
/// one refusal of each kind.
fn answer(request: &CpRequest, how: u8) -> Result<ControlPlaneReply, ControlPlaneError> {
    match how % 8 {
        0..=2 => Ok(reply_to(request)),
        3 => Ok(reply_to(&self::request(how / 8 % 4))),
        4 => Err(ControlPlaneError::Overloaded { queued: 7 }),
        5 => Err(ControlPlaneError::StoreFailed("fsync failed".into())),
        6 => Err(ControlPlaneError::UnknownTenant(T)),
        _ => match how / 8 % 3 {
            0 => Err(ControlPlaneError::UnknownNode(NodeId(1))),
            1 => Err(ControlPlaneError::GenerationExhausted(T, Generation::FIRST)),
            _ => Err(ControlPlaneError::Rejected("no token".into())),
        },
    }
}

impl World {
    fn new() -> Self {
        World {
            c: ControlPlaneClient::new(config()),
            now: Instant::ZERO,
            live: BTreeMap::new(),
            ended: BTreeSet::new(),
            sent: Vec::new(),
        }
    }

    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Call(n) => {
                let request = request(n);
                let out = self.c.handle(self.now, ClientInput::Call(request.clone()));
                let Ok(ClientOutput::Call(call)) = out else { panic!("a call answers {out:?}") };
                assert!(!self.live.contains_key(&call) && !self.ended.contains(&call));
                let model = Model { request, attempts: 0, in_flight: None, failed_at: None };
                self.live.insert(call, model);
                self.settle(Some(call), Expect::Nothing);
            }
            Action::Reply(pick, how) => self.answer_attempt(pick, Some(how)),
            Action::Unreachable(pick) => self.answer_attempt(pick, None),
            Action::Bogus(n) => {
                let attempt = OpId(self.sent.len() as u64 + u64::from(n));
                let reply = Ok(ControlPlaneReply::Detached);
                let out = self.c.handle(self.now, ClientInput::Reply { attempt, reply });
                assert_eq!(out, Err(ClientInputError::UnknownAttempt(attempt)));
                self.settle(None, Expect::Nothing);
            }
            Action::Advance(ms) => {
                self.now = self.now.plus_millis(u64::from(ms));
                while let Some((at, timer)) = self.c.next_timer().filter(|(at, _)| *at <= self.now)
                {
                    assert!(at <= self.now);
                    self.fire(timer);
                }
            }
            Action::Fire(pick, deadline) => {
                let Some(call) = self.live.keys().nth(usize::from(pick) % self.live.len().max(1))
                else {
                    return;
                };
                let timer =
                    if deadline { ClientTimer::Deadline(*call) } else { ClientTimer::Retry(*call) };
                self.fire(timer);
            }
        }
    }

    /// Answers the `pick`-th attempt ever sent: with `how`'s answer, or unreachable.
    fn answer_attempt(&mut self, pick: u16, how: Option<u8>) {
        if self.sent.is_empty() {
            return;
        }
        let (attempt, call) = self.sent[usize::from(pick) % self.sent.len()];
        let model = self.live.get(&call).filter(|m| m.in_flight.is_some_and(|(a, _)| a == attempt));
        let late_before = self.c.stats().late_replies_total;
        let (input, expect) = match how {
            None => {
                let message = String::from("connection refused");
                let expect = Expect::Failed(CallFailure::Unreachable(message.clone()));
                (ClientInput::Unreachable { attempt, message }, expect)
            }
            Some(how) => {
                let request = model.map_or_else(|| request(how), |m| m.request.clone());
                let reply = answer(&request, how);
                let expect = match &reply {
                    Ok(r) if *r == reply_to(&request) => Expect::Done(Ok(r.clone())),
                    Ok(_) => Expect::Nothing,
                    Err(e) if is_retryable(e) => Expect::Failed(CallFailure::Refused(e.clone())),
                    Err(e) => Expect::Done(Err(CallFailure::Refused(e.clone()))),
                };
                (ClientInput::Reply { attempt, reply }, expect)
            }
        };
        let wrong_kind =
            matches!(&input, ClientInput::Reply { reply: Ok(_), .. }) && expect == Expect::Nothing;
        let out = self.c.handle(self.now, input);
        if model.is_none() {
            assert_eq!(out, Ok(ClientOutput::Done), "a late answer is taken");
            assert_eq!(self.c.stats().late_replies_total, late_before + 1, "and counted");
            self.settle(None, Expect::Nothing);
        } else if wrong_kind {
            assert!(matches!(out, Err(ClientInputError::WrongReply { .. })), "{out:?}");
            assert!(self.c.is_in_flight(attempt), "a wrong reply leaves the attempt in flight");
            self.settle(None, Expect::Nothing);
        } else {
            assert_eq!(out, Ok(ClientOutput::Done));
            let m = self.live.get_mut(&call).expect("live");
            m.in_flight = None;
            m.failed_at = Some(self.now);
            self.settle(Some(call), expect);
        }
    }

    fn fire(&mut self, timer: ClientTimer) {
        let due = self.c.timers().any(|(at, t)| t == timer && at <= self.now);
        self.c.handle(self.now, ClientInput::Timeout(timer)).expect("a timer is always taken");
        let (call, expect) = match timer {
            _ if !due => (None, Expect::Nothing),
            ClientTimer::Deadline(call) => {
                let m = self.live.get_mut(&call).expect("a timer of a live call");
                let (_, sent_at) = m.in_flight.take().expect("a deadline of an attempt in flight");
                let timeout_ms = config().call_timeout_ms;
                assert!(self.now.millis_since(sent_at) >= timeout_ms, "deadline fired early");
                m.failed_at = Some(self.now);
                (Some(call), Expect::Failed(CallFailure::Timeout { deadline_ms: timeout_ms }))
            }
            ClientTimer::Retry(call) => {
                let m = &self.live[&call];
                let failed_at = m.failed_at.expect("a retry follows a failure");
                let factor = 1u64 << (m.attempts - 1).min(20);
                let backoff_ms = (config().backoff_base_ms * factor).min(config().backoff_max_ms);
                assert!(self.now.millis_since(failed_at) >= backoff_ms, "retry before its backoff");
                (Some(call), Expect::Nothing)
            }
        };
        self.settle(call, expect);
    }

    /// Drains the effects of one input to `call` and checks them against `expect`.
    fn settle(&mut self, call: Option<CallId>, expect: Expect) {
        self.c.check_invariants();
        let effects: Vec<ClientEffect> = std::iter::from_fn(|| self.c.poll_effect()).collect();
        let mut done = None;
        for effect in effects {
            match effect {
                ClientEffect::Send { attempt, request } => {
                    let id = call.expect("an attempt goes out only for the call just touched");
                    let m = self.live.get_mut(&id).expect("a live call sends");
                    assert_eq!(request, m.request, "an attempt carries its call's request");
                    assert!(m.in_flight.is_none(), "{id:?}: two attempts in flight");
                    assert!(attempt.0 >= self.sent.len() as u64, "attempt id reused");
                    m.attempts += 1;
                    let budget = config().budget(m.request.kind());
                    assert!(m.attempts <= budget, "{id:?}: attempt {} over {budget}", m.attempts);
                    m.in_flight = Some((attempt, self.now));
                    self.sent.push((attempt, id));
                }
                ClientEffect::Done { call: id, result } => {
                    assert_eq!(Some(id), call, "only the call just touched ends");
                    assert!(done.replace(result).is_none(), "{id:?} ended twice");
                }
            }
        }
        let Some(call) = call else {
            assert!(done.is_none(), "an input that touched no call ended one");
            return;
        };
        let spent = self.live.get(&call).is_some_and(|m| {
            m.in_flight.is_none() && m.attempts >= config().budget(m.request.kind())
        });
        let ended = done.is_some();
        match (expect, done) {
            (Expect::Nothing, None) => {}
            (Expect::Done(want), Some(got)) => assert_eq!(got, want, "{call:?} ended wrong"),
            (Expect::Failed(f), Some(got)) if spent => assert_eq!(got, Err(f), "{call:?}"),
            (Expect::Failed(_), None) if !spent => {}
            (expect, got) => panic!("{call:?}: expected {expect:?}, got {got:?}"),
        }
        if ended {
            self.live.remove(&call);
            assert!(self.ended.insert(call), "{call:?} ended twice");
        }
        let live: BTreeSet<CallId> = self.c.timers().map(|(_, t)| timer_call(t)).collect();
        let modelled: BTreeSet<CallId> = self.live.keys().copied().collect();
        assert_eq!(live, modelled, "every live call, and only those, has a timer");
    }

    /// The transport goes quiet: deadlines and backoffs end every call.
    fn quiet(&mut self) {
        for _ in 0..100 {
            let Some((at, _)) = self.c.next_timer() else { break };
            self.now = self.now.max(at);
            self.apply(Action::Advance(0));
        }
        assert_eq!(self.c.calls_in_progress(), 0, "calls left: {:?}", self.live);
        assert!(self.live.is_empty());
    }
}

fn timer_call(timer: ClientTimer) -> CallId {
    match timer {
        ClientTimer::Deadline(call) | ClientTimer::Retry(call) => call,
    }
}
