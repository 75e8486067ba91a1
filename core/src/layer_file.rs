//! The layer file format: an immutable file holding the records of a key range over
//! an LSN range (a delta layer) or the full values of a key range at one LSN (an
//! image layer). The full specification is `docs/LAYER_FORMAT.md`; in short
//! (integers big-endian):
//!
//! ```text
//! header (64 bytes) | block 0 | block 1 | ... | index | trailer (4 bytes)
//! block   = payload length u32 | payload | CRC32C(payload) u32
//! payload = encoded records (redo::Record::encode_into), back to back
//! index   = entry_count × (key u64, lsn u64, block u32, offset u32, length u32)
//!           | CRC32C(entries) u32
//! trailer = CRC32C of every byte before it
//! ```
//!
//! The whole-file checksum that `IndexPart` records ([`file_crc32c`]) is the CRC32C
//! of every byte of the file, trailer included.
//!
//! Every parse failure is a [`LayerFileError`] naming the layer and the problem (bad
//! magic, unknown version, checksum mismatch and where, truncation, malformed
//! content, a header that does not match the file name). A reader treats any of them
//! as "this layer is missing here" and never serves bytes from such a file. Records
//! are decoded when read: a record that does not decode, or a delta record in an
//! image layer, is a `Malformed` error of that read.

use crate::key::Key;
use crate::layer_name::{KeyRange, LayerName};
use crate::lsn::Lsn;
use crate::redo::Record;
use std::fmt;
use std::ops::Range;

pub const LAYER_MAGIC: [u8; 8] = *b"STRLAYER";
pub const LAYER_FORMAT_VERSION: u16 = 1;
pub const HEADER_SIZE: usize = 64;
pub const TRAILER_SIZE: usize = 4;
pub const INDEX_ENTRY_SIZE: usize = 28;
/// A block is closed once adding the next record would take its payload past this;
/// a single larger record gets a block of its own.
pub const BLOCK_TARGET_BYTES: usize = 8192;

const KIND_DELTA: u8 = 0;
const KIND_IMAGE: u8 = 1;

/// Which part of the file a checksum covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumPart {
    Header,
    Block(u32),
    Index,
    /// The whole-file checksum in the trailer.
    File,
    /// The file's checksum disagrees with the one the index (or flush) recorded.
    Expected,
}

impl fmt::Display for ChecksumPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChecksumPart::Header => f.write_str("header"),
            ChecksumPart::Block(n) => write!(f, "block {n}"),
            ChecksumPart::Index => f.write_str("index"),
            ChecksumPart::File => f.write_str("whole file"),
            ChecksumPart::Expected => f.write_str("whole file vs. recorded checksum"),
        }
    }
}

/// What is wrong with a layer file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayerProblem {
    #[error("bad magic {found:02x?} (expected {LAYER_MAGIC:02x?})")]
    BadMagic { found: Vec<u8> },
    #[error("unknown format version {0} (this build reads {LAYER_FORMAT_VERSION})")]
    UnknownVersion(u16),
    #[error("checksum mismatch in {part}: stored {stored:08x}, computed {computed:08x}")]
    Checksum { part: ChecksumPart, stored: u32, computed: u32 },
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("header describes {found}, not this file's name")]
    NameMismatch { found: String },
}

/// A layer file could not be read or written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("layer file {name}: {problem}")]
pub struct LayerFileError {
    pub name: LayerName,
    pub problem: LayerProblem,
}

/// One index entry: where the record of `(key, lsn)` lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub key: Key,
    pub lsn: Lsn,
    pub block: u32,
    /// Byte offset within the block's payload.
    pub offset: u32,
    pub len: u32,
}

/// An encoded layer file and its whole-file checksum ([`file_crc32c`] of `bytes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedLayer {
    pub bytes: Vec<u8>,
    pub crc32c: u32,
}

fn lsn_range_of(name: &LayerName) -> (u8, KeyRange, Range<Lsn>) {
    match name {
        LayerName::Delta { keys, lsns } => (KIND_DELTA, *keys, lsns.start..lsns.end),
        LayerName::Image { keys, lsn } => (KIND_IMAGE, *keys, *lsn..lsn.next()),
    }
}

