//! The reconciler against a model world: two or three nodes with the tenant
//! manager's location_config rules, the control plane's generation table, a store,
//! and an ingest client that follows the re-send contract. Unit tests for each
//! rule, a crash at every effect, and a property test with lost and failing calls,
//! nodes down and control-plane crashes.

use super::world::*;
use super::*;
use crate::generation::Generation;
use crate::location_conf::LocationMode;
use crate::lsn::Lsn;
use crate::tenant::{Placement, RequestedMode};

/// A deterministic random source for the property test (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[test]
fn a_migration_walks_every_phase_in_order_each_durable_before_its_calls() {
    let mut w = World::new();
    w.start(OriginAfter::SecondaryWarm);
    assert!(w.calls.is_empty(), "a call before the start is durable");
    assert!(w.replies.is_empty(), "answered before durable");
    w.deliver_persist(0, true, Some(true));
    assert_eq!(w.replies.len(), 1);
    w.settle(1000);
    w.check_finished();
    let names: Vec<&str> = w.phases.iter().map(Phase::name).collect();
    assert_eq!(
        names,
        [
            "attach_destination",
            "stale_origin",
            "catch_up",
            "demote_origin",
            "finalize_destination",
            "done"
        ]
    );
    assert_eq!(w.nodes[&O].placement, Placement::Located(LocationMode::Secondary { warm: true }));
    assert_eq!(w.table.0, g(4), "one grant: destination at origin + 1");
    let Phase::CatchUp { target, .. } = &w.phases[2] else { panic!() };
    assert!(target[&TL] >= Lsn(100), "target = the origin's last_ingested: {target:?}");
    assert_eq!(w.rc.stats().finished_total, 1);
    assert_eq!(w.fenced, 0);
}

#[test]
fn catch_up_waits_for_the_destination_visible_lsn_then_times_out_without_a_client() {
    let mut w = World::new();
    w.config.catch_up_timeout_ms = 5_000;
    w.rc = MigrationReconciler::recover(w.config.clone(), Vec::new(), w.now);
    w.start(OriginAfter::Detached);
    // No client: D loads visible 80 and never reaches the origin's 100.
    for _ in 0..200 {
        if let Some(p) = w.phases.last()
            && p.rank() >= 3
        {
            break;
        }
        assert!(w.step(), "an active migration waits on nothing");
    }
    assert!(matches!(w.phases.last(), Some(Phase::DemoteOrigin { .. })));
    assert!(w.now.as_millis() >= 5_000, "demoted before the catch-up timeout: {}", w.now);
    assert_eq!(w.rc.stats().catch_up_timeouts_total, 1);
    w.settle(1000);
    w.check_finished();
    assert_eq!(w.nodes[&O].placement, Placement::Detached);
}

#[test]
fn a_crash_at_every_effect_resumes_and_finishes() {
    // Count the effects of a clean run, then crash after each one, with the
    // persist in flight either applied or not.
    for crash_at in 0..40 {
        for applied in [false, true] {
            let mut w = World::new();
            w.start(OriginAfter::SecondaryWarm);
            let mut delivered = 0;
            while delivered < crash_at && w.rc.active_count() > 0 {
                w.ingest();
                w.step();
                delivered += 1;
            }
            if applied && !w.persists.is_empty() {
                w.deliver_persist(0, true, None);
            }
            if applied && !w.calls.is_empty() {
                w.deliver_call(0, true);
            }
            w.crash_reconciler();
            if w.store.is_empty() {
                // The start never became durable: nothing to resume.
                assert_eq!(w.rc.active_count(), 0);
                continue;
            }
            w.settle(2000);
            w.check_finished();
            assert_eq!(w.fenced, 0, "crash at {crash_at}: the origin tried to attach");
        }
    }
}

