//! Background jobs run only under the scheduler's grant and always report their
//! end; GC's time retention (monotonic) holds the horizon back.

use super::compaction::{config, fill};
use super::*;
use crate::scheduler::JobKind as BackgroundJob;
use crate::timeline::harness::Harness;

fn l0_count(h: &Harness) -> usize {
    h.tl.layers().filter(|l| crate::timeline::compaction::is_l0(&l.name)).count()
}

/// Compaction asks once, does nothing until granted, and reports its end after
/// its commit (the unlink of its inputs).
#[test]
fn compaction_waits_for_its_grant_and_reports_its_end() {
    let mut h = Harness::new(Lsn(0), config(2));
    h.grant_jobs = false;
    fill(&mut h, 3, 4);
    assert_eq!(h.wanted, [BackgroundJob::Compaction].into());
    assert_eq!(h.tl.job_gate(BackgroundJob::Compaction), Some(JobGate::Wanted));
    assert_eq!(h.tl.compaction_state(), &CompactionState::Idle);
    assert_eq!(l0_count(&h), 3);
    // Asked for once only, however many inputs came meanwhile.
    let asked = |h: &Harness| {
        h.log.iter().filter(|e| matches!(e, TimelineEffect::JobWanted { .. })).count()
    };
    assert_eq!(asked(&h), 1);
    assert!(!h.log.iter().any(|e| matches!(e, TimelineEffect::ReadLayer { .. })));
    h.log.clear();
    h.grant(BackgroundJob::Compaction);
    h.drain();
    assert_eq!(l0_count(&h), 0, "granted: compacted");
    assert!(h.running_jobs.is_empty(), "the slot was handed back");
    let unlink = h.log.iter().position(|e| matches!(e, TimelineEffect::UnlinkLayers { .. }));
    let finished = h.log.iter().position(|e| matches!(e, TimelineEffect::JobFinished { .. }));
    assert!(unlink.unwrap() < finished.unwrap(), "{:?}", h.log);
    assert_eq!(h.tl.job_gate(BackgroundJob::Compaction), None);
}

/// A mode change drops a running compaction at its next step; the slot is freed.
/// A grant arriving when the work is gone is handed back at once.
#[test]
fn a_dropped_or_needless_job_frees_its_slot() {
    let mut h = Harness::new(Lsn(0), config(2));
    fill(&mut h, 2, 4);
    assert_eq!(l0_count(&h), 0, "compacted under an immediate grant");
    h.manual = true;
    fill_no_flush_wait(&mut h);
    assert!(h.running_jobs.contains(&BackgroundJob::Compaction), "{:?}", h.log);
    h.tl.handle_mode(h.now, false, false);
    h.drain();
    while h.complete_next() {}
    assert!(h.running_jobs.is_empty(), "dropped job still holds its slot");
    assert_eq!(h.tl.compaction_state(), &CompactionState::Idle);

    // Asked for, then forbidden before the grant: the grant is handed back.
    h.manual = false;
    h.grant_jobs = false;
    h.tl.handle_mode(h.now, true, true);
    h.drain();
    assert_eq!(h.wanted, [BackgroundJob::Compaction].into());
    h.tl.handle_mode(h.now, false, false);
    h.drain();
    h.grant(BackgroundJob::Compaction);
    h.drain();
    assert!(h.running_jobs.is_empty());
    assert_eq!(h.tl.compaction_state(), &CompactionState::Idle);
    assert_eq!(
        h.tl.handle_job_granted(h.now, BackgroundJob::Gc),
        Err(TimelineError::UnexpectedGrant(BackgroundJob::Gc))
    );
}

/// Two more L0s flushed while world effects are held: the flush and the
/// compaction's first read stay pending.
fn fill_no_flush_wait(h: &mut Harness) {
    let mut lsn = h.tl.last_ingested_lsn().0;
    for _ in 0..2 {
        let batch = (0..4)
            .map(|k| {
                lsn += 1;
                rec(k, lsn, app(b"z"))
            })
            .collect();
        h.ingest(batch).unwrap();
        h.tl.handle_flush(h.now);
        h.drain();
        while h.pending.iter().any(|e| {
            matches!(e, TimelineEffect::WriteLayer { .. } | TimelineEffect::WriteMetadata { .. })
        }) {
            h.complete_next();
        }
    }
}

fn gc_config(retention_ms: u64) -> TimelineConfig {
    TimelineConfig {
        image_creation_threshold_layers: 3,
        gc_horizon_lsn_distance: 5,
        gc_retention_ms: retention_ms,
        ..config(100)
    }
}

