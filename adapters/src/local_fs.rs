//! LocalFs remote storage (a directory as the object store).
