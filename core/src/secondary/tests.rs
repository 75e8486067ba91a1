//! The warm secondary under a small synchronous world: remote objects, local
//! files, downloads checked by size and CRC32C as the adapters do.

use super::*;
use crate::generation::Generation;
use crate::index_part::IndexPart;
use crate::io_error::{IoErrorKind, IoTarget};
use crate::key::Key;
use crate::layer_name::KeyRange;
use crate::lsn::Lsn;
use crate::metadata::TimelineMetadata;
use crate::node::io;
use crate::remote_path;
use camino::Utf8PathBuf;

const T: TenantId = TenantId([0x11; 16]);
const TL1: TimelineId = TimelineId([0x21; 16]);
const TL2: TimelineId = TimelineId([0x22; 16]);

fn g(n: u32) -> Generation {
    Generation::new(n).unwrap()
}

/// An image layer named after `i`, newer for a larger `i`.
fn layer(i: u64) -> LayerName {
    let keys = KeyRange::new(Key(i * 2), Key(i * 2 + 1)).unwrap();
    LayerName::Image { keys, lsn: Lsn(0x10 + i) }
}

fn bytes_of(i: u64, size: usize) -> Vec<u8> {
    (0..size).map(|b| (b as u64 ^ i) as u8).collect()
}

#[derive(Default)]
struct World {
    objects: BTreeMap<String, Vec<u8>>,
    files: BTreeMap<Utf8PathBuf, Vec<u8>>,
    /// Completions held back, in issue order (tests of concurrency and crashes).
    held: Vec<SecondaryEffect>,
    hold: bool,
    /// Downloads the world delivers with a flipped byte.
    corrupt_downloads: u32,
    /// Downloads that rename their file into place, then fail the directory fsync.
    fsync_failures: u32,
    /// Most downloads in flight at once (held ones count).
    max_downloads_in_flight: usize,
}

impl World {
    /// Puts layers `ids` (with `size` bytes each) and an index naming them, in
    /// generation `gen`, sequence `seq`.
    fn publish(&mut self, tl: TimelineId, gen_: u32, seq: u64, ids: &[u64], size: usize) {
        self.publish_salted(tl, gen_, seq, ids, size, 0);
    }

    /// As `publish`, each layer's bytes salted by `salt` (same size, other bytes).
    fn publish_salted(
        &mut self,
        tl: TimelineId,
        gen_: u32,
        seq: u64,
        ids: &[u64],
        size: usize,
        salt: u64,
    ) {
        let mut index = IndexPart::empty(TimelineMetadata::default());
        index.seq = seq;
        for &i in ids {
            let bytes = bytes_of(i + salt, size);
            let meta = LayerMeta {
                file_size: bytes.len() as u64,
                generation: g(gen_),
                crc32c: crc32c::crc32c(&bytes),
            };
            let key = remote_path::layer_key(T, tl, &layer(i), g(gen_));
            self.objects.insert(key.as_str().to_string(), bytes);
            index.layer_metadata.insert(layer(i), meta);
        }
        let version = IndexVersion { generation: g(gen_), seq };
        let key = remote_path::index_key(T, tl, version);
        self.objects.insert(key.as_str().to_string(), index.to_json_bytes());
    }

    fn local(&self, tl: TimelineId) -> Vec<String> {
        let dir = io::timeline_dir(T, tl);
        self.files
            .keys()
            .filter(|p| p.parent() == Some(dir.as_path()))
            .map(|p| p.file_name().unwrap().to_string())
            .collect()
    }

