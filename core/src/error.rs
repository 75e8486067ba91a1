//! Errors shared by every parser in core: bad input from a file, a request or a key.

/// Why a piece of outside input could not be parsed. Never a panic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{what}: expected {expected}, got {got:?}")]
    Malformed { what: &'static str, expected: &'static str, got: String },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("{what}: unsupported format version {version} (this build reads {accepted:?})")]
    UnsupportedVersion { what: &'static str, version: u32, accepted: &'static [u32] },
    #[error("{what}: checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum { what: &'static str, stored: u32, computed: u32 },
    #[error("{what}: truncated: need {need} bytes, have {have}")]
    Truncated { what: &'static str, need: usize, have: usize },
}

impl ParseError {
    pub(crate) fn malformed(what: &'static str, expected: &'static str, got: &str) -> Self {
        // Bound what we echo back: input may be arbitrarily long.
        let got: String = got.chars().take(80).collect();
        ParseError::Malformed { what, expected, got }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        ParseError::Invalid { what, reason: reason.into() }
    }
}
