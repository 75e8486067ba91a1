//! The simulated twins pass the adapters' conformance suites, and keep the fault
//! model of `../shared/invariants.md`: the crash rule of the disk, and the
//! misbehaviours of the object store.
#![cfg(madsim)]

use camino::Utf8Path;
use madsim::runtime::Handle;
use std::time::Duration;
use strata_adapters::conformance::{self, RemoteSuiteConfig, pattern};
use strata_adapters::disk::{Disk, DiskErrorKind};
use strata_adapters::remote::{RemoteErrorKind, RemoteStorage};
use strata_core::remote_path::RemoteKey;
use strata_runtime_sim::faults::{Faults, site};
use strata_runtime_sim::sim_disk::{SECTOR_BYTES, SimDisk, SimDiskConfig};
use strata_runtime_sim::sim_remote::{HistoryOp, SimRemote, SimRemoteConfig};

fn key(s: &str) -> RemoteKey {
    RemoteKey::from_listing(s).unwrap()
}

// ---------------------------------------------------------------- suites

#[madsim::test]
async fn sim_disk_passes_the_disk_suite() {
    let disk = SimDisk::new();
    conformance::disk_suite(&disk).await;
    assert_eq!(disk.crashes(), 0);
}

#[madsim::test]
async fn sim_disk_passes_the_disk_suite_after_a_crash() {
    let disk = SimDisk::new();
    conformance::disk_suite_at(&disk, Utf8Path::new("before")).await;
    disk.crash();
    // Everything the suite left is durable: each operation fsynced what it changed.
    let before = disk.files_now();
    assert!(!before.is_empty());
    conformance::disk_suite_at(&disk, Utf8Path::new("after")).await;
}

#[madsim::test]
async fn sim_remote_passes_the_remote_suite() {
    let remote = SimRemote::new();
    // Just above one delete batch: cheap in the simulator, still two batches.
    let config = RemoteSuiteConfig { many_keys: 1001, ..RemoteSuiteConfig::default() };
    conformance::remote_suite_with(&remote, &config).await;
    assert!(remote.history().len() > 2000, "every put and delete is in the history");
}

/// The streaming transfers of the simulated store with the simulated disk as its
/// local side: the same cases as LocalFs and S3.
#[madsim::test]
async fn sim_remote_passes_the_transfer_suite() {
    let disk = SimDisk::new();
    let remote = SimRemote::new().with_local_disk(disk.clone());
    conformance::transfer_suite(&remote, &disk, "transfer/", Utf8Path::new("transfer")).await;
}

/// `remote.get_to_file.corrupt` flips a byte of what the check is handed (the
/// stored object stays intact): a check of the bytes refuses it and nothing is
/// written; the next download is whole.
#[madsim::test]
async fn a_corrupted_download_is_refused_by_the_check() {
    use std::sync::{Arc, Mutex};
    use strata_adapters::remote::{DownloadCheck, TransferError};
    /// Refuses anything but `want` (as a size/CRC check would).
    #[derive(Clone)]
    struct Exactly(Arc<Mutex<Vec<u8>>>, Vec<u8>);
    impl DownloadCheck for Exactly {
        fn update(&mut self, chunk: &[u8]) {
            self.0.lock().unwrap().extend_from_slice(chunk);
        }
        fn finish(&self) -> Result<(), String> {
            if *self.0.lock().unwrap() == self.1 { Ok(()) } else { Err("not the object".into()) }
        }
    }
    let faults = Faults::new();
    let disk = SimDisk::new();
    let remote = SimRemote::with_faults(faults.clone(), SimRemoteConfig::default())
        .with_local_disk(disk.clone());
    let body = pattern(9, 5000);
    let k = key("tenants/t/layer");
    remote.put(&k, body.clone()).await.unwrap();
    let check = || Exactly(Arc::new(Mutex::new(Vec::new())), body.clone());
    let path = Utf8Path::new("tenants/t/layer");
    faults.set(site::REMOTE_GET_TO_FILE_CORRUPT, 1.0);
    let r = remote.get_to_file(&k, path, check()).await;
    assert!(matches!(r, Err(TransferError::Corrupt { .. })), "{r:?}");
    assert_eq!(disk.read(path).await.unwrap_err().kind, DiskErrorKind::NotFound);
    assert_eq!(faults.fired()[site::REMOTE_GET_TO_FILE_CORRUPT], 1);
    assert_eq!(remote.get_now(&k).unwrap(), body, "the stored object is intact");
    faults.set(site::REMOTE_GET_TO_FILE_CORRUPT, 0.0);
    remote.get_to_file(&k, path, check()).await.unwrap();
    assert_eq!(disk.read(path).await.unwrap(), body);
}

