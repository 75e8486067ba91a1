//! Tenant manager: one test per row of the mode table, and a property test that
//! fires random requests, completions, failures and crashes at it.

use super::*;
use crate::generation::Generation;
use crate::id::TenantId;
use crate::location_conf::LocationMode;
use crate::node::api::RequestId;
use crate::time::Instant;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn t(n: u8) -> TenantId {
    TenantId::from_bytes([n; 16])
}

fn g(n: u32) -> Generation {
    Generation::new(n).unwrap()
}

const NOW: Instant = Instant(0);

fn req(mode: RequestedMode, generation: Option<u32>) -> LocationRequest {
    LocationRequest::new(mode, generation.map(g))
}

fn single(n: u32) -> LocationMode {
    LocationMode::AttachedSingle { generation: g(n) }
}

/// Runs every step with success, answering generations from `next_gen`; returns the
/// steps seen and the replies.
fn run(
    m: &mut TenantManager,
    next_gen: &mut u32,
) -> (Vec<Step>, Vec<Result<LocationOutcome, ManagerError>>) {
    let (mut steps, mut replies) = (Vec::new(), Vec::new());
    while let Some(e) = m.poll_effect() {
        m.check_invariants();
        match e {
            ManagerEffect::Step { tenant, step } => {
                steps.push(step.clone());
                let out = match step {
                    Step::AcquireGeneration { at_least } => {
                        *next_gen = (*next_gen + 1).max(at_least.map_or(0, |g| g.get()));
                        StepOutput::Generation(g(*next_gen))
                    }
                    Step::RemoveLocalDir { .. } => continue,
                    // Remote storage holds nothing of the tenant.
                    Step::CheckRemote => StepOutput::Found(Default::default()),
                    _ => StepOutput::Done,
                };
                m.handle_step_done(NOW, tenant, Ok(out)).unwrap();
            }
            ManagerEffect::Reply { result, .. } => replies.push(result),
        }
    }
    m.check_invariants();
    (steps, replies)
}

/// A location_config for a tenant its machine does not call broken.
fn locate(
    m: &mut TenantManager,
    r: u64,
    tenant: TenantId,
    mode: RequestedMode,
    generation: Option<u32>,
) {
    m.handle_location_config(NOW, RequestId(r), tenant, req(mode, generation), None);
}

fn attached(m: &TenantManager, tenant: TenantId) -> Option<LocationMode> {
    match m.slot(tenant) {
        Some(Slot::Attached { mode, broken: None }) => Some(*mode),
        _ => None,
    }
}

#[test]
fn attach_acquires_writes_config_then_loads() {
    let mut m = TenantManager::default();
    let mut counter = 4;
    locate(&mut m, 1, t(1), RequestedMode::AttachedSingle, None);
    let (steps, replies) = run(&mut m, &mut counter);
    assert_eq!(
        steps,
        vec![
            Step::AcquireGeneration { at_least: None },
            Step::WriteConfig { mode: single(5) },
            Step::LoadTenant { mode: single(5) },
        ]
    );
    assert_eq!(replies, vec![Ok(LocationOutcome::Changed(Placement::Located(single(5))))]);
    assert_eq!(attached(&m, t(1)), Some(single(5)));
}

#[test]
fn create_looks_in_remote_storage_then_attaches_and_refuses_over_what_it_finds() {
    let mut m = TenantManager::default();
    let mut counter = 4;
    m.handle_create_tenant(NOW, RequestId(1), t(1));
    let (steps, replies) = run(&mut m, &mut counter);
    assert_eq!(
        steps,
        vec![
            Step::CheckRemote,
            Step::AcquireGeneration { at_least: None },
            Step::WriteConfig { mode: single(5) },
            Step::LoadTenant { mode: single(5) },
        ]
    );
    assert_eq!(replies, vec![Ok(LocationOutcome::Created(Placement::Located(single(5))))]);
    // A create of a tenant this node has: refused at once.
    m.handle_create_tenant(NOW, RequestId(2), t(1));
    let (steps, replies) = run(&mut m, &mut counter);
    assert!(steps.is_empty());
    assert_eq!(replies, vec![Err(ManagerError::AlreadyExists(t(1)))]);

    // Remote storage holds something of t(2): refused, nothing acquired, no slot.
    m.handle_create_tenant(NOW, RequestId(3), t(2));
    assert!(matches!(m.slot(t(2)), Some(Slot::InProgress(_))));
    assert_eq!(
        m.poll_effect(),
        Some(ManagerEffect::Step { tenant: t(2), step: Step::CheckRemote })
    );
    let found = crate::control_plane::RemoteTenantFound { objects: 3, ..Default::default() };
    m.handle_step_done(NOW, t(2), Ok(StepOutput::Found(found.clone()))).unwrap();
    let (steps, replies) = run(&mut m, &mut counter);
    assert!(steps.is_empty(), "{steps:?}");
    assert_eq!(replies, vec![Err(ManagerError::ExistsRemotely { tenant: t(2), found })]);
    assert!(m.slot(t(2)).is_none());
    assert_eq!(counter, 5, "no generation acquired for the refused create");

    // A failed listing: retryable, nothing changed; a CheckRemote answered without
    // what it found is a driver bug, refused.
    m.handle_create_tenant(NOW, RequestId(4), t(3));
    m.poll_effect();
    assert_eq!(
        m.handle_step_done(NOW, t(3), Ok(StepOutput::Done)),
        Err(ManagerInputError::MissingFound(t(3)))
    );
    m.handle_step_done(NOW, t(3), Err(StepError::Unexpected("503".into()))).unwrap();
    let (_, replies) = run(&mut m, &mut counter);
    assert!(matches!(replies[..], [Err(ManagerError::RemoteCheckFailed { .. })]), "{replies:?}");
    assert!(m.slot(t(3)).is_none());
}

