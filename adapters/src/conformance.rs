//! Conformance suites, generic over the adapter traits. The real adapters
//! (`tests/it/`) and their simulated twins (`strata-runtime-sim`'s
//! `tests/conformance.rs`) run the same cases, so a machine tested against the
//! twin sees the same rules as in production.
//!
//! Every case panics with a message on a broken rule. Cases work below a base
//! directory or prefix of their own, so they can share one adapter; the base must
//! be empty when a suite starts (the listing cases compare exact results).
//!
//! The cases check the rules written on the traits ([`crate::disk`],
//! [`crate::remote`]): atomic overwrite, `NotFound` kinds, sorted and complete
//! listings without temp files, batch deletes (missing keys fine, too many keys
//! refused), bad paths refused, and the streaming transfers (`put_file`,
//! `get_to_file`: exact bytes, chunks bounded by `TRANSFER_CHUNK_BYTES`, a
//! refused download leaves nothing under the target's name). What they cannot check is what a crash
//! leaves behind: the simulated disk's own tests do that.

use crate::disk::{DirEntry, Disk, DiskError, DiskErrorKind, is_temp_file_name};
use crate::remote::{
    DownloadCheck, ListedObject, MAX_KEYS_PER_DELETE, NoCheck, RemoteError, RemoteErrorKind,
    RemoteStorage, TRANSFER_CHUNK_BYTES, TransferError,
};
use camino::{Utf8Path, Utf8PathBuf};
use strata_core::remote_path::RemoteKey;

/// Deterministic test bytes: `len` bytes derived from `seed`.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32 * 7) as u8).collect()
}

fn disk_kind<T: std::fmt::Debug>(what: &str, r: Result<T, DiskError>) -> DiskErrorKind {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e.kind,
    }
}

fn remote_kind<T: std::fmt::Debug>(what: &str, r: Result<T, RemoteError>) -> RemoteErrorKind {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e.kind,
    }
}

// ---------------------------------------------------------------- disk

/// Every disk case, below `conformance/` (which must not exist yet).
pub async fn disk_suite<D: Disk>(d: &D) {
    disk_suite_at(d, Utf8Path::new("conformance")).await
}

/// Every disk case, each in its own directory below `base`.
pub async fn disk_suite_at<D: Disk>(d: &D, base: &Utf8Path) {
    disk_write_read_roundtrip(d, &base.join("roundtrip")).await;
    disk_atomic_overwrite(d, &base.join("overwrite")).await;
    disk_creates_parents(d, &base.join("parents")).await;
    disk_not_found(d, &base.join("not_found")).await;
    disk_bad_paths(d, &base.join("bad_paths")).await;
    disk_list_sorted(d, &base.join("list")).await;
    disk_create_dir_all(d, &base.join("mkdir")).await;
    disk_rename(d, &base.join("rename")).await;
    disk_remove(d, &base.join("remove")).await;
    disk_concurrent_writes(d, &base.join("concurrent")).await;
}

/// Files of several sizes (empty, one byte, across 512-byte and page boundaries,
/// over a MiB) read back exactly.
pub async fn disk_write_read_roundtrip<D: Disk>(d: &D, base: &Utf8Path) {
    for (i, len) in [0usize, 1, 511, 512, 4097, (1 << 20) + 3].into_iter().enumerate() {
        let path = base.join(format!("file-{i}"));
        let bytes = pattern(i as u8, len);
        d.write_atomic(&path, bytes.clone()).await.expect("write_atomic");
        assert_eq!(d.read(&path).await.expect("read"), bytes, "{path}: content of {len} bytes");
    }
}

/// An overwrite replaces the whole file (shorter and longer), and leaves no temp
/// file in the listing.
pub async fn disk_atomic_overwrite<D: Disk>(d: &D, base: &Utf8Path) {
    let path = base.join("config");
    for (seed, len) in [(1u8, 3000usize), (2, 10), (3, 5000), (4, 0)] {
        let bytes = pattern(seed, len);
        d.write_atomic(&path, bytes.clone()).await.expect("write_atomic");
        assert_eq!(d.read(&path).await.expect("read"), bytes, "after overwrite with {len} bytes");
        let listed = d.list_dir(base).await.expect("list_dir");
        assert_eq!(
            listed,
            vec![DirEntry { name: "config".into(), is_dir: false, size_bytes: len as u64 }],
            "exactly the target, with its new size, and no temp file"
        );
    }
}