    fn complete(&mut self, effect: &SecondaryEffect) -> SecondaryCompletion {
        match effect {
            SecondaryEffect::ListTimelines { .. } => {
                let prefix = remote_path::timelines_prefix(T);
                let listed = self
                    .objects
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| Listed {
                        name: k.clone(),
                        is_dir: false,
                        size_bytes: v.len() as u64,
                    })
                    .collect();
                SecondaryCompletion::Listing(Ok(listed))
            }
            SecondaryEffect::GetIndex { timeline, version, .. } => {
                let key = remote_path::index_key(T, *timeline, *version);
                SecondaryCompletion::Bytes(self.objects.get(key.as_str()).cloned().ok_or_else(
                    || IoError::remote(IoErrorKind::NotFound, key.as_str(), "no such key"),
                ))
            }
            SecondaryEffect::ListLocal { timeline, .. } => {
                let dir = io::timeline_dir(T, *timeline);
                let listed = self
                    .files
                    .iter()
                    .filter(|(p, _)| p.parent() == Some(dir.as_path()))
                    .map(|(p, v)| Listed {
                        name: p.file_name().unwrap().to_string(),
                        is_dir: false,
                        size_bytes: v.len() as u64,
                    })
                    .collect();
                SecondaryCompletion::Listing(Ok(listed))
            }
            SecondaryEffect::Download { timeline, name, meta, .. } => {
                let key = remote_path::layer_key(T, *timeline, name, meta.generation);
                let Some(mut bytes) = self.objects.get(key.as_str()).cloned() else {
                    let e = IoError::remote(IoErrorKind::NotFound, key.as_str(), "no such key");
                    return SecondaryCompletion::Done(Err(e));
                };
                if self.corrupt_downloads > 0 {
                    self.corrupt_downloads -= 1;
                    bytes[0] ^= 1;
                }
                // The adapters' check: nothing under the name unless it passes.
                let expected = SecondaryEffect::expected(meta);
                if bytes.len() as u64 != expected.size_bytes
                    || crc32c::crc32c(&bytes) != expected.crc32c
                {
                    let e = IoError::remote(IoErrorKind::Corrupt, key.as_str(), "check refused");
                    return SecondaryCompletion::Done(Err(e));
                }
                let path = io::layer_path(T, *timeline, name);
                self.files.insert(path.clone(), bytes);
                if self.fsync_failures > 0 {
                    self.fsync_failures -= 1;
                    let e = IoError::local(IoErrorKind::FsyncFailed, path, "fsync failed (test)");
                    return SecondaryCompletion::Done(Err(e));
                }
                SecondaryCompletion::Done(Ok(()))
            }
            SecondaryEffect::ReadLocal { timeline, name, .. } => {
                let path = io::layer_path(T, *timeline, name);
                SecondaryCompletion::Bytes(self.files.get(&path).cloned().ok_or_else(|| {
                    IoError::local(IoErrorKind::NotFound, path.clone(), "no such file")
                }))
            }
            SecondaryEffect::RemoveLocal { timeline, file, .. } => {
                let path = io::timeline_dir(T, *timeline).join(file);
                SecondaryCompletion::Done(self.files.remove(&path).map(|_| ()).ok_or_else(|| {
                    IoError {
                        kind: IoErrorKind::NotFound,
                        target: IoTarget::Local(path),
                        message: "gone".into(),
                    }
                }))
            }
        }
    }
}

struct Harness {
    world: World,
    machine: WarmSecondary,
    now: Instant,
}

impl Harness {
    fn new(world: World, config: SecondaryConfig) -> Harness {
        let now = Instant(1_000);
        let mut h = Harness { world, machine: WarmSecondary::new(T, config, now), now };
        h.settle();
        h
    }

    /// Executes effects until the machine is quiet (held ones stay held).
    fn settle(&mut self) {
        for _ in 0..100_000 {
            self.machine.check_invariants();
            let Some(effect) = self.machine.poll_effect() else { return };
            if self.world.hold {
                self.world.held.push(effect);
                let downloads = self
                    .world
                    .held
                    .iter()
                    .filter(|e| matches!(e, SecondaryEffect::Download { .. }))
                    .count();
                self.world.max_downloads_in_flight =
                    self.world.max_downloads_in_flight.max(downloads);
                continue;
            }
            let completion = self.world.complete(&effect);
            self.machine.handle_completion(self.now, effect.op(), completion).unwrap();
        }
        panic!("did not settle");
    }