#[test]
fn an_origin_that_stays_down_is_skipped_after_its_give_up_time() {
    let mut w = World::new();
    w.start(OriginAfter::SecondaryWarm);
    w.deliver_persist(0, true, Some(true));
    w.nodes.get_mut(&O).unwrap().up = false;
    for _ in 0..500 {
        if w.rc.active_count() == 0 {
            break;
        }
        assert!(w.step(), "an active migration waits on nothing");
    }
    assert_eq!(w.rc.active_count(), 0, "stuck on a dead origin");
    assert_eq!(w.rc.stats().origin_skipped_total, 2, "stale and demote both skipped");
    assert!(w.now.as_millis() >= 2 * w.config.origin_give_up_ms);
    // The origin comes back: its restart drops the tenant (the table gives it to D).
    w.nodes.get_mut(&O).unwrap().up = true;
    w.restart_node(O);
    w.check_finished();
    assert_eq!(w.nodes[&O].placement, Placement::Detached);
}

#[test]
fn a_destination_down_is_retried_until_it_answers_and_a_restart_bump_is_adopted() {
    let mut w = World::new();
    w.start(OriginAfter::SecondaryWarm);
    w.deliver_persist(0, true, Some(true));
    w.deliver_call(0, false); // observe D
    w.deliver_call(0, false); // D AttachedMulti g4
    w.nodes.get_mut(&D).unwrap().up = false;
    w.restart_node(D); // re-attach: g5, still Multi
    assert_eq!(w.table, (g(5), Some(D)));
    for _ in 0..30 {
        w.step();
    }
    assert!(w.rc.stats().call_failures_total > 0);
    w.settle(1000);
    w.check_finished();
    assert_eq!(w.table.0, g(5), "the restart's generation is kept, not another grant");
}

#[test]
fn a_lost_answer_times_out_is_retried_and_its_late_answer_is_dropped() {
    let mut w = World::new();
    w.start(OriginAfter::SecondaryWarm);
    w.deliver_persist(0, true, Some(true));
    let (op, node, call) = w.calls[0].clone();
    assert_eq!((node, call), (D, NodeCall::Status));
    w.calls.clear();
    assert!(w.fire_next_timer(), "no deadline for the call");
    assert_eq!(w.rc.stats().call_timeouts_total, 1);
    w.rc.handle_node_answer(w.now, op, Err(NodeCallError::Busy("late".into()))).unwrap();
    assert_eq!(w.rc.stats().late_answers_total, 1);
    assert_eq!(
        w.rc.handle_node_answer(w.now, OpId(999), Err(NodeCallError::Busy("x".into()))),
        Err(MigrationInputError::UnknownOp(OpId(999)))
    );
    w.settle(1000);
    w.check_finished();
}

#[test]
fn a_failed_persist_is_retried_and_the_start_is_answered_only_when_durable() {
    let mut w = World::new();
    w.start(OriginAfter::SecondaryWarm);
    w.deliver_persist(0, false, Some(false));
    assert!(w.replies.is_empty());
    assert!(w.calls.is_empty(), "called before the start was durable");
    assert!(w.fire_next_timer());
    assert_eq!(w.persists.len(), 1, "the persist is retried");
    w.deliver_persist(0, true, Some(true));
    assert!(matches!(w.replies.as_slice(), [Ok(_)]));
    w.settle(1000);
    w.check_finished();
}

#[test]
fn starts_are_refused_for_a_migrating_tenant_the_same_node_and_beyond_the_bound() {
    let mut w = World::new();
    w.start(OriginAfter::SecondaryWarm);
    w.start(OriginAfter::SecondaryWarm);
    assert!(matches!(w.replies.as_slice(), [Err(MigrationError::AlreadyMigrating { .. })]));
    let same = MigrationStart {
        tenant: TenantId([1; 16]),
        origin: O,
        origin_generation: g(1),
        destination: O,
        origin_after: OriginAfter::Detached,
    };
    w.rc.handle_start(w.now, RequestId(2), same);
    w.drain();
    assert!(matches!(w.replies.last(), Some(Err(MigrationError::SameNode { .. }))));
    for i in 0..MAX_ACTIVE_MIGRATIONS as u8 {
        let start = MigrationStart {
            tenant: TenantId([i + 100; 16]),
            origin: O,
            origin_generation: g(1),
            destination: D,
            origin_after: OriginAfter::Detached,
        };
        w.rc.handle_start(w.now, RequestId(3), start);
        w.drain();
    }
    assert!(matches!(w.replies.last(), Some(Err(MigrationError::TooMany { .. }))));
    assert_eq!(w.rc.active_count(), MAX_ACTIVE_MIGRATIONS);
}