#[test]
fn repeating_a_request_is_a_no_op() {
    let mut m = TenantManager::default();
    let mut counter = 0;
    for r in [
        req(RequestedMode::AttachedSingle, None),
        req(RequestedMode::AttachedSingle, Some(1)),
        req(RequestedMode::AttachedSingle, None),
    ] {
        m.handle_location_config(NOW, RequestId(1), t(1), r, None);
        run(&mut m, &mut counter);
    }
    assert_eq!(counter, 1, "one generation acquired for three identical requests");
    locate(&mut m, 2, t(1), RequestedMode::AttachedSingle, None);
    let (steps, replies) = run(&mut m, &mut counter);
    assert!(steps.is_empty());
    assert!(matches!(replies[..], [Ok(LocationOutcome::Unchanged(_))]));
}

#[test]
fn mode_change_within_a_generation_does_not_restart() {
    let mut m = TenantManager::default();
    let mut counter = 0;
    locate(&mut m, 1, t(1), RequestedMode::AttachedSingle, None);
    run(&mut m, &mut counter);
    locate(&mut m, 2, t(1), RequestedMode::AttachedStale, Some(1));
    let (steps, _) = run(&mut m, &mut counter);
    let stale = LocationMode::AttachedStale { generation: g(1) };
    assert_eq!(steps, vec![Step::WriteConfig { mode: stale }, Step::SetMode { mode: stale }]);
    assert_eq!(attached(&m, t(1)), Some(stale));
}

/// A stale mark never takes a generation: asked of a node that does not hold the
/// tenant, or at a generation above the held one, it is refused and nothing runs.
#[test]
fn attached_stale_never_acquires_a_generation() {
    let mut m = TenantManager::default();
    let mut counter = 2;
    locate(&mut m, 1, t(1), RequestedMode::AttachedStale, Some(3));
    let (steps, replies) = run(&mut m, &mut counter);
    assert!(steps.is_empty(), "{steps:?}");
    assert!(matches!(replies[..], [Err(ManagerError::OutOfOrder { .. })]), "{replies:?}");
    assert_eq!(m.slot(t(1)), None);
    locate(&mut m, 2, t(1), RequestedMode::AttachedSingle, None);
    run(&mut m, &mut counter);
    locate(&mut m, 3, t(1), RequestedMode::AttachedStale, Some(7));
    let (steps, replies) = run(&mut m, &mut counter);
    assert!(steps.is_empty(), "{steps:?}");
    assert!(matches!(replies[..], [Err(ManagerError::OutOfOrder { .. })]), "{replies:?}");
    assert_eq!(attached(&m, t(1)), Some(single(3)));
}

/// An attach-only request leaves an attachment at its generation as it is; a
/// demotion naming an older generation than the held one is refused.
#[test]
fn attach_only_keeps_the_held_mode_and_a_late_demotion_is_refused() {
    let mut m = TenantManager::default();
    let mut counter = 3;
    locate(&mut m, 1, t(1), RequestedMode::AttachedSingle, None);
    run(&mut m, &mut counter);
    let request =
        LocationRequest { attach_only: true, ..req(RequestedMode::AttachedMulti, Some(4)) };
    m.handle_location_config(NOW, RequestId(2), t(1), request, None);
    let (steps, replies) = run(&mut m, &mut counter);
    assert!(steps.is_empty(), "{steps:?}");
    assert!(matches!(replies[..], [Ok(LocationOutcome::Unchanged(_))]), "{replies:?}");
    assert_eq!(attached(&m, t(1)), Some(single(4)));
    for (r, mode) in [(3, RequestedMode::Detached), (4, RequestedMode::Secondary { warm: true })] {
        locate(&mut m, r, t(1), mode, Some(3));
        let (steps, replies) = run(&mut m, &mut counter);
        assert!(steps.is_empty(), "{steps:?}");
        let refused = ManagerError::StaleGeneration { tenant: t(1), requested: g(3), held: g(4) };
        assert_eq!(replies, vec![Err(refused)]);
    }
    locate(&mut m, 5, t(1), RequestedMode::Detached, Some(4));
    let (_, replies) = run(&mut m, &mut counter);
    assert!(matches!(replies[..], [Ok(_)]), "{replies:?}");
    assert_eq!(m.slot(t(1)), None);
}

