//! Records and redo: what ingest stores, and the one pure function that turns a base
//! image plus ordered deltas into a value.
//!
//! A timeline stores, per key, a history of [`Record`]s, one per LSN. A record is
//! either a full value ([`Record::Image`]) or a list of [`DeltaOp`]s applied, in order,
//! to the value just below it. Values are byte strings of at most
//! [`MAX_VALUE_BYTES`] (one page).
//!
//! Delta operations (all offsets and lengths in bytes):
//!
//! - [`DeltaOp::WriteAt`] `{offset, bytes}`: overwrite `bytes` starting at `offset`;
//!   if `offset` is past the end, the gap is filled with zero bytes; the value grows
//!   when the write runs past its end.
//! - [`DeltaOp::Append`]: add bytes at the end.
//! - [`DeltaOp::Truncate`] `(len)`: keep the first `len` bytes; a no-op when the value
//!   is already that short.
//! - [`DeltaOp::Clear`]: the empty value.
//!
//! A delta on a key with no value below it applies to the empty value. Any step whose
//! result would exceed [`MAX_VALUE_BYTES`] fails with [`RedoError::ValueTooLarge`];
//! redo never truncates silently. Ingest never acknowledges a record that would make
//! redo fail: [`Record::validate`] checks each record on its own, and the timeline
//! checks it against the size of the value below it (`timeline/value_sizes.rs`), so
//! every acknowledged value can be read.
//!
//! JSON (the HTTP ingest body): bytes are lowercase hex strings.
//! `{"image": "0a0b"}`, `{"delta": [{"write_at": {"offset": 2, "bytes": "ff"}},
//! {"append": "00"}, {"truncate": 3}, "clear"]}`. An [`IngestRecord`] is
//! `{"key": "000000000000002A", "lsn": "0/10", "record": {...}}`.
//!
//! Binary encoding (used inside layer files and as the walredo request body;
//! integers big-endian): see [`Record::encode_into`] and [`RedoRequest::encode`].

use crate::error::ParseError;
use crate::key::Key;
use crate::lsn::Lsn;
use serde::{Deserialize, Serialize};

/// The largest value a key can hold: one page.
pub const MAX_VALUE_BYTES: usize = 8192;

/// Magic at the start of an encoded [`RedoRequest`].
pub const REDO_REQUEST_MAGIC: [u8; 4] = *b"SRDO";
/// Format version of an encoded [`RedoRequest`].
pub const REDO_REQUEST_VERSION: u8 = 1;

/// One edit of a value. See the module doc for the exact semantics.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaOp {
    /// Overwrite at `offset`, zero-filling any gap past the end.
    WriteAt {
        offset: u32,
        #[serde(with = "hex_bytes")]
        bytes: Vec<u8>,
    },
    /// Add bytes at the end.
    Append(#[serde(with = "hex_bytes")] Vec<u8>),
    /// Keep at most the first `n` bytes.
    Truncate(u32),
    /// Make the value empty.
    Clear,
}

/// What one ingested LSN stores for one key.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// The full value.
    Image(#[serde(with = "hex_bytes")] Vec<u8>),
    /// Edits applied in order to the value below.
    Delta(Vec<DeltaOp>),
}

/// One record as ingest receives it.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestRecord {
    pub key: Key,
    pub lsn: Lsn,
    pub record: Record,
}

/// Why redo could not produce a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedoError {
    #[error("value too large: {len} bytes (max {max})")]
    ValueTooLarge { len: usize, max: usize },
}

/// The one pure redo function: `base` (or the empty value) with every delta list of
/// `deltas` applied in order, oldest first.
pub fn apply(base: Option<&[u8]>, deltas: &[&[DeltaOp]]) -> Result<Vec<u8>, RedoError> {
    let base = base.unwrap_or(&[]);
    check_len(base.len())?;
    let mut value = base.to_vec();
    for ops in deltas {
        apply_ops(&mut value, ops)?;
    }
    Ok(value)
}