/// The crash argument of a download (`strata_adapters::remote`): kills the node
/// at many points of a `get_to_file` over a missing target, applies the disk's
/// crash rule, and checks the layer's name holds nothing or the whole object,
/// never a prefix; a refused download (the corrupt site on) leaves nothing at any
/// point. Both "nothing" and "whole" must occur.
#[madsim::test]
async fn a_crash_during_get_to_file_leaves_no_layer_or_the_whole_one() {
    use strata_adapters::remote::NoCheck;
    let handle = Handle::current();
    let path = Utf8Path::new("tenants/t/timelines/l/layer");
    let k = key("tenants/t/timelines/l/layer-00000001");
    let body = pattern(3, 3 * 4096 + 100);
    let full = {
        let disk = SimDisk::new();
        let remote = SimRemote::new().with_local_disk(disk.clone());
        remote.put(&k, body.clone()).await.unwrap();
        let start = tokio::time::Instant::now();
        remote.get_to_file(&k, path, NoCheck).await.unwrap();
        start.elapsed()
    };
    let (mut absent, mut whole) = (0, 0);
    for corrupt in [false, true] {
        for step in 0..60u32 {
            let faults = Faults::new();
            let disk = SimDisk::new();
            let remote = SimRemote::with_faults(faults.clone(), SimRemoteConfig::default())
                .with_local_disk(disk.clone());
            remote.put(&k, body.clone()).await.unwrap();
            if corrupt {
                faults.set(site::REMOTE_GET_TO_FILE_CORRUPT, 1.0);
            }
            let node = handle.create_node().name(format!("downloader-{corrupt}-{step}")).build();
            let (r, kk, want) = (remote.clone(), k.clone(), body.clone());
            // The check a layer download gets: exact size and content.
            node.spawn(async move {
                r.get_to_file(&kk, path, conformance::RecordingCheck::expecting(want)).await
            });
            tokio::time::sleep(full * step / 30).await;
            handle.kill(node.id());
            disk.crash();
            match disk.read(path).await {
                Ok(bytes) => {
                    assert!(!corrupt, "a refused download left {} bytes", bytes.len());
                    assert!(
                        bytes == body,
                        "a partial layer: {} of {} bytes",
                        bytes.len(),
                        body.len()
                    );
                    whole += 1;
                }
                Err(e) => {
                    assert_eq!(e.kind, DiskErrorKind::NotFound, "{e}");
                    absent += 1;
                }
            }
            let listed = disk.list_dir(Utf8Path::new("tenants/t/timelines/l")).await;
            let names: Vec<String> =
                listed.map(|l| l.into_iter().map(|e| e.name).collect()).unwrap_or_default();
            assert!(names.is_empty() || names == ["layer"], "{names:?}");
        }
    }
    eprintln!("crash during get_to_file: {absent} without the layer, {whole} with all of it");
    assert!(absent > 0 && whole > 0, "absent {absent}, whole {whole}");
}

// ---------------------------------------------------------------- disk crash rule