/// `max_tenants`: a create or an attach of one tenant more is refused and
/// counted; requests about a held tenant and detaches are not; once one left, the
/// next fits.
#[test]
fn past_max_tenants_a_create_or_attach_is_refused_and_counted() {
    let mut m = TenantManager::default();
    m.set_max_tenants(Some(1));
    let mut counter = 0;
    locate(&mut m, 1, t(1), RequestedMode::AttachedSingle, None);
    run(&mut m, &mut counter);
    m.handle_create_tenant(NOW, RequestId(2), t(2));
    locate(&mut m, 3, t(2), RequestedMode::Secondary { warm: false }, None);
    locate(&mut m, 4, t(2), RequestedMode::AttachedMulti, None);
    let (steps, replies) = run(&mut m, &mut counter);
    assert!(steps.is_empty(), "{steps:?}");
    assert_eq!(replies.len(), 3);
    for r in &replies {
        let refused = ManagerError::TooManyTenants { tenant: t(2), held: 1, limit: 1 };
        assert_eq!(r, &Err(refused));
    }
    assert_eq!(m.tenant_limit_refusals(), 3);
    locate(&mut m, 5, t(2), RequestedMode::Detached, None);
    locate(&mut m, 6, t(1), RequestedMode::AttachedMulti, None);
    let (_, replies) = run(&mut m, &mut counter);
    assert!(replies.iter().all(Result::is_ok), "{replies:?}");
    assert_eq!(m.tenant_limit_refusals(), 3);
    locate(&mut m, 7, t(1), RequestedMode::Detached, None);
    run(&mut m, &mut counter);
    locate(&mut m, 8, t(2), RequestedMode::AttachedSingle, None);
    let (_, replies) = run(&mut m, &mut counter);
    assert!(matches!(replies[..], [Ok(_)]), "{replies:?}");
    assert!(attached(&m, t(2)).is_some());
}

#[test]
fn a_newer_generation_restarts_and_an_older_one_is_refused() {
    let mut m = TenantManager::default();
    let mut counter = 2;
    locate(&mut m, 1, t(1), RequestedMode::AttachedSingle, None);
    run(&mut m, &mut counter);
    locate(&mut m, 2, t(1), RequestedMode::AttachedMulti, Some(9));
    let (steps, _) = run(&mut m, &mut counter);
    assert_eq!(steps[0], Step::StopTenant);
    assert_eq!(steps[1], Step::AcquireGeneration { at_least: Some(g(9)) });
    assert_eq!(attached(&m, t(1)), Some(LocationMode::AttachedMulti { generation: g(9) }));
    locate(&mut m, 3, t(1), RequestedMode::AttachedSingle, Some(3));
    let (steps, replies) = run(&mut m, &mut counter);
    assert!(steps.is_empty());
    assert_eq!(
        replies,
        vec![Err(ManagerError::StaleGeneration { tenant: t(1), requested: g(3), held: g(9) })]
    );
}

#[test]
fn detach_stops_flushes_releases_renames_answers_then_removes_in_background() {
    let mut m = TenantManager::default();
    let mut counter = 0;
    locate(&mut m, 1, t(1), RequestedMode::AttachedSingle, None);
    run(&mut m, &mut counter);
    locate(&mut m, 2, t(1), RequestedMode::Detached, None);
    let mut order = Vec::new();
    while let Some(e) = m.poll_effect() {
        match e {
            ManagerEffect::Step { tenant, step } => {
                order.push(format!("{step:?}"));
                if !matches!(step, Step::RemoveLocalDir { .. }) {
                    m.handle_step_done(NOW, tenant, Ok(StepOutput::Done)).unwrap();
                }
            }
            ManagerEffect::Reply { result, .. } => order.push(format!("reply {result:?}")),
        }
    }
    assert_eq!(
        order,
        vec![
            "StopTenant",
            "FlushDeletions",
            "ReleaseGeneration",
            "RenameLocalDir { dir: DetachedDir(1) }",
            "reply Ok(Changed(Detached))",
            "RemoveLocalDir { dir: DetachedDir(1) }",
        ]
    );
    assert!(m.slot(t(1)).is_none());
    // Detached again: nothing to do.
    locate(&mut m, 3, t(1), RequestedMode::Detached, None);
    let (steps, replies) = run(&mut m, &mut counter);
    assert!(steps.is_empty() && matches!(replies[..], [Ok(LocationOutcome::Unchanged(_))]));
}

#[test]
fn a_request_for_a_busy_tenant_is_refused_at_once() {
    let mut m = TenantManager::default();
    locate(&mut m, 1, t(1), RequestedMode::AttachedSingle, None);
    let first = m.poll_effect();
    assert!(matches!(first, Some(ManagerEffect::Step { .. })));
    locate(&mut m, 2, t(1), RequestedMode::Detached, None);
    assert_eq!(
        m.poll_effect(),
        Some(ManagerEffect::Reply {
            req: RequestId(2),
            tenant: t(1),
            result: Err(ManagerError::Busy { tenant: t(1), kind: OperationKind::Attach }),
        })
    );
    assert_eq!(m.busy_refusals(), 1);
    // Another tenant is not held up.
    locate(&mut m, 3, t(2), RequestedMode::Secondary { warm: true }, None);
    assert!(matches!(m.poll_effect(), Some(ManagerEffect::Step { tenant, .. }) if tenant == t(2)));
}