/// The time retention (monotonic clock) holds GC back until the data under the LSN horizon
/// is old enough; a timer wakes GC then. Without the bound GC runs at once.
#[test]
fn gc_waits_for_the_time_retention() {
    // Reference: LSN distance only.
    let mut h = Harness::new(Lsn(0), gc_config(0));
    fill(&mut h, 5, 4);
    assert_eq!(h.tl.metadata().gc_cutoff_lsn, Lsn(12));

    let mut h = Harness::new(Lsn(0), gc_config(60_000));
    fill(&mut h, 3, 4); // LSNs 1..=12, image set at 12, at t = 0
    h.advance_to(Instant::from_millis(30_000));
    fill(&mut h, 2, 4); // LSNs 13..=20 at t = 30 s
    assert_eq!(h.tl.gc_plan(), None, "nothing is 60 s old yet");
    assert_eq!(h.tl.metadata().gc_cutoff_lsn, Lsn::ZERO);
    assert_eq!(h.tl.gc_retention_horizon(), Some(Lsn::ZERO));
    // The timer for the first sample coming of age (LSN 12 ingested by t = 0).
    let at = h.tl.poll_timeout().expect("GC's wall-clock timer");
    assert_eq!(at, Instant::from_millis(60_000));
    h.advance_to(Instant::from_millis(59_999));
    assert_eq!(h.tl.metadata().gc_cutoff_lsn, Lsn::ZERO);
    h.advance_to(at);
    assert_eq!(h.tl.metadata().gc_cutoff_lsn, Lsn(12));
    assert!(h.tl.layers().all(|l| layer_map::lsn_range(&l.name).end > Lsn(12)));
}

/// After a restart the samples are gone: what was ingested before counts as
/// ingested at the restart, so GC waits a whole retention again.
#[test]
fn after_a_restart_gc_waits_a_whole_retention_again() {
    let mut h = Harness::new(Lsn(0), gc_config(60_000));
    fill(&mut h, 5, 4);
    h.advance_to(Instant::from_millis(50_000));
    assert_eq!(h.tl.metadata().gc_cutoff_lsn, Lsn::ZERO);
    let now = Instant::from_millis(55_000);
    let mut r = Harness::recover(h.world.clone(), gc_config(60_000), now);
    r.advance_to(now);
    assert_eq!(r.tl.lsn_time_samples().copied().collect::<Vec<_>>(), [(now, Lsn(20))]);
    r.advance_to(Instant::from_millis(100_000));
    assert_eq!(r.tl.metadata().gc_cutoff_lsn, Lsn::ZERO, "restart time counts, not t = 0");
    r.advance_to(Instant::from_millis(115_000));
    assert_eq!(r.tl.metadata().gc_cutoff_lsn, Lsn(12));
}

/// The samples stay bounded and ordered over a long run of ingests.
#[test]
fn lsn_time_samples_are_bounded() {
    let mut h = Harness::new(Lsn(0), gc_config(1_000));
    for i in 1..=2_000u64 {
        h.now = Instant::from_millis(i * 7);
        h.ingest(vec![rec(1, i, img(b"v"))]).unwrap();
        assert!(h.tl.lsn_time_samples().count() <= MAX_LSN_TIME_SAMPLES);
    }
    let samples: Vec<_> = h.tl.lsn_time_samples().copied().collect();
    // One sample at least a retention old, the rest younger.
    let now = h.now;
    assert!(samples[0].0.plus_millis(1_000) <= now);
    assert!(samples[1..].iter().all(|(t, _)| t.plus_millis(1_000) > now));
    let horizon = h.tl.gc_retention_horizon().unwrap();
    // Coarse but safe: at or below the LSN ingested exactly a retention ago.
    let exact = Lsn((now.as_millis() - 1_000) / 7);
    assert!(horizon <= exact && horizon.0 + 1_000 / 7 >= exact.0, "{horizon} vs {exact}");
}

/// Eviction passes are jobs too: nothing is evicted before the grant.
#[test]
fn eviction_waits_for_its_grant() {
    let cfg = TimelineConfig { eviction_idle_ms: 1_000, ..config(100) };
    let mut h = Harness::new(Lsn(0), cfg);
    h.grant_jobs = false;
    fill(&mut h, 2, 4);
    h.confirm_uploads();
    h.advance_to(Instant::from_millis(1_000));
    assert!(h.wanted.contains(&BackgroundJob::Eviction));
    assert!(h.tl.layers().all(|l| l.resident));
    // Waiting for the grant, the eviction timer is off (no busy wake-ups).
    assert_eq!(h.tl.poll_timeout(), None);
    h.grant_all();
    assert!(h.tl.layers().all(|l| !l.resident));
    assert!(h.running_jobs.is_empty());
}
