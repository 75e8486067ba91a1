//! The framing spoken between strata and its walredo child over the child's stdin and
//! stdout: the child's blocking serve loop; compiled in both builds. The pure framing
//! (header and frame encoding and parsing) is `strata_core::walredo_frame`, re-exported
//! here, so that the fuzz targets (which depend on core only) reach it.
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
//! | `'R'` | [`FrameKind::Request`] | strata → child | an encoded `strata_core::redo::RedoRequest` |
//! | `'V'` | [`FrameKind::Value`] | child → strata | the reconstructed value |
//! | `'E'` | [`FrameKind::Error`] | child → strata | UTF-8 text: why redo of that request failed |
//!
//! Every request gets exactly one response, in request order; there are no request
//! ids, so a response that cannot be matched (unknown type, a body over
//! [`MAX_FRAME_BODY_BYTES`], a request frame coming back, an answer nobody asked for)
//! means the stream can no longer be trusted: the parent kills the child.
//!
//! The child ([`serve`]) answers requests until its stdin reaches end of file at a
//! frame boundary, then returns; any other input problem is an error and the child
//! exits non-zero. A redo failure is not a child failure: it is answered with an
//! [`FrameKind::Error`] frame and the child keeps serving. The child writes nothing
//! else to stdout (logs go to stderr).

use std::io::{self, BufReader, Read, Write};
use strata_core::walredo_frame::holds_complete_frame;
pub use strata_core::walredo_frame::{
    FRAME_HEADER_BYTES, FrameError, FrameHeader, FrameKind, MAX_FRAME_BODY_BYTES, encode_frame,
    encode_header, parse_header,
};

/// Capacity of the child's input buffer: several pipelined requests are read with one
/// system call.
pub const CHILD_READ_BUFFER_BYTES: usize = 64 * 1024;

/// Why the child's serve loop stopped before a clean end of file.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading stdin: {0}")]
    Read(#[source] io::Error),
    #[error("writing stdout: {0}")]
    Write(#[source] io::Error),
    #[error("bad frame on stdin: {0}")]
    Frame(#[from] FrameError),
    #[error("stdin ended inside a frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("expected a request frame, got {0:?}")]
    UnexpectedKind(FrameKind),
}

/// The child side: reads request frames from `input`, answers each with `handler`'s
/// value (a [`FrameKind::Value`] frame) or error text (a [`FrameKind::Error`] frame),
/// and returns the number of requests served once `input` ends at a frame boundary.
///
/// Output is flushed whenever the input buffer holds no complete request, that is,
/// before any read that could block: pipelined requests are answered in one batch,
/// and a parent waiting for an answer always gets it.
pub fn serve<R: Read, W: Write>(
    input: R,
    mut output: W,
    mut handler: impl FnMut(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<u64, ServeError> {
    let mut input = BufReader::with_capacity(CHILD_READ_BUFFER_BYTES, input);
    let mut served = 0u64;
    loop {
        let Some((kind, body)) = read_frame(&mut input)? else {
            output.flush().map_err(ServeError::Write)?;
            return Ok(served);
        };
        if kind != FrameKind::Request {
            return Err(ServeError::UnexpectedKind(kind));
        }
        let (kind, mut answer) = match handler(&body) {
            Ok(value) => (FrameKind::Value, value),
            Err(message) => (FrameKind::Error, message.into_bytes()),
        };
        // The header, then the answer as the handler made it (not copied into a frame).
        let header = match encode_header(kind, answer.len()) {
            Ok(header) => header,
            Err(too_long) => {
                answer = too_long.to_string().into_bytes();
                encode_header(FrameKind::Error, answer.len())?
            }
        };
        output.write_all(&header).map_err(ServeError::Write)?;
        output.write_all(&answer).map_err(ServeError::Write)?;
        served += 1;
        if !holds_complete_frame(input.buffer()) {
            output.flush().map_err(ServeError::Write)?;
        }
    }
}

/// One frame from a blocking reader; `None` at end of file before the first byte.
pub fn read_frame(input: &mut impl Read) -> Result<Option<(FrameKind, Vec<u8>)>, ServeError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let got = read_full(input, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    if got < FRAME_HEADER_BYTES {
        return Err(ServeError::Truncated { got, want: FRAME_HEADER_BYTES });
    }
    let header = parse_header(header)?;
    let mut body = vec![0u8; header.body_len];
    let got = read_full(input, &mut body)?;
    if got < header.body_len {
        return Err(ServeError::Truncated {
            got: FRAME_HEADER_BYTES + got,
            want: FRAME_HEADER_BYTES + header.body_len,
        });
    }
    Ok(Some((header.kind, body)))
}

/// Reads until `buf` is full or end of file; returns the bytes read. Short reads and
/// `Interrupted` are retried.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, ServeError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ServeError::Read(e)),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most one byte per call: every read is short.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((&first, rest)) = self.0.split_first() else { return Ok(0) };
            if buf.is_empty() {
                return Ok(0);
            }
            buf[0] = first;
            self.0 = rest;
            Ok(1)
        }
    }

    fn request(body: &[u8]) -> Vec<u8> {
        encode_frame(FrameKind::Request, body).unwrap()
    }

    #[test]
    fn serve_answers_in_order_through_one_byte_reads() {
        let mut input = request(b"one");
        input.extend(request(b""));
        input.extend(request(b"fail"));
        input.extend(request(b"three"));
        let mut output = Vec::new();
        let served = serve(Trickle(&input), &mut output, |body| {
            if body == b"fail" { Err("no".to_string()) } else { Ok(body.to_ascii_uppercase()) }
        })
        .unwrap();
        assert_eq!(served, 4);
        let mut reader = &output[..];
        let mut answers = Vec::new();
        while let Some(frame) = read_frame(&mut reader).unwrap() {
            answers.push(frame);
        }
        assert_eq!(
            answers,
            vec![
                (FrameKind::Value, b"ONE".to_vec()),
                (FrameKind::Value, Vec::new()),
                (FrameKind::Error, b"no".to_vec()),
                (FrameKind::Value, b"THREE".to_vec()),
            ]
        );
    }

    #[test]
    fn serve_stops_on_bad_input() {
        let echo = |body: &[u8]| Ok(body.to_vec());
        let mut truncated = request(b"hello");
        truncated.pop();
        assert!(matches!(
            serve(&truncated[..], Vec::new(), echo),
            Err(ServeError::Truncated { got: 9, want: 10 })
        ));
        assert!(matches!(
            serve(&[b'R', 0][..], Vec::new(), echo),
            Err(ServeError::Truncated { got: 2, want: 5 })
        ));
        assert!(matches!(
            serve(&b"junk!"[..], Vec::new(), echo),
            Err(ServeError::Frame(FrameError::UnknownType(b'j')))
        ));
        let value = encode_frame(FrameKind::Value, b"v").unwrap();
        assert!(matches!(
            serve(&value[..], Vec::new(), echo),
            Err(ServeError::UnexpectedKind(FrameKind::Value))
        ));
        assert_eq!(serve(&[][..], Vec::new(), echo).unwrap(), 0);
    }
}