/// Kills a node in the middle of `write_atomic(v2)` over v1 at many points in
/// time, applies the crash rule, and checks the file is v1 or v2, whole. Both
/// outcomes must occur, and so must "renamed in the page cache, lost in the
/// crash" (the directory fsync had not happened).
#[madsim::test]
async fn a_crash_during_write_atomic_leaves_old_or_new() {
    let handle = Handle::current();
    let path = Utf8Path::new("tenants/t/config-v1");
    let (v1, v2) = (pattern(1, 3000), pattern(2, 5000));
    let (mut old, mut new, mut rename_lost) = (0, 0, 0);
    let full = {
        let disk = SimDisk::new();
        disk.write_atomic(path, v1.clone()).await.unwrap();
        let start = tokio::time::Instant::now();
        disk.write_atomic(path, v2.clone()).await.unwrap();
        start.elapsed()
    };
    eprintln!("one write_atomic: {full:?}");
    for step in 0..60u32 {
        let disk = SimDisk::new();
        disk.write_atomic(path, v1.clone()).await.unwrap();
        let node = handle.create_node().name(format!("writer-{step}")).build();
        let d = disk.clone();
        let v = v2.clone();
        node.spawn(async move { d.write_atomic(path, v).await });
        // From the start to twice the undisturbed duration (latencies vary).
        tokio::time::sleep(full * step / 30).await;
        let seen_before_crash = disk.read_now(path).unwrap();
        handle.kill(node.id());
        disk.crash();
        let after = disk.read(path).await.unwrap();
        assert!(after == v1 || after == v2, "torn config: {} bytes", after.len());
        if after == v1 {
            old += 1;
            if seen_before_crash == v2 {
                rename_lost += 1;
            }
        } else {
            new += 1;
        }
        let listed = disk.list_dir(Utf8Path::new("tenants/t")).await.unwrap();
        assert_eq!(listed.len(), 1, "no temp file listed: {listed:?}");
    }
    eprintln!("outcomes: old {old}, new {new}, rename lost {rename_lost}");
    assert!(old > 0 && new > 0, "the sweep crosses the commit point");
    assert!(rename_lost > 0, "a rename without directory fsync is lost by a crash");
}

#[madsim::test]
async fn durable_operations_survive_a_crash() {
    let disk = SimDisk::new();
    disk.write_atomic(Utf8Path::new("a/f"), b"f".to_vec()).await.unwrap();
    disk.write_atomic(Utf8Path::new("a/g"), b"g".to_vec()).await.unwrap();
    disk.create_dir_all(Utf8Path::new("b/c")).await.unwrap();
    disk.rename(Utf8Path::new("a/f"), Utf8Path::new("b/c/f")).await.unwrap();
    disk.remove_file(Utf8Path::new("a/g")).await.unwrap();
    disk.crash();
    assert_eq!(disk.read(Utf8Path::new("b/c/f")).await.unwrap(), b"f");
    assert_eq!(disk.read(Utf8Path::new("a/g")).await.unwrap_err().kind, DiskErrorKind::NotFound);
    assert_eq!(disk.list_dir(Utf8Path::new("a")).await.unwrap(), vec![]);
    assert_eq!(disk.crashes(), 1);
}

#[madsim::test]
async fn an_operation_running_across_a_crash_fails() {
    let disk = SimDisk::new();
    let d = disk.clone();
    let task =
        tokio::spawn(
            async move { d.write_atomic(Utf8Path::new("x/y/z/file"), vec![7; 10_000]).await },
        );
    tokio::time::sleep(Duration::from_micros(150)).await;
    disk.crash();
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.kind, DiskErrorKind::Io, "{err}");
    assert!(disk.read_now(Utf8Path::new("x/y/z/file")).is_none());
}

/// Concurrent writers in one directory: one writer's directory fsync can make the
/// other's temp file durable before its data is; a crash then leaves a torn temp
/// file (never listed), while targets stay whole.
#[madsim::test]
async fn torn_writes_only_ever_hit_temp_files() {
    let handle = Handle::current();
    let (mut torn, mut runs) = (0, 0);
    for step_us in 0..80u64 {
        let disk = SimDisk::new();
        disk.faults().set(site::DISK_TORN_WRITE, 1.0);
        let node = handle.create_node().name(format!("writers-{step_us}")).build();
        for (i, len) in [(0u8, 5000usize), (1, 700), (2, 4100)] {
            let d = disk.clone();
            node.spawn(async move {
                d.write_atomic(&Utf8Path::new("dir").join(format!("f{i}")), pattern(i, len)).await
            });
        }
        // Disk steps take about a millisecond of virtual time each.
        tokio::time::sleep(Duration::from_micros(step_us * 150)).await;
        handle.kill(node.id());
        disk.crash();
        runs += 1;
        for (path, size) in disk.files_now() {
            let name = path.file_name().unwrap();
            // `f{i}` or its temp file `f{i}.{n}.___temp`.
            let i: u8 = name[1..2].parse().unwrap();
            let want = pattern(i, [5000, 700, 4100][i as usize]);
            if strata_adapters::disk::is_temp_file_name(name) {
                // A temp file is torn at a sector boundary, or whole: fsynced, and
                // made durable by another writer's fsync of the same directory,
                // before the crash came between its fsync and its rename.
                if disk.read_now(&path).unwrap() != want {
                    assert_eq!(
                        size as usize % SECTOR_BYTES,
                        0,
                        "{path}: torn at a sector boundary"
                    );
                    if size > 0 {
                        torn += 1;
                    }
                }
            } else {
                assert_eq!(disk.read_now(&path).unwrap(), want, "{path} is whole");
            }
        }
    }
    eprintln!("torn temp files with data: {torn} in {runs} crashes");
}

