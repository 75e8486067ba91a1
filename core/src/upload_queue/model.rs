//! The upload queue's reference model and the step language its property test and
//! fuzz target share: random inputs, completion orders, every failure kind, lost
//! responses, late writes, mode changes, crashes (each in-flight write landed or
//! not) and re-added keys. After every step the harness checks the machine's
//! invariants and the world's (S-IDX-ORDER on every index PUT, S-IDX-REF /
//! S-DEL-AFTER-INDEX on the newest index in storage, S-SINGLE-WRITER on every
//! effect); [`apply`] adds the model's view (the layer set, S-GEN-SUFFIX,
//! S-PROJECTED). At the end of [`run`] faults stop, and nothing may be lost: the
//! newest index is exactly the model, and projected = visible = disk_consistent.
//!
//! Compiled for tests (`model_tests.rs` draws steps with proptest) and under the
//! `fuzzing` feature (the `upload_queue` fuzz target draws them with `arbitrary`).

use super::harness::*;
use super::*;
use crate::generation::Generation;
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use crate::remote_path::layer_key;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

/// The reference: what the remote state should converge to.
#[derive(Debug, Default)]
pub struct Model {
    pub layers: BTreeMap<LayerName, Generation>,
    pub lsn: u64,
}

#[derive(Clone, Debug)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Step {
    /// Indexes (`u16`) pick among what is outstanding, modulo its length.
    Add(u8),
    Unlink(u8),
    SetMetadata,
    Barrier,
    Complete(u16, Finish),
    ApplyLate(u16),
    FinishDeletion(u16, bool),
    Validate(bool),
    Timer,
    /// Stop (detach), the stopped queue sees in-flight completions (bit i of the
    /// mask: the i-th succeeded), then re-attach in the next generation.
    StopRestart(u8),
    Mode(AttachMode),
    /// Bit i of the mask: the i-th in-flight write landed before the crash.
    Crash(u8),
}

/// A small pool of layer ids, so unlinked keys are re-added often.
pub const LAYER_POOL: u8 = 8;

/// The `i`-th of `len` things, wrapping around (`len` > 0).
pub fn pick(i: u16, len: usize) -> usize {
    usize::from(i) % len
}

pub fn check_model(h: &Harness, m: &Model) {
    let got: BTreeMap<LayerName, Generation> =
        h.q.remote_layers().iter().map(|(n, meta)| (n.clone(), meta.generation)).collect();
    assert_eq!(got, m.layers, "the layer set (and S-GEN-SUFFIX)");
    assert_eq!(h.q.metadata().disk_consistent_lsn, Lsn(m.lsn));
    assert!(h.q.visible_lsn() <= h.q.projected_lsn(), "S-PROJECTED");
    assert!(h.q.projected_lsn() <= Lsn(m.lsn), "S-PROJECTED");
}

pub fn started() -> (Harness, Model) {
    let mut h = Harness::new_timeline(AttachMode::Single);
    h.settle();
    (h, Model { layers: BTreeMap::new(), lsn: 0x10 })
}