/// `write_atomic` creates missing parents.
pub async fn disk_creates_parents<D: Disk>(d: &D, base: &Utf8Path) {
    let path = base.join("a/b/c/file");
    d.write_atomic(&path, b"x".to_vec()).await.expect("write_atomic into missing directories");
    let listed = d.list_dir(&base.join("a")).await.expect("list_dir a");
    assert_eq!(listed, vec![DirEntry { name: "b".into(), is_dir: true, size_bytes: 0 }]);
    assert_eq!(d.read(&path).await.expect("read"), b"x");
}

/// Missing files and directories are `NotFound` for every operation.
pub async fn disk_not_found<D: Disk>(d: &D, base: &Utf8Path) {
    d.create_dir_all(base).await.expect("create base");
    let missing = base.join("missing");
    let in_missing_dir = base.join("missing-dir/file");
    let nf = DiskErrorKind::NotFound;
    assert_eq!(disk_kind("read missing", d.read(&missing).await), nf);
    assert_eq!(disk_kind("read in missing dir", d.read(&in_missing_dir).await), nf);
    assert_eq!(disk_kind("remove_file missing", d.remove_file(&missing).await), nf);
    assert_eq!(disk_kind("list_dir missing", d.list_dir(&missing).await), nf);
    assert_eq!(disk_kind("remove_dir_all missing", d.remove_dir_all(&missing).await), nf);
    assert_eq!(disk_kind("rename missing", d.rename(&missing, &base.join("to")).await), nf);
    d.write_atomic(&base.join("f"), b"f".to_vec()).await.expect("write_atomic");
    assert_eq!(
        disk_kind("rename into missing dir", d.rename(&base.join("f"), &in_missing_dir).await),
        nf
    );
    assert_eq!(d.read(&base.join("f")).await.expect("source kept"), b"f");
}

/// Absolute paths, `..`, `.` and the empty path are `BadPath` for every operation,
/// and nothing is written.
pub async fn disk_bad_paths<D: Disk>(d: &D, base: &Utf8Path) {
    d.create_dir_all(base).await.expect("create base");
    let good = base.join("good");
    d.write_atomic(&good, b"good".to_vec()).await.expect("write_atomic");
    let bad: Vec<Utf8PathBuf> = vec![
        "/etc/strata-conformance".into(),
        "".into(),
        base.join(".."),
        base.join("../escape"),
        base.join("./x"),
        base.join("a/../../x"),
        "../../outside".into(),
    ];
    let bp = DiskErrorKind::BadPath;
    for p in &bad {
        let w = format!("{p:?}");
        assert_eq!(disk_kind(&w, d.write_atomic(p, b"no".to_vec()).await), bp, "write {w}");
        assert_eq!(disk_kind(&w, d.read(p).await), bp, "read {w}");
        assert_eq!(disk_kind(&w, d.remove_file(p).await), bp, "remove_file {w}");
        assert_eq!(disk_kind(&w, d.create_dir_all(p).await), bp, "create_dir_all {w}");
        assert_eq!(disk_kind(&w, d.remove_dir_all(p).await), bp, "remove_dir_all {w}");
        assert_eq!(disk_kind(&w, d.list_dir(p).await), bp, "list_dir {w}");
        assert_eq!(disk_kind(&w, d.rename(p, &base.join("y")).await), bp, "rename from {w}");
        assert_eq!(disk_kind(&w, d.rename(&good, p).await), bp, "rename to {w}");
    }
    let listed = d.list_dir(base).await.expect("list_dir");
    assert_eq!(listed.len(), 1, "bad paths wrote nothing: {listed:?}");
    assert_eq!(d.read(&good).await.expect("read"), b"good");
}

/// `list_dir` is sorted by name (bytes), complete, and tells files from
/// directories; sizes are exact.
pub async fn disk_list_sorted<D: Disk>(d: &D, base: &Utf8Path) {
    let names = ["c2", "a", "B", "c10", "a.txt", "zz", "b", "_", "0"];
    for (i, name) in names.iter().enumerate() {
        d.write_atomic(&base.join(name), pattern(i as u8, i * 100)).await.expect("write_atomic");
    }
    d.create_dir_all(&base.join("dir/sub")).await.expect("create_dir_all");
    let mut expected: Vec<DirEntry> = names
        .iter()
        .enumerate()
        .map(|(i, n)| DirEntry { name: (*n).into(), is_dir: false, size_bytes: (i * 100) as u64 })
        .collect();
    expected.push(DirEntry { name: "dir".into(), is_dir: true, size_bytes: 0 });
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    let listed = d.list_dir(base).await.expect("list_dir");
    assert_eq!(listed, expected);
    assert!(listed.iter().all(|e| !is_temp_file_name(&e.name)));
    let sub = d.list_dir(&base.join("dir")).await.expect("list_dir dir");
    assert_eq!(sub, vec![DirEntry { name: "sub".into(), is_dir: true, size_bytes: 0 }]);
    assert_eq!(d.list_dir(&base.join("dir/sub")).await.expect("empty dir"), vec![]);
}