/// Applies one record's ops to `value` in place. On error `value` may be partly edited.
pub fn apply_ops(value: &mut Vec<u8>, ops: &[DeltaOp]) -> Result<(), RedoError> {
    for op in ops {
        match op {
            DeltaOp::WriteAt { offset, bytes } => {
                let start = *offset as usize;
                let end = start.saturating_add(bytes.len());
                check_len(end)?;
                if value.len() < end {
                    value.resize(end, 0);
                }
                value[start..end].copy_from_slice(bytes);
            }
            DeltaOp::Append(bytes) => {
                check_len(value.len().saturating_add(bytes.len()))?;
                value.extend_from_slice(bytes);
            }
            DeltaOp::Truncate(n) => value.truncate(*n as usize),
            DeltaOp::Clear => value.clear(),
        }
    }
    Ok(())
}

fn check_len(len: usize) -> Result<(), RedoError> {
    if len > MAX_VALUE_BYTES {
        return Err(RedoError::ValueTooLarge { len, max: MAX_VALUE_BYTES });
    }
    Ok(())
}

const TAG_IMAGE: u8 = 0;
const TAG_DELTA: u8 = 1;
const OP_WRITE_AT: u8 = 1;
const OP_APPEND: u8 = 2;
const OP_TRUNCATE: u8 = 3;
const OP_CLEAR: u8 = 4;

impl Record {
    /// Appends the binary form:
    /// - image: `0x00`, length `u32`, bytes;
    /// - delta: `0x01`, op count `u32`, then per op a tag byte: `0x01` write-at
    ///   (offset `u32`, length `u32`, bytes), `0x02` append (length `u32`, bytes),
    ///   `0x03` truncate (`u32`), `0x04` clear.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Record::Image(bytes) => {
                out.push(TAG_IMAGE);
                put_bytes(out, bytes);
            }
            Record::Delta(ops) => {
                out.push(TAG_DELTA);
                encode_ops(out, ops);
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Parses exactly one record filling all of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Record, ParseError> {
        let mut r = Reader { bytes, what: "record" };
        let record = r.record()?;
        r.finish()?;
        Ok(record)
    }

    /// The number of bytes this record accounts for in memory (payload plus a fixed
    /// overhead per op), used for the in-memory layer's size threshold.
    pub fn size_bytes(&self) -> u64 {
        match self {
            Record::Image(b) => 8 + b.len() as u64,
            Record::Delta(ops) => {
                8 + ops
                    .iter()
                    .map(|op| match op {
                        DeltaOp::WriteAt { bytes, .. } | DeltaOp::Append(bytes) => {
                            16 + bytes.len() as u64
                        }
                        DeltaOp::Truncate(_) | DeltaOp::Clear => 16,
                    })
                    .sum::<u64>()
            }
        }
    }

    /// Checks that this record can never produce an oversized value by itself: an
    /// image or a single write/append larger than [`MAX_VALUE_BYTES`] is refused at
    /// ingest. (Appends to a value that is already large are checked by the
    /// timeline, which knows the value's size: `timeline/value_sizes.rs`.)
    pub fn validate(&self) -> Result<(), RedoError> {
        match self {
            Record::Image(b) => check_len(b.len()),
            Record::Delta(ops) => {
                let mut v = Vec::new();
                for op in ops {
                    if let DeltaOp::WriteAt { offset, bytes } = op {
                        check_len((*offset as usize).saturating_add(bytes.len()))?;
                    }
                    if let DeltaOp::Append(bytes) = op {
                        check_len(bytes.len())?;
                    }
                }
                // A delta on its own (on the empty value) must be applicable.
                apply_ops(&mut v, ops)
            }
        }
    }
}

