//! A power-cut file system for tests (dev-only; nothing in production depends on it).
//!
//! [`TestFs`] mounts, over FUSE, an in-memory file system that keeps two versions of
//! everything: what processes see now, and what a disk would still hold after a power
//! cut. Only fsync moves the second towards the first:
//!
//! - a file's data (content and size) becomes durable when that file is fsynced;
//! - a directory's entries (create, mkdir, rename in or out, unlink, rmdir) become
//!   durable when that directory is fsynced. Nothing else is durable: not a new
//!   file's entry when only the file is fsynced, not a renamed file's new name until
//!   the directory it landed in is fsynced, not the old name's removal until the
//!   source directory is.
//!
//! This is the strictest reading of POSIX that real file systems may exhibit (ext4
//! with `data=writeback`, XFS, after a crash between two journal commits); a
//! program that survives it survives them.
//!
//! A power cut ([`TestFs::power_cut`], or armed with [`TestFs::arm_cut_after`] to
//! fire just before the n-th mutating request) takes the durable state as an
//! [`Image`], answers every later request with `EIO` (the machine is dead), and
//! unmounts. Mounting that image again ([`TestFs::mount`]) is the reboot: the files
//! reachable through durable entries, each with its durable content.
//!
//! Mounting needs `/dev/fuse` and root (or `fusermount3`, Debian's `fuse3`).
//! [`mount_check`] tells whether it works here.

#[cfg(not(madsim))]
mod fs;
#[cfg(not(madsim))]
mod image;

#[cfg(not(madsim))]
pub use fs::{Stats, TestFs, mount_check, mount_or_skip};
#[cfg(not(madsim))]
pub use image::{Entry, Image};