/// `create_dir_all` is idempotent, creates every level, and refuses to go through
/// a file.
pub async fn disk_create_dir_all<D: Disk>(d: &D, base: &Utf8Path) {
    let deep = base.join("x/y/z");
    d.create_dir_all(&deep).await.expect("create_dir_all");
    d.create_dir_all(&deep).await.expect("create_dir_all again");
    d.create_dir_all(&base.join("x")).await.expect("create_dir_all of an existing parent");
    assert_eq!(d.list_dir(&deep).await.expect("list_dir"), vec![]);
    d.write_atomic(&base.join("file"), b"f".to_vec()).await.expect("write_atomic");
    let through_file = d.create_dir_all(&base.join("file/sub")).await;
    assert!(through_file.is_err(), "create_dir_all through a file: {through_file:?}");
    let onto_file = d.create_dir_all(&base.join("file")).await;
    assert!(onto_file.is_err(), "create_dir_all onto a file: {onto_file:?}");
    assert_eq!(d.read(&base.join("file")).await.expect("file kept"), b"f");
}

/// Renames move files (replacing an existing target file) and whole directories.
pub async fn disk_rename<D: Disk>(d: &D, base: &Utf8Path) {
    let (a, b) = (base.join("a"), base.join("b"));
    d.write_atomic(&a, b"A".to_vec()).await.expect("write a");
    d.rename(&a, &b).await.expect("rename a -> b");
    assert_eq!(disk_kind("old name", d.read(&a).await), DiskErrorKind::NotFound);
    assert_eq!(d.read(&b).await.expect("read b"), b"A");

    d.write_atomic(&a, b"second".to_vec()).await.expect("write a again");
    d.rename(&a, &b).await.expect("rename over an existing file");
    assert_eq!(d.read(&b).await.expect("read b"), b"second");
    let names: Vec<String> =
        d.list_dir(base).await.expect("list_dir").into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec!["b".to_owned()]);

    let tree = base.join("tree");
    d.write_atomic(&tree.join("sub/leaf"), b"leaf".to_vec()).await.expect("write leaf");
    d.create_dir_all(&base.join("elsewhere")).await.expect("create_dir_all");
    let moved = base.join("elsewhere/tree-moved");
    d.rename(&tree, &moved).await.expect("rename a directory");
    assert_eq!(d.read(&moved.join("sub/leaf")).await.expect("leaf moved"), b"leaf");
    assert_eq!(disk_kind("old tree", d.list_dir(&tree).await), DiskErrorKind::NotFound);
}

/// Removed files and trees are gone from reads and listings.
pub async fn disk_remove<D: Disk>(d: &D, base: &Utf8Path) {
    let f = base.join("f");
    d.write_atomic(&f, b"f".to_vec()).await.expect("write f");
    d.write_atomic(&base.join("keep"), b"k".to_vec()).await.expect("write keep");
    d.remove_file(&f).await.expect("remove_file");
    assert_eq!(disk_kind("removed", d.read(&f).await), DiskErrorKind::NotFound);
    assert_eq!(disk_kind("removed twice", d.remove_file(&f).await), DiskErrorKind::NotFound);

    let tree = base.join("tree");
    for p in ["a", "b/c", "b/d/e"] {
        d.write_atomic(&tree.join(p), p.as_bytes().to_vec()).await.expect("write tree");
    }
    let not_a_file = d.remove_file(&tree).await;
    assert!(not_a_file.is_err(), "remove_file of a directory: {not_a_file:?}");
    let not_a_dir = d.remove_dir_all(&base.join("keep")).await;
    assert!(not_a_dir.is_err(), "remove_dir_all of a file: {not_a_dir:?}");
    d.remove_dir_all(&tree).await.expect("remove_dir_all");
    assert_eq!(disk_kind("removed tree", d.list_dir(&tree).await), DiskErrorKind::NotFound);
    assert_eq!(disk_kind("file in tree", d.read(&tree.join("b/c")).await), DiskErrorKind::NotFound);
    let names: Vec<String> =
        d.list_dir(base).await.expect("list_dir").into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec!["keep".to_owned()]);
}