fn encode_ops(out: &mut Vec<u8>, ops: &[DeltaOp]) {
    out.extend_from_slice(&(ops.len() as u32).to_be_bytes());
    for op in ops {
        match op {
            DeltaOp::WriteAt { offset, bytes } => {
                out.push(OP_WRITE_AT);
                out.extend_from_slice(&offset.to_be_bytes());
                put_bytes(out, bytes);
            }
            DeltaOp::Append(bytes) => {
                out.push(OP_APPEND);
                put_bytes(out, bytes);
            }
            DeltaOp::Truncate(n) => {
                out.push(OP_TRUNCATE);
                out.extend_from_slice(&n.to_be_bytes());
            }
            DeltaOp::Clear => out.push(OP_CLEAR),
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A bounds-checked cursor over outside input; every read returns a typed error.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if self.bytes.len() < n {
            return Err(ParseError::Truncated { what: self.what, need: n, have: self.bytes.len() });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, ParseError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn len_prefixed(&mut self) -> Result<&'a [u8], ParseError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn record(&mut self) -> Result<Record, ParseError> {
        match self.u8()? {
            TAG_IMAGE => Ok(Record::Image(self.len_prefixed()?.to_vec())),
            TAG_DELTA => Ok(Record::Delta(self.ops()?)),
            other => Err(ParseError::invalid(self.what, format!("unknown record tag {other}"))),
        }
    }

    fn ops(&mut self) -> Result<Vec<DeltaOp>, ParseError> {
        let count = self.u32()? as usize;
        // Every op takes at least one byte: bound the allocation by the input.
        if count > self.bytes.len() {
            return Err(ParseError::Truncated {
                what: self.what,
                need: count,
                have: self.bytes.len(),
            });
        }
        let mut ops = Vec::with_capacity(count);
        for _ in 0..count {
            ops.push(match self.u8()? {
                OP_WRITE_AT => {
                    let offset = self.u32()?;
                    DeltaOp::WriteAt { offset, bytes: self.len_prefixed()?.to_vec() }
                }
                OP_APPEND => DeltaOp::Append(self.len_prefixed()?.to_vec()),
                OP_TRUNCATE => DeltaOp::Truncate(self.u32()?),
                OP_CLEAR => DeltaOp::Clear,
                other => {
                    return Err(ParseError::invalid(
                        self.what,
                        format!("unknown delta op {other}"),
                    ));
                }
            });
        }
        Ok(ops)
    }

    pub(crate) fn finish(&self) -> Result<(), ParseError> {
        if !self.bytes.is_empty() {
            return Err(ParseError::invalid(
                self.what,
                format!("{} trailing bytes", self.bytes.len()),
            ));
        }
        Ok(())
    }
}

/// What the walredo process receives: a base image (or none) and the delta lists to
/// apply to it, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedoRequest {
    pub base: Option<Vec<u8>>,
    pub deltas: Vec<Vec<DeltaOp>>,
}

impl RedoRequest {
    /// Binary form: magic `SRDO`, version `u8` (1), base flag `u8` (0 none, 1 present),
    /// if present the base (length `u32`, bytes), delta list count `u32`, then per
    /// list the op count and ops as in [`Record::encode_into`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&REDO_REQUEST_MAGIC);
        out.push(REDO_REQUEST_VERSION);
        match &self.base {
            None => out.push(0),
            Some(b) => {
                out.push(1);
                put_bytes(&mut out, b);
            }
        }
        out.extend_from_slice(&(self.deltas.len() as u32).to_be_bytes());
        for ops in &self.deltas {
            encode_ops(&mut out, ops);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<RedoRequest, ParseError> {
        const WHAT: &str = "redo request";
        let mut r = Reader { bytes, what: WHAT };
        if r.take(4)? != REDO_REQUEST_MAGIC {
            return Err(ParseError::invalid(WHAT, "bad magic (expected SRDO)"));
        }
        let version = r.u8()?;
        if version != REDO_REQUEST_VERSION {
            return Err(ParseError::UnsupportedVersion {
                what: WHAT,
                version: version.into(),
                accepted: &[1],
            });
        }
        let base = match r.u8()? {
            0 => None,
            1 => Some(r.len_prefixed()?.to_vec()),
            other => return Err(ParseError::invalid(WHAT, format!("base flag {other}"))),
        };
        let count = r.u32()? as usize;
        if count > r.bytes.len() / 4 {
            return Err(ParseError::Truncated { what: WHAT, need: count * 4, have: r.bytes.len() });
        }
        let mut deltas = Vec::with_capacity(count);
        for _ in 0..count {
            deltas.push(r.ops()?);
        }
        r.finish()?;
        Ok(RedoRequest { base, deltas })
    }

    /// Runs the pure redo function on this request.
    pub fn execute(&self) -> Result<Vec<u8>, RedoError> {
        let lists: Vec<&[DeltaOp]> = self.deltas.iter().map(Vec::as_slice).collect();
        apply(self.base.as_deref(), &lists)
    }
}

/// Serde helper: `Vec<u8>` as a lowercase hex string.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
