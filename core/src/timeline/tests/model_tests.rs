//! Model-based tests: random ingest, flushes, reads, faults and crashes, compared
//! with a plain BTreeMap of records (`timeline::model`, whose step language the
//! `timeline` fuzz target draws with `arbitrary`).

use crate::io_error::IoErrorKind;
use crate::redo::{DeltaOp, Record};
use crate::timeline::TimelineTimer;
use crate::timeline::model::{Outcome, Step, run};
use proptest::prelude::*;

fn record() -> impl Strategy<Value = Record> {
    let op = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..8).prop_map(DeltaOp::Append),
        (0u32..24, prop::collection::vec(any::<u8>(), 0..6))
            .prop_map(|(offset, bytes)| DeltaOp::WriteAt { offset, bytes }),
        (0u32..24).prop_map(DeltaOp::Truncate),
        Just(DeltaOp::Clear),
    ];
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..16).prop_map(Record::Image),
        3 => prop::collection::vec(op, 1..3).prop_map(Record::Delta),
    ]
}

/// The steps of the original model test; `crashes` adds crashes.
fn step(crashes: bool) -> impl Strategy<Value = Step> {
    let crash = if crashes { Step::Crash } else { Step::Tick(0) };
    prop_oneof![
        6 => prop::collection::vec((0u8..6, 1u8..4, record()), 1..6).prop_map(Step::Ingest),
        1 => Just(Step::Flush),
        6 => (0u8..7, any::<u32>()).prop_map(|(k, i)| Step::Read(k, i)),
        1 => (0u16..3000).prop_map(Step::Tick),
        1 => (0u8..3).prop_map(Step::FailWrites),
        1 => (0u8..2).prop_map(Step::FailDownloads),
        1 => (0u8..2).prop_map(Step::FailRedos),
        1 => any::<u32>().prop_map(Step::CorruptLocal),
        1 => any::<bool>().prop_map(Step::Lag),
        1 => Just(crash),
        1 => Just(Step::ConfirmUploads),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(c, d)| Step::Mode(c, d)),
    ]
}

/// Those plus held effects completed in any order with any outcome, held grants,
/// backpressure and timers fired by name.
fn any_order_step() -> impl Strategy<Value = Step> {
    let outcome = prop_oneof![
        4 => Just(Outcome::Ok),
        2 => prop::sample::select(IoErrorKind::ALL.to_vec()).prop_map(Outcome::Fail),
        1 => Just(Outcome::Lost),
    ];
    let timer = prop::sample::select(vec![
        TimelineTimer::Checkpoint,
        TimelineTimer::FlushRetry,
        TimelineTimer::ReadWait,
        TimelineTimer::CompactionRetry,
        TimelineTimer::GcRetry,
        TimelineTimer::Eviction,
        TimelineTimer::GcRetention,
    ]);
    prop_oneof![
        8 => step(true),
        1 => any::<bool>().prop_map(Step::Hold),
        1 => any::<bool>().prop_map(Step::HoldJobs),
        1 => any::<bool>().prop_map(Step::Backpressure),
        1 => timer.prop_map(Step::Fire),
        6 => (any::<u16>(), outcome).prop_map(|(i, o)| Step::Complete(i, o)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn timeline_matches_a_btreemap_model(steps in prop::collection::vec(step(false), 1..80)) {
        run(steps);
    }

    #[test]
    fn timeline_survives_crashes(steps in prop::collection::vec(step(true), 1..80)) {
        run(steps);
    }

    #[test]
    fn timeline_survives_any_completion_order(
        steps in prop::collection::vec(any_order_step(), 1..120)
    ) {
        run(steps);
    }
}

/// The two cases proptest once shrank for the original model test
/// (`proptest-regressions/timeline/tests/model.txt`), kept as plain tests now
/// that the steps are shared with the fuzz target.
#[test]
fn the_model_tests_past_failures_pass() {
    run(vec![
        Step::Ingest(vec![(0, 1, Record::Image(vec![]))]),
        Step::Ingest(vec![(0, 1, Record::Image(vec![]))]),
        Step::Tick(2000),
        Step::Ingest(vec![(0, 1, Record::Image(vec![]))]),
        Step::Flush,
        Step::Ingest(vec![(0, 2, Record::Image(vec![])), (0, 2, Record::Image(vec![]))]),
    ]);
    run(vec![
        Step::Ingest(vec![
            (0, 1, Record::Image(vec![0, 0, 0, 0, 0, 0])),
            (0, 1, Record::Delta(vec![DeltaOp::Append(vec![])])),
            (0, 1, Record::Delta(vec![DeltaOp::WriteAt { offset: 0, bytes: vec![0, 0] }])),
            (0, 1, Record::Delta(vec![DeltaOp::Append(vec![0, 0, 0, 0]), DeltaOp::Append(vec![])])),
            (0, 1, Record::Delta(vec![DeltaOp::Append(vec![])])),
        ]),
        Step::Ingest(vec![
            (
                2,
                3,
                Record::Delta(vec![
                    DeltaOp::WriteAt { offset: 21, bytes: vec![115, 86, 40, 14] },
                    DeltaOp::Append(vec![9, 132, 72, 76, 113, 230]),
                ]),
            ),
            (0, 2, Record::Image(vec![])),
            (3, 1, Record::Delta(vec![DeltaOp::Clear])),
        ]),
        Step::Ingest(vec![(
            1,
            3,
            Record::Delta(vec![
                DeltaOp::Append(vec![6]),
                DeltaOp::Append(vec![164, 200, 177, 170, 39]),
            ]),
        )]),
        Step::Ingest(vec![
            (1, 3, Record::Delta(vec![DeltaOp::Truncate(13), DeltaOp::Append(vec![])])),
            (0, 1, Record::Delta(vec![DeltaOp::Truncate(0)])),
        ]),
        Step::Tick(2262),
        Step::Ingest(vec![
            (1, 3, Record::Delta(vec![DeltaOp::Clear, DeltaOp::Truncate(1)])),
            (4, 3, Record::Delta(vec![DeltaOp::Append(vec![153, 114, 22, 177]), DeltaOp::Clear])),
            (
                5,
                1,
                Record::Image(vec![
                    132, 58, 39, 84, 181, 74, 182, 187, 83, 35, 219, 86, 193, 12, 248,
                ]),
            ),
            (4, 3, Record::Delta(vec![DeltaOp::Truncate(0), DeltaOp::Append(vec![78, 232, 132])])),
            (1, 3, Record::Delta(vec![DeltaOp::Truncate(23)])),
        ]),
    ]);
}