/// Concurrent writes: to different files all land; to one file, the result is one
/// of the written versions, whole.
pub async fn disk_concurrent_writes<D: Disk>(d: &D, base: &Utf8Path) {
    let one = |i: u8| {
        let d = d.clone();
        let path = base.join(format!("f{i}"));
        async move { d.write_atomic(&path, pattern(i, 700 + i as usize)).await }
    };
    let same = |i: u8| {
        let d = d.clone();
        let path = base.join("same");
        async move { d.write_atomic(&path, pattern(100 + i, 600 * (i as usize + 1))).await }
    };
    let r = tokio::join!(one(0), one(1), one(2), one(3), same(0), same(1), same(2), same(3));
    for (i, r) in [r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7].into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("concurrent write {i}: {e}"));
    }
    for i in 0..4u8 {
        let got = d.read(&base.join(format!("f{i}"))).await.expect("read");
        assert_eq!(got, pattern(i, 700 + i as usize), "f{i}");
    }
    let got = d.read(&base.join("same")).await.expect("read same");
    assert!(
        (0..4u8).any(|i| got == pattern(100 + i, 600 * (i as usize + 1))),
        "same: {} bytes that match no single write",
        got.len()
    );
    assert_eq!(d.list_dir(base).await.expect("list_dir").len(), 5, "no temp files listed");
}

// ---------------------------------------------------------------- remote storage

/// Parameters of the remote suite.
#[derive(Clone, Debug)]
pub struct RemoteSuiteConfig {
    /// Every key the suite writes starts with this; nothing else may.
    pub base: String,
    /// Keys in the listing-at-scale case. Above [`MAX_KEYS_PER_DELETE`] it also
    /// needs more than one delete batch and (on S3) more than one listing page.
    pub many_keys: usize,
}

impl Default for RemoteSuiteConfig {
    fn default() -> Self {
        RemoteSuiteConfig { base: "conformance/".into(), many_keys: 1100 }
    }
}

/// Every remote case with the default configuration (1100 keys in the listing at
/// scale).
pub async fn remote_suite<R: RemoteStorage>(r: &R) {
    remote_suite_with(r, &RemoteSuiteConfig::default()).await
}

pub async fn remote_suite_with<R: RemoteStorage>(r: &R, config: &RemoteSuiteConfig) {
    let b = &config.base;
    remote_put_get_roundtrip(r, &format!("{b}roundtrip/")).await;
    remote_atomic_overwrite(r, &format!("{b}overwrite/")).await;
    remote_not_found(r, &format!("{b}not_found/")).await;
    remote_list_prefix(r, &format!("{b}list/")).await;
    remote_delete_batches(r, &format!("{b}delete/")).await;
    remote_bad_prefix(r).await;
    remote_list_many(r, &format!("{b}many/"), config.many_keys).await;
    remote_list_page_like_list(r, &format!("{b}pages/")).await;
}

/// A key below `base`.
pub fn key(base: &str, rest: &str) -> RemoteKey {
    RemoteKey::from_listing(&format!("{base}{rest}")).expect("a valid conformance key")
}

/// Objects of several sizes read back exactly, and list with their sizes.
pub async fn remote_put_get_roundtrip<R: RemoteStorage>(r: &R, base: &str) {
    let sizes = [0usize, 1, 4096, (1 << 20) + 5];
    for (i, len) in sizes.into_iter().enumerate() {
        let k = key(base, &format!("obj-{i}"));
        r.put(&k, pattern(i as u8, len)).await.expect("put");
        assert_eq!(r.get(&k).await.expect("get"), pattern(i as u8, len), "{k}");
    }
    let listed = r.list(base).await.expect("list");
    let expected: Vec<ListedObject> = sizes
        .iter()
        .enumerate()
        .map(|(i, len)| ListedObject {
            key: key(base, &format!("obj-{i}")),
            size_bytes: *len as u64,
        })
        .collect();
    assert_eq!(listed, expected);
}

/// An overwrite replaces the whole object, shorter or longer.
pub async fn remote_atomic_overwrite<R: RemoteStorage>(r: &R, base: &str) {
    let k = key(base, "index_part.json.0000000000000001-00000001");
    for (seed, len) in [(1u8, 5000usize), (2, 7), (3, 9000), (4, 0)] {
        r.put(&k, pattern(seed, len)).await.expect("put");
        assert_eq!(r.get(&k).await.expect("get"), pattern(seed, len), "after put of {len} bytes");
        let listed = r.list(base).await.expect("list");
        assert_eq!(listed, vec![ListedObject { key: k.clone(), size_bytes: len as u64 }]);
    }
}