    /// Completes the oldest held effect.
    fn release_one(&mut self) -> bool {
        if self.world.held.is_empty() {
            return false;
        }
        let effect = self.world.held.remove(0);
        let completion = self.world.complete(&effect);
        self.machine.handle_completion(self.now, effect.op(), completion).unwrap();
        self.settle();
        true
    }

    /// Advances to the refresh timer and fires it.
    fn refresh(&mut self) {
        let (at, timer) = self.machine.next_timer().expect("idle with a timer");
        self.now = self.now.max(at);
        self.machine.handle_timeout(self.now, timer);
        self.settle();
    }
}

fn config() -> SecondaryConfig {
    SecondaryConfig {
        download_concurrency: 2,
        tenant_bytes_max: 1 << 30,
        refresh_interval_ms: 10_000,
    }
}

fn names(ids: &[u64]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|i| layer(*i).to_string()).collect();
    v.sort();
    v
}

#[test]
fn downloads_every_layer_the_newest_index_lists() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1, 2, 3], 100);
    world.publish(TL2, 1, 4, &[4, 5], 50);
    let h = Harness::new(world, config());
    assert_eq!(h.world.local(TL1), names(&[1, 2, 3]));
    assert_eq!(h.world.local(TL2), names(&[4, 5]));
    let stats = h.machine.stats();
    assert_eq!((stats.downloaded_layers, stats.downloaded_bytes), (5, 400));
    assert!(matches!(h.machine.phase(), Phase::Idle { .. }));
    assert_eq!(h.machine.kept_layers().count(), 5);
}

#[test]
fn downloads_stay_within_download_concurrency() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1, 2, 3, 4, 5, 6], 10);
    world.hold = true;
    let mut h = Harness::new(world, config());
    while h.release_one() {
        let downloads =
            h.world.held.iter().filter(|e| matches!(e, SecondaryEffect::Download { .. })).count();
        assert!(downloads <= 2, "{downloads} downloads in flight");
    }
    assert_eq!(h.world.max_downloads_in_flight, 2);
    assert_eq!(h.world.local(TL1).len(), 6);
}

#[test]
fn local_files_the_index_does_not_list_are_removed() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1, 2], 100);
    let dir = io::timeline_dir(T, TL1);
    world.files.insert(dir.join(layer(9).to_string()), vec![1; 7]);
    world.files.insert(dir.join("junk"), vec![1; 7]);
    world.files.insert(dir.join(io::METADATA_FILE_NAME), vec![0; 128]);
    // A listed layer with the wrong size is downloaded again (replaced whole).
    world.files.insert(dir.join(layer(2).to_string()), vec![1; 3]);
    let h = Harness::new(world, config());
    let mut want = names(&[1, 2]);
    want.push(io::METADATA_FILE_NAME.to_string());
    want.sort();
    assert_eq!(h.world.local(TL1), want);
    assert_eq!(h.world.files[&dir.join(layer(2).to_string())], bytes_of(2, 100));
    assert_eq!(h.machine.stats().removed_files, 2);
}

#[test]
fn layers_already_local_with_their_size_are_kept_not_downloaded() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1, 2], 100);
    world.files.insert(io::layer_path(T, TL1, &layer(1)), bytes_of(1, 100));
    let h = Harness::new(world, config());
    assert_eq!(h.machine.stats().downloaded_layers, 1);
    assert_eq!(h.world.local(TL1), names(&[1, 2]));
}

/// A machine the node starts after an operation (`with_adopt(false)`): a layer file
/// it did not download may be this process's own, written while it held the tenant
/// attached, whose write may have failed its fsync (FSYNC-TRUST: never read back).
/// It is downloaded again, never read.
#[test]
fn a_machine_that_does_not_adopt_downloads_local_files_instead_of_reading_them() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1, 2], 100);
    world.files.insert(io::layer_path(T, TL1, &layer(1)), bytes_of(1, 100));
    let now = Instant(1_000);
    let machine = WarmSecondary::new(T, config(), now).with_adopt(false);
    let mut h = Harness { world, machine, now };
    h.settle();
    let stats = h.machine.stats();
    assert_eq!(stats.verified_layers + stats.mismatched_layers, 0, "it read a file back");
    assert_eq!(stats.downloaded_layers, 2);
    assert_eq!(h.world.local(TL1), names(&[1, 2]));
}