/// Encodes a layer. `records` must be sorted by `(key, lsn)` without duplicates,
/// inside the name's key and LSN ranges (an image layer holds images only).
pub fn encode<'a>(
    name: &LayerName,
    records: impl IntoIterator<Item = (Key, Lsn, &'a Record)>,
) -> Result<EncodedLayer, LayerFileError> {
    let bad =
        |why: String| LayerFileError { name: name.clone(), problem: LayerProblem::Malformed(why) };
    let (kind, keys, lsns) = lsn_range_of(name);
    let mut out = vec![0u8; HEADER_SIZE];
    let mut index: Vec<IndexEntry> = Vec::new();
    let mut block: Vec<u8> = Vec::new();
    let mut block_count: u32 = 0;
    let mut scratch = Vec::new();
    let close = |out: &mut Vec<u8>, block: &mut Vec<u8>, count: &mut u32| {
        out.extend_from_slice(&(block.len() as u32).to_be_bytes());
        out.extend_from_slice(block);
        out.extend_from_slice(&crc32c::crc32c(block).to_be_bytes());
        block.clear();
        *count += 1;
    };
    for (key, lsn, record) in records {
        if !keys.contains(key) || !lsns.contains(&lsn) {
            return Err(bad(format!("record ({key}, {lsn}) outside the layer's ranges")));
        }
        if index.last().is_some_and(|p| (p.key, p.lsn) >= (key, lsn)) {
            return Err(bad(format!("record ({key}, {lsn}) out of order")));
        }
        if kind == KIND_IMAGE && !matches!(record, Record::Image(_)) {
            return Err(bad(format!("delta record ({key}, {lsn}) in an image layer")));
        }
        scratch.clear();
        record.encode_into(&mut scratch);
        if !block.is_empty() && block.len() + scratch.len() > BLOCK_TARGET_BYTES {
            close(&mut out, &mut block, &mut block_count);
        }
        index.push(IndexEntry {
            key,
            lsn,
            block: block_count,
            offset: block.len() as u32,
            len: scratch.len() as u32,
        });
        block.extend_from_slice(&scratch);
    }
    if !block.is_empty() {
        close(&mut out, &mut block, &mut block_count);
    }
    let index_offset = out.len() as u64;
    let index_start = out.len();
    for e in &index {
        out.extend_from_slice(&e.key.0.to_be_bytes());
        out.extend_from_slice(&e.lsn.0.to_be_bytes());
        out.extend_from_slice(&e.block.to_be_bytes());
        out.extend_from_slice(&e.offset.to_be_bytes());
        out.extend_from_slice(&e.len.to_be_bytes());
    }
    let index_crc = crc32c::crc32c(&out[index_start..]);
    out.extend_from_slice(&index_crc.to_be_bytes());

    let h = &mut out[..HEADER_SIZE];
    h[0..8].copy_from_slice(&LAYER_MAGIC);
    h[8..10].copy_from_slice(&LAYER_FORMAT_VERSION.to_be_bytes());
    h[10] = kind;
    h[12..16].copy_from_slice(&block_count.to_be_bytes());
    h[16..24].copy_from_slice(&keys.start.0.to_be_bytes());
    h[24..32].copy_from_slice(&keys.end.0.to_be_bytes());
    h[32..40].copy_from_slice(&lsns.start.0.to_be_bytes());
    h[40..48].copy_from_slice(&lsns.end.0.to_be_bytes());
    h[48..56].copy_from_slice(&index_offset.to_be_bytes());
    h[56..60].copy_from_slice(&(index.len() as u32).to_be_bytes());
    let header_crc = crc32c::crc32c(&h[..60]);
    h[60..64].copy_from_slice(&header_crc.to_be_bytes());

    let body_crc = crc32c::crc32c(&out);
    out.extend_from_slice(&body_crc.to_be_bytes());
    let crc32c = crc32c::crc32c_append(body_crc, &body_crc.to_be_bytes());
    Ok(EncodedLayer { bytes: out, crc32c })
}

/// The whole-file checksum of a layer file, as `IndexPart` records it: the CRC32C of
/// every byte of the file (trailer included).
pub fn file_crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// A parsed, fully verified layer file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerFile {
    name: LayerName,
    bytes: Vec<u8>,
    /// Payload range of each block within `bytes`.
    blocks: Vec<Range<usize>>,
    index: Vec<IndexEntry>,
    crc32c: u32,
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(w)
}

/// What a verified header says (magic, version and header checksum checked).
struct Header {
    kind: u8,
    keys: KeyRange,
    lsns: Range<Lsn>,
    block_count: usize,
    index_offset: usize,
    entry_count: usize,
}