/// The manager keeps no copy of a running tenant's lifecycle: a tenant whose
/// machines broke (a panic) is known to it only through the node's word, carried by
/// the request. Then a repeat of its mode restarts it on a new generation, and a
/// delete is refused naming why; the same requests without that word do neither.
#[test]
fn the_tenant_machines_word_that_it_is_broken_restarts_it_and_refuses_its_deletion() {
    let mut m = TenantManager::default();
    let mut counter = 1;
    locate(&mut m, 1, t(1), RequestedMode::AttachedSingle, None);
    run(&mut m, &mut counter);
    assert_eq!(attached(&m, t(1)), Some(single(2)));
    // Healthy: nothing to do, and a delete goes on.
    locate(&mut m, 2, t(1), RequestedMode::AttachedSingle, None);
    let (steps, _) = run(&mut m, &mut counter);
    assert!(steps.is_empty(), "{steps:?}");
    // Broken, as the tenant machine says: restarted, on a new generation.
    let broken = || Some("a handler panicked".to_string());
    let request = req(RequestedMode::AttachedSingle, None);
    m.handle_location_config(NOW, RequestId(3), t(1), request, broken());
    let (steps, _) = run(&mut m, &mut counter);
    assert_eq!(steps[0], Step::StopTenant, "{steps:?}");
    assert_eq!(attached(&m, t(1)), Some(single(3)));
    m.handle_delete_tenant(NOW, RequestId(4), t(1), broken());
    assert!(matches!(
        m.poll_effect(),
        Some(ManagerEffect::Reply { result: Err(ManagerError::Broken { reason, .. }), .. })
            if reason == "a handler panicked"
    ));
    assert_eq!(attached(&m, t(1)), Some(single(3)), "a refused delete changes nothing");
}

/// The directory a detach renames the tenant's to is the manager's to number (no
/// side map on the node): each detach planned gets its own, so one whose removal is
/// still under way is never renamed onto, and the removal names the directory its
/// rename made.
#[test]
fn each_detach_renames_to_its_own_directory_and_removes_that_one() {
    let mut m = TenantManager::default();
    let mut counter = 0;
    let mut dirs = Vec::new();
    for (i, tenant) in [t(1), t(1), t(2)].into_iter().enumerate() {
        let r = 10 * i as u64;
        locate(&mut m, r, tenant, RequestedMode::Secondary { warm: false }, None);
        run(&mut m, &mut counter);
        locate(&mut m, r + 1, tenant, RequestedMode::Detached, None);
        let mut renamed = None;
        while let Some(e) = m.poll_effect() {
            match e {
                ManagerEffect::Step { tenant: s, step: Step::RenameLocalDir { dir } } => {
                    assert_eq!(s, tenant);
                    renamed = Some(dir);
                    m.handle_step_done(NOW, s, Ok(StepOutput::Done)).unwrap();
                }
                ManagerEffect::Step { step: Step::RemoveLocalDir { dir }, .. } => {
                    assert_eq!(Some(dir), renamed, "the removal names the renamed directory");
                    dirs.push(dir);
                }
                ManagerEffect::Step { tenant: s, .. } => {
                    m.handle_step_done(NOW, s, Ok(StepOutput::Done)).unwrap();
                }
                ManagerEffect::Reply { .. } => {}
            }
        }
    }
    assert_eq!(dirs, vec![DetachedDir(1), DetachedDir(2), DetachedDir(3)]);
}

#[test]
fn a_failed_load_leaves_a_broken_tenant_that_a_repeat_request_repairs() {
    let mut m = TenantManager::default();
    locate(&mut m, 1, t(1), RequestedMode::AttachedSingle, None);
    let _ = m.poll_effect();
    m.handle_step_done(NOW, t(1), Ok(StepOutput::Generation(g(1)))).unwrap();
    let _ = m.poll_effect(); // WriteConfig
    m.handle_step_done(NOW, t(1), Ok(StepOutput::Done)).unwrap();
    let _ = m.poll_effect(); // LoadTenant
    m.handle_step_done(NOW, t(1), Err(StepError::Unexpected("remote storage gone".into())))
        .unwrap();
    assert!(matches!(
        m.poll_effect(),
        Some(ManagerEffect::Reply { result: Err(ManagerError::StepFailed { .. }), .. })
    ));
    assert!(matches!(m.slot(t(1)), Some(Slot::Attached { broken: Some(_), .. })));
    let mut counter = 1;
    locate(&mut m, 2, t(1), RequestedMode::AttachedSingle, None);
    let (steps, _) = run(&mut m, &mut counter);
    assert_eq!(steps[0], Step::StopTenant);
    assert_eq!(attached(&m, t(1)), Some(single(2)), "repaired on a new generation");
}