/// A missing key is `NotFound`, also after a delete; listing a prefix with nothing
/// under it is empty, not an error.
pub async fn remote_not_found<R: RemoteStorage>(r: &R, base: &str) {
    let nf = RemoteErrorKind::NotFound;
    assert_eq!(remote_kind("get missing", r.get(&key(base, "missing")).await), nf);
    assert_eq!(remote_kind("get missing nested", r.get(&key(base, "no/such/key")).await), nf);
    let k = key(base, "gone");
    r.put(&k, b"x".to_vec()).await.expect("put");
    r.delete_objects(std::slice::from_ref(&k)).await.expect("delete");
    assert_eq!(remote_kind("get deleted", r.get(&k).await), nf);
    assert_eq!(r.list(base).await.expect("list"), vec![]);
    assert_eq!(r.list(&format!("{base}nothing/here/")).await.expect("list nothing"), vec![]);
    // A prefix of a key is not a key.
    r.put(&key(base, "dir/leaf"), b"l".to_vec()).await.expect("put");
    assert_eq!(remote_kind("get a 'directory'", r.get(&key(base, "dir")).await), nf);
}

/// `list(prefix)` is a string prefix match (not a directory match), recursive,
/// sorted, complete.
pub async fn remote_list_prefix<R: RemoteStorage>(r: &R, base: &str) {
    let rests = [
        "t1/index_part.json.0000000000000002-00000001",
        "t1/index_part.json.0000000000000001-00000002",
        "t1/layer-a-00000001",
        "t1/sub/deeper/layer-b-00000001",
        "t10/layer-c-00000001",
        "t2/x",
        "top",
        "t1x",
    ];
    for (i, rest) in rests.iter().enumerate() {
        r.put(&key(base, rest), pattern(i as u8, i * 10)).await.expect("put");
    }
    let size = |rest: &str| rests.iter().position(|r| *r == rest).expect("known key") * 10;
    let check = |prefix: &str, listed: Vec<ListedObject>, want: &[&str]| {
        let mut want: Vec<ListedObject> = want
            .iter()
            .map(|rest| ListedObject { key: key(base, rest), size_bytes: size(rest) as u64 })
            .collect();
        want.sort();
        assert_eq!(listed, want, "list({prefix:?})");
        let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted: {keys:?}");
    };
    let mut all = rests.to_vec();
    all.sort();
    check(base, r.list(base).await.expect("list base"), &all);
    let p = format!("{base}t1/");
    check(&p, r.list(&p).await.expect("list"), &rests[0..4]);
    let p = format!("{base}t1");
    let listed = r.list(&p).await.expect("list");
    check(&p, listed, &[&rests[0..5], &["t1x"][..]].concat());
    let p = format!("{base}t1/index_part.json");
    check(&p, r.list(&p).await.expect("list"), &rests[0..2]);
    let p = format!("{base}t1/index_part.json.0000000000000002");
    check(&p, r.list(&p).await.expect("list"), &rests[0..1]);
    let p = format!("{base}t1/sub/");
    check(&p, r.list(&p).await.expect("list"), &rests[3..4]);
    let p = format!("{base}to");
    check(&p, r.list(&p).await.expect("list"), &["top"]);
    let p = format!("{base}top/");
    check(&p, r.list(&p).await.expect("list"), &[]);
}

/// Batch deletes: missing keys are fine, an empty batch is fine, more than
/// [`MAX_KEYS_PER_DELETE`] keys is `Permanent` and deletes nothing.
pub async fn remote_delete_batches<R: RemoteStorage>(r: &R, base: &str) {
    let keys: Vec<RemoteKey> = (0..10).map(|i| key(base, &format!("k{i}"))).collect();
    for k in &keys {
        r.put(k, k.as_str().as_bytes().to_vec()).await.expect("put");
    }
    r.delete_objects(&[]).await.expect("empty batch");
    let mut batch: Vec<RemoteKey> = keys[..5].to_vec();
    batch.push(key(base, "never-existed"));
    batch.push(key(base, "no/such/dir"));
    r.delete_objects(&batch).await.expect("delete with missing keys");
    r.delete_objects(&batch).await.expect("delete again");
    let listed: Vec<RemoteKey> =
        r.list(base).await.expect("list").into_iter().map(|o| o.key).collect();
    assert_eq!(listed, keys[5..].to_vec());

    let too_many: Vec<RemoteKey> =
        (0..=MAX_KEYS_PER_DELETE).map(|i| key(base, &format!("k{}", i % 10))).collect();
    let kind = remote_kind("too many keys", r.delete_objects(&too_many).await);
    assert_eq!(kind, RemoteErrorKind::Permanent);
    assert_eq!(r.list(base).await.expect("list").len(), 5, "a refused batch deletes nothing");
    r.delete_objects(&keys[5..]).await.expect("delete the rest");
    assert_eq!(r.list(base).await.expect("list"), vec![]);
}