/// Feeds one step to the machine and the model alike.
pub fn apply(h: &mut Harness, m: &mut Model, s: Step) {
    {
        // A permanent failure (only `Finish::Failed` injects one) breaks the queue:
        // every change is refused until a restart (a `Crash` step) recovers it.
        let broken = match h.q.state() {
            QueueState::Broken { reason } => Some(UploadQueueError::Broken(reason.clone())),
            _ => None,
        };
        match s {
            Step::Add(_) | Step::Unlink(_) | Step::SetMetadata if broken.is_some() => {
                let r = match s {
                    Step::Add(i) => h.add(u64::from(i), 10 + u64::from(i) * 7),
                    Step::Unlink(i) => {
                        h.input(UploadInput::UnlinkLayers(vec![layer(u64::from(i))])).map(|_| ())
                    }
                    _ => h.input(UploadInput::SetMetadata(md(m.lsn + 0x10))).map(|_| ()),
                };
                assert_eq!(r, Err(broken.expect("checked")), "a broken queue refuses changes");
            }
            Step::Add(i) => {
                // One name, one content (size): see `ContentChanged`.
                let name = layer(u64::from(i));
                let r = h.add(u64::from(i), 10 + u64::from(i) * 7);
                match m.layers.entry(name) {
                    Entry::Occupied(e) => {
                        assert_eq!(r, Err(UploadQueueError::LayerAlreadyPresent(e.key().clone())));
                    }
                    Entry::Vacant(e) => {
                        r.expect("add");
                        e.insert(h.q.generation());
                    }
                }
            }
            Step::Unlink(i) => {
                let name = layer(u64::from(i));
                let r = h.input(UploadInput::UnlinkLayers(vec![name.clone()])).map(|_| ());
                match m.layers.remove(&name) {
                    Some(_) => {
                        r.expect("unlink");
                        // As the timeline does: the local file goes after the unlink.
                        h.input(UploadInput::RemoveLocal(name)).expect("always taken");
                    }
                    None => assert_eq!(r, Err(UploadQueueError::UnknownLayer(name))),
                }
            }
            Step::SetMetadata => {
                m.lsn += 0x10;
                h.input(UploadInput::SetMetadata(md(m.lsn))).expect("set metadata");
            }
            Step::Barrier => _ = h.barrier(),
            Step::Complete(_, _) if h.outstanding.is_empty() => {}
            Step::Complete(i, how) => h.complete(pick(i, h.outstanding.len()), how),
            Step::ApplyLate(_) if h.late.is_empty() => {}
            Step::ApplyLate(i) => h.apply_late(pick(i, h.late.len())),
            Step::FinishDeletion(_, _) if h.handed.is_empty() => {}
            Step::FinishDeletion(i, cancel_wins) => {
                h.finish_deletion(pick(i, h.handed.len()), cancel_wins);
            }
            Step::Validate(valid) => h.validate(valid),
            Step::Timer => _ = h.fire_timer(),
            Step::StopRestart(mask) => {
                h.input(UploadInput::Stop).expect("stop is always taken");
                let mut i = 0;
                while !h.outstanding.is_empty() {
                    let how =
                        if mask & (1 << (i % 8)) != 0 { Finish::Ok } else { Finish::Transient };
                    h.complete(0, how);
                    i += 1;
                }
                assert!(h.outstanding.is_empty(), "a stopped queue started work");
                let mode = h.q.mode();
                h.crash_and_recover(|_| false, mode);
                let (_, index) = h.newest_index(h.q.generation()).expect("an index survives");
                m.layers =
                    index.layer_metadata.iter().map(|(n, l)| (n.clone(), l.generation)).collect();
                m.lsn = index.disk_consistent_lsn.0;
            }
            Step::Mode(mode) => _ = h.input(UploadInput::ModeChanged(mode)).expect("taken"),
            Step::Crash(mask) => {
                let mode = h.q.mode();
                h.crash_and_recover(|i| mask & (1 << (i % 8)) != 0, mode);
                let (_, index) = h.newest_index(h.q.generation()).expect("an index survives");
                m.layers =
                    index.layer_metadata.iter().map(|(n, l)| (n.clone(), l.generation)).collect();
                m.lsn = index.disk_consistent_lsn.0;
            }
        }
        check_model(h, m);
    }
}

/// Runs `steps`, then heals and checks that nothing was lost.
pub fn run(steps: Vec<Step>) {
    let (mut h, mut m) = started();
    for s in steps {
        apply(&mut h, &mut m, s);
    }
    // Faults stop: a broken queue is restarted, back to Single, late writes land,
    // one more change, settle.
    if matches!(h.q.state(), QueueState::Broken { .. }) {
        apply(&mut h, &mut m, Step::Crash(0));
    }
    h.input(UploadInput::ModeChanged(AttachMode::Single)).expect("taken");
    while !h.late.is_empty() {
        h.apply_late(0);
    }
    m.lsn += 0x10;
    h.input(UploadInput::SetMetadata(md(m.lsn))).expect("set metadata");
    h.settle();
    check_model(&h, &m);
    assert!(h.q.is_idle(), "work left after healing");
    assert!(!h.backpressure);
    let (version, index) = h.newest_index(h.q.generation()).expect("an index");
    assert_eq!(version.generation, h.q.generation());
    let indexed: BTreeMap<LayerName, Generation> =
        index.layer_metadata.iter().map(|(n, l)| (n.clone(), l.generation)).collect();
    assert_eq!(indexed, m.layers, "no lost upload: the newest index is the model");
    assert_eq!(index.disk_consistent_lsn, Lsn(m.lsn));
    for (name, generation) in &m.layers {
        assert!(h.store.contains_key(&layer_key(TENANT, TIMELINE, name, *generation)));
    }
    assert_eq!((h.q.projected_lsn(), h.q.visible_lsn()), (Lsn(m.lsn), Lsn(m.lsn)));
    for (id, result) in &h.barriers {
        assert_eq!(result, &Some(Ok(())), "barrier {id:?} after healing");
    }
}

