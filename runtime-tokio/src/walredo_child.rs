//! `strata walredo` and `strata walredo --replay FILE`: the child side of the walredo
//! process adapter (`strata_adapters::walredo_process`).
//!
//! The child serves [`strata_adapters::walredo_protocol`] on stdin/stdout: each
//! request body is an encoded [`RedoRequest`]; the answer is the value that core's
//! pure redo computes, or an error frame with the reason (a request that does not
//! decode, a value over the size limit). It exits 0 when stdin ends at a frame
//! boundary and non-zero on any protocol error. It writes nothing to stdout but
//! frames: logging must go to stderr (and a healthy child logs nothing).
//!
//! `--replay FILE` runs the same pure redo on a request the adapter saved after a
//! failure (`<data_dir>/walredo-failures/<n>.req`, the raw request body) and prints
//! the value, or the error, to stdout.

use std::io::{BufWriter, Read, Write};
use std::process::ExitCode;
use strata_adapters::walredo_protocol;
use strata_core::redo::RedoRequest;

/// Exit code for a protocol or I/O error in the child, or an unreadable replay file.
const EXIT_BROKEN: u8 = 2;

/// The pure redo the child runs on one request body.
pub fn redo_handler(request: &[u8]) -> Result<Vec<u8>, String> {
    let request = RedoRequest::decode(request).map_err(|e| format!("decode request: {e}"))?;
    request.execute().map_err(|e| format!("redo: {e}"))
}

/// `strata walredo`: serves requests from `stdin` to `stdout` until end of input.
/// Call with `std::io::stdin().lock()` and `std::io::stdout().lock()`.
pub fn run_child(stdin: impl Read, stdout: impl Write) -> ExitCode {
    serve_with(stdin, stdout, redo_handler)
}

/// [`run_child`] with another handler (tests, benchmarks).
pub fn serve_with(
    stdin: impl Read,
    stdout: impl Write,
    handler: impl FnMut(&[u8]) -> Result<Vec<u8>, String>,
) -> ExitCode {
    let stdout = BufWriter::with_capacity(walredo_protocol::CHILD_READ_BUFFER_BYTES, stdout);
    match walredo_protocol::serve(stdin, stdout, handler) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata walredo: {e}");
            ExitCode::from(EXIT_BROKEN)
        }
    }
}

/// `strata walredo --replay FILE`: redo of one saved request. Prints `ok: <n> bytes`
/// and the value in hex (exit 0), or `error: <reason>` (exit 1); an unreadable file
/// exits 2.
pub fn replay(file: &std::path::Path, out: &mut impl Write) -> ExitCode {
    let request = match std::fs::read(file) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("strata walredo --replay: cannot read {}: {e}", file.display());
            return ExitCode::from(EXIT_BROKEN);
        }
    };
    let (printed, code) = match redo_handler(&request) {
        Ok(value) => {
            (writeln!(out, "ok: {} bytes\n{}", value.len(), to_hex(&value)), ExitCode::SUCCESS)
        }
        Err(e) => (writeln!(out, "error: {e}"), ExitCode::FAILURE),
    };
    match printed.and_then(|()| out.flush()) {
        Ok(()) => code,
        Err(_) => ExitCode::from(EXIT_BROKEN),
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        hex.push(DIGITS[usize::from(b >> 4)] as char);
        hex.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_adapters::walredo_protocol::{FrameKind, encode_frame, read_frame};
    use strata_core::redo::DeltaOp;

    fn request(base: Option<&[u8]>, deltas: Vec<Vec<DeltaOp>>) -> Vec<u8> {
        RedoRequest { base: base.map(<[u8]>::to_vec), deltas }.encode()
    }

    #[test]
    fn child_answers_values_and_errors_in_order() {
        let good = request(Some(b"abc"), vec![vec![DeltaOp::Append(b"d".to_vec())]]);
        let too_large = request(None, vec![vec![DeltaOp::Append(vec![0; 10_000])]]);
        let mut input = Vec::new();
        for body in [&good[..], b"not a request", &too_large] {
            input.extend(encode_frame(FrameKind::Request, body).unwrap());
        }
        let mut output = Vec::new();
        assert_eq!(run_child(&input[..], &mut output), ExitCode::SUCCESS);
        let mut reader = &output[..];
        let (kind, body) = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!((kind, &body[..]), (FrameKind::Value, &b"abcd"[..]));
        let (kind, body) = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(kind, FrameKind::Error);
        assert!(String::from_utf8(body).unwrap().starts_with("decode request"));
        let (kind, body) = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(kind, FrameKind::Error);
        assert!(String::from_utf8(body).unwrap().starts_with("redo: value too large"));
        assert!(read_frame(&mut reader).unwrap().is_none());
    }

    #[test]
    fn child_exits_non_zero_on_garbage() {
        assert_eq!(run_child(&b"garbage"[..], Vec::new()), ExitCode::from(EXIT_BROKEN));
    }

    #[test]
    fn replay_prints_the_value_or_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("0.req");
        std::fs::write(&good, request(None, vec![vec![DeltaOp::Append(vec![1, 0xab])]])).unwrap();
        let mut out = Vec::new();
        assert_eq!(replay(&good, &mut out), ExitCode::SUCCESS);
        assert_eq!(String::from_utf8(out).unwrap(), "ok: 2 bytes\n01ab\n");

        let bad = dir.path().join("1.req");
        std::fs::write(&bad, b"SRDO?").unwrap();
        let mut out = Vec::new();
        assert_eq!(replay(&bad, &mut out), ExitCode::FAILURE);
        assert!(String::from_utf8(out).unwrap().starts_with("error: decode request"));

        let missing = dir.path().join("2.req");
        assert_eq!(replay(&missing, &mut Vec::new()), ExitCode::from(EXIT_BROKEN));
    }
}
