//! The read path: `get(key, lsn)`.
//!
//! 1. Wait until `lsn` is ingested (up to `read_wait_timeout_ms`, then
//!    [`ReadError::WaitTimeout`]); a read below the gc cutoff fails at once.
//! 2. Collect records of `key` at or below `lsn`, newest first: the open layer, the
//!    frozen layers, then layer files chosen by the layer map, until an image is
//!    found or nothing older exists. A file is read whole (`ReadLayer`; under a node
//!    the node's page cache may answer it without I/O), parsed and verified against
//!    the checksum the map records — cached bytes included; a remote-only layer is
//!    downloaded first (one download per layer, shared by every read waiting for it).
//! 3. A file that fails to read or verify is treated as missing: it becomes
//!    remote-only and is downloaded again, once per read; a second failure fails the
//!    read with [`ReadError::LayerUnavailable`]. A download whose bytes do not match
//!    the index (the remote object itself is corrupt) fails the read with
//!    [`ReadError::LayerCorrupt`]: no retry can help. Wrong bytes are never served.
//!    A failed download's local file, if it left one, is removed (`EvictLayer`):
//!    a download whose directory fsync failed is never read back (FSYNC-TRUST), by
//!    this timeline or by the one a tenant restart recovers from the directory.
//!    Crash argument: the file's data was fsynced before its rename, so a crash
//!    leaves either no file or whole, verified bytes under the name.
//! 4. No records: `None`. An image and no deltas: the image. Otherwise a `Redo`
//!    effect reconstructs the value.

use super::layer_map::{LayerMap, Residence};
use super::{OpKind, ReadError, ReadId, Timeline, TimelineEffect};
use crate::id::OpId;
use crate::io_error::{IoError, IoErrorKind};
use crate::key::Key;
use crate::layer_file::LayerFile;
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use crate::page_cache::RequestKind;
use crate::redo::{DeltaOp, Record, RedoRequest};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

