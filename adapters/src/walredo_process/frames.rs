//! Frames from the child's stdout, read without copying values (see the parent
//! module's doc).

use super::{
    ANSWER_BUFFER_BYTES, SMALL_ANSWER_BYTES, STEP_DECODE_RESPONSE, STEP_READ_RESPONSE, failed,
};
use crate::redo::RedoError;
use crate::walredo_protocol::{self, FRAME_HEADER_BYTES, FrameHeader, FrameKind};
use std::fs::File;
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Frames from the child's stdout, each value read into the `Vec` handed to its
/// caller (see the module doc). Every method is cancel-safe: bytes read are kept in
/// the struct.
pub(super) struct FrameReader {
    stdout: AsyncFd<File>,
    /// The current frame's header: `header_len` bytes of it so far.
    header: [u8; FRAME_HEADER_BYTES],
    header_len: usize,
    /// Set once the header is complete.
    parsed: Option<FrameHeader>,
    /// The current frame's body so far (never longer than the header says, once
    /// parsed).
    body: Vec<u8>,
    /// Bytes read beyond the current frame, from `carry_at` on; empty whenever a
    /// read is due.
    carry: Vec<u8>,
    carry_at: usize,
}

impl FrameReader {
    pub(super) fn new(stdout: AsyncFd<File>) -> FrameReader {
        FrameReader {
            stdout,
            header: [0; FRAME_HEADER_BYTES],
            header_len: 0,
            parsed: None,
            body: Vec::new(),
            carry: Vec::new(),
            carry_at: 0,
        }
    }

    /// The next complete frame from the bytes already read, if there is one.
    pub(super) fn next_buffered(&mut self) -> Result<Option<(FrameKind, Vec<u8>)>, RedoError> {
        let carried = &self.carry[self.carry_at..];
        let take = carried.len().min(FRAME_HEADER_BYTES - self.header_len);
        self.header[self.header_len..self.header_len + take].copy_from_slice(&carried[..take]);
        self.header_len += take;
        self.carry_at += take;
        if self.header_len < FRAME_HEADER_BYTES {
            return Ok(None);
        }
        let header = match self.parsed {
            Some(header) => header,
            None => {
                let header = walredo_protocol::parse_header(self.header)
                    .map_err(|e| failed(STEP_DECODE_RESPONSE, &e.to_string()))?;
                self.parsed = Some(header);
                header
            }
        };
        if self.body.len() > header.body_len {
            // Read together with the end of this frame: the next frames' bytes.
            debug_assert_eq!(self.carry_at, self.carry.len());
            self.carry.clear();
            self.carry.extend_from_slice(&self.body[header.body_len..]);
            self.carry_at = 0;
            self.body.truncate(header.body_len);
        }
        let carried = &self.carry[self.carry_at..];
        let take = carried.len().min(header.body_len - self.body.len());
        self.body.extend_from_slice(&carried[..take]);
        self.carry_at += take;
        if self.carry_at == self.carry.len() {
            self.carry.clear();
            self.carry_at = 0;
        }
        if self.body.len() < header.body_len {
            return Ok(None);
        }
        self.header_len = 0;
        self.parsed = None;
        let body = if self.body.len() <= SMALL_ANSWER_BYTES {
            let body = self.body.clone();
            self.body.clear();
            body
        } else {
            std::mem::take(&mut self.body)
        };
        Ok(Some((header.kind, body)))
    }

    /// Reads once from stdout (waiting until it is readable); end of file is a
    /// failure.
    pub(super) async fn fill(&mut self) -> Result<(), RedoError> {
        let reading =
            |e: std::io::Error| failed(STEP_READ_RESPONSE, &format!("reading stdout: {e}"));
        loop {
            let mut ready = self.stdout.readable().await.map_err(reading)?;
            let (header, body) = (&mut self.header[self.header_len..], &mut self.body);
            let want = match self.parsed {
                Some(parsed) => parsed.body_len - body.len(),
                None => ANSWER_BUFFER_BYTES,
            };
            debug_assert!(want > 0, "a read is due only for an incomplete frame");
            body.reserve_exact(want);
            let read = ready.try_io(|stdout| read_into(stdout.get_ref(), header, body, want));
            drop(ready);
            match read {
                Ok(Ok(0)) => return Err(self.ended()),
                Ok(Ok(n)) => {
                    self.header_len += n.min(FRAME_HEADER_BYTES - self.header_len);
                    return Ok(());
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(reading(e)),
                Err(_would_block) => {}
            }
        }
    }

    /// Reads once if stdout holds bytes now, without waiting; `Ok(false)` when it
    /// holds none. End of file is a failure.
    pub(super) fn try_fill(&mut self) -> Result<bool, RedoError> {
        let reading =
            |e: std::io::Error| failed(STEP_READ_RESPONSE, &format!("reading stdout: {e}"));
        let (header, body) = (&mut self.header[self.header_len..], &mut self.body);
        let want = match self.parsed {
            Some(parsed) => parsed.body_len - body.len(),
            None => ANSWER_BUFFER_BYTES,
        };
        body.reserve_exact(want);
        let read =
            self.stdout.try_io(Interest::READABLE, |stdout| read_into(stdout, header, body, want));
        match read {
            Ok(0) => Err(self.ended()),
            Ok(n) => {
                self.header_len += n.min(FRAME_HEADER_BYTES - self.header_len);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(reading(e)),
        }
    }

    /// The failure for end of file now.
    fn ended(&self) -> RedoError {
        match self.parsed {
            None if self.header_len == 0 => {
                failed(STEP_READ_RESPONSE, "the child closed its stdout")
            }
            None => failed(
                STEP_READ_RESPONSE,
                &format!(
                    "short read: stdout ended after {} of {FRAME_HEADER_BYTES} header bytes",
                    self.header_len
                ),
            ),
            Some(header) => failed(
                STEP_READ_RESPONSE,
                &format!(
                    "short read: stdout ended after {} of {} body bytes",
                    self.body.len(),
                    header.body_len
                ),
            ),
        }
    }
}

/// One `readv`: first into `header`, then into at most `want` bytes of `body`'s spare
/// capacity (which must hold them); `body` grows by what landed there.
fn read_into(
    stdout: &File,
    header: &mut [u8],
    body: &mut Vec<u8>,
    want: usize,
) -> std::io::Result<usize> {
    let spare = body.spare_capacity_mut();
    assert!(spare.len() >= want, "reserve before reading");
    let iov = [
        libc::iovec { iov_base: header.as_mut_ptr().cast(), iov_len: header.len() },
        libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: want },
    ];
    // SAFETY: each iovec describes writable memory this function borrows mutably:
    // `header` whole, and the first `want` bytes of `body`'s spare capacity (checked
    // above). The kernel writes at most `header.len() + want` bytes, in order.
    let n = unsafe { libc::readv(stdout.as_raw_fd(), iov.as_ptr(), 2) };
    let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    let into_body = n.saturating_sub(header.len());
    // SAFETY: the kernel initialized the first `into_body` bytes of the spare capacity
    // (the bytes after the header's), and `into_body <= want <= spare capacity`.
    unsafe { body.set_len(body.len() + into_body) };
    Ok(n)
}
