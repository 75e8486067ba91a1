//! The client machine driven by hand: deadlines, budgets, backoff, late replies.

use super::*;
use std::collections::BTreeMap;

const T: TenantId = TenantId([3; 16]);

fn config() -> ClientConfig {
    ClientConfig {
        call_timeout_ms: 1_000,
        budgets: CallBudgets { re_attach_attempts: 1, tenant_attempts: 3, validate_attempts: 4 },
        backoff_base_ms: 100,
        backoff_max_ms: 250,
        link_margin_ms: 0,
    }
}

fn validate() -> CpRequest {
    CpRequest::Validate { tenants: vec![(T, Generation::FIRST)] }
}

fn validated() -> ControlPlaneReply {
    ControlPlaneReply::Validated { results: vec![(T, true)] }
}

/// Drains the effects, checking the invariants after each.
fn drain(c: &mut ControlPlaneClient) -> Vec<ClientEffect> {
    c.check_invariants();
    let effects: Vec<ClientEffect> = std::iter::from_fn(|| c.poll_effect()).collect();
    c.check_invariants();
    effects
}

/// Fires every client timer due at `now`, each by name.
fn fire(c: &mut ControlPlaneClient, now: Instant) {
    while let Some((at, timer)) = c.next_timer().filter(|(at, _)| *at <= now) {
        c.handle_timeout(now, timer);
        assert_ne!(c.next_timer(), Some((at, timer)), "a fired timer stays due");
    }
}

fn sent(effects: &[ClientEffect]) -> OpId {
    match effects {
        [ClientEffect::Send { attempt, .. }] => *attempt,
        other => panic!("expected one Send, got {other:?}"),
    }
}

#[test]
fn an_answered_call_is_done_once_with_its_reply() {
    let mut c = ControlPlaneClient::new(config());
    let now = Instant::from_millis(5);
    let call = c.handle_call(now, validate());
    let attempt = sent(&drain(&mut c));
    assert_eq!(c.poll_timeout(), Some(now.plus_millis(1_000)), "the attempt's deadline");
    c.handle_reply(now, attempt, Ok(validated())).unwrap();
    assert_eq!(drain(&mut c), vec![ClientEffect::Done { call, result: Ok(validated()) }]);
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.calls_in_progress(), 0);
}

#[test]
fn a_deadline_fires_a_timeout_then_the_budget_is_spent() {
    let mut c = ControlPlaneClient::new(config());
    let mut now = Instant::ZERO;
    let call = c.handle_call(now, CpRequest::Detach { tenant: T, node: NodeId(1) });
    let mut attempts = vec![sent(&drain(&mut c))];
    // Tenant calls have 3 attempts: two backoffs (100, 200 ms) between three deadlines.
    for backoff_ms in [100, 200] {
        now = now.plus_millis(999);
        fire(&mut c, now);
        assert!(drain(&mut c).is_empty(), "nothing before the deadline");
        now = now.plus_millis(1);
        fire(&mut c, now);
        assert!(drain(&mut c).is_empty(), "a timeout backs off first");
        let timers: Vec<_> = c.timers().collect();
        assert_eq!(timers, vec![(now.plus_millis(backoff_ms), ClientTimer::Retry(call))]);
        now = now.plus_millis(backoff_ms);
        fire(&mut c, now);
        attempts.push(sent(&drain(&mut c)));
    }
    now = now.plus_millis(1_000);
    fire(&mut c, now);
    let failure = CallFailure::Timeout { deadline_ms: 1_000 };
    assert_eq!(drain(&mut c), vec![ClientEffect::Done { call, result: Err(failure) }]);
    assert_eq!(c.stats().timeouts_total, 3);
    assert_eq!(c.stats().calls_failed_total, 1);
    assert_eq!(attempts.len(), 3, "exactly the budget: {attempts:?}");
    // The first attempt's reply, long late: dropped and counted.
    c.handle_reply(now, attempts[0], Ok(ControlPlaneReply::Detached)).unwrap();
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.stats().late_replies_total, 1);
}

