//! The real disk adapter on the power-cut file system (issue 18 item 8).
//!
//! - The disk and LocalFs conformance suites pass on a mount of it, and after them
//!   nothing acknowledged is only in memory: the durable state equals what the
//!   processes see.
//! - Power cuts at seeded random points of a random history of the adapter's
//!   crash-safe operations (`write_atomic`, `rename`, `remove_file`,
//!   `create_dir_all`, `remove_dir_all`): after each, the next mount must hold every
//!   acknowledged operation's result, and a path the operation in flight touched
//!   holds its old or its new state, never a torn file.
//! - Copies of the adapter with one fsync removed (`build.rs`) fail that check.
#![cfg(not(madsim))]

use camino::{Utf8Path, Utf8PathBuf};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use strata_adapters::conformance;
use strata_adapters::disk::{Disk, DiskError, is_temp_file_name};
use strata_adapters::local_disk::LocalDisk;
use strata_adapters::local_fs::LocalFs;
use strata_testfs::{Image, TestFs, mount_or_skip};

macro_rules! mutant {
    ($name:ident, $file:literal) => {
        #[allow(dead_code, unused_imports)]
        mod $name {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
    };
}
mutant!(no_dir_fsync, "local_disk_no_dir_fsync.rs");
mutant!(no_new_dir_entry_fsync, "local_disk_no_new_dir_entry_fsync.rs");
mutant!(no_temp_fsync, "local_disk_no_temp_fsync.rs");

/// Directories the random history works in ("" is the disk's root).
const DIRS: &[&str] = &["", "d0", "d0/s", "d1", "t/x0", "t/x1"];
/// Trees `remove_dir_all` may remove.
const TREES: &[&str] = &["d0", "d1", "t/x0", "t"];

/// Cuts per run (`STRATA_POWER_CUTS`, default 60) and the seed
/// (`STRATA_POWER_CUT_SEED`, default 1: CI replays the same history).
fn settings() -> (u64, u32) {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    (env("STRATA_POWER_CUT_SEED").unwrap_or(1), env("STRATA_POWER_CUTS").unwrap_or(60) as u32)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write(String, Vec<u8>),
    Rename(String, String),
    Remove(String),
    Mkdir(String),
    RemoveTree(String),
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Write(p, b) => write!(f, "write_atomic {p} ({})", summary(Some(b))),
            Op::Rename(a, b) => write!(f, "rename {a} -> {b}"),
            Op::Remove(p) => write!(f, "remove_file {p}"),
            Op::Mkdir(d) => write!(f, "create_dir_all {d}"),
            Op::RemoveTree(d) => write!(f, "remove_dir_all {d}"),
        }
    }
}

/// A file's content as the check prints it: its first line (path and write
/// number) and its length.
fn summary(bytes: Option<&Vec<u8>>) -> String {
    match bytes {
        None => "missing".into(),
        Some(b) => {
            let head = b.split(|c| *c == b'\n').next().unwrap_or_default();
            format!("'{}', {} bytes", String::from_utf8_lossy(head), b.len())
        }
    }
}

/// The files and directories below the disk's root.
#[derive(Clone, Debug, Default, PartialEq)]
struct State {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

impl State {
    fn add_dir(&mut self, dir: &str) {
        if !dir.is_empty() {
            self.dirs.extend(ancestors(dir).map(str::to_owned));
            self.dirs.insert(dir.to_owned());
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write(p, b) => {
                ancestors(p).for_each(|d| {
                    self.dirs.insert(d.to_owned());
                });
                self.files.insert(p.clone(), b.clone());
            }
            Op::Rename(a, b) => {
                let bytes = self.files.remove(a).expect("renames an existing file");
                self.files.insert(b.clone(), bytes);
            }
            Op::Remove(p) => {
                self.files.remove(p);
            }
            Op::Mkdir(d) => self.add_dir(d),
            Op::RemoveTree(d) => {
                let inside = |p: &String| p == d || p.starts_with(&format!("{d}/"));
                self.dirs.retain(|p| !inside(p));
                self.files.retain(|p, _| !inside(p));
            }
        }
    }

