//! One test per rule of the generation table, through a tiny synchronous harness
//! that plays the store and remote storage.

use super::*;

fn g(n: u32) -> Generation {
    Generation::new(n).unwrap()
}

fn t(n: u8) -> TenantId {
    TenantId([n; 16])
}

const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
const NOW: Instant = Instant::ZERO;

/// Plays the store: `store` is what is durable. `remote_max` answers listings.
struct Harness {
    cp: ControlPlane,
    store: BTreeMap<TenantId, TenantRecord>,
    remote_max: BTreeMap<TenantId, Generation>,
    /// Persists answered with this error instead of Ok, while set.
    fail_persists: Option<String>,
    next_req: u64,
}

impl Harness {
    fn new() -> Self {
        Harness {
            cp: ControlPlane::recover(Vec::new()),
            store: BTreeMap::new(),
            remote_max: BTreeMap::new(),
            fail_persists: None,
            next_req: 0,
        }
    }

    /// Drops the machine, keeps the store.
    fn restart(&mut self) {
        self.cp = ControlPlane::recover(self.store.values().cloned().collect());
        self.cp.check_invariants();
    }

    fn req(&mut self) -> RequestId {
        self.next_req += 1;
        RequestId(self.next_req)
    }

    /// Runs effects to completion; returns the reply to `req`.
    fn settle(&mut self, req: RequestId) -> Result<ControlPlaneReply, ControlPlaneError> {
        let mut answer = None;
        while let Some(effect) = self.cp.poll_effect() {
            self.cp.check_invariants();
            match effect {
                ControlPlaneEffect::Persist { op, change } => {
                    let result = match &self.fail_persists {
                        Some(message) => Err(crate::io_error::IoError::new(
                            crate::io_error::IoErrorKind::Transient,
                            crate::io_error::IoTarget::Store,
                            message.clone(),
                        )),
                        None => {
                            for r in change.records() {
                                self.store.insert(r.tenant, r.clone());
                            }
                            Ok(())
                        }
                    };
                    self.cp.handle_persisted(NOW, op, result).unwrap();
                }
                ControlPlaneEffect::ListRemoteGenerations { op, tenant } => {
                    let found = self.remote_max.get(&tenant).copied();
                    self.cp.handle_remote_generations(NOW, op, found).unwrap();
                }
                ControlPlaneEffect::Reply { req: r, reply } if r == req => answer = Some(reply),
                ControlPlaneEffect::Reply { .. } => {}
            }
            self.cp.check_invariants();
        }
        answer.expect("the request was answered")
    }

    fn attach(
        &mut self,
        tenant: TenantId,
        node: NodeId,
        reported: Option<Generation>,
    ) -> Generation {
        let req = self.req();
        self.cp.handle_attach(NOW, req, tenant, node, reported);
        match self.settle(req) {
            Ok(ControlPlaneReply::Attached { generation }) => generation,
            other => panic!("attach answered {other:?}"),
        }
    }

    fn re_attach(&mut self, node: NodeId) -> Vec<ReAttachedTenant> {
        let req = self.req();
        self.cp.handle_re_attach(NOW, req, node);
        match self.settle(req) {
            Ok(ControlPlaneReply::ReAttached { tenants }) => tenants,
            other => panic!("re-attach answered {other:?}"),
        }
    }

    fn validate(&mut self, pairs: Vec<(TenantId, Generation)>) -> Vec<(TenantId, bool)> {
        let req = self.req();
        self.cp.handle_validate(NOW, req, pairs);
        match self.settle(req) {
            Ok(ControlPlaneReply::Validated { results }) => results,
            other => panic!("validate answered {other:?}"),
        }
    }
}

#[test]
fn attach_increments_the_generation_and_records_the_node() {
    let mut h = Harness::new();
    assert_eq!(h.attach(t(1), N1, None), g(1));
    assert_eq!(h.attach(t(1), N2, None), g(2));
    assert_eq!(h.cp.record(t(1)).unwrap().attached_to, Some(N2));
    assert_eq!(h.store[&t(1)].generation, g(2));
}

#[test]
fn a_fresh_store_starts_above_remote_storage_and_the_reported_generation() {
    let mut h = Harness::new();
    h.remote_max.insert(t(1), g(41));
    assert_eq!(h.attach(t(1), N1, None), g(42), "S-GEN-MONO: above remote storage");
    h.remote_max.insert(t(2), g(3));
    assert_eq!(h.attach(t(2), N1, Some(g(9))), g(10), "above the node's LocationConf");
    // A known tenant trusts the table but still goes above a reported generation.
    assert_eq!(h.attach(t(2), N2, Some(g(20))), g(21));
}