#[test]
fn a_local_file_of_the_right_size_with_other_bytes_is_downloaded_again() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1, 2], 100);
    // Left by an earlier run: layer 1 as it should be, layer 2 another object's
    // bytes under the same name and size.
    world.files.insert(io::layer_path(T, TL1, &layer(1)), bytes_of(1, 100));
    world.files.insert(io::layer_path(T, TL1, &layer(2)), bytes_of(7, 100));
    let h = Harness::new(world, config());
    let stats = h.machine.stats();
    assert_eq!((stats.verified_layers, stats.mismatched_layers), (1, 1));
    assert_eq!(stats.downloaded_layers, 1);
    assert_eq!(h.world.files[&io::layer_path(T, TL1, &layer(2))], bytes_of(2, 100));
}

#[test]
fn a_refresh_follows_a_newer_generations_index() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1, 2], 100);
    let mut h = Harness::new(world, config());
    assert_eq!(h.world.local(TL1), names(&[1, 2]));
    // Another node attached at generation 3 compacted 1 and 2 into 3 and 4; an
    // older generation's later index must not win.
    h.world.publish(TL1, 3, 2, &[3, 4], 100);
    h.world.publish(TL1, 2, 9, &[1, 2, 5], 100);
    let before = h.machine.stats().refreshes;
    h.refresh();
    assert_eq!(h.machine.stats().refreshes, before + 1);
    assert_eq!(h.world.local(TL1), names(&[3, 4]));
    // Nothing changed: the next refresh downloads nothing.
    let downloaded = h.machine.stats().downloaded_layers;
    h.refresh();
    assert_eq!(h.machine.stats().downloaded_layers, downloaded);
}

#[test]
fn the_byte_bound_keeps_the_newest_layers() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1, 2, 3, 4], 100);
    let mut c = config();
    c.tenant_bytes_max = 250;
    let h = Harness::new(world, c);
    assert_eq!(h.world.local(TL1), names(&[3, 4]));
    assert_eq!(h.machine.stats().skipped_over_budget, 2);
}

#[test]
fn a_crash_mid_download_leaves_a_temporary_file_that_the_next_run_removes() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1, 2], 100);
    world.hold = true;
    let mut h = Harness::new(world, config());
    while !h.world.held.iter().any(|e| matches!(e, SecondaryEffect::Download { .. })) {
        assert!(h.release_one());
    }
    // Killed while the adapter streamed into its temporary file: the layer's name
    // never appeared, a prefix sits under the temporary name.
    let dir = io::timeline_dir(T, TL1);
    let temp = format!("{}.4711.___temp", layer(2));
    h.world.files.insert(dir.join(&temp), bytes_of(2, 40));
    let mut world = std::mem::take(&mut h.world);
    world.held.clear();
    world.hold = false;
    assert!(world.local(TL1).iter().all(|f| f.parse::<LayerName>().is_err()));
    // Restarted: the temporary file is removed, both layers downloaded whole.
    let h = Harness::new(world, config());
    assert_eq!(h.world.local(TL1), names(&[1, 2]));
    assert_eq!(h.world.files[&io::layer_path(T, TL1, &layer(2))], bytes_of(2, 100));
}

#[test]
fn a_refused_download_is_tried_again_at_the_next_refresh() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1], 100);
    world.corrupt_downloads = 1;
    let mut h = Harness::new(world, config());
    assert!(h.world.local(TL1).is_empty());
    assert_eq!(h.machine.stats().failed_downloads, 1);
    h.refresh();
    assert_eq!(h.world.local(TL1), names(&[1]));
}

