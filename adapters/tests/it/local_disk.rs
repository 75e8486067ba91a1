use crate::tempdir;
use camino::Utf8Path;
use std::time::Instant;
use strata_adapters::conformance;
use strata_adapters::disk::{Disk, DiskErrorKind, TEMP_FILE_SUFFIX};
use strata_adapters::local_disk::LocalDisk;

#[tokio::test]
async fn local_disk_passes_the_disk_suite() {
    let (_guard, root) = tempdir();
    let disk = LocalDisk::new(root.join("data"));
    let started = Instant::now();
    conformance::disk_suite(&disk).await;
    eprintln!("disk_suite on LocalDisk: {:?}", started.elapsed());
}

#[tokio::test]
async fn root_is_created_by_the_first_write() {
    let (_guard, root) = tempdir();
    let disk = LocalDisk::new(root.join("not/yet/there"));
    let path = Utf8Path::new("tenants/t/config-v1");
    let err = disk.list_dir(Utf8Path::new("tenants")).await.unwrap_err();
    assert_eq!(err.kind, DiskErrorKind::NotFound);
    disk.write_atomic(path, b"cfg".to_vec()).await.unwrap();
    assert_eq!(std::fs::read(root.join("not/yet/there").join(path)).unwrap(), b"cfg");
}

#[tokio::test]
async fn leftover_temp_files_are_not_listed_and_go_with_their_tree() {
    let (_guard, root) = tempdir();
    let disk = LocalDisk::new(root.clone());
    disk.write_atomic(Utf8Path::new("t/config"), b"new".to_vec()).await.unwrap();
    // What a crash between the temp write and the rename leaves behind.
    std::fs::write(root.join(format!("t/config.1-1{TEMP_FILE_SUFFIX}")), b"ne").unwrap();
    let names: Vec<String> =
        disk.list_dir(Utf8Path::new("t")).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["config"]);
    assert_eq!(disk.read(Utf8Path::new("t/config")).await.unwrap(), b"new");
    disk.remove_dir_all(Utf8Path::new("t")).await.unwrap();
    assert!(!root.join("t").exists());
}

#[tokio::test]
async fn errors_name_the_relative_path() {
    let (_guard, root) = tempdir();
    let disk = LocalDisk::new(root.clone());
    let err = disk.read(Utf8Path::new("a/b")).await.unwrap_err();
    assert_eq!(err.path, "a/b");
    assert_eq!(err.op, "read");
    assert!(!err.to_string().contains(root.as_str()), "{err}");
}