/// Cluster seed 5475: an attach's first attempt, held 11 s on the way, reached the
/// control plane after its retry had been answered and granted a generation newer
/// than the node's. A timed-out attempt's retry therefore waits until the transport
/// has given the attempt up (`link_margin_ms` past its deadline), then its backoff.
#[test]
fn a_retry_after_a_deadline_waits_until_the_link_has_given_the_attempt_up() {
    let mut c = ControlPlaneClient::new(ClientConfig { link_margin_ms: 1_000, ..config() });
    let mut now = Instant::ZERO;
    let attach = CpRequest::Attach { tenant: T, node: NodeId(1), reported: None };
    let call = c.handle_call(now, attach);
    sent(&drain(&mut c));
    now = now.plus_millis(1_000);
    fire(&mut c, now);
    let timers: Vec<_> = c.timers().collect();
    assert_eq!(timers, vec![(now.plus_millis(1_100), ClientTimer::Retry(call))]);
    fire(&mut c, now.plus_millis(1_099));
    assert!(drain(&mut c).is_empty(), "no retry while the old attempt may still be sent");
    fire(&mut c, now.plus_millis(1_100));
    sent(&drain(&mut c));
}

/// Cluster seed 276: start-up's re-attach (a budget of one) timed out, and emergency
/// mode's next re-attach was answered before the first reached the control plane.
/// A call whose last attempt timed out reports the `Timeout` only once the link has
/// given the attempt up, so the caller's next call cannot overtake it.
#[test]
fn a_timeout_with_no_budget_left_surfaces_once_the_link_has_given_the_attempt_up() {
    let mut c = ControlPlaneClient::new(ClientConfig { link_margin_ms: 1_000, ..config() });
    let mut now = Instant::ZERO;
    let call =
        c.handle_call(now, CpRequest::ReAttach { node: NodeId(1), held_back: Default::default() });
    let attempt = sent(&drain(&mut c));
    now = now.plus_millis(1_000);
    fire(&mut c, now);
    assert!(drain(&mut c).is_empty(), "not while the attempt may still be sent");
    assert_eq!(c.poll_timeout(), Some(now.plus_millis(1_000)));
    c.handle_reply(now, attempt, Ok(ControlPlaneReply::ReAttached { tenants: vec![] })).unwrap();
    assert!(drain(&mut c).is_empty(), "a reply after the deadline is late, even now");
    fire(&mut c, now.plus_millis(1_000));
    let failure = CallFailure::Timeout { deadline_ms: 1_000 };
    assert_eq!(drain(&mut c), vec![ClientEffect::Done { call, result: Err(failure) }]);
    assert_eq!(c.stats().calls_failed_total, 1);
    assert_eq!(c.calls_in_progress(), 0);
}

#[test]
fn unreachable_backs_off_doubling_up_to_the_cap_then_the_failure_surfaces() {
    let mut c = ControlPlaneClient::new(config());
    let mut now = Instant::ZERO;
    let call = c.handle_call(now, validate());
    let mut attempt = sent(&drain(&mut c));
    // Validate has 4 attempts: backoffs 100, 200, then capped at 250.
    for backoff_ms in [100, 200, 250] {
        c.handle_unreachable(now, attempt, "connection refused".into()).unwrap();
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), Some(now.plus_millis(backoff_ms)));
        fire(&mut c, now.plus_millis(backoff_ms - 1));
        assert!(drain(&mut c).is_empty(), "no retry before the backoff ends");
        now = now.plus_millis(backoff_ms);
        fire(&mut c, now);
        attempt = sent(&drain(&mut c));
    }
    c.handle_unreachable(now, attempt, "connection refused".into()).unwrap();
    let failure = CallFailure::Unreachable("connection refused".into());
    assert_eq!(drain(&mut c), vec![ClientEffect::Done { call, result: Err(failure) }]);
    assert_eq!(c.stats().unreachable_total, 4);
}

#[test]
fn retryable_refusals_are_retried_and_final_ones_surface_at_once() {
    let mut c = ControlPlaneClient::new(config());
    let now = Instant::ZERO;
    let attach = CpRequest::Attach { tenant: T, node: NodeId(1), reported: None };
    let call = c.handle_call(now, attach.clone());
    let attempt = sent(&drain(&mut c));
    let store = ControlPlaneError::StoreFailed("fsync".into());
    c.handle_reply(now, attempt, Err(store)).unwrap();
    assert!(drain(&mut c).is_empty(), "a store failure is retried");
    fire(&mut c, now.plus_millis(100));
    let attempt = sent(&drain(&mut c));
    let generation = Generation::FIRST;
    c.handle_reply(now, attempt, Ok(ControlPlaneReply::Attached { generation })).unwrap();
    let done = ClientEffect::Done { call, result: Ok(ControlPlaneReply::Attached { generation }) };
    assert_eq!(drain(&mut c), vec![done]);

    let call = c.handle_call(now, CpRequest::Detach { tenant: T, node: NodeId(1) });
    let attempt = sent(&drain(&mut c));
    let unknown = ControlPlaneError::UnknownTenant(T);
    c.handle_reply(now, attempt, Err(unknown.clone())).unwrap();
    let failure = CallFailure::Refused(unknown);
    assert_eq!(drain(&mut c), vec![ClientEffect::Done { call, result: Err(failure) }]);
}

