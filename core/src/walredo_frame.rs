//! The framing spoken between strata and its walredo child over the child's stdin and
//! stdout: the pure part (header and frame encoding and parsing). The child's blocking
//! serve loop and the parent's process handling live in `strata-adapters`
//! (`walredo_protocol.rs`, `walredo_process.rs`), which re-export these items.
//!
//! A frame is one type byte, a big-endian `u32` body length (the body only: neither
//! the type byte nor the length itself is counted), then the body:
//!
//! ```text
//! +------+-----------------+-------------------+
//! | type | body length     | body              |
//! | 1 B  | u32, big-endian | body length bytes |
//! +------+-----------------+-------------------+
//! ```
//!
//! | type | name | direction | body |
//! |---|---|---|---|
//! | `'R'` | [`FrameKind::Request`] | strata → child | an encoded [`crate::redo::RedoRequest`] |
//! | `'V'` | [`FrameKind::Value`] | child → strata | the reconstructed value |
//! | `'E'` | [`FrameKind::Error`] | child → strata | UTF-8 text: why redo of that request failed |
//!
//! A header with an unknown type byte or a body length over [`MAX_FRAME_BODY_BYTES`]
//! is a [`FrameError`]: a corrupted length can never make a reader allocate more.

/// Bytes before the body: the type byte and the `u32` length.
pub const FRAME_HEADER_BYTES: usize = 5;

/// The largest body either side accepts. A longer length is treated as garbage, so a
/// corrupted length cannot make the reader allocate gigabytes.
pub const MAX_FRAME_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What a frame carries. See the module doc for the bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Request,
    Value,
    Error,
}

impl FrameKind {
    /// The type byte on the wire.
    pub const fn tag(self) -> u8 {
        match self {
            FrameKind::Request => b'R',
            FrameKind::Value => b'V',
            FrameKind::Error => b'E',
        }
    }

    pub const fn from_tag(tag: u8) -> Option<FrameKind> {
        match tag {
            b'R' => Some(FrameKind::Request),
            b'V' => Some(FrameKind::Value),
            b'E' => Some(FrameKind::Error),
            _ => None,
        }
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub body_len: usize,
}

/// Bytes that are not a valid frame header, or a body that cannot be framed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("frame body of {len} bytes is over the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
}

/// Parses the five header bytes.
pub fn parse_header(bytes: [u8; FRAME_HEADER_BYTES]) -> Result<FrameHeader, FrameError> {
    let kind = FrameKind::from_tag(bytes[0]).ok_or(FrameError::UnknownType(bytes[0]))?;
    let body_len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    if body_len > MAX_FRAME_BODY_BYTES {
        return Err(FrameError::TooLong { len: body_len, max: MAX_FRAME_BODY_BYTES });
    }
    Ok(FrameHeader { kind, body_len })
}

/// The header for a body of `body_len` bytes.
pub fn encode_header(
    kind: FrameKind,
    body_len: usize,
) -> Result<[u8; FRAME_HEADER_BYTES], FrameError> {
    if body_len > MAX_FRAME_BODY_BYTES {
        return Err(FrameError::TooLong { len: body_len, max: MAX_FRAME_BODY_BYTES });
    }
    let len = (body_len as u32).to_be_bytes();
    Ok([kind.tag(), len[0], len[1], len[2], len[3]])
}

/// A whole frame: header followed by `body`.
pub fn encode_frame(kind: FrameKind, body: &[u8]) -> Result<Vec<u8>, FrameError> {
    let header = encode_header(kind, body.len())?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);
    Ok(frame)
}

/// Whether `buffered` starts with a whole frame (header and body). Only the length
/// is looked at: the header is checked when the frame is read.
pub fn holds_complete_frame(buffered: &[u8]) -> bool {
    let Some(header) = buffered.get(..FRAME_HEADER_BYTES) else { return false };
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    buffered.len() - FRAME_HEADER_BYTES >= len
}

/// One whole frame found at the start of a buffer by [`split_frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameKind,
    pub body: &'a [u8],
    /// Bytes the frame takes, header included.
    pub len: usize,
}

/// The first frame of `buffered`. `Ok(None)` when `buffered` holds less than a whole
/// frame; an error when its header is not a valid one (whatever follows).
pub fn split_frame(buffered: &[u8]) -> Result<Option<Frame<'_>>, FrameError> {
    let Some(header) = buffered.get(..FRAME_HEADER_BYTES) else { return Ok(None) };
    let mut h = [0u8; FRAME_HEADER_BYTES];
    h.copy_from_slice(header);
    let header = parse_header(h)?;
    let len = FRAME_HEADER_BYTES + header.body_len;
    Ok(buffered.get(FRAME_HEADER_BYTES..len).map(|body| Frame { kind: header.kind, body, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_type_then_big_endian_body_length() {
        let frame = encode_frame(FrameKind::Value, b"abc").unwrap();
        assert_eq!(frame, [b'V', 0, 0, 0, 3, b'a', b'b', b'c']);
        let header = parse_header([b'E', 0, 0, 1, 2]).unwrap();
        assert_eq!(header, FrameHeader { kind: FrameKind::Error, body_len: 258 });
    }

    #[test]
    fn garbage_headers_are_rejected() {
        assert_eq!(parse_header([b'x', 0, 0, 0, 0]), Err(FrameError::UnknownType(b'x')));
        let too_long = (MAX_FRAME_BODY_BYTES as u32 + 1).to_be_bytes();
        let header = [b'V', too_long[0], too_long[1], too_long[2], too_long[3]];
        assert!(matches!(parse_header(header), Err(FrameError::TooLong { .. })));
        assert!(encode_header(FrameKind::Request, MAX_FRAME_BODY_BYTES + 1).is_err());
        assert!(encode_header(FrameKind::Request, MAX_FRAME_BODY_BYTES).is_ok());
    }

    #[test]
    fn every_tag_round_trips() {
        for kind in [FrameKind::Request, FrameKind::Value, FrameKind::Error] {
            assert_eq!(FrameKind::from_tag(kind.tag()), Some(kind));
        }
    }

    #[test]
    fn complete_frame_detection() {
        let frame = encode_frame(FrameKind::Request, b"abc").unwrap();
        assert!(holds_complete_frame(&frame));
        assert!(!holds_complete_frame(&frame[..frame.len() - 1]));
        assert!(!holds_complete_frame(&frame[..3]));
        assert!(!holds_complete_frame(&[]));
    }

    #[test]
    fn split_frame_takes_one_whole_frame() {
        let mut two = encode_frame(FrameKind::Value, b"ab").unwrap();
        two.extend(encode_frame(FrameKind::Error, b"").unwrap());
        let first = Frame { kind: FrameKind::Value, body: b"ab", len: 7 };
        assert_eq!(split_frame(&two), Ok(Some(first)));
        let second = Frame { kind: FrameKind::Error, body: b"", len: 5 };
        assert_eq!(split_frame(&two[7..]), Ok(Some(second)));
        assert_eq!(split_frame(&two[..6]), Ok(None));
        assert_eq!(split_frame(&two[..4]), Ok(None));
        assert_eq!(split_frame(b"x\0\0\0\0"), Err(FrameError::UnknownType(b'x')));
    }
}