/// Whom a read answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reader {
    /// A caller of [`Timeline::handle_read`]: answered by a `ReadDone` effect.
    Caller(ReadId),
    /// Ingest needs the size of this key's value at the last ingested LSN
    /// (`value_sizes.rs`); answered to the timeline itself.
    SizeProbe(Key),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReadState {
    WaitingForLsn {
        since: Instant,
        deadline: Instant,
    },
    /// Ready to take the next step (transient, inside one transition).
    Searching,
    ReadingLayer {
        op: OpId,
        name: LayerName,
    },
    Downloading {
        name: LayerName,
    },
    Redoing {
        op: OpId,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Read {
    key: Key,
    lsn: Lsn,
    state: ReadState,
    /// Records below this LSN are still to be searched.
    cont: Lsn,
    /// Collected deltas, newest first.
    deltas: Vec<Vec<DeltaOp>>,
    image: Option<Vec<u8>>,
    found_any: bool,
    /// Layers this read already downloaded once: a second failure is final.
    downloaded: BTreeSet<LayerName>,
}

impl Read {
    pub(crate) fn new(key: Key, lsn: Lsn, now: Instant, deadline: Instant) -> Self {
        Read {
            key,
            lsn,
            state: ReadState::WaitingForLsn { since: now, deadline },
            cont: lsn.next(),
            deltas: Vec::new(),
            image: None,
            found_any: false,
            downloaded: BTreeSet::new(),
        }
    }

    pub(crate) fn wait_deadline(&self) -> Option<Instant> {
        match self.state {
            ReadState::WaitingForLsn { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// Takes one record (newest first). Returns true once an image ends the search.
    fn take(&mut self, record: &Record) -> bool {
        self.found_any = true;
        match record {
            Record::Image(v) => {
                self.image = Some(v.clone());
                true
            }
            Record::Delta(ops) => {
                self.deltas.push(ops.clone());
                false
            }
        }
    }

    pub(crate) fn check(&self, id: Reader, ops: &BTreeMap<OpId, OpKind>, layers: &LayerMap) {
        match &self.state {
            ReadState::WaitingForLsn { .. } => {}
            ReadState::Searching => panic!("{id:?} left in Searching"),
            ReadState::ReadingLayer { op, name } => {
                let expected = OpKind::ReadLayer { read: id, name: name.clone() };
                assert_eq!(ops.get(op), Some(&expected), "{id:?} reads through an op not its own");
            }
            ReadState::Downloading { name } => {
                let r = layers.layers.get(name).map(|e| e.residence);
                assert!(
                    matches!(r, Some(Residence::Downloading { .. })),
                    "{id:?} waits for {name}, which is not downloading"
                );
            }
            ReadState::Redoing { op } => {
                let expected = OpKind::Redo { read: id };
                assert_eq!(ops.get(op), Some(&expected), "{id:?} redoes through an op not its own");
            }
        }
    }
}

impl Timeline {
    /// Whom an in-flight `ReadLayer` or `Redo` op serves, for the node's page cache:
    /// a read ([`RequestKind::Get`]) or background work (compaction inputs, image
    /// creation). Unknown ops count as background.
    pub fn op_request_kind(&self, op: OpId) -> RequestKind {
        match self.ops.get(&op) {
            Some(OpKind::ReadLayer { .. } | OpKind::Redo { .. }) => RequestKind::Get,
            _ => RequestKind::Background,
        }
    }

    /// Starts reads whose LSN has been ingested.
    pub(super) fn pump_reads(&mut self, _now: Instant) {
        let ready: Vec<Reader> = self
            .reads
            .iter()
            .filter(|(_, r)| {
                matches!(r.state, ReadState::WaitingForLsn { .. }) && r.lsn <= self.last_ingested
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            self.search_in_memory(id);
            self.advance(id);
        }
    }

    pub(super) fn expire_waiting_reads(&mut self, now: Instant) {
        let expired: Vec<(Reader, u64)> = self
            .reads
            .iter()
            .filter_map(|(id, r)| match r.state {
                ReadState::WaitingForLsn { since, deadline }
                    if deadline <= now && r.lsn > self.last_ingested =>
                {
                    Some((*id, now.millis_since(since)))
                }
                _ => None,
            })
            .collect();
        for (id, waited_ms) in expired {
            let lsn = self.reads[&id].lsn;
            let last_ingested = self.last_ingested;
            self.finish(id, Err(ReadError::WaitTimeout { lsn, last_ingested, waited_ms }));
        }
    }

    fn search_in_memory(&mut self, id: Reader) {
        let read = self.reads.get_mut(&id).expect("caller holds a live read id");
        read.state = ReadState::Searching;
        let mut done = false;
        for layer in std::iter::once(&self.open).chain(self.frozen.iter().rev()) {
            if done {
                break;
            }
            for (_, record) in layer.newest_first(read.key, read.lsn) {
                if read.take(record) {
                    done = true;
                    break;
                }
            }
            read.cont = read.cont.min(layer.start);
        }
        if done {
            read.cont = Lsn::ZERO;
        }
    }

    /// Takes steps for a read in `Searching` until it waits on an effect or ends.
    fn advance(&mut self, id: Reader) {
        loop {
            let read = &self.reads[&id];
            let next = if read.image.is_some() || read.cont == Lsn::ZERO {
                None
            } else {
                self.layers.next_layer(read.key, read.cont)
            };
            let Some((name, range)) = next else {
                self.reconstruct(id);
                return;
            };
            let key = read.key;
            let entry = self.layers.layers.get(&name).expect("next_layer returns mapped layers");
            match entry.residence {
                Residence::Resident => {
                    self.touch(&name);
                    if let Some(file) = self.cache.get(&name) {
                        match file.records(key, range.clone()) {
                            Ok(records) => {
                                self.consume(id, &records, range.start);
                                continue;
                            }
                            // A block went bad in memory: forget it, read the file.
                            Err(_) => self.cache.remove(&name),
                        }
                    }
                    let op = self.new_op(OpKind::ReadLayer { read: id, name: name.clone() });
                    self.effects.push_back(TimelineEffect::ReadLayer { op, name: name.clone() });
                    self.read_mut(id).state = ReadState::ReadingLayer { op, name };
                }
                Residence::Downloading { .. } => {
                    self.read_mut(id).state = ReadState::Downloading { name };
                }
                Residence::RemoteOnly => {
                    self.start_download(&name);
                    let read = self.read_mut(id);
                    read.downloaded.insert(name.clone());
                    read.state = ReadState::Downloading { name };
                }
            }
            return;
        }
    }

    /// Takes a layer's records (oldest first) and continues below `start`.
    fn consume(&mut self, id: Reader, records: &[(Lsn, Record)], start: Lsn) {
        let read = self.read_mut(id);
        for (_, record) in records.iter().rev() {
            if read.take(record) {
                break;
            }
        }
        debug_assert!(start < read.cont, "a read must make progress");
        read.cont = start;
        read.state = ReadState::Searching;
    }

    pub(super) fn layer_read(
        &mut self,
        _now: Instant,
        id: Reader,
        name: LayerName,
        result: Result<Vec<u8>, IoError>,
    ) {
        let Some(entry) = self.layers.layers.get(&name) else {
            // The layer left the map while we read it; search again.
            self.read_mut(id).state = ReadState::Searching;
            self.advance(id);
            return;
        };
        let parsed = result.map_err(|e| format!("read failed: {e}")).and_then(|bytes| {
            LayerFile::parse(&name, bytes, Some(entry.meta.crc32c)).map_err(|e| e.to_string())
        });
        let read = &self.reads[&id];
        let (key, range) = match self.layers.next_layer(read.key, read.cont) {
            Some((n, range)) if n == name => (read.key, range),
            // The map changed under us (a newer layer appeared): search again.
            _ => {
                self.read_mut(id).state = ReadState::Searching;
                self.advance(id);
                return;
            }
        };
        let records = parsed.and_then(|f| {
            let records = f.records(key, range.clone()).map_err(|e| e.to_string())?;
            Ok((f, records))
        });
        match records {
            Ok((file, records)) => {
                self.cache.insert(file);
                self.consume(id, &records, range.start);
                self.advance(id);
            }
            Err(reason) => {
                if self.reads[&id].downloaded.contains(&name) {
                    self.finish(id, Err(ReadError::LayerUnavailable { name, reason }));
                    return;
                }
                // Treat the local copy as missing: download it again.
                self.cache.remove(&name);
                if let Some(e) = self.layers.layers.get_mut(&name)
                    && e.residence == Residence::Resident
                {
                    e.residence = Residence::RemoteOnly;
                }
                self.read_mut(id).state = ReadState::Searching;
                self.advance(id);
            }
        }
    }

    pub(super) fn layer_downloaded(
        &mut self,
        _now: Instant,
        name: LayerName,
        result: Result<(), IoError>,
    ) {
        let ok = result.is_ok();
        self.cache.remove(&name);
        if let Some(e) = self.layers.layers.get_mut(&name) {
            e.residence = if ok { Residence::Resident } else { Residence::RemoteOnly };
            if ok {
                self.touch(&name);
            }
        }
        if !ok {
            // FSYNC-TRUST: a download whose directory fsync failed has its file
            // under the layer's name, contents not to be trusted again; a tenant
            // restart would adopt it at load (single-node seed 5265905). Ask for its
            // removal as for an eviction (a file never written is NotFound: fine).
            self.effects.push_back(TimelineEffect::EvictLayer { name: name.clone() });
        }
        let waiting: Vec<Reader> = self
            .reads
            .iter()
            .filter(|(_, r)| matches!(&r.state, ReadState::Downloading { name: n } if *n == name))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            match &result {
                Ok(()) => {
                    let read = self.read_mut(id);
                    read.downloaded.insert(name.clone());
                    read.state = ReadState::Searching;
                    self.advance(id);
                }
                Err(e) if e.kind == IoErrorKind::Corrupt => {
                    let reason = format!("{}: {}", e.target, e.message);
                    self.finish(id, Err(ReadError::LayerCorrupt { name: name.clone(), reason }));
                }
                Err(e) => {
                    let reason = format!("download failed: {e}");
                    self.finish(
                        id,
                        Err(ReadError::LayerUnavailable { name: name.clone(), reason }),
                    );
                }
            }
        }
    }

    /// Starts the download of a remote-only layer (shared by every read and by
    /// compaction waiting for it). The layer keeps its own meta, generation included
    /// (S-GEN-SUFFIX, #5538).
    pub(super) fn start_download(&mut self, name: &LayerName) {
        let entry = self.layers.layers.get(name).expect("downloads are of mapped layers");
        debug_assert_eq!(entry.residence, Residence::RemoteOnly);
        let meta = entry.meta;
        let op = self.new_op(OpKind::Download { name: name.clone() });
        self.layers.layers.get_mut(name).expect("checked").residence =
            Residence::Downloading { op };
        self.effects.push_back(TimelineEffect::DownloadLayer { op, name: name.clone(), meta });
    }

    /// Layers left the map: reads waiting for one of them search again.
    pub(super) fn restart_reads_of(&mut self, names: &[LayerName]) {
        let waiting: Vec<Reader> = self
            .reads
            .iter()
            .filter(|(_, r)| matches!(&r.state, ReadState::Downloading { name } if names.contains(name)))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.read_mut(id).state = ReadState::Searching;
            self.advance(id);
        }
    }

    fn reconstruct(&mut self, id: Reader) {
        let read = self.read_mut(id);
        if !read.found_any {
            self.finish(id, Ok(None));
            return;
        }
        if read.deltas.is_empty() {
            let image = read.image.take();
            self.finish(id, Ok(image));
            return;
        }
        let mut deltas = std::mem::take(&mut read.deltas);
        deltas.reverse();
        let request = RedoRequest { base: read.image.take(), deltas };
        let op = self.new_op(OpKind::Redo { read: id });
        self.read_mut(id).state = ReadState::Redoing { op };
        self.effects.push_back(TimelineEffect::Redo { op, request });
    }

    pub(super) fn redone(&mut self, id: Reader, result: Result<Vec<u8>, IoError>) {
        self.finish(id, result.map(Some).map_err(|e| ReadError::Redo(e.message)));
    }

    fn finish(&mut self, id: Reader, result: Result<Option<Vec<u8>>, ReadError>) {
        let read = self.reads.remove(&id).expect("caller holds a live read id");
        // GC raised the cutoff above this read meanwhile: the layers it needed may
        // be gone, so whatever it collected is not served.
        let gc_cutoff = self.metadata.gc_cutoff_lsn;
        let result = match result {
            Err(ReadError::DuplicateReadId(_) | ReadError::WaitTimeout { .. }) => result,
            _ if read.lsn < gc_cutoff => Err(ReadError::BelowGcCutoff { lsn: read.lsn, gc_cutoff }),
            _ => result,
        };
        match id {
            Reader::Caller(req) => self.effects.push_back(TimelineEffect::ReadDone { req, result }),
            Reader::SizeProbe(key) => {
                let len = result.map(|v| v.map_or(0, |v| v.len())).map_err(|_| ());
                self.sizes.read_done(key, len);
            }
        }
    }

    fn read_mut(&mut self, id: Reader) -> &mut Read {
        self.reads.get_mut(&id).expect("caller holds a live read id")
    }
}

/// Checks that can fail: each check of [`Read::check`] fires.
#[cfg(test)]
mod check_tests {
    use super::*;
    use crate::layer_name::{KeyRange, LsnRange};

    const ID: Reader = Reader::Caller(ReadId(1));

    fn in_state(state: ReadState) -> Read {
        Read { state, ..Read::new(Key(1), Lsn(10), Instant(0), Instant(100)) }
    }

    fn name() -> LayerName {
        let keys = KeyRange::new(Key(0), Key(10)).unwrap();
        LayerName::Delta { keys, lsns: LsnRange::new(Lsn(1), Lsn(3)).unwrap() }
    }

    #[test]
    #[should_panic(expected = "left in Searching")]
    fn a_read_left_searching() {
        in_state(ReadState::Searching).check(ID, &BTreeMap::new(), &LayerMap::default());
    }

    #[test]
    #[should_panic(expected = "reads through an op not its own")]
    fn a_layer_read_without_its_op() {
        let read = in_state(ReadState::ReadingLayer { op: OpId(7), name: name() });
        read.check(ID, &BTreeMap::new(), &LayerMap::default());
    }

    #[test]
    #[should_panic(expected = "which is not downloading")]
    fn waiting_for_a_layer_not_downloading() {
        let read = in_state(ReadState::Downloading { name: name() });
        read.check(ID, &BTreeMap::new(), &LayerMap::default());
    }

    #[test]
    #[should_panic(expected = "redoes through an op not its own")]
    fn a_redo_without_its_op() {
        let ops = BTreeMap::from([(OpId(7), OpKind::Redo { read: Reader::Caller(ReadId(2)) })]);
        in_state(ReadState::Redoing { op: OpId(7) }).check(ID, &ops, &LayerMap::default());
    }
}
