//! Warm secondaries in the node: a warm slot downloads the layers of the newest
//! index into the tenant's directory, writes nothing remote, and an attach on the
//! node (a migration's cut-over) adopts them: its reads download none of them. A
//! cold slot downloads nothing, so the same reads download every layer.

use super::*;

/// Layer files of T/TL on local disk.
fn local_layers(h: &Harness) -> Vec<Utf8PathBuf> {
    let dir = format!("tenants/{T}/timelines/{TL}/");
    h.world
        .files
        .keys()
        .filter(|p| p.as_str().starts_with(&dir) && p.as_str().contains("__"))
        .cloned()
        .collect()
}

/// Downloads into T's directory traced since the last call.
fn downloads(h: &mut Harness) -> usize {
    let dir = format!("to tenants/{T}/");
    h.node
        .drain_trace()
        .iter()
        .filter(|l| l.what.starts_with("RemoteGetFile") && l.what.contains(&dir))
        .count()
}

/// T with data, detached (its directory gone), then placed Secondary: how many
/// layers that placement left on disk, and the reads after an attach: how many
/// downloads they needed; the values must be those written.
fn secondary_then_attach(warm: bool) -> (usize, usize, usize) {
    let mut h = Harness::start(World::default(), config());
    let (last, values) = tenant_with_data(&mut h);
    location(&mut h, RequestedMode::Detached, None).unwrap();
    assert!(local_layers(&h).is_empty());
    let remote_writes = h.world.remote_writes;
    let r = location(&mut h, RequestedMode::Secondary { warm }, None);
    assert!(matches!(r, Ok(Response::LocationConfigured(LocationOutcome::Changed(_)))), "{r:?}");
    h.run_for(1_000);
    assert_eq!(h.world.remote_writes, remote_writes, "a secondary wrote to remote storage");
    let kept = local_layers(&h).len();
    assert_eq!(h.node.warm_secondaries(), usize::from(warm));
    let stats = h.node.secondary_stats();
    assert_eq!(stats.downloaded_layers as usize, if warm { kept } else { 0 });
    downloads(&mut h);
    location(&mut h, RequestedMode::AttachedSingle, None).unwrap();
    assert_eq!(h.node.warm_secondaries(), 0);
    let after: Vec<_> = (0..7).map(|k| read(&mut h, k, last)).collect();
    assert_eq!(after, values);
    let needed = downloads(&mut h);
    (kept, needed, local_layers(&h).len())
}

#[test]
fn an_attach_after_a_warm_secondary_downloads_none_of_its_layers() {
    let (kept, needed, layers) = secondary_then_attach(true);
    assert!(kept >= 2, "the warm secondary kept {kept} layers");
    assert_eq!(needed, 0, "the attach downloaded {needed} layers the secondary had");
    assert_eq!(layers, kept);
    // Without the machine (cold), the same reads download what they need.
    let (kept, needed, _) = secondary_then_attach(false);
    assert_eq!(kept, 0);
    assert!(needed >= 2, "a cold secondary's attach downloaded {needed} layers");
}

#[test]
fn a_location_config_waits_for_a_warm_secondarys_downloads() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    location(&mut h, RequestedMode::Detached, None).unwrap();
    h.hold = Some(Box::new(|io| matches!(io, Io::RemoteGetFile { .. })));
    location(&mut h, RequestedMode::Secondary { warm: true }, None).unwrap();
    assert!(!h.held_io.is_empty(), "no download went out");
    assert!(h.held_io.len() <= h.node.config.secondary.download_concurrency);
    // Detaching now would let a download re-create the directory it renamed.
    let r = location(&mut h, RequestedMode::Detached, None);
    assert!(matches!(r, Err(ApiError::Unavailable { .. })), "{r:?}");
    // Once the downloads in flight landed, nothing new starts and the retry runs.
    h.hold = None;
    for (op, io) in std::mem::take(&mut h.held_io) {
        let result = h.world.execute(io);
        h.node.handle_io(h.now, WallTime(h.now.0), op, result);
        h.settle();
    }
    let r = location(&mut h, RequestedMode::Detached, None);
    assert!(matches!(r, Ok(Response::LocationConfigured(LocationOutcome::Changed(_)))), "{r:?}");
    assert!(!h.world.files.keys().any(|p| p.as_str().starts_with(&format!("tenants/{T}"))));
}

#[test]
fn a_warm_secondary_survives_a_restart_and_keeps_what_it_downloaded() {
    let mut h = Harness::start(World::default(), config());
    tenant_with_data(&mut h);
    location(&mut h, RequestedMode::Detached, None).unwrap();
    location(&mut h, RequestedMode::Secondary { warm: true }, None).unwrap();
    let kept = local_layers(&h);
    assert!(!kept.is_empty());
    h.call(Request::Shutdown).unwrap();
    let mut world = h.world.clone();
    // A crash during a download left its temporary file.
    let temp = format!("{}.17.___temp", kept[0]);
    world.files.insert(temp.clone().into(), vec![1, 2, 3]);
    let h = Harness::start(world, config());
    assert_eq!(h.node.warm_secondaries(), 1);
    assert_eq!(h.node.secondary_stats().downloaded_layers, 0, "downloaded again after a restart");
    assert_eq!(local_layers(&h), kept);
    assert!(!h.world.files.contains_key(camino::Utf8Path::new(&temp)), "the temporary file stayed");
}
