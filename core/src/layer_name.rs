//! Layer file names.
//!
//! - Delta layer: `{key_start}-{key_end}__{lsn_start}-{lsn_end}`: the records of keys
//!   in `[key_start, key_end)` at LSNs in `[lsn_start, lsn_end)`.
//! - Image layer: `{key_start}-{key_end}__{lsn}`: the full value of every key in the
//!   range as of `lsn`.
//!
//! Keys and LSNs are 16 upper-case hex digits. Local files carry the bare name; the
//! remote object key adds the generation the layer was written in
//! ([`LayerName::remote_file_name`]), which stays with the layer forever
//! (S-GEN-SUFFIX).

use crate::error::ParseError;
use crate::generation::Generation;
use crate::key::Key;
use crate::lsn::Lsn;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LayerName {
    Delta { keys: KeyRange, lsns: LsnRange },
    Image { keys: KeyRange, lsn: Lsn },
}

/// Half-open key range `[start, end)`, `start < end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyRange {
    pub start: Key,
    pub end: Key,
}

/// Half-open LSN range `[start, end)`, `start < end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LsnRange {
    pub start: Lsn,
    pub end: Lsn,
}

impl KeyRange {
    pub fn new(start: Key, end: Key) -> Result<Self, ParseError> {
        if start >= end {
            return Err(ParseError::invalid(
                "key range",
                format!("start {start} is not below end {end}"),
            ));
        }
        Ok(KeyRange { start, end })
    }

    pub fn contains(&self, key: Key) -> bool {
        self.start <= key && key < self.end
    }

    pub fn as_range(&self) -> Range<Key> {
        self.start..self.end
    }
}

impl LsnRange {
    pub fn new(start: Lsn, end: Lsn) -> Result<Self, ParseError> {
        if start >= end {
            return Err(ParseError::invalid(
                "lsn range",
                format!("start {start} is not below end {end}"),
            ));
        }
        Ok(LsnRange { start, end })
    }

    pub fn contains(&self, lsn: Lsn) -> bool {
        self.start <= lsn && lsn < self.end
    }
}

impl LayerName {
    pub fn key_range(&self) -> KeyRange {
        match self {
            LayerName::Delta { keys, .. } | LayerName::Image { keys, .. } => *keys,
        }
    }

    pub fn is_delta(&self) -> bool {
        matches!(self, LayerName::Delta { .. })
    }

    /// The remote file name: the layer name plus the generation suffix of the
    /// generation it was written in.
    pub fn remote_file_name(&self, written_in: Generation) -> String {
        format!("{self}{}", written_in.suffix())
    }
}

impl fmt::Display for LayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerName::Delta { keys, lsns } => write!(
                f,
                "{}-{}__{}-{}",
                keys.start,
                keys.end,
                lsns.start.to_file_hex(),
                lsns.end.to_file_hex()
            ),
            LayerName::Image { keys, lsn } => {
                write!(f, "{}-{}__{}", keys.start, keys.end, lsn.to_file_hex())
            }
        }
    }
}

impl fmt::Debug for LayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for LayerName {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let expected = "KEY-KEY__LSN-LSN (delta) or KEY-KEY__LSN (image)";
        let bad = || ParseError::malformed("layer name", expected, s);
        let (keys, lsns) = s.split_once("__").ok_or_else(bad)?;
        let (k0, k1) = keys.split_once('-').ok_or_else(bad)?;
        let keys = KeyRange::new(k0.parse()?, k1.parse()?)?;
        match lsns.split_once('-') {
            Some((l0, l1)) => {
                let lsns = LsnRange::new(Lsn::from_file_hex(l0)?, Lsn::from_file_hex(l1)?)?;
                Ok(LayerName::Delta { keys, lsns })
            }
            None => Ok(LayerName::Image { keys, lsn: Lsn::from_file_hex(lsns)? }),
        }
    }
}

impl Serialize for LayerName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LayerName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