#[test]
fn the_file_of_a_download_whose_fsync_failed_is_removed_not_kept() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1], 100);
    world.fsync_failures = 1;
    let mut h = Harness::new(world, config());
    assert!(h.world.local(TL1).is_empty(), "an untrusted file was kept");
    assert_eq!(h.machine.kept_layers().count(), 0);
    h.refresh();
    assert_eq!(h.world.local(TL1), names(&[1]));
}

#[test]
fn a_stop_starts_nothing_new_and_drains_what_is_in_flight() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1, 2, 3, 4], 100);
    world.hold = true;
    let mut h = Harness::new(world, config());
    while !h.world.held.iter().any(|e| matches!(e, SecondaryEffect::Download { .. })) {
        assert!(h.release_one());
    }
    h.machine.handle_stop(h.now);
    assert_eq!(h.machine.phase(), &Phase::Draining);
    assert_eq!(h.machine.in_flight(), 2);
    while h.release_one() {}
    assert!(matches!(h.machine.phase(), Phase::Idle { .. }));
    assert_eq!(h.world.local(TL1).len(), 2, "only the two in flight landed");
}

#[test]
fn a_tombstoned_timeline_keeps_nothing_and_a_deletion_mark_stops_following() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1], 100);
    let mut h = Harness::new(world, config());
    assert_eq!(h.world.local(TL1), names(&[1]));
    let mut index = IndexPart::empty(TimelineMetadata::default());
    index.seq = 2;
    index.deleted_at = Some(crate::time::WallTime(5));
    let key = remote_path::index_key(T, TL1, IndexVersion { generation: g(1), seq: 2 });
    h.world.objects.insert(key.as_str().to_string(), index.to_json_bytes());
    h.refresh();
    assert!(h.world.local(TL1).is_empty());
    h.world.publish(TL2, 1, 1, &[2], 100);
    let mark = remote_path::tenant_deletion_mark_key(T);
    h.world.objects.insert(mark.as_str().to_string(), Vec::new());
    h.refresh();
    assert!(h.world.local(TL2).is_empty());
}

#[test]
fn illegal_completions_are_typed_errors() {
    let mut world = World::default();
    world.publish(TL1, 1, 1, &[1], 100);
    world.hold = true;
    let mut h = Harness::new(world, config());
    let op = h.world.held[0].op();
    let wrong = SecondaryCompletion::Done(Ok(()));
    assert!(matches!(
        h.machine.handle_completion(h.now, op, wrong),
        Err(SecondaryError::WrongKind { .. })
    ));
    let unknown = SecondaryCompletion::Done(Ok(()));
    assert_eq!(
        h.machine.handle_completion(h.now, OpId(999), unknown),
        Err(SecondaryError::UnknownOp(OpId(999)))
    );
    h.machine.check_invariants();
}

// ---- random histories ----

use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    /// Another node publishes an index of timeline `tl` at generation `gen_`
    /// naming layers `ids` (a bit set over 0..8).
    Publish {
        tl: bool,
        gen_: u32,
        ids: u8,
    },
    /// The held effect `pick` completes: as the world does it, or failed.
    Complete {
        pick: usize,
        fail: bool,
    },
    Refresh,
    Stop,
    /// The node dies: each download in flight landed whole or left its temporary
    /// file; a new machine starts.
    Crash {
        land: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (any::<bool>(), 1u32..4, any::<u8>()).prop_map(|(tl, gen_, ids)| Step::Publish { tl, gen_, ids }),
        10 => (any::<usize>(), proptest::bool::weighted(0.2)).prop_map(|(pick, fail)| Step::Complete { pick, fail }),
        2 => Just(Step::Refresh),
        1 => Just(Step::Stop),
        1 => any::<bool>().prop_map(|land| Step::Crash { land }),
    ]
}

fn ids_of(bits: u8) -> Vec<u64> {
    (0..8).filter(|i| bits & (1 << i) != 0).collect()
}