/// Timeline deletion under faults: after a random history, delete; then random
/// completions, failures, deletion outcomes and crashes. Once the tombstone is the
/// newest index, it stays the newest index while any index object exists, and a
/// finished deletion leaves nothing behind (the listing finds what earlier runs
/// left). Writes given up on before the deletion are dropped here: one landing
/// after everything is gone would leak, which no ordering can prevent.
pub fn run_deletion(prefix: Vec<Step>, after: Vec<Step>) {
    let (mut h, mut m) = started();
    for s in prefix {
        apply(&mut h, &mut m, s);
    }
    h.late.clear();
    if matches!(h.q.state(), QueueState::Broken { .. }) {
        apply(&mut h, &mut m, Step::Crash(0));
    }
    h.input(UploadInput::ModeChanged(AttachMode::Single)).expect("taken");
    h.delete_timeline().expect("delete in Single");
    let mut tombstoned = false;
    for s in after {
        match s {
            Step::Complete(_, _) if h.outstanding.is_empty() => {}
            Step::Complete(i, how) => {
                let how = if how == Finish::Late { Finish::LostResponse } else { how };
                h.complete(pick(i, h.outstanding.len()), how);
            }
            Step::FinishDeletion(_, _) if h.handed.is_empty() => {}
            Step::FinishDeletion(i, cancel_wins) => {
                h.finish_deletion(pick(i, h.handed.len()), cancel_wins);
            }
            Step::Timer => _ = h.fire_timer(),
            Step::Validate(valid) => h.validate(valid),
            Step::ApplyLate(_) if h.listings.is_empty() => {}
            Step::ApplyLate(i) => {
                let i = pick(i, h.listings.len() * 2);
                h.complete_listing(i / 2, i.is_multiple_of(2));
            }
            Step::Add(i) => {
                let r = h.add(u64::from(i), 10 + u64::from(i) * 7);
                let open = matches!(h.q.state(), QueueState::Active);
                assert!(open || r.is_err(), "a deleting queue took a layer");
                if r.is_ok() {
                    m.layers.insert(layer(u64::from(i)), h.q.generation());
                }
            }
            Step::Crash(mask) if !matches!(h.q.state(), QueueState::Deleted) => {
                if !h.try_crash_and_recover(|i| mask & (1 << (i % 8)) != 0, AttachMode::Single) {
                    // No index at all: only possible before the first one landed.
                    assert!(h.store.is_empty(), "left: {:?}", h.store.keys().collect::<Vec<_>>());
                    return;
                }
                if h.q.state() == &QueueState::Active {
                    // The tombstone never landed: delete again.
                    h.delete_timeline().expect("delete after restart");
                }
            }
            _ => {}
        }
        let newest = h.newest_index(h.q.generation()).map(|(_, i)| i.deleted_at.is_some());
        if newest == Some(true) {
            tombstoned = true;
        }
        if tombstoned {
            assert_ne!(newest, Some(false), "an older index came back after the tombstone");
        }
    }
    if matches!(h.q.state(), QueueState::Broken { .. }) {
        // A permanent failure (only `Finish::Failed` injects one) broke the queue
        // mid-deletion: the operator restarts the node, and the deletion resumes.
        if !h.try_crash_and_recover(|_| false, AttachMode::Single) {
            assert!(h.store.is_empty(), "left: {:?}", h.store.keys().collect::<Vec<_>>());
            return;
        }
        if h.q.state() == &QueueState::Active {
            h.delete_timeline().expect("delete after restart");
        }
    }
    h.settle();
    if matches!(h.q.state(), QueueState::Deleted) {
        assert!(h.deleted);
        // Everything but the newest tombstone, which stays for good.
        assert_eq!(h.store.len(), 1, "left behind: {:?}", h.store.keys().collect::<Vec<_>>());
        let newest = h.newest_index(h.q.generation()).map(|(_, i)| i.deleted_at.is_some());
        assert_eq!(newest, Some(true), "the one object left is not the tombstone");
    } else {
        assert_eq!(h.q.state(), &QueueState::Tombstoned, "deletion neither done nor recoverable");
    }
}