#[test]
fn the_reply_waits_for_the_persist() {
    let mut h = Harness::new();
    h.cp.handle_attach(NOW, RequestId(1), t(1), N1, None);
    let list = h.cp.poll_effect().unwrap();
    let ControlPlaneEffect::ListRemoteGenerations { op, .. } = list else { panic!("{list:?}") };
    h.cp.handle_remote_generations(NOW, op, None).unwrap();
    let persist = h.cp.poll_effect().unwrap();
    let ControlPlaneEffect::Persist { op, .. } = persist else { panic!("{persist:?}") };
    assert_eq!(h.cp.poll_effect(), None, "no reply before the store confirmed");
    assert!(h.validate(vec![(t(1), g(1))]).iter().all(|(_, v)| !v), "not durable, not valid");
    h.cp.handle_persisted(NOW, op, Ok(())).unwrap();
    let reply = ControlPlaneReply::Attached { generation: g(1) };
    let expected = ControlPlaneEffect::Reply { req: RequestId(1), reply: Ok(reply) };
    assert_eq!(h.cp.poll_effect(), Some(expected));
}

#[test]
fn re_attach_bumps_every_tenant_of_the_node() {
    let mut h = Harness::new();
    h.attach(t(1), N1, None);
    h.attach(t(2), N1, None);
    h.attach(t(2), N1, None);
    h.attach(t(3), N2, None);
    let got = h.re_attach(N1);
    let want =
        vec![ReAttachedTenant::new(t(1), g(2), true), ReAttachedTenant::new(t(2), g(3), true)];
    assert_eq!(got, want);
    assert_eq!(h.store[&t(2)].generation, g(3), "persisted before the reply");
    assert_eq!(h.re_attach(NodeId(9)), vec![], "a node with no tenants gets an empty list");
}

#[test]
fn validate_accepts_only_the_current_generation() {
    let mut h = Harness::new();
    h.attach(t(1), N1, None);
    h.attach(t(1), N2, None);
    let got = h.validate(vec![(t(1), g(1)), (t(1), g(2)), (t(7), g(1)), (t(1), g(3))]);
    assert_eq!(got, vec![(t(1), false), (t(1), true), (t(7), false), (t(1), false)]);
}

#[test]
fn detach_keeps_the_generation_and_unknown_tenants_are_errors() {
    let mut h = Harness::new();
    h.attach(t(1), N1, None);
    let req = h.req();
    h.cp.handle_detach(NOW, req, t(1), N1);
    assert_eq!(h.settle(req), Ok(ControlPlaneReply::Detached));
    assert_eq!(h.store[&t(1)], TenantRecord { tenant: t(1), generation: g(1), attached_to: None });
    assert_eq!(h.re_attach(N1), vec![], "a detached tenant is not re-attached");
    let req = h.req();
    h.cp.handle_detach(NOW, req, t(5), N1);
    assert_eq!(h.settle(req), Err(ControlPlaneError::UnknownTenant(t(5))));
}

#[test]
fn restart_of_the_table_keeps_what_the_store_holds() {
    let mut h = Harness::new();
    h.attach(t(1), N1, None);
    h.attach(t(1), N1, None);
    h.restart();
    assert_eq!(h.validate(vec![(t(1), g(2))]), vec![(t(1), true)]);
    assert_eq!(h.attach(t(1), N2, None), g(3));
}

#[test]
fn a_crash_before_commit_loses_the_change_and_sends_no_reply() {
    let mut h = Harness::new();
    h.attach(t(1), N1, None);
    h.cp.handle_attach(NOW, RequestId(99), t(1), N2, None);
    let persist = h.cp.poll_effect().unwrap();
    assert!(matches!(persist, ControlPlaneEffect::Persist { .. }));
    assert_eq!(h.cp.poll_effect(), None);
    h.restart(); // the store never saw the change
    assert_eq!(h.cp.record(t(1)).unwrap().generation, g(1));
    assert_eq!(h.attach(t(1), N2, None), g(2));
}