    /// What is on the mount below `root` (the disk's root), without temp files.
    fn observe(root: &Path) -> State {
        fn walk(root: &Path, rel: &str, s: &mut State) {
            let Ok(entries) = std::fs::read_dir(root.join(rel)) else { return };
            for e in entries {
                let e = e.expect("directory entry");
                let name = e.file_name().into_string().expect("UTF-8 name");
                let path = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
                if e.file_type().expect("file type").is_dir() {
                    s.dirs.insert(path.clone());
                    walk(root, &path, s);
                } else if !is_temp_file_name(&name) {
                    s.files.insert(path.clone(), std::fs::read(e.path()).expect("read back"));
                }
            }
        }
        let mut s = State::default();
        walk(root, "", &mut s);
        s
    }
}

/// The next operation of the random history, valid in `state`.
fn draw(rng: &mut Rng, state: &State, n: u64) -> Op {
    let existing_dirs: Vec<&str> =
        DIRS.iter().copied().filter(|d| d.is_empty() || state.dirs.contains(*d)).collect();
    let files: Vec<&String> = state.files.keys().collect();
    let file_in = |dir: &str, name: String| {
        if dir.is_empty() { name } else { format!("{dir}/{name}") }
    };
    match rng.below(100) {
        0..45 => {}
        45..60 if !files.is_empty() => {
            let from = rng.pick(&files).clone();
            let to = file_in(
                rng.pick(&existing_dirs),
                format!("{}{}", rng.pick(&["f", "g"]), rng.below(3)),
            );
            if to != from {
                return Op::Rename(from, to);
            }
        }
        60..70 if !files.is_empty() => return Op::Remove(rng.pick(&files).clone()),
        70..85 => return Op::Mkdir(rng.pick(&DIRS[1..]).to_string()),
        85..100 => {
            let trees: Vec<&str> =
                TREES.iter().copied().filter(|t| state.dirs.contains(*t)).collect();
            if !trees.is_empty() {
                return Op::RemoveTree(rng.pick(&trees).to_string());
            }
        }
        _ => {}
    }
    let path = file_in(rng.pick(DIRS), format!("f{}", rng.below(3)));
    // Mostly small files, some over a few hundred KiB (many FUSE writes each).
    let len = if rng.below(10) == 0 { 100_000 + rng.below(300_000) } else { rng.below(9_000) };
    let mut bytes = format!("{path}#{n}\n").into_bytes();
    bytes.extend(conformance::pattern(n as u8, len));
    Op::Write(path, bytes)
}

async fn run<D: Disk>(d: &D, op: &Op) -> Result<(), DiskError> {
    let p = |s: &String| Utf8PathBuf::from(s.clone());
    match op {
        Op::Write(path, bytes) => d.write_atomic(&p(path), bytes.clone()).await,
        Op::Rename(a, b) => d.rename(&p(a), &p(b)).await,
        Op::Remove(path) => d.remove_file(&p(path)).await,
        Op::Mkdir(dir) => d.create_dir_all(&p(dir)).await,
        Op::RemoveTree(dir) => d.remove_dir_all(&p(dir)).await,
    }
}

/// After a cut: every path holds what the acknowledged history left (`acked`) or,
/// for paths the operation in flight touched, what it would have left
/// (`in_flight`); every acknowledged directory exists; nothing else does.
fn check(acked: &State, in_flight: &State, found: &State) -> Result<(), String> {
    let paths: BTreeSet<&String> =
        acked.files.keys().chain(in_flight.files.keys()).chain(found.files.keys()).collect();
    for p in paths {
        let (a, i, f) = (acked.files.get(p), in_flight.files.get(p), found.files.get(p));
        if f != a && f != i {
            return Err(format!(
                "{p}: found {}, acknowledged {}, in flight {}",
                summary(f),
                summary(a),
                summary(i)
            ));
        }
    }
    for d in acked.dirs.intersection(&in_flight.dirs) {
        if !found.dirs.contains(d) {
            return Err(format!("directory {d}: acknowledged, missing after the cut"));
        }
    }
    for d in &found.dirs {
        if !acked.dirs.contains(d) && !in_flight.dirs.contains(d) {
            return Err(format!("directory {d}: found, never created"));
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Report {
    cuts: u32,
    ops_acked: u64,
    cut_mid_op: u32,
    mutations: u64,
    file_fsyncs: u64,
    dir_fsyncs: u64,
    files_checked: u64,
    elapsed: Duration,
}

/// Runs the random history on the disk `make` builds over the mount, with `cuts`
/// power cuts; the first broken rule is the error, with its seed and cut.
async fn power_cuts<D: Disk>(
    make: impl Fn(Utf8PathBuf) -> D,
    seed: u64,
    cuts: u32,
) -> Result<Report, String> {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mount point");
    let root = Utf8PathBuf::from_path_buf(mnt.join("data")).expect("UTF-8 path");
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut model = State::default();
    let mut report = Report::default();
    let mut n = 0u64;
    let mut fs = TestFs::mount(&mnt, &Image::default()).map_err(|e| format!("mount: {e}"))?;
    for cut in 1..=cuts {
        let disk = make(root.clone());
        let armed = 1 + rng.next() % 120;
        fs.arm_cut_after(armed);
        let mut in_flight = None;
        while !fs.is_cut() {
            n += 1;
            let op = draw(&mut rng, &model, n);
            match run(&disk, &op).await {
                Ok(()) => {
                    model.apply(&op);
                    report.ops_acked += 1;
                }
                Err(e) if fs.is_cut() => {
                    in_flight = Some(op);
                    report.cut_mid_op += 1;
                    let _ = e;
                }
                Err(e) => {
                    return Err(format!(
                        "seed {seed}, cut {cut}: {op} failed with the power on: {e}"
                    ));
                }
            }
        }
        let stats = fs.stats();
        report.mutations += stats.mutations;
        report.file_fsyncs += stats.file_fsyncs;
        report.dir_fsyncs += stats.dir_fsyncs;
        let image = fs.power_cut();
        fs = TestFs::mount(&mnt, &image).map_err(|e| format!("remount: {e}"))?;
        let found = State::observe(root.as_std_path());
        let mut after = model.clone();
        if let Some(op) = &in_flight {
            after.apply(op);
        }
        let what = in_flight.as_ref().map_or("nothing".to_string(), Op::to_string);
        check(&model, &after, &found).map_err(|e| {
            format!(
                "seed {seed}, cut {cut} (after {armed} mutating requests; in flight: {what}): {e}"
            )
        })?;
        report.files_checked += found.files.len() as u64;
        report.cuts = cut;
        model = found;
    }
    drop(fs);
    report.elapsed = started.elapsed();
    Ok(report)
}

#[tokio::test]
async fn the_disk_and_local_fs_suites_pass_on_the_power_cut_file_system() {
    if !mount_or_skip("the_disk_and_local_fs_suites_pass_on_the_power_cut_file_system") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fs = TestFs::mount(tmp.path(), &Image::default()).unwrap();
    let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
    let started = Instant::now();
    let disk = LocalDisk::new(root.join("data"));
    conformance::disk_suite(&disk).await;
    conformance::remote_suite(&LocalFs::new(root.join("bucket"))).await;
    let remote = LocalFs::new(root.join("bucket2")).with_local_disk(disk.clone());
    conformance::transfer_suite(&remote, &disk, "transfer/", Utf8Path::new("transfer")).await;
    // Nothing in flight: every file the suites left is durable, and nothing they
    // removed comes back.
    let visible = State::observe(tmp.path()).files;
    let stats = fs.stats();
    let durable: BTreeMap<String, Vec<u8>> =
        fs.power_cut().files().into_iter().filter(|(p, _)| !is_temp_file_name(p)).collect();
    let diff: Vec<&String> = visible
        .keys()
        .chain(durable.keys())
        .filter(|p| visible.get(*p) != durable.get(*p))
        .collect();
    assert!(diff.is_empty(), "acknowledged but not durable (or removed and back): {diff:?}");
    eprintln!(
        "suites on the power-cut file system: {:?}, {} files durable, {} file and {} directory fsyncs",
        started.elapsed(),
        durable.len(),
        stats.file_fsyncs,
        stats.dir_fsyncs
    );
}

#[tokio::test]
async fn the_real_disk_keeps_every_acknowledged_write_across_power_cuts() {
    if !mount_or_skip("the_real_disk_keeps_every_acknowledged_write_across_power_cuts") {
        return;
    }
    let (seed, cuts) = settings();
    println!("power cuts: seed {seed} (STRATA_POWER_CUT_SEED), {cuts} cuts (STRATA_POWER_CUTS)");
    let report = power_cuts(LocalDisk::new, seed, cuts).await.unwrap_or_else(|e| panic!("{e}"));
    println!("LocalDisk: {report:?}");
    assert_eq!(report.cuts, cuts);
}

/// Each copy of the adapter without one fsync breaks the rule within the cuts CI
/// runs (seed 1); the failure is printed for the record.
fn caught(name: &str, result: Result<Report, String>) {
    match result {
        Ok(report) => panic!("{name}: the broken copy survived every power cut: {report:?}"),
        Err(e) => println!("{name}: caught: {e}"),
    }
}

#[tokio::test]
async fn a_write_atomic_without_its_directory_fsync_is_caught() {
    if !mount_or_skip("a_write_atomic_without_its_directory_fsync_is_caught") {
        return;
    }
    let (seed, cuts) = settings();
    caught("no_dir_fsync", power_cuts(no_dir_fsync::LocalDisk::new, seed, cuts).await);
}

#[tokio::test]
async fn a_new_directory_without_its_parent_fsync_is_caught() {
    if !mount_or_skip("a_new_directory_without_its_parent_fsync_is_caught") {
        return;
    }
    let (seed, cuts) = settings();
    let r = power_cuts(no_new_dir_entry_fsync::LocalDisk::new, seed, cuts).await;
    caught("no_new_dir_entry_fsync", r);
}

#[tokio::test]
async fn a_write_atomic_without_its_temp_file_fsync_is_caught() {
    if !mount_or_skip("a_write_atomic_without_its_temp_file_fsync_is_caught") {
        return;
    }
    let (seed, cuts) = settings();
    caught("no_temp_fsync", power_cuts(no_temp_fsync::LocalDisk::new, seed, cuts).await);
}