#[madsim::test]
async fn a_failed_fsync_fails_the_write_and_keeps_the_old_file() {
    let faults = Faults::new();
    let disk = SimDisk::with_faults(faults.clone(), SimDiskConfig::default());
    let path = Utf8Path::new("t/index");
    disk.write_atomic(path, b"old".to_vec()).await.unwrap();
    faults.set(site::DISK_FSYNC_FAIL, 1.0);
    let err = disk.write_atomic(path, b"new".to_vec()).await.unwrap_err();
    assert_eq!(err.kind, DiskErrorKind::FsyncFailed);
    assert_eq!(disk.read(path).await.unwrap(), b"old");
    faults.heal();
    disk.crash();
    assert_eq!(disk.read(path).await.unwrap(), b"old");
    let names: Vec<String> =
        disk.list_dir(Utf8Path::new("t")).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["index"]);
    assert_eq!(faults.fired()[site::DISK_FSYNC_FAIL], 1);
    assert_eq!(faults.fired()[site::DISK_ENOSPC], 0, "sites that never fired are reported");
}

#[madsim::test]
async fn enospc_is_no_space_and_writes_nothing() {
    let disk = SimDisk::new();
    disk.create_dir_all(Utf8Path::new("t")).await.unwrap();
    disk.faults().set(site::DISK_ENOSPC, 1.0);
    let err = disk.write_atomic(Utf8Path::new("t/f"), vec![1; 100]).await.unwrap_err();
    assert_eq!(err.kind, DiskErrorKind::NoSpace);
    let err = disk.create_dir_all(Utf8Path::new("t/sub")).await.unwrap_err();
    assert_eq!(err.kind, DiskErrorKind::NoSpace);
    assert_eq!(disk.list_dir(Utf8Path::new("t")).await.unwrap(), vec![]);
    assert!(disk.files_now().is_empty());
}

#[madsim::test]
async fn slow_io_takes_longer() {
    let disk = SimDisk::new();
    let start = tokio::time::Instant::now();
    disk.write_atomic(Utf8Path::new("f"), vec![1]).await.unwrap();
    let fast = start.elapsed();
    disk.faults().set(site::DISK_SLOW_IO, 1.0);
    let start = tokio::time::Instant::now();
    disk.write_atomic(Utf8Path::new("f"), vec![2]).await.unwrap();
    let slow = start.elapsed();
    assert!(fast < Duration::from_millis(5), "{fast:?}");
    assert!(slow >= Duration::from_millis(50 * 4), "{slow:?}");
}

// ---------------------------------------------------------------- object store faults

#[madsim::test]
async fn a_lost_response_is_applied_but_reported_transient() {
    let remote = SimRemote::new();
    remote.faults().set(site::REMOTE_PUT_LOST_RESPONSE, 1.0);
    let k = key("t/layer-1");
    let err = remote.put(&k, b"L".to_vec()).await.unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::Transient);
    assert_eq!(remote.get_now(&k).unwrap(), b"L");
    let h = remote.history();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].op, HistoryOp::Put { size_bytes: 1 });
    assert!(!h[0].late);
}

#[madsim::test]
async fn a_transient_error_applies_nothing() {
    let remote = SimRemote::new();
    for s in [site::REMOTE_PUT_TRANSIENT, site::REMOTE_GET_TRANSIENT, site::REMOTE_LIST_TRANSIENT] {
        remote.faults().set(s, 1.0);
    }
    let k = key("t/a");
    assert_eq!(remote.put(&k, b"a".to_vec()).await.unwrap_err().kind, RemoteErrorKind::Transient);
    assert_eq!(remote.get(&k).await.unwrap_err().kind, RemoteErrorKind::Transient);
    assert_eq!(remote.list("t/").await.unwrap_err().kind, RemoteErrorKind::Transient);
    assert!(remote.objects().is_empty());
    assert!(remote.history().is_empty());
    remote.faults().heal();
    remote.put(&k, b"a".to_vec()).await.unwrap();
    assert_eq!(remote.get(&k).await.unwrap(), b"a");
    let fired = remote.faults().fired();
    assert_eq!(fired[site::REMOTE_PUT_TRANSIENT], 1);
    assert_eq!(fired[site::REMOTE_GET_TRANSIENT], 1);
    assert_eq!(fired[site::REMOTE_LIST_TRANSIENT], 1);
    assert_eq!(fired[site::REMOTE_PUT_DELAYED], 0);
}