#[test]
fn a_failed_persist_answers_an_error_and_never_reuses_its_generation() {
    let mut h = Harness::new();
    h.attach(t(1), N1, None);
    h.fail_persists = Some("disk I/O error".into());
    let req = h.req();
    h.cp.handle_attach(NOW, req, t(1), N2, None);
    assert_eq!(h.settle(req), Err(ControlPlaneError::StoreFailed("disk I/O error".into())));
    assert_eq!(h.cp.store_failures_total(), 1);
    assert_eq!(h.validate(vec![(t(1), g(1))]), vec![(t(1), true)], "table unchanged");
    h.fail_persists = None;
    // g2 may have landed: the next grant goes above it.
    assert_eq!(h.attach(t(1), N2, None), g(3));
    // And re-attach of N1 after a failure cannot claim the previous one was its own.
    h.attach(t(2), N1, None);
    h.fail_persists = Some("full".into());
    let req = h.req();
    h.cp.handle_re_attach(NOW, req, N1);
    assert!(h.settle(req).is_err());
    h.fail_persists = None;
    let got = h.re_attach(N1);
    assert_eq!(got, vec![ReAttachedTenant::new(t(2), g(3), false)]);
}

/// A tenant the node holds back (a generation conflict in its remote storage) keeps
/// its generation and its node, and is not answered: nothing is granted over it.
#[test]
fn re_attach_leaves_held_back_tenants_as_they_are() {
    let mut h = Harness::new();
    h.attach(t(1), N1, None);
    h.attach(t(2), N1, None);
    let req = h.req();
    h.cp.handle_re_attach_holding_back(NOW, req, N1, [t(2)].into_iter().collect());
    let got = match h.settle(req) {
        Ok(ControlPlaneReply::ReAttached { tenants }) => tenants,
        other => panic!("re-attach answered {other:?}"),
    };
    assert_eq!(got, vec![ReAttachedTenant::new(t(1), g(2), true)]);
    assert_eq!(
        h.store[&t(2)],
        TenantRecord { tenant: t(2), generation: g(1), attached_to: Some(N1) }
    );
}

#[test]
fn requests_queue_behind_the_one_in_progress() {
    let mut h = Harness::new();
    h.cp.handle_attach(NOW, RequestId(1), t(1), N1, None);
    h.cp.handle_attach(NOW, RequestId(2), t(1), N2, None);
    assert_eq!(h.cp.queued_requests(), 1);
    h.cp.check_invariants();
    let mut replies = Vec::new();
    while let Some(effect) = h.cp.poll_effect() {
        match effect {
            ControlPlaneEffect::Persist { op, change } => {
                for r in change.records() {
                    h.store.insert(r.tenant, r.clone());
                }
                h.cp.handle_persisted(NOW, op, Ok(())).unwrap();
            }
            ControlPlaneEffect::ListRemoteGenerations { op, .. } => {
                h.cp.handle_remote_generations(NOW, op, None).unwrap();
            }
            ControlPlaneEffect::Reply { req, reply } => replies.push((req, reply)),
        }
    }
    let attached = |n| Ok(ControlPlaneReply::Attached { generation: g(n) });
    assert_eq!(replies, vec![(RequestId(1), attached(1)), (RequestId(2), attached(2))]);
}

#[test]
fn overload_and_stale_completions_are_typed_errors() {
    let mut cp = ControlPlane::recover(Vec::new());
    assert_eq!(
        cp.handle_persisted(NOW, OpId(5), Ok(())),
        Err(ControlPlaneInputError::UnexpectedCompletion(OpId(5)))
    );
    for i in 0..=MAX_QUEUED_REQUESTS as u64 {
        cp.handle_attach(NOW, RequestId(i), t(1), N1, None);
    }
    cp.handle_attach(NOW, RequestId(u64::MAX), t(1), N1, None);
    cp.check_invariants();
    let refused = std::iter::from_fn(|| cp.poll_effect()).any(|e| {
        matches!(
            e,
            ControlPlaneEffect::Reply {
                req: RequestId(u64::MAX),
                reply: Err(ControlPlaneError::Overloaded { .. })
            }
        )
    });
    assert!(refused);
}

#[test]
fn generation_exhaustion_is_an_error_not_a_wrap() {
    let max = g(u32::MAX);
    let record = TenantRecord { tenant: t(1), generation: max, attached_to: Some(N1) };
    let mut h = Harness::new();
    h.store.insert(t(1), record);
    h.restart();
    let req = h.req();
    h.cp.handle_attach(NOW, req, t(1), N2, None);
    assert_eq!(h.settle(req), Err(ControlPlaneError::GenerationExhausted(t(1), max)));
}

