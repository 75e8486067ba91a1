//! State-machine test against the reference model (`model.rs`): random inputs, completion
//! orders, errors, lost responses, late writes, mode changes, crashes (each in-flight
//! write landed or not) and re-added keys. After every step the harness checks the
//! machine's invariants and the world's (S-IDX-ORDER on every index PUT, S-IDX-REF /
//! S-DEL-AFTER-INDEX on the newest index in storage, S-SINGLE-WRITER on every
//! effect); this test adds the model's view (the layer set, S-GEN-SUFFIX,
//! S-PROJECTED). At the end faults stop, and nothing may be lost: the newest index
//! is exactly the model, and projected = visible = disk_consistent.

use super::harness::*;
use super::model::*;
use super::*;
use proptest::prelude::*;

fn finish() -> impl Strategy<Value = Finish> {
    prop_oneof![
        6 => Just(Finish::Ok),
        1 => Just(Finish::Transient),
        1 => Just(Finish::LostResponse),
        1 => Just(Finish::Late),
        1 => any::<u8>().prop_map(Finish::Failed),
    ]
}

fn mode() -> impl Strategy<Value = AttachMode> {
    prop_oneof![
        3 => Just(AttachMode::Single),
        1 => Just(AttachMode::Multi),
        1 => Just(AttachMode::Stale),
        1 => Just(AttachMode::Emergency),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..LAYER_POOL).prop_map(Step::Add),
        2 => (0..LAYER_POOL).prop_map(Step::Unlink),
        2 => Just(Step::SetMetadata),
        1 => Just(Step::Barrier),
        8 => (any::<u16>(), finish()).prop_map(|(i, f)| Step::Complete(i, f)),
        1 => any::<u16>().prop_map(Step::ApplyLate),
        3 => (any::<u16>(), any::<bool>()).prop_map(|(i, c)| Step::FinishDeletion(i, c)),
        1 => prop::bool::weighted(0.8).prop_map(Step::Validate),
        2 => Just(Step::Timer),
        1 => mode().prop_map(Step::Mode),
        1 => any::<u8>().prop_map(Step::Crash),
        1 => any::<u8>().prop_map(Step::StopRestart),
    ]
}

proptest! {
    // 256 cases by default (PROPTEST_CASES overrides): a few seconds.
    #[test]
    fn upload_queue_matches_the_model(steps in prop::collection::vec(step(), 0..120)) {
        run(steps);
    }

    #[test]
    fn timeline_deletion_keeps_the_tombstone_newest(
        prefix in prop::collection::vec(step(), 0..40),
        after in prop::collection::vec(step(), 0..80),
    ) {
        run_deletion(prefix, after);
    }
}