#[test]
fn re_attach_has_a_budget_of_one_so_start_up_decides_at_once() {
    let mut c = ControlPlaneClient::new(ClientConfig::default());
    let call = c.handle_call(
        Instant::ZERO,
        CpRequest::ReAttach { node: NodeId(1), held_back: BTreeSet::new() },
    );
    let attempt = sent(&drain(&mut c));
    c.handle_unreachable(Instant::ZERO, attempt, "down".into()).unwrap();
    let failure = CallFailure::Unreachable("down".into());
    assert_eq!(drain(&mut c), vec![ClientEffect::Done { call, result: Err(failure) }]);
}

#[test]
fn bogus_inputs_are_typed_errors() {
    let mut c = ControlPlaneClient::new(config());
    assert_eq!(
        c.handle_reply(Instant::ZERO, OpId(7), Ok(validated())),
        Err(ClientInputError::UnknownAttempt(OpId(7)))
    );
    c.handle_call(Instant::ZERO, validate());
    let attempt = sent(&drain(&mut c));
    let wrong = c.handle_reply(Instant::ZERO, attempt, Ok(ControlPlaneReply::Detached));
    assert!(matches!(wrong, Err(ClientInputError::WrongReply { .. })), "{wrong:?}");
    assert!(c.is_in_flight(attempt), "a wrong reply leaves the attempt to its deadline");
    c.check_invariants();
}

/// `a_deadline_fires_a_timeout_then_the_budget_is_spent` and
/// `bogus_inputs_are_typed_errors`, driven through `handle` alone.
#[test]
fn handle_dispatches_every_input_and_types_an_illegal_one() {
    let mut c = ControlPlaneClient::new(config());
    let mut now = Instant::ZERO;
    let Ok(ClientOutput::Call(call)) =
        c.handle(now, ClientInput::Call(CpRequest::Detach { tenant: T, node: NodeId(1) }))
    else {
        panic!("a call is answered with its id")
    };
    let mut attempts = vec![sent(&drain(&mut c))];
    // Three attempts: the first unreachable, the second refused (retryable), the
    // third times out; the call then fails with the timeout.
    now = now.plus_millis(10);
    let message = "refused".to_string();
    let input = ClientInput::Unreachable { attempt: attempts[0], message };
    assert_eq!(c.handle(now, input), Ok(ClientOutput::Done));
    assert!(drain(&mut c).is_empty(), "backs off first");
    now = now.plus_millis(100);
    c.handle(now, ClientInput::Timeout(ClientTimer::Retry(call))).unwrap();
    attempts.push(sent(&drain(&mut c)));
    let overloaded = ControlPlaneError::Overloaded { queued: 1 };
    let input = ClientInput::Reply { attempt: attempts[1], reply: Err(overloaded) };
    c.handle(now, input).unwrap();
    assert!(drain(&mut c).is_empty(), "a retryable refusal backs off");
    now = now.plus_millis(200);
    c.handle(now, ClientInput::Timeout(ClientTimer::Retry(call))).unwrap();
    attempts.push(sent(&drain(&mut c)));
    // The deadline, named but not yet due: nothing.
    c.handle(now, ClientInput::Timeout(ClientTimer::Deadline(call))).unwrap();
    assert!(drain(&mut c).is_empty() && c.is_in_flight(attempts[2]));
    // A wrong kind of reply is typed and leaves the attempt in flight.
    let wrong = ClientInput::Reply { attempt: attempts[2], reply: Ok(validated()) };
    assert!(matches!(c.handle(now, wrong), Err(ClientInputError::WrongReply { .. })));
    now = now.plus_millis(1_000);
    c.handle(now, ClientInput::Timeout(ClientTimer::Deadline(call))).unwrap();
    let failure = CallFailure::Timeout { deadline_ms: 1_000 };
    assert_eq!(drain(&mut c), vec![ClientEffect::Done { call, result: Err(failure) }]);
    assert_eq!(attempts.len(), 3, "exactly the budget: {attempts:?}");
    // An attempt never sent.
    let bogus = ClientInput::Reply { attempt: OpId(999), reply: Ok(validated()) };
    assert_eq!(c.handle(now, bogus), Err(ClientInputError::UnknownAttempt(OpId(999))));
}