/// `the_reply_waits_for_the_persist`, a re-attach, a detach, a validation and a
/// stale completion, driven through `handle` alone.
#[test]
fn handle_dispatches_every_input_and_types_a_stale_completion() {
    let mut cp = ControlPlane::recover(Vec::new());
    let effects = |cp: &mut ControlPlane| {
        cp.check_invariants();
        std::iter::from_fn(|| cp.poll_effect()).collect::<Vec<_>>()
    };
    let attach =
        ControlPlaneInput::Attach { req: RequestId(1), tenant: t(1), node: N1, reported: None };
    cp.handle(NOW, attach).unwrap();
    let [ControlPlaneEffect::ListRemoteGenerations { op, .. }] = effects(&mut cp)[..] else {
        panic!("a new tenant is listed first")
    };
    cp.handle(NOW, ControlPlaneInput::RemoteGenerations { op, max_found: Some(g(4)) }).unwrap();
    let [ControlPlaneEffect::Persist { op, .. }] = effects(&mut cp)[..] else {
        panic!("then persisted")
    };
    let stale = ControlPlaneInput::Persisted { op: OpId(op.0 + 100), result: Ok(()) };
    let stale_op = OpId(op.0 + 100);
    assert_eq!(cp.handle(NOW, stale), Err(ControlPlaneInputError::UnexpectedCompletion(stale_op)));
    assert!(effects(&mut cp).is_empty(), "no reply before the store confirmed");
    cp.handle(NOW, ControlPlaneInput::Persisted { op, result: Ok(()) }).unwrap();
    let reply = ControlPlaneReply::Attached { generation: g(5) };
    let expected = ControlPlaneEffect::Reply { req: RequestId(1), reply: Ok(reply) };
    assert_eq!(effects(&mut cp), vec![expected]);
    // Re-attach bumps it; the old generation is no longer valid.
    let re_attach =
        ControlPlaneInput::ReAttach { req: RequestId(2), node: N1, held_back: BTreeSet::new() };
    cp.handle(NOW, re_attach).unwrap();
    let [ControlPlaneEffect::Persist { op, .. }] = effects(&mut cp)[..] else { panic!() };
    cp.handle(NOW, ControlPlaneInput::Persisted { op, result: Ok(()) }).unwrap();
    let re_attached = ReAttachedTenant::new(t(1), g(6), true);
    let reply = ControlPlaneReply::ReAttached { tenants: vec![re_attached] };
    assert_eq!(
        effects(&mut cp),
        vec![ControlPlaneEffect::Reply { req: RequestId(2), reply: Ok(reply) }]
    );
    let validate = ControlPlaneInput::Validate {
        req: RequestId(3),
        tenants: vec![(t(1), g(5)), (t(1), g(6))],
    };
    cp.handle(NOW, validate).unwrap();
    let reply = ControlPlaneReply::Validated { results: vec![(t(1), false), (t(1), true)] };
    assert_eq!(
        effects(&mut cp),
        vec![ControlPlaneEffect::Reply { req: RequestId(3), reply: Ok(reply) }]
    );
    cp.handle(NOW, ControlPlaneInput::Detach { req: RequestId(4), tenant: t(1), node: N1 })
        .unwrap();
    let [ControlPlaneEffect::Persist { op, .. }] = effects(&mut cp)[..] else { panic!() };
    cp.handle(NOW, ControlPlaneInput::Persisted { op, result: Ok(()) }).unwrap();
    assert_eq!(
        effects(&mut cp),
        vec![ControlPlaneEffect::Reply {
            req: RequestId(4),
            reply: Ok(ControlPlaneReply::Detached)
        }]
    );
    assert_eq!(cp.record(t(1)).map(|r| (r.generation, r.attached_to)), Some((g(6), None)));
    assert_eq!(
        cp.handle(NOW, ControlPlaneInput::RemoteGenerations { op: OpId(0), max_found: None }),
        Err(ControlPlaneInputError::UnexpectedCompletion(OpId(0)))
    );
}

/// The generation table's reference world ([`world`]), actions drawn by proptest:
/// requests, persists succeeding, failing (landed or not) and lost, listings, crashes.
fn world_action() -> impl proptest::strategy::Strategy<Value = world::Action> {
    use proptest::prelude::*;
    use world::Action;
    prop_oneof![
        4 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(t, n, r)| Action::Attach(t, n, r)),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(n, m)| Action::ReAttach(n, m)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(t, n)| Action::Detach(t, n)),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(t, p)| Action::Validate(t, p)),
        6 => Just(Action::PersistOk),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(k, l)| Action::PersistFailed(k, l)),
        1 => Just(Action::PersistLost),
        2 => (0..20u32).prop_map(Action::Listed),
        1 => any::<bool>().prop_map(Action::Crash),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]
    #[test]
    fn the_world_keeps_generations_durable_and_increasing(
        actions in proptest::collection::vec(world_action(), 0..120)
    ) {
        world::run(actions);
    }
}

