use crate::tempdir;
use camino::Utf8Path;
use std::time::Instant;
use strata_adapters::conformance::{self, RemoteSuiteConfig};
use strata_adapters::local_disk::LocalDisk;
use strata_adapters::local_fs::{LocalFs, ReadOnlyDir};
use strata_adapters::remote::{RemoteErrorKind, RemoteStorage};
use strata_core::remote_path::RemoteKey;

fn key(s: &str) -> RemoteKey {
    RemoteKey::from_listing(s).unwrap()
}

#[tokio::test]
async fn local_fs_passes_the_remote_suite() {
    let (_guard, root) = tempdir();
    let remote = LocalFs::new(root.join("bucket"));
    let started = Instant::now();
    conformance::remote_suite(&remote).await;
    eprintln!("remote_suite (1100 keys) on LocalFs: {:?}", started.elapsed());
}

/// The streaming transfers (`put_file`, `get_to_file`) of LocalFs with the real
/// disk as its local side: exact bytes over several chunks, the check's chunks
/// bounded, a refused download leaving nothing under the target's name.
#[tokio::test]
async fn local_fs_passes_the_transfer_suite() {
    let (_guard, root) = tempdir();
    let disk = LocalDisk::new(root.join("data"));
    let remote = LocalFs::new(root.join("bucket")).with_local_disk(disk.clone());
    conformance::transfer_suite(&remote, &disk, "transfer/", Utf8Path::new("transfer")).await;
    // No temp file stays behind on either side (listings hide them: look at the
    // directories themselves).
    for dir in [root.join("data/transfer/get"), root.join("data/transfer/refused")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(!name.ends_with(".___temp"), "{dir}: {name} left behind");
        }
    }
}

/// Without a local disk a transfer is refused (`BadPath`), not guessed.
#[tokio::test]
async fn a_transfer_without_a_local_disk_is_refused() {
    use strata_adapters::disk::DiskErrorKind;
    use strata_adapters::remote::{NoCheck, TransferError};
    let (_guard, root) = tempdir();
    let remote = LocalFs::new(root.clone());
    remote.put(&key("k"), b"x".to_vec()).await.unwrap();
    let p = Utf8Path::new("f");
    for r in [
        remote.put_file(&key("k"), p, NoCheck).await,
        remote.get_to_file(&key("k"), p, NoCheck).await,
    ] {
        assert!(
            matches!(r, Err(TransferError::Local(ref e)) if e.kind == DiskErrorKind::BadPath),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn suite_runs_below_any_base_prefix() {
    let (_guard, root) = tempdir();
    let remote = LocalFs::new(root.clone());
    let config = RemoteSuiteConfig { base: "some/prefix/".into(), many_keys: 20 };
    conformance::remote_suite_with(&remote, &config).await;
}

#[tokio::test]
async fn a_missing_root_is_an_empty_store() {
    let (_guard, root) = tempdir();
    let remote = LocalFs::new(root.join("missing"));
    assert_eq!(remote.list("").await.unwrap(), vec![]);
    assert_eq!(remote.get(&key("a/b")).await.unwrap_err().kind, RemoteErrorKind::NotFound);
    remote.delete_objects(&[key("a/b")]).await.unwrap();
}

#[tokio::test]
async fn keys_a_directory_cannot_hold_are_refused() {
    let (_guard, root) = tempdir();
    let remote = LocalFs::new(root.clone());
    for bad in ["a//b", "a/", "x.___temp"] {
        let err = remote.put(&key(bad), b"x".to_vec()).await.unwrap_err();
        assert_eq!(err.kind, RemoteErrorKind::Permanent, "{bad}: {err}");
        assert_eq!(remote.get(&key(bad)).await.unwrap_err().kind, RemoteErrorKind::NotFound);
    }
    remote.put(&key("a/b"), b"file".to_vec()).await.unwrap();
    let err = remote.put(&key("a/b/c"), b"x".to_vec()).await.unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::Permanent, "{err}");
    let err = remote.put(&key("a"), b"x".to_vec()).await.unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::Permanent, "{err}");
    assert_eq!(remote.list("").await.unwrap().len(), 1);
}

#[tokio::test]
async fn temp_files_are_never_listed() {
    let (_guard, root) = tempdir();
    let remote = LocalFs::new(root.clone());
    remote.put(&key("t/layer"), b"layer".to_vec()).await.unwrap();
    std::fs::write(root.join("t/layer.1-7.___temp"), b"la").unwrap();
    std::fs::write(root.join("t/other.___temp"), b"o").unwrap();
    let listed = remote.list("t/").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].key, key("t/layer"));
}

/// Issue 15 item 6: a directory made read-only is something an operator fixes, not
/// a request that can never succeed: `OperatorFixable(AccessDenied)` (it used to
/// be `Permanent`, which broke the timeline for good), and the same PUT succeeds
/// once the directory is writable again.
#[tokio::test]
async fn a_read_only_directory_is_access_denied_until_it_is_writable_again() {
    use strata_adapters::remote::FixableKind;
    let (_guard, root) = tempdir();
    let remote = LocalFs::new(root.clone());
    remote.put(&key("tenants/t/first"), b"1".to_vec()).await.unwrap();
    let Some(read_only) = ReadOnlyDir::new(&root.join("tenants/t")) else {
        eprintln!("cannot make a directory read-only here (no chattr as root): skipped");
        return;
    };
    let err = remote.put(&key("tenants/t/second"), b"2".to_vec()).await.unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::OperatorFixable(FixableKind::AccessDenied), "{err}");
    assert_eq!((err.op, err.key.as_str()), ("put", "tenants/t/second"));
    let err = remote.delete_objects(&[key("tenants/t/first")]).await.unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::OperatorFixable(FixableKind::AccessDenied), "{err}");
    // Reads still work.
    assert_eq!(remote.get(&key("tenants/t/first")).await.unwrap(), b"1");
    assert_eq!(remote.list("tenants/").await.unwrap().len(), 1);
    drop(read_only);
    remote.put(&key("tenants/t/second"), b"2".to_vec()).await.unwrap();
    assert_eq!(remote.list("tenants/").await.unwrap().len(), 2);
}
