//! Start-up of many tenants through the node and its tenant manager, with instant
//! effects (the in-memory world of `tests.rs`): time per tenant at 1,000 and
//! 10,000 tenants (linear growth keeps it flat), and the memory held per idle
//! attached tenant (resident set growth over the start; goal ≤ 64 KiB). Run:
//! `cargo test --release -p strata-core --lib node::bench -- --ignored --nocapture`

use super::NodePhase;
use super::tests::{Harness, World, config};
use crate::control_plane::TenantRecord;
use crate::generation::Generation;
use crate::id::{NodeId, TenantId, TimelineId};
use crate::index_part::{IndexPart, IndexVersion};
use crate::location_conf::LocationConf;
use crate::lsn::Lsn;
use crate::metadata::TimelineMetadata;
use crate::remote_path;

/// `n` tenants attached to node 1 on generation 1, each with one empty timeline
/// whose index is in remote storage and whose local directory is empty.
pub(super) fn world(n: u32) -> World {
    let mut w = World::default();
    let g1 = Generation::FIRST;
    for i in 0..n {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let tenant = TenantId::from_bytes(id);
        let timeline = TimelineId::from_bytes([0xAA; 16]);
        w.files.insert(
            super::io::location_conf_path(tenant),
            LocationConf::attached_single(g1).to_toml().into_bytes(),
        );
        w.store
            .insert(tenant, TenantRecord { tenant, generation: g1, attached_to: Some(NodeId(1)) });
        let metadata = TimelineMetadata {
            disk_consistent_lsn: Lsn::ZERO,
            gc_cutoff_lsn: Lsn::ZERO,
            initdb_lsn: Lsn::ZERO,
            ancestor: None,
        };
        let key = remote_path::index_key(tenant, timeline, IndexVersion { generation: g1, seq: 1 });
        w.objects.insert(key.as_str().to_string(), IndexPart::empty(metadata).to_json_bytes());
    }
    w
}

/// Resident set size in bytes (Linux), or `None` elsewhere.
#[allow(clippy::disallowed_methods)]
fn rss_bytes() -> Option<u64> {
    // Test-only measurement code; core's machines never read files.
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
#[ignore = "benchmark: run explicitly with --release --ignored --nocapture"]
// A benchmark measures wall time; this is test-only code outside the machines.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn bench_start_up_of_many_tenants() {
    use std::time::Instant as Clock;
    println!("start-up through the tenant manager, instant effects, one empty timeline per tenant");
    println!(
        "{:>8} {:>10} {:>14} {:>18}",
        "tenants", "total ms", "µs per tenant", "bytes per tenant"
    );
    let mut per_tenant = Vec::new();
    for n in [1_000u32, 10_000] {
        let w = world(n);
        let rss_before = rss_bytes();
        let started = Clock::now();
        let h = Harness::start_with(w, config(), false);
        let elapsed = started.elapsed();
        let rss_after = rss_bytes();
        assert_eq!(h.node.phase(), &NodePhase::Active);
        assert_eq!(h.node.tenant_ids().count(), n as usize);
        let us = elapsed.as_secs_f64() * 1e6 / f64::from(n);
        let bytes = match (rss_before, rss_after) {
            (Some(b), Some(a)) => format!("{}", a.saturating_sub(b) / u64::from(n)),
            _ => "n/a".to_string(),
        };
        println!("{n:>8} {:>10.1} {us:>14.1} {bytes:>18}", elapsed.as_secs_f64() * 1e3);
        per_tenant.push(us);
        drop(h);
    }
    println!(
        "growth of time per tenant from 1,000 to 10,000: {:.2}x (1.0 = linear)",
        per_tenant[1] / per_tenant[0]
    );
}

