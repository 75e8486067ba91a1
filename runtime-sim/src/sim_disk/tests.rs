//! The simulated disk's own tests: its crash rule, faults and breaks.

use super::*;

/// A file whose entry is durable but whose data is not, as a concurrent
/// writer's directory fsync can leave a temp file.
fn unsynced_file(disk: &SimDisk, old: &[u8], new: &[u8]) {
    let mut s = disk.lock();
    let file = FileNode {
        data: Arc::new(new.to_vec()),
        synced: Arc::new(old.to_vec()),
        poisoned: false,
        born: 0,
    };
    let ino = s.alloc(Inode::File(file));
    s.dir_mut(ROOT).unwrap().entries.insert("f".into(), ino);
    s.fsync_dir(ROOT).unwrap();
    s.last_unsynced_write = Some(ino);
}

#[madsim::test]
async fn the_last_unsynced_write_tears_at_a_sector_boundary() {
    let (old, new) = (vec![b'o'; 3000], vec![b'n'; 2100]);
    let mut cuts = BTreeSet::new();
    for _ in 0..50 {
        let disk = SimDisk::new();
        disk.faults().set(site::DISK_TORN_WRITE, 1.0);
        unsynced_file(&disk, &old, &new);
        disk.crash();
        let got = disk.read_now(Utf8Path::new("f")).unwrap();
        let cut = got.iter().take_while(|b| **b == b'n').count();
        assert_eq!(cut % SECTOR_BYTES, 0, "cut at {cut}");
        assert!(cut < new.len(), "a torn write is not the whole write");
        assert_eq!(&got[cut..], &old[cut..], "the rest is the old data");
        cuts.insert(cut);
    }
    assert!(cuts.len() > 1, "the cut is seeded, not fixed: {cuts:?}");
    assert_eq!(SimDisk::new().faults().fired()[site::DISK_TORN_WRITE], 0);
}

#[madsim::test]
async fn unsynced_data_is_lost_when_the_tear_site_is_off() {
    let disk = SimDisk::new();
    unsynced_file(&disk, b"old", b"new data");
    assert_eq!(disk.read_now(Utf8Path::new("f")).unwrap(), b"new data");
    disk.crash();
    assert_eq!(disk.read_now(Utf8Path::new("f")).unwrap(), b"old");
}

#[madsim::test]
async fn an_unsynced_directory_entry_is_lost() {
    let disk = SimDisk::new();
    {
        let mut s = disk.lock();
        let x = Arc::new(b"x".to_vec());
        let file = FileNode { data: x.clone(), synced: x, poisoned: false, born: 0 };
        let ino = s.alloc(Inode::File(file));
        s.dir_mut(ROOT).unwrap().entries.insert("g".into(), ino);
    }
    assert!(disk.read_now(Utf8Path::new("g")).is_some());
    assert!(disk.read_durable(Utf8Path::new("g")).is_none());
    disk.crash();
    assert!(disk.read_now(Utf8Path::new("g")).is_none());
}

/// The read sites touch layer files only, one bit at a time, and leave the
/// file on disk intact.
#[madsim::test]
async fn read_faults_hit_layer_files_only() {
    let disk = SimDisk::new();
    let layer = Utf8Path::new(
        "tenants/t/timelines/tl/0000000000000000-0000000000000100__0000000000000100-0000000000000200",
    );
    assert!(is_layer_file(layer), "the test's path is a layer file");
    let config = Utf8Path::new("tenants/t/config-v1");
    let body = vec![0x5Au8; 100];
    disk.write_atomic(layer, body.clone()).await.unwrap();
    disk.write_atomic(config, body.clone()).await.unwrap();
    disk.faults().set(site::DISK_READ_BITFLIP, 1.0);
    let got = disk.read(layer).await.unwrap();
    let flipped: u32 = got.iter().zip(&body).map(|(a, b)| (a ^ b).count_ones()).sum();
    assert_eq!(flipped, 1, "one bit flipped");
    assert_eq!(disk.read_now(layer).unwrap(), body, "the file itself is intact");
    assert_eq!(disk.read(config).await.unwrap(), body, "other files are not faulted");
    assert_eq!(disk.read_unfaulted(layer).await.unwrap(), body, "nor an upload's read");
    disk.faults().set(site::DISK_READ_EIO, 1.0);
    assert_eq!(disk.read(layer).await.unwrap_err().kind, DiskErrorKind::Io);
    assert_eq!(disk.read(config).await.unwrap(), body);
}

