//! Keys: the address of one page (value) within a timeline.
//!
//! A key is a fixed-width 64-bit number, printed as 16 upper-case hex digits in layer
//! file names and JSON. Key ranges are half-open `[start, end)`; [`Key::MAX`] is
//! therefore never a storable key, only a range end.

use crate::error::ParseError;
use crate::lsn::{fixed_hex, parse_fixed_hex};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub struct Key(pub u64);

impl Key {
    pub const MIN: Key = Key(0);
    /// Exclusive upper bound of every key range; not a storable key.
    pub const MAX: Key = Key(u64::MAX);

    /// Whether a value can be stored under this key: every key but [`Key::MAX`],
    /// which no half-open range `[start, end)` contains (ingest and reads refuse it).
    pub fn is_storable(self) -> bool {
        self < Key::MAX
    }

    pub fn next(self) -> Key {
        Key(self.0.saturating_add(1))
    }

    /// The range holding every storable key.
    pub fn full_range() -> Range<Key> {
        Key::MIN..Key::MAX
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&fixed_hex(self.0)).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

impl FromStr for Key {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse_fixed_hex(s, "key").map(Key)
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