/// A slot broken before placement (its config unreadable): only a request naming a
/// mode places it; a failure before anything changed leaves it broken, as it was.
#[test]
fn a_broken_unplaced_slot_is_placed_only_by_an_explicit_mode() {
    let broken = || Slot::Broken { reason: "config-v1 is unreadable".into() };
    let mut m = TenantManager::default();
    m.handle_settled(NOW, t(1), broken()).unwrap();
    m.handle_delete_tenant(NOW, RequestId(1), t(1), None);
    assert!(matches!(
        m.poll_effect(),
        Some(ManagerEffect::Reply { result: Err(ManagerError::Broken { .. }), .. })
    ));
    // A failed acquisition: still broken, with its reason.
    locate(&mut m, 2, t(1), RequestedMode::AttachedMulti, None);
    assert!(matches!(
        m.poll_effect(),
        Some(ManagerEffect::Step { step: Step::AcquireGeneration { at_least: None }, .. })
    ));
    m.handle_step_done(NOW, t(1), Err(StepError::Unexpected("control plane down".into()))).unwrap();
    let _ = m.poll_effect();
    assert_eq!(m.slot(t(1)), Some(&broken()));
    // Attached: acquire, write the config, load.
    let mut counter = 6;
    locate(&mut m, 3, t(1), RequestedMode::AttachedMulti, None);
    let (steps, replies) = run(&mut m, &mut counter);
    let multi = LocationMode::AttachedMulti { generation: g(7) };
    assert_eq!(
        steps,
        vec![
            Step::AcquireGeneration { at_least: None },
            Step::WriteConfig { mode: multi },
            Step::LoadTenant { mode: multi },
        ]
    );
    assert_eq!(replies, vec![Ok(LocationOutcome::Changed(Placement::Located(multi)))]);
    // Detached from broken: release and remove the directory.
    m.handle_settled(NOW, t(2), broken()).unwrap();
    locate(&mut m, 4, t(2), RequestedMode::Detached, None);
    let (steps, _) = run(&mut m, &mut counter);
    let dir = DetachedDir(1);
    let expected =
        vec![Step::ReleaseGeneration, Step::RenameLocalDir { dir }, Step::RemoveLocalDir { dir }];
    assert_eq!(steps, expected);
    assert_eq!(m.slot(t(2)), None);
}

#[test]
fn delete_tenant_marks_deletes_timelines_then_leaves_like_a_detach() {
    let mut m = TenantManager::default();
    let mut counter = 0;
    locate(&mut m, 1, t(1), RequestedMode::AttachedSingle, None);
    run(&mut m, &mut counter);
    m.handle_delete_tenant(NOW, RequestId(2), t(1), None);
    let (steps, replies) = run(&mut m, &mut counter);
    assert_eq!(
        steps,
        vec![
            Step::PutDeletionMark,
            Step::DeleteTimelines,
            Step::StopTenant,
            Step::FlushDeletions,
            Step::ReleaseGeneration,
            Step::RenameLocalDir { dir: DetachedDir(1) },
            Step::RemoveLocalDir { dir: DetachedDir(1) },
        ]
    );
    assert_eq!(replies, vec![Ok(LocationOutcome::Changed(Placement::Detached))]);
    assert!(m.slot(t(1)).is_none());
    m.handle_delete_tenant(NOW, RequestId(3), t(1), None);
    assert!(matches!(
        m.poll_effect(),
        Some(ManagerEffect::Reply { result: Err(ManagerError::NotFound(_)), .. })
    ));
    // Only AttachedSingle deletes; a failed mark leaves the tenant as it was.
    locate(&mut m, 4, t(2), RequestedMode::AttachedMulti, None);
    run(&mut m, &mut counter);
    m.handle_delete_tenant(NOW, RequestId(5), t(2), None);
    assert!(matches!(
        m.poll_effect(),
        Some(ManagerEffect::Reply { result: Err(ManagerError::NotSingle { .. }), .. })
    ));
    locate(&mut m, 6, t(3), RequestedMode::AttachedSingle, None);
    run(&mut m, &mut counter);
    m.handle_delete_tenant(NOW, RequestId(7), t(3), None);
    let _ = m.poll_effect();
    m.handle_step_done(NOW, t(3), Err(StepError::Unexpected("remote storage unavailable".into())))
        .unwrap();
    assert!(matches!(m.slot(t(3)), Some(Slot::Attached { broken: None, .. })));
}

#[test]
fn input_errors_are_typed_not_panics() {
    let mut m = TenantManager::default();
    assert_eq!(
        m.handle_step_done(NOW, t(1), Ok(StepOutput::Done)),
        Err(ManagerInputError::NoOperation(t(1)))
    );
    locate(&mut m, 1, t(1), RequestedMode::AttachedSingle, None);
    let _ = m.poll_effect();
    assert_eq!(
        m.handle_step_done(NOW, t(1), Ok(StepOutput::Done)),
        Err(ManagerInputError::MissingGeneration(t(1)))
    );
    // The refused completion left the step in flight: its real one goes on.
    m.handle_step_done(NOW, t(1), Ok(StepOutput::Generation(g(1))))
        .expect("the step is still in flight after a refused completion");
    assert!(
        matches!(m.poll_effect(), Some(ManagerEffect::Step { step: Step::WriteConfig { .. }, .. })),
        "the attach goes on to write its config"
    );
}

