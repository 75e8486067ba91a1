//! The size and CRC32C check of a layer file that streams from remote storage to
//! the local disk: [`FileCheck`].
//!
//! A layer is downloaded by one effect (`node::io::Io::RemoteGetFile`): the
//! adapter writes the body into a temporary file and hands every chunk to a
//! check before it renames the file onto the layer's name. The check is this
//! pure state: the driver builds it from the [`ExpectedFile`] the effect carries
//! (the size and CRC32C the remote index records), the adapter feeds it, and a
//! [`FileMismatch`] refuses the download (nothing appears under the layer's name;
//! the node then decides what a corrupt download means). The bytes never pass
//! through core; the rule does.
//!
//! [`check_bytes`] is the same check over bytes already in memory (the unit
//! tests' world uses it, so that they and the driver run one rule).

use crate::index_part::LayerMeta;

/// What a downloaded file must be: its size and CRC32C, as its index records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedFile {
    pub size_bytes: u64,
    pub crc32c: u32,
}

impl From<&LayerMeta> for ExpectedFile {
    fn from(meta: &LayerMeta) -> Self {
        ExpectedFile { size_bytes: meta.file_size, crc32c: meta.crc32c }
    }
}

/// The bytes were not the file the index describes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{size_bytes} bytes crc {crc32c:08x}, the index says {} bytes crc {:08x}",
    expected.size_bytes,
    expected.crc32c
)]
pub struct FileMismatch {
    pub size_bytes: u64,
    pub crc32c: u32,
    pub expected: ExpectedFile,
}

/// A streaming size and CRC32C check: [`FileCheck::update`] with every chunk in
/// order, then [`FileCheck::finish`]. Holds no bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileCheck {
    expected: ExpectedFile,
    size_bytes: u64,
    crc32c: u32,
}

impl FileCheck {
    pub fn new(expected: ExpectedFile) -> FileCheck {
        FileCheck { expected, size_bytes: 0, crc32c: 0 }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.size_bytes += chunk.len() as u64;
        self.crc32c = crc32c::crc32c_append(self.crc32c, chunk);
    }

    /// Whether everything handed over so far is the expected file.
    pub fn finish(&self) -> Result<(), FileMismatch> {
        if self.size_bytes == self.expected.size_bytes && self.crc32c == self.expected.crc32c {
            return Ok(());
        }
        Err(FileMismatch {
            size_bytes: self.size_bytes,
            crc32c: self.crc32c,
            expected: self.expected,
        })
    }
}

/// [`FileCheck`] over bytes in memory.
pub fn check_bytes(bytes: &[u8], expected: ExpectedFile) -> Result<(), FileMismatch> {
    let mut check = FileCheck::new(expected);
    check.update(bytes);
    check.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(bytes: &[u8]) -> ExpectedFile {
        ExpectedFile { size_bytes: bytes.len() as u64, crc32c: crc32c::crc32c(bytes) }
    }

    /// Fed in any chunking, the check accepts exactly the expected bytes.
    #[test]
    fn chunked_or_whole_the_same_bytes_pass_and_any_change_fails() {
        let body: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let want = expected(&body);
        for chunk in [1, 7, 4096, 10_000, 20_000] {
            let mut c = FileCheck::new(want);
            body.chunks(chunk).for_each(|part| c.update(part));
            assert_eq!(c.finish(), Ok(()), "chunks of {chunk}");
        }
        assert_eq!(check_bytes(&body, want), Ok(()));
        let mut flipped = body.clone();
        flipped[5_000] ^= 1;
        let err = check_bytes(&flipped, want).unwrap_err();
        assert_eq!((err.size_bytes, err.expected), (10_000, want));
        assert_ne!(err.crc32c, want.crc32c);
        let short = check_bytes(&body[..9_999], want).unwrap_err();
        assert_eq!(short.size_bytes, 9_999);
        assert!(short.to_string().contains("9999 bytes"), "{short}");
        assert!(short.to_string().contains("the index says 10000 bytes"), "{short}");
        assert!(check_bytes(&[], ExpectedFile { size_bytes: 0, crc32c: 0 }).is_ok());
    }
}
