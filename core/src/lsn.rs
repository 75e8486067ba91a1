//! Log sequence numbers: the position of a record in a timeline's history.
//!
//! Shown to people and in JSON as `X/X` (high and low 32 bits in upper-case hex, as
//! PostgreSQL does); in file names as 16 upper-case hex digits.

use crate::error::ParseError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub struct Lsn(pub u64);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// The 16-hex-digit form used in file names.
    pub fn to_file_hex(self) -> String {
        fixed_hex(self.0).iter().map(|&b| char::from(b)).collect()
    }

    pub fn from_file_hex(s: &str) -> Result<Lsn, ParseError> {
        parse_fixed_hex(s, "lsn in a file name").map(Lsn)
    }

    pub fn next(self) -> Lsn {
        Lsn(self.0.saturating_add(1))
    }
}

/// `v` as 16 upper-case hex digits (`{:016X}`), on the stack: keys and LSNs are
/// formatted in every layer name and object key, and the formatter's padded hex
/// was a large part of a simulated run's time (docs/PERFORMANCE.md).
pub(crate) fn fixed_hex(v: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = [0u8; 16];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// Parses exactly 16 upper-case hex digits.
pub(crate) fn parse_fixed_hex(s: &str, what: &'static str) -> Result<u64, ParseError> {
    let expected = "16 upper-case hex digits";
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)) {
        return Err(ParseError::malformed(what, expected, s));
    }
    u64::from_str_radix(s, 16).map_err(|_| ParseError::malformed(what, expected, s))
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

impl FromStr for Lsn {
    type Err = ParseError;
    /// Accepts `X/X` (each half up to 8 hex digits, either case).
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let expected = "HI/LO in hex, e.g. 0/16B3748";
        let (hi, lo) =
            s.split_once('/').ok_or_else(|| ParseError::malformed("lsn", expected, s))?;
        let half = |h: &str| {
            if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseError::malformed("lsn", expected, s));
            }
            u32::from_str_radix(h, 16).map_err(|_| ParseError::malformed("lsn", expected, s))
        };
        Ok(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