/// Each check of [`ControlPlane::check_invariants`] (and its reply-durability
/// check) fires on a state that breaks it: `healthy()` passes every check, the
/// corruption breaks exactly one rule.
mod checks_fire {
    use super::*;

    /// A table holding t(1) at g(3) on N1, with an attach of t(1) persisting g(4)
    /// and a detach of t(2) waiting behind it.
    fn healthy() -> ControlPlane {
        let record = TenantRecord { tenant: t(1), generation: g(3), attached_to: Some(N1) };
        let mut cp = ControlPlane::recover(vec![record]);
        cp.handle_attach(NOW, RequestId(1), t(1), N2, None);
        cp.handle_detach(NOW, RequestId(2), t(2), N1);
        cp.check_invariants();
        cp
    }

    fn persisting(cp: &mut ControlPlane) -> (&mut StoreChange, &mut ControlPlaneReply) {
        match &mut cp.in_progress {
            Some(InProgress::Persisting { change, reply, .. }) => (change, reply),
            other => panic!("not persisting: {other:?}"),
        }
    }

    #[test]
    #[should_panic(expected = "table keyed by the wrong tenant")]
    fn a_row_under_another_tenant() {
        let mut cp = healthy();
        let row = cp.table.remove(&t(1)).unwrap();
        cp.table.insert(t(9), row);
        cp.check_invariants();
    }

    #[test]
    #[should_panic(expected = "request queue over its bound")]
    fn a_queue_over_its_bound() {
        let mut cp = healthy();
        let waiting = cp.queue[0].clone();
        cp.queue.extend(std::iter::repeat_n(waiting, MAX_QUEUED_REQUESTS));
        cp.check_invariants();
    }

    #[test]
    #[should_panic(expected = "requests wait while nothing is in progress")]
    fn requests_waiting_with_nothing_in_progress() {
        let mut cp = healthy();
        cp.in_progress = None;
        cp.check_invariants();
    }

    #[test]
    #[should_panic(expected = "S-GEN-MONO: persisting")]
    fn a_persist_below_the_table() {
        let mut cp = healthy();
        let (change, _) = persisting(&mut cp);
        *change = StoreChange::Upsert(TenantRecord {
            tenant: t(1),
            generation: g(2),
            attached_to: Some(N2),
        });
        cp.check_invariants();
    }

    #[test]
    #[should_panic(expected = "reply names a generation the change does not persist")]
    fn a_reply_naming_a_generation_not_persisted() {
        let mut cp = healthy();
        let (_, reply) = persisting(&mut cp);
        *reply = ControlPlaneReply::Attached { generation: g(5) };
        cp.check_invariants();
    }

    /// The reply-durability check: a queued re-attach reply names a generation
    /// the durable table does not hold.
    #[test]
    #[should_panic(expected = "S-GEN-MONO: reply grants")]
    fn a_queued_reply_granting_a_generation_not_durable() {
        let mut cp = healthy();
        let tenants = vec![ReAttachedTenant::new(t(1), g(4), true)];
        let reply = Ok(ControlPlaneReply::ReAttached { tenants });
        cp.effects.push_back(ControlPlaneEffect::Reply { req: RequestId(9), reply });
        cp.check_invariants();
    }
}

/// A migration's origin lets the tenant go after the destination's grant: its
/// detach must not detach the tenant from the destination.
#[test]
fn a_detach_from_a_node_that_no_longer_holds_the_tenant_changes_nothing() {
    let mut h = Harness::new();
    h.attach(t(1), N1, None);
    h.attach(t(1), N2, None);
    let req = h.req();
    h.cp.handle_detach(NOW, req, t(1), N1);
    assert_eq!(h.settle(req), Ok(ControlPlaneReply::Detached));
    assert_eq!(
        h.store[&t(1)],
        TenantRecord { tenant: t(1), generation: g(2), attached_to: Some(N2) }
    );
    assert_eq!(h.re_attach(N2).len(), 1, "the destination still holds it");
}
