//! Eviction: only remotely durable layers, by idle time or a disk budget, keeping
//! each layer's own generation.

use super::compaction::{check_reads, config, fill};
use super::*;
use crate::timeline::harness::Harness;

fn resident(h: &Harness) -> usize {
    h.tl.layers().filter(|l| l.resident).count()
}

#[test]
fn layers_not_yet_uploaded_are_never_evicted() {
    let cfg = TimelineConfig { eviction_idle_ms: 1_000, ..config(100) };
    let mut h = Harness::new(Lsn(0), cfg);
    let model = fill(&mut h, 3, 4);
    h.advance_to(h.now.plus_millis(10_000));
    assert_eq!(resident(&h), 3, "nothing reported uploaded: nothing evicted");
    assert_eq!(h.tl.poll_timeout(), None);
    // Idle since they were flushed: evicted as soon as they are known durable.
    h.confirm_uploads();
    assert_eq!(resident(&h), 0);
    assert!(h.world.disk.is_empty(), "local files removed");
    // Still in the map, read back through downloads.
    assert_eq!(h.tl.layers().count(), 3);
    check_reads(&mut h, &model, 4);
    assert_eq!(resident(&h), 3);
    // Downloaded layers are durable: evicted again once idle.
    let at = h.tl.poll_timeout().expect("an idle timer for durable layers");
    assert_eq!(at, h.now.plus_millis(1_000));
    h.advance_to(at);
    assert_eq!(resident(&h), 0);
}

#[test]
fn a_disk_budget_evicts_the_least_recently_used_first() {
    let cfg = TimelineConfig { layer_cache_bytes: 0, ..config(100) };
    let mut h = Harness::new(Lsn(0), cfg.clone());
    let _ = fill(&mut h, 3, 4);
    let sizes: Vec<u64> = h.tl.layers().map(|l| l.meta.file_size).collect();
    h.confirm_uploads();
    // Read key 0 at the first layer's LSN: only the oldest layer is used.
    h.advance_to(h.now.plus_millis(10));
    assert!(h.get(Key(0), Lsn(1)).unwrap().is_some());
    let budget = sizes[0] + sizes[1];
    let mut r = Harness::recover(
        h.world.clone(),
        TimelineConfig { local_layer_budget_bytes: budget, ..cfg },
        h.now,
    );
    r.advance_to(r.now.plus_millis(1));
    assert_eq!(resident(&r), 2, "one layer over the budget is evicted");
    assert!(r.tl.layers().map(|l| l.meta.file_size).sum::<u64>() > budget);
}

/// #5538: an evicted layer of an older generation is downloaded under its own
/// generation, never the current one.
#[test]
fn eviction_keeps_the_layers_own_generation() {
    let gen3 = Generation::new(3).unwrap();
    let gen5 = Generation::new(5).unwrap();
    let mut h = Harness::new(Lsn(0), TimelineConfig { generation: gen3, ..config(100) });
    let model = fill(&mut h, 2, 3);
    let cfg5 = TimelineConfig { generation: gen5, eviction_idle_ms: 100, ..config(100) };
    let mut r = Harness::recover(h.world.clone(), cfg5, h.now);
    assert_eq!(r.tl.remote_durable_layers().len(), 2, "the recovered index is durable");
    r.advance_to(r.now.plus_millis(1));
    r.advance_to(r.now.plus_millis(100));
    assert_eq!(resident(&r), 0);
    r.log.clear();
    check_reads(&mut r, &model, 3);
    let downloads: Vec<Generation> = r
        .log
        .iter()
        .filter_map(|e| match e {
            TimelineEffect::DownloadLayer { meta, .. } => Some(meta.generation),
            _ => None,
        })
        .collect();
    assert_eq!(downloads, [gen3, gen3], "S-GEN-SUFFIX");
    assert!(r.tl.layers().all(|l| l.meta.generation == gen3));
}

#[test]
fn stale_mode_evicts_nothing() {
    let cfg = TimelineConfig { eviction_idle_ms: 10, ..config(100) };
    let mut h = Harness::new(Lsn(0), cfg);
    let _ = fill(&mut h, 2, 3);
    h.tl.handle_mode(h.now, false, false);
    h.confirm_uploads();
    h.advance_to(h.now.plus_millis(1_000));
    assert_eq!(resident(&h), 2);
    h.tl.handle_mode(h.now, true, false);
    h.drain();
    h.advance_to(h.now.plus_millis(10));
    assert_eq!(resident(&h), 0);
}

#[test]
fn a_download_that_failed_its_fsync_has_its_file_removed() {
    // FSYNC-TRUST (single-node seed 5265905): the file of a download whose directory
    // fsync failed stays under the layer's name; a tenant restart adopted it at load
    // and read it back. The timeline asks for its removal at the failure.
    let cfg = TimelineConfig { eviction_idle_ms: 1_000, layer_cache_bytes: 0, ..config(100) };
    let mut h = Harness::new(Lsn(0), cfg);
    let _ = fill(&mut h, 1, 2);
    h.advance_to(h.now.plus_millis(10_000));
    h.confirm_uploads();
    assert_eq!(resident(&h), 0);
    let name = h.tl.layers().next().unwrap().name.clone();
    h.manual = true;
    h.tl.handle_read(h.now, ReadId(7), Key(0), Lsn(1));
    h.drain();
    // The renamed file is in place when the directory's fsync fails.
    let (bytes, _) = h.world.remote[&name].clone();
    h.world.disk.insert(name.clone(), bytes);
    h.log.clear();
    assert!(h.fail_held(0, IoErrorKind::FsyncFailed));
    assert!(
        h.log.iter().any(|e| matches!(e, TimelineEffect::EvictLayer { name: n } if *n == name)),
        "no removal asked for: {:?}",
        h.log
    );
    assert!(!h.world.disk.contains_key(&name), "the untrusted file is gone");
    assert!(matches!(h.reads.remove(&ReadId(7)), Some(Err(ReadError::LayerUnavailable { .. }))));
    h.tl.check_invariants();
}