/// A prefix that climbs out of the root lists nothing (or is refused).
pub async fn remote_bad_prefix<R: RemoteStorage>(r: &R) {
    for prefix in ["../", "..", "/", "/etc", "a/../../"] {
        match r.list(prefix).await {
            Ok(listed) => assert_eq!(listed, vec![], "list({prefix:?}) must list nothing"),
            Err(e) => assert_eq!(e.kind, RemoteErrorKind::Permanent, "list({prefix:?}): {e}"),
        }
    }
}

/// `n` keys put in a scrambled order list back complete and sorted, then go away
/// in batches of at most [`MAX_KEYS_PER_DELETE`].
pub async fn remote_list_many<R: RemoteStorage>(r: &R, base: &str, n: usize) {
    // A step coprime with n visits every index once, out of order.
    let step = (1..=7919).rev().find(|s| gcd(*s, n.max(1)) == 1).unwrap_or(1);
    for j in 0..n {
        let i = (j * step) % n;
        let k = key(base, &format!("{}/obj-{i:06}", i % 3));
        r.put(&k, vec![b'x'; i % 7]).await.expect("put");
    }
    let listed = r.list(base).await.expect("list");
    let mut want: Vec<ListedObject> = (0..n)
        .map(|i| ListedObject {
            key: key(base, &format!("{}/obj-{i:06}", i % 3)),
            size_bytes: (i % 7) as u64,
        })
        .collect();
    want.sort();
    assert_eq!(listed.len(), n, "list returns every key");
    assert_eq!(listed, want);
    let keys: Vec<RemoteKey> = listed.into_iter().map(|o| o.key).collect();
    for chunk in keys.chunks(MAX_KEYS_PER_DELETE) {
        r.delete_objects(chunk).await.expect("delete batch");
    }
    assert_eq!(r.list(base).await.expect("list"), vec![]);
}