/// An access-denied episode refuses every write for a while, applies nothing,
/// lets reads through, and ends by itself (an operator fixed it).
#[madsim::test]
async fn an_access_denied_episode_refuses_writes_for_a_while_then_ends() {
    use strata_adapters::remote::FixableKind;
    let remote = SimRemote::new();
    let (a, b) = (key("t/a"), key("t/b"));
    remote.put(&a, b"a".to_vec()).await.unwrap();
    remote.faults().set(site::REMOTE_ACCESS_DENIED, 1.0);
    let denied = RemoteErrorKind::OperatorFixable(FixableKind::AccessDenied);
    assert_eq!(remote.put(&b, b"b".to_vec()).await.unwrap_err().kind, denied);
    // The episode goes on without the site firing again.
    remote.faults().set(site::REMOTE_ACCESS_DENIED, 0.0);
    assert_eq!(remote.delete_objects(std::slice::from_ref(&a)).await.unwrap_err().kind, denied);
    assert_eq!(remote.get(&a).await.unwrap(), b"a", "reads still work");
    assert_eq!(remote.list("t/").await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_secs(11)).await;
    remote.put(&b, b"b".to_vec()).await.unwrap();
    assert_eq!(remote.list("t/").await.unwrap().len(), 2);
    assert_eq!(remote.faults().fired()[site::REMOTE_ACCESS_DENIED], 1);
    // Healing ends an episode at once.
    remote.faults().set(site::REMOTE_ACCESS_DENIED, 1.0);
    assert_eq!(remote.put(&b, b"c".to_vec()).await.unwrap_err().kind, denied);
    remote.faults().heal();
    remote.put(&b, b"c".to_vec()).await.unwrap();
}

/// A put the caller gave up on lands after a newer put of the same key: the old
/// body wins. This is the hazard the upload queue's keys (generation and sequence
/// suffixes) exist for.
#[madsim::test]
async fn a_delayed_put_lands_after_a_newer_one() {
    let remote = SimRemote::new();
    let k = key("t/index_part.json");
    remote.faults().set(site::REMOTE_PUT_DELAYED, 1.0);
    assert_eq!(remote.put(&k, b"v1".to_vec()).await.unwrap_err().kind, RemoteErrorKind::Transient);
    assert_eq!(remote.pending_count(), 1);
    assert!(remote.get_now(&k).is_none(), "not applied yet");
    remote.faults().heal();
    remote.put(&k, b"v2".to_vec()).await.unwrap();
    assert_eq!(remote.get(&k).await.unwrap(), b"v2");
    let due = remote.last_pending_due().unwrap();
    tokio::time::sleep_until(due + Duration::from_millis(1)).await;
    assert_eq!(remote.get(&k).await.unwrap(), b"v1", "the late put overwrote the newer one");
    let h = remote.history();
    assert_eq!(h.len(), 2);
    assert!(!h[0].late && h[1].late);
    assert!(h[0].at <= h[1].at);
    assert_eq!(remote.pending_count(), 0);
}

#[madsim::test]
async fn a_delayed_delete_lands_after_a_reupload() {
    let remote = SimRemote::new();
    let k = key("t/layer");
    remote.put(&k, b"first".to_vec()).await.unwrap();
    remote.faults().set(site::REMOTE_DELETE_DELAYED, 1.0);
    let err = remote.delete_objects(std::slice::from_ref(&k)).await.unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::Transient);
    remote.faults().heal();
    remote.put(&k, b"again".to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(remote.get_now(&k).is_none(), "the late delete removed the re-upload");
    let ops: Vec<HistoryOp> = remote.history().into_iter().map(|h| h.op).collect();
    assert_eq!(
        ops,
        [
            HistoryOp::Put { size_bytes: 5 },
            HistoryOp::Put { size_bytes: 5 },
            HistoryOp::Delete { existed: true }
        ]
    );
}

