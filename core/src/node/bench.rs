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