/// One run of the property test: faults for `fault_steps`, then heal and settle.
fn run_with_faults(seed: u64, fault_steps: usize) {
    let mut rng = Rng(seed | 1);
    let mut w = World::new();
    w.config.origin_give_up_ms = 3_000 + rng.next() % 30_000;
    w.config.catch_up_timeout_ms = 2_000 + rng.next() % 20_000;
    w.config.call_timeout_ms = 500 + rng.next() % 5_000;
    w.rc = MigrationReconciler::recover(w.config.clone(), Vec::new(), w.now);
    w.start(if rng.chance(50) { OriginAfter::SecondaryWarm } else { OriginAfter::Detached });
    for _ in 0..fault_steps {
        w.now = w.now.plus_millis(rng.next() % 300);
        match rng.next() % 10 {
            0..=2 if !w.calls.is_empty() => {
                let i = (rng.next() as usize) % w.calls.len();
                let lose = rng.chance(15);
                w.deliver_call(i, lose);
            }
            3 if !w.persists.is_empty() => {
                let applied = rng.chance(80);
                let answer = if rng.chance(10) { None } else { Some(applied && rng.chance(85)) };
                w.deliver_persist(0, applied, answer);
                if answer.is_none() {
                    // The store always answers the driver: only a crash loses it.
                    w.crash_reconciler();
                }
            }
            4 => {
                w.fire_next_timer();
            }
            5 if rng.chance(20) => w.crash_reconciler(),
            6 if rng.chance(30) => {
                let node = if rng.chance(50) { O } else { D };
                let up = !w.nodes[&node].up;
                if up {
                    w.restart_node(node);
                }
                w.nodes.get_mut(&node).unwrap().up = up;
            }
            _ => w.ingest(),
        }
    }
    // Heal: lost persists are at an end (a crash or an answer), nodes come back.
    if !w.persists.is_empty() {
        w.crash_reconciler();
    }
    for node in [O, D] {
        if !w.nodes[&node].up {
            w.restart_node(node);
        }
    }
    if w.store.is_empty() {
        return; // the start never became durable (it would be answered with an error)
    }
    w.settle(20_000);
    w.check_finished();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    #[test]
    fn every_migration_finishes_after_faults_heal(seed in proptest::prelude::any::<u64>(), steps in 0usize..400) {
        run_with_faults(seed, steps);
    }
}

#[test]
fn an_origin_that_dropped_the_tenant_is_not_asked_to_attach() {
    let mut w = World::new();
    w.start(OriginAfter::SecondaryWarm);
    w.deliver_persist(0, true, Some(true));
    w.deliver_call(0, false); // observe D
    w.deliver_call(0, false); // D AttachedMulti g4
    // The origin restarts: the table gives T to D, so the origin drops it.
    w.restart_node(O);
    assert_eq!(w.nodes[&O].placement, Placement::Detached);
    w.deliver_persist(0, true, Some(true)); // StaleOrigin durable
    for _ in 0..20 {
        for (_, node, call) in &w.calls {
            if let NodeCall::LocationConfig(r) = call {
                assert!(
                    *node != O || !matches!(r.mode, RequestedMode::AttachedStale),
                    "asked the detached origin to attach stale: {r:?}"
                );
            }
        }
        w.step();
    }
    assert_eq!(w.rc.stats().origin_skipped_total, 1);
    assert_eq!(w.fenced, 0);
    w.settle(1000);
    w.check_finished();
}

/// Found by the `migration` fuzz target (fuzz/crashes/migration, minimised): the
/// destination's attach timed out and was retried; the first call arrived after the
/// destination had been made AttachedSingle and turned it back into AttachedMulti,
/// where it stayed after the migration was Done. The attach is now attach-only.
#[test]
fn a_late_attach_of_the_destination_leaves_it_attached_single() {
    use Action as A;
    let actions = vec![
        A::Start(185, false),
        A::PersistOk,
        A::Call(31, true),
        A::Ingest,
        A::Timer,
        A::Timer,
        A::Call(131, true),
        A::Call(85, true),
        A::PersistOk,
        A::Call(85, true),
        A::Call(131, true),
        A::Call(85, true),
        A::PersistOk,
        A::Call(31, true),
        A::PersistOk,
        A::Call(131, true),
        A::PersistOk,
        A::Call(85, true),
        A::Call(131, true),
        A::PersistFailed(false, 0),
    ];
    run(actions);
}