/// Runs `steps`, then heals (nothing held, two refreshes) and checks that each
/// timeline's directory holds exactly its newest index's layers, byte for byte.
fn run_history(steps: &[Step]) {
    let world = World { hold: true, ..Default::default() };
    let mut newest: BTreeMap<TimelineId, (u32, u64, u8)> = BTreeMap::new();
    let mut seq = 0u64;
    let mut h = Harness::new(world, config());
    for s in steps {
        match s {
            Step::Publish { tl, gen_, ids } => {
                let tl = if *tl { TL1 } else { TL2 };
                seq += 1;
                // Same sizes in every generation: only the bytes (CRC) differ.
                h.world.publish_salted(tl, *gen_, seq, &ids_of(*ids), 64, 100 * *gen_ as u64);
                let e = newest.entry(tl).or_insert((*gen_, seq, *ids));
                if (*gen_, seq) > (e.0, e.1) {
                    *e = (*gen_, seq, *ids);
                }
            }
            Step::Complete { pick, fail } => {
                if h.world.held.is_empty() {
                    continue;
                }
                let effect = h.world.held.remove(pick % h.world.held.len());
                let completion = if *fail {
                    let e = IoError::remote(IoErrorKind::Transient, "x", "injected");
                    match effect {
                        SecondaryEffect::ListTimelines { .. }
                        | SecondaryEffect::ListLocal { .. } => SecondaryCompletion::Listing(Err(e)),
                        SecondaryEffect::GetIndex { .. } | SecondaryEffect::ReadLocal { .. } => {
                            SecondaryCompletion::Bytes(Err(e))
                        }
                        _ => SecondaryCompletion::Done(Err(e)),
                    }
                } else {
                    h.world.complete(&effect)
                };
                h.machine.handle_completion(h.now, effect.op(), completion).unwrap();
                h.settle();
            }
            Step::Refresh => {
                if let Some((at, timer)) = h.machine.next_timer() {
                    h.now = h.now.max(at);
                    h.machine.handle_timeout(h.now, timer);
                    h.settle();
                }
            }
            Step::Stop => {
                h.machine.handle_stop(h.now);
                h.settle();
            }
            Step::Crash { land } => {
                for effect in std::mem::take(&mut h.world.held) {
                    if let SecondaryEffect::Download { timeline, name, .. } = &effect {
                        if *land {
                            h.world.complete(&effect);
                        } else {
                            let temp = format!("{name}.{}.___temp", effect.op());
                            h.world
                                .files
                                .insert(io::timeline_dir(T, *timeline).join(temp), vec![7; 5]);
                        }
                    }
                }
                h.machine = WarmSecondary::new(T, config(), h.now);
                h.settle();
            }
        }
        // Whatever the machine says it keeps is on disk, with its index's bytes.
        for (tl, name) in h.machine.kept_layers() {
            let path = io::layer_path(T, *tl, name);
            let bytes = h.world.files.get(&path).expect("a kept layer is on disk");
            let meta = &h.machine.indexes[tl][name];
            assert_eq!(crc32c::crc32c(bytes), meta.crc32c, "kept {name} with other bytes");
        }
    }
    // Heal: nothing held any more, two refreshes.
    h.world.hold = false;
    while h.release_one() {}
    h.refresh();
    h.refresh();
    for tl in [TL1, TL2] {
        let want = newest.get(&tl).map(|(_, _, ids)| names(&ids_of(*ids))).unwrap_or_default();
        assert_eq!(h.world.local(tl), want, "timeline {tl} after healing");
        if let Some((gen_, _, ids)) = newest.get(&tl) {
            for i in ids_of(*ids) {
                let bytes = &h.world.files[&io::layer_path(T, tl, &layer(i))];
                assert_eq!(bytes, &bytes_of(i + 100 * *gen_ as u64, 64), "layer {i} (gen {gen_})");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Completions in any order, failures, stops and crashes: every input keeps
    /// `check_invariants`, what is kept is on disk, and once healed each directory
    /// holds exactly its newest index's layers with their bytes.
    #[test]
    fn random_histories_converge_on_the_newest_index(
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        run_history(&steps);
    }
}
