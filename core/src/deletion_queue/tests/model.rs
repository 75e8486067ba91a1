//! The two-node migration property test: actions drawn with proptest, played by
//! the reference world in `deletion_queue/model.rs` (S-DEL-GEN, no referenced
//! object deleted, S-VISIBLE after every step; L-DELETE at the end).

use super::super::model::*;
use proptest::prelude::*;

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..2usize).prop_map(Action::NewLayer),
        4 => (0..2usize, any::<usize>()).prop_map(|(n, p)| Action::Unlink(n, p)),
        2 => (0..2usize).prop_map(Action::Ingest),
        1 => Just(Action::Migrate),
        1 => (0..2usize, any::<u8>()).prop_map(|(n, b)| Action::Crash(n, b)),
        2 => (0..2usize).prop_map(Action::Restart),
        4 => any::<usize>().prop_map(Action::DeliverValidate),
        4 => any::<usize>().prop_map(Action::DeliverReply),
        8 => (0..2usize, any::<usize>(), prop::bool::weighted(0.8))
            .prop_map(|(n, p, ok)| Action::CompleteIo(n, p, ok)),
        3 => (1..300u64).prop_map(Action::Tick),
        1 => (0..2usize).prop_map(Action::Flush),
        1 => (0..2usize, any::<usize>(), any::<u8>()).prop_map(|(n, p, k)| Action::FailIo(n, p, k)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(p, how)| Action::FailValidate(p, how)),
        1 => (0..2usize, any::<usize>()).prop_map(|(n, p)| Action::Cancel(n, p)),
        1 => (0..2usize).prop_map(Action::StopDeleting),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn two_nodes_share_a_tenant_through_migrations_and_crashes(
        actions in prop::collection::vec(action(), 1..120)
    ) {
        run(actions);
    }
}