#[madsim::test]
async fn lagging_listings_show_the_past() {
    let config = SimRemoteConfig { list_lag_ms: 2_000, ..SimRemoteConfig::default() };
    let remote = SimRemote::with_faults(Faults::new(), config);
    let k = key("t/a");
    remote.put(&k, b"a".to_vec()).await.unwrap();
    assert_eq!(remote.get(&k).await.unwrap(), b"a", "reads are read-after-write");
    assert_eq!(remote.list("t/").await.unwrap(), vec![], "the listing lags");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(remote.list("t/").await.unwrap().len(), 1);
}

#[madsim::test]
async fn a_node_killed_mid_request_may_or_may_not_have_written() {
    let handle = Handle::current();
    let (mut applied, mut not_applied) = (0, 0);
    for step_ms in 0..40u64 {
        let remote = SimRemote::new();
        let k = key(&format!("t/{step_ms}"));
        let node = handle.create_node().name(format!("client-{step_ms}")).build();
        let (r, k2) = (remote.clone(), k.clone());
        node.spawn(async move { r.put(&k2, b"x".to_vec()).await });
        tokio::time::sleep(Duration::from_micros(step_ms * 700)).await;
        handle.kill(node.id());
        if remote.get_now(&k).is_some() { applied += 1 } else { not_applied += 1 }
    }
    assert!(applied > 0 && not_applied > 0, "applied {applied}, not applied {not_applied}");
}

#[madsim::test]
async fn fired_lists_every_site_and_heal_stops_them() {
    let remote = SimRemote::new();
    remote.faults().set(site::REMOTE_GET_TRANSIENT, 0.5);
    let k = key("k");
    remote.put(&k, vec![]).await.unwrap();
    for _ in 0..200 {
        let _ = remote.get(&k).await;
    }
    let fired = remote.faults().fired();
    assert_eq!(fired.len(), site::ALL.len());
    let n = fired[site::REMOTE_GET_TRANSIENT];
    assert!((50..150).contains(&n), "about half of 200: {n}");
    remote.faults().heal();
    for _ in 0..50 {
        remote.get(&k).await.unwrap();
    }
    assert_eq!(remote.faults().fired()[site::REMOTE_GET_TRANSIENT], n);
}

#[madsim::test]
async fn a_disk_full_episode_refuses_every_creation_until_it_ends() {
    let disk = SimDisk::new();
    disk.create_dir_all(Utf8Path::new("t")).await.unwrap();
    disk.faults().set(site::DISK_FULL, 1.0);
    let err = disk.write_atomic(Utf8Path::new("t/f"), vec![1; 100]).await.unwrap_err();
    assert_eq!(err.kind, DiskErrorKind::NoSpace);
    disk.faults().set(site::DISK_FULL, 0.0);
    let err = disk.write_atomic(Utf8Path::new("t/g"), vec![1; 100]).await.unwrap_err();
    assert_eq!(err.kind, DiskErrorKind::NoSpace, "the episode goes on");
    assert_eq!(disk.faults().fired()[site::DISK_FULL], 1, "counted once per episode");
    tokio::time::sleep(Duration::from_secs(11)).await;
    disk.write_atomic(Utf8Path::new("t/g"), vec![1; 100]).await.unwrap();
    assert_eq!(disk.read(Utf8Path::new("t/g")).await.unwrap(), vec![1; 100]);
}

/// FSYNC-TRUST (`checkers::fsync_trust`): reading a path whose last write failed
/// its fsync is recorded; a successful rewrite (or a crash) makes it known again.
#[madsim::test]
async fn reading_back_a_file_whose_fsync_failed_is_recorded() {
    let disk = SimDisk::new();
    let path = Utf8Path::new("t/layer");
    disk.faults().set(site::DISK_FSYNC_FAIL, 1.0);
    let err = disk.write_atomic(path, b"new".to_vec()).await.unwrap_err();
    assert_eq!(err.kind, DiskErrorKind::FsyncFailed);
    disk.faults().set(site::DISK_FSYNC_FAIL, 0.0);
    assert!(disk.untrusted_reads().is_empty());
    let _ = disk.read(path).await;
    assert_eq!(disk.untrusted_reads().len(), 1, "{:?}", disk.untrusted_reads());
    disk.write_atomic(path, b"new".to_vec()).await.unwrap();
    assert_eq!(disk.read(path).await.unwrap(), b"new");
    assert_eq!(disk.untrusted_reads().len(), 1, "a rewritten file is trusted again");
}