/// `attach_acquires_writes_config_then_loads` and
/// `input_errors_are_typed_not_panics`, driven through `handle` alone.
#[test]
fn handle_dispatches_every_input_and_types_an_illegal_one() {
    let mut m = TenantManager::default();
    let step = |m: &mut TenantManager| match m.poll_effect() {
        Some(ManagerEffect::Step { tenant, step }) => (tenant, step),
        other => panic!("expected a step, got {other:?}"),
    };
    let done = |tenant, result| ManagerInput::StepDone { tenant, result };
    assert_eq!(
        m.handle(NOW, done(t(1), Ok(StepOutput::Done))),
        Err(ManagerHandleError::Input(ManagerInputError::NoOperation(t(1))))
    );
    let request = req(RequestedMode::AttachedSingle, None);
    m.handle(
        NOW,
        ManagerInput::LocationConfig { req: RequestId(1), tenant: t(1), request, broken: None },
    )
    .unwrap();
    assert_eq!(step(&mut m), (t(1), Step::AcquireGeneration { at_least: None }));
    let slot = Slot::secondary(false);
    assert!(matches!(
        m.handle(NOW, ManagerInput::Settled { tenant: t(1), slot }),
        Err(ManagerHandleError::Refused(ManagerError::Busy { .. }))
    ));
    m.handle(NOW, done(t(1), Ok(StepOutput::Generation(g(5))))).unwrap();
    assert_eq!(step(&mut m), (t(1), Step::WriteConfig { mode: single(5) }));
    m.handle(NOW, done(t(1), Ok(StepOutput::Done))).unwrap();
    assert_eq!(step(&mut m), (t(1), Step::LoadTenant { mode: single(5) }));
    m.handle(NOW, done(t(1), Ok(StepOutput::Done))).unwrap();
    let outcome = Ok(LocationOutcome::Changed(Placement::Located(single(5))));
    let reply = ManagerEffect::Reply { req: RequestId(1), tenant: t(1), result: outcome };
    assert_eq!(m.poll_effect(), Some(reply));
    assert_eq!(attached(&m, t(1)), Some(single(5)));
    m.check_invariants();
    // A create of a tenant the node has, and a delete of one it does not have.
    m.handle(NOW, ManagerInput::CreateTenant { req: RequestId(2), tenant: t(1) }).unwrap();
    let result = Err(ManagerError::AlreadyExists(t(1)));
    let reply = ManagerEffect::Reply { req: RequestId(2), tenant: t(1), result };
    assert_eq!(m.poll_effect(), Some(reply));
    m.handle(NOW, ManagerInput::DeleteTenant { req: RequestId(3), tenant: t(2), broken: None })
        .unwrap();
    let result = Err(ManagerError::NotFound(t(2)));
    let reply = ManagerEffect::Reply { req: RequestId(3), tenant: t(2), result };
    assert_eq!(m.poll_effect(), Some(reply));
    // A settled slot outside an operation is taken; a completion for no tenant is not.
    let slot = Slot::secondary(true);
    m.handle(NOW, ManagerInput::Settled { tenant: t(3), slot: slot.clone() }).unwrap();
    assert_eq!(m.slot(t(3)), Some(&slot));
    assert_eq!(
        m.handle(NOW, done(t(9), Ok(StepOutput::Done))),
        Err(ManagerHandleError::Input(ManagerInputError::NoOperation(t(9))))
    );
    // An AcquireGeneration answered without a generation.
    let request = req(RequestedMode::AttachedSingle, None);
    m.handle(
        NOW,
        ManagerInput::LocationConfig { req: RequestId(4), tenant: t(4), request, broken: None },
    )
    .unwrap();
    assert_eq!(step(&mut m), (t(4), Step::AcquireGeneration { at_least: None }));
    assert_eq!(
        m.handle(NOW, done(t(4), Ok(StepOutput::Done))),
        Err(ManagerHandleError::Input(ManagerInputError::MissingGeneration(t(4))))
    );
}

// ---- property test ----

#[derive(Clone, Debug)]
enum Input {
    Request { tenant: u8, mode: u8, generation: Option<u32> },
    Complete { tenant: u8, ok: bool },
    Crash,
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        3 => (0u8..3, 0u8..6, proptest::option::of(1u32..12))
            .prop_map(|(tenant, mode, generation)| Input::Request { tenant, mode, generation }),
        5 => (0u8..3, proptest::bool::weighted(0.85)).prop_map(|(tenant, ok)| Input::Complete { tenant, ok }),
        1 => Just(Input::Crash),
    ]
}

fn mode_of(n: u8) -> RequestedMode {
    match n {
        0 => RequestedMode::AttachedSingle,
        1 => RequestedMode::AttachedMulti,
        2 => RequestedMode::AttachedStale,
        3 => RequestedMode::Secondary { warm: true },
        4 => RequestedMode::Secondary { warm: false },
        _ => RequestedMode::Detached,
    }
}

/// The durable world the manager works against: config files, and the control
/// plane's generation per tenant (only ever growing).
#[derive(Default)]
struct World {
    config: BTreeMap<TenantId, LocationMode>,
    cp: BTreeMap<TenantId, u32>,
    in_flight: BTreeMap<TenantId, Step>,
    unanswered: BTreeMap<RequestId, TenantId>,
}

