//! Generations: the attachment number the control plane grants a tenant.
//!
//! Every object strata writes carries the writer's generation as a key suffix: `-`
//! followed by 8 lowercase hex digits. There is no generation-less mode: a
//! generation is at least 1, and 0 is rejected wherever it is parsed.

use crate::error::ParseError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(NonZeroU32);

impl Generation {
    pub const FIRST: Generation = Generation(NonZeroU32::MIN);
    /// The highest generation there can be (the scrubber's "above every grant").
    pub const MAX: Generation = Generation(NonZeroU32::MAX);

    /// `None` for 0.
    pub fn new(n: u32) -> Option<Generation> {
        NonZeroU32::new(n).map(Generation)
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The next generation; `None` when the space is exhausted.
    pub fn next(self) -> Option<Generation> {
        self.0.checked_add(1).map(Generation)
    }

    /// The previous generation; `None` for the first.
    pub fn previous(self) -> Option<Generation> {
        Generation::new(self.get() - 1)
    }

    /// The object-key suffix: `-0000000a`.
    pub fn suffix(self) -> String {
        self.suffix_bytes().iter().map(|&b| char::from(b)).collect()
    }

    /// [`Generation::suffix`] on the stack (`-{:08x}`).
    pub(crate) fn suffix_bytes(self) -> [u8; 9] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 9];
        for (i, digit) in out[1..].iter_mut().enumerate() {
            *digit = DIGITS[((self.get() >> (28 - 4 * i)) & 0xf) as usize];
        }
        out
    }

    /// Parses a suffix `-` + 8 lowercase hex digits.
    pub fn parse_suffix(s: &str) -> Result<Generation, ParseError> {
        let expected = "'-' and 8 lowercase hex digits";
        let digits = s
            .strip_prefix('-')
            .ok_or_else(|| ParseError::malformed("generation suffix", expected, s))?;
        if digits.len() != 8
            || !digits.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ParseError::malformed("generation suffix", expected, s));
        }
        let n = u32::from_str_radix(digits, 16)
            .map_err(|_| ParseError::malformed("generation suffix", expected, s))?;
        Generation::new(n)
            .ok_or_else(|| ParseError::invalid("generation suffix", "generation 0 does not exist"))
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.get())
    }
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Generation({})", self.get())
    }
}

impl FromStr for Generation {
    type Err = ParseError;
    /// Accepts a decimal number ≥ 1 (the JSON and config form).
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let n: u32 = s
            .parse()
            .map_err(|_| ParseError::malformed("generation", "a decimal number >= 1", s))?;
        Generation::new(n)
            .ok_or_else(|| ParseError::invalid("generation", "generation 0 does not exist"))
    }
}

impl Serialize for Generation {
    /// A plain JSON/TOML integer.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.get())
    }
}

impl<'de> Deserialize<'de> for Generation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        Generation::new(n).ok_or_else(|| serde::de::Error::custom("generation 0 does not exist"))
    }
}
