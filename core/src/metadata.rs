//! Timeline metadata: a small fixed-size binary blob with a CRC32C, stored locally
//! as `timelines/{id}/metadata` and carried inside every `IndexPart`.
//!
//! Layout (integers big-endian, [`METADATA_SIZE`] bytes in all, zero padded):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | CRC32C of bytes `[4, METADATA_SIZE)` |
//! | 4 | 2 | format version ([`METADATA_VERSION`]) |
//! | 6 | 2 | body length in bytes |
//! | 8 | 8 | disk_consistent_lsn |
//! | 16 | 8 | gc_cutoff_lsn |
//! | 24 | 8 | initdb_lsn (the LSN the timeline was created at) |
//! | 32 | 1 | ancestor present (0/1) |
//! | 33 | 16 | ancestor timeline id (zeros when absent) |
//! | 49 | 8 | ancestor lsn (zero when absent) |
//!
//! Bytes after the body, and the ancestor fields when the flag is 0, are zero; the
//! reader rejects a blob where they are not, so every accepted blob is exactly what
//! the writer would produce.
//!
//! The blob is small enough to be written in one sector; it is still always
//! written with the crash-safe overwrite (temp, fsync, rename, directory fsync).

use crate::error::ParseError;
use crate::id::TimelineId;
use crate::lsn::Lsn;

pub const METADATA_SIZE: usize = 128;
pub const METADATA_VERSION: u16 = 1;
const BODY_LEN: u16 = 49;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimelineMetadata {
    pub disk_consistent_lsn: Lsn,
    pub gc_cutoff_lsn: Lsn,
    pub initdb_lsn: Lsn,
    pub ancestor: Option<(TimelineId, Lsn)>,
}

impl TimelineMetadata {
    pub fn to_bytes(&self) -> [u8; METADATA_SIZE] {
        let mut b = [0u8; METADATA_SIZE];
        b[4..6].copy_from_slice(&METADATA_VERSION.to_be_bytes());
        b[6..8].copy_from_slice(&BODY_LEN.to_be_bytes());
        b[8..16].copy_from_slice(&self.disk_consistent_lsn.0.to_be_bytes());
        b[16..24].copy_from_slice(&self.gc_cutoff_lsn.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.initdb_lsn.0.to_be_bytes());
        if let Some((id, lsn)) = self.ancestor {
            b[32] = 1;
            b[33..49].copy_from_slice(id.as_bytes());
            b[49..57].copy_from_slice(&lsn.0.to_be_bytes());
        }
        let crc = crc32c::crc32c(&b[4..]);
        b[0..4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, ParseError> {
        const WHAT: &str = "timeline metadata";
        if b.len() < METADATA_SIZE {
            return Err(ParseError::Truncated { what: WHAT, need: METADATA_SIZE, have: b.len() });
        }
        if b.len() > METADATA_SIZE {
            return Err(ParseError::invalid(
                WHAT,
                format!("{} bytes, expected exactly {METADATA_SIZE}", b.len()),
            ));
        }
        let u64_at = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_be_bytes(w)
        };
        let stored = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let computed = crc32c::crc32c(&b[4..]);
        if stored != computed {
            return Err(ParseError::Checksum { what: WHAT, stored, computed });
        }
        let version = u16::from_be_bytes([b[4], b[5]]);
        if version != METADATA_VERSION {
            return Err(ParseError::UnsupportedVersion {
                what: WHAT,
                version: version.into(),
                accepted: &[1],
            });
        }
        let body_len = u16::from_be_bytes([b[6], b[7]]);
        if body_len != BODY_LEN {
            return Err(ParseError::invalid(
                WHAT,
                format!("body length {body_len}, expected {BODY_LEN}"),
            ));
        }
        // Bytes this version does not define must be zero: a sealed blob with
        // anything there did not come from this writer.
        let body_end = 8 + usize::from(BODY_LEN);
        if b[body_end..].iter().any(|&x| x != 0) {
            return Err(ParseError::invalid(WHAT, "non-zero bytes after the body"));
        }
        let ancestor = match b[32] {
            0 if b[33..body_end].iter().any(|&x| x != 0) => {
                return Err(ParseError::invalid(
                    WHAT,
                    "ancestor fields set without the ancestor flag",
                ));
            }
            0 => None,
            1 => {
                let mut id = [0u8; 16];
                id.copy_from_slice(&b[33..49]);
                Some((TimelineId::from_bytes(id), Lsn(u64_at(49))))
            }
            other => {
                return Err(ParseError::invalid(
                    WHAT,
                    format!("ancestor flag {other}, expected 0 or 1"),
                ));
            }
        };
        Ok(TimelineMetadata {
            disk_consistent_lsn: Lsn(u64_at(8)),
            gc_cutoff_lsn: Lsn(u64_at(16)),
            initdb_lsn: Lsn(u64_at(24)),
            ancestor,
        })
    }
}