/// Runs a migration to D to its end with the origin's `AttachedStale` call lost
/// and retried, and returns the world with the lost call still undelivered.
fn finished_with_a_late_call(pick: impl Fn(&NodeCall) -> bool) -> (World, usize) {
    let mut w = World::new();
    w.config.call_timeout_ms = 1_000;
    w.start(OriginAfter::Detached);
    w.deliver_persist(0, true, Some(true));
    let mut late = None;
    for _ in 0..2_000 {
        if w.rc.active_count() == 0 && w.persists.is_empty() && w.calls.is_empty() {
            break;
        }
        w.ingest();
        if late.is_none()
            && let Some(i) = w.calls.iter().position(|(_, _, c)| pick(c))
        {
            // Kept back: the reconciler times it out and sends it again.
            late = Some(w.calls.remove(i));
            assert!(w.fire_next_timer());
            continue;
        }
        if w.persists.is_empty() && w.calls.is_empty() {
            w.now = w.now.plus_millis(1);
        }
        assert!(w.step(), "an active migration waits on nothing");
    }
    w.check_finished();
    w.calls.push(late.expect("the call was sent"));
    let i = w.calls.len() - 1;
    (w, i)
}

/// The finding the fuzz world had hidden: an `AttachedStale` delivered after the
/// migration finished, to an origin that no longer holds the tenant, made it acquire
/// a new generation and take the tenant from the destination. The node now refuses
/// it (AttachedStale never takes a generation).
#[test]
fn a_late_stale_mark_does_not_attach_an_origin_that_let_go() {
    let stale = |c: &NodeCall| matches!(c, NodeCall::LocationConfig(r) if r.mode == RequestedMode::AttachedStale);
    let (mut w, i) = finished_with_a_late_call(stale);
    assert_eq!(w.nodes[&O].placement, Placement::Detached);
    let table = w.table;
    w.deliver_call(i, false);
    assert_eq!(w.table, table, "a late stale mark took a generation");
    assert_eq!(w.nodes[&O].placement, Placement::Detached);
    w.check_finished();
}

/// A late attach of the destination, delivered after the tenant moved on to a
/// third node, meets the fence: it reports a generation below the table's while
/// another node holds the tenant.
#[test]
fn a_late_attach_after_the_tenant_moved_on_is_fenced() {
    let attach = |c: &NodeCall| matches!(c, NodeCall::LocationConfig(r) if r.attach_only);
    let (mut w, i) = finished_with_a_late_call(attach);
    let late = w.calls.remove(i);
    // A second migration moves T from D to node 3 (detaching D).
    w.start_to(NodeId(3), OriginAfter::Detached);
    w.settle(1000);
    w.check_finished();
    assert_eq!(w.nodes[&D].placement, Placement::Detached);
    let (table, fenced) = (w.table, w.fenced);
    w.calls.push(late);
    w.deliver_call(w.calls.len() - 1, false);
    assert_eq!(w.table, table, "a late attach took the tenant from node 3");
    assert_eq!(w.fenced, fenced + 1);
    assert_eq!(w.nodes[&D].placement, Placement::Detached);
}

/// A late demotion of the origin, delivered after a second migration brought the
/// tenant back to it, is refused: it names a generation older than the held one.
#[test]
fn a_late_demotion_does_not_undo_a_later_attach() {
    let demote = |c: &NodeCall| matches!(c, NodeCall::LocationConfig(r) if r.mode == RequestedMode::Detached);
    let (mut w, i) = finished_with_a_late_call(demote);
    let late = w.calls.remove(i);
    w.start_to(O, OriginAfter::SecondaryWarm);
    w.settle(1000);
    w.check_finished();
    let held = w.nodes[&O].placement;
    assert!(matches!(held, Placement::Located(LocationMode::AttachedSingle { .. })));
    w.calls.push(late);
    w.deliver_call(w.calls.len() - 1, false);
    assert_eq!(w.nodes[&O].placement, held, "a late demotion detached the new holder");
    w.check_finished();
}