/// `list_page` pages through exactly what `list` returns, in key order (a
/// "directory" sorts as its name plus `/`: `a-b` before `a/x`), resuming after any
/// key, with the listed sizes; every page holds at most `max_keys`. Returns whether
/// the store reported a modification time for every entry (LocalFs and S3 do; the
/// trait's default does for none; a mix is a failure).
pub async fn remote_list_page_like_list<R: RemoteStorage>(r: &R, base: &str) -> bool {
    let rests = ["t/a-b", "t/a/x", "t/a/y/z", "t/a0", "t/b", "u/c", "t/a.c"];
    for rest in rests {
        r.put(&key(base, rest), vec![1; 3]).await.expect("put");
    }
    let mut times = std::collections::BTreeSet::new();
    for rest in ["", "t/", "t/a", "t/a/", "v"] {
        let prefix = format!("{base}{rest}");
        let all: Vec<RemoteKey> =
            r.list(&prefix).await.expect("list").into_iter().map(|o| o.key).collect();
        for max in 1..4 {
            let (mut paged, mut after) = (Vec::new(), None);
            loop {
                let page = r.list_page(&prefix, after.as_ref(), max).await.expect("list_page");
                assert!(page.objects.len() <= max, "{prefix:?}: a page over {max} keys");
                for o in &page.objects {
                    assert_eq!(o.size_bytes, 3, "{}", o.key);
                    times.insert(o.last_modified.is_some());
                }
                paged.extend(page.objects.into_iter().map(|o| o.key));
                match page.next_start_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            assert_eq!(paged, all, "prefix {prefix:?}, {max} keys per page");
        }
    }
    assert!(times.len() <= 1, "some listed entries have a modification time and some do not");
    let keys: Vec<RemoteKey> = rests.iter().map(|rest| key(base, rest)).collect();
    r.delete_objects(&keys).await.expect("delete");
    times.contains(&true)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

// ---------------------------------------------------------------- streaming transfers

/// A [`DownloadCheck`] that records what it was handed (shared, so the case can
/// look after the adapter consumed it) and accepts or refuses by `accept`.
#[derive(Clone)]
pub struct RecordingCheck {
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    accept: bool,
    /// If set, only exactly these bytes are accepted.
    expect: Option<std::sync::Arc<Vec<u8>>>,
}

/// What a [`RecordingCheck`] was handed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub bytes: Vec<u8>,
    pub chunks: usize,
    pub largest_chunk_bytes: usize,
    pub finished: bool,
}

impl RecordingCheck {
    pub fn new(accept: bool) -> RecordingCheck {
        RecordingCheck { seen: Default::default(), accept, expect: None }
    }

    /// Accepts exactly `bytes` (a size and CRC check would accept the same).
    pub fn expecting(bytes: Vec<u8>) -> RecordingCheck {
        RecordingCheck {
            seen: Default::default(),
            accept: true,
            expect: Some(std::sync::Arc::new(bytes)),
        }
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl DownloadCheck for RecordingCheck {
    fn update(&mut self, chunk: &[u8]) {
        if let Ok(mut s) = self.seen.lock() {
            s.bytes.extend_from_slice(chunk);
            s.chunks += 1;
            s.largest_chunk_bytes = s.largest_chunk_bytes.max(chunk.len());
        }
    }

    fn finish(&self) -> Result<(), String> {
        let mut seen = self.seen.lock().map_err(|_| "poisoned".to_string())?;
        seen.finished = true;
        if let Some(want) = &self.expect
            && seen.bytes != **want
        {
            return Err(format!("{} bytes, expected {}", seen.bytes.len(), want.len()));
        }
        if self.accept { Ok(()) } else { Err("refused by the test".into()) }
    }
}

/// Every streaming case: `r`'s local side must be `d` (the same data directory).
/// Keys below `base`, local files below `dir` (which must not exist yet).
pub async fn transfer_suite<R: RemoteStorage, D: Disk>(r: &R, d: &D, base: &str, dir: &Utf8Path) {
    transfer_put_file_roundtrip(r, d, base, dir).await;
    transfer_get_to_file_roundtrip(r, d, &format!("{base}get/"), &dir.join("get")).await;
    transfer_refused_download_leaves_nothing(
        r,
        d,
        &format!("{base}refused/"),
        &dir.join("refused"),
    )
    .await;
    transfer_missing_source_and_object(r, d, &format!("{base}missing/"), &dir.join("missing"))
        .await;
    transfer_refused_upload_sends_nothing(r, d, &format!("{base}refused-up/"), &dir.join("up"))
        .await;
}

/// An upload whose local file the check refuses is `CorruptSource`: nothing is
/// uploaded, an existing object keeps its bytes; the check saw the whole file.
pub async fn transfer_refused_upload_sends_nothing<R: RemoteStorage, D: Disk>(
    r: &R,
    d: &D,
    base: &str,
    dir: &Utf8Path,
) {
    let body = pattern(11, 2 * TRANSFER_CHUNK_BYTES + 9);
    let path = dir.join("layer");
    d.write_atomic(&path, body.clone()).await.expect("write local");
    let k = key(base, "layer");
    let check = RecordingCheck::new(false);
    match r.put_file(&k, &path, check.clone()).await {
        Err(TransferError::CorruptSource { path: got, .. }) => assert_eq!(got, path),
        other => panic!("a refused upload returned {other:?}"),
    }
    assert!(check.seen().finished && check.seen().bytes == body, "the check saw the file");
    assert_eq!(remote_kind("nothing uploaded", r.get(&k).await), RemoteErrorKind::NotFound);
    r.put(&k, b"old".to_vec()).await.expect("put");
    let refused = r.put_file(&k, &path, RecordingCheck::new(false)).await;
    assert!(matches!(refused, Err(TransferError::CorruptSource { .. })), "{refused:?}");
    assert_eq!(r.get(&k).await.expect("get"), b"old", "a refused upload replaced the object");
}

/// Sizes that take no chunk, one byte, exactly one chunk, and several chunks with
/// a short tail.
pub fn transfer_sizes() -> [usize; 4] {
    [0, 1, TRANSFER_CHUNK_BYTES, 3 * TRANSFER_CHUNK_BYTES + 17]
}

/// `put_file` uploads the local file exactly, whatever its size, and says how
/// many bytes it sent; the local file stays.
pub async fn transfer_put_file_roundtrip<R: RemoteStorage, D: Disk>(
    r: &R,
    d: &D,
    base: &str,
    dir: &Utf8Path,
) {
    for (i, len) in transfer_sizes().into_iter().enumerate() {
        let path = dir.join(format!("up-{i}"));
        d.write_atomic(&path, pattern(i as u8 + 40, len)).await.expect("write local");
        let k = key(base, &format!("up-{i}"));
        assert_eq!(
            r.put_file(&k, &path, RecordingCheck::new(true)).await.expect("put_file"),
            len as u64,
            "{k}"
        );
        assert_eq!(r.get(&k).await.expect("get"), pattern(i as u8 + 40, len), "{k}");
        assert_eq!(d.read(&path).await.expect("local stays"), pattern(i as u8 + 40, len));
    }
}

/// `get_to_file` writes the object exactly (creating the directory), over an
/// existing file too; the check is handed every byte in order, in chunks of at
/// most [`TRANSFER_CHUNK_BYTES`], and finished once; no temp file stays.
pub async fn transfer_get_to_file_roundtrip<R: RemoteStorage, D: Disk>(
    r: &R,
    d: &D,
    base: &str,
    dir: &Utf8Path,
) {
    for (i, len) in transfer_sizes().into_iter().enumerate() {
        let k = key(base, &format!("down-{i}"));
        let body = pattern(i as u8 + 60, len);
        r.put(&k, body.clone()).await.expect("put");
        let path = dir.join(format!("down-{i}"));
        if i == 1 {
            d.write_atomic(&path, b"an older, longer local file".to_vec()).await.expect("write");
        }
        let check = RecordingCheck::new(true);
        let n = r.get_to_file(&k, &path, check.clone()).await.expect("get_to_file");
        assert_eq!(n, len as u64, "{k}");
        assert_eq!(d.read(&path).await.expect("read local"), body, "{path}");
        let seen = check.seen();
        assert!(seen.finished, "{k}: check not finished");
        assert!(
            seen.bytes == body,
            "{k}: the check saw other bytes ({} of {len})",
            seen.bytes.len()
        );
        assert!(
            seen.largest_chunk_bytes <= TRANSFER_CHUNK_BYTES,
            "{k}: a chunk of {} bytes, over the bound {TRANSFER_CHUNK_BYTES}",
            seen.largest_chunk_bytes
        );
    }
    let names: Vec<String> =
        d.list_dir(dir).await.expect("list").into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["down-0", "down-1", "down-2", "down-3"]);
}

/// A download the check refuses is `Corrupt`: nothing appears under the target's
/// name, and an existing file there is left as it was.
pub async fn transfer_refused_download_leaves_nothing<R: RemoteStorage, D: Disk>(
    r: &R,
    d: &D,
    base: &str,
    dir: &Utf8Path,
) {
    let k = key(base, "layer");
    let body = pattern(7, 2 * TRANSFER_CHUNK_BYTES + 3);
    r.put(&k, body.clone()).await.expect("put");
    let fresh = dir.join("fresh");
    let check = RecordingCheck::new(false);
    match r.get_to_file(&k, &fresh, check.clone()).await {
        Err(TransferError::Corrupt { key: got, .. }) => assert_eq!(got, k.as_str()),
        other => panic!("a refused download returned {other:?}"),
    }
    assert!(check.seen().finished && check.seen().bytes == body);
    assert_eq!(disk_kind("refused target", d.read(&fresh).await), DiskErrorKind::NotFound);
    let existing = dir.join("existing");
    d.write_atomic(&existing, b"old".to_vec()).await.expect("write");
    let refused = r.get_to_file(&k, &existing, RecordingCheck::new(false)).await;
    assert!(matches!(refused, Err(TransferError::Corrupt { .. })), "{refused:?}");
    assert_eq!(d.read(&existing).await.expect("read"), b"old", "a refused download changed it");
    let names: Vec<String> =
        d.list_dir(dir).await.expect("list").into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["existing"]);
}

/// A missing local file is the disk's `NotFound` and uploads nothing; a missing
/// object is the store's `NotFound` and writes nothing locally.
pub async fn transfer_missing_source_and_object<R: RemoteStorage, D: Disk>(
    r: &R,
    d: &D,
    base: &str,
    dir: &Utf8Path,
) {
    let k = key(base, "never");
    match r.put_file(&k, &dir.join("no-such-file"), NoCheck).await {
        Err(TransferError::Local(e)) => assert_eq!(e.kind, DiskErrorKind::NotFound, "{e}"),
        other => panic!("put_file of a missing file returned {other:?}"),
    }
    assert_eq!(remote_kind("nothing uploaded", r.get(&k).await), RemoteErrorKind::NotFound);
    let path = dir.join("never");
    match r.get_to_file(&k, &path, RecordingCheck::new(true)).await {
        Err(TransferError::Remote(e)) => assert_eq!(e.kind, RemoteErrorKind::NotFound, "{e}"),
        other => panic!("get_to_file of a missing key returned {other:?}"),
    }
    assert_eq!(disk_kind("nothing written", d.read(&path).await), DiskErrorKind::NotFound);
}
