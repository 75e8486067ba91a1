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
use crate::lsn::{Lsn, fixed_hex};
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
        let mut out = String::with_capacity(MAX_NAME_BYTES + 9);
        self.push_remote_file_name(written_in, &mut out);
        out
    }

    /// Appends [`LayerName::remote_file_name`] to `out`.
    pub(crate) fn push_remote_file_name(&self, written_in: Generation, out: &mut String) {
        let (name, len) = self.name_bytes();
        for bytes in [&name[..len], &written_in.suffix_bytes()[..]] {
            out.extend(bytes.iter().map(|&b| char::from(b)));
        }
    }

    /// The name's ASCII bytes, built on the stack (names are formatted in every
    /// layer key, path and index, so formatting them was a large part of a
    /// simulated run's time: docs/PERFORMANCE.md), and how many there are.
    fn name_bytes(&self) -> ([u8; MAX_NAME_BYTES], usize) {
        let mut out = [0u8; MAX_NAME_BYTES];
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            out[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        };
        let keys = self.key_range();
        put(&fixed_hex(keys.start.0));
        put(b"-");
        put(&fixed_hex(keys.end.0));
        put(b"__");
        match self {
            LayerName::Delta { lsns, .. } => {
                put(&fixed_hex(lsns.start.0));
                put(b"-");
                put(&fixed_hex(lsns.end.0));
            }
            LayerName::Image { lsn, .. } => put(&fixed_hex(lsn.0)),
        }
        (out, len)
    }
}

/// The longest layer name: a delta's, four 16-digit numbers and three separators.
const MAX_NAME_BYTES: usize = 4 * 16 + 4;

impl fmt::Display for LayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, len) = self.name_bytes();
        f.write_str(std::str::from_utf8(&name[..len]).map_err(|_| fmt::Error)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{TenantId, TimelineId};
    use crate::remote_path::{layer_key, timeline_prefix};

    /// The stack-built forms are exactly what `format!` printed before them.
    #[test]
    fn names_and_keys_print_as_format_did() {
        let mut x = 0x0123_4567_89AB_CDEFu64;
        let mut values = vec![0, 1, 0xF, 0xA0, u64::MAX - 1, u64::MAX];
        for _ in 0..200 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            values.push(x >> (x % 64));
        }
        for w in values.windows(4) {
            let [a, b, c, d] = [w[0], w[1], w[2], w[3]];
            assert_eq!(Key(a).to_string(), format!("{a:016X}"));
            assert_eq!(Lsn(a).to_file_hex(), format!("{a:016X}"));
            let g = Generation::new((a as u32).max(1)).expect("not 0");
            assert_eq!(g.suffix(), format!("-{:08x}", g.get()));
            let keys = KeyRange { start: Key(a), end: Key(b) };
            let delta = LayerName::Delta { keys, lsns: LsnRange { start: Lsn(c), end: Lsn(d) } };
            assert_eq!(delta.to_string(), format!("{a:016X}-{b:016X}__{c:016X}-{d:016X}"));
            let image = LayerName::Image { keys, lsn: Lsn(c) };
            assert_eq!(image.to_string(), format!("{a:016X}-{b:016X}__{c:016X}"));
            let (t, tl) = (TenantId([a as u8; 16]), TimelineId([(b >> 7) as u8; 16]));
            assert_eq!(timeline_prefix(t, tl), format!("tenants/{t}/timelines/{tl}/"));
            for name in [delta, image] {
                let remote = format!("{name}-{:08x}", g.get());
                assert_eq!(name.remote_file_name(g), remote);
                let key = layer_key(t, tl, &name, g);
                assert_eq!(key.as_str(), format!("tenants/{t}/timelines/{tl}/{remote}"));
            }
        }
    }
}
