//! The power-cut file system's own rules, through real system calls on a mount.
#![cfg(not(madsim))]

use std::fs;
use std::path::Path;
use strata_testfs::{Entry, Image, TestFs, mount_check};

/// Mounts an empty file system, or says why not (SKIPPED) and returns None.
fn mount(dir: &Path) -> Option<TestFs> {
    if let Err(why) = mount_check() {
        skip(&why);
        return None;
    }
    Some(TestFs::mount(dir, &Image::default()).expect("mount"))
}

fn skip(why: &str) {
    println!("SKIPPED: the power-cut file system cannot mount here: {why}");
}

fn fsync(path: &Path) {
    fs::File::open(path).unwrap().sync_all().unwrap();
}

#[test]
fn only_fsynced_data_and_entries_survive_a_power_cut() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tfs) = mount(dir.path()) else { return };
    let root = dir.path();
    // a: written, fsynced, its entry made durable.
    fs::write(root.join("a"), b"a1").unwrap();
    fsync(&root.join("a"));
    fsync(root);
    // a gets more data, never fsynced; b is created and fsynced, its entry is not.
    fs::write(root.join("a"), b"a2-longer").unwrap();
    fs::write(root.join("b"), b"b").unwrap();
    fsync(&root.join("b"));
    let durable = tfs.durable();
    assert_eq!(
        durable.files().into_iter().collect::<Vec<_>>(),
        [("a".to_string(), b"a1".to_vec())]
    );
    // d/e: a directory made durable in the root (b's entry with it), e's entry in
    // d, but not e's data.
    fs::create_dir(root.join("d")).unwrap();
    fsync(root);
    fs::write(root.join("d/e"), b"e").unwrap();
    fsync(&root.join("d"));
    let image = tfs.power_cut();
    let mut d = std::collections::BTreeMap::new();
    d.insert("e".to_string(), Entry::File(Vec::new()));
    let mut expected = std::collections::BTreeMap::new();
    expected.insert("a".to_string(), Entry::File(b"a1".to_vec()));
    expected.insert("b".to_string(), Entry::File(b"b".to_vec()));
    expected.insert("d".to_string(), Entry::Dir(d));
    assert_eq!(image.root, expected);
    // The next mount serves exactly the durable state.
    let tfs = TestFs::mount(dir.path(), &image).expect("remount");
    assert_eq!(fs::read(root.join("a")).unwrap(), b"a1");
    assert_eq!(fs::read(root.join("b")).unwrap(), b"b");
    assert_eq!(fs::read(root.join("d/e")).unwrap(), b"");
    drop(tfs);
}

#[test]
fn a_rename_is_durable_only_once_both_directories_are_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tfs) = mount(dir.path()) else { return };
    let root = dir.path();
    for d in ["x", "y"] {
        fs::create_dir(root.join(d)).unwrap();
    }
    fs::write(root.join("x/f"), b"f").unwrap();
    fsync(&root.join("x/f"));
    fsync(&root.join("x"));
    fsync(root);
    fs::rename(root.join("x/f"), root.join("y/g")).unwrap();
    let before = tfs.durable();
    assert_eq!(before.files().keys().collect::<Vec<_>>(), ["x/f"]);
    fsync(&root.join("y"));
    // Both names durable until the source directory is fsynced too.
    assert_eq!(tfs.durable().files().keys().collect::<Vec<_>>(), ["x/f", "y/g"]);
    fsync(&root.join("x"));
    assert_eq!(tfs.durable().files().keys().collect::<Vec<_>>(), ["y/g"]);
    drop(tfs);
}

#[test]
fn an_armed_cut_fails_every_later_request() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tfs) = mount(dir.path()) else { return };
    let root = dir.path();
    tfs.arm_cut_after(2); // create and write run; the fsync finds the power gone
    let mut f = fs::File::create(root.join("f")).unwrap();
    std::io::Write::write_all(&mut f, b"data").unwrap();
    assert!(f.sync_all().is_err());
    assert!(tfs.is_cut());
    assert!(fs::write(root.join("g"), b"g").is_err());
    drop(f);
    assert_eq!(tfs.power_cut(), Image::default());
}