/// A destination seen attached in another mode above the origin's generation (a
/// restart loaded it so) is converted, not attached-only: the call changes its
/// mode to AttachedMulti, and the migration goes on (the 20-migration e2e found an
/// attach-only call retried for ever against an AttachedSingle destination).
#[test]
fn a_destination_seen_single_is_converted_to_multi_not_attached_only() {
    let mut w = World::new();
    w.start(OriginAfter::SecondaryWarm);
    w.deliver_persist(0, true, Some(true));
    w.nodes.get_mut(&D).unwrap().placement =
        Placement::Located(LocationMode::AttachedSingle { generation: g(4) });
    w.table = (g(4), Some(D));
    w.deliver_call(0, false); // observe D: Single at 4
    let (_, node, call) = &w.calls[0];
    assert_eq!(*node, D);
    let NodeCall::LocationConfig(request) = call else { panic!("{call:?}") };
    assert!(!request.attach_only, "{request:?}");
    w.deliver_call(0, false);
    assert_eq!(
        w.nodes[&D].placement,
        Placement::Located(LocationMode::AttachedMulti { generation: g(4) })
    );
    w.settle(1000);
    w.check_finished();
}

/// Checks that can fail: each check of [`MigrationReconciler::check_invariants`]
/// fires on a state that breaks it. The fixtures pass every check (the world runs
/// them after every input); each test breaks one rule.
mod checks_fire {
    use super::*;

    /// The start's record being persisted (not durable yet).
    fn starting() -> MigrationReconciler {
        let mut w = World::new();
        w.start(OriginAfter::SecondaryWarm);
        w.rc
    }

    /// The start durable, the first call (to the destination) in flight.
    fn calling() -> MigrationReconciler {
        let mut w = World::new();
        w.start(OriginAfter::SecondaryWarm);
        w.deliver_persist(0, true, Some(true));
        assert!(matches!(w.rc.active[&T].wait, Wait::Call { .. }), "{:?}", w.rc.active[&T].wait);
        w.rc
    }

    fn finished() -> MigrationReconciler {
        let mut w = World::new();
        w.start(OriginAfter::SecondaryWarm);
        w.deliver_persist(0, true, Some(true));
        w.settle(1000);
        assert!(w.rc.finished.contains_key(&T));
        w.rc
    }

    fn op_of(rc: &MigrationReconciler) -> OpId {
        *rc.ops.keys().next().expect("an op in flight")
    }

    fn durable(rc: &mut MigrationReconciler) -> &mut MigrationRecord {
        rc.active.get_mut(&T).unwrap().durable.as_mut().expect("durable")
    }

    macro_rules! fires {
        ($name:ident, $expected:literal, $fixture:ident, |$rc:ident| $corrupt:block) => {
            #[test]
            #[should_panic(expected = $expected)]
            fn $name() {
                let mut $rc = $fixture();
                $corrupt
                $rc.check_invariants();
            }
        };
    }

    fires!(too_many_migrations, "too many migrations", calling, |rc| {
        let m = rc.active[&T].clone();
        for i in 0..=MAX_ACTIVE_MIGRATIONS {
            rc.active.insert(TenantId([i as u8 + 100; 16]), m.clone());
        }
    });

    fires!(an_op_for_a_migration_waiting_on_another, "which waits on", calling, |rc| {
        let op = op_of(&rc);
        rc.ops.insert(OpId(op.0 + 1), T);
        rc.issued += 1;
    });

    fires!(an_op_never_issued, "tracked but never issued", calling, |rc| {
        rc.issued = 0;
    });

    fires!(events_unbounded, "events unbounded", calling, |rc| {
        let m = rc.active.get_mut(&T).unwrap();
        let event = m.events.front().expect("an event").clone();
        m.events.extend(std::iter::repeat_n(event, MAX_EVENTS_PER_MIGRATION));
    });

    fires!(a_waiting_op_untracked, "its op is untracked", calling, |rc| {
        rc.ops.clear();
    });

