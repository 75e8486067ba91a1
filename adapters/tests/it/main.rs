//! Integration tests of the real adapters (one test binary; see the toolchain
//! notes on link times). The simulated twins run the same suites in
//! `strata-runtime-sim`.
#![cfg(not(madsim))]

mod local_disk;
mod local_fs;

use camino::Utf8PathBuf;

/// A fresh temporary directory as a UTF-8 path; removed when the guard drops.
pub fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).expect("UTF-8 temp path");
    (dir, path)
}