/// `disk.read.meta_eio` fails the reads of the files without a checksum
/// (`config-v1`, a deletion list, the deletion header), and no other.
#[madsim::test]
async fn meta_eio_hits_unchecked_files_only() {
    let disk = SimDisk::new();
    let unchecked =
        ["tenants/t/config-v1", "deletion/header-01", "deletion/000000000000000a-01.list"];
    let others = ["tenants/t/timelines/tl/metadata", "deletion/notes", "config-v1.tmp"];
    for path in unchecked.iter().chain(&others) {
        disk.write_atomic(Utf8Path::new(path), b"x".to_vec()).await.unwrap();
    }
    disk.faults().set(site::DISK_READ_META_EIO, 1.0);
    for path in unchecked {
        let e = disk.read(Utf8Path::new(path)).await.unwrap_err();
        assert_eq!(e.kind, DiskErrorKind::Io, "{path}");
    }
    for path in others {
        assert_eq!(disk.read(Utf8Path::new(path)).await.unwrap(), b"x", "{path}");
    }
    assert_eq!(disk.faults().fired()[site::DISK_READ_META_EIO], 3);
}

/// `disk.complete.late`: the write is on disk (its effect) while its answer is
/// still held, so an operation issued after it completes first.
#[madsim::test]
async fn a_late_answer_follows_its_effect() {
    let config = SimDiskConfig { late_min_ms: 100, late_max_ms: 100, ..Default::default() };
    let disk = SimDisk::with_faults(Faults::new(), config);
    disk.faults().set(site::DISK_COMPLETE_LATE, 1.0);
    let (a, b) = (Utf8Path::new("a"), Utf8Path::new("b"));
    let answered = Arc::new(Mutex::new(Vec::new()));
    let (d, done) = (disk.clone(), answered.clone());
    let first = tokio::spawn(async move {
        d.write_atomic(Utf8Path::new("a"), b"x".to_vec()).await.unwrap();
        done.lock().unwrap().push("a");
    });
    while disk.read_durable(a).is_none() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(answered.lock().unwrap().is_empty(), "durable before its answer");
    // The hold began: the next request is answered on time.
    while disk.faults().fired()[site::DISK_COMPLETE_LATE] == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    disk.faults().set(site::DISK_COMPLETE_LATE, 0.0);
    disk.write_atomic(b, b"y".to_vec()).await.unwrap();
    answered.lock().unwrap().push("b");
    first.await.unwrap();
    assert_eq!(*answered.lock().unwrap(), ["b", "a"], "the later write answered first");
    assert_eq!(disk.faults().fired()[site::DISK_COMPLETE_LATE], 1);
}

/// Cluster seed 51: a directory created while its parent's fsync failed must
/// not stay behind for a later write to find: that write would be acknowledged
/// and lost with the directory at a crash.
#[madsim::test]
async fn a_write_acknowledged_after_a_failed_directory_fsync_survives_a_crash() {
    let disk = SimDisk::new();
    let path = Utf8Path::new("tenants/t/config-v1");
    disk.faults().set(site::DISK_FSYNC_FAIL, 1.0);
    assert!(disk.write_atomic(path, b"v1".to_vec()).await.is_err());
    disk.faults().set(site::DISK_FSYNC_FAIL, 0.0);
    disk.write_atomic(path, b"v1".to_vec()).await.expect("the retry succeeds");
    disk.crash();
    assert_eq!(disk.read_now(path).as_deref(), Some(&b"v1"[..]), "acknowledged, then lost");
}