/// What the transport and the clock may do next, drawn by proptest.
#[derive(Clone, Debug)]
enum Step {
    Call(u8),
    /// Answer the n-th oldest attempt not yet answered (it may be stale).
    Reply(usize, bool),
    Unreachable(usize),
    Refuse(usize, bool),
    Advance(u64),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        (0u8..4).prop_map(Step::Call),
        (0usize..4, any::<bool>()).prop_map(|(i, ok)| Step::Reply(i, ok)),
        (0usize..4).prop_map(Step::Unreachable),
        (0usize..4, any::<bool>()).prop_map(|(i, r)| Step::Refuse(i, r)),
        (0u64..3_000).prop_map(Step::Advance),
    ]
}

fn request(n: u8) -> CpRequest {
    match n {
        0 => CpRequest::ReAttach { node: NodeId(1), held_back: BTreeSet::new() },
        1 => CpRequest::Attach { tenant: T, node: NodeId(1), reported: None },
        2 => CpRequest::Detach { tenant: T, node: NodeId(1) },
        _ => validate(),
    }
}

fn reply_to(request: &CpRequest) -> ControlPlaneReply {
    match request {
        CpRequest::ReAttach { .. } => ControlPlaneReply::ReAttached { tenants: vec![] },
        CpRequest::Attach { .. } => ControlPlaneReply::Attached { generation: Generation::FIRST },
        CpRequest::Detach { .. } => ControlPlaneReply::Detached,
        CpRequest::Validate { .. } => validated(),
    }
}

proptest::proptest! {
    /// Whatever the transport and the clock do: every call ends exactly once, no
    /// call sends more attempts than its budget, and once the transport goes quiet
    /// every call ends within its budget of deadlines and backoffs.
    #[test]
    fn every_call_ends_once_within_its_budget(steps in proptest::collection::vec(step(), 0..60)) {
        let mut c = ControlPlaneClient::new(config());
        let mut now = Instant::ZERO;
        let mut calls: BTreeMap<CallId, CpRequest> = BTreeMap::new();
        let mut attempts: BTreeMap<CallId, u32> = BTreeMap::new();
        let mut done: BTreeMap<CallId, u32> = BTreeMap::new();
        let mut outstanding: Vec<(OpId, CpRequest)> = Vec::new();
        let record = |c: &mut ControlPlaneClient,
                          outstanding: &mut Vec<(OpId, CpRequest)>,
                          done: &mut BTreeMap<CallId, u32>| {
            for effect in drain(c) {
                match effect {
                    ClientEffect::Send { attempt, request } => outstanding.push((attempt, request)),
                    ClientEffect::Done { call, .. } => *done.entry(call).or_default() += 1,
                }
            }
        };
        for s in steps {
            match s {
                Step::Call(n) => {
                    let call = c.handle_call(now, request(n));
                    calls.insert(call, request(n));
                }
                Step::Reply(i, ok) if i < outstanding.len() => {
                    let (attempt, request) = outstanding.remove(i);
                    let reply = if ok { Ok(reply_to(&request)) } else { Err(ControlPlaneError::Overloaded { queued: 1 }) };
                    c.handle_reply(now, attempt, reply).unwrap();
                }
                Step::Unreachable(i) if i < outstanding.len() => {
                    let (attempt, _) = outstanding.remove(i);
                    c.handle_unreachable(now, attempt, "down".into()).unwrap();
                }
                Step::Refuse(i, retryable) if i < outstanding.len() => {
                    let (attempt, _) = outstanding.remove(i);
                    let e = if retryable { ControlPlaneError::StoreFailed("x".into()) } else { ControlPlaneError::UnknownTenant(T) };
                    c.handle_reply(now, attempt, Err(e)).unwrap();
                }
                Step::Advance(ms) => {
                    now = now.plus_millis(ms);
                    fire(&mut c, now);
                }
                _ => {}
            }
            record(&mut c, &mut outstanding, &mut done);
            for id in calls.keys() {
                let sent = c.calls.get(id).map(|call| call.attempts);
                if let Some(sent) = sent {
                    attempts.insert(*id, sent);
                }
            }
        }
        // The transport goes quiet: deadlines and backoffs end every call.
        for _ in 0..100 {
            let Some((at, _)) = c.next_timer() else { break };
            now = now.max(at);
            fire(&mut c, now);
            record(&mut c, &mut outstanding, &mut done);
        }
        proptest::prop_assert_eq!(c.calls_in_progress(), 0);
        for (id, request) in &calls {
            proptest::prop_assert_eq!(done.get(id).copied(), Some(1), "{:?} ended {:?} times", id, done.get(id));
            let budget = config().budget(request.kind());
            proptest::prop_assert!(attempts.get(id).copied().unwrap_or(1) <= budget);
        }
        proptest::prop_assert!(c.stats().attempts_total >= calls.len() as u64);
    }
}

