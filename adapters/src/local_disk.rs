//! Crash-safe local disk (real file system).