impl World {
    /// Start-up after a crash: the configs on disk; every attached tenant is
    /// re-attached on a new generation (and its config rewritten), as the node does.
    fn recover(&mut self) -> TenantManager {
        let mut slots = BTreeMap::new();
        for (t, mode) in self.config.iter_mut() {
            let slot = match mode {
                LocationMode::Secondary { warm } => Slot::secondary(*warm),
                m => {
                    let next = self.cp.get(t).copied().unwrap_or(0) + 1;
                    self.cp.insert(*t, next);
                    *m = match m {
                        LocationMode::AttachedMulti { .. } => {
                            LocationMode::AttachedMulti { generation: g(next) }
                        }
                        LocationMode::AttachedStale { .. } => {
                            LocationMode::AttachedStale { generation: g(next) }
                        }
                        _ => single(next),
                    };
                    Slot::Attached { mode: *m, broken: None }
                }
            };
            slots.insert(*t, slot);
        }
        TenantManager::recover(slots)
    }
}

fn drain(m: &mut TenantManager, w: &mut World) -> Result<(), TestCaseError> {
    while let Some(e) = m.poll_effect() {
        match e {
            ManagerEffect::Step { tenant, step } => {
                if let Step::RemoveLocalDir { .. } = step {
                    continue;
                }
                prop_assert!(
                    w.in_flight.insert(tenant, step).is_none(),
                    "two steps in flight for {tenant}"
                );
            }
            ManagerEffect::Reply { req, tenant, result } => {
                prop_assert_eq!(
                    w.unanswered.remove(&req),
                    Some(tenant),
                    "reply to an unknown request"
                );
                if let Err(ManagerError::Busy { .. }) = result {
                    prop_assert!(w.in_flight.contains_key(&tenant), "busy without an operation");
                }
            }
        }
    }
    Ok(())
}

fn complete(m: &mut TenantManager, w: &mut World, tenant: TenantId, ok: bool) {
    let Some(step) = w.in_flight.remove(&tenant) else { return };
    let result = if !ok {
        Err(StepError::Unexpected("injected".to_string()))
    } else {
        match step {
            Step::AcquireGeneration { at_least } => {
                let cur = w.cp.get(&tenant).copied().unwrap_or(0);
                let next = (cur + 1).max(at_least.map_or(0, |g| g.get()));
                w.cp.insert(tenant, next);
                Ok(StepOutput::Generation(g(next)))
            }
            Step::WriteConfig { mode } => {
                w.config.insert(tenant, mode);
                Ok(StepOutput::Done)
            }
            Step::RenameLocalDir { .. } => {
                w.config.remove(&tenant);
                Ok(StepOutput::Done)
            }
            _ => Ok(StepOutput::Done),
        }
    };
    m.handle_step_done(NOW, tenant, result).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random requests, completions (some failing) and crashes: every request is
    /// answered (done or a typed error), no operation waits without a step in
    /// flight, a settled attached tenant runs on the control plane's newest
    /// generation, and once everything completes nothing is left in progress.
    #[test]
    fn manager_answers_everything_and_never_waits_forever(inputs in proptest::collection::vec(input(), 1..60)) {
        let mut w = World::default();
        let mut m = TenantManager::default();
        let mut next_req = 0u64;
        for i in inputs {
            match i {
                Input::Request { tenant, mode, generation } => {
                    next_req += 1;
                    w.unanswered.insert(RequestId(next_req), t(tenant));
                    m.handle_location_config(NOW, RequestId(next_req), t(tenant), req(mode_of(mode), generation), None);
                }
                Input::Complete { tenant, ok } => complete(&mut m, &mut w, t(tenant), ok),
                Input::Crash => {
                    // Requests in flight die with the process; their callers see a
                    // dropped connection, not a reply.
                    w.unanswered.clear();
                    w.in_flight.clear();
                    m = w.recover();
                }
            }
            drain(&mut m, &mut w)?;
            m.check_invariants();
            for (tenant, slot) in m.slots() {
                if let Slot::Attached { mode, broken: None } = slot {
                    let held = mode.generation().unwrap().get();
                    prop_assert_eq!(Some(held), w.cp.get(tenant).copied(), "{} runs on a stale generation", tenant);
                }
                if let Slot::InProgress(_) = slot {
                    prop_assert!(w.in_flight.contains_key(tenant), "{} in progress with nothing in flight", tenant);
                }
            }
        }
        // Let everything finish.
        for _ in 0..32 {
            let tenants: Vec<_> = w.in_flight.keys().copied().collect();
            for tenant in tenants {
                complete(&mut m, &mut w, tenant, true);
            }
            drain(&mut m, &mut w)?;
        }
        prop_assert_eq!(m.in_progress(), 0);
        prop_assert!(w.unanswered.is_empty(), "unanswered: {:?}", w.unanswered);
    }
}

/// The tenant manager's reference world ([`super::manager_world`]), actions drawn
/// by proptest: requests, settled slots, steps finished Ok, failed, or wrongly.
fn world_action() -> impl Strategy<Value = super::manager_world::Action> {
    use super::manager_world::Action;
    prop_oneof![
        4 => (any::<u8>(), any::<u8>(), any::<u8>(), any::<bool>())
            .prop_map(|(t, m, g, b)| Action::Location(t, m, g, b)),
        1 => any::<u8>().prop_map(Action::Create),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(t, b)| Action::Delete(t, b)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(t, m)| Action::Settled(t, m)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(t, m)| Action::Load(t, m)),
        8 => (any::<u8>(), any::<bool>()).prop_map(|(t, f)| Action::StepOk(t, f)),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(t, k)| Action::StepFailed(t, k)),
        1 => any::<u8>().prop_map(Action::StepWrong),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn the_world_model_agrees_with_every_answer(
        actions in proptest::collection::vec(world_action(), 0..100)
    ) {
        super::manager_world::run(actions);
    }
}