impl Header {
    /// Step 1: magic, length, version, header checksum; then the header's fields.
    fn read(bytes: &[u8]) -> Result<Header, LayerProblem> {
        let min = HEADER_SIZE + 4 + TRAILER_SIZE;
        if bytes.len() >= LAYER_MAGIC.len() && bytes[..8] != LAYER_MAGIC {
            return Err(LayerProblem::BadMagic { found: bytes[..8].to_vec() });
        }
        if bytes.len() < min {
            return Err(LayerProblem::Truncated { need: min, have: bytes.len() });
        }
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        if version != LAYER_FORMAT_VERSION {
            return Err(LayerProblem::UnknownVersion(version));
        }
        let (stored, computed) = (be_u32(bytes, 60), crc32c::crc32c(&bytes[..60]));
        if stored != computed {
            let part = ChecksumPart::Header;
            return Err(LayerProblem::Checksum { part, stored, computed });
        }
        Ok(Header {
            kind: bytes[10],
            keys: KeyRange { start: Key(be_u64(bytes, 16)), end: Key(be_u64(bytes, 24)) },
            lsns: Lsn(be_u64(bytes, 32))..Lsn(be_u64(bytes, 40)),
            block_count: be_u32(bytes, 12) as usize,
            index_offset: be_u64(bytes, 48) as usize,
            entry_count: be_u32(bytes, 56) as usize,
        })
    }

    /// Step 2: the file is exactly as long as the header says, and its whole-file
    /// checksum (trailer) holds, and equals `expected_crc32c` when given. Returns
    /// the whole-file checksum.
    fn check_file(&self, bytes: &[u8], expected_crc32c: Option<u32>) -> Result<u32, LayerProblem> {
        let need = self
            .index_offset
            .saturating_add(self.entry_count.saturating_mul(INDEX_ENTRY_SIZE))
            .saturating_add(4 + TRAILER_SIZE);
        if bytes.len() < need {
            return Err(LayerProblem::Truncated { need, have: bytes.len() });
        }
        if bytes.len() > need {
            let why = format!("{} bytes after the trailer", bytes.len() - need);
            return Err(LayerProblem::Malformed(why));
        }
        let body = bytes.len() - TRAILER_SIZE;
        let (stored, computed) = (be_u32(bytes, body), crc32c::crc32c(&bytes[..body]));
        if stored != computed {
            let part = ChecksumPart::File;
            return Err(LayerProblem::Checksum { part, stored, computed });
        }
        // The whole-file checksum extends the body's over the trailer's 4 bytes.
        let whole = crc32c::crc32c_append(computed, &bytes[body..]);
        if let Some(expected) = expected_crc32c.filter(|e| *e != whole) {
            let part = ChecksumPart::Expected;
            return Err(LayerProblem::Checksum { part, stored: expected, computed: whole });
        }
        Ok(whole)
    }

    /// Step 3: the header must describe this file's name.
    fn check_name(&self, name: &LayerName) -> Result<(), LayerProblem> {
        let (kind, keys, lsns) = (self.kind, self.keys, &self.lsns);
        let (want_kind, want_keys, want_lsns) = lsn_range_of(name);
        if (kind, keys, lsns) != (want_kind, want_keys, &want_lsns) {
            let found = format!("kind {kind}, keys {keys:?}, lsns {lsns:?}");
            return Err(LayerProblem::NameMismatch { found });
        }
        Ok(())
    }

    /// Step 4: the blocks, back to back from the header to the index, each with its
    /// checksum. Returns each block's payload range.
    fn blocks(&self, bytes: &[u8]) -> Result<Vec<Range<usize>>, LayerProblem> {
        let index_offset = self.index_offset;
        let mut blocks = Vec::with_capacity(self.block_count.min(bytes.len() / 8));
        let mut at = HEADER_SIZE;
        for n in 0..self.block_count {
            if at + 8 > index_offset {
                return Err(LayerProblem::Malformed(format!("block {n} runs into the index")));
            }
            let len = be_u32(bytes, at) as usize;
            let end = at + 4 + len;
            if end + 4 > index_offset {
                return Err(LayerProblem::Malformed(format!("block {n} runs into the index")));
            }
            let (stored, computed) = (be_u32(bytes, end), crc32c::crc32c(&bytes[at + 4..end]));
            if stored != computed {
                let part = ChecksumPart::Block(n as u32);
                return Err(LayerProblem::Checksum { part, stored, computed });
            }
            blocks.push(at + 4..end);
            at = end + 4;
        }
        if at != index_offset {
            return Err(LayerProblem::Malformed(format!(
                "index at {index_offset}, blocks end at {at}"
            )));
        }
        Ok(blocks)
    }

