//! Typed identifiers: tenants, timelines, nodes, operations.
//!
//! `TenantId` and `TimelineId` are 16 random bytes, written as 32 lowercase hex
//! digits everywhere (paths, object keys, JSON). The driver creates new ones from its
//! random source; core only parses and prints them.

use crate::error::ParseError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
        pub struct $name(pub [u8; 16]);

        impl $name {
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(bytes)
            }

            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                let expected = "32 lowercase hex digits";
                if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    return Err(ParseError::malformed($what, expected, s));
                }
                let mut out = [0u8; 16];
                hex::decode_to_slice(s, &mut out).map_err(|_| ParseError::malformed($what, expected, s))?;
                Ok($name(out))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Into a buffer on the stack: ids are formatted in every key and trace line.
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                let mut text = [0u8; 32];
                for (i, byte) in self.0.iter().enumerate() {
                    text[2 * i] = DIGITS[usize::from(byte >> 4)];
                    text[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
                }
                f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// A tenant: one database's worth of timelines.
    TenantId,
    "tenant id"
);
hex_id!(
    /// A timeline of one tenant: one history of versioned pages.
    TimelineId,
    "timeline id"
);

/// A storage node, as the control plane numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node-{}", self.0)
    }
}

impl FromStr for NodeId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let digits = s.strip_prefix("node-").unwrap_or(s);
        digits
            .parse()
            .map(NodeId)
            .map_err(|_| ParseError::malformed("node id", "an unsigned integer", s))
    }
}

/// The id of one effect a machine emitted; its completion comes back with it.
/// Unique within the machine that issued it, in issue order.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[serde(transparent)]
pub struct OpId(pub u64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op{}", self.0)
    }
}

/// Hands out [`OpId`]s in increasing order. Each machine owns one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpIds {
    next: u64,
}

impl OpIds {
    pub fn starting_at(next: u64) -> Self {
        OpIds { next }
    }

    pub fn next_id(&mut self) -> OpId {
        let id = OpId(self.next);
        self.next += 1;
        id
    }
}