    fires!(a_migration_with_no_record, "an active migration with no record", calling, |rc| {
        rc.active.get_mut(&T).unwrap().durable = None;
    });

    fires!(
        a_migration_under_the_wrong_tenant,
        "migration keyed by the wrong tenant",
        calling,
        |rc| {
            let other = TenantId([1; 16]);
            let m = rc.active.remove(&T).unwrap();
            rc.active.insert(other, m);
            let op = op_of(&rc);
            rc.ops.insert(op, other);
        }
    );

    fires!(origin_is_destination, "origin is destination", calling, |rc| {
        let d = durable(&mut rc);
        d.destination = d.origin;
    });

    fires!(a_destination_generation_not_above, "not above the origin's", calling, |rc| {
        let d = durable(&mut rc);
        d.phase = Phase::StaleOrigin { destination_generation: d.origin_generation };
        let step = Step::ObserveOrigin;
        let m = rc.active.get_mut(&T).unwrap();
        if let Wait::Call { step: s, .. } = &mut m.wait {
            *s = step;
        }
    });

    fires!(a_phase_going_back, "phase goes back", calling, |rc| {
        let op = op_of(&rc);
        let m = rc.active.get_mut(&T).unwrap();
        let record = m.durable.clone().unwrap();
        let generation = Generation::new(record.origin_generation.get() + 1).unwrap();
        m.durable.as_mut().unwrap().phase =
            Phase::DemoteOrigin { destination_generation: generation };
        m.wait = Wait::Persist { op, record };
    });

    fires!(a_start_with_no_request, "a start with no request to answer", starting, |rc| {
        rc.active.get_mut(&T).unwrap().start_req = None;
    });

    fires!(done_but_active, "Done but active", calling, |rc| {
        let op = op_of(&rc);
        let m = rc.active.get_mut(&T).unwrap();
        let mut record = m.durable.clone().unwrap();
        let generation = Generation::new(record.origin_generation.get() + 1).unwrap();
        record.phase = Phase::Done { generation };
        m.durable = Some(record.clone());
        m.wait = Wait::Persist { op, record };
    });

    fires!(a_step_outside_its_phase, "runs in phase", calling, |rc| {
        let m = rc.active.get_mut(&T).unwrap();
        if let Wait::Call { step, .. } = &mut m.wait {
            *step = Step::DemoteOrigin;
        }
    });

    fires!(finished_but_not_done, "finished, not Done", finished, |rc| {
        let (record, _) = rc.finished.get_mut(&T).unwrap();
        record.phase = Phase::AttachDestination;
    });

    fires!(finished_events_unbounded, "events unbounded", finished, |rc| {
        let (_, events) = rc.finished.get_mut(&T).unwrap();
        let event = events.front().expect("an event").clone();
        events.extend(std::iter::repeat_n(event, MAX_EVENTS_PER_MIGRATION));
    });

    fires!(finished_and_active, "finished and active", finished, |rc| {
        let m = calling().active.remove(&T).unwrap();
        let mut m = m;
        m.wait = Wait::Poll { until: Instant(1 << 40) };
        rc.active.insert(T, m);
    });
}

/// The fuzz world (`world::run`) under proptest: drawn actions, then heal.
mod random_actions {
    use super::super::world::{Action, run};
    use proptest::prelude::*;

    /// The action three drawn bytes name (the fuzz target draws them with
    /// `arbitrary` instead).
    fn action([k, a, b]: [u8; 3]) -> Action {
        use Action as A;
        match k % 13 {
            0 => A::Start(a, b % 2 == 0),
            1 | 2 => A::Call(a, b % 8 != 0),
            3 => A::CallFailed(a, b),
            4 => A::PersistOk,
            5 => A::PersistFailed(a % 2 == 0, b),
            6 => A::PersistLost(a % 2 == 0),
            7 => A::Timer,
            8 => A::Advance(u16::from_le_bytes([a, b])),
            9 if a % 4 == 0 => A::Crash,
            10 => A::Toggle(a),
            11 => A::Restart(a),
            _ => A::Ingest,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn random_actions_keep_every_rule_and_finish(raw in proptest::collection::vec(any::<[u8; 3]>(), 0..300)) {
            run(raw.into_iter().map(action).collect());
        }
    }
}