/// Issue 21 item 5, "no request pays for other tenants' data": the latency of
/// requests to an idle timeline (timeline info, a read, an ingest of 10 records)
/// with nothing else on the node, then with `STRATA_BENCH_UNFLUSHED` records
/// (default 1,000,000) un-flushed in another tenant's timeline. Through the node
/// with instant effects, `poll_timeout` after every effect as the driver asks it,
/// without `check_invariants` (release builds of the driver do not run it) and with
/// it after every input (as debug builds of the driver and the simulator run it). Run:
/// `cargo test --release -p strata-core --lib node::bench::bench_idle -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: run explicitly with --release --ignored --nocapture"]
// A benchmark measures wall time; this is test-only code outside the machines.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn bench_idle_timeline_beside_unflushed_records() {
    use super::api::{Request, Response};
    use super::tests::Harness;
    use crate::key::Key;
    use crate::redo::{IngestRecord, Record};
    use std::time::{Duration, Instant as Clock};

    let unflushed: u64 = std::env::var("STRATA_BENCH_UNFLUSHED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let (busy, idle) = (TenantId::from_bytes([1; 16]), TenantId::from_bytes([2; 16]));
    let timeline = TimelineId::from_bytes([3; 16]);
    let mut c = config();
    c.timeline.checkpoint_distance_bytes = u64::MAX;
    c.timeline.checkpoint_timeout_ms = 24 * 3600 * 1000;
    c.timeline.max_in_memory_bytes = u64::MAX;
    let mut h = Harness::start_with(World::default(), c, false);
    for tenant in [busy, idle] {
        h.call(Request::CreateTenant { tenant }).unwrap();
        h.call(Request::CreateTimeline { tenant, timeline }).unwrap();
    }
    let image = |key: u64, lsn: u64| IngestRecord {
        key: Key(key),
        lsn: Lsn(lsn),
        record: Record::Image(vec![key as u8; 16]),
    };
    let mut idle_lsn = 16u64;
    let batch: Vec<_> = (0..100).map(|i| image(i % 10, idle_lsn + i * 8)).collect();
    idle_lsn += 100 * 8;
    h.call(Request::Ingest { tenant: idle, timeline, records: batch }).unwrap();

    // Median µs per request of each kind, `rounds` of each.
    let mut measure = |h: &mut Harness, rounds: usize| -> [f64; 3] {
        let mut times: [Vec<Duration>; 3] = Default::default();
        for _ in 0..rounds {
            let started = Clock::now();
            let info = h.call(Request::TimelineInfo { tenant: idle, timeline });
            times[0].push(started.elapsed());
            assert!(matches!(info, Ok(Response::TimelineInfo(_))), "{info:?}");
            let started = Clock::now();
            let read = h.call(Request::Read {
                tenant: idle,
                timeline,
                key: Key(3),
                lsn: Lsn(idle_lsn - 8),
            });
            times[1].push(started.elapsed());
            assert!(matches!(read, Ok(Response::Value { value: Some(_), .. })), "{read:?}");
            let records: Vec<_> = (0..10).map(|i| image(i, idle_lsn + i * 8)).collect();
            idle_lsn += 10 * 8;
            let started = Clock::now();
            let ingest = h.call(Request::Ingest { tenant: idle, timeline, records });
            times[2].push(started.elapsed());
            assert!(matches!(ingest, Ok(Response::Ingested { .. })), "{ingest:?}");
        }
        times.map(|mut t| {
            t.sort_unstable();
            t[t.len() / 2].as_secs_f64() * 1e6
        })
    };
    println!("requests to an idle timeline, median µs (2,000 of each; 50 with check_invariants)");
    println!(
        "{:>22} {:>16} {:>10} {:>10} {:>10}",
        "un-flushed elsewhere", "checks", "info µs", "read µs", "ingest µs"
    );
    let row = |n: u64, checks: &str, t: [f64; 3]| {
        println!("{n:>22} {checks:>16} {:>10.2} {:>10.2} {:>10.2}", t[0], t[1], t[2]);
    };
    let before = measure(&mut h, 2_000);
    row(0, "none (release)", before);
    h.check = true;
    let checked_before = measure(&mut h, 50);
    row(0, "every input", checked_before);
    h.check = false;
    let started = Clock::now();
    let mut lsn = 16u64;
    let mut left = unflushed;
    while left > 0 {
        let n = left.min(10_000);
        let records: Vec<_> = (0..n).map(|i| image((lsn / 8 + i) % 100_000, lsn + i * 8)).collect();
        lsn += n * 8;
        left -= n;
        let ingested = h.call(Request::Ingest { tenant: busy, timeline, records });
        assert!(matches!(ingested, Ok(Response::Ingested { .. })), "{ingested:?}");
    }
    let ingest_s = started.elapsed().as_secs_f64();
    let slot = &h.node.tenants[&busy].timelines[&timeline];
    assert_eq!(slot.timeline.disk_consistent_lsn(), Lsn::ZERO, "the busy timeline flushed");
    assert_eq!(slot.timeline.last_ingested_lsn(), Lsn(lsn - 8));
    let after = measure(&mut h, 2_000);
    row(unflushed, "none (release)", after);
    h.check = true;
    let checked_after = measure(&mut h, 50);
    row(unflushed, "every input", checked_after);
    let ratios = |a: [f64; 3], b: [f64; 3]| {
        format!("info {:.2}x, read {:.2}x, ingest {:.2}x", a[0] / b[0], a[1] / b[1], a[2] / b[2])
    };
    println!(
        "ratio {unflushed} / 0 un-flushed (1.0 = no request pays for the other timeline): \
         {}; with check_invariants after every input (debug builds of the driver): {}; \
         ingesting the {unflushed} records took {ingest_s:.1} s",
        ratios(after, before),
        ratios(checked_after, checked_before)
    );
}
