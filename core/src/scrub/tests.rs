use super::purge::{Keep, PurgeRuleError, PurgeRules, confirm_batch, orphan_verdict};
use super::*;
use crate::key::Key;
use crate::layer_name::KeyRange;
use crate::lsn::Lsn;
use crate::remote_path::{index_key, layer_key, tenant_deletion_mark_key};
use std::collections::BTreeSet;

fn g(n: u32) -> Generation {
    Generation::new(n).unwrap()
}

fn v(generation: u32, seq: u64) -> IndexVersion {
    IndexVersion { generation: g(generation), seq }
}

fn name(lsn: u64) -> LayerName {
    LayerName::Image { keys: KeyRange::new(Key(0), Key(9)).unwrap(), lsn: Lsn(lsn) }
}

const T: TenantId = TenantId([1; 16]);
const TL: TimelineId = TimelineId([2; 16]);

#[test]
fn keys_classify_by_the_layout_of_remote_path() {
    let layer = layer_key(T, TL, &name(0x10), g(3));
    assert_eq!(
        classify_key(&layer),
        KeyClass::Layer { tenant: T, timeline: TL, name: name(0x10), generation: g(3) }
    );
    let index = index_key(T, TL, v(3, 5));
    assert_eq!(classify_key(&index), KeyClass::Index { tenant: T, timeline: TL, version: v(3, 5) });
    assert_eq!(
        classify_key(&tenant_deletion_mark_key(T)),
        KeyClass::TenantDeletionMark { tenant: T }
    );
    let key = |s: &str| RemoteKey::from_listing(s).unwrap();
    let prefix = crate::remote_path::timeline_prefix(T, TL);
    assert!(matches!(
        classify_key(&key(&format!("{prefix}index_part.json.x"))),
        KeyClass::BadIndexKey { .. }
    ));
    for other in ["layer", "0000000000000000-0000000000000009__0000000000000010-0000000g"] {
        assert_eq!(
            classify_key(&key(&format!("{prefix}{other}"))),
            KeyClass::OtherInTimeline { tenant: T, timeline: TL },
            "{other}"
        );
    }
    assert_eq!(
        classify_key(&key(&format!("tenants/{T}/config"))),
        KeyClass::OtherInTenant { tenant: T }
    );
    assert_eq!(classify_key(&key("tenants/nothex/x")), KeyClass::Unknown);
    assert_eq!(classify_key(&key("elsewhere")), KeyClass::Unknown);
}

#[test]
fn the_plan_chooses_by_the_nodes_rule_and_reads_every_index_at_or_below_it() {
    let listed = [v(1, 1), v(1, 4), v(2, 2), v(4, 1), v(4, 3)];
    let plan = plan_timeline(None, &listed);
    assert_eq!(plan.chosen, Some(v(4, 3)));
    assert_eq!(plan.to_read, vec![v(1, 1), v(1, 4), v(2, 2), v(4, 1), v(4, 3)]);
    assert_eq!(plan.newest_listed, Some(g(4)));
    // With the control plane's grant as the node's own generation, a newer
    // generation's index is never chosen or read (select_index's rule).
    let plan = plan_timeline(Some(g(3)), &listed);
    assert_eq!(plan.chosen, Some(v(2, 2)));
    assert_eq!(plan.to_read, vec![v(1, 1), v(1, 4), v(2, 2)]);
    assert_eq!(plan.chosen, crate::index_part::select_index(g(3), &listed).chosen);
}

#[test]
fn purge_needs_a_minimum_age_of_a_day() {
    assert_eq!(
        PurgeRules::new(MIN_PURGE_AGE_MS - 1),
        Err(PurgeRuleError::BelowMinimum { given_ms: MIN_PURGE_AGE_MS - 1 })
    );
    assert!(PurgeRules::new(MIN_PURGE_AGE_MS).is_ok());
}

#[test]
fn an_orphan_is_deleted_only_when_unreferenced_old_and_its_timeline_fully_read() {
    let rules = PurgeRules::new(MIN_PURGE_AGE_MS).unwrap();
    let now = WallTime(3 * MIN_PURGE_AGE_MS);
    let old = Some(WallTime(MIN_PURGE_AGE_MS));
    let protected: BTreeSet<_> = [(name(1), g(1))].into();
    let verdict = |n: u64, gen_: u32, t: Option<WallTime>, complete: bool| {
        orphan_verdict(&rules, &protected, complete, (&name(n), g(gen_)), t, now)
    };
    assert_eq!(verdict(2, 1, old, true), Ok(()));
    assert_eq!(verdict(1, 1, old, true), Err(Keep::Referenced));
    // The same name written in another generation is another object.
    assert_eq!(verdict(1, 2, old, true), Ok(()));
    assert_eq!(verdict(2, 1, Some(WallTime(now.0 - MIN_PURGE_AGE_MS + 1)), true), Err(Keep::Young));
    assert_eq!(verdict(2, 1, Some(WallTime(now.0 + 5)), true), Err(Keep::Young));
    assert_eq!(verdict(2, 1, None, true), Err(Keep::AgeUnknown));
    assert_eq!(verdict(2, 1, old, false), Err(Keep::IndexUnreadable));
}

#[test]
fn a_batch_is_confirmed_only_when_the_control_plane_and_the_indexes_did_not_move() {
    let idx = [v(3, 1)];
    assert_eq!(confirm_batch(Some(g(3)), Some(g(3)), &idx, &idx), Ok(()));
    assert_eq!(confirm_batch(Some(g(3)), Some(g(4)), &idx, &idx), Err(Keep::ControlPlaneMoved));
    assert_eq!(confirm_batch(None, Some(g(3)), &idx, &idx), Err(Keep::NoControlPlane));
    assert_eq!(confirm_batch(Some(g(3)), None, &idx, &idx), Err(Keep::NoControlPlane));
    assert_eq!(
        confirm_batch(Some(g(3)), Some(g(3)), &idx, &[v(3, 1), v(3, 2)]),
        Err(Keep::IndexesChanged)
    );
}

#[test]
fn the_report_keeps_a_bounded_number_of_findings_and_counts_the_rest() {
    let mut report = Report::default();
    for i in 0..(MAX_HELD_FINDINGS as u64 + 5) {
        report.record(Finding::Orphan {
            key: layer_key(T, TL, &name(i + 1), g(1)),
            generation: g(1),
            age_ms: None,
            size_bytes: 1,
        });
    }
    assert_eq!(report.findings.len(), MAX_HELD_FINDINGS);
    assert_eq!((report.findings_not_held, report.orphans(), report.exit_code()), (5, 1005, 0));
    report.record(Finding::UnknownObject { key: RemoteKey::from_listing("x").unwrap() });
    assert_eq!((report.problems(), report.exit_code()), (1, 1));
}