/// The client's reference world ([`super::super::client_world`]), actions drawn by
/// proptest: every effect checked against the world's model of each call.
fn world_action() -> impl proptest::strategy::Strategy<Value = super::super::client_world::Action> {
    use super::super::client_world::Action;
    use proptest::prelude::*;
    prop_oneof![
        3 => any::<u8>().prop_map(Action::Call),
        4 => (any::<u16>(), any::<u8>()).prop_map(|(p, h)| Action::Reply(p, h)),
        2 => any::<u16>().prop_map(Action::Unreachable),
        1 => (0..4u16).prop_map(Action::Bogus),
        4 => (0..1500u16).prop_map(Action::Advance),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(p, d)| Action::Fire(p, d)),
    ]
}

proptest::proptest! {
    #[test]
    fn the_world_model_agrees_with_every_effect(
        actions in proptest::collection::vec(world_action(), 0..80)
    ) {
        super::super::client_world::run(actions);
    }
}

/// Each check of [`ControlPlaneClient::check_invariants`] fires on a state that
/// breaks it: `healthy()` passes every check, the corruption breaks one rule.
mod checks_fire {
    use super::*;

    /// A validate call with its first attempt in flight, and a detach call
    /// backing off after its first attempt failed.
    fn healthy() -> (ControlPlaneClient, CallId, CallId) {
        let mut c = ControlPlaneClient::new(config());
        let flying = c.handle_call(Instant::ZERO, validate());
        let backing_off =
            c.handle_call(Instant::ZERO, CpRequest::Detach { tenant: T, node: NodeId(1) });
        let attempt = drain(&mut c)
            .into_iter()
            .find_map(|e| match e {
                ClientEffect::Send { attempt, request: CpRequest::Detach { .. } } => Some(attempt),
                _ => None,
            })
            .unwrap();
        c.handle_unreachable(Instant::ZERO, attempt, "down".into()).unwrap();
        c.check_invariants();
        (c, flying, backing_off)
    }

    #[test]
    #[should_panic(expected = "in flight for CallId(1), whose state is")]
    fn an_attempt_in_flight_for_a_call_backing_off() {
        let (mut c, flying, backing_off) = healthy();
        let (attempt, _) = c.in_flight.iter().find(|(_, call)| **call == flying).unwrap();
        c.in_flight.insert(*attempt, backing_off);
        c.check_invariants();
    }

    #[test]
    #[should_panic(expected = "attempts, budget 4")]
    fn a_call_over_its_budget() {
        let (mut c, flying, _) = healthy();
        c.calls.get_mut(&flying).unwrap().attempts = 5;
        c.check_invariants();
    }

    #[test]
    #[should_panic(expected = "attempt untracked")]
    fn an_attempt_in_flight_not_tracked() {
        let (mut c, _, _) = healthy();
        c.in_flight.clear();
        c.check_invariants();
    }

    #[test]
    #[should_panic(expected = "backs off with no budget left")]
    fn a_backoff_with_no_budget_left() {
        let (mut c, _, backing_off) = healthy();
        c.calls.get_mut(&backing_off).unwrap().attempts = 3;
        c.check_invariants();
    }

    #[test]
    #[should_panic(expected = "attempts counted wrong")]
    fn fewer_attempts_sent_than_in_flight() {
        let (mut c, _, _) = healthy();
        c.sent = 0;
        c.check_invariants();
    }
}