/// Found by the `tenant_manager` fuzz world: a step completion for a tenant with
/// no operation (a settled Secondary slot) was refused with `NoOperation` but took
/// the tenant's slot with it: the node forgot a tenant it holds.
#[test]
fn a_stray_completion_for_a_settled_tenant_keeps_its_slot() {
    let mut m = TenantManager::recover(BTreeMap::from([(t(1), Slot::secondary(true))]));
    let attached = Slot::Attached { mode: single(3), broken: None };
    m.handle_settled(NOW, t(2), attached.clone()).unwrap();
    for (tenant, slot) in [(t(1), Slot::secondary(true)), (t(2), attached)] {
        let stray = m.handle_step_done(NOW, tenant, Ok(StepOutput::Done));
        assert_eq!(stray, Err(ManagerInputError::NoOperation(tenant)));
        assert_eq!(m.slot(tenant), Some(&slot), "the refused completion took the slot");
    }
    m.check_invariants();
}

/// Checks that can fail: each check of [`TenantManager::check_invariants`] fires
/// on a slot table that breaks it.
mod checks_fire {
    use super::*;

    #[test]
    #[should_panic(expected = "has no step in flight")]
    fn an_operation_with_no_step_in_flight() {
        let op = manager::Operation {
            kind: OperationKind::Attach,
            req: Some(RequestId(1)),
            from: Placement::Detached,
            target: RequestedMode::AttachedSingle,
            generation: None,
            current: None,
            remaining: [Step::AcquireGeneration { at_least: None }].into(),
            unplaced: None,
        };
        let m = TenantManager::recover(BTreeMap::from([(t(1), Slot::InProgress(Box::new(op)))]));
        m.check_invariants();
    }

    #[test]
    #[should_panic(expected = "attached slot without a generation")]
    fn an_attached_slot_without_a_generation() {
        let mode = LocationMode::Secondary { warm: false };
        let m =
            TenantManager::recover(BTreeMap::from([(t(1), Slot::Attached { mode, broken: None })]));
        m.check_invariants();
    }
}

// ---- start-up loads (`manager/load.rs`) ----

/// A start-up load is one `LoadTenant` step; it ends Attached in its mode and
/// answers no request (start-up asked, not a caller).
#[test]
fn a_start_up_load_ends_attached_and_answers_no_request() {
    let mut m = TenantManager::default();
    m.handle_load(NOW, t(1), single(4)).unwrap();
    assert_eq!(m.loads_in_progress(), 1);
    let (steps, replies) = run(&mut m, &mut 0);
    assert_eq!(steps, vec![Step::LoadTenant { mode: single(4) }]);
    assert!(replies.is_empty(), "a load answered {replies:?}");
    assert_eq!(m.slot(t(1)), Some(&Slot::Attached { mode: single(4), broken: None }));
    assert_eq!(m.loads_in_progress(), 0);
}

/// A failed load leaves the tenant placed where start-up put it, Broken with the
/// reason (a location_config repairs it), and still answers nothing.
#[test]
fn a_failed_start_up_load_leaves_the_tenant_broken_with_the_reason() {
    let mut m = TenantManager::default();
    let multi = LocationMode::AttachedMulti { generation: g(3) };
    m.handle_load(NOW, t(1), multi).unwrap();
    let Some(ManagerEffect::Step { step: Step::LoadTenant { .. }, .. }) = m.poll_effect() else {
        panic!("no LoadTenant step");
    };
    let reason = "listing its remote timelines failed".to_string();
    m.handle_step_done(NOW, t(1), Err(StepError::LoadFailed { tenant: t(1), reason })).unwrap();
    assert_eq!(m.poll_effect(), None, "a failed load answered something");
    match m.slot(t(1)) {
        Some(Slot::Attached { mode, broken: Some(why) }) => {
            assert_eq!(*mode, multi);
            assert!(why.contains("listing its remote timelines failed"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    m.check_invariants();
}

/// Start-up never loads a tenant an operation runs on, nor one in a mode without
/// machines: either is a typed refusal that changes nothing.
#[test]
fn a_start_up_load_is_refused_while_busy_or_not_attached() {
    let mut m = TenantManager::default();
    let secondary = LocationMode::Secondary { warm: true };
    assert_eq!(
        m.handle_load(NOW, t(1), secondary),
        Err(ManagerInputError::LoadNotAttached { tenant: t(1), mode: secondary })
    );
    assert_eq!(m.slot(t(1)), None);
    m.handle_load(NOW, t(1), single(2)).unwrap();
    assert_eq!(
        m.handle_load(NOW, t(1), single(3)),
        Err(ManagerInputError::LoadWhileBusy { tenant: t(1), kind: OperationKind::Load })
    );
    let (steps, _) = run(&mut m, &mut 0);
    assert_eq!(steps, vec![Step::LoadTenant { mode: single(2) }]);
}