    /// Step 5: the index checksum, then each entry: inside its block and the
    /// layer's ranges, in `(key, lsn)` order.
    fn index(
        &self,
        bytes: &[u8],
        blocks: &[Range<usize>],
    ) -> Result<Vec<IndexEntry>, LayerProblem> {
        let (index_offset, entry_count) = (self.index_offset, self.entry_count);
        let index_end = index_offset + entry_count * INDEX_ENTRY_SIZE;
        let stored = be_u32(bytes, index_end);
        let computed = crc32c::crc32c(&bytes[index_offset..index_end]);
        if stored != computed {
            let part = ChecksumPart::Index;
            return Err(LayerProblem::Checksum { part, stored, computed });
        }
        let mut index = Vec::with_capacity(entry_count);
        for i in 0..entry_count {
            let at = index_offset + i * INDEX_ENTRY_SIZE;
            let e = IndexEntry {
                key: Key(be_u64(bytes, at)),
                lsn: Lsn(be_u64(bytes, at + 8)),
                block: be_u32(bytes, at + 16),
                offset: be_u32(bytes, at + 20),
                len: be_u32(bytes, at + 24),
            };
            let in_block = blocks
                .get(e.block as usize)
                .is_some_and(|b| (e.offset as usize).saturating_add(e.len as usize) <= b.len());
            if !in_block || !self.keys.contains(e.key) || !self.lsns.contains(&e.lsn) {
                return Err(LayerProblem::Malformed(format!(
                    "index entry {i} ({}, {}) out of bounds",
                    e.key, e.lsn
                )));
            }
            if index.last().is_some_and(|p: &IndexEntry| (p.key, p.lsn) >= (e.key, e.lsn)) {
                return Err(LayerProblem::Malformed(format!("index entry {i} out of order")));
            }
            index.push(e);
        }
        Ok(index)
    }
}

impl LayerFile {
    /// Parses and verifies a whole file: magic, version, every checksum (header,
    /// whole file, each block, index), the header against `name`, the block layout
    /// and the index. With `expected_crc32c`, the
    /// whole-file checksum must also equal it (the value `IndexPart` recorded).
    pub fn parse(
        name: &LayerName,
        bytes: Vec<u8>,
        expected_crc32c: Option<u32>,
    ) -> Result<LayerFile, LayerFileError> {
        let err = |problem| LayerFileError { name: name.clone(), problem };
        let header = Header::read(&bytes).map_err(err)?;
        let whole = header.check_file(&bytes, expected_crc32c).map_err(err)?;
        header.check_name(name).map_err(err)?;
        let blocks = header.blocks(&bytes).map_err(err)?;
        let index = header.index(&bytes, &blocks).map_err(err)?;
        Ok(LayerFile { name: name.clone(), bytes, blocks, index, crc32c: whole })
    }

    pub fn name(&self) -> &LayerName {
        &self.name
    }

    pub fn crc32c(&self) -> u32 {
        self.crc32c
    }

    pub fn len_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn index(&self) -> &[IndexEntry] {
        &self.index
    }

    /// The records of `key` with LSN in `lsns`, oldest first.
    pub fn records(
        &self,
        key: Key,
        lsns: Range<Lsn>,
    ) -> Result<Vec<(Lsn, Record)>, LayerFileError> {
        let from = self.index.partition_point(|e| (e.key, e.lsn) < (key, lsns.start));
        let mut out = Vec::new();
        for e in self.index[from..].iter().take_while(|e| e.key == key && e.lsn < lsns.end) {
            out.push((e.lsn, self.record_at(e)?));
        }
        Ok(out)
    }

    /// Every record in the file in `(key, lsn)` order.
    pub fn all_records(&self) -> Result<Vec<(Key, Lsn, Record)>, LayerFileError> {
        self.index.iter().map(|e| Ok((e.key, e.lsn, self.record_at(e)?))).collect()
    }

    fn record_at(&self, e: &IndexEntry) -> Result<Record, LayerFileError> {
        // Every block's checksum was verified by `parse`.
        let err = |problem| LayerFileError { name: self.name.clone(), problem };
        let payload = &self.bytes[self.blocks[e.block as usize].clone()];
        let start = e.offset as usize;
        let record = Record::decode(&payload[start..start + e.len as usize])
            .map_err(|p| err(LayerProblem::Malformed(p.to_string())))?;
        // The writer puts images only in an image layer (`encode`); a delta there
        // is damage the checksums did not see.
        if !self.name.is_delta() && !matches!(record, Record::Image(_)) {
            let why = format!("delta record ({}, {}) in an image layer", e.key, e.lsn);
            return Err(err(LayerProblem::Malformed(why)));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests;
